"""What every face shares beyond the catalog and the router (`FaceServices`): the fleet's
server connections, the era bridge, the resource subscription table, the task route table and
the per-session state the replicas share. `hub.endpoint.face_servers` builds one per face; the
handlers, the listen handler and `HubServer`'s capabilities read it.
"""

from __future__ import annotations

from dataclasses import dataclass

from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from hub.cluster.session_state import SessionState
from hub.endpoint.era_bridge import Bridge
from hub.endpoint.server_requests import Subscriptions
from hub.endpoint.task_relay import TaskRelay
from hub.servers import Fleet, ServerConnection

__all__ = ["FaceServices"]


@dataclass
class FaceServices:
    """What the faces share beyond the catalog and router: the server connections (era,
    subscriptions, logging level), the era bridge, the subscription table, tasks and the
    sessions' shared state.

    :param scope: the one server a per-server face fronts, or None for the aggregated face
        (and a profile's).
    """

    fleet: Fleet
    bridge: Bridge
    subscriptions: Subscriptions
    tasks: TaskRelay
    """The task route table (`hub.endpoint.task_relay`), shared by every face."""
    sessions: SessionState
    """Per-session state the replicas share (`hub.cluster.session_state`): log levels and
    subscriptions of handshake-era sessions, so that any replica can serve them."""
    scope: str | None = None

    def connections(self) -> list[ServerConnection]:
        """The server connections of the face: its one server's, or the whole fleet's."""
        if self.scope is not None:
            connection = self.fleet.get(self.scope)
            return [connection] if connection is not None else []
        return list(self.fleet.connections.values())

    def is_modern(self, server_id: str) -> bool:
        """Whether `server_id` (a replicated one: any of its members) speaks the modern era to
        requests that may push: not once it was found to push (`hub.push_era`)."""
        return any(
            c.protocol_version in MODERN_PROTOCOL_VERSIONS and not c.pushes_over_handshake_era
            for c in self.fleet.members(server_id)
        )
