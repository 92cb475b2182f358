"""Loop-free federation: hub chains on requests, loop refusal on every face and era (and on
stdio), identity advertisements, loop detection between real hubs on loopback, the per-server
`max_tools` cap, and the hub-of-hubs case (calls, progress and sampling across two hops)."""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
import yaml
from mcp import MCPError, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import INVALID_REQUEST

from hub.app import Hub
from hub.config import parse_config
from hub.endpoint import HttpServer, bind_socket
from hub.federation import (
    CHAIN_HEADER,
    CHAIN_META_KEY,
    FEDERATION_KEY,
    FEDERATION_LOOP,
    MAX_ADVERTISED_HUBS,
    Advertisement,
    Federation,
    FederationLoop,
)
from hub.servers import ServerState
from hub.signals import wait_for_any
from tests.clients import http_client, mcp_client
from tests.conftest import (
    ROOT,
    LogLines,
    RunningHub,
    fixture_entry,
    free_port,
    http_fixture,
    hub_command,
    running_hub,
    stdio_entry,
    tool_text,
)

pytestmark = pytest.mark.anyio

LEAKY_SERVER = str(ROOT / "tests" / "servers" / "leaky_server.py")


def _leaky_entry(**extra: Any) -> dict[str, Any]:
    return stdio_entry(LEAKY_SERVER, **extra)


# ---------------------------------------------------------------- pure rules


def test_a_chain_holding_this_hub_or_longer_than_the_depth_is_refused_and_others_pass() -> None:
    federation = Federation("hub-b", max_depth=3)
    assert federation.check_inbound(None, None) == ()
    assert federation.check_inbound({CHAIN_META_KEY: ["hub-a"]}, {}) == ("hub-a",)
    assert federation.check_inbound({}, {CHAIN_HEADER: "hub-a, hub-c"}) == ("hub-a", "hub-c")
    assert federation.check_inbound({}, {CHAIN_HEADER: "h1,h2,h3"}) == ("h1", "h2", "h3")
    with pytest.raises(FederationLoop) as loop:
        federation.check_inbound({CHAIN_META_KEY: ["hub-a", "hub-b", "hub-c"]}, None)
    assert loop.value.code == FEDERATION_LOOP and loop.value.reason == "loop"
    assert "hub-a -> hub-b -> hub-c -> hub-b" in str(loop.value)
    with pytest.raises(FederationLoop) as header_loop:  # the header alone is enough
        federation.check_inbound({CHAIN_META_KEY: ["hub-a"]}, {CHAIN_HEADER: "hub-b"})
    assert header_loop.value.reason == "loop"
    with pytest.raises(FederationLoop) as deep:
        federation.check_inbound({}, {CHAIN_HEADER: "h1,h2,h3,h4"})
    assert deep.value.reason == "too_deep" and deep.value.data["chain"] == ["h1", "h2", "h3", "h4"]
    for bad_meta, bad_header in (({CHAIN_META_KEY: "hub-a"}, None), (None, {CHAIN_HEADER: "no spaces allowed"})):
        with pytest.raises(FederationLoop) as malformed:
            federation.check_inbound(bad_meta, bad_header)
        assert malformed.value.code == INVALID_REQUEST


def test_the_outbound_chain_extends_the_served_requests_chain_with_this_hub() -> None:
    from hub.federation import inbound_chain

    federation = Federation("hub-b")
    assert federation.outbound_chain() == ("hub-b",)
    token = inbound_chain.set(("hub-a",))
    try:
        assert federation.outbound_chain() == ("hub-a", "hub-b")
    finally:
        inbound_chain.reset(token)


