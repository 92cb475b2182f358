"""The hub's MCP server faces: the aggregated catalog (`AggregateFace`, served at `/mcp` and
over stdio) and one server under its original names (`ServerFace`, at `/servers/<id>/mcp`), as
lowlevel `mcp` Servers whose handlers resolve names through the catalog and send requests
through the router.

JSON-RPC error translation happens here, once: `RouteNotFound` -> -32602 naming what was asked
for, `ServerUnavailable` -> -32000, `ServerTimeout` -> -32001 (both naming the server), a
server's own `MCPError` unchanged, anything unexpected -> -32603 "internal error" (details go to
the log only).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

import anyio
import anyio.abc
import mcp_types as types
from mcp import MCPError
from mcp.server import Server, ServerRequestContext
from mcp.server.context import CallNext, HandlerResult
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.models import InitializationOptions
from mcp.server.session import ServerSession
from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    ListenHandler,
)
from mcp_types import (
    CONNECTION_CLOSED,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    PROTOCOL_VERSION_META_KEY,
    REQUEST_TIMEOUT,
    SERVER_INFO_META_KEY,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError
from starlette.requests import Request

from hub.auth import Principal, principal_of
from hub.catalog import Catalog, Kind
from hub.errors import HubError, RateLimited, RouteNotFound, ServerError, ServerTimeout, ServerUnavailable
from hub.naming import exposed_resource_uri
from hub.policy import Access
from hub.router import Router

__all__ = [
    "HUB_NAME",
    "RATE_LIMITED",
    "AggregateFace",
    "Face",
    "HubServer",
    "ServerFace",
    "SessionRegistry",
    "build_mcp_server",
]

logger = logging.getLogger(__name__)

HUB_NAME = "mcp-federation-hub"
RATE_LIMITED = -32029
"""JSON-RPC error code of a call refused by a per-route rate limit (server-defined range;
`data.retry_after_seconds` says when to retry)."""
_NOTIFY_TIMEOUT_SECONDS = 5.0
"""How long one client may take to accept a list_changed notification before it is skipped."""


class Face(Protocol):
    """What one MCP server face offers and how its names resolve to (server_id, original)."""

    def tools(self) -> Sequence[types.Tool]: ...
    def resources(self) -> Sequence[types.Resource]: ...
    def resource_templates(self) -> Sequence[types.ResourceTemplate]: ...
    def prompts(self) -> Sequence[types.Prompt]: ...
    def resolve_tool(self, name: str) -> tuple[str, str] | None: ...
    def resolve_prompt(self, name: str) -> tuple[str, str] | None: ...
    def resolve_uri(self, uri: str) -> tuple[str, str] | None: ...
    def input_schema(self, name: str) -> dict[str, object] | None: ...
    def claimed_by(self, name: str) -> str | None: ...
    def route_key(self, kind: Kind, name: str) -> tuple[str, str] | None:
        """`(server_id, exposed name or URI)` of `name` as this face shows it: what the policy
        decides on, whichever face is used."""
        ...


class AggregateFace:
    """The whole catalog under exposed names (`/mcp`)."""

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

    def route_key(self, kind: Kind, name: str) -> tuple[str, str] | None:
        if kind == "tools" or kind == "prompts":
            route = self._catalog.tool_route(name) if kind == "tools" else self._catalog.prompt_route(name)
            return (route.server_id, name) if route else None
        owner = self._catalog.resource_owner(name)
        return (owner[0], name) if owner else None


class ServerFace:
    """One server under its original names (`/servers/<server_id>/mcp`)."""

    def __init__(self, catalog: Catalog, server_id: str) -> None:
        self._catalog = catalog
        self._server_id = server_id

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
        return self._server_id, uri

    def input_schema(self, name: str) -> dict[str, object] | None:
        return self._catalog.server_view(self._server_id).input_schemas.get(name)

    def claimed_by(self, name: str) -> str | None:
        return self._server_id

    def route_key(self, kind: Kind, name: str) -> tuple[str, str] | None:
        if kind == "tools" or kind == "prompts":
            exposed = self._catalog.exposed_name(kind, self._server_id, name)
            return (self._server_id, exposed) if exposed else None
        return self._server_id, exposed_resource_uri(self._server_id, name)


class SessionRegistry:
    """Handshake-era sessions connected to one face, for `list_changed` fan-out.

    The lowlevel tier has no public way to reach a connection outside a request, so each session
    is recorded on its first request and dropped when its connection's exit stack unwinds
    (SDK-NOTES 2.5).
    """

    def __init__(self) -> None:
        self._sessions: dict[int, ServerSession] = {}

    def track(self, session: ServerSession) -> None:
        connection = session._connection
        key = id(connection)
        if key not in self._sessions:
            self._sessions[key] = session
            connection.exit_stack.callback(self._sessions.pop, key, None)

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

_ResultT = TypeVar("_ResultT", bound=types.Result)


def _restamp(result: _ResultT) -> _ResultT:
    """`result` without the server's hop-level `_meta` stamps (content is untouched)."""
    meta = result.meta
    if not meta or not any(key in meta for key in _HOP_META_KEYS):
        return result
    kept = {key: value for key, value in meta.items() if key not in _HOP_META_KEYS}
    return result.model_copy(update={"meta": kept or None})


