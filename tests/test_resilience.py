"""Timeouts, retry only when safe, the retry budget, circuit breakers, health states, the result
size cap and the concurrency cap: a real hub on loopback over real misbehaving servers
(tests/servers/faulty_server.py and fixture_server.py as stdio children and loopback HTTP)."""

from __future__ import annotations

import json
import logging
import os
import signal
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import anyio
import mcp_types as types
import pytest
from mcp import MCPError
from mcp_types import CONNECTION_CLOSED, INTERNAL_ERROR, REQUEST_TIMEOUT

from hub.admission import BreakerState, CircuitBreaker, ConcurrencyLimiter, RetryBudget
from hub.config import BreakerConfig
from hub.errors import ServerUnavailable
from hub.result_cap import oversized
from hub.servers import ServerState, ServerStatus
from tests.clients import http_client, mcp_client
from tests.conftest import Recorder, faulty_entry, faulty_http, fixture_entry, running_hub
from tests.conftest import tool_text as _text
from tests.conftest import until as _until

pytestmark = pytest.mark.anyio


def _counters(path: Path) -> dict[str, int]:
    return json.loads(path.read_text()) if path.exists() else {}


@contextmanager
def _stderr_watch(line: str) -> Iterator[anyio.Event]:
    """An event set when the hub logs `line` from a server's stderr."""
    seen = anyio.Event()

    class _Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage() == line:
                seen.set()

    handler = _Watch()
    logger = logging.getLogger("hub.server_stderr")
    previous = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield seen
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


# ---------------------------------------------------------------- timeouts


async def test_a_route_timeout_fails_the_call_naming_the_server_and_cancels_it_on_the_server() -> None:
    entry = fixture_entry("fx", timeout_seconds=30, timeouts={"slo*": 0.5})
    with _stderr_watch("[fx] slow: cancelled") as cancelled:
        async with running_hub({"fx": entry}) as hub:
            with anyio.fail_after(20):
                async with mcp_client(hub.url) as client:
                    with pytest.raises(MCPError) as raised:
                        await client.call_tool("fx__slow", {"seconds": 30, "steps": 1})
                    await cancelled.wait()
                    after = await client.call_tool("fx__echo", {"text": "after"})
    assert raised.value.code == REQUEST_TIMEOUT
    assert raised.value.data == {"server_id": "fx"}
    assert "'fx'" in raised.value.message and "0.5 s" in raised.value.message
    assert _text(after) == "after"


@pytest.mark.slow
async def test_progress_keeps_a_call_alive_past_its_timeout_but_not_past_the_hard_maximum() -> None:
    # slow(seconds, steps) reports progress every seconds/steps: every 0.1 s here.
    entry = fixture_entry("fx", timeout_seconds=0.6, max_timeout_seconds=2.5)
    with _stderr_watch("[fx] slow: cancelled") as cancelled:
        async with running_hub({"fx": entry}) as hub:
            with anyio.fail_after(30):
                async with mcp_client(hub.url) as client:
                    # 1.2 s of work, twice the timeout, with progress all along: answered.
                    done = await client.call_tool("fx__slow", {"seconds": 1.2, "steps": 12})
                    # 20 s of work with progress all along: cut off at the hard maximum.
                    with pytest.raises(MCPError) as raised:
                        await client.call_tool("fx__slow", {"seconds": 20, "steps": 200})
                    await cancelled.wait()
    assert _text(done) == "done"
    assert raised.value.code == REQUEST_TIMEOUT
    assert "hard maximum of 2.5 s" in raised.value.message and "'fx'" in raised.value.message


# ---------------------------------------------------------------- retry only when safe


