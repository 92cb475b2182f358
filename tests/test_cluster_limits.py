"""Rate limits held across replicas sharing a real Redis (`hub.endpoint.rate_limits`): requests spread over
several hubs get the limit of one, per principal (HTTP 429) and per route (-32029); and how the
`{requests_per_second, burst}` config maps onto the library's moving windows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client

from hub.config import TokenBucketConfig
from hub.endpoint.rate_limits import window_for
from hub.errors import RATE_LIMITED
from tests.clients import http_client, mcp_client
from tests.cluster_fixtures import CALLER_KEY, OTHER_KEY, RedisServer, api_keys, replicas
from tests.conftest import INITIALIZE, MCP_HEADERS, fixture_entry, tool_text

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def client_for(url: str, key: str) -> AsyncIterator[Client]:
    async with http_client(headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
        async with mcp_client(streamable_http_client(url, http_client=http)) as client:
            yield client


@pytest.mark.parametrize(
    ("rate", "burst", "window"),
    [
        (0.5, 3, (3, 6)),  # b / r whole seconds: exactly b at once, r sustained
        (1.0, 10, (10, 10)),
        (10.0, 5, (10, 1)),  # a window is at least 1 s: the burst follows the rate
        (2.0, 3, (4, 2)),  # rounded to whole seconds, the rate kept
        (0.1, 2, (2, 20)),
    ],
)
def test_a_rate_and_burst_map_onto_n_requests_per_whole_seconds_window(
    rate: float, burst: int, window: tuple[int, int]
) -> None:
    item = window_for(TokenBucketConfig(requests_per_second=rate, burst=burst))
    assert (item.amount, item.get_expiry()) == window


@pytest.mark.slow
async def test_requests_spread_over_three_replicas_get_the_per_principal_limit_of_one(
    redis_server: RedisServer,
) -> None:
    limits = {"per_principal": {"requests_per_second": 0.5, "burst": 10}}  # 10 per 20 s
    servers = {"fx": fixture_entry("fx")}
    async with replicas(3, servers, redis_server.url, auth=api_keys(), rate_limits=limits) as hubs:
        statuses: list[int] = []
        other: list[int] = []
        with anyio.fail_after(60):
            async with http_client(timeout=15) as http:
                for index in range(30):
                    hub = hubs[index % 3]
                    answer = await http.post(
                        hub.url, json=INITIALIZE, headers={**MCP_HEADERS, "Authorization": f"Bearer {CALLER_KEY}"}
                    )
                    statuses.append(answer.status_code)
                    if answer.status_code == 429:
                        assert 1 <= int(answer.headers["retry-after"]) <= 20
                        assert answer.json()["error"] == "rate_limited"
                for hub in hubs:  # another principal has a window of its own
                    answer = await http.post(
                        hub.url, json=INITIALIZE, headers={**MCP_HEADERS, "Authorization": f"Bearer {OTHER_KEY}"}
                    )
                    other.append(answer.status_code)
    # The moving window is counted atomically in Redis: exactly the limit of one replica.
    assert statuses.count(200) == 10 and statuses.count(429) == 20
    assert statuses[:10] == [200] * 10
    assert other == [200, 200, 200]


async def test_a_per_route_limit_holds_across_replicas_with_a_json_rpc_error(redis_server: RedisServer) -> None:
    limits: dict[str, Any] = {"routes": {"fx__echo": {"requests_per_second": 0.1, "burst": 2}}}  # 2 per 20 s
    servers = {"fx": fixture_entry("fx")}
    async with replicas(2, servers, redis_server.url, auth=api_keys(), rate_limits=limits) as (a, b):
        with anyio.fail_after(60):
            async with client_for(a.url, CALLER_KEY) as on_a, client_for(b.url, CALLER_KEY) as on_b:
                first = await on_a.call_tool("fx__echo", {"text": "1"})
                second = await on_b.call_tool("fx__echo", {"text": "2"})
                with pytest.raises(MCPError) as third:
                    await on_a.call_tool("fx__echo", {"text": "3"})
                with pytest.raises(MCPError) as fourth:
                    await on_b.call_tool("fx__echo", {"text": "4"})
                unlimited = await on_b.call_tool("fx__whoami", {})
            async with client_for(b.url, OTHER_KEY) as other:
                others = tool_text(await other.call_tool("fx__echo", {"text": "o"}))
    assert tool_text(first) == "1" and tool_text(second) == "2" and not unlimited.is_error
    for refused in (third.value, fourth.value):
        assert refused.code == RATE_LIMITED
        assert isinstance(refused.error.data, dict) and 0 < refused.error.data["retry_after_seconds"] <= 20
    assert others == "o"
