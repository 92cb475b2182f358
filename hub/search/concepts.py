"""Concept expansion for tool search: related words added to a query, from a synonym table.

`SynonymExpander` reads groups of equivalent words and phrases in the format of Solr's and
Elasticsearch's synonym files (one comma-separated group per line, `#` comments) and, for a
query, returns the words of every group the query mentions. `ToolIndex` searches them as a second
BM25 query with a lower weight, so "make a new folder" also finds `create_directory`.

`SynonymExpander.default()` loads the table shipped with the hub (`hub/search/synonyms.txt`:
general vocabulary of files, notes, the web, places, code hosting, chat, data and time). No
general-purpose lexical database on PyPI both ships its data inside the wheel and knows these
software senses (see benchmarks/README.md, "Tool search"); an organisation adds its own
jargon with a file of its own (`SynonymExpander.from_files(default_path(), "ours.txt")`).

Pure: reading the table is the only I/O, at construction. Immutable after construction, so
safe to share between threads.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Final

from hub.search.tokens import STOPWORDS, words

__all__ = ["DEFAULT_SYNONYMS", "SynonymExpander", "default_path", "parse_groups"]

DEFAULT_SYNONYMS: Final = "synonyms.txt"
"""The table shipped in the `hub.search` package."""


def default_path() -> Path:
    """Where the shipped synonym table is (inside the installed package)."""
    return Path(str(importlib.resources.files("hub.search").joinpath(DEFAULT_SYNONYMS)))


def parse_groups(text: str) -> list[list[tuple[str, ...]]]:
    """Groups of a synonym file: each line's comma-separated entries as word tuples.

    :param text: the file's content; blank lines and lines starting with `#` are skipped, and an
        entry is split into words by `hub.search.tokens.words` ("Pull-Request" -> ("pull", "request")).
    :returns: one list of entries per group that has at least two entries.
    """
    groups: list[list[tuple[str, ...]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        entries = [tuple(words(entry)) for entry in line.split(",")]
        group = list(dict.fromkeys(entry for entry in entries if entry))
        if len(group) >= 2:
            groups.append(group)
    return groups


class SynonymExpander:
    """`hub.search.index.ConceptExpander` over groups of equivalent words and phrases.

    :param groups: entries (tuples of lower-case words) that mean the same; a word or phrase
        may belong to several groups, and then expands to all of them.
    """

    def __init__(self, groups: Iterable[Sequence[tuple[str, ...]]]) -> None:
        related: dict[tuple[str, ...], dict[str, None]] = {}
        for group in groups:
            for entry in group:
                out = related.setdefault(entry, {})
                for other in group:
                    if other != entry:
                        out.update(dict.fromkeys(w for w in other if w not in STOPWORDS))
        self._related = {entry: tuple(out) for entry, out in related.items()}
        self._longest = max((len(entry) for entry in self._related), default=0)

    @classmethod
    def from_files(cls, *paths: str | Path) -> SynonymExpander:
        """The groups of every file in `paths` (UTF-8, synonym-file format), together.

        :raises OSError: a file cannot be read.
        """
        return cls(group for path in paths for group in parse_groups(Path(path).read_text(encoding="utf-8")))

    @classmethod
    def default(cls) -> SynonymExpander:
        """The table shipped with the hub."""
        return cls.from_files(default_path())

    def __len__(self) -> int:
        """Distinct words and phrases the table knows."""
        return len(self._related)

    def expand(self, words: Sequence[str], vocabulary: Mapping[str, int]) -> list[str]:
        """Words related to any word or phrase of `words` (the query's words in order, stopwords
        included so phrases such as "keep in mind" match), excluding the query's own words.
        `vocabulary` is not needed: words no tool holds simply match nothing."""
        found: dict[str, None] = {}
        for start in range(len(words)):
            for length in range(min(self._longest, len(words) - start), 0, -1):
                found.update(dict.fromkeys(self._related.get(tuple(words[start : start + length]), ())))
        own = set(words)
        return [word for word in found if word not in own]
