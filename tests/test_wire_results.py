"""Plain `tools/call`, `prompts/get`, `resources/read` and `completion/complete` results carried
as the server sent them (`hub.wire_results`, `hub.servers.raw_calls`): the same answer, key for
key and byte for byte, as the model path in every protocol version; anything not plain gets the
SDK's full processing of the one answer the server gave (never sent twice)."""

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
from mcp.server.caching import apply_cache_hint
from mcp_types import INVALID_PARAMS, SERVER_INFO_META_KEY
from mcp_types.methods import serialize_server_result
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel

from hub.endpoint.era_routing import restamped
from hub.endpoint.mcp_server import CACHE_HINTS
from hub.endpoint.resource_links import expose_uris
from hub.result_cap import oversized
from hub.servers import raw_calls
from hub.servers.raw_calls import call_tool_raw, schema_free
from hub.servers.state import ServerSnapshot
from hub.wire_results import (
    WireResult,
    held,
    in_era,
    plain_call_result,
    plain_complete_result,
    plain_prompt_result,
    plain_read_result,
)
from tests.clients import http_client, mcp_client
from tests.conftest import INITIALIZE, MCP_HEADERS, fixture_entry, running_hub, serve_app

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


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("raw", PLAIN_PROMPTS)
def test_a_plain_prompt_is_answered_with_the_same_json_bytes_as_the_model_path_in_every_version(
    raw: dict[str, Any], version: str
) -> None:
    assert plain_prompt_result(raw)
    shaped = _wire_path(raw, version, "prompts/get")
    assert orjson.dumps(shaped) == orjson.dumps(_model_path(raw, version, "prompts/get", types.GetPromptResult))


@pytest.mark.parametrize("raw", NOT_PLAIN_PROMPTS)
def test_a_prompt_with_anything_beyond_text_messages_is_not_plain(raw: Any) -> None:
    assert not plain_prompt_result(raw)


def _model_path(
    raw: dict[str, Any], version: str, method: str = "tools/call", model_type: type[types.Result] = types.CallToolResult
) -> dict[str, Any]:
    """What the hub answered before: the SDK client's model, the hub's restamp, the SDK
    server's dump and its sieve for `version` (`ServerRunner._serialize`)."""
    model = restamped(model_type.model_validate(raw, by_name=False))
    return serialize_server_result(method, version, model.model_dump(by_alias=True, mode="json", exclude_none=True))


def _wire_path(raw: dict[str, Any], version: str, method: str = "tools/call") -> dict[str, Any]:
    wire = WireResult(raw, method).restamped()
    return wire.fill(serialize_server_result(method, version, wire.stub()))


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
        async with mcp_client(_server(calls), mode=mode) as client:  # type: ignore[arg-type]
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
    calls = [
        ("fx__echo", {"text": 'hi é \u2028 "q"'}),
        ("fx__fail", {}),
        ("fx__whoami", {}),
    ]
    async with running_hub({"fx": fixture_entry("fx")}) as hub:
        async with http_client(timeout=30) as http:
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


# ---- resources/read and completion/complete ----

PLAIN_READS: list[dict[str, Any]] = [
    {"contents": [{"uri": "fixture://info", "mimeType": "text/plain", "text": "hi"}]},
    {"contents": [], "resultType": "complete", "ttlMs": 0, "cacheScope": "private"},
    {
        "contents": [
            {"uri": "demo://a", "text": 'é\u2028\n"q"', "_meta": {"k": None, "z": [1, None]}},
            {"blob": "AAEC", "uri": "demo://a/b", "mimeType": "application/octet-stream"},
        ],
        "_meta": {SERVER_INFO_META_KEY: STAMP, "trace": "t"},
        "ttlMs": 5000,
        "cacheScope": "public",
        "resultType": "complete",
    },
    {"contents": [{"uri": "demo://c", "blob": ""}], "_meta": {SERVER_INFO_META_KEY: STAMP}, "cacheScope": "public"},
]

NOT_PLAIN_READS: list[Any] = [
    None,
    {"contents": "x"},
    {"contents": [{"uri": "demo://a"}]},
    {"contents": [{"uri": "demo://a", "text": "x", "blob": "AA=="}]},
    {"contents": [{"uri": "demo://a", "text": "x", "annotations": {"priority": 1}}]},
    {"contents": [{"uri": "demo://a", "text": "x", "mimeType": None}]},
    {"contents": [{"uri": 5, "text": "x"}]},
    {"contents": [{"uri": "demo://a", "text": "x", "_meta": "m"}]},
    {"contents": [], "ttlMs": -1},
    {"contents": [], "ttlMs": 1.5},
    {"contents": [], "ttlMs": True},
    {"contents": [], "cacheScope": "shared"},
    {"contents": [], "resultType": "input_required"},
    {"resultType": "input_required", "inputRequests": {}},
    {"contents": [], "nextCursor": "c"},
]

