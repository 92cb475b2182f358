"""The endpoint: the hub's MCP faces over one catalog and the session managers that serve them.

The faces: the aggregated catalog at `/mcp` (and on stdio), one server at
`/servers/<server_id>/mcp`, endpoint profiles at `/profiles/<name>/mcp` (`hub.endpoint.profiles`).
`/mcp`, stdio and the profiles serve search mode for the callers it applies to
(`hub.endpoint.search_mode`), over one search index (`hub.catalog_search`). Each face is an MCP
server of its own (`hub.endpoint.mcp_server`: its handlers, `hub.endpoint.handlers`, and the
error translation, `hub.endpoint.request_boundary`); what it lists and how its names resolve is
`hub.endpoint.faces`.

Both protocol eras are served on every face (`hub.endpoint.session_manager.SessionManager` picks
the era per request from `MCP-Protocol-Version`, and gives handshake-era sessions sealed ids that
any replica serves; stdio picks the era from the client's first request). `list_changed` reaches
handshake-era clients as `notifications/*/list_changed` on their session's standing channel, and
modern-era clients as `subscriptions/listen` events (`on_catalog_change`).

The endpoint builds only its own parts (faces, their MCP servers, `hub.endpoint.face_servers`;
registries and session managers); every collaborator it shares (authentication, policy, rate limits, bridge,
subscriptions, tasks, the drain) is built by the composition root (`hub.app`) and given in
`EndpointServices`. The HTTP app is `hub.endpoint.http_app`, the JSON APIs
`hub.endpoint.admin_api`; while the hub drains for a deploy (`hub.endpoint.drain`), `end_streams`
ends the open SSE streams with a proper end.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

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

from hub.catalog import Catalog, Kind
from hub.catalog_search import CatalogSearch
from hub.cluster.answers import Answers
from hub.cluster.fanout import ResourceFanout
from hub.cluster.session_copies import SessionCopies
from hub.cluster.session_ids import SessionIds
from hub.cluster.session_state import SessionState
from hub.cluster.store import SharedStore
from hub.config import HubConfig
from hub.endpoint.admin_api import AdminApi
from hub.endpoint.authentication import Authenticator
from hub.endpoint.drain import Drain
from hub.endpoint.era_bridge import Bridge
from hub.endpoint.face_servers import FaceServers, ProfileServer, ServerFaceServer
from hub.endpoint.faces import AggregateFace, ServerFace
from hub.endpoint.found_tools import TargetedBus
from hub.endpoint.profiles import ProfileFace
from hub.endpoint.rate_limits import RateLimiter
from hub.endpoint.search_mode import FaceSearch
from hub.endpoint.server_requests import Subscriptions
from hub.endpoint.session_manager import SessionManager
from hub.endpoint.session_registry import SessionRegistry
from hub.endpoint.task_relay import TaskRelay
from hub.metrics import HubMetrics
from hub.policy import Access, Policy
from hub.router import Router
from hub.servers import Fleet
from hub.signals import Changes
from hub.tracing import CallTracer

__all__ = ["Endpoint", "EndpointServices"]

_PROFILE_FACE_PREFIX = "profile:"
"""How a profile's face is named in session ids and `session_manager` (a server_id has no `:`)."""

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EndpointServices:
    """The collaborators the endpoint is given (built by the composition root, `hub.app`)."""

    store: SharedStore
    """The state replicas share (in memory for a hub alone)."""
    authenticator: Authenticator
    """Every HTTP request becomes a `Principal` (`hub.endpoint.authentication`)."""
    policy: Policy
    """Which principal may see and use which route (`hub.policy`)."""
    rate_limiter: RateLimiter
    """The per-principal and per-route rate limits (`hub.endpoint.rate_limits`)."""
    access: Access
    """The policy and the per-route rate limits, as the faces apply them."""
    session_ids: SessionIds
    """Mints and opens the sealed ids of handshake-era sessions (`hub.cluster.session_ids`)."""
    session_state: SessionState
    """Revocations (DELETE), log levels and subscriptions of sessions, shared by the replicas."""
    answers: Answers
    """Client answers routed to the replica that sent the request (with Redis)."""
    bridge: Bridge
    """Era bridging of multi-round requests (`hub.endpoint.era_bridge`)."""
    subscriptions: Subscriptions
    """Resource subscriptions of every client (`hub.endpoint.server_requests`)."""
    tasks: TaskRelay
    """Tasks through the hub (`hub.endpoint.tasks`)."""
    search: CatalogSearch
    """The catalog's tool search index (`hub.catalog_search`), shared by every face."""
    drain: Drain
    """The drain for a deploy (`hub.endpoint.drain`): readiness, connection closing, refusals, failing."""
    fanout: ResourceFanout | None = None
    """Resource updates between replicas (with Redis only; run by the hub's lifespan)."""


