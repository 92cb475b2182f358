"""Ways of reaching an MCP server, one module each; depends on `mcp` and `httpx2`, never on `hub`.

Every adapter returns an SDK `Transport`: an async context manager that starts or connects to the
server and yields `(read_stream, write_stream)` for `mcp.Client`. A transport can be entered once;
build a new one to reconnect.
"""

from __future__ import annotations

from adapters.http_pool import HttpPool
from adapters.oauth import ClientCredentialsAuth
from adapters.sse import sse_transport
from adapters.stdio import stdio_transport
from adapters.streamable_http import streamable_http_transport
from adapters.watch import watch_closed

__all__ = [
    "ClientCredentialsAuth",
    "HttpPool",
    "sse_transport",
    "stdio_transport",
    "streamable_http_transport",
    "watch_closed",
]