PLAIN_COMPLETIONS: list[dict[str, Any]] = [
    {"completion": {"values": ["alice", "albert"], "total": 2, "hasMore": False}},
    {"completion": {"values": []}, "resultType": "complete"},
    {"completion": {"hasMore": True, "values": ["é\u2028"]}, "_meta": {SERVER_INFO_META_KEY: STAMP, "k": None}},
    {"completion": {"values": [str(n) for n in range(100)], "total": 1000}},
]

NOT_PLAIN_COMPLETIONS: list[Any] = [
    None,
    {"completion": {"values": ["a"], "total": 1.0}},
    {"completion": {"values": ["a"], "total": None}},
    {"completion": {"values": ["a"], "hasMore": 1}},
    {"completion": {"values": [1]}},
    {"completion": {"values": [str(n) for n in range(101)]}},
    {"completion": {"values": [], "extra": 1}},
    {"completion": {"values": []}, "ttlMs": 5},
    {"completion": ["a"]},
    {"values": ["a"]},
]


def _shaped(method: str, version: str, result: Any) -> dict[str, Any]:
    """What the face's SDK server writes for a handler's `result` (`ServerRunner._serialize`:
    the face's cache hint filled in, the dump, the sieve for `version`)."""
    hint = CACHE_HINTS.get(method)
    if isinstance(result, BaseModel):
        if hint is not None:
            result = apply_cache_hint(result, hint)
        dumped = result.model_dump(by_alias=True, mode="json", exclude_none=True)
    else:
        dumped = {"ttlMs": hint.ttl_ms, "cacheScope": hint.scope, **result} if hint is not None else dict(result)
    return serialize_server_result(method, version, dumped)


def _read_model_path(raw: dict[str, Any], version: str) -> dict[str, Any]:
    """What the hub answered before for a `resources/read` a modern-era connection got: the SDK
    client's model, the hub's restamp, URIs exposed, `cacheScope` made private."""
    model = expose_uris("fx", restamped(types.ReadResourceResult.model_validate(raw, by_name=False)))
    if "cache_scope" in model.model_fields_set:
        model = model.model_copy(update={"cache_scope": "private"})
    return _shaped("resources/read", version, model)


def _read_wire_path(raw: dict[str, Any], version: str) -> dict[str, Any]:
    wire = expose_uris("fx", WireResult(raw, "resources/read").restamped()).privately_cached()
    return _shaped("resources/read", version, held(wire))


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("raw", PLAIN_READS)
def test_a_plain_resource_read_is_answered_with_the_same_json_bytes_as_the_model_path_in_every_version(
    raw: dict[str, Any], version: str
) -> None:
    assert plain_read_result(raw)
    wire = _read_wire_path(raw, version)
    assert orjson.dumps(wire) == orjson.dumps(_read_model_path(raw, version))
    assert all(item["uri"].startswith("fx+") for item in wire["contents"])


@pytest.mark.parametrize("raw", NOT_PLAIN_READS)
def test_a_resource_read_with_anything_beyond_text_or_blob_contents_is_not_plain(raw: Any) -> None:
    assert not plain_read_result(raw)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("raw", PLAIN_COMPLETIONS)
def test_a_plain_completion_is_answered_with_the_same_json_bytes_as_the_model_path_in_every_version(
    raw: dict[str, Any], version: str
) -> None:
    assert plain_complete_result(raw)
    model = restamped(types.CompleteResult.model_validate(raw, by_name=False))
    wire = held(WireResult(raw, "completion/complete").restamped())
    assert isinstance(wire, dict)
    shaped = _shaped("completion/complete", version, wire)
    assert orjson.dumps(shaped) == orjson.dumps(_shaped("completion/complete", version, model))


@pytest.mark.parametrize("raw", NOT_PLAIN_COMPLETIONS)
def test_a_completion_with_anything_beyond_string_values_a_total_and_has_more_is_not_plain(raw: Any) -> None:
    assert not plain_complete_result(raw)


