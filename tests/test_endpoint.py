"""The core path end to end: real clients of both eras -> the hub on loopback -> real fixture
servers as stdio subprocesses and loopback HTTP/SSE servers."""

from __future__ import annotations

import logging
import os
import signal
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client, MCPError
from mcp_types import CONNECTION_CLOSED, INVALID_PARAMS, REQUEST_TIMEOUT, SERVER_INFO_META_KEY

from hub.naming import NAME_PATTERN
from hub.servers import ServerState
from tests.clients import http_client, mcp_client
from tests.conftest import fixture_entry, http_fixture, kill_server, running_hub
from tests.conftest import tool_text as _text

pytestmark = pytest.mark.anyio

MODES = ["auto", "legacy"]
"""`auto` negotiates the modern era (2026-07-28) with the hub; `legacy` the handshake era."""


async def _all_tool_names(client: Client) -> list[str]:
    names: list[str] = []
    cursor = None
    while True:
        page = await client.list_tools(cursor=cursor)
        names += [tool.name for tool in page.tools]
        if (cursor := page.next_cursor) is None:
            return names


@pytest.mark.parametrize("mode", MODES)
async def test_two_servers_exporting_the_same_tool_name_are_both_reachable_under_their_prefixes(mode: str) -> None:
    async with running_hub({"alpha": fixture_entry("alpha"), "beta": fixture_entry("beta")}) as hub:
        with anyio.fail_after(15):
            async with mcp_client(hub.url, mode=mode) as client:
                names = await _all_tool_names(client)
                alpha = await client.call_tool("alpha__whoami", {})
                beta = await client.call_tool("beta__whoami", {})
                echoed = await client.call_tool("beta__echo", {"text": "hi"})
    assert {"alpha__whoami", "beta__whoami", "alpha__echo", "beta__echo"} <= set(names)
    assert (_text(alpha), _text(beta)) == ("alpha", "beta")
    assert _text(echoed) == "hi"
    assert echoed.structured_content == {"text": "hi"}


async def test_a_handshake_era_client_and_a_modern_era_client_use_the_same_hub_at_once() -> None:
    async with running_hub({"fx": fixture_entry("fx")}) as hub:
        with anyio.fail_after(15):
            async with mcp_client(hub.url, mode="legacy") as old, mcp_client(hub.url) as new:
                assert old.protocol_version == "2025-11-25"
                assert new.protocol_version == "2026-07-28"
                async with anyio.create_task_group() as tg:
                    results: dict[str, str] = {}

                    async def call(client: Client, key: str) -> None:
                        results[key] = _text(await client.call_tool("fx__echo", {"text": key}))

                    for index in range(10):
                        tg.start_soon(call, old, f"old-{index}")
                        tg.start_soon(call, new, f"new-{index}")
    assert results == {key: key for key in results} and len(results) == 20


async def test_a_handshake_era_server_and_a_modern_era_server_serve_behind_the_same_hub() -> None:
    servers = {"old": fixture_entry("old", protocol="legacy"), "new": fixture_entry("new", protocol="modern")}
    async with running_hub(servers) as hub:
        versions = {status.server_id: status.protocol_version for status in hub.hub.server_statuses()}
        with anyio.fail_after(15):
            async with mcp_client(hub.url) as client:
                old = await client.call_tool("old__whoami", {})
                new = await client.call_tool("new__whoami", {})
    assert versions == {"old": "2025-11-25", "new": "2026-07-28"}
    assert (_text(old), _text(new)) == ("old", "new")


async def test_names_that_are_invalid_or_too_long_are_exposed_valid_and_still_reach_the_original() -> None:
    async with running_hub({"weird": fixture_entry("weird", "--weird-names")}) as hub:
        routes = {route.original: route.exposed for route in hub.hub.catalog.routes() if route.kind == "tools"}
        with anyio.fail_after(15):
            async with mcp_client(hub.url) as client:
                names = await _all_tool_names(client)
                answers = {
                    original: _text(await client.call_tool(routes[original], {}))
                    for original in ("has space", "a.b/c", "a_b_c", "x" * 80)
                }
    assert all(NAME_PATTERN.match(name) for name in names)
    assert len(set(names)) == len(names)
    assert routes["a_b_c"] == "weird__a_b_c"
    assert len(routes["x" * 80]) == 64
    # The fixture answers these tools with their own (original) name: the route table, not
    # string parsing, found the original.
    assert answers == {original: original for original in answers}


