"""stdio supervision end to end (issue 5 item 5; SECURITY.md cases 27, 31, 33, 34): the
misbehaving server tests/servers/faulty_server.py runs as a real subprocess behind a running hub,
and every assertion goes through MCP calls on the hub, its admin API or the `mcphub` CLI.

Measured values (crash detection, time to restart, shutdown durations) are printed; run with
`-s` to see them.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import time
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client, MCPError
from mcp_types import CONNECTION_CLOSED

from hub.app import Hub
from hub.servers import ServerState
from tests.clients import http_client, mcp_client
from tests.conftest import FAULTY_SERVER, ROOT, faulty_entry, forked_argv, hub_command, running_hub, until
from tests.conftest import tool_text as _text

pytestmark = pytest.mark.anyio


def _alive(pid: int) -> bool:
    """Whether `pid` exists at all (a zombie counts: its /proc entry is still there)."""
    return Path(f"/proc/{pid}").exists()


async def _admin_servers(http: httpx2.AsyncClient, base_url: str) -> dict[str, dict[str, Any]]:
    response = await http.get(f"{base_url}/admin/servers")
    assert response.status_code == 200
    return {s["server_id"]: s for s in response.json()["servers"]}


def _skip_records(caplog: pytest.LogCaptureFixture, server_id: str) -> list[logging.LogRecord]:
    prefix = f"[{server_id}] skip"
    return [r for r in caplog.records if r.name == "adapters.stdio" and r.getMessage().startswith(prefix)]


async def test_garbage_on_stdout_is_skipped_and_logged_and_the_session_survives(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="adapters.stdio")
    secret = "s3cr3t-token-value"
    leaky = {
        "command": "/bin/sh",
        "args": ["-c", f'echo "my token is $LEAKY_TOKEN"; exec {shlex.join(forked_argv(FAULTY_SERVER))} --name leaky'],
        "env": {"LEAKY_TOKEN": secret},
    }
    async with running_hub({"noisy": faulty_entry("noisy", "--garbage-at-start"), "leaky": leaky}) as hub:
        with anyio.fail_after(20):
            async with mcp_client(hub.url) as client:
                assert hub.hub.server_status("noisy").state is ServerState.READY
                assert hub.hub.server_status("leaky").state is ServerState.READY
                pid = _text(await client.call_tool("noisy__pid", {}))
                assert _text(await client.call_tool("noisy__echo", {"text": "after start"})) == "after start"
                for i in range(3):
                    got = await client.call_tool("noisy__garbage_then_echo", {"text": f"mid {i}"})
                    assert _text(got) == f"mid {i}"
                assert _text(await client.call_tool("noisy__pid", {})) == pid
                noisy = hub.hub.server_status("noisy")
    assert noisy.restarts == 0
    records = _skip_records(caplog, "noisy")
    # 3 lines at start + 9 mid-session; the log is rate-limited to 5 lines per 10 s.
    assert len(records) == 5
    messages = [r.getMessage() for r in records]
    assert any("invalid UTF-8" in m and "\\xff\\xfe" in m for m in messages)
    assert any("\\x1b[31m" in m for m in messages)  # ANSI escapes are logged escaped, never raw
    assert all("\x1b" not in m and r.exc_info is None for m, r in zip(messages, records, strict=True))
    # A configured secret printed on stdout is masked in the log, like stderr lines.
    leaked = [r.getMessage() for r in _skip_records(caplog, "leaky")]
    assert len(leaked) == 1 and "my token is ***" in leaked[0]
    assert secret not in caplog.text


async def test_a_stdout_line_over_max_line_bytes_that_is_not_json_rpc_kills_and_restarts_the_child() -> None:
    """An endless line of garbage answers nothing and may never end: the child is killed as soon
    as the line passes the cap. An oversized *answer* only fails its own call (tests/test_caps.py)."""
    _reset_peak_rss()
    peak_before = _peak_rss_bytes()
    servers = {
        "flood": faulty_entry("flood"),  # default max_line_bytes: 4 MiB
        "big": faulty_entry("big", max_line_bytes=65536),
    }
    async with running_hub(servers) as hub:
        with anyio.fail_after(40):
            async with mcp_client(hub.url) as client:
                first_pid = int(_text(await client.call_tool("flood__pid", {})))
                big_pid = _text(await client.call_tool("big__pid", {}))
                started = time.monotonic()
                with pytest.raises(MCPError) as endless:
                    await client.call_tool("flood__endless_line", {})
                failed_after = time.monotonic() - started
                # The cap's boundary: ~60.1 kB on the wire passes, ~70.1 kB is refused, the child lives on.
                under = await client.call_tool("big__huge", {"size": 60_000})
                over = await client.call_tool("big__huge", {"size": 70_000})
                await hub.hub.wait_for_server("flood", ServerState.READY, where=lambda s: s.restarts == 1)
                second_pid = int(_text(await client.call_tool("flood__pid", {})))
                assert _text(await client.call_tool("flood__echo", {"text": "back"})) == "back"
                assert _text(await client.call_tool("big__pid", {})) == big_pid
                assert hub.hub.server_status("big").restarts == 0
    assert endless.value.code == CONNECTION_CLOSED
    assert "server 'flood'" in endless.value.message
    assert f"stdout line longer than {4 * 1024 * 1024} bytes that is not JSON-RPC; killed it" in endless.value.message
    assert second_pid != first_pid and not _alive(first_pid)
    # The reader never holds more than the cap plus one read chunk; the child wrote far more.
    assert _peak_rss_bytes() - peak_before < 64 * 1024 * 1024
    assert len(_text(under)) == 60_000
    assert over.is_error and _text(over) == "result from big exceeded 65536 bytes"
    print(f"\n[measure] endless line: caller failed after {failed_after * 1000:.0f} ms")


def _reset_peak_rss() -> None:
    """Reset this process's peak RSS to its current RSS (Linux `clear_refs` 5)."""
    Path("/proc/self/clear_refs").write_text("5")


