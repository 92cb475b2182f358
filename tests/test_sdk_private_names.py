"""The private names of the `mcp` SDK that the hub relies on (all in `adapters/_sdk.py`) still
exist: an SDK upgrade that removes or renames one fails here, naming it, before anything else."""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Mapping
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import MCPError
from mcp.server import Server, ServerRequestContext
from mcp.server.session import ServerSession
from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.shared.dispatcher import DispatchContext
from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher
from mcp.shared.transport_context import TransportContext
from mcp_types import CLIENT_INFO_META_KEY, PROTOCOL_VERSION_META_KEY
from starlette.types import Receive, Scope, Send

from adapters._sdk import (
    PRIVATE_ATTRIBUTES,
    PRIVATE_NAMES,
    close_request_stream,
    connection_of,
    handle_modern_request,
    on_connection_closed,
    open_request_stream,
    replaying,
    request_in_flight,
    send_raw_request,
    send_related_request,
    stamp_each_request,
    stamped_params,
)
from tests.clients import mcp_client
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
        async with mcp_client(Server("s", on_list_tools=list_tools), mode="legacy") as client:
            client_session = client.session
            stamp_each_request(client_session, stamped.append)
            raw = await send_raw_request(client.session, "tools/list", {})
            listed = await client.list_tools()
        await seen["closed"].wait()  # the connection's exit stack ran the callback
    objects = {
        "ClientSession": client_session,
        "ServerSession": seen["server_session"],
        "StreamableHTTPServerTransport": StreamableHTTPServerTransport(mcp_session_id="s", idle_timeout=5),
    }
    for owner, attribute in PRIVATE_ATTRIBUTES:
        assert hasattr(objects[owner], attribute), f"{owner}.{attribute} is gone: see adapters/_sdk.py"
    assert raw["tools"][0]["name"] == "t" and listed.tools[0].name == "t"
    assert [data["method"] for data in stamped] == ["tools/list", "tools/list"]
    assert seen["connection"] is connection_of(seen["server_session"])


async def test_the_sdk_modern_era_handler_serves_a_modern_request_given_the_arguments_the_hub_passes() -> None:
    """`handle_modern_request(server, security_settings, json_response, lifespan_state, scope,
    receive, send)`, as `hub.endpoint.session_manager` calls it: a 2026-07-28 client lists and calls."""

    async def list_tools(ctx: ServerRequestContext[Any], params: object) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[types.Tool(name="t", input_schema={"type": "object"})])

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        return types.CallToolResult(content=[types.TextContent(type="text", text=f"era {ctx.protocol_version}")])

    server = Server("m", on_list_tools=list_tools, on_call_tool=call_tool)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await handle_modern_request(server, None, False, None, scope, receive, send)

    with anyio.fail_after(20):
        async with serve_app(app) as base_url, mcp_client(f"{base_url}/mcp", mode="2026-07-28") as client:
            listed = await client.list_tools()
            called = await client.call_tool("t", {})
    assert [tool.name for tool in listed.tools] == ["t"]
    assert called.content[0].type == "text" and called.content[0].text == "era 2026-07-28"


async def test_a_related_request_reaches_the_stream_registered_for_its_request_and_the_answer_settles_it() -> None:
    """`send_related_request`, `open_request_stream`, `close_request_stream`: a server-to-client
    request sent for request 7 is routed to the stream registered for 7, and the client's answer
    POSTed to the transport settles it (what `hub.endpoint.fast_path` relies on)."""
    transport = StreamableHTTPServerTransport(mcp_session_id="s")

    async def on_request(dctx: DispatchContext[TransportContext], method: str, params: Mapping[str, Any] | None) -> Any:
        return {}

    async def on_notify(dctx: DispatchContext[TransportContext], method: str, params: Mapping[str, Any] | None) -> None:
        return None

    async def post_answer(answer: dict[str, Any]) -> int:
        body = json.dumps(answer).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"accept", b"application/json, text/event-stream"),
            (b"mcp-session-id", b"s"),
        ]
        scope: Scope = {"type": "http", "method": "POST", "path": "/", "query_string": b"", "headers": headers}
        sent: list[int] = []
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if delivered:
                await anyio.sleep_forever()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                sent.append(message["status"])

        await transport.handle_request(scope, receive, send)
        return sent[0]

    result: dict[str, Any] = {}
    with anyio.fail_after(10):
        async with transport.connect() as (read_stream, write_stream), anyio.create_task_group() as tg:
            dispatcher: JSONRPCDispatcher[TransportContext] = JSONRPCDispatcher(read_stream, write_stream)
            await tg.start(dispatcher.run, on_request, on_notify)
            relayed = open_request_stream(transport, 7)
            assert relayed is not None and open_request_stream(transport, 7) is None  # one per request id

            answered = anyio.Event()

            async def ask() -> None:
                result.update(await send_related_request(dispatcher, 7, "roots/list", None))
                answered.set()

            tg.start_soon(ask)
            routed = await relayed.receive()
            assert isinstance(routed.message, types.JSONRPCRequest) and routed.message.method == "roots/list"
            assert await post_answer({"jsonrpc": "2.0", "id": routed.message.id, "result": {"roots": []}}) == 202
            await answered.wait()
            close_request_stream(transport, 7, relayed)
            assert open_request_stream(transport, 7) is not None  # unregistered
            tg.cancel_scope.cancel()
    assert result == {"roots": []}


