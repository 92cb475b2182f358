"""Tool search (issue 14): find the few tools of a large catalog that answer a request.

- `hub.search.tokens`: the tokenizer (snake_case, camelCase, `__` prefixes, digits) and the
  searchable text of a tool definition.
- `hub.search.index`: `ToolIndex`, BM25 over SQLite FTS5 with field weights, incremental
  updates by exposed name, policy filtering inside the engine, optional concept expansion and
  semantic scoring.

Measured quality and speed: `benchmarks/tool_search/` (see benchmarks/README.md).
"""

from __future__ import annotations

from hub.search.index import (
    DEFAULT_LIMIT,
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
    "Allowed",
    "ConceptExpander",
    "FieldWeights",
    "SearchHit",
    "SemanticScorer",
    "SyncReport",
    "ToolIndex",
    "query_words",
    "tool_text",
    "words",
]
