"""What of a definition is pinned, and its fingerprint (`hub.pins` compares them).

Every tool, prompt and resource template a server lists is fingerprinted: SHA-256 over its
definition as canonical JSON (sorted keys, no insignificant whitespace, ASCII escapes), taken as
the server sent it, before description hygiene (`hub.hygiene`). The fields that count:

| kind | fields |
| --- | --- |
| tools | name, title, description, inputSchema, outputSchema, annotations |
| prompts | name, title, description, arguments |
| resource templates | uriTemplate, name, title, description, mimeType, annotations |
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Final, Literal

import mcp_types as types

__all__ = ["PINNED_KINDS", "Definitions", "PinnedKind", "definition_of", "fingerprint"]

PinnedKind = Literal["tools", "prompts", "resource_templates"]
PINNED_KINDS: Final[tuple[PinnedKind, ...]] = ("tools", "prompts", "resource_templates")

Definitions = Mapping[tuple[str, str], tuple[str, Mapping[str, Any]]]
"""One server's current definitions: `(kind, original) -> (fingerprint, definition)`."""

_FIELDS: Final[Mapping[str, frozenset[str]]] = {
    "tools": frozenset({"name", "title", "description", "input_schema", "output_schema", "annotations"}),
    "prompts": frozenset({"name", "title", "description", "arguments"}),
    "resource_templates": frozenset({"uri_template", "name", "title", "description", "mime_type", "annotations"}),
}


def definition_of(kind: str, item: types.Tool | types.Prompt | types.ResourceTemplate) -> dict[str, Any]:
    """The fingerprinted part of a definition, as JSON with wire (camelCase) keys; absent and
    null fields are left out."""
    return item.model_dump(mode="json", by_alias=True, exclude_none=True, include=set(_FIELDS[kind]))


def fingerprint(definition: Mapping[str, Any]) -> str:
    """`sha256:<64 hex>` over `definition` as canonical JSON (sorted keys, separators `,` and
    `:`, non-ASCII as `\\u` escapes), so equal definitions always hash alike."""
    canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "sha256:" + hashlib.sha256(canonical.encode("ascii")).hexdigest()
