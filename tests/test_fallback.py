"""Fallback groups, `expose: false` members and replicas: a real hub on loopback over real
faulty/fixture servers (stdio children and loopback HTTP), with servers killed mid-run."""

from __future__ import annotations

import os
import signal
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client, MCPError
from mcp_types import REQUEST_TIMEOUT

from hub.catalog import Route
from hub.config import parse_config
from hub.errors import ConfigError
from hub.servers import ServerState
from tests.clients import http_client, mcp_client
from tests.conftest import faulty_entry, faulty_http, fixture_entry, http_fixture, hub_command, kill_server, running_hub
from tests.conftest import tool_text as _text

pytestmark = pytest.mark.anyio


async def _admin(base_url: str, what: str) -> Any:
    async with http_client() as http:
        return (await http.get(f"{base_url}/admin/{what}")).json()[what]


def _listed_route(route: Route | None) -> bool:
    return route is not None and route.listed


async def _tool_names(client: Client) -> set[str]:
    return {tool.name for tool in (await client.list_tools()).tools}


async def test_a_down_primary_is_served_by_its_fallback_only_for_tools_the_fallback_also_has() -> None:
    async with faulty_http() as (url, process):
        servers = {"a": {"url": url, "fallback": ["b"], "idempotent": ["pid"]}, "b": fixture_entry("b")}
        async with running_hub(servers) as hub:
            with anyio.fail_after(30):
                # cache=None: this client re-lists to see the catalog change (it does not listen).
                async with mcp_client(hub.url, cache=None) as client:
                    assert {"a__pid", "a__hang", "b__pid"} <= await _tool_names(client)
                    b_pid = _text(await client.call_tool("b__pid", {}))
                    await kill_server(url, process)
                    # Whether the hub already knows `a` is gone (not delivered) or learns it from
                    # this call (idempotent), the call is answered by `b`.
                    served = _text(await client.call_tool("a__pid", {}))
                    await hub.hub.wait_for_server("a", ServerState.RESTARTING, ServerState.FAILED)
                    # `a__hang` stays a (reserved) route of `a`, but is no longer listed.
                    catalog = hub.hub.catalog
                    await catalog.changes.wait_for(lambda: not _listed_route(catalog.tool_route("a__hang")))
                    names = await _tool_names(client)
                    served_again = _text(await client.call_tool("a__pid", {}))
                    routes = {r["exposed"]: r for r in await _admin(hub.base_url, "routes")}
    assert served == served_again == b_pid
    assert "a__pid" in names and "a__hang" not in names  # the fixture server has no `hang`
    assert routes["a__pid"]["chain"] == ["a", "b"] and routes["a__pid"]["serving"] == "b"
    assert routes["a__pid"]["fallbacks"] == ["b"]


async def test_an_unexposed_server_adds_no_names_and_serves_a_primary_whose_circuit_is_open() -> None:
    servers = {
        "a": faulty_entry("a", fallback=["spare"], timeouts={"hang": 0.3}, breaker={"failures": 1}),
        "spare": faulty_entry("spare", expose=False),
    }
    async with running_hub(servers) as hub:
        with anyio.fail_after(30):
            async with mcp_client(hub.url) as client:
                names = await _tool_names(client)
                a_pid = _text(await client.call_tool("a__pid", {}))
                with pytest.raises(MCPError) as timed_out:
                    await client.call_tool("a__hang", {})
                served = _text(await client.call_tool("a__pid", {}))
                servers_json = {s["server_id"]: s for s in await _admin(hub.base_url, "servers")}
                routes = {r["exposed"]: r for r in await _admin(hub.base_url, "routes")}
            async with mcp_client(hub.server_url("spare")) as spare:
                spare_pid = _text(await spare.call_tool("pid", {}))
    assert not any(name.startswith("spare__") for name in names) and "a__pid" in names
    assert timed_out.value.code == REQUEST_TIMEOUT  # the hang was not repeated elsewhere: not idempotent
    assert served != a_pid and served == spare_pid
    assert servers_json["a"]["state"] == "open" and servers_json["spare"]["state"] == "ready"
    assert routes["a__pid"]["serving"] == "spare"


@pytest.mark.slow
async def test_replicas_are_served_round_robin_under_one_set_of_names_and_shown_as_members() -> None:
    member = faulty_entry("m")
    servers = {"search": {"replicas": [{k: member[k] for k in ("command", "args")}] * 2}}
    async with running_hub(servers) as hub:
        with anyio.fail_after(30):
            async with mcp_client(hub.url) as client:
                names = await _tool_names(client)
                pids = [_text(await client.call_tool("search__pid", {})) for _ in range(4)]
            servers_json = await _admin(hub.base_url, "servers")
            routes = {r["exposed"]: r for r in await _admin(hub.base_url, "routes")}
            cli = await anyio.run_process(hub_command("servers", "--url", hub.base_url), check=False)
    assert "search__pid" in names and not any("/" in name for name in names)
    assert pids[0] != pids[1] and pids[0] == pids[2] and pids[1] == pids[3]
    assert [(s["server_id"], s["replica_of"], s["state"]) for s in servers_json] == [
        ("search/1", "search", "ready"),
        ("search/2", "search", "ready"),
    ]
    assert routes["search__pid"]["members"] in (["search/1", "search/2"], ["search/2", "search/1"])
    assert cli.returncode == 0 and b"search/1" in cli.stdout and b"replica of search" in cli.stdout


