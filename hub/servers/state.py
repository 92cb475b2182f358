"""What a server connection is and reports: its state, its listing, its status, and the error
for a connection lost mid-request.

These are plain data shared by the rest of `hub.servers`: the supervisor moves a connection
through `ServerState`, the lister publishes a `ServerSnapshot` to the catalog, /readyz, the
admin API and `mcphub servers` show a `ServerStatus`, and a request on a connection that closes
or breaks fails with `ConnectionLost` (the router's breaker counts one loss once).
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass
from typing import Any, Final

import mcp_types as types

from hub.errors import ServerUnavailable

__all__ = ["ConnectionLost", "ServerSnapshot", "ServerState", "ServerStatus", "new_generation"]


class ServerState(enum.StrEnum):
    """Where a server connection is in its life (shown in /readyz and `mcphub servers`)."""

    STARTING = "starting"
    READY = "ready"
    DEGRADED = "degraded"
    """Connected and serving, but recent requests or health checks failed."""
    OPEN = "open"
    """Connected, but its circuit breaker is open: requests fail fast (or go to a fallback)."""
    RESTARTING = "restarting"
    FAILED = "failed"
    STOPPED = "stopped"
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class ServerSnapshot:
    """Everything one server offered at its last listing (full cursor walk), original names;
    tools already filtered by the server's `tools: {include, exclude}`."""

    tools: tuple[types.Tool, ...] = ()
    resources: tuple[types.Resource, ...] = ()
    resource_templates: tuple[types.ResourceTemplate, ...] = ()
    prompts: tuple[types.Prompt, ...] = ()


class ConnectionLost(ServerUnavailable):
    """The server connection closed or broke while a request was on it. `generation` names the
    connection that was lost (`ServerConnection.generation`): every request in flight on it
    fails with the same one, and the circuit breaker counts them as one failure."""

    def __init__(self, server_id: str, message: str, *, delivered: bool, generation: int) -> None:
        super().__init__(server_id, message, delivered=delivered)
        self.generation = generation


_GENERATIONS: Final = itertools.count(1)
"""Connection generations, unique across every server connection of the process."""


def new_generation() -> int:
    """A connection generation never handed out before in this process (1, 2, ...)."""
    return next(_GENERATIONS)


@dataclass
class ServerStatus:
    """What /readyz and the admin API report for one server (no secrets)."""

    server_id: str
    state: ServerState
    transport: str
    protocol_version: str | None
    tools: int
    resources: int
    resource_templates: int
    prompts: int
    last_error: str | None
    restarts: int
    since: float
    """Unix time of the last state change."""
    replica_of: str | None = None
    """The logical server_id when this is a replica member (`<server_id>/<n>`)."""
    breaker: str = "closed"
    """`closed`, `open` or `half_open`."""
    consecutive_failures: int = 0
    in_flight: int = 0
    queued: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "server_id": self.server_id,
            "state": self.state.value,
            "transport": self.transport,
            "protocol_version": self.protocol_version,
            "tools": self.tools,
            "resources": self.resources,
            "resource_templates": self.resource_templates,
            "prompts": self.prompts,
            "last_error": self.last_error,
            "restarts": self.restarts,
            "since": self.since,
            "replica_of": self.replica_of,
            "breaker": self.breaker,
            "consecutive_failures": self.consecutive_failures,
            "in_flight": self.in_flight,
            "queued": self.queued,
        }
