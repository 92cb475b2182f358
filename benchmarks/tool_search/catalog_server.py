"""An MCP server (mcp 2.3 lowlevel, stdio, both eras) that serves a given list of tool
definitions, for `served.py`: the real servers' snapshot plus generated padding, so one process
stands in for a fleet of thousands of tools.

    python benchmarks/tool_search/catalog_server.py --tools TOOLS.json [--page-size 500]

`TOOLS.json` is a JSON array of tool definitions (`tools/list` wire shape). `tools/list` is paged
(`--page-size`, default 500, as real servers with large catalogs do); `tools/call` of any listed
tool answers one text block, `called <name>` (no structured content: call only tools without an
`outputSchema`, whose answers a client validates).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from mcp import MCPError
from mcp.server import Server, ServerRequestContext
from mcp.server.stdio import stdio_server


def build_server(tools: list[types.Tool], page_size: int) -> Server[Any]:
    names = {tool.name for tool in tools}

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        start = int(params.cursor) if params is not None and params.cursor else 0
        end = start + page_size
        return types.ListToolsResult(tools=tools[start:end], next_cursor=str(end) if end < len(tools) else None)

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        if params.name not in names:
            raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {params.name}")
        return types.CallToolResult(content=[types.TextContent(type="text", text=f"called {params.name}")])

    return Server("catalog", version="1.0", on_list_tools=list_tools, on_call_tool=call_tool)


async def _serve(server: Server[Any]) -> None:
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tools", required=True, help="JSON array of tool definitions")
    parser.add_argument("--page-size", type=int, default=500)
    args = parser.parse_args()
    tools = [types.Tool.model_validate(t) for t in json.loads(Path(args.tools).read_text(encoding="utf-8"))]
    anyio.run(_serve, build_server(tools, args.page_size))


if __name__ == "__main__":
    main()
