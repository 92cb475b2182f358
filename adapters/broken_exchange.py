"""One broken HTTP exchange fails one request, never the connection to the server.

The SDK's Streamable HTTP client runs each request's POST in a task of the transport's own task
group and catches nothing around it but its SSE stream: an `httpx2.TransportError` while the POST
waits for its answer or reads a JSON body (the server reset the connection, a proxy cut it, a
pod died mid-answer) fails that task group, which ends the whole transport, so every other call
in flight on the server fails and the hub reconnects. A notification's POST is awaited in the
writer loop itself, where the error ends the writer: later requests are never sent.

So the pool's transport (`adapters.http_pool`) answers, in place of the exchange that broke:

- a JSON-RPC request (`method` and `id`): a JSON-RPC error for that id, code -32603
  (INTERNAL_ERROR, JSON-RPC 2.0 section 5.1), `data` `{"reason": "exchange_failed", "error":
  "<the httpx2 error's class name>"}` (`stand_in_answer`); only that request fails, and the
  caller tells this error from a server's own with `exchange_failure`. The request may have
  reached the server, so a caller treats it as delivered (no unsafe retry);
- a notification or a response to a server's request: `202 Accepted` (what a server answers to
  those), after a warning; that message is lost, the connection carries on.

Errors before a connection exists (`httpx2.ConnectError`, `ConnectTimeout`, `PoolTimeout`) on a
request are left to the SDK: the server cannot be reached at all, the transport ends, and the
supervisor reconnects with backoff. An SSE answer that breaks is already resolved by the SDK
(`CONNECTION_CLOSED`, "SSE stream ...") without ending the transport.
"""

from __future__ import annotations

import json
import logging
from typing import Final

import httpx2
from mcp import MCPError
from mcp_types import INTERNAL_ERROR, ErrorData, JSONRPCError

__all__ = ["BROKEN_EXCHANGE_ERRORS", "EXCHANGE_FAILED", "error_body", "exchange_failure", "stand_in_answer"]

logger = logging.getLogger(__name__)

EXCHANGE_FAILED: Final = "exchange_failed"
"""`error.data.reason` of the stand-in error for a request whose HTTP exchange broke."""

BROKEN_EXCHANGE_ERRORS: Final = (
    httpx2.RemoteProtocolError,
    httpx2.ReadError,
    httpx2.WriteError,
    httpx2.ReadTimeout,
    httpx2.WriteTimeout,
)
"""The transport errors of an exchange that had its connection: the request may have been
delivered, and the server is reachable (a `ConnectError` is neither)."""


def _json_rpc_message(request: httpx2.Request) -> dict[str, object] | None:
    """The JSON-RPC message a POST carried, or None when it is not one (e.g. an OAuth token
    request, form-encoded)."""
    if request.method != "POST" or not request.headers.get("content-type", "").startswith("application/json"):
        return None
    try:
        message = json.loads(request.content)
    except (httpx2.RequestNotRead, ValueError):
        return None
    return message if isinstance(message, dict) and message.get("jsonrpc") == "2.0" else None


def stand_in_answer(request: httpx2.Request, exc: httpx2.TransportError) -> httpx2.Response | None:
    """The response that stands in for `request`'s exchange, broken by `exc` (module docstring),
    or None when the error must reach the SDK as it is (not a JSON-RPC POST, or a request whose
    server could not be reached: `exc` not in `BROKEN_EXCHANGE_ERRORS`)."""
    message = _json_rpc_message(request)
    if message is None:
        return None
    kind = type(exc).__name__
    request_id = message.get("id")
    if "method" not in message or not isinstance(request_id, str | int) or isinstance(request_id, bool):
        logger.warning("a %s to the server was lost: its HTTP exchange failed (%s)", _what(message), kind)
        return httpx2.Response(202, request=request)
    if not isinstance(exc, BROKEN_EXCHANGE_ERRORS):
        return None
    return httpx2.Response(
        200, headers={"content-type": "application/json"}, content=error_body(request_id, exc), request=request
    )


def error_body(request_id: str | int, exc: httpx2.TransportError) -> bytes:
    """The stand-in JSON-RPC error answering request `request_id`, whose exchange `exc` broke."""
    kind = type(exc).__name__
    error = ErrorData(
        code=INTERNAL_ERROR,
        message=f"the HTTP exchange with the server broke before its answer ({kind})",
        data={"reason": EXCHANGE_FAILED, "error": kind},
    )
    return (
        JSONRPCError(jsonrpc="2.0", id=request_id, error=error)
        .model_dump_json(by_alias=True, exclude_none=True)
        .encode()
    )


def _what(message: dict[str, object]) -> str:
    method = message.get("method")
    return f"{method} notification" if isinstance(method, str) else "response to a server request"


def exchange_failure(error: MCPError) -> str | None:
    """The httpx2 error class name when `error` is the stand-in for a broken exchange
    (`stand_in_answer`), else None (e.g. the server's own error)."""
    data = error.data
    if error.code != INTERNAL_ERROR or not isinstance(data, dict) or data.get("reason") != EXCHANGE_FAILED:
        return None
    kind = data.get("error")
    return kind if isinstance(kind, str) else "TransportError"
