"""Health: whether a connected server still answers, checked while it is idle.

Requests tell how a busy server is doing (the router records their outcomes in the
connection's circuit breaker); an idle one is checked every `health_check_interval_seconds`
by `HealthMonitor.loop`, which the supervisor runs beside the connection, and an open circuit
is probed as soon as its cool-down is over so it can close without client traffic. A check's
verdict goes to the breaker and to `health_failures`, which make the connection's reported
state `degraded` or `open` (`ServerConnection.health_state`).

A broken HTTP exchange asks for a check at once (`check_soon`); a check whose own exchange
broke too (a server still dying answers neither, yet still takes connections) is repeated after
`RECHECK_BACKOFF` (1 s, 2 s, 4 s, ... never past the interval) until one connects or answers,
instead of at the next interval.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Final

import anyio
from mcp import Client, MCPError
from mcp_types import INTERNAL_ERROR, METHOD_NOT_FOUND, REQUEST_TIMEOUT
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from tenacity import AsyncRetrying, RetryCallState, wait_exponential

from hub.admission import BreakerState
from hub.servers.failures import SERVER_EXCHANGE_ERRORS, Breakage, classify

if TYPE_CHECKING:
    from hub.servers.connection import ServerConnection

__all__ = ["RECHECK_BACKOFF", "HealthMonitor"]

RECHECK_BACKOFF: Final = wait_exponential(multiplier=1.0)
"""The wait before the next check after n checks in a row whose own exchange broke, as a tenacity
wait strategy (`attempt_number` n): 1 s, 2 s, 4 s, ..., cut to the check interval."""
_RECHECK_RETRYING: Final = AsyncRetrying(wait=RECHECK_BACKOFF)
"""Only the owner of the retry states handed to `RECHECK_BACKOFF`."""

# One logger for the whole package: operators and tests filter on "hub.servers".
logger = logging.getLogger("hub.servers")


class HealthMonitor:
    """Checks `connection`'s server (`connection.health`)."""

    def __init__(self, connection: ServerConnection) -> None:
        self.connection = connection
        self._soon_requested = False
        self._soon: anyio.Event | None = None
        self._recheck_at: float | None = None
        """When the last check's own exchange broke: the time of the next check."""
        self._broken_checks = 0
        """Checks in a row whose own exchange broke."""

    def check_soon(self) -> None:
        """Check now rather than at the next interval (one HTTP exchange with the server broke:
        `hub.servers.failures`): a server that is gone is found so at once (the check cannot
        connect, the transport ends, the supervisor reconnects), one still there passes."""
        self._soon_requested = True
        if self._soon is not None:
            self._soon.set()

    async def loop(self, client: Client) -> None:
        """While connected: check health when idle for `health_check_interval_seconds`, at once
        when `check_soon` asks, and probe an open circuit as soon as its cool-down is over (so it
        can close without waiting for client traffic)."""
        connection = self.connection
        breaker = connection.breaker
        interval = connection.config.health_check_interval_seconds
        if interval <= 0:
            return
        connection._last_answer = time.monotonic()
        self._soon = anyio.Event()
        while True:
            if self._soon_requested:
                self._soon_requested, self._soon = False, anyio.Event()
                await self.check(client)
                continue
            now = time.monotonic()
            if self._recheck_at is not None:
                if self._recheck_at <= now:
                    await self.check(client)
                    continue
                wait = min(connection._last_answer + interval, self._recheck_at) - now
            else:
                wait = connection._last_answer + interval - now
            if breaker.state is BreakerState.OPEN:
                wait = min(wait, breaker.retry_in_seconds)
            if wait > 0:
                with anyio.move_on_after(wait):
                    await self._soon.wait()
                continue
            if breaker.state is BreakerState.CLOSED:
                if connection.in_flight:  # not idle: its requests tell how it is doing
                    connection._last_answer = time.monotonic()
                    continue
                await self.check(client)
            elif breaker.allow():
                await self.check(client)
            else:
                await anyio.sleep(min(interval, 1.0))  # a call is probing the circuit right now

    def _recheck_delay(self, broken_checks: int) -> float:
        """Seconds to the next check after `broken_checks` (>= 1) broken ones in a row: one draw
        of `RECHECK_BACKOFF`, at most the check interval."""
        state = RetryCallState(_RECHECK_RETRYING, fn=None, args=(), kwargs={})
        state.attempt_number = broken_checks
        return min(RECHECK_BACKOFF(state), self.connection.config.health_check_interval_seconds)

    async def check(self, client: Client | None = None) -> bool:
        """One health check: `ping` in the handshake era (a `tools/list` page when the server
        does not know ping), one `tools/list` page in the modern era (ping is gone in
        2026-07-28). Bounded by `timeout_seconds`; the verdict goes to the breaker and
        `health_failures`. Returns whether the server answered."""
        connection = self.connection
        client = client or connection._client
        if client is None:
            return False
        ok = True
        lost: int | None = None  # the generation whose loss failed the check, if it was lost
        generation = connection.generation
        broken = False  # the check's own exchange broke (`Breakage.REQUEST_FAILED`)
        try:
            with anyio.fail_after(connection.config.timeout_seconds):
                if client.protocol_version in MODERN_PROTOCOL_VERSIONS:
                    await client.list_tools()
                else:
                    try:
                        await client.session.send_ping()
                    except MCPError as exc:
                        if exc.code != METHOD_NOT_FOUND:
                            raise
                        await client.list_tools()
        except (*SERVER_EXCHANGE_ERRORS, TimeoutError) as exc:
            breakage = classify(exc)
            if isinstance(exc, MCPError) and breakage is Breakage.ANSWERED:
                # An error answer fails the check only when it says the server is in trouble.
                ok = exc.code not in (REQUEST_TIMEOUT, INTERNAL_ERROR)
            else:
                ok = False
            lost = generation if breakage in (Breakage.CLOSED, Breakage.BROKEN, Breakage.REQUEST_FAILED) else None
            broken = breakage is Breakage.REQUEST_FAILED
        self._broken_checks = self._broken_checks + 1 if broken else 0
        self._recheck_at = time.monotonic() + self._recheck_delay(self._broken_checks) if broken else None
        connection._last_answer = time.monotonic()
        if ok:
            connection.health_failures = 0
            connection.breaker.record_success()
        else:
            connection.health_failures += 1
            connection.breaker.record_failure(lost)
            logger.warning(
                "server %s: health check failed (%d in a row)", connection.server_id, connection.health_failures
            )
        connection.events.emit("on_health_check", connection.server_id, ok)
        connection.changes.notify()  # its health state may have changed (`Hub.wait_for_server`)
        return ok
