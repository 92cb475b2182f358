"""A definition's standing against its pin (or the lockfile), and the refusal of a held one.

`PinStatus` is what `hub.pins.Pins.status` answers for one definition: the catalog puts it on
routes (`mcphub routes`, `mcphub pins`, `/admin/pins`) and hides a held definition from lists. A
request that uses a held definition fails with `DefinitionHeld`, which the endpoint answers as
JSON-RPC `DEFINITION_HELD` (-32050) with its `data()` (`hub.endpoint.request_boundary`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from hub.config.trust import PinningMode
from hub.errors import HubError

__all__ = ["DEFINITION_HELD", "DefinitionHeld", "PinState", "PinStatus"]

DEFINITION_HELD: Final = -32050
"""JSON-RPC error code of a call, read, get or completion refused because the definition it
uses is held by pinning (server-defined range, JSON-RPC 2.0 section 5.1). `data` holds
`server_id`, `kind`, `name` (as the caller used it), `original`, `reason` (`changed`, `new`,
`not_in_lockfile`, `differs_from_lockfile`), `pinned` and `current` (fingerprints; `pinned` is
null for a new definition)."""

PinState = Literal["pinned", "changed", "new", "held"]
"""`pinned`: matches its pin (or the lockfile); `changed` / `new`: differs from its pin / has
none, served and flagged (`warn`); `held`: changed, new or not in the lockfile, and not served."""


def _short(fp: str | None) -> str:
    return "-" if fp is None else fp[: len("sha256:") + 12]


@dataclass(frozen=True, slots=True)
class PinStatus:
    """A definition's standing against its pin (or the lockfile), for routes and `mcphub pins`."""

    state: PinState
    mode: PinningMode
    current: str
    """The fingerprint of the definition the server lists now."""
    pinned: str | None = None
    """The pinned (or locked) fingerprint; None when there is none."""
    first_seen: str | None = None
    """When the pin was made (ISO 8601, UTC)."""
    last_changed: str | None = None
    """When the pinned definition last changed (by approval), ISO 8601 UTC."""
    pending_since: str | None = None
    """When the current, differing definition was first seen (ISO 8601, UTC)."""

    @property
    def served(self) -> bool:
        """Whether the definition is listed and may be used."""
        return self.state != "held"

    @property
    def reason(self) -> str | None:
        """Why it differs: `changed`, `new`, `not_in_lockfile` or `differs_from_lockfile` (None: it matches)."""
        if self.pinned == self.current:
            return None
        if self.mode == "locked":
            return "differs_from_lockfile" if self.pinned else "not_in_lockfile"
        return "changed" if self.pinned else "new"

    def note(self) -> str | None:
        """One line for the route's note column, or None when the definition matches its pin."""
        reason = self.reason
        if reason is None:
            return None
        what = {
            "changed": f"definition changed since pinned ({_short(self.pinned)} -> {_short(self.current)})",
            "new": f"new definition, not pinned ({_short(self.current)})",
            "not_in_lockfile": f"not in the lockfile ({_short(self.current)})",
            "differs_from_lockfile": f"differs from the lockfile ({_short(self.pinned)} -> {_short(self.current)})",
        }[reason]
        if self.state == "held":
            return f"held: {what}; `mcphub pins approve` serves it" if self.mode != "locked" else f"held: {what}"
        return f"pin: {what}"

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.state,
            "reason": self.reason,
            "mode": self.mode,
            "pinned": self.pinned,
            "current": self.current,
            "first_seen": self.first_seen,
            "last_changed": self.last_changed,
            "pending_since": self.pending_since,
        }


class DefinitionHeld(HubError):
    """A request uses a definition that pinning holds (changed, new, or not in the lockfile).

    Translated by the endpoint into JSON-RPC `DEFINITION_HELD` (-32050) with `data()`.
    """

    def __init__(self, server_id: str, kind: str, name: str, original: str, status: PinStatus) -> None:
        self.server_id = server_id
        self.kind = kind
        self.name = name
        self.original = original
        self.status = status
        why = {
            "changed": "its definition changed since it was pinned",
            "new": "its definition is new and not pinned yet",
            "not_in_lockfile": "its definition is not in the lockfile",
            "differs_from_lockfile": "its definition differs from the lockfile",
        }.get(status.reason or "", "its definition is not approved")
        fix = (
            "update the lockfile (`mcphub lock`) and reload"
            if status.mode == "locked"
            else f"an operator must approve it (`mcphub pins approve {name}`)"
        )
        super().__init__(
            f"{_singular(kind)} '{name}' of server '{server_id}' is held: {why} "
            f"(pinned {status.pinned or 'none'}, current {status.current}); {fix}"
        )

    def data(self) -> dict[str, Any]:
        """The JSON-RPC error's `data`."""
        return {
            "server_id": self.server_id,
            "kind": self.kind,
            "name": self.name,
            "original": self.original,
            "reason": self.status.reason,
            "pinned": self.status.pinned,
            "current": self.status.current,
        }


def _singular(kind: str) -> str:
    return {"tools": "tool", "prompts": "prompt", "resource_templates": "resource template"}.get(kind, kind)
