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

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import mcp_types as types

from hub.catalog_routes import Kind, Renamed, Route, ServerView, sorted_listing
from hub.config import ServerConfig
from hub.naming import ServerNames, exposed_resource_uri
from hub.pins import Pins, PinStatus
from hub.trust_config import PinningMode
from hub.vetting import VettedSnapshot

__all__ = ["Fallbacks", "Listed", "ServerPart", "Statuses", "make_part", "pin_statuses"]

Statuses = Mapping[tuple[str, str], PinStatus]
"""One server's pin statuses: `(kind, original) -> PinStatus` (definitions with a status only)."""

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


def make_part(
    server_id: str,
    config: ServerConfig,
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
                if made.listed:
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
                if made.listed:
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
