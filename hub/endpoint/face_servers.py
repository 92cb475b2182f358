"""The MCP server of each face, built (`hub.endpoint.endpoint.Endpoint` holds them): the
aggregated face (`/mcp`, stdio), a profile's (`/profiles/<name>/mcp`) and one server's
(`/servers/<server_id>/mcp`), each with its name, instructions, session registry, event bus,
search mode where it applies, and the drain's tracking as its outermost middleware.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from mcp.server.subscriptions import InMemorySubscriptionBus

from hub.catalog import Catalog
from hub.catalog_search import CatalogSearch
from hub.cluster.session_state import SessionState
from hub.config import HubConfig
from hub.endpoint.drain import Drain
from hub.endpoint.era_bridge import Bridge
from hub.endpoint.face_services import FaceServices
from hub.endpoint.faces import AggregateFace, Face, ServerFace
from hub.endpoint.found_tools import FoundTools, TargetedBus
from hub.endpoint.mcp_server import HUB_NAME, HubServer, build_mcp_server
from hub.endpoint.profiles import ProfileFace
from hub.endpoint.search_mode import FaceSearch
from hub.endpoint.server_requests import Subscriptions
from hub.endpoint.session_registry import SessionRegistry
from hub.endpoint.task_relay import TaskRelay
from hub.metrics import HubMetrics
from hub.policy import Access
from hub.router import Router
from hub.servers import Fleet
from hub.tracing import CallTracer

__all__ = ["FaceServers", "ProfileServer", "ServerFaceServer"]

_NAMES: Final = " Tool and prompt names are <server>__<name>; resource URIs are <server>+<uri>."

_SEARCH_INSTRUCTIONS: Final = (
    " In search mode, find tools with search_tools (describe the task in plain words) and call them "
    "with call_tool or by name."
)

ProfileServer = tuple[ProfileFace, HubServer, SessionRegistry, TargetedBus]
"""A profile's face, its MCP server, session registry and event bus."""

ServerFaceServer = tuple[HubServer, SessionRegistry, InMemorySubscriptionBus]
"""One server's face: its MCP server, session registry and event bus."""


@dataclass(frozen=True, slots=True)
class FaceServers:
    """Builds the MCP server of each face from what the faces share.

    :param client_gone: called with a client key when a handshake-era client session ends (on
        every face's session registry).
    """

    config: HubConfig
    catalog: Catalog
    fleet: Fleet
    router: Router
    access: Access
    bridge: Bridge
    subscriptions: Subscriptions
    tasks: TaskRelay
    sessions: SessionState
    search: CatalogSearch
    drain: Drain
    client_gone: Callable[[str], None]
    metrics: HubMetrics | None = None
    tracer: CallTracer | None = None

    def face_search(self, face: AggregateFace, profile: str | None = None) -> FaceSearch:
        """Search mode of the aggregated face or of profile `profile`'s (`hub.endpoint.search_mode`)."""
        override = self.config.profiles[profile].catalog if profile is not None else None
        return FaceSearch(
            self.search,
            face,
            self.access,
            self.config.catalog,
            override,
            found=FoundTools(self.config.session_idle_timeout_seconds),
        )

    def aggregate(
        self, face: AggregateFace, registry: SessionRegistry, bus: TargetedBus, search: FaceSearch
    ) -> HubServer:
        """The server of `/mcp` (and stdio): the whole catalog."""
        instructions = "One MCP endpoint for a fleet of MCP servers." + _NAMES
        if self.config.catalog.mode == "search":
            instructions += _SEARCH_INSTRUCTIONS
        return self._build(face, registry, bus, HUB_NAME, instructions, self._services(), search)

    def profile(self, profile: str) -> tuple[ProfileServer, FaceSearch]:
        """The server of `/profiles/<profile>/mcp`: the aggregated face narrowed to the profile;
        with its search mode."""
        settings = self.config.profiles[profile]
        face = ProfileFace(self.catalog, profile, settings)
        search = self.face_search(face, profile)
        searching = (settings.catalog.over(self.config.catalog) if settings.catalog else self.config.catalog).mode
        registry, bus = SessionRegistry(self.client_gone), TargetedBus()
        instructions = f"Profile '{profile}' of an MCP federation hub: part of its catalog."
        if settings.description:
            instructions += f" {settings.description}"
        instructions += _NAMES + (_SEARCH_INSTRUCTIONS if searching == "search" else "")
        name = f"{HUB_NAME}/profiles/{profile}"
        server = self._build(face, registry, bus, name, instructions, self._services(), search)
        return (face, server, registry, bus), search

    def server(self, server_id: str) -> ServerFaceServer:
        """The server of `/servers/<server_id>/mcp`: that one server's part of the catalog."""
        registry, bus = SessionRegistry(self.client_gone), InMemorySubscriptionBus()
        server = self._build(
            ServerFace(self.catalog, server_id),
            registry,
            bus,
            f"{HUB_NAME}/{server_id}",
            f"Server '{server_id}' through the hub.",
            self._services(scope=server_id),
        )
        return server, registry, bus

    def _services(self, scope: str | None = None) -> FaceServices:
        return FaceServices(
            self.fleet, self.bridge, self.subscriptions, scope=scope, tasks=self.tasks, sessions=self.sessions
        )

    def _build(
        self,
        face: Face,
        registry: SessionRegistry,
        bus: InMemorySubscriptionBus,
        name: str,
        instructions: str,
        services: FaceServices,
        search: FaceSearch | None = None,
    ) -> HubServer:
        server = build_mcp_server(
            face,
            self.router,
            registry,
            bus,
            name,
            instructions,
            self.access,
            services,
            metrics=self.metrics,
            tracer=self.tracer,
            page_size=self.config.list_page_size,
            search=search,
        )
        server.middleware.insert(0, self.drain.track)  # outermost: its -32000 is already JSON-RPC
        return server
