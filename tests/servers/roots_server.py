"""An MCP server (mcp 2.3 lowlevel Server, stdio, handshake era) that asks its client for
`roots/list` as soon as the session is initialized, with no request of the client in flight
(as filesystem-style servers do at start-up), and reports the answer.

    python tests/servers/roots_server.py [--name NAME]

Tools:

- `startup_roots()`: waits (at most 20 s) for the answer to the start-up `roots/list` and
  returns `roots: <uri>,<uri>,...` (empty after the colon for an empty list), or
  `error: <code> <message>` when the client refused it.
- `whoami()`: the server's `--name`.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.abc
import mcp_types as types
from mcp import MCPError
from mcp.server import Server, ServerRequestContext
from mcp.server.stdio import stdio_server

_EMPTY: dict[str, Any] = {"type": "object", "properties": {}}


class _State:
    def __init__(self) -> None:
        self.answer: str | None = None
        self.answered = anyio.Event()
        self.tg: anyio.abc.TaskGroup | None = None


def build_server(name: str) -> Server[Any]:
    state = _State()

    @contextlib.asynccontextmanager
    async def lifespan(_: Server[Any]) -> AsyncIterator[dict[str, Any]]:
        async with anyio.create_task_group() as tg:
            state.tg = tg
            yield {}
            tg.cancel_scope.cancel()

    async def ask_roots(ctx: ServerRequestContext[Any]) -> None:
        try:
            result = await ctx.session.send_request(types.ListRootsRequest(), types.ListRootsResult)
            state.answer = "roots: " + ",".join(str(root.uri) for root in result.roots)
        except MCPError as exc:
            state.answer = f"error: {exc.code} {exc.message}"
        state.answered.set()

    async def on_initialized(ctx: ServerRequestContext[Any], params: types.NotificationParams) -> None:
        assert state.tg is not None
        state.tg.start_soon(ask_roots, ctx)

    async def list_tools(ctx: ServerRequestContext[Any], params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(
            tools=[
                types.Tool(name="startup_roots", input_schema=_EMPTY),
                types.Tool(name="whoami", input_schema=_EMPTY),
            ]
        )

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        if params.name == "whoami":
            text = name
        elif params.name == "startup_roots":
            with anyio.move_on_after(20):
                await state.answered.wait()
            text = state.answer or "no answer yet"
        else:
            raise MCPError(types.INVALID_PARAMS, f"unknown tool {params.name}")
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)])

    server: Server[Any] = Server(name, lifespan=lifespan, on_list_tools=list_tools, on_call_tool=call_tool)
    server.add_notification_handler("notifications/initialized", types.NotificationParams, on_initialized)
    server.middleware.clear()
    return server


async def _serve(name: str) -> None:
    server = build_server(name)
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="roots")
    args = parser.parse_args()
    print(f"roots server {args.name} starting", file=sys.stderr, flush=True)
    anyio.run(_serve, args.name)


if __name__ == "__main__":
    main()