async def test_a_request_served_outside_the_transport_holds_the_session_idle_countdown() -> None:
    transport = StreamableHTTPServerTransport(mcp_session_id="s", idle_timeout=5)
    async with transport.connect():
        idle_scope = transport.idle_scope
        assert idle_scope is not None
        with request_in_flight(transport):
            assert idle_scope.deadline == math.inf
        assert idle_scope.deadline != math.inf


async def test_an_answer_replayed_through_the_session_is_processed_by_the_sdk_without_being_sent() -> None:
    calls: list[str] = []

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        calls.append(params.name)
        return types.CallToolResult(content=[types.TextContent(type="text", text="sent")])

    async def list_tools(ctx: ServerRequestContext[Any], params: object) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[types.Tool(name="t", input_schema={"type": "object"})])

    answer = {"content": [{"type": "image", "data": "AA==", "mimeType": "image/png"}], "isError": False}
    with anyio.fail_after(10):
        async with mcp_client(Server("s", on_call_tool=call_tool, on_list_tools=list_tools), mode="legacy") as client:
            await client.list_tools()
            with replaying(client.session, "tools/call", answer):
                replayed = await client.call_tool("t", {})
                sent = await client.call_tool("t", {})  # the replay is used once
            with (
                replaying(client.session, "tools/call", MCPError(-32602, "replayed error")),
                pytest.raises(MCPError) as raised,
            ):
                await client.call_tool("t", {})
    assert isinstance(replayed.content[0], types.ImageContent)
    assert isinstance(sent.content[0], types.TextContent) and sent.content[0].text == "sent"
    assert raised.value.code == -32602 and raised.value.message == "replayed error"
    assert calls == ["t"]


async def test_params_stamped_outside_the_dispatcher_carry_what_the_session_stamps_on_every_request() -> None:
    """`stamped_params` (`ClientSession._stamp`): the modern era's `_meta` envelope and the
    hub's per-request additions (`stamp_each_request`), without changing the caller's params."""

    async def list_tools(ctx: ServerRequestContext[Any], params: object) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[])

    def add(data: dict[str, Any]) -> None:
        data["params"].setdefault("_meta", {})["added"] = data["method"]

    params = {"name": "t", "_meta": {"mine": 1}}
    with anyio.fail_after(10):
        async with mcp_client(Server("s", on_list_tools=list_tools), mode="auto") as modern:
            stamp_each_request(modern.session, add)
            stamped = stamped_params(modern.session, "tools/call", params)
            era = modern.protocol_version
        async with mcp_client(Server("s", on_list_tools=list_tools), mode="legacy") as legacy:
            handshake = stamped_params(legacy.session, "tools/call", params)
    assert era == "2026-07-28"
    meta = stamped["_meta"]
    assert meta[PROTOCOL_VERSION_META_KEY] == "2026-07-28" and CLIENT_INFO_META_KEY in meta
    assert meta["mine"] == 1 and meta["added"] == "tools/call" and stamped["name"] == "t"
    assert handshake == {"name": "t", "_meta": {"mine": 1}}  # the handshake era stamps headers only
    assert params == {"name": "t", "_meta": {"mine": 1}}