async def test_every_page_of_a_paginated_server_is_in_the_catalog() -> None:
    async with running_hub({"big": fixture_entry("big", "--extra-tools", "40", "--page-size", "7")}) as hub:
        with anyio.fail_after(15):
            async with mcp_client(hub.url) as client:
                names = await _all_tool_names(client)
                last = await client.call_tool("big__tool_39", {"text": "last page"})
    assert {f"big__tool_{i}" for i in range(40)} <= set(names)
    assert _text(last) == "last page"


async def test_a_server_that_fails_to_start_is_reported_while_the_others_serve() -> None:
    servers = {"good": fixture_entry("good"), "broken": {"command": "/nonexistent/mcp-server"}}
    async with running_hub(servers) as hub:
        with anyio.fail_after(15):
            async with http_client() as http:
                ready = (await http.get(f"{hub.base_url}/readyz")).json()
            async with mcp_client(hub.url) as client:
                names = await _all_tool_names(client)
                good = await client.call_tool("good__whoami", {})
    states = {server["server_id"]: server for server in ready["servers"]}
    assert ready["status"] == "degraded"
    assert states["good"]["state"] == "ready"
    assert states["broken"]["state"] == "failed"
    assert "/nonexistent/mcp-server" in states["broken"]["last_error"]
    assert _text(good) == "good"
    assert not any(name.startswith("broken__") for name in names)


@pytest.mark.parametrize("mode", MODES)
async def test_a_server_that_dies_mid_call_fails_that_call_naming_it_and_is_restarted(mode: str) -> None:
    async with running_hub({"victim": fixture_entry("victim"), "bystander": fixture_entry("bystander")}) as hub:
        with anyio.fail_after(30):
            async with mcp_client(hub.url, mode=mode) as client:
                first_pid = _text(await client.call_tool("victim__pid", {}))
                with pytest.raises(MCPError) as raised:
                    await client.call_tool("victim__crash", {})
                # The other server is untouched, even while the victim is down.
                assert _text(await client.call_tool("bystander__whoami", {})) == "bystander"
                await hub.hub.wait_for_server("victim", ServerState.RESTARTING, ServerState.FAILED)
                restarted = await hub.hub.wait_for_server("victim", ServerState.READY)
                second_pid = _text(await client.call_tool("victim__pid", {}))
    assert raised.value.code == CONNECTION_CLOSED
    assert "victim" in raised.value.message
    assert second_pid != first_pid
    assert restarted.restarts >= 1


async def test_a_killed_server_shows_in_readyz_and_every_other_route_keeps_working() -> None:
    async with running_hub({"victim": fixture_entry("victim"), "bystander": fixture_entry("bystander")}) as hub:
        with anyio.fail_after(30):
            async with mcp_client(hub.url) as client, http_client() as http:
                os.kill(int(_text(await client.call_tool("victim__pid", {}))), signal.SIGKILL)
                await hub.hub.wait_for_server("victim", ServerState.RESTARTING, ServerState.FAILED)
                ready = (await http.get(f"{hub.base_url}/readyz")).json()
                states = {server["server_id"]: server["state"] for server in ready["servers"]}
                assert states["bystander"] == "ready" and states["victim"] != "ready"
                assert _text(await client.call_tool("bystander__echo", {"text": "still here"})) == "still here"
                # A call to the restarting victim waits for it (issue 10, item 1) and is answered.
                assert _text(await client.call_tool("victim__whoami", {})) == "victim"
                assert hub.hub.server_status("victim").restarts >= 1


@pytest.mark.parametrize("server_protocol", ["legacy", "modern"])
@pytest.mark.parametrize("mode", MODES)
async def test_a_change_in_a_servers_tools_reaches_a_connected_client_as_list_changed(
    mode: str, server_protocol: str
) -> None:
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    async with running_hub({"fx": fixture_entry("fx", protocol=server_protocol)}) as hub:
        with anyio.fail_after(20):
            async with mcp_client(hub.url, mode=mode, message_handler=on_message) as client:
                assert client.server_capabilities.tools is not None
                assert client.server_capabilities.tools.list_changed is True
                if client.protocol_version == "2026-07-28":
                    async with client.listen(tools_list_changed=True) as subscription:
                        await client.call_tool("fx__add_tool", {"name": "fresh"})
                        async for _event in subscription:
                            break
                else:
                    await client.call_tool("fx__add_tool", {"name": "fresh"})
                    await changed.wait()
                names = await _all_tool_names(client)
                fresh = await client.call_tool("fx__fresh", {"text": "new tool"})
    assert "fx__fresh" in names
    assert _text(fresh) == "new tool"


