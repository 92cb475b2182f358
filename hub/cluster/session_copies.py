"""What a replica's copy of a handshake-era session takes from the others: the client's
`logging/setLevel` level and its resource subscriptions (`hub.cluster.session_state`).

A session is served by whichever replica a request lands on (`hub.endpoint.session_manager`), so its
client may set its level or subscribe through replica A while its GET stream (where
`notifications/resources/updated` and log messages of the session's standing channel go) is
held by replica B. Each replica's copy therefore applies:

- when it is rebuilt: the level and the subscriptions the store holds for the session;
- while it is held: what the other replicas announce for it.

A subscription applied to a copy is a subscription of that copy's connection in the hub's
subscription table (`hub.endpoint.server_requests.Subscriptions`): updates of the resource reach the connection's
standing channel (its GET stream, when this replica holds it; dropped otherwise), and the
server connection stays subscribed while any copy subscribes. A copy's subscriptions end with
the copy (idle, DELETE, the hub stopping); the store keeps them for the next rebuild.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from mcp import MCPError
from mcp.server.connection import Connection

from hub.cluster.session_state import SessionState
from hub.errors import HubError

if TYPE_CHECKING:  # the endpoint builds the copies; at run time this module never imports it
    from hub.endpoint.server_requests import Subscriptions
    from hub.endpoint.session_registry import SessionRegistry

__all__ = ["SessionCopies"]

logger = logging.getLogger(__name__)


class SessionCopies:
    """The copies of one face's sessions on this replica (`SessionManager`'s hooks).

    :param state: the shared per-session state.
    :param registry: the face's session registry (levels).
    :param subscriptions: the hub's subscription table.
    :param resolve_uri: the face's exposed URI -> `(server_id, original URI)`, or None.
    """

    def __init__(
        self,
        state: SessionState,
        registry: SessionRegistry,
        subscriptions: Subscriptions,
        resolve_uri: Callable[[str], tuple[str, str] | None],
    ) -> None:
        self._state = state
        self._registry = registry
        self._subscriptions = subscriptions
        self._resolve_uri = resolve_uri
        self._subscribed: set[str] = set()
        """Client keys of the copies that hold subscriptions applied here."""

    async def rebuilt(self, connection: Connection, session_id: str) -> None:
        """A copy was rebuilt from its id: apply the session's level and subscriptions."""
        level = await self._state.log_level(session_id)
        if level is not None:
            self._registry.preset_level(connection, level)
        for uri in await self._state.subscriptions(session_id):
            await self.subscription(connection, uri, True)

    def level_set(self, connection: Connection, level: str) -> None:
        """The session's client set `level` through another replica."""
        self._registry.preset_level(connection, level)

    async def subscription(self, connection: Connection, uri: str, present: bool) -> None:
        """The session's client subscribed to the exposed `uri` (`present`) or unsubscribed
        through another replica. A server that refuses is logged (the replica that took the
        subscription answered the client)."""
        owner = self._resolve_uri(uri)
        if owner is None:
            return
        client_key = self._registry.key_of(connection)
        if not present:
            await self._subscriptions.unsubscribe(client_key, uri, *owner)
            return
        if client_key not in self._subscribed:
            self._subscribed.add(client_key)
            connection.exit_stack.callback(self._closed, client_key)
        try:
            await self._subscriptions.subscribe(client_key, connection, uri, *owner)
        except (HubError, MCPError) as exc:
            logger.info("subscription to %s not applied to this replica's copy: %s", uri, exc)

    def _closed(self, client_key: str) -> None:
        self._subscribed.discard(client_key)
        self._subscriptions.forget(client_key)
