"""The catalog's tools as one search index, kept current as the catalog changes (issue 14).

`CatalogSearch` holds one `hub.search.ToolIndex` (BM25 over SQLite FTS5 with the shipped
synonym table: `hub.search.default_index()`) of the catalog's *listed* tools under their exposed
names: served, not held by pinning, descriptions as hygiene cleaned them (`Catalog.tools`). A
held or reserved definition is therefore never found. Every face in search mode, and
`GET /me/search`, search this one index, each with the caller's visible set as `allowed`
(the policy filter runs inside the engine; `hub.search.index`).

Kept current incrementally: on every catalog change of the tools the index is synced with
`ToolIndex.sync`, which touches only the tools added, changed or removed. Syncs run one at a time
in a worker thread (indexing thousands of tools takes a good part of a second and must not stall
the event loop), and a search first waits for the index to hold exactly the catalog's current
tools, so a tool that was just held or removed is never answered.

Searches then run on the event loop, not in a thread: a lexical search over 10,000 tools takes
about 0.4 ms of CPU at the median and a few ms at the tail (`benchmarks/tool_search/`), less than
a thread hop costs, and the caller's `allowed` predicate (policy decisions with their caches,
which are not thread-safe) must run on the loop. No sync runs at that moment (a search starts
only once the index is current, and it does not yield), so the index's lock is free.

The index is built only when something searches: at start-up when search mode is configured
anywhere (the hub-wide `catalog`, a profile, a policy rule), else at the first `/me/search`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import anyio
import mcp_types as types

from hub.catalog import Catalog, Kind
from hub.logs import counted
from hub.search import SearchHit, ToolIndex, default_index

__all__ = ["CatalogSearch"]

logger = logging.getLogger(__name__)


class CatalogSearch:
    """One index of the catalog's listed tools, synced on catalog changes.

    :param catalog: whose `tools` are indexed.
    :param make_index: builds the empty index (default `hub.search.default_index`: BM25 + synonyms).
    :param eager: build the index with the first catalog change (search mode is configured)
        rather than at the first search.
    """

    def __init__(
        self, catalog: Catalog, make_index: Callable[[], ToolIndex] = default_index, *, eager: bool = False
    ) -> None:
        self._catalog = catalog
        self._eager = eager
        self._make_index = make_index
        self._index: ToolIndex | None = None
        self._indexed: tuple[types.Tool, ...] | None = None
        """The `Catalog.tools` tuple the index holds (the catalog makes a new tuple per change)."""
        self._lock = anyio.Lock()

    @property
    def active(self) -> bool:
        """Whether the index exists (it is then kept current)."""
        return self._index is not None

    def __len__(self) -> int:
        return len(self._index) if self._index is not None else 0

    async def on_catalog_change(self, server_id: str, kinds: frozenset[Kind]) -> None:
        """A `Catalog` change listener: bring an active index up to date when tools changed."""
        if (self._index is not None or self._eager) and "tools" in kinds:
            await self.current()

    async def current(self) -> ToolIndex:
        """The index, built if needed, holding exactly the catalog's current tools."""
        index = self._index
        if index is not None and self._indexed is self._catalog.tools:
            return index
        async with self._lock:
            if self._index is None:
                self._index = await anyio.to_thread.run_sync(self._make_index)
            index = self._index
            # A change may land while a sync runs: sync until the index caught up.
            while self._indexed is not (tools := self._catalog.tools):
                report = await anyio.to_thread.run_sync(index.sync, tools)
                self._indexed = tools
                if report.added or report.replaced or report.removed:
                    logger.info(
                        "tool search index: %s added, %s changed, %s removed (%s)",
                        len(report.added),
                        len(report.replaced),
                        len(report.removed),
                        counted(len(index), "tool"),
                    )
            return index

    async def search(self, query: str, limit: int, allowed: Callable[[str], bool]) -> list[SearchHit]:
        """The tools that best answer `query` among those `allowed`, best first (at most `limit`),
        each with its definition as `tools/list` gives it (`hub.search.ToolIndex.search`).

        A hit whose route is no longer listed by the time the search ends (a change landed
        during it) is dropped, so a held or reserved definition is never answered.

        :raises ValueError: a negative `limit`.
        """
        index = await self.current()
        hits = index.search(query, limit=limit, allowed=allowed)
        return [hit for hit in hits if self._listed(hit.name)]

    async def reasons(self, hits: Sequence[SearchHit], query: str) -> list[dict[str, tuple[str, ...]]]:
        """For each hit, the words that `query` matched in it (`ToolIndex.matched_words`)."""
        index = await self.current()
        return [index.matched_words(hit.name, query) for hit in hits]

    def _listed(self, name: str) -> bool:
        route = self._catalog.tool_route(name)
        return route is not None and route.listed

    def close(self) -> None:
        """Release the index (the hub stops)."""
        if self._index is not None:
            self._index.close()
            self._index = None
            self._indexed = None
