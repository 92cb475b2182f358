"""Push-style server requests from dual-era servers: `protocol: both`, made automatic.

A server built on `mcp` 2.x serves both eras, so under `protocol: auto` the hub speaks the modern
era (2026-07-28) to it. A tool written as for `mcp` 1.x pushes its questions to the client
mid-call (`ctx.session.create_message(...)`, `ctx.elicit(...)`, `ctx.session.list_roots()`)
instead of returning an `InputRequiredResult`; the modern era has no channel for a server's
requests, so the server's SDK refuses the push with `NoBackChannelError`, and the call fails
with it (-32600 "Cannot send 'sampling/createMessage': this transport context has no
back-channel for server-initiated requests.").

The hub recognises exactly that error (`pushed_method`: the SDK's own message for one of the
three pushed methods, code -32600, no data) on a modern-era connection of a server under
`protocol: auto` or `both`, and from then on (`PushingServers`: per logical server, until a
reload replaces its entry) sends that server's `tools/call`, `prompts/get` and `resources/read`
over a handshake-era connection it opens on demand, the one `protocol: both` opens for
handshake-era clients (for a stdio server, a second process), and every request of a
handshake-era client too. The server's lists, its change announcements and the rest of a
modern-era client's requests stay on the modern-era connection.

On that connection a push reaches the client whose request caused it (`hub.endpoint.server_requests`): a
handshake-era client gets it as a server-to-client request, a modern-era client as an
`InputRequiredResult` round (`hub.endpoint.era_bridge`). A handshake-era connection over stdio carries one
stream for every call, so pushes are relayed only while a single call is in flight on it (the
limit of every handshake-era stdio server; `isolation: per_client` lifts it).

The call that failed is sent once more, over the new connection (the endpoint does it, so a
modern-era client's retry is bridged): the error proves that the server's handler stopped at
its push, before finishing its work and before any answer. A handler that changed something
before pushing does that part twice; a handler that pushes first (asking for what it needs to
proceed, the common shape) is unaffected. A retry that fails again is answered as it is. A
modern-era client that was answering the server's own `InputRequiredResult` rounds when the
push came starts the call afresh (bridged): the server's `requestState` belongs to the other era.
"""

from __future__ import annotations

from typing import Final

from mcp import MCPError
from mcp.shared.exceptions import NoBackChannelError
from mcp_types import INVALID_REQUEST

from hub.errors import ServerError

__all__ = ["CARRYING_METHODS", "PUSHED_METHODS", "PushNeedsHandshakeEra", "PushingServers", "pushed_method"]

PUSHED_METHODS: Final = ("sampling/createMessage", "elicitation/create", "roots/list")
"""The server-to-client requests a handler may push mid-call (2025-11-25 "Client features")."""
CARRYING_METHODS: Final = frozenset({"tools/call", "prompts/get", "resources/read"})
"""The requests whose handlers may ask the client something (the ones a modern-era server may
answer with an `InputRequiredResult`, 2026-07-28 SEP-2322)."""

_REFUSALS: Final = {NoBackChannelError(method).message: method for method in PUSHED_METHODS}
"""The SDK's `NoBackChannelError` message for each pushed method, as it arrives on the wire."""


def pushed_method(exc: MCPError) -> str | None:
    """The method a server's handler tried to push, when `exc` is the SDK's refusal of a push on
    a connection with no back-channel (`mcp.shared.exceptions.NoBackChannelError`: -32600, its
    exact message, no data); else None. A server's other -32600 errors are not it."""
    if isinstance(exc, NoBackChannelError):
        return exc.method if exc.method in PUSHED_METHODS else None
    if exc.code != INVALID_REQUEST or exc.data is not None:
        return None
    return _REFUSALS.get(exc.message)


class PushNeedsHandshakeEra(ServerError):
    """A request to a server on its modern-era connection failed because the server's handler
    pushed `pushed` (`pushed_method`); the server's requests now go over a handshake-era
    connection, so the request may be sent again (see the module docstring).

    :param request: the request that failed (`tools/call`, `prompts/get`, `resources/read`).
    """

    def __init__(self, server_id: str, pushed: str, request: str) -> None:
        super().__init__(
            server_id,
            f"{request} at {server_id} pushed {pushed}, which a 2026-07-28 connection cannot carry; "
            f"the hub now sends its {', '.join(sorted(CARRYING_METHODS))} over a handshake-era connection",
        )
        self.pushed = pushed
        self.request = request


class PushingServers:
    """The servers found to push (`PushNeedsHandshakeEra`), by logical server_id (a replica
    member `<server_id>/<n>` counts for its server): shared by the fleet's connections."""

    def __init__(self) -> None:
        self._server_ids: set[str] = set()

    @staticmethod
    def _logical(server_id: str) -> str:
        return server_id.partition("/")[0]

    def learn(self, server_id: str) -> bool:
        """Record that `server_id` pushes; True when this is news."""
        logical = self._logical(server_id)
        if logical in self._server_ids:
            return False
        self._server_ids.add(logical)
        return True

    def forget(self, server_id: str) -> None:
        """Forget what was learnt about `server_id` (its entry changed: it may have changed too)."""
        self._server_ids.discard(self._logical(server_id))

    def __contains__(self, server_id: object) -> bool:
        return isinstance(server_id, str) and self._logical(server_id) in self._server_ids
