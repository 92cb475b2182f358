"""Every private name of the `mcp` SDK (2.3) that the hub relies on, each behind one alias or
function here with the reason it is needed, so an SDK upgrade has one place to look.
`tests/test_sdk_private_names.py` fails, naming the missing one, when an upgrade removes any
of `PRIVATE_NAMES`.

- `Transport`, `TransportStreams` (`mcp.client._transport`): the SDK's transport protocol types;
  2.3 has no public alias for them (typing only).
- `create_process`, `drain_stdout`, `stop_process` (`mcp.client.stdio`): the SDK's own process
  start (own process group), stdout drain and shutdown escalation (close stdin, 2 s, SIGTERM
  the group, 2 s, SIGKILL); the hub frames stdout itself (`adapters.stdio`), so it cannot use
  the public `stdio_client` whole.
- `send_raw_request` (`ClientSession._stamp`, `ClientSession._dispatcher`): a request whose
  result is not validated against the negotiated revision (2025-11-25 task results), and the
  raw `tools/call`, `prompts/get`, `resources/read` and `completion/complete` of the lean
  request path (`hub.servers.raw_calls`: a plain result is passed on as the server sent it,
  with no pydantic round trip).
- `stamped_params` (`ClientSession._stamp`): the params of a request as the session would send
  them (protocol version, the modern era's `_meta` envelope, the hub's per-request additions),
  for a request that does not go through its dispatcher (`adapters.stdio_mux`, the raw path on
  stdio).
- `replaying` (`ClientSession._dispatcher`, replaced by a delegating wrapper): an answer the
  raw send got that is not plain is handed to the SDK's own method (`call_tool`,
  `get_prompt`, `read_resource`, `complete`) as the answer to its
  request, so the SDK's full processing of it (validation, the multi-round-trip loop, task
  claims, output schemas) runs exactly as if it had sent the request itself, without sending it
  twice. The SDK has no public way to process a result it did not receive.
- `stamp_each_request` (`ClientSession._stamp`): a per-request `_meta` addition (the calling
  client's capabilities, 2026-07-28); the SDK stamps the connection's own with no override.
- `connection_of`, `on_connection_closed` (`ServerSession._connection`): the lowlevel server
  has no public handle on a handshake-era client connection outside a request (SDK-NOTES 2.5).
- `handle_modern_request` (`mcp.server._streamable_http_modern`): the SDK's handler of one
  modern-era (2026-07-28) POST, which its `StreamableHTTPSessionManager` calls for a request
  whose `MCP-Protocol-Version` is not a handshake-era version. The hub serves Streamable HTTP
  with a session manager of its own (`hub.endpoint.session_manager`: sealed session ids any replica
  serves, which the SDK's manager cannot mint or rebuild), and routes modern-era requests to
  the same handler so both eras behave exactly as with the SDK's manager.
- `send_related_request` (`JSONRPCDispatcher.send_raw_request(_related_request_id=)`): a
  server-to-client request on a handshake-era session's dispatcher routed onto one request's
  stream. The lean request path (`hub.endpoint.fast_path`) serves a request outside the
  dispatcher, so it has no `DispatchContext` of the dispatcher's that would pass the id, but the
  client's answer must still settle through that dispatcher (and `hub.cluster.answers`).
- `open_request_stream`, `close_request_stream` (`StreamableHTTPServerTransport._request_streams`):
  where the transport's message router puts what is routed to a request (the request above);
  the lean path registers its request there while it waits for the client's answer.
- `request_in_flight` (`StreamableHTTPServerTransport._requests_in_flight`, `._idle_timeout`):
  a request served outside `handle_request` holds the session's idle countdown as one served
  through it does (`session_idle_timeout_seconds`).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream
from mcp.client._transport import Transport, TransportStreams
from mcp.client.session import ClientSession
from mcp.client.stdio import _create_platform_compatible_process as create_process
from mcp.client.stdio import _drain_stdout as drain_stdout
from mcp.client.stdio import _stop_server_process as stop_process
from mcp.server._streamable_http_modern import handle_modern_request
from mcp.server.session import ServerSession
from mcp.server.streamable_http import REQUEST_STREAM_BUFFER_SIZE, EventMessage, StreamableHTTPServerTransport
from mcp.shared.dispatcher import CallOptions, ProgressFnT
from mcp.shared.inbound import MCP_NAME_HEADER, encode_header_value
from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher
from mcp_types import RequestId

__all__ = [
    "PRIVATE_NAMES",
    "Transport",
    "TransportStreams",
    "close_request_stream",
    "connection_of",
    "create_process",
    "drain_stdout",
    "handle_modern_request",
    "on_connection_closed",
    "open_request_stream",
    "replaying",
    "request_in_flight",
    "send_raw_request",
    "send_related_request",
    "stamp_each_request",
    "stamped_params",
    "stop_process",
]

PRIVATE_NAMES: Final[tuple[tuple[str, str], ...]] = (
    ("mcp.client._transport", "Transport"),
    ("mcp.client._transport", "TransportStreams"),
    ("mcp.client.stdio", "_create_platform_compatible_process"),
    ("mcp.client.stdio", "_drain_stdout"),
    ("mcp.client.stdio", "_stop_server_process"),
    ("mcp.server._streamable_http_modern", "handle_modern_request"),
)
"""`(module, name)` of every private module-level name imported here."""

PRIVATE_ATTRIBUTES: Final[tuple[tuple[str, str], ...]] = (
    ("ClientSession", "_stamp"),
    ("ClientSession", "_dispatcher"),
    ("ServerSession", "_connection"),
    ("StreamableHTTPServerTransport", "_request_streams"),
    ("StreamableHTTPServerTransport", "_requests_in_flight"),
    ("StreamableHTTPServerTransport", "_idle_timeout"),
)
"""`(class, attribute)` of every private instance attribute used here (checked on live objects)."""


async def send_raw_request(
    session: ClientSession,
    method: str,
    params: Mapping[str, Any],
    *,
    on_progress: ProgressFnT | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """Send one request on `session` and return its result as the server sent it (a JSON
    object), without the SDK's validation of the result against the negotiated revision.

    Why: the 2025-11-25 revision answers a task-augmented `tools/call` (`params.task`) with a
    `CreateTaskResult` (`{"task": {...}}`, 2025-11-25 "Tasks"), but `ClientSession.send_request`
    validates every `tools/call` result of a 2025-11-25 session as a `CallToolResult` (its
    surface map leaves the experimental tasks out), so the public API rejects the answer. The
    request still goes through the session's own stamping (protocol version header) and its
    dispatcher, so ids, timeouts, progress and cancellation behave as for any other request.

    :param on_progress: receives `notifications/progress` for this request (the request id is
        its progress token).
    :param name: the tool, prompt or resource the request names: its `Mcp-Name` header when the
        session's stamp did not set one (as `ClientSession.send_request` does).
    :raises MCPError: the server's error response, or CONNECTION_CLOSED.
    """
    data: dict[str, Any] = {"method": method, "params": dict(params)}
    opts: CallOptions = {}
    session._stamp(data, opts)
    if name is not None:
        headers = opts.setdefault("headers", {})
        if MCP_NAME_HEADER not in headers:
            headers[MCP_NAME_HEADER] = encode_header_value(name)
    if on_progress is not None:
        opts["on_progress"] = on_progress
    return await session._dispatcher.send_raw_request(method, data.get("params"), opts)


def stamped_params(session: ClientSession, method: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """`params` of request `method` stamped as `session` stamps every request it sends (what
    `send_raw_request` sends, before the dispatcher adds its `progressToken` and trace
    context); `params` itself is not changed (its `_meta` is copied when the stamp adds to it)."""
    copied = dict(params)
    meta = copied.get("_meta")
    if isinstance(meta, dict):
        copied["_meta"] = dict(meta)
    data: dict[str, Any] = {"method": method, "params": copied}
    opts: CallOptions = {}
    session._stamp(data, opts)
    stamped: dict[str, Any] = data.get("params") or {}
    return stamped


def stamp_each_request(session: ClientSession, add: Callable[[dict[str, Any]], None]) -> None:
    """After the SDK stamps a request of `session` (protocol version, the connection's own
    client info and capabilities in `_meta`), call `add(data)` with the request (`{"method",
    "params"}`) so it can add or replace per-request `_meta` entries."""
    session_any: Any = session
    original = session_any._stamp

    def stamp(data: dict[str, Any], opts: Any) -> None:
        original(data, opts)
        add(data)

    session_any._stamp = stamp


def connection_of(session: ServerSession) -> object:
    """The client connection a handshake-era server session belongs to: one object per
    connection, the same across the requests of that connection (an identity key)."""
    connection: object = session._connection
    return connection


def on_connection_closed(session: ServerSession, callback: Callable[[], None]) -> None:
    """Call `callback` once, when the client connection of `session` closes (its exit stack
    unwinds: DELETE, idle expiry, the client gone, the hub stopping)."""
    session._connection.exit_stack.callback(callback)


async def send_related_request(
    dispatcher: JSONRPCDispatcher[Any],
    related_request_id: RequestId,
    method: str,
    params: Mapping[str, Any] | None,
    opts: CallOptions | None = None,
) -> dict[str, Any]:
    """Send a server-to-client request on `dispatcher` routed onto the stream of the client
    request `related_request_id` (what the dispatcher's own request context does), and return
    the client's result.

    :raises MCPError: the client's error, REQUEST_TIMEOUT, or CONNECTION_CLOSED.
    """
    return await dispatcher.send_raw_request(method, params, opts, _related_request_id=related_request_id)


def open_request_stream(
    transport: StreamableHTTPServerTransport, request_id: RequestId
) -> MemoryObjectReceiveStream[EventMessage] | None:
    """Register a stream for what the transport's message router routes to `request_id` (its
    `related_request_id` messages); None when a request with that id already has one."""
    streams = transport._request_streams
    key = str(request_id)  # the router looks requests up by their id as a string
    if key in streams:
        return None
    send, receive = anyio.create_memory_object_stream[EventMessage](REQUEST_STREAM_BUFFER_SIZE)
    streams[key] = (send, receive)
    return receive


def close_request_stream(
    transport: StreamableHTTPServerTransport, request_id: RequestId, stream: MemoryObjectReceiveStream[EventMessage]
) -> None:
    """Unregister and close the stream `open_request_stream` returned (once it is still the one
    registered for `request_id`)."""
    streams = transport._request_streams
    key = str(request_id)
    pair = streams.get(key)
    if pair is not None and pair[1] is stream:
        del streams[key]
        pair[0].close()
    stream.close()


@contextlib.contextmanager
def request_in_flight(transport: StreamableHTTPServerTransport) -> Iterator[None]:
    """Count a request served outside `transport.handle_request` as in flight on its session
    while the block runs: the idle countdown stops, and restarts when the last request ends
    (what `handle_request` does around each request it serves)."""
    idle_scope, idle_timeout = transport.idle_scope, transport._idle_timeout
    if idle_scope is None or idle_timeout is None:
        yield
        return
    transport._requests_in_flight += 1
    idle_scope.deadline = math.inf
    try:
        yield
    finally:
        transport._requests_in_flight -= 1
        if not transport._requests_in_flight:
            idle_scope.deadline = anyio.current_time() + idle_timeout


class _Replay:
    """The answer `replaying` hands to the next `method` request sent in its block."""

    __slots__ = ("answer", "method")

    def __init__(self, method: str, answer: dict[str, Any] | Exception) -> None:
        self.method = method
        self.answer: dict[str, Any] | Exception | None = answer


_REPLAY: contextvars.ContextVar[_Replay | None] = contextvars.ContextVar("hub_sdk_replay", default=None)


class _ReplayingDispatcher:
    """A session's dispatcher that answers the first request of a `replaying` block (in the
    task that entered it) with the block's answer instead of sending it; everything else is
    the wrapped dispatcher's."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def send_raw_request(
        self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        replay = _REPLAY.get()
        if replay is not None and replay.answer is not None and replay.method == method:
            answer, replay.answer = replay.answer, None
            if isinstance(answer, Exception):
                raise answer
            return answer
        result: dict[str, Any] = await self._inner.send_raw_request(method, params, opts, **kwargs)
        return result


@contextlib.contextmanager
def replaying(session: ClientSession, method: str, answer: dict[str, Any] | Exception) -> Iterator[None]:
    """Inside the block, the first `method` request this task sends on `session` is not sent:
    `answer` (a result as the server sent it, or the `MCPError` it answered with) comes back
    from the dispatcher as its answer, and the SDK processes it as it processes any answer.
    Later requests (another round, a re-list) are sent as usual."""
    dispatcher = session._dispatcher
    if not isinstance(dispatcher, _ReplayingDispatcher):
        session._dispatcher = _ReplayingDispatcher(dispatcher)
    token = _REPLAY.set(_Replay(method, answer))
    try:
        yield
    finally:
        _REPLAY.reset(token)
