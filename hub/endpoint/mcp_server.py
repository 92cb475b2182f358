"""The lowlevel `mcp` Server of one face (`HubServer`), and `build_mcp_server`, which wires a
face's handlers (`hub.endpoint.handlers`), its listen handler (`hub.endpoint.subscriptions_listen`),
its tasks (`hub.endpoint.tasks`) and its middleware chain into it.

The middleware chain of every face, outermost first (`HubServer.middleware`):

1. `hub.endpoint.drain.Drain.track`, inserted by `hub.endpoint.endpoint`: counts requests in flight, refuses new
   ones while the replica drains;
2. `hub.endpoint.request_boundary.RequestBoundary`: trace context, hub chain, request id, metrics, log
   line, and the one place where an error becomes JSON-RPC;
3. the bridge's `requestState` boundary (`hub.endpoint.era_bridge.Bridge.boundary`): seals every
   `requestState` the face returns and verifies every one it is sent;
4. the tasks middleware (`hub.endpoint.tasks.FaceTasks.middleware`): a handshake-era `CreateTaskResult`
   past the SDK's `CallToolResult` shaping;
5. the prepared lists' middleware (`hub.prepared_lists.PreparedLists.middleware`): puts a list's
   prepared page (wire dicts) in the result the SDK shaped around an empty one;
6. the wire results' middleware (`hub.wire_results.middleware`): puts a plain `tools/call` or
   `prompts/get` result's content, as the server sent it, in the envelope the SDK shaped
   around a stub;

then the SDK's params validation and the request's handler (`get_request_handler(method)`).
"""

from __future__ import annotations

import functools
import warnings
from typing import Any, Final

import mcp_types as types
from mcp.server import Server
from mcp.server.caching import CacheHint
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.models import InitializationOptions
from mcp.server.subscriptions import InMemorySubscriptionBus
from mcp.shared.exceptions import MCPDeprecationWarning

from hub import wire_results
from hub.config.hub import DEFAULT_LIST_PAGE_SIZE
from hub.endpoint.callers import client_channel
from hub.endpoint.face_services import FaceServices
from hub.endpoint.faces import Face
from hub.endpoint.handlers import FaceHandlers
from hub.endpoint.request_boundary import RequestBoundary
from hub.endpoint.search_mode import FaceSearch
from hub.endpoint.session_registry import SessionRegistry
from hub.endpoint.subscriptions_listen import FaceListenHandler
from hub.endpoint.tasks import FaceTasks
from hub.federation import FEDERATION_KEY
from hub.list_freshness import LIST_TTL_MS
from hub.metrics import HubMetrics
from hub.policy import Access
from hub.router import Router
from hub.servers import ServerState
from hub.tracing import CallTracer

__all__ = ["CACHE_HINTS", "HUB_NAME", "HubServer", "build_mcp_server"]

HUB_NAME: Final = "mcp-federation-hub"
"""The `serverInfo.name` of the aggregated face (`<HUB_NAME>/<server_id>` for a per-server face,
`<HUB_NAME>/profiles/<name>` for a profile's)."""
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


