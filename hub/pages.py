"""List pagination: one page of a catalog list per request, with opaque keyset cursors (MCP spec,
`server/utilities/pagination`, 2025-11-25 and 2026-07-28).

Every list a face serves (`tools/list`, `resources/list`, `resources/templates/list`,
`prompts/list`) is kept sorted by its listing key (`hub.catalog.listing_key`: a tool's or
prompt's name, a resource's URI, a template's URI template; the catalog sorts on every change),
so a page is a bisect and a slice, never a sort per request.

A page ends at `list_page_size` items (config; default 500) or before its definitions pass
`PAGE_MAX_BYTES` of JSON, whichever comes first, and holds at least one item. Its `nextCursor`
is present only when a later item exists for the caller.

The cursor is a keyset cursor: base64url (no padding) of the JSON `{"v": 1, "k": <kind>,
"after": <last key of the page>}`, plus `"s": <server_id>` on a `/servers/<id>/mcp` face. So:

- **It stays valid when the catalog changes.** The next page starts after the key, wherever
  that key now sits (or would sit, if its item is gone): a client walking the pages while
  servers come and go sees every item that was listed throughout exactly once, in order, and
  never an error; what was added behind its position it sees on its next walk (the change is
  announced by `list_changed`).
- **It is per principal.** The page is cut from what the caller's policy lets it see, and a
  cursor only ever holds a key the caller was given. A forged cursor only moves the start of the
  caller's own list: it reveals nothing, so cursors are not sealed.
- **Any replica serves it.** It holds no server-side state.

A cursor that does not decode, was made for another list or another face, or is malformed is
refused with `InvalidCursor`, which the endpoint answers with JSON-RPC -32602 (the spec: "Invalid
cursors SHOULD result in an error with code -32602 (Invalid params)"). Clients then start again
without a cursor (the SDK's client also evicts its cached first page).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import weakref
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Final, Generic, TypeVar

import mcp_types as types

from hub.catalog import Kind, listing_key
from hub.errors import HubError

__all__ = [
    "CURSOR_VERSION",
    "PAGE_MAX_BYTES",
    "InvalidCursor",
    "Page",
    "decode_cursor",
    "definition_size",
    "encode_cursor",
    "page_of",
]

CURSOR_VERSION: Final = 1
"""The `v` of the cursors this hub makes; another version is refused (-32602)."""
PAGE_MAX_BYTES: Final = 512 * 1024
"""Bytes (512 KiB) of serialized definitions after which a page ends whatever its item count:
half the 1 MiB cap the SDK's clients put on one SSE event (`max_sse_event_size`), so that a
page of large definitions still reaches them (a single larger definition gets a page alone)."""

_CURSOR_CHARS = re.compile(r"[A-Za-z0-9_-]+")

_ItemT = TypeVar("_ItemT", types.Tool, types.Prompt, types.Resource, types.ResourceTemplate)


class InvalidCursor(HubError):
    """A list request's `cursor` was not made by this hub for this list and face (undecodable,
    malformed, another kind of list, another face, or another cursor version). The endpoint
    answers JSON-RPC -32602 with `data.reason` `invalid_cursor`."""

    def __init__(self, kind: Kind) -> None:
        super().__init__(f"invalid cursor for {kind.replace('_', ' ')}: list again without a cursor")
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Page(Generic[_ItemT]):
    """One page of a list: its items, in listing-key order, and the cursor of the next page
    (None: this is the last page for the caller)."""

    items: list[_ItemT]
    next_cursor: str | None


def encode_cursor(kind: Kind, after: str, scope: str | None = None) -> str:
    """The opaque cursor of the page after listing key `after` in list `kind` of a face
    (`scope`: the server_id of a `/servers/<id>/mcp` face, None for the aggregated one)."""
    payload: dict[str, object] = {"v": CURSOR_VERSION, "k": kind, "after": after}
    if scope is not None:
        payload["s"] = scope
    raw = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str, kind: Kind, scope: str | None = None) -> str:
    """The listing key a cursor made by `encode_cursor(kind, key, scope)` continues after.

    :raises InvalidCursor: the cursor is not one of those.
    """
    if not _CURSOR_CHARS.fullmatch(cursor):
        raise InvalidCursor(kind)
    try:
        payload = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):  # bad base64, bad UTF-8, bad JSON
        raise InvalidCursor(kind) from None
    if not isinstance(payload, dict):
        raise InvalidCursor(kind)
    version, after = payload.get("v"), payload.get("after")
    if type(version) is not int or version != CURSOR_VERSION or not isinstance(after, str):
        raise InvalidCursor(kind)
    expected_keys = {"v", "k", "after"} if scope is None else {"v", "k", "after", "s"}
    if payload.keys() != expected_keys or payload["k"] != kind or payload.get("s") != scope:
        raise InvalidCursor(kind)
    return after


class _Sizes:
    """Serialized sizes (bytes of JSON) of listed definitions, each remembered for as long as the
    definition object lives: the catalog keeps one set of definition objects per change, shared by
    every request, so a definition is measured once however many clients list it (a cache keyed
    by object lifetime, which no cachetools policy expresses). A plain weak reference with a
    callback forgets a size (`weakref.finalize` costs ~50x more per item, which shows at 10,000
    tools)."""

    def __init__(self) -> None:
        self._sizes: dict[int, tuple[int, weakref.ref[object]]] = {}

    def __call__(self, item: types.Tool | types.Prompt | types.Resource | types.ResourceTemplate) -> int:
        key = id(item)
        entry = self._sizes.get(key)
        if entry is None:
            size = len(item.model_dump_json(by_alias=True, exclude_none=True).encode())
            # The callback runs as the definition is freed, before its id can be reused.
            self._sizes[key] = (size, weakref.ref(item, partial(self._forget, key)))
            return size
        return entry[0]

    def _forget(self, key: int, ref: weakref.ref[object]) -> None:
        entry = self._sizes.get(key)
        if entry is not None and entry[1] is ref:
            del self._sizes[key]


_size_of = _Sizes()


def definition_size(item: types.Tool | types.Prompt | types.Resource | types.ResourceTemplate) -> int:
    """Bytes of `item`'s JSON as a page counts it (measured once per definition object)."""
    return _size_of(item)


