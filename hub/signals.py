"""Change signals: what the hub's objects expose for whoever waits on them (the drain, the
admin CLI's `--wait`, tests), so that nobody polls.

A `Changes` is a re-armed `anyio.Event`: its owner calls `notify()` after every change of the
state it guards (a server connection's state, requests in flight and dedicated connections; the
catalog's merged lists; the bridge's suspended calls; resource subscriptions), and a waiter
either waits for the next change (`wait()`) or for a condition over that state to hold
(`wait_for(predicate)`, re-checked after every change). The owner's state is plain attributes,
read by the predicate; `Changes` holds no state of its own but a count of changes. A condition
over the state of several owners (servers of several hubs, a catalog and a connection) is waited
on with `wait_for_any(predicate, *sources)`.

Every wait is unbounded: bound it (`anyio.fail_after`, `anyio.move_on_after`).
"""

from __future__ import annotations

from collections.abc import Callable

import anyio

__all__ = ["Changes", "wait_for_any"]


class Changes:
    """Wakes every waiter at each `notify()`; `count` is the number of changes so far.

    Safe to create outside an event loop (the `anyio.Event` is made by the first waiter), so
    plain objects built in synchronous code (a `Catalog` in a unit test) can own one.
    """

    def __init__(self) -> None:
        self.count = 0
        """Changes notified so far (0 at creation)."""
        self._event: anyio.Event | None = None

    def notify(self) -> None:
        """A change happened: wake every waiter (none waiting: nothing to do but count)."""
        self.count += 1
        event, self._event = self._event, None
        if event is not None:
            event.set()

    async def wait(self) -> None:
        """Return at the next `notify()` (bound it with a timeout)."""
        if self._event is None:
            self._event = anyio.Event()
        await self._event.wait()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Return once `predicate()` holds: at once if it does, else re-checked after every
        `notify()` (bound it with a timeout). The predicate must read only state whose every
        change the owner notifies."""
        while not predicate():
            await self.wait()

    async def wait_past(self, count: int) -> int:
        """Return once more than `count` changes have been notified (`count` read earlier from
        `self.count`: nothing that happened since is missed), with the new count."""
        while self.count <= count:
            await self.wait()
        return self.count


async def wait_for_any(predicate: Callable[[], bool], *sources: Changes) -> None:
    """Return once `predicate()` holds: at once if it does, else re-checked after every
    `notify()` of any of `sources` (none missed: each source's count is read before the check).
    The predicate must read only state whose every change one of `sources` notifies. Unbounded:
    bound it (`anyio.fail_after`).

    :raises ValueError: no `sources` and the predicate does not hold (nothing could wake it).
    """
    while True:
        counts = [source.count for source in sources]
        if predicate():
            return
        if not sources:
            raise ValueError("wait_for_any: no sources to wait on, and the condition does not hold")
        async with anyio.create_task_group() as tg:

            async def past(source: Changes, count: int) -> None:
                await source.wait_past(count)
                tg.cancel_scope.cancel()

            for source, count in zip(sources, counts, strict=True):
                tg.start_soon(past, source, count)
