"""An MCP server (mcp 2.3 lowlevel `Server`, stdio, both eras) whose modern-era list results carry
a chosen `ttlMs` (SEP-2549 cache hints), and whose tools can change without any announcement.

    python tests/servers/ttl_server.py [--name NAME] [--ttl-ms N] [--prompt-ttl-ms N] [--listen]

- `--ttl-ms N`: `ttlMs` of its `tools/list` results (default: no hint, so the SDK sends 0).
- `--prompt-ttl-ms N`: `ttlMs` of its `prompts/list` results, which list one prompt `hello`
  (default: no prompts capability).
- `--listen`: serve `subscriptions/listen`, so it announces list changes in the modern era
  (`tools.listChanged`); without it the server never announces anything.

Tools:

- `grow(name, announce)`: adds a tool `name` (answers "grown"); with `announce: true` (and
  `--listen`) also publishes `tools/list_changed`, else tells nobody.
- `list_calls()`: how many `tools/list` requests the server has answered.
- `fail_lists(times)`: the next `times` `tools/list` requests get an error (-32603).
- `whoami()`: the server's `--name`.
"""

from __future__ import annotations

import argparse
from typing import Any

import anyio
import mcp_types as types
from mcp import MCPError
from mcp.server import Server, ServerRequestContext
from mcp.server.caching import CacheHint
from mcp.server.stdio import stdio_server
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ToolsListChanged

_EMPTY: dict[str, Any] = {"type": "object", "properties": {}}
_GROW = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "announce": {"type": "boolean"}},
    "required": ["name"],
}


def build_server(name: str, ttl_ms: int | None, prompt_ttl_ms: int | None, listen: bool) -> Server[Any]:
    bus = InMemorySubscriptionBus()
    tools = [
        types.Tool(name="grow", description="Add a tool.", input_schema=_GROW),
        types.Tool(name="list_calls", description="How many tools/list were answered.", input_schema=_EMPTY),
        types.Tool(name="whoami", description="The server's name.", input_schema=_EMPTY),
        types.Tool(
            name="fail_lists",
            description="Fail the next tools/list requests.",
            input_schema={"type": "object", "properties": {"times": {"type": "integer"}}, "required": ["times"]},
        ),
    ]
    calls = {"tools/list": 0, "fail": 0}

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        calls["tools/list"] += 1
        if calls["fail"] > 0:
            calls["fail"] -= 1
            raise MCPError(types.INTERNAL_ERROR, "tools/list failed on purpose")
        return types.ListToolsResult(tools=list(tools))

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        args = params.arguments or {}
        if params.name == "grow":
            tools.append(types.Tool(name=str(args["name"]), description="grown", input_schema=_EMPTY))
            if args.get("announce") and listen:
                await bus.publish(ToolsListChanged())
            return _text("grown")
        if params.name == "fail_lists":
            calls["fail"] = int(args["times"])
            return _text("failing")
        if params.name == "list_calls":
            return _text(str(calls["tools/list"]))
        return _text(name if params.name == "whoami" else params.name)

    async def list_prompts(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        return types.ListPromptsResult(prompts=[types.Prompt(name="hello")])

    async def get_prompt(ctx: ServerRequestContext[Any], params: types.GetPromptRequestParams) -> types.GetPromptResult:
        message = types.PromptMessage(role="user", content=types.TextContent(type="text", text="hello"))
        return types.GetPromptResult(messages=[message])

    hints: dict[Any, CacheHint] = {}
    if ttl_ms is not None:
        hints["tools/list"] = CacheHint(ttl_ms=ttl_ms, scope="private")
    prompts: dict[str, Any] = {}
    if prompt_ttl_ms is not None:
        hints["prompts/list"] = CacheHint(ttl_ms=prompt_ttl_ms, scope="private")
        prompts = {"on_list_prompts": list_prompts, "on_get_prompt": get_prompt}
    server = Server(
        name,
        version="1.0",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_subscriptions_listen=ListenHandler(bus) if listen else None,
        cache_hints=hints,
        **prompts,
    )
    server.middleware.clear()
    return server


def _text(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)])


async def _serve(server: Server[Any]) -> None:
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="ttl")
    parser.add_argument("--ttl-ms", type=int, default=None)
    parser.add_argument("--prompt-ttl-ms", type=int, default=None)
    parser.add_argument("--listen", action="store_true")
    args = parser.parse_args()
    anyio.run(_serve, build_server(args.name, args.ttl_ms, args.prompt_ttl_ms, args.listen))


if __name__ == "__main__":
    main()
