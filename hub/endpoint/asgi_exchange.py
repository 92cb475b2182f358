"""An HTTP exchange handed to the SDK's Streamable HTTP transport after the hub read its body
(`hub.endpoint.session_manager`): the body replayed, the status the transport answered
watched, a client's answer posted on the client's behalf, and the JSON-RPC error responses the
session manager gives itself.
"""

from __future__ import annotations

from typing import Any, Final

from mcp.server.streamable_http import MCP_SESSION_ID_HEADER, StreamableHTTPServerTransport
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
from mcp_types import INVALID_REQUEST
from starlette.responses import JSONResponse, Response
from starlette.types import Message, Receive, Scope, Send

__all__ = ["SESSION_HEADER", "VERSION_HEADER", "jsonrpc_error", "post_answer", "replay", "served"]

SESSION_HEADER: Final = MCP_SESSION_ID_HEADER.lower().encode("ascii")
"""`mcp-session-id` as an ASGI header name."""
VERSION_HEADER: Final = MCP_PROTOCOL_VERSION_HEADER.lower().encode("ascii")
"""`mcp-protocol-version` as an ASGI header name."""


def jsonrpc_error(message: str, status: int, code: int = INVALID_REQUEST, request_id: Any = None) -> Response:
    """A JSON-RPC error response (`code`, `message`, `id`: `request_id`) with HTTP `status`."""
    return JSONResponse(
        {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}, status_code=status
    )


def replay(body: bytes, receive: Receive) -> Receive:
    """`receive` that hands out `body` (already read) first, then the rest of the exchange."""
    pending = True

    async def replayed() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def served(transport: StreamableHTTPServerTransport, scope: Scope, receive: Receive, send: Send) -> int | None:
    """Let `transport` answer the request; the HTTP status it answered with (None: none)."""
    status: int | None = None

    async def watched(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        await send(message)

    await transport.handle_request(scope, receive, watched)
    return status


async def post_answer(transport: StreamableHTTPServerTransport, protocol_version: str, body: bytes) -> None:
    """Hand `transport` a client's answer (a JSON-RPC response, `body`) that another replica
    received, as the POST the client would have sent here; its 202 goes nowhere."""
    session_id = transport.mcp_session_id
    assert session_id is not None
    headers = [
        (b"content-type", b"application/json"),
        (b"accept", b"application/json, text/event-stream"),
        (SESSION_HEADER, session_id.encode("ascii")),
        (VERSION_HEADER, protocol_version.encode("ascii")),
    ]
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": None,
        "server": None,
    }

    async def disconnected() -> Message:
        return {"type": "http.disconnect"}

    async def discard(message: Message) -> None:
        return None

    await transport.handle_request(scope, replay(body, disconnected), discard)
