"""Endpoint profiles (issue 14): curated URLs at `/profiles/<name>/mcp` serving their globs
intersected with each caller's policy, in both eras, under the same auth; their RFC 9728
metadata, routes (`/admin/routes?profile=`, `mcphub routes --profile`) and `list_changed`.
Real clients -> the hub on loopback -> real fixture servers."""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import json
import os
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp_types import INVALID_PARAMS

from hub.catalog import Catalog
from hub.config import parse_config
from hub.config.catalog import ProfileConfig
from hub.endpoint.profiles import ProfileFace
from hub.endpoint.search_mode import CALL_TOOL, SEARCH_TOOLS
from hub.servers import ServerSnapshot
from hub.signals import Changes
from tests.clients import http_client, mcp_client
from tests.conftest import RunningHub, fixture_entry, hub_command, running_hub
from tests.conftest import tool_text as _text

pytestmark = pytest.mark.anyio

MODES = ["auto", "legacy"]
PUBLIC_URL = "https://hub.example.test"
KEYS = {
    "alice": "alice-key-0123456789abcdef",
    "bob": "bob-key-0123456789abcdef",
    "admin": "admin-key-0123456789abcdef",
    "reader": "reader-key-0123456789abcdef",
}
SCOPES = {"alice": ["hub:call"], "bob": ["hub:call"], "admin": ["hub:admin"], "reader": ["hub:metrics"]}
PROFILES: dict[str, Any] = {
    "alpha-tools": {
        "description": "What team alpha uses",
        "include": ["alpha__*", "alpha+*"],
        "exclude": ["alpha__crash", "alpha__getenv"],
    },
    "echoes": {"include": ["*__echo*"]},
    "searching": {"include": ["beta__*"], "catalog": {"mode": "search"}},
}
POLICIES = [
    {"principal": "alice", "allow": ["*"], "deny": ["alpha__pid"]},
    {"principal": "bob", "servers": ["beta"], "allow": ["*"]},
    {"scope": "hub:admin", "allow": ["*"]},
]


def servers() -> dict[str, Any]:
    """The fleet (built when a test runs: an entry made at import would not be forked)."""
    return {"alpha": fixture_entry("alpha"), "beta": fixture_entry("beta")}


def _auth() -> dict[str, Any]:
    keys = [
        {"id": who, "key_sha256": hashlib.sha256(key.encode()).hexdigest(), "scopes": SCOPES[who]}
        for who, key in KEYS.items()
    ]
    return {"api_keys": keys}


@asynccontextmanager
async def _hub(**settings: Any) -> AsyncIterator[RunningHub]:
    settings = {"profiles": PROFILES, "auth": _auth(), "policies": POLICIES, "public_url": PUBLIC_URL, **settings}
    async with running_hub(servers(), **settings) as hub:
        yield hub


@asynccontextmanager
async def _client(url: str, token: str | None, mode: str = "auto", **options: Any) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http_client(headers=headers, timeout=30) as http:
        async with mcp_client(
            streamable_http_client(url, http_client=http), mode=mode, cache=None, **options
        ) as client:
            yield client


async def _lists(client: Client) -> dict[str, list[str]]:
    """Every list of a face (each walked to its end), by kind."""
    return {
        "tools": sorted(t.name for t in (await client.list_tools()).tools),
        "prompts": sorted(p.name for p in (await client.list_prompts()).prompts),
        "resources": sorted(str(r.uri) for r in (await client.list_resources()).resources),
        "resource_templates": sorted(
            t.uri_template for t in (await client.list_resource_templates()).resource_templates
        ),
    }


def _selected(names: list[str], profile: dict[str, Any]) -> list[str]:
    """What a profile's globs select of `names`."""
    return [
        name
        for name in names
        if any(fnmatch.fnmatchcase(name, g) for g in profile.get("include", ["*"]))
        and not any(fnmatch.fnmatchcase(name, g) for g in profile.get("exclude", []))
    ]


def _profile_url(hub: RunningHub, name: str) -> str:
    return f"{hub.base_url}/profiles/{name}/mcp"


