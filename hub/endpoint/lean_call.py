"""One request on the lean path (`hub.endpoint.fast_path`): the `DispatchContext` its handler
chain sees, which is its back-channel to the client, and its HTTP response, JSON until the call
sends something before its result, SSE from then on.

- `notify` and `progress` write SSE events directly (the response commits to
  `text/event-stream` at the first one), in the handler's task.
- `send_raw_request` (handshake era only) sends on the session's dispatcher with this request's
  id as `related_request_id`; the transport's message router puts the request on a stream
  registered for this request, which a task forwards to the response while the request waits
  for the client's answer (POSTed to the session and settled by the dispatcher).
- `arm` starts watching the client once the call has run for 1 s: a disconnect cancels the
  call (`scope`), and 15 s of silence commit to SSE and ping, as the SDK's responses do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, Final

import anyio
import orjson
import pydantic_core
from anyio.streams.memory import MemoryObjectReceiveStream
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER, EventMessage, StreamableHTTPServerTransport
from mcp.shared.dispatcher import CallOptions
from mcp.shared.exceptions import NoBackChannelError
from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher, progress_token_from_params
from mcp.shared.message import ServerMessageMetadata
from mcp.shared.transport_context import TransportContext
from mcp_types import RequestId
from starlette.requests import Request
from starlette.types import Receive, Send

from adapters._sdk import close_request_stream, open_request_stream, send_related_request

__all__ = ["LeanCall", "dumps"]

logger = logging.getLogger(__name__)

_WATCH_AFTER_SECONDS: Final = 1.0
"""How long a call runs before its client's disconnect is watched for (a task per watched call:
under load most calls queue for more than 0.1 s, so a short delay would watch nearly all)."""
_PING_SECONDS: Final = 15.0
"""Silence after which a response commits to SSE and pings (the SDK's interval)."""

_HANDSHAKE_TRANSPORT: Final = TransportContext(kind="jsonrpc", can_send_request=True)
"""What the dispatcher builds for a message of a handshake-era session (immutable: shared)."""

_SSE_HEADERS: Final = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"connection", b"keep-alive"),
    (b"x-accel-buffering", b"no"),
]
_PING: Final = b": ping\r\n\r\n"


def dumps(message: dict[str, Any]) -> bytes:
    """`message` as JSON bytes (orjson; pydantic for what orjson cannot write)."""
    try:
        return orjson.dumps(message)
    except TypeError:  # an integer past 64 bits, a type orjson does not know
        return pydantic_core.to_json(message)


