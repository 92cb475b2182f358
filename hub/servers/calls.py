"""Sending: one request to the server, within its deadline, with its bookkeeping and its errors.

The path of a call: the router picks a connection (the client's dedicated one when it has one:
`isolation.Clones`) and calls one of its request methods (`ServerConnection.call_tool`,
`read_resource`, `get_prompt`, `complete`, ...) with the request's
`hub.deadline.RequestDeadline`. Each builds a `send(client, on_progress)` for the SDK and hands
it to `Sender.request`, which

1. sends it over the client's dedicated connection when it has one and the caller did not pick
   it already (`isolation: per_client`, the handshake-era connection of `protocol: both` or of a
   server that pushes: `isolation.Clones`),
2. bounds it by the request's deadline, pushed on by each progress notification up to the hard
   maximum (a caller without a deadline, such as a subscription or a task request, gets one
   starting now); cancelling the SDK request sends `notifications/cancelled` or aborts it, by
   era,
3. records it as in flight (drains wait for none; the inbox relays server requests to the
   client channels in flight), and
4. maps a failure once (`failures.request_errors`): `ConnectionLost`, `ResultTooLarge`,
   `ServerTimeout`, or the server's own `MCPError` with its code.

`request_pushing` adds the modern-era refusal of a mid-call push (`hub.push_era`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

import mcp_types as types
from mcp import Client, MCPError
from mcp.shared.dispatcher import ProgressFnT
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ConfigDict

from hub.client_channel import CURRENT_CHANNEL
from hub.deadline import RequestDeadline
from hub.errors import ServerTimeout, ServerUnavailable
from hub.push_era import PushNeedsHandshakeEra, pushed_method
from hub.redaction import SECRETS
from hub.retry_rules import delivery_mark
from hub.servers.failures import request_errors
from hub.task_wire import task_request

if TYPE_CHECKING:
    from hub.servers.connection import ServerConnection

__all__ = ["RawResult", "Sender"]

# One logger for the whole package: operators and tests filter on "hub.servers".
logger = logging.getLogger("hub.servers")

_T = TypeVar("_T")

_MODERN: Final = MODERN_PROTOCOL_VERSIONS[-1]


class RawResult(types.Result):
    """A result kept as the server sent it (every field, nulls included)."""

    model_config = ConfigDict(extra="allow")


class Sender:
    """Sends `connection`'s requests (`connection.sender`)."""

    def __init__(self, connection: ServerConnection) -> None:
        self.connection = connection

    async def request(
        self,
        method: str,
        send: Callable[[Client, ProgressFnT], Awaitable[_T]],
        *,
        timeout_seconds: float | None = None,
        max_timeout_seconds: float | None = None,
        relay: ProgressFnT | None = None,
        deadline: RequestDeadline | None = None,
    ) -> _T:
        """Send one request, translating transport-level failures once; a server's own MCP
        error passes through with its code; progress is relayed to `relay`.

        The request waits for its answer until its `deadline` (the router's, started when the
        request arrived: `hub.deadline`); without one it starts now with `timeout_seconds`
        (default: the server's) and `max_timeout_seconds` (default: 5x the timeout). Each
        progress notification from the server pushes the deadline to now + timeout, never past
        the hard maximum. On expiry the request's scope is cancelled, which the SDK turns into
        `notifications/cancelled` (handshake era) or an aborted request (modern era). The
        client channel in context (`hub.endpoint.server_requests.CURRENT_CHANNEL`) is recorded as in flight for the
        request's duration, and picks the dedicated connection under `isolation: per_client`
        (or the handshake-era one under `protocol: both`, or of a server found to push:
        `Clones.dedicated_key`) unless this is one already (the router picks it itself).

        :raises ServerUnavailable: not connected, or the deadline had already passed
            (`delivered=False`, never sent), or the connection closed
            or broke (`ConnectionLost`; `delivered` tells whether the request had reached the
            transport).
        :raises ServerTimeout: no answer in time; the server was sent a cancellation.
        :raises ResultTooLarge: the transport refused an answer over its size cap while it streamed
            (Streamable HTTP SSE events and JSON bodies are capped at `max_result_bytes` plus an
            envelope allowance, stdio lines at `max_line_bytes`); only this request failed.
        :raises MCPError: the server's own error response, code unchanged.
        """
        connection = self.connection
        channel = CURRENT_CHANNEL.get()
        if channel is not None and connection.client_key is None:
            key = connection.clones.dedicated_key(channel, method)
            if key is not None:
                dedicated = await connection.clones.dedicated(key)
                return await dedicated.sender.request(
                    method,
                    send,
                    timeout_seconds=timeout_seconds,
                    max_timeout_seconds=max_timeout_seconds,
                    relay=relay,
                    deadline=deadline,
                )
        client = connection._require_client()
        generation = connection.generation
        if deadline is None:
            timeout = timeout_seconds if timeout_seconds is not None else connection.config.timeout_seconds
            deadline = RequestDeadline(timeout, max_timeout_seconds if max_timeout_seconds is not None else 5 * timeout)
        elif deadline.expired():
            raise ServerUnavailable(connection.server_id, deadline.ran_out(f"{method} not sent"), delivered=False)
        scope = deadline.scope()
        request_deadline = deadline

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            scope.deadline = request_deadline.extend()
            if relay is not None:
                await relay(progress, total, SECRETS.mask(message) if message else message)

        inflight = connection.inbox.inflight
        connection.in_flight += 1
        connection.changes.notify()
        if channel is not None:
            inflight.append(channel)
        logger.debug("server %s: sending %s", connection.server_id, method)
        try:
            with delivery_mark() as mark, request_errors(connection, method, generation, mark), scope:
                result = await send(client, on_progress)
                connection._last_answer = time.monotonic()
                return result
            raise ServerTimeout(connection.server_id, deadline.no_answer(method))
        finally:
            if channel is not None:
                inflight.remove(channel)
            connection.in_flight -= 1
            connection.changes.notify()

    async def task_request(
        self,
        method: str,
        params: dict[str, Any],
        *,
        timeout_seconds: float | None = None,
        max_timeout_seconds: float | None = None,
    ) -> dict[str, Any]:
        """One `tasks/*` request (`tasks/get`, `tasks/update`, `tasks/cancel`, `tasks/result`,
        `tasks/list`; `hub.task_wire`) with wire `params` (`taskId` is the server's own id); the
        result as the server sent it (`RawResult`). Timeouts and errors as `request`."""

        async def send(client: Client, _: ProgressFnT) -> dict[str, Any]:
            result = await client.session.send_request(task_request(method, params), RawResult)
            return result.model_dump(by_alias=True, mode="json", exclude_unset=True)

        return await self.request(
            method, send, timeout_seconds=timeout_seconds, max_timeout_seconds=max_timeout_seconds
        )

    async def request_pushing(
        self, method: str, send: Callable[[Client, ProgressFnT], Awaitable[_T]], **options: Any
    ) -> _T:
        """`request` for a request whose handler may push (`tools/call`, `prompts/get`,
        `resources/read`): when a modern-era connection of a `protocol: auto`/`both` server
        refuses the push (`hub.push_era.pushed_method`), the server is recorded as pushing.

        :raises PushNeedsHandshakeEra: that happened; the request may be sent again (it now
            goes over a handshake-era connection).
        :raises ServerUnavailable, ServerTimeout, MCPError: as `request`.
        """
        connection = self.connection
        eras: list[str | None] = []

        async def noting_era(client: Client, on_progress: ProgressFnT) -> _T:
            eras.append(client.protocol_version)
            return await send(client, on_progress)

        try:
            return await self.request(method, noting_era, **options)
        except MCPError as exc:
            pushed = pushed_method(exc)
            modern = bool(eras) and eras[-1] in MODERN_PROTOCOL_VERSIONS
            pushing = connection.pushing
            if pushed is None or not modern or pushing is None or connection.config.protocol not in ("auto", "both"):
                raise
            if pushing.learn(connection.server_id):
                logger.warning(
                    "server %s pushed %s during %s, which a %s connection cannot carry: its requests that"
                    " may push go over a handshake-era connection from now on",
                    connection.server_id,
                    pushed,
                    method,
                    _MODERN,
                )
            raise PushNeedsHandshakeEra(connection.server_id, pushed, method) from exc