async def test_an_unknown_tool_gets_invalid_params_naming_it() -> None:
    async with running_hub({"fx": fixture_entry("fx")}) as hub:
        with anyio.fail_after(15):
            async with mcp_client(hub.url, mode="legacy") as client:
                with pytest.raises(MCPError) as unknown:
                    await client.call_tool("fx__no_such_tool", {})
                with pytest.raises(MCPError) as unprefixed:
                    await client.call_tool("echo", {"text": "x"})
                with pytest.raises(MCPError) as bad_resource:
                    await client.read_resource("nobody+fixture://info")
    assert unknown.value.code == INVALID_PARAMS and "fx__no_such_tool" in unknown.value.message
    assert unprefixed.value.code == INVALID_PARAMS and "'echo'" in unprefixed.value.message
    assert bad_resource.value.code == INVALID_PARAMS and "nobody+fixture://info" in bad_resource.value.message


@pytest.mark.parametrize("server_protocol", ["legacy", "modern"])
async def test_a_call_slower_than_the_server_timeout_fails_with_a_timeout_and_cancels_the_server_side(
    server_protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hub.server_stderr")
    cancelled = anyio.Event()

    class _Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage() == "[sluggish] slow: cancelled":
                cancelled.set()

    watch = _Watch()
    logging.getLogger("hub.server_stderr").addHandler(watch)
    try:
        entry = fixture_entry("sluggish", timeout_seconds=0.5, protocol=server_protocol)
        async with running_hub({"sluggish": entry}) as hub:
            with anyio.fail_after(20):
                async with mcp_client(hub.url) as client:
                    with pytest.raises(MCPError) as raised:
                        await client.call_tool("sluggish__slow", {"seconds": 30, "steps": 1})
                    await cancelled.wait()
                    # The connection survives the timeout: the next call is answered.
                    after = await client.call_tool("sluggish__echo", {"text": "after"})
    finally:
        logging.getLogger("hub.server_stderr").removeHandler(watch)
    assert raised.value.code == REQUEST_TIMEOUT
    assert "sluggish" in raised.value.message and "0.5 s" in raised.value.message
    assert _text(after) == "after"


@pytest.mark.parametrize("mode", MODES)
async def test_progress_from_the_server_reaches_the_calling_client(mode: str) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with running_hub({"fx": fixture_entry("fx")}) as hub:
        with anyio.fail_after(15):
            async with mcp_client(hub.url, mode=mode) as client:
                result = await client.call_tool("fx__slow", {"seconds": 0.1, "steps": 3}, progress_callback=on_progress)
    assert _text(result) == "done"
    assert seen == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]


@pytest.mark.parametrize("mode", MODES)
async def test_resources_templates_prompts_and_completions_are_namespaced_and_routed(mode: str) -> None:
    async with running_hub({"alpha": fixture_entry("alpha"), "beta": fixture_entry("beta")}) as hub:
        with anyio.fail_after(15):
            async with mcp_client(hub.url, mode=mode) as client:
                resources = [str(r.uri) for r in (await client.list_resources()).resources]
                templates = [t.uri_template for t in (await client.list_resource_templates()).resource_templates]
                prompts = [p.name for p in (await client.list_prompts()).prompts]
                info = await client.read_resource("beta+fixture://info")
                item = await client.read_resource("alpha+fixture://items/42")
                prompt = await client.get_prompt("beta__greet", {"name": "Ada"})
                by_prompt = await client.complete(
                    types.PromptReference(type="ref/prompt", name="alpha__greet"), {"name": "name", "value": "al"}
                )
                by_template = await client.complete(
                    types.ResourceTemplateReference(type="ref/resource", uri="beta+fixture://items/{id}"),
                    {"name": "id", "value": "b"},
                )
    assert sorted(resources) == ["alpha+fixture://info", "beta+fixture://info"]
    assert sorted(templates) == ["alpha+fixture://items/{id}", "beta+fixture://items/{id}"]
    assert sorted(prompts) == ["alpha__greet", "beta__greet"]
    assert isinstance(info.contents[0], types.TextResourceContents) and info.contents[0].text == "beta"
    assert isinstance(item.contents[0], types.TextResourceContents) and item.contents[0].text == "item 42"
    assert isinstance(prompt.messages[0].content, types.TextContent)
    assert prompt.messages[0].content.text == "Hello, Ada!"
    assert by_prompt.completion.values == ["alice", "albert"]
    assert by_template.completion.values == ["bob"]


