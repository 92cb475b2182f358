"""A search index over tool definitions: BM25 (SQLite FTS5) with field weights, optional concept
expansion and an optional semantic scorer, filtered by what the caller may use.

One `ToolIndex` holds one catalog's tools under their exposed names. It is kept current
incrementally (`add` / `remove` / `sync`, by exposed name) and answers
`search(query, limit=..., allowed=...)` with ranked `SearchHit`s, each carrying the full tool
definition (the `mcp_types.Tool` as it would appear in `tools/list`).

Scoring:

- **BM25** over four fields (exposed name and title; description; parameter names; parameter
  descriptions, titles and enum values) by SQLite FTS5's `bm25()` with per-field weights
  (`FieldWeights`), words split by `hub.search.tokens` and stemmed by FTS5's `porter` tokenizer.
  The query is the OR of its words (stopwords dropped).
- **Concept expansion** (optional, a `ConceptExpander`): words related to the query's words are
  searched as a second BM25 query whose score is added with weight `expansion_weight`.
- **Semantic score** (optional, a `SemanticScorer`, e.g. a sentence-embedding model): the
  cosine similarity of the query and the tool's name and description, fused with the lexical
  score normalised to the best match: `score = cosine + lexical_weight * lexical / max(lexical)`
  (lexical 0 for tools BM25 does not match).

Policy: `allowed` decides, inside the engine, which tools the caller may see; a denied tool is
never returned, and `limit` counts allowed tools only. (The hub passes the caller's visible set.)
One index serves every caller, so BM25's word statistics (IDF) include tools a caller cannot
see: the order of visible tools can shift with hidden tools' words (a weak side channel), and
the score values reflect them, so scores are for ranking and must not be shown to clients. A
deployment that wants no such channel keeps one index per policy-distinct caller group.

Pure: no network I/O; the index lives in memory (an in-memory SQLite database).
Thread safety: every method takes an internal lock, so one index may be shared by threads;
concurrent calls are serialised. Nothing awaits. Lexical search is cheap enough to call on an
event loop (at 10,000 tools well under a millisecond at the median, a few at the tail; see
`benchmarks/tool_search/`). With a semantic scorer a search embeds the query (milliseconds of
CPU) and the first search after changes embeds the changed tools (seconds for hundreds): async
code calls `prepare()` after `sync()` and `search()` from a worker thread
(`anyio.to_thread.run_sync`).
"""

from __future__ import annotations

import contextlib
import heapq
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Final, Protocol

import mcp_types as types

from hub.search.tokens import STOPWORDS, ToolText, query_words, tool_text
from hub.search.tokens import words as all_words

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_SCORED_TOOLS",
    "Allowed",
    "ConceptExpander",
    "FieldWeights",
    "SearchHit",
    "SemanticScorer",
    "SyncReport",
    "ToolIndex",
]

DEFAULT_LIMIT: Final = 8
"""Results returned by `ToolIndex.search` when no limit is given (issue 14: `limit=8`)."""

MAX_SCORED_TOOLS: Final = 2000
"""At most about this many tools are BM25-scored per query (see `ToolIndex._bm25`); only catalogs
of thousands of tools with very common query words reach it."""

Allowed = Callable[[str], bool] | Set[str]
"""The tools a caller may use: a predicate on exposed names, or the set (e.g. `frozenset`) of
allowed names."""


class ConceptExpander(Protocol):
    """Related words for a query's words (synonyms, near neighbours), restricted to words the
    index holds. Implementations must not do network I/O."""

    def expand(self, words: Sequence[str], vocabulary: Mapping[str, int]) -> list[str]:
        """Words related to the query's `words` (all of them, in order, stopwords included),
        excluding `words` themselves; `[]` when nothing is related. `vocabulary` (word -> number
        of tools holding it) lets an expander choose among the words the index holds."""
        ...


class SemanticScorer(Protocol):
    """A similarity of query and tool text in [-1, 1] (cosine of embeddings), kept per tool."""

    def add(self, name: str, text: str) -> None:
        """Index (or re-index) tool `name` whose searchable text is `text`."""
        ...

    def remove(self, name: str) -> None:
        """Forget tool `name` (no error when unknown)."""
        ...

    def prepare(self) -> None:
        """Do now the work changes left for the next `scores` (e.g. embed new tool texts)."""
        ...

    def ranked(self, query: str, boosts: Mapping[str, float]) -> Iterable[tuple[str, float]]:
        """Every indexed tool as `(name, similarity + boosts.get(name, 0))`, best first (ties by
        name); consumed lazily, so an implementation may sort once and yield."""
        ...


