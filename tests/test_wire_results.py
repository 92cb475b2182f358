"""Plain `tools/call` results carried as the server sent them (`hub.wire_results`,
`hub.servers.raw_calls`): the same answer, key for key and byte for byte, as the model path in
every protocol version; anything not plain gets the SDK's full processing of the one answer
the server gave (never sent twice)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
import mcp_types as types
import orjson
import pytest
from mcp import Client, MCPError
from mcp.server import Server, ServerRequestContext
from mcp_types import INVALID_PARAMS, SERVER_INFO_META_KEY
from mcp_types.methods import serialize_server_result
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

from hub.endpoint.era_routing import restamped
from hub.servers.raw_calls import call_tool_raw, schema_free
from hub.servers.state import ServerSnapshot
from hub.wire_results import WireResult, plain_call_result, plain_prompt_result
from tests.conftest import INITIALIZE, MCP_HEADERS, fixture_entry, running_hub

pytestmark = pytest.mark.anyio

VERSIONS = (*HANDSHAKE_PROTOCOL_VERSIONS, *MODERN_PROTOCOL_VERSIONS)
MODERN = MODERN_PROTOCOL_VERSIONS[-1]
MODERN_META = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
STAMP = {"name": "srv", "version": "1"}

PLAIN: list[dict[str, Any]] = [
    {"content": [{"type": "text", "text": "hi"}]},
    {"content": [{"type": "text", "text": "hi"}], "isError": False},
    {"content": [{"type": "text", "text": "it failed"}], "isError": True},
    {"content": [], "structuredContent": {"text": "hi", "n": None, "deep": [None, {"x": 1.5}]}},
    {"content": [{"type": "text", "text": 'é\u2028\n"q"'}, {"type": "text", "text": ""}], "resultType": "complete"},
    {"content": [{"type": "text", "text": "m"}], "_meta": {SERVER_INFO_META_KEY: STAMP, "resultType": "complete"}},
    {"content": [{"type": "text", "text": "m"}], "_meta": {SERVER_INFO_META_KEY: STAMP, "trace": "t", "k": None}},
    {"_meta": {"k": None}, "structuredContent": {"a": 1}, "isError": False, "content": [{"text": "x", "type": "text"}]},
]

NOT_PLAIN: list[Any] = [
    None,
    [],
    {"content": [{"type": "image", "data": "AA==", "mimeType": "image/png"}]},
    {"content": [{"type": "resource_link", "uri": "demo://r", "name": "r"}]},
    {"content": [{"type": "text", "text": "x", "annotations": {"priority": 1}}]},
    {"content": [{"type": "text", "text": 1}]},
    {"content": "text"},
    {"structuredContent": {"a": 1}},
    {"content": [], "isError": "yes"},
    {"content": [], "structuredContent": [1]},
    {"content": [], "_meta": "m"},
    {"content": [], "ttlMs": 5},
    {"resultType": "input_required", "inputRequests": {}},
    {"content": [], "resultType": "task"},
]


PLAIN_PROMPTS: list[dict[str, Any]] = [
    {"messages": [{"role": "user", "content": {"type": "text", "text": "Hello, Ada!"}}]},
    {"description": "d", "messages": [], "resultType": "complete"},
    {
        "messages": [
            {"content": {"text": "é\n", "type": "text"}, "role": "assistant"},
            {"role": "user", "content": {"type": "text", "text": ""}},
        ],
        "_meta": {SERVER_INFO_META_KEY: STAMP, "k": None},
    },
]

NOT_PLAIN_PROMPTS: list[Any] = [
    {"messages": [{"role": "system", "content": {"type": "text", "text": "x"}}]},
    {"messages": [{"role": "user", "content": {"type": "image", "data": "AA==", "mimeType": "image/png"}}]},
    {"messages": [{"role": "user", "content": {"type": "resource_link", "uri": "demo://r", "name": "r"}}]},
    {"messages": [{"role": "user", "content": {"type": "text", "text": "x"}, "_meta": {}}]},
    {"messages": [], "description": 5},
    {"description": "no messages"},
    {"messages": [], "resultType": "input_required"},
]


def _prompt_model_path(raw: dict[str, Any], version: str) -> dict[str, Any]:
    model = restamped(types.GetPromptResult.model_validate(raw, by_name=False))
    return serialize_server_result(
        "prompts/get", version, model.model_dump(by_alias=True, mode="json", exclude_none=True)
    )


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("raw", PLAIN_PROMPTS)
def test_a_plain_prompt_is_answered_with_the_same_json_bytes_as_the_model_path_in_every_version(
    raw: dict[str, Any], version: str
) -> None:
    assert plain_prompt_result(raw)
    wire = WireResult(raw, "prompts/get").restamped()
    shaped = wire.fill(serialize_server_result("prompts/get", version, wire.stub()))
    assert orjson.dumps(shaped) == orjson.dumps(_prompt_model_path(raw, version))


@pytest.mark.parametrize("raw", NOT_PLAIN_PROMPTS)
def test_a_prompt_with_anything_beyond_text_messages_is_not_plain(raw: Any) -> None:
    assert not plain_prompt_result(raw)


def _model_path(raw: dict[str, Any], version: str) -> dict[str, Any]:
    """What the hub answered before: the SDK client's model, the hub's restamp, the SDK
    server's dump and its sieve for `version` (`ServerRunner._serialize` for tools/call)."""
    model = restamped(types.CallToolResult.model_validate(raw, by_name=False))
    return serialize_server_result(
        "tools/call", version, model.model_dump(by_alias=True, mode="json", exclude_none=True)
    )


