"""The fleet: every configured server's connection, each supervised in its own task.

The composition root (`hub.app`) builds one `Fleet` from the config and the router asks it for
the connection that serves a server_id (`get`, or `members` for a server with `replicas:`).
Each connection publishes its listing to the catalog through the fleet (`on_snapshot`), only
while it is the current connection of its server_id; hot reload starts, switches, drains and
stops connections while the fleet runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any

import anyio
import anyio.abc

from adapters import HttpPool
from hub.config import HubConfig, MemberConfig
from hub.federation import Federation
from hub.logs import server_id_var
from hub.push_era import PushingServers
from hub.retry_rules import EventSink
from hub.servers.connection import ServerConnection
from hub.servers.state import ServerSnapshot, ServerState
from hub.startup import StartSlots, StartupGate
from hub.state import new_hub_id

__all__ = ["Fleet"]


class Fleet:
    """Every configured server's connection, each supervised in its own task.

    Use as `async with Fleet(config, on_snapshot=...) as fleet:`; leaving the block stops every
    server (stdio children are shut down as whole process trees).

    `connections` maps each server_id to its *current* connection, the one new requests go to.
    Hot reload changes the fleet while it runs (`start`, `switch`, `drain`, `stop`): a changed
    server gets a new connection that is started beside the old one, switched in once its first
    attempt is over, and the old one is drained (its in-flight requests finish) and then stopped,
    the Envoy drain model. Only the current connection of a server_id publishes to the catalog.

    Start-up (`hub.startup`): `startup` is the gate list requests wait on (every server until
    its first attempt is over, and each server a reload adds until it is switched in);
    `start_slots` bounds how many stdio servers start at once (`max_concurrent_starts`).
    """

    def __init__(
        self,
        config: HubConfig,
        *,
        on_snapshot: Callable[[str, ServerSnapshot | None], Awaitable[None]] | None = None,
        federation: Federation | None = None,
    ) -> None:
        self.pool = HttpPool()
        self.federation = federation or Federation(config.hub_id or new_hub_id(), config.max_federation_depth)
        """This hub's federation state, shared by every connection (the hub passes its `hub_id`)."""
        self.events = EventSink()
        """Breaker, queue and health events of every connection (set `events.target` to wire metrics)."""
        self._on_snapshot = on_snapshot
        self.on_resource_updated: Callable[[str, str], Awaitable[None]] | None = None
        """Given to every connection, including those a reload starts (`resources/updated` relay)."""
        self.on_task_status: Callable[[str, dict[str, Any]], Awaitable[None]] | None = None
        """Given to every connection likewise (task status notifications, `hub.endpoint.tasks`)."""
        self.startup = StartupGate()
        """Servers whose first start attempt is still to come (list requests wait on it)."""
        self.start_slots = StartSlots(config.max_concurrent_starts)
        """How many stdio servers may be starting at once."""
        self.pushing = PushingServers()
        """The servers found to push requests mid-call (`hub.push_era`), shared by every connection."""
        # A server with `replicas` runs one connection per member, keyed `<server_id>/<n>`.
        self.connections: dict[str, ServerConnection] = {
            member_id: self._new_connection(member_id, member)
            for server_id, server in config.servers.items()
            for member_id, member in server.members(server_id)
        }
        for connection in self.connections.values():
            self._gate(connection)
        self._runs: dict[ServerConnection, tuple[anyio.CancelScope, anyio.Event]] = {}
        self._tg: anyio.abc.TaskGroup | None = None

    def _new_connection(self, server_id: str, server: MemberConfig) -> ServerConnection:
        connection = ServerConnection(
            server_id,
            server,
            self.pool,
            events=self.events,
            spawn=self._spawn,
            on_resource_updated=self.on_resource_updated,
            federation=self.federation,
            on_task_status=self.on_task_status,
            start_slots=self.start_slots,
            pushing=self.pushing,
        )

        async def publish(sid: str, snapshot: ServerSnapshot | None) -> None:
            if self._on_snapshot is not None and self.connections.get(sid) is connection:
                await self._on_snapshot(sid, snapshot)

        connection.on_snapshot = publish
        return connection

    def _gate(self, connection: ServerConnection) -> None:
        """Make list requests wait for `connection`'s first attempt (bounded by its start-up timeout)."""
        if connection.config.enabled:
            self.startup.open(connection, connection.server_id, connection.config.startup_timeout_seconds)

    async def __aenter__(self) -> Fleet:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()

        for connection in self.connections.values():
            self._launch(connection)
            self._tg.start_soon(self._ungate_after_first_attempt, connection)
        return self

    async def _ungate_after_first_attempt(self, connection: ServerConnection) -> None:
        try:
            await connection.wait_first_attempt()
        finally:
            self.startup.close(connection)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        try:
            await self._tg.__aexit__(exc_type, exc, tb)
        finally:
            with anyio.CancelScope(shield=True):
                await self.pool.aclose()

    def _spawn(self, fn: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
        """Start a background task in the fleet's task group (`isolation: per_client` connections)."""
        assert self._tg is not None, "the fleet is not running"
        self._tg.start_soon(fn, name=name)

    def _launch(self, connection: ServerConnection) -> None:
        assert self._tg is not None, "the fleet is not running"
        scope, done = anyio.CancelScope(), anyio.Event()
        self._runs[connection] = (scope, done)

        async def supervise() -> None:
            server_id_var.set(connection.server_id)
            try:
                with scope:
                    await connection.run()
            finally:
                self._runs.pop(connection, None)
                self.startup.close(connection)
                done.set()

        self._tg.start_soon(supervise, name=f"server {connection.server_id}")

    async def wait_first_attempts(self, timeout_seconds: float | None = None) -> None:
        """Wait until every current server has connected or failed once (bounded by
        `timeout_seconds`); see also `startup.wait_settled()`, which includes servers a reload
        is adding."""
        with anyio.move_on_after(timeout_seconds):
            for connection in self.connections.values():
                await connection.wait_first_attempt()

    def get(self, server_id: str) -> ServerConnection | None:
        return self.connections.get(server_id)

    def release_client(self, client_key: str) -> None:
        """A client session ended: close the `isolation: per_client` connections dedicated to it."""
        for connection in self.connections.values():
            connection.release_client(client_key)

    def members(self, server_id: str) -> list[ServerConnection]:
        """The connections serving logical `server_id`: itself, or its replica members
        (`<server_id>/1`, `<server_id>/2`, ...) in member order; empty when not configured."""
        connection = self.connections.get(server_id)
        if connection is not None:
            return [connection]
        prefix = f"{server_id}/"
        found = [(key, c) for key, c in self.connections.items() if key.startswith(prefix)]
        return [c for _, c in sorted(found, key=lambda item: int(item[0].rpartition("/")[2]))]

    async def start(self, server_id: str, server: MemberConfig, *, gate: bool = False) -> ServerConnection:
        """Start a connection for `server` beside the current one (if any), without routing to
        it, and return it once its first attempt has succeeded or failed (bounded by the
        server's `startup_timeout_seconds` plus `timeout_seconds` for the listing; a stdio
        server still waiting for a start slot then is switched in while it starts).

        :param gate: list requests wait for it until it is switched in (`switch`) or stopped
            (a server a reload adds: clients must not list the catalog without it).
        :raises RuntimeError: the fleet is not running.
        """
        if self._tg is None:
            raise RuntimeError("the fleet is not running")
        connection = self._new_connection(server_id, server)
        self.pushing.forget(server_id)  # a changed entry may be a changed server
        if gate:
            self._gate(connection)
        try:
            self._launch(connection)
            with anyio.move_on_after(server.startup_timeout_seconds + server.timeout_seconds + 1.0):
                await connection.wait_first_attempt()
        except BaseException:
            self.startup.close(connection)
            raise
        return connection

    async def switch(self, server_id: str, connection: ServerConnection | None) -> ServerConnection | None:
        """Make `connection` the current one for `server_id` (None: remove the server) and
        publish its listing (or nothing) to the catalog; return the previous connection, which
        keeps serving its in-flight requests until it is drained and stopped."""
        previous = self.connections.pop(server_id, None)
        if connection is not None:
            self.connections[server_id] = connection
        try:
            if self._on_snapshot is not None:
                ready = connection is not None and connection.state is ServerState.READY
                await self._on_snapshot(server_id, connection.snapshot if ready and connection else None)
        finally:
            if connection is not None:
                self.startup.close(connection)
        return previous

    async def drain(self, connection: ServerConnection, timeout_seconds: float) -> bool:
        """Wait until `connection` has no request in flight and none waiting for one of its
        concurrency slots, at most `timeout_seconds`; True when it drained, False when the
        timeout ran out first."""
        limiter = connection.limiter
        with anyio.move_on_after(timeout_seconds):
            # A request holds or awaits a slot before it is sent (`in_flight`): both must be over.
            while connection.in_flight or not limiter.idle:
                await connection.wait_no_calls()
                await limiter.wait_idle()
            return True
        return False

    async def stop(self, connection: ServerConnection, timeout_seconds: float = 10.0) -> None:
        """Cancel `connection`'s supervising task and wait (at most `timeout_seconds`) until it
        has shut down (a stdio child and its process group are gone)."""
        self.startup.close(connection)
        run = self._runs.get(connection)
        if run is None:
            return
        scope, done = run
        scope.cancel()
        with anyio.move_on_after(timeout_seconds):
            await done.wait()
