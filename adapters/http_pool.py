"""One HTTP connection pool (and one TLS context) shared by every remote server.

Building an `httpx2.AsyncClient` from scratch costs ~20 ms of CPU (the CA bundle is loaded into a
new `SSLContext`); the pool builds one transport at start-up and hands each server a light client
with its own headers over it (see PERFORMANCE.md).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping

import httpx2

__all__ = ["HttpPool"]

_CONNECT_TIMEOUT_SECONDS = 30.0
_MIN_READ_TIMEOUT_SECONDS = 300.0
"""Reads on a standing SSE stream may be idle this long (the SDK's own default) before the
connection is treated as dead; a call's own deadline is enforced by the MCP session."""


class _SharedTransport(httpx2.AsyncBaseTransport):
    """Delegates to the pool's transport; closing a per-server client leaves the pool open."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        return None


class HttpPool:
    """The process-wide pool of HTTP connections to remote servers.

    :param max_connections: open connections at most, over all servers. Default: 200.
    :param max_keepalive_connections: idle connections kept. Default: 50.
    """

    def __init__(self, *, max_connections: int = 200, max_keepalive_connections: int = 50) -> None:
        self._ssl_context = ssl.create_default_context()
        self._transport = httpx2.AsyncHTTPTransport(
            verify=self._ssl_context,
            limits=httpx2.Limits(max_connections=max_connections, max_keepalive_connections=max_keepalive_connections),
            trust_env=False,
        )

    def client(
        self,
        *,
        headers: Mapping[str, str] | None = None,
        timeout_seconds: float = 60.0,
        auth: httpx2.Auth | None = None,
    ) -> httpx2.AsyncClient:
        """A client for one server over the shared pool; closing it does not close the pool.

        :param headers: sent with every request to that server (e.g. its `Authorization`).
        :param timeout_seconds: connect/write/pool timeout (capped at 30 s); reads wait at least
            300 s, or longer when the server's timeout is longer.
        """
        return httpx2.AsyncClient(
            transport=_SharedTransport(self._transport),
            headers=dict(headers or {}),
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
