"""The lockfile (`hub.lock`): every tool, prompt and resource-template definition the fleet may
serve, with its fingerprint, so that approving a fleet change is reviewing a diff in git.

`mcphub lock` starts every server once and writes it; `pinning: locked` (or `mcphub serve
--locked`) serves only definitions whose fingerprint (`hub.pin_fingerprints.fingerprint`) matches their
entry. The format is YAML with sorted keys and non-ASCII characters escaped (so invisible
characters show up in a review):

```yaml
version: 1
servers:
  fx:
    prompts: {}
    resource_templates: {}
    tools:
      echo:
        definition: {description: Echo the text back., inputSchema: {...}, name: echo}
        fingerprint: sha256:<64 hex>
```

Each entry's fingerprint is checked against its definition when the file is read, so a
definition edited by hand (without its fingerprint) is refused rather than trusted.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import yaml

from hub.errors import ConfigError
from hub.pin_fingerprints import PINNED_KINDS, fingerprint
from hub.pins import PinKey

__all__ = ["LOCKFILE_VERSION", "LockEntries", "read_lockfile", "render_lockfile", "write_lockfile"]

LOCKFILE_VERSION: Final = 1

LockEntries = dict[PinKey, tuple[str, Mapping[str, Any]]]
"""`(server_id, kind, original) -> (fingerprint, definition)`."""

_HEADER: Final = (
    "# mcphub lockfile: the tool, prompt and resource-template definitions this fleet may serve\n"
    "# with `pinning: locked` or `mcphub serve --locked`. Written by `mcphub lock`; review its\n"
    "# changes like code. A fingerprint is SHA-256 over the definition's canonical JSON.\n"
)


def render_lockfile(entries: LockEntries, server_ids: list[str] | None = None) -> str:
    """The lockfile text for `entries` (stable: sorted keys, one block per server and kind).

    :param server_ids: servers to list even when they offer nothing (an empty block each).
    """
    servers: dict[str, dict[str, dict[str, Any]]] = {
        sid: {kind: {} for kind in PINNED_KINDS} for sid in (server_ids or [])
    }
    for (server_id, kind, name), (fp, definition) in entries.items():
        block = servers.setdefault(server_id, {k: {} for k in PINNED_KINDS})
        block[kind][name] = {"fingerprint": fp, "definition": dict(definition)}
    document = {"version": LOCKFILE_VERSION, "servers": servers}
    body = yaml.safe_dump(document, sort_keys=True, allow_unicode=False, default_flow_style=False, width=100)
    return _HEADER + body


def write_lockfile(path: Path, entries: LockEntries, server_ids: list[str] | None = None) -> None:
    """Write the lockfile atomically (a temporary file in the same directory, then a rename).

    :raises OSError: the directory is not writable.
    """
    text = render_lockfile(entries, server_ids)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_lockfile(path: Path) -> LockEntries:
    """Read and check a lockfile.

    :raises ConfigError: it cannot be read or parsed, has the wrong shape, or an entry's
        fingerprint does not match its definition (naming the file and the entry).
    """
    file = str(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("no lockfile here; write one with `mcphub lock`", file=file) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the lockfile: {exc}", file=file) from None
    if not isinstance(document, dict) or document.get("version") != LOCKFILE_VERSION:
        raise ConfigError(f"not an mcphub lockfile of version {LOCKFILE_VERSION}", file=file)
    servers = document.get("servers") or {}
    if not isinstance(servers, dict):
        raise ConfigError("must be a mapping of server_id to definitions", file=file, key_path="servers")
    entries: LockEntries = {}
    for server_id, kinds in servers.items():
        if not isinstance(kinds, dict):
            raise ConfigError("must be a mapping of kinds", file=file, key_path=f"servers.{server_id}")
        for kind, items in kinds.items():
            where = f"servers.{server_id}.{kind}"
            if kind not in PINNED_KINDS or not isinstance(items, dict):
                raise ConfigError(f"expected one of {', '.join(PINNED_KINDS)}, as a mapping", file=file, key_path=where)
            for name, entry in items.items():
                entries[(str(server_id), kind, str(name))] = _entry(entry, file, f"{where}.{name}")
    return entries


def _entry(entry: Any, file: str, where: str) -> tuple[str, Mapping[str, Any]]:
    if not isinstance(entry, dict) or not isinstance(entry.get("definition"), dict):
        raise ConfigError("needs a fingerprint and a definition", file=file, key_path=where)
    definition = entry["definition"]
    if entry.get("fingerprint") != fingerprint(definition):
        raise ConfigError(
            "the fingerprint does not match the definition (edited by hand? run `mcphub lock` again)",
            file=file,
            key_path=where,
        )
    return entry["fingerprint"], definition
