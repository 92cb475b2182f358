"""Words of tool definitions and queries: the tokenizer the search index and its queries share.

Pure functions of strings and `mcp_types.Tool` values, no I/O.

Identifier rules (tool names, parameter names, and identifiers inside free text alike):

- the hub's `__` prefix separator splits the server prefix from the original name
  (`github__create_issue` -> `github create issue`);
- `_`, `-`, `.`, `/`, `:` and every other non-alphanumeric character separate words;
- camelCase and PascalCase split at each lower-to-upper step (ASCII capitals), and an acronym
  ends before its last capital when a lower-case letter follows (`getHTTPResponse` ->
  `get http response`); other scripts are kept whole;
- digits split from letters (`sha256` -> `sha 256`, `v2` -> `v 2`);
- everything is lower-cased (Unicode-aware: `str.lower`).

Stemming is left to SQLite FTS5's `porter` tokenizer, which the index applies to indexed and
query words alike (`directories` and `directory` meet at `directori`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import mcp_types as types

__all__ = [
    "MAX_SCHEMA_DEPTH",
    "STOPWORDS",
    "ToolText",
    "query_words",
    "tool_text",
    "words",
]

_PIECE: Final = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[^\W\d_A-Z]+|[A-Z]+|\d+")
"""Word pieces: an acronym before a capitalised word, a (capitalised) lower-case word, an acronym,
a digit run. Letters outside ASCII count as lower-case (no case split: `Über` stays one word).
Everything else (`_`, `-`, spaces, punctuation) separates, so one scan applies every rule."""

MAX_SCHEMA_DEPTH: Final = 4
"""How deep nested `properties` / `items` of an input schema are read for parameter names."""

STOPWORDS: Final = frozenset(
    """a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have
    having he her here hers herself him himself his how i if in into is it its itself just let lets me
    might more most must my myself no nor not now of off on once only or other our ours ourselves out
    over own please same shall she should so some such than that the their theirs them themselves then
    there these they this those through to too under until up very via was we were what when where which
    while who whom why will with would you your yours yourself yourselves want need like get""".split()
)
"""Words dropped from queries (not from the index): they carry no tool-choosing meaning in a
request such as "can you please tell me what time it is". `get` is here because nearly every
tool description uses it and users say it of everything; it still matches inside tool names."""


def words(text: str) -> list[str]:
    """The lower-cased words of `text` by the identifier rules of this module, in order.

    :param text: any string (a tool name, a description, a query).
    :returns: e.g. `words("github__createPullRequest v2")` -> `["github", "create", "pull",
        "request", "v", "2"]`; `[]` for text without letters or digits.
    """
    return [piece.lower() for piece in _PIECE.findall(text)]


def query_words(query: str) -> list[str]:
    """The words of a natural-language query that can choose a tool: `words(query)` without
    `STOPWORDS` and duplicates, in order. A query made only of stopwords keeps its words (so
    "what time is it" still searches for "time", and "get" alone still searches for "get")."""
    all_words = list(dict.fromkeys(words(query)))
    kept = [w for w in all_words if w not in STOPWORDS]
    return kept or all_words


@dataclass(frozen=True, slots=True)
class ToolText:
    """The searchable text of one tool, one string per index field (words joined by spaces)."""

    name: str
    """Words of the exposed name (server prefix included) and of the tool's `title`."""
    description: str
    """Words of the tool's `description` and `annotations.title`."""
    parameters: str
    """Words of the input schema's property names (nested objects and arrays included)."""
    parameter_descriptions: str
    """Words of the input schema's property `description`/`title` values and string `enum` values."""

    def joined(self) -> str:
        """All fields in one text (for embedding models)."""
        return " ".join(part for part in (self.name, self.description, self.parameters, self.parameter_descriptions))


def _schema_parts(schema: Mapping[str, Any], depth: int) -> Iterator[tuple[str, str]]:
    """`("name", word)` and `("text", phrase)` pairs of an input schema, depth-first."""
    if depth > MAX_SCHEMA_DEPTH:
        return
    properties = schema.get("properties")
    if isinstance(properties, Mapping):
        for key, sub in properties.items():
            yield "name", str(key)
            if isinstance(sub, Mapping):
                yield from _property_text(sub)
                yield from _schema_parts(sub, depth + 1)
    items = schema.get("items")
    if isinstance(items, Mapping):
        yield from _schema_parts(items, depth + 1)
    for combinator in ("anyOf", "oneOf", "allOf"):
        options = schema.get(combinator)
        if isinstance(options, list):
            for option in options:
                if isinstance(option, Mapping):
                    yield from _schema_parts(option, depth + 1)


def _property_text(prop: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    for key in ("title", "description"):
        value = prop.get(key)
        if isinstance(value, str):
            yield "text", value
    enum = prop.get("enum")
    if isinstance(enum, list):
        yield "text", " ".join(str(v) for v in enum if isinstance(v, str))


def _joined(texts: list[str]) -> str:
    return " ".join(w for text in texts for w in words(text))


def tool_text(exposed_name: str, tool: types.Tool) -> ToolText:
    """The searchable fields of `tool` exposed as `exposed_name`.

    :param exposed_name: the name clients see (`<prefix>__<original>`); its words are what the
        name field holds, so the server prefix is searchable ("github issue").
    :param tool: the definition as listed (`mcp_types.Tool`); `title`, `description`,
        `annotations.title` and `input_schema` are read.
    """
    names = [exposed_name]
    if tool.title:
        names.append(tool.title)
    descriptions = [tool.description or ""]
    if tool.annotations is not None and tool.annotations.title:
        descriptions.append(tool.annotations.title)
    params: list[str] = []
    param_texts: list[str] = []
    for kind, value in _schema_parts(tool.input_schema, 0):
        (params if kind == "name" else param_texts).append(value)
    return ToolText(
        name=_joined(names),
        description=_joined(descriptions),
        parameters=_joined(params),
        parameter_descriptions=_joined(param_texts),
    )
