"""Remote servers over the legacy HTTP+SSE transport (MCP 2024-11-05)."""

from __future__ import annotations

from typing import Any

import httpx2
from mcp.client.sse import sse_client

from adapters._sdk import Transport
from adapters.http_pool import HttpPool

__all__ = ["sse_transport"]


def sse_transport(
    url: str,
    pool: HttpPool,
    *,
    headers: dict[str, str] | None = None,
    timeout_seconds: float = 60.0,
    auth: httpx2.Auth | None = None,
) -> Transport:
    """A legacy SSE transport to `url` (the SSE stream URL) over the shared pool.

    :param headers: sent with the stream request and every message POST.
    :param auth: authenticates both (e.g. `ClientCredentialsAuth`).
    """

    def client_factory(
        headers: dict[str, str] | None = None, timeout: httpx2.Timeout | None = None, auth: httpx2.Auth | None = None
    ) -> httpx2.AsyncClient:
        return pool.client(headers=headers, timeout_seconds=timeout_seconds, auth=auth)

    extra: dict[str, Any] = {"headers": dict(headers or {})}
    return sse_client(
        url,
        timeout=min(timeout_seconds, 30.0),
        sse_read_timeout=max(300.0, timeout_seconds + 5.0),
        httpx_client_factory=client_factory,
        auth=auth,
        **extra,
    )
