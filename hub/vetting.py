"""What one server snapshot becomes before the catalog merges it (pure, computed once per
snapshot): its definitions with descriptions cleaned (`hub.hygiene`), the hygiene notes per
definition, and the fingerprint of every tool, prompt and resource template as the server sent
it (`hub.pins`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import mcp_types as types

from hub.config.trust import DescriptionsConfig
from hub.hygiene import clean_definition
from hub.pin_fingerprints import PINNED_KINDS, definition_of, fingerprint
from hub.servers import ServerSnapshot

__all__ = ["SNAPSHOT_KINDS", "VettedSnapshot", "original_of", "vet"]

SNAPSHOT_KINDS = ("tools", "resources", "resource_templates", "prompts")
"""The kinds a snapshot holds (the catalog's `Kind` values)."""


def original_of(item: types.Tool | types.Prompt | types.Resource | types.ResourceTemplate) -> str:
    """The original name (tools, prompts), URI (resources) or URI template of a definition."""
    if isinstance(item, types.Resource):
        return str(item.uri)
    if isinstance(item, types.ResourceTemplate):
        return item.uri_template
    return item.name


@dataclass(frozen=True, slots=True)
class VettedSnapshot:
    """One server snapshot as the catalog uses it."""

    raw: ServerSnapshot
    """What the server listed."""
    clean: ServerSnapshot
    """The same after description hygiene: what is listed to clients."""
    settings: DescriptionsConfig
    """The hygiene settings `clean` was made with."""
    notes: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    """`(kind, original) -> hygiene notes` (only definitions with findings)."""
    definitions: dict[tuple[str, str], tuple[str, dict[str, Any]]] = field(default_factory=dict)
    """`(kind, original) -> (fingerprint, definition)` of the raw tools, prompts and templates."""


def vet(snapshot: ServerSnapshot, settings: DescriptionsConfig) -> VettedSnapshot:
    """Clean and fingerprint one snapshot."""
    notes: dict[tuple[str, str], tuple[str, ...]] = {}
    definitions: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
    cleaned: dict[str, list[Any]] = {}
    for kind in SNAPSHOT_KINDS:
        cleaned[kind] = []
        for item in getattr(snapshot, kind):
            original = original_of(item)
            clean, found = clean_definition(item, settings)
            cleaned[kind].append(clean)
            if found:
                notes[(kind, original)] = found
            if kind in PINNED_KINDS:
                definition = definition_of(kind, item)
                definitions[(kind, original)] = (fingerprint(definition), definition)
    clean_snapshot = ServerSnapshot(
        tools=tuple(cleaned["tools"]),
        resources=tuple(cleaned["resources"]),
        resource_templates=tuple(cleaned["resource_templates"]),
        prompts=tuple(cleaned["prompts"]),
    )
    return VettedSnapshot(snapshot, clean_snapshot, settings, notes, definitions)
