"""Search mode (issue 14) end to end: real clients of both eras -> the hub on loopback -> real
fixture servers (and the npm `server-everything`); the policy property over the real catalog,
index, policy and face objects (no servers, no mocks)."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.server.subscriptions import ToolsListChanged
from mcp_types import CONNECTION_CLOSED, INVALID_PARAMS

from hub.catalog import Catalog
from hub.catalog_search import CatalogSearch
from hub.config import PolicyRule, RateLimitsConfig, parse_config
from hub.endpoint.faces import AggregateFace
from hub.endpoint.found_tools import LISTENER_KEY, FoundTools, TargetedBus
from hub.endpoint.rate_limits import RateLimiter
from hub.endpoint.search_mode import CALL_TOOL, SEARCH_TOOLS, FaceSearch
from hub.errors import RATE_LIMITED
from hub.pin_status import DEFINITION_HELD
from hub.policy import Access, Policy
from hub.principals import Principal
from hub.search import words
from hub.servers import ServerSnapshot, ServerState
from hub.signals import Changes
from tests.clients import http_client, mcp_client
from tests.conftest import ROOT, fixture_entry, hub_command, running_hub, stdio_entry
from tests.conftest import tool_text as _text

pytestmark = pytest.mark.anyio

MODES = ["auto", "legacy"]
"""`auto` negotiates the modern era (2026-07-28) with the hub; `legacy` the handshake era."""

SEARCH = {"mode": "search"}
KEYS = {"alice": "alice-key-0123456789abcdef", "bob": "bob-key-0123456789abcdef"}
RUGPULL_SERVER = str(ROOT / "tests" / "servers" / "rugpull_server.py")
BENCHMARK = ROOT / "benchmarks" / "tool_search"


def _auth(**scopes: list[str]) -> dict[str, Any]:
    return {
        "api_keys": [
            {
                "id": who,
                "key_sha256": hashlib.sha256(KEYS[who].encode()).hexdigest(),
                "scopes": scopes.get(who, ["hub:call"]),
            }
            for who in KEYS
        ]
    }


@asynccontextmanager
async def _client(url: str, token: str | None = None, mode: str = "auto", **options: Any) -> AsyncIterator[Client]:
    """An SDK client of `url` with `token`, no response cache (lists are read fresh)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http_client(headers=headers, timeout=30) as http:
        async with mcp_client(
            streamable_http_client(url, http_client=http), mode=mode, cache=None, **options
        ) as client:
            yield client


async def _names(client: Client) -> list[str]:
    names: list[str] = []
    cursor = None
    while True:
        page = await client.list_tools(cursor=cursor)
        names += [tool.name for tool in page.tools]
        if (cursor := page.next_cursor) is None:
            return names


async def _search(client: Client, query: str, limit: int | None = None) -> list[str]:
    arguments: dict[str, Any] = {"query": query} if limit is None else {"query": query, "limit": limit}
    result = await client.call_tool(SEARCH_TOOLS, arguments)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return [tool["name"] for tool in result.structured_content["tools"]]


def _error(raised: pytest.ExceptionInfo[MCPError]) -> tuple[int, str, Any]:
    return raised.value.code, raised.value.message, raised.value.data


# ---------------------------------------------------------------- listing and searching


@pytest.mark.parametrize("mode", MODES)
async def test_search_mode_lists_the_two_search_tools_and_the_always_listed_ones_and_direct_calls_still_work(
    mode: str,
) -> None:
    catalog = {**SEARCH, "always_listed": ["fx__who*"]}
    async with running_hub({"fx": fixture_entry("fx")}, catalog=catalog) as hub:
        with anyio.fail_after(20):
            async with _client(hub.url, mode=mode) as client:
                listing = await client.list_tools()
                found = await _search(client, "echo the text back")
                via_call_tool = await client.call_tool(CALL_TOOL, {"name": "fx__echo", "arguments": {"text": "hi"}})
                direct = await client.call_tool("fx__echo", {"text": "direct"})
    names = [tool.name for tool in listing.tools]
    assert names == ["call_tool", "fx__whoami", "search_tools"]
    search_tool = next(tool for tool in listing.tools if tool.name == SEARCH_TOOLS)
    assert search_tool.input_schema["required"] == ["query"] and "limit" in search_tool.input_schema["properties"]
    assert found[0] == "fx__echo"
    assert _text(via_call_tool) == "hi" and via_call_tool.structured_content == {"text": "hi"}
    assert _text(direct) == "direct"