def _not_found(face: Face, router: Router, kind: str, name: str, *, disclose: bool = True) -> HubError:
    """RouteNotFound, unless the name belongs to a server that is down (and `disclose`, i.e. no
    policy restricts the caller): then that server's ServerUnavailable, so the caller learns
    which server to wait for."""
    server_id = face.claimed_by(name) if disclose else None
    if server_id is not None:
        try:
            router.require_ready(server_id)
        except ServerUnavailable as exc:
            return exc
    return RouteNotFound(kind, name)


def _to_mcp_error(exc: HubError) -> MCPError:
    """The JSON-RPC error a client gets for a HubError; `data` names the route or server."""
    if isinstance(exc, RouteNotFound):
        return MCPError(INVALID_PARAMS, str(exc), {"kind": exc.kind, "name": exc.name})
    if isinstance(exc, RateLimited):
        return MCPError(RATE_LIMITED, str(exc), {"retry_after_seconds": round(exc.retry_after_seconds, 3)})
    if isinstance(exc, ServerTimeout):
        return MCPError(REQUEST_TIMEOUT, str(exc), {"server_id": exc.server_id})
    if isinstance(exc, ServerUnavailable):
        return MCPError(CONNECTION_CLOSED, str(exc), {"server_id": exc.server_id})
    if isinstance(exc, ServerError):
        return MCPError(INTERNAL_ERROR, str(exc), {"server_id": exc.server_id})
    return MCPError(INTERNAL_ERROR, str(exc))


class HubServer(Server[Any]):
    """A lowlevel `Server` that advertises `listChanged` to handshake-era clients (the session
    manager builds its initialization options without `NotificationOptions`; SDK-NOTES gotcha 2)."""

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


def _principal(ctx: ServerRequestContext[Any]) -> Principal:
    request = ctx.request
    return principal_of(request if isinstance(request, Request) else None)


_ItemT = TypeVar("_ItemT", types.Tool, types.Prompt, types.Resource, types.ResourceTemplate)