def test_a_resource_read_is_measured_against_the_size_cap_as_its_model_is() -> None:
    raw = {"contents": [{"uri": "demo://a", "text": "x" * 1000}, {"uri": "demo://b", "blob": "QUFB" * 250}]}
    model = types.ReadResourceResult.model_validate(raw, by_name=False)
    for limit in (1000, 1300, 2300, 2400, 5000):
        assert oversized(WireResult(raw, "resources/read"), limit) == oversized(model, limit)


def test_the_keys_taken_in_era_are_those_the_sdk_client_drops_and_requires() -> None:
    """`in_era` against the SDK's own per-revision result surface: a handshake-era connection
    drops the 2026-07-28 keys, a modern-era one requires them."""
    modern_read = {"contents": [], "ttlMs": 5, "cacheScope": "public", "resultType": "complete"}
    for version in HANDSHAKE_PROTOCOL_VERSIONS:
        assert in_era("resources/read", modern_read, version) == {"contents": []}
        assert in_era("completion/complete", {"completion": {"values": []}, "resultType": "complete"}, version) == {
            "completion": {"values": []}
        }
    assert in_era("resources/read", modern_read, MODERN) is modern_read
    assert in_era("resources/read", {"contents": [], "resultType": "complete"}, MODERN) is None  # no cache hints
    assert in_era("completion/complete", {"completion": {"values": []}}, MODERN) is None  # no resultType
    assert in_era("completion/complete", {"completion": {"values": []}}, None) == {"completion": {"values": []}}
    assert modern_read == {"contents": [], "ttlMs": 5, "cacheScope": "public", "resultType": "complete"}


async def _session_headers(http: httpx2.AsyncClient, url: str) -> dict[str, str]:
    """A handshake-era (2025-11-25) session with the hub at `url`: the headers of its requests."""
    opened = await http.post(url, json=INITIALIZE, headers=MCP_HEADERS)
    session = {**MCP_HEADERS, "mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
    await http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session)
    return session


async def _both_eras(
    http: httpx2.AsyncClient, url: str, session: dict[str, str], method: str, params: dict[str, Any], name: str | None
) -> list[bytes]:
    """The raw bodies a handshake-era client (its session) and a modern-era client get for one
    request."""
    request = {"jsonrpc": "2.0", "id": 7, "method": method, "params": params}
    handshake = (await http.post(url, json=request, headers=session)).content
    modern = {**request, "params": {**params, "_meta": MODERN_META}}
    headers = {**MCP_HEADERS, "mcp-protocol-version": MODERN, "mcp-method": method}
    if name is not None:
        headers["mcp-name"] = name
    return [handshake, (await http.post(url, json=modern, headers=headers)).content]


def _noting(plain: list[bool], method: str) -> Any:
    check = raw_calls.PLAIN[method]  # the check itself, read before the test puts this in its place

    def noting(raw: Any) -> bool:
        plain.append(check(raw))
        return plain[-1]

    return noting


async def test_through_the_hub_a_resource_read_or_completion_answers_the_same_bytes_as_the_model_path_in_both_eras(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fixture server over a handshake-era and a modern-era connection, each read by a
    handshake-era and a modern-era client: the raw path gives the bytes the model path gave,
    with the server's `contents[].uri` exposed (kept on a per-server face, which serves original
    URIs), and a server's error keeps its code and message."""
    servers = {"fl": fixture_entry("fl", protocol="legacy"), "fm": fixture_entry("fm", protocol="modern")}
    async with running_hub(servers) as hub, http_client(timeout=30) as http:
        session = await _session_headers(http, hub.url)
        face_session = await _session_headers(http, hub.server_url("fm"))

        async def answers() -> list[bytes]:
            got: list[bytes] = []
            for sid in servers:
                for uri in (f"{sid}+fixture://info", f"{sid}+fixture://items/7", f"{sid}+fixture://nope"):
                    got += await _both_eras(http, hub.url, session, "resources/read", {"uri": uri}, uri)
                refs = [
                    ({"type": "ref/prompt", "name": f"{sid}__greet"}, "al"),
                    ({"type": "ref/resource", "uri": f"{sid}+fixture://items/{{id}}"}, "b"),
                ]
                for ref, value in refs:
                    params = {"ref": ref, "argument": {"name": "name", "value": value}}
                    got += await _both_eras(http, hub.url, session, "completion/complete", params, None)
            uri = "fixture://info"
            return got + await _both_eras(http, hub.server_url("fm"), face_session, "resources/read", {"uri": uri}, uri)

        plain: list[bool] = []
        with anyio.fail_after(60):
            monkeypatch.setitem(raw_calls.PLAIN, "resources/read", _noting(plain, "resources/read"))
            monkeypatch.setitem(raw_calls.PLAIN, "completion/complete", _noting(plain, "completion/complete"))
            raw = await answers()
            took_raw = list(plain)
            monkeypatch.setitem(raw_calls.PLAIN, "resources/read", lambda raw: False)  # the model path
            monkeypatch.setitem(raw_calls.PLAIN, "completion/complete", lambda raw: False)
            model = await answers()
    assert took_raw == [True] * (len(raw) - 4)  # every answer but the four errors took the raw path
    assert raw == model
    for n, sid in enumerate(servers):
        bodies = [orjson.loads(body) for body in raw[n * 10 : n * 10 + 10]]
        for era in (0, 1):  # the handshake-era client's answer, then the modern-era client's
            info, item, nope, prompt, template = bodies[era::2]
            assert info["result"]["contents"] == [
                {"mimeType": "text/plain", "text": sid, "uri": f"{sid}+fixture://info"}
            ]
            assert item["result"]["contents"][0]["uri"] == f"{sid}+fixture://items/7"
            assert nope["error"]["code"] == INVALID_PARAMS
            assert nope["error"]["message"] == "Unknown resource: fixture://nope"
            assert prompt["result"]["completion"] == {"hasMore": False, "total": 2, "values": ["alice", "albert"]}
            assert template["result"]["completion"]["values"] == ["bob"]
    modern_info = orjson.loads(raw[1])["result"]
    assert modern_info["cacheScope"] == "private" and modern_info["resultType"] == "complete"
    for body in raw[-2:]:  # the per-server face
        assert orjson.loads(body)["result"]["contents"][0]["uri"] == "fixture://info"