class Endpoint:
    """The hub's MCP faces over one catalog, and the session managers that serve them.

    :param config: the hub config (listen address, public_url, body cap, profiles).
    :param catalog: the merged catalog the faces read.
    :param fleet: the server connections (for health and admin).
    :param router: where routed requests go.
    :param services: the collaborators the faces share (`EndpointServices`).
    :param metrics: the hub's metrics (`/metrics`; None: off).
    :param tracer: per-request spans (None: tracing off).
    """

    def __init__(
        self,
        config: HubConfig,
        catalog: Catalog,
        fleet: Fleet,
        router: Router,
        services: EndpointServices,
        *,
        metrics: HubMetrics | None = None,
        tracer: CallTracer | None = None,
    ) -> None:
        self.config = config
        self.catalog = catalog
        self.fleet = fleet
        self.router = router
        self.metrics = metrics
        self.tracer = tracer
        self.store = services.store
        self.authenticator = services.authenticator
        self.policy = services.policy
        self.rate_limiter = services.rate_limiter
        self.access = services.access
        self.session_ids = services.session_ids
        self.session_state = services.session_state
        self.session_changes = Changes()
        """Notified when any face's handshake-era sessions open or close here, and when a copy
        rebuilds a session or applies a level or subscription set through another replica
        (`SessionManager.changes`): wait on it instead of polling `open_sessions()`."""
        self.answers = services.answers
        self.bridge = services.bridge
        self.subscriptions = services.subscriptions
        self.tasks = services.tasks
        self.search = services.search
        self.drain = services.drain
        self.fanout = services.fanout
        self.admin = AdminApi(self)
        """Readiness, `/me` and the admin API (`hub.endpoint.admin_api`)."""
        self._face_servers = FaceServers(
            config,
            catalog,
            fleet,
            router,
            self.access,
            self.bridge,
            self.subscriptions,
            self.tasks,
            self.session_state,
            self.search,
            self.drain,
            self._client_gone,
            metrics,
            tracer,
        )
        """Builds the MCP server of each face (`hub.endpoint.face_servers`)."""
        self._bus = TargetedBus()
        self._registry = SessionRegistry(self._client_gone)
        aggregate = AggregateFace(catalog)
        self._searches: dict[str, FaceSearch] = {"": self._face_servers.face_search(aggregate)}
        """Search mode per face: `""` for `/mcp` (and stdio), else a profile's name."""
        self.server = self._face_servers.aggregate(aggregate, self._registry, self._bus, self._searches[""])
        self._profiles: dict[str, ProfileServer] = {}
        for profile in config.profiles:
            self._profiles[profile], self._searches[profile] = self._face_servers.profile(profile)
        self._profile_apps: dict[str, SessionManager] = {}
        self._profile_managers: dict[str, SessionManager] = {}
        self._aggregate_manager: SessionManager | None = None
        self._per_server: dict[str, ServerFaceServer] = {}
        for server_id in config.servers:
            self._per_server[server_id] = self._face_servers.server(server_id)
        self._per_server_apps: dict[str, SessionManager] = {}
        self._per_server_scopes: dict[str, anyio.CancelScope] = {}
        self._faces_tg: anyio.abc.TaskGroup | None = None
        self._managers: dict[str, SessionManager] = {}
        self.reload_handler: Callable[[], Awaitable[tuple[int, dict[str, Any]]]] | None = None
        """Called by `POST /admin/reload`; returns `(HTTP status, JSON body)` (set by the Hub)."""

    def _client_gone(self, client_key: str) -> None:
        """A handshake-era client session ended: drop its subscriptions and found tools, and
        close the server connections dedicated to it (`isolation: per_client`)."""
        self.subscriptions.forget(client_key)
        for search in self._searches.values():
            if search.found is not None:
                search.found.forget(client_key)
        self.fleet.release_client(client_key)

    def profile_face(self, profile: str) -> ProfileFace | None:
        """The face of profile `profile`, or None when there is no such profile."""
        served = self._profiles.get(profile)
        return served[0] if served is not None else None

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
            idle_timeout_seconds=self.config.session_idle_timeout_seconds,
            hooks=SessionCopies(self.session_state, registry, self.subscriptions, view.resolve_uri),
            answers=self.answers,
            changes=self.session_changes,
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
            self._per_server[server_id] = self._face_servers.server(server_id)
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

    async def on_catalog_change(self, server_id: str, kinds: frozenset[Kind], *, every_face: bool = False) -> None:
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

    def face_search(self, profile: str | None = None) -> FaceSearch:
        """Search mode on `/mcp` (and stdio), or on profile `profile`.

        :raises KeyError: no such profile.
        """
        if profile is not None and profile not in self._profiles:
            raise KeyError(profile)
        return self._searches[profile or ""]

    def has_server_face(self, server_id: str) -> bool:
        """Whether `/servers/<server_id>/mcp` is a face of this endpoint."""
        return server_id in self._per_server

    @property
    def server_apps(self) -> Mapping[str, SessionManager]:
        """The session managers of the per-server faces being served, by server_id (live)."""
        return self._per_server_apps

    @property
    def profile_apps(self) -> Mapping[str, SessionManager]:
        """The session managers of the profiles' faces being served, by profile name (live)."""
        return self._profile_apps

    def open_session_managers(self) -> SessionManager:
        """Make the session managers of `/mcp` and of each profile for one HTTP app (`serving`
        runs them) and return `/mcp`'s."""
        aggregate = self._aggregate_manager = self._session_manager(self.server, "")
        self._managers[""] = aggregate
        self._profile_managers = {
            name: self._session_manager(served[1], f"{_PROFILE_FACE_PREFIX}{name}")
            for name, served in self._profiles.items()
        }
        for manager in self._profile_managers.values():
            self._managers[manager.face] = manager
        return aggregate

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[None]:
        """Run what the faces need while the HTTP app serves: the bridge, the shared session
        state, the answers, the session managers `open_session_managers` made, and one per
        configured server's face (servers a reload adds get theirs from `add_server_face`)."""
        if self._aggregate_manager is None:
            raise RuntimeError("open_session_managers() first")
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self.bridge.running())
            await stack.enter_async_context(self.session_state.running())
            await stack.enter_async_context(self.answers.running())
            await stack.enter_async_context(self._aggregate_manager.run())
            for name, manager in self._profile_managers.items():
                await stack.enter_async_context(manager.run())
                self._profile_apps[name] = manager
            stack.callback(self._profile_apps.clear)
            self._faces_tg = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(self._faces_tg.cancel_scope.cancel)
            for server_id in list(self._per_server):
                await self.add_server_face(server_id)
            yield

    # ---- stdio ----

    async def serve_stdio(self) -> None:
        """Serve the aggregated catalog on this process's stdin/stdout until stdin closes."""
        async with self.bridge.running(), stdio_server() as (read_stream, write_stream):
            await self.server.run(read_stream, write_stream, self.server.create_initialization_options())
