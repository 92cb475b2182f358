"""The handshake-era sessions connected to one face: who gets `list_changed`, and the log
level each session set.

`hub.endpoint.endpoint` keeps one `SessionRegistry` per face and fans catalog changes out through it
(`notify`); the handlers record each session on its first request (`track`, from
`hub.endpoint.request_boundary`), read and record its `logging/setLevel` (`level`, `set_level`), and
reach the session that outlives a request (`standing`). `hub.cluster.session_copies` presets the
level of a session rebuilt on this replica (`preset_level`). Modern-era clients have no session:
they hear of changes on their `subscriptions/listen` streams (`hub.endpoint.subscriptions_listen`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Final

import anyio
from mcp.server.connection import Connection
from mcp.server.session import ServerSession

from adapters._sdk import connection_of, on_connection_closed
from hub.catalog import Kind

__all__ = ["NOTIFY_TIMEOUT_SECONDS", "SessionRegistry"]

# The request path's modules share the faces' logger: operators and tests filter on "hub.endpoint.faces".
logger = logging.getLogger("hub.endpoint.faces")

NOTIFY_TIMEOUT_SECONDS: Final = 5.0
"""Seconds one client may take to accept a list_changed notification before it is skipped."""


class SessionRegistry:
    """Handshake-era sessions connected to one face, for `list_changed` fan-out.

    The lowlevel tier has no public way to reach a connection outside a request, so each session
    is recorded on its first request and dropped when its connection closes (SDK-NOTES 2.5;
    `adapters._sdk.connection_of`, `on_connection_closed`).
    """

    def __init__(self, on_close: Callable[[str], None] | None = None) -> None:
        self._sessions: dict[int, ServerSession] = {}
        self._levels: dict[int, str] = {}
        self._on_close = on_close

    @staticmethod
    def client_key(session: ServerSession) -> str:
        """The key of a handshake-era client session (per-client connections, subscriptions)."""
        return SessionRegistry.key_of(connection_of(session))

    @staticmethod
    def key_of(connection: object) -> str:
        """`client_key` of the session whose connection is `connection`."""
        return f"session:{id(connection):x}"

    def track(self, session: ServerSession) -> None:
        """Record `session` (on each handshake-era request; once per connection) until its
        connection closes, when `on_close` is called with its `client_key`."""
        key = id(connection_of(session))
        if key not in self._sessions:
            self._sessions[key] = session
            on_connection_closed(session, functools.partial(self._closed, key, self.client_key(session)))

    def standing(self, session: ServerSession) -> ServerSession:
        """The session object kept for `session`'s connection while it is open (a request's own
        `ctx.session` lives only as long as the request), else `session`."""
        return self._sessions.get(id(connection_of(session)), session)

    def _closed(self, key: int, client_key: str) -> None:
        self._sessions.pop(key, None)
        self._levels.pop(key, None)
        if self._on_close is not None:
            self._on_close(client_key)

    def set_level(self, session: ServerSession, level: str) -> None:
        """Record the `logging/setLevel` of a session."""
        key = id(connection_of(session))
        if key in self._sessions:
            self._levels[key] = level

    def preset_level(self, connection: Connection, level: str) -> None:
        """The level of a session held on this replica (`hub.endpoint.session_manager`) as its client
        set it through another replica; kept until the connection closes."""
        key = id(connection)
        if key not in self._levels:
            connection.exit_stack.callback(self._levels.pop, key, None)
        self._levels[key] = level

    def level(self, session: ServerSession) -> str | None:
        """The level a session set with `logging/setLevel`, if any."""
        return self._levels.get(id(connection_of(session)))

    def __len__(self) -> int:
        return len(self._sessions)

    async def notify(self, kinds: frozenset[Kind]) -> None:
        """Send every recorded session the `notifications/*/list_changed` of `kinds`, each
        bounded by `NOTIFY_TIMEOUT_SECONDS`; a session that fails or is slow is skipped."""

        async def send(session: ServerSession) -> None:
            with anyio.move_on_after(NOTIFY_TIMEOUT_SECONDS):
                try:
                    if "tools" in kinds:
                        await session.send_tool_list_changed()
                    if "resources" in kinds or "resource_templates" in kinds:
                        await session.send_resource_list_changed()
                    if "prompts" in kinds:
                        await session.send_prompt_list_changed()
                except Exception as exc:  # a client that went away must not stop the fan-out
                    logger.debug("list_changed not delivered to a session: %r", exc)

        async with anyio.create_task_group() as tg:
            for session in list(self._sessions.values()):
                tg.start_soon(send, session)
