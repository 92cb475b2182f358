"""Storing the pins after catalog changes (`hub.pins` -> `hub.pin_store`): one write at a time,
in a worker thread, and in the background once per settled burst of changes.

A fleet that starts changes the pins once per server (each first listing is pinned on first
use, or observed). Storing the whole pin document after each of those changes put a copy of
it and a state-file write (10,000 pins: ~5 MB of JSON) between every server's listing and its
start, on the event loop's critical path. Now:

- `flush()` stores what changed, now: a copy of the document's containers on the event loop
  (`Pins.take_document`: entries are shared, they never change), written by the store in a
  worker thread; one write at a time, and changes made during a write are stored by the next.
- While `running(settled)` is entered (the hub), a catalog change only `request()`s a write:
  a background task waits until `settled()` returns (the hub passes
  `hub.startup.StartupGate.wait_settled`: every server's first start attempt is over, so a
  fleet's start-up is stored once, not once per server) and then flushes, folding every
  change requested meanwhile into that one write. Leaving `running` stores what is left.
- Outside `running` (a catalog used alone, tools, tests), `request()` returns False and the
  caller flushes at once, as before.

A failed write is logged and retried with the next change; the pins stay in memory.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio

from hub.pins import Pins
from hub.signals import Changes

__all__ = ["PinWriter"]

logger = logging.getLogger(__name__)


class PinWriter:
    """Writes the pin state to its store (module docstring).

    :param pins: the pin state; None: there is nothing to store.
    """

    def __init__(self, pins: Pins | None) -> None:
        self._pins = pins
        self._lock = anyio.Lock()
        self._wanted: anyio.Event | None = None
        """Set when a write is requested; None while no background task runs."""
        self.writes = 0
        """Writes finished so far (stored, or failed and logged)."""
        self.changes = Changes()
        """Notified after each finished write (`writes` counts them)."""

    async def flush(self) -> None:
        """Store the pins now if they changed (in a worker thread; one write at a time). A failed
        write is logged and retried with the next change."""
        pins = self._pins
        if pins is None or not pins.dirty:
            return
        async with self._lock:
            document = pins.take_document()
            if document is None:
                return  # stored by the write this one waited for
            try:
                await anyio.to_thread.run_sync(pins.store.save, document)
            except OSError as exc:
                pins.dirty = True
                logger.error("pins could not be stored (%s); kept in memory, stored with the next change", exc)
            finally:
                self.writes += 1
                self.changes.notify()

    def request(self) -> bool:
        """Ask the background task to store the pins once the burst settles; False when no
        background task runs (`running`), so the caller should `flush()` itself."""
        if self._wanted is None:
            return False
        if self._pins is not None and self._pins.dirty:
            self._wanted.set()
        return True

    @contextlib.asynccontextmanager
    async def running(self, settled: Callable[[], Awaitable[None]] | None = None) -> AsyncIterator[None]:
        """Store requested changes in the background while entered, each time `settled()` has
        returned (None: at once); on exit, store what is left (shielded from cancellation)."""
        try:
            async with anyio.create_task_group() as tg:
                self._wanted = anyio.Event()
                tg.start_soon(self._store_when_settled, settled)
                try:
                    yield
                finally:
                    tg.cancel_scope.cancel()
        finally:
            self._wanted = None
            with anyio.CancelScope(shield=True):
                await self.flush()

    async def _store_when_settled(self, settled: Callable[[], Awaitable[None]] | None) -> None:
        while True:
            wanted = self._wanted
            assert wanted is not None
            await wanted.wait()
            if settled is not None:
                await settled()
            self._wanted = anyio.Event()  # what is requested from here on needs the next write
            await self.flush()
