"""The hub's MCP server faces: the aggregated catalog (`AggregateFace`, served at `/mcp` and
over stdio) and one server under its original names (`ServerFace`, at `/servers/<id>/mcp`), as
lowlevel `mcp` Servers whose handlers resolve names through the catalog and send requests
through the router.

JSON-RPC error translation happens here, once: `RouteNotFound` -> -32602 naming what was asked
for, `ServerUnavailable` -> -32000, `ServerTimeout` -> -32001 (both naming the server),
`FederationLoop` -> -32010 naming the hub chain (-32600 for a malformed chain),
`DefinitionHeld` -> -32050 naming the pin (`hub.pins`), a server's own `MCPError` with its code,
anything unexpected -> -32603 "internal error" (details go to the log only). Every error's
message and data leave with configured secrets masked (`hub.redaction`).

Lists are served a page at a time with keyset cursors (`hub.pages`; an invalid cursor ->
-32602 with `data.reason` `invalid_cursor`).

Resource URIs resolve in RFC 3986 normal form (`hub.uris`), so the policy and the router see
one spelling of each.
"""

from __future__ import annotations

import functools
import logging
import re
import secrets
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar

import anyio
import anyio.abc
import mcp_types as types
from mcp import MCPError
from mcp.server import Server, ServerRequestContext
from mcp.server.caching import CacheHint
from mcp.server.connection import Connection
from mcp.server.context import CallNext, HandlerResult
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.models import InitializationOptions
from mcp.server.session import ServerSession
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER
from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    ListenHandler,
    ResourceUpdated,
    ToolsListChanged,
)
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp_types import (
    CONNECTION_CLOSED,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    LOG_LEVEL_META_KEY,
    PROTOCOL_VERSION_META_KEY,
    REQUEST_TIMEOUT,
    SERVER_INFO_META_KEY,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError
from starlette.datastructures import Headers
from starlette.requests import Request

from adapters._sdk import connection_of, on_connection_closed
from hub.auth import Principal, principal_of
from hub.bridge import HANDLE_PREFIX, SERVER_STATE_PREFIX, Bridge
from hub.catalog import Catalog, Kind, listing_key
from hub.cluster.session_state import SessionState
from hub.config import DEFAULT_LIST_PAGE_SIZE
from hub.errors import HubError, RateLimited, RouteNotFound, ServerError, ServerTimeout, ServerUnavailable
from hub.federation import FEDERATION_KEY, FederationLoop, inbound_chain
from hub.found import LISTENER_KEY, TargetedBus
from hub.list_freshness import LIST_TTL_MS, list_ttl_ms
from hub.logs import new_request_id, server_id_var
from hub.metrics import NO_SERVER, RESOURCE_ROUTE, UNKNOWN_ROUTE, HubMetrics
from hub.naming import exposed_resource_uri
from hub.pages import InvalidCursor, Page, page_of
from hub.pins import DEFINITION_HELD, DefinitionHeld
from hub.policy import Access, audit_logger
from hub.prepared_lists import PreparedLists
from hub.push_era import PushNeedsHandshakeEra
from hub.redaction import mask_error
from hub.relay import CURRENT_CHANNEL, SessionChannel, Subscriptions, principal_id
from hub.resource_links import expose_uris
from hub.router import Router
from hub.search_mode import CALL_TOOL, SEARCH_TOOLS, FaceSearch
from hub.servers import Fleet, ServerConnection, ServerState
from hub.suggestions import suggest
from hub.tasks import FaceTasks, TaskRelay
from hub.trace_context import inbound_trace, read_trace_context
from hub.tracing import CallTracer, SpanRecord
from hub.uris import normalize_uri

__all__ = [
    "CACHE_HINTS",
    "HUB_NAME",
    "LIST_TTL_MS",
    "RATE_LIMITED",
    "AggregateFace",
    "Face",
    "FaceServices",
    "HubServer",
    "ServerFace",
    "SessionRegistry",
    "build_mcp_server",
]

logger = logging.getLogger(__name__)

HUB_NAME = "mcp-federation-hub"
CACHE_HINTS: dict[Any, CacheHint] = {
    "tools/list": CacheHint(ttl_ms=LIST_TTL_MS, scope="private"),
    "prompts/list": CacheHint(ttl_ms=LIST_TTL_MS, scope="private"),
    "resources/list": CacheHint(ttl_ms=LIST_TTL_MS, scope="private"),
    "resources/templates/list": CacheHint(ttl_ms=LIST_TTL_MS, scope="private"),
    "server/discover": CacheHint(ttl_ms=0, scope="private"),
    "resources/read": CacheHint(ttl_ms=0, scope="private"),
}
"""Cache hints of the faces. Always `private`: what a list or read returns may depend on the
principal (policy filtering), so a shared cache must never serve one principal's result to
another (SECURITY.md case 24); the SDK's client cache partitions private entries per
principal. `server/discover` is never fresh (capabilities follow which servers are ready).
The list handlers set each result's `ttlMs` themselves, from the face's servers
(`hub.list_freshness.list_ttl_ms`: at most `LIST_TTL_MS`, 10 s); the value here is the ceiling."""
RATE_LIMITED = -32029
"""JSON-RPC error code of a call refused by a per-route rate limit (server-defined range;
`data.retry_after_seconds` says when to retry)."""
_NOTIFY_TIMEOUT_SECONDS = 5.0
"""How long one client may take to accept a list_changed notification before it is skipped."""


_ResultT = TypeVar("_ResultT", bound=types.Result)


class Face(Protocol):
    """What one MCP server face offers and how its names resolve to (server_id, original)."""

    cursor_scope: str | None
    """What the cursors of the face's lists are bound to (`hub.pages`): None for the aggregated
    face, the server_id of a per-server face, `profile:<name>` of a profile's."""

    def tools(self) -> Sequence[types.Tool]: ...
    def resources(self) -> Sequence[types.Resource]: ...
    def resource_templates(self) -> Sequence[types.ResourceTemplate]: ...
    def prompts(self) -> Sequence[types.Prompt]: ...
    def resolve_tool(self, name: str) -> tuple[str, str] | None: ...
    def resolve_prompt(self, name: str) -> tuple[str, str] | None: ...
    def resolve_uri(self, uri: str) -> tuple[str, str] | None: ...
    def input_schema(self, name: str) -> dict[str, object] | None: ...
    def claimed_by(self, name: str) -> str | None: ...
    def hold(self, kind: Kind, owner: tuple[str, str], name: str) -> DefinitionHeld | None:
        """The refusal for a held definition (pinning) of `owner` (`(server_id, original)`), or None."""
        ...

    def route_key(self, kind: Kind, name: str) -> tuple[str, str] | None:
        """`(server_id, exposed name or URI)` of `name` as this face shows it: what the policy
        decides on, whichever face is used."""
        ...

    def expose_result(self, server_id: str, result: _ResultT) -> _ResultT:
        """`result` from `server_id` with the resource URIs inside it (resource links, embedded
        resources, `contents[].uri`) in the form this face addresses resources by."""
        ...


class AggregateFace:
    """The whole catalog under exposed names (`/mcp`)."""

    cursor_scope: str | None = None

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    def tools(self) -> Sequence[types.Tool]:
        return self._catalog.tools

    def resources(self) -> Sequence[types.Resource]:
        return self._catalog.resources

    def resource_templates(self) -> Sequence[types.ResourceTemplate]:
        return self._catalog.resource_templates

    def prompts(self) -> Sequence[types.Prompt]:
        return self._catalog.prompts

    def resolve_tool(self, name: str) -> tuple[str, str] | None:
        route = self._catalog.tool_route(name)
        return (route.server_id, route.original) if route else None

    def resolve_prompt(self, name: str) -> tuple[str, str] | None:
        route = self._catalog.prompt_route(name)
        return (route.server_id, route.original) if route else None

    def resolve_uri(self, uri: str) -> tuple[str, str] | None:
        return self._catalog.resource_owner(uri)

    def input_schema(self, name: str) -> dict[str, object] | None:
        return self._catalog.tool_input_schema(name)

    def claimed_by(self, name: str) -> str | None:
        return self._catalog.claimed_by(name)

    def hold(self, kind: Kind, owner: tuple[str, str], name: str) -> DefinitionHeld | None:
        return self._catalog.hold(kind, owner[0], owner[1], name)

    def route_key(self, kind: Kind, name: str) -> tuple[str, str] | None:
        if kind == "tools" or kind == "prompts":
            route = self._catalog.tool_route(name) if kind == "tools" else self._catalog.prompt_route(name)
            return (route.server_id, name) if route else None
        owner = self._catalog.resource_owner(name)  # normalised: the policy decides on the normal form
        return (owner[0], exposed_resource_uri(*owner)) if owner else None

    def expose_result(self, server_id: str, result: _ResultT) -> _ResultT:
        return expose_uris(server_id, result)


class ServerFace:
    """One server under its original names (`/servers/<server_id>/mcp`)."""

    def __init__(self, catalog: Catalog, server_id: str) -> None:
        self._catalog = catalog
        self._server_id = server_id
        self.cursor_scope: str | None = server_id

    def tools(self) -> Sequence[types.Tool]:
        return self._catalog.server_view(self._server_id).tools

    def resources(self) -> Sequence[types.Resource]:
        return self._catalog.server_view(self._server_id).resources

    def resource_templates(self) -> Sequence[types.ResourceTemplate]:
        return self._catalog.server_view(self._server_id).resource_templates

    def prompts(self) -> Sequence[types.Prompt]:
        return self._catalog.server_view(self._server_id).prompts

    def resolve_tool(self, name: str) -> tuple[str, str] | None:
        return (self._server_id, name) if name in self._catalog.server_view(self._server_id).tool_names else None

    def resolve_prompt(self, name: str) -> tuple[str, str] | None:
        return (self._server_id, name) if name in self._catalog.server_view(self._server_id).prompt_names else None

    def resolve_uri(self, uri: str) -> tuple[str, str] | None:
        return self._server_id, normalize_uri(uri)

    def input_schema(self, name: str) -> dict[str, object] | None:
        return self._catalog.server_view(self._server_id).input_schemas.get(name)

    def claimed_by(self, name: str) -> str | None:
        return self._server_id

    def hold(self, kind: Kind, owner: tuple[str, str], name: str) -> DefinitionHeld | None:
        return self._catalog.hold(kind, owner[0], owner[1], name)

    def route_key(self, kind: Kind, name: str) -> tuple[str, str] | None:
        if kind == "tools" or kind == "prompts":
            exposed = self._catalog.exposed_name(kind, self._server_id, name)
            return (self._server_id, exposed) if exposed else None
        return self._server_id, exposed_resource_uri(self._server_id, normalize_uri(name))

    def expose_result(self, server_id: str, result: _ResultT) -> _ResultT:
        return result  # this face addresses resources by their original URIs


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
        """The level of a session held on this replica (`hub.cluster.sessions`) as its client
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
        async def send(session: ServerSession) -> None:
            with anyio.move_on_after(_NOTIFY_TIMEOUT_SECONDS):
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


_HOP_META_KEYS = (SERVER_INFO_META_KEY, PROTOCOL_VERSION_META_KEY)
"""`_meta` stamps that describe one hop (who answered, in which era): a server's stamps are
dropped so that the hub's own are the ones its clients see."""

_INVALID_STATE = {"reason": "invalid_request_state"}


def _restamp(result: _ResultT) -> _ResultT:
    """`result` without the server's hop-level `_meta` stamps (content is untouched)."""
    meta = result.meta
    if not meta or not any(key in meta for key in _HOP_META_KEYS):
        return result
    kept = {key: value for key, value in meta.items() if key not in _HOP_META_KEYS}
    return result.model_copy(update={"meta": kept or None})


async def _not_found(
    face: Face,
    router: Router,
    kind: str,
    name: str,
    visible_names: Callable[[], Sequence[str]],
    *,
    disclose: bool = True,
) -> HubError:
    """RouteNotFound, with the names among `visible_names()` (the ones the caller may see)
    spelled most like `name` as suggestions; unless the name belongs to a server that is down
    (and `disclose`, i.e. no policy restricts the caller): then that server's
    ServerUnavailable, so the caller learns which server to wait for. Suggestions come only
    from what the caller may see, so a hidden name is answered like an unknown one."""
    server_id = face.claimed_by(name) if disclose else None
    if server_id is not None:
        try:
            router.require_ready(server_id)
        except ServerUnavailable as exc:
            return exc
    return RouteNotFound(kind, name, await suggest(name, visible_names()))


def _refuse_held(face: Face, kind: Kind, owner: tuple[str, str], name: str) -> None:
    """:raises DefinitionHeld: pinning holds the definition (checked after the policy, so a
    route the caller may not use still answers like an unknown one)."""
    held = face.hold(kind, owner, name)
    if held is not None:
        raise held


_ROUTED_METHODS: Final = frozenset({"tools/call", "resources/read", "prompts/get", "completion/complete"})
"""Requests that go through the router to a server (the ones metrics and spans count)."""


def _route_of(face: Face, method: str, params: Mapping[str, Any] | None) -> tuple[str, str]:
    """`(route label, server_id)` of a routed request: the exposed name only when the face
    resolves it (bounded by the catalog), else `UNKNOWN_ROUTE`; resource URIs are never labels."""
    params = params if isinstance(params, Mapping) else {}
    if method == "completion/complete":
        ref = params.get("ref")
        ref = ref if isinstance(ref, Mapping) else {}
        if ref.get("type") == "ref/prompt":
            method, params = "prompts/get", ref
        else:
            method, params = "resources/read", {"uri": ref.get("uri")}
    if method == "resources/read":
        uri = params.get("uri")
        owner = face.resolve_uri(uri) if isinstance(uri, str) else None
        return (RESOURCE_ROUTE, owner[0]) if owner else (UNKNOWN_ROUTE, NO_SERVER)
    name = params.get("name")
    if method == "tools/call" and name in (SEARCH_TOOLS, CALL_TOOL):
        # Search mode: a search is its own route; `call_tool` is labelled as the tool it calls.
        arguments = params.get("arguments")
        inner = arguments.get("name") if isinstance(arguments, Mapping) and name == CALL_TOOL else None
        if not isinstance(inner, str):
            return name, NO_SERVER
        name = inner
    if not isinstance(name, str):
        return UNKNOWN_ROUTE, NO_SERVER
    owner = face.resolve_tool(name) if method == "tools/call" else face.resolve_prompt(name)
    if owner is not None:
        return name, owner[0]
    return UNKNOWN_ROUTE, face.claimed_by(name) or NO_SERVER


_ASKED_MAX_CHARS: Final = 80
"""How much of a requested name or URI a log line shows."""


def _asked(method: str, params: Mapping[str, Any] | None) -> str:
    """What a routed request asked for, for a log line: the tool or prompt name, or the
    resource URI without its query, fragment or userinfo, cut to 80 characters and escaped
    (`repr`: control characters and line breaks cannot forge log lines). Never the arguments."""
    params = params if isinstance(params, Mapping) else {}
    if method == "completion/complete":
        ref = params.get("ref")
        params = ref if isinstance(ref, Mapping) else {}
    key = "uri" if "uri" in params else "name"
    value = params.get(key)
    if not isinstance(value, str):
        return "(none)"
    if key == "uri":
        value = re.sub(r"//[^/@?#]*@", "//", value.split("#", 1)[0])
        value = value.split("?", 1)[0] + ("?..." if "?" in value else "")
    if len(value) > _ASKED_MAX_CHARS:
        value = value[:_ASKED_MAX_CHARS] + "..."
    return repr(value)


def _outcome_of(exc: HubError) -> str:
    """The `outcome` label of a HubError (see `HubMetrics.observe_call`)."""
    if isinstance(exc, RouteNotFound):
        return "not_found"
    if isinstance(exc, InvalidCursor):
        return "invalid"
    if isinstance(exc, RateLimited):
        return "rate_limited"
    if isinstance(exc, DefinitionHeld):
        return "held"
    if isinstance(exc, ServerTimeout):
        return "timeout"
    if isinstance(exc, ServerUnavailable):
        return "unavailable"
    return "internal_error"


def _to_mcp_error(exc: HubError) -> MCPError:
    """The JSON-RPC error a client gets for a HubError; `data` names the route or server."""
    if isinstance(exc, FederationLoop):
        return MCPError(exc.code, str(exc), exc.data)
    if isinstance(exc, RouteNotFound):
        return MCPError(INVALID_PARAMS, str(exc), {"kind": exc.kind, "name": exc.name, "suggestions": exc.suggestions})
    if isinstance(exc, InvalidCursor):
        return MCPError(INVALID_PARAMS, str(exc), {"reason": "invalid_cursor"})
    if isinstance(exc, RateLimited):
        return MCPError(RATE_LIMITED, str(exc), {"retry_after_seconds": round(exc.retry_after_seconds, 3)})
    if isinstance(exc, DefinitionHeld):
        return MCPError(DEFINITION_HELD, str(exc), exc.data())
    if isinstance(exc, ServerTimeout):
        return MCPError(REQUEST_TIMEOUT, str(exc), {"server_id": exc.server_id})
    if isinstance(exc, ServerUnavailable):
        return MCPError(CONNECTION_CLOSED, str(exc), {"server_id": exc.server_id})
    if isinstance(exc, ServerError):
        return MCPError(INTERNAL_ERROR, str(exc), {"server_id": exc.server_id})
    return MCPError(INTERNAL_ERROR, str(exc))


class HubServer(Server[Any]):
    """A lowlevel `Server` that advertises `listChanged` to handshake-era clients (the session
    manager builds its initialization options without `NotificationOptions`; SDK-NOTES gotcha 2),
    `logging`, `completions` and `resources.subscribe` only when a ready server of the face
    offers them (while none is ready, what the handlers allow), tasks only when a ready server
    offers them in the era asked (`hub.tasks`), and the hub's federation identity in
    `experimental["io.mcphub/federation"]` (`hub.federation`)."""

    services: FaceServices | None = None
    tasks: FaceTasks | None = None

    def get_capabilities(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
        *,
        protocol_version: str | None = None,
    ) -> types.ServerCapabilities:
        caps = super().get_capabilities(
            notification_options, experimental_capabilities, extensions, protocol_version=protocol_version
        )
        services = self.services
        if services is None:
            return caps
        if self.tasks is not None:
            caps = self.tasks.advertise(caps, protocol_version)
        # Who this hub is and whom it federates (hub.federation): both eras carry `experimental`.
        advertised = {FEDERATION_KEY: services.fleet.federation.advertisement(services.scope)}
        update: dict[str, Any] = {"experimental": {**(caps.experimental or {}), **advertised}}
        offered = [c.server_capabilities for c in services.connections() if c.state is ServerState.READY]
        offered_caps = [c for c in offered if c is not None]
        if offered_caps:
            if not any(c.completions is not None for c in offered_caps):
                update["completions"] = None
            if not any(c.logging is not None for c in offered_caps):
                update["logging"] = None
            if caps.resources is not None and caps.resources.subscribe:
                if not any(c.resources is not None and c.resources.subscribe for c in offered_caps):
                    update["resources"] = caps.resources.model_copy(update={"subscribe": False})
        return caps.model_copy(update=update)

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        return super().create_initialization_options(
            notification_options
            or NotificationOptions(prompts_changed=True, resources_changed=True, tools_changed=True),
            experimental_capabilities,
            extensions,
        )


@dataclass
class FaceServices:
    """What the faces share beyond the catalog and router: the server connections (era,
    subscriptions, logging level), the era bridge and the subscription table.

    :param scope: the one server a per-server face fronts, or None for the aggregated face.
    """

    fleet: Fleet
    bridge: Bridge
    subscriptions: Subscriptions
    scope: str | None = None
    tasks: TaskRelay | None = None
    """The task route table (`hub.tasks`), shared by every face; None: tasks are not relayed."""
    sessions: SessionState | None = None
    """Per-session state the replicas share (`hub.cluster.session_state`); None: kept locally."""

    def connections(self) -> list[ServerConnection]:
        if self.scope is not None:
            connection = self.fleet.get(self.scope)
            return [connection] if connection is not None else []
        return list(self.fleet.connections.values())

    def is_modern(self, server_id: str) -> bool:
        """Whether `server_id` (a replicated one: any of its members) speaks the modern era to
        requests that may push: not once it was found to push (`hub.push_era`)."""
        return any(
            c.protocol_version in MODERN_PROTOCOL_VERSIONS and not c.pushes_over_handshake_era
            for c in self.fleet.members(server_id)
        )


class _BusTarget:
    """Delivers `resources/updated` to a face's modern-era listeners (`subscriptions/listen`
    streams filter the bus events by the URIs each one asked for)."""

    def __init__(self, bus: InMemorySubscriptionBus) -> None:
        self._bus = bus

    async def send_resource_updated(self, uri: str) -> None:
        await self._bus.publish(ResourceUpdated(uri=uri))


class _ListenHandler(ListenHandler):
    """`subscriptions/listen` (2026-07-28) whose `resourceSubscriptions` are forwarded to the
    owning servers for as long as the stream is open (through the shared `Subscriptions`)."""

    def __init__(self, bus: InMemorySubscriptionBus, face: Face, services: FaceServices, access: Access) -> None:
        super().__init__(bus)
        self._face = face
        self._services = services
        self._access = access
        self._target = _BusTarget(bus)

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], params: types.SubscriptionsListenRequestParams
    ) -> types.SubscriptionsListenResult:
        # The stream's bus listener is registered under its client (`hub.found.TargetedBus`).
        token = LISTENER_KEY.set(_client_key(ctx))
        try:
            return await self._listen(ctx, params)
        finally:
            LISTENER_KEY.reset(token)

    async def _listen(
        self, ctx: ServerRequestContext[Any, Any], params: types.SubscriptionsListenRequestParams
    ) -> types.SubscriptionsListenResult:
        uris = params.notifications.resource_subscriptions or []
        if not uris:
            return await super().__call__(ctx, params)
        subscriptions = self._services.subscriptions
        key = f"listen:{secrets.token_hex(8)}"
        try:
            principal = _principal(ctx)
            for uri in uris:
                owner = self._face.resolve_uri(uri)
                if owner is None or not self._access.visible(principal, self._face.route_key("resources", uri)):
                    continue
                try:
                    await subscriptions.subscribe(key, self._target, uri, *owner)
                except (HubError, MCPError) as exc:
                    logger.info("listen: %s not subscribed at %s: %s", uri, owner[0], exc)
            return await super().__call__(ctx, params)
        finally:
            subscriptions.forget(key)


