"""Applying a reload's plan to the running hub: which connections start, switch, drain and stop.

`hub.reload.plan_reload` says what a new config changes; `Hub.reload` (hub.app) loads the
config, takes the reload lock and reports; `ReloadApplication` does the work in between, one
task per changed server, all at once:

- **added**: its per-server face (`/servers/<id>/mcp`) starts, then a connection per member;
  list requests wait for their first attempts (`gate`), then they are switched in;
- **replaced** (any difference in its entry): new connections start beside the old ones, the
  catalog takes the new entry, the members are switched to the new connections, and the old
  ones are drained (their in-flight requests finish, at most `drain_timeout_seconds`) and
  stopped;
- **removed**: it leaves the catalog at once, its connections are switched away, drained and
  stopped, and its per-server face is closed.

The report gets each drain's duration (`drain_seconds`), the servers stopped with requests
still in flight (`drain_timed_out`) and the state of every new connection (`states`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Protocol

import anyio

from hub.catalog import Catalog
from hub.config import HubConfig, MemberConfig, ServerEntry
from hub.logs import counted
from hub.reload import ReloadReport
from hub.servers import Fleet, ServerConnection

__all__ = ["ReloadApplication", "ServerFaces"]

logger = logging.getLogger(__name__)


class ServerFaces(Protocol):
    """The per-server faces a reload adds and removes (the endpoint's)."""

    async def add_server_face(self, server_id: str) -> None: ...

    def remove_server_face(self, server_id: str) -> None: ...


@dataclass
class ReloadApplication:
    """One reload's plan (`report.plan`) from config `old` to `new`, applied by `run()`."""

    old: HubConfig
    new: HubConfig
    report: ReloadReport
    fleet: Fleet
    catalog: Catalog
    faces: ServerFaces
    entries: dict[str, ServerEntry] = field(init=False)
    """The catalog's entries: removed servers leave at once; replaced ones keep their old entry
    until their new connections are switched in."""

    def __post_init__(self) -> None:
        replaced = self.report.plan.replaced
        self.entries = {
            sid: (self.old.servers[sid] if sid in replaced else server) for sid, server in self.new.servers.items()
        }

    async def run(self) -> None:
        """Apply the plan: every added, replaced and removed server at once; returns when all
        old connections are drained and stopped."""
        plan = self.report.plan
        await self.catalog.reconfigure(self.entries)
        async with anyio.create_task_group() as tg:
            for server_id in plan.added:
                tg.start_soon(self._add, server_id)
            for server_id in plan.replaced:
                tg.start_soon(self._replace, server_id)
            for server_id in plan.removed:
                tg.start_soon(self._remove, server_id)

    async def _add(self, server_id: str) -> None:
        await self.faces.add_server_face(server_id)
        await self._switch_and_retire(server_id, await self._start_members(server_id, gate=True))

    async def _replace(self, server_id: str) -> None:
        started = await self._start_members(server_id)
        self.entries[server_id] = self.new.servers[server_id]
        await self.catalog.reconfigure(self.entries)
        await self._switch_and_retire(server_id, started)

    async def _remove(self, server_id: str) -> None:
        await self._switch_and_retire(server_id, {})
        self.faces.remove_server_face(server_id)

    async def _start_members(self, server_id: str, *, gate: bool = False) -> dict[str, ServerConnection]:
        """A new connection per member (the server itself, or each replica), started at once;
        with `gate`, list requests wait for it until it is switched in (an added server)."""
        started: dict[str, ServerConnection] = {}

        async def start_one(member_id: str, member: MemberConfig) -> None:
            started[member_id] = await self.fleet.start(member_id, member, gate=gate)

        async with anyio.create_task_group() as tg:
            for member_id, member in self.new.servers[server_id].members(server_id):
                tg.start_soon(start_one, member_id, member)
        self.report.states.update({member_id: c.state.value for member_id, c in sorted(started.items())})
        return started

    async def _switch_and_retire(self, server_id: str, started: dict[str, ServerConnection]) -> None:
        """Switch every member to its new connection (or away), then drain and stop the old."""
        old_entry = self.old.servers.get(server_id)
        old_members = [member_id for member_id, _ in old_entry.members(server_id)] if old_entry is not None else []
        switched_at = time.monotonic()
        previous: list[ServerConnection] = []
        for member_id in [*started, *(m for m in old_members if m not in started)]:
            replaced = await self.fleet.switch(member_id, started.get(member_id))
            if replaced is not None:
                previous.append(replaced)
        async with anyio.create_task_group() as tg:
            for connection in previous:
                tg.start_soon(self._retire, connection, switched_at)

    async def _retire(self, connection: ServerConnection, switched_at: float) -> None:
        drain_timeout = self.new.drain_timeout_seconds
        drained = await self.fleet.drain(connection, drain_timeout)
        self.report.drain_seconds[connection.server_id] = round(time.monotonic() - switched_at, 3)
        if not drained:
            self.report.drain_timed_out.append(connection.server_id)
            logger.warning(
                "reload: server %s still had %s in flight after %g s; stopping it anyway",
                connection.server_id,
                counted(connection.in_flight, "request"),
                drain_timeout,
            )
        await self.fleet.stop(connection)
