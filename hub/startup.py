"""Fleet start-up: the gate list requests wait on, and the slots that bound concurrent starts.

A client that connects right after the hub starts must not cache an empty catalog, and a big
fleet must not start as a stampede:

- `StartupGate` records the servers whose first start attempt is still to come (every server
  when the hub starts, and each server a reload adds until it is switched in). List requests
  wait on it, each pending server bounded by its own `startup_timeout_seconds` counted from
  when the request began waiting; a server that is disabled never enters it, and one that
  fails its first attempt leaves it at once.
- `StartSlots` lets at most `max_concurrent_starts` stdio servers start at once (process
  start through the MCP handshake). A server waiting for a slot has not begun its attempt:
  its `startup_timeout_seconds` counts from when it gets one, so a queued server is never
  killed for the time it spent in the queue. The endpoint is served by the hub's own event
  loop, which then competes with a few children for the CPU instead of with all of them.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import anyio

from hub.signals import Changes

__all__ = ["StartSlots", "StartupGate", "default_max_concurrent_starts"]

logger = logging.getLogger(__name__)


def default_max_concurrent_starts() -> int:
    """Four times the CPUs this process may run on. A starting stdio child mostly burns CPU
    (interpreter start, imports) with some I/O waits: on 2 cores, 100 Python servers were all
    ready in 53 s at 8 at a time and in 76 s at 4, with none killed by a 30 s start-up timeout;
    24 all at once were each killed by a 10 s one."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return 4 * max(1, cpus)


@dataclass
class _Pending:
    server_id: str
    bound_seconds: float
    done: anyio.Event = field(default_factory=anyio.Event)


class StartupGate:
    """Servers (connections, by any hashable key) whose first start attempt is still to come.

    `open(key, server_id, bound_seconds)` when a connection starts, `close(key)` once its first
    attempt is over and its listing published (or it went away); `wait()` in list handlers.
    """

    def __init__(self) -> None:
        self._pending: dict[object, _Pending] = {}
        self._settled = anyio.Event()
        self._settled.set()
        self.waiters = 0
        """Requests waiting in `wait()` right now."""
        self.changes = Changes()
        """Notified at each change of `pending()` and of `waiters` (for whoever waits on them)."""

    def open(self, key: object, server_id: str, bound_seconds: float) -> None:
        """`server_id`'s connection `key` is starting; waiters wait for it at most `bound_seconds`."""
        if not self._pending:
            self._settled = anyio.Event()
        self._pending.setdefault(key, _Pending(server_id, bound_seconds))
        self.changes.notify()

    def close(self, key: object) -> None:
        """The first attempt of `key` is over (or it was stopped); no-op when not open."""
        entry = self._pending.pop(key, None)
        if entry is None:
            return
        entry.done.set()
        if not self._pending:
            self._settled.set()
        self.changes.notify()

    def pending(self, scope: str | None = None) -> list[str]:
        """The server ids (replica members as `<server_id>/<n>`) still pending, all of them or
        those of logical server `scope`."""
        return [e.server_id for e in self._pending.values() if scope is None or _logical(e.server_id) == scope]

    @property
    def settled(self) -> bool:
        """Whether no first attempt is pending."""
        return not self._pending

    async def wait_settled(self) -> None:
        """Wait, unbounded, until no first attempt is pending (bound it with a timeout)."""
        while self._pending:
            await self._settled.wait()

    async def wait(self, scope: str | None = None) -> None:
        """Wait until every pending server (of logical server `scope`, or all) has had its first
        start attempt, each at most its `bound_seconds` from now; return early for none."""
        entries = [e for e in self._pending.values() if scope is None or _logical(e.server_id) == scope]
        if not entries:
            return
        start = anyio.current_time()
        self.waiters += 1
        self.changes.notify()
        try:
            for entry in entries:
                with anyio.move_on_after(start + entry.bound_seconds - anyio.current_time()) as scope_:
                    await entry.done.wait()
                if scope_.cancelled_caught:
                    logger.info(
                        "server %s: still starting after %g s; answering without it",
                        entry.server_id,
                        entry.bound_seconds,
                    )
        finally:
            self.waiters -= 1
            self.changes.notify()


def _logical(server_id: str) -> str:
    return server_id.partition("/")[0]


class StartSlots:
    """At most `limit` stdio servers starting at once (`max_concurrent_starts`), FIFO.

    :param limit: concurrent starts; default `default_max_concurrent_starts()`.
    """

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit or default_max_concurrent_starts()
        self._limiter = anyio.CapacityLimiter(self.limit)

    @property
    def starting(self) -> int:
        """Servers holding a slot now."""
        return int(self._limiter.borrowed_tokens)

    @property
    def waiting(self) -> int:
        """Servers waiting for a slot now."""
        return int(self._limiter.statistics().tasks_waiting)

    @contextlib.asynccontextmanager
    async def hold(self, server_id: str) -> AsyncIterator[Callable[[], None]]:
        """Hold a slot for the block (waiting for one first); the yielded function gives it back
        early (once the server is connected). Enter and leave in the same task."""
        if self._limiter.available_tokens < 1:
            logger.debug("server %s: waiting for a start slot (%d starting)", server_id, self.starting)
        await self._limiter.acquire()
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                self._limiter.release()

        try:
            yield release
        finally:
            release()