def _peak_rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/self/status")


async def test_a_child_crashing_mid_call_fails_every_in_flight_call_from_the_crash_and_restarts() -> None:
    servers = {
        "crashy": faulty_entry("crashy", protocol="auto"),  # negotiates 2026-07-28 with the child
        "crashy-legacy": faulty_entry("crashy-legacy", protocol="legacy"),
        "bystander": faulty_entry("bystander"),
    }
    async with running_hub(servers) as hub:
        with anyio.fail_after(40):
            async with mcp_client(hub.url, cache=None) as client, mcp_client(hub.url) as other_client:
                async with anyio.create_task_group() as tg:
                    for server_id in ("crashy", "crashy-legacy"):
                        tg.start_soon(_crash_and_restart, hub.hub, server_id, client, other_client)


async def _crash_and_restart(hub: Hub, sid: str, client: Client, other_client: Client) -> None:
    """Crash server `sid` with one call in flight; both fail fast naming it; it comes back re-listed."""
    first_pid = int(_text(await client.call_tool(f"{sid}__pid", {})))
    hang_errors: list[tuple[float, MCPError]] = []

    async def hang() -> None:
        try:
            await other_client.call_tool(f"{sid}__hang", {})
        except MCPError as exc:
            hang_errors.append((time.monotonic(), exc))

    async with anyio.create_task_group() as tg:
        tg.start_soon(hang)
        await hub.wait_for_server(sid, where=lambda s: s.in_flight >= 1)
        started = time.monotonic()
        with pytest.raises(MCPError) as raised:
            await client.call_tool(f"{sid}__crash_mid_call", {})
        detected = time.monotonic() - started
    down_at = time.monotonic()
    assert _text(await client.call_tool("bystander__echo", {"text": "unhurt"})) == "unhurt"
    restarted = await hub.wait_for_server(sid, ServerState.READY, where=lambda s: s.restarts == 1)
    restart_seconds = time.monotonic() - down_at
    second_pid = int(_text(await client.call_tool(f"{sid}__pid", {})))
    names = [tool.name for tool in (await client.list_tools()).tools]

    assert raised.value.code == CONNECTION_CLOSED
    assert f"server '{sid}'" in raised.value.message and "exited with code 3" in raised.value.message
    assert len(hang_errors) == 1 and f"server '{sid}'" in hang_errors[0][1].message
    assert "exited with code 3" in hang_errors[0][1].message  # failed by the crash, not a timeout
    hang_detected = hang_errors[0][0] - started
    # How fast is for the benchmark and the log line below (README: ~50-90 ms); here only that
    # both calls failed long before the 60 s call timeout could have ended them (a 1.5 s bound
    # failed once under a CI run's load, at 1.63 s).
    assert max(detected, hang_detected) < 20, f"the crash took {detected:.3f} s to reach the caller"
    assert second_pid != first_pid and not _alive(first_pid)
    assert f"{sid}__echo" in names  # re-initialized and re-listed after the restart
    print(
        f"\n[measure] {sid} ({restarted.protocol_version}): crash detected by the caller in {detected * 1000:.0f} ms"
        f" (in-flight call failed in {hang_detected * 1000:.0f} ms); ready again {restart_seconds * 1000:.0f} ms later"
    )


