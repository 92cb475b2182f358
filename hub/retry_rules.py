"""The retry rules: delivery tracking (did this request reach the transport?), how a failed
attempt failed, and the event points metrics hang on. The circuit breaker, retry budget and
concurrency limiter are in `hub.admission`; the result size cap in `hub.result_cap`.

When is a request safe to send again? The hub answers from what it can prove, never from what
a server claims (tool annotations such as `idempotentHint` are untrusted):

============================================  =========  ================================
what happened                                 delivered  sent again?
============================================  =========  ================================
server not connected (starting, restarting,   no         yes: another replica/fallback at
failed, stopped)                                         once, the same server after a
                                                         backoff round (retry budget)
circuit open, queue full (`ServerRejected`)   no         another replica/fallback at once;
                                                         no backoff round (fail fast)
SDK refused the request before writing it     no         as for "not connected"
(dispatcher closed, write stream broken): the
request never reached the transport's write
stream (`DeliveryMark.sent` is False)
connection closed or broke after the write,   maybe      only tools the operator listed
timeout, JSON-RPC -32603 (internal error)                under `idempotent`
any other JSON-RPC error from the server      answer     never (it passes through)
a result, also with `isError: true`           answer     never
============================================  =========  ================================

`DeliveryMark.sent` is set by `track_delivery`, a wrapper around the transport's write stream:
the SDK's `JSONRPCDispatcher.send_raw_request` writes the request to that stream in the caller's
task (`_write` -> `write_stream.send`), so a context variable set around one attempt tells
whether *this* request reached the transport; a plain request the raw path writes through a
stdio transport's multiplexer (`adapters.stdio_mux`) sets it with `mark_delivered` as its write
starts. Like the SDK's own cancel logic, a write that
started counts as sent. A remote server that refuses the TCP connection on a live session's
POST surfaces in the SDK only as a closed connection after the write, so it counts as
"maybe delivered"; the supervisor then marks the server down, and every later request to it is
"not delivered" until it reconnects.

The retry budget is Envoy's (SECURITY.md figures): retries in flight to one server at most
`budget_ratio` (0.2) of its active calls, at least `budget_min` (3). Moving a call to a replica
member or fallback it has not tried yet is failover, not retry, and needs no budget: it adds at
most one request per member per call, so no member's load is multiplied.
"""

from __future__ import annotations

import contextlib
import contextvars
import enum
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from mcp import MCPError
from mcp_types import INTERNAL_ERROR, JSONRPCRequest

from adapters._sdk import Transport, TransportStreams
from adapters.write_stream import WriteStreamWrapper
from hub.errors import ServerTimeout, ServerUnavailable

__all__ = [
    "DeliveryMark",
    "EventSink",
    "Failure",
    "ResilienceEvents",
    "classify_failure",
    "delivery_mark",
    "mark_delivered",
    "track_delivery",
]

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------- events


class ResilienceEvents(Protocol):
    """Event points the router, breakers and limiters report to (metrics hang on these).

    Every method is called synchronously on the request path and must not block or raise.
    """

    def on_call(self, route: str, server_id: str, outcome: str, seconds: float) -> None:
        """One client request finished. `route`: the original tool/prompt name or resource URI;
        `server_id`: the member that answered (or the primary when none did); `outcome`: `ok`,
        `is_error`, `error` (a JSON-RPC error answer), `timeout`, `unavailable`, `too_large`."""

    def on_retry(self, server_id: str) -> None:
        """A request is sent again to `server_id` (logical id) after a backoff, under its budget."""

    def on_failover(self, from_server_id: str, to_server_id: str) -> None:
        """A request moves from one member/server to another it has not tried yet."""

    def on_budget_exhausted(self, server_id: str) -> None:
        """A retry was refused because `server_id`'s retry budget was used up."""

    def on_breaker_change(self, server_id: str, state: str) -> None:
        """A member's circuit changed to `closed`, `open` or `half_open`."""

    def on_queue_depth(self, server_id: str, depth: int) -> None:
        """Requests waiting for a slot at a member changed to `depth`."""

    def on_rejected(self, server_id: str) -> None:
        """A request was refused at once because the member's queue was full."""

    def on_health_check(self, server_id: str, ok: bool) -> None:
        """A periodic health check of a member finished."""


class EventSink:
    """Forwards events to `target` (set it once, e.g. to the metrics adapter); a failing target
    is logged and never disturbs the request that reported the event."""

    def __init__(self) -> None:
        self.target: ResilienceEvents | None = None

    def emit(self, name: str, *args: Any) -> None:
        target = self.target
        if target is None:
            return
        try:
            getattr(target, name)(*args)
        except Exception:
            logger.exception("resilience event handler %s failed", name)


# ---------------------------------------------------------------- delivery


@dataclass
class DeliveryMark:
    """Whether the current attempt's request reached the transport's write stream."""

    sent: bool = False


_current_mark: contextvars.ContextVar[DeliveryMark | None] = contextvars.ContextVar("hub_delivery", default=None)


def mark_delivered() -> None:
    """Mark the current `delivery_mark()` sent: for a request written to the transport by other
    means than its write stream (`adapters.stdio_mux`, once its write has started)."""
    mark = _current_mark.get()
    if mark is not None:
        mark.sent = True


@contextlib.contextmanager
def delivery_mark() -> Iterator[DeliveryMark]:
    """A fresh `DeliveryMark` for the request sent inside the block (in this task)."""
    mark = DeliveryMark()
    token = _current_mark.set(mark)
    try:
        yield mark
    finally:
        _current_mark.reset(token)


class _MarkingWriteStream(WriteStreamWrapper):
    """A transport write stream that marks the current `DeliveryMark` when a request is written."""

    async def send(self, item: Any) -> None:
        mark = _current_mark.get()
        if mark is not None and isinstance(getattr(item, "message", None), JSONRPCRequest):
            mark.sent = True  # a started write counts as sent (the SDK's own rule for cancels)
        await self._inner.send(item)


@contextlib.asynccontextmanager
async def track_delivery(transport: Transport) -> AsyncIterator[TransportStreams]:
    """Enter `transport`, marking `delivery_mark()` whenever a request is written to it."""
    async with transport as (read_stream, write_stream):
        yield read_stream, _MarkingWriteStream(write_stream)  # type: ignore[misc]


class Failure(enum.Enum):
    """How a failed attempt failed, for the retry rules (module docstring table)."""

    NOT_DELIVERED = "not_delivered"
    """Provably never reached the server: safe to send anywhere."""
    LOST = "lost"
    """May have reached the server and no answer came (timeout, connection broke)."""
    SERVER_ERROR = "server_error"
    """The server answered JSON-RPC -32603 (internal error)."""


def classify_failure(exc: BaseException) -> Failure | None:
    """The `Failure` kind of an attempt's exception, or None when it is an answer to pass on
    (a server's JSON-RPC error other than -32603, or anything that is not a server failure).
    The router's retry rules and its breaker verdicts both follow it."""
    if isinstance(exc, ServerUnavailable):
        return Failure.LOST if exc.delivered else Failure.NOT_DELIVERED
    if isinstance(exc, ServerTimeout):
        return Failure.LOST
    if isinstance(exc, MCPError) and exc.code == INTERNAL_ERROR:
        return Failure.SERVER_ERROR
    return None
