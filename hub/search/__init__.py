"""Tool search (issue 14): find the few tools of a large catalog that answer a request.

- `hub.search.tokens`: the tokenizer (snake_case, camelCase, `__` prefixes, digits) and the
  searchable text of a tool definition.
- `hub.search.index`: `ToolIndex`, BM25 over SQLite FTS5 with field weights, incremental
  updates by exposed name, policy filtering inside the engine, optional concept expansion and
  semantic scoring.
- `hub.search.concepts`: `SynonymExpander`, concept expansion from a synonym table (one ships).
- `hub.search.semantic`: `EmbeddingScorer` + `MiniLMEmbedder`, sentence embeddings (the
  optional `search-embeddings` extra; imported only when asked for).

`default_index()` builds the configuration the benchmark chose. Measured quality and costs:
`benchmarks/tool_search/` (see benchmarks/README.md, "Tool search").
"""

from __future__ import annotations

from hub.search.concepts import SynonymExpander
from hub.search.index import (
    DEFAULT_LIMIT,
    MAX_SCORED_TOOLS,
    Allowed,
    ConceptExpander,
    FieldWeights,
    SearchHit,
    SemanticScorer,
    SyncReport,
    ToolIndex,
)
from hub.search.tokens import query_words, tool_text, words

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_SCORED_TOOLS",
    "Allowed",
    "ConceptExpander",
    "FieldWeights",
    "SearchHit",
    "SemanticScorer",
    "SyncReport",
    "SynonymExpander",
    "ToolIndex",
    "default_index",
    "query_words",
    "tool_text",
    "words",
]


def default_index(*, embeddings: bool = False, expander: ConceptExpander | None = None) -> ToolIndex:
    """An empty `ToolIndex` as the benchmark recommends.

    :param embeddings: False (default): BM25 + concept expansion, no dependency beyond the
        standard library (recall@5 0.84 on the benchmark's held-out half). True: the same fused
        with MiniLM sentence embeddings (0.94), which needs the `search-embeddings` extra, loads
        a model (about 0.5 GB of RSS, seconds) and costs milliseconds per query.
    :param expander: the concept expansion; default `SynonymExpander.default()` (the shipped table).
    :raises ImportError: `embeddings=True` without the `search-embeddings` extra installed.
    """
    expander = expander if expander is not None else SynonymExpander.default()
    if not embeddings:
        return ToolIndex(expander=expander)
    from hub.search.semantic import EmbeddingScorer, MiniLMEmbedder

    return ToolIndex(expander=expander, semantic=EmbeddingScorer(MiniLMEmbedder()))
