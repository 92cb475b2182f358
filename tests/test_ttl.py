"""List freshness (SEP-2549 `ttlMs`, issue 10 item 16): a server whose lists expire is listed
again when they do (bounded), and the hub's own list results carry a `ttlMs` derived from its
servers'. Real servers: `tests/servers/ttl_server.py` (a chosen `ttlMs`, tools that change
without any announcement) and the fixture server, behind a real hub on loopback."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from hub.list_freshness import (
    LIST_TTL_MS,
    RELIST_CEILING_SECONDS,
    RELIST_FLOOR_SECONDS,
    UNANNOUNCED_RELIST_SECONDS,
    list_ttl_ms,
    relist_interval_seconds,
)
from hub.servers import ServerConnection
from tests.clients import mcp_client
from tests.conftest import fixture_entry, running_hub, stdio_entry, tool_text

pytestmark = pytest.mark.anyio

TTL_SERVER = str(Path(__file__).parent / "servers" / "ttl_server.py")


def ttl_entry(name: str, *args: str, **extra: Any) -> dict[str, Any]:
    """A `servers:` entry running the ttl server over stdio, health checks off (they list too)."""
    return stdio_entry(TTL_SERVER, "--name", name, *args, health_check_interval_seconds=0, **extra)


def _connection(hub: Any, server_id: str) -> ServerConnection:
    connection = hub.hub.fleet.get(server_id)
    assert connection is not None
    return connection


@dataclass
class _Scheduled:
    relist_at: float | None


def test_the_relist_interval_is_the_shortest_ttl_of_the_lists_within_the_floor_and_the_ceiling() -> None:
    assert relist_interval_seconds({"tools": 5000, "prompts": 2000}, ()) == 2.0
    assert relist_interval_seconds({"tools": 10}, ()) == RELIST_FLOOR_SECONDS == 1.0
    assert relist_interval_seconds({"resources": 10**12}, ()) == RELIST_CEILING_SECONDS == 3600.0
    # ttlMs 0 is the SDK's default: a server that announces changes is re-listed on them only;
    # one that announces nothing is re-listed slowly, never in a hot loop.
    assert relist_interval_seconds({"tools": 0}, {"tools"}) is None
    assert relist_interval_seconds({"tools": 0}, ()) == UNANNOUNCED_RELIST_SECONDS == 60.0
    assert relist_interval_seconds({"tools": 0, "prompts": 3000}, {"tools"}) == 3.0
    assert relist_interval_seconds({}, ()) is None  # handshake era: no ttlMs at all


def test_the_hubs_list_ttl_is_the_time_to_the_earliest_relist_capped_at_the_default() -> None:
    assert list_ttl_ms([], now=100.0) == LIST_TTL_MS == 10_000
    assert list_ttl_ms([_Scheduled(None)], now=100.0) == LIST_TTL_MS
    assert list_ttl_ms([_Scheduled(None), _Scheduled(102.5), _Scheduled(104.0)], now=100.0) == 2500
    assert list_ttl_ms([_Scheduled(100.0 + 3600)], now=100.0) == LIST_TTL_MS
    assert list_ttl_ms([_Scheduled(99.0)], now=100.0) == 0  # a re-list is due: nothing to reuse


async def test_a_server_whose_tools_list_expires_is_relisted_and_a_silent_change_reaches_clients() -> None:
    async with running_hub({"quick": ttl_entry("quick", "--ttl-ms", "1000")}) as hub:
        connection = _connection(hub, "quick")
        assert connection.protocol_version == "2026-07-28"
        assert connection.relist_at is not None
        with anyio.fail_after(30):
            async with mcp_client(hub.url) as client:
                assert tool_text(await client.call_tool("quick__grow", {"name": "fresh"})) == "grown"

                # The server announces nothing: only the re-list on expiry changes the catalog.
                catalog = hub.hub.catalog
                await catalog.changes.wait_for(lambda: catalog.tool_route("quick__fresh") is not None)
                tools = await client.list_tools(cache_mode="refresh")
                assert "quick__fresh" in {tool.name for tool in tools.tools}
                served = int(tool_text(await client.call_tool("quick__list_calls", {})))
    assert served >= 2  # the first listing, then at least one on expiry
    assert hub.hub.catalog.tool_route("quick__fresh") is not None


async def test_the_shortest_ttl_among_a_servers_lists_schedules_its_relist() -> None:
    servers = {"mixed": ttl_entry("mixed", "--ttl-ms", "600000", "--prompt-ttl-ms", "2000")}
    async with running_hub(servers) as hub:
        connection = _connection(hub, "mixed")
        assert connection.relist_at is not None
        assert 0 < connection.relist_at - anyio.current_time() <= 2.0


async def test_the_hubs_list_results_carry_a_ttl_derived_from_the_servers_of_each_face() -> None:
    servers = {
        "quick": ttl_entry("quick", "--ttl-ms", "8000"),
        "lasting": ttl_entry("lasting", "--ttl-ms", "600000"),
        "fx": fixture_entry("fx"),
    }
    async with running_hub(servers) as hub:
        with anyio.fail_after(30):
            async with mcp_client(hub.url) as client:
                aggregated = await client.list_tools(cache_mode="refresh")
                prompts = await client.list_prompts(cache_mode="refresh")
            async with mcp_client(hub.server_url("quick")) as client:
                quick = await client.list_tools(cache_mode="refresh")
            async with mcp_client(hub.server_url("lasting")) as client:
                lasting = await client.list_tools(cache_mode="refresh")
            async with mcp_client(hub.server_url("fx")) as client:
                fixture = await client.list_tools(cache_mode="refresh")
            async with mcp_client(hub.url, mode="legacy") as client:
                handshake = await client.list_tools()
    # The aggregated face and the quick server's own: until the quick server's lists expire
    # (its 8 s, less the age of the hub's copy), below the hub's 10 s ceiling.
    assert 0 <= aggregated.ttl_ms <= 8000
    assert 0 <= prompts.ttl_ms <= 8000
    assert 0 <= quick.ttl_ms <= 8000
    # A server whose lists outlive the ceiling, and one whose lists do not expire (the fixture
    # sends ttlMs 0 and announces its changes), get the hub's default.
    assert lasting.ttl_ms == LIST_TTL_MS
    assert fixture.ttl_ms == LIST_TTL_MS
    assert (aggregated.cache_scope, fixture.cache_scope) == ("private", "private")
    # The handshake era has no cache hints.
    assert "ttl_ms" not in handshake.model_fields_set


async def test_a_server_whose_lists_say_ttl_0_is_relisted_on_a_timer_only_when_it_cannot_announce_changes() -> None:
    servers = {
        "silent": ttl_entry("silent"),  # no hint: the SDK sends ttlMs 0; no subscriptions/listen
        "announcing": ttl_entry("announcing", "--listen"),
        "fx": fixture_entry("fx"),
    }
    async with running_hub(servers) as hub:
        silent = _connection(hub, "silent")
        assert silent.relist_at is not None
        assert 0 < silent.relist_at - anyio.current_time() <= UNANNOUNCED_RELIST_SECONDS
        assert _connection(hub, "announcing").relist_at is None
        assert _connection(hub, "fx").relist_at is None


async def test_a_handshake_era_server_has_no_expiry() -> None:
    async with running_hub({"old": ttl_entry("old", "--ttl-ms", "1000", protocol="legacy")}) as hub:
        connection = _connection(hub, "old")
        assert connection.protocol_version == "2025-11-25"
        assert connection.relist_at is None


async def test_a_list_changed_relist_restarts_the_expiry_and_is_the_only_relist() -> None:
    servers = {"both": ttl_entry("both", "--listen", "--ttl-ms", "600000")}
    async with running_hub(servers) as hub:
        connection = _connection(hub, "both")
        scheduled = connection.relist_at
        assert scheduled is not None
        with anyio.fail_after(30):
            async with mcp_client(hub.url) as client:
                before = int(tool_text(await client.call_tool("both__list_calls", {})))
                await client.call_tool("both__grow", {"name": "announced", "announce": True})
                catalog = hub.hub.catalog
                await catalog.changes.wait_for(lambda: catalog.tool_route("both__announced") is not None)
                after = int(tool_text(await client.call_tool("both__list_calls", {})))
        rescheduled = connection.relist_at
    assert after == before + 1
    assert rescheduled is not None and rescheduled > scheduled


@pytest.mark.slow
async def test_a_failed_relist_on_expiry_keeps_the_listing_and_the_connection_and_is_tried_again() -> None:
    async with running_hub({"flaky": ttl_entry("flaky", "--ttl-ms", "1000")}) as hub:
        connection = _connection(hub, "flaky")
        generation = connection.generation
        changes: list[tuple[str, frozenset[str]]] = []

        async def changed(server_id: str, kinds: frozenset[str]) -> None:
            changes.append((server_id, kinds))

        hub.hub.catalog.add_listener(changed)
        with anyio.fail_after(40):
            async with mcp_client(hub.url) as client:
                await client.call_tool("flaky__fail_lists", {"times": 2})
                await client.call_tool("flaky__grow", {"name": "later"})
                # Two expiries fail (the tools stay listed), then one succeeds.
                catalog = hub.hub.catalog
                await catalog.changes.wait_for(lambda: catalog.tool_route("flaky__later") is not None)
                served = int(tool_text(await client.call_tool("flaky__list_calls", {})))
        assert connection.generation == generation  # never reconnected
        assert connection.restarts == 0
        # The failures changed nothing (the tools were never dropped): one change, the new tool.
        assert changes == [("flaky", frozenset({"tools"}))]
    assert served >= 4  # the first listing, two failures, the success
