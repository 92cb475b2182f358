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
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

from adapters._sdk import (
    PRIVATE_ATTRIBUTES,
    PRIVATE_NAMES,
    connection_of,
    on_connection_closed,
    open_session_count,
    send_raw_request,
    stamp_each_request,
)

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
        "StreamableHTTPSessionManager": StreamableHTTPSessionManager(app=Server("m")),
    }
    for owner, attribute in PRIVATE_ATTRIBUTES:
        assert hasattr(objects[owner], attribute), f"{owner}.{attribute} is gone: see adapters/_sdk.py"
    assert raw["tools"][0]["name"] == "t" and listed.tools[0].name == "t"
    assert [data["method"] for data in stamped] == ["tools/list", "tools/list"]
    assert seen["connection"] is connection_of(seen["server_session"])
    assert open_session_count(objects["StreamableHTTPSessionManager"]) == 0