def _wire_path(raw: dict[str, Any], version: str) -> dict[str, Any]:
    wire = WireResult(raw).restamped()
    return wire.fill(serialize_server_result("tools/call", version, wire.stub()))


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("raw", PLAIN)
def test_a_plain_result_is_answered_with_the_same_json_bytes_as_the_model_path_in_every_version(
    raw: dict[str, Any], version: str
) -> None:
    assert plain_call_result(raw)
    assert orjson.dumps(_wire_path(raw, version)) == orjson.dumps(_model_path(raw, version))


@pytest.mark.parametrize("raw", NOT_PLAIN)
def test_a_result_with_anything_beyond_text_blocks_is_not_plain(raw: Any) -> None:
    assert not plain_call_result(raw)


def test_a_wire_result_is_measured_against_the_size_cap_as_its_model_is() -> None:
    from hub.result_cap import oversized

    raw = {"content": [{"type": "text", "text": "x" * 1000}], "structuredContent": {"text": "y" * 1000}}
    model = types.CallToolResult.model_validate(raw, by_name=False)
    for limit in (1000, 2200, 2400, 5000):
        assert oversized(WireResult(raw), limit) == oversized(model, limit)


def test_restamping_drops_only_the_hop_stamps_and_never_mutates_the_result() -> None:
    raw = {"content": [], "_meta": {SERVER_INFO_META_KEY: STAMP, "trace": "t"}}
    assert WireResult(raw).restamped().data == {"content": [], "_meta": {"trace": "t"}}
    assert WireResult({"content": [], "_meta": {SERVER_INFO_META_KEY: STAMP}}).restamped().data == {"content": []}
    assert raw["_meta"] == {SERVER_INFO_META_KEY: STAMP, "trace": "t"}
    assert WireResult(raw).is_error is False and WireResult({"content": [], "isError": True}).is_error is True


# ---- the raw send, against a real SDK server over the SDK's in-process transport ----


@dataclass(eq=False)
class _Listed:
    snapshot: ServerSnapshot = field(default_factory=ServerSnapshot)


_TOOLS = [
    types.Tool(name="echo", input_schema={"type": "object"}),
    types.Tool(name="image", input_schema={"type": "object"}),
    types.Tool(name="broken", input_schema={"type": "object"}),
    types.Tool(name="typed", input_schema={"type": "object"}, output_schema={"type": "object"}),
]


def _server(calls: list[str]) -> Server[Any]:
    async def list_tools(ctx: ServerRequestContext[Any], params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=_TOOLS)

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> Any:
        calls.append(params.name)
        text = str((params.arguments or {}).get("text", ""))
        if params.name == "image":
            return types.CallToolResult(content=[types.ImageContent(type="image", data="AA==", mime_type="image/png")])
        if params.name == "broken":
            raise MCPError(INVALID_PARAMS, "no such thing")
        if params.name == "typed":
            return types.CallToolResult(
                content=[types.TextContent(type="text", text=text)], structured_content={"t": 1}
            )
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=text)], structured_content={"text": text}
        )

    return Server("raw", on_list_tools=list_tools, on_call_tool=call_tool)