async def test_search_tools_answers_with_the_definitions_tools_list_gives_as_structured_content_and_as_text() -> None:
    # /mcp lists in full; the profile is in search mode over the same catalog.
    profiles = {"searching": {"catalog": SEARCH}}
    async with running_hub({"fx": fixture_entry("fx")}, profiles=profiles) as hub:
        with anyio.fail_after(20):
            async with _client(hub.url) as full, _client(f"{hub.base_url}/profiles/searching/mcp") as searching:
                listed = {tool.name: tool for tool in (await full.list_tools()).tools}
                result = await searching.call_tool(SEARCH_TOOLS, {"query": "environment variable value", "limit": 3})
    assert result.structured_content is not None
    found = result.structured_content["tools"]
    assert [tool["name"] for tool in found][:1] == ["fx__getenv"] and len(found) <= 3
    for definition in found:
        assert definition == listed[definition["name"]].model_dump(mode="json", by_alias=True, exclude_none=True)
    assert json.loads(_text(result)) == result.structured_content


async def test_a_large_catalog_is_offered_as_a_handful_of_tools_and_every_tool_is_still_found() -> None:
    servers = {"fx": fixture_entry("fx", "--extra-tools", "2000", max_tools=5000)}
    async with running_hub(servers, catalog=SEARCH, profiles={"full": {"catalog": {"mode": "full"}}}) as hub:
        with anyio.fail_after(60):
            async with _client(hub.url) as client, _client(f"{hub.base_url}/profiles/full/mcp") as full:
                searched = await client.list_tools()
                everything = await _names(full)
                echo = await _search(client, "echo the text back", limit=1)
                filler = await _search(client, "tool 1234", limit=1)
                called = await client.call_tool(CALL_TOOL, {"name": "fx__tool_1234", "arguments": {"text": "deep"}})
    assert len(everything) > 2000 and [tool.name for tool in searched.tools] == ["call_tool", "search_tools"]
    assert echo == ["fx__echo"] and filler == ["fx__tool_1234"]
    assert _text(called) == "deep"


async def test_the_index_follows_catalog_changes_so_a_new_tool_is_found_at_once() -> None:
    async with running_hub({"fx": fixture_entry("fx")}, catalog=SEARCH) as hub:
        with anyio.fail_after(20):
            async with _client(hub.url, mode="legacy") as client:
                before = await _search(client, "quantum flux capacitor")
                await client.call_tool("fx__add_tool", {"name": "quantum_flux_capacitor"})
                await hub.hub.catalog.changes.wait_for(
                    lambda: hub.hub.catalog.tool_route("fx__quantum_flux_capacitor") is not None
                )
                after = await _search(client, "quantum flux capacitor")
    assert "fx__quantum_flux_capacitor" not in before
    assert after[0] == "fx__quantum_flux_capacitor"


async def test_malformed_arguments_of_the_search_tools_are_tool_errors_the_model_can_correct() -> None:
    async with running_hub({"fx": fixture_entry("fx")}, catalog=SEARCH) as hub:
        with anyio.fail_after(20):
            async with _client(hub.url) as client:
                no_query = await client.call_tool(SEARCH_TOOLS, {})
                bad_limit = await client.call_tool(SEARCH_TOOLS, {"query": "echo", "limit": 0})
                no_name = await client.call_tool(CALL_TOOL, {"arguments": {}})
                bad_arguments = await client.call_tool(CALL_TOOL, {"name": "fx__echo", "arguments": "text=hi"})
                nested = await client.call_tool(CALL_TOOL, {"name": CALL_TOOL, "arguments": {"name": "fx__pid"}})
                large_limit = await client.call_tool(SEARCH_TOOLS, {"query": "echo", "limit": 500})
    for result in (no_query, bad_limit, no_name, bad_arguments, nested):
        assert result.is_error
    assert "query" in _text(no_query) and "limit" in _text(bad_limit) and "name" in _text(no_name)
    assert "arguments" in _text(bad_arguments) and "directly" in _text(nested)
    assert not large_limit.is_error  # lowered to the most a search returns