class LeanCall:
    """One request served on the lean path: the `DispatchContext` its handler chain sees (the
    back-channel to its client) and its HTTP response.

    :param send: the ASGI send of the request; `receive`: its receive, past the body.
    :param session: the handshake-era session's transport and dispatcher (server-to-client
        requests go through them); None in the modern era (no back-channel for requests:
        `NoBackChannelError`, as the SDK's single-exchange handler).
    """

    def __init__(
        self,
        send: Send,
        receive: Receive,
        request: Request,
        request_id: RequestId,
        params: Mapping[str, Any] | None,
        *,
        session: tuple[StreamableHTTPServerTransport, JSONRPCDispatcher[Any]] | None,
    ) -> None:
        self._send, self._receive = send, receive
        self.request_id: RequestId = request_id
        self._progress_token = progress_token_from_params(params)
        self._session = session
        if session is None:  # modern era: what the SDK's single-exchange handler builds
            self.transport = TransportContext(kind="streamable-http", can_send_request=False, headers=request.headers)
            self._headers: list[tuple[bytes, bytes]] = []
        else:  # handshake era: what the dispatcher builds for a message of the transport
            self.transport = _HANDSHAKE_TRANSPORT
            session_id = session[0].mcp_session_id or ""
            self._headers = [(MCP_SESSION_ID_HEADER.lower().encode(), session_id.encode())]
        self.message_metadata = ServerMessageMetadata(request_context=request)
        self.scope = anyio.CancelScope()
        self._cancel_requested: anyio.Event | None = None
        self._lock = anyio.Lock(fast_acquire=True)  # taken at once when free: no extra turn of the loop per answer
        self._relayed: MemoryObjectReceiveStream[EventMessage] | None = None
        self._late: list[EventMessage] = []
        self._timer: asyncio.TimerHandle | None = None
        self._watcher: asyncio.Task[None] | None = None
        self.streaming = self.closed = self.disconnected = False

    # ---- DispatchContext ----

    @property
    def can_send_request(self) -> bool:
        return self._session is not None and not self.closed

    @property
    def cancel_requested(self) -> anyio.Event:
        if self._cancel_requested is None:
            self._cancel_requested = anyio.Event()
        return self._cancel_requested

    async def notify(self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None) -> None:
        if self.closed:
            logger.debug("dropped %s: the request is answered", method)
            return
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = dict(params)
        await self._event(dumps(message))

    async def progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        if self._progress_token is None:
            return
        params: dict[str, Any] = {"progressToken": self._progress_token, "progress": progress}
        if total is not None:
            params["total"] = total
        if message is not None:
            params["message"] = message
        await self.notify("notifications/progress", params)

    async def send_raw_request(
        self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None
    ) -> dict[str, Any]:
        if self._session is None or self.closed:
            raise NoBackChannelError(method)
        transport, dispatcher = self._session
        if self._relayed is None:
            self._relayed = open_request_stream(transport, self.request_id)
            if self._relayed is None:  # the client has another request with this id in flight
                raise NoBackChannelError(method)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._forward, self._relayed)
            try:
                result = await send_related_request(dispatcher, self.request_id, method, params, opts)
            finally:
                tg.cancel_scope.cancel()
        return result

    # ---- the response ----

    async def _forward(self, relayed: MemoryObjectReceiveStream[EventMessage]) -> None:
        """Write what the transport's router routes to this request (its server-to-client
        requests) as SSE events."""
        try:
            async for routed in relayed:
                await self._event(_wire(routed))
        except anyio.ClosedResourceError:  # the session ended
            pass

    async def _start_stream(self) -> None:
        self.streaming = True
        await self._send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS + self._headers})

    async def _write(self, chunk: bytes, *, more: bool = True) -> None:
        try:
            await self._send({"type": "http.response.body", "body": chunk, "more_body": more})
        except OSError:  # the client is gone
            self._gone()

    async def _event(self, payload: bytes) -> None:
        async with self._lock:
            if not self.streaming:
                await self._start_stream()
            await self._write(_sse(payload))

    async def answer(self, payload: bytes, status: int = 200) -> None:
        """End the response with `payload` (the JSON-RPC response or error): the last SSE event
        once streaming, else a JSON body with `status`."""
        async with self._lock:
            if self.streaming:
                await self._write(_sse(payload), more=False)
                return
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *self._headers,
            ]
            try:
                await self._send({"type": "http.response.start", "status": status, "headers": headers})
                await self._send({"type": "http.response.body", "body": payload, "more_body": False})
            except OSError:  # the client is gone
                self.disconnected = True

    def _gone(self) -> None:
        self.disconnected = True
        self.scope.cancel()

    # ---- watching the client ----

    def arm(self) -> None:
        """Watch the client once the call has run for `_WATCH_AFTER_SECONDS`. A timer, not a
        task: most calls end first, and cancelling a timer costs next to nothing (the hub
        serves HTTP with uvicorn on asyncio)."""
        self._timer = asyncio.get_running_loop().call_later(_WATCH_AFTER_SECONDS, self._start_watching)

    def _start_watching(self) -> None:
        self._timer = None
        if not self.closed:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        """Cancel the call when its client disconnects; commit to SSE and ping every
        `_PING_SECONDS` of silence."""
        while True:
            with anyio.move_on_after(_PING_SECONDS):
                while (await self._receive())["type"] != "http.disconnect":
                    pass
                self._gone()
                return
            async with self._lock:
                if not self.streaming:
                    await self._start_stream()
                await self._write(_PING)

    def close(self) -> None:
        """The call is over: its back-channel closes and its watching stops."""
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self._watcher is not None:
            self._watcher.cancel()
        if self._relayed is not None and self._session is not None:
            relayed = self._relayed
            self._relayed = None
            self._late = _drain(relayed)
            close_request_stream(self._session[0], self.request_id, relayed)

    async def flush(self) -> None:
        """Write what was routed to the request after its last server-to-client request
        returned (a courtesy cancel of the dispatcher's) before the answer."""
        for routed in self._late:
            await self._event(_wire(routed))


def _sse(payload: bytes) -> bytes:
    """One SSE `message` event carrying the JSON-RPC message `payload`."""
    return b"event: message\r\ndata: " + payload + b"\r\n\r\n"


def _wire(routed: EventMessage) -> bytes:
    """A message the transport's router routed to the request, as JSON bytes."""
    return routed.message.model_dump_json(by_alias=True, exclude_unset=True).encode()


def _drain(stream: MemoryObjectReceiveStream[EventMessage]) -> list[EventMessage]:
    items: list[EventMessage] = []
    while True:
        try:
            items.append(stream.receive_nowait())
        except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
            return items
