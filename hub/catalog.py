"""The catalog: every ready server's tools, resources, resource templates and prompts, merged
under exposed names, with the route table that maps each exposed name back to its owner.

Each server contributes a `ServerSnapshot` (its full listing, original names); the catalog
rebuilds the merged view whenever one changes and tells its listeners which kinds changed, so
the endpoint can send `notifications/*/list_changed` (handshake era) or publish a
`subscriptions/listen` event (modern era).

A server that is down contributes nothing, except that the routes of a server with `fallback:`
stay while a ready fallback offers the same original (the router sends them there). A server
with `expose: false` contributes no names (it only serves as a fallback; its own
`/servers/<server_id>/mcp` view remains). A server with `replicas:` publishes one snapshot per
member (`<server_id>/<n>`); the catalog uses the first member's that is up.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from functools import partial
from typing import Literal, TypeVar

import mcp_types as types

from hub.config import HubConfig, ServerConfig
from hub.logs import counted
from hub.naming import SEPARATOR, assign_names, exposed_resource_uri, split_resource_uri
from hub.servers import ServerSnapshot
from hub.uris import normalize_uri

__all__ = ["Catalog", "ChangeListener", "Kind", "Route", "ServerView", "snapshot_offers"]

logger = logging.getLogger(__name__)

Kind = Literal["tools", "resources", "resource_templates", "prompts"]
KINDS: tuple[Kind, ...] = ("tools", "resources", "resource_templates", "prompts")

ChangeListener = Callable[[str, frozenset[Kind]], Awaitable[None]]
"""Called with the server_id whose snapshot changed and the kinds whose merged listing changed."""


@dataclass(frozen=True, slots=True)
class Route:
    """One exposed name (or URI) and the server that owns it."""

    kind: Kind
    exposed: str
    server_id: str
    original: str
    note: str | None = None
    """Why the exposed name is not the plain `<prefix>__<original>` (sanitized, shortened, collision)."""
    fallbacks: tuple[str, ...] = ()
    """The server's configured fallbacks that offer the same original right now, in order."""


@dataclass(frozen=True, slots=True)
class ServerView:
    """One server's listing as served at `/servers/<server_id>/mcp`: original names."""

    tools: tuple[types.Tool, ...]
    resources: tuple[types.Resource, ...]
    resource_templates: tuple[types.ResourceTemplate, ...]
    prompts: tuple[types.Prompt, ...]
    tool_names: frozenset[str]
    prompt_names: frozenset[str]
    input_schemas: dict[str, dict[str, object]]


_EMPTY_VIEW = ServerView((), (), (), (), frozenset(), frozenset(), {})


def _template_matches(template: str, uri: str) -> bool:
    """Whether `uri` could come from URI template `template` (its literal head matches)."""
    head = template.split("{", 1)[0]
    return uri.startswith(head) and (uri == template or "{" in template)


def snapshot_offers(snapshot: ServerSnapshot, kind: Kind, original: str) -> bool:
    """Whether a server's snapshot has the original tool or prompt name, resource URI (listed,
    or matching one of its URI templates) or URI template `original`."""
    if kind == "tools":
        return any(tool.name == original for tool in snapshot.tools)
    if kind == "prompts":
        return any(prompt.name == original for prompt in snapshot.prompts)
    if kind == "resource_templates":
        return any(t.uri_template == original for t in snapshot.resource_templates)
    return any(str(r.uri) == original for r in snapshot.resources) or any(
        _template_matches(t.uri_template, original) for t in snapshot.resource_templates
    )


def _offered_by_fallback(
    fallbacks_offering: Callable[[str, Kind, str], tuple[str, ...]], server_id: str, kind: Kind, original: str
) -> bool:
    return bool(fallbacks_offering(server_id, kind, original))


def _restrict(snapshot: ServerSnapshot, keep: Callable[[Kind, str], bool]) -> ServerSnapshot:
    """The part of a (down server's last) snapshot that `keep` accepts."""
    return ServerSnapshot(
        tools=tuple(t for t in snapshot.tools if keep("tools", t.name)),
        resources=tuple(r for r in snapshot.resources if keep("resources", str(r.uri))),
        resource_templates=tuple(t for t in snapshot.resource_templates if keep("resource_templates", t.uri_template)),
        prompts=tuple(p for p in snapshot.prompts if keep("prompts", p.name)),
    )


_NamedT = TypeVar("_NamedT", types.Tool, types.Prompt)
_UriT = TypeVar("_UriT", types.Resource, types.ResourceTemplate)


def _make_view(snapshot: ServerSnapshot) -> ServerView:
    return ServerView(
        tools=snapshot.tools,
        resources=snapshot.resources,
        resource_templates=snapshot.resource_templates,
        prompts=snapshot.prompts,
        tool_names=frozenset(tool.name for tool in snapshot.tools),
        prompt_names=frozenset(prompt.name for prompt in snapshot.prompts),
        input_schemas={tool.name: tool.input_schema for tool in snapshot.tools},
    )


