"""An MCP server (mcp 2.3, both eras) that puts its own secret everywhere a server can, and
tells what hub chain reached it. The tests run it as a real peer behind the hub.

    python tests/servers/leaky_server.py [--transport stdio|http|sse] [--port 0]

Its secret is the value of `$LEAKY_SECRET` (over stdio: the hub's `env:` entry), or over HTTP
or SSE the token of the `Authorization: Bearer <token>` header the request came with (the hub's
`headers:` entry). Over HTTP/SSE it binds 127.0.0.1 and prints `PORT=<n>` once listening
(Streamable HTTP at `/mcp`, legacy SSE at `/sse`).

Tools:

- `leak_log()`: a `notifications/message` whose `data` holds the secret in nested JSON (a
  value, a list item, a key) and whose `logger` name holds it too; answers "logged".
- `leak_error()`: fails with JSON-RPC error -32050, the secret in its `message` and `data`.
- `leak_progress()`: reports progress with the secret in the message (when asked for
  progress); answers "done".
- `seen_chain()`: the hub chain the request came with, as JSON
  `{"meta": <_meta io.mcphub/chain>, "header": <Mcp-Hub-Chain header or null>}`.
- `seen_trace()`: the W3C trace context the request came with, as JSON
  `{"meta": {<_meta traceparent, tracestate, baggage present>}, "header": {<the same HTTP headers present>}}`.

Resources: `leaky://info` (text "info").
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio
import mcp_types as types
import uvicorn
from mcp import MCPError
from mcp.server import Server, ServerRequestContext
from mcp.server.sse import SseServerTransport
from mcp.server.stdio import stdio_server
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

_EMPTY: dict[str, Any] = {"type": "object", "properties": {}}
_TOOLS = [
    types.Tool(name="leak_log", description="Log the secret.", input_schema=_EMPTY),
    types.Tool(name="leak_error", description="Fail with the secret.", input_schema=_EMPTY),
    types.Tool(name="leak_progress", description="Report progress with the secret.", input_schema=_EMPTY),
    types.Tool(name="seen_chain", description="The hub chain this request came with.", input_schema=_EMPTY),
    types.Tool(name="seen_trace", description="The trace context this request came with.", input_schema=_EMPTY),
]
_TRACE_KEYS = ("traceparent", "tracestate", "baggage")


def _secret(ctx: ServerRequestContext[Any]) -> str:
    request = ctx.request
    if isinstance(request, Request):
        return request.headers.get("authorization", "").removeprefix("Bearer ")
    return os.environ.get("LEAKY_SECRET", "")


def _text(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)])


async def _list_tools(ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None) -> Any:
    return types.ListToolsResult(tools=_TOOLS)


async def _call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
    secret = _secret(ctx)
    if params.name == "leak_log":
        data = {"detail": {"token": secret, "list": [f"key={secret}", 1]}, secret: "as a key"}
        await ctx.session.send_log_message("error", data, f"logger-{secret}", ctx.request_id)
        return _text("logged")
    if params.name == "leak_error":
        raise MCPError(-32050, f"upstream rejected the token {secret}", {"token": secret, "nested": [{"t": secret}]})
    if params.name == "leak_progress":
        await ctx.session.report_progress(0.5, 1.0, f"halfway with {secret}")
        return _text("done")
    if params.name == "seen_chain":
        header = ctx.request.headers.get("mcp-hub-chain") if isinstance(ctx.request, Request) else None
        return _text(json.dumps({"meta": (ctx.meta or {}).get("io.mcphub/chain"), "header": header}))
    if params.name == "seen_trace":
        meta = ctx.meta or {}
        headers = ctx.request.headers if isinstance(ctx.request, Request) else {}
        return _text(
            json.dumps(
                {
                    "meta": {key: meta[key] for key in _TRACE_KEYS if key in meta},
                    "header": {key: headers[key] for key in _TRACE_KEYS if key in headers},
                }
            )
        )
    raise MCPError(-32602, f"unknown tool {params.name}")


async def _list_resources(ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None) -> Any:
    return types.ListResourcesResult(resources=[types.Resource(uri="leaky://info", name="info")])


async def _read_resource(ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams) -> Any:
    return types.ReadResourceResult(contents=[types.TextResourceContents(uri=str(params.uri), text="info")])


def build_server() -> Server[Any]:
    server: Server[Any] = Server(
        "leaky",
        on_list_tools=_list_tools,
        on_call_tool=_call_tool,
        on_list_resources=_list_resources,
        on_read_resource=_read_resource,
    )
    server.middleware.clear()
    return server


def _app(server: Server[Any], transport: str) -> Starlette:
    if transport == "sse":
        sse = SseServerTransport("/messages/")

        async def handle_sse(request: Request) -> Response:
            async with sse.connect_sse(request.scope, request.receive, request._send) as streams:
                await server.run(streams[0], streams[1], server.create_initialization_options())
            return Response()

        return Starlette(routes=[Route("/sse", endpoint=handle_sse), Mount("/messages/", app=sse.handle_post_message)])
    manager = StreamableHTTPSessionManager(app=server)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with manager.run():
            yield

    return Starlette(routes=[Route("/mcp", endpoint=StreamableHTTPASGIApp(manager))], lifespan=lifespan)


async def _serve_http(server: Server[Any], transport: str, port: int) -> None:
    app = _app(server, transport)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    print(f"PORT={sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False)
    await uvicorn.Server(config).serve(sockets=[sock])


async def _serve_stdio(server: Server[Any]) -> None:
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transport", choices=["stdio", "http", "sse"], default="stdio")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = build_server()
    print(f"leaky server starting ({args.transport})", file=sys.stderr, flush=True)
    if args.transport == "stdio":
        anyio.run(_serve_stdio, server)
    else:
        anyio.run(_serve_http, server, args.transport, args.port)


if __name__ == "__main__":
    main()
