"""The private names of the `mcp` SDK that the hub relies on (all in `adapters/_sdk.py`) still
exist: an SDK upgrade that removes or renames one fails here, naming it, before anything else."""

from __future__ import annotations

import importlib
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.server import Server, ServerRequestContext
from mcp.server.session import ServerSession
from starlette.types import Receive, Scope, Send

from adapters._sdk import (
    PRIVATE_ATTRIBUTES,
    PRIVATE_NAMES,
    connection_of,
    handle_modern_request,
    on_connection_closed,
    send_raw_request,
    stamp_each_request,
)
from tests.conftest import serve_app

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(("module", "name"), PRIVATE_NAMES)
def test_each_private_module_name_the_hub_imports_still_exists(module: str, name: str) -> None:
    assert hasattr(importlib.import_module(module), name), f"{module}.{name} is gone: see adapters/_sdk.py"


async def test_each_private_attribute_the_hub_uses_exists_on_live_sdk_objects() -> None:
    seen: dict[str, Any] = {}

    async def list_tools(ctx: ServerRequestContext[Any], params: object) -> types.ListToolsResult:
        session = ctx.session
        assert isinstance(session, ServerSession)
        seen["server_session"] = session
        seen["connection"] = connection_of(session)
        closed = anyio.Event()
        seen["closed"] = closed
        on_connection_closed(session, closed.set)
        return types.ListToolsResult(tools=[types.Tool(name="t", input_schema={"type": "object"})])

    stamped: list[dict[str, Any]] = []
    with anyio.fail_after(10):
        async with Client(Server("s", on_list_tools=list_tools), mode="legacy") as client:
            client_session = client.session
            stamp_each_request(client_session, stamped.append)
            raw = await send_raw_request(client.session, "tools/list", {})
            listed = await client.list_tools()
        await seen["closed"].wait()  # the connection's exit stack ran the callback
    objects = {
        "ClientSession": client_session,
        "ServerSession": seen["server_session"],
    }
    for owner, attribute in PRIVATE_ATTRIBUTES:
        assert hasattr(objects[owner], attribute), f"{owner}.{attribute} is gone: see adapters/_sdk.py"
    assert raw["tools"][0]["name"] == "t" and listed.tools[0].name == "t"
    assert [data["method"] for data in stamped] == ["tools/list", "tools/list"]
    assert seen["connection"] is connection_of(seen["server_session"])


async def test_the_sdk_modern_era_handler_serves_a_modern_request_given_the_arguments_the_hub_passes() -> None:
    """`handle_modern_request(server, security_settings, json_response, lifespan_state, scope,
    receive, send)`, as `hub.cluster.sessions` calls it: a 2026-07-28 client lists and calls."""

    async def list_tools(ctx: ServerRequestContext[Any], params: object) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[types.Tool(name="t", input_schema={"type": "object"})])

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        return types.CallToolResult(content=[types.TextContent(type="text", text=f"era {ctx.protocol_version}")])

    server = Server("m", on_list_tools=list_tools, on_call_tool=call_tool)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await handle_modern_request(server, None, False, None, scope, receive, send)

    with anyio.fail_after(20):
        async with serve_app(app) as base_url, Client(f"{base_url}/mcp", mode="2026-07-28") as client:
            listed = await client.list_tools()
            called = await client.call_tool("t", {})
    assert [tool.name for tool in listed.tools] == ["t"]
    assert called.content[0].type == "text" and called.content[0].text == "era 2026-07-28"