def test_an_advertisement_is_parsed_defensively_and_bounded() -> None:
    assert Advertisement.parse("hub-a") is None
    assert Advertisement.parse({"hub_id": "bad id"}) is None
    many = [f"h{i}" for i in range(MAX_ADVERTISED_HUBS * 2)]
    parsed = Advertisement.parse({"hub_id": "hub-a", "hubs": [*many, 7, "bad id"]})
    assert parsed is not None and parsed.hub_id == "hub-a"
    assert len(parsed.hubs) == MAX_ADVERTISED_HUBS + 1 and "hub-a" in parsed.hubs
    assert Advertisement.found_in(None, {"other": 1}) is None


async def test_a_server_advertising_this_hub_is_refused_and_others_are_recorded_per_scope() -> None:
    from hub.federation import LoopingServer

    federation = Federation("hub-a")
    changes: list[int] = []

    async def changed() -> None:
        changes.append(1)

    federation.add_listener(changed)
    owner_b, owner_c = object(), object()
    await federation.admit(owner_b, "b", Advertisement("hub-b", frozenset({"hub-b", "hub-d"})))
    await federation.admit(owner_c, "c", None)
    assert federation.hubs() == {"hub-a", "hub-b", "hub-d"}
    assert federation.hubs("c") == {"hub-a"}
    assert federation.advertisement("b") == {"hub_id": "hub-a", "hubs": ["hub-a", "hub-b", "hub-d"]}
    assert changes == [1]
    with pytest.raises(LoopingServer, match="federation loop: server 'b' is hub 'hub-b', which federates"):
        await federation.admit(owner_b, "b", Advertisement("hub-b", frozenset({"hub-b", "hub-a"})))
    assert federation.hubs() == {"hub-a"}  # the looping server's hubs are no longer advertised
    with pytest.raises(LoopingServer, match="is this hub"):
        await federation.admit(owner_c, "c", Advertisement("hub-a", frozenset({"hub-a"})))


# ---------------------------------------------------------------- real hubs on loopback


@asynccontextmanager
async def federated_hubs(
    specs: dict[str, Callable[[dict[str, str]], dict[str, Any]]],
) -> AsyncIterator[dict[str, RunningHub]]:
    """Hubs named by `specs` (hub_id `hub-<name>`), each on its own loopback port and state
    directory, started at the same moment; each spec gets every hub's base URL first, so hubs
    can list each other."""
    with ExitStack() as stack:
        sockets = {name: bind_socket("127.0.0.1", 0) for name in specs}
        for sock in sockets.values():
            stack.callback(sock.close)
        urls = {name: f"http://127.0.0.1:{sock.getsockname()[1]}" for name, sock in sockets.items()}
        hubs: dict[str, Hub] = {}
        for name, spec in specs.items():
            state_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix=f"mcphub-{name}-"))
            data = {"state_dir": state_dir, "hub_id": f"hub-{name}", **spec(urls)}
            hubs[name] = Hub(parse_config(data, file=f"<hub {name}>"))
        servers = [HttpServer(hub.http_app(), sockets[name]) for name, hub in hubs.items()]
        async with anyio.create_task_group() as tg:
            for server in servers:
                tg.start_soon(server.serve)
            try:
                yield {name: RunningHub(hub, urls[name]) for name, hub in hubs.items()}
            finally:
                for server in servers:
                    server.stop()


def _tool_names(hub: Hub) -> set[str]:
    return {tool.name for tool in hub.catalog.tools}


def _held_as_loop(hub: Hub, server_id: str) -> bool:
    """`server_id` is `failed` as a federation loop (held: not retried until a restart; the
    supervisor holds every federation loop, and clears the hold only as it restarts)."""
    status = hub.server_status(server_id)
    return status.state is ServerState.FAILED and (status.last_error or "").startswith("federation loop:")


def _ring(names: str, protocol: str = "auto") -> dict[str, Callable[[dict[str, str]], dict[str, Any]]]:
    """Hubs `names[0] -> names[1] -> ... -> names[0]`: each lists the next one (server_id: the
    next hub's name) and has a fixture server of its own (server_id `own`)."""

    def spec(name: str, following: str) -> Callable[[dict[str, str]], dict[str, Any]]:
        return lambda urls: {
            "servers": {"own": fixture_entry(name), following: {"url": f"{urls[following]}/mcp", "protocol": protocol}}
        }

    return {name: spec(name, names[(i + 1) % len(names)]) for i, name in enumerate(names)}


