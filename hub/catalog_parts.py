"""One server's part of the catalog, prepared once per change of that server (pure, no I/O).

A catalog rebuild used to re-vet, re-name, re-check pins and re-route every server's
definitions whenever any one server changed (10,000 tools: ~0.5 s of CPU per change on the event
loop, once per server as a fleet starts). Now each configured server has a `ServerPart`: its
routes, its listed (renamed, cleaned) definitions in listing-key order, its own view and its
lookups, made from

- its vetted snapshot (`hub.vetting`: hygiene and fingerprints, once per snapshot),
- its pin statuses (`pin_statuses`, checked again only when the snapshot, the server's
  `pinning` mode or its pins changed: `hub.pins.Pins.revision`),
- its final exposed names (`hub.naming.server_names` once per snapshot and prefix, then
  `hub.naming.merge_names` across servers: the only cross-server step),
- whether it is live, and its config entry.

`make_part` is given the previous part and returns it unchanged when none of these changed
(compared by identity), so a change of one server rebuilds one part; the catalog then merges the
parts (`hub.catalog`). A server with `fallback:` is the exception: whether its routes are served
depends on its fallbacks' listings, so its part is made anew at every rebuild.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import mcp_types as types

from hub.catalog_routes import Kind, Renamed, Route, ServerView, sorted_listing
from hub.config import ServerEntry
from hub.config.trust import DescriptionsConfig, PinningMode
from hub.naming import ServerNames, exposed_resource_uri, server_names
from hub.pin_status import PinStatus
from hub.pins import Pins
from hub.servers import ServerSnapshot
from hub.vetting import VettedSnapshot, vet

__all__ = [
    "NO_NAMES",
    "NO_STATUSES",
    "Fallbacks",
    "Listed",
    "Preparation",
    "ServerPart",
    "Statuses",
    "make_part",
    "merge_runs",
    "pin_statuses",
]

Statuses = Mapping[tuple[str, str], PinStatus]
"""One server's pin statuses: `(kind, original) -> PinStatus` (definitions with a status only)."""

NO_STATUSES: Statuses = {}
NO_NAMES: ServerNames = {}

Listed = tuple[tuple[str, Any], ...]
"""Listed definitions of one kind as `(listing key, definition)`, in listing-key order."""

Fallbacks = Callable[[Kind, str], tuple[str, ...]]
"""`(kind, original) -> the server's configured fallbacks that offer it now`, in order."""


@dataclass(frozen=True, slots=True)
class ServerPart:
    """One configured server's contribution to the catalog (module docstring)."""

    inputs: tuple[object, ...]
    """What the part was made from (compared by identity): vetted snapshot, live flag, statuses,
    tool names, prompt names, config entry."""
    tool_routes: dict[str, Route] = field(default_factory=dict)
    """Exposed tool name -> route (reserved and held ones too)."""
    prompt_routes: dict[str, Route] = field(default_factory=dict)
    resource_routes: tuple[Route, ...] = ()
    template_routes: tuple[Route, ...] = ()
    listed: Mapping[Kind, Listed] = field(default_factory=dict)
    """What the merged lists show of this server, by kind."""
    by_original: dict[tuple[str, str], Route] = field(default_factory=dict)
    """`(kind, original) -> route`, every kind."""
    input_schemas: dict[str, dict[str, object]] = field(default_factory=dict)
    """Exposed name -> input schema of each listed tool."""
    view: ServerView | None = None
    """The server's own view (None: it is not live)."""
    statuses: Statuses = field(default_factory=dict)
    renamed: Renamed = field(default_factory=Renamed)

    def route_of(self, kind: str, original: str) -> Route | None:
        return self.by_original.get((kind, original))


def pin_statuses(pins: Pins | None, server_id: str, mode: PinningMode, vetted: VettedSnapshot) -> Statuses:
    """Where each of a server's tools, prompts and URI templates stands against its pin (empty
    with `pinning: off` or without pins)."""
    if pins is None or mode == "off":
        return {}
    statuses: dict[tuple[str, str], PinStatus] = {}
    for (kind, original), (fp, _definition) in vetted.definitions.items():
        status = pins.status(server_id, mode, kind, original, fp)
        if status is not None:
            statuses[(kind, original)] = status
    return statuses