def build_mcp_server(
    face: Face,
    router: Router,
    registry: SessionRegistry,
    bus: InMemorySubscriptionBus,
    name: str,
    instructions: str,
    access: Access,
) -> HubServer:
    """A lowlevel `mcp` Server serving `face` in both eras: list handlers read the catalog (no
    server round trip), `tools/call`, `resources/read`, `prompts/get` and `completion/complete`
    go through `router` under original names, progress is relayed when the caller asked for it
    (`_meta.progressToken`), and `subscriptions/listen` streams `bus` events (modern era).

    Every list is filtered, and every use guarded, by `access` for the request's principal: a
    route the principal may not use is absent from its lists and answers exactly like an
    unknown name (-32602), so its existence does not leak.

    :param registry: records each handshake-era session for `list_changed` fan-out.
    :param name: the `serverInfo.name` clients see.
    :param access: the policy and per-route rate limits.
    """

    def visible(ctx: ServerRequestContext[Any], kind: Kind, items: Sequence[_ItemT]) -> list[_ItemT]:
        principal = _principal(ctx)
        if not access.restricts(principal):
            return list(items)
        if kind == "resources" or kind == "resource_templates":
            return [item for item in items if access.visible(principal, face.route_key(kind, _uri_of(item)))]
        return [item for item in items if access.visible(principal, face.route_key(kind, item.name))]

    def admitted(ctx: ServerRequestContext[Any], kind: Kind, name: str) -> tuple[bool, bool]:
        """`(admitted, disclose)` for using `name`: whether the principal may use it, and whether
        a refusal may say that its server is down.

        :raises RateLimited: the principal's per-route bucket is empty.
        """
        principal = _principal(ctx)
        restricted = access.restricts(principal)
        key = face.route_key(kind, name)
        if key is None:
            return False, not restricted
        return access.admit(principal, kind, key), not restricted

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=visible(ctx, "tools", face.tools()))

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        owner = face.resolve_tool(params.name)
        allowed, disclose = admitted(ctx, "tools", params.name)
        if owner is None or not allowed:
            raise _not_found(face, router, "tool", params.name, disclose=disclose)
        progress = None
        if ctx.meta and ctx.meta.get("progress_token") is not None:
            progress = ctx.session.report_progress
        return _restamp(await router.call_tool(owner[0], owner[1], params.arguments, progress))

    async def list_resources(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        return types.ListResourcesResult(resources=visible(ctx, "resources", face.resources()))

    async def list_resource_templates(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(
            resource_templates=visible(ctx, "resource_templates", face.resource_templates())
        )

    async def read_resource(
        ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        owner = face.resolve_uri(str(params.uri))
        if owner is None or not admitted(ctx, "resources", str(params.uri))[0]:
            raise RouteNotFound("resource", str(params.uri))
        return _restamp(await router.read_resource(*owner))

    async def list_prompts(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        return types.ListPromptsResult(prompts=visible(ctx, "prompts", face.prompts()))

    async def get_prompt(ctx: ServerRequestContext[Any], params: types.GetPromptRequestParams) -> types.GetPromptResult:
        owner = face.resolve_prompt(params.name)
        allowed, disclose = admitted(ctx, "prompts", params.name)
        if owner is None or not allowed:
            raise _not_found(face, router, "prompt", params.name, disclose=disclose)
        return _restamp(await router.get_prompt(owner[0], owner[1], params.arguments))

    async def complete(ctx: ServerRequestContext[Any], params: types.CompleteRequestParams) -> types.CompleteResult:
        ref = params.ref
        owner: tuple[str, str] | None
        original_ref: types.PromptReference | types.ResourceTemplateReference
        if isinstance(ref, types.PromptReference):
            owner = face.resolve_prompt(ref.name)
            allowed, disclose = admitted(ctx, "prompts", ref.name)
            if owner is None or not allowed:
                raise _not_found(face, router, "prompt", ref.name, disclose=disclose)
            original_ref = ref.model_copy(update={"name": owner[1]})
        else:
            owner = face.resolve_uri(ref.uri)
            if owner is None or not admitted(ctx, "resource_templates", ref.uri)[0]:
                raise RouteNotFound("resource template", ref.uri)
            original_ref = ref.model_copy(update={"uri": owner[1]})
        argument = {"name": params.argument.name, "value": params.argument.value}
        context = params.context.arguments if params.context else None
        return _restamp(await router.complete(owner[0], original_ref, argument, context))

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
        on_subscriptions_listen=ListenHandler(bus),
    )

    async def boundary(ctx: ServerRequestContext[Any], call_next: CallNext) -> HandlerResult:
        if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            registry.track(ctx.session)
        try:
            return await call_next(ctx)
        except (MCPError, ValidationError):
            raise
        except HubError as exc:
            raise _to_mcp_error(exc) from None
        except Exception:
            logger.exception("unexpected error while handling %s", ctx.method)
            raise MCPError(INTERNAL_ERROR, "internal error in the hub (details are in its log)") from None

    # The SDK's OpenTelemetry middleware costs ~7% CPU with no exporter (PERFORMANCE.md).
    server.middleware[:] = [boundary]
    return server


def _uri_of(item: types.Resource | types.ResourceTemplate | types.Tool | types.Prompt) -> str:
    if isinstance(item, types.Resource):
        return str(item.uri)
    if isinstance(item, types.ResourceTemplate):
        return item.uri_template
    return item.name


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mcp-federation-hub")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0"