# ---------------------------------------------------------------- call_tool is the direct call


async def test_call_tool_answers_a_denied_or_unknown_tool_exactly_as_a_direct_call_does() -> None:
    policies = [{"principal": "alice", "allow": ["fx__*"], "deny": ["fx__getenv"]}]
    async with running_hub({"fx": fixture_entry("fx")}, catalog=SEARCH, auth=_auth(), policies=policies) as hub:
        with anyio.fail_after(20):
            async with _client(hub.url, KEYS["alice"]) as client:
                answers: dict[str, tuple[int, str, Any]] = {}
                for label, name, via in [
                    ("denied direct", "fx__getenv", False),
                    ("denied via call_tool", "fx__getenv", True),
                    ("unknown direct", "fx__nothing", False),
                    ("unknown via call_tool", "fx__nothing", True),
                ]:
                    with pytest.raises(MCPError) as raised:
                        if via:
                            await client.call_tool(CALL_TOOL, {"name": name, "arguments": {"name": "HOME"}})
                        else:
                            await client.call_tool(name, {"name": "HOME"})
                    answers[label] = _error(raised)
                found = await _search(client, "value of an environment variable")
    assert answers["denied direct"] == answers["denied via call_tool"]
    assert answers["unknown direct"] == answers["unknown via call_tool"]
    code, message, data = answers["denied via call_tool"]
    assert code == INVALID_PARAMS and data["kind"] == "tool" and data["name"] == "fx__getenv"
    assert "fx__getenv" in message
    assert "fx__getenv" not in found


async def test_call_tool_and_search_tools_are_rate_limited_per_route_like_direct_calls() -> None:
    limits = {
        "routes": {
            "fx__echo": {"requests_per_second": 0.01, "burst": 1},
            "search_tools": {"requests_per_second": 0.01, "burst": 1},
        }
    }
    async with running_hub({"fx": fixture_entry("fx")}, catalog=SEARCH, rate_limits=limits) as hub:
        with anyio.fail_after(20):
            async with _client(hub.url) as client:
                await client.call_tool("fx__echo", {"text": "spends the one token"})
                with pytest.raises(MCPError) as via_call_tool:
                    await client.call_tool(CALL_TOOL, {"name": "fx__echo", "arguments": {"text": "x"}})
                other = await client.call_tool(CALL_TOOL, {"name": "fx__whoami", "arguments": {}})
                await _search(client, "echo")
                with pytest.raises(MCPError) as second_search:
                    await client.call_tool(SEARCH_TOOLS, {"query": "echo"})
    for raised in (via_call_tool, second_search):
        assert raised.value.code == RATE_LIMITED
        assert raised.value.data["retry_after_seconds"] > 0
    assert _text(other) == "fx"


async def test_a_held_definition_is_never_found_and_call_tool_refuses_it_with_the_pin_error(tmp_path: Path) -> None:
    state_dir = str(tmp_path / "state")
    servers = {"rp": stdio_entry(RUGPULL_SERVER)}
    async with running_hub(servers, pinning="block", state_dir=state_dir) as hub:
        with anyio.fail_after(20):
            async with _client(hub.url) as client:
                assert "rp__echo" in await _names(client)  # pinned as first seen
    pulled = {"rp": stdio_entry(RUGPULL_SERVER, "--pulled")}
    async with running_hub(pulled, pinning="block", state_dir=state_dir, catalog=SEARCH) as hub:
        with anyio.fail_after(20):
            async with _client(hub.url) as client:
                found = await _search(client, "echo the text back")
                with pytest.raises(MCPError) as direct:
                    await client.call_tool("rp__echo", {"text": "hi"})
                with pytest.raises(MCPError) as via_call_tool:
                    await client.call_tool(CALL_TOOL, {"name": "rp__echo", "arguments": {"text": "hi"}})
    assert "rp__echo" not in found and "rp__backdoor" not in found
    assert direct.value.code == via_call_tool.value.code == DEFINITION_HELD
    assert _error(direct) == _error(via_call_tool)


