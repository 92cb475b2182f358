"""One HTTP connection pool (and one TLS context) shared by every remote server.

Building an `httpx2.AsyncClient` from scratch costs ~20 ms of CPU (the CA bundle is loaded into a
new `SSLContext`); the pool builds one transport at start-up, on the process's one TLS context
(`adapters.tls`), and hands each server a light client with its own headers over it (see
PERFORMANCE.md).

A server's client may cap its JSON answers (`max_json_bytes`): the SDK reads an
`application/json` answer whole (`await response.aread()` in
`mcp.client.streamable_http._handle_json_response`), so the cap is applied below it, while the
body streams. A body over the cap is never held: the response is closed (the server sees the
disconnect) and the SDK is handed, in place of the body, a JSON-RPC error for the request it
answered (`adapters.oversize.answer_too_large`), so that request alone fails and the session
carries on. The cap counts decoded bytes: a compressed body (`gzip`, `deflate`, the encodings
the client offers) is decompressed here with its output bounded, never past the cap.

An exchange that breaks (the connection reset or cut before or while an answer is read) is
answered here too, so that one request fails rather than the SDK's whole transport
(`adapters.broken_exchange`).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import AsyncIterator, Mapping

import httpx2
from mcp_types import INTERNAL_ERROR, ErrorData, JSONRPCError, RequestId

from adapters.broken_exchange import error_body, stand_in_answer
from adapters.oversize import answer_too_large, find_request_id
from adapters.tls import client_tls_context

__all__ = ["HttpPool"]

logger = logging.getLogger(__name__)

_CONNECT_TIMEOUT_SECONDS = 30.0
_MIN_READ_TIMEOUT_SECONDS = 300.0
"""Reads on a standing SSE stream may be idle this long (the SDK's own default) before the
connection is treated as dead; a call's own deadline is enforced by the MCP session."""
_ACCEPT_ENCODING = "gzip, deflate"
_UNCAPPED = 1 << 62
"""The "cap" of a JSON answer when the server has none (`max_json_bytes` None)."""
"""The content codings offered to servers: the ones a capped body can be decoded under its cap."""


class _SharedTransport(httpx2.AsyncBaseTransport):
    """Delegates to the pool's transport; closing a per-server client leaves the pool open.
    With `max_json_bytes`, JSON answers are capped while they stream (module docstring)."""

    def __init__(self, inner: httpx2.AsyncBaseTransport, max_json_bytes: int | None = None) -> None:
        self._inner = inner
        self._max_json_bytes = max_json_bytes

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        try:
            response = await self._inner.handle_async_request(request)
        except httpx2.TransportError as exc:
            # One exchange broke: answer for it, or the SDK's transport would end (adapters.broken_exchange).
            stand_in = stand_in_answer(request, exc)
            if stand_in is None:
                raise
            return stand_in
        content_type = response.headers.get("content-type", "").lower()
        if request.method != "POST" or not content_type.startswith("application/json"):
            return response
        # A JSON answer is read whole here (the SDK reads it whole too): capped, and a read that
        # breaks midway answers its request with an error instead of ending the transport.
        limit = self._max_json_bytes if self._max_json_bytes is not None else _UNCAPPED
        stream = response.stream
        assert isinstance(stream, httpx2.AsyncByteStream)  # an async transport's response
        headers = httpx2.Headers(response.headers)
        encoding = headers.pop("content-encoding", "identity").strip().lower()
        declared = headers.pop("content-length", None)
        body = _CappedJsonBody(stream, request, limit, encoding, declared)
        return httpx2.Response(response.status_code, headers=headers, stream=body, extensions=response.extensions)

    async def aclose(self) -> None:
        return None


class _CappedJsonBody(httpx2.AsyncByteStream):
    """A JSON answer's body, decoded and held up to `limit` bytes, then handed on; past the
    limit (or undecodable) the response is closed and a JSON-RPC error is handed on instead, and
    so is the stand-in of `adapters.broken_exchange` when the read breaks off."""

    def __init__(
        self, inner: httpx2.AsyncByteStream, request: httpx2.Request, limit: int, encoding: str, declared: str | None
    ) -> None:
        self._inner = inner
        self._request = request
        self._limit = limit
        self._encoding = encoding
        self._declared = declared
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        parts: list[bytes] = []
        size = 0
        refusal: tuple[str, bool] | None = None
        if self._encoding not in ("identity", "gzip", "deflate"):
            refusal = (f"the server answered with content-encoding {self._encoding!r}, which was not offered", False)
        elif self._encoding == "identity" and self._declared is not None and self._declared.isdigit():
            if int(self._declared) > self._limit:
                refusal = (self._too_large(), True)
        if refusal is None:
            decoder = _Decoder(self._encoding)
            try:
                async for chunk in self._inner:
                    data = decoder.decode(chunk, self._limit - size + 1)
                    size += len(data)
                    if size > self._limit:
                        refusal = (self._too_large(), True)
                        break
                    parts.append(data)
                else:
                    data = decoder.flush()
                    size += len(data)
                    parts.append(data)
                    if size > self._limit:
                        refusal = (self._too_large(), True)
            except zlib.error:
                refusal = (f"the server's {self._encoding} answer could not be decoded", False)
            except httpx2.TransportError as exc:
                parts.clear()
                await self.aclose()
                yield self._broken(exc)
                return
        if refusal is None:
            for part in parts:
                yield part
            return
        parts.clear()
        await self.aclose()  # abort: the rest is never read, and the connection is not reused
        yield self._error_body(*refusal)

    def _too_large(self) -> str:
        return f"the server's JSON answer was larger than {self._limit} bytes and was discarded"

    def _request_id(self) -> RequestId | None:
        try:
            content = self._request.content
        except httpx2.RequestNotRead:
            content = b""
        return find_request_id(content)

    def _broken(self, exc: httpx2.TransportError) -> bytes:
        """The stand-in error for the request whose answer broke off while it was read."""
        request_id = self._request_id()
        if request_id is None:
            raise exc
        logger.debug("the answer to request %r broke off while read (%s)", request_id, type(exc).__name__)
        return error_body(request_id, exc)

    def _error_body(self, message: str, too_large: bool) -> bytes:
        """The JSON-RPC error answering the request in place of the refused body."""
        request_id = self._request_id()
        if request_id is None:
            # Not a request (the SDK reads no answer to those): nothing to answer, fail the read.
            raise httpx2.StreamError(message)
        logger.debug("%s (request %r); answered it with an error", message, request_id)
        if too_large:
            error = answer_too_large(request_id, self._limit, message)
        else:
            error = JSONRPCError(jsonrpc="2.0", id=request_id, error=ErrorData(code=INTERNAL_ERROR, message=message))
        return error.model_dump_json(by_alias=True, exclude_none=True).encode()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._inner.aclose()


class _Decoder:
    """Content decoding with bounded output (RFC 9110 section 8.4.1): each call returns at most
    `max_bytes` bytes, so a small compressed body cannot expand past the cap in memory."""

    def __init__(self, encoding: str) -> None:
        self._encoding = encoding
        self._zlib: zlib._Decompress | None = None
        if encoding == "gzip":
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif encoding == "deflate":
            self._zlib = zlib.decompressobj()
        self._started = False

    def decode(self, data: bytes, max_bytes: int) -> bytes:
        if self._zlib is None:
            return data
        if self._encoding == "deflate" and not self._started:
            self._started = True
            try:
                return self._zlib.decompress(data, max_bytes)
            except zlib.error:
                # "deflate" is zlib-wrapped by the RFC, raw by many servers; httpx2 accepts both.
                self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
        return self._zlib.decompress(data, max_bytes)

    def flush(self) -> bytes:
        return self._zlib.flush() if self._zlib is not None else b""


class HttpPool:
    """The process-wide pool of HTTP connections to remote servers.

    :param max_connections: open connections at most, over all servers. Default: 200.
    :param max_keepalive_connections: idle connections kept. Default: 50.
    """

    def __init__(self, *, max_connections: int = 200, max_keepalive_connections: int = 50) -> None:
        self._transport = httpx2.AsyncHTTPTransport(
            verify=client_tls_context(),
            limits=httpx2.Limits(max_connections=max_connections, max_keepalive_connections=max_keepalive_connections),
            trust_env=False,
        )

    def client(
        self,
        *,
        headers: Mapping[str, str] | None = None,
        timeout_seconds: float = 60.0,
        auth: httpx2.Auth | None = None,
        max_json_bytes: int | None = None,
    ) -> httpx2.AsyncClient:
        """A client for one server over the shared pool; closing it does not close the pool.

        :param headers: sent with every request to that server (e.g. its `Authorization`).
        :param timeout_seconds: connect/write/pool timeout (capped at 30 s); reads wait at least
            300 s, or longer when the server's timeout is longer.
        :param max_json_bytes: largest `application/json` answer body (decoded bytes); a larger
            one is closed as soon as it passes the cap and the request it answered gets a
            JSON-RPC error (-32603, `data.reason` "answer_too_large", `data.limit_bytes`) instead
            (module docstring). Default None: no cap.
        """
        sent = httpx2.Headers(dict(headers or {}))
        sent.setdefault("accept-encoding", _ACCEPT_ENCODING)
        return httpx2.AsyncClient(
            transport=_SharedTransport(self._transport, max_json_bytes),
            headers=sent,
            auth=auth,
            timeout=httpx2.Timeout(
                min(timeout_seconds, _CONNECT_TIMEOUT_SECONDS),
                read=max(_MIN_READ_TIMEOUT_SECONDS, timeout_seconds + 5.0),
            ),
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        """Close every pooled connection."""
        await self._transport.aclose()
