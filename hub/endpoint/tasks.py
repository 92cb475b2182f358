"""Tasks through the hub: task-augmented `tools/call` relayed to the owning server, and the
`tasks/*` methods routed back to the server connection that holds each task, in both eras.

- Modern era (2026-07-28): the `io.modelcontextprotocol/tasks` extension (SEP-2663). A face
  advertises it under `capabilities.extensions` while a ready modern-era server of the face
  does. A client that declares it in a request's `_meta` clientCapabilities has that
  declaration forwarded (`hub.servers`), so the server decides whether to answer with a
  `CreateTaskResult` (`resultType: "task"`); `tasks/get`, `tasks/update`, `tasks/cancel` follow
  (-32021 without the declaration, `Mcp-Name` must equal `params.taskId` over HTTP: -32020);
  `tasks/result` and `tasks/list` do not exist (-32601).
- Handshake era (2025-11-25 experimental tasks): a face advertises `capabilities.tasks` (list,
  cancel, `requests.tools.call`) while a ready handshake-era server of the face offers
  task-augmented `tools/call`. `params.task` is passed to the owning server and its
  `CreateTaskResult` returned; `tasks/get`, `tasks/result` (blocks until the task ends; the
  server's questions are relayed to the client as for any call), `tasks/cancel`, and
  `tasks/list` (the caller's own tasks on the face's servers, merged);
  `notifications/tasks/status` go to the session that created the task.

Task ids are rewritten as `<server connection id>+<the server's task id>` (`+` never occurs in
a server_id): unique across servers, and naming the replica member that holds the task. Every
task is also recorded in a route table bound to the principal that created it (its auth source
and id): a task id that is not the caller's own answers exactly like an unknown one (-32602),
whatever face it is asked on, and a face reaches only tasks of its own servers. A route lives
for the task's `ttl` (at most 24 h, `hub.endpoint.task_routes`) and is re-checked against the policy on
every use: a principal that may not call a tool can neither create nor reach a task of it.
The route table, shared by every face, and the status notifications relayed to the session that
created a task are `hub.endpoint.task_relay`'s; this module is one face's side of tasks.
Each era reaches only tasks created in it. Routes are in memory: they do not survive a hub
restart (nor do a stdio server's tasks).
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, Final

import mcp_types as types
from mcp import MCPError
from mcp.server import ServerRequestContext
from mcp.server.context import CallNext, HandlerResult
from mcp.server.session import ServerSession
from mcp.shared.inbound import MCP_NAME_HEADER, decode_header_value
from mcp_types import (
    HEADER_MISMATCH,
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    MISSING_REQUIRED_CLIENT_CAPABILITY,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ConfigDict
from starlette.requests import Request

from hub.client_channel import CURRENT_CHANNEL, ClientChannel
from hub.endpoint.auth_middleware import principal_of
from hub.endpoint.task_routes import (
    HANDSHAKE,
    MODERN,
    Era,
    TaskRoute,
    principal_key,
    retention_seconds,
)
from hub.errors import ServerProtocolError, ServerUnavailable
from hub.handler_slots import HandlerSlot
from hub.principals import Principal
from hub.servers import ServerConnection, ServerState
from hub.task_wire import TASKS_EXTENSION, CreatedTask, LegacyCreatedTask, capped_tool_result, expose_task_ids

if TYPE_CHECKING:
    from hub.endpoint.task_relay import TaskRelay

__all__ = ["FaceTasks"]

logger = logging.getLogger(__name__)

_MAX_LIST_PAGES: Final = 100


_CAPTURE: HandlerSlot[dict[str, Any]] = HandlerSlot("hub_task_capture")
"""Where `FaceTasks.created` leaves the handshake-era `CreateTaskResult` for `FaceTasks.middleware`."""


class _TaskParams(types.RequestParams):
    model_config = ConfigDict(extra="allow")
    task_id: str


class _UpdateParams(_TaskParams):
    input_responses: dict[str, Any]


class FaceTasks:
    """Tasks as one face serves them: `tools/call` results that are tasks (`created`), the
    `tasks/*` handlers (`handlers`), the handshake-era `CreateTaskResult` pass-through
    (`middleware`) and the capability a face advertises (`advertise`)."""

    def __init__(
        self,
        relay: TaskRelay,
        scope: str | None,
        channel: Callable[[ServerRequestContext[Any]], ClientChannel],
        standing: Callable[[ServerSession], ServerSession],
    ) -> None:
        self._relay = relay
        self._scope = scope
        self._channel = channel
        self._standing = standing

    # ---- capabilities ----

    def _ready(self) -> list[ServerConnection]:
        fleet = self._relay.fleet
        connections = list(fleet.connections.values()) if self._scope is None else fleet.members(self._scope)
        return [c for c in connections if c.state is ServerState.READY and c.server_capabilities is not None]

    def offered(self, era: Era) -> types.ServerTasksCapability | bool:
        """What a ready server of the face offers in `era`: the handshake-era `tasks`
        capability (merged), or whether the modern-era extension is offered."""
        if era == MODERN:
            return any(
                c.protocol_version in MODERN_PROTOCOL_VERSIONS
                and TASKS_EXTENSION in ((c.server_capabilities.extensions if c.server_capabilities else None) or {})
                for c in self._ready()
            )
        offers = [
            caps.tasks
            for c in self._ready()
            if c.protocol_version not in MODERN_PROTOCOL_VERSIONS
            and (caps := c.server_capabilities) is not None
            and caps.tasks is not None
            and caps.tasks.requests is not None
            and caps.tasks.requests.tools is not None
            and caps.tasks.requests.tools.call is not None
        ]
        if not offers:
            return False
        return types.ServerTasksCapability(
            list=types.TasksListCapability(),  # the hub lists a caller's own tasks itself
            cancel=types.TasksCancelCapability() if any(o.cancel is not None for o in offers) else None,
            requests=types.ServerTasksRequestsCapability(
                tools=types.TasksToolsCapability(call=types.TasksCallCapability())
            ),
        )

    def advertise(self, caps: types.ServerCapabilities, protocol_version: str | None) -> types.ServerCapabilities:
        """`caps` with the tasks capability of the era of `protocol_version` (None: the
        handshake era), when a ready server of the face offers it; never the other era's."""
        if protocol_version in MODERN_PROTOCOL_VERSIONS:
            extensions = dict(caps.extensions or {})
            if self.offered(MODERN):
                extensions[TASKS_EXTENSION] = {}
            return caps.model_copy(update={"tasks": None, "extensions": extensions or None})
        offer = self.offered(HANDSHAKE)
        return caps.model_copy(update={"tasks": offer if isinstance(offer, types.ServerTasksCapability) else None})

    # ---- tools/call ----

    @staticmethod
    def task_param(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> dict[str, Any] | None:
        """The 2025-11-25 `params.task` to pass to the server (handshake-era clients only; a
        modern-era client's leftover `task` is ignored, SEP-2663)."""
        if params.task is None or ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return None
        return params.task.model_dump(by_alias=True, mode="json", exclude_none=True)

    @staticmethod
    def is_task(result: object) -> bool:
        return isinstance(result, CreatedTask | LegacyCreatedTask)

    def created(
        self,
        ctx: ServerRequestContext[Any],
        policy_key: tuple[str, str],
        owner: tuple[str, str],
        result: CreatedTask | LegacyCreatedTask,
    ) -> Any:
        """Record a task a server created for this request and return what the client gets:
        the `CreateTaskResult` with the task id rewritten.

        :param policy_key: `(server_id, exposed tool name)` of the tool called.
        :param owner: `(server_id, original tool name)` the call was routed to.
        :raises ServerProtocolError: the server created a task the client cannot take.
        """
        modern_client = ctx.protocol_version in MODERN_PROTOCOL_VERSIONS
        original_id: Any
        if isinstance(result, CreatedTask):
            era, original_id, ttl = MODERN, result.task_id, (result.model_extra or {}).get("ttlMs")
            if not modern_client or not _declares(ctx):
                raise ServerProtocolError(
                    owner[0], "answered a client that did not declare the tasks extension with a task"
                )
        else:
            era, original_id, ttl = HANDSHAKE, result.task.get("taskId"), result.task.get("ttl")
            if modern_client or not _CAPTURE.open:
                raise ServerProtocolError(
                    owner[0], "answered with a 2025-11-25 task a request that did not ask for one"
                )
        if not isinstance(original_id, str) or result.member is None:
            raise ServerProtocolError(owner[0], "answered with a task that has no taskId")
        now = time.monotonic()
        route = self._relay.remember(
            TaskRoute(
                exposed_id=f"{result.member}+{original_id}",
                principal=principal_key(_principal(ctx)),
                route_server=owner[0],
                member=result.member,
                original_id=original_id,
                policy_key=policy_key,
                original_tool=owner[1],
                era=era,
                created=now,
                expires=now + retention_seconds(ttl),
                session=None if modern_client else weakref.ref(self._standing(ctx.session)),
            )
        )
        logger.info("task %s created on %s for %s", route.exposed_id, route.member, route.principal)
        # As the server sent it (explicit nulls too: `ttlMs: null` means unlimited).
        wire = result.model_dump(by_alias=True, mode="json", exclude_unset=True)
        if wire.get("_meta") is None:
            wire.pop("_meta", None)
        wire = expose_task_ids(wire, route.exposed_id)
        if era == MODERN or not _CAPTURE.leave(wire):
            return wire
        # Stands in for the CreateTaskResult on the way out of the handler; `middleware` swaps it.
        return types.CallToolResult(content=[])

    async def middleware(self, ctx: ServerRequestContext[Any], call_next: CallNext) -> HandlerResult:
        """Answers a handshake-era task-augmented `tools/call` with the `CreateTaskResult`
        that `created` captured. mcp 2.3 shapes every handshake-era `tools/call` result as a
        `CallToolResult` (its 2025-11-25 surface has no tasks) inside the handler chain, and a
        middleware's own result is the one exception (mcp.server.runner)."""
        params = ctx.params
        if (
            ctx.method != "tools/call"
            or ctx.protocol_version in MODERN_PROTOCOL_VERSIONS
            or not isinstance(params, Mapping)
            or not isinstance(params.get("task"), Mapping)
        ):
            return await call_next(ctx)
        result, created = await _CAPTURE.around(partial(call_next, ctx))
        return created if created is not None else result

    # ---- tasks/* ----

    def handlers(self) -> list[tuple[str, type[types.RequestParams], Callable[..., Awaitable[Any]]]]:
        """`(method, params model, handler)` for `Server.add_request_handler`."""
        return [
            ("tasks/get", _TaskParams, self._get),
            ("tasks/cancel", _TaskParams, self._cancel),
            ("tasks/update", _UpdateParams, self._update),
            ("tasks/result", _TaskParams, self._result),
            ("tasks/list", types.PaginatedRequestParams, self._list),
        ]

    def _lookup(self, ctx: ServerRequestContext[Any], method: str, exposed_id: str) -> TaskRoute:
        """The caller's route for `exposed_id`, after the era's gates (module docstring).

        :raises MCPError: -32601 (no such method in this era, or no tasks on this face),
            -32021 (the modern-era request did not declare the extension), -32020 (`Mcp-Name`
            differs from `taskId`), -32602 (not a task of the caller's on this face).
        """
        era: Era = MODERN if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS else HANDSHAKE
        if era == MODERN:
            if method in ("tasks/result", "tasks/list"):
                raise _no_method(method)  # removed by SEP-2663
            if not _declares(ctx):
                raise _missing_extension() if self.offered(MODERN) else _no_method(method)
            request = ctx.request
            if isinstance(request, Request):
                if decode_header_value(request.headers.get(MCP_NAME_HEADER)) != exposed_id:
                    raise MCPError(HEADER_MISMATCH, "Mcp-Name header does not match params.taskId")
        elif method == "tasks/update":
            raise _no_method(method)  # SEP-2663 only
        principal = _principal(ctx)
        route = self._relay.routes.get(principal_key(principal), exposed_id)
        if route is not None and self._reaches(principal, route) and route.era == era:
            return route
        if not self.offered(era):
            raise _no_method(method)
        raise MCPError(INVALID_PARAMS, f"Failed to retrieve task: unknown task {exposed_id!r}", {"taskId": exposed_id})

    def _reaches(self, principal: Principal, route: TaskRoute) -> bool:
        in_scope = self._scope is None or route.route_server == self._scope
        return in_scope and self._relay.access.visible(principal, route.policy_key)

    async def _send(
        self, ctx: ServerRequestContext[Any], route: TaskRoute, method: str, params: dict[str, Any]
    ) -> dict[str, Any]:
        connection = self._relay.fleet.get(route.member)
        if connection is None:
            raise ServerUnavailable(route.member, "not configured", delivered=False)
        timeout = None
        if method == "tasks/result":  # blocks until the task ends: as long as the call may take
            timeout = connection.config.hard_timeout_for(route.original_tool)
        token = CURRENT_CHANNEL.set(self._channel(ctx))
        try:
            return await connection.sender.task_request(
                method, params, timeout_seconds=timeout, max_timeout_seconds=timeout
            )
        finally:
            CURRENT_CHANNEL.reset(token)

    def _answer(self, route: TaskRoute, result: dict[str, Any]) -> dict[str, Any]:
        """A server's `tasks/*` result as the client gets it: ids rewritten, the hop's `_meta`
        stamps dropped, an inlined result over the server's `max_result_bytes` replaced by an
        `isError` result saying so."""
        if "ttl" in result or "ttlMs" in result:
            route.refresh(result.get("ttl", result.get("ttlMs")))
        answer = expose_task_ids(result, route.exposed_id)
        inline = answer.get("result")
        connection = self._relay.fleet.get(route.member)
        if isinstance(inline, dict) and connection is not None:
            answer["result"] = capped_tool_result(inline, route.member, connection.config.max_result_bytes)
        return answer

    async def _get(self, ctx: ServerRequestContext[Any], params: _TaskParams) -> dict[str, Any]:
        route = self._lookup(ctx, "tasks/get", params.task_id)
        return self._answer(route, await self._send(ctx, route, "tasks/get", {"taskId": route.original_id}))

    async def _cancel(self, ctx: ServerRequestContext[Any], params: _TaskParams) -> dict[str, Any]:
        route = self._lookup(ctx, "tasks/cancel", params.task_id)
        result = await self._send(ctx, route, "tasks/cancel", {"taskId": route.original_id})
        logger.info("task %s cancelled by %s", route.exposed_id, route.principal)
        return self._answer(route, result)

    async def _update(self, ctx: ServerRequestContext[Any], params: _UpdateParams) -> dict[str, Any]:
        route = self._lookup(ctx, "tasks/update", params.task_id)
        wire = {"taskId": route.original_id, "inputResponses": params.input_responses}
        return self._answer(route, await self._send(ctx, route, "tasks/update", wire))

    async def _result(self, ctx: ServerRequestContext[Any], params: _TaskParams) -> dict[str, Any]:
        route = self._lookup(ctx, "tasks/result", params.task_id)
        result = await self._send(ctx, route, "tasks/result", {"taskId": route.original_id})
        answer = expose_task_ids(result, route.exposed_id)
        connection = self._relay.fleet.get(route.member)
        return capped_tool_result(answer, route.member, connection.config.max_result_bytes) if connection else answer

    async def _list(self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams) -> dict[str, Any]:
        """2025-11-25 `tasks/list`: the caller's own tasks on this face's servers, as each
        server reports them now, oldest first, in one page (-32602 for any cursor)."""
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            raise _no_method("tasks/list")
        principal = _principal(ctx)
        routes = [
            r
            for r in self._relay.routes.of(principal_key(principal))
            if r.era == HANDSHAKE and self._reaches(principal, r)
        ]
        if not routes and not self.offered(HANDSHAKE):
            raise _no_method("tasks/list")
        if params.cursor is not None:
            raise MCPError(INVALID_PARAMS, "Invalid cursor: this list has a single page", {"cursor": params.cursor})
        by_member: dict[str, list[TaskRoute]] = {}
        for route in routes:
            by_member.setdefault(route.member, []).append(route)
        tasks: list[dict[str, Any]] = []
        for member, owned in by_member.items():
            tasks.extend(await self._member_tasks(ctx, member, owned))
        tasks.sort(key=lambda task: str(task.get("createdAt", "")))
        return {"tasks": tasks}

    async def _member_tasks(
        self, ctx: ServerRequestContext[Any], member: str, routes: list[TaskRoute]
    ) -> list[dict[str, Any]]:
        """The current state of `routes` at one server: its `tasks/list` when it offers one
        (every page, at most 100), else one `tasks/get` each. A server that is down or fails
        contributes nothing (logged)."""
        connection = self._relay.fleet.get(member)
        caps = connection.server_capabilities if connection is not None else None
        if connection is None or caps is None:
            return []
        wanted = {route.original_id: route for route in routes}
        found: dict[str, dict[str, Any]] = {}
        try:
            if caps.tasks is not None and caps.tasks.list is not None:
                cursor: str | None = None
                for _ in range(_MAX_LIST_PAGES):
                    page = await self._send(ctx, routes[0], "tasks/list", {"cursor": cursor} if cursor else {})
                    for task_id, task in _tasks_of(page):
                        if task_id in wanted:
                            found[task_id] = task
                    next_cursor = page.get("nextCursor")
                    cursor = next_cursor if isinstance(next_cursor, str) else None
                    if cursor is None:
                        break
            else:
                for route in routes:
                    try:
                        found[route.original_id] = await self._send(
                            ctx, route, "tasks/get", {"taskId": route.original_id}
                        )
                    except MCPError as exc:
                        if exc.code != INVALID_PARAMS:
                            raise
        except (MCPError, ServerUnavailable) as exc:
            logger.info("tasks/list: server %s not listed: %s", member, exc)
            return []
        # A task the server does not list (expired, deleted, or on another per-client connection
        # of the server) is left out; its route expires with its ttl.
        return [self._answer(wanted[task_id], task) for task_id, task in found.items()]


def _tasks_of(page: Mapping[str, Any]) -> Iterable[tuple[str, dict[str, Any]]]:
    """`(taskId, task)` of each well-formed task of a `tasks/list` page."""
    tasks = page.get("tasks")
    for task in tasks if isinstance(tasks, list) else ():
        if isinstance(task, dict) and isinstance(task_id := task.get("taskId"), str):
            yield task_id, task


def _declares(ctx: ServerRequestContext[Any]) -> bool:
    """Whether the request's client declared the tasks extension (`_meta`, 2026-07-28)."""
    caps = ctx.session.client_capabilities
    return caps is not None and TASKS_EXTENSION in (caps.extensions or {})


def _missing_extension() -> MCPError:
    return MCPError(
        MISSING_REQUIRED_CLIENT_CAPABILITY,
        f"Missing required client capability: the {TASKS_EXTENSION} extension",
        {"requiredCapabilities": {"extensions": {TASKS_EXTENSION: {}}}},
    )


def _no_method(method: str) -> MCPError:
    return MCPError(METHOD_NOT_FOUND, "Method not found", method)


def _principal(ctx: ServerRequestContext[Any]) -> Principal:
    request = ctx.request
    return principal_of(request if isinstance(request, Request) else None)
