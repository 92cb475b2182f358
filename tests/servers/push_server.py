"""A dual-era MCP server (mcp 2.3 `MCPServer`) whose tools are written as for mcp 1.x: they push
`sampling/createMessage`, `elicitation/create` and `roots/list` to the client mid-call in both
eras, instead of returning an `InputRequiredResult` in the modern era. In the modern era the SDK
refuses every push (`NoBackChannelError`, -32600), so such a tool works only over a
handshake-era connection.

    python tests/servers/push_server.py [--transport stdio|http] [--port 0] [--name NAME] [--record FILE]

Over HTTP it binds 127.0.0.1, prints `PORT=<n>` on stdout once listening, and serves at `/mcp`.
Tools:

- `summarize(text)`: samples "summarize: <text>" and returns `sampled=<the answer's text>`.
- `confirm(question)`: elicits a form (`name`) and returns `elicited=<name> action=<action>`.
- `roots()`: asks for `roots/list` and returns `roots=<uri>,<uri>,...`.
- `echo(text)`: returns `text` (never pushes).

With `--record FILE`, each tool appends `entered <tool>` to FILE when it starts and
`completed <tool>` when it returns (every process started with the same FILE appends to it: a
stdio server's handshake-era connection is a process of its own).
"""

from __future__ import annotations

import argparse
import socket
import sys
import warnings
from pathlib import Path

import anyio
import mcp_types as types
import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.shared.exceptions import MCPDeprecationWarning
from pydantic import BaseModel

# Push-style requests are what this server is about: the SDK's warning for them is noise here.
warnings.simplefilter("ignore", MCPDeprecationWarning)


class _Name(BaseModel):
    name: str


def build_server(name: str, record: Path | None = None) -> MCPServer:
    server = MCPServer(name, version="1.0")

    def note(event: str, tool: str) -> None:
        if record is not None:
            with record.open("a", encoding="utf-8") as file:
                file.write(f"{event} {tool}\n")

    @server.tool()
    async def summarize(text: str, ctx: Context) -> str:
        """Ask the client's model to summarize `text` (pushed sampling)."""
        note("entered", "summarize")
        message = types.SamplingMessage(role="user", content=types.TextContent(type="text", text=f"summarize: {text}"))
        result = await ctx.session.create_message([message], max_tokens=50, related_request_id=ctx.request_id)
        note("completed", "summarize")
        answer = result.content.text if isinstance(result.content, types.TextContent) else "?"
        return f"sampled={answer}"

    @server.tool()
    async def confirm(question: str, ctx: Context) -> str:
        """Ask the user `question` (pushed form elicitation)."""
        note("entered", "confirm")
        result = await ctx.elicit(question, _Name)
        note("completed", "confirm")
        who = result.data.name if result.action == "accept" else "-"
        return f"elicited={who} action={result.action}"

    @server.tool()
    async def roots(ctx: Context) -> str:
        """The client's roots (pushed roots/list)."""
        note("entered", "roots")
        result = await ctx.session.list_roots()
        note("completed", "roots")
        return "roots=" + ",".join(str(root.uri) for root in result.roots)

    @server.tool()
    async def echo(text: str) -> str:
        """Return `text`."""
        note("entered", "echo")
        note("completed", "echo")
        return text

    return server


async def _serve_http(server: MCPServer, port: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(64)
    print(f"PORT={sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(server.streamable_http_app(), log_level="warning", lifespan="on", access_log=False)
    await uvicorn.Server(config).serve(sockets=[sock])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    parser.add_argument("--name", default="push")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--record", type=Path, default=None, help="append what each tool does to this file")
    args = parser.parse_args()
    server = build_server(args.name, args.record)
    print(f"push server {args.name} starting ({args.transport})", file=sys.stderr, flush=True)
    if args.transport == "stdio":
        anyio.run(server.run_stdio_async)
    else:
        anyio.run(_serve_http, server, args.port)


if __name__ == "__main__":
    main()