@dataclass(frozen=True, slots=True)
class FieldWeights:
    """BM25 weight of a match in each field (FTS5 `bm25()` column weights; relative, > 0).

    Measured on the `tune` half of `benchmarks/tool_search/queries.yaml`, the weights move
    recall@5 by less than 0.05 between 1:1:1:1 and these; the name leads, as a user's words most
    often echo a tool's name.
    """

    name: float = 4.0
    description: float = 2.0
    parameters: float = 1.0
    parameter_descriptions: float = 0.5


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One ranked result: the exposed name, its score (higher is better; comparable within one
    search only) and the full definition as listed."""

    name: str
    score: float
    tool: types.Tool


@dataclass(frozen=True, slots=True)
class SyncReport:
    """What `ToolIndex.sync` changed: exposed names added, replaced (definition changed) and removed."""

    added: tuple[str, ...]
    replaced: tuple[str, ...]
    removed: tuple[str, ...]


_SCHEMA: Final = (
    "CREATE VIRTUAL TABLE tools USING fts5("
    "name, description, parameters, parameter_descriptions, tokenize = 'porter unicode61')"
)


_FIELDS: Final = ("name", "description", "parameters", "parameter_descriptions")
"""The index's columns, in order."""
_MARKED: Final = re.compile("\x02([^\x03]*)\x03")
"""A word `highlight()` marked (between the control characters 2 and 3, which tool text never holds)."""


def _match_expression(words: Iterable[str]) -> str:
    """An FTS5 query OR-ing each word as a quoted string (so no word is read as an operator)."""
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in words)


def _take(
    ranked: Iterable[tuple[str, float]], limit: int, is_allowed: Callable[[str], bool]
) -> list[tuple[str, float]]:
    """The first `limit` allowed pairs of an already ranked sequence, stopping at a score <= 0."""
    best: list[tuple[str, float]] = []
    for name, score in ranked:
        if score <= 0.0 or len(best) == limit:
            break
        if is_allowed(name):
            best.append((name, score))
    return best


def _best(scores: Mapping[str, float], limit: int, is_allowed: Callable[[str], bool]) -> list[tuple[str, float]]:
    """The `limit` best allowed (name, score) pairs with a positive score, best first, ties by name.

    Looks at a few times `limit` candidates first (a heap, not a sort of every match) and sorts
    every match only when too many of those are denied.
    """

    def rank(item: tuple[str, float]) -> tuple[float, str]:
        return (-item[1], item[0])

    width = limit * 4 + 16
    if width < len(scores):
        head = heapq.nsmallest(width, scores.items(), key=rank)
        best = _take(head, limit, is_allowed)
        if len(best) == limit or head[-1][1] <= 0.0:
            return best
    return _take(sorted(scores.items(), key=rank), limit, is_allowed)


