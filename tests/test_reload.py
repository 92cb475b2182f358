"""Hot reload: a running hub re-reads its config file (`POST /admin/reload`, `mcphub reload`,
SIGHUP) and applies it without losing a call: added servers start, removed ones drain, changed
ones are replaced, unchanged ones keep their process; a bad file is rejected whole."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
import yaml
from mcp import Client

from hub.app import Hub
from hub.config import load_config
from hub.reload import plan_reload
from hub.signals import Changes
from tests.clients import http_client, mcp_client
from tests.conftest import RunningHub, hub_command, serve_app, until
from tests.conftest import faulty_entry as faulty
from tests.conftest import tool_text as _text

pytestmark = pytest.mark.anyio


def write_config(path: Path, servers: dict[str, Any], **settings: Any) -> None:
    path.write_text(yaml.safe_dump({"servers": servers, **settings}))


@asynccontextmanager
async def serving(config_file: Path) -> AsyncIterator[RunningHub]:
    """A hub started from `config_file` (and reloading from it) on 127.0.0.1:<free port>."""
    async with serve_hub(Hub(load_config(config_file), config_loader=lambda: load_config(config_file))) as running:
        yield running


@asynccontextmanager
async def serve_hub(hub: Hub) -> AsyncIterator[RunningHub]:
    """Serve `hub` on 127.0.0.1:<free port>; yields once every server had its first attempt
    and the HTTP app is up."""
    async with serve_app(hub.http_app()) as base_url:
        with anyio.fail_after(30):
            await hub.wait_started()
            async with http_client(timeout=30) as probe:  # answered once the app's lifespan is up
                assert (await probe.get(f"{base_url}/readyz")).status_code == 200
        yield RunningHub(hub, base_url)


async def post_reload(hub: RunningHub) -> tuple[int, dict[str, Any]]:
    async with http_client(timeout=60) as http:
        response = await http.post(f"{hub.base_url}/admin/reload")
    return response.status_code, response.json()


async def _tool_names(client: Client) -> set[str]:
    return {tool.name for tool in (await client.list_tools()).tools}


def test_the_plan_sorts_servers_and_flags_settings_that_need_a_restart() -> None:
    from hub.config import parse_config

    old = parse_config({"servers": {"a": faulty("a"), "b": faulty("b"), "c": faulty("c")}}, file="<old>")
    new = parse_config(
        {
            "listen": {"port": 9999},
            "drain_timeout_seconds": 5,
            "servers": {"a": faulty("a"), "b": faulty("b", "--state-file", "x"), "d": faulty("d")},
        },
        file="<new>",
    )
    plan = plan_reload(old, new)
    assert (plan.added, plan.removed, plan.replaced, plan.unchanged) == (("d",), ("c",), ("b",), ("a",))
    assert plan.restart_required == ("listen",)
    assert plan_reload(old, old).changes_servers is False


async def test_an_added_server_starts_an_unchanged_one_keeps_its_process_and_clients_hear_list_changed(
    tmp_path: Path,
) -> None:
    config_file = tmp_path / "hub.yaml"
    write_config(config_file, {"keep": faulty("keep")})
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    async with serving(config_file) as hub:
        with anyio.fail_after(30):
            async with mcp_client(hub.url, mode="legacy", message_handler=on_message) as client:
                pid_before = _text(await client.call_tool("keep__pid", {}))
                write_config(config_file, {"keep": faulty("keep"), "fresh": faulty("fresh")})
                code, report = await post_reload(hub)
                await changed.wait()
                names = await _tool_names(client)
                pid_after = _text(await client.call_tool("keep__pid", {}))
                fresh = _text(await client.call_tool("fresh__echo", {"text": "hello"}))
            async with mcp_client(hub.server_url("fresh")) as direct:
                direct_echo = _text(await direct.call_tool("echo", {"text": "direct"}))
    assert code == 200
    assert report["status"] == "applied"
    assert (report["added"], report["removed"], report["replaced"], report["unchanged"]) == (
        ["fresh"],
        [],
        [],
        ["keep"],
    )
    assert report["states"] == {"fresh": "ready"}
    assert pid_after == pid_before
    assert "fresh__echo" in names
    assert fresh == "hello"
    assert direct_echo == "direct"


async def test_a_bad_config_is_rejected_whole_and_a_listen_change_is_reported_as_needing_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config_file = tmp_path / "hub.yaml"
    write_config(config_file, {"keep": faulty("keep")})
    async with serving(config_file) as hub:
        # A valid new server next to an invalid key: nothing of it may be applied.
        write_config(config_file, {"keep": faulty("keep"), "fresh": faulty("fresh", timeout_secs=3)})
        with anyio.fail_after(30):
            code, report = await post_reload(hub)
            async with mcp_client(hub.url) as client:
                echo = _text(await client.call_tool("keep__echo", {"text": "still here"}))
                names = await _tool_names(client)
            async with http_client() as http:
                metrics = (await http.get(f"{hub.base_url}/metrics")).text
            # A setting that cannot change live is reported, and the running value is kept.
            write_config(config_file, {"keep": faulty("keep")}, listen={"host": "127.0.0.1", "port": 1})
            listen_code, listen_report = await post_reload(hub)
            running_port = hub.hub.config.listen.port
    assert code == 400
    assert report["status"] == "rejected"
    assert "servers.fresh.timeout_secs" in report["error"]
    assert echo == "still here"
    assert not any(name.startswith("fresh__") for name in names)
    assert 'mcphub_reloads_total{result="rejected"} 1.0' in metrics
    assert any("reload rejected" in r.getMessage() and "timeout_secs" in r.getMessage() for r in caplog.records)
    assert listen_code == 200
    assert listen_report["status"] == "unchanged"
    assert listen_report["restart_required"] == ["listen"]
    assert running_port != 1


async def test_a_removed_server_finishes_its_in_flight_call_and_one_past_the_drain_timeout_is_stopped(
    tmp_path: Path,
) -> None:
    config_file = tmp_path / "hub.yaml"
    write_config(config_file, {"keep": faulty("keep"), "gone": faulty("gone"), "stuck": faulty("stuck")})
    async with serving(config_file) as hub:
        # White-box: each removed connection's own state, read after it left the fleet.
        gone, stuck = hub.hub.fleet.get("gone"), hub.hub.fleet.get("stuck")
        assert gone is not None and stuck is not None
        answers: list[str] = []
        failures: list[BaseException] = []
        with anyio.fail_after(30):
            async with mcp_client(hub.url) as client, anyio.create_task_group() as tg:

                async def slow_call() -> None:
                    answers.append(_text(await client.call_tool("gone__slow", {"seconds": 1.0})))

                async def hanging_call() -> None:
                    try:
                        await client.call_tool("stuck__hang", {})
                    except Exception as exc:
                        failures.append(exc)

                tg.start_soon(slow_call)
                await hub.hub.wait_for_server("gone", where=lambda s: s.in_flight > 0)
                write_config(config_file, {"keep": faulty("keep"), "stuck": faulty("stuck")})
                code, report = await post_reload(hub)
                names = await _tool_names(client)

                tg.start_soon(hanging_call)
                await hub.hub.wait_for_server("stuck", where=lambda s: s.in_flight > 0)
                write_config(config_file, {"keep": faulty("keep")}, drain_timeout_seconds=0.5)
                stuck_code, stuck_report = await post_reload(hub)
    assert code == 200
    assert report["removed"] == ["gone"]
    assert answers == ["done"]
    assert report["drain_seconds"]["gone"] > 0
    assert report["drain_timed_out"] == []
    assert not any(name.startswith("gone__") for name in names)
    assert hub.hub.fleet.get("gone") is None
    assert gone.state.value == "stopped"

    assert stuck_code == 200
    assert stuck_report["removed"] == ["stuck"]
    assert stuck_report["drain_timed_out"] == ["stuck"]
    assert len(failures) == 1
    assert stuck.state.value == "stopped"


@pytest.mark.slow
async def test_no_call_is_lost_on_unchanged_or_replaced_servers_during_a_reload(tmp_path: Path) -> None:
    config_file = tmp_path / "hub.yaml"
    write_config(config_file, {"keep": faulty("keep"), "swap": faulty("swap")})
    async with serving(config_file) as hub:
        answered: list[tuple[str, str]] = []
        answers_changed = Changes()
        failed: list[tuple[str, str]] = []
        stop = anyio.Event()

        async def caller(route: str, n: int, mode: str) -> None:
            async with mcp_client(hub.url, mode=mode) as client:
                for i in range(100_000):
                    if stop.is_set():
                        return
                    token = f"{route}-{n}-{i}"
                    try:
                        if n == 0:  # one slow caller per server keeps a call in flight at the switch
                            result = await client.call_tool(f"{route}__slow", {"seconds": 0.2})
                            token = "done"
                        else:
                            result = await client.call_tool(f"{route}__echo", {"text": token})
                        answered.append((token, _text(result)))
                        answers_changed.notify()
                    except Exception as exc:
                        failed.append((token, repr(exc)))

        with anyio.fail_after(60):
            async with mcp_client(hub.url) as probe:
                keep_pid = _text(await probe.call_tool("keep__pid", {}))
                swap_pid = _text(await probe.call_tool("swap__pid", {}))
            write_config(config_file, {"keep": faulty("keep"), "swap": faulty("swap", timeout_seconds=30)})
            async with anyio.create_task_group() as tg:
                for n in range(6):
                    for route in ("keep", "swap"):
                        tg.start_soon(caller, route, n, "legacy" if n % 2 else "auto")
                await answers_changed.wait_for(lambda: len(answered) >= 100)
                code, report = await post_reload(hub)
                after_reload = len(answered)
                await answers_changed.wait_for(lambda: len(answered) >= after_reload + 100)
                stop.set()
            async with mcp_client(hub.url) as probe:
                keep_pid_after = _text(await probe.call_tool("keep__pid", {}))
                swap_pid_after = _text(await probe.call_tool("swap__pid", {}))
    assert code == 200
    assert report["replaced"] == ["swap"]
    assert report["unchanged"] == ["keep"]
    assert failed == []
    assert all(token == text for token, text in answered)
    assert keep_pid_after == keep_pid
    assert swap_pid_after != swap_pid
    assert report["drain_timed_out"] == []


@pytest.mark.e2e
async def test_mcphub_reload_and_sighup_make_a_running_mcphub_serve_reload_its_file(tmp_path: Path) -> None:
    config_file = tmp_path / "hub.yaml"
    write_config(config_file, {"keep": faulty("keep")})
    process = await anyio.open_process(
        hub_command("serve", "-c", str(config_file), "--port", "0", "--json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        with anyio.fail_after(60):
            buffer = b""
            base_url = ""
            while not base_url:
                buffer += await process.stdout.receive()
                for line in buffer.decode().splitlines():
                    if '"listening"' in line:
                        base_url = json.loads(line)["url"].removesuffix("/mcp")
            write_config(config_file, {"keep": faulty("keep"), "viacli": faulty("viacli")})
            cli = await anyio.run_process(hub_command("reload", "--url", base_url, "--json"), check=False)
            write_config(config_file, {"keep": faulty("keep"), "viacli": faulty("viacli"), "viahup": faulty("viahup")})
            os.kill(process.pid, signal.SIGHUP)
            states: dict[str, str] = {}

            async def viahup_ready() -> bool:  # another process, through its admin API
                async with http_client() as http:
                    servers = (await http.get(f"{base_url}/admin/servers")).json()["servers"]
                states.clear()
                states.update({s["server_id"]: s["state"] for s in servers})
                return states.get("viahup") == "ready"

            await until(viahup_ready)
            config_file.write_text("servers: [not, a, map]\n")
            bad = await anyio.run_process(hub_command("reload", "--url", base_url), check=False)
    finally:
        process.terminate()
        with anyio.move_on_after(15, shield=True):
            await process.wait()
        if process.returncode is None:
            process.kill()
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["added"] == ["viacli"]
    assert states == {"keep": "ready", "viacli": "ready", "viahup": "ready"}
    assert bad.returncode == 2
    assert b"reload rejected" in bad.stderr


@pytest.mark.e2e
@pytest.mark.no_cover  # a load test: tracing its 1,000 in-process clients only adds CPU
@pytest.mark.serial  # beside other workers' tests it misses its bounds (measured: README, Tests)
async def test_a_thousand_calls_in_flight_across_a_reload_are_all_answered(tmp_path: Path) -> None:
    """SECURITY.md case 45: hot reload with 1,000 calls in flight loses none (half of them on a
    server the reload replaces, which is drained while the new one takes new calls)."""
    limits = {"max_concurrency": 1000, "max_queue": 1000}
    config_file = tmp_path / "hub.yaml"
    write_config(config_file, {"keep": faulty("keep", **limits), "swap": faulty("swap", **limits)})
    async with serving(config_file) as hub:
        answers: list[str] = []
        failures: list[str] = []

        async def client_calls(route: str, calls: int) -> None:
            async with mcp_client(hub.url) as client, anyio.create_task_group() as tg:

                async def one() -> None:
                    try:
                        answers.append(_text(await client.call_tool(f"{route}__slow", {"seconds": 15.0})))
                    except Exception as exc:
                        failures.append(repr(exc))

                for _ in range(calls):
                    tg.start_soon(one)

        # A bound, not a speed target: 1,000 in-process clients take 30-60 s on 2 idle cores and
        # several times that on a loaded machine.
        with anyio.fail_after(300):
            async with anyio.create_task_group() as tg:
                for index in range(10):
                    tg.start_soon(client_calls, "keep" if index % 2 else "swap", 100)
                # 500 calls each, all in flight at once (max_concurrency 1000).
                keep = await hub.hub.wait_for_server("keep", where=lambda s: s.in_flight >= 500)
                swap = await hub.hub.wait_for_server("swap", where=lambda s: s.in_flight >= 500)
                in_flight_at_reload = keep.in_flight + swap.in_flight
                write_config(
                    config_file,
                    {"keep": faulty("keep", **limits), "swap": faulty("swap", timeout_seconds=30, **limits)},
                )
                code, report = await post_reload(hub)
    print(f"\n1000 calls, {in_flight_at_reload} in flight at the reload; drain {report['drain_seconds']}")
    assert code == 200 and report["replaced"] == ["swap"]
    assert failures == []
    assert answers == ["done"] * 1000
    assert report["drain_timed_out"] == []
