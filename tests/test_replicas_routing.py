"""Three `mcphub serve` replicas behind a real HAProxy (round-robin, no stickiness), sharing a
cluster key and a real Redis, API keys on (`tests.replica_fixtures`): a modern-era (2026-07-28)
client's lists and calls land on every replica, a multi-round call continues on whichever replica
its next round reaches, and a per-principal rate limit holds across the replicas.

Which replica served what is read from each replica itself (its `/metrics`, asked directly) and
from HAProxy's per-server counters. Handshake-era sessions across replicas come with sealed
session ids (issue 11, item 1) and are not tested here yet."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.cluster_fixtures import CALLER_KEY, OTHER_KEY
from tests.conftest import tool_text
from tests.replica_fixtures import OTHER_LIMIT, ReplicaCluster, counter, modern_call, modern_post

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


@asynccontextmanager
async def _client(url: str, key: str = CALLER_KEY) -> AsyncIterator[Client]:
    """An SDK client in the modern era (`mode="auto"`: `server/discover`, then no session)."""
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
        async with Client(streamable_http_client(url, http_client=http), mode="auto") as client:
            yield client


async def _calls_per_replica(cluster: ReplicaCluster, route: str) -> list[float]:
    """`mcphub_calls_total{route=...}` of each replica (every outcome)."""
    return [counter(await cluster.metrics(r), "mcphub_calls_total", route=route) for r in cluster.replicas]


async def _answers_per_replica(cluster: ReplicaCluster) -> list[int]:
    """2xx answers HAProxy relayed from each replica."""
    stats = await cluster.balancer.stats()
    return [int(stats[r.name]["hrsp_2xx"] or 0) for r in cluster.replicas]


async def test_a_modern_clients_lists_and_calls_through_the_balancer_are_served_by_every_replica(
    replica_cluster: ReplicaCluster,
) -> None:
    cluster = replica_cluster
    calls_before = await _calls_per_replica(cluster, "fx__echo")
    with anyio.fail_after(60):
        # Raw requests: the SDK's client would answer repeated lists from its cache.
        async with httpx2.AsyncClient(timeout=30) as http:
            answers_before = await _answers_per_replica(cluster)
            listings = [(await modern_post(http, cluster.url, "tools/list", {})).json()["result"] for _ in range(6)]
            answers_after_lists = await _answers_per_replica(cluster)
        async with _client(cluster.url) as client:
            assert client.protocol_version == "2026-07-28"
            resources = await client.list_resources()
            prompts = await client.list_prompts()
            echoes = [tool_text(await client.call_tool("fx__echo", {"text": f"call {i}"})) for i in range(9)]
            whoami = tool_text(await client.call_tool("fy__whoami", {}))
    calls_after = await _calls_per_replica(cluster, "fx__echo")

    for listing in listings:
        names = {tool["name"] for tool in listing["tools"]}
        assert {"fx__echo", "fx__ask", "fy__echo", "fy__whoami"} <= names
    assert {str(r.uri) for r in resources.resources} == {"fx+fixture://info", "fy+fixture://info"}
    assert {p.name for p in prompts.prompts} == {"fx__greet", "fy__greet"}
    assert echoes == [f"call {i}" for i in range(9)]
    assert whoami == "fy"
    # Six lists, round-robin: each replica answered some (HAProxy's count of each one's answers).
    listed = [after - before for before, after in zip(answers_before, answers_after_lists, strict=True)]
    assert sum(listed) == 6 and all(count >= 1 for count in listed), listed
    # Nine calls: each replica routed some (each replica's own count).
    called = [after - before for before, after in zip(calls_before, calls_after, strict=True)]
    assert sum(called) == 9 and all(count >= 1 for count in called), called


_SAMPLED = types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text="hi"), model="m")
_ELICITED = types.ElicitResult(action="accept", content={"name": "ada"})


async def test_a_multi_round_call_continues_on_whichever_replica_its_next_round_reaches(
    replica_cluster: ReplicaCluster,
) -> None:
    cluster = replica_cluster
    rounds: list[list[float]] = [await _calls_per_replica(cluster, "fx__ask")]
    with anyio.fail_after(60):
        async with _client(cluster.url) as client:
            first = await client.session.call_tool("fx__ask", {}, allow_input_required=True)
            rounds.append(await _calls_per_replica(cluster, "fx__ask"))
            assert isinstance(first, types.InputRequiredResult)
            second = await client.session.call_tool(
                "fx__ask",
                {},
                allow_input_required=True,
                input_responses={"sample": _SAMPLED},
                request_state=first.request_state,
            )
            rounds.append(await _calls_per_replica(cluster, "fx__ask"))
            assert isinstance(second, types.InputRequiredResult)
            final = await client.session.call_tool(
                "fx__ask",
                {},
                allow_input_required=True,
                input_responses={"elicit": _ELICITED},
                request_state=second.request_state,
            )
            rounds.append(await _calls_per_replica(cluster, "fx__ask"))

    assert set(first.input_requests or {}) == {"sample"}
    assert set(second.input_requests or {}) == {"elicit"}
    assert isinstance(final, types.CallToolResult) and not final.is_error
    assert tool_text(final) == "sampled=hi elicited=ada action=accept"
    # Which replica served each round: the one whose count went up.
    served_by = []
    for before, after in itertools.pairwise(rounds):
        (index,) = [i for i, (b, a) in enumerate(zip(before, after, strict=True)) if a > b]
        served_by.append(index)
    assert len(set(served_by)) >= 2, served_by  # a later round was served by another replica


async def test_a_per_principal_rate_limit_holds_across_the_replicas_behind_the_balancer(
    replica_cluster: ReplicaCluster,
) -> None:
    cluster = replica_cluster
    await cluster.in_rotation()
    # A fresh window for `other` (an earlier test module on this worker may have used it).
    await anyio.to_thread.run_sync(cluster.redis.flush)
    before = await _calls_per_replica(cluster, "fy__echo")
    statuses: list[int] = []
    retry_after: list[int] = []
    with anyio.fail_after(60):
        async with httpx2.AsyncClient(timeout=30) as http:
            for index in range(3 * OTHER_LIMIT):
                answer = await modern_call(http, cluster.url, "fy__echo", {"text": str(index)}, key=OTHER_KEY)
                statuses.append(answer.status_code)
                if answer.status_code == 429:
                    retry_after.append(int(answer.headers["retry-after"]))
                    assert answer.json()["error"] == "rate_limited"
            # Another principal has a window of its own.
            unlimited = await modern_call(http, cluster.url, "fy__echo", {"text": "caller"}, key=CALLER_KEY)
    after = await _calls_per_replica(cluster, "fy__echo")
    allowed = [a - b for b, a in zip(before, after, strict=True)]

    # 30 requests spread round-robin over 3 replicas get the limit of one (not 3 x 10): the
    # window is counted atomically in Redis.
    assert statuses[:OTHER_LIMIT] == [200] * OTHER_LIMIT
    assert statuses[OTHER_LIMIT:] == [429] * (2 * OTHER_LIMIT)
    assert all(1 <= seconds <= 100 for seconds in retry_after)
    assert sum(allowed) == OTHER_LIMIT + 1  # the ten of `other`, and the caller's one
    assert all(count >= 3 for count in allowed), allowed  # every replica served its share
    assert unlimited.status_code == 200