class ToolIndex:
    """The searchable tools of one catalog, by exposed name (see the module docstring).

    :param weights: BM25 field weights; default `FieldWeights()`.
    :param expander: optional concept expansion (e.g. `hub.search.concepts.SynonymExpander`).
    :param expansion_weight: weight of the expansion query's BM25 score relative to the
        query's own (default 0.75, chosen on the benchmark's `tune` half).
    :param semantic: optional semantic scorer (e.g. `hub.search.semantic.EmbeddingScorer`).
    :param lexical_weight: with a semantic scorer, the weight of the normalised lexical score
        (in [0, 1]) added to the cosine similarity (default 0.2: the cosine leads and BM25,
        with its expansion, settles near-ties; chosen on the benchmark's `tune` half).
    """

    def __init__(
        self,
        *,
        weights: FieldWeights = FieldWeights(),
        expander: ConceptExpander | None = None,
        expansion_weight: float = 0.75,
        semantic: SemanticScorer | None = None,
        lexical_weight: float = 0.2,
    ) -> None:
        self._weights = weights
        self._expander = expander
        self._expansion_weight = expansion_weight
        self._semantic = semantic
        self._lexical_weight = lexical_weight
        self._lock = threading.Lock()
        self._db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        self._db.execute(_SCHEMA)
        self._tools: dict[str, types.Tool] = {}
        self._rowids: dict[str, int] = {}
        self._names: dict[int, str] = {}
        self._texts: dict[str, ToolText] = {}
        self._vocabulary: dict[str, int] = {}
        self._frequencies: dict[str, int] = {}
        self._next_rowid = 1

    def close(self) -> None:
        """Release the in-memory database; the index must not be used afterwards."""
        with self._lock:
            self._db.close()

    # -- contents ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def names(self) -> frozenset[str]:
        """The exposed names indexed now."""
        with self._lock:
            return frozenset(self._tools)

    def get(self, name: str) -> types.Tool | None:
        """The indexed definition of `name`, or None."""
        return self._tools.get(name)

    def vocabulary(self) -> Mapping[str, int]:
        """Every indexed word (unstemmed, lower-case) -> the number of tools whose text holds it."""
        with self._lock:
            return dict(self._vocabulary)

    def add(self, tool: types.Tool) -> bool:
        """Index `tool` under `tool.name` (its exposed name), replacing a previous definition.

        :returns: False when the same definition was already indexed (nothing done), else True.
        """
        with self._lock:
            return self._add(tool)

    def remove(self, name: str) -> bool:
        """Remove the tool exposed as `name`. :returns: whether it was indexed."""
        with self._lock:
            return self._remove(name)

    def sync(self, tools: Iterable[types.Tool]) -> SyncReport:
        """Make the index hold exactly `tools` (by `tool.name`), touching only what changed.

        :param tools: the whole catalog's definitions, exposed names; a later duplicate name wins.
        :returns: the names added, replaced and removed.
        """
        wanted = {tool.name: tool for tool in tools}
        with self._lock, self._transaction():
            removed = tuple(sorted(name for name in self._tools if name not in wanted))
            for name in removed:
                self._remove(name)
            added: list[str] = []
            replaced: list[str] = []
            for name, tool in wanted.items():
                existed = name in self._tools
                if self._add(tool):
                    (replaced if existed else added).append(name)
        return SyncReport(tuple(sorted(added)), tuple(sorted(replaced)), removed)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One SQLite transaction around many changes (one commit instead of one per row)."""
        self._db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _add(self, tool: types.Tool) -> bool:
        name = tool.name
        if self._tools.get(name) == tool:
            return False
        if name in self._tools:
            self._remove(name)
        text = tool_text(name, tool)
        self._frequencies.clear()
        rowid = self._next_rowid
        self._next_rowid += 1
        self._db.execute(
            "INSERT INTO tools(rowid, name, description, parameters, parameter_descriptions) VALUES (?, ?, ?, ?, ?)",
            (rowid, text.name, text.description, text.parameters, text.parameter_descriptions),
        )
        self._tools[name] = tool
        self._rowids[name] = rowid
        self._names[rowid] = name
        self._texts[name] = text
        for word in set(text.joined().split()):
            self._vocabulary[word] = self._vocabulary.get(word, 0) + 1
        if self._semantic is not None:
            self._semantic.add(name, f"{text.name}. {tool.description or ''}")
        return True

    def _remove(self, name: str) -> bool:
        rowid = self._rowids.pop(name, None)
        if rowid is None:
            return False
        self._db.execute("DELETE FROM tools WHERE rowid = ?", (rowid,))
        self._frequencies.clear()
        del self._names[rowid]
        del self._tools[name]
        for word in set(self._texts.pop(name).joined().split()):
            left = self._vocabulary[word] - 1
            if left:
                self._vocabulary[word] = left
            else:
                del self._vocabulary[word]
        if self._semantic is not None:
            self._semantic.remove(name)
        return True

    def prepare(self) -> None:
        """Bring the semantic scorer up to date now (embed tools added or changed since the last
        search) instead of during the next search; nothing to do without one."""
        with self._lock:
            if self._semantic is not None:
                self._semantic.prepare()

    # -- search -----------------------------------------------------------------------------

    def _document_frequency(self, word: str) -> int:
        """How many tools hold `word` (after FTS5's stemming); cached until the index changes."""
        count = self._frequencies.get(word)
        if count is None:
            row = self._db.execute("SELECT count(*) FROM tools WHERE tools MATCH ?", (_match_expression([word]),))
            count = self._frequencies[word] = int(row.fetchone()[0])
        return count

    def _bm25(self, words: Sequence[str]) -> dict[str, float]:
        """Positive BM25 score of every tool matching any of `words` (FTS5's bm25() is negative).

        Two cuts bound the work on large catalogs (scoring a matched tool is most of a search's
        cost), both dropping the least telling words first:

        - words held by more than half of the tools are left out when others remain: FTS5 gives
          them an IDF of about zero (it clamps log((N - n + 0.5) / (n + 0.5)) at 1e-6), so they
          change no ranking;
        - then, while the words would match more than `MAX_SCORED_TOOLS` tools, the most
          frequent one is dropped (one word always stays). Tools matching only those common
          words are not scored; the others lose only their low-IDF part.
        """
        half = len(self._tools) / 2
        words = [word for word in words if self._document_frequency(word) <= half] or list(words)
        words = sorted(words, key=self._document_frequency)
        while len(words) > 1 and sum(map(self._document_frequency, words)) > MAX_SCORED_TOOLS:
            words.pop()
        if not words:
            return {}
        w = self._weights
        rows = self._db.execute(
            "SELECT rowid, -bm25(tools, ?, ?, ?, ?) FROM tools WHERE tools MATCH ?",
            (w.name, w.description, w.parameters, w.parameter_descriptions, _match_expression(words)),
        )
        return {self._names[rowid]: score for rowid, score in rows}

    def matched_words(self, name: str, query: str) -> dict[str, tuple[str, ...]]:
        """Why `query` finds the tool `name`, for people (no scores): per field (`name`,
        `description`, `parameters`, `parameter_descriptions`) the indexed words the query's
        words match (after stemming), and under `related` the words matched only through concept
        expansion. Fields without a match are left out; `{}` for an unknown name.

        The marks come from FTS5's `highlight()`, so they are the matches BM25 scored.
        """
        words = query_words(query)
        with self._lock:
            rowid = self._rowids.get(name)
            if rowid is None or not words:
                return {}
            matched = self._highlighted(rowid, words)
            if self._expander is not None:
                related = self._expander.expand(all_words(query), self._vocabulary)
                extra = [w for w in related if w not in words and w not in STOPWORDS]
                seen = {w for found in matched.values() for w in found}
                by_expansion = [w for found in self._highlighted(rowid, extra).values() for w in found]
                if fresh := tuple(dict.fromkeys(w for w in by_expansion if w not in seen)):
                    matched["related"] = fresh
            return matched

    def _highlighted(self, rowid: int, words: Sequence[str]) -> dict[str, tuple[str, ...]]:
        """The words of row `rowid` that `words` match, per field (FTS5 `highlight()`)."""
        if not words:
            return {}
        row = self._db.execute(
            "SELECT highlight(tools, 0, char(2), char(3)), highlight(tools, 1, char(2), char(3)),"
            " highlight(tools, 2, char(2), char(3)), highlight(tools, 3, char(2), char(3))"
            " FROM tools WHERE tools MATCH ? AND rowid = ?",
            (_match_expression(words), rowid),
        ).fetchone()
        if row is None:
            return {}
        found: dict[str, tuple[str, ...]] = {}
        for field, text in zip(_FIELDS, row, strict=True):
            marked = tuple(dict.fromkeys(_MARKED.findall(text or "")))
            if marked:
                found[field] = marked
        return found

    def search(self, query: str, *, limit: int = DEFAULT_LIMIT, allowed: Allowed) -> list[SearchHit]:
        """The tools that best answer `query`, best first, among those `allowed`.

        :param query: natural-language text ("remember that Bob works at Acme") or words of a
            tool name ("create_issue").
        :param limit: the most hits returned (>= 0; default 8); counted after filtering.
        :param allowed: the caller's visible tools: a set of exposed names or a predicate. Only
            tools it accepts are scored and returned; required, so no caller forgets policy.
        :returns: at most `limit` hits with a positive score, best first (ties by name).
        :raises ValueError: a negative `limit`.
        """
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        if limit == 0:
            return []
        is_allowed = allowed.__contains__ if isinstance(allowed, Set) else allowed
        words = query_words(query)
        with self._lock:
            lexical = self._bm25(words)
            if self._expander is not None and words:
                related = self._expander.expand(all_words(query), self._vocabulary)
                for name, score in self._bm25([w for w in related if w not in words and w not in STOPWORDS]).items():
                    lexical[name] = lexical.get(name, 0.0) + self._expansion_weight * score
            if self._semantic is not None and self._tools:
                scale = self._lexical_weight / (max(lexical.values(), default=0.0) or 1.0)
                ranked = self._semantic.ranked(query, {name: scale * score for name, score in lexical.items()})
                best = _take(ranked, limit, is_allowed)
            else:
                best = _best(lexical, limit, is_allowed)
            return [SearchHit(name, score, self._tools[name]) for name, score in best]
