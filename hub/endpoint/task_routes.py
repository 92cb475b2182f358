"""The task route table: where each task relayed by the hub lives, and whose it is.

A route maps the task id a client sees (`<server connection id>+<the server's task id>`) to
the server connection holding the task, bound to the principal that created it. Routes are
kept by `(principal, exposed id)` (another principal's id is simply not there), bounded per
principal and in all (the oldest is forgotten first, with a warning), and expire with the
task's `ttl`. Everything is in memory (one hub process).
"""

from __future__ import annotations

import logging
import time
import weakref
from dataclasses import dataclass
from typing import Any, Final, Literal

from hub.principals import Principal

__all__ = [
    "HANDSHAKE",
    "MAX_RETENTION_SECONDS",
    "MAX_ROUTES",
    "MAX_TASKS_PER_PRINCIPAL",
    "MODERN",
    "Era",
    "TaskRoute",
    "TaskRoutes",
    "principal_key",
    "retention_seconds",
]

logger = logging.getLogger(__name__)

MAX_RETENTION_SECONDS: Final = 24 * 3600.0
"""Longest a route is kept (a task with `ttl: null`, or a longer ttl, is reachable this long)."""
MAX_TASKS_PER_PRINCIPAL: Final = 10_000
"""Routes kept per principal; beyond it the oldest is forgotten (logged)."""
MAX_ROUTES: Final = 100_000
"""Routes kept in all; beyond it the oldest is forgotten (logged)."""
_SWEEP_INTERVAL_SECONDS: Final = 30.0
"""How often, at most, `TaskRoutes.add` sweeps out expired routes."""
_TTL_GRACE_SECONDS: Final = 60.0
"""Kept this much past the task's `ttl` (a server may keep it a little longer)."""

Era = Literal["2025-11-25", "2026-07-28"]
"""Which form of tasks a route belongs to: 2025-11-25 experimental tasks, or SEP-2663."""
HANDSHAKE: Final[Era] = "2025-11-25"
MODERN: Final[Era] = "2026-07-28"


@dataclass
class TaskRoute:
    """Where one task lives and whose it is."""

    exposed_id: str
    """`<member>+<original_id>`: the id the client sees."""
    principal: str
    """`<auth source>:<principal id>` of the creator."""
    route_server: str
    """The logical server of the route it was created on (a face reaches its own servers' tasks)."""
    member: str
    """The server connection holding the task (a replica member or fallback server)."""
    original_id: str
    policy_key: tuple[str, str]
    """`(server_id, exposed tool name)`: what the policy decides on."""
    original_tool: str
    era: Era
    created: float
    """`time.monotonic()` at creation."""
    expires: float
    session: weakref.ref[Any] | None = None
    """The handshake-era session that created it (its status notifications go there)."""

    def refresh(self, ttl_ms: Any) -> None:
        """Follow the task's current `ttl`/`ttlMs` (it MAY change; null: unlimited)."""
        self.expires = self.created + retention_seconds(ttl_ms)


def retention_seconds(ttl_ms: Any) -> float:
    """How long to keep a route for a task whose `ttl`/`ttlMs` is `ttl_ms` (milliseconds;
    null or absent: unlimited), in seconds: the ttl plus a minute, at most
    `MAX_RETENTION_SECONDS`."""
    if isinstance(ttl_ms, int | float) and not isinstance(ttl_ms, bool) and ttl_ms >= 0:
        return min(ttl_ms / 1000 + _TTL_GRACE_SECONDS, MAX_RETENTION_SECONDS)
    return MAX_RETENTION_SECONDS


def principal_key(principal: Principal) -> str:
    """`<auth source>:<principal id>`: an API key id and a JWT subject of the same name are
    different owners (they never share a session either)."""
    return f"{principal.source}:{principal.id}"


class TaskRoutes:
    """Routes by `(principal, exposed id)`, bounded per principal and in all, expiring lazily."""

    def __init__(self, max_per_principal: int = MAX_TASKS_PER_PRINCIPAL, max_routes: int = MAX_ROUTES) -> None:
        self._max_per_principal = max_per_principal
        self._max_routes = max_routes
        self._routes: dict[tuple[str, str], TaskRoute] = {}  # insertion order: oldest first
        self._by_principal: dict[str, dict[str, None]] = {}
        self._by_exposed: dict[str, set[str]] = {}
        self._next_sweep = time.monotonic() + _SWEEP_INTERVAL_SECONDS

    def __len__(self) -> int:
        return len(self._routes)

    def add(self, route: TaskRoute) -> None:
        """Record `route` (replacing the principal's route of the same id), forgetting the
        principal's oldest beyond its cap, then the oldest overall beyond the total cap."""
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + _SWEEP_INTERVAL_SECONDS
            for expired in [r for r in self._routes.values() if r.expires <= now]:
                self.drop(expired)
        self.drop(route)
        owned = self._by_principal.setdefault(route.principal, {})
        while len(owned) >= self._max_per_principal:
            oldest = self._routes[(route.principal, next(iter(owned)))]
            logger.warning("tasks: %s holds %d tasks; forgetting its oldest", route.principal, len(owned))
            self.drop(oldest)
        while len(self._routes) >= self._max_routes:
            oldest = next(iter(self._routes.values()))
            logger.warning("tasks: %d tasks routed; forgetting the oldest", len(self._routes))
            self.drop(oldest)
        self._routes[(route.principal, route.exposed_id)] = route
        owned[route.exposed_id] = None
        self._by_exposed.setdefault(route.exposed_id, set()).add(route.principal)

    def get(self, principal: str, exposed_id: str) -> TaskRoute | None:
        """`principal`'s route for `exposed_id`; None when it has none (or it expired)."""
        route = self._routes.get((principal, exposed_id))
        if route is not None and route.expires <= time.monotonic():
            self.drop(route)
            return None
        return route

    def of(self, principal: str) -> list[TaskRoute]:
        """`principal`'s live routes, oldest first."""
        routes = [self.get(principal, exposed) for exposed in list(self._by_principal.get(principal, ()))]
        return [route for route in routes if route is not None]

    def holding(self, exposed_id: str) -> list[TaskRoute]:
        """Every live route of `exposed_id`, whoever owns it (status notifications)."""
        routes = [self.get(principal, exposed_id) for principal in list(self._by_exposed.get(exposed_id, ()))]
        return [route for route in routes if route is not None]

    def drop(self, route: TaskRoute) -> None:
        """Forget `route` (no-op if it is not recorded)."""
        if self._routes.pop((route.principal, route.exposed_id), None) is None:
            return
        owned = self._by_principal.get(route.principal)
        if owned is not None:
            owned.pop(route.exposed_id, None)
            if not owned:
                del self._by_principal[route.principal]
        holders = self._by_exposed.get(route.exposed_id)
        if holders is not None:
            holders.discard(route.principal)
            if not holders:
                del self._by_exposed[route.exposed_id]
