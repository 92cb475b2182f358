"""What changed between a pinned definition and the current one, readable by a person
(`mcphub pins diff NAME`, `GET /admin/pins/diff`): pure functions, no I/O.

- The description (the text a model reads as instructions) as a unified diff, with invisible
  characters shown as `<U+XXXX>` so a hidden instruction cannot hide in the diff too.
- Everything else (name, inputSchema, outputSchema, annotations, arguments, ...) as a list of
  JSON paths added, removed or changed, with their values: e.g. an added required argument is
  `{"path": "$.inputSchema.required[1]", "change": "added", "new": "secret"}`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any, Final

from hub.hygiene import reveal

__all__ = ["MAX_DIFF_CHARS", "definition_diff", "json_changes"]

MAX_DIFF_CHARS: Final = 65_536
"""Longest description diff returned, in characters (a longer one ends with a marker)."""

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _path(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    if _PLAIN_KEY.fullmatch(key):
        return f"{parent}.{key}"
    escaped = key.replace("\\", "\\\\").replace('"', '\\"')
    return f'{parent}["{escaped}"]'


def json_changes(old: Any, new: Any, path: str = "$") -> list[dict[str, Any]]:
    """Differences between two JSON values as `{path, change: added|removed|changed, old?, new?}`,
    in document order (object keys sorted; arrays compared position by position)."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        changes: list[dict[str, Any]] = []
        for key in sorted(set(old) | set(new), key=str):
            where = _path(path, str(key))
            if key not in new:
                changes.append({"path": where, "change": "removed", "old": old[key]})
            elif key not in old:
                changes.append({"path": where, "change": "added", "new": new[key]})
            else:
                changes.extend(json_changes(old[key], new[key], where))
        return changes
    if isinstance(old, list) and isinstance(new, list):
        changes = []
        for index in range(max(len(old), len(new))):
            where = _path(path, index)
            if index >= len(new):
                changes.append({"path": where, "change": "removed", "old": old[index]})
            elif index >= len(old):
                changes.append({"path": where, "change": "added", "new": new[index]})
            else:
                changes.extend(json_changes(old[index], new[index], where))
        return changes
    if old == new and type(old) is type(new):
        return []
    return [{"path": path, "change": "changed", "old": old, "new": new}]


def definition_diff(pinned: Mapping[str, Any] | None, current: Mapping[str, Any]) -> dict[str, Any]:
    """`{"description": <unified diff or "">, "changes": [...]}` from `pinned` (None: nothing was
    pinned, so everything is added) to `current`."""
    before = dict(pinned or {})
    after = dict(current)
    old_text = before.pop("description", None)
    new_text = after.pop("description", None)
    description = ""
    if old_text != new_text:
        lines = difflib.unified_diff(
            reveal(old_text or "").splitlines(keepends=True),
            reveal(new_text or "").splitlines(keepends=True),
            fromfile="pinned description",
            tofile="current description",
        )
        description = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
        if len(description) > MAX_DIFF_CHARS:
            description = description[:MAX_DIFF_CHARS] + f"\n[... diff cut at {MAX_DIFF_CHARS} characters]\n"
    return {"description": description, "changes": json_changes(before, after)}
