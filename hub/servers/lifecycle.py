"""Where a server connection is in its life, as others watch it: the supervisor moves it from
state to state (`ServerState`), and the fleet, the hub and tests wait for a state, the next
change, or the end of the first connection attempt, on events (never by polling).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import anyio

from hub.servers.state import ServerState

if TYPE_CHECKING:
    from hub.servers.connection import ServerConnection

__all__ = ["Lifecycle"]


class Lifecycle:
    """`connection`'s state changes and the waits on them (`connection.lifecycle`).

    The state itself stays on the connection (`state`, and `since`: Unix time of the last
    change); every move goes through `enter`.
    """

    def __init__(self, connection: ServerConnection) -> None:
        self.connection = connection
        self._state_changed = anyio.Event()
        self._first_attempt_done = anyio.Event()

    def enter(self, state: ServerState) -> None:
        """Move the connection to `state` (`since` is now, and waiters on a change wake); its
        `changes` are notified even when the state stays the same (`restarts` and
        `last_error` change with it)."""
        connection = self.connection
        if state is not connection.state:
            connection.state = state
            connection.since = time.time()
            self._state_changed.set()
            self._state_changed = anyio.Event()
        connection.changes.notify()

    def first_attempt_over(self) -> None:
        """The first connection attempt succeeded or failed (later calls do nothing more)."""
        self._first_attempt_done.set()

    async def first_attempt(self) -> None:
        """Return once the first connection attempt has succeeded or failed."""
        await self._first_attempt_done.wait()

    async def reach(self, *states: ServerState) -> ServerState:
        """Wait until the connection is in one of `states` (bound it with a timeout) and return it."""
        while self.connection.state not in states:
            await self._state_changed.wait()
        return self.connection.state

    async def next_change(self) -> None:
        """Return at the next change of `state` (bound it with a timeout)."""
        await self._state_changed.wait()
