"""The hub's own MCP server face: the aggregated catalog at `/mcp`, one server at
`/servers/<server_id>/mcp`, endpoint profiles at `/profiles/<name>/mcp` (`hub.endpoint.profiles`), health
routes, the admin API, the caller's own view (`/me`, `/me/routes`, `/me/search`), RFC 9728
protected resource metadata, and stdio serving. `/mcp`, stdio and the profiles serve search mode
for the callers it applies to (`hub.endpoint.search_mode`), over one search index (`hub.catalog_search`).

Every HTTP request passes, in order: the HTTP server's limits (`hub.endpoint.http_server`: 431 past
`max_header_bytes`, 408 past `header_timeout_seconds`/`body_timeout_seconds`), Host/Origin
validation (`hub.endpoint.http_guards`: 421/403), authentication with the path's scope (`hub.endpoint.authentication`:
401/403/429), and the request gate (`hub.endpoint.http_guards`: 415 for a non-JSON POST to an MCP path,
413 past `max_body_bytes`, -32600 for a JSON-RPC batch) before any MCP handling.

Both protocol eras are served on every face (`hub.endpoint.session_manager.SessionManager` picks the
era per request from `MCP-Protocol-Version`, and gives handshake-era sessions sealed ids that any
replica serves; stdio picks the era from the client's first request).
`list_changed` reaches handshake-era clients as `notifications/*/list_changed` on their
session's standing channel, and modern-era clients as `subscriptions/listen` events.

While the hub drains for a deploy (`hub.endpoint.drain`), `/readyz` answers 503 with `status:
draining`, the `DrainGate` in front of everything closes connections and then refuses new
requests, and `end_streams` ends the open SSE streams with a proper end.

The faces themselves are in `hub.endpoint.faces`, their handlers in `hub.endpoint.handlers`, the error
translation in `hub.endpoint.request_boundary`, and the MCP server wiring them in `hub.endpoint.mcp_server`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import anyio
import anyio.abc
from mcp.server import Server
from mcp.server.stdio import stdio_server
from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    ListenHandler,
    PromptsListChanged,
    ResourcesListChanged,
    ToolsListChanged,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from hub.authority import parse_allowed_host
from hub.catalog import Catalog, Kind
from hub.catalog import Route as CatalogRoute
from hub.catalog_search import CatalogSearch
from hub.cluster.answers import Answers
from hub.cluster.fanout import ResourceFanout
from hub.cluster.keys import ClusterKeys
from hub.cluster.session_copies import SessionCopies
from hub.cluster.session_ids import SessionIds
from hub.cluster.session_state import SessionState
from hub.cluster.store import MemoryStore, SharedStore
from hub.config import HubConfig
from hub.endpoint.authentication import (
    PRM_PATH,
    Authenticator,
    AuthMiddleware,
    Principal,
    principal_of,
    protected_resource_metadata,
)
from hub.endpoint.drain import Drain, DrainGate
from hub.endpoint.era_bridge import Bridge
from hub.endpoint.face_services import FaceServices
from hub.endpoint.faces import AggregateFace, ServerFace
from hub.endpoint.found_tools import FoundTools, TargetedBus
from hub.endpoint.http_guards import HostOriginGuard, RequestGate
from hub.endpoint.http_server import HttpServer, bind_socket
from hub.endpoint.mcp_server import HUB_NAME, HubServer, build_mcp_server
from hub.endpoint.pins_admin import pin_diff, trust_routes
from hub.endpoint.profiles import PROFILE_PREFIX, ProfileFace
from hub.endpoint.rate_limits import RateLimiter
from hub.endpoint.search_mode import MAX_QUERY_CHARS, MAX_SEARCH_LIMIT, FaceSearch, search_configured
from hub.endpoint.server_requests import Subscriptions
from hub.endpoint.session_manager import SessionManager
from hub.endpoint.session_registry import SessionRegistry
from hub.endpoint.tasks import TaskRelay
from hub.explain import explain, principal_for
from hub.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from hub.metrics import HubMetrics
from hub.policy import Access, Policy
from hub.prepared_lists import warm_lists
from hub.router import Router
from hub.servers import Fleet, ServerConnection, ServerState
from hub.tracing import CallTracer

__all__ = ["Endpoint", "HttpServer", "allowed_hosts", "bind_socket", "run_event_loop"]

_PROFILE_FACE_PREFIX = "profile:"
"""How a profile's face is named in session ids and `session_manager` (a server_id has no `:`)."""

_SEARCH_INSTRUCTIONS = (
    " In search mode, find tools with search_tools (describe the task in plain words) and call them "
    "with call_tool or by name."
)

logger = logging.getLogger(__name__)
T = TypeVar("T")