async def test_call_tool_of_a_server_that_dies_or_is_down_fails_with_server_unavailable_naming_it() -> None:
    # max_restarts 0: the victim's first exit leaves it `failed` (a stable "down").
    servers = {"victim": fixture_entry("victim", max_restarts=0), "bystander": fixture_entry("bystander")}
    async with running_hub(servers, catalog=SEARCH) as hub:
        with anyio.fail_after(30):
            async with _client(hub.url) as client:
                with pytest.raises(MCPError) as mid_call:
                    await client.call_tool(CALL_TOOL, {"name": "victim__crash", "arguments": {}})
                await hub.hub.wait_for_server("victim", ServerState.FAILED)
                with pytest.raises(MCPError) as down:
                    await client.call_tool(CALL_TOOL, {"name": "victim__pid", "arguments": {}})
                with pytest.raises(MCPError) as direct:
                    await client.call_tool("victim__pid", {})
                found = await _search(client, "process id")
                bystander = await client.call_tool(CALL_TOOL, {"name": "bystander__pid", "arguments": {}})
    assert mid_call.value.code == down.value.code == CONNECTION_CLOSED
    assert "victim" in mid_call.value.message and _error(down) == _error(direct)
    assert "victim__pid" not in found and "bystander__pid" in found  # a down server's tools are not found
    assert _text(bystander).isdigit()


@pytest.mark.parametrize("mode", MODES)
async def test_call_tool_relays_the_called_tools_progress(mode: str) -> None:
    progress: list[tuple[float, float | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total))

    async with running_hub({"fx": fixture_entry("fx")}, catalog=SEARCH) as hub:
        with anyio.fail_after(20):
            async with _client(hub.url, mode=mode) as client:
                result = await client.call_tool(
                    CALL_TOOL,
                    {"name": "fx__slow", "arguments": {"seconds": 0.1, "steps": 3}},
                    progress_callback=on_progress,
                )
    assert _text(result) == "done"
    assert progress == [(1, 3), (2, 3), (3, 3)]


# ---------------------------------------------------------------- policy


@pytest.mark.parametrize("mode", MODES)
async def test_each_principal_finds_only_the_tools_its_policy_allows(mode: str) -> None:
    policies = [
        {"principal": "alice", "allow": ["fx__*"], "deny": ["fx__pid", "fx__getenv"]},
        {"principal": "bob", "allow": ["fx__pid", "fx__getenv"]},
    ]
    async with running_hub({"fx": fixture_entry("fx")}, catalog=SEARCH, auth=_auth(), policies=policies) as hub:
        with anyio.fail_after(20):
            async with _client(hub.url, KEYS["alice"], mode) as alice, _client(hub.url, KEYS["bob"], mode) as bob:
                alice_found = await _search(alice, "process id of the server", limit=50)
                bob_found = await _search(bob, "process id of the server", limit=50)
                bob_echo = await _search(bob, "echo the text back", limit=50)
                alice_listing = await _names(alice)
    assert "fx__pid" not in alice_found and set(bob_found) <= {"fx__pid", "fx__getenv"}
    assert bob_found[0] == "fx__pid" and "fx__echo" not in bob_echo
    assert alice_listing == ["call_tool", "search_tools"]


async def test_a_policy_rule_sets_the_catalog_mode_of_the_callers_it_applies_to() -> None:
    policies = [
        {"principal": "alice", "allow": ["*"], "catalog": {"mode": "search", "always_listed": ["fx__echo"]}},
        {"scope": "hub:call", "allow": ["*"]},
    ]
    async with running_hub({"fx": fixture_entry("fx")}, auth=_auth(), policies=policies) as hub:
        with anyio.fail_after(20):
            async with _client(hub.url, KEYS["alice"]) as alice, _client(hub.url, KEYS["bob"]) as bob:
                alice_names = await _names(alice)
                bob_names = await _names(bob)
                with pytest.raises(MCPError) as bob_search:
                    await bob.call_tool(SEARCH_TOOLS, {"query": "echo"})
                alice_found = await _search(alice, "echo")
    assert alice_names == ["call_tool", "fx__echo", "search_tools"]
    assert "fx__pid" in bob_names and SEARCH_TOOLS not in bob_names
    assert bob_search.value.code == INVALID_PARAMS  # not in search mode: an unknown name
    assert alice_found[0] == "fx__echo"


