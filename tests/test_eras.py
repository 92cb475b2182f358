"""Era bridging end to end: real SDK clients of both eras -> the hub -> real fixture servers
pinned to each era (`protocol: legacy|modern`), relaying sampling and elicitation mid-call, and
the refusals of the hub's `requestState` handles (tampered, another principal's, expired)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp_types import INVALID_PARAMS

from hub.app import Hub
from hub.list_freshness import LIST_TTL_MS
from tests.clients import http_client, mcp_client
from tests.conftest import fixture_entry, running_hub
from tests.conftest import tool_text as _text

pytestmark = pytest.mark.anyio

EXPECTED = "sampled=hi elicited=ada action=accept"


async def _sampling(ctx: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
    return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text="hi"), model="m")


async def _elicitation(ctx: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
    assert isinstance(params, types.ElicitRequestFormParams) and params.message == "your name?"
    return types.ElicitResult(action="accept", content={"name": "ada"})


@pytest.mark.parametrize("server_era", ["legacy", "modern"])
@pytest.mark.parametrize("client_mode", ["legacy", "auto"])
async def test_each_era_pairing_relays_sampling_and_elicitation_from_a_real_server_to_a_real_client(
    client_mode: str, server_era: str
) -> None:
    async with running_hub({"fx": fixture_entry("fx", protocol=server_era)}) as hub:
        assert (hub.hub.server_status("fx").protocol_version == "2026-07-28") == (server_era == "modern")
        with anyio.fail_after(20):
            async with mcp_client(
                hub.url, mode=client_mode, sampling_callback=_sampling, elicitation_callback=_elicitation
            ) as client:
                assert (client.protocol_version == "2026-07-28") == (client_mode == "auto")
                result = await client.call_tool("fx__ask", {})
    assert _text(result) == EXPECTED
    assert not result.is_error


async def test_a_modern_client_sees_the_bridged_rounds_and_the_suspended_call_resumes() -> None:
    async with running_hub({"fx": fixture_entry("fx", protocol="legacy")}) as hub:
        bridge = hub.hub.endpoint.bridge
        with anyio.fail_after(20):
            async with mcp_client(hub.url, elicitation_callback=_elicitation, sampling_callback=_sampling) as client:
                first = await client.session.call_tool("fx__ask", {}, allow_input_required=True)
                assert isinstance(first, types.InputRequiredResult)
                assert [r.method for r in first.input_requests.values()] == ["sampling/createMessage"]
                assert first.request_state and "hub:" not in first.request_state  # sealed, opaque
                assert bridge.suspended == 1
                (key,) = first.input_requests
                sampled = types.CreateMessageResult(
                    role="assistant", content=types.TextContent(type="text", text="hi"), model="m"
                )
                second = await client.session.call_tool(
                    "fx__ask",
                    {},
                    input_responses={key: sampled},
                    request_state=first.request_state,
                    allow_input_required=True,
                )
                assert isinstance(second, types.InputRequiredResult)
                assert [r.method for r in second.input_requests.values()] == ["elicitation/create"]
                (key,) = second.input_requests
                final = await client.session.call_tool(
                    "fx__ask",
                    {},
                    input_responses={key: types.ElicitResult(action="accept", content={"name": "ada"})},
                    request_state=second.request_state,
                    allow_input_required=True,
                )
                assert isinstance(final, types.CallToolResult)
                # A handle answers once: the finished call's handle is gone.
                with pytest.raises(MCPError) as replayed:
                    await client.session.call_tool(
                        "fx__ask", {}, input_responses={}, request_state=second.request_state, allow_input_required=True
                    )
    assert _text(final) == EXPECTED
    assert replayed.value.code == INVALID_PARAMS


_KEYS = {"alice": "alice-key-0123456789abcdef", "bob": "bob-key-0123456789abcdef"}
"""API keys of two principals (the hub's real authentication decides who is who)."""


@asynccontextmanager
async def _hub_with_principals(ttl: float) -> AsyncIterator[tuple[Hub, str]]:
    api_keys = [
        {"id": pid, "key_sha256": hashlib.sha256(key.encode()).hexdigest(), "scopes": ["hub:call"]}
        for pid, key in _KEYS.items()
    ]
    servers = {"fx": fixture_entry("fx", protocol="legacy")}
    settings = {"input_required_ttl_seconds": ttl, "auth": {"api_keys": api_keys}}
    async with running_hub(servers, **settings) as hub:
        yield hub.hub, hub.url


@asynccontextmanager
async def _client_as(url: str, principal: str) -> AsyncIterator[Client]:
    async with http_client(headers={"Authorization": f"Bearer {_KEYS[principal]}"}) as http:
        transport = streamable_http_client(url, http_client=http)
        async with mcp_client(transport, sampling_callback=_sampling, elicitation_callback=_elicitation) as client:
            yield client


async def test_request_state_handles_are_refused_when_tampered_or_presented_by_another_principal() -> None:
    async with _hub_with_principals(ttl=30) as (_hub, url):
        with anyio.fail_after(20):
            async with _client_as(url, "alice") as alice, _client_as(url, "bob") as bob:
                first = await alice.session.call_tool("fx__ask", {}, allow_input_required=True)
                assert isinstance(first, types.InputRequiredResult) and first.request_state
                state = first.request_state
                tampered = state[:-2] + ("AA" if not state.endswith("AA") else "BB")
                refusals = []
                for client, presented in ((alice, tampered), (bob, state), (alice, "hub:guessed")):
                    with pytest.raises(MCPError) as refused:
                        await client.session.call_tool(
                            "fx__ask", {}, input_responses={}, request_state=presented, allow_input_required=True
                        )
                    refusals.append((refused.value.code, refused.value.message))
                # The rightful principal can still resume it.
                (key,) = first.input_requests
                sampled = types.CreateMessageResult(
                    role="assistant", content=types.TextContent(type="text", text="hi"), model="m"
                )
                second = await alice.session.call_tool(
                    "fx__ask", {}, input_responses={key: sampled}, request_state=state, allow_input_required=True
                )
    assert refusals == [(INVALID_PARAMS, "Invalid or expired requestState")] * 3
    assert isinstance(second, types.InputRequiredResult)


@pytest.mark.slow
async def test_an_abandoned_handle_expires_and_the_suspended_server_call_is_cancelled() -> None:
    async with _hub_with_principals(ttl=1) as (hub, url):
        bridge = hub.endpoint.bridge
        with anyio.fail_after(20):
            async with _client_as(url, "alice") as alice:
                first = await alice.session.call_tool("fx__ask", {}, allow_input_required=True)
                assert isinstance(first, types.InputRequiredResult)
                assert bridge.suspended == 1
                # Bounded by fail_after; the 1 s TTL cancels the call.
                await bridge.changes.wait_for(lambda: not bridge.suspended)
                with pytest.raises(MCPError) as expired:
                    await alice.session.call_tool(
                        "fx__ask", {}, input_responses={}, request_state=first.request_state, allow_input_required=True
                    )
    assert expired.value.code == INVALID_PARAMS


async def _raw_post(url: str, body: dict[str, Any], headers: dict[str, str]) -> str:
    """POST over a plain socket (httpx2 refuses to send header values with surrounding whitespace)."""
    host_port, path = url.removeprefix("http://").split("/", 1)
    host, port = host_port.split(":")
    payload = json.dumps(body).encode()
    lines = [f"POST /{path} HTTP/1.1", f"host: {host_port}", f"content-length: {len(payload)}", "connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    async with await anyio.connect_tcp(host, int(port)) as stream:
        await stream.send("\r\n".join(lines).encode() + b"\r\n\r\n" + payload)
        response = b""
        with anyio.move_on_after(10):
            while True:
                try:
                    response += await stream.receive()
                except anyio.EndOfStream:
                    break
    return response.decode(errors="replace")


async def test_the_endpoint_duties_cache_hints_capabilities_headers_and_terminated_sessions() -> None:
    async with running_hub({"fx": fixture_entry("fx", protocol="legacy")}) as hub:
        with anyio.fail_after(20):
            async with mcp_client(hub.url) as modern, mcp_client(hub.url, mode="legacy") as legacy:
                tools = await modern.list_tools(cache_mode="refresh")
                read = await modern.read_resource("fx+fixture://info")
                caps = legacy.server_capabilities
            headers = {
                "accept": "application/json, text/event-stream",
                "content-type": "application/json",
                "mcp-protocol-version": "2026-07-28",
                "mcp-method": "tools/call",
            }
            meta = {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
            }
            body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}
            body["params"] = {"name": "fx__whoami", "arguments": {}, "_meta": meta}
            async with http_client() as http:
                padded = await _raw_post(hub.url, body, {**headers, "mcp-name": " fx__whoami \t"})
                mismatched = await http.post(hub.url, json=body, headers={**headers, "mcp-name": "fx__pid"})
                init = {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "initialize",
                    "params": {
                        "protocolVersion": "2025-11-25",
                        "capabilities": {},
                        "clientInfo": {"name": "t", "version": "1"},
                    },
                }
                opened = await http.post(hub.url, json=init, headers={"accept": headers["accept"]})
                session = opened.headers["mcp-session-id"]
                await http.delete(hub.url, headers={"mcp-session-id": session, "mcp-protocol-version": "2025-11-25"})
                ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
                after = await http.post(
                    hub.url,
                    json=ping,
                    headers={
                        "accept": headers["accept"],
                        "mcp-session-id": session,
                        "mcp-protocol-version": "2025-11-25",
                    },
                )
    # Modern-era list results carry private cache hints; reads are never shared across principals.
    assert (tools.ttl_ms, tools.cache_scope) == (LIST_TTL_MS, "private")
    assert read.cache_scope == "private"
    # Capabilities: what the fixture really offers (completions, subscribe; no logging/setLevel).
    assert caps.tools is not None and caps.tools.list_changed
    assert caps.completions is not None
    assert caps.resources is not None and caps.resources.subscribe
    assert caps.logging is None
    # Mcp-Name must match the body (after trimming optional whitespace, RFC 9110 5.5).
    assert padded.startswith("HTTP/1.1 200"), padded
    assert '"text":"fx"' in padded.replace(" ", ""), padded
    assert mismatched.status_code == 400 and mismatched.json()["error"]["code"] == -32020
    assert opened.status_code == 200
    assert after.status_code == 404
