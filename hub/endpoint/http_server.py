"""The HTTP/1.1 server under the endpoint: uvicorn with its httptools parser, plus the limits a
front door owes its users that uvicorn lacks.

uvicorn's httptools protocol has no bound on a request head (a 32 MB header is read and
answered) and no deadline for a head or a body (a half-sent request holds its connection
forever); its h11 protocol bounds the head but answers 400, still has no deadlines, and costs
more CPU per request. `HubHttpProtocol` is a small subclass of the httptools protocol that adds:

- **a head limit**: the request line and header fields may take `max_header_bytes` (default
  64 KiB); past it the client gets 431 Request Header Fields Too Large (RFC 6585 section 5)
  and the rest is never parsed or held (at most the limit plus one socket read is ever buffered);
- **a head deadline**: a request head must be complete `header_timeout_seconds` (default 10 s)
  after the connection opened (first request) or after its first byte (later ones); else 408
  Request Timeout (RFC 9110 section 15.5.9), or a plain close when nothing was sent, and the
  connection is closed (slowloris). Between requests uvicorn's keep-alive timeout (5 s) applies;
- **a body deadline**: the body must be complete `body_timeout_seconds` (default 30 s) after the
  head; else 408 (when no response has started), the app sees `http.disconnect`, and the
  connection is closed;
- **a lingering close**: when a response ends a connection while the client is still sending
  its request (an early 413, 401 or 431), the server half-closes, then reads and discards what
  is still coming (at most `LINGER_MAX_BYTES`, for at most `LINGER_SECONDS`) before it closes.
  Without it the kernel answers the unread bytes with a reset, and a client that writes its
  whole body before reading (`urllib`) sees "connection reset" instead of the answer (RFC 9112
  section 9.6 "Tear-down"; nginx's `lingering_close`).

`bind_socket` makes the listening socket, never inheritable by child processes (stdio servers).

`HttpServer(handle_signals=False)` leaves SIGINT and SIGTERM to its caller (`mcphub serve`
drains on them: `hub.endpoint.drain`, `hub.cli.shutdown`). uvicorn's own handling does not fit a drain: it
stops accepting at once, sse-starlette (which the SDK's SSE responses use) patches uvicorn's
signal handler to end every SSE response abruptly, in-flight answers included (the client reads
an incomplete chunked body), and once stopped uvicorn re-raises the signal, so the process dies
by it instead of exiting 0.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar

import anyio
import httptools
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from hub.config import HubConfig
from hub.config.hub import DEFAULT_BODY_TIMEOUT_SECONDS, DEFAULT_HEADER_TIMEOUT_SECONDS, DEFAULT_MAX_HEADER_BYTES
from hub.endpoint.http_lifecycle import HubServer, HubServerState

__all__ = [
    "LINGER_MAX_BYTES",
    "LINGER_SECONDS",
    "HttpLimits",
    "HttpServer",
    "HubHttpProtocol",
    "bind_socket",
    "run_event_loop",
]

T = TypeVar("T")

logger = logging.getLogger(__name__)

LINGER_MAX_BYTES: Final = 64 * 1024 * 1024
"""Bytes (64 MiB) a lingering close reads and discards before it gives up and closes anyway."""

LINGER_SECONDS: Final = 5.0
"""Seconds a lingering close waits for the client to finish sending before it closes anyway."""


@dataclass(frozen=True)
class HttpLimits:
    """Per-connection limits of the HTTP server (config keys of the same names).

    :param max_header_bytes: request line plus header fields, in bytes (default 64 KiB); more
        gets 431.
    :param header_timeout_seconds: seconds from the connection's opening (first request) or a
        head's first byte (later ones) to the end of the head (default 10); slower gets 408 and
        a close.
    :param body_timeout_seconds: seconds from the end of a head to the end of its body
        (default 30); slower gets 408 (if no response started) and a close.
    """

    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    header_timeout_seconds: float = DEFAULT_HEADER_TIMEOUT_SECONDS
    body_timeout_seconds: float = DEFAULT_BODY_TIMEOUT_SECONDS

    @classmethod
    def from_config(cls, config: HubConfig) -> HttpLimits:
        """The limits a hub config sets."""
        return cls(config.max_header_bytes, config.header_timeout_seconds, config.body_timeout_seconds)


class _ServerConfig(uvicorn.Config):
    """uvicorn's config carrying our limits to each protocol instance."""

    def __init__(self, app: ASGIApp, limits: HttpLimits, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.limits = limits


class _Closer:
    """Stands in for the transport in uvicorn's request/response cycle: writes go straight to
    the transport (its own bound methods, no extra call), `close()` goes through the lingering
    close."""

    __slots__ = ("_protocol", "is_closing", "write")

    def __init__(self, protocol: HubHttpProtocol, transport: asyncio.Transport) -> None:
        self.write = transport.write
        self.is_closing = transport.is_closing
        self._protocol = protocol

    def close(self) -> None:
        self._protocol.close_after_response()


class HubHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools HTTP/1.1 protocol with a head limit, head and body deadlines, and a
    lingering close (see the module docstring). Limits come from the `HttpServer` that runs it.

    Relies on these uvicorn 0.54 names (covered by tests/test_front_door.py): the parser
    callbacks `on_headers_complete`/`on_message_complete`, `self.cycle`
    (`transport`, `response_started`, `response_complete`, `disconnected`, `message_event`),
    `self.parser`, `self.flow`, `self.server_state.default_headers`, `STATUS_LINE`.
    """

    # Slots keep uvicorn's own attributes in a small shared-key instance dict (CPython keeps
    # attribute lookups specialised only up to 30 keys); as dict entries these cost ~1 µs/request.
    __slots__ = (
        "_body_timeout",
        "_body_timer",
        "_closer",
        "_handed_over",
        "_head_bytes",
        "_head_timer",
        "_header_timeout",
        "_heads",
        "_linger_bytes",
        "_linger_timer",
        "_lingering",
        "_max_head_bytes",
        "_reading_head",
    )

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        limits = config.limits if isinstance(config, _ServerConfig) else HttpLimits()
        self._max_head_bytes = limits.max_header_bytes
        self._header_timeout = limits.header_timeout_seconds
        self._body_timeout = limits.body_timeout_seconds
        self._head_bytes = 0
        """Bytes of the current (partial) head, counted over the reads that began inside it."""
        self._heads = 0
        """Heads completed on this connection (tells whether one completed within a read)."""
        self._reading_head = True
        """Between requests or inside a head; False from the end of a head to the end of its body."""
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None
        self._lingering: Literal["", "head", "body"] = ""
        self._linger_bytes = 0
        self._handed_over = False
        """True once a WebSocket upgrade gave the connection to uvicorn's WebSocket protocol."""
        self._closer: _Closer | None = None

    # ---- connection ----

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._closer = _Closer(self, transport)
        self._head_timer = self.loop.call_later(self._header_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)
        if isinstance(self.server_state, HubServerState):
            self.server_state.connection_closed.set()  # a stopping server waits on its connections

    def handle_websocket_upgrade(self) -> None:
        # The connection now belongs to uvicorn's WebSocket protocol: none of our deadlines apply.
        self._handed_over = True
        self._cancel_timers()
        super().handle_websocket_upgrade()

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer, self._linger_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = self._linger_timer = None

    def data_received(self, data: bytes) -> None:
        # The common case (a whole small request in one read) costs two comparisons and no timer.
        if self._lingering:
            self._discard(data)
            return
        if not self._reading_head:
            super().data_received(data)
        elif len(data) <= self._max_head_bytes - self._head_bytes:
            heads = self._heads
            super().data_received(data)
            if self._reading_head and self._heads == heads:
                self._head_bytes += len(data)
        elif not self._feed_up_to_limit(data):
            return
        if self._reading_head:
            if self._head_bytes and self._head_timer is None and not self.transport.is_closing():
                self._head_timer = self.loop.call_later(self._header_timeout, self._head_timed_out)
        elif self._body_timer is None and not self._handed_over and not self.transport.is_closing():
            # A body still to come: bound it in time, and if the response ends the connection
            # before the body is in, linger instead of resetting.
            self._body_timer = self.loop.call_later(self._body_timeout, self._body_timed_out)
            cycle = self.cycle
            if cycle is not None and cycle.transport is self.transport:
                cycle.transport = self._closer  # type: ignore[assignment]

    def _feed_up_to_limit(self, data: bytes) -> bool:
        """Parse `data` only up to the head limit; if the head did not end within it, refuse the
        request without ever parsing (or holding) the rest. False when the connection ends."""
        heads, room = self._heads, self._max_head_bytes - self._head_bytes
        view = memoryview(data)
        super().data_received(view[:room])  # type: ignore[arg-type]  # httptools takes any buffer
        if self.transport.is_closing() or self._lingering:
            return False
        if self._heads == heads:
            self._refuse_head()
            return False
        super().data_received(view[room:])  # type: ignore[arg-type]
        return not (self.transport.is_closing() or self._lingering)

    # ---- parser callbacks ----

    def on_headers_complete(self) -> None:
        if self._lingering:
            return  # a pipelined request behind a refused one is not served
        self._reading_head = False
        self._head_bytes = 0
        self._heads += 1
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._reading_head = True
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        if self._lingering:
            self.transport.close()
            return
        super().on_message_complete()

    # ---- limits ----

    def close_after_response(self) -> None:
        """Close the connection once a response that ends it is written: at once when the
        request was read whole, else after a lingering close (see the module docstring)."""
        if self._reading_head or self.transport.is_closing():
            self.transport.close()
        else:
            self._linger("body")

    def _refuse_head(self) -> None:
        logger.info("refused a request head over %d bytes from %s (431)", self._max_head_bytes, self._peer())
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()  # a pipelined head while a response is still being written
            return
        self._write_refusal(431, b"Request header fields too large")
        self._linger("head")

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self._lingering or not self._reading_head:
            return
        if self._head_bytes and (self.cycle is None or self.cycle.response_complete):
            logger.info("a request head from %s took over %.3g s; closed (408)", self._peer(), self._header_timeout)
            self._write_refusal(408, b"Request header timeout")
        self.transport.close()

    def _body_timed_out(self) -> None:
        self._body_timer = None
        if self.transport.is_closing() or self._lingering or self._reading_head:
            return
        logger.info("a request body from %s took over %.3g s; closed (408)", self._peer(), self._body_timeout)
        cycle = self.cycle
        if cycle is not None:
            if not cycle.response_started:
                self._write_refusal(408, b"Request body timeout")
            cycle.disconnected = True  # the app's receive() now answers http.disconnect; its sends are dropped
            cycle.message_event.set()
        self.transport.close()

    def _linger(self, mode: Literal["head", "body"]) -> None:
        self._lingering = mode
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None
        self._linger_timer = self.loop.call_later(LINGER_SECONDS, self.transport.close)
        self.flow.resume_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()  # the answer is complete; the client may still be sending

    def _discard(self, data: bytes) -> None:
        self._linger_bytes += len(data)
        if self._linger_bytes > LINGER_MAX_BYTES:
            self.transport.close()
        elif self._lingering == "body":
            # Parsed only to see where the body ends (`on_message_complete` closes then); the
            # bytes themselves are dropped (uvicorn ignores a body whose response is complete).
            try:
                self.parser.feed_data(data)
            except (httptools.HttpParserError, httptools.HttpParserUpgrade):
                self.transport.close()

    def _write_refusal(self, status: int, text: bytes) -> None:
        content = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            content += [name, b": ", value, b"\r\n"]
        content += [
            b"content-type: text/plain; charset=utf-8\r\ncontent-length: ",
            str(len(text)).encode(),
            b"\r\nconnection: close\r\n\r\n",
            text,
        ]
        self.transport.write(b"".join(content))

    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "?"


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on `host:port` (port 0 picks a free one), not inheritable.

    Never inheritable: the hub's stdio servers are child processes, and uvloop's subprocess
    spawn ignores `close_fds`, so an inheritable listening socket reached every child; a child
    that outlived a `kill -9` of the hub then kept the port bound. (uvicorn marks its own
    sockets inheritable for its `--workers` processes; the hub runs no workers.)

    :raises OSError: the address is in use or cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must be IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted connections only then, and
    # without it every keep-alive response stalls ~40 ms (Nagle + delayed ACK).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.set_inheritable(False)  # already so by default (PEP 446); said here because it matters
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except BaseException:
        sock.close()
        raise
    return sock


class HttpServer:
    """uvicorn serving `app` on an already-bound socket (so the port is known before it starts)
    with `HubHttpProtocol` and the given limits.

    `await serve()` runs until `stop()`, or until SIGINT/SIGTERM when `handle_signals` (uvicorn's
    own handling: see the module docstring). On stop, it closes the listening socket and idle
    connections and gives the requests still running up to 5 s before it cancels them; then the
    app's lifespan ends (`hub.endpoint.http_lifecycle`: uvicorn's sequence, without its 0.1 s
    ticks).

    :param limits: head/body limits; default `HttpLimits()` (the config defaults).
    :param handle_signals: let uvicorn install its SIGINT/SIGTERM handlers (default True);
        False leaves the signals to the caller (`mcphub serve`, which drains on them).
    """

    def __init__(
        self,
        app: ASGIApp,
        sock: socket.socket,
        *,
        limits: HttpLimits | None = None,
        log_level: str = "warning",
        handle_signals: bool = True,
    ) -> None:
        config = _ServerConfig(
            app,
            limits or HttpLimits(),
            http=HubHttpProtocol,
            log_level=log_level,
            lifespan="on",
            access_log=False,
            timeout_graceful_shutdown=5,
        )
        self._server = HubServer(config, handle_signals=handle_signals)
        self._sock = sock

    async def serve(self) -> None:
        await self._server.serve(sockets=[self._sock])

    def stop_accepting(self) -> None:
        """Close the listening socket: new connections are refused (connection refused, which
        every load balancer retries on another backend), open ones are still served. A no-op
        before the server has started listening."""
        for server in getattr(self._server, "servers", ()):
            server.close()

    def stop(self) -> None:
        """Stop serving (see the class docstring); `serve()` returns once stopped: at once when
        no connection is open and no request running (`hub.endpoint.http_lifecycle`)."""
        self._server.request_stop()


def run_event_loop(fn: Callable[[], Awaitable[T]]) -> T:
    """`anyio.run(fn)` on uvloop when it is installed (10-25% less CPU per call), else asyncio."""
    try:
        import uvloop  # noqa: F401
    except ImportError:  # pragma: no cover - uvloop is a dependency through uvicorn[standard]
        return anyio.run(fn)
    return anyio.run(fn, backend_options={"use_uvloop": True})
