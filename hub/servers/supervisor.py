"""Supervision: connect, list, serve, and reconnect when the connection fails or breaks.

Each `ServerConnection` runs `Supervisor.run` in a task of its own (`Fleet` starts them, or the
shared connection starts a clone: `isolation.Clones`), so one server failing to start, crashing
or hanging never cancels or delays another (SDK-NOTES.md section 7, gotcha 1: a broken
Streamable HTTP transport cancels the task that entered the `Client`, so that task must be the
connection's own supervisor and nothing else).

One attempt (`_connect_and_serve`): a stdio server waits for a start slot, the transport comes
from the link (`transport.ServerLink`), the SDK `Client` does the handshake within
`startup_timeout_seconds`, with the inbox's callbacks (`inbox.Inbox`); then `_serve` lists
(`listing.Lister`), goes ready, and re-lists on change or expiry while the health monitor
(`health.HealthMonitor`) checks an idle server, until the connection closes or a restart is
asked for. Between attempts: jittered exponential backoff (`RECONNECT_BACKOFF`, a tenacity wait
strategy), cut short by a restart request, and the crash-loop cap for stdio.

Life of a connection::

    starting --connected and listed--> ready --connection lost--> restarting --> ready ...
        \\--could not start--> failed (retrying with backoff) --> ready
    stdio: more than max_restarts exits within restart_window_seconds --> failed (crash loop:
        no more restarts) --restart() / reload--> restarting --> ready
    any --Fleet stops--> stopped
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import anyio
from mcp import Client
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from tenacity import AsyncRetrying, RetryCallState, wait_exponential, wait_random_exponential

from adapters import watch_closed
from hub.config import StdioServer
from hub.errors import ServerProtocolError, ServerUnavailable
from hub.federation import Advertisement, inbound_chain, looping_server
from hub.launch import CannotLaunch
from hub.logs import counted
from hub.retry_rules import track_delivery
from hub.servers.inbox import forward_client_capabilities
from hub.servers.isolation import LEGACY_ERA_KEY
from hub.servers.state import ServerState, new_generation
from hub.task_wire import TasksClientExtension

if TYPE_CHECKING:
    from hub.servers.connection import ServerConnection

__all__ = [
    "BACKOFF_INITIAL_SECONDS",
    "BACKOFF_MAX_SECONDS",
    "RECONNECT_BACKOFF",
    "Supervisor",
    "reconnect_delay_seconds",
]

# One logger for the whole package: operators and tests filter on "hub.servers".
logger = logging.getLogger("hub.servers")

BACKOFF_INITIAL_SECONDS: Final = 0.5
"""Seconds of the reconnect backoff's ceiling after the first failure (before jitter)."""
BACKOFF_MAX_SECONDS: Final = 30.0
"""Seconds: the ceiling stops doubling here."""

RECONNECT_BACKOFF: Final = wait_exponential(
    multiplier=BACKOFF_INITIAL_SECONDS / 2, max=BACKOFF_MAX_SECONDS / 2
) + wait_random_exponential(multiplier=BACKOFF_INITIAL_SECONDS / 2, max=BACKOFF_MAX_SECONDS / 2)
"""The wait before reconnect attempt n+1 after n consecutive failures, as a tenacity wait strategy
(called with a `RetryCallState` whose `attempt_number` is n): "equal jitter", half the ceiling
fixed plus a random part of up to the other half, so a delay is uniform in [c/2, c] where the
ceiling c = min(`BACKOFF_MAX_SECONDS`, `BACKOFF_INITIAL_SECONDS` x 2^(n-1)): 0.25-0.5 s, 0.5-1 s,
1-2 s, ... 15-30 s. (tenacity's `wait_random_exponential` alone is "full jitter", [0, c]: it could
reconnect to a crashing server at once.)"""

