"""Bounds on what clients can hold: an oversized request body is refused with 413 before it is
buffered (SECURITY.md case 25), and abandoned sessions and listen/GET streams are reclaimed so
file descriptors and tasks return to their baseline (case 29)."""

from __future__ import annotations

import asyncio
import os

import anyio
import pytest

from tests.clients import http_client, mcp_client
from tests.conftest import fixture_entry, running_hub, until

pytestmark = pytest.mark.anyio

_ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
_LEGACY = "2025-06-18"
_CHUNK = b"x" * 65536


async def _status_line(stream: anyio.abc.ByteStream) -> bytes:
    received = b""
    with anyio.fail_after(15):
        while b"\r\n" not in received:
            received += await stream.receive()
    return received.split(b"\r\n", 1)[0]


@pytest.mark.parametrize("declared_bytes", [5 * 1024 * 1024, 100 * 1024 * 1024])
async def test_a_declared_oversized_body_gets_413_before_the_body_is_sent(declared_bytes: int) -> None:
    async with running_hub({}) as hub:
        port = int(hub.base_url.rsplit(":", 1)[1])
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            head = (
                f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                f"Accept: application/json, text/event-stream\r\nContent-Length: {declared_bytes}\r\n\r\n"
            )
            await stream.send(head.encode() + _CHUNK)  # 64 KiB of the announced body, no more
            status = await _status_line(stream)
    assert status.split()[1] == b"413"


async def test_a_chunked_100_mb_body_is_cut_off_with_413_after_the_cap_not_buffered_whole() -> None:
    async with running_hub({}) as hub:
        port = int(hub.base_url.rsplit(":", 1)[1])
        sent = 0
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            head = (
                f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                "Accept: application/json, text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            await stream.send(head.encode())
            answered = anyio.Event()
            status = b""

            async def read_status() -> None:
                nonlocal status
                status = await _status_line(stream)
                answered.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(read_status)
                chunk = f"{len(_CHUNK):x}\r\n".encode() + _CHUNK + b"\r\n"
                with anyio.fail_after(30):
                    while not answered.is_set() and sent < 100 * 1024 * 1024:
                        try:
                            await stream.send(chunk)
                        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                            break  # the hub answered and closed the connection
                        sent += len(_CHUNK)
                    await answered.wait()
    assert status.split()[1] == b"413"
    assert sent < 20 * 1024 * 1024, sent


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _tasks() -> int:
    return len(asyncio.all_tasks())


async def _abandon_a_handshake_era_session(url: str) -> None:
    """initialize, open the standing GET stream, then vanish without DELETE."""
    async with http_client(timeout=10) as http:
        initialize = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {"protocolVersion": _LEGACY, "capabilities": {}, "clientInfo": {"name": "gone", "version": "0"}},
        }
        response = await http.post(url, headers=_ACCEPT, json=initialize)
        session = {"mcp-session-id": response.headers["mcp-session-id"], "mcp-protocol-version": _LEGACY}
        await http.post(
            url, headers={**_ACCEPT, **session}, json={"jsonrpc": "2.0", "method": "notifications/initialized"}
        )
        async with http.stream("GET", url, headers={"Accept": "text/event-stream", **session}) as stream:
            assert stream.status_code == 200


async def _abandon_a_listen_stream(url: str) -> None:
    """A modern-era client opens `subscriptions/listen` and its connection goes away."""
    with anyio.CancelScope() as scope:
        async with mcp_client(url) as client, client.listen(tools_list_changed=True):
            scope.cancel()
            await anyio.sleep_forever()


@pytest.mark.slow
async def test_abandoned_sessions_and_listen_streams_are_reclaimed_and_fds_and_tasks_return_to_baseline() -> None:
    async with running_hub({"fx": fixture_entry("fx")}, session_idle_timeout_seconds=1.0) as hub:
        endpoint = hub.hub.endpoint
        with anyio.fail_after(60):
            # Warm up every code path once, so lazily created pools and tasks count in the baseline.
            await _abandon_a_handshake_era_session(hub.url)
            await _abandon_a_listen_stream(hub.url)
            await endpoint.session_changes.wait_for(lambda: endpoint.open_sessions() == 0)
            baseline_fds, baseline_tasks = _fds(), _tasks()
            for _ in range(10):
                await _abandon_a_handshake_era_session(hub.url)
                await _abandon_a_listen_stream(hub.url)
            peak_sessions = endpoint.open_sessions()
            await until(lambda: endpoint.open_sessions() == 0 and _fds() <= baseline_fds and _tasks() <= baseline_tasks)
            async with mcp_client(hub.url) as client:  # and the hub still serves
                tools = await client.list_tools()
    assert peak_sessions > 0
    assert tools.tools
