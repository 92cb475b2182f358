"""A dual-era MCP server (mcp 2.3 `MCPServer`) whose tools are written as for mcp 1.x: they push
`sampling/createMessage`, `elicitation/create` and `roots/list` to the client mid-call in both
eras, instead of returning an `InputRequiredResult` in the modern era. In the modern era the SDK
refuses every push (`NoBackChannelError`, -32600), so such a tool works only over a
handshake-era connection.

    python tests/servers/push_server.py [--transport stdio|http] [--port 0] [--name NAME]

Over HTTP it binds 127.0.0.1, prints `PORT=<n>` on stdout once listening, and serves at `/mcp`.
Tools:

- `summarize(text)`: samples "summarize: <text>" and returns `sampled=<the answer's text>`.
- `confirm(question)`: elicits a form (`name`) and returns `elicited=<name> action=<action>`.
- `roots()`: asks for `roots/list` and returns `roots=<uri>,<uri>,...`.
- `echo(text)`: returns `text` (never pushes).
- `entered_counts()`: how many times each tool was entered and completed since the server started,
  as `<tool>:<entered>/<completed>` pairs (e.g. `summarize:2/1`), sorted by tool name.
"""

from __future__ import annotations

import argparse
import socket
import sys
import warnings
from collections import Counter

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


def build_server(name: str) -> MCPServer:
    server = MCPServer(name, version="1.0")
    entered: Counter[str] = Counter()
    completed: Counter[str] = Counter()

    @server.tool()
    async def summarize(text: str, ctx: Context) -> str:
        """Ask the client's model to summarize `text` (pushed sampling)."""
        entered["summarize"] += 1
        message = types.SamplingMessage(role="user", content=types.TextContent(type="text", text=f"summarize: {text}"))
        result = await ctx.session.create_message([message], max_tokens=50, related_request_id=ctx.request_id)
        completed["summarize"] += 1
        answer = result.content.text if isinstance(result.content, types.TextContent) else "?"
        return f"sampled={answer}"

    @server.tool()
    async def confirm(question: str, ctx: Context) -> str:
        """Ask the user `question` (pushed form elicitation)."""
        entered["confirm"] += 1
        result = await ctx.elicit(question, _Name)
        completed["confirm"] += 1
        who = result.data.name if result.action == "accept" else "-"
        return f"elicited={who} action={result.action}"

    @server.tool()
    async def roots(ctx: Context) -> str:
        """The client's roots (pushed roots/list)."""
        entered["roots"] += 1
        result = await ctx.session.list_roots()
        completed["roots"] += 1
        return "roots=" + ",".join(str(root.uri) for root in result.roots)

    @server.tool()
    async def echo(text: str) -> str:
        """Return `text`."""
        entered["echo"] += 1
        completed["echo"] += 1
        return text

    @server.tool()
    async def entered_counts() -> str:
        """`<tool>:<entered>/<completed>` for every tool entered so far."""
        return " ".join(f"{tool}:{entered[tool]}/{completed[tool]}" for tool in sorted(entered))

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
    args = parser.parse_args()
    server = build_server(args.name)
    print(f"push server {args.name} starting ({args.transport})", file=sys.stderr, flush=True)
    if args.transport == "stdio":
        anyio.run(server.run_stdio_async)
    else:
        anyio.run(_serve_http, server, args.port)


if __name__ == "__main__":
    main()
