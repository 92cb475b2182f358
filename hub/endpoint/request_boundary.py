"""The request boundary of a face: the outermost hub middleware every MCP request passes, and
the one place where an error becomes a JSON-RPC answer.

Errors are mapped once per direction:

- **outbound** (talking to a server): what an exception from the SDK, a transport or anyio
  means is decided in `hub.servers.failures` (`classify`, `request_errors`): a lost
  connection becomes `ConnectionLost`, a server's own JSON-RPC error passes through as
  `MCPError`, and so on. The router then only decides, from those errors, whether to send
  again and what its breaker records (`hub.retry_rules.classify_failure`); it maps nothing.
- **inbound** (answering the client): here, in `RequestBoundary`. A `HubError` raised anywhere
  while a request is served becomes the `MCPError` of `answer_of` (code, message, `data`
  naming the route or server) with the request's `outcome` label; a server's `MCPError` passes
  through with its code; params that fail validation are left to the SDK (-32602); anything
  unexpected becomes -32603 "internal error" with the details in the log only. Every error's
  message and `data` leave with configured secrets masked (`hub.redaction`).

=======================================  ======================  =================
raised                                   JSON-RPC code           outcome label
=======================================  ======================  =================
`RouteNotFound`                          -32602 INVALID_PARAMS   `not_found`
`hub.pages.InvalidCursor`                -32602 INVALID_PARAMS   `invalid`
`RateLimited`                            -32029 RATE_LIMITED     `rate_limited`
`hub.pin_status.DefinitionHeld`          -32050 DEFINITION_HELD  `held`
`ServerTimeout`                          -32001 REQUEST_TIMEOUT  `timeout`
`ServerUnavailable` (and subclasses)     -32000                  `unavailable`
`hub.federation.FederationLoop`          -32010 (-32600)         (refused first)
any other `HubError` (`ServerError`...)  -32603 INTERNAL_ERROR   `internal_error`
a server's `MCPError`                    its own                 `server_error`
                                                                 (-32602: `invalid`)
params that fail validation              -32602 (by the SDK)     `invalid`
any other exception (a bug)              -32603 INTERNAL_ERROR   `internal_error`
cancellation (the client went away)      (none)                  `cancelled`
a result with `isError: true`            (a result)              `tool_error`
=======================================  ======================  =================

Each request also gets, in this order: its W3C trace context in context (`hub.trace_context`),
its hub chain checked and kept in context (`hub.federation`; a loop or an overlong chain is
refused before anything else), a fresh request id for its log lines (`hub.logs`), and for a
routed request (`ROUTED_METHODS`) its route label, a span when tracing is on (`hub.tracing`), a
log line when it does not succeed, and its metrics (`hub.metrics`).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from typing import Any, Final, NamedTuple

from mcp import MCPError
from mcp.server import ServerRequestContext
from mcp.server.context import CallNext, HandlerResult
from mcp_types import CONNECTION_CLOSED, INTERNAL_ERROR, INVALID_PARAMS, REQUEST_TIMEOUT
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError
from starlette.datastructures import Headers
from starlette.requests import Request

from hub.endpoint.faces import Face
from hub.endpoint.search_mode import CALL_TOOL, SEARCH_TOOLS
from hub.endpoint.session_registry import SessionRegistry
from hub.errors import RATE_LIMITED, HubError, RateLimited, RouteNotFound, ServerError, ServerTimeout, ServerUnavailable
from hub.federation import Federation, FederationLoop, inbound_chain
from hub.logs import new_request_id, server_id_var
from hub.metrics import NO_SERVER, RESOURCE_ROUTE, UNKNOWN_ROUTE, HubMetrics
from hub.pages import InvalidCursor
from hub.pin_status import DEFINITION_HELD, DefinitionHeld
from hub.policy import audit_logger
from hub.redaction import mask_error
from hub.trace_context import inbound_trace, read_trace_context
from hub.tracing import CallTracer, SpanRecord

__all__ = ["ROUTED_METHODS", "ErrorAnswer", "RequestBoundary", "answer_of"]

# The request path's modules share the faces' logger: operators and tests filter on "hub.endpoint.faces".
logger = logging.getLogger("hub.endpoint.faces")

ROUTED_METHODS: Final = frozenset({"tools/call", "resources/read", "prompts/get", "completion/complete"})
"""Requests that go through the router to a server (the ones metrics and spans count)."""

_ASKED_MAX_CHARS: Final = 80
"""How much of a requested name or URI a log line shows."""


class ErrorAnswer(NamedTuple):
    """What a client gets for a `HubError`, and how the request is counted."""

    error: MCPError
    """The JSON-RPC error (not masked yet)."""
    outcome: str
    """The request's `outcome` label (`HubMetrics.observe_call`, the span's `mcphub.outcome`)."""


def answer_of(exc: HubError) -> ErrorAnswer:
    """The JSON-RPC error and outcome label of a `HubError` (the table in the module
    docstring); `data` names the route or the server."""
    if isinstance(exc, FederationLoop):
        # Refused by `RequestBoundary` before the request is observed: the label is never counted.
        return ErrorAnswer(MCPError(exc.code, str(exc), exc.data), "internal_error")
    if isinstance(exc, RouteNotFound):
        named = {"kind": exc.kind, "name": exc.name, "suggestions": exc.suggestions}
        return ErrorAnswer(MCPError(INVALID_PARAMS, str(exc), named), "not_found")
    if isinstance(exc, InvalidCursor):
        return ErrorAnswer(MCPError(INVALID_PARAMS, str(exc), {"reason": "invalid_cursor"}), "invalid")
    if isinstance(exc, RateLimited):
        retry = {"retry_after_seconds": round(exc.retry_after_seconds, 3)}
        return ErrorAnswer(MCPError(RATE_LIMITED, str(exc), retry), "rate_limited")
    if isinstance(exc, DefinitionHeld):
        return ErrorAnswer(MCPError(DEFINITION_HELD, str(exc), exc.data()), "held")
    if isinstance(exc, ServerTimeout):
        return ErrorAnswer(MCPError(REQUEST_TIMEOUT, str(exc), {"server_id": exc.server_id}), "timeout")
    if isinstance(exc, ServerUnavailable):
        return ErrorAnswer(MCPError(CONNECTION_CLOSED, str(exc), {"server_id": exc.server_id}), "unavailable")
    if isinstance(exc, ServerError):
        return ErrorAnswer(MCPError(INTERNAL_ERROR, str(exc), {"server_id": exc.server_id}), "internal_error")
    return ErrorAnswer(MCPError(INTERNAL_ERROR, str(exc)), "internal_error")


class RequestBoundary:
    """The outermost hub middleware of one face (`Server.middleware`, before the bridge's
    `requestState` boundary and the tasks middleware): see the module docstring.

    :param face: resolves route labels (never a client-supplied string that is not in the
        catalog).
    :param registry: records each handshake-era session on its requests (`list_changed`).
    :param federation: checks the hub chain of each request.
    :param metrics: records every routed request (method, route, server, outcome, latency).
    :param tracer: opens a span per routed request (None: tracing off, no cost).
    """

    def __init__(
        self,
        face: Face,
        registry: SessionRegistry,
        federation: Federation,
        *,
        metrics: HubMetrics | None = None,
        tracer: CallTracer | None = None,
    ) -> None:
        self._face = face
        self._registry = registry
        self._federation = federation
        self._metrics = metrics
        self._tracer = tracer

    async def __call__(self, ctx: ServerRequestContext[Any], call_next: CallNext) -> HandlerResult:
        """Serve a request with its W3C trace context in context (outgoing requests carry it
        on, or their own span's when tracing is on; hub.trace_context)."""
        headers = ctx.request.headers if isinstance(ctx.request, Request) else None
        trace = read_trace_context(ctx.meta, headers)
        if trace is None:
            return await self._chained(ctx, call_next, headers)
        token = inbound_trace.set(trace)
        try:
            return await self._chained(ctx, call_next, headers)
        finally:
            inbound_trace.reset(token)

    async def _chained(
        self, ctx: ServerRequestContext[Any], call_next: CallNext, headers: Headers | None
    ) -> HandlerResult:
        """Refuse a request whose hub chain loops or is too long, and serve the rest with
        their chain in context (outgoing requests extend it; hub.federation). Notifications
        (no request id) carry no chain."""
        if ctx.request_id is None:
            return await self._observed(ctx, call_next, headers)
        try:
            chain = self._federation.check_inbound(ctx.meta, headers)
        except FederationLoop as exc:
            audit_logger.warning("refused %s: %s", ctx.method, exc)
            raise answer_of(exc).error from None
        token = inbound_chain.set(chain)
        try:
            return await self._observed(ctx, call_next, headers)
        finally:
            inbound_chain.reset(token)

    async def _observed(
        self, ctx: ServerRequestContext[Any], call_next: CallNext, headers: Headers | None
    ) -> HandlerResult:
        """Serve a request with a fresh request id; a routed one also with its route label,
        span, log line and metrics."""
        if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            self._registry.track(ctx.session)
        request_id = new_request_id()
        record = SpanRecord()
        if ctx.method not in ROUTED_METHODS:
            return await self._translated(ctx, call_next, record)
        record.route, record.server_id = _route_of(self._face, ctx.method, ctx.params)
        server_token = server_id_var.set(record.server_id or None)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s %s -> server %s", ctx.method, _described(ctx, record), record.server_id or "-")
        started = time.perf_counter()
        try:
            if self._tracer is None:
                return await self._translated(ctx, call_next, record)
            with self._tracer.span(ctx.method, request_id, record, ctx.meta, headers, ctx.protocol_version):
                return await self._translated(ctx, call_next, record)
        except BaseException as exc:
            if not isinstance(exc, Exception):
                record.outcome = "cancelled"
            if record.outcome not in ("ok", "tool_error"):
                logger.info("%s %s: %s", ctx.method, _described(ctx, record), record.outcome)
            raise
        finally:
            if self._metrics is not None:
                self._metrics.observe_call(
                    ctx.method, record.route, record.server_id, record.outcome, time.perf_counter() - started
                )
            server_id_var.reset(server_token)

    async def _translated(
        self, ctx: ServerRequestContext[Any], call_next: CallNext, record: SpanRecord
    ) -> HandlerResult:
        """The request's answer, its error mapped to JSON-RPC and masked, and its outcome in
        `record` (`tool_error` for a result with `isError: true`)."""
        try:
            result = await call_next(ctx)
        except MCPError as exc:
            record.outcome = "invalid" if exc.code == INVALID_PARAMS else "server_error"
            masked = mask_error(exc)  # a server's error may carry its own secrets (hub.redaction)
            if masked is exc:
                raise
            raise masked from None
        except ValidationError:
            record.outcome = "invalid"
            raise  # the SDK answers -32602 with the validation errors
        except HubError as exc:
            answer = answer_of(exc)
            record.outcome = answer.outcome
            raise mask_error(answer.error) from None
        except Exception:
            logger.exception("unexpected error while handling %s", ctx.method)
            raise MCPError(INTERNAL_ERROR, "internal error in the hub (details are in its log)") from None
        # Inside the SDK's chain a result is already its wire dict; a model when called directly.
        is_error = result.get("isError") is True if isinstance(result, dict) else getattr(result, "is_error", False)
        record.outcome = "tool_error" if is_error else "ok"
        return result


def _described(ctx: ServerRequestContext[Any], record: SpanRecord) -> str:
    """The route of a log line: its exposed name, or for an unknown name or a resource the
    label followed by what was asked (`tools/call <unknown> 'evrything__echo'`)."""
    if record.route in (UNKNOWN_ROUTE, RESOURCE_ROUTE):
        return f"{record.route} {_asked(ctx.method, ctx.params)}"
    return record.route


def _route_of(face: Face, method: str, params: Mapping[str, Any] | None) -> tuple[str, str]:
    """`(route label, server_id)` of a routed request: the exposed name only when the face
    resolves it (bounded by the catalog), else `UNKNOWN_ROUTE`; resource URIs are never labels."""
    params = params if isinstance(params, Mapping) else {}
    if method == "completion/complete":
        ref = params.get("ref")
        ref = ref if isinstance(ref, Mapping) else {}
        if ref.get("type") == "ref/prompt":
            method, params = "prompts/get", ref
        else:
            method, params = "resources/read", {"uri": ref.get("uri")}
    if method == "resources/read":
        uri = params.get("uri")
        owner = face.resolve_uri(uri) if isinstance(uri, str) else None
        return (RESOURCE_ROUTE, owner[0]) if owner else (UNKNOWN_ROUTE, NO_SERVER)
    name = params.get("name")
    if method == "tools/call" and name in (SEARCH_TOOLS, CALL_TOOL):
        # Search mode: a search is its own route; `call_tool` is labelled as the tool it calls.
        arguments = params.get("arguments")
        inner = arguments.get("name") if isinstance(arguments, Mapping) and name == CALL_TOOL else None
        if not isinstance(inner, str):
            return name, NO_SERVER
        name = inner
    if not isinstance(name, str):
        return UNKNOWN_ROUTE, NO_SERVER
    owner = face.resolve_tool(name) if method == "tools/call" else face.resolve_prompt(name)
    if owner is not None:
        return name, owner[0]
    return UNKNOWN_ROUTE, face.claimed_by(name) or NO_SERVER


def _asked(method: str, params: Mapping[str, Any] | None) -> str:
    """What a routed request asked for, for a log line: the tool or prompt name, or the
    resource URI without its query, fragment or userinfo, cut to 80 characters and escaped
    (`repr`: control characters and line breaks cannot forge log lines). Never the arguments."""
    params = params if isinstance(params, Mapping) else {}
    if method == "completion/complete":
        ref = params.get("ref")
        params = ref if isinstance(ref, Mapping) else {}
    key = "uri" if "uri" in params else "name"
    value = params.get(key)
    if not isinstance(value, str):
        return "(none)"
    if key == "uri":
        value = re.sub(r"//[^/@?#]*@", "//", value.split("#", 1)[0])
        value = value.split("?", 1)[0] + ("?..." if "?" in value else "")
    if len(value) > _ASKED_MAX_CHARS:
        value = value[:_ASKED_MAX_CHARS] + "..."
    return repr(value)
