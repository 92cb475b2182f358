"""Redis killed and restarted under load, with two replicas sharing it: no hub crashes, calls
keep working with each replica's local state (rate limits counted per replica), `/readyz` and
`mcphub_shared_state_up` say so, and when Redis is back the replicas share rate limits and
resource updates again by themselves."""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPDeprecationWarning

from hub.signals import Changes
from tests.clients import http_client, mcp_client
from tests.cluster_fixtures import ADMIN_KEY, CALLER_KEY, OTHER_KEY, RedisServer, api_keys, replicas
from tests.conftest import INITIALIZE, MCP_HEADERS, RunningHub, fixture_entry, tool_text, until

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

URI = "fx+fixture://info"
MAX_LOAD_CALLS = 2000


@asynccontextmanager
async def client_for(url: str, key: str, **options: Any) -> AsyncIterator[Client]:
    async with http_client(headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
        async with mcp_client(streamable_http_client(url, http_client=http), **options) as client:
            yield client


async def _admin_get(http: httpx2.AsyncClient, hub: RunningHub, path: str) -> httpx2.Response:
    return await http.get(f"{hub.base_url}{path}", headers={"Authorization": f"Bearer {ADMIN_KEY}"})


async def _initialize(http: httpx2.AsyncClient, hub: RunningHub, key: str) -> int:
    answer = await http.post(hub.url, json=INITIALIZE, headers={**MCP_HEADERS, "Authorization": f"Bearer {key}"})
    return answer.status_code


def _up_metric(text: str) -> float:
    line = next(line for line in text.splitlines() if line.startswith("mcphub_shared_state_up "))
    return float(line.split()[1])


async def test_redis_killed_and_restarted_under_load_costs_no_call_and_state_is_shared_again(
    redis_server: RedisServer,
) -> None:
    limits = {
        "per_principal": {"requests_per_second": 1000, "burst": 1000},
        "principals": {"other": {"requests_per_second": 0.25, "burst": 4}},  # 4 per 16 s
    }
    updates: list[str] = []
    arrived = Changes()  # notified at each update the subscriber hears

    async def on_message(message: object) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            updates.append(str(message.params.uri))
            arrived.notify()

    servers = {"fx": fixture_entry("fx", protocol="legacy")}
    async with replicas(2, servers, redis_server.url, auth=api_keys(), rate_limits=limits) as (a, b):
        failures: list[BaseException] = []
        done = {"before": 0, "during": 0, "after": 0}
        answered = Changes()  # notified at each answered load call
        phase = {"now": "before"}
        stop = anyio.Event()

        async def load(hub: RunningHub) -> None:
            async with client_for(hub.url, CALLER_KEY) as client:
                for index in range(MAX_LOAD_CALLS):
                    if stop.is_set():
                        return
                    try:
                        text = tool_text(await client.call_tool("fx__echo", {"text": str(index)}))
                        assert text == str(index)
                        done[phase["now"]] += 1
                        answered.notify()
                    except Exception as exc:  # every failure is reported by the assertion below
                        failures.append(exc)

        with anyio.fail_after(90), warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            async with (
                client_for(b.url, CALLER_KEY, mode="legacy", message_handler=on_message) as subscriber,
                client_for(a.url, CALLER_KEY, mode="legacy") as toucher,
                http_client(timeout=15) as http,
            ):
                await subscriber.subscribe_resource(URI)
                subscriptions = a.hub.endpoint.subscriptions
                await subscriptions.changes.wait_for(lambda: subscriptions.subscribed_at_server("fx", "fixture://info"))
                async with anyio.create_task_group() as tg:
                    tg.start_soon(load, a)
                    tg.start_soon(load, b)
                    await answered.wait_for(lambda: done["before"] >= 20)

                    await redis_server.killed()
                    phase["now"] = "during"
                    await until(lambda: all(h.hub.store.health().status == "unavailable" for h in (a, b)))
                    await answered.wait_for(lambda: done["during"] >= 20)
                    ready = [await _admin_get(http, hub, "/readyz") for hub in (a, b)]
                    metrics_down = (await _admin_get(http, a, "/metrics")).text
                    # Meanwhile each replica counts alone: the limit of one per replica.
                    statuses_down = [await _initialize(http, (a, b)[index % 2], OTHER_KEY) for index in range(12)]

                    await redis_server.restarted()
                    await until(lambda: all(h.hub.store.health().status == "ok" for h in (a, b)))
                    phase["now"] = "after"
                    await answered.wait_for(lambda: done["after"] >= 20)
                    stop.set()
                ready_again = [await _admin_get(http, hub, "/readyz") for hub in (a, b)]
                metrics_up = (await _admin_get(http, a, "/metrics")).text

                # Fan-out again: hub A's process reports, the subscriber on hub B gets it.
                await until(
                    lambda: (
                        a.hub.endpoint.fanout is not None
                        and a.hub.endpoint.fanout.has_remote_interest("fx", "fixture://info")
                    )
                )
                await toucher.call_tool("fx__touch", {})
                await arrived.wait_for(lambda: len(updates) >= 1)

                # Limits shared again: 12 requests over both replicas get the limit of one (4).
                statuses = [await _initialize(http, (a, b)[index % 2], OTHER_KEY) for index in range(12)]

    assert failures == []
    assert done["during"] >= 20 and done["after"] >= 20
    for answer in ready:
        assert answer.status_code == 200
        assert answer.json()["shared_state"] == "unavailable" and answer.json()["shared_state_reason"]
    assert _up_metric(metrics_down) == 0.0
    assert "mcphub_shared_state_errors_total" in metrics_down
    for answer in ready_again:
        assert answer.status_code == 200 and answer.json()["shared_state"] == "ok"
        assert "shared_state_reason" not in answer.json()
    assert _up_metric(metrics_up) == 1.0
    assert updates == [URI]
    assert statuses_down.count(200) == 8 and statuses_down.count(429) == 4
    assert statuses.count(200) == 4 and statuses.count(429) == 8
