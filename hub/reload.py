"""Hot reload: what a new config changes (a pure diff), and the report a reload answers with.

`plan_reload(old, new)` sorts servers into added, removed, replaced (any difference in their
entry) and unchanged, and lists the hub-level settings that differ but cannot change while the
hub runs (they need a restart; the running values are kept). `Hub.reload` (hub.app) has the
plan applied (`hub.reload_apply.ReloadApplication`): added servers start, replaced ones are
started anew, switched and the old connection drained, removed ones drained and stopped,
unchanged ones untouched (same process).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

from hub.config import HubConfig

__all__ = ["LIVE_SETTINGS", "ReloadPlan", "ReloadReport", "effective_config", "plan_reload"]

LIVE_SETTINGS: Final = frozenset({"servers", "drain_timeout_seconds", "shutdown_grace_seconds"})
"""Top-level config keys a reload applies while the hub runs; any other key that differs is
reported in `restart_required` and keeps its running value."""


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    """What a new config changes, by server_id (each tuple sorted)."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    replaced: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    restart_required: tuple[str, ...] = ()
    """Top-level settings that differ but only take effect after a restart (e.g. `listen`)."""

    @property
    def changes_servers(self) -> bool:
        return bool(self.added or self.removed or self.replaced)


def plan_reload(old: HubConfig, new: HubConfig) -> ReloadPlan:
    """The difference between the running config `old` and the new `new`; a server whose entry
    differs in any key is replaced (entries compare by value, after `${VAR}` interpolation)."""
    before, after = old.servers, new.servers
    return ReloadPlan(
        added=tuple(sorted(after.keys() - before.keys())),
        removed=tuple(sorted(before.keys() - after.keys())),
        replaced=tuple(sorted(sid for sid in before.keys() & after.keys() if before[sid] != after[sid])),
        unchanged=tuple(sorted(sid for sid in before.keys() & after.keys() if before[sid] == after[sid])),
        restart_required=tuple(
            sorted(
                key
                for key in type(new).model_fields
                if key not in LIVE_SETTINGS and getattr(old, key) != getattr(new, key)
            )
        ),
    )


def effective_config(old: HubConfig, new: HubConfig, plan: ReloadPlan) -> HubConfig:
    """`new`, with the running values kept for the settings that need a restart."""
    if not plan.restart_required:
        return new
    return new.model_copy(update={key: getattr(old, key) for key in plan.restart_required})


@dataclass
class ReloadReport:
    """The answer of `POST /admin/reload` and `mcphub reload` (JSON via `as_json`)."""

    status: Literal["applied", "unchanged", "rejected"]
    error: str | None = None
    """Why the new config was rejected (file, key path, reason); the old one keeps serving."""
    plan: ReloadPlan = field(default_factory=ReloadPlan)
    drain_seconds: dict[str, float] = field(default_factory=dict)
    """Per removed or replaced server: seconds from the switch until its last in-flight request
    finished (or the drain timeout ran out)."""
    drain_timed_out: list[str] = field(default_factory=list)
    """Servers stopped with requests still in flight because `drain_timeout_seconds` ran out."""
    states: dict[str, str] = field(default_factory=dict)
    """State of each added or replaced server's new connection after its first attempt."""

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "error": self.error,
            "added": list(self.plan.added),
            "removed": list(self.plan.removed),
            "replaced": list(self.plan.replaced),
            "unchanged": list(self.plan.unchanged),
            "restart_required": list(self.plan.restart_required),
            "drain_seconds": self.drain_seconds,
            "drain_timed_out": self.drain_timed_out,
            "states": self.states,
        }