_BACKOFF_RETRYING: Final = AsyncRetrying(wait=RECONNECT_BACKOFF)
"""Only the owner of the retry states `reconnect_delay_seconds` hands to `RECONNECT_BACKOFF`."""


def reconnect_delay_seconds(failures: int) -> float:
    """Seconds to wait before the next connection attempt after `failures` (>= 1) consecutive
    failed ones: one draw of `RECONNECT_BACKOFF`."""
    state = RetryCallState(_BACKOFF_RETRYING, fn=None, args=(), kwargs={})
    state.attempt_number = failures
    return RECONNECT_BACKOFF(state)


_MODERN: Final = MODERN_PROTOCOL_VERSIONS[-1]


class Supervisor:
    """Runs `connection` (`connection.supervisor`)."""

    def __init__(self, connection: ServerConnection) -> None:
        self.connection = connection
        self.restart_requested = anyio.Event()
        """Set by `ServerConnection.restart()`; the supervisor restarts the connection."""

    async def run(self) -> None:
        """Supervise the connection until cancelled: connect, list, serve, and reconnect with
        jittered exponential backoff (`RECONNECT_BACKOFF`: 0.5 s doubling to 30 s, times a random
        0.5-1) whenever it fails or breaks; a failure after the connection had been ready starts
        the backoff afresh, and `restart()` cuts a wait short.

        A stdio server that exits more than `max_restarts` times within `restart_window_seconds`
        is in a crash loop: it stays `failed` (no more restarts) until `restart()` is called
        (`mcphub restart <server_id>`, POST /admin/servers/<server_id>/restart, or a reload).
        One that cannot be launched at all (`CannotLaunch`: command not found, not executable,
        bad cwd) is a configuration problem: it is `failed` at once, without retries, until the
        same. Remote servers are reconnected without a cap (the remote side may come back)."""
        connection = self.connection
        config = connection.config
        if not config.enabled:
            connection.lifecycle.enter(ServerState.DISABLED)
            connection.lifecycle.first_attempt_over()
            return
        failures = 0
        exits: deque[float] = deque()
        inbound_chain.set(())  # a per-client connection is started from a client's request
        try:
            while True:
                was_ready = requested = cannot_launch = False
                loop = None
                try:
                    await self._connect_and_serve()
                    requested = True  # it only returns when `restart()` was called
                except Exception as exc:
                    # A connection that had been ready starts the backoff afresh.
                    was_ready = connection.state is ServerState.READY
                    failures = 1 if was_ready else failures + 1
                    cannot_launch = isinstance(exc, CannotLaunch)
                    loop = looping_server(connection.server_id, exc)
                    link = connection.link
                    connection.last_error = link.redact(loop.message) if loop else link.explain(exc)
                    if not cannot_launch:
                        logger.warning("server %s: %s", connection.server_id, connection.last_error)
                    logger.debug("server %s failure detail", connection.server_id, exc_info=exc)
                finally:
                    connection._client = None
                    if connection.federation is not None:
                        connection.federation.forget(connection)
                    await connection.lister.publish(None)
                if requested or self.restart_requested.is_set():
                    connection.lifecycle.first_attempt_over()
                    failures = self._take_restart_request(exits)
                    connection.restarts += 1
                    connection.lifecycle.enter(ServerState.RESTARTING)
                    continue
                now = time.monotonic()
                if loop is None:
                    exits.append(now)
                # Only a stdio server has a crash-loop cap; a remote one is reconnected with backoff.
                stdio = config if isinstance(config, StdioServer) else None
                while exits and (stdio is None or exits[0] < now - stdio.restart_window_seconds):
                    exits.popleft()
                crash_loop = stdio is not None and len(exits) > stdio.max_restarts
                # A federation loop is held like a crash loop: retrying would only loop again.
                if cannot_launch or loop is not None or crash_loop:
                    if stdio is not None and crash_loop and not cannot_launch and loop is None:
                        connection.last_error = (
                            f"crash loop: exited {len(exits)} times within {stdio.restart_window_seconds:g} s"
                            f" (max_restarts {stdio.max_restarts}); not restarting until a reload or"
                            f" `mcphub restart {connection.server_id}`; last failure: {connection.last_error}"
                        )
                    elif cannot_launch:
                        connection.last_error = (
                            f"{connection.last_error}; not retrying: fix the config, then reload or"
                            f" `mcphub restart {connection.server_id}`"
                        )
                    # A crash loop or a federation loop is news; a command that cannot launch is a
                    # config to fix (a warning).
                    logger.log(
                        logging.WARNING if cannot_launch else logging.ERROR,
                        "server %s: %s",
                        connection.server_id,
                        connection.last_error,
                    )
                    connection.crash_looped = not cannot_launch
                    connection.awaiting_restart = True
                    connection.lifecycle.enter(ServerState.FAILED)
                    connection.lifecycle.first_attempt_over()
                    await self.restart_requested.wait()
                    connection.crash_looped = connection.awaiting_restart = False
                else:
                    connection.lifecycle.enter(ServerState.RESTARTING if was_ready else ServerState.FAILED)
                    connection.lifecycle.first_attempt_over()
                    with anyio.move_on_after(reconnect_delay_seconds(max(1, failures))):
                        await self.restart_requested.wait()
                if self.restart_requested.is_set():
                    failures = self._take_restart_request(exits)
                connection.restarts += 1
                connection.lifecycle.enter(ServerState.RESTARTING)
        finally:
            connection._client = None
            connection.lifecycle.enter(ServerState.STOPPED)
            connection.lifecycle.first_attempt_over()

    def _take_restart_request(self, exits: deque[float]) -> int:
        """A restart was asked for (`restart()`): log it, forget the crash-loop history in
        `exits`, re-arm the request event. Returns the new count of consecutive failures (0)."""
        logger.info("server %s: restart requested", self.connection.server_id)
        exits.clear()
        self.restart_requested = anyio.Event()
        return 0

    async def _connect_and_serve(self) -> None:
        """One connection attempt, then serving until the connection ends. A stdio server first
        waits for a start slot (`start_slots`); `startup_timeout_seconds` counts from when it
        has one, and the slot is given back once the handshake is done.

        :raises CannotLaunch: a stdio command that cannot be started (before any slot is taken).
        """
        connection = self.connection
        connection.link.starting()
        closed = anyio.Event()
        config = connection.config
        # The handshake-era connection of `protocol: both` (or of a server found to push), and
        # the per-client connections of a server found to push, speak the handshake era.
        legacy = config.protocol == "legacy" or connection.client_key == LEGACY_ERA_KEY
        mode = (
            "legacy"
            if legacy or (connection.client_key is not None and connection.pushes_over_handshake_era)
            else "auto"
        )
        transport = watch_closed(connection.link.transport(), closed)
        slots = connection.start_slots if config.kind == "stdio" else None
        slot: contextlib.AbstractAsyncContextManager[Callable[[], None]] = (
            slots.hold(connection.server_id) if slots is not None else contextlib.nullcontext(_no_release)
        )
        federation = connection.federation
        inbox = connection.inbox
        client = Client(
            track_delivery(federation.stamp(transport) if federation is not None else transport),
            mode=mode,
            # Requests are bounded one by one (`calls.Sender`, listing); the handshake is bounded by
            # startup_timeout_seconds, so a slow-starting server is not cut off by a short timeout.
            read_timeout_seconds=None,
            message_handler=inbox.on_message,
            sampling_callback=inbox.on_sampling,
            elicitation_callback=inbox.on_elicitation,
            list_roots_callback=inbox.on_list_roots,
            cache=None,
            extensions=[TasksClientExtension(inbox.on_task_status)],
        )
        # The transport's task group must be entered and left in this task, nested in order, so
        # the connect deadline is a scope around the whole session, lifted once connected.
        async with slot as release_slot:
            with anyio.CancelScope(deadline=anyio.current_time() + config.startup_timeout_seconds) as connect_scope:
                async with client:
                    connect_scope.deadline = math.inf
                    release_slot()
                    await self._serve(client, closed)
        if connect_scope.cancelled_caught:
            raise ServerUnavailable(connection.server_id, f"did not start within {config.startup_timeout_seconds:g} s")

    async def _serve(self, client: Client, closed: anyio.Event) -> None:
        """List everything, go ready, then re-list on every change, and whenever the lists
        expire (`relist_at`), until the connection closes."""
        connection = self.connection
        config = connection.config
        lister = connection.lister
        try:
            modern_required = config.protocol == "modern" or (
                config.protocol == "both" and connection.client_key is None
            )
            if modern_required and client.protocol_version not in MODERN_PROTOCOL_VERSIONS:
                raise ServerProtocolError(connection.server_id, f"speaks {client.protocol_version}, not {_MODERN}")
            connection.protocol_version = client.protocol_version
            connection.generation = new_generation()
            if client.protocol_version in MODERN_PROTOCOL_VERSIONS:
                forward_client_capabilities(client)
            if connection.federation is not None:  # before the first listing: see hub.federation on the race
                advertised = Advertisement.found_in(client.server_capabilities.experimental)
                await connection.federation.admit(connection, connection.server_id, advertised)
            lister.refresh = anyio.Event()
            await lister.publish(await lister.list_everything(client))
            connection._client = client
            if client.protocol_version not in MODERN_PROTOCOL_VERSIONS:
                await connection.session_state.restore(client)
            connection.last_error = None
            # A fresh process or session that completed its handshake and listing serves at
            # once: failures of the connection before it say nothing about this one.
            connection.breaker.reset()
            connection.health_failures = 0
            connection.lifecycle.enter(ServerState.READY)
            connection.lifecycle.first_attempt_over()
            snapshot = connection.snapshot
            logger.info(
                "server %s ready (%s, %s): %s, %s, %s, %s",
                connection.server_id,
                config.kind,
                connection.protocol_version,
                counted(len(snapshot.tools), "tool"),
                counted(len(snapshot.resources), "resource"),
                counted(len(snapshot.resource_templates), "resource template"),
                counted(len(snapshot.prompts), "prompt"),
            )
            async with anyio.create_task_group() as tg:
                if client.protocol_version in MODERN_PROTOCOL_VERSIONS:
                    tg.start_soon(lister.listen_for_changes, client)
                tg.start_soon(connection.health.loop, client)
                while not closed.is_set():
                    # While a burst of list_changed is being debounced, its re-list is the one
                    # to wait for: an expiry meanwhile would only add a second re-list.
                    expires = connection.relist_at if lister.relist_methods is None else None
                    with anyio.CancelScope(deadline=math.inf if expires is None else expires) as expiry:
                        await _wait_any(closed, lister.refresh, self.restart_requested)
                    if self.restart_requested.is_set():
                        break  # `run` restarts the connection
                    expired = expiry.cancelled_caught and not lister.refresh.is_set() and lister.relist_methods is None
                    if (expired or lister.refresh.is_set()) and not closed.is_set():
                        lister.refresh = anyio.Event()
                        await lister.relist(client, expired=expired)
                tg.cancel_scope.cancel()
            if self.restart_requested.is_set() and not closed.is_set():
                return
            raise ServerUnavailable(connection.server_id, "the connection closed (the server exited or hung up)")
        finally:
            connection._client = None
            connection.relist_at = None


def _no_release() -> None:
    """The slot release of a start that holds no slot (remote servers)."""


async def _wait_any(*events: anyio.Event) -> None:
    async with anyio.create_task_group() as tg:

        async def wait_one(event: anyio.Event) -> None:
            await event.wait()
            tg.cancel_scope.cancel()

        for event in events:
            tg.start_soon(wait_one, event)
