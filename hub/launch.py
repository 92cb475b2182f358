"""Launching a stdio server and explaining why it did not start.

Two things an operator needs when a local server will not come up, decided before and after
the child runs:

- `resolve_command` finds the executable before anything is spawned. A command that is not on
  the search path (or a path that does not exist, is not executable, or a `cwd` that is not a
  directory) raises `CannotLaunch`, naming the command and every directory searched: a
  configuration problem that no restart can fix, so the supervisor does not retry it (it stays
  `failed` until a reload or `mcphub restart <server_id>`).
- `StderrTail` keeps the last lines a child wrote to stderr and picks the meaningful ones for
  `last_error` when the child exits: npm, for one, prints the `E404` that explains a failed
  `npx` several lines above its closing "A complete log of this run can be found in ...".
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections import deque
from typing import Final

from hub.errors import ServerUnavailable

__all__ = ["STDERR_TAIL_LINES", "CannotLaunch", "StderrTail", "resolve_command"]

STDERR_TAIL_LINES: Final = 6
"""How many meaningful stderr lines of an exited child `last_error` shows."""
_KEPT_LINES: Final = 64
"""Lines of stderr kept per connection attempt (the meaningful ones are picked from these)."""
_LINE_CHARS: Final = 240
"""A stderr line is cut to this many characters in `last_error`."""
_ANSI: Final = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


class CannotLaunch(ServerUnavailable):
    """A stdio server cannot be started as configured (its command is not found or not
    executable, or its `cwd` is not a directory). Never delivered; retrying cannot help, so the
    server is left `failed` until a reload or `mcphub restart`."""

    def __init__(self, server_id: str, message: str) -> None:
        super().__init__(server_id, message, delivered=False)


def _search_path() -> list[str]:
    """Where a bare command is looked up: the hub's PATH, then the directory of its own
    interpreter (its virtual environment's bin/, where servers installed with the hub live even
    when that environment is not activated)."""
    dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d]
    here = os.path.dirname(sys.executable)
    if here and here not in dirs:
        dirs.append(here)
    return dirs


def resolve_command(server_id: str, command: str, cwd: str | None = None) -> str:
    """The executable to start for `command`: a bare name is looked up on the search path (the
    hub's PATH, then beside the hub's interpreter) and returned as an absolute path; a path (it
    contains `/`) is checked as given, relative to `cwd` when one is set.

    :raises CannotLaunch: `cwd` is not a directory; the command is not found (the message names
        it and the directories searched); or it is not an executable file.
    """
    if cwd is not None and not os.path.isdir(cwd):
        raise CannotLaunch(server_id, f"cannot start {command!r}: its cwd {cwd!r} is not a directory")
    if os.sep in command:
        path = command if os.path.isabs(command) or cwd is None else os.path.join(cwd, command)
        if not os.path.exists(path):
            raise CannotLaunch(server_id, f"command not found: {command!r} (no such file)")
        if not os.path.isfile(path) or not os.access(path, os.X_OK):
            raise CannotLaunch(server_id, f"command {command!r} is not an executable file")
        return command
    dirs = _search_path()
    found = shutil.which(command, path=os.pathsep.join(dirs))
    if found is None:
        searched = os.pathsep.join(dirs) or "(empty)"
        raise CannotLaunch(server_id, f"command not found: {command!r} (searched PATH={searched})")
    return found


class StderrTail:
    """The last lines (at most 64) a stdio child wrote to stderr during one connection attempt.

    `summary()` gives the meaningful ones for `last_error`: ANSI codes removed, blank lines and
    repeats dropped, and a line dropped when a later kept line starts with it (npm repeats
    `npm error 404` alone between its real lines); the last `STDERR_TAIL_LINES` of what is left.
    """

    def __init__(self) -> None:
        self._lines: deque[str] = deque(maxlen=_KEPT_LINES)

    def __bool__(self) -> bool:
        return bool(self._lines)

    def append(self, line: str) -> None:
        self._lines.append(line)

    def clear(self) -> None:
        self._lines.clear()

    def meaningful(self, count: int = STDERR_TAIL_LINES) -> list[str]:
        """The last `count` meaningful lines, oldest first, each cut to 240 characters."""
        cleaned = [text for line in self._lines if (text := _ANSI.sub("", line).strip())]
        kept: list[str] = []
        for index, text in enumerate(cleaned):
            later = cleaned[index + 1 :]
            if text in later or any(other.startswith(text) for other in later):
                continue
            kept.append(text[:_LINE_CHARS])
        return kept[-count:]

    def summary(self) -> str | None:
        """`"<line> | <line> | ..."` of the meaningful lines, or None when there are none."""
        lines = self.meaningful()
        return " | ".join(lines) if lines else None
