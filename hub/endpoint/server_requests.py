"""Server-to-client traffic relayed to the client whose request caused it.

A server may, while it handles a request, ask the client something (`sampling/createMessage`,
`elicitation/create` in form or URL mode, `roots/list`) or tell it something
(`notifications/message`). The hub is the server's client, so these arrive on the hub's server
connection and must be relayed to the one client, and the one request, they belong to.

Correlation: each routed request runs with its `ClientChannel` in the context variable
`CURRENT_CHANNEL` (`hub.client_channel`, below the endpoint and the server connections). The
SDK delivers a server's request to the hub's callbacks in the context of the request that caused
it on Streamable HTTP connections (both eras) and in the modern era on every transport (the
`InputRequiredResult` loop runs in the caller's task), so the variable names the channel there.
On handshake-era stdio and SSE connections a single reader task delivers everything (SDK-NOTES
2.6); there the server connection falls back to the only call in flight, and refuses the request
when several calls are in flight (configure the server with `isolation: per_client` to get a
server connection per client session).

Channels:

- `SessionChannel` relays to a handshake-era client as real server-to-client requests on the
  originating request's stream (`related_request_id`), and logs to a client of either era
  (modern-era clients receive only the levels they opted in to with `_meta` logLevel).
- `hub.endpoint.era_bridge.BridgedCall` turns requests into `InputRequiredResult` rounds for a
  modern-era client.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import anyio
import mcp_types as types
from mcp import MCPError
from mcp.server import ServerRequestContext
from mcp.shared.message import ServerMessageMetadata
from mcp_types import INTERNAL_ERROR
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from hub.client_channel import SamplingResult, refusal
from hub.signals import Changes

__all__ = [
    "ANONYMOUS",
    "LOG_LEVELS",
    "SessionChannel",
    "SubscriptionPeers",
    "Subscriptions",
    "principal_id",
]

logger = logging.getLogger(__name__)

ANONYMOUS = "anonymous"
"""The principal id of a request that carries no authenticated principal."""

_LOG_RELAY_TIMEOUT_SECONDS = 5.0
"""How long a client may take to accept one relayed log message before it is skipped."""


def principal_id(ctx: ServerRequestContext[Any]) -> str:
    """The authenticated principal's id from the ASGI scope (`scope["state"]["principal"].id`),
    or `ANONYMOUS` (stdio, or no authentication configured)."""
    request = ctx.request
    scope = getattr(request, "scope", None)
    if isinstance(scope, dict):
        state = scope.get("state")
        principal = state.get("principal") if isinstance(state, dict) else None
        pid = getattr(principal, "id", None)
        if isinstance(pid, str) and pid:
            return pid
    return ANONYMOUS


def _error_data(exc: Exception, what: str) -> types.ErrorData:
    if isinstance(exc, MCPError):
        return types.ErrorData(code=exc.code, message=exc.message, data=exc.error.data)
    logger.warning("relaying %s to the client failed: %r", what, exc)
    return types.ErrorData(code=INTERNAL_ERROR, message=f"the hub could not relay {what} to its client")


class SessionChannel:
    """Relay to the client of one request on the hub's face (`ctx`).

    Handshake-era clients get real `sampling/createMessage`, `elicitation/create` and
    `roots/list` requests on the stream of the request being served (2025-11-25 "Sending
    Messages to the Server"; related_request_id), refused with -32600 when the client did not
    declare the capability. Modern-era clients cannot be sent requests (2026-07-28); their
    calls to handshake-era servers go through `hub.endpoint.era_bridge` instead, so here they are refused.
    """

    def __init__(self, ctx: ServerRequestContext[Any], client_key: str, min_log_level: str | None = None) -> None:
        self._session = ctx.session
        self._request_id = ctx.request_id
        self._modern = ctx.protocol_version in MODERN_PROTOCOL_VERSIONS
        self._client_key = client_key
        self._min_log_level = LOG_LEVELS.index(min_log_level) if min_log_level in LOG_LEVELS else 0

    @property
    def client_key(self) -> str:
        return self._client_key

    @property
    def modern(self) -> bool:
        return self._modern

    @property
    def capabilities(self) -> types.ClientCapabilities | None:
        return self._session.client_capabilities

    def _metadata(self) -> ServerMessageMetadata:
        return ServerMessageMetadata(related_request_id=self._request_id)

    def _unsupported(self, capability: types.ClientCapabilities, what: str) -> types.ErrorData | None:
        if self._modern:
            return refusal(f"{what} cannot be sent to a 2026-07-28 client outside an InputRequiredResult")
        if not self._session.check_client_capability(capability):
            return refusal(f"the client did not declare the capability {what} needs")
        return None

    async def sample(self, params: types.CreateMessageRequestParams) -> SamplingResult:
        refused = self._unsupported(types.ClientCapabilities(sampling=types.SamplingCapability()), "sampling")
        if refused is not None:
            return refused
        result_type: type[types.CreateMessageResult] | type[types.CreateMessageResultWithTools] = (
            types.CreateMessageResultWithTools if params.tools else types.CreateMessageResult
        )
        try:
            return await self._session.send_request(
                types.CreateMessageRequest(params=params), result_type, metadata=self._metadata()
            )
        except (MCPError, ValidationError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            return _error_data(exc, "sampling/createMessage")

    async def elicit(self, params: types.ElicitRequestParams) -> types.ElicitResult | types.ErrorData:
        refused = self._unsupported(types.ClientCapabilities(elicitation=types.ElicitationCapability()), "elicitation")
        if refused is not None:
            return refused
        try:
            return await self._session.send_request(
                types.ElicitRequest(params=params), types.ElicitResult, metadata=self._metadata()
            )
        except (MCPError, ValidationError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            return _error_data(exc, "elicitation/create")

    async def list_roots(self) -> types.ListRootsResult | types.ErrorData:
        refused = self._unsupported(types.ClientCapabilities(roots=types.RootsCapability()), "roots/list")
        if refused is not None:
            return refused
        try:
            return await self._session.send_request(
                types.ListRootsRequest(), types.ListRootsResult, metadata=self._metadata()
            )
        except (MCPError, ValidationError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            return _error_data(exc, "roots/list")

    async def log(self, params: types.LoggingMessageNotificationParams) -> None:
        if params.level in LOG_LEVELS and LOG_LEVELS.index(params.level) < self._min_log_level:
            return  # below the level this handshake-era session set with logging/setLevel
        with anyio.move_on_after(_LOG_RELAY_TIMEOUT_SECONDS):
            try:
                await self._session.send_log_message(
                    params.level, params.data, params.logger, related_request_id=self._request_id
                )
            except Exception as exc:  # a client that went away must not break the server connection
                logger.debug("log message not relayed: %r", exc)


LOG_LEVELS: tuple[str, ...] = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
"""`LoggingLevel` values from least to most severe (RFC 5424 order)."""


class SubscriptionPeers(Protocol):
    """The other replicas of this hub, as `Subscriptions` sees them (`hub.cluster.fanout`)."""

    def interest(self, server_id: str, original: str, present: bool) -> None:
        """This replica's first client subscribed to `(server_id, original)` (`present`), or
        its last one went away."""
        ...

    async def updated(self, server_id: str, original: str) -> None:
        """This replica's server connection reported `(server_id, original)` updated (already
        delivered here): tell the replicas that need it."""
        ...


class Subscriptions:
    """Resource subscriptions of client sessions (handshake-era `resources/subscribe`,
    modern-era `subscriptions/listen` filters), shared by every face.

    A client's subscription to an exposed URI is routed to the owning server under the original
    URI; the server connection is subscribed once, when the first subscriber appears, and
    unsubscribed when the last one goes (unsubscribes, or its session ends). Each
    `notifications/resources/updated` from a server goes only to the sessions subscribed to
    that resource, under the URI each of them subscribed to, once per session (2025-11-25
    "Subscriptions").

    With `peers` (replicas sharing Redis, `hub.cluster.fanout`), subscribers on other replicas
    count too: `remote_interest` keeps this replica's server connection subscribed while another
    replica has subscribers, updates this replica's connections report are passed to `peers`,
    and updates other replicas report arrive through `deliver` (delivered here, never passed on).

    :param connection: `server_id -> object with async subscribe(uri)/unsubscribe(uri)`, or None.
    :param spawn: starts a background task (for unsubscribing after a session ends).
    :param peers: the other replicas, or None (one hub alone).
    """

    def __init__(self, connection: Any, spawn: Any, peers: SubscriptionPeers | None = None) -> None:
        self._connection = connection
        self._spawn = spawn
        self.peers = peers
        # (server_id, original uri) -> {(client_key, exposed uri): session}
        self._table: dict[tuple[str, str], dict[tuple[str, str], Any]] = {}
        self._remote: set[tuple[str, str]] = set()
        """Resources another replica has subscribers for (kept subscribed here too)."""
        self._at_server: set[tuple[str, str]] = set()
        """Resources this replica's server connections are subscribed to."""
        self.changes = Changes()
        """Notified after every change of the subscriptions (`len`) or of what the servers are
        subscribed to (`subscribed_at_server`, once the server answered the unsubscribe)."""

    def __len__(self) -> int:
        return sum(len(subscribers) for subscribers in self._table.values())

    def subscribed_at_server(self, server_id: str, original: str) -> bool:
        """Whether this replica's connection to `server_id` is subscribed to `original`."""
        return (server_id, original) in self._at_server

    async def subscribe(self, client_key: str, session: Any, exposed: str, server_id: str, original: str) -> None:
        """Record the subscription, subscribing at the server if it is the first.

        :raises HubError, MCPError: the server refused or is unavailable (nothing is recorded).
        """
        key = (server_id, original)
        subscribers = self._table.get(key)
        if not subscribers:
            if key not in self._at_server:
                connection = self._connection(server_id)
                if connection is None:
                    from hub.errors import ServerUnavailable

                    raise ServerUnavailable(server_id, "not configured")
                await connection.subscribe(original)
                self._at_server.add(key)
            subscribers = self._table.setdefault(key, {})
            if not subscribers and self.peers is not None:
                self.peers.interest(server_id, original, True)
        subscribers[(client_key, exposed)] = session
        self.changes.notify()

    async def unsubscribe(self, client_key: str, exposed: str, server_id: str, original: str) -> None:
        """Drop the subscription, unsubscribing at the server if it was the last."""
        subscribers = self._table.get((server_id, original))
        if subscribers is None or subscribers.pop((client_key, exposed), None) is None:
            return
        self.changes.notify()
        if not subscribers:
            del self._table[(server_id, original)]
            self._lost_interest(server_id, original)
            if (server_id, original) not in self._remote:
                await self._release(server_id, original)

    def forget(self, client_key: str) -> None:
        """A client session ended: drop its subscriptions (servers are unsubscribed in the
        background when it was their last subscriber)."""
        for key, subscribers in list(self._table.items()):
            for entry in [entry for entry in subscribers if entry[0] == client_key]:
                del subscribers[entry]
            if not subscribers:
                del self._table[key]
                self._lost_interest(*key)
                if key not in self._remote:
                    self._spawn(lambda key=key: self._release(*key), f"unsubscribe {key[0]}")
        self.changes.notify()

    def _lost_interest(self, server_id: str, original: str) -> None:
        if self.peers is not None:
            self.peers.interest(server_id, original, False)

    async def remote_interest(self, server_id: str, original: str, present: bool) -> None:
        """Another replica has subscribers for `(server_id, original)` (`present`), or none
        has any more: keep this replica's server connection subscribed while any replica has
        one. A server that refuses is logged and asked again at the next call."""
        key = (server_id, original)
        if present:
            self._remote.add(key)
            if key in self._at_server:
                return
            connection = self._connection(server_id)
            if connection is None:
                return
            try:
                with anyio.fail_after(_LOG_RELAY_TIMEOUT_SECONDS):
                    await connection.subscribe(original)
            except Exception as exc:  # the server may be down; the next announcement retries
                logger.info("subscribing %s at server %s for another replica failed: %r", original, server_id, exc)
                return
            if key in self._remote or key in self._table:
                self._at_server.add(key)
                self.changes.notify()
            else:  # the interest went away while subscribing
                await self._unsubscribe_at_server(server_id, original)
            return
        self._remote.discard(key)
        if key not in self._table:
            await self._release(server_id, original)

    async def _release(self, server_id: str, original: str) -> None:
        if (server_id, original) in self._table or (server_id, original) in self._remote:
            return  # subscribed again meanwhile
        if (server_id, original) not in self._at_server:
            return
        self._at_server.discard((server_id, original))
        try:
            await self._unsubscribe_at_server(server_id, original)
        finally:
            self.changes.notify()

    async def _unsubscribe_at_server(self, server_id: str, original: str) -> None:
        connection = self._connection(server_id)
        if connection is None:
            return
        try:
            with anyio.fail_after(_LOG_RELAY_TIMEOUT_SECONDS):
                await connection.unsubscribe(original)
        except Exception as exc:  # the server may be gone; the subscription is dropped anyway
            logger.info("unsubscribing %s at server %s failed: %r", original, server_id, exc)

    async def updated(self, server_id: str, original: str) -> None:
        """Relay a server's `notifications/resources/updated`, reported by this replica's
        connection, to the subscribed sessions here, then to the replicas (`peers`)."""
        await self.deliver(server_id, original)
        if self.peers is not None:
            await self.peers.updated(server_id, original)

    async def deliver(self, server_id: str, original: str) -> None:
        """Deliver an update of `(server_id, original)` to the sessions subscribed on this
        replica (once per target and URI: listen streams of one face share their face's event
        bus)."""
        targets = {
            (id(session), exposed): (exposed, session)
            for (_, exposed), session in self._table.get((server_id, original), {}).items()
        }
        for exposed, session in targets.values():
            with anyio.move_on_after(_LOG_RELAY_TIMEOUT_SECONDS):
                try:
                    await session.send_resource_updated(exposed)
                except Exception as exc:  # a client that went away must not stop the others
                    logger.debug("resources/updated not delivered: %r", exc)