def _ring_settled(hubs: dict[str, Hub], fixture: set[str]) -> bool:
    """At least one hub holds the next one as a federation loop, and every hub's catalog is
    exactly its own fixture plus, through each server it did not refuse, that hub's catalog
    under its prefix: never a name that went round the circle, so bounded."""
    names = list(hubs)
    following = {name: names[(i + 1) % len(names)] for i, name in enumerate(names)}
    held = {name for name in names if _held_as_loop(hubs[name], following[name])}
    if not held:
        return False

    def expected(name: str) -> set[str]:
        own = {f"own__{tool}" for tool in fixture}
        if name in held:
            return own
        return own | {f"{following[name]}__{tool}" for tool in expected(following[name])}

    return all(_tool_names(hubs[name]) == expected(name) for name in names)


async def _wait_ring_settled(hubs: dict[str, Hub], fixture: set[str]) -> None:
    """Wait (bound it) until `_ring_settled`, re-checked at each change of a hub's catalog or
    of the server it lists as the next hub."""
    names = list(hubs)
    peers = [hubs[name].server_changes(names[(i + 1) % len(names)]) for i, name in enumerate(names)]
    await wait_for_any(lambda: _ring_settled(hubs, fixture), *peers, *(hub.catalog.changes for hub in hubs.values()))


async def _fixture_tools(hub: Hub) -> set[str]:
    """The names the hub's own fixture server lists (once it is ready, they are in the catalog)."""
    await hub.wait_for_server("own", ServerState.READY)
    return {tool.name.removeprefix("own__") for tool in hub.catalog.tools if tool.name.startswith("own__")}


@pytest.mark.parametrize("protocol", ["auto", "legacy"])
async def test_two_hubs_that_list_each_other_detect_the_loop_in_one_start_up_round_and_stay_bounded(
    protocol: str,
) -> None:
    async with federated_hubs(_ring("ab", protocol)) as running:
        hubs = {name: r.hub for name, r in running.items()}
        with anyio.fail_after(30):
            for hub in hubs.values():
                await hub.wait_started()
            fixture = await _fixture_tools(hubs["a"])
            # One start-up round: each side's first attempt and the re-list its peer's change causes.
            await _wait_ring_settled(hubs, fixture)
        for name, peer in (("a", "b"), ("b", "a")):
            hub = hubs[name]
            assert len(hub.catalog.tools) <= 2 * len(fixture)
            if _held_as_loop(hub, peer):
                assert hub.server_status(peer).tools == 0
                (status,) = [s for s in hub.endpoint.admin.readiness()[1]["servers"] if s["server_id"] == peer]
                assert status["state"] == "failed" and status["last_error"].startswith("federation loop: ")


async def test_a_hub_that_comes_up_after_its_peer_is_refused_by_the_peer_when_it_retries(tmp_path: Path) -> None:
    port_a = free_port()  # nothing listens there yet: hub B's first attempt at A fails
    servers_b = {"own": fixture_entry("b"), "a": {"url": f"http://127.0.0.1:{port_a}/mcp"}}
    async with running_hub(servers_b, hub_id="hub-b") as b:
        assert b.hub.server_status("a").state is ServerState.FAILED
        config_a = {
            "hub_id": "hub-a",
            "state_dir": str(tmp_path),
            "servers": {"own": fixture_entry("a"), "b": {"url": b.url}},
        }
        a = Hub(parse_config(config_a, file="<hub a>"))
        sock = bind_socket("127.0.0.1", port_a)
        server = HttpServer(a.http_app(), sock)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(server.serve)
                try:
                    with anyio.fail_after(60):  # B retries A with its backoff (0.5 s doubling)
                        fixture = await _fixture_tools(a)
                        await _wait_ring_settled({"a": a, "b": b.hub}, fixture)
                finally:
                    server.stop()
        finally:
            sock.close()


