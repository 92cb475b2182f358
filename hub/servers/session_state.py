"""Session state the hub keeps for a server across reconnects: resource subscriptions and the
logging level.

Clients subscribe to resources and set a logging level through the hub; the hub holds one
subscription per original URI at the server (`hub.endpoint.server_requests.Subscriptions` fans updates out) and
the level last asked for. A handshake-era server keeps both per session, so after every
reconnect the supervisor has `SessionState.restore` set them again; for a modern-era server
the subscriptions are the filter of its `subscriptions/listen` stream (`listing.Lister`) and the
level is sent with each request (`_meta` logLevel, 2026-07-28).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import mcp_types as types
from mcp import Client

if TYPE_CHECKING:
    from hub.servers.connection import ServerConnection

__all__ = ["SessionState"]


class SessionState:
    """`connection`'s resource subscriptions and logging level (`connection.session_state`)."""

    def __init__(self, connection: ServerConnection) -> None:
        self.connection = connection
        self.subscriptions: set[str] = set()
        """The original URIs subscribed to at the server."""
        self.subscriptions_changed = anyio.Event()
        """Set when `subscriptions` changed (a modern-era listen stream reopens with the new filter)."""
        self.log_level: str | None = None
        """The logging level last asked for (`logging/setLevel`), or None."""

    async def subscribe(self, uri: str) -> None:
        """`ServerConnection.subscribe`: `resources/subscribe` at a handshake-era server, else
        only a new listen filter."""
        connection = self.connection
        if not connection._is_modern():
            await connection.sender.request(
                "resources/subscribe", lambda client, _: client.session.subscribe_resource(uri)
            )
        else:
            connection._require_client()
        if uri not in self.subscriptions:
            self.subscriptions.add(uri)
            self.subscriptions_changed.set()

    async def unsubscribe(self, uri: str) -> None:
        """`ServerConnection.unsubscribe`."""
        if uri in self.subscriptions:
            self.subscriptions.discard(uri)
            self.subscriptions_changed.set()
        connection = self.connection
        if not connection._is_modern():
            await connection.sender.request(
                "resources/unsubscribe", lambda client, _: client.session.unsubscribe_resource(uri)
            )

    async def set_logging_level(self, level: types.LoggingLevel) -> None:
        """`ServerConnection.set_logging_level`: `logging/setLevel` at a handshake-era server
        that offers logging; the level is kept either way."""
        self.log_level = level
        connection = self.connection
        if not connection._is_modern():
            caps = connection._require_client().server_capabilities
            if caps.logging is not None:
                await connection.sender.request(
                    "logging/setLevel", lambda client, _: client.session.set_logging_level(level)
                )

    async def restore(self, client: Client) -> None:
        """After a (re)connect to a handshake-era server: its logging level and resource
        subscriptions are per session, so set them again (bounded by `timeout_seconds`)."""
        with anyio.fail_after(self.connection.config.timeout_seconds):
            if self.log_level is not None and client.server_capabilities.logging is not None:
                await client.session.set_logging_level(self.log_level)  # type: ignore[arg-type]
            for uri in sorted(self.subscriptions):
                await client.session.subscribe_resource(uri)
