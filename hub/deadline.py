"""One deadline per request: the time a routed request may take, from its arrival to its answer.

The router (`hub.router`) starts a `RequestDeadline` when a request arrives, from the route's
timeout (`ServerSettings.timeout_for`, seconds) and its hard maximum (`hard_timeout_for`:
`max_timeout_seconds`, default 5x the timeout). Every phase of the request spends the same
clock:

1. the wait for a starting server (also bounded by `startup_timeout_seconds`);
2. the wait for a per-client connection to start;
3. the wait in a connection's queue for a free slot (`max_concurrency`, `max_queue`);
4. the answer (`servers.calls.Sender.request`), and
5. every retry round and the backoff before it: a round is not started when its backoff would
   outlast the deadline, and a replica or fallback is not tried once it has passed.

Each progress notification the server sends for the request (`notifications/progress`,
2025-11-25 "Progress") pushes the deadline to now + timeout, never past the hard maximum
counted from the arrival. Expiry is reported by the phase that ran out of time:
`ServerTimeout` (the request was sent: the server got a cancellation), or `ServerRejected` /
`ServerUnavailable` with `delivered=False` (it was still queued or waiting for a start: never
sent). Times are `anyio.current_time()` seconds.
"""

from __future__ import annotations

import anyio

__all__ = ["RequestDeadline"]


class RequestDeadline:
    """The deadline of one routed request (see the module docstring).

    :param timeout_seconds: the time from arrival, or from the last progress, to the answer (> 0).
    :param hard_seconds: the most the request may take from its arrival, whatever its progress
        (binding even when below `timeout_seconds`).
    :param now: the arrival, `anyio.current_time()` (default: now).
    """

    __slots__ = ("_soft", "arrived", "hard_at", "hard_seconds", "queued_seconds", "timeout_seconds")

    def __init__(self, timeout_seconds: float, hard_seconds: float, *, now: float | None = None) -> None:
        self.timeout_seconds = timeout_seconds
        self.hard_seconds = hard_seconds
        self.arrived = anyio.current_time() if now is None else now
        self.hard_at = self.arrived + self.hard_seconds
        self._soft = self.arrived + timeout_seconds
        self.queued_seconds = 0.0
        """Seconds the request spent waiting for a free slot (all its attempts together)."""

    @property
    def at(self) -> float:
        """The `anyio.current_time()` at which the request runs out of time (moves with progress)."""
        return min(self._soft, self.hard_at)

    def remaining(self) -> float:
        """Seconds left (0 once expired)."""
        return max(0.0, self.at - anyio.current_time())

    def expired(self) -> bool:
        return anyio.current_time() >= self.at

    def extend(self) -> float:
        """Progress from the server: the deadline moves to now + timeout, never past the hard
        maximum; returns the new `at`."""
        self._soft = max(self._soft, min(anyio.current_time() + self.timeout_seconds, self.hard_at))
        return self.at

    def scope(self) -> anyio.CancelScope:
        """A cancel scope ending at the deadline as it stands (move it along with `extend`)."""
        return anyio.CancelScope(deadline=self.at)

    def no_answer(self, method: str) -> str:
        """The message of a `ServerTimeout`: which limit ran out, and how much of it went on
        waiting for a free slot."""
        queued = f"; {self.queued_seconds:.2g} s of it waiting for a free slot" if self.queued_seconds >= 0.01 else ""
        if anyio.current_time() >= self.hard_at:
            return f"no answer to {method} within its hard maximum of {self.hard_seconds:g} s (cancelled{queued})"
        return f"no answer to {method} within {self.timeout_seconds:g} s (cancelled{queued})"

    def ran_out(self, phase: str) -> str:
        """The message of a request that ran out of time before it was sent, `phase` saying
        while doing what (e.g. "waiting for the server to start")."""
        return f"{phase}: the request's {self.seconds:g} s ran out before it could be sent"

    @property
    def seconds(self) -> float:
        """The request's time from arrival before any progress: its timeout, or the hard
        maximum when that is shorter."""
        return min(self.timeout_seconds, self.hard_seconds)

    def __repr__(self) -> str:
        return (
            f"RequestDeadline(timeout={self.timeout_seconds:g} s, hard={self.hard_seconds:g} s,"
            f" remaining={self.remaining():.3f} s)"
        )