_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def _best_state(members: list[ServerConnection]) -> str:
    """A logical server's state for the route table: the best of its replica members'."""
    states = [m.health_state for m in members]
    for good in (ServerState.READY, ServerState.DEGRADED, ServerState.OPEN):
        if good in states:
            return good.value
    return states[0].value if states else "unknown"


def allowed_hosts(config: HubConfig) -> list[str]:
    """Host header values the endpoint accepts (DNS-rebinding protection, MCP transport spec):
    the loopback names on any port, the listen host, `public_url`'s host, and `allowed_hosts`."""
    hosts = [f"{name}:*" for name in _LOOPBACK_NAMES] + list(_LOOPBACK_NAMES)
    listen_host = config.listen.host
    if listen_host not in ("0.0.0.0", "::", "") and listen_host not in _LOOPBACK_NAMES:
        bracketed = f"[{listen_host}]" if ":" in listen_host else listen_host
        hosts += [bracketed, f"{bracketed}:*"]
    if config.public_url:
        netloc = config.public_url.split("://", 1)[1]
        hosts.append(netloc)
        if ":" not in netloc.rsplit("]", 1)[-1]:
            hosts.append(f"{netloc}:*")
    hosts += config.allowed_hosts
    # A listen host that is no Host value (an IPv6 address with a zone id) is left out, not fatal.
    return [host for host in dict.fromkeys(hosts) if parse_allowed_host(host) is not None]


