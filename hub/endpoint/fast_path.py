"""The lean path of one plain request: served in the ASGI request's own task, answered with JSON
unless the call streams (issue 12, item 2).

A POST whose body is one JSON-RPC request for `tools/call`, `resources/read`, `prompts/get`,
`completion/complete` or one of the four lists (`PLAIN_METHODS`) is served here instead of
through the SDK's transport and dispatcher: the body is parsed once (orjson), and the face
server's own handler chain runs (`ServerRunner.on_request` in the handshake era, on the
session's `Connection`; `serve_one` in the modern era, on a `Connection` built from the
request's `_meta` envelope, as the SDK's single-exchange handler builds it) with a
`DispatchContext` of this module's, `LeanCall`. So the middleware (drain, trace context,
federation, policy, rate limits, metrics, the bridge boundary, tasks), the params validation,
the init gate and the result shaping are the SDK's, in the SDK's order; what changes is the wire
around them:

- **JSON until the call streams.** A call that sends nothing before its result is answered
  `application/json`. At the first message of the call (progress, a log message, a
  server-to-client request such as sampling or elicitation: whatever the SDK routes to the
  request's stream) the response becomes `text/event-stream`: that message and every later one
  are SSE events, then the result, then the stream ends. A call silent for 15 s commits to SSE
  and pings, as the SDK's responses do, so proxies keep the connection open.
- **Server-to-client requests** go through the session's dispatcher (which correlates the
  client's answer, POSTed like any other, also through `hub.cluster.answers` across replicas)
  and reach this request's response through the transport's message router
  (`adapters._sdk.open_request_stream`).
- **Cancellation.** A client's `notifications/cancelled` for a request served here cancels it
  (`FastPath.cancel`) and the client gets the same -32800 error as on the SDK's path; a client
  that disconnects cancels it too (watched only once a call has run for 1 s, so a quick call
  pays for no watcher task); the session ending answers CONNECTION_CLOSED. The routed call's
  cancellation sends the server `notifications/cancelled` (the SDK client does).

Errors come out as the SDK writes them: in the handshake era a JSON-RPC error with HTTP 200
(the dispatcher's mapping: `MCPError`, a validation error as -32602, anything else code 0); in
the modern era `modern_error_data` with the status of `ERROR_CODE_HTTP_STATUS`.

Everything else takes the SDK's path, with the body replayed: batches, notifications,
responses, other methods, a task-augmented `tools/call` (`params.task`), extra envelope
members, a body orjson cannot read, a request whose headers the SDK would refuse (Accept,
Content-Type) and, in the modern era, a request its inbound ladder or `Mcp-Param-*` check
refuses (so the SDK writes the refusal), or a face without `get_tool_input_schema`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any, Final

import anyio
import orjson
from mcp.server.connection import Connection
from mcp.server.lowlevel.server import Server
from mcp.server.runner import ServerRunner, modern_error_data, serve_one
from mcp.server.streamable_http import (
    REQUEST_CANCELLED,
    StreamableHTTPServerTransport,
    check_accept_headers,
)
from mcp.shared.dispatcher import coerce_request_id
from mcp.shared.inbound import (
    ERROR_CODE_HTTP_STATUS,
    InboundLadderRejection,
    classify_inbound_request,
    find_duplicated_routing_header,
    validate_mcp_param_headers,
)
from mcp.shared.jsonrpc_dispatcher import (
    JSONRPCDispatcher,
    cancelled_request_id_from_params,
    handler_exception_to_error_data,
)
from mcp_types import CONNECTION_CLOSED, ErrorData, JSONRPCError, RequestId
from starlette.requests import Request
from starlette.types import Receive, Send

from adapters._sdk import request_in_flight
from hub.endpoint.lean_call import LeanCall, dumps
from hub.signals import Changes

__all__ = ["PLAIN_METHODS", "FastPath", "decode"]

logger = logging.getLogger(__name__)

PLAIN_METHODS: Final = frozenset(
    {
        "tools/call",
        "resources/read",
        "prompts/get",
        "completion/complete",
        "tools/list",
        "resources/list",
        "resources/templates/list",
        "prompts/list",
    }
)
"""The methods served on the lean path: the routed requests, and the lists (whose prepared pages,
`hub.prepared_lists`, are then written by orjson rather than re-dumped by the SDK's transport)."""

_ENVELOPE: Final = frozenset({"jsonrpc", "id", "method", "params"})
_CLOSE_WRITE_SECONDS: Final = 1.0


def decode(body: bytes) -> Any:
    """The JSON value of a request body; None when orjson cannot read it."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _plain(message: Any) -> bool:
    """Whether `message` is one request the lean path serves exactly like the SDK's."""
    if type(message) is not dict or message.get("method") not in PLAIN_METHODS or message.get("jsonrpc") != "2.0":
        return False
    request_id = message.get("id")
    params = message.get("params")
    return (
        (type(request_id) is int or type(request_id) is str)  # never bool, null or absent
        and message.keys() <= _ENVELOPE
        and (params is None or (type(params) is dict and "task" not in params))
    )


def _handshake_error(request_id: RequestId, error: ErrorData) -> bytes:
    """A JSON-RPC error as the SDK's Streamable HTTP transport writes it."""
    return (
        JSONRPCError(jsonrpc="2.0", id=request_id, error=error)
        .model_dump_json(by_alias=True, exclude_unset=True)
        .encode()
    )


def _modern_error(request_id: RequestId, error: ErrorData) -> bytes:
    """A JSON-RPC error as the SDK's modern-era handler writes it."""
    body = JSONRPCError(jsonrpc="2.0", id=request_id, error=error).model_dump(
        mode="json", by_alias=True, exclude_none=True
    )
    return json.dumps(body, separators=(",", ":")).encode()


def _json_content(request: Request) -> bool:
    """Whether both of the SDK's Content-Type checks would pass."""
    return request.headers.get("content-type", "").split(";")[0].strip() == "application/json"


class FastPath:
    """The lean path of one face's sessions (see the module docstring). `lifespan_state` is set
    by the session manager once the face server's lifespan is entered."""

    def __init__(self, server: Server[Any]) -> None:
        self.server = server
        self.lifespan_state: Any = None
        self._calls: dict[StreamableHTTPServerTransport, dict[RequestId, LeanCall]] = {}
        """The handshake-era calls in flight, by the session copy (its transport) they belong to."""
        self.enabled = True
        """False: every request takes the SDK's path (to compare the two, or to rule the lean
        path out when diagnosing)."""
        self.served = 0
        """Requests served on the lean path (for tests and diagnostics)."""
        self.changes = Changes()
        """Notified when a handshake-era request starts or stops being served here (`in_flight`)."""

    @property
    def in_flight(self) -> int:
        """Handshake-era requests being served on the lean path now."""
        return sum(len(calls) for calls in self._calls.values())

    # ---- handshake era ----

    async def serve_session(
        self,
        body: bytes,
        transport: StreamableHTTPServerTransport,
        connection: Connection | None,
        request: Request,
        receive: Receive,
        send: Send,
    ) -> bool:
        """Serve the POST `body` on a handshake-era session held here; False when it must take
        the SDK's path (nothing was read from `receive` or written to `send`).

        `receive` is the request's, past its body; a `notifications/cancelled` for a request
        served here cancels it (and still takes the SDK's path, which acknowledges it).
        """
        if not self.enabled:
            return False
        message = decode(body)
        if type(message) is dict and message.get("method") == "notifications/cancelled" and "id" not in message:
            self._cancel(transport, message.get("params"))
            return False
        dispatcher = connection.outbound if connection is not None else None
        if (
            not _plain(message)
            or connection is None
            or not isinstance(dispatcher, JSONRPCDispatcher)
            or transport.is_terminated
            or (transport.idle_scope is not None and transport.idle_scope.cancel_called)
            or not _json_content(request)
            or not all(check_accept_headers(request))
        ):
            return False
        request_id, method, params = message["id"], message["method"], message.get("params")
        call = LeanCall(send, receive, request, request_id, params, session=(transport, dispatcher))
        calls = self._calls.setdefault(transport, {})
        key = coerce_request_id(request_id)
        calls[key] = call  # a duplicate id replaces the earlier one, as in the SDK's dispatcher
        self.served += 1
        self.changes.notify()
        try:
            with request_in_flight(transport):
                await self._serve_handshake(
                    call, ServerRunner(self.server, connection, self.lifespan_state), method, params
                )
        finally:
            if calls.get(key) is call:
                del calls[key]
                if not calls and self._calls.get(transport) is calls:
                    del self._calls[transport]
            self.changes.notify()
        return True

    async def _serve_handshake(self, call: LeanCall, runner: ServerRunner[Any], method: str, params: Any) -> None:
        request_id = call.request_id
        outcome: bytes | None = None
        call.arm()
        try:
            try:
                with call.scope:
                    result = await runner.on_request(call, method, params)
                    outcome = dumps({"jsonrpc": "2.0", "id": request_id, "result": result})
            except Exception as exc:  # the dispatcher's exception-to-wire mapping
                error = handler_exception_to_error_data(exc)
                if error is None:
                    logger.exception("handler for %r raised", method)
                    error = ErrorData(code=0, message=str(exc))
                outcome = _handshake_error(request_id, error)
            finally:
                call.close()
            await call.flush()
        except anyio.get_cancelled_exc_class():
            # The hub is stopping: answer so the client is not left waiting, as the SDK does.
            if not call.disconnected and not call.cancel_requested.is_set():
                with anyio.move_on_after(_CLOSE_WRITE_SECONDS, shield=True):
                    closed = ErrorData(code=CONNECTION_CLOSED, message="Connection closed")
                    await call.answer(_handshake_error(request_id, closed))
            raise
        if call.disconnected:
            return
        if call.cancel_requested.is_set():  # a cancelled request is never answered with its result
            outcome = _handshake_error(request_id, ErrorData(code=REQUEST_CANCELLED, message="Request cancelled"))
        elif outcome is None:  # the session ended under the call
            outcome = _handshake_error(request_id, ErrorData(code=CONNECTION_CLOSED, message="Connection closed"))
        await call.answer(outcome)

    def _cancel(self, transport: StreamableHTTPServerTransport, params: Any) -> None:
        calls = self._calls.get(transport)
        request_id = cancelled_request_id_from_params(params if isinstance(params, Mapping) else None)
        call = calls.get(coerce_request_id(request_id)) if calls and request_id is not None else None
        if call is not None:
            call.cancel_requested.set()
            call.scope.cancel()

    def end_session(self, transport: StreamableHTTPServerTransport) -> None:
        """The session copy of `transport` ended: cancel its calls still in flight (answered
        CONNECTION_CLOSED)."""
        for call in self._calls.pop(transport, {}).values():
            call.scope.cancel()
        self.changes.notify()

    # ---- modern era ----

    async def serve_modern(self, body: bytes, request: Request, receive: Receive, send: Send) -> bool:
        """Serve the modern-era (2026-07-28) POST `body`; False when it must take the SDK's
        single-exchange handler (nothing was read from `receive` or written to `send`)."""
        if not self.enabled:
            return False
        message = decode(body)
        if not _plain(message) or not _json_content(request) or not all(check_accept_headers(request)):
            return False
        if find_duplicated_routing_header(request.headers.items()) is not None:
            return False
        verdict = classify_inbound_request(message, headers=dict(request.headers))
        if isinstance(verdict, InboundLadderRejection) or not self._param_headers_pass(request, message):
            return False
        request_id, method, params = message["id"], message["method"], message.get("params")
        connection = Connection.from_envelope(
            verdict.protocol_version, verdict.client_info, verdict.client_capabilities
        )
        call = LeanCall(send, receive, request, request_id, params, session=None)
        self.served += 1
        call.arm()
        outcome, status = b"", 200
        try:
            with call.scope:
                result = await serve_one(
                    self.server, call, method, params, connection=connection, lifespan_state=self.lifespan_state
                )
                outcome = dumps({"jsonrpc": "2.0", "id": request_id, "result": result})
        except Exception as exc:  # the SDK's modern-era mapping (handler internals never reach the wire)
            error = modern_error_data(exc)
            outcome, status = _modern_error(request_id, error), ERROR_CODE_HTTP_STATUS.get(error.code, 200)
        finally:
            call.close()
        if not call.disconnected:
            await call.answer(outcome, status)
        return True

    def _param_headers_pass(self, request: Request, message: dict[str, Any]) -> bool:
        """Whether the SDK's `Mcp-Param-*` check of a `tools/call` passes (its steps, with the
        face's `get_tool_input_schema`); False also when only the SDK can tell."""
        params = message.get("params") or {}
        arguments = params.get("arguments")
        if message["method"] != "tools/call" or not isinstance(params.get("name"), str):
            return True
        if arguments is not None and not isinstance(arguments, Mapping):
            return True
        if not arguments and not any(name.startswith("mcp-param-") for name in request.headers):
            return True
        lookup = self.server.get_tool_input_schema
        if lookup is None:
            return False
        try:
            schema = lookup(params["name"])
        except Exception:
            return False  # the SDK logs it and skips the check
        return schema is None or validate_mcp_param_headers(schema, arguments or {}, request.headers) is None
