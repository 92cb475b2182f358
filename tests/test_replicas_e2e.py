"""Three `mcphub serve` replicas behind a real HAProxy (round-robin, no stickiness), sharing a
cluster key and a real Redis, API keys on (`tests.replica_fixtures`), in both protocol eras. One
module, so that the three replicas start once per run (the slow part).

Routing, modern era (2026-07-28): a client's lists and calls land on every replica, a multi-round
call continues on whichever replica its next round reaches, and a per-principal rate limit holds
across the replicas. Which replica served what is read from each replica itself (its `/metrics`,
asked directly) and from HAProxy's per-server counters.

Sessions, handshake era (2025-11-25, `Mcp-Session-Id`; `tests.replica_sessions`): a session whose
requests land on every replica in turn lists, calls, gets a call's progress and answers what a
call asks (every replica holds a copy); the answers to sampling and elicitation asked mid-call,
POSTed to other replicas, reach the one holding the call; a GET stream held by one replica gets
`list_changed` and the updates of a subscription taken through another; a DELETE through one
replica ends the session (and its GET stream) on all of them; another principal presenting the
id gets 404 everywhere.

Faults, under a bounded load (`run_load`: closed-loop modern-era `fx__echo` calls through the
balancer, and beside it one handshake-era SDK client in its session, `run_session_load`): one
replica crashes, all of them are restarted one after another, their Redis dies and comes back.
Each test records when every call started and ended and how it ended, and asserts on that record:
which calls failed (only those in flight on a crashed replica), that calls went on being served
throughout, and that the session outlived the replicas (one id, never "Session not found", a
restarted replica serving it; an idle session's level and subscription restored after the
rolling restart)"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
import redis
from mcp import Client
from mcp.client.session import ClientRequestContext
from mcp.client.streamable_http import streamable_http_client

from hub.cluster.answers import ID_PREFIX
from hub.cluster.redis_store import KEY_PREFIX
from tests.clients import http_client, mcp_client
from tests.cluster_fixtures import CALLER_KEY, OTHER_KEY, RedisServer
from tests.conftest import tool_text, until
from tests.replica_fixtures import (
    DRAIN_TIMEOUT_SECONDS,
    OTHER_LIMIT,
    SHUTDOWN_GRACE_SECONDS,
    ReplicaCluster,
    counter,
)
from tests.replica_load import Load, modern_call, modern_post, run_load
from tests.replica_sessions import (
    HANDSHAKE_VERSION,
    INFO_URI,
    UPDATED,
    HandshakeSession,
    SessionLoad,
    answer_counts,
    forget_windows,
    next_with_id,
    rebuilt_on,
    result_text,
    run_session_load,
    served_by,
    sessions_are,
    sessions_per_replica,
    touch_until_updated,
)

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

# ---------------------------------------------------------------- routing


@asynccontextmanager
async def _client(url: str, key: str = CALLER_KEY) -> AsyncIterator[Client]:
    """An SDK client in the modern era (`mode="auto"`: `server/discover`, then no session)."""
    async with http_client(headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
        async with mcp_client(streamable_http_client(url, http_client=http), mode="auto") as client:
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
    await cluster.in_rotation()
    calls_before = await _calls_per_replica(cluster, "fx__echo")
    with anyio.fail_after(60):
        # Raw requests: the SDK's client would answer repeated lists from its cache.
        async with http_client(timeout=30) as http:
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
    await cluster.in_rotation()
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


# ---------------------------------------------------------------- handshake-era sessions

LIST_CHANGED = "notifications/tools/list_changed"
_PING = {"jsonrpc": "2.0", "id": 99, "method": "ping"}


async def test_a_handshake_era_client_spread_over_every_replica_lists_calls_gets_progress_and_answers_sampling(
    replica_cluster: ReplicaCluster,
) -> None:
    cluster = replica_cluster
    await cluster.in_rotation()
    session_ids: set[str] = set()
    statuses: list[int] = []
    reported: list[tuple[float, float | None, str | None]] = []

    async def on_request(request: httpx2.Request) -> None:
        if "mcp-session-id" in request.headers:
            session_ids.add(request.headers["mcp-session-id"])

    async def on_response(response: httpx2.Response) -> None:
        statuses.append(response.status_code)

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        reported.append((progress, total, message))

    async def sampling(
        context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        return _SAMPLED

    async def elicitation(context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
        return _ELICITED

    hooks: dict[str, list[Callable[..., Any]]] = {"request": [on_request], "response": [on_response]}
    sessions_before = await sessions_per_replica(cluster)
    answers_before = await _answers_per_replica(cluster)
    calls_before = await _calls_per_replica(cluster, "fx__echo")
    with anyio.fail_after(60):
        async with (
            http_client(headers=_bearer(CALLER_KEY), timeout=30, event_hooks=hooks) as http,
            mcp_client(
                streamable_http_client(cluster.url, http_client=http),
                mode="legacy",
                sampling_callback=sampling,
                elicitation_callback=elicitation,
            ) as client,
        ):
            version = client.protocol_version
            tools = await client.list_tools()
            resources = await client.list_resources()
            templates = await client.list_resource_templates()
            prompts = await client.list_prompts()
            greeting = await client.get_prompt("fy__greet", {"name": "ada"})
            echoes = [tool_text(await client.call_tool("fx__echo", {"text": f"call {i}"})) for i in range(6)]
            slow = await client.call_tool("fx__slow", {"seconds": 0.3, "steps": 3}, progress_callback=on_progress)
            # The SDK's answers to the relayed sampling and elicitation: POSTs to other replicas.
            asked = await client.call_tool("fx__ask", {})
            sessions_held = await sessions_per_replica(cluster)
        answers_after = await _answers_per_replica(cluster)
        calls_after = await _calls_per_replica(cluster, "fx__echo")
        # The client's DELETE on leaving ended every replica's copy.
        await until(lambda: sessions_are(cluster, sessions_before))

    assert version == HANDSHAKE_VERSION
    assert {"fx__echo", "fx__ask", "fy__echo", "fy__whoami"} <= {tool.name for tool in tools.tools}
    assert {str(r.uri) for r in resources.resources} == {"fx+fixture://info", "fy+fixture://info"}
    assert len(templates.resource_templates) == 2
    assert {p.name for p in prompts.prompts} == {"fx__greet", "fy__greet"}
    assert isinstance(greeting.messages[0].content, types.TextContent)
    assert greeting.messages[0].content.text == "Hello, ada!"
    assert echoes == [f"call {i}" for i in range(6)]
    assert tool_text(slow) == "done"
    assert reported == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]
    assert tool_text(asked) == "sampled=hi elicited=ada action=accept"
    # One session throughout, never refused, and every replica held a copy of it.
    assert len(session_ids) == 1 and all(status < 400 for status in statuses), (session_ids, statuses)
    assert sessions_held == [count + 1 for count in sessions_before], (sessions_before, sessions_held)
    answered = [after - before for before, after in zip(answers_before, answers_after, strict=True)]
    assert all(count >= 3 for count in answered), answered
    called = [after - before for before, after in zip(calls_before, calls_after, strict=True)]
    assert sum(called) == 6 and all(count >= 1 for count in called), called


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_sampling_and_elicitation_asked_mid_call_are_answered_through_other_replicas_than_the_one_holding_it(
    replica_cluster: ReplicaCluster,
) -> None:
    cluster = replica_cluster
    await cluster.in_rotation()
    answers = [_SAMPLED.model_dump(mode="json", exclude_none=True), _ELICITED.model_dump(mode="json")]
    asked: list[dict[str, Any]] = []
    answered_by: list[int] = []
    with anyio.fail_after(60):
        async with http_client(timeout=30) as http:
            session = HandshakeSession(http, cluster.url)
            await session.open()
            try:
                before = await _answers_per_replica(cluster)
                async with session.streaming("tools/call", {"name": "fx__ask", "arguments": {}}) as (_, messages):
                    holder = await served_by(cluster, before)  # its SSE stream is open there
                    for answer in answers:
                        request = await next_with_id(messages)
                        asked.append(request)
                        before = await _answers_per_replica(cluster)
                        posted = await session.post({"jsonrpc": "2.0", "id": request["id"], "result": answer})
                        assert posted.status_code == 202, posted.text
                        answered_by.append(await served_by(cluster, before))
                    final = await next_with_id(messages)
            finally:
                await session.delete()

    assert [request["method"] for request in asked] == ["sampling/createMessage", "elicitation/create"]
    # The ids name the replica that asked (`mcphub:<replica>:<n>`), the same for both questions.
    prefixes = {str(request["id"]).rpartition(":")[0] for request in asked}
    assert len(prefixes) == 1 and prefixes.pop().startswith(ID_PREFIX), asked
    # Each answer was POSTed to another replica than the one holding the call, which went on.
    assert holder not in answered_by, (holder, answered_by)
    assert final["result"]["content"][0]["text"] == "sampled=hi elicited=ada action=accept"


async def test_a_get_stream_held_by_one_replica_gets_list_changed_and_updates_subscribed_through_another(
    replica_cluster: ReplicaCluster,
) -> None:
    cluster = replica_cluster
    await cluster.in_rotation()
    touched_by: list[int] = []
    changed_by: list[int] = []
    with anyio.fail_after(60):
        async with http_client(timeout=30) as http:
            session = HandshakeSession(http, cluster.url)
            await session.open()
            try:
                before = await _answers_per_replica(cluster)
                async with session.listening() as stream:
                    listener = await served_by(cluster, before)
                    before = await _answers_per_replica(cluster)
                    subscribed = await session.request("resources/subscribe", {"uri": INFO_URI})
                    subscriber = await served_by(cluster, before)
                    # A touch may come before the listener's copy has the subscription.
                    delivered = await touch_until_updated(session, stream)
                    # Then a touch through each replica (its own fx process reports the update).
                    for count in range(1, 4):
                        before = await _answers_per_replica(cluster)
                        await session.call("fx__touch")
                        touched_by.append(await served_by(cluster, before))
                        await until(stream.arrived(UPDATED, delivered + count))
                    # A tool added to fx on each replica: the listener's own catalog changes too.
                    for index in range(3):
                        before = await _answers_per_replica(cluster)
                        name = f"added_{index}_{secrets.token_hex(4)}"
                        assert result_text(await session.call("fx__add_tool", {"name": name})) == "added"
                        changed_by.append(await served_by(cluster, before))
                    await until(stream.arrived(LIST_CHANGED))
            finally:
                await session.delete()

    assert "result" in subscribed, subscribed
    assert subscriber != listener  # the subscription was taken on another replica than the GET's
    assert delivered == 1
    # A touch through each replica (its own fx process reported the update), each delivered once
    # (all came before list_changed, sent later on the same stream).
    assert sorted(touched_by) == [0, 1, 2] and sorted(changed_by) == [0, 1, 2]
    assert [message["params"]["uri"] for message in stream.methods(UPDATED)] == [INFO_URI] * 4


async def test_a_delete_through_one_replica_ends_the_session_and_its_get_stream_on_every_replica(
    replica_cluster: ReplicaCluster,
) -> None:
    cluster = replica_cluster
    await cluster.in_rotation()
    sessions_before = await sessions_per_replica(cluster)
    with anyio.fail_after(60):
        async with http_client(timeout=30) as http:
            session = HandshakeSession(http, cluster.url)
            await session.open()
            before = await _answers_per_replica(cluster)
            async with session.listening() as stream:
                listener = await served_by(cluster, before)
                pings = [await session.request("ping") for _ in range(3)]
                sessions_held = await sessions_per_replica(cluster)
                before = await _answers_per_replica(cluster)
                deleted = await session.delete()
                deleter = await served_by(cluster, before)
                await stream.ended.wait()  # the listener's copy was dropped: its GET stream ended
            refused_before = await answer_counts(cluster, "hrsp_4xx")
            refused = [await session.try_request("ping") for _ in cluster.replicas]
            refused_after = await answer_counts(cluster, "hrsp_4xx")
            direct = [
                await http.post(replica.base_url + "/mcp", json=_PING, headers=session.headers())
                for replica in cluster.replicas
            ]
            deleted_again = await session.delete()
            await until(lambda: sessions_are(cluster, sessions_before))

    assert all("result" in ping for ping in pings), pings
    assert sessions_held == [count + 1 for count in sessions_before], (sessions_before, sessions_held)
    assert deleted.status_code == 200 and deleter != listener
    # Every replica answers 404 "Session not found" now, through the balancer and directly.
    assert [after - before for before, after in zip(refused_before, refused_after, strict=True)] == [1, 1, 1]
    for answer in refused + direct:
        assert answer.status_code == 404
        assert answer.json()["error"]["message"] == "Session not found"
    assert deleted_again.status_code == 404


async def test_another_principal_presenting_the_session_id_is_refused_by_every_replica(
    replica_cluster: ReplicaCluster,
) -> None:
    cluster = replica_cluster
    await cluster.in_rotation()
    await anyio.to_thread.run_sync(forget_windows, cluster.redis, "other")  # `other` has a small limit
    with anyio.fail_after(60):
        async with http_client(timeout=30) as http:
            session = HandshakeSession(http, cluster.url)
            await session.open()
            try:
                refused_before = await answer_counts(cluster, "hrsp_4xx")
                stolen = [await session.try_request("tools/list", key=OTHER_KEY) for _ in cluster.replicas]
                listens = [await session.try_listening(key=OTHER_KEY) for _ in cluster.replicas]
                deletes = [await session.delete(key=OTHER_KEY) for _ in cluster.replicas]
                refused_after = await answer_counts(cluster, "hrsp_4xx")
                # The owner's session is untouched, on every replica.
                owned = [await session.try_request("ping") for _ in cluster.replicas]
            finally:
                await session.delete()

    # Nine requests of `other` (a POST, a GET stream, a DELETE on each replica): nine 404s.
    assert [after - before for before, after in zip(refused_before, refused_after, strict=True)] == [3, 3, 3]
    for answer in stolen + listens + deletes:
        assert answer.status_code == 404
        assert answer.json()["error"]["message"] == "Session not found"
    assert [answer.status_code for answer in owned] == [200, 200, 200]


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
        async with http_client(timeout=30) as http:
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


# ---------------------------------------------------------------- faults under load

WORKERS = 4
"""Closed-loop clients of each load (each has at most one call in flight)."""
CALLS_PER_STEP = 40
"""Calls to see completed before and after each step of a test (a bounded count, not a time)."""
SESSION_CALLS_PER_STEP = 10
"""The same for the one handshake-era client that runs beside the load (`run_session_load`)."""

LOST_CONNECTION = ("RemoteProtocolError", "ReadError", "HTTP 502")
"""How a call fails through HAProxy when its replica dies under it."""


async def _calls_after(load: Load, moment: float, count: int = CALLS_PER_STEP, timeout_seconds: float = 60) -> None:
    """Wait (bounded) until `count` calls have ended after `moment`."""
    with anyio.fail_after(timeout_seconds):
        await until(lambda: load.ended_after(moment) >= count)


async def test_a_replica_killed_under_load_costs_only_the_calls_in_flight_on_it(
    replica_cluster: ReplicaCluster,
) -> None:
    cluster = replica_cluster
    await cluster.in_rotation()
    victim, survivors = cluster.replicas[0], cluster.replicas[1:]
    load = Load()
    session_load = SessionLoad()
    with anyio.fail_after(120):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_load, cluster.url, load, WORKERS)
            tg.start_soon(run_session_load, cluster.url, session_load)
            await _calls_after(load, 0.0)
            await _calls_after(session_load, 0.0, SESSION_CALLS_PER_STEP)
            killed_at = time.monotonic()
            victim.kill()
            status = await victim.exit_status()
            # Gone by now (exit_status polls): calls sent to it until its sockets closed, accepted
            # by its kernel or not, were in flight on it.
            gone_at = time.monotonic()
            # Until HAProxy's check takes it out, requests meant for it find its port closed and go
            # to another replica (nothing was sent, so nothing runs twice).
            await cluster.balancer.wait_status({victim.name: "DOWN"})
            out_at = time.monotonic()
            await _calls_after(load, out_at)
            await _calls_after(session_load, out_at, SESSION_CALLS_PER_STEP)
            load.stop.set()
            # The victim back (a new process): the session's next request there rebuilds it.
            await victim.restart()
            await cluster.in_rotation()
            back_at = time.monotonic()
            await _calls_after(session_load, back_at, SESSION_CALLS_PER_STEP)
            await rebuilt_on(cluster, victim)
            session_load.stop.set()

    assert status == -9
    assert all(replica.running for replica in survivors)
    # Only calls in flight on the replica while it died may fail: at most one per client.
    failures = load.failures
    assert len(failures) <= WORKERS, failures
    assert all(call.started < gone_at and call.ended > killed_at for call in failures), (killed_at, gone_at, failures)
    # ... and they failed as a lost connection does (the balancer closed the client's connection
    # or answered 502), not with an answer from another replica.
    assert all(str(call.error).startswith(LOST_CONNECTION) for call in failures), failures
    assert sum(1 for call in load.calls if call.started > out_at and call.error is None) >= CALLS_PER_STEP - WORKERS
    # The handshake-era client kept its one session: at most its call in flight on the killed
    # replica failed, and no request of it was ever answered "Session not found".
    session_failures = session_load.failures
    assert len(session_failures) <= 1, session_failures
    assert all(call.started < gone_at and call.ended > killed_at for call in session_failures), session_failures
    assert session_load.refused() == [] and session_load.initializes == 1, session_load.refused()
    assert len(session_load.session_ids) == 1, session_load.session_ids
    after_out = [call for call in session_load.calls if call.started > out_at]
    assert len(after_out) >= SESSION_CALLS_PER_STEP - 1 and all(call.error is None for call in after_out), after_out
    assert any(call.started > back_at for call in after_out)


async def test_a_rolling_restart_of_every_replica_under_load_loses_no_call(replica_cluster: ReplicaCluster) -> None:
    cluster = replica_cluster
    await cluster.in_rotation()
    load = Load()
    session_load = SessionLoad()
    statuses: list[int] = []
    drained: list[dict[str, object]] = []
    served_after_restart: list[int] = []
    with anyio.fail_after(180):
        async with http_client(timeout=30) as http:
            # A second session, idle through the restart, with a level and a subscription taken before.
            idle = HandshakeSession(http, cluster.url)
            await idle.open()
            await idle.request("logging/setLevel", {"level": "error"})
            await idle.request("resources/subscribe", {"uri": INFO_URI})
            async with anyio.create_task_group() as tg:
                tg.start_soon(run_load, cluster.url, load, WORKERS)
                tg.start_soon(run_session_load, cluster.url, session_load)
                await _calls_after(load, 0.0)
                await _calls_after(session_load, 0.0, SESSION_CALLS_PER_STEP)
                for replica in cluster.replicas:
                    replica.terminate()
                    drained.append(
                        await replica.wait_event("drained", SHUTDOWN_GRACE_SECONDS + DRAIN_TIMEOUT_SECONDS + 15)
                    )
                    statuses.append(await replica.exit_status())
                    await replica.restart()
                    await cluster.balancer.wait_status({replica.name: "UP"})
                    back_at = time.monotonic()
                    answered = int((await cluster.balancer.stats())[replica.name]["hrsp_2xx"] or 0)
                    await _calls_after(load, back_at)
                    await _calls_after(session_load, back_at, SESSION_CALLS_PER_STEP)
                    await rebuilt_on(cluster, replica)  # the session is served by the new process too
                    # The restarted replica serves again before the next one goes.
                    served_after_restart.append(
                        int((await cluster.balancer.stats())[replica.name]["hrsp_2xx"]) - answered
                    )
                load.stop.set()
                session_load.stop.set()

            # Every process is new: the idle session is rebuilt where it lands, its level and its
            # subscription restored from Redis.
            async with idle.listening() as stream:
                await touch_until_updated(idle, stream)
            logged = await idle.exchange("tools/call", {"name": "fx__log", "arguments": {}})
            await idle.delete()

    assert load.failures == [], load.failures[:5]
    # The handshake-era client's session outlived every replica: no call lost, never "Session
    # not found", never a second `initialize`, one session id from start to end.
    assert session_load.failures == [], session_load.failures[:5]
    assert session_load.refused() == [] and session_load.initializes == 1, session_load.refused()
    assert len(session_load.session_ids) == 1, session_load.session_ids
    assert len(session_load.calls) >= 4 * SESSION_CALLS_PER_STEP
    assert statuses == [0, 0, 0]
    assert [event["requests_failed"] for event in drained] == [0, 0, 0]
    assert all(count >= 1 for count in served_after_restart), served_after_restart
    assert len(load.calls) >= 4 * CALLS_PER_STEP
    assert [message["params"]["level"] for message in logged if "method" in message] == ["error"]
    assert result_text(logged[-1]["result"]) == "logged"


async def test_while_redis_is_down_every_replica_keeps_serving_and_shared_state_recovers_when_it_returns(
    replica_cluster: ReplicaCluster,
) -> None:
    cluster = replica_cluster
    await cluster.in_rotation()
    redis_server = cluster.redis

    async def shared_state_is(wanted: str) -> bool:
        """Whether every replica's `/readyz` says `shared_state: wanted`."""
        states = [(await cluster.readiness(replica))[1]["shared_state"] for replica in cluster.replicas]
        return states == [wanted] * len(states)

    load = Load()
    try:
        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                tg.start_soon(run_load, cluster.url, load, WORKERS)
                await _calls_after(load, 0.0)
                await redis_server.killed()
                # Every call counts its route's limit in Redis, so each replica notices soon.
                await until(lambda: shared_state_is("unavailable"))
                during = [await cluster.readiness(replica) for replica in cluster.replicas]
                metrics_during = [await cluster.metrics(replica) for replica in cluster.replicas]
                await _calls_after(load, time.monotonic())
                await redis_server.restarted()
                await until(lambda: shared_state_is("ok"))
                await _calls_after(load, time.monotonic())
                # The restarted Redis started empty: the calls since are counted in it again. Read
                # while the load runs: a window's key expires with its window (1 s here).
                windows = await anyio.to_thread.run_sync(_rate_limit_keys, redis_server)
                load.stop.set()
            metrics_after = [await cluster.metrics(replica) for replica in cluster.replicas]
    finally:
        if not redis_server.running:
            redis_server.restart()

    assert load.failures == [], load.failures[:5]
    assert all(replica.running for replica in cluster.replicas)
    assert [status for status, _ in during] == [200, 200, 200]  # still ready: serving on local state
    assert all(body["shared_state_reason"] for _, body in during)
    assert [counter(text, "mcphub_shared_state_up") for text in metrics_during] == [0, 0, 0]
    assert all(counter(text, "mcphub_shared_state_errors_total") >= 1 for text in metrics_during)
    assert [counter(text, "mcphub_shared_state_up") for text in metrics_after] == [1, 1, 1]
    assert windows, "no rate-limit window in Redis after it came back"


def _rate_limit_keys(server: RedisServer) -> list[bytes]:
    """The rate-limit windows the replicas keep in `server`."""
    with redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=5) as client:
        keys: list[bytes] = client.keys(f"{KEY_PREFIX}ratelimit*")
    return keys
