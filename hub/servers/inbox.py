"""The inbox: what a server sends the hub unasked, and to which client it goes.

While a call is in flight a server may send notifications (log messages, progress goes with
the call itself), change notifications (list_changed, resources/updated, task status) and
requests of its own (sampling, elicitation, roots: 2025-11-25 "Client features"). The SDK hands
them to the callbacks of `Inbox`; it finds the client they belong to (`hub.endpoint.server_requests.ClientChannel`)
and relays them, re-lists on list_changed (`listing.Lister`), or refuses what it cannot place.

Finding the client: Streamable HTTP and the modern era carry it in context
(`hub.endpoint.server_requests.CURRENT_CHANNEL`); over handshake-era stdio/SSE nothing links a server request to a
call (SDK-NOTES 2.6), so it goes to the only client with calls in flight, and is refused when
there are several (`isolation: per_client` gives each client its own connection).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import mcp_types as types
from mcp import Client
from mcp.client.session import ClientRequestContext
from mcp_types import CLIENT_CAPABILITIES_META_KEY

from adapters._sdk import stamp_each_request
from hub.client_channel import CURRENT_CHANNEL, ClientChannel, SamplingResult, refusal
from hub.errors import describe_failure
from hub.redaction import mask_log_params, mask_model
from hub.task_wire import expose_related_task

if TYPE_CHECKING:
    from hub.servers.connection import ServerConnection

__all__ = ["Inbox", "forward_client_capabilities"]

# One logger for the whole package: operators and tests filter on "hub.servers".
logger = logging.getLogger("hub.servers")


class Inbox:
    """The SDK client callbacks of `connection` (`connection.inbox`), and the client channels
    they may relay to."""

    def __init__(self, connection: ServerConnection) -> None:
        self.connection = connection
        self.inflight: list[ClientChannel] = []
        """The channel of each client request in flight on this connection (`calls.Sender`)."""
        self.starting_for: list[ClientChannel] = []
        """Channels of the client requests waiting for this `isolation: per_client` connection to start."""
        self.client_roots: types.ListRootsResult | None = None
        """The roots the owning client last answered (`isolation: per_client` connections)."""

    async def on_message(self, message: Any) -> None:
        """A notification from the server (or something the SDK could not parse)."""
        connection = self.connection
        if isinstance(
            message,
            types.ToolListChangedNotification
            | types.ResourceListChangedNotification
            | types.PromptListChangedNotification,
        ):
            await connection.lister.relist_soon(message.method)
        elif isinstance(message, types.LoggingMessageNotification):
            params = mask_log_params(message.params)
            data = connection.link.redact(str(params.data)[:2000])
            logger.info("server %s log [%s]: %s", connection.server_id, params.level, data)
            channel = self.channel()
            if channel is not None:
                await channel.log(params)
        elif isinstance(message, types.ResourceUpdatedNotification):
            if connection.on_resource_updated is not None:
                await connection.on_resource_updated(connection.server_id, str(message.params.uri))
        elif isinstance(message, Exception):
            logger.warning(
                "server %s sent something that is not MCP: %s", connection.server_id, describe_failure(message)
            )

    async def on_task_status(self, params: dict[str, Any]) -> None:
        """A task status notification (`hub.task_wire.TasksClientExtension`)."""
        if self.connection.on_task_status is not None:
            await self.connection.on_task_status(self.connection.server_id, params)

    def channel(self) -> ClientChannel | None:
        """The client channel a server request or notification belongs to: the one in context
        (Streamable HTTP, modern era), else the only client with calls in flight on this
        connection (handshake-era stdio/SSE, where nothing links the two; SDK-NOTES 2.6)."""
        channel = CURRENT_CHANNEL.get()
        if channel is not None:
            return channel
        distinct = {id(c): c for c in self.inflight}
        if len(distinct) == 1:
            return next(iter(distinct.values()))
        return None

    def _uncorrelated(self, what: str) -> types.ErrorData:
        server_id = self.connection.server_id
        count = len(self.inflight)
        if not count:
            logger.info("server %s sent %s with no call in flight: no client to ask", server_id, what)
            return refusal(f"the hub has no client request in flight to relay this {what} to")
        logger.warning("server %s sent %s with %d calls in flight: cannot tell whose", server_id, what, count)
        return refusal(
            f"the hub cannot tell which of its {count} in-flight calls this {what} belongs to; "
            "configure the server with isolation: per_client"
        )

    async def on_sampling(
        self, context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> SamplingResult:
        """`sampling/createMessage` from the server: relayed to its client."""
        channel = self.channel()
        if channel is None:
            return self._uncorrelated("sampling/createMessage")
        return await channel.sample(mask_model(expose_related_task(params, self.connection.server_id)))

    async def on_elicitation(
        self, context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult | types.ErrorData:
        """`elicitation/create` from the server: relayed to its client."""
        channel = self.channel()
        if channel is None:
            return self._uncorrelated("elicitation/create")
        return await channel.elicit(mask_model(expose_related_task(params, self.connection.server_id)))

    async def on_list_roots(self, context: ClientRequestContext) -> types.ListRootsResult | types.ErrorData:
        """`roots/list` from the server: relayed to the client whose call is in flight. With no
        call in flight (a server asks at start-up), an `isolation: per_client` connection
        answers with its own client's roots (asked while that client's first call waits for
        the connection to start, else the last ones it answered), any other an empty list."""
        channel = self.channel()
        if channel is None and self.inflight:
            return self._uncorrelated("roots/list")
        known = self.client_roots or types.ListRootsResult(roots=[])
        if channel is None and not self.starting_for:
            return known
        result = await (channel or self.starting_for[0]).list_roots()
        if isinstance(result, types.ListRootsResult):
            if self.connection.client_key is not None:
                self.client_roots = result
        elif channel is None:  # the owner cannot be asked (no roots capability, modern era)
            logger.debug("server %s: roots/list at start-up not relayed: %s", self.connection.server_id, result.message)
            return known
        return result


def forward_client_capabilities(client: Client) -> None:
    """Make a modern-era connection declare, on each request, the capabilities of the client the
    request is relayed for (`_meta` clientCapabilities, 2026-07-28 "Client capabilities"), so the
    server asks only for what that client can answer and refuses what it cannot (-32021).

    The SDK stamps the connection's own capabilities on every request with no per-request
    override (`adapters._sdk.stamp_each_request`)."""

    def declare(data: dict[str, Any]) -> None:
        channel = CURRENT_CHANNEL.get()
        if channel is None:
            return
        declared = channel.capabilities or types.ClientCapabilities()
        meta = data.setdefault("params", {}).setdefault("_meta", {})
        meta[CLIENT_CAPABILITIES_META_KEY] = declared.model_dump(by_alias=True, mode="json", exclude_none=True)

    stamp_each_request(client.session, declare)
