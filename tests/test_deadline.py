"""One deadline per request (hub/deadline.py, hub/router.py): the queue wait, every round and the
answer spend one clock started at the request's arrival; per-client connections go through their
own breaker and limiter. A real hub on loopback over real stdio servers
(tests/servers/faulty_server.py)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from mcp import MCPError
from mcp_types import CONNECTION_CLOSED, INTERNAL_ERROR, REQUEST_TIMEOUT

from hub.admission import BreakerState
from hub.deadline import RequestDeadline
from tests.clients import mcp_client
from tests.conftest import Recorder, faulty_entry, running_hub
from tests.conftest import tool_text as _text

pytestmark = pytest.mark.anyio


# ---------------------------------------------------------------- the deadline itself


async def test_progress_pushes_the_deadline_to_now_plus_the_timeout_but_never_past_the_hard_maximum() -> None:
    now = anyio.current_time()
    fresh = RequestDeadline(1.0, 3.0, now=now)
    assert fresh.at == now + 1.0 and fresh.hard_at == now + 3.0
    assert fresh.extend() >= now + 1.0 and not fresh.expired()

    old = RequestDeadline(1.0, 3.0, now=now - 2.5)  # arrived 2.5 s ago: 0.5 s of its hard maximum left
    assert old.expired() and old.remaining() == 0.0
    assert old.extend() == old.hard_at == now + 0.5
    assert not old.expired()
    assert "hard maximum of 3 s" in RequestDeadline(1.0, 3.0, now=now - 5).no_answer("tools/call")

    short = RequestDeadline(2.0, 1.0, now=now)  # a hard maximum below the timeout binds
    assert short.at == short.hard_at == now + 1.0 and short.extend() == now + 1.0


# ---------------------------------------------------------------- queue wait and answer share one clock


@pytest.mark.slow
async def test_a_queued_call_gets_only_the_rest_of_its_deadline_and_one_still_queued_at_the_end_is_never_sent() -> None:
    # One slot. `hang` holds it until its own 4 s deadline; `slow` (needs 4 s, has 5 s) queues
    # behind it, so from its arrival it cannot finish before its deadline: with a fresh timeout
    # after the queue it would have been answered. `echo` (1 s) queues too and never gets the slot.
    entry = faulty_entry("fz", max_concurrency=1, max_queue=2, timeouts={"hang": 4, "slow": 5, "echo": 1})
    recorder = Recorder()
    async with running_hub({"fz": entry}) as hub:
        hub.hub.fleet.events.target = recorder
        limiter = hub.hub.fleet.connections["fz"].limiter
        errors: dict[str, MCPError] = {}
        with anyio.fail_after(30):
            async with mcp_client(hub.url) as client:

                async def call(name: str, arguments: dict[str, Any]) -> None:
                    with pytest.raises(MCPError) as raised:
                        await client.call_tool(f"fz__{name}", arguments)
                    errors[name] = raised.value

                async with anyio.create_task_group() as tg:
                    tg.start_soon(call, "hang", {})
                    await limiter.changes.wait_for(lambda: limiter.in_use == 1)
                    tg.start_soon(call, "slow", {"seconds": 4})
                    await limiter.changes.wait_for(lambda: limiter.waiting == 1)
                    tg.start_soon(call, "echo", {"text": "never sent"})
                    await limiter.changes.wait_for(lambda: limiter.waiting == 2)
                after = await client.call_tool("fz__echo", {"text": "after"})
    hang, slow, echo = errors["hang"], errors["slow"], errors["echo"]
    assert hang.code == REQUEST_TIMEOUT and "no answer to tools/call within 4 s" in hang.message
    assert "waiting for a free slot" not in hang.message
    # The slow call was sent once the slot came free, and ran out at its one deadline.
    assert slow.code == REQUEST_TIMEOUT and slow.data == {"server_id": "fz"}
    assert "no answer to tools/call within 5 s" in slow.message and "waiting for a free slot" in slow.message
    # The echo never left the queue: refused unsent, naming the phase that ran out.
    assert echo.code == CONNECTION_CLOSED and echo.data == {"server_id": "fz"}
    assert "no free slot before the request's 1 s ran out" in echo.message
    assert recorder.named("on_rejected") == [("on_rejected", "fz")]
    assert _text(after) == "after"


async def test_an_idempotent_call_that_timed_out_on_one_replica_is_not_sent_again_with_a_fresh_timeout() -> None:
    member = faulty_entry("m")
    replica = {k: member[k] for k in ("command", "args")}
    servers = {
        "fz": {
            "replicas": [replica] * 2,
            "timeouts": {"hang": 1},
            "idempotent": ["hang", "echo"],
            "retry": {"attempts": 3, "backoff_initial_seconds": 0.01},
        }
    }
    recorder = Recorder()
    async with running_hub(servers) as hub:
        hub.hub.fleet.events.target = recorder
        with anyio.fail_after(30):
            async with mcp_client(hub.url) as client:
                with pytest.raises(MCPError) as raised:
                    await client.call_tool("fz__hang", {})
                after = await client.call_tool("fz__echo", {"text": "after"})
    # Timed out where it was sent; neither the other replica nor another round got a new clock.
    assert raised.value.code == REQUEST_TIMEOUT and "within 1 s" in raised.value.message
    assert raised.value.data in ({"server_id": "fz/1"}, {"server_id": "fz/2"})
    assert not recorder.named("on_failover") and not recorder.named("on_retry")
    assert [c[3] for c in recorder.named("on_call") if c[1] == "hang"] == ["timeout"]
    assert _text(after) == "after"


# ---------------------------------------------------------------- per-client connections


def _per_client(*args: str, **extra: Any) -> dict[str, Any]:
    return faulty_entry("fz", *args, protocol="legacy", isolation="per_client", **extra)


async def test_a_per_client_connection_with_a_full_queue_refuses_its_own_client_while_another_is_served() -> None:
    entry = _per_client(max_concurrency=1, max_queue=0, timeouts={"hang": 30})
    async with running_hub({"fz": entry}) as hub:
        shared = hub.hub.fleet.connections["fz"]
        with anyio.fail_after(30):
            async with mcp_client(hub.url, mode="legacy") as a, mcp_client(hub.url, mode="legacy") as b:
                assert _text(await a.call_tool("fz__echo", {"text": "a"})) == "a"  # starts a's connection
                async with anyio.create_task_group() as tg:
                    tg.start_soon(a.call_tool, "fz__hang", {})
                    (clone,) = shared.clones  # a's connection, started by its first call
                    await clone.limiter.changes.wait_for(lambda: clone.limiter.in_use == 1)
                    with pytest.raises(MCPError) as busy:
                        await a.call_tool("fz__echo", {"text": "a again"})
                    served = _text(await b.call_tool("fz__echo", {"text": "b"}))
                    shared_in_use = shared.limiter.in_use
                    tg.cancel_scope.cancel()
    assert busy.value.code == CONNECTION_CLOSED and "busy" in busy.value.message
    assert served == "b"
    assert shared_in_use == 0  # the shared connection's slot was never taken


async def test_a_per_client_connection_with_an_open_circuit_is_refused_alone_and_the_shared_circuit_is_not_its() -> (
    None
):
    entry = _per_client(breaker={"failures": 2, "cooldown_seconds": 60})
    async with running_hub({"fz": entry}) as hub:
        shared = hub.hub.fleet.connections["fz"]
        with anyio.fail_after(30):
            async with mcp_client(hub.url, mode="legacy") as a, mcp_client(hub.url, mode="legacy") as b:
                for _ in range(2):
                    with pytest.raises(MCPError) as failed:
                        await a.call_tool("fz__fail_times", {"n": 10})
                    assert failed.value.code == INTERNAL_ERROR
                with pytest.raises(MCPError) as refused:
                    await a.call_tool("fz__echo", {"text": "a"})
                shared_after_a = shared.breaker.state
                served_b = _text(await b.call_tool("fz__echo", {"text": "b"}))
                # And the other way round: the shared connection's circuit open, a client's own
                # connection still serves it.
                for _ in range(2):
                    shared.breaker.record_failure()
                shared_opened = shared.breaker.state
                served_b_again = _text(await b.call_tool("fz__echo", {"text": "b again"}))
    assert refused.value.code == CONNECTION_CLOSED and "circuit open" in refused.value.message
    assert shared_after_a is BreakerState.CLOSED
    assert served_b == "b"
    assert shared_opened is BreakerState.OPEN
    assert served_b_again == "b again"


@pytest.mark.slow
async def test_a_call_whose_deadline_passes_while_its_own_connection_starts_is_never_sent_and_the_next_is_served() -> (
    None
):
    # A per-client connection is a new stdio child, here one that takes 1 s to start (a forked
    # one can start within the 0.05 s `echo` has), so its deadline passes while it waits.
    entry = _per_client("--start-delay", "1", timeouts={"echo": 0.05})
    async with running_hub({"fz": entry}) as hub:
        shared = hub.hub.fleet.connections["fz"]
        with anyio.fail_after(30):
            async with mcp_client(hub.url, mode="legacy") as a:
                with pytest.raises(MCPError) as raised:
                    await a.call_tool("fz__echo", {"text": "too soon"})
                pid = _text(await a.call_tool("fz__pid", {}))
                dedicated = list(shared.clones)
    assert raised.value.code == CONNECTION_CLOSED and raised.value.data == {"server_id": "fz"}
    assert "starting the connection dedicated to this client" in raised.value.message
    assert "ran out before it could be sent" in raised.value.message
    assert shared.breaker.state is BreakerState.CLOSED and shared.breaker.consecutive_failures == 0
    assert len(dedicated) == 1 and pid.isdigit()