def page_of(
    items: Sequence[_ItemT],
    kind: Kind,
    cursor: str | None,
    size: int,
    *,
    admit: Callable[[_ItemT], bool] | None = None,
    scope: str | None = None,
) -> Page[_ItemT]:
    """The page of `items` that `cursor` asks for (None: the first page).

    :param items: the whole list, sorted by `listing_key` (the catalog's lists and server views).
    :param kind: which list it is (cursors are bound to it).
    :param size: most items on a page (`list_page_size`, >= 1); a page also ends before its
        definitions pass `PAGE_MAX_BYTES`, and never between two items with the same key.
    :param admit: which items the caller may see (None: all); only those are on its pages and
        counted, and the next cursor is given only when one of them is left.
    :param scope: the server_id of a `/servers/<id>/mcp` face (cursors are bound to it).
    :raises InvalidCursor: `cursor` is not a cursor of this list on this face.
    """
    start = 0
    if cursor is not None:
        start = bisect_right(items, decode_cursor(cursor, kind, scope), key=listing_key)
    page: list[_ItemT] = []
    used = 0
    for index in range(start, len(items)):
        item = items[index]
        if admit is not None and not admit(item):
            continue
        cost = _size_of(item)
        if page and (len(page) >= size or used + cost > PAGE_MAX_BYTES):
            last = listing_key(page[-1])
            if listing_key(item) != last:  # a key is never split over two pages
                return Page(page, encode_cursor(kind, last, scope))
        page.append(item)
        used += cost
    return Page(page, None)
