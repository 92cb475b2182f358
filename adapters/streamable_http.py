"""Remote servers over Streamable HTTP (MCP 2025-03-26 and later, both eras)."""

from __future__ import annotations

import httpx2
from mcp.client.streamable_http import streamable_http_client

from adapters._sdk import Transport
from adapters.http_pool import HttpPool

__all__ = ["streamable_http_transport"]


def streamable_http_transport(
    url: str,
    pool: HttpPool,
    *,
    headers: dict[str, str] | None = None,
    timeout_seconds: float = 60.0,
    auth: httpx2.Auth | None = None,
    max_message_bytes: int | None = None,
) -> Transport:
    """A Streamable HTTP transport to `url` over the shared pool, with the server's own headers.

    :param headers: sent with every request (e.g. a static `Authorization`).
    :param auth: authenticates every request (e.g. `ClientCredentialsAuth`); it may outlive the
        transport, so a token survives reconnects.
    :param max_message_bytes: largest message from the server accepted, in bytes, in either
        shape an answer comes in (both eras), checked while it streams so an oversized one is
        never held whole:

        - one server-sent event: a larger one aborts its response stream (the server sees the
          disconnect) and the request fails with CONNECTION_CLOSED "SSE stream failed: ... byte
          limit" (the SDK's own cap);
        - one `application/json` body (decoded): a larger one is closed as it passes the cap and
          the request it answered fails with the error `adapters.oversize.answer_too_large`
          (-32603, `data.reason` "answer_too_large"); other requests are not disturbed.

        Default: the SDK's 1 MiB for events, no cap for JSON bodies.

    The handshake-era session is terminated with `DELETE` when the transport exits.
    """
    extra = {} if max_message_bytes is None else {"max_sse_event_size": max_message_bytes}
    http = pool.client(headers=headers, timeout_seconds=timeout_seconds, auth=auth, max_json_bytes=max_message_bytes)
    return streamable_http_client(url, http_client=http, terminate_on_close=True, **extra)