async def test_an_is_error_result_passes_through_unchanged() -> None:
    async with running_hub({"fx": fixture_entry("fx")}) as hub:
        with anyio.fail_after(15):
            async with mcp_client(hub.url) as client:
                result = await client.call_tool("fx__fail", {})
    assert result.is_error is True
    assert _text(result) == "it failed"


@pytest.mark.parametrize("mode", MODES)
async def test_the_per_server_endpoint_serves_one_server_under_its_original_names(mode: str) -> None:
    async with running_hub({"alpha": fixture_entry("alpha"), "beta": fixture_entry("beta")}) as hub:
        with anyio.fail_after(15):
            async with mcp_client(hub.server_url("beta"), mode=mode) as client:
                names = await _all_tool_names(client)
                who = await client.call_tool("whoami", {})
                info = await client.read_resource("fixture://info")
                with pytest.raises(MCPError) as other_server:
                    await client.call_tool("alpha__whoami", {})
            async with http_client() as http:
                unknown = await http.post(hub.server_url("nobody"), json={})
    assert "whoami" in names and not any("__" in name for name in names)
    assert _text(who) == "beta"
    assert isinstance(info.contents[0], types.TextResourceContents) and info.contents[0].text == "beta"
    assert other_server.value.code == INVALID_PARAMS
    assert unknown.status_code == 404


@pytest.mark.parametrize("transport", ["http", "sse"])
async def test_remote_servers_over_streamable_http_and_sse_are_federated(transport: str) -> None:
    async with http_fixture("--name", "remote", transport=transport) as (url, _process):
        servers = {
            "remote": {"url": url, "transport": "sse" if transport == "sse" else "streamable_http"},
            "local": fixture_entry("local"),
        }
        async with running_hub(servers) as hub:
            with anyio.fail_after(15):
                async with mcp_client(hub.url) as client:
                    remote = await client.call_tool("remote__whoami", {})
                    local = await client.call_tool("local__whoami", {})
                    progress: list[float] = []

                    async def on_progress(value: float, total: float | None, message: str | None) -> None:
                        progress.append(value)

                    slow = await client.call_tool(
                        "remote__slow", {"seconds": 0.1, "steps": 2}, progress_callback=on_progress
                    )
    assert (_text(remote), _text(local)) == ("remote", "local")
    assert _text(slow) == "done" and progress == [1, 2]


async def test_a_remote_server_going_away_leaves_the_hub_and_other_servers_serving() -> None:
    async with http_fixture("--name", "remote") as (url, process):
        async with running_hub({"remote": {"url": url, "timeout_seconds": 5}, "local": fixture_entry("local")}) as hub:
            with anyio.fail_after(30):
                async with mcp_client(hub.url) as client:
                    assert _text(await client.call_tool("remote__whoami", {})) == "remote"
                    await kill_server(url, process)  # the next call must find it gone
                    with pytest.raises(MCPError) as raised:
                        await client.call_tool("remote__whoami", {})
                    assert _text(await client.call_tool("local__whoami", {})) == "local"
                    await hub.hub.wait_for_server("remote", ServerState.RESTARTING, ServerState.FAILED)
    assert "remote" in raised.value.message


async def test_a_host_or_origin_from_elsewhere_is_refused_on_every_path() -> None:
    async with running_hub({"fx": fixture_entry("fx")}) as hub:
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
        headers = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}
        with anyio.fail_after(15):
            async with http_client() as http:
                bad_host = await http.post(hub.url, json=body, headers={**headers, "Host": "evil.example"})
                bad_origin = await http.post(hub.url, json=body, headers={**headers, "Origin": "http://evil.example"})
                readyz_bad_host = await http.get(f"{hub.base_url}/readyz", headers={"Host": "evil.example:80"})
                admin_bad_origin = await http.get(
                    f"{hub.base_url}/admin/routes", headers={"Origin": "http://evil.example"}
                )
                good_origin = await http.get(f"{hub.base_url}/readyz", headers={"Origin": hub.base_url})
    assert bad_host.status_code == 421
    assert bad_origin.status_code == 403
    assert readyz_bad_host.status_code == 421
    assert admin_bad_origin.status_code == 403
    assert good_origin.status_code == 200