_REAL_TOOLS: list[types.Tool] = []


def _real_tools() -> list[types.Tool]:
    """The benchmark's snapshot of 111 real servers' tools, under their exposed names."""
    if not _REAL_TOOLS:
        sys.path.insert(0, str(BENCHMARK))
        try:
            from data import load_catalog  # the benchmark's loader (benchmarks/tool_search/data.py)
        finally:
            sys.path.remove(str(BENCHMARK))
        _REAL_TOOLS.extend(load_catalog())
    return _REAL_TOOLS


async def _real_catalog() -> Catalog:
    """A real `Catalog` holding the snapshot, each server's tools under `<server_id>__<name>`."""
    tools = _real_tools()
    by_server: dict[str, list[types.Tool]] = {}
    for tool in tools:
        server_id, _, original = tool.name.partition("__")
        by_server.setdefault(server_id, []).append(tool.model_copy(update={"name": original}))
    config = parse_config({"servers": {sid: {"command": "unused"} for sid in by_server}}, file="<test>")
    catalog = Catalog(config)
    for server_id, server_tools in by_server.items():
        await catalog.set_snapshot(server_id, ServerSnapshot(tools=tuple(server_tools)))
    return catalog


_GLOBS = [
    "*",
    "git__*",
    "github__*",
    "filesystem__*",
    "memory__*",
    "slack__*",
    "*__create_*",
    "*__list_*",
    "*__get_*",
    "*issue*",
    "*file*",
    "time__*",
]
_SERVERS = ["brave", "everything", "fetch", "filesystem", "git", "github", "gitlab", "maps", "memory", "slack", "time"]
_rules = st.lists(
    st.fixed_dictionaries(
        {
            "principal": st.sampled_from(["p", "other"]),
            "allow": st.lists(st.sampled_from(_GLOBS), min_size=1, max_size=3),
            "deny": st.lists(st.sampled_from(_GLOBS[1:]), max_size=2),
        },
        optional={"servers": st.lists(st.sampled_from(_SERVERS), min_size=1, max_size=4)},
    ),
    min_size=1,
    max_size=3,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(rules=_rules, target=st.integers(min_value=0, max_value=110), scopes=st.sets(st.sampled_from(["hub:call", "x"])))
@pytest.mark.slow
def test_search_returns_the_allowed_tool_for_its_name_and_never_a_tool_the_policy_denies(
    rules: list[dict[str, Any]], target: int, scopes: set[str]
) -> None:
    """Over real catalog, index, policy and face objects: for any policy, a search for a tool's
    own words finds it when the policy lets the principal use it and never finds a denied tool."""
    policy = Policy([PolicyRule.model_validate(rule) for rule in rules])
    principal = Principal("p", frozenset(scopes), "api_key")

    async def run() -> tuple[list[str], Catalog]:
        catalog = await _real_catalog()
        search = FaceSearch(
            CatalogSearch(catalog),
            AggregateFace(catalog),
            Access(policy, RateLimiter(RateLimitsConfig())),
            parse_config({}).catalog,
        )
        tool = _real_tools()[target]
        hits = await search.find(principal, " ".join(words(tool.name)), 8)
        return [hit.name for hit in hits], catalog

    names, catalog = anyio.run(run)
    wanted = _real_tools()[target].name
    route = catalog.tool_route(wanted)
    assert route is not None
    for name in names:
        found = catalog.tool_route(name)
        assert found is not None and policy.allows(principal, found.server_id, name)
    assert (wanted in names) == policy.allows(principal, route.server_id, wanted)


# ---------------------------------------------------------------- expose_found (on-demand)


async def test_expose_found_adds_a_sessions_found_tools_to_its_list_and_tells_only_that_session() -> None:
    catalog = {**SEARCH, "expose_found": True, "max_found": 2}
    changed: dict[str, int] = {"a": 0, "b": 0}
    heard: dict[str, anyio.Event] = {"a": anyio.Event(), "b": anyio.Event()}
    notes = Changes()  # notified at every list_changed a client hears

    def handler(who: str) -> Any:
        async def on_message(message: Any) -> None:
            if isinstance(message, types.ToolListChangedNotification):
                changed[who] += 1
                heard[who].set()
                notes.notify()

        return on_message

    async with running_hub({"fx": fixture_entry("fx")}, catalog=catalog) as hub:
        with anyio.fail_after(20):
            async with _client(hub.url, mode="legacy", message_handler=handler("a")) as a:
                async with _client(hub.url, mode="legacy", message_handler=handler("b")) as b:
                    await _search(a, "echo the text back", limit=1)
                    await heard["a"].wait()
                    a_names = await _names(a)
                    b_names = await _names(b)
                    await _search(b, "process id", limit=1)
                    await heard["b"].wait()
                    again = changed["a"]
                    await _search(a, "echo the text back", limit=1)  # nothing new: no list_changed
                    await _search(a, "environment variable value", limit=1)
                    await _search(a, "process id", limit=1)
                    await notes.wait_for(lambda: changed["a"] == 3)
                    capped = await _names(a)
    assert a_names == ["call_tool", "fx__echo", "search_tools"]
    assert b_names == ["call_tool", "search_tools"]
    assert again == 1 and changed["b"] == 1
    assert capped == ["call_tool", "fx__getenv", "fx__pid", "search_tools"]  # max_found 2: echo left


async def test_expose_found_keeps_a_modern_era_principals_found_tools_and_tells_its_own_listen_streams() -> None:
    catalog = {**SEARCH, "expose_found": True}
    async with running_hub({"fx": fixture_entry("fx")}, catalog=catalog, auth=_auth()) as hub:
        with anyio.fail_after(20):
            async with _client(hub.url, KEYS["alice"]) as alice, _client(hub.url, KEYS["bob"]) as bob:
                async with alice.listen(tools_list_changed=True) as events:
                    await _search(alice, "echo the text back", limit=1)
                    async for event in events:
                        assert isinstance(event, ToolsListChanged)
                        break
                async with _client(hub.url, KEYS["alice"]) as alice_again:
                    alice_names = await _names(alice_again)  # another client of the same principal
                bob_names = await _names(bob)
    assert alice_names == ["call_tool", "fx__echo", "search_tools"]
    assert bob_names == ["call_tool", "search_tools"]


async def test_a_targeted_bus_delivers_to_the_listeners_of_one_client_and_broadcasts_to_all() -> None:
    bus = TargetedBus()
    got: dict[str, list[object]] = {"alice": [], "bob": [], "anyone": []}
    unsubscribe = []
    for key in ("alice", "bob", None):
        token = LISTENER_KEY.set(key)
        try:
            unsubscribe.append(bus.subscribe(got[key or "anyone"].append))
        finally:
            LISTENER_KEY.reset(token)
    await bus.publish_to("alice", ToolsListChanged())
    await bus.publish(ToolsListChanged())
    unsubscribe[0]()
    await bus.publish_to("alice", ToolsListChanged())
    assert (len(got["alice"]), len(got["bob"]), len(got["anyone"])) == (2, 1, 1)
    assert bus.listeners_of("alice") == 0 and bus.listeners_of("bob") == 1


def test_found_tools_keep_the_most_recently_found_per_client_and_say_when_the_set_changed() -> None:
    found = FoundTools(ttl_seconds=60)
    assert found.add("s1", ["a", "b"], cap=3) is True
    assert found.add("s1", ["b"], cap=3) is False
    assert found.add("s1", ["c", "d"], cap=3) is True
    assert sorted(found.names("s1")) == ["b", "c", "d"] and found.names("s2") == []
    found.forget("s1")
    assert found.names("s1") == []


# ---------------------------------------------------------------- names, CLI, real servers


async def test_a_prefix_false_server_cannot_take_a_search_mode_tool_name() -> None:
    servers = {"fx": fixture_entry("fx", prefix=False)}
    async with running_hub(servers, catalog=SEARCH) as hub:
        with anyio.fail_after(20):
            async with _client(hub.url, mode="legacy") as client:
                await client.call_tool("add_tool", {"name": "search_tools"})
                await hub.hub.catalog.changes.wait_for(
                    lambda: hub.hub.catalog.tool_route("fx__search_tools") is not None
                )
                own = await client.call_tool("fx__search_tools", {"text": "the server's"})
                hubs = await _search(client, "echo the text back")
    route = hub.hub.catalog.tool_route("fx__search_tools")
    assert route is not None and route.original == "search_tools" and route.note == "collision: a hub tool name"
    assert _text(own) == "the server's" and hubs[0] == "echo"


@pytest.mark.slow
async def test_mcphub_search_prints_what_search_tools_answers_the_same_principal() -> None:
    policies = [{"principal": "alice", "allow": ["fx__*"], "deny": ["fx__echo"]}]
    async with running_hub({"fx": fixture_entry("fx")}, catalog=SEARCH, auth=_auth(), policies=policies) as hub:
        with anyio.fail_after(60):
            async with _client(hub.url, KEYS["alice"]) as client:
                model_got = await _search(client, "process id", limit=3)
            common = ("--url", hub.base_url, "--token", KEYS["alice"])
            as_json, table, denied, unknown_profile = await _mcphub_many(
                ["search", "process id", "--limit", "3", "--json", *common],
                ["search", "process id", "--limit", "3", *common],
                ["search", "echo the text back", "--json", *common],
                ["search", "echo", "--profile", "nope", *common],
            )
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert [r["name"] for r in data["results"]] == model_got and data["mode"] == "search"
    top = data["results"][0]
    assert (top["rank"], top["name"], top["server_id"], top["original"]) == (1, "fx__pid", "fx", "pid")
    assert top["matched"]["description"] == ["process", "id"] and "score" not in json.dumps(data)
    assert table.returncode == 0 and "fx__pid" in table.stdout and "description: process, id" in table.stdout
    assert "fx__echo" not in denied.stdout
    assert unknown_profile.returncode == 1 and "unknown profile 'nope'" in unknown_profile.stderr


async def _mcphub(*args: str) -> subprocess.CompletedProcess[str]:
    """`mcphub ARGS` in a child process, off the event loop (the served hub shares it); wide
    enough that no table cell wraps."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MCPHUB_")}, "COLUMNS": "400"}
    command = hub_command(*args)
    run = functools.partial(subprocess.run, command, capture_output=True, text=True, timeout=60, check=False, env=env)
    return await anyio.to_thread.run_sync(run)


async def _mcphub_many(*commands: list[str]) -> list[subprocess.CompletedProcess[str]]:
    """Several `mcphub` commands at once (each is mostly interpreter start-up), in order."""
    results: dict[int, subprocess.CompletedProcess[str]] = {}

    async def run(index: int, command: list[str]) -> None:
        results[index] = await _mcphub(*command)

    async with anyio.create_task_group() as tg:
        for index, command in enumerate(commands):
            tg.start_soon(run, index, command)
    return [results[index] for index in range(len(commands))]


async def test_me_search_builds_the_index_on_demand_on_a_hub_in_full_mode_and_checks_its_parameters() -> None:
    async with running_hub({"fx": fixture_entry("fx")}) as hub:
        assert not hub.hub.endpoint.search.active  # nothing configured search mode: no index yet
        with anyio.fail_after(20):
            async with http_client(base_url=hub.base_url, timeout=15) as http:
                found = await http.get("/me/search", params={"q": "echo the text back", "limit": "2"})
                no_query = await http.get("/me/search")
                bad_limit = await http.get("/me/search", params={"q": "echo", "limit": "0"})
                unknown = await http.get("/me/search", params={"q": "echo", "profile": "nope"})
    assert found.status_code == 200
    body = found.json()
    assert body["mode"] == "full" and body["profile"] is None and body["query"] == "echo the text back"
    assert [r["name"] for r in body["results"]][:1] == ["fx__echo"] and len(body["results"]) <= 2
    assert hub.hub.endpoint.search.active
    assert (no_query.status_code, bad_limit.status_code, unknown.status_code) == (400, 400, 404)


@pytest.mark.parametrize("mode", MODES)
async def test_serve_stdio_serves_search_mode_to_the_local_client(tmp_path: Path, mode: str) -> None:
    config = tmp_path / "hub.json"
    config.write_text(
        json.dumps({"servers": {"fx": fixture_entry("fx")}, "catalog": SEARCH, "state_dir": str(tmp_path)})
    )
    command, *args = hub_command("serve", "--stdio", "-c", str(config))
    params = StdioServerParameters(command=command, args=args)
    with anyio.fail_after(30):
        async with mcp_client(params, mode=mode) as client:
            names = [tool.name for tool in (await client.list_tools()).tools]
            found = await _search(client, "echo the text back", limit=1)
            called = await client.call_tool(CALL_TOOL, {"name": found[0], "arguments": {"text": "over stdio"}})
    assert names == ["call_tool", "search_tools"]
    assert found == ["fx__echo"] and _text(called) == "over stdio"


def test_catalog_settings_layer_hub_wide_then_profile_then_the_first_policy_rule_that_applies() -> None:
    config = parse_config(
        {
            "catalog": {"mode": "search", "always_listed": ["a__*"], "max_found": 5},
            "profiles": {"team": {"catalog": {"mode": "full", "expose_found": True}}},
            "policies": [
                {"principal": "agent", "allow": ["*"], "catalog": {"mode": "search"}},
                {"principal": "agent", "allow": ["*"], "catalog": {"mode": "full"}},  # never reached
                {"scope": "hub:call", "allow": ["*"]},
            ],
        },
        file="<test>",
    )
    access = Access(Policy(config.policies), RateLimiter(RateLimitsConfig()))
    catalog = Catalog(config)
    face = AggregateFace(catalog)
    index = CatalogSearch(catalog)
    hub_wide = FaceSearch(index, face, access, config.catalog)
    team = FaceSearch(index, face, access, config.catalog, config.profiles["team"].catalog)
    agent = Principal("agent", frozenset({"hub:call"}), "api_key")
    person = Principal("person", frozenset({"hub:call"}), "api_key")
    local = Principal("local", frozenset({"hub:call"}), "local")

    assert hub_wide.settings(person).model_dump() == {
        "mode": "search",
        "always_listed": ["a__*"],
        "expose_found": False,
        "max_found": 5,
    }
    assert team.settings(person).mode == "full" and team.settings(person).expose_found
    assert team.settings(person).always_listed == ["a__*"]
    assert team.settings(agent).mode == "search" and team.settings(agent).expose_found  # the rule goes last
    assert hub_wide.settings(local).mode == "search"  # stdio: no policy, the endpoint's own


def test_a_reload_keeps_the_running_catalog_and_profiles_and_says_they_need_a_restart() -> None:
    from hub.reload import plan_reload

    old = parse_config({"servers": {"fx": fixture_entry("fx")}}, file="<test>")
    new = parse_config(
        {"servers": {"fx": fixture_entry("fx")}, "catalog": SEARCH, "profiles": {"p": {}}}, file="<test>"
    )
    assert plan_reload(old, new).restart_required == ("catalog", "profiles")


@pytest.mark.e2e
@pytest.mark.parametrize("mode", MODES)
async def test_search_mode_over_server_everything_finds_and_calls_its_tools_from_user_words(
    mode: str, npm_servers: Path
) -> None:
    servers = {"everything": {"command": str(npm_servers / "mcp-server-everything")}, "fx": fixture_entry("fx")}
    async with running_hub(servers, catalog=SEARCH, start_timeout=60) as hub:
        with anyio.fail_after(60):
            async with _client(hub.url, mode=mode) as client:
                listing = await _names(client)
                adding = await _search(client, "add two numbers together", limit=5)
                summed = await client.call_tool(
                    CALL_TOOL, {"name": "everything__get-sum", "arguments": {"a": 2, "b": 3}}
                )
                image = await _search(client, "give me a small picture", limit=5)
    assert listing == ["call_tool", "search_tools"]
    assert "everything__get-sum" in adding
    assert "5" in _text(summed)
    assert "everything__get-tiny-image" in image