class _TrimHeaderWhitespace:
    """Strip optional whitespace around header values (RFC 9110 section 5.5: "a field value does
    not include leading or trailing whitespace"). uvicorn's httptools parser keeps trailing
    whitespace, and the SDK compares `Mcp-Name`/`Mcp-Method` with the body byte for byte."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = scope["headers"]
            if any(value[:1] in _OWS or value[-1:] in _OWS for _, value in headers):
                scope = {**scope, "headers": [(name, value.strip(b" \t")) for name, value in headers]}
        await self._app(scope, receive, send)


_OWS = (b" ", b"\t")


class _PerServerApp:
    """ASGI app for `/servers/{server_id}/mcp` (or `/profiles/{profile}/mcp`): the face's own
    session manager, or 404."""

    def __init__(self, apps: dict[str, SessionManager], param: str = "server_id", noun: str = "server") -> None:
        self._apps = apps
        self._param = param
        self._noun = noun

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = scope["path_params"][self._param]
        app = self._apps.get(key)
        if app is None:
            response = JSONResponse({"error": f"unknown {self._noun} {key!r}"}, status_code=404)
            await response(scope, receive, send)
            return
        await app(scope, receive, send)


class Endpoint:
    """The hub's MCP faces over one catalog, and the HTTP app that serves them.

    :param config: the hub config (listen address, public_url, body cap).
    :param catalog: the merged catalog the faces read.
    :param fleet: the server connections (for health and admin).
    :param router: where routed requests go.
    :param keys: what the hub seals with (default: from `config.cluster`, see `hub.cluster.keys`).
    :param store: the state replicas share (`hub.cluster.store`; default: in memory): rate
        limits, and with Redis resource-update fan-out between replicas.
    """

    def __init__(
        self,
        config: HubConfig,
        catalog: Catalog,
        fleet: Fleet,
        router: Router,
        *,
        metrics: HubMetrics | None = None,
        tracer: CallTracer | None = None,
        keys: ClusterKeys | None = None,
        store: SharedStore | None = None,
    ) -> None:
        self.config = config
        self.store: SharedStore = store if store is not None else MemoryStore()
        """The state replicas share (in memory for a hub alone)."""
        self.catalog = catalog
        self.fleet = fleet
        self.metrics = metrics
        self._router = router
        self._tracer = tracer
        self._bus = TargetedBus()
        self.authenticator = Authenticator(config)
        self.policy = Policy(config.policies)
        self.access = Access(self.policy, RateLimiter(config.rate_limits, self.store))
        self.keys = keys if keys is not None else ClusterKeys.from_config(config.cluster)
        """What this hub seals with (shared by its replicas when `cluster.secret_env` is set)."""
        self.session_ids = SessionIds(self.keys.codec("session-id"), config.session_max_lifetime_seconds)
        """Mints and opens the sealed ids of handshake-era sessions (`hub.cluster.session_ids`)."""
        self.session_state = SessionState(self.store, self.session_ids)
        """Revocations (DELETE), log levels and subscriptions of sessions, shared by the replicas."""
        self.answers = Answers(self.store)
        """Client answers routed to the replica that sent the request (with Redis)."""
        self.bridge = Bridge(config.input_required_ttl_seconds, self.keys.for_purpose("request-state"))
        self.subscriptions = Subscriptions(fleet.get, self.bridge.spawn)
        self.fanout: ResourceFanout | None = None
        """Resource updates between replicas (with Redis only; run by the hub's lifespan)."""
        if self.store.shared:
            self.fanout = ResourceFanout(self.store, self._runs_per_replica)
            self.fanout.attach(self.subscriptions)
        fleet.on_resource_updated = self.subscriptions.updated
        self.tasks = TaskRelay(fleet, self.access)
        fleet.on_task_status = self.tasks.status_changed
        for connection in fleet.connections.values():
            connection.on_resource_updated = self.subscriptions.updated
            connection.on_task_status = self.tasks.status_changed
        self._registry = SessionRegistry(self._client_gone)
        self.drain = Drain()
        """The drain for a deploy (`hub.endpoint.drain`): readiness, connection closing, refusals, failing."""
        self.search = CatalogSearch(catalog, eager=search_configured(config))
        """The catalog's tool search index (`hub.catalog_search`), shared by every face."""
        aggregate = AggregateFace(catalog)
        self._searches: dict[str, FaceSearch] = {"": self._face_search(aggregate)}
        """Search mode per face: `""` for `/mcp` (and stdio), else a profile's name."""
        self.server = build_mcp_server(
            aggregate,
            router,
            self._registry,
            self._bus,
            HUB_NAME,
            "One MCP endpoint for a fleet of MCP servers. Tool and prompt names are <server>__<name>; "
            "resource URIs are <server>+<uri>." + (_SEARCH_INSTRUCTIONS if config.catalog.mode == "search" else ""),
            self.access,
            FaceServices(fleet, self.bridge, self.subscriptions, tasks=self.tasks, sessions=self.session_state),
            metrics=metrics,
            tracer=tracer,
            page_size=config.list_page_size,
            search=self._searches[""],
        )
        self.server.middleware.insert(0, self.drain.track)  # outermost: its -32000 is already JSON-RPC
        self._profiles: dict[str, tuple[ProfileFace, HubServer, SessionRegistry, TargetedBus]] = {}
        for profile in config.profiles:
            self._profiles[profile] = self._build_profile_face(profile)
        self._profile_apps: dict[str, SessionManager] = {}
        self._per_server: dict[str, tuple[HubServer, SessionRegistry, InMemorySubscriptionBus]] = {}
        for server_id in config.servers:
            self._per_server[server_id] = self._build_server_face(server_id)
        self._per_server_apps: dict[str, SessionManager] = {}
        self._per_server_scopes: dict[str, anyio.CancelScope] = {}
        self._faces_tg: anyio.abc.TaskGroup | None = None
        self._managers: dict[str, SessionManager] = {}
        self.reload_handler: Callable[[], Awaitable[tuple[int, dict[str, Any]]]] | None = None
        """Called by `POST /admin/reload`; returns `(HTTP status, JSON body)` (set by the Hub)."""
        catalog.add_listener(self._on_catalog_change)
        catalog.add_listener(self.search.on_catalog_change)
        catalog.add_listener(warm_lists(catalog))  # list pages' definitions, as servers arrive
        # A changed set of federated hubs is re-advertised on list results: clients re-list.
        fleet.federation.add_listener(lambda: self._on_catalog_change("", frozenset({"tools"}), every_face=True))

    def _runs_per_replica(self, server_id: str) -> bool:
        """Whether `server_id` is a stdio server (a process of its own on each replica)."""
        connection = self.fleet.get(server_id)
        return connection is not None and connection.config.command is not None

    def _client_gone(self, client_key: str) -> None:
        """A handshake-era client session ended: drop its subscriptions and found tools, and
        close the server connections dedicated to it (`isolation: per_client`)."""
        self.subscriptions.forget(client_key)
        for search in self._searches.values():
            if search.found is not None:
                search.found.forget(client_key)
        self.fleet.release_client(client_key)

    def _face_search(self, face: AggregateFace, profile: str | None = None) -> FaceSearch:
        """Search mode of the aggregated face or of a profile's (`hub.endpoint.search_mode`)."""
        override = self.config.profiles[profile].catalog if profile is not None else None
        return FaceSearch(
            self.search,
            face,
            self.access,
            self.config.catalog,
            override,
            found=FoundTools(self.config.session_idle_timeout_seconds),
        )

    def _build_profile_face(self, profile: str) -> tuple[ProfileFace, HubServer, SessionRegistry, TargetedBus]:
        """The face of `/profiles/<profile>/mcp`: the aggregated face narrowed to the profile."""
        settings = self.config.profiles[profile]
        face = ProfileFace(self.catalog, profile, settings)
        search = self._searches[profile] = self._face_search(face, profile)
        searching = (settings.catalog.over(self.config.catalog) if settings.catalog else self.config.catalog).mode
        registry, bus = SessionRegistry(self._client_gone), TargetedBus()
        instructions = f"Profile '{profile}' of an MCP federation hub: part of its catalog."
        if settings.description:
            instructions += f" {settings.description}"
        instructions += " Tool and prompt names are <server>__<name>; resource URIs are <server>+<uri>."
        server = build_mcp_server(
            face,
            self._router,
            registry,
            bus,
            f"{HUB_NAME}/profiles/{profile}",
            instructions + (_SEARCH_INSTRUCTIONS if searching == "search" else ""),
            self.access,
            FaceServices(self.fleet, self.bridge, self.subscriptions, tasks=self.tasks, sessions=self.session_state),
            metrics=self.metrics,
            tracer=self._tracer,
            page_size=self.config.list_page_size,
            search=search,
        )
        server.middleware.insert(0, self.drain.track)
        return face, server, registry, bus

    def profile_face(self, profile: str) -> ProfileFace | None:
        """The face of profile `profile`, or None when there is no such profile."""
        served = self._profiles.get(profile)
        return served[0] if served is not None else None

    def _build_server_face(self, server_id: str) -> tuple[HubServer, SessionRegistry, InMemorySubscriptionBus]:
        registry, bus = SessionRegistry(self._client_gone), InMemorySubscriptionBus()
        server = build_mcp_server(
            ServerFace(self.catalog, server_id),
            self._router,
            registry,
            bus,
            f"{HUB_NAME}/{server_id}",
            f"Server '{server_id}' through the hub.",
            self.access,
            FaceServices(
                self.fleet,
                self.bridge,
                self.subscriptions,
                scope=server_id,
                tasks=self.tasks,
                sessions=self.session_state,
            ),
            metrics=self.metrics,
            tracer=self._tracer,
            page_size=self.config.list_page_size,
        )
        server.middleware.insert(0, self.drain.track)
        return server, registry, bus

    def _session_manager(self, server: Server[Any], face: str) -> SessionManager:
        """The sessions of one face: `""` (`/mcp`), `profile:<name>`, or a server_id."""
        view: AggregateFace | ServerFace
        if face == "":
            registry, view = self._registry, AggregateFace(self.catalog)
        elif face.startswith(_PROFILE_FACE_PREFIX):
            view, _, registry, _ = self._profiles[face.removeprefix(_PROFILE_FACE_PREFIX)]
        else:
            registry, view = self._per_server[face][1], ServerFace(self.catalog, face)
        return SessionManager(
            server,
            face=face,
            ids=self.session_ids,
            state=self.session_state,
            max_body_bytes=self.config.max_body_bytes,
            idle_timeout_seconds=self.config.session_idle_timeout_seconds,
            hooks=SessionCopies(self.session_state, registry, self.subscriptions, view.resolve_uri),
            answers=self.answers,
        )

    async def _serve_face(
        self, server_id: str, scope: anyio.CancelScope, *, task_status: anyio.abc.TaskStatus[None]
    ) -> None:
        manager = self._session_manager(self._per_server[server_id][0], server_id)
        with scope:
            async with manager.run():
                self._per_server_apps[server_id] = manager
                self._managers[server_id] = manager
                task_status.started()
                try:
                    await anyio.sleep_forever()
                finally:
                    if self._per_server_scopes.get(server_id) is scope:
                        self._per_server_apps.pop(server_id, None)
                        self._managers.pop(server_id, None)

    def session_manager(self, face: str) -> SessionManager:
        """The sessions of one face (`""`: `/mcp`; a server_id: `/servers/<id>/mcp`;
        `profile:<name>`: `/profiles/<name>/mcp`).

        :raises KeyError: the face is not served (yet)."""
        return self._managers[face]

    def open_sessions(self) -> int:
        """Handshake-era client sessions open on every face (each ends on DELETE, when its
        client's connection is gone and it has been idle `session_idle_timeout_seconds`, or when
        the hub stops)."""
        return sum(manager.open_sessions for manager in list(self._managers.values()))

    async def add_server_face(self, server_id: str) -> None:
        """Serve `/servers/<server_id>/mcp` for a server added by a reload (no-op if served)."""
        if server_id in self._per_server_scopes or self._faces_tg is None:
            return
        if server_id not in self._per_server:
            self._per_server[server_id] = self._build_server_face(server_id)
        scope = anyio.CancelScope()
        self._per_server_scopes[server_id] = scope
        await self._faces_tg.start(self._serve_face, server_id, scope)

    def remove_server_face(self, server_id: str) -> None:
        """Stop serving `/servers/<server_id>/mcp` (a server removed by a reload): it answers 404
        and its sessions are closed."""
        self._per_server_apps.pop(server_id, None)
        self._per_server.pop(server_id, None)
        scope = self._per_server_scopes.pop(server_id, None)
        if scope is not None:
            scope.cancel()

    async def _on_catalog_change(self, server_id: str, kinds: frozenset[Kind], *, every_face: bool = False) -> None:
        """Tell the clients of every face whose lists changed (`every_face`: of every face, e.g.
        when what list results advertise changed)."""
        targets: list[tuple[SessionRegistry, InMemorySubscriptionBus, frozenset[Kind]]] = [
            (self._registry, self._bus, kinds)
        ]
        if server_id in self._per_server:
            _, registry, bus = self._per_server[server_id]
            targets.append((registry, bus, kinds))
        for face, _, registry, profile_bus in self._profiles.values():
            if (changed := face.changed(kinds)) or every_face:
                targets.append((registry, profile_bus, kinds if every_face else changed))
        for registry, bus, changed in targets:
            await registry.notify(changed)
            if "tools" in changed:
                await bus.publish(ToolsListChanged())
            if "resources" in changed or "resource_templates" in changed:
                await bus.publish(ResourcesListChanged())
            if "prompts" in changed:
                await bus.publish(PromptsListChanged())

    # ---- HTTP ----

    def end_streams(self) -> None:
        """End every open SSE stream on every face with a proper end (a drain, `hub.endpoint.drain`):
        handshake-era GET streams end their body (the transport's `close_standalone_sse_stream`;
        the SDK client reconnects), `subscriptions/listen` streams send their
        `SubscriptionsListenResult` (`ListenHandler.close`, the spec's graceful closure)."""
        for manager in list(self._managers.values()):
            for transport in manager.transports():
                transport.close_standalone_sse_stream()
        servers = [self.server, *(face[0] for face in self._per_server.values())]
        servers += [served[1] for served in self._profiles.values()]
        for server in servers:
            entry = server.get_request_handler("subscriptions/listen")
            if entry is not None and isinstance(entry.handler, ListenHandler):
                entry.handler.close()

    def readiness(self) -> tuple[int, dict[str, Any]]:
        """`(HTTP status, body)` of /readyz: 200 when at least one server is connected (`ready`,
        `degraded`, or `open`: discovery and fallbacks still work; or none is configured) and
        every enabled server has finished its first start attempt. `status` is `ready` when every
        server is `ready`, else `degraded`; each server (each replica member) is listed with its
        state. With Redis configured, `shared_state` is `ok` or `unavailable` (with
        `shared_state_reason`, for `hub:admin` only); an unavailable Redis never makes the hub unready: it serves
        with this replica's local state meanwhile. From the start of a drain (`hub.endpoint.drain`: SIGTERM) on, 503
        with `status: draining` and `drain: {phase, requests_in_flight, open_streams}`, whatever the servers'
        states."""
        statuses = [c.status() for c in self.fleet.connections.values()]
        enabled = [s for s in statuses if s.state is not ServerState.DISABLED]
        serving = [s for s in enabled if s.state in (ServerState.READY, ServerState.DEGRADED, ServerState.OPEN)]
        ready = [s for s in enabled if s.state is ServerState.READY]
        starting = [s for s in enabled if s.state is ServerState.STARTING]
        if not enabled or (serving and not starting):
            status = "ready" if len(ready) == len(enabled) else "degraded"
            code = 200
        else:
            status = "starting" if starting else "unavailable"
            code = 503
        body: dict[str, Any] = {"status": status}
        if self.store.shared:
            health = self.store.health()
            body["shared_state"] = health.status
            if health.reason is not None:
                body["shared_state_reason"] = health.reason
        body["servers"] = [s.as_json() for s in statuses]
        drain = self.drain
        if drain.draining:
            code, body["status"] = 503, "draining"
            body["drain"] = {
                "phase": drain.phase.value,
                "requests_in_flight": drain.requests_in_flight,
                "open_streams": drain.open_streams,
            }
        return code, body

    def readiness_for(self, principal: Principal) -> tuple[int, dict[str, Any]]:
        """`readiness()` as `principal` may see it: with authentication on, callers without
        `hub:admin` get the overall status and per-state counts only (no server ids, errors or
        addresses)."""
        code, body = self.readiness()
        if not self.authenticator.enabled or "hub:admin" in principal.scopes:
            return code, body
        counts: dict[str, int] = {}
        for server in body["servers"]:
            counts[server["state"]] = counts.get(server["state"], 0) + 1
        reduced: dict[str, Any] = {"status": body["status"], "servers_by_state": counts}
        if "shared_state" in body:
            reduced["shared_state"] = body["shared_state"]
        return code, reduced

    def routes_json(
        self, principal: Principal | None = None, profile: ProfileFace | None = None
    ) -> list[dict[str, Any]]:
        """Every route with its server's state, its fallback chain (`[server_id, fallbacks
        offering the same original...]`), its candidate members in order and the member that
        would serve it now (`serving`, None when none can), whether it is `served` (False: reserved
        for its server while that server is down) and `listed`, its `pin` status (`hub.pins`, or
        None), its `hygiene` findings and every `notes` line for people, for `/admin/routes`; or
        only the routes `principal` may use (`/me/routes`, `mcphub routes`); with `profile`, only
        the routes that profile serves (`?profile=`, `mcphub routes --profile`)."""
        rows = []
        for route in self.catalog.routes():
            if principal is not None and not self.policy.allows(principal, route.server_id, route.exposed):
                continue
            if profile is not None and profile.route_key(route.kind, route.exposed) is None:
                continue
            plan = self._router.plan(route.server_id, route.kind, route.original)
            members = self.fleet.members(route.server_id)
            rows.append(
                {
                    "exposed": route.exposed,
                    "kind": route.kind,
                    "server_id": route.server_id,
                    "original": route.original,
                    "note": route.note,
                    "server_state": _best_state(members),
                    "fallbacks": list(route.fallbacks),
                    "chain": plan["chain"],
                    "members": plan["members"],
                    "serving": plan["serving"],
                    "served": route.served,
                    "listed": route.listed,
                    "pin": route.pin.as_json() if route.pin is not None else None,
                    "hygiene": list(route.hygiene),
                    "notes": route.notes(),
                }
            )
        return rows

    async def search_json(
        self, principal: Principal, query: str, limit: int, profile: str | None = None
    ) -> dict[str, Any]:
        """What `search_tools` answers `principal` on `/mcp` (or on profile `profile`), for people
        (`GET /me/search`, `mcphub search`): the caller's catalog `mode` there, and per result its
        rank, exposed name, server, original name, title, description, the words that matched
        (`matched`: per field, `related` for words found through synonyms; never a score) and
        the definition as `tools/list` gives it.

        :raises KeyError: no such profile.
        """
        if profile is not None and profile not in self._profiles:
            raise KeyError(profile)
        search = self._searches[profile or ""]
        hits = await search.find(principal, query, limit)
        reasons = await self.search.reasons(hits, query)
        results = []
        for rank, (hit, matched) in enumerate(zip(hits, reasons, strict=True), start=1):
            route = self.catalog.tool_route(hit.name)
            results.append(
                {
                    "rank": rank,
                    "name": hit.name,
                    "server_id": route.server_id if route is not None else None,
                    "original": route.original if route is not None else None,
                    "title": hit.tool.title,
                    "description": hit.tool.description,
                    "matched": {field: list(found) for field, found in matched.items()},
                    "tool": hit.tool.model_dump(mode="json", by_alias=True, exclude_none=True),
                }
            )
        return {"query": query, "profile": profile, "mode": search.settings(principal).mode, "results": results}

    def explain(self, name: str, principal: Principal | None, *, full: bool = True) -> dict[str, Any]:
        """`hub.explain.explain` for this hub: everything that decides a call of `name` by
        `principal`. With `full=False` (a principal asking about itself without `hub:admin`) a
        route the principal may not see is answered exactly like an unknown name."""
        catalog, policy = self.catalog, self.policy

        def visible_names() -> list[str]:
            return [
                r.exposed
                for r in catalog.routes()
                if principal is None or policy.allows(principal, r.server_id, r.exposed)
            ]

        def states(server_id: str) -> dict[str, str]:
            return {m.server_id: m.health_state.value for m in self.fleet.members(server_id)}

        def hidden(route: CatalogRoute) -> bool:
            return not full and principal is not None and not policy.allows(principal, route.server_id, route.exposed)

        return explain(
            name,
            principal,
            catalog=catalog,
            policy=policy,
            config=self.config,
            plan=self._router.plan,
            states=states,
            pin_diff=lambda route: pin_diff(catalog, route.server_id, route.kind, route.original),
            visible_names=visible_names,
            hidden=hidden,
        )

    def http_app(self, lifespan: Callable[[], contextlib.AbstractAsyncContextManager[None]] | None = None) -> ASGIApp:
        """The Starlette app: `/mcp`, `/servers/<id>/mcp`, `/profiles/<name>/mcp`, `/healthz`,
        `/readyz`, `/metrics` (Prometheus text), `/me`, `/me/routes[?profile=]`,
        `/me/search?q=&limit=&profile=`, `/admin/*` (including `POST /admin/reload` and
        `/admin/routes[?profile=]`; an unknown profile is 404), wrapped in Host/Origin
        validation, authentication and the request gate (415 for a non-JSON POST to an MCP
        path, 413 past `max_body_bytes` decided from `Content-Length` or while streaming,
        before the body is buffered whole, -32600 for a JSON-RPC batch).

        :param lifespan: entered around serving (the composition root passes the fleet's).
        """

        aggregate = self._session_manager(self.server, "")
        self._managers[""] = aggregate
        server_endpoint = _PerServerApp(self._per_server_apps)
        profile_managers = {
            name: self._session_manager(served[1], f"{_PROFILE_FACE_PREFIX}{name}")
            for name, served in self._profiles.items()
        }
        for manager in profile_managers.values():
            self._managers[manager.face] = manager
        profile_endpoint = _PerServerApp(self._profile_apps, "profile", "profile")

        def profile_of(request: Request) -> tuple[ProfileFace | None, Response | None]:
            """The profile a request's `?profile=` names (None when it names none), or a 404."""
            name = request.query_params.get("profile")
            if name is None:
                return None, None
            face = self.profile_face(name)
            if face is None:
                return None, JSONResponse({"error": f"unknown profile {name!r}"}, status_code=404)
            return face, None

        async def healthz(request: Request) -> Response:
            return JSONResponse({"status": "ok"})

        async def readyz(request: Request) -> Response:
            code, body = self.readiness_for(principal_of(request))
            return JSONResponse(body, status_code=code)

        async def me(request: Request) -> Response:
            return JSONResponse(principal_of(request).as_json())

        async def my_routes(request: Request) -> Response:
            profile, refusal = profile_of(request)
            if refusal is not None:
                return refusal
            return JSONResponse({"routes": self.routes_json(principal_of(request), profile)})

        async def my_search(request: Request) -> Response:
            # The search the model gets on /mcp (or ?profile=), for the caller's own principal.
            query = request.query_params.get("q", "")
            if not query.strip() or len(query) > MAX_QUERY_CHARS:
                return JSONResponse(
                    {"error": f"give what to search for as ?q=<words> (1-{MAX_QUERY_CHARS} characters)"},
                    status_code=400,
                )
            raw_limit = request.query_params.get("limit", "8")
            if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_SEARCH_LIMIT:
                return JSONResponse({"error": f"limit must be 1-{MAX_SEARCH_LIMIT}"}, status_code=400)
            profile, refusal = profile_of(request)
            if refusal is not None:
                return refusal
            name = profile.name if profile is not None else None
            return JSONResponse(await self.search_json(principal_of(request), query, int(raw_limit), name))

        async def resource_metadata(request: Request) -> Response:
            if not self.authenticator.enabled:
                return JSONResponse({"error": "authentication is not configured on this hub"}, status_code=404)
            resource_path = "/" + request.path_params.get("resource", "mcp").strip("/")
            parts = resource_path.split("/")
            if resource_path != "/mcp" and not (
                len(parts) == 4
                and parts[3] == "mcp"
                and (
                    (parts[1] == "servers" and parts[2] in self._per_server)
                    or (parts[1] == "profiles" and parts[2] in self._profiles)
                )
            ):
                return JSONResponse({"error": f"no protected resource at {resource_path}"}, status_code=404)
            base = self.config.public_url or f"{request.url.scheme}://{request.url.netloc}"
            return JSONResponse(
                protected_resource_metadata(self.config, base, resource_path),
                headers={"Cache-Control": "public, max-age=3600"},
            )

        async def admin_servers(request: Request) -> Response:
            return JSONResponse({"servers": [c.status().as_json() for c in self.fleet.connections.values()]})

        async def admin_routes(request: Request) -> Response:
            profile, refusal = profile_of(request)
            if refusal is not None:
                return refusal
            return JSONResponse({"routes": self.routes_json(None, profile)})

        async def my_explain(request: Request) -> Response:
            # Any principal may ask about itself; without hub:admin it learns nothing about
            # routes it may not see (they answer like unknown names).
            name = request.query_params.get("name", "")
            if not name:
                return JSONResponse({"error": "give the route to explain as ?name=<exposed name>"}, status_code=400)
            principal = principal_of(request)
            return JSONResponse(self.explain(name, principal, full="hub:admin" in principal.scopes))

        async def admin_explain(request: Request) -> Response:
            name = request.query_params.get("name", "")
            if not name:
                return JSONResponse({"error": "give the route to explain as ?name=<exposed name>"}, status_code=400)
            principal_id = request.query_params.get("principal")
            principal = (
                principal_for(
                    principal_id,
                    request.query_params.getlist("scope"),
                    self.config,
                    self.authenticator.hierarchy.expand,
                )
                if principal_id
                else None
            )
            return JSONResponse(self.explain(name, principal))

        async def admin_reload(request: Request) -> Response:
            if self.reload_handler is None:
                return JSONResponse({"status": "rejected", "error": "this hub cannot reload"}, status_code=409)
            code, body = await self.reload_handler()
            return JSONResponse(body, status_code=code)

        async def metrics(request: Request) -> Response:
            if self.metrics is None:
                return Response("metrics are off\n", status_code=404, media_type="text/plain")
            return Response(self.metrics.render(), media_type=METRICS_CONTENT_TYPE)

        async def admin_restart(request: Request) -> Response:
            # Asks the server's supervisor to restart it (also out of a crash-loop `failed`);
            # 202 with its status before the restart, 404 for an unknown server_id.
            server_id = request.path_params["server_id"]
            connection = self.fleet.get(server_id)
            if connection is None:
                return JSONResponse({"error": f"no server '{server_id}'"}, status_code=404)
            status = connection.status().as_json()
            connection.restart()
            return JSONResponse(status, status_code=202)

        @contextlib.asynccontextmanager
        async def app_lifespan(app: Starlette) -> AsyncIterator[None]:
            async with contextlib.AsyncExitStack() as stack:
                if lifespan is not None:
                    await stack.enter_async_context(lifespan())
                stack.push_async_callback(self.authenticator.aclose)
                await stack.enter_async_context(self.bridge.running())
                await stack.enter_async_context(self.session_state.running())
                await stack.enter_async_context(self.answers.running())
                await stack.enter_async_context(aggregate.run())
                for name, manager in profile_managers.items():
                    await stack.enter_async_context(manager.run())
                    self._profile_apps[name] = manager
                stack.callback(self._profile_apps.clear)
                self._faces_tg = await stack.enter_async_context(anyio.create_task_group())
                stack.callback(self._faces_tg.cancel_scope.cancel)
                for server_id in list(self._per_server):
                    await self.add_server_face(server_id)
                yield

        app = Starlette(
            routes=[
                Route("/mcp", endpoint=aggregate, methods=["GET", "POST", "DELETE"]),
                Route("/servers/{server_id}/mcp", endpoint=server_endpoint, methods=["GET", "POST", "DELETE"]),
                Route(PROFILE_PREFIX + "{profile}/mcp", endpoint=profile_endpoint, methods=["GET", "POST", "DELETE"]),
                Route("/healthz", endpoint=healthz, methods=["GET"]),
                Route("/readyz", endpoint=readyz, methods=["GET"]),
                Route("/admin/servers", endpoint=admin_servers, methods=["GET"]),
                Route("/admin/routes", endpoint=admin_routes, methods=["GET"]),
                Route("/me", endpoint=me, methods=["GET"]),
                Route("/me/routes", endpoint=my_routes, methods=["GET"]),
                Route("/me/explain", endpoint=my_explain, methods=["GET"]),
                Route("/me/search", endpoint=my_search, methods=["GET"]),
                Route("/admin/explain", endpoint=admin_explain, methods=["GET"]),
                Route(PRM_PATH, endpoint=resource_metadata, methods=["GET"]),
                Route(PRM_PATH + "/{resource:path}", endpoint=resource_metadata, methods=["GET"]),
                Route("/admin/reload", endpoint=admin_reload, methods=["POST"]),
                Route("/metrics", endpoint=metrics, methods=["GET"]),
                Route("/admin/servers/{server_id:path}/restart", endpoint=admin_restart, methods=["POST"]),
                *trust_routes(self.catalog),
            ],
            lifespan=app_lifespan,
        )
        gated = RequestGate(_TrimHeaderWhitespace(app), self.config.max_body_bytes)
        authenticated = AuthMiddleware(gated, self.config, self.authenticator, self.access.limiter)
        guarded = HostOriginGuard(authenticated, allowed_hosts(self.config))
        # Before the guards: once the hub stops accepting, a request gets 503 whoever sends it.
        draining = DrainGate(guarded, self.drain)
        # Outermost: requests refused at the door (503, 413, 421, 401, 429) get HTTP spans too.
        return self._tracer.instrument_asgi(draining) if self._tracer is not None else draining

    # ---- stdio ----

    async def serve_stdio(self) -> None:
        """Serve the aggregated catalog on this process's stdin/stdout until stdin closes."""
        async with self.bridge.running(), stdio_server() as (read_stream, write_stream):
            await self.server.run(read_stream, write_stream, self.server.create_initialization_options())


def run_event_loop(fn: Callable[[], Awaitable[T]]) -> T:
    """`anyio.run(fn)` on uvloop when it is installed (10-25% less CPU per call), else asyncio."""
    try:
        import uvloop  # noqa: F401
    except ImportError:  # pragma: no cover - uvloop is a dependency through uvicorn[standard]
        return anyio.run(fn)
    return anyio.run(fn, backend_options={"use_uvloop": True})