@pytest.mark.parametrize("mode", MODES)
async def test_a_profile_lists_exactly_its_globs_intersected_with_the_callers_policy(mode: str) -> None:
    seen: dict[tuple[str, str], dict[str, list[str]]] = {}
    async with _hub() as hub:
        with anyio.fail_after(60):
            for who in ("alice", "bob"):
                async with _client(hub.url, KEYS[who], mode) as client:
                    seen[(who, "/mcp")] = await _lists(client)
                for profile in ("alpha-tools", "echoes"):
                    async with _client(_profile_url(hub, profile), KEYS[who], mode) as client:
                        seen[(who, profile)] = await _lists(client)
                async with _client(hub.server_url("alpha"), KEYS[who], mode) as client:
                    seen[(who, "server")] = await _lists(client)
    for who in ("alice", "bob"):
        for profile in ("alpha-tools", "echoes"):
            expected = {kind: _selected(names, PROFILES[profile]) for kind, names in seen[(who, "/mcp")].items()}
            assert seen[(who, profile)] == expected, (who, profile)
    alice = seen[("alice", "alpha-tools")]
    assert "alpha__echo" in alice["tools"] and "alpha__pid" not in alice["tools"]  # the policy's deny
    assert "alpha__getenv" not in alice["tools"] and not any(n.startswith("beta") for n in alice["tools"])
    assert alice["prompts"] == ["alpha__greet"] and alice["resources"] == ["alpha+fixture://info"]
    assert alice["resource_templates"] == ["alpha+fixture://items/{id}"]
    assert seen[("bob", "alpha-tools")] == {"tools": [], "prompts": [], "resources": [], "resource_templates": []}
    assert seen[("bob", "echoes")]["tools"] == ["beta__echo"]
    assert seen[("alice", "echoes")]["tools"] == ["alpha__echo", "beta__echo"]
    assert "pid" not in seen[("alice", "server")]["tools"] and "getenv" in seen[("alice", "server")]["tools"]


@pytest.mark.parametrize("mode", MODES)
async def test_what_a_profile_leaves_out_is_refused_exactly_like_an_unknown_name(mode: str) -> None:
    async with _hub() as hub:
        with anyio.fail_after(30):
            async with _client(_profile_url(hub, "alpha-tools"), KEYS["alice"], mode) as client:
                errors: dict[str, MCPError] = {}
                for label, call in [
                    ("excluded", lambda: client.call_tool("alpha__getenv", {"name": "HOME"})),
                    ("other server", lambda: client.call_tool("beta__echo", {"text": "x"})),
                    ("unknown", lambda: client.call_tool("alpha__nothing", {})),
                    ("prompt", lambda: client.get_prompt("beta__greet", {"name": "x"})),
                    ("resource", lambda: client.read_resource("beta+fixture://info")),
                ]:
                    with pytest.raises(MCPError) as raised:
                        await call()
                    errors[label] = raised.value
                served = await client.call_tool("alpha__echo", {"text": "in the profile"})
                read = await client.read_resource("alpha+fixture://items/7")
    assert all(error.code == INVALID_PARAMS for error in errors.values())
    assert errors["excluded"].data["name"] == "alpha__getenv" and "alpha__getenv" in errors["excluded"].message
    assert errors["excluded"].data["kind"] == errors["unknown"].data["kind"] == "tool"
    assert "beta__echo" not in errors["other server"].data["suggestions"]  # suggestions come from the profile
    assert _text(served) == "in the profile"
    assert isinstance(read.contents[0], types.TextResourceContents) and read.contents[0].text == "item 7"