def _namespace_uris(
    kind: Kind, views: dict[str, ServerView], items_of: Callable[[ServerView], tuple[_UriT, ...]], field: str
) -> tuple[list[Route], tuple[_UriT, ...]]:
    """Routes and re-addressed definitions for resources or templates (`<server_id>+<uri>`)."""
    routes: list[Route] = []
    renamed: list[_UriT] = []
    for server_id, view in views.items():
        for item in items_of(view):
            original: str = getattr(item, field)
            exposed = exposed_resource_uri(server_id, original)
            routes.append(Route(kind, exposed, server_id, original))
            renamed.append(item.model_copy(update={field: exposed}))
    return routes, tuple(renamed)


class Catalog:
    """The merged, namespaced catalog and its route table (in memory; rebuilt on every change).

    :param config: the fleet; gives each server's prefix and tool filters.
    """

    def __init__(self, config: HubConfig) -> None:
        self._configs = dict(config.servers)
        self._prefix_owners = {
            prefix: server_id
            for server_id, server in config.servers.items()
            if server.expose and (prefix := server.exposed_prefix(server_id)) is not None
        }
        self._snapshots: dict[str, ServerSnapshot] = {}
        """Live snapshots by connection id (a server_id, or a replica member `<server_id>/<n>`)."""
        self._last_known: dict[str, ServerSnapshot] = {}
        """The last snapshot of each server that has fallbacks, kept while it is down."""
        self._views: dict[str, ServerView] = {}
        self._listeners: list[ChangeListener] = []
        self.tools: tuple[types.Tool, ...] = ()
        self.resources: tuple[types.Resource, ...] = ()
        self.resource_templates: tuple[types.ResourceTemplate, ...] = ()
        self.prompts: tuple[types.Prompt, ...] = ()
        self._tool_routes: dict[str, Route] = {}
        self._prompt_routes: dict[str, Route] = {}
        self._resource_routes: list[Route] = []
        self._template_routes: list[Route] = []
        self._input_schemas: dict[str, dict[str, object]] = {}
        self._exposed_names: dict[tuple[Kind, str, str], str] = {}

    async def reconfigure(self, servers: Mapping[str, ServerConfig]) -> None:
        """Replace the fleet's server entries (hot reload): prefixes and membership change, a
        server no longer listed stops contributing; listeners hear about what changed."""
        self._configs = dict(servers)
        self._prefix_owners = {
            prefix: server_id
            for server_id, server in servers.items()
            if server.expose and (prefix := server.exposed_prefix(server_id)) is not None
        }
        for server_id in [sid for sid in self._snapshots if sid.partition("/")[0] not in self._configs]:
            del self._snapshots[server_id]
        for server_id in [sid for sid in self._last_known if sid not in servers or not servers[sid].fallback]:
            del self._last_known[server_id]
        await self._notify("", self._rebuild())

    def add_listener(self, listener: ChangeListener) -> None:
        """Register a coroutine called after every change with the kinds that changed."""
        self._listeners.append(listener)

    async def set_snapshot(self, server_id: str, snapshot: ServerSnapshot | None) -> None:
        """Replace one server's (or replica member's, `<server_id>/<n>`) contribution (None: it
        contributes nothing) and tell listeners."""
        if snapshot is None:
            self._snapshots.pop(server_id, None)
        else:
            self._snapshots[server_id] = snapshot
            logical = server_id.partition("/")[0]
            if logical in self._configs and self._configs[logical].fallback:
                self._last_known[logical] = snapshot
        await self._notify(server_id, self._rebuild())

    async def _notify(self, server_id: str, changed: frozenset[Kind]) -> None:
        if changed:
            logger.info(
                "catalog changed (%s): %s, %s, %s, %s",
                ", ".join(sorted(changed)),
                counted(len(self.tools), "tool"),
                counted(len(self.resources), "resource"),
                counted(len(self.resource_templates), "resource template"),
                counted(len(self.prompts), "prompt"),
            )
            for listener in list(self._listeners):
                try:
                    await listener(server_id, changed)
                except Exception:
                    logger.exception("a catalog change listener failed")

    def live_snapshot(self, server_id: str) -> ServerSnapshot | None:
        """The snapshot of a logical server: its own, or its first replica member's that is up."""
        if server_id in self._snapshots:
            return self._snapshots[server_id]
        members = sorted(
            (int(index), snap)
            for key, snap in self._snapshots.items()
            for logical, slash, index in [key.partition("/")]
            if slash and logical == server_id and index.isdigit()
        )
        return members[0][1] if members else None

    def _rebuild(self) -> frozenset[Kind]:
        live = {sid: snap for sid in sorted(self._configs) if (snap := self.live_snapshot(sid)) is not None}

        def fallbacks_offering(server_id: str, kind: Kind, original: str) -> tuple[str, ...]:
            return tuple(
                other
                for other in self._configs[server_id].fallback
                if other in live and snapshot_offers(live[other], kind, original)
            )

        served = dict(live)
        for sid, last in self._last_known.items():
            if sid not in live and sid in self._configs:
                served[sid] = _restrict(last, partial(_offered_by_fallback, fallbacks_offering, sid))
        all_views = {sid: _make_view(snap) for sid, snap in sorted(served.items())}
        views = {sid: view for sid, view in all_views.items() if self._configs[sid].expose}
        before = (self.tools, self.resources, self.resource_templates, self.prompts)
        self._tool_routes, self.tools = self._namespace_names("tools", views, lambda v: v.tools)
        self._prompt_routes, self.prompts = self._namespace_names("prompts", views, lambda v: v.prompts)
        self._input_schemas = {tool.name: tool.input_schema for tool in self.tools}
        self._resource_routes, self.resources = _namespace_uris("resources", views, lambda v: v.resources, "uri")
        self._template_routes, self.resource_templates = _namespace_uris(
            "resource_templates", views, lambda v: v.resource_templates, "uri_template"
        )
        self._views = {sid: _make_view(snap) for sid, snap in live.items()}

        def with_fallbacks(route: Route) -> Route:
            if not self._configs[route.server_id].fallback:
                return route
            return replace(route, fallbacks=fallbacks_offering(route.server_id, route.kind, route.original))

        self._tool_routes = {name: with_fallbacks(r) for name, r in self._tool_routes.items()}
        self._prompt_routes = {name: with_fallbacks(r) for name, r in self._prompt_routes.items()}
        self._resource_routes = [with_fallbacks(r) for r in self._resource_routes]
        self._template_routes = [with_fallbacks(r) for r in self._template_routes]
        self._exposed_names = {
            (route.kind, route.server_id, route.original): route.exposed
            for route in (*self._tool_routes.values(), *self._prompt_routes.values())
        }
        after = (self.tools, self.resources, self.resource_templates, self.prompts)
        return frozenset(kind for kind, old, new in zip(KINDS, before, after, strict=True) if old != new)

    def _namespace_names(
        self, kind: Kind, views: dict[str, ServerView], items_of: Callable[[ServerView], tuple[_NamedT, ...]]
    ) -> tuple[dict[str, Route], tuple[_NamedT, ...]]:
        """Routes and renamed definitions for tools or prompts (`<prefix>__<name>`, naming.py)."""
        definitions = {(sid, item.name): item for sid, view in views.items() for item in items_of(view)}
        assignments = assign_names(
            (sid, self._configs[sid].exposed_prefix(sid), [item.name for item in items_of(view)])
            for sid, view in views.items()
        )
        routes = {a.exposed: Route(kind, a.exposed, a.server_id, a.original, a.note) for a in assignments}
        renamed = tuple(
            definitions[(a.server_id, a.original)].model_copy(update={"name": a.exposed}) for a in assignments
        )
        return routes, renamed

    # ---- lookups (the request path: dictionary reads only) ----

    def tool_route(self, exposed: str) -> Route | None:
        """The route of an exposed tool name, or None."""
        return self._tool_routes.get(exposed)

    def prompt_route(self, exposed: str) -> Route | None:
        """The route of an exposed prompt name, or None."""
        return self._prompt_routes.get(exposed)

    def tool_input_schema(self, exposed: str) -> dict[str, object] | None:
        """The input schema of an exposed tool (for the modern era's `Mcp-Param-*` checks)."""
        return self._input_schemas.get(exposed)

    def exposed_name(self, kind: Literal["tools", "prompts"], server_id: str, original: str) -> str | None:
        """The exposed name of a server's tool or prompt (its original name), or None. For a server
        that is listed but contributes no names (`expose: false`) it is the name the tool or
        prompt would have (`<prefix>__<original>`), so policies apply to its own face too."""
        exposed = self._exposed_names.get((kind, server_id, original))
        if exposed is None and server_id in self._views and server_id in self._configs:
            prefix = self._configs[server_id].exposed_prefix(server_id)
            exposed = f"{prefix}{SEPARATOR}{original}" if prefix else original
        return exposed

    def claimed_by(self, exposed: str) -> str | None:
        """The server whose prefix an exposed tool or prompt name starts with, route or not (to
        tell a caller that the server is down rather than that the name is unknown)."""
        prefix, separator, _ = exposed.partition(SEPARATOR)
        return self._prefix_owners.get(prefix) if separator else None

    def resource_owner(self, exposed_uri: str) -> tuple[str, str] | None:
        """`(server_id, original uri)` for an exposed resource URI or URI template, both in RFC
        3986 normal form (`hub.uris.normalize_uri`: every spelling of one URI routes alike), or
        None when its `<server_id>+` part names no configured server."""
        split = split_resource_uri(normalize_uri(exposed_uri))
        if split is None or split[0] not in self._configs:
            return None
        return split

    def routes(self) -> list[Route]:
        """Every route, tools first, each kind in exposed-name order."""
        return [
            *sorted(self._tool_routes.values(), key=lambda r: r.exposed),
            *sorted(self._resource_routes, key=lambda r: r.exposed),
            *sorted(self._template_routes, key=lambda r: r.exposed),
            *sorted(self._prompt_routes.values(), key=lambda r: r.exposed),
        ]

    def server_view(self, server_id: str) -> ServerView:
        """One server's own listing (original names), empty while it is down."""
        return self._views.get(server_id, _EMPTY_VIEW)

    def server_ids(self) -> Iterable[str]:
        return self._configs.keys()
