"""Where tool-definition pins persist (`hub.pins`): one JSON document behind a small
interface, so that replicas can later share a store (Redis) instead of the state file.

- `StatePinStore`: the hub's state file (`hub.state`), section `pins` (the default);
- `ReadOnlyPinStore`: the same, never written (`mcphub check --connect`, `mcphub lock`);
- `MemoryPinStore`: in memory only.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Final, Protocol

from hub.state import StateFile

__all__ = ["STATE_SECTION", "MemoryPinStore", "PinStore", "ReadOnlyPinStore", "StatePinStore"]

STATE_SECTION: Final = "pins"
"""The state file's section holding pins (`hub.state`)."""


class PinStore(Protocol):
    """Where pins persist: one JSON document, read at start and written after each change."""

    def load(self) -> Mapping[str, Any] | None:
        """The stored document, or None when nothing was stored yet."""
        ...

    def save(self, document: Mapping[str, Any]) -> None:
        """Replace the stored document (atomically).

        :raises OSError: it could not be written.
        """
        ...


class StatePinStore:
    """Pins in the hub's state file (`hub.state`), section `pins`."""

    def __init__(self, state: StateFile) -> None:
        self._state = state

    def load(self) -> Mapping[str, Any] | None:
        document = self._state.get(STATE_SECTION)
        return document if isinstance(document, Mapping) else None

    def save(self, document: Mapping[str, Any]) -> None:
        self._state.put(STATE_SECTION, dict(document))


class ReadOnlyPinStore(StatePinStore):
    """The state file's pins, never written (`mcphub check --connect`, `mcphub lock`: they show
    pin status without pinning anything)."""

    def save(self, document: Mapping[str, Any]) -> None:
        return None


class MemoryPinStore:
    """Pins kept in memory only (a hub without a state file, tests)."""

    def __init__(self) -> None:
        self.document: dict[str, Any] | None = None

    def load(self) -> Mapping[str, Any] | None:
        return self.document

    def save(self, document: Mapping[str, Any]) -> None:
        self.document = copy.deepcopy(dict(document))
