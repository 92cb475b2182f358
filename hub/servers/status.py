"""What a server connection reports (/readyz, the admin API, metrics, `mcphub servers`): its
state refined by its circuit breaker and health checks, and its `ServerStatus`.

A connected server's reported state (`ServerConnection.health_state`) is `open` while its
breaker is not closed, `degraded` after recent failed requests or health checks
(`hub.servers.health`), else `ready`; a server that is not connected reports its own state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub.admission import BreakerState
from hub.servers.state import ServerState, ServerStatus

if TYPE_CHECKING:
    from hub.servers.connection import ServerConnection

__all__ = ["health_state", "status_of"]


def health_state(connection: ServerConnection) -> ServerState:
    """`connection.state`, refined for a connected server: `open` while its circuit is not
    closed, `degraded` after recent failed requests or health checks (`hub.servers.health`),
    else `ready`."""
    if connection.state is not ServerState.READY:
        return connection.state
    if connection.breaker.state is not BreakerState.CLOSED:
        return ServerState.OPEN
    if connection.breaker.consecutive_failures or connection.health_failures:
        return ServerState.DEGRADED
    return ServerState.READY


def status_of(connection: ServerConnection) -> ServerStatus:
    """The `ServerStatus` of `connection` now."""
    logical, slash, _ = connection.server_id.partition("/")
    snapshot = connection.snapshot
    return ServerStatus(
        server_id=connection.server_id,
        state=health_state(connection),
        transport=connection.config.kind,
        protocol_version=connection.protocol_version,
        tools=len(snapshot.tools),
        resources=len(snapshot.resources),
        resource_templates=len(snapshot.resource_templates),
        prompts=len(snapshot.prompts),
        last_error=connection.last_error,
        restarts=connection.restarts,
        since=connection.since,
        replica_of=logical if slash else None,
        breaker=connection.breaker.state.value,
        consecutive_failures=connection.breaker.consecutive_failures,
        in_flight=connection.in_flight,
        queued=connection.limiter.waiting,
    )
