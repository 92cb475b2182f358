"""What may go to a server, and how much: the circuit breaker (per server connection), the retry
budget (per logical server) and the concurrency limiter (per server connection). Pure state
machines over a clock and counters, no I/O; the rules they serve are in `hub.retry_rules` and
`hub.router`.
"""

from __future__ import annotations

import contextlib
import enum
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Final

import anyio

from hub.config import BreakerConfig
from hub.errors import ServerUnavailable
from hub.signals import Changes

__all__ = ["BreakerState", "CircuitBreaker", "ConcurrencyLimiter", "RetryBudget", "ServerRejected"]


class ServerRejected(ServerUnavailable):
    """The hub refused to send a request to a server: its circuit is open or its queue is full.

    Never delivered (`delivered` is False), so another replica or fallback may take the request
    at once; but it is not retried on the same server after a backoff: the refusal is there to
    fail fast and shed load.
    """

    def __init__(self, server_id: str, message: str) -> None:
        super().__init__(server_id, message, delivered=False)


# ---------------------------------------------------------------- circuit breaker

_LOST_GENERATIONS_KEPT: Final = 16
"""Lost connection generations a breaker remembers (a late failure of one of them is not counted again)."""


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Per-member circuit breaker (thresholds in `BreakerConfig`).

    `allow()` before each request; `record_success()` when the server answered (any answer,
    including a JSON-RPC error other than -32603 and an `isError` result); `record_failure()`
    on a timeout, a broken connection or -32603; `release()` when an admitted request was not
    delivered after all (no verdict); `reset()` when the server connection was re-established
    (a fresh process or session that completed its handshake starts with a closed circuit).

    A lost connection fails every request in flight on it at once: those failures share the
    connection's generation (`record_failure(lost_generation=...)`) and count as one, so a
    single crash with many concurrent calls does not open the circuit.

    :param on_change: called with the new state on every transition.
    :param clock: seconds, monotonic. Default: `time.monotonic`.
    """

    def __init__(
        self,
        config: BreakerConfig,
        on_change: Callable[[BreakerState], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._on_change = on_change
        self._clock = clock
        self.state = BreakerState.CLOSED
        self.consecutive_failures = 0
        self.opens = 0
        """Times the circuit has opened (for status)."""
        self.cooldown_seconds = config.cooldown_seconds
        self._open_until = 0.0
        self._probe_in_flight = False
        self._lost: deque[int] = deque(maxlen=_LOST_GENERATIONS_KEPT)

    def _set(self, state: BreakerState) -> None:
        if state is not self.state:
            self.state = state
            if self._on_change is not None:
                self._on_change(state)

    @property
    def retry_in_seconds(self) -> float:
        """Seconds until an open circuit lets a probe through (0 when not open)."""
        return max(0.0, self._open_until - self._clock()) if self.state is BreakerState.OPEN else 0.0

    def would_allow(self) -> bool:
        """Whether `allow()` would admit a request now (no state change)."""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN:
            return self._clock() >= self._open_until
        return not self._probe_in_flight

    def allow(self) -> bool:
        """Admit a request: always when closed; when open, one probe once the cool-down is over
        (the circuit goes half-open); when half-open, none while the probe is in flight."""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN and self._clock() >= self._open_until:
            self._set(BreakerState.HALF_OPEN)
        if self.state is BreakerState.HALF_OPEN and not self._probe_in_flight:
            self._probe_in_flight = True
            return True
        return False

    def record_success(self) -> None:
        self.consecutive_failures = 0
        self._probe_in_flight = False
        if self.state is not BreakerState.CLOSED:
            self.cooldown_seconds = self._config.cooldown_seconds
            self._set(BreakerState.CLOSED)

    def record_failure(self, lost_generation: int | None = None) -> None:
        """Count one failure. `lost_generation`: the failure is the loss of that generation of
        the server connection (`ServerConnection.generation`); it counts only the first time."""
        if lost_generation is not None:
            if lost_generation in self._lost:
                self._probe_in_flight = False
                return
            self._lost.append(lost_generation)
        self.consecutive_failures += 1
        if self.state is BreakerState.HALF_OPEN:
            self._probe_in_flight = False
            self.cooldown_seconds = min(self._config.cooldown_max_seconds, self.cooldown_seconds * 2)
            self._open()
        elif self.state is BreakerState.CLOSED and self.consecutive_failures >= self._config.failures:
            self._open()

    def release(self) -> None:
        """An admitted request was never delivered: no verdict (a half-open probe slot frees)."""
        self._probe_in_flight = False

    def reset(self) -> None:
        """Close the circuit and forget the failures (the connection was re-established)."""
        self.consecutive_failures = 0
        self._probe_in_flight = False
        self.cooldown_seconds = self._config.cooldown_seconds
        self._set(BreakerState.CLOSED)

    def _open(self) -> None:
        self.opens += 1
        self._open_until = self._clock() + self.cooldown_seconds
        self._set(BreakerState.OPEN)


# ---------------------------------------------------------------- retry budget


class RetryBudget:
    """Envoy's retry budget for one logical server: retries in flight <= max(`minimum`,
    `ratio` x active calls). A retry holds its token from the moment it is granted (through its
    backoff) until its round ends."""

    def __init__(self, ratio: float, minimum: int) -> None:
        self.ratio = ratio
        self.minimum = minimum
        self.active = 0
        self.retries = 0
        self.peak_retries = 0
        """Most retries ever in flight at once (status, tests)."""

    @contextlib.contextmanager
    def call(self) -> Iterator[None]:
        """Count one client request as active for the duration of the block."""
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1

    def allowed(self) -> int:
        return max(self.minimum, math.floor(self.ratio * self.active))

    def try_acquire(self) -> bool:
        """Take a retry token if the budget allows; False otherwise."""
        if self.retries >= self.allowed():
            return False
        self.retries += 1
        self.peak_retries = max(self.peak_retries, self.retries)
        return True

    def release(self) -> None:
        self.retries -= 1


# ---------------------------------------------------------------- concurrency limiter


class ConcurrencyLimiter:
    """At most `max_concurrency` requests in flight to one member and at most `max_queue`
    waiting for a slot (FIFO); one more fails fast. `wait_idle()` returns once no slot is in use
    and none is awaited (a drain waits on it).

    :param on_depth: called with the new queue depth whenever it changes.
    :param on_rejected: called each time a request is refused (queue full, or no slot in time).
    """

    def __init__(
        self,
        server_id: str,
        max_concurrency: int,
        max_queue: int,
        on_depth: Callable[[int], None] | None = None,
        on_rejected: Callable[[], None] | None = None,
    ) -> None:
        self.server_id = server_id
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self._semaphore = anyio.Semaphore(max_concurrency)
        self._on_depth = on_depth
        self._on_rejected = on_rejected
        self.waiting = 0
        self.changes = Changes()
        """Notified whenever `in_use` or `waiting` changes (a drain, or a test, waits on it)."""

    @property
    def in_use(self) -> int:
        return self.max_concurrency - self._semaphore.value

    @property
    def idle(self) -> bool:
        """No slot in use and no request waiting for one."""
        return not self.waiting and self._semaphore.value == self.max_concurrency

    async def wait_idle(self) -> None:
        """Return once the limiter is `idle` (at once if it is; bound it with a timeout): a drain
        waits on it for requests that hold or await a slot but have not been sent yet."""
        await self.changes.wait_for(lambda: self.idle)

    def _rejected(self) -> None:
        if self._on_rejected is not None:
            self._on_rejected()

    def _depth(self, delta: int) -> None:
        self.waiting += delta
        if self._on_depth is not None:
            self._on_depth(self.waiting)
        self.changes.notify()

    @contextlib.asynccontextmanager
    async def slot(self, wait_seconds: float, *, request_seconds: float | None = None) -> AsyncIterator[None]:
        """Hold a slot for the block, waiting at most `wait_seconds` in the queue.

        :param request_seconds: the timeout of the request whose deadline `wait_seconds` is
            what is left of (`hub.deadline`): the refusal then names it.
        :raises ServerRejected: the queue is full, or no slot came free within `wait_seconds`.
        """
        if self._semaphore.value == 0 and self.waiting >= self.max_queue:
            self._rejected()
            raise ServerRejected(
                self.server_id,
                f"busy: {self.max_concurrency} requests in flight and {self.waiting} queued"
                " (max_concurrency, max_queue)",
            )
        if self._semaphore.value == 0:
            self._depth(+1)
            try:
                with anyio.move_on_after(wait_seconds) as scope:
                    await self._semaphore.acquire()
            finally:
                self._depth(-1)
            if scope.cancelled_caught:
                self._rejected()
                within = (
                    f"before the request's {request_seconds:g} s ran out"
                    if request_seconds is not None
                    else f"within {wait_seconds:g} s"
                )
                raise ServerRejected(self.server_id, f"busy: no free slot {within} ({self.max_concurrency} in flight)")
        else:
            # A free slot is taken at once: `acquire()` would also yield to the event loop, and
            # under load that pause would be counted as queue wait (`hub.deadline`).
            self._semaphore.acquire_nowait()
        self.changes.notify()
        try:
            yield
        finally:
            self._semaphore.release()
            self.changes.notify()
