"""What a hub keeps across restarts: one JSON file in its state directory.

The file holds the hub's `hub_id` (generated once, unless the config sets one; federation uses
it to detect loops) and its tool-definition pins (`hub.pins`). Where it lives:

- `state_dir` set in the config: `<state_dir>/state.json`;
- otherwise the user's state directory (`platformdirs.user_state_dir("mcphub")`, e.g.
  `~/.local/state/mcphub` on Linux), one file per config file (`<stem>-<8 hex of a SHA-256 of
  its absolute path>.json`, `default.json` for a config that came from no file), so two hubs
  started from different files on one machine are two hubs, and replicas started from the same
  file share one identity.

Writes are atomic (a temporary file in the same directory, fsync, `os.replace`), so a crash
never leaves a half-written file; a file that cannot be parsed is kept aside as
`<name>.corrupt-<unix time>` and the hub starts with an empty state (logged as an error).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any, Final

import orjson
import platformdirs

__all__ = ["STATE_FILE_NAME", "StateFile", "default_state_path", "new_hub_id", "state_path"]

logger = logging.getLogger(__name__)


def _encode(data: dict[str, Any]) -> bytes:
    """The file's bytes: JSON in UTF-8, keys sorted, indented, ending with a newline. orjson
    writes 10,000 pinned definitions in ~20 ms (the stdlib's `json.dump` with an indent runs
    its pure-Python encoder: ~1 s, in a worker thread but holding the interpreter lock the event
    loop needs); a value orjson cannot write (an integer past 64 bits) falls back to `json`."""
    try:
        return orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:
        return (json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


STATE_FILE_NAME: Final = "state.json"
"""The file's name inside a configured `state_dir`."""

_APP_NAME: Final = "mcphub"
_HUB_ID_BYTES: Final = 6
"""Random bytes in a generated hub_id (`hub-` + 12 hex characters)."""


def new_hub_id() -> str:
    """A fresh random hub_id: `hub-` followed by 12 lowercase hex characters."""
    return f"hub-{secrets.token_hex(_HUB_ID_BYTES)}"


def state_path(state_dir: str | None, source: str | None) -> Path:
    """Where a hub's state file is: `<state_dir>/state.json` when the config sets `state_dir`,
    else `default_state_path(source)`."""
    if state_dir:
        return Path(state_dir).expanduser() / STATE_FILE_NAME
    return default_state_path(source)


def default_state_path(source: str | None) -> Path:
    """The state file of a hub whose config has no `state_dir`, keyed by the config's origin.

    :param source: the config file's path, or None for a config that came from no file.
    """
    base = Path(platformdirs.user_state_dir(_APP_NAME))
    if source is None:
        return base / "default.json"
    resolved = str(Path(source).resolve())
    digest = hashlib.sha256(resolved.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    stem = "".join(c if c.isalnum() or c in "-_" else "-" for c in Path(source).stem)[:40] or "hub"
    return base / f"{stem}-{digest}.json"


class StateFile:
    """One hub's state file: named sections of JSON, read whole and written atomically.

    :param path: the file (its directory is created on the first write, mode 0700).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._data: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._data is not None:
            return self._data
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            self._data = {}
            return self._data
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("the document is not a JSON object")
        except ValueError as exc:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            os.replace(self.path, aside)
            logger.error("state file %s is unreadable (%s); kept it as %s and started afresh", self.path, exc, aside)
            data = {}
        self._data = data
        return data

    def get(self, section: str) -> Any:
        """The section's value, or None when it was never written."""
        return self._load().get(section)

    def put(self, section: str, value: Any) -> None:
        """Replace one section and write the file (atomically).

        :raises OSError: the directory cannot be created or written.
        """
        data = dict(self._load())
        data[section] = value
        self._write(data)
        self._data = data

    def hub_id(self, configured: str | None = None) -> str:
        """The hub's id: `configured` when given, else the one stored in the file, else a new
        one (stored at once, so it is stable across restarts)."""
        if configured:
            return configured
        stored = self.get("hub_id")
        if isinstance(stored, str) and stored:
            return stored
        hub_id = new_hub_id()
        try:
            self.put("hub_id", hub_id)
        except OSError as exc:
            logger.error("cannot store the generated hub_id in %s (%s); it changes at each start", self.path, exc)
        return hub_id

    def _write(self, data: dict[str, Any]) -> None:
        directory = self.path.parent
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=directory)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(_encode(data))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
