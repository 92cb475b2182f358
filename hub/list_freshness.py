"""List freshness (SEP-2549 cache hints, 2026-07-28): when the hub re-lists a server whose lists
expire, and the `ttlMs` of the hub's own list results.

A modern-era list result (`tools/list`, `resources/list`, `resources/templates/list`,
`prompts/list`) carries `ttlMs`: how long its receiver may consider it fresh. The hub keeps each
server's listing in its catalog, so it honours the shortest `ttlMs` of a server's lists by
listing that server again when it runs out, within these bounds:

- `ttlMs` > 0: after that long, but never sooner than `RELIST_FLOOR_SECONDS` (1 s) after the
  last listing and never later than `RELIST_CEILING_SECONDS` (1 h);
- `ttlMs` 0 on a list whose changes the server announces (`listChanged`): only when it
  announces one (0 is what the SDK sends for a server that set no hint, and the announcements
  keep the catalog fresh);
- `ttlMs` 0 on a list whose changes it does not announce: every `UNANNOUNCED_RELIST_SECONDS`
  (60 s), as nothing else would ever show a change, and re-listing every second would turn the
  SDK's default into a hot loop;
- no `ttlMs` (the handshake era): only when it announces a change (`list_changed`).

A re-list caused by a `list_changed` announcement and one caused by expiry are the same re-list:
each listing starts the next expiry afresh, and an expiry while a burst of announcements is
being debounced waits for that burst's re-list (one re-list, not two). A re-list for expiry that
fails keeps the server's last listing and its connection, and is tried again later, each wait as
long as the time since the last good listing (doubling), within the floor and the ceiling.

The hub's own list results carry `ttlMs` = the time until the next scheduled re-list of any
server of the face (what a client may reuse before the hub's catalog could change by expiry;
the age of the hub's copy is taken off, as an HTTP cache takes `Age` off `max-age`), capped at
`LIST_TTL_MS` (10 s), which is also the value when no server of the face has a schedule.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from typing import Final, Protocol

import anyio
import mcp_types as types

__all__ = [
    "LIST_TTL_MS",
    "RELIST_CEILING_SECONDS",
    "RELIST_FLOOR_SECONDS",
    "UNANNOUNCED_RELIST_SECONDS",
    "Scheduled",
    "announced_lists",
    "list_ttl_ms",
    "page_ttl_ms",
    "relist_interval_seconds",
]

LIST_TTL_MS: Final = 10_000
"""The longest `ttlMs` (milliseconds) on the hub's modern-era list results: how long a client may
reuse them. The catalog follows server health (a server that goes down leaves it, one that comes
back returns), and answering a list costs the hub no server round trip, so a client that does not
listen for changes (`subscriptions/listen` events evict cached lists at once) should not keep a
list longer than this: 10 s, not the 60 s the README once said."""
RELIST_FLOOR_SECONDS: Final = 1.0
"""A server is never re-listed for expiry sooner than this after its last listing, whatever
`ttlMs` it sends (a `ttlMs` of 1 would otherwise mean a thousand full list walks a second)."""
RELIST_CEILING_SECONDS: Final = 3600.0
"""A server whose lists expire is re-listed at least this often however long its `ttlMs`: a
catalog converges within an hour even on a server that overstates its lists' lifetime."""
UNANNOUNCED_RELIST_SECONDS: Final = 60.0
"""How often a server is re-listed whose lists say `ttlMs: 0` (immediately stale) and that does
not announce changes to them."""

_LIST_KINDS: Final = ("tools", "resources", "resource_templates", "prompts")


class Scheduled(Protocol):
    """A server connection as far as list freshness goes (`hub.servers.ServerConnection`)."""

    @property
    def relist_at(self) -> float | None:
        """`anyio.current_time()` at which the server's lists expire (None: no expiry)."""
        ...


def page_ttl_ms(page: types.Result) -> int | None:
    """The `ttlMs` (milliseconds) a list result carries, or None when it carries none (a
    handshake-era result, or a server that left the field out)."""
    if not isinstance(page, types.CacheableResult) or "ttl_ms" not in page.model_fields_set:
        return None
    return page.ttl_ms


def announced_lists(capabilities: types.ServerCapabilities) -> frozenset[str]:
    """The lists (`tools`, `resources`, `resource_templates`, `prompts`) whose changes the server
    announces (`listChanged`; in the modern era, on its `subscriptions/listen` stream)."""
    announced: set[str] = set()
    if capabilities.tools is not None and capabilities.tools.list_changed:
        announced.add("tools")
    if capabilities.resources is not None and capabilities.resources.list_changed:
        announced.update(("resources", "resource_templates"))
    if capabilities.prompts is not None and capabilities.prompts.list_changed:
        announced.add("prompts")
    return frozenset(announced)


def relist_interval_seconds(ttls_ms: Mapping[str, int], announced: Collection[str]) -> float | None:
    """Seconds from a listing until the server must be listed again, or None for never by expiry
    (only on `list_changed`); the bounds are in the module docstring.

    :param ttls_ms: the shortest `ttlMs` (milliseconds) each list of the server carried on any
        of its pages, by list (`tools`, `resources`, `resource_templates`, `prompts`); lists that
        carried none are absent.
    :param announced: the lists whose changes the server announces (`announced_lists`).
    """
    intervals: list[float] = []
    for kind in _LIST_KINDS:
        ttl_ms = ttls_ms.get(kind)
        if ttl_ms is None:
            continue
        if ttl_ms > 0:
            intervals.append(min(max(ttl_ms / 1000, RELIST_FLOOR_SECONDS), RELIST_CEILING_SECONDS))
        elif kind not in announced:
            intervals.append(UNANNOUNCED_RELIST_SECONDS)
    return min(intervals, default=None)


def list_ttl_ms(connections: Iterable[Scheduled], now: float | None = None) -> int:
    """The `ttlMs` (milliseconds) of a face's list results: the time until the earliest
    scheduled re-list among `connections` (the face's server connections; 0 when one is due),
    at most `LIST_TTL_MS`.

    :param now: `anyio.current_time()` (default: read it now).
    """
    now = anyio.current_time() if now is None else now
    earliest = min((c.relist_at for c in connections if c.relist_at is not None), default=math.inf)
    if earliest == math.inf:
        return LIST_TTL_MS
    return max(0, min(LIST_TTL_MS, math.floor((earliest - now) * 1000)))