class Preparation:
    """The per-server work done once per listing and kept between rebuilds: the vetted snapshot
    (`hub.vetting`), the server's own tool and prompt names (`hub.naming.server_names`) and its
    pin statuses (`pin_statuses`, checked again only when the snapshot, the mode or the server's
    pins changed: `hub.pins.Pins.revision`).

    :param pins: the pin state; None: nothing is pinned.
    """

    def __init__(self, pins: Pins | None) -> None:
        self._pins = pins
        self.vetted: dict[str, VettedSnapshot] = {}
        """Each configured server's last vetted snapshot (live, else last known)."""
        self._names: dict[tuple[str, str], tuple[object, str | None, ServerNames]] = {}
        self._checked: dict[str, tuple[VettedSnapshot, PinningMode, tuple[int, int], Statuses]] = {}

    def vet(self, server_id: str, snapshot: ServerSnapshot, settings: DescriptionsConfig) -> VettedSnapshot:
        """`snapshot` vetted with `settings` (`hub.vetting.vet`), once per snapshot and settings."""
        vetted = self.vetted.get(server_id)
        if vetted is None or vetted.raw is not snapshot or vetted.settings != settings:
            vetted = self.vetted[server_id] = vet(snapshot, settings)
        return vetted

    def statuses(self, server_id: str, mode: PinningMode, vetted: VettedSnapshot) -> Statuses:
        """The server's pin statuses (the same object while nothing they depend on changed)."""
        if self._pins is None or mode == "off":
            return NO_STATUSES
        revision = self._pins.revision(server_id)
        checked = self._checked.get(server_id)
        if checked is not None and checked[0] is vetted and checked[1] == mode and checked[2] == revision:
            return checked[3]
        statuses = pin_statuses(self._pins, server_id, mode, vetted) or NO_STATUSES
        self._checked[server_id] = (vetted, mode, revision, statuses)
        return statuses

    def names(self, server_id: str, kind: str, prefix: str | None, vetted: VettedSnapshot | None) -> ServerNames:
        """The server's own tool or prompt names under `prefix` (None: it contributes none)."""
        if vetted is None:
            return NO_NAMES
        clean = vetted.clean
        named = self._names.get((server_id, kind))
        if named is not None and named[0] is clean and named[1] == prefix:
            return named[2]
        items = clean.tools if kind == "tools" else clean.prompts
        names = server_names(server_id, prefix, [item.name for item in items]) or NO_NAMES
        self._names[(server_id, kind)] = (clean, prefix, names)
        return names

    def forget(self, configured: Container[str]) -> None:
        """Drop what is kept for servers no longer configured."""
        self.vetted = {sid: vetted for sid, vetted in self.vetted.items() if sid in configured}
        self._checked = {sid: checked for sid, checked in self._checked.items() if sid in configured}
        self._names = {key: named for key, named in self._names.items() if key[0] in configured}


def merge_runs(
    runs_of: dict[Kind, list[Listed]], kind: Kind, parts: Mapping[str, ServerPart], old: tuple[Any, ...]
) -> tuple[Any, ...]:
    """One merged list in listing-key order, from the parts' presorted runs of `kind` (a sort of
    presorted runs: Timsort merges them): `old` itself when no part's run changed since the
    last merge (`runs_of` keeps the runs each list was made from) or when the merge equals it."""
    runs = [part.listed.get(kind, ()) for part in parts.values()]
    previous = runs_of.get(kind)
    if previous is not None and len(previous) == len(runs) and all(a is b for a, b in zip(previous, runs, strict=True)):
        return old
    runs_of[kind] = runs
    merged = tuple(item for _key, item in sorted(chain.from_iterable(runs), key=_first))
    return old if merged == old else merged


