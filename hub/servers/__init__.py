"""Server connections: one supervised MCP client session per configured server.

The package, one concept per module (read `connection.py` first, it maps the rest)::

    fleet.py          Fleet: every configured server's connection, each in its own task
    connection.py     ServerConnection: the core and the surface the router calls
    calls.py            sending one request: deadline, in-flight bookkeeping, dedicated routing
    failures.py         error mapping: what an exception means, decided in one place
    supervisor.py       connect, list, serve, reconnect with backoff, crash-loop cap
    transport.py        which transport reaches the server, credentials, stderr, redaction
    listing.py          what the server offers, list_changed, expiry, the catalog snapshot
    session_state.py    resource subscriptions and logging level, restored on reconnect
    inbox.py            what the server sends unasked, relayed to the right client
    isolation.py        connections dedicated to one client (per_client) or one era
    health.py           checks of an idle server, feeding the circuit breaker
    state.py          ServerState, ServerSnapshot, ServerStatus, ConnectionLost
"""

from __future__ import annotations

from hub.servers.connection import ServerConnection
from hub.servers.fleet import Fleet
from hub.servers.state import ConnectionLost, ServerSnapshot, ServerState, ServerStatus

__all__ = ["ConnectionLost", "Fleet", "ServerConnection", "ServerSnapshot", "ServerState", "ServerStatus"]