_CRAFTED_ERROR_DATA = {"uri": "crafted://fail", "why": "gone"}


def _crafted_server(received: list[str]) -> Server[Any]:
    """A server whose `resources/read` and `completion/complete` answers are written as raw JSON
    (a middleware short-circuits the SDK's shaping): plain ones, ones that are not plain (an
    unknown field in a contents item, a null `mimeType`, a float `total`), and errors with
    `data`. A modern-era answer carries the keys its revision requires (`ttlMs`, `cacheScope`,
    `resultType`), here a `public` scope for the hub to make private."""

    async def list_resources(ctx: ServerRequestContext[Any], params: Any) -> types.ListResourcesResult:
        names = ("plain", "odd", "nullmime", "fail", "big")
        return types.ListResourcesResult(resources=[types.Resource(uri=f"crafted://{n}", name=n) for n in names])

    async def list_prompts(ctx: ServerRequestContext[Any], params: Any) -> types.ListPromptsResult:
        return types.ListPromptsResult(prompts=[types.Prompt(name="p", arguments=[types.PromptArgument(name="a")])])

    async def unused(ctx: ServerRequestContext[Any], params: Any) -> Any:
        raise AssertionError("answered by the middleware")

    reads: dict[str, Any] = {
        "crafted://plain": {
            "contents": [
                {"uri": "crafted://plain", "mimeType": "text/plain", "text": 'é\u2028"q"', "_meta": {"k": 1}},
                {"uri": "crafted://plain/sub", "blob": "AAEC"},
            ],
            "_meta": {"trace": "t"},
        },
        "crafted://odd": {"contents": [{"uri": "crafted://odd", "text": "x", "annotations": {"priority": 1}}]},
        "crafted://nullmime": {"contents": [{"uri": "crafted://nullmime", "text": "x", "mimeType": None}]},
        "crafted://big": {"contents": [{"uri": "crafted://big", "text": "x" * 3000}]},
    }
    completions: dict[str, Any] = {
        "plain": {"completion": {"values": ["pa", "pb"], "total": 2, "hasMore": True}},
        "odd": {"completion": {"values": ["x"], "total": 1.0}},
    }

    async def crafted(ctx: ServerRequestContext[Any], call_next: Any) -> Any:
        params = ctx.params or {}
        modern = ctx.protocol_version in MODERN_PROTOCOL_VERSIONS
        if ctx.method == "resources/read":
            received.append(params["uri"])
            if params["uri"] == "crafted://fail":
                raise MCPError(-32002, "Resource not found", _CRAFTED_ERROR_DATA)
            answer = dict(reads[params["uri"]])
            if modern:
                answer.update(ttlMs=5000, cacheScope="public", resultType="complete")
            return answer
        if ctx.method == "completion/complete":
            value = params["argument"]["value"]
            received.append(value)
            if value == "fail":
                raise MCPError(INVALID_PARAMS, "bad argument", {"argument": "a"})
            return {**completions[value], **({"resultType": "complete"} if modern else {})}
        return await call_next(ctx)

    server: Server[Any] = Server(
        "crafted",
        on_list_resources=list_resources,
        on_read_resource=unused,
        on_list_prompts=list_prompts,
        on_get_prompt=unused,
        on_completion=unused,
    )
    server.middleware.append(crafted)
    return server