def _session_id(ctx: ServerRequestContext[Any]) -> str | None:
    """The `Mcp-Session-Id` of a handshake-era request over HTTP (None over stdio)."""
    return ctx.request.headers.get(MCP_SESSION_ID_HEADER) if isinstance(ctx.request, Request) else None


def _client_key(ctx: ServerRequestContext[Any]) -> str:
    if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
        return f"principal:{principal_id(ctx)}"
    return SessionRegistry.client_key(ctx.session)


def _wrap_server_state(result: types.Result) -> types.Result:
    """A modern-era server's `InputRequiredResult` with its `request_state` wrapped for the
    hub's boundary (sealed on the way out, unwrapped unchanged on the way back)."""
    if isinstance(result, types.InputRequiredResult):
        return result.model_copy(update={"request_state": SERVER_STATE_PREFIX + (result.request_state or "")})
    return _restamp(result)


def _principal(ctx: ServerRequestContext[Any]) -> Principal:
    request = ctx.request
    return principal_of(request if isinstance(request, Request) else None)


_ItemT = TypeVar("_ItemT", types.Tool, types.Prompt, types.Resource, types.ResourceTemplate)
_Owner = tuple[str, str] | None


def build_mcp_server(
    face: Face,
    router: Router,
    registry: SessionRegistry,
    bus: InMemorySubscriptionBus,
    name: str,
    instructions: str,
    access: Access,
    services: FaceServices,
    *,
    metrics: HubMetrics | None = None,
    tracer: CallTracer | None = None,
    page_size: int = DEFAULT_LIST_PAGE_SIZE,
    search: FaceSearch | None = None,
) -> HubServer:
    """A lowlevel `mcp` Server serving `face` in both eras: list handlers read the catalog (no
    server round trip), `tools/call`, `resources/read`, `prompts/get` and `completion/complete`
    go through `router` under original names, progress is relayed when the caller asked for it
    (`_meta.progressToken`), and `subscriptions/listen` streams `bus` events (modern era).

    With `services` (the fleet, bridge, subscriptions, tasks and sessions the face works with):
    server-to-client requests and log messages are relayed to the calling client (`hub.relay`);
    multi-round-trip requests of modern-era clients are passed through (modern-era servers) or
    bridged (`hub.bridge`); `requestState` is sealed and verified; `resources/subscribe`/
    `unsubscribe` and `logging/setLevel` are forwarded to the owning servers (handshake era).
    With `services.tasks`, tasks are relayed in both eras (`hub.tasks`: `tasks/*` handlers, task
    results of `tools/call`, the advertised capability).

    Every list is filtered, and every use guarded, by `access` for the request's principal: a
    route the principal may not use is absent from its lists and answers exactly like an
    unknown name (-32602), so its existence does not leak.

    :param registry: records each handshake-era session for `list_changed` fan-out.
    :param name: the `serverInfo.name` clients see.
    :param access: the policy and per-route rate limits.
    :param metrics: records every routed request (method, route, server, outcome, latency).
    :param tracer: opens a span per routed request (None: tracing off, no cost).
    :param page_size: most items per list page (`list_page_size`; `hub.pages`: keyset cursors
        bound to the list and the face, an invalid one -> -32602).
    :param search: the face's search mode (`hub.search_mode`): for a caller in search mode,
        `tools/list` offers `search_tools` and `call_tool` (and the tools it keeps listed), and
        calls of those two are served by it, `call_tool` through this face's own direct call.
        None: always the full list.

    Every incoming request gets a fresh request id (`hub.logs`) for the log lines it causes.
    With `services`, each request's hub chain is checked first and kept in context for the
    requests it causes, and list results and capabilities carry the hub's federation
    advertisement (`hub.federation`).
    """

    federation = services.fleet.federation

    def advertised() -> dict[str, Any]:
        """List results' `_meta`: this hub's federation advertisement (hub.federation)."""
        return {FEDERATION_KEY: federation.advertisement(scope)}

    def envelope() -> dict[str, Any]:
        """A list result's `_meta` and `ttlMs` (wire keys)."""
        return {"_meta": advertised(), "ttlMs": ttl()}

    def ttl() -> int:
        """List results' `ttlMs`: until the face's servers' lists could next change by expiry
        (every member of a replicated server), at most `LIST_TTL_MS` (hub.list_freshness)."""
        fleet = services.fleet
        return list_ttl_ms(fleet.members(services.scope) if services.scope else fleet.connections.values())

    tasks: FaceTasks | None = None
    if services.tasks is not None:
        tasks = services.tasks.face(
            services.scope,
            lambda ctx: SessionChannel(
                ctx,
                _client_key(ctx),
                None if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS else registry.level(ctx.session),
            ),
            registry.standing,
        )
    # The one server this face fronts (None: the whole fleet): what its lists wait for.
    scope = services.scope
    lists = PreparedLists(access, face.route_key, page_size, face.cursor_scope)

    async def started() -> None:
        """Lists wait until every server of the face has had its first start attempt (each
        bounded by its `startup_timeout_seconds`): clients cache the first list they get. A
        list from another hub (a request with a hub chain) is answered at once: a hub re-lists
        on `list_changed`, and two hubs that start side by side listing each other would
        otherwise each wait for the other's first list."""
        if inbound_chain.get():
            return
        await router.wait_started(scope)

    async def settled(ctx: ServerRequestContext[Any], name: str, resolve: Callable[[str], _Owner]) -> _Owner:
        """`resolve(name)`; when it finds nothing while a server is starting, wait for the
        first start attempts of the face, then for the server whose prefix `name` carries if
        it is restarting (only when the caller may use that name), and resolve again."""
        owner = resolve(name)
        if owner is not None:
            return owner
        if router.starting(scope):
            await router.wait_started(scope)
            owner = resolve(name)
        claimed = face.claimed_by(name) if owner is None else None
        if claimed is not None and may_wait_for(ctx, claimed, name) and await router.wait_serving(claimed):
            owner = resolve(name)
        return owner

    def may_wait_for(ctx: ServerRequestContext[Any], server_id: str, name: str) -> bool:
        """Whether waiting for `server_id` on a name it does not list (yet) discloses nothing:
        no policy restricts the caller, or the policy lets it use `name` on the aggregated face."""
        principal = _principal(ctx)
        if not access.restricts(principal):
            return True
        return isinstance(face, AggregateFace) and access.visible(principal, (server_id, name))

    def visible(ctx: ServerRequestContext[Any], kind: Kind, items: Sequence[_ItemT]) -> list[_ItemT]:
        principal = _principal(ctx)
        if not access.restricts(principal):
            return list(items)
        return [item for item in items if access.visible(principal, face.route_key(kind, listing_key(item)))]

    def listed(
        ctx: ServerRequestContext[Any],
        kind: Kind,
        items: Sequence[_ItemT],
        params: types.PaginatedRequestParams | None,
        *,
        narrowed: bool = False,
    ) -> Page[_ItemT]:
        """The page of `items` (sorted by listing key) that the request's cursor asks for, cut
        from what its principal may see (hub.pages), or from all of `items` when they are
        `narrowed` to it already (search mode's list).

        :raises InvalidCursor: the cursor is not one of this list on this face.
        """
        principal = _principal(ctx)

        def may_see(item: _ItemT) -> bool:
            return access.visible(principal, face.route_key(kind, listing_key(item)))

        cursor = params.cursor if params is not None else None
        admit = may_see if access.restricts(principal) and not narrowed else None
        return page_of(items, kind, cursor, page_size, admit=admit, scope=face.cursor_scope)

    def visible_names(ctx: ServerRequestContext[Any], kind: Kind) -> Callable[[], list[str]]:
        """The tool or prompt names the request's principal may see (evaluated when called, on
        the error path only: they are the "did you mean" candidates)."""
        if kind == "tools":
            return lambda: [tool.name for tool in visible(ctx, "tools", face.tools())]
        return lambda: [prompt.name for prompt in visible(ctx, "prompts", face.prompts())]

    async def admitted(ctx: ServerRequestContext[Any], kind: Kind, name: str) -> tuple[bool, bool]:
        """`(admitted, disclose)` for using `name`: whether the principal may use it, and whether
        a refusal may say that its server is down.

        :raises RateLimited: the principal is over its per-route limit.
        """
        principal = _principal(ctx)
        restricted = access.restricts(principal)
        key = face.route_key(kind, name)
        if key is None:
            return False, not restricted
        return await access.admit(principal, kind, key), not restricted

    async def routed(
        ctx: ServerRequestContext[Any],
        server_id: str,
        input_responses: types.InputResponses | None,
        request_state: str | None,
        send: Callable[..., Awaitable[types.Result]],
    ) -> Any:
        """Send one routed request with the caller's channel in context, in the caller's era."""
        modern_client = ctx.protocol_version in MODERN_PROTOCOL_VERSIONS
        level = None if modern_client else registry.level(ctx.session)
        channel = SessionChannel(ctx, _client_key(ctx), level)
        token = CURRENT_CHANNEL.set(channel)
        try:
            if not modern_client:
                try:
                    return _restamp(await send())
                except PushNeedsHandshakeEra:  # sent once more, over the handshake-era connection
                    return _restamp(await send())
            if request_state is not None and request_state.startswith(HANDLE_PREFIX):
                return await services.bridge.resume(ctx, request_state, input_responses)
            server_state: str | None = None
            if request_state is not None:
                if not request_state.startswith(SERVER_STATE_PREFIX):
                    raise MCPError(
                        INVALID_PARAMS, "Invalid or expired requestState", {"reason": "invalid_request_state"}
                    )
                server_state = request_state[len(SERVER_STATE_PREFIX) :] or None
            if services.is_modern(server_id):
                try:
                    result = await send(
                        allow_input_required=True, input_responses=input_responses, request_state=server_state
                    )
                except PushNeedsHandshakeEra:
                    pass  # sent once more below, bridged, over the handshake-era connection
                else:
                    return _wrap_server_state(result)
            return _restamp(await services.bridge.start(ctx, channel.client_key, channel, send))
        finally:
            CURRENT_CHANNEL.reset(token)

    def log_level(ctx: ServerRequestContext[Any]) -> str | None:
        """The logging opt-in to pass to a modern-era server: the modern-era client's own
        (`_meta` logLevel), or for a handshake-era client its `logging/setLevel` (default debug:
        handshake-era servers send every level until told otherwise)."""
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            requested = (ctx.meta or {}).get(LOG_LEVEL_META_KEY)
            return requested if isinstance(requested, str) else None
        return registry.level(ctx.session) or "debug"

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> Any:  # a dict of wire keys (hub.prepared_lists), or search mode's model
        await started()
        searching = search.listing(_principal(ctx), _client_key(ctx)) if search is not None else None
        if searching is None:
            return lists.result(ctx, _principal(ctx), "tools", face.tools(), params, envelope())
        page = listed(ctx, "tools", searching, params, narrowed=True)
        return types.ListToolsResult(tools=page.items, next_cursor=page.next_cursor, _meta=advertised(), ttl_ms=ttl())

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> Any:
        if search is not None and search.serves(principal := _principal(ctx), params.name):
            return await search.call(ctx, params, principal, _client_key(ctx), direct_call, lambda: announce_found(ctx))
        return await direct_call(ctx, params)

    async def announce_found(ctx: ServerRequestContext[Any]) -> None:
        """Tell the client of `ctx` (only it) that its `tools/list` changed: its session in the
        handshake era, its principal's listen streams in the modern era (`hub.found`)."""
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            if isinstance(bus, TargetedBus):
                await bus.publish_to(_client_key(ctx), ToolsListChanged())
            return
        with anyio.move_on_after(_NOTIFY_TIMEOUT_SECONDS):
            try:
                await registry.standing(ctx.session).send_tool_list_changed()
            except Exception as exc:  # a client that went away does not fail its search
                logger.debug("list_changed not delivered to a session: %r", exc)

    async def direct_call(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> Any:
        """`tools/call` of an exposed name: every check, then the router."""
        owner = await settled(ctx, params.name, face.resolve_tool)
        allowed, disclose = await admitted(ctx, "tools", params.name)
        if owner is None or not allowed:
            raise await _not_found(face, router, "tool", params.name, visible_names(ctx, "tools"), disclose=disclose)
        _refuse_held(face, "tools", owner, params.name)
        progress = None
        if ctx.meta and ctx.meta.get("progress_token") is not None:
            progress = ctx.session.report_progress
        level = log_level(ctx)

        async def send(**mrtr: Any) -> types.Result:
            extra = {"log_level": level, **mrtr}
            if tasks is not None and (task := tasks.task_param(ctx, params)) is not None:
                extra["task"] = task
            return await router.call_tool(owner[0], owner[1], params.arguments, progress, **extra)

        result = await routed(ctx, owner[0], params.input_responses, params.request_state, send)
        if tasks is not None and tasks.is_task(result):
            return tasks.created(ctx, face.route_key("tools", params.name) or owner, owner, result)
        return face.expose_result(owner[0], result)

    async def list_resources(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> Any:  # a dict of wire keys (hub.prepared_lists)
        await started()
        return lists.result(ctx, _principal(ctx), "resources", face.resources(), params, envelope())

    async def list_resource_templates(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> Any:  # a dict of wire keys (hub.prepared_lists)
        await started()
        return lists.result(ctx, _principal(ctx), "resource_templates", face.resource_templates(), params, envelope())

    async def read_resource(ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams) -> Any:
        owner = face.resolve_uri(str(params.uri))
        if owner is None or not (await admitted(ctx, "resources", str(params.uri)))[0]:
            raise RouteNotFound("resource", str(params.uri))
        _refuse_held(face, "resources", owner, str(params.uri))

        async def send(**mrtr: Any) -> types.Result:
            return await router.read_resource(owner[0], owner[1], **mrtr)

        result = face.expose_result(
            owner[0], await routed(ctx, owner[0], params.input_responses, params.request_state, send)
        )
        if isinstance(result, types.ReadResourceResult) and "cache_scope" in result.model_fields_set:
            # A server's "public" is about its own callers; behind the hub the caller is a principal.
            result = result.model_copy(update={"cache_scope": "private"})
        return result

    async def list_prompts(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> Any:  # a dict of wire keys (hub.prepared_lists)
        await started()
        return lists.result(ctx, _principal(ctx), "prompts", face.prompts(), params, envelope())

    async def get_prompt(ctx: ServerRequestContext[Any], params: types.GetPromptRequestParams) -> Any:
        owner = await settled(ctx, params.name, face.resolve_prompt)
        allowed, disclose = await admitted(ctx, "prompts", params.name)
        if owner is None or not allowed:
            raise await _not_found(
                face, router, "prompt", params.name, visible_names(ctx, "prompts"), disclose=disclose
            )
        _refuse_held(face, "prompts", owner, params.name)

        async def send(**mrtr: Any) -> types.Result:
            return await router.get_prompt(owner[0], owner[1], params.arguments, **mrtr)

        result = await routed(ctx, owner[0], params.input_responses, params.request_state, send)
        return face.expose_result(owner[0], result)

    async def complete(ctx: ServerRequestContext[Any], params: types.CompleteRequestParams) -> types.CompleteResult:
        ref = params.ref
        owner: tuple[str, str] | None
        original_ref: types.PromptReference | types.ResourceTemplateReference
        if isinstance(ref, types.PromptReference):
            owner = await settled(ctx, ref.name, face.resolve_prompt)
            allowed, disclose = await admitted(ctx, "prompts", ref.name)
            if owner is None or not allowed:
                raise await _not_found(
                    face, router, "prompt", ref.name, visible_names(ctx, "prompts"), disclose=disclose
                )
            _refuse_held(face, "prompts", owner, ref.name)
            original_ref = ref.model_copy(update={"name": owner[1]})
        else:
            owner = face.resolve_uri(ref.uri)
            if owner is None or not (await admitted(ctx, "resource_templates", ref.uri))[0]:
                raise RouteNotFound("resource template", ref.uri)
            _refuse_held(face, "resource_templates", owner, ref.uri)
            original_ref = ref.model_copy(update={"uri": owner[1]})
        argument = {"name": params.argument.name, "value": params.argument.value}
        context = params.context.arguments if params.context else None
        return _restamp(await router.complete(owner[0], original_ref, argument, context))

    async def subscribe(ctx: ServerRequestContext[Any], params: types.SubscribeRequestParams) -> types.EmptyResult:
        exposed = str(params.uri)
        owner = face.resolve_uri(exposed)
        if owner is None or not (await admitted(ctx, "resources", exposed))[0]:
            raise RouteNotFound("resource", exposed)
        await services.subscriptions.subscribe(SessionRegistry.client_key(ctx.session), ctx.session, exposed, *owner)
        if (session_id := _session_id(ctx)) is not None and services.sessions is not None:
            await services.sessions.set_subscribed(session_id, exposed, True)
        return types.EmptyResult()

    async def unsubscribe(ctx: ServerRequestContext[Any], params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        exposed = str(params.uri)
        owner = face.resolve_uri(exposed)
        if owner is not None:
            await services.subscriptions.unsubscribe(SessionRegistry.client_key(ctx.session), exposed, *owner)
        if (session_id := _session_id(ctx)) is not None and services.sessions is not None:
            await services.sessions.set_subscribed(session_id, exposed, False)
        return types.EmptyResult()

    async def set_level(ctx: ServerRequestContext[Any], params: types.SetLevelRequestParams) -> types.EmptyResult:
        """Record the session's level (the hub filters what it relays) and forward it to every
        server of the face (handshake-era servers: `logging/setLevel`; modern-era servers: the
        per-request opt-in); a server that fails is logged and skipped."""
        registry.set_level(ctx.session, params.level)
        if (session_id := _session_id(ctx)) is not None and services.sessions is not None:
            await services.sessions.set_log_level(session_id, params.level)

        async def forward(connection: ServerConnection) -> None:
            try:
                await connection.set_logging_level(params.level)
            except (HubError, MCPError) as exc:
                logger.info("logging/setLevel not forwarded to %s: %s", connection.server_id, exc)

        async with anyio.create_task_group() as tg:
            for connection in services.connections():
                if connection.state is ServerState.READY:
                    tg.start_soon(forward, connection)
        return types.EmptyResult()

    handshake_only: dict[str, Any] = {
        "on_subscribe_resource": subscribe,
        "on_unsubscribe_resource": unsubscribe,
        "on_set_logging_level": set_level,
    }
    with warnings.catch_warnings():
        # logging/setLevel is served for handshake-era clients; the SDK flags it as deprecated at 2026-07-28.
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        server = HubServer(
            name,
            version=_version(),
            instructions=instructions,
            get_tool_input_schema=face.input_schema,
            on_list_tools=list_tools,
            on_call_tool=call_tool,
            on_list_resources=list_resources,
            on_list_resource_templates=list_resource_templates,
            on_read_resource=read_resource,
            on_list_prompts=list_prompts,
            on_get_prompt=get_prompt,
            on_completion=complete,
            on_subscriptions_listen=_ListenHandler(bus, face, services, access),
            cache_hints=CACHE_HINTS,
            **handshake_only,
        )
    server.services = services
    server.tasks = tasks
    if tasks is not None:
        for method, params_type, handler in tasks.handlers():
            server.add_request_handler(method, params_type, handler)

    async def translate(ctx: ServerRequestContext[Any], call_next: CallNext, record: SpanRecord) -> HandlerResult:
        try:
            result = await call_next(ctx)
        except MCPError as exc:
            record.outcome = "invalid" if exc.code == INVALID_PARAMS else "server_error"
            masked = mask_error(exc)  # a server's error may carry its own secrets (hub.redaction)
            if masked is exc:
                raise
            raise masked from None
        except ValidationError:
            record.outcome = "invalid"
            raise
        except HubError as exc:
            record.outcome = _outcome_of(exc)
            raise mask_error(_to_mcp_error(exc)) from None
        except Exception:
            logger.exception("unexpected error while handling %s", ctx.method)
            raise MCPError(INTERNAL_ERROR, "internal error in the hub (details are in its log)") from None
        record.outcome = "tool_error" if getattr(result, "is_error", False) else "ok"
        return result

    def described(ctx: ServerRequestContext[Any], record: SpanRecord) -> str:
        """The route of a log line: its exposed name, or for an unknown name or a resource the
        label followed by what was asked (`tools/call <unknown> 'evrything__echo'`)."""
        if record.route in (UNKNOWN_ROUTE, RESOURCE_ROUTE):
            return f"{record.route} {_asked(ctx.method, ctx.params)}"
        return record.route

    async def boundary(ctx: ServerRequestContext[Any], call_next: CallNext) -> HandlerResult:
        """Serve a request with its W3C trace context in context (outgoing requests carry it
        on, or their own span's when tracing is on; hub.trace_context)."""
        headers = ctx.request.headers if isinstance(ctx.request, Request) else None
        trace = read_trace_context(ctx.meta, headers)
        if trace is None:
            return await chained(ctx, call_next, headers)
        token = inbound_trace.set(trace)
        try:
            return await chained(ctx, call_next, headers)
        finally:
            inbound_trace.reset(token)

    async def chained(ctx: ServerRequestContext[Any], call_next: CallNext, headers: Headers | None) -> HandlerResult:
        """Refuse a request whose hub chain loops or is too long, and serve the rest with
        their chain in context (outgoing requests extend it; hub.federation)."""
        if federation is None or ctx.request_id is None:
            return await request_boundary(ctx, call_next, headers)
        try:
            chain = federation.check_inbound(ctx.meta, headers)
        except FederationLoop as exc:
            audit_logger.warning("refused %s: %s", ctx.method, exc)
            raise _to_mcp_error(exc) from None
        token = inbound_chain.set(chain)
        try:
            return await request_boundary(ctx, call_next, headers)
        finally:
            inbound_chain.reset(token)

    async def request_boundary(
        ctx: ServerRequestContext[Any], call_next: CallNext, headers: Headers | None
    ) -> HandlerResult:
        if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            registry.track(ctx.session)
        request_id = new_request_id()
        record = SpanRecord()
        if ctx.method not in _ROUTED_METHODS:
            return await translate(ctx, call_next, record)
        record.route, record.server_id = _route_of(face, ctx.method, ctx.params)
        server_token = server_id_var.set(record.server_id or None)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s %s -> server %s", ctx.method, described(ctx, record), record.server_id or "-")
        started = time.perf_counter()
        try:
            if tracer is None:
                return await translate(ctx, call_next, record)
            with tracer.span(ctx.method, request_id, record, ctx.meta, headers, ctx.protocol_version):
                return await translate(ctx, call_next, record)
        except BaseException as exc:
            if not isinstance(exc, Exception | ExceptionGroup):
                record.outcome = "cancelled"
            if record.outcome not in ("ok", "tool_error"):
                logger.info("%s %s: %s", ctx.method, described(ctx, record), record.outcome)
            raise
        finally:
            if metrics is not None:
                metrics.observe_call(
                    ctx.method, record.route, record.server_id, record.outcome, time.perf_counter() - started
                )
            server_id_var.reset(server_token)

    # The SDK's OpenTelemetry middleware costs ~7% CPU with no exporter (PERFORMANCE.md).
    server.middleware[:] = [boundary]
    # Seals every requestState the face returns and verifies every one it is sent.
    server.middleware.append(services.bridge.boundary(name))
    if tasks is not None:
        # Passes a handshake-era CreateTaskResult past the SDK's CallToolResult shaping.
        server.middleware.append(tasks.middleware)
    # Puts each list's prepared page in the result the SDK shaped around an empty one.
    server.middleware.append(lists.middleware)
    return server


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mcp-federation-hub")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0"
