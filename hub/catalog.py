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

Rebuilds are incremental: each server's snapshot is vetted, named and pin-checked once, into a
`hub.catalog_parts.ServerPart`, and a rebuild merges the parts; only the names are settled
across servers (`hub.naming.merge_names`) and the merged lists re-sorted (a merge of presorted
runs). Pins are stored by `hub.pin_writer`: in the hub, in the background once a burst of
changes settled (a fleet's start-up is one write), never between a listing and its merge.

A server with `expose: false` contributes no names (it only serves as a fallback; its own
`/servers/<server_id>/mcp` view remains). A server with `replicas:` publishes one snapshot per
member (`<server_id>/<n>`); the catalog uses the first member's that is up.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Literal

import anyio
import mcp_types as types

from hub.catalog_parts import NO_STATUSES, Fallbacks, Listed, Preparation, ServerPart, Statuses, make_part, merge_runs
from hub.catalog_routes import (
    EMPTY_VIEW,
    KINDS,
    Kind,
    Route,
    ServerView,
    listing_key,
    snapshot_offers,
    template_matches,
)
from hub.config import HubConfig, ServerEntry
from hub.config.trust import DescriptionsConfig, PinningMode
from hub.logs import counted
from hub.naming import RESERVED_TOOL_NAMES, SEPARATOR, ServerNames, merge_names, split_resource_uri
from hub.pin_fingerprints import Definitions
from hub.pin_status import DefinitionHeld, PinStatus
from hub.pin_writer import PinWriter
from hub.pins import Pins
from hub.servers import ServerSnapshot
from hub.signals import Changes
from hub.uris import normalize_uri
from hub.vetting import VettedSnapshot

__all__ = ["Catalog", "ChangeListener", "Kind", "Route", "ServerView", "listing_key", "snapshot_offers"]

logger = logging.getLogger(__name__)

ChangeListener = Callable[[str, frozenset[Kind]], Awaitable[None]]
"""Called with the server_id whose snapshot changed and the kinds whose merged listing changed."""


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
        self.pin_writer = PinWriter(pins)
        """Stores the pins after changes (`hub.pin_writer`); the hub runs it in the background."""
        self._merge_lock = anyio.Lock()
        self._unmerged: set[str] = set()
        """Servers whose new snapshot no rebuild has merged yet (`set_snapshot`)."""
        self._set_configs(config.servers)
        self._snapshots: dict[str, ServerSnapshot] = {}
        """Live snapshots by connection id (a server_id, or a replica member `<server_id>/<n>`)."""
        self._last_known: dict[str, ServerSnapshot] = {}
        """The last snapshot of every configured (logical) server, kept while it is down."""
        self._prep = Preparation(pins)
        """Per-server work kept between rebuilds: vetting, own names, pin statuses."""
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
        self._parts: dict[str, ServerPart] = {}
        """Each configured server's prepared part (`hub.catalog_parts`)."""
        self._runs: dict[Kind, list[Listed]] = {}
        """The parts' listed runs each merged list was last made from (`merge_runs`)."""
        self._tool_routes: dict[str, Route] = {}
        self._prompt_routes: dict[str, Route] = {}
        self._input_schemas: dict[str, dict[str, object]] = {}

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
        for table in (self._last_known, self._observed):
            for server_id in [sid for sid in table if sid not in servers]:
                del table[server_id]
        self._prep.forget(servers)
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
            if not self.pin_writer.request():
                await self.flush_pins()

    async def refresh(self) -> None:
        """Rebuild after the pins changed (an approval, a new lockfile), tell listeners, and store
        the pins."""
        await self._notify("", self._rebuild())
        await self.flush_pins()

    async def flush_pins(self) -> None:
        """Store the pins now if they changed (`hub.pin_writer.PinWriter.flush`)."""
        await self.pin_writer.flush()

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
        return self._prep.vet(server_id, snapshot, self._descriptions(server_id))

    # ---- the merge ----

    def _rebuild(self) -> frozenset[Kind]:
        """Merge every configured server's part (live snapshot, else last known), observe fresh
        live listings against their pins, and remake the parts whose inputs changed; returns
        the kinds whose listing changed."""
        configs = self._configs
        live = {sid: snap for sid in sorted(configs) if (snap := self.live_snapshot(sid)) is not None}
        self._last_known.update(live)
        known = {sid: self._prepare(sid, self._last_known[sid]) for sid in sorted(configs) if sid in self._last_known}
        statuses: dict[str, Statuses] = {}
        for sid, prepared in known.items():
            if self.pins is not None and sid in live and self._observed.get(sid) is not live[sid]:
                self.pins.observe(sid, self.pinning_mode(sid), prepared.definitions)
                self._observed[sid] = live[sid]
            statuses[sid] = self._prep.statuses(sid, self.pinning_mode(sid), prepared)

        def held(sid: str, kind: Kind, original: str) -> bool:
            status = statuses.get(sid, NO_STATUSES).get((kind, original))
            return status is not None and not status.served

        def fallbacks_of(config: ServerEntry) -> Fallbacks | None:
            if not config.fallback:
                return None

            def offering(kind: Kind, original: str) -> tuple[str, ...]:
                return tuple(
                    other
                    for other in config.fallback
                    if other in live
                    and snapshot_offers(live[other], kind, original)
                    and not held(other, kind, original)
                )

            return offering

        fleet = sorted(configs.items())
        exposed = {sid: prepared for sid, prepared in known.items() if configs[sid].expose}
        names: dict[Kind, dict[str, ServerNames]] = {}
        named_kinds: tuple[tuple[Kind, frozenset[str]], ...] = (
            ("tools", RESERVED_TOOL_NAMES),
            ("prompts", frozenset()),
        )
        for kind, reserved in named_kinds:
            own = [
                (sid, prefix, self._prep.names(sid, kind, prefix, exposed.get(sid)))
                for sid, config in fleet
                for prefix in [config.exposed_prefix(sid)]
            ]
            names[kind] = merge_names(own, reserved)
        self._parts = parts = {
            sid: make_part(
                sid,
                config,
                known.get(sid),
                live=sid in live,
                statuses=statuses.get(sid, NO_STATUSES),
                tool_names=names["tools"][sid],
                prompt_names=names["prompts"][sid],
                fallbacks=fallbacks_of(config),
                previous=self._parts.get(sid),
            )
            for sid, config in fleet
        }
        before = (self.tools, self.resources, self.resource_templates, self.prompts)
        self.tools = merge_runs(self._runs, "tools", parts, self.tools)
        self.resources = merge_runs(self._runs, "resources", parts, self.resources)
        self.resource_templates = merge_runs(self._runs, "resource_templates", parts, self.resource_templates)
        self.prompts = merge_runs(self._runs, "prompts", parts, self.prompts)
        self._tool_routes, self._prompt_routes, self._input_schemas = {}, {}, {}
        for part in parts.values():
            self._tool_routes.update(part.tool_routes)
            self._prompt_routes.update(part.prompt_routes)
            self._input_schemas.update(part.input_schemas)
        self._views = {sid: part.view for sid, part in parts.items() if part.view is not None}
        after = (self.tools, self.resources, self.resource_templates, self.prompts)
        return frozenset(kind for kind, old, new in zip(KINDS, before, after, strict=True) if old is not new)

    # ---- lookups (the request path: dictionary reads only) ----

    def tool_route(self, exposed: str) -> Route | None:
        """The route of an exposed tool name (also a reserved or held one), or None."""
        return self._tool_routes.get(exposed)

    def prompt_route(self, exposed: str) -> Route | None:
        """The route of an exposed prompt name (also a reserved or held one), or None."""
        return self._prompt_routes.get(exposed)

    def route_of(self, kind: str, server_id: str, original: str) -> Route | None:
        """The route of a server's tool, prompt, resource or URI template (original name or URI)."""
        part = self._parts.get(server_id)
        return part.by_original.get((kind, original)) if part is not None else None

    def tool_input_schema(self, exposed: str) -> dict[str, object] | None:
        """The input schema of an exposed tool (for the modern era's `Mcp-Param-*` checks)."""
        return self._input_schemas.get(exposed)

    def pin_status(self, kind: str, server_id: str, original: str) -> PinStatus | None:
        """Where a server's tool, prompt or URI template stands against its pin (None: not pinned)."""
        part = self._parts.get(server_id)
        return part.statuses.get((kind, original)) if part is not None else None

    def hold(self, kind: Kind, server_id: str, original: str, name: str) -> DefinitionHeld | None:
        """The refusal for using a held definition, or None when it may be used. A resource read
        is held when the URI is not a listed resource and every URI template of the server that
        could produce it is held.

        :param name: the name or URI as the caller used it (named in the error).
        """
        if kind == "resources":
            prepared = self._prep.vetted.get(server_id)
            if prepared is None or any(str(r.uri) == original for r in prepared.raw.resources):
                return None
            matching = [
                t.uri_template for t in prepared.raw.resource_templates if template_matches(t.uri_template, original)
            ]
            held = [t for t in matching if self.hold("resource_templates", server_id, t, name) is not None]
            if not matching or len(held) < len(matching):
                return None
            kind, original = "resource_templates", held[0]
        status = self.pin_status(kind, server_id, original)
        if status is None or status.served:
            return None
        return DefinitionHeld(server_id, kind, name, original, status)

    def definitions(self, server_id: str) -> Definitions:
        """A server's tools, prompts and URI templates as last listed (live, else last known):
        `(kind, original) -> (fingerprint, definition as the server sent it)`."""
        prepared = self._prep.vetted.get(server_id)
        return prepared.definitions if prepared is not None else {}

    def exposed_name(self, kind: Literal["tools", "prompts"], server_id: str, original: str) -> str | None:
        """The exposed name of a server's tool or prompt (its original name), or None. For a server
        that is listed but contributes no names (`expose: false`) it is the name the tool or
        prompt would have (`<prefix>__<original>`), so policies apply to its own face too."""
        route = self.route_of(kind, server_id, original)
        exposed = route.exposed if route is not None else None
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
            *sorted((r for part in self._parts.values() for r in part.resource_routes), key=lambda r: r.exposed),
            *sorted((r for part in self._parts.values() for r in part.template_routes), key=lambda r: r.exposed),
            *sorted(self._prompt_routes.values(), key=lambda r: r.exposed),
        ]

    def server_view(self, server_id: str) -> ServerView:
        """One server's own listing (original names, cleaned, held definitions left out), empty
        while it is down."""
        return self._views.get(server_id, EMPTY_VIEW)

    def server_ids(self) -> Iterable[str]:
        return self._configs.keys()

    def server_config(self, server_id: str) -> ServerEntry:
        """A configured server's entry.

        :raises KeyError: `server_id` is not configured.
        """
        return self._configs[server_id]
