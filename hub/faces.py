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
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol, TypeVar

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

from hub.catalog import Catalog, Kind
from hub.errors import HubError, RouteNotFound, ServerError, ServerTimeout, ServerUnavailable
from hub.logs import new_request_id, server_id_var
from hub.metrics import NO_SERVER, RESOURCE_ROUTE, UNKNOWN_ROUTE, HubMetrics
from hub.router import Router
from hub.tracing import CallTracer, SpanRecord

__all__ = ["HUB_NAME", "AggregateFace", "Face", "HubServer", "ServerFace", "SessionRegistry", "build_mcp_server"]

logger = logging.getLogger(__name__)

HUB_NAME = "mcp-federation-hub"
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


def _not_found(face: Face, router: Router, kind: str, name: str) -> HubError:
    """RouteNotFound, unless the name belongs to a server that is down: then that server's
    ServerUnavailable, so the caller learns which server to wait for."""
    server_id = face.claimed_by(name)
    if server_id is not None:
        try:
            router.require_ready(server_id)
        except ServerUnavailable as exc:
            return exc
    return RouteNotFound(kind, name)


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
    if not isinstance(name, str):
        return UNKNOWN_ROUTE, NO_SERVER
    owner = face.resolve_tool(name) if method == "tools/call" else face.resolve_prompt(name)
    if owner is not None:
        return name, owner[0]
    return UNKNOWN_ROUTE, face.claimed_by(name) or NO_SERVER


def _outcome_of(exc: HubError) -> str:
    """The `outcome` label of a HubError (see `HubMetrics.observe_call`)."""
    if isinstance(exc, RouteNotFound):
        return "not_found"
    if isinstance(exc, ServerTimeout):
        return "timeout"
    if isinstance(exc, ServerUnavailable):
        return "unavailable"
    return "internal_error"


def _to_mcp_error(exc: HubError) -> MCPError:
    """The JSON-RPC error a client gets for a HubError; `data` names the route or server."""
    if isinstance(exc, RouteNotFound):
        return MCPError(INVALID_PARAMS, str(exc), {"kind": exc.kind, "name": exc.name})
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


def build_mcp_server(
    face: Face,
    router: Router,
    registry: SessionRegistry,
    bus: InMemorySubscriptionBus,
    name: str,
    instructions: str,
    *,
    metrics: HubMetrics | None = None,
    tracer: CallTracer | None = None,
) -> HubServer:
    """A lowlevel `mcp` Server serving `face` in both eras: list handlers read the catalog (no
    server round trip), `tools/call`, `resources/read`, `prompts/get` and `completion/complete`
    go through `router` under original names, progress is relayed when the caller asked for it
    (`_meta.progressToken`), and `subscriptions/listen` streams `bus` events (modern era).

    :param registry: records each handshake-era session for `list_changed` fan-out.
    :param name: the `serverInfo.name` clients see.
    :param metrics: records every routed request (method, route, server, outcome, latency).
    :param tracer: opens a span per routed request (None: tracing off, no cost).

    Every incoming request gets a fresh request id (`hub.logs`) for the log lines it causes.
    """

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=list(face.tools()))

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        owner = face.resolve_tool(params.name)
        if owner is None:
            raise _not_found(face, router, "tool", params.name)
        progress = None
        if ctx.meta and ctx.meta.get("progress_token") is not None:
            progress = ctx.session.report_progress
        return _restamp(await router.call_tool(owner[0], owner[1], params.arguments, progress))

    async def list_resources(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        return types.ListResourcesResult(resources=list(face.resources()))

    async def list_resource_templates(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(resource_templates=list(face.resource_templates()))

    async def read_resource(
        ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        owner = face.resolve_uri(str(params.uri))
        if owner is None:
            raise RouteNotFound("resource", str(params.uri))
        return _restamp(await router.read_resource(*owner))

    async def list_prompts(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        return types.ListPromptsResult(prompts=list(face.prompts()))

    async def get_prompt(ctx: ServerRequestContext[Any], params: types.GetPromptRequestParams) -> types.GetPromptResult:
        owner = face.resolve_prompt(params.name)
        if owner is None:
            raise _not_found(face, router, "prompt", params.name)
        return _restamp(await router.get_prompt(owner[0], owner[1], params.arguments))

    async def complete(ctx: ServerRequestContext[Any], params: types.CompleteRequestParams) -> types.CompleteResult:
        ref = params.ref
        owner: tuple[str, str] | None
        original_ref: types.PromptReference | types.ResourceTemplateReference
        if isinstance(ref, types.PromptReference):
            owner = face.resolve_prompt(ref.name)
            if owner is None:
                raise _not_found(face, router, "prompt", ref.name)
            original_ref = ref.model_copy(update={"name": owner[1]})
        else:
            owner = face.resolve_uri(ref.uri)
            if owner is None:
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

    async def translate(ctx: ServerRequestContext[Any], call_next: CallNext, record: SpanRecord) -> HandlerResult:
        try:
            result = await call_next(ctx)
        except MCPError as exc:
            record.outcome = "invalid" if exc.code == INVALID_PARAMS else "server_error"
            raise
        except ValidationError:
            record.outcome = "invalid"
            raise
        except HubError as exc:
            record.outcome = _outcome_of(exc)
            raise _to_mcp_error(exc) from None
        except Exception:
            logger.exception("unexpected error while handling %s", ctx.method)
            raise MCPError(INTERNAL_ERROR, "internal error in the hub (details are in its log)") from None
        record.outcome = "tool_error" if getattr(result, "is_error", False) else "ok"
        return result

    async def boundary(ctx: ServerRequestContext[Any], call_next: CallNext) -> HandlerResult:
        if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            registry.track(ctx.session)
        request_id = new_request_id()
        record = SpanRecord()
        if ctx.method not in _ROUTED_METHODS:
            return await translate(ctx, call_next, record)
        record.route, record.server_id = _route_of(face, ctx.method, ctx.params)
        server_token = server_id_var.set(record.server_id or None)
        logger.debug("%s %s -> server %s", ctx.method, record.route, record.server_id or "-")
        started = time.perf_counter()
        try:
            if tracer is None:
                return await translate(ctx, call_next, record)
            with tracer.span(ctx.method, request_id, record):
                return await translate(ctx, call_next, record)
        except BaseException as exc:
            if not isinstance(exc, Exception | ExceptionGroup):
                record.outcome = "cancelled"
            if record.outcome not in ("ok", "tool_error"):
                logger.info("%s %s: %s", ctx.method, record.route, record.outcome)
            raise
        finally:
            if metrics is not None:
                metrics.observe_call(
                    ctx.method, record.route, record.server_id, record.outcome, time.perf_counter() - started
                )
            server_id_var.reset(server_token)

    # The SDK's OpenTelemetry middleware costs ~7% CPU with no exporter (PERFORMANCE.md).
    server.middleware[:] = [boundary]
    return server


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mcp-federation-hub")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0"
