"""Description hygiene: invisible and control characters, and overlong descriptions, in what
the hub serves (pure functions, no I/O).

Descriptions reach language models as instructions, so a server can hide text in characters a
person reviewing the catalog never sees (Unicode tag characters that mirror ASCII, bidi
overrides that reorder what is displayed, zero-width characters) or bury the catalog under a
megabyte of text (OWASP MCP Top 10, MCP03 tool poisoning; Invariant Labs, "tool poisoning
attacks", 2025). With `descriptions.sanitize`:

- `strip` (default): those characters are removed;
- `flag`: they are left in place;
- `off`: descriptions pass unchanged (not even cut).

In `strip` and `flag` a description longer than `max_chars` is cut and ends with a visible
marker, and every change (or, with `flag`, every finding) becomes a note on the route
(`mcphub routes`, `mcphub check --connect`, `/admin/routes`), e.g.
`description: stripped 12 invisible characters (Unicode tags)` or
`description: cut from 1048576 to 4096 characters`.

What is cleaned: the `description` of tools, prompts, resources and resource templates, of each
prompt argument, and every string `description` at any depth of a tool's `inputSchema` and
`outputSchema`. Pins (`hub.pins`, `hub.pin_fingerprints`) fingerprint the definition before any of this.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from typing import Any, Final, TypeVar

import mcp_types as types

from hub.config.trust import DescriptionsConfig

__all__ = ["CUT_MARKER", "INVISIBLE_CATEGORIES", "clean_definition", "clean_text", "reveal"]

INVISIBLE_CATEGORIES: Final[tuple[tuple[str, str], ...]] = (
    ("Unicode tags", "\U000e0000-\U000e007f"),
    ("bidi controls", "\u202a-\u202e\u2066-\u2069"),
    ("zero-width", "\u200b-\u200d\u2060\ufeff"),
    ("control characters", "\x00-\x08\x0b-\x1f\x7f-\x9f"),
)
"""`(category, regex character-class body)` of what hygiene strips or flags: Unicode tags
U+E0000-E007F, bidi overrides and isolates U+202A-202E and U+2066-2069, zero-width U+200B-200D,
U+2060 and U+FEFF, and C0 controls other than tab (U+0009) and newline (U+000A), DEL and C1
controls (U+007F-009F)."""

CUT_MARKER: Final = " [... cut by mcphub: {original} characters, {kept} shown]"
"""Appended to a description cut at `max_chars` (the whole result stays within `max_chars`)."""

_ANY_INVISIBLE = re.compile("[" + "".join(body for _, body in INVISIBLE_CATEGORIES) + "]")
_BY_CATEGORY = tuple((name, re.compile(f"[{body}]")) for name, body in INVISIBLE_CATEGORIES)


def clean_text(text: str, settings: DescriptionsConfig) -> tuple[str, list[str]]:
    """One description, cleaned per `settings`, and what was done to it (no field name).

    :returns: `(text to serve, findings)`, e.g. `["stripped 3 invisible characters (zero-width)",
        "cut from 5000 to 4096 characters"]`; no findings when nothing was found.
    """
    if settings.sanitize == "off":
        return text, []
    findings: list[str] = []
    if _ANY_INVISIBLE.search(text) is not None:
        counts = Counter({name: len(pattern.findall(text)) for name, pattern in _BY_CATEGORY})
        total = sum(counts.values())
        kinds = ", ".join(f"{name} {count}" if len(+counts) > 1 else name for name, count in (+counts).items())
        plural = "s" if total != 1 else ""
        if settings.sanitize == "strip":
            text = _ANY_INVISIBLE.sub("", text)
            findings.append(f"stripped {total} invisible character{plural} ({kinds})")
        else:
            findings.append(f"{total} invisible character{plural} left in place ({kinds}; sanitize: flag)")
    if len(text) > settings.max_chars:
        original = len(text)
        text = text[: _kept(original, settings.max_chars)]
        text += CUT_MARKER.format(original=original, kept=len(text))
        findings.append(f"cut from {original} to {settings.max_chars} characters")
    return text, findings


def _kept(original: int, max_chars: int) -> int:
    """How many characters to keep so that they and the marker naming their count fill `max_chars`."""

    def total(kept: int) -> int:
        return kept + len(CUT_MARKER.format(original=original, kept=kept))

    kept = max(0, max_chars - len(CUT_MARKER.format(original=original, kept=max_chars)))
    while kept > 0 and total(kept) > max_chars:
        kept -= 1
    while total(kept + 1) <= max_chars:
        kept += 1
    return kept


def reveal(text: str) -> str:
    """`text` with every invisible or control character written as `<U+XXXX>` (for diffs and
    reviews, where a hidden character must be seen)."""
    return _ANY_INVISIBLE.sub(lambda match: f"<U+{ord(match.group()):04X}>", text)


class _Notes:
    """Findings of one definition, each prefixed with the field it was found in."""

    def __init__(self, settings: DescriptionsConfig) -> None:
        self.settings = settings
        self.notes: list[str] = []

    def text(self, where: str, value: str | None) -> str | None:
        if value is None:
            return None
        cleaned, findings = clean_text(value, self.settings)
        self.notes.extend(f"{where}: {finding}" for finding in findings)
        return cleaned

    def schema(self, where: str, node: Any) -> Any:
        """A JSON schema with every string `description` (at any depth) cleaned; same object when
        nothing changed."""
        if isinstance(node, Mapping):
            changed = False
            out: dict[str, Any] = {}
            for key, value in node.items():
                path = f"{where}.{key}"
                new = self.text(path, value) if key == "description" and isinstance(value, str) else None
                if new is None:
                    new = self.schema(path, value)
                changed = changed or new is not value
                out[key] = new
            return out if changed else node
        if isinstance(node, list):
            items = [self.schema(f"{where}[{index}]", item) for index, item in enumerate(node)]
            return items if any(new is not old for new, old in zip(items, node, strict=True)) else node
        return node


_DefinitionT = TypeVar("_DefinitionT", types.Tool, types.Prompt, types.Resource, types.ResourceTemplate)


def clean_definition(item: _DefinitionT, settings: DescriptionsConfig) -> tuple[_DefinitionT, tuple[str, ...]]:
    """A tool, prompt, resource or resource template with its descriptions cleaned, and the
    notes saying what was found (`description: ...`, `inputSchema.properties.x.description: ...`,
    `arguments[0].description: ...`). The same object comes back when nothing changed."""
    if settings.sanitize == "off":
        return item, ()
    notes = _Notes(settings)
    update: dict[str, Any] = {}
    description = notes.text("description", item.description)
    if description != item.description:
        update["description"] = description
    if isinstance(item, types.Tool):
        _clean_schema(notes, update, "inputSchema", "input_schema", item.input_schema)
        _clean_schema(notes, update, "outputSchema", "output_schema", item.output_schema)
    elif isinstance(item, types.Prompt) and item.arguments:
        arguments = [_clean_argument(notes, index, argument) for index, argument in enumerate(item.arguments)]
        if any(new is not old for new, old in zip(arguments, item.arguments, strict=True)):
            update["arguments"] = arguments
    cleaned = item.model_copy(update=update) if update else item
    return cleaned, tuple(notes.notes)


def _clean_schema(
    notes: _Notes, update: dict[str, Any], where: str, field: str, schema: Mapping[str, Any] | None
) -> None:
    if schema is None:
        return
    cleaned = notes.schema(where, schema)
    if cleaned is not schema:
        update[field] = cleaned


def _clean_argument(notes: _Notes, index: int, argument: types.PromptArgument) -> types.PromptArgument:
    description = notes.text(f"arguments[{index}].description", argument.description)
    if description == argument.description:
        return argument
    return argument.model_copy(update={"description": description})