class HubServer(Server[Any]):
    """A lowlevel `Server` that advertises `listChanged` to handshake-era clients (the session
    manager builds its initialization options without `NotificationOptions`; SDK-NOTES gotcha 2),
    `logging`, `completions` and `resources.subscribe` only when a ready server of the face
    offers them (while none is ready, what the handlers allow), tasks only when a ready server
    offers them in the era asked (`hub.endpoint.tasks`), and the hub's federation identity in
    `experimental["io.mcphub/federation"]` (`hub.federation`).

    Public surface beyond the SDK's `Server` (the endpoint's session managers serve it through
    the SDK, a fast path may run `middleware` and `get_request_handler(method)` itself):
    `services` and `tasks`, set by `build_mcp_server`.
    """

    services: FaceServices
    """What the face shares with the others (`hub.endpoint.face_services`)."""
    tasks: FaceTasks
    """The face's task surface (`hub.endpoint.tasks`)."""

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

    Server-to-client requests and log messages are relayed to the calling client (`hub.endpoint.server_requests`);
    multi-round-trip requests of modern-era clients are passed through (modern-era servers) or
    bridged (`hub.endpoint.era_bridge`); `requestState` is sealed and verified; `resources/subscribe`/
    `unsubscribe` and `logging/setLevel` are forwarded to the owning servers (handshake era);
    tasks are relayed in both eras (`hub.endpoint.tasks`: `tasks/*` handlers, task results of
    `tools/call`, the advertised capability).

    Every list is filtered, and every use guarded, by `access` for the request's principal (see
    `hub.endpoint.handlers.FaceHandlers`).

    :param registry: records each handshake-era session for `list_changed` fan-out.
    :param name: the `serverInfo.name` clients see (also the audience of the face's sealed
        `requestState`).
    :param access: the policy and per-route rate limits.
    :param services: the fleet, bridge, subscriptions, tasks and sessions the face works with.
    :param metrics: records every routed request (method, route, server, outcome, latency).
    :param tracer: opens a span per routed request (None: tracing off, no cost).
    :param page_size: most items per list page (`list_page_size`; `hub.pages`: keyset cursors
        bound to the list and the face, an invalid one -> -32602).
    :param search: the face's search mode (`hub.endpoint.search_mode`); None: always the full list.

    Every incoming request gets a fresh request id (`hub.logs`) for the log lines it causes,
    its hub chain is checked first and kept in context for the requests it causes, and list
    results and capabilities carry the hub's federation advertisement (`hub.federation`).
    """
    tasks = services.tasks.face(services.scope, functools.partial(client_channel, registry=registry), registry.standing)
    handlers = FaceHandlers(face, router, registry, bus, access, services, tasks, page_size=page_size, search=search)
    # Passed as a mapping: the SDK's overload that takes them is marked deprecated.
    handshake_only: dict[str, Any] = {
        "on_subscribe_resource": handlers.subscribe,
        "on_unsubscribe_resource": handlers.unsubscribe,
        "on_set_logging_level": handlers.set_level,
    }
    with warnings.catch_warnings():
        # logging/setLevel is served for handshake-era clients; the SDK flags it as deprecated at 2026-07-28.
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        server = HubServer(
            name,
            version=_version(),
            instructions=instructions,
            get_tool_input_schema=face.input_schema,
            on_list_tools=handlers.list_tools,
            on_call_tool=handlers.call_tool,
            on_list_resources=handlers.list_resources,
            on_list_resource_templates=handlers.list_resource_templates,
            on_read_resource=handlers.read_resource,
            on_list_prompts=handlers.list_prompts,
            on_get_prompt=handlers.get_prompt,
            on_completion=handlers.complete,
            on_subscriptions_listen=FaceListenHandler(bus, face, services, access),
            cache_hints=CACHE_HINTS,
            **handshake_only,
        )
    server.services = services
    server.tasks = tasks
    for method, params_type, handler in tasks.handlers():
        server.add_request_handler(method, params_type, handler)
    # Replaces the SDK's OpenTelemetry middleware: it costs ~7% CPU with no exporter
    # (PERFORMANCE.md); `RequestBoundary` opens the hub's own spans when tracing is on.
    server.middleware[:] = [
        RequestBoundary(face, registry, services.fleet.federation, metrics=metrics, tracer=tracer),
        services.bridge.boundary(name),
        tasks.middleware,
        handlers.lists.middleware,
        wire_results.middleware,
    ]
    return server


@functools.cache
def _version() -> str:
    """The hub's package version (`serverInfo.version`), read once: `importlib.metadata` scans
    the installed distributions each time (~3 ms of CPU), and every face is a server of its own."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mcp-federation-hub")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0"
