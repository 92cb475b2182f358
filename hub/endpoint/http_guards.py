"""ASGI guards in front of the endpoint's app: what every HTTP request must pass before auth and
before the SDK sees it.

- `HostOriginGuard`: the `Host` header must name an allowed host (else 421 Misdirected Request)
  and an `Origin` header, when present, an allowed origin (else 403), on every path, so a
  DNS-rebinding page can read neither `/mcp` nor `/readyz` nor `/admin` (MCP spec
  basic/transports "Security Warning"; SECURITY.md case 9). Values are parsed exactly
  (`hub.authority`), never prefix-matched.
- `RequestGate`: POST bodies. On the MCP paths a `Content-Type` other than `application/json`
  gets 415 Unsupported Media Type (RFC 9110 section 15.5.16), a body over `max_body_bytes` gets
  413 Content Too Large (decided from `Content-Length`, or while the body streams in, before it
  is ever held whole), and a body that is well-formed JSON but not one JSON-RPC object (a batch
  array, a bare string or number) gets HTTP 400 with JSON-RPC -32600 Invalid Request: the SDK
  serves neither era's batches (the 2025-06-18 spec removed them; the modern era never had
  them). Other bodies go to the app unchanged, replayed from the buffer.

Every refusal carries `Connection: close`; the HTTP server (`hub.endpoint.http_server`) then reads and
discards what the client is still sending, within bounds, so even a client that writes its whole
body before it reads (`urllib`) gets to read the answer instead of a connection reset.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Final

from mcp_types import INVALID_REQUEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.authority import HostAllowList

__all__ = ["HostOriginGuard", "RequestGate", "is_mcp_path"]

logger = logging.getLogger(__name__)

_JSON_MEDIA_TYPE: Final = b"application/json"
_WHITESPACE: Final = b" \t\r\n"
_CACHE_MAX: Final = 256
"""How many distinct accepted Host/Origin values are remembered (so the common ones are parsed
once); values past that are parsed on every request, never cached."""


def is_mcp_path(path: str) -> bool:
    """Whether `path` is an MCP endpoint: `/mcp`, `/servers/<server_id>/mcp` or `/profiles/<name>/mcp`."""
    return path == "/mcp" or (
        path.startswith(("/servers/", "/profiles/")) and path.endswith("/mcp") and path.count("/") == 3
    )


async def _refuse(send: Send, status: int, body: bytes, content_type: bytes = b"text/plain; charset=utf-8") -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _refuse_jsonrpc(send: Send, status: int, message: str) -> None:
    """An HTTP error with a JSON-RPC error body (`id: null`, code -32600), as the SDK shapes its
    own transport-level refusals."""
    body = {"jsonrpc": "2.0", "id": None, "error": {"code": INVALID_REQUEST, "message": message}}
    await _refuse(send, status, json.dumps(body, separators=(",", ":")).encode(), b"application/json")


class HostOriginGuard:
    """421 for a `Host` that is absent, malformed or not allowed; 403 for an `Origin` that is
    present and not an allowed http(s) origin. Other requests pass unchanged.

    :param app: the wrapped ASGI app.
    :param allowed_hosts: allow-list entries (`host`, `host:port`, `host:*`).
    :raises ValueError: an entry is malformed.
    """

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str]) -> None:
        self._app = app
        self._allowed = HostAllowList(allowed_hosts)
        self._good_hosts: set[bytes] = set()
        self._good_origins: set[bytes] = set()

    def _check(self, value: bytes | None, good: set[bytes], origin: bool) -> bool:
        if value is None:
            return origin  # Origin may be absent (same-origin and non-browser requests); Host may not
        if value in good:
            return True
        text = value.decode("latin-1").strip(" \t")  # optional whitespace is not part of a value (RFC 9110 5.5)
        ok = self._allowed.allows_origin(text) if origin else self._allowed.allows_host(text)
        if ok and len(good) < _CACHE_MAX:
            good.add(value)
        return ok

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = origin = None
            for name, value in scope["headers"]:
                if name == b"host":
                    host = value
                elif name == b"origin":
                    origin = value
            if not self._check(host, self._good_hosts, origin=False):
                logger.warning("refused a request for a Host that is not allowed: %r", (host or b"")[:200])
                await _refuse(send, 421, b"Invalid Host header")
                return
            if not self._check(origin, self._good_origins, origin=True):
                logger.warning("refused a request from an Origin that is not allowed: %r", (origin or b"")[:200])
                await _refuse(send, 403, b"Invalid Origin header")
                return
        await self._app(scope, receive, send)


def _is_json(content_type: bytes | None) -> bool:
    """Whether a Content-Type names `application/json` (any parameters; case-insensitive)."""
    if content_type is None:
        return False
    return content_type.split(b";", 1)[0].strip().lower() == _JSON_MEDIA_TYPE


def _is_one_object(body: bytes) -> bool:
    """False only for well-formed JSON that is not an object (a batch array, a string, a number,
    ...); malformed JSON passes, for the SDK to answer with -32700 Parse error."""
    if body[:1] == b"{":
        return True
    stripped = body.lstrip(_WHITESPACE)
    if not stripped or stripped[:1] == b"{":
        return True
    try:
        json.loads(stripped)
    except (ValueError, RecursionError):
        return True
    return False


class RequestGate:
    """Content-Type, body-size and single-message checks on POSTs (see the module docstring).

    :param app: the wrapped ASGI app; it receives the whole body in one `http.request` message.
    :param max_body_bytes: the largest body accepted, in bytes (the `max_body_bytes` config key).
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self._app = app
        self._max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self._app(scope, receive, send)
            return
        mcp = is_mcp_path(scope["path"])
        content_type = content_length = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"content-length":
                content_length = value
        if mcp and not _is_json(content_type):
            await _refuse_jsonrpc(send, 415, "Unsupported Media Type: Content-Type must be application/json")
            return
        if (
            content_length is not None
            and content_length.isdigit()
            and (len(content_length) > 18 or int(content_length) > self._max_body_bytes)
        ):
            await self._too_large(send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away (or timed out) before its body was complete
            body += message.get("body", b"")
            if len(body) > self._max_body_bytes:
                await self._too_large(send)
                return
            if not message.get("more_body", False):
                break
        whole = bytes(body)
        if mcp and not _is_one_object(whole):
            await _refuse_jsonrpc(
                send,
                400,
                "Invalid Request: the body must be one JSON-RPC message object; "
                "JSON-RPC batches (arrays) are not supported",
            )
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": whole, "more_body": False}

        await self._app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        await _refuse_jsonrpc(send, 413, f"Request body too large: the limit is {self._max_body_bytes} bytes")
