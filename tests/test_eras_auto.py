"""Push-style requests from dual-era servers (issue 10 item 17): a server built on mcp 2.3 whose
tools push sampling, elicitation and roots/list mid-call as mcp 1.x code does, behind the hub
with `protocol: auto` and no other configuration. The hub speaks the modern era to it, notices
the first refused push, opens a handshake-era connection, sends that call once more over it,
and serves every later one there: relayed to a handshake-era client, bridged into
`InputRequiredResult` rounds for a modern-era client. Real peers: `tests/servers/push_server.py`
over stdio and Streamable HTTP, SDK clients of both eras, the hub on loopback."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client, MCPError
from mcp.shared.exceptions import NoBackChannelError
from mcp_types import INVALID_REQUEST

from hub.push_era import PushingServers, pushed_method
from hub.servers import ServerConnection
from tests.clients import mcp_client
from tests.conftest import fixture_entry, http_fixture, running_hub, stdio_entry, tool_text

pytestmark = pytest.mark.anyio

PUSH_SERVER = str(Path(__file__).parent / "servers" / "push_server.py")


def push_entry(name: str, record: Path, **extra: Any) -> dict[str, Any]:
    """A `servers:` entry running the push server over stdio (`protocol: auto`, the default),
    recording what its tools do in `record`."""
    return stdio_entry(PUSH_SERVER, "--name", name, "--record", str(record), **extra)


@asynccontextmanager
async def push_server(transport: str, record: Path) -> AsyncIterator[dict[str, Any]]:
    """The push server's entry over `transport` (stdio, or Streamable HTTP on loopback)."""
    if transport == "stdio":
        yield push_entry("push", record)
        return
    async with http_fixture("--record", str(record), transport="http", script=PUSH_SERVER) as (url, _process):
        yield {"url": url}


def _counts(record: Path) -> str:
    """`<tool>:<entered>/<completed>` for each tool the record names, sorted by tool."""
    events = Counter(tuple(line.split()) for line in record.read_text(encoding="utf-8").splitlines())
    tools = sorted({tool for _, tool in events})
    return " ".join(f"{tool}:{events[('entered', tool)]}/{events[('completed', tool)]}" for tool in tools)


async def _sampling(ctx: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
    asked = params.messages[0].content
    text = "short" if isinstance(asked, types.TextContent) and asked.text == "summarize: the minutes" else "?"
    return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text=text), model="m")