@pytest.mark.e2e
async def test_three_hubs_in_a_ring_detect_the_loop_and_stay_bounded() -> None:
    async with federated_hubs(_ring("abc")) as running:
        hubs = {name: r.hub for name, r in running.items()}
        with anyio.fail_after(60):
            for hub in hubs.values():
                await hub.wait_started()
            fixture = await _fixture_tools(hubs["a"])
            await _wait_ring_settled(hubs, fixture)
        for hub in hubs.values():
            assert len(hub.catalog.tools) <= 3 * len(fixture)


async def test_a_hub_that_lists_itself_holds_that_server_failed_as_a_federation_loop() -> None:
    specs = {"a": lambda urls: {"servers": {"fx": fixture_entry("fx"), "me": {"url": f"{urls['a']}/mcp"}}}}
    async with federated_hubs(specs) as hubs:
        a = hubs["a"].hub
        with anyio.fail_after(30):
            await a.wait_started()
            me = await a.wait_for_server("me", where=lambda _: _held_as_loop(a, "me"))
        assert "hub-a -> hub-a" in (me.last_error or "")
        assert all(name.startswith("fx__") for name in _tool_names(a))
        async with http_client() as http:  # an operator's restart tries once more, and the loop is held again
            restart = await http.post(f"{hubs['a'].base_url}/admin/servers/me/restart")
        assert restart.status_code == 202
        with anyio.fail_after(30):
            await a.wait_for_server("me", where=lambda s: s.restarts > me.restarts and _held_as_loop(a, "me"))


async def test_a_servers_tools_over_its_max_tools_are_dropped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="hub.servers")
    async with running_hub({"fx": fixture_entry("fx", "--extra-tools", "30", max_tools=12)}) as hub:
        status = hub.hub.server_status("fx")
        assert status.state is ServerState.READY
        assert status.tools == 12
        assert len(hub.hub.catalog.tools) == 12
    warning = next(r.getMessage() for r in caplog.records if "max_tools" in r.getMessage())
    assert "server fx offers" in warning and "max_tools 12" in warning and "dropped the last" in warning


# ---------------------------------------------------------------- refusing a looping request