@pytest.mark.e2e
async def test_crash_times_counts_across_restarts_in_the_state_file(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    async with running_hub({"flaky": faulty_entry("flaky", "--state-file", str(state))}) as hub:
        with anyio.fail_after(30):
            async with mcp_client(hub.url) as client:
                for crash in (1, 2):
                    with pytest.raises(MCPError):
                        await client.call_tool("flaky__crash_times", {"n": 2})
                    await hub.hub.wait_for_server("flaky", ServerState.READY, where=lambda s, n=crash: s.restarts == n)
                result = await client.call_tool("flaky__crash_times", {"n": 2})
    assert _text(result) == "ok after 2 crashes"


@pytest.mark.slow
async def test_a_crash_loop_leaves_the_server_failed_until_an_operator_restarts_it(tmp_path: Path) -> None:
    flag = tmp_path / "may-start"
    script = (
        f'if [ -e "{flag}" ]; then exec {shlex.join(forked_argv(FAULTY_SERVER))} --name loop; '
        'else echo "no flag, crashing" >&2; exit 7; fi'
    )
    servers = {
        "loop": {"command": "/bin/sh", "args": ["-c", script], "max_restarts": 2, "restart_window_seconds": 60},
        "bystander": faulty_entry("bystander"),
    }
    async with running_hub(servers) as hub, http_client(timeout=10) as http:
        loop = hub.hub.fleet.connections["loop"]  # white-box: its crash-loop flag
        with anyio.fail_after(40):
            await hub.hub.wait_for_server(
                "loop", ServerState.FAILED, where=lambda s: "crash loop" in (s.last_error or "")
            )
            status = (await _admin_servers(http, hub.base_url))["loop"]
            ready = (await http.get(f"{hub.base_url}/readyz")).json()
            assert {s["server_id"]: s["state"] for s in ready["servers"]} == {"loop": "failed", "bystander": "ready"}
            assert status["restarts"] == 2 and loop.crash_looped
            assert "exited 3 times within 60 s" in status["last_error"]
            assert "no flag, crashing" in status["last_error"]
            assert "mcphub restart loop" in status["last_error"]

            # The admin API brings it back once the cause is fixed.
            flag.touch()
            response = await http.post(f"{hub.base_url}/admin/servers/loop/restart")
            assert response.status_code == 202 and response.json()["state"] == "failed"
            await hub.hub.wait_for_server("loop", ServerState.READY)
            async with mcp_client(hub.url) as client:
                pid = int(_text(await client.call_tool("loop__pid", {})))

                # Break it again: kill the child; the loop starts afresh and fails again.
                flag.unlink()
                os.kill(pid, signal.SIGKILL)
                await hub.hub.wait_for_server(
                    "loop", ServerState.FAILED, where=lambda s: "crash loop" in (s.last_error or "")
                )
                assert hub.hub.server_status("loop").restarts == 3 + 2

                # ...and `mcphub restart` brings it back.
                flag.touch()
                cli = await anyio.run_process(
                    hub_command("restart", "loop", "--url", hub.base_url, "--wait", "20"),
                    check=False,
                    cwd=ROOT,
                )
                assert cli.returncode == 0, cli.stderr.decode()
                assert "server 'loop' restarted: ready" in cli.stdout.decode()
                assert hub.hub.server_status("loop").state is ServerState.READY and not loop.crash_looped
                assert _text(await client.call_tool("loop__echo", {"text": "back"})) == "back"
                assert not _alive(pid)

            unknown = await http.post(f"{hub.base_url}/admin/servers/nope/restart")
            assert unknown.status_code == 404 and "nope" in unknown.json()["error"]


async def test_a_reload_gives_a_crash_looped_server_a_new_start(tmp_path: Path) -> None:
    flag = tmp_path / "may-start"
    script = (
        f'if [ -e "{flag}" ]; then exec {shlex.join(forked_argv(FAULTY_SERVER))} --name loop; '
        'else echo "no flag, crashing" >&2; exit 7; fi'
    )
    servers = {"loop": {"command": "/bin/sh", "args": ["-c", script], "max_restarts": 1}}
    async with running_hub(servers) as hub:
        loop = hub.hub.fleet.connections["loop"]
        with anyio.fail_after(40):
            await loop.wait_until(lambda c: c.state is ServerState.FAILED and c.crash_looped)
            flag.touch()
            report = await hub.hub.reload(hub.hub.config)  # the same config: the server is unchanged
            await loop.wait_until(lambda c: c.state is ServerState.READY)
    assert report.status == "unchanged"
    assert hub.hub.fleet.connections["loop"] is loop and not loop.crash_looped


@pytest.mark.slow
async def test_shutdown_closes_stdin_then_sigterm_then_sigkill_and_leaves_no_process(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="hub.server_stderr")
    servers = {
        # stdin closed -> ignored -> SIGTERM after the 2 s grace ends it.
        "deaf": faulty_entry("deaf", "--ignore-stdin-eof"),
        # stdin closed -> ignored -> SIGTERM ignored -> SIGKILL 2 s later.
        "stubborn": faulty_entry("stubborn", "--ignore-stdin-eof", "--ignore-sigterm"),
    }
    gone_after: dict[str, float] = {}

    async def watch(server_id: str, pid: int, started: float) -> None:
        with anyio.move_on_after(15):  # /proc has no event to wait on: poll, at most 15 s
            await until(lambda: not _alive(pid))
            gone_after[server_id] = time.monotonic() - started

    async with anyio.create_task_group() as watchers:
        async with running_hub(servers) as hub:
            with anyio.fail_after(20):
                async with mcp_client(hub.url) as client:
                    pids = {sid: int(_text(await client.call_tool(f"{sid}__pid", {}))) for sid in servers}
            started = time.monotonic()
            for server_id, pid in pids.items():
                watchers.start_soon(watch, server_id, pid, started)
        shutdown = time.monotonic() - started
    assert set(gone_after) == set(servers), f"still alive after 15 s: {set(servers) - set(gone_after)}"
    for pid in pids.values():
        assert not _alive(pid), f"process {pid} is still there (zombie or alive)"
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert 1.9 <= gone_after["deaf"] <= 3.5, gone_after
    assert 3.9 <= gone_after["stubborn"] <= 6.5, gone_after
    assert shutdown <= 7.0
    ignored = [r for r in caplog.records if "stdin closed, ignoring EOF" in r.getMessage()]
    assert len(ignored) == 2  # both saw their stdin close first
    print(
        f"\n[measure] shutdown: EOF-ignoring child gone after {gone_after['deaf']:.2f} s (SIGTERM), "
        f"EOF+SIGTERM-ignoring child after {gone_after['stubborn']:.2f} s (SIGKILL); hub exit {shutdown:.2f} s"
    )


async def test_the_hubs_server_status_and_wait_follow_a_killed_server_back_and_refuse_an_unknown_one() -> None:
    async with running_hub({"fx": faulty_entry("fx"), "other": faulty_entry("other")}) as hub:
        before = hub.hub.server_status("fx")
        with anyio.fail_after(30):
            async with mcp_client(hub.url) as client:
                os.kill(int(_text(await client.call_tool("fx__pid", {}))), signal.SIGKILL)
                # Down from its loss until the restarted child has listed (backoff, then a start).
                down = await hub.hub.wait_for_server("fx", ServerState.RESTARTING, ServerState.FAILED)
                back = await hub.hub.wait_for_server("fx", ServerState.READY, where=lambda s: s.restarts == 1)
                already = await hub.hub.wait_for_server("other", ServerState.READY)  # at once: it is
        with pytest.raises(KeyError):
            hub.hub.server_status("nope")
        with pytest.raises(KeyError):
            await hub.hub.wait_for_server("nope", ServerState.READY)
    assert (before.server_id, before.state, before.restarts, before.transport) == ("fx", ServerState.READY, 0, "stdio")
    assert before.tools > 0 and before.last_error is None
    assert down.state in (ServerState.RESTARTING, ServerState.FAILED) and down.last_error
    assert back.state is ServerState.READY and back.restarts == 1 and back.last_error is None
    assert already.server_id == "other" and already.restarts == 0
