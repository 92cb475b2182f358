"""The request-id multiplexer of a stdio transport (`adapters.stdio_mux`, issue 12 item 2): plain
requests written and settled beside the SDK session on one connection.

Real peers only: the fixture and faulty servers as stdio children under the SDK's own `Client`
(handshake, lists and pings going through the SDK while mux calls are in flight), a small
scripted stdio child for what no SDK server does (answering after a cancellation, echoing an
id as a string, exiting while a request waits), and a running hub for what the hub does with a
mux call (delivery, `ConnectionLost`, its deadline's cancellation).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from mcp import Client, MCPError
from mcp_types import CONNECTION_CLOSED, INTERNAL_ERROR

from adapters._sdk import stamped_params
from adapters.oversize import ANSWER_TOO_LARGE
from adapters.stdio import stdio_transport
from adapters.stdio_mux import FIRST_ID, RequestMux
from hub.errors import ServerTimeout
from hub.servers import ServerConnection
from hub.servers.state import ConnectionLost
from hub.signals import Changes
from tests.clients import mcp_client
from tests.conftest import FAULTY_SERVER, FIXTURE_SERVER, LogLines, fixture_entry, running_hub

pytestmark = pytest.mark.anyio


class _Stderr:
    """A child's stderr lines, and a wait on one."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.changes = Changes()

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        self.changes.notify()

    async def wait_for(self, line: str) -> None:
        await self.changes.wait_for(lambda: line in self.lines)


async def _call(client: Client, mux: RequestMux, tool: str, arguments: dict[str, Any], **options: Any) -> Any:
    """A mux `tools/call`, stamped as the client's session stamps its own requests."""
    params = stamped_params(client.session, "tools/call", {"name": tool, "arguments": arguments})
    return await mux.request("tools/call", params, **options)


@asynccontextmanager
async def _server(script: str, mode: str, stderr: _Stderr, **options: Any) -> AsyncIterator[Client]:
    transport = stdio_transport("mux", sys.executable, [script], on_stderr_line=stderr, **options)
    async with mcp_client(transport, mode=mode) as client:  # type: ignore[arg-type]
        yield client


# ---------------------------------------------------------------- beside the SDK session


@pytest.mark.parametrize("mode", ["legacy", "auto"])
@pytest.mark.slow
async def test_two_hundred_concurrent_mux_calls_beside_sdk_requests_each_get_exactly_their_own_answer(
    mode: str,
) -> None:
    mux = RequestMux()
    answers: dict[int, Any] = {}
    listed: list[int] = []
    with anyio.fail_after(120):
        async with _server(FIXTURE_SERVER, mode, _Stderr(), mux=mux) as client:

            async def call(i: int) -> None:
                answers[i] = await _call(client, mux, "echo", {"text": f"call {i}"})

            async def sdk_requests() -> None:
                listed.append(len((await client.list_tools()).tools))
                if mode == "legacy":  # ping is gone from the modern era
                    await client.send_ping()
                listed.append(len((await client.list_prompts()).prompts))

            async with anyio.create_task_group() as tg:
                for i in range(200):
                    tg.start_soon(call, i)
                    if i % 20 == 0:
                        tg.start_soon(sdk_requests)
            after = await client.call_tool("echo", {"text": "through the SDK"})
    assert sorted(answers) == list(range(200))
    for i, answer in answers.items():
        assert answer["content"] == [{"type": "text", "text": f"call {i}"}]
        assert answer["structuredContent"] == {"text": f"call {i}"}
    assert len(listed) == 20 and all(count > 0 for count in listed)
    assert after.structured_content == {"text": "through the SDK"}
    assert mux.sent == 200 and not mux.busy