async def test_a_profile_has_the_auth_of_mcp_its_own_protected_resource_metadata_and_unknown_ones_are_404() -> None:
    async with _hub() as hub:
        base = hub.base_url
        with anyio.fail_after(30):
            async with http_client(timeout=15) as http:
                post = functools.partial(
                    http.post,
                    json={"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}},
                    headers={"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2026-07-28"},
                )
                anonymous = await post(f"{base}/profiles/echoes/mcp")
                reader = await post(
                    f"{base}/profiles/echoes/mcp", headers={"Authorization": f"Bearer {KEYS['reader']}"}
                )
                unknown = await post(f"{base}/profiles/nope/mcp", headers={"Authorization": f"Bearer {KEYS['alice']}"})
                metadata = await http.get(f"{base}/.well-known/oauth-protected-resource/profiles/echoes/mcp")
                no_metadata = await http.get(f"{base}/.well-known/oauth-protected-resource/profiles/nope/mcp")
    assert anonymous.status_code == 401
    challenge = anonymous.headers["www-authenticate"]
    assert f'resource_metadata="{PUBLIC_URL}/.well-known/oauth-protected-resource/profiles/echoes/mcp"' in challenge
    assert reader.status_code == 403 and 'scope="hub:call"' in reader.headers["www-authenticate"]
    assert unknown.status_code == 404 and unknown.json() == {"error": "unknown profile 'nope'"}
    assert metadata.status_code == 200
    assert metadata.json()["resource"] == f"{PUBLIC_URL}/profiles/echoes/mcp"
    assert "hub:call" in metadata.json()["scopes_supported"]
    assert no_metadata.status_code == 404


@pytest.mark.slow
async def test_admin_routes_me_routes_and_mcphub_routes_show_exactly_a_profiles_routes() -> None:
    async with _hub() as hub:
        base = hub.base_url
        with anyio.fail_after(60):
            async with http_client(timeout=15) as http:
                admin = await http.get(
                    f"{base}/admin/routes", params={"profile": "alpha-tools"}, headers=_bearer("admin")
                )
                every = await http.get(f"{base}/admin/routes", headers=_bearer("admin"))
                mine = await http.get(f"{base}/me/routes", params={"profile": "echoes"}, headers=_bearer("bob"))
                unknown = await http.get(f"{base}/admin/routes", params={"profile": "nope"}, headers=_bearer("admin"))
            cli = await _mcphub("routes", "--profile", "echoes", "--json", "--url", base, "--token", KEYS["bob"])
            cli_table = await _mcphub("routes", "--profile", "alpha-tools", "--url", base, "--token", KEYS["alice"])
            cli_unknown = await _mcphub("routes", "--profile", "nope", "--url", base, "--token", KEYS["bob"])
    all_routes = [r["exposed"] for r in every.json()["routes"]]
    assert [r["exposed"] for r in admin.json()["routes"]] == _selected(all_routes, PROFILES["alpha-tools"])
    assert [r["exposed"] for r in mine.json()["routes"]] == ["beta__echo"]
    assert unknown.status_code == 404
    assert cli.returncode == 0 and [r["exposed"] for r in json.loads(cli.stdout)["routes"]] == ["beta__echo"]
    assert cli_table.returncode == 0 and "alpha__echo" in cli_table.stdout and "alpha__pid" not in cli_table.stdout
    assert cli_unknown.returncode == 1 and "unknown profile 'nope'" in cli_unknown.stderr


@pytest.mark.parametrize("mode", MODES)
async def test_a_profile_in_search_mode_searches_and_calls_only_within_the_profile(mode: str) -> None:
    async with _hub() as hub:
        with anyio.fail_after(30):
            async with _client(_profile_url(hub, "searching"), KEYS["alice"], mode) as client:
                listing = (await client.list_tools()).tools
                result = await client.call_tool(SEARCH_TOOLS, {"query": "echo the text back", "limit": 50})
                with pytest.raises(MCPError) as outside:
                    await client.call_tool(CALL_TOOL, {"name": "alpha__echo", "arguments": {"text": "x"}})
                inside = await client.call_tool(CALL_TOOL, {"name": "beta__echo", "arguments": {"text": "in"}})
            async with _client(hub.url, KEYS["alice"], mode) as full:
                full_names = [t.name for t in (await full.list_tools()).tools]
    assert [t.name for t in listing] == ["call_tool", "search_tools"]
    assert result.structured_content is not None
    found = [t["name"] for t in result.structured_content["tools"]]
    assert found[0] == "beta__echo" and all(name.startswith("beta__") for name in found)
    assert outside.value.code == INVALID_PARAMS and _text(inside) == "in"
    assert "alpha__echo" in full_names and SEARCH_TOOLS not in full_names  # /mcp stays in full mode


@pytest.mark.parametrize("mode", MODES)
async def test_a_profile_hears_list_changed_for_changes_inside_it_only(mode: str) -> None:
    profiles = {"echoes": {"include": ["*__echo*"]}}
    changed = 0
    heard = Changes()  # notified at every list_changed the profile's client hears

    async def on_message(message: Any) -> None:
        nonlocal changed
        if isinstance(message, types.ToolListChangedNotification):
            changed += 1
            heard.notify()

    async with running_hub(servers(), profiles=profiles) as hub:
        with anyio.fail_after(30):
            url = _profile_url(hub, "echoes")
            async with _client(hub.url, None) as admin, _client(url, None, mode, message_handler=on_message) as client:
                if client.protocol_version == "2026-07-28":
                    async with client.listen(tools_list_changed=True) as events:
                        await admin.call_tool("alpha__add_tool", {"name": "outside"})
                        await admin.call_tool("alpha__add_tool", {"name": "echo_inside"})
                        async for _event in events:
                            break
                else:
                    await admin.call_tool("alpha__add_tool", {"name": "outside"})
                    await admin.call_tool("alpha__add_tool", {"name": "echo_inside"})
                    await heard.wait_for(lambda: changed >= 1)
                names = [t.name for t in (await client.list_tools()).tools]
    assert names == ["alpha__echo", "alpha__echo_inside", "beta__echo"]
    if mode == "legacy":
        assert changed == 1  # the change outside the profile was not announced


async def test_a_profile_face_announces_only_the_lists_whose_view_changed() -> None:
    config = parse_config({"servers": {"fx": {"command": "unused"}, "other": {"command": "unused"}}}, file="<test>")
    catalog = Catalog(config)
    face = ProfileFace(catalog, "p", ProfileConfig(include=["fx__*", "fx+*"], exclude=["fx__secret"]))
    echo = types.Tool(name="echo", input_schema={"type": "object"})
    secret = types.Tool(name="secret", input_schema={"type": "object"})
    await catalog.set_snapshot("fx", ServerSnapshot(tools=(echo,)))
    assert face.changed(frozenset({"tools"})) == {"tools"}
    await catalog.set_snapshot("other", ServerSnapshot(tools=(echo,)))
    assert face.changed(frozenset({"tools"})) == frozenset()
    await catalog.set_snapshot("fx", ServerSnapshot(tools=(echo, secret)))
    assert face.changed(frozenset({"tools"})) == frozenset()
    assert [t.name for t in face.tools()] == ["fx__echo"]
    assert face.resolve_tool("fx__secret") is None and face.resolve_tool("other__echo") is None
    assert face.resolve_tool("fx__echo") == ("fx", "echo")


def test_a_profile_name_must_be_one_safe_path_segment() -> None:
    from hub.errors import ConfigError

    for bad in ("Team A", "../x", "a/b", "UPPER", "x" * 33):
        with pytest.raises(ConfigError) as raised:
            parse_config({"profiles": {bad: {"include": ["*"]}}}, file="<test>")
        assert "profiles" in str(raised.value)
    assert parse_config({"profiles": {"data-team": {}}}).profiles["data-team"].include == ["*"]


def _bearer(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[who]}"}


async def _mcphub(*args: str) -> subprocess.CompletedProcess[str]:
    """`mcphub ARGS` in a child process, off the event loop (the served hub shares it); wide
    enough that no table cell wraps."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MCPHUB_")}, "COLUMNS": "400"}
    command = hub_command(*args)
    run = functools.partial(subprocess.run, command, capture_output=True, text=True, timeout=60, check=False, env=env)
    return await anyio.to_thread.run_sync(run)
