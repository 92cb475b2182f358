"""Prepared list pages: a face's `tools/list`, `resources/list`, `resources/templates/list` and
`prompts/list` pages cut and serialized once per catalog change and policy view, not per request.

A list request used to filter the whole catalog by policy, cut its page (`hub.pages.page_of`)
and have the SDK dump every definition model and validate the dump again against the
protocol version's result schema (`mcp_types.methods.serialize_server_result`, the "sieve"): for
10,000 tools about 15 ms of CPU per 500-tool page. Here each list is prepared:

- **Per policy view.** Principals the same `policies:` rule decides for see the same routes
  (`hub.policy.Policy.view_of`), so they share one filtered list and its pages; a principal no
  policy restricts sees the full view. A view is filtered with the face's own `route_key` and
  `Access.visible`, as the unprepared path did.
- **Cut as `hub.pages` cuts it.** A view's pages are the pages `page_of` gives when walked from
  the start, so items and cursors are exactly the same; a cursor that starts elsewhere (a
  catalog change moved the page boundaries, or a hand-made cursor) gets its page from
  `page_of` on the view, unprepared and not kept. An invalid cursor still raises `InvalidCursor`
  (-32602).
- **Serialized per protocol version, once.** A page's items are kept as the wire dicts the SDK
  would send for that version (its own sieve), and each definition's wire dict is kept for as
  long as the definition object lives (`_Wired`): the catalog keeps unchanged servers'
  definition objects across changes, so a change re-serializes only what changed.
- **Invalidated by the catalog's generation.** A catalog change builds a new object for each
  list and server view it changes, and keeps the others (`Catalog._rebuild`; a profile's
  narrowed list follows its source), so the identity of the list a face serves is its
  generation: prepared views are
  used only while the face still serves the very list object they were made from, and the first
  request that finds another one drops every view of that list. Views are bounded
  (`cachetools.LRUCache`, `MAX_VIEWS` per face and list).

The SDK shapes the result envelope (`nextCursor`, `_meta`, `ttlMs`, cache hints, `resultType`,
the modern era's `serverInfo` stamp) around an empty page, and `middleware` puts the prepared
items in afterwards: mcp 2.3 validates every handler result against the version's schema inside
the handler chain, and a middleware's result is the one thing it passes as is
(`mcp.server.runner.ServerRunner._serialize`; the same seam `hub.endpoint.tasks` uses).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final, Generic, TypeVar

import mcp_types as types
from cachetools import LRUCache
from mcp.server import ServerRequestContext
from mcp.server.context import CallNext, HandlerResult
from mcp_types.methods import serialize_server_result
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

from hub.catalog import Catalog, ChangeListener, Kind, listing_key
from hub.handler_slots import HandlerSlot
from hub.pages import Page, decode_cursor, definition_size, page_of
from hub.policy import Access
from hub.principals import Principal

__all__ = ["LIST_METHODS", "MAX_VIEWS", "WARM_VERSIONS", "PreparedLists", "WirePage", "warm_lists"]

WARM_VERSIONS: Final = (HANDSHAKE_PROTOCOL_VERSIONS[-1], MODERN_PROTOCOL_VERSIONS[-1])
"""The protocol versions `warm_lists` serializes new definitions for: the latest of each era
(what the SDK's clients negotiate); other versions are serialized at their first list."""

MAX_VIEWS: Final = 64
"""Policy views kept per face and list (least recently used dropped first)."""

LIST_METHODS: Final[Mapping[str, tuple[Kind, str]]] = {
    "tools/list": ("tools", "tools"),
    "resources/list": ("resources", "resources"),
    "resources/templates/list": ("resource_templates", "resourceTemplates"),
    "prompts/list": ("prompts", "prompts"),
}
"""Each list method: its catalog kind and the result's field of items on the wire."""

_METHOD_OF: Final[Mapping[Kind, str]] = {kind: method for method, (kind, _) in LIST_METHODS.items()}
_FIELD_OF: Final[Mapping[Kind, str]] = {kind: wire for kind, wire in LIST_METHODS.values()}

_ENVELOPE_STUB: Final[Mapping[str, Any]] = {"ttlMs": 0, "cacheScope": "private", "resultType": "complete"}
"""What the modern era's list results require besides their items (only the items are kept)."""

_ItemT = TypeVar("_ItemT", types.Tool, types.Prompt, types.Resource, types.ResourceTemplate)


@dataclass(frozen=True, slots=True)
class WirePage:
    """One page as sent: `items` are wire dicts (MCP `Tool`, `Resource`, `ResourceTemplate` or
    `Prompt`, as the request's protocol version shapes them); `next_cursor` as `hub.pages`."""

    items: list[dict[str, Any]]
    next_cursor: str | None


@dataclass(slots=True)
class _View(Generic[_ItemT]):
    """One policy view of one list: what the view may see, and its pages from the start, by the
    listing key their cursor continues after (None: the first page)."""

    items: Sequence[_ItemT]
    pages: dict[str | None, Page[_ItemT]]
    wire: dict[tuple[str | None, str], list[dict[str, Any]]] = field(default_factory=dict)


_SLOT: HandlerSlot[WirePage] = HandlerSlot("hub_prepared_list")
"""Where a list handler leaves its prepared page for `PreparedLists.middleware`."""


def _wire_items(kind: Kind, version: str, items: Sequence[_ItemT]) -> list[dict[str, Any]]:
    """`items` as the SDK would send them in a list result of protocol `version` (dumped, then
    validated and shaped by the version's result schema).

    :raises ValueError: `version` is not a protocol version the SDK knows.
    """
    field_name = _FIELD_OF[kind]
    dumped = [item.model_dump(by_alias=True, mode="json", exclude_none=True) for item in items]
    shaped = serialize_server_result(_METHOD_OF[kind], version, {**_ENVELOPE_STUB, field_name: dumped})
    result: list[dict[str, Any]] = shaped[field_name]
    return result


class _Wired:
    """The wire dicts of listed definitions, per protocol version, each kept for as long as the
    definition object lives (as `hub.pages` keeps their sizes): the catalog keeps a definition
    object across changes that leave it alone, so a change re-serializes only what changed, and
    the faces that list the same objects (the aggregated face and its profiles) share them."""

    def __init__(self) -> None:
        self._wire: dict[int, tuple[weakref.ref[object], dict[str, dict[str, Any]]]] = {}

    def __call__(self, kind: Kind, version: str, items: Sequence[_ItemT]) -> list[dict[str, Any]]:
        wire = self._wire
        missing = [item for item in items if version not in wire.get(id(item), (None, {}))[1]]
        if missing:
            for item, shaped in zip(missing, _wire_items(kind, version, missing), strict=True):
                key = id(item)
                entry = wire.get(key)
                if entry is None:
                    # The callback runs as the definition is freed, before its id can be reused.
                    entry = wire[key] = (weakref.ref(item, partial(self._forget, key)), {})
                entry[1][version] = shaped
        return [wire[id(item)][1][version] for item in items]

    def _forget(self, key: int, ref: weakref.ref[object]) -> None:
        entry = self._wire.get(key)
        if entry is not None and entry[0] is ref:
            del self._wire[key]


_wired = _Wired()


def warm_lists(catalog: Catalog) -> ChangeListener:
    """A `Catalog` change listener that measures (`hub.pages.definition_size`) and serializes
    (for each of `WARM_VERSIONS`) every listed definition of a changed list that the list it
    replaces did not hold: both are kept per definition object, and the catalog keeps the
    objects of the servers that did not change, so a change of one server costs that server's
    new definitions, not the catalog (the lookup of the new ones is a set of object ids). The
    first list request after a change then only filters and cuts, so a fleet that starts does
    this work as each server arrives, not after the slowest one. A rebuild that merged several
    servers' snapshots tells the listeners once per server with the same new lists: those are
    walked once."""
    warmed: dict[Kind, tuple[Sequence[Any], frozenset[int]]] = {}
    """The last list of each kind walked (a tuple of references, so its ids stay unique) and its ids."""

    async def warm(server_id: str, kinds: frozenset[Kind]) -> None:
        lists: dict[Kind, Sequence[Any]] = {
            "tools": catalog.tools,
            "resources": catalog.resources,
            "resource_templates": catalog.resource_templates,
            "prompts": catalog.prompts,
        }
        for kind in kinds:
            items = lists[kind]
            last = warmed.get(kind)
            if last is not None and last[0] is items:
                continue  # this very list was walked already (a change told once per merged server)
            seen = last[1] if last is not None else frozenset()
            fresh = [item for item in items if id(item) not in seen] if seen else list(items)
            warmed[kind] = (items, frozenset(map(id, items)))  # the last list is dropped only now
            for item in fresh:
                definition_size(item)
            for version in WARM_VERSIONS:
                _wired(kind, version, fresh)

    return warm


class PreparedLists:
    """The prepared pages of one face's lists (module docstring).

    :param access: the policy the face filters its lists by.
    :param route_key: the face's `route_key` (`(server_id, exposed)` a policy decides on).
    :param page_size: most items per page (`list_page_size`).
    :param scope: the face's `cursor_scope` (cursors are bound to it).
    """

    def __init__(
        self,
        access: Access,
        route_key: Callable[[Kind, str], tuple[str, str] | None],
        page_size: int,
        scope: str | None,
    ) -> None:
        self._access = access
        self._route_key = route_key
        self._page_size = page_size
        self._scope = scope
        self._views: dict[Kind, LRUCache[Hashable, _View[Any]]] = {}
        self._sources: dict[Kind, Sequence[Any]] = {}
        """The list each kind's views were made from (the catalog's generation of it)."""

    def page(
        self,
        version: str,
        principal: Principal,
        kind: Kind,
        source: Sequence[_ItemT],
        params: types.PaginatedRequestParams | None,
    ) -> WirePage:
        """The page of list `kind` (the face serves `source`, sorted by listing key) that the
        request's cursor asks for, as `principal` may see it, in the wire form of protocol
        `version`.

        :raises InvalidCursor: the cursor is not one of this list on this face (-32602).
        :raises ValueError: the request's protocol version is unknown to the SDK.
        """
        view = self._view(principal, kind, source)
        cursor = params.cursor if params is not None else None
        after = None if cursor is None else decode_cursor(cursor, kind, self._scope)
        prepared = view.pages.get(after)
        if prepared is None:  # not a page boundary of this view: cut it as hub.pages does, unkept
            page = page_of(view.items, kind, cursor, self._page_size, scope=self._scope)
            return WirePage(_wired(kind, version, page.items), page.next_cursor)
        wire = view.wire.get((after, version))
        if wire is None:
            wire = view.wire[(after, version)] = _wired(kind, version, prepared.items)
        return WirePage(wire, prepared.next_cursor)

    def _view(self, principal: Principal, kind: Kind, source: Sequence[_ItemT]) -> _View[_ItemT]:
        views = self._views.get(kind)
        if views is None or self._sources.get(kind) is not source:
            # First use, or the catalog changed: every view of this list is stale (dropped now,
            # so that they do not keep the old definitions alive).
            views = self._views[kind] = LRUCache(MAX_VIEWS)
            self._sources[kind] = source
        key = self._access.view_of(principal)
        view: _View[_ItemT] | None = views.get(key)
        if view is not None:
            return view
        items: Sequence[_ItemT] = source
        if self._access.restricts(principal):
            items = [
                item for item in source if self._access.visible(principal, self._route_key(kind, listing_key(item)))
            ]
        pages: dict[str | None, Page[_ItemT]] = {}
        after: str | None = None
        cursor: str | None = None
        while True:  # the pages page_of gives from the start; each next cursor continues after its last key
            page = pages[after] = page_of(items, kind, cursor, self._page_size, scope=self._scope)
            if page.next_cursor is None:
                break
            after, cursor = listing_key(page.items[-1]), page.next_cursor
        view = views[key] = _View(items, pages)
        return view

    def result(
        self,
        ctx: ServerRequestContext[Any],
        principal: Principal,
        kind: Kind,
        source: Sequence[_ItemT],
        params: types.PaginatedRequestParams | None,
        envelope: Mapping[str, Any],
    ) -> dict[str, Any]:
        """A list handler's result (wire keys): `envelope` (`_meta`, `ttlMs`) with the page of
        `page(...)`. Its items are left for `middleware` when it runs (the result then carries
        an empty list for the SDK to shape around), else they are in the result.

        :raises InvalidCursor: the cursor is not one of this list on this face (-32602).
        """
        page = self.page(ctx.protocol_version, principal, kind, source, params)
        # `resultType` as the typed results default it (the handshake era's schema drops it).
        items = [] if self.hold(page) else list(page.items)
        result: dict[str, Any] = {"resultType": "complete", **envelope, _FIELD_OF[kind]: items}
        if page.next_cursor is not None:
            result["nextCursor"] = page.next_cursor
        return result

    @staticmethod
    def hold(page: WirePage) -> bool:
        """Leave `page` for `middleware` to put in the result; False when no middleware waits
        for it (the caller then returns the items itself)."""
        return _SLOT.leave(page)

    @staticmethod
    async def middleware(ctx: ServerRequestContext[Any], call_next: CallNext) -> HandlerResult:
        """Server middleware: a list result whose handler left a prepared page (`hold`) gets its
        items from it, after the SDK shaped the envelope around the empty page the handler
        returned (with the page's `nextCursor`)."""
        listed = LIST_METHODS.get(ctx.method)
        if listed is None:
            return await call_next(ctx)
        result, page = await _SLOT.around(partial(call_next, ctx))
        if page is None or not isinstance(result, dict):
            return result
        return {**result, listed[1]: list(page.items)}