def _mcp_error(exc: BaseException) -> MCPError:
    """The MCPError in `exc` (a client's connect failure may come wrapped in exception groups)."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    assert isinstance(exc, MCPError), repr(exc)
    return exc


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_request_whose_hub_chain_loops_or_is_too_long_is_refused_on_both_faces(mode: str) -> None:
    async with running_hub({"fx": fixture_entry("fx")}, hub_id="hub-test") as hub:
        with anyio.fail_after(30):
            for url in (hub.url, hub.server_url("fx")):
                for chain, reason in (("hub-x,hub-test", "federation_loop"), ("h1,h2,h3,h4,h5", "federation_too_deep")):
                    async with http_client(headers={CHAIN_HEADER: chain}) as http:
                        with pytest.raises((MCPError, BaseExceptionGroup)) as raised:
                            async with mcp_client(streamable_http_client(url, http_client=http), mode=mode):
                                pass
                    refused = _mcp_error(raised.value)
                    assert refused.code == FEDERATION_LOOP
                    data = refused.error.data
                    assert isinstance(data, dict) and data["reason"] == reason
                    assert data["chain"] == chain.split(",") and data["hub_id"] == "hub-test"
                    assert chain.replace(",", " -> ") + " -> hub-test" in refused.message
                # A chain of max_federation_depth other hubs is fine.
                async with http_client(headers={CHAIN_HEADER: "h1,h2,h3,h4"}) as http:
                    async with mcp_client(streamable_http_client(url, http_client=http), mode=mode) as client:
                        assert (await client.list_tools()).tools
                # The chain in _meta is checked per request.
                async with mcp_client(url, mode=mode) as client:
                    name = "fx__echo" if url == hub.url else "echo"
                    assert tool_text(await client.call_tool(name, {"text": "hi"})) == "hi"
                    with pytest.raises(MCPError) as refused_call:
                        await client.call_tool(name, {"text": "hi"}, meta={CHAIN_META_KEY: ["hub-test"]})
                    with pytest.raises(MCPError) as refused_list:
                        await client.list_tools(meta={CHAIN_META_KEY: ["hub-y", "hub-test", "hub-z"]})
                    for refused in (refused_call.value, refused_list.value):
                        assert refused.code == FEDERATION_LOOP and "hub-test" in refused.message


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_stdio_hub_refuses_a_request_whose_meta_chain_holds_its_id(mode: str, tmp_path: Path) -> None:
    config = tmp_path / "hub.yaml"
    config.write_text(
        yaml.safe_dump({"hub_id": "hub-stdio", "state_dir": str(tmp_path), "servers": {"fx": fixture_entry("fx")}})
    )
    command, *args = hub_command("serve", "--stdio", "-c", str(config), "--log-level", "warning")
    params = StdioServerParameters(command=command, args=args)
    with anyio.fail_after(60), (tmp_path / "stderr.log").open("w") as errlog:
        async with mcp_client(stdio_client(params, errlog=errlog), mode=mode) as client:
            assert (
                tool_text(await client.call_tool("fx__echo", {"text": "hi"}, meta={CHAIN_META_KEY: ["hub-x"]})) == "hi"
            )
            with pytest.raises(MCPError) as refused:
                await client.call_tool("fx__echo", {"text": "hi"}, meta={CHAIN_META_KEY: ["hub-x", "hub-stdio"]})
    assert refused.value.code == FEDERATION_LOOP
    assert "hub-x -> hub-stdio -> hub-stdio" in refused.value.message


# ---------------------------------------------------------------- hub of hubs


@asynccontextmanager
async def hub_of_hubs(b_to_a: str, fx_protocol: str = "auto") -> AsyncIterator[tuple[RunningHub, RunningHub]]:
    """Hub A with a fixture server and a leaky server; hub B listing A (protocol `b_to_a`)."""
    async with running_hub(
        {"fx": fixture_entry("fx", protocol=fx_protocol), "leaky": _leaky_entry()}, hub_id="hub-a"
    ) as a:
        async with running_hub({"a": {"url": a.url, "protocol": b_to_a}}, hub_id="hub-b") as b:
            yield a, b


@pytest.mark.parametrize("b_to_a", ["legacy", "auto"])
@pytest.mark.parametrize("client_mode", ["legacy", "auto"])
async def test_a_hub_of_hubs_serves_calls_progress_and_relays_across_both_hops(b_to_a: str, client_mode: str) -> None:
    async with hub_of_hubs(b_to_a) as (a, b):
        assert b.hub.server_status("a").state is ServerState.READY
        progress: list[float] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append(value)

        async def sample(ctx: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
            return types.CreateMessageResult(
                role="assistant", content=types.TextContent(type="text", text="from-b-client"), model="m"
            )

        async def elicit(ctx: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
            return types.ElicitResult(action="accept", content={"name": "ada"})

        with anyio.fail_after(40):
            async with mcp_client(
                b.url, mode=client_mode, sampling_callback=sample, elicitation_callback=elicit
            ) as client:
                assert tool_text(await client.call_tool("a__fx__echo", {"text": "two hops"})) == "two hops"
                slow = await client.call_tool(
                    "a__fx__slow", {"seconds": 0.3, "steps": 3}, progress_callback=on_progress
                )
                assert tool_text(slow) == "done"
                asked = tool_text(await client.call_tool("a__fx__ask", {}))
                seen = json.loads(tool_text(await client.call_tool("a__leaky__seen_chain", {})))
                # Both hubs advertise who they are and whom they federate.
                advertised = client.server_capabilities.experimental or {}
                listed = (await client.list_tools()).meta or {}
            async with mcp_client(a.url, mode=client_mode) as direct:
                a_advertised = direct.server_capabilities.experimental or {}
            async with mcp_client(a.server_url("fx"), mode=client_mode) as per_server:
                fx_listed = (await per_server.list_tools()).meta or {}
    assert progress
    assert asked == "sampled=from-b-client elicited=ada action=accept"
    assert seen["meta"] == ["hub-b", "hub-a"]  # the client's request went B -> A -> the stdio server
    assert advertised[FEDERATION_KEY] == {"hub_id": "hub-b", "hubs": ["hub-a", "hub-b"]}
    assert listed[FEDERATION_KEY] == advertised[FEDERATION_KEY]
    assert a_advertised[FEDERATION_KEY] == {"hub_id": "hub-a", "hubs": ["hub-a"]}
    assert fx_listed[FEDERATION_KEY] == {"hub_id": "hub-a", "hubs": ["hub-a"]}


async def test_a_hub_of_hubs_relays_pushed_sampling_from_a_handshake_era_server_behind_the_first_hub() -> None:
    async with hub_of_hubs("legacy", fx_protocol="legacy") as (_a, b):

        async def sample(ctx: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
            return types.CreateMessageResult(
                role="assistant", content=types.TextContent(type="text", text="pushed"), model="m"
            )

        async def elicit(ctx: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
            return types.ElicitResult(action="accept", content={"name": "ada"})

        with anyio.fail_after(30):
            async with mcp_client(
                b.url, mode="legacy", sampling_callback=sample, elicitation_callback=elicit
            ) as client:
                asked = tool_text(await client.call_tool("a__fx__ask", {}))
    assert asked == "sampled=pushed elicited=ada action=accept"


@pytest.mark.parametrize("client_mode", ["legacy", "auto"])
async def test_a_hub_of_hubs_relays_log_messages_and_cancellation_across_both_hops(
    client_mode: str, caplog: pytest.LogCaptureFixture, log_lines: LogLines
) -> None:
    caplog.set_level(logging.INFO, logger="hub.server_stderr")
    async with hub_of_hubs("auto", fx_protocol="legacy") as (_a, b):
        levels: list[str] = []
        started = anyio.Event()

        async def on_log(params: types.LoggingMessageNotificationParams) -> None:
            levels.append(params.level)

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            started.set()

        extra: dict[str, Any] = {"log_level": "debug"} if client_mode == "auto" else {}
        with anyio.fail_after(30):
            async with mcp_client(b.url, mode=client_mode, logging_callback=on_log, **extra) as client:
                assert tool_text(await client.call_tool("a__fx__log", {})) == "logged"
                async with anyio.create_task_group() as tg:

                    async def slow() -> None:
                        await client.call_tool(
                            "a__fx__slow", {"seconds": 60, "steps": 60}, progress_callback=on_progress
                        )

                    tg.start_soon(slow)
                    await started.wait()
                    tg.cancel_scope.cancel()
            # The cancellation went B -> A -> the server, which says so on its stderr.
            await log_lines.wait_for("slow: cancelled")
    assert levels == ["debug", "info", "warning", "error"]


async def test_the_hub_chain_travels_in_the_http_header_and_meta_across_two_hops() -> None:
    async with http_fixture(script=LEAKY_SERVER) as (leaky_url, _process):
        async with running_hub({"leaky": {"url": leaky_url}}, hub_id="hub-a") as a:
            async with running_hub({"a": {"url": a.url}}, hub_id="hub-b") as b:
                with anyio.fail_after(20):
                    async with mcp_client(b.url) as client:
                        seen = json.loads(tool_text(await client.call_tool("a__leaky__seen_chain", {})))
    assert seen == {"meta": ["hub-b", "hub-a"], "header": "hub-b,hub-a"}