def make_part(
    server_id: str,
    config: ServerEntry,
    vetted: VettedSnapshot | None,
    *,
    live: bool,
    statuses: Statuses,
    tool_names: ServerNames,
    prompt_names: ServerNames,
    fallbacks: Fallbacks | None,
    previous: ServerPart | None,
) -> ServerPart:
    """A server's part (module docstring): `previous` itself when it was made from the same
    inputs, else a new one (reusing `previous`'s renamed copies).

    :param vetted: its live snapshot, else its last known one (None: never listed).
    :param live: whether it is up (a part that is not live is reserved: its routes are not
        served, unless a fallback offers them, and it has no view).
    :param fallbacks: which fallbacks offer a definition now (None: it has no `fallback:`).
    """
    inputs = (vetted, live, statuses, tool_names, prompt_names, config)
    if (
        fallbacks is None
        and previous is not None
        and len(previous.inputs) == len(inputs)
        and all(a is b for a, b in zip(previous.inputs, inputs, strict=True))
    ):
        return previous
    if vetted is None:
        return ServerPart(inputs=inputs)
    renamed = Renamed(previous.renamed if previous is not None else None)
    notes = vetted.notes

    def route(kind: Kind, exposed: str, original: str, note: str | None = None) -> Route:
        offered = fallbacks(kind, original) if fallbacks is not None else ()
        return Route(
            kind,
            exposed,
            server_id,
            original,
            note,
            fallbacks=offered,
            served=live or bool(offered),
            pin=statuses.get((kind, original)),
            hygiene=notes.get((kind, original), ()),
        )

    clean = vetted.clean
    by_original: dict[tuple[str, str], Route] = {}
    listed: dict[Kind, Listed] = {}
    tool_routes: dict[str, Route] = {}
    prompt_routes: dict[str, Route] = {}
    uri_routes: dict[Kind, tuple[Route, ...]] = {}
    if config.expose:
        named: tuple[tuple[Kind, dict[str, Route], ServerNames, tuple[Any, ...]], ...] = (
            ("tools", tool_routes, tool_names, clean.tools),
            ("prompts", prompt_routes, prompt_names, clean.prompts),
        )
        for kind, routes, names, items in named:
            definitions = {item.name: item for item in items}
            shown: list[tuple[str, Any]] = []
            for original, (exposed, note) in names.items():
                routes[exposed] = made = by_original[(kind, original)] = route(kind, exposed, original, note)
                if made.served and (made.pin is None or made.pin.state != "held"):  # `made.listed`, inlined
                    shown.append((exposed, renamed(definitions[original], "name", exposed)))
            listed[kind] = tuple(sorted(shown, key=_first))
        uri_kinds: tuple[tuple[Kind, str, tuple[Any, ...]], ...] = (
            ("resources", "uri", clean.resources),
            ("resource_templates", "uri_template", clean.resource_templates),
        )
        for kind, field_name, items in uri_kinds:
            routes_of_kind: list[Route] = []
            shown = []
            for item in items:
                original = str(getattr(item, field_name))
                exposed = exposed_resource_uri(server_id, original)
                routes_of_kind.append(made := route(kind, exposed, original))
                by_original[(kind, original)] = made
                if made.served and (made.pin is None or made.pin.state != "held"):  # `made.listed`, inlined
                    shown.append((exposed, renamed(item, field_name, exposed)))
            uri_routes[kind] = tuple(routes_of_kind)
            listed[kind] = tuple(sorted(shown, key=_first))
    tool_listed: Listed = listed.get("tools", ())
    return ServerPart(
        inputs=inputs,
        tool_routes=tool_routes,
        prompt_routes=prompt_routes,
        resource_routes=uri_routes.get("resources", ()),
        template_routes=uri_routes.get("resource_templates", ()),
        listed=listed,
        by_original=by_original,
        input_schemas={exposed: tool.input_schema for exposed, tool in tool_listed},
        view=_make_view(vetted, statuses) if live else None,
        statuses=statuses,
        renamed=renamed,
    )


def _first(pair: tuple[str, Any]) -> str:
    return pair[0]


def _make_view(vetted: VettedSnapshot, statuses: Statuses) -> ServerView:
    """A server's own view, each list in listing-key order: what pinning does not hold is
    listed; every tool and prompt name resolves (a held one is then refused with its pin)."""

    def listed(kind: str, original: str) -> bool:
        status = statuses.get((kind, original))
        return status is None or status.served

    snapshot = vetted.clean
    tools: tuple[types.Tool, ...] = sorted_listing(t for t in snapshot.tools if listed("tools", t.name))
    return ServerView(
        tools=tools,
        resources=sorted_listing(r for r in snapshot.resources if listed("resources", str(r.uri))),
        resource_templates=sorted_listing(
            t for t in snapshot.resource_templates if listed("resource_templates", t.uri_template)
        ),
        prompts=sorted_listing(p for p in snapshot.prompts if listed("prompts", p.name)),
        tool_names=frozenset(tool.name for tool in snapshot.tools),
        prompt_names=frozenset(prompt.name for prompt in snapshot.prompts),
        input_schemas={tool.name: tool.input_schema for tool in tools},
    )