async def test_through_the_hub_an_answer_that_is_not_plain_takes_the_sdks_path_and_an_error_keeps_its_data(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server over both connection eras, read by clients of both eras: its plain answers take
    the raw path (contents URIs exposed, `cacheScope` private), the others the SDK's, each
    request sent to the server once; all give the bytes the model path gave (an answer over the
    size cap too), and an error keeps its code, message and data."""
    received: list[str] = []
    async with serve_app(_crafted_server(received).streamable_http_app()) as base:
        servers = {
            "cl": {"url": f"{base}/mcp", "protocol": "legacy", "max_result_bytes": 2048},
            "cm": {"url": f"{base}/mcp", "protocol": "modern", "max_result_bytes": 2048},
        }
        async with running_hub(servers) as hub, http_client(timeout=30) as http:
            session = await _session_headers(http, hub.url)

            async def answers() -> list[bytes]:
                got: list[bytes] = []
                for sid in servers:
                    for name in ("plain", "odd", "nullmime", "fail", "big"):
                        uri = f"{sid}+crafted://{name}"
                        got += await _both_eras(http, hub.url, session, "resources/read", {"uri": uri}, uri)
                    for value in ("plain", "odd", "fail"):
                        params = {
                            "ref": {"type": "ref/prompt", "name": f"{sid}__p"},
                            "argument": {"name": "a", "value": value},
                        }
                        got += await _both_eras(http, hub.url, session, "completion/complete", params, None)
                return got

            plain: list[bool] = []
            with anyio.fail_after(60):
                monkeypatch.setitem(raw_calls.PLAIN, "resources/read", _noting(plain, "resources/read"))
                monkeypatch.setitem(raw_calls.PLAIN, "completion/complete", _noting(plain, "completion/complete"))
                raw = await answers()
                took_raw = list(plain)
                sent = list(received)
                monkeypatch.setitem(raw_calls.PLAIN, "resources/read", lambda raw: False)  # the model path
                monkeypatch.setitem(raw_calls.PLAIN, "completion/complete", lambda raw: False)
                model = await answers()
    # Per server, each request from both clients: the reads, then the completions (errors aside).
    assert took_raw == [True, True, False, False, False, False, True, True, True, True, False, False] * 2
    reads = [f"crafted://{name}" for name in ("plain", "odd", "nullmime", "fail", "big")]
    assert sent == [twice for request in (*reads, "plain", "odd", "fail") for twice in (request, request)] * 2
    assert raw == model
    for n, sid in enumerate(servers):
        bodies = [orjson.loads(body) for body in raw[n * 16 : n * 16 + 16]]
        for era in (0, 1):
            read, odd, nullmime, fail, big, completion, odd_completion, refused = bodies[era::2]
            contents = read["result"]["contents"]
            assert [item["uri"] for item in contents] == [f"{sid}+crafted://plain", f"{sid}+crafted://plain/sub"]
            assert contents[0] == {
                "_meta": {"k": 1},
                "mimeType": "text/plain",
                "text": 'é\u2028"q"',
                "uri": contents[0]["uri"],
            }
            assert contents[1]["blob"] == "AAEC" and read["result"]["_meta"]["trace"] == "t"
            assert odd["result"]["contents"] == [{"text": "x", "uri": f"{sid}+crafted://odd"}]
            assert nullmime["result"]["contents"] == [{"text": "x", "uri": f"{sid}+crafted://nullmime"}]
            assert fail["error"] == {"code": -32002, "message": "Resource not found", "data": _CRAFTED_ERROR_DATA}
            assert "exceeded 2048 bytes" in big["error"]["message"]  # the size cap, on the raw path as before
            assert completion["result"]["completion"] == {"hasMore": True, "total": 2, "values": ["pa", "pb"]}
            assert odd_completion["result"]["completion"] == {"total": 1, "values": ["x"]}
            assert refused["error"] == {"code": INVALID_PARAMS, "message": "bad argument", "data": {"argument": "a"}}
            if era == 1:  # the modern-era client
                assert read["result"]["cacheScope"] == "private"
                assert read["result"]["ttlMs"] == (5000 if sid == "cm" else 0)
