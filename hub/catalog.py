"""The catalog: every ready server's tools, resources, resource templates and prompts, merged
under exposed names, with the route table that maps each exposed name back to its owner.

Each server contributes a `ServerSnapshot` (its full listing, original names); the catalog
rebuilds the merged view whenever one changes and tells its listeners which kinds changed, so
the endpoint can send `notifications/*/list_changed` (handshake era) or publish a
`subscriptions/listen` event (modern era).

Names belong to configured servers, not to live ones: the catalog remembers each server's last
known snapshot (a replica group's too) and assigns exposed names over the whole configured fleet
(live snapshot, else last known; `hub.naming`), so a server that is down, restarting or failed
keeps its names. Its routes stay in the route table, *reserved* (`Route.served` is False): a
call gets "server X is down" (-32000) from the router, or is served by the server's fallback
chain, and never reaches another server's tool. Listings keep showing only what can be served:
a down server's tools, resources, templates and prompts are listed only where a ready fallback
offers the same original. A server removed from the config loses its names at once.

Each snapshot also passes through description hygiene (`hub.hygiene`: what is listed is
cleaned; notes go on the route) and tool-definition pinning (`hub.pins`: each live listing is
observed; a held definition keeps its route but is not listed, and `hold()` says so).

Every list the catalog serves (`tools`, `resources`, `resource_templates`, `prompts`, and each
server's view) is kept in listing-key order (`listing_key`: name, URI or URI template, code point
order), rebuilt with each change, so that a page after a keyset cursor is a bisect (`hub.pages`).

A server with `expose: false` contributes no names (it only serves as a fallback; its own
`/servers/<server_id>/mcp` view remains). A server with `replicas:` publishes one snapshot per
member (`<server_id>/<n>`); the catalog uses the first member's that is up.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Literal, TypeVar

import anyio
import mcp_types as types

from hub.config import HubConfig, ServerEntry
from hub.config.trust import DescriptionsConfig, PinningMode
from hub.logs import counted
from hub.naming import RESERVED_TOOL_NAMES, SEPARATOR, assign_names, exposed_resource_uri, split_resource_uri
from hub.pins import DefinitionHeld, Definitions, Pins, PinStatus
from hub.servers import ServerSnapshot
from hub.signals import Changes
from hub.uris import normalize_uri
from hub.vetting import VettedSnapshot, vet

__all__ = ["Catalog", "ChangeListener", "Kind", "Route", "ServerView", "listing_key", "snapshot_offers"]

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
    served: bool = True
    """Whether a server can answer it now: its own server is up, or a fallback offers it. False:
    the route is reserved for its server while that server is down (not listed; a call gets
    "server down", -32000)."""
    pin: PinStatus | None = None
    """The definition's standing against its pin or the lockfile (None: `pinning: off`, or a
    resource, which is not pinned)."""
    hygiene: tuple[str, ...] = ()
    """What description hygiene found or did (e.g. `description: stripped 3 invisible characters
    (zero-width)`)."""

    @property
    def held(self) -> bool:
        """Whether pinning holds the definition (hidden, refused until approved)."""
        return self.pin is not None and not self.pin.served

    @property
    def listed(self) -> bool:
        """Whether the route appears in lists: served and not held."""
        return self.served and not self.held

    def notes(self) -> list[str]:
        """Every note for people: naming, reservation, pin and hygiene."""
        notes = [self.note] if self.note else []
        if not self.served:
            notes.append(f"reserved for server {self.server_id} while it is down")
        pin_note = self.pin.note() if self.pin is not None else None
        if pin_note:
            notes.append(pin_note)
        return [*notes, *self.hygiene]


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


_NamedT = TypeVar("_NamedT", types.Tool, types.Prompt)
_UriT = TypeVar("_UriT", types.Resource, types.ResourceTemplate)
_ListedT = TypeVar("_ListedT", types.Tool, types.Prompt, types.Resource, types.ResourceTemplate)


def listing_key(item: types.Tool | types.Prompt | types.Resource | types.ResourceTemplate) -> str:
    """What a listed definition is identified and ordered by: a tool's or prompt's name, a
    resource's URI, a resource template's URI template (as the list shows it)."""
    if isinstance(item, types.Resource):
        return item.uri
    if isinstance(item, types.ResourceTemplate):
        return item.uri_template
    return item.name


def _sorted(items: Iterable[_ListedT]) -> tuple[_ListedT, ...]:
    """`items` in listing-key order (code point order of `listing_key`): the order of every list
    the catalog serves, so that a page after a keyset cursor is a bisect (`hub.pages`)."""
    return tuple(sorted(items, key=listing_key))


class _Renamed:
    """Renamed copies of definitions (exposed name, or exposed URI or URI template), kept from
    one rebuild to the next while a server's definition object and its exposed name stay the
    same: a change of one server then copies only its own definitions, not the whole catalog
    (10,000 tools: ~0.2 s per change otherwise), and the definitions that stay keep their
    identity, which the caches of `hub.pages` and `hub.prepared_lists` are keyed by."""

    def __init__(self) -> None:
        self._copies: dict[tuple[int, str, str], tuple[object, object]] = {}
        self._used: dict[tuple[int, str, str], tuple[object, object]] = {}

    def __call__(self, item: _ListedT, field_name: str, exposed: str) -> _ListedT:
        key = (id(item), field_name, exposed)
        kept = self._copies.get(key)
        if kept is not None and kept[0] is item:  # the entry holds `item`, so its id is not reused
            copy: _ListedT = kept[1]  # type: ignore[assignment]
        else:
            copy = item.model_copy(update={field_name: exposed})
        self._used[key] = (item, copy)
        return copy

    def settle(self) -> None:
        """Keep only the copies the rebuild that just ended used."""
        self._copies, self._used = self._used, {}


def _not_held(held: Callable[[str, Kind, str], bool], server_id: str, kind: Kind, original: str) -> bool:
    return not held(server_id, kind, original)


def _make_view(snapshot: ServerSnapshot, listed: Callable[[Kind, str], bool]) -> ServerView:
    """A server's own view, each list in listing-key order: what `listed` accepts is listed; every
    tool and prompt name resolves (a held one is then refused with its pin)."""
    tools = _sorted(t for t in snapshot.tools if listed("tools", t.name))
    return ServerView(
        tools=tools,
        resources=_sorted(r for r in snapshot.resources if listed("resources", str(r.uri))),
        resource_templates=_sorted(
            t for t in snapshot.resource_templates if listed("resource_templates", t.uri_template)
        ),
        prompts=_sorted(p for p in snapshot.prompts if listed("prompts", p.name)),
        tool_names=frozenset(tool.name for tool in snapshot.tools),
        prompt_names=frozenset(prompt.name for prompt in snapshot.prompts),
        input_schemas={tool.name: tool.input_schema for tool in tools},
    )


class Catalog:
    """The merged, namespaced catalog and its route table (in memory; rebuilt on every change).

    :param config: the fleet: each server's prefix, tool filters, `pinning` and `descriptions`
        (the hub-wide `pinning` and `descriptions` are read once, here).
    :param pins: the pin state (`hub.pins`); None: nothing is pinned or held.
    """

    def __init__(self, config: HubConfig, pins: Pins | None = None) -> None:
        self._pinning_default: PinningMode = config.pinning
        self._descriptions_default = config.descriptions
        self.pins = pins
        self._flush_lock = anyio.Lock()
        self._merge_lock = anyio.Lock()
        self._unmerged: set[str] = set()
        """Servers whose new snapshot no rebuild has merged yet (`set_snapshot`)."""
        self._set_configs(config.servers)
        self._snapshots: dict[str, ServerSnapshot] = {}
        """Live snapshots by connection id (a server_id, or a replica member `<server_id>/<n>`)."""
        self._last_known: dict[str, ServerSnapshot] = {}
        """The last snapshot of every configured (logical) server, kept while it is down."""
        self._prepared: dict[str, VettedSnapshot] = {}
        self._observed: dict[str, ServerSnapshot] = {}
        """The live snapshot each server's pins were last checked against."""
        self._views: dict[str, ServerView] = {}
        self._listeners: list[ChangeListener] = []
        self.changes = Changes()
        """Notified after every rebuild (a snapshot, a reload, pins), once its listeners were told:
        `await catalog.changes.wait_for(lambda: catalog.tool_route(name) is not None)`."""
        self.tools: tuple[types.Tool, ...] = ()
        self.resources: tuple[types.Resource, ...] = ()
        self.resource_templates: tuple[types.ResourceTemplate, ...] = ()
        self.prompts: tuple[types.Prompt, ...] = ()
        self._tool_routes: dict[str, Route] = {}
        self._prompt_routes: dict[str, Route] = {}
        self._resource_routes: list[Route] = []
        self._template_routes: list[Route] = []
        self._by_original: dict[tuple[str, str, str], Route] = {}
        self._statuses: dict[tuple[str, str, str], PinStatus] = {}
        self._input_schemas: dict[str, dict[str, object]] = {}
        self._exposed_names: dict[tuple[Kind, str, str], str] = {}
        self._renamed = _Renamed()

    def _set_configs(self, servers: Mapping[str, ServerEntry]) -> None:
        self._configs = dict(servers)
        self._prefix_owners = {
            prefix: server_id
            for server_id, server in servers.items()
            if server.expose and (prefix := server.exposed_prefix(server_id)) is not None
        }

    async def reconfigure(self, servers: Mapping[str, ServerEntry]) -> None:
        """Replace the fleet's server entries (hot reload): prefixes and membership change, a
        server no longer listed stops contributing and loses its names (reserved ones too);
        listeners hear about what changed."""
        self._set_configs(servers)
        for server_id in [sid for sid in self._snapshots if sid.partition("/")[0] not in self._configs]:
            del self._snapshots[server_id]
        for table in (self._last_known, self._prepared, self._observed):
            for server_id in [sid for sid in table if sid not in servers]:
                del table[server_id]
        await self._notify("", self._rebuild())
        await self.flush_pins()

    def add_listener(self, listener: ChangeListener) -> None:
        """Register a coroutine called after every change with the kinds that changed."""
        self._listeners.append(listener)

    async def set_snapshot(self, server_id: str, snapshot: ServerSnapshot | None) -> None:
        """Replace one server's (or replica member's, `<server_id>/<n>`) live contribution (None:
        it is down; its last known snapshot keeps its names reserved) and tell listeners."""
        if snapshot is None:
            if server_id not in self._snapshots:
                return  # it was not contributing: nothing changes
            self._snapshots.pop(server_id, None)
        else:
            self._snapshots[server_id] = snapshot
        # Snapshots that arrive while an earlier change is still being told or stored (a fleet
        # starting) are merged by one rebuild: each rebuild costs the whole catalog (10,000
        # tools: ~0.1-0.2 s), so one per server would queue up behind each other.
        self._unmerged.add(server_id)
        async with self._merge_lock:
            if server_id not in self._unmerged:
                return  # merged (and told) by the rebuild of a snapshot that came meanwhile
            merged, self._unmerged = self._unmerged, set()
            changed = self._rebuild()
            for merged_id in sorted(merged):
                await self._notify(merged_id, changed)
            await self.flush_pins()

    async def refresh(self) -> None:
        """Rebuild after the pins changed (an approval, a new lockfile), tell listeners, and store
        the pins."""
        await self._notify("", self._rebuild())
        await self.flush_pins()

    async def flush_pins(self) -> None:
        """Store the pins if they changed (in a worker thread; one write at a time). A failed
        write is logged and retried with the next change."""
        if self.pins is None or not self.pins.dirty:
            return
        async with self._flush_lock:
            document = self.pins.take_document()
            if document is None:
                return
            try:
                await anyio.to_thread.run_sync(self.pins.store.save, document)
            except OSError as exc:
                self.pins.dirty = True
                logger.error("pins could not be stored (%s); kept in memory, stored with the next change", exc)

    async def _notify(self, server_id: str, changed: frozenset[Kind]) -> None:
        try:
            await self._tell_listeners(server_id, changed)
        finally:
            self.changes.notify()

    async def _tell_listeners(self, server_id: str, changed: frozenset[Kind]) -> None:
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

    # ---- trust settings ----

    def pinning_mode(self, server_id: str) -> PinningMode:
        """A server's `pinning` (its own, else the hub-wide one; `off` without pins)."""
        if self.pins is None:
            return "off"
        config = self._configs.get(server_id)
        own = config.pinning if config is not None else None
        return own if own is not None else self._pinning_default

    def _descriptions(self, server_id: str) -> DescriptionsConfig:
        own = self._configs[server_id].descriptions
        if own is None:
            return self._descriptions_default
        return self._descriptions_default.model_copy(update=own.model_dump(exclude_none=True))

    def _prepare(self, server_id: str, snapshot: ServerSnapshot) -> VettedSnapshot:
        settings = self._descriptions(server_id)
        prepared = self._prepared.get(server_id)
        if prepared is None or prepared.raw is not snapshot or prepared.settings != settings:
            prepared = self._prepared[server_id] = vet(snapshot, settings)
        return prepared

    # ---- the merge ----

    def _rebuild(self) -> frozenset[Kind]:
        """Merge every configured server's snapshot (live, else last known), observe fresh live
        listings against their pins, and rebuild routes, listings and views; returns the kinds
        whose listing changed."""
        configs = self._configs
        live = {sid: snap for sid in sorted(configs) if (snap := self.live_snapshot(sid)) is not None}
        self._last_known.update(live)
        known = {sid: self._prepare(sid, self._last_known[sid]) for sid in sorted(configs) if sid in self._last_known}
        statuses: dict[tuple[str, str, str], PinStatus] = {}
        if self.pins is not None:
            for sid, prepared in known.items():
                mode = self.pinning_mode(sid)
                if sid in live and self._observed.get(sid) is not live[sid]:
                    self.pins.observe(sid, mode, prepared.definitions)
                    self._observed[sid] = live[sid]
                for (kind, original), (fp, _definition) in prepared.definitions.items():
                    status = self.pins.status(sid, mode, kind, original, fp)
                    if status is not None:
                        statuses[(sid, kind, original)] = status
        self._statuses = statuses

        def held(sid: str, kind: Kind, original: str) -> bool:
            status = statuses.get((sid, kind, original))
            return status is not None and not status.served

        def fallbacks_offering(sid: str, kind: Kind, original: str) -> tuple[str, ...]:
            return tuple(
                other
                for other in configs[sid].fallback
                if other in live and snapshot_offers(live[other], kind, original) and not held(other, kind, original)
            )

        def route(kind: Kind, exposed: str, sid: str, original: str, note: str | None = None) -> Route:
            fallbacks = fallbacks_offering(sid, kind, original) if configs[sid].fallback else ()
            return Route(
                kind,
                exposed,
                sid,
                original,
                note,
                fallbacks=fallbacks,
                served=sid in live or bool(fallbacks),
                pin=statuses.get((sid, kind, original)),
                hygiene=known[sid].notes.get((kind, original), ()),
            )

        exposed = {sid: prepared.clean for sid, prepared in known.items() if configs[sid].expose}
        before = (self.tools, self.resources, self.resource_templates, self.prompts)
        self._tool_routes, self.tools = self._namespace_names("tools", exposed, route, lambda s: s.tools)
        self._prompt_routes, self.prompts = self._namespace_names("prompts", exposed, route, lambda s: s.prompts)
        self._input_schemas = {tool.name: tool.input_schema for tool in self.tools}
        self._resource_routes, self.resources = _namespace_uris(
            "resources", exposed, route, lambda s: s.resources, self._renamed
        )
        self._template_routes, self.resource_templates = _namespace_uris(
            "resource_templates", exposed, route, lambda s: s.resource_templates, self._renamed
        )
        self._renamed.settle()
        self._views = {sid: _make_view(known[sid].clean, partial(_not_held, held, sid)) for sid in live}
        every = (*self._tool_routes.values(), *self._prompt_routes.values(), *self._resource_routes)
        self._by_original = {(r.kind, r.server_id, r.original): r for r in (*every, *self._template_routes)}
        self._exposed_names = {
            (r.kind, r.server_id, r.original): r.exposed
            for r in (*self._tool_routes.values(), *self._prompt_routes.values())
        }
        after = (self.tools, self.resources, self.resource_templates, self.prompts)
        return frozenset(kind for kind, old, new in zip(KINDS, before, after, strict=True) if old != new)

    def _namespace_names(
        self,
        kind: Literal["tools", "prompts"],
        snapshots: dict[str, ServerSnapshot],
        route: Callable[[Kind, str, str, str, str | None], Route],
        items_of: Callable[[ServerSnapshot], tuple[_NamedT, ...]],
    ) -> tuple[dict[str, Route], tuple[_NamedT, ...]]:
        """Routes and listed (renamed) definitions for tools or prompts (`<prefix>__<name>`,
        naming.py; listed in exposed-name order), named over every configured server (so each
        keeps its namespaces)."""
        definitions = {(sid, item.name): item for sid, snap in snapshots.items() for item in items_of(snap)}
        assignments = assign_names(
            [
                (
                    sid,
                    config.exposed_prefix(sid),
                    [item.name for item in items_of(snapshots[sid])] if sid in snapshots else [],
                )
                for sid, config in sorted(self._configs.items())
            ],
            RESERVED_TOOL_NAMES if kind == "tools" else frozenset(),
        )
        routes: dict[str, Route] = {}
        listed: list[_NamedT] = []
        for a in assignments:
            routes[a.exposed] = made = route(kind, a.exposed, a.server_id, a.original, a.note)
            if made.listed:
                listed.append(self._renamed(definitions[(a.server_id, a.original)], "name", a.exposed))
        return routes, _sorted(listed)

    # ---- lookups (the request path: dictionary reads only) ----

    def tool_route(self, exposed: str) -> Route | None:
        """The route of an exposed tool name (also a reserved or held one), or None."""
        return self._tool_routes.get(exposed)

    def prompt_route(self, exposed: str) -> Route | None:
        """The route of an exposed prompt name (also a reserved or held one), or None."""
        return self._prompt_routes.get(exposed)

    def route_of(self, kind: str, server_id: str, original: str) -> Route | None:
        """The route of a server's tool, prompt, resource or URI template (original name or URI)."""
        return self._by_original.get((kind, server_id, original))

    def tool_input_schema(self, exposed: str) -> dict[str, object] | None:
        """The input schema of an exposed tool (for the modern era's `Mcp-Param-*` checks)."""
        return self._input_schemas.get(exposed)

    def pin_status(self, kind: str, server_id: str, original: str) -> PinStatus | None:
        """Where a server's tool, prompt or URI template stands against its pin (None: not pinned)."""
        return self._statuses.get((server_id, kind, original))

    def hold(self, kind: Kind, server_id: str, original: str, name: str) -> DefinitionHeld | None:
        """The refusal for using a held definition, or None when it may be used. A resource read
        is held when the URI is not a listed resource and every URI template of the server that
        could produce it is held.

        :param name: the name or URI as the caller used it (named in the error).
        """
        if kind == "resources":
            prepared = self._prepared.get(server_id)
            if prepared is None or any(str(r.uri) == original for r in prepared.raw.resources):
                return None
            matching = [
                t.uri_template for t in prepared.raw.resource_templates if _template_matches(t.uri_template, original)
            ]
            held = [t for t in matching if self.hold("resource_templates", server_id, t, name) is not None]
            if not matching or len(held) < len(matching):
                return None
            kind, original = "resource_templates", held[0]
        status = self._statuses.get((server_id, kind, original))
        if status is None or status.served:
            return None
        return DefinitionHeld(server_id, kind, name, original, status)

    def definitions(self, server_id: str) -> Definitions:
        """A server's tools, prompts and URI templates as last listed (live, else last known):
        `(kind, original) -> (fingerprint, definition as the server sent it)`."""
        prepared = self._prepared.get(server_id)
        return prepared.definitions if prepared is not None else {}

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
        """Every route (reserved and held ones too), tools first, each kind in exposed-name order."""
        return [
            *sorted(self._tool_routes.values(), key=lambda r: r.exposed),
            *sorted(self._resource_routes, key=lambda r: r.exposed),
            *sorted(self._template_routes, key=lambda r: r.exposed),
            *sorted(self._prompt_routes.values(), key=lambda r: r.exposed),
        ]

    def server_view(self, server_id: str) -> ServerView:
        """One server's own listing (original names, cleaned, held definitions left out), empty
        while it is down."""
        return self._views.get(server_id, _EMPTY_VIEW)

    def server_ids(self) -> Iterable[str]:
        return self._configs.keys()

    def server_config(self, server_id: str) -> ServerEntry:
        """A configured server's entry.

        :raises KeyError: `server_id` is not configured.
        """
        return self._configs[server_id]


def _namespace_uris(
    kind: Literal["resources", "resource_templates"],
    snapshots: dict[str, ServerSnapshot],
    route: Callable[[Kind, str, str, str, str | None], Route],
    items_of: Callable[[ServerSnapshot], tuple[_UriT, ...]],
    renamed: _Renamed,
) -> tuple[list[Route], tuple[_UriT, ...]]:
    """Routes and listed (re-addressed) definitions for resources or templates (`<server_id>+<uri>`;
    listed in exposed-URI order)."""
    field_name = "uri" if kind == "resources" else "uri_template"
    routes: list[Route] = []
    listed: list[_UriT] = []
    for server_id, snapshot in snapshots.items():
        for item in items_of(snapshot):
            original: str = str(getattr(item, field_name))
            exposed = exposed_resource_uri(server_id, original)
            routes.append(made := route(kind, exposed, server_id, original, None))
            if made.listed:
                listed.append(renamed(item, field_name, exposed))
    return routes, _sorted(listed)