@pytest.mark.parametrize("mode", ["legacy", "auto"])
@pytest.mark.slow
async def test_the_progress_of_a_mux_call_reaches_its_callback_in_order_before_its_answer(mode: str) -> None:
    mux = RequestMux()
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total, message))

    with anyio.fail_after(60):
        async with _server(FIXTURE_SERVER, mode, _Stderr(), mux=mux) as client:
            result = await _call(client, mux, "slow", {"seconds": 0.3, "steps": 3}, on_progress=on_progress)
    assert result["content"] == [{"type": "text", "text": "done"}]
    assert progress == [(1.0, 3.0, "step 1"), (2.0, 3.0, "step 2"), (3.0, 3.0, "step 3")]


async def test_a_slow_progress_callback_holds_up_only_its_own_call() -> None:
    mux = RequestMux()
    release = anyio.Event()
    progress: list[float] = []
    first = anyio.Event()
    results: dict[str, Any] = {}

    async def stuck(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)
        first.set()
        await release.wait()  # a client that does not read its stream

    with anyio.fail_after(60):
        async with _server(FIXTURE_SERVER, "legacy", _Stderr(), mux=mux) as client:
            async with anyio.create_task_group() as tg:

                async def slow() -> None:
                    results["slow"] = await _call(client, mux, "slow", {"seconds": 0.2, "steps": 4}, on_progress=stuck)

                tg.start_soon(slow)
                await first.wait()
                # Its progress is stuck in its callback: the reader still settles other answers.
                results["echo"] = await _call(client, mux, "echo", {"text": "not held"})
                results["list"] = len((await client.list_tools()).tools)
                assert "slow" not in results
                release.set()
    assert results["echo"]["content"] == [{"type": "text", "text": "not held"}] and results["list"] > 0
    assert results["slow"]["content"] == [{"type": "text", "text": "done"}]
    assert progress == [1.0, 2.0, 3.0, 4.0]  # every notification, in order, once the client read on


async def test_an_oversized_answer_fails_only_its_own_mux_call() -> None:
    mux = RequestMux()
    with anyio.fail_after(60):
        async with _server(FAULTY_SERVER, "legacy", _Stderr(), mux=mux, max_line_bytes=65536) as client:
            with pytest.raises(MCPError) as refused:
                await _call(client, mux, "huge", {"size": 300_000})
            after = await _call(client, mux, "echo", {"text": "still here"})
            listed = await client.list_tools()
    assert refused.value.code == INTERNAL_ERROR
    assert refused.value.error.data == {"reason": ANSWER_TOO_LARGE, "limit_bytes": 65536}
    assert after["content"] == [{"type": "text", "text": "still here"}]
    assert listed.tools


@pytest.mark.slow
async def test_lines_that_are_not_json_rpc_are_still_skipped_while_a_mux_call_waits(log_lines: LogLines) -> None:
    mux = RequestMux()
    with anyio.fail_after(60):
        async with _server(FAULTY_SERVER, "legacy", _Stderr(), mux=mux) as client:
            result = await _call(client, mux, "garbage_then_echo", {"text": "through the noise"})
            listed = await client.list_tools()
    assert result["content"] == [{"type": "text", "text": "through the noise"}]
    skipped = [line for line in log_lines.messages if "skipped a stdout line that is not MCP" in line]
    assert len(skipped) == 3
    assert sum("(invalid UTF-8," in line for line in skipped) == 1
    assert sum("(not a JSON-RPC message," in line for line in skipped) == 2
    assert listed.tools


# ---------------------------------------------------------------- what no SDK server does

_CHILD = r"""
import json, sys

def write(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()

late = None
while True:
    raw = sys.stdin.readline()
    if not raw:
        break
    message = json.loads(raw)
    method, request_id = message.get("method"), message.get("id")
    print(f"got {method} {request_id}", file=sys.stderr, flush=True)
    if method == "late":
        late = request_id
    elif method == "notifications/cancelled":
        params = message["params"]
        print(f"cancelled {params['requestId']}: {params['reason']}", file=sys.stderr, flush=True)
        write({"jsonrpc": "2.0", "id": late, "result": {"late": True}})  # answers all the same
    elif method == "string_id":
        write({"jsonrpc": "2.0", "id": str(request_id), "result": {"echoed": str(request_id)}})
    elif method == "echo":
        write({"jsonrpc": "2.0", "id": request_id, "result": {"echo": message["params"]}})
    elif method == "fail":
        write({"jsonrpc": "2.0", "id": request_id, "error": {"code": -32602, "message": "no", "data": {"k": 1}}})
    elif method == "float_code":
        write({"jsonrpc": "2.0", "id": request_id, "error": {"code": -32601.0, "message": "spelt oddly"}})
    elif method == "exit":
        sys.exit(3)
"""