@pytest.mark.slow
async def test_killing_a_replica_mid_load_costs_no_failed_call_on_idempotent_tools() -> None:
    member = faulty_entry("m")
    replica = {k: member[k] for k in ("command", "args")}
    servers = {"search": {"replicas": [replica, replica], "idempotent": ["slow", "pid"]}}
    workers, per_worker = 8, 12
    async with running_hub(servers) as hub:
        fleet = hub.hub.fleet
        with anyio.fail_after(60):
            async with mcp_client(hub.url) as client:
                first = {_text(await client.call_tool("search__pid", {})) for _ in range(2)}
                victim = int(min(first))
                results: list[str] = []
                failures: list[BaseException] = []
                killed = anyio.Event()

                async def worker() -> None:
                    for _ in range(per_worker):
                        try:
                            results.append(_text(await client.call_tool("search__slow", {"seconds": 0.1})))
                        except MCPError as exc:
                            failures.append(exc)
                        if len(results) >= workers * per_worker // 3 and not killed.is_set():
                            killed.set()
                            os.kill(victim, signal.SIGKILL)

                async with anyio.create_task_group() as tg:
                    for _ in range(workers):
                        tg.start_soon(worker)
                restarted = [c for c in fleet.members("search") if c.restarts >= 1]
                for member in fleet.members("search"):
                    await member.wait_for_state(ServerState.READY)
                servers_json = await _admin(hub.base_url, "servers")
    assert killed.is_set() and len(first) == 2
    assert failures == [] and results == ["done"] * (workers * per_worker)
    assert len(restarted) == 1
    assert sum(s["restarts"] for s in servers_json) == 1


# ---------------------------------------------------------------- config


def test_a_fallback_naming_an_unknown_server_or_itself_is_rejected_at_load() -> None:
    with pytest.raises(ConfigError) as unknown:
        parse_config({"servers": {"a": {"command": "x", "fallback": ["nope"]}}})
    with pytest.raises(ConfigError) as itself:
        parse_config({"servers": {"a": {"command": "x", "fallback": ["a"]}}})
    assert "servers.a.fallback[0]" in str(unknown.value) and "'nope'" in str(unknown.value)
    assert "its own fallback" in str(itself.value)


def test_replicas_exclude_command_and_url_and_their_members_get_slash_numbered_ids() -> None:
    with pytest.raises(ConfigError) as both:
        parse_config({"servers": {"s": {"command": "x", "replicas": [{"command": "y"}]}}})
    with pytest.raises(ConfigError) as beside:
        parse_config({"servers": {"s": {"replicas": [{"command": "y"}], "env": {"A": "1"}}}})
    config = parse_config(
        {"servers": {"s": {"replicas": [{"command": "y"}, {"url": "http://h/mcp"}], "timeout_seconds": 5}}}
    )
    members = config.servers["s"].members("s")
    assert "not both" in str(both.value) and "belong in each replica" in str(beside.value)
    assert [(mid, m.kind, m.timeout_seconds) for mid, m in members] == [
        ("s/1", "stdio", 5.0),
        ("s/2", "streamable_http", 5.0),
    ]


def test_route_timeouts_hard_maximum_and_idempotent_globs_apply_to_original_tool_names() -> None:
    config = parse_config(
        {
            "servers": {
                "s": {
                    "command": "x",
                    "timeout_seconds": 10,
                    "timeouts": {"slow_*": 120, "*": 20},
                    "idempotent": ["get_*"],
                }
            }
        }
    ).servers["s"]
    assert (config.timeout_for("slow_report"), config.timeout_for("other"), config.timeout_for(None)) == (120, 20, 10)
    assert config.hard_timeout_for("slow_report") == 600
    assert config.is_idempotent("get_user") and not config.is_idempotent("delete_user")


async def test_resources_and_prompts_of_a_down_primary_are_served_by_its_fallback() -> None:
    async with http_fixture("--name", "a") as (url, process):
        servers = {"a": {"url": url, "fallback": ["b"]}, "b": fixture_entry("b")}
        async with running_hub(servers) as hub:
            with anyio.fail_after(30):
                async with mcp_client(hub.url) as client:
                    before = await client.read_resource("a+fixture://info")
                    # A modern-era HTTP session has no standing stream: the hub learns that `a`
                    # is gone from the next request, which moves to `b` (a read is repeatable).
                    await kill_server(url, process)
                    info = await client.read_resource("a+fixture://info")
                    item = await client.read_resource("a+fixture://items/7")
                    prompt = await client.get_prompt("a__greet", {"name": "ada"})
    texts = [r.contents[0] for r in (before, info, item)]
    assert [t.text for t in texts if isinstance(t, types.TextResourceContents)] == ["a", "b", "item 7"]
    message = prompt.messages[0].content
    assert isinstance(message, types.TextContent) and message.text == "Hello, ada!"
