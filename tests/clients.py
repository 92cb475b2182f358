"""The tests' HTTP and MCP clients, all on the process's one TLS context (`adapters.tls`).

An `httpx2.AsyncClient` built without `verify=` loads the system's CA bundle into a new
`ssl.SSLContext` (~20-25 ms of CPU), and `mcp.Client(url)` builds one such client per
connection: in `make test-fast` that was about a sixth of the test processes' CPU (py-spy), for
TLS no test uses (every peer is on loopback HTTP). These build the same clients on the shared context:

- `http_client(**kwargs)` is `httpx2.AsyncClient(**kwargs)`;
- `mcp_client(server, **kwargs)` is `mcp.Client(server, **kwargs)`; for a URL, its Streamable
  HTTP transport gets an HTTP client of its own, built as the SDK builds its default one
  (`create_mcp_http_client`: 30 s timeouts, 300 s to read a stream) and closed with the
  transport.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from adapters.tls import client_tls_context

__all__ = ["http_client", "mcp_client"]

_MCP_TIMEOUT = httpx2.Timeout(30.0, read=300.0)
"""The SDK's default client timeouts (`create_mcp_http_client`): 30 s to connect, write or wait
for the pool, 300 s to read (a server may hold a stream open)."""


def http_client(**kwargs: Any) -> httpx2.AsyncClient:
    """`httpx2.AsyncClient(**kwargs)` on the shared TLS context."""
    return httpx2.AsyncClient(verify=client_tls_context(), **kwargs)


@asynccontextmanager
async def _streamable_http(url: str) -> AsyncIterator[Any]:
    """The SDK's Streamable HTTP transport to `url`, over an HTTP client of its own."""
    async with http_client(timeout=_MCP_TIMEOUT) as http, streamable_http_client(url, http_client=http) as streams:
        yield streams


def mcp_client(server: Any, **kwargs: Any) -> Client:
    """`mcp.Client(server, **kwargs)`; a URL `server` is reached over an HTTP client on the
    shared TLS context (the SDK would build one with a context of its own)."""
    return Client(_streamable_http(server) if isinstance(server, str) else server, **kwargs)
