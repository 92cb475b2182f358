"""The client request a server's traffic belongs to: the `ClientChannel` of the routed request,
named by the context variable `CURRENT_CHANNEL`.

While a server handles a routed request it may ask the client something (`sampling/createMessage`,
`elicitation/create`, `roots/list`) or tell it something (`notifications/message`). That traffic
arrives on the hub's server connection (`hub.servers.inbox`), which finds the client request it
belongs to here: the endpoint's handlers set `CURRENT_CHANNEL` around each routed request
(`hub.endpoint.server_requests.SessionChannel` for a handshake-era client,
`hub.endpoint.era_bridge.BridgedCall` for a modern-era one), the router and the server
connections read it. Both sides need it, so it lives below both.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Protocol

import mcp_types as types
from mcp_types import INVALID_REQUEST

__all__ = ["CURRENT_CHANNEL", "ClientChannel", "SamplingResult", "refusal"]

SamplingResult = types.CreateMessageResult | types.CreateMessageResultWithTools | types.ErrorData
"""What a client answers to `sampling/createMessage` (or the error the hub answers for it)."""


class ClientChannel(Protocol):
    """Where one client request can be asked and told things by the server that serves it.

    `client_key` identifies the client (its session, or its principal in the modern era) for
    `isolation: per_client` server connections.
    """

    @property
    def client_key(self) -> str: ...

    @property
    def modern(self) -> bool:
        """Whether the client speaks the modern era (2026-07-28)."""
        ...

    @property
    def capabilities(self) -> types.ClientCapabilities | None:
        """What the client declared (forwarded to modern-era servers in `_meta`)."""
        ...

    async def sample(self, params: types.CreateMessageRequestParams) -> SamplingResult: ...
    async def elicit(self, params: types.ElicitRequestParams) -> types.ElicitResult | types.ErrorData: ...
    async def list_roots(self) -> types.ListRootsResult | types.ErrorData: ...
    async def log(self, params: types.LoggingMessageNotificationParams) -> None: ...


CURRENT_CHANNEL: ContextVar[ClientChannel | None] = ContextVar("hub_client_channel", default=None)
"""The channel of the client request being routed (set by the faces around each routed call)."""


def refusal(message: str) -> types.ErrorData:
    """The JSON-RPC error (-32600, invalid request) answered to a server whose request cannot be
    relayed to a client."""
    return types.ErrorData(code=INVALID_REQUEST, message=message)