@asynccontextmanager
async def _scripted(mux: RequestMux, stderr: _Stderr, reasons: list[str]) -> AsyncIterator[list[Any]]:
    """The scripted child with `mux`; yields what reaches the SDK's read stream meanwhile."""
    reached_sdk: list[Any] = []
    transport = stdio_transport(
        "scripted", sys.executable, ["-c", _CHILD], on_stderr_line=stderr, on_close_reason=reasons.append, mux=mux
    )
    async with transport as (read, _), anyio.create_task_group() as tg:

        async def collect() -> None:
            async for item in read:
                reached_sdk.append(item)

        tg.start_soon(collect)
        yield reached_sdk
        tg.cancel_scope.cancel()


async def test_a_cancelled_mux_call_tells_the_server_and_its_late_answer_is_dropped() -> None:
    mux, stderr = RequestMux(), _Stderr()
    held: list[int] = []
    with anyio.fail_after(30):
        async with anyio.create_task_group() as outer:

            async def hold() -> None:  # keeps a request pending, so the late answer meets the mux
                with pytest.raises(MCPError) as closed:
                    await mux.request("hold", {})
                held.append(closed.value.code)

            async with _scripted(mux, stderr, []) as reached_sdk:
                outer.start_soon(hold)
                await stderr.wait_for(f"got hold {FIRST_ID}")
                with anyio.CancelScope() as scope:

                    async def cancel_once_sent() -> None:
                        await stderr.wait_for(f"got late {FIRST_ID + 1}")
                        scope.cancel()

                    outer.start_soon(cancel_once_sent)
                    await mux.request("late", {})
                await stderr.wait_for(f"cancelled {FIRST_ID + 1}: caller cancelled")
                # The child wrote its late answer before this one: the reader dropped it.
                echoed = await mux.request("echo", {"after": "late"})
                assert reached_sdk == [] and mux.busy
    assert scope.cancelled_caught
    assert echoed == {"echo": {"after": "late"}}
    assert held == [CONNECTION_CLOSED]  # the transport ended under it
    assert mux.closed and not mux.busy


async def test_answers_spelt_unusually_still_settle_their_own_mux_calls() -> None:
    """An id echoed as a string, an error with `data`, an error code written as a float (what
    the SDK's validation accepts), and integers past 64 bits (which orjson does not read or
    write) on the way out and back."""
    mux = RequestMux()
    big = 2**70
    with anyio.fail_after(30):
        async with _scripted(mux, _Stderr(), []) as reached_sdk:
            echoed = await mux.request("string_id", {})
            with pytest.raises(MCPError) as failed:
                await mux.request("fail", {})
            with pytest.raises(MCPError) as odd:
                await mux.request("float_code", {})
            huge = await mux.request("echo", {"n": big, "nested": [{"m": -big}]})
    assert echoed == {"echoed": str(FIRST_ID)}
    assert failed.value.code == -32602 and failed.value.message == "no" and failed.value.error.data == {"k": 1}
    assert odd.value.code == -32601 and odd.value.message == "spelt oddly"
    assert huge == {"echo": {"n": big, "nested": [{"m": -big}]}}
    assert reached_sdk == []


