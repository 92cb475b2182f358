"""Error mapping: how talking to a server failed, decided in one place.

Every part of a server connection that catches an exception from the SDK, the transport or
anyio asks `classify` what it means (the path of a call: `calls.Sender` sends it and maps a
failure with `request_errors`; the health monitor, the lister and the supervisor's account of
why a connection ended classify theirs the same way). Only the consequence differs by caller:

- a request turns a lost connection into `ConnectionLost` (the router may retry or fall back),
  an answer refused for its size into `ResultTooLarge`, and lets a server's own error pass
  through with its code (STYLE.md: "Errors mapped once, at the boundary");
- a health check counts a failure against the breaker;
- a re-list on expiry keeps the last listing unless the connection itself is gone.

This is the outbound direction's one place. The router only decides, from the resulting errors,
whether to send again and what its breaker records (`hub.retry_rules.classify_failure`); their
JSON-RPC translation happens once, in the endpoint (`hub.endpoint.request_boundary`).
"""

from __future__ import annotations

import enum
import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final

import anyio
import httpx2
from mcp import MCPError
from mcp_types import CONNECTION_CLOSED

from adapters.broken_exchange import exchange_failure
from adapters.oversize import answer_too_large_limit
from hub.errors import ServerProtocolError, ServerUnavailable
from hub.result_cap import ResultTooLarge, is_transport_size_abort
from hub.retry_rules import DeliveryMark
from hub.servers.state import ConnectionLost

if TYPE_CHECKING:
    from hub.servers.connection import ServerConnection

__all__ = ["SERVER_EXCHANGE_ERRORS", "Breakage", "classify", "request_errors"]

# One logger for the whole package: operators and tests filter on "hub.servers".
logger = logging.getLogger("hub.servers")


SERVER_EXCHANGE_ERRORS: Final = (MCPError, anyio.BrokenResourceError, anyio.ClosedResourceError, httpx2.TransportError)
"""What an exchange with a server raises when the server, its connection or the transport
fails (`classify` tells which); anything else is not about the server."""


_SDK_CLOSED_MESSAGE: Final = "Connection closed"
"""The message of the SDK's `CONNECTION_CLOSED` when the session found its connection gone
(`mcp.shared.jsonrpc_dispatcher`, `mcp.client.session`)."""
_SDK_ABANDONED_PREFIX: Final = "SSE stream"
"""How the SDK's Streamable HTTP client words the `CONNECTION_CLOSED` it answers one request with
when that request's SSE answer broke or ended without the answer ("SSE stream failed: ...",
"SSE stream ended without a response", "... reconnection attempts were exhausted"): that
exchange failed, the transport lives on."""


class Breakage(enum.Enum):
    """What an exception raised while talking to a server says about the exchange."""

    ANSWERED = "answered"
    """The server's own JSON-RPC error response (`MCPError`, whatever its code)."""
    CLOSED = "closed"
    """The SDK found the connection closed (its `MCPError` CONNECTION_CLOSED "Connection
    closed"): it is gone."""
    BROKEN = "broken"
    """The transport's streams broke or were closed under the request: the connection is gone."""
    REQUEST_FAILED = "request_failed"
    """One HTTP exchange failed (`httpx2.TransportError`, the pool's stand-in for a broken
    exchange: `adapters.broken_exchange`, or the SDK abandoning one request's SSE answer); the
    connection lives on."""
    TIMED_OUT = "timed_out"
    """No answer within a deadline the hub set (`TimeoutError`)."""
    PROTOCOL = "protocol"
    """The server broke MCP (`ServerProtocolError`)."""
    UNAVAILABLE = "unavailable"
    """A `ServerUnavailable` the hub already raised (not connected, connection lost)."""


def classify(exc: BaseException) -> Breakage | None:
    """The `Breakage` that `exc` stands for, or None when it is not a failure of talking to the
    server (a bug, a cancellation, anything else: the caller lets it propagate)."""
    if isinstance(exc, MCPError):
        if exchange_failure(exc) is not None:
            return Breakage.REQUEST_FAILED
        if exc.code != CONNECTION_CLOSED:
            return Breakage.ANSWERED
        if exc.message.startswith(_SDK_ABANDONED_PREFIX):
            return Breakage.REQUEST_FAILED
        # The SDK's own "Connection closed"; any other -32000 is the server's own answer (the code
        # is JSON-RPC's implementation-defined server error, which servers use for anything).
        return Breakage.CLOSED if exc.message == _SDK_CLOSED_MESSAGE else Breakage.ANSWERED
    if isinstance(exc, anyio.BrokenResourceError | anyio.ClosedResourceError):
        return Breakage.BROKEN
    if isinstance(exc, httpx2.TransportError):
        return Breakage.REQUEST_FAILED
    if isinstance(exc, ServerUnavailable):
        return Breakage.UNAVAILABLE
    if isinstance(exc, TimeoutError):
        return Breakage.TIMED_OUT
    if isinstance(exc, ServerProtocolError):
        return Breakage.PROTOCOL
    return None


@contextmanager
def request_errors(connection: ServerConnection, method: str, generation: int, mark: DeliveryMark) -> Iterator[None]:
    """Map the failure of one request on `connection` (sent on its connection `generation`;
    `mark` tells whether it reached the transport) once, chained with `from exc`.

    :raises ResultTooLarge: the transport refused the answer over its size cap while it
        streamed (the result cap, or a smaller stdio line cap); only this request failed.
    :raises ConnectionLost: the connection closed or broke during the request (`delivered`
        from `mark`); a closed or broken connection is marked lost (`connected` turns False
        before the supervisor notices), a failed HTTP exchange is not.
    :raises MCPError: the server's own error response, passed through with its code.
    """
    try:
        yield
    except SERVER_EXCHANGE_ERRORS as exc:
        if isinstance(exc, MCPError) and is_transport_size_abort(exc):
            connection._last_answer = time.monotonic()
            # The cap the answer ran into: the result cap, or a smaller line cap (stdio).
            limit = min(connection.config.max_result_bytes, answer_too_large_limit(exc) or math.inf)
            logger.warning(
                "server %s: %s answer over %d bytes refused in transit: %s",
                connection.server_id,
                method,
                limit,
                exc.message,
            )
            raise ResultTooLarge(connection.server_id, int(limit)) from exc
        breakage = classify(exc)
        if breakage is Breakage.ANSWERED:
            connection._last_answer = time.monotonic()
            raise
        if breakage is Breakage.CLOSED:
            close_reason = connection.link.close_reason
            message = f"the connection closed during {method}" + (f": {close_reason}" if close_reason else "")
        elif breakage is Breakage.REQUEST_FAILED:
            message = f"the HTTP exchange for {method} broke before its answer"
            connection.health.check_soon()  # the server may be gone: find out now, not at the next interval
        else:
            message = f"the connection broke during {method}"
        if breakage in (Breakage.CLOSED, Breakage.BROKEN):  # one HTTP request failing is not the end
            connection._lost_generation = generation
        raise ConnectionLost(connection.server_id, message, delivered=mark.sent, generation=generation) from exc