async def test_a_non_idempotent_call_that_crashed_the_server_is_answered_with_an_error_and_never_repeated(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state.json"
    entry = faulty_entry("fz", "--state-file", str(state), retry={"attempts": 5, "backoff_initial_seconds": 0.05})
    async with running_hub({"fz": entry}) as hub:
        with anyio.fail_after(20):
            async with mcp_client(hub.url) as client:
                with pytest.raises(MCPError) as raised:
                    await client.call_tool("fz__crash_times", {"n": 1, "key": "once"})
    assert raised.value.code == CONNECTION_CLOSED and "'fz'" in raised.value.message
    assert _counters(state) == {"crash:once": 1}


async def test_an_idempotent_call_that_crashed_the_server_is_retried_once_the_server_is_back(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    entry = faulty_entry(
        "fz",
        "--state-file",
        str(state),
        idempotent=["crash_*"],
        retry={"attempts": 10, "backoff_initial_seconds": 1.0, "backoff_max_seconds": 3.0},
    )
    recorder = Recorder()
    async with running_hub({"fz": entry}) as hub:
        hub.hub.fleet.events.target = recorder
        with anyio.fail_after(30):
            async with mcp_client(hub.url) as client:
                result = await client.call_tool("fz__crash_times", {"n": 1, "key": "idem"})
    assert _text(result) == "ok after 1 crashes"
    assert _counters(state) == {"crash:idem": 2}
    assert recorder.named("on_retry")


async def test_a_server_error_is_retried_only_for_an_idempotent_tool(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    entry = faulty_entry(
        "fz", "--state-file", str(state), idempotent=["echo"], retry={"attempts": 3, "backoff_initial_seconds": 0.01}
    )
    other = faulty_entry(
        "fi",
        "--state-file",
        str(tmp_path / "idem.json"),
        idempotent=["fail_*"],
        retry={"attempts": 3, "backoff_initial_seconds": 0.01},
    )
    async with running_hub({"fz": entry, "fi": other}) as hub:
        with anyio.fail_after(20):
            async with mcp_client(hub.url) as client:
                with pytest.raises(MCPError) as raised:
                    await client.call_tool("fz__fail_times", {"n": 2, "key": "k"})
                retried = await client.call_tool("fi__fail_times", {"n": 2, "key": "k"})
    assert raised.value.code == INTERNAL_ERROR
    assert _counters(state) == {"fail:k": 1}
    assert _text(retried) == "ok after 2 failures"
    assert _counters(tmp_path / "idem.json") == {"fail:k": 3}


async def test_a_servers_own_minus_32000_error_is_passed_through_and_the_server_stays_in_use() -> None:
    # -32000 is JSON-RPC's first implementation-defined server error, which servers answer for
    # anything; it is not the hub's own "connection closed" (the hub once took it for that and
    # stopped routing to the server).
    async with running_hub({"fz": faulty_entry("fz")}) as hub:
        with anyio.fail_after(20):
            async with mcp_client(hub.url) as client:
                with pytest.raises(MCPError) as raised:
                    await client.call_tool("fz__fail_times", {"n": 1, "key": "k", "code": -32000})
                after = await client.call_tool("fz__fail_times", {"n": 1, "key": "k"})
    assert (raised.value.code, raised.value.message) == (-32000, "induced failure 1 of 1")
    assert _text(after) == "ok after 1 failures"
    assert hub.hub.server_status("fz").restarts == 0


async def test_a_request_to_a_restarting_server_waits_for_it_and_is_answered_once_it_is_back() -> None:
    # No retry rounds: the request itself waits for the restart (issue 10, items 1 and 2).
    entry = fixture_entry("fx", retry={"attempts": 1})
    recorder = Recorder()
    async with running_hub({"fx": entry}) as hub:
        hub.hub.fleet.events.target = recorder
        with anyio.fail_after(30):
            async with mcp_client(hub.url) as client:
                with pytest.raises(MCPError):
                    await client.call_tool("fx__crash", {})
                # The child is gone; the read is not sent until it is back (resources route by URI).
                read = await client.read_resource("fx+fixture://info")
    contents = read.contents[0]
    assert isinstance(contents, types.TextResourceContents) and contents.text == "fx"
    assert not recorder.named("on_retry")


async def test_retries_against_a_server_that_always_fails_stay_within_the_retry_budget(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    calls, attempts = 30, 5
    entry = faulty_entry(
        "fz",
        "--state-file",
        str(state),
        idempotent=["fail_times"],
        retry={"attempts": attempts, "backoff_initial_seconds": 0.2, "backoff_max_seconds": 0.4},
        breaker={"failures": 1000},
    )
    recorder = Recorder()
    async with running_hub({"fz": entry}) as hub:
        hub.hub.fleet.events.target = recorder
        with anyio.fail_after(60):
            async with mcp_client(hub.url) as client:
                errors: list[int] = []

                async def one() -> None:
                    with pytest.raises(MCPError) as raised:
                        await client.call_tool("fz__fail_times", {"n": 10**9, "key": "all"})
                    errors.append(raised.value.code)

                async with anyio.create_task_group() as tg:
                    for _ in range(calls):
                        tg.start_soon(one)
        budget = hub.hub.router.budget("fz")
    hits = _counters(state)["fail:all"]
    assert errors == [INTERNAL_ERROR] * calls
    assert budget is not None and budget.peak_retries <= max(3, int(0.2 * calls))
    # Every attempt that reached the server is a call or a granted retry; without the budget
    # each call would reach the server `attempts` times (150).
    assert hits == calls + len(recorder.named("on_retry"))
    assert hits <= 2 * calls, hits


# ---------------------------------------------------------------- circuit breaker and health


async def test_the_breaker_opens_after_consecutive_failures_fails_fast_then_half_opens_and_closes(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state.json"
    entry = faulty_entry(
        "fz",
        "--state-file",
        str(state),
        retry={"attempts": 1},
        breaker={"failures": 3, "cooldown_seconds": 0.5},
        health_check_interval_seconds=0,
    )
    recorder = Recorder()
    async with running_hub({"fz": entry}) as hub:
        hub.hub.fleet.events.target = recorder
        connection = hub.hub.fleet.connections["fz"]
        with anyio.fail_after(30):
            async with mcp_client(hub.url) as client, http_client() as http:
                for _ in range(3):
                    with pytest.raises(MCPError) as failed:
                        await client.call_tool("fz__fail_times", {"n": 3, "key": "b"})
                    assert failed.value.code == INTERNAL_ERROR
                with pytest.raises(MCPError) as fast:
                    await client.call_tool("fz__fail_times", {"n": 3, "key": "b"})
                readyz = (await http.get(f"{hub.base_url}/readyz")).json()
                servers = (await http.get(f"{hub.base_url}/admin/servers")).json()["servers"]
                await _until(lambda: connection.breaker.retry_in_seconds == 0)
                probe = await client.call_tool("fz__fail_times", {"n": 3, "key": "b"})
                after = (await http.get(f"{hub.base_url}/admin/servers")).json()["servers"]
    assert fast.value.code == CONNECTION_CLOSED and "circuit open" in fast.value.message
    assert _counters(state) == {"fail:b": 4}  # the fast failure never reached the server
    assert readyz["servers"][0]["state"] == "open" and readyz["status"] == "degraded"  # fail open: still 200
    assert servers[0]["breaker"] == "open" and servers[0]["state"] == "open"
    assert _text(probe) == "ok after 3 failures"
    assert after[0]["state"] == "ready" and after[0]["breaker"] == "closed"
    assert [e[2] for e in recorder.named("on_breaker_change")] == ["open", "half_open", "closed"]


@pytest.mark.slow
async def test_failing_health_checks_show_degraded_then_open_in_readyz_and_recover() -> None:
    entry = fixture_entry(
        "fx", timeout_seconds=0.5, health_check_interval_seconds=0.2, breaker={"failures": 2, "cooldown_seconds": 0.3}
    )
    other = fixture_entry("ok")
    async with running_hub({"fx": entry, "ok": other}) as hub:
        with anyio.fail_after(30):
            async with mcp_client(hub.url) as client, http_client() as http:
                pid = int(_text(await client.call_tool("fx__pid", {})))

                async def readyz_state() -> str:
                    body = (await http.get(f"{hub.base_url}/readyz")).json()
                    return {s["server_id"]: s["state"] for s in body["servers"]}["fx"]

                seen: set[str] = set()
                breakers: set[str] = set()

                def opened(status: ServerStatus) -> bool:
                    seen.add(status.state.value)
                    breakers.add(status.breaker)
                    return status.state is ServerState.OPEN

                os.kill(pid, signal.SIGSTOP)
                try:
                    # Re-checked after every health check (each one notifies the connection's changes).
                    await hub.hub.wait_for_server("fx", where=opened)
                    # Open until a check succeeds again, and the server stays stopped until SIGCONT.
                    open_in_readyz = await readyz_state()
                    # Fail open: the other server keeps serving while fx is open.
                    assert _text(await client.call_tool("ok__echo", {"text": "still"})) == "still"
                finally:
                    os.kill(pid, signal.SIGCONT)
                await hub.hub.wait_for_server("fx", where=lambda s: s.state is ServerState.READY)
                ready_in_readyz = await readyz_state()
                assert _text(await client.call_tool("fx__echo", {"text": "back"})) == "back"
    assert {"degraded", "open"} <= seen
    assert open_in_readyz == "open" and ready_in_readyz == "ready"
    assert "open" in breakers


# ---------------------------------------------------------------- bounds


@pytest.mark.parametrize("transport", ["stdio", "http-legacy", "http-modern"])
async def test_an_oversized_result_becomes_an_error_result_naming_the_server_and_the_limit(transport: str) -> None:
    """Over stdio and modern-era HTTP (one JSON body) the result is measured on arrival; over
    handshake-era HTTP the answer's SSE event is capped, so it is cut off while it streams."""
    async with faulty_http() as (url, _process):
        protocol = "legacy" if transport == "http-legacy" else "auto"
        remote = {"url": url, "max_result_bytes": 4096, "protocol": protocol}
        entry = faulty_entry("fz", max_result_bytes=4096) if transport == "stdio" else remote
        async with running_hub({"fz": entry}) as hub:
            with anyio.fail_after(20):
                async with mcp_client(hub.url) as client:
                    small = await client.call_tool("fz__huge", {"size": 1000})
                    big = await client.call_tool("fz__huge", {"size": 200_000})
                    after = await client.call_tool("fz__echo", {"text": "after"})
    assert _text(small) == "x" * 1000 and not small.is_error
    assert big.is_error and _text(big) == "result from fz exceeded 4096 bytes"
    assert _text(after) == "after"


@pytest.mark.slow
async def test_calls_beyond_the_concurrency_cap_queue_and_beyond_the_queue_fail_fast() -> None:
    entry = faulty_entry("fz", max_concurrency=1, max_queue=1)
    recorder = Recorder()
    async with running_hub({"fz": entry}) as hub:
        hub.hub.fleet.events.target = recorder
        connection = hub.hub.fleet.connections["fz"]
        with anyio.fail_after(30):
            async with mcp_client(hub.url) as client:
                results: list[str] = []

                async def slow() -> None:
                    results.append(_text(await client.call_tool("fz__slow", {"seconds": 1.0})))

                async with anyio.create_task_group() as tg:
                    tg.start_soon(slow)
                    await connection.limiter.changes.wait_for(lambda: connection.limiter.in_use == 1)
                    tg.start_soon(slow)
                    await connection.limiter.changes.wait_for(lambda: connection.limiter.waiting == 1)
                    with pytest.raises(MCPError) as busy:
                        await client.call_tool("fz__slow", {"seconds": 1.0})
                    rejected_while_busy = connection.limiter.in_use == 1
    assert busy.value.code == CONNECTION_CLOSED and "busy" in busy.value.message and "'fz'" in busy.value.message
    assert rejected_while_busy
    assert results == ["done", "done"]
    assert recorder.named("on_rejected") == [("on_rejected", "fz")]
    assert ("on_queue_depth", "fz", 1) in recorder.events


# ---------------------------------------------------------------- the parts, in isolation


def test_a_breaker_doubles_its_cool_down_each_time_a_probe_fails_and_resets_when_it_closes() -> None:
    now = [0.0]
    changes: list[BreakerState] = []
    breaker = CircuitBreaker(
        BreakerConfig(failures=2, cooldown_seconds=10, cooldown_max_seconds=25), changes.append, lambda: now[0]
    )
    breaker.record_failure()
    assert breaker.allow() and breaker.state is BreakerState.CLOSED
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN and not breaker.allow()
    now[0] = 10.0
    assert breaker.allow() and not breaker.allow()  # one probe at a time
    breaker.record_failure()
    assert breaker.cooldown_seconds == 20 and breaker.retry_in_seconds == 20
    now[0] = 30.0
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.cooldown_seconds == 25  # capped
    now[0] = 55.0
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED and breaker.cooldown_seconds == 10
    assert changes[:3] == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.OPEN]
    assert changes[-1] is BreakerState.CLOSED


def test_a_retry_budget_allows_twenty_percent_of_active_calls_and_at_least_three() -> None:
    budget = RetryBudget(0.2, 3)
    with budget.call():
        assert sum(budget.try_acquire() for _ in range(10)) == 3
    for _ in range(3):
        budget.release()
    with ExitStack() as stack:
        for _ in range(50):
            stack.enter_context(budget.call())
        assert sum(budget.try_acquire() for _ in range(50)) == 10
    assert budget.peak_retries == 10


async def test_a_limiter_with_a_full_queue_refuses_at_once_without_delivering() -> None:
    limiter = ConcurrencyLimiter("s", 1, 0)
    async with limiter.slot(1.0):
        with pytest.raises(ServerUnavailable) as raised:
            async with limiter.slot(1.0):
                pass
    assert raised.value.delivered is False and "busy" in raised.value.message


def test_result_size_is_measured_as_serialized_json() -> None:
    text = types.CallToolResult(content=[types.TextContent(type="text", text="x" * 2000)])
    quoted = types.CallToolResult(content=[types.TextContent(type="text", text='"' * 1000)])
    assert oversized(text, 2000) and not oversized(text, 3000)
    assert oversized(quoted, 2000)  # each quote serializes as two bytes
