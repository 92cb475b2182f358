"""The hub's task route table, shared by every face (`TaskRelay`), and each server's
`notifications/tasks/status` relayed, under the exposed task id, to the handshake-era session
that created the task (2025-11-25 experimental tasks). How a face serves tasks in both eras, and
how task ids are exposed and bound to their principal: `hub.endpoint.tasks`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

import anyio
import mcp_types as types
from mcp.server import ServerRequestContext
from mcp.server.session import ServerSession

from hub.client_channel import ClientChannel
from hub.endpoint.task_routes import HANDSHAKE, MAX_ROUTES, MAX_TASKS_PER_PRINCIPAL, TaskRoute, TaskRoutes
from hub.endpoint.tasks import FaceTasks
from hub.policy import Access
from hub.servers import Fleet
from hub.task_wire import expose_task_ids

__all__ = ["TaskRelay"]

logger = logging.getLogger(__name__)

_NOTIFY_TIMEOUT_SECONDS: Final = 5.0
"""How long one status notification may take to reach its client before it is dropped."""
_EARLY_STATUS_WAIT_SECONDS: Final = 2.0
"""How long a status notification that overtook its task's `CreateTaskResult` waits for the route."""


class _StatusNotification(types.Notification[dict[str, Any], str]):
    """A relayed `notifications/tasks/status` (2025-11-25)."""


class TaskRelay:
    """The hub's task route table, shared by every face (see the module docstring).

    :param fleet: where the server connections are.
    :param access: the policy every use of a task is checked against.
    """

    def __init__(
        self,
        fleet: Fleet,
        access: Access,
        *,
        max_tasks_per_principal: int = MAX_TASKS_PER_PRINCIPAL,
        max_routes: int = MAX_ROUTES,
    ) -> None:
        self.fleet = fleet
        self.access = access
        self.routes = TaskRoutes(max_tasks_per_principal, max_routes)
        self._added = anyio.Event()

    def face(
        self,
        scope: str | None,
        channel: Callable[[ServerRequestContext[Any]], ClientChannel],
        standing: Callable[[ServerSession], ServerSession],
    ) -> FaceTasks:
        """The task surface of one face: `scope` is the server a per-server face fronts (None:
        the aggregated face); `channel` makes the client channel of a request (`hub.endpoint.server_requests`);
        `standing` gives the session object that lives as long as a handshake-era client's
        session (status notifications are sent through it, and stop when it is gone)."""
        return FaceTasks(self, scope, channel, standing)

    async def status_changed(self, member: str, params: dict[str, Any]) -> None:
        """A server connection received a task status notification: relay it, under the
        exposed id, to the handshake-era session that created the task (if still connected)."""
        task_id = params.get("taskId")
        if not isinstance(task_id, str):
            return
        exposed = f"{member}+{task_id}"
        with anyio.move_on_after(_EARLY_STATUS_WAIT_SECONDS):
            # A server may announce a status before its CreateTaskResult reached the hub.
            while not self.routes.holding(exposed):
                await self._added.wait()
        for route in self.routes.holding(exposed):
            if "ttl" in params or "ttlMs" in params:
                route.refresh(params.get("ttl", params.get("ttlMs")))
            session = route.session() if route.session is not None else None
            if session is None or route.era != HANDSHAKE:
                continue
            notification = _StatusNotification(
                method="notifications/tasks/status", params=expose_task_ids(params, route.exposed_id)
            )
            with anyio.move_on_after(_NOTIFY_TIMEOUT_SECONDS):
                try:
                    await session.send_notification(notification)
                except Exception as exc:  # the client went away; its task stays reachable by id
                    logger.debug("task status not relayed to %s: %r", route.principal, exc)
                    route.session = None

    def remember(self, route: TaskRoute) -> TaskRoute:
        """Add `route` to the table (and wake status notifications that arrived before it)."""
        self.routes.add(route)
        self._added.set()
        self._added = anyio.Event()
        return route