async def test_a_child_that_exits_fails_the_waiting_mux_call_and_every_later_one_as_closed() -> None:
    mux, stderr, reasons = RequestMux(), _Stderr(), []
    with anyio.fail_after(30):
        async with _scripted(mux, stderr, reasons):
            async with anyio.create_task_group() as tg:

                async def wait() -> None:
                    with pytest.raises(MCPError) as closed:
                        await mux.request("late", {})
                    assert closed.value.code == CONNECTION_CLOSED

                tg.start_soon(wait)
                await stderr.wait_for(f"got late {FIRST_ID}")
                with pytest.raises(MCPError) as exited:
                    await mux.request("exit", {})
            with pytest.raises(MCPError) as later:
                await mux.request("echo", {})
    assert exited.value.code == CONNECTION_CLOSED and later.value.code == CONNECTION_CLOSED
    assert reasons == ["the server process exited with code 3"]
    assert mux.sent == 2  # the later one was never written


# ---------------------------------------------------------------- through the hub


def _connection(hub: Any, server_id: str) -> ServerConnection:
    connection = hub.hub.fleet.get(server_id)
    assert connection is not None
    return connection


async def test_a_server_that_dies_mid_call_fails_every_mux_call_in_flight_as_lost_and_delivered() -> None:
    async with running_hub({"fx": fixture_entry("fx")}) as hub:
        connection = _connection(hub, "fx")
        mux = connection.link.mux
        assert mux is not None
        lost: list[ConnectionLost] = []
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:

                async def slow() -> None:
                    with pytest.raises(ConnectionLost) as raised:
                        await connection.call_tool("slow", {"delay": 60, "steps": 1}, wire=True)
                    lost.append(raised.value)

                for _ in range(3):
                    tg.start_soon(slow)
                await connection.changes.wait_for(lambda: connection.in_flight == 3)
                with pytest.raises(ConnectionLost) as crashed:
                    await connection.call_tool("crash", {}, wire=True)
    assert crashed.value.delivered and "exited with code 3" in str(crashed.value)
    assert len(lost) == 3 and all(error.delivered for error in lost)
    assert mux.sent == 4 and mux.closed


async def test_a_mux_call_past_its_deadline_is_cancelled_at_the_server_and_the_connection_serves_on(
    caplog: pytest.LogCaptureFixture, log_lines: LogLines
) -> None:
    caplog.set_level(logging.INFO, logger="hub.server_stderr")  # the children's stderr lines
    async with running_hub({"fx": fixture_entry("fx")}) as hub:
        connection = _connection(hub, "fx")
        mux = connection.link.mux
        assert mux is not None
        with anyio.fail_after(60):
            with pytest.raises(ServerTimeout):
                await connection.call_tool("slow", {"delay": 60, "steps": 1}, wire=True, timeout_seconds=0.5)
            await log_lines.wait_for("[fx] slow: cancelled")  # the handler was cancelled by our notification
            after = await connection.call_tool("echo", {"text": "after"}, wire=True)
    assert after.data["content"] == [{"type": "text", "text": "after"}]  # type: ignore[union-attr]
    assert mux.sent == 2 and not mux.busy


async def test_each_clients_calls_go_through_the_mux_of_its_own_per_client_connection() -> None:
    entry = fixture_entry("fx", isolation="per_client")
    async with running_hub({"fx": entry}) as hub:
        shared = _connection(hub, "fx")
        with anyio.fail_after(60):
            async with mcp_client(hub.url, mode="legacy") as a, mcp_client(hub.url, mode="legacy") as b:
                answers = [
                    (await a.call_tool("fx__echo", {"text": "a"})).structured_content,
                    (await b.call_tool("fx__echo", {"text": "b"})).structured_content,
                    (await a.call_tool("fx__echo", {"text": "a again"})).structured_content,
                ]
                clones = list(shared.clones)
                sent = sorted(clone.link.mux.sent for clone in clones if clone.link.mux is not None)
    assert answers == [{"text": "a"}, {"text": "b"}, {"text": "a again"}]
    assert len(clones) == 2 and sent == [1, 2]
    assert shared.link.mux is not None and shared.link.mux.sent == 0  # the shared child got none of them