async def test_a_public_url_host_is_accepted() -> None:
    async with running_hub({"fx": fixture_entry("fx")}, public_url="https://hub.example.com") as hub:
        with anyio.fail_after(15):
            async with http_client() as http:
                response = await http.get(f"{hub.base_url}/healthz", headers={"Host": "hub.example.com"})
    assert response.status_code == 200


async def test_a_request_body_over_the_cap_gets_413_and_the_hub_keeps_serving() -> None:
    async with running_hub({"fx": fixture_entry("fx")}, max_body_bytes=64 * 1024) as hub:
        big = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "fx__echo", "arguments": {"text": "x" * 100_000}},
        }
        with anyio.fail_after(15):
            async with http_client() as http:
                response = await http.post(hub.url, json=big, headers={"Accept": "application/json, text/event-stream"})
            async with mcp_client(hub.url) as client:
                after = await client.call_tool("fx__echo", {"text": "small"})
    assert response.status_code == 413
    assert _text(after) == "small"


async def test_a_stdio_server_gets_only_its_configured_environment() -> None:
    os.environ["HUB_TEST_SECRET"] = "do-not-leak"
    try:
        async with running_hub({"fx": fixture_entry("fx", env={"GIVEN": "yes"})}) as hub:
            with anyio.fail_after(15):
                async with mcp_client(hub.url) as client:
                    secret = await client.call_tool("fx__getenv", {"name": "HUB_TEST_SECRET"})
                    given = await client.call_tool("fx__getenv", {"name": "GIVEN"})
    finally:
        del os.environ["HUB_TEST_SECRET"]
    assert _text(secret) == "<unset>"
    assert _text(given) == "yes"


async def test_stopping_the_hub_stops_every_stdio_child() -> None:
    async with running_hub({"a": fixture_entry("a"), "b": fixture_entry("b")}) as hub:
        with anyio.fail_after(15):
            async with mcp_client(hub.url) as client:
                pids = [int(_text(await client.call_tool(f"{sid}__pid", {}))) for sid in ("a", "b")]
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


async def test_readyz_and_admin_report_servers_and_routes() -> None:
    async with running_hub({"fx": fixture_entry("fx")}) as hub:
        with anyio.fail_after(15):
            async with http_client() as http:
                ready = await http.get(f"{hub.base_url}/readyz")
                health = await http.get(f"{hub.base_url}/healthz")
                servers = (await http.get(f"{hub.base_url}/admin/servers")).json()
                routes = (await http.get(f"{hub.base_url}/admin/routes")).json()
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert health.json() == {"status": "ok"}
    (server,) = servers["servers"]
    assert server["server_id"] == "fx" and server["state"] == "ready" and server["transport"] == "stdio"
    assert server["protocol_version"] == "2026-07-28" and server["tools"] == 11
    echo = next(r for r in routes["routes"] if r["exposed"] == "fx__echo")
    pin = echo.pop("pin")
    assert pin["status"] == "pinned" and pin["current"] == pin["pinned"] and pin["mode"] == "warn"
    assert echo == {
        "exposed": "fx__echo",
        "kind": "tools",
        "server_id": "fx",
        "original": "echo",
        "note": None,
        "server_state": "ready",
        "fallbacks": [],
        "chain": ["fx"],
        "members": ["fx"],
        "serving": "fx",
        "served": True,
        "listed": True,
        "hygiene": [],
        "notes": [],
    }


async def test_a_modern_era_result_carries_the_hubs_server_info_stamp_not_the_servers() -> None:
    async with running_hub({"fx": fixture_entry("fx")}) as hub:
        with anyio.fail_after(15):
            async with mcp_client(hub.url) as client:
                result = await client.call_tool("fx__echo", {"text": "x"})
                server_info = client.server_info
    assert result.meta is not None
    assert result.meta[SERVER_INFO_META_KEY]["name"] == "mcp-federation-hub"
    assert server_info is not None and server_info.name == "mcp-federation-hub"