async def _elicitation(ctx: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
    return types.ElicitResult(action="accept", content={"name": "ada"})


async def _roots(ctx: Any) -> types.ListRootsResult:
    return types.ListRootsResult(roots=[types.Root(uri="file:///work/project")])


def _client(url: str, mode: str) -> Client:
    return mcp_client(
        url,
        mode=mode,
        sampling_callback=_sampling,
        elicitation_callback=_elicitation,
        list_roots_callback=_roots,
    )


def _connection(hub: Any, server_id: str) -> ServerConnection:
    connection = hub.hub.fleet.get(server_id)
    assert connection is not None
    return connection


def test_a_push_is_recognised_by_the_sdks_exact_refusal_only() -> None:
    for method in ("sampling/createMessage", "elicitation/create", "roots/list"):
        refusal = NoBackChannelError(method)
        # As it arrives over the wire: a plain MCPError with the SDK's code and message.
        assert pushed_method(MCPError(refusal.code, refusal.message)) == method
        assert pushed_method(refusal) == method
    wire = NoBackChannelError("sampling/createMessage").message
    assert NoBackChannelError("sampling/createMessage").code == INVALID_REQUEST
    assert pushed_method(MCPError(-32603, wire)) is None
    assert pushed_method(MCPError(INVALID_REQUEST, wire, {"detail": 1})) is None
    assert pushed_method(MCPError(INVALID_REQUEST, "no back-channel for sampling/createMessage")) is None
    assert pushed_method(MCPError(INVALID_REQUEST, NoBackChannelError("ping").message)) is None
    assert pushed_method(NoBackChannelError("notifications/message")) is None


def test_what_is_learnt_about_a_server_holds_for_its_replica_members_until_forgotten() -> None:
    pushing = PushingServers()
    assert pushing.learn("svc/2")
    assert not pushing.learn("svc")
    assert "svc/1" in pushing and "svc" in pushing and "other" not in pushing
    pushing.forget("svc")
    assert "svc/2" not in pushing


@pytest.mark.parametrize("transport", ["stdio", "http"])
@pytest.mark.parametrize("client_mode", ["legacy", "auto"])
async def test_a_dual_era_server_whose_tools_push_serves_each_client_era_over_a_handshake_era_connection(
    client_mode: str, transport: str, tmp_path: Path
) -> None:
    record = tmp_path / "record"
    async with push_server(transport, record) as entry, running_hub({"push": entry}) as hub:
        connection = _connection(hub, "push")
        assert connection.protocol_version == "2026-07-28"
        with anyio.fail_after(60):
            async with _client(hub.url, client_mode) as client:
                assert (client.protocol_version == "2026-07-28") == (client_mode == "auto")
                sampled = await client.call_tool("push__summarize", {"text": "the minutes"})
                elicited = await client.call_tool("push__confirm", {"question": "who are you?"})
                rooted = await client.call_tool("push__roots", {})
        assert connection.pushes_over_handshake_era
        assert connection.dedicated_connections == 1  # the handshake-era one, opened on demand
        assert connection.protocol_version == "2026-07-28"  # lists and the rest stay modern
    assert (sampled.is_error, tool_text(sampled)) == (False, "sampled=short")
    assert (elicited.is_error, tool_text(elicited)) == (False, "elicited=ada action=accept")
    assert (rooted.is_error, tool_text(rooted)) == (False, "roots=file:///work/project")
    # The first push was refused on the modern-era connection and the call sent once more;
    # every later call went straight to the handshake-era connection.
    assert _counts(record) == "confirm:1/1 roots:1/1 summarize:2/1"


async def test_a_modern_client_sees_a_learnt_servers_pushes_as_input_required_rounds(tmp_path: Path) -> None:
    async with running_hub({"push": push_entry("push", tmp_path / "record")}) as hub:
        with anyio.fail_after(60):
            async with _client(hub.url, "auto") as client:
                await client.call_tool("push__summarize", {"text": "the minutes"})  # teaches the hub
                first = await client.session.call_tool("push__confirm", {"question": "who?"}, allow_input_required=True)
                assert isinstance(first, types.InputRequiredResult)
                assert [r.method for r in first.input_requests.values()] == ["elicitation/create"]
                (key,) = first.input_requests
                answer = types.ElicitResult(action="accept", content={"name": "lin"})
                done = await client.session.call_tool(
                    "push__confirm",
                    {"question": "who?"},
                    input_responses={key: answer},
                    request_state=first.request_state,
                    allow_input_required=True,
                )
    assert isinstance(done, types.CallToolResult)
    assert tool_text(done) == "elicited=lin action=accept"


async def test_a_server_that_never_pushes_keeps_a_single_modern_era_connection(tmp_path: Path) -> None:
    servers = {"push": push_entry("push", tmp_path / "record"), "fx": fixture_entry("fx")}
    async with running_hub(servers) as hub:
        with anyio.fail_after(60):
            for mode in ("legacy", "auto"):
                async with _client(hub.url, mode) as client:
                    echoed = await client.call_tool("push__echo", {"text": "plain"})
                    # The fixture asks in each era's own way (InputRequiredResult when modern).
                    asked = await client.call_tool("fx__ask", {})
                    assert tool_text(echoed) == "plain"
                    assert tool_text(asked) == "sampled=? elicited=ada action=accept"
        for server_id in servers:
            connection = _connection(hub, server_id)
            assert connection.protocol_version == "2026-07-28"
            assert not connection.pushes_over_handshake_era
            assert connection.dedicated_connections == 0


async def test_a_server_pinned_to_the_modern_era_passes_the_refused_push_through(tmp_path: Path) -> None:
    async with running_hub({"push": push_entry("push", tmp_path / "record", protocol="modern")}) as hub:
        with anyio.fail_after(60):
            async with _client(hub.url, "auto") as client:
                with pytest.raises(MCPError) as refused:
                    await client.call_tool("push__summarize", {"text": "the minutes"})
        connection = _connection(hub, "push")
        assert not connection.pushes_over_handshake_era
        assert connection.dedicated_connections == 0
    assert refused.value.code == INVALID_REQUEST
    assert pushed_method(refused.value) == "sampling/createMessage"


async def test_a_protocol_both_server_learns_that_its_tools_push_for_modern_era_clients_too(tmp_path: Path) -> None:
    record = tmp_path / "record"
    async with running_hub({"push": push_entry("push", record, protocol="both")}) as hub:
        with anyio.fail_after(60):
            async with _client(hub.url, "legacy") as client:  # the handshake-era connection from the start
                assert tool_text(await client.call_tool("push__summarize", {"text": "the minutes"})) == "sampled=short"
            async with _client(hub.url, "auto") as client:
                elicited = await client.call_tool("push__confirm", {"question": "who are you?"})
        assert _connection(hub, "push").dedicated_connections == 1
    assert tool_text(elicited) == "elicited=ada action=accept"
    assert _counts(record) == "confirm:2/1 summarize:1/1"


@pytest.mark.slow
async def test_per_client_connections_of_a_server_found_to_push_speak_the_handshake_era(tmp_path: Path) -> None:
    record = tmp_path / "record"
    async with running_hub({"push": push_entry("push", record, isolation="per_client")}) as hub:
        with anyio.fail_after(60):
            async with _client(hub.url, "legacy") as client:
                sampled = await client.call_tool("push__summarize", {"text": "the minutes"})
            async with _client(hub.url, "auto") as client:
                elicited = await client.call_tool("push__confirm", {"question": "who are you?"})
        assert _connection(hub, "push").pushes_over_handshake_era
    assert tool_text(sampled) == "sampled=short"
    assert tool_text(elicited) == "elicited=ada action=accept"
    assert _counts(record) == "confirm:1/1 summarize:2/1"
