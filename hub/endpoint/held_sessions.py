"""The handshake-era sessions one face holds on this replica (`hub.endpoint.session_manager`
serves them): each by its session id and by the key the shared store names it with
(`hub.cluster.session_ids.session_key`), and one start of a session however many requests
arrive for it together.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
from mcp.server.connection import Connection
from mcp.server.streamable_http import StreamableHTTPServerTransport

from hub.cluster.session_ids import SessionClaims
from hub.signals import Changes

__all__ = ["HeldSession", "HeldSessions"]


@dataclass(slots=True)
class HeldSession:
    """A session this replica holds: its transport and what its id says."""

    transport: StreamableHTTPServerTransport
    claims: SessionClaims
    key: str
    """The session's key in the shared store (`session_key(session_id)`)."""
    connection: Connection | None = None
    """The session's connection, once its task runs."""

    @property
    def ending(self) -> bool:
        """Whether its transport was terminated or its idle period ran out: its session task is
        winding down, so a new request rebuilds the session instead."""
        idle_scope = self.transport.idle_scope
        return self.transport.is_terminated or (idle_scope is not None and idle_scope.cancel_called)


class HeldSessions:
    """The sessions one face holds on this replica, by session id and by store key.

    :param changes: notified whenever a session starts or stops being held (default: its own).
    """

    def __init__(self, changes: Changes | None = None) -> None:
        self.changes = changes if changes is not None else Changes()
        self._by_id: dict[str, HeldSession] = {}
        self._by_key: dict[str, str] = {}
        self._starting: dict[str, anyio.Event] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._by_id

    def get(self, session_id: str) -> HeldSession | None:
        """The session of `session_id` if held here."""
        return self._by_id.get(session_id)

    def transports(self) -> list[StreamableHTTPServerTransport]:
        """The transports of the sessions held now."""
        return [held.transport for held in self._by_id.values()]

    def add(self, session_id: str, held: HeldSession) -> None:
        """Hold `held` as the session of `session_id`."""
        self._by_id[session_id] = held
        self._by_key[held.key] = session_id
        self.changes.notify()

    def forget(self, session_id: str, transport: StreamableHTTPServerTransport) -> None:
        """Stop holding the session of `session_id` if `transport` is still its transport (a
        session rebuilt since keeps its new copy)."""
        held = self._by_id.get(session_id)
        if held is not None and held.transport is transport:
            del self._by_id[session_id]
            self._by_key.pop(held.key, None)
            self.changes.notify()

    def pop_key(self, key: str) -> HeldSession | None:
        """Stop holding the session the store key `key` names; the session, or None when it is
        not held here."""
        session_id = self._by_key.pop(key, None)
        held = self._by_id.pop(session_id, None) if session_id is not None else None
        if held is not None:
            self.changes.notify()
        return held

    def connection(self, key: str) -> Connection | None:
        """The connection of the session the store key `key` names, when held here and running."""
        session_id = self._by_key.get(key)
        held = self._by_id.get(session_id) if session_id is not None else None
        return held.connection if held is not None else None

    def clear(self) -> None:
        """Hold nothing (the face stopped serving)."""
        self._by_id.clear()
        self._by_key.clear()
        self.changes.notify()

    async def once(self, session_id: str, start: Callable[[], Awaitable[HeldSession | None]]) -> HeldSession | None:
        """The session of `session_id`: the one held, else what `start()` makes of it. Requests
        for the same session wait for one `start()` (requests for other sessions do not)."""
        while (starting := self._starting.get(session_id)) is not None:
            await starting.wait()
        held = self._by_id.get(session_id)
        if held is not None:
            return held
        started = self._starting[session_id] = anyio.Event()
        try:
            return await start()
        finally:
            del self._starting[session_id]
            started.set()