async def _call(client: Client, listed: _Listed, name: str, **arguments: Any) -> Any:
    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        pass

    return await call_tool_raw(
        listed,
        client,
        name,
        arguments,
        None,
        on_progress,
        lambda: client.call_tool(name, arguments, progress_callback=on_progress),
    )


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_plain_answer_comes_back_as_sent_and_anything_else_gets_the_sdks_processing_of_that_one_answer(
    mode: str,
) -> None:
    calls: list[str] = []
    with anyio.fail_after(10):
        async with Client(_server(calls), mode=mode) as client:  # type: ignore[arg-type]
            listed = _Listed(ServerSnapshot(tools=tuple((await client.list_tools()).tools)))
            plain = await _call(client, listed, "echo", text="hi")
            image = await _call(client, listed, "image")
            typed = await _call(client, listed, "typed", text="t")
            with pytest.raises(MCPError) as refused:
                await _call(client, listed, "broken")
            after = await _call(client, listed, "echo", text="again")
    assert isinstance(plain, WireResult)
    assert plain.data["content"] == [{"type": "text", "text": "hi"}] and plain.data["structuredContent"] == {
        "text": "hi"
    }
    assert isinstance(image, types.CallToolResult) and isinstance(image.content[0], types.ImageContent)
    assert isinstance(typed, types.CallToolResult) and typed.structured_content == {"t": 1}
    assert refused.value.code == INVALID_PARAMS
    assert isinstance(after, WireResult) and after.data["content"][0]["text"] == "again"
    assert calls == ["echo", "image", "typed", "broken", "echo"]  # every request sent exactly once


def test_only_listed_tools_without_an_output_schema_may_take_the_raw_path() -> None:
    listed = _Listed(ServerSnapshot(tools=tuple(_TOOLS)))
    assert schema_free(listed, "echo") and not schema_free(listed, "typed") and not schema_free(listed, "unlisted")
    listed.snapshot = ServerSnapshot(tools=(types.Tool(name="unlisted", input_schema={"type": "object"}),))
    assert schema_free(listed, "unlisted") and not schema_free(listed, "echo")


# ---- through a real hub: the bytes a client gets, raw path against model path ----


async def test_through_the_hub_a_plain_call_or_prompt_answers_the_same_bytes_as_the_model_path_in_both_eras(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hub.servers import raw_calls

    calls = [
        ("fx__echo", {"text": 'hi é \u2028 "q"'}),
        ("fx__fail", {}),
        ("fx__whoami", {}),
    ]
    async with running_hub({"fx": fixture_entry("fx")}) as hub:
        async with httpx2.AsyncClient(timeout=30) as http:
            opened = await http.post(hub.url, json=INITIALIZE, headers=MCP_HEADERS)
            session = {
                **MCP_HEADERS,
                "mcp-session-id": opened.headers["mcp-session-id"],
                "mcp-protocol-version": "2025-11-25",
            }
            await http.post(hub.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session)

            async def answers() -> list[bytes]:
                got: list[bytes] = []
                for n, (name, arguments) in enumerate(calls):
                    call = {
                        "jsonrpc": "2.0",
                        "id": n,
                        "method": "tools/call",
                        "params": {"name": name, "arguments": arguments},
                    }
                    got.append((await http.post(hub.url, json=call, headers=session)).content)
                    modern = {**call, "params": {**call["params"], "_meta": MODERN_META}}
                    headers = {
                        **MCP_HEADERS,
                        "mcp-protocol-version": MODERN,
                        "mcp-method": "tools/call",
                        "mcp-name": name,
                    }
                    got.append((await http.post(hub.url, json=modern, headers=headers)).content)
                prompt = {"name": "fx__greet", "arguments": {"name": "Ada"}}
                get = {"jsonrpc": "2.0", "id": "p", "method": "prompts/get", "params": prompt}
                got.append((await http.post(hub.url, json=get, headers=session)).content)
                modern_get = {**get, "params": {**prompt, "_meta": MODERN_META}}
                headers = {
                    **MCP_HEADERS,
                    "mcp-protocol-version": MODERN,
                    "mcp-method": "prompts/get",
                    "mcp-name": "fx__greet",
                }
                got.append((await http.post(hub.url, json=modern_get, headers=headers)).content)
                return got

            plain: list[bool] = []

            def noting(raw: Any) -> bool:
                plain.append(plain_call_result(raw) or plain_prompt_result(raw))
                return plain[-1]

            with anyio.fail_after(30):
                monkeypatch.setitem(raw_calls.PLAIN, "tools/call", noting)
                monkeypatch.setitem(raw_calls.PLAIN, "prompts/get", noting)
                raw = await answers()
                monkeypatch.setattr(raw_calls, "schema_free", lambda connection, name: False)  # the model path
                monkeypatch.setitem(raw_calls.PLAIN, "prompts/get", lambda raw: False)
                model = await answers()
    assert plain == [True] * len(raw)  # every answer of the first pass took the raw path
    assert raw == model
    assert orjson.loads(raw[0])["result"]["content"] == [{"text": calls[0][1]["text"], "type": "text"}]
    assert orjson.loads(raw[2])["result"]["isError"] is True
    assert orjson.loads(raw[3])["result"]["resultType"] == "complete"
    assert orjson.loads(raw[-2])["result"]["messages"][0]["content"]["text"] == "Hello, Ada!"
