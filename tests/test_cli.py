"""The `mcphub` CLI as a real subprocess (`python -m hub ...`): check, serve (HTTP and stdio),
servers, routes and call against a served hub, exit codes and one-line errors."""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream
from conftest import fixture_entry, free_port, hub_command, until
from mcp import Client, StdioServerParameters
from mcp_types import INVALID_PARAMS
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_MODERN_VERSION

from tests.clients import mcp_client

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
"""`slow`: every test here runs `mcphub` as a subprocess (1.5 s of CPU to import the SDK, each)."""

ONE_SHOT_TIMEOUT_SECONDS = 60.0
SERVE_START_TIMEOUT_SECONDS = 30.0
SERVE_STOP_TIMEOUT_SECONDS = 15.0
_ENDPOINT_LINE = re.compile(r"^mcphub: MCP endpoint (http://127\.0\.0\.1:(\d+)/mcp)$")
_CATALOG_LINE = re.compile(r"^mcphub: \d+ tools? in the catalog$")


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """Module scope, so one served hub can be shared by this module's read-only tests."""
    return "asyncio"


# --- helpers --------------------------------------------------------------------------------------


def _cli_env() -> dict[str, str]:
    """This environment without MCPHUB_* (a stray MCPHUB_CONFIG or MCPHUB_URL would change what runs)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("MCPHUB_")}


def _mcphub(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """One `mcphub` command to completion (bounded)."""
    return subprocess.run(
        hub_command(*args),
        capture_output=True,
        text=True,
        timeout=ONE_SHOT_TIMEOUT_SECONDS,
        cwd=cwd,
        env=_cli_env(),
    )


async def _mcphub_async(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`_mcphub` off the event loop (a served hub's process shares this loop)."""
    return await anyio.to_thread.run_sync(functools.partial(_mcphub, *args, cwd=cwd))


async def _mcphub_many(*commands: list[str]) -> list[subprocess.CompletedProcess[str]]:
    """Several independent `mcphub` commands at once (each is mostly interpreter start-up)."""
    results: list[subprocess.CompletedProcess[str] | None] = [None] * len(commands)

    async def run(index: int, command: list[str]) -> None:
        results[index] = await _mcphub_async(*command)

    async with anyio.create_task_group() as tg:
        for index, command in enumerate(commands):
            tg.start_soon(run, index, command)
    return [result for result in results if result is not None]


def _write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data, indent=2))  # JSON is YAML
    return path


def _assert_one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("mcphub: "), lines[0]
    return lines[0]


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def _wait_gone(pid: int, timeout_seconds: float = 10.0) -> None:
    """Wait, bounded, until `pid` no longer exists (not even as a zombie: someone reaped it)."""
    with anyio.fail_after(timeout_seconds):
        await until(lambda: _process_gone(pid))  # another process's table entry: no event to wait on


@dataclass
class _Served:
    process: Process
    base_url: str
    port: int


async def _read_line(stdout: BufferedByteReceiveStream) -> str:
    return (await stdout.receive_until(b"\n", 65536)).decode().rstrip("\r")


@asynccontextmanager
async def _serving(config: Path, log: Path) -> AsyncIterator[_Served]:
    """`mcphub serve -c config --port 0` in the background; yields once it has printed its
    endpoint and every server has had its first start attempt ("N tools in the catalog").
    Its stderr (the log) goes to `log`; on exit it gets SIGINT (Ctrl-C: a drain without the
    `shutdown_grace_seconds` SIGTERM would wait) and then SIGKILL if still running."""
    with log.open("wb") as stderr:
        process = await anyio.open_process(
            hub_command("serve", "-c", str(config), "--port", "0"),
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=_cli_env(),
        )
        try:
            assert process.stdout is not None
            stdout = BufferedByteReceiveStream(process.stdout)
            base_url, port = None, 0
            with anyio.fail_after(SERVE_START_TIMEOUT_SECONDS):
                while True:
                    line = await _read_line(stdout)
                    if match := _ENDPOINT_LINE.match(line):
                        base_url, port = match.group(1).removesuffix("/mcp"), int(match.group(2))
                    elif _CATALOG_LINE.match(line):
                        break
            assert base_url is not None, "serve printed no endpoint line"
            yield _Served(process, base_url, port)
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGINT)
                with anyio.move_on_after(SERVE_STOP_TIMEOUT_SECONDS, shield=True):
                    await process.wait()
            if process.returncode is None:
                process.kill()
                with anyio.move_on_after(5, shield=True):
                    await process.aclose()  # the pipes too: a forked hub's close a moment after its launcher died


def _two_fixture_servers() -> dict[str, Any]:
    return {"servers": {"fx": fixture_entry("fx"), "other": fixture_entry("other")}}


async def _servers_json(base_url: str) -> dict[str, dict[str, Any]]:
    result = await _mcphub_async("servers", "--url", base_url, "--json")
    assert result.returncode == 0, result.stderr
    return {s["server_id"]: s for s in json.loads(result.stdout)["servers"]}


async def _pids_of(base_url: str, *servers: str) -> list[int]:
    """The process ids of fixture servers, from their `pid` tool called through the hub."""
    results = await _mcphub_many(*(["call", f"{server}__pid", "--url", base_url] for server in servers))
    for result in results:
        assert result.returncode == 0, result.stderr
    return [int(result.stdout.strip()) for result in results]


@pytest.fixture(scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[_Served]:
    """One `mcphub serve` over fixture servers `fx` and `other`, shared by the read-only tests."""
    directory = tmp_path_factory.mktemp("served")
    config = _write_config(directory / "hub.yaml", _two_fixture_servers())
    async with _serving(config, directory / "serve.log") as running:
        yield running


# --- check ----------------------------------------------------------------------------------------


_BAD_CONFIGS = {
    "unknown-key": ("servers:\n  fx:\n    command: x\n    colour: blue\n", "servers.fx.colour"),
    "unresolved-variable": (
        "servers:\n  fx:\n    command: ${MCPHUB_TEST_SURELY_UNSET_VARIABLE}\n",
        "servers.fx.command",
    ),
    "bad-server-id": ("servers:\n  Not_Valid:\n    command: x\n", "servers.Not_Valid"),
    "invalid-yaml": ("servers:\n  fx: [unclosed\n", "line "),
}


@pytest.mark.parametrize("case", sorted(_BAD_CONFIGS))
def test_check_of_a_bad_config_exits_2_with_one_stderr_line_naming_the_file_and_key_path(
    tmp_path: Path, case: str
) -> None:
    text, where = _BAD_CONFIGS[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(text)

    result = _mcphub("check", "-c", str(path))

    assert result.returncode == 2, result
    line = _assert_one_error_line(result)
    assert line.startswith("mcphub: config error:")
    assert str(path) in line
    assert where in line


async def test_check_of_a_good_config_exits_0_and_names_its_servers(tmp_path: Path) -> None:
    path = _write_config(tmp_path / "hub.yaml", _two_fixture_servers())

    table, as_json = await _mcphub_many(["check", "-c", str(path)], ["check", "-c", str(path), "--json"])

    assert table.returncode == 0, table.stderr
    assert "OK" in table.stdout and "fx" in table.stdout and "other" in table.stdout
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["servers"] == ["fx", "other"]


async def test_check_connect_with_a_failing_server_shows_the_routes_of_the_others_and_exits_non_zero(
    tmp_path: Path,
) -> None:
    path = _write_config(
        tmp_path / "hub.yaml",
        {"servers": {"fx": fixture_entry("fx"), "broken": {"command": "/nonexistent/x", "timeout_seconds": 10}}},
    )

    table, as_json = await _mcphub_many(
        ["check", "--connect", "-c", str(path)], ["check", "--connect", "--json", "-c", str(path)]
    )

    assert table.returncode != 0
    assert "fx__echo" in table.stdout
    assert "broken" in _assert_one_error_line(table)
    assert as_json.returncode != 0
    data = json.loads(as_json.stdout)
    assert {"servers", "routes"} <= data.keys()
    states = {s["server_id"]: s["state"] for s in data["servers"]}
    assert states["fx"] == "ready"
    assert states["broken"] != "ready"
    assert "fx__echo" in {r["exposed"] for r in data["routes"]}


def test_check_connect_without_any_config_runs_the_embedded_demo_fleet_with_read_only_git(tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    repository.mkdir()
    subprocess.run(["git", "init", "-q", str(repository)], check=True, timeout=30)
    (repository / "README.md").write_text("demo\n")
    subprocess.run(["git", "-C", str(repository), "add", "README.md"], check=True, timeout=30)
    subprocess.run(
        ["git", "-C", str(repository), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one"],
        check=True,
        timeout=30,
    )
    assert not (repository / "hub.yaml").exists()

    result = _mcphub("check", "--connect", "--json", cwd=repository)

    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["config"] == "<embedded demo fleet>"
    exposed = {r["exposed"] for r in data["routes"]}
    assert {"time__get_current_time", "git__git_status", "git__git_log"} <= exposed
    assert not {"git__git_commit", "git__git_add", "git__git_reset", "git__git_checkout"} & exposed


# --- against a served hub -------------------------------------------------------------------------


async def test_servers_json_lists_every_server_of_the_served_hub_as_ready(served: _Served) -> None:
    servers = await _servers_json(served.base_url)

    assert set(servers) == {"fx", "other"}
    assert all(s["state"] == "ready" for s in servers.values()), servers


async def test_routes_with_a_pattern_shows_only_the_matching_routes(served: _Served) -> None:
    table, as_json = await _mcphub_many(
        ["routes", "fx__*", "--url", served.base_url], ["routes", "--url", served.base_url, "--json"]
    )

    assert table.returncode == 0, table.stderr
    assert "fx__echo" in table.stdout
    assert "other__echo" not in table.stdout
    assert as_json.returncode == 0, as_json.stderr
    routes = {r["exposed"]: r for r in json.loads(as_json.stdout)["routes"]}
    assert {"fx__echo", "other__echo"} <= routes.keys()
    assert routes["other__echo"]["server_id"] == "other"
    assert routes["other__echo"]["original"] == "echo"


async def test_call_prints_the_tools_text_and_exits_0(served: _Served) -> None:
    result = await _mcphub_async("call", "fx__echo", "--arg", "text=hello", "--url", served.base_url)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "hello"


async def test_call_of_a_tool_whose_result_is_an_error_exits_1(served: _Served) -> None:
    result = await _mcphub_async("call", "fx__fail", "--url", served.base_url)

    assert result.returncode == 1
    assert "it failed" in result.stdout


async def test_call_of_an_unknown_tool_exits_1_with_one_line_naming_invalid_params(served: _Served) -> None:
    result = await _mcphub_async("call", "nope__x", "--url", served.base_url)

    assert result.returncode == 1
    assert str(INVALID_PARAMS) in _assert_one_error_line(result)


async def test_call_with_json_args_and_json_output_prints_the_structured_content(served: _Served) -> None:
    result = await _mcphub_async("call", "fx__echo", "--json-args", '{"text": "x"}', "--json", "--url", served.base_url)

    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["structuredContent"] == {"text": "x"}
    assert data["isError"] is False


@pytest.mark.parametrize(
    "command",
    [
        ["servers"],
        ["routes"],
        ["call", "fx__echo", "--arg", "text=x"],
    ],
    ids=lambda command: command[0],
)
def test_a_command_against_a_hub_that_is_not_running_exits_1_with_one_line(command: list[str]) -> None:
    result = _mcphub(*command, "--url", f"http://127.0.0.1:{free_port()}")

    assert result.returncode == 1
    assert "cannot reach the hub" in _assert_one_error_line(result)


@pytest.mark.e2e
async def test_a_killed_server_is_restarted_while_others_serve_and_sigterm_stops_the_hub_and_its_children(
    tmp_path: Path,
) -> None:
    config = _write_config(tmp_path / "hub.yaml", _two_fixture_servers())
    async with _serving(config, tmp_path / "serve.log") as running:
        url = running.base_url
        fx_pid, killed_pid = await _pids_of(url, "fx", "other")

        os.kill(killed_pid, signal.SIGKILL)
        still = await _mcphub_async("call", "fx__echo", "--arg", "text=still here", "--url", url)
        assert still.returncode == 0, still.stderr
        assert still.stdout.strip() == "still here"

        async def other_restarting() -> bool:
            other = (await _servers_json(url))["other"]
            return other["state"] in ("restarting", "failed") or other["restarts"] >= 1

        async def other_ready() -> bool:
            return (await _servers_json(url))["other"]["state"] == "ready"

        with anyio.fail_after(10):
            await until(other_restarting)  # another process, through its CLI: no event to wait on
        await _wait_gone(killed_pid)  # the hub reaped its dead child: no zombie left behind

        with anyio.fail_after(10):
            await until(other_ready)
        (restarted_pid,) = await _pids_of(url, "other")
        assert restarted_pid != killed_pid

        running.process.terminate()
        with anyio.fail_after(SERVE_STOP_TIMEOUT_SECONDS):
            await running.process.wait()
        # SIGTERM drains (tests/test_drain.py) and a drained hub exits 0.
        assert running.process.returncode == 0, (tmp_path / "serve.log").read_text()[-2000:]

    for pid in (fx_pid, restarted_pid):
        await _wait_gone(pid)


# --- serve --stdio --------------------------------------------------------------------------------


async def _tool_names(client: Client) -> set[str]:
    return {tool.name for tool in (await client.list_tools()).tools}


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_serve_stdio_serves_the_catalog_to_an_sdk_client_which_learns_of_it_by_list_changed(
    tmp_path: Path, mode: str
) -> None:
    config = _write_config(tmp_path / "hub.yaml", {"servers": {"fx": fixture_entry("fx")}})
    command, *args = hub_command("serve", "--stdio", "-c", str(config))
    params = StdioServerParameters(command=command, args=args)
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    with anyio.fail_after(30):
        async with mcp_client(params, mode=mode, message_handler=on_message) as client:
            version = client.protocol_version
            if mode == "legacy":
                # The session is known to the hub from its first request on, so a change after
                # this listing is announced with notifications/tools/list_changed.
                names = await _tool_names(client)
                if "fx__echo" not in names:
                    await changed.wait()
                    names = await _tool_names(client)
            else:
                async with client.listen(tools_list_changed=True) as events:
                    names = await _tool_names(client)
                    if "fx__echo" not in names:
                        async for _event in events:
                            break
                        names = await _tool_names(client)
            result = await client.call_tool("fx__echo", {"text": f"over stdio, {mode}"})

    if mode == "legacy":
        assert version in HANDSHAKE_PROTOCOL_VERSIONS
    else:
        assert version == LATEST_MODERN_VERSION
    assert "fx__echo" in names
    assert not result.is_error
    assert result.content[0].type == "text" and result.content[0].text == f"over stdio, {mode}"


@pytest.mark.e2e
async def test_serve_stdio_answers_the_first_tools_list_with_the_fleets_tools(tmp_path: Path) -> None:
    # A server that takes 3 s to start (as npx- or uvx-launched servers often do), so the host's
    # first tools/list surely comes before the server is up.
    # direct: the wrapper below takes the script as sys.argv[1] (no fork-server launcher in front).
    entry = fixture_entry("fx", direct=True)
    slow_start = (
        "import runpy, sys, time; time.sleep(3); sys.argv = sys.argv[1:]; "
        "runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    entry["args"] = ["-c", slow_start, *entry["args"]]
    config = _write_config(tmp_path / "hub.yaml", {"servers": {"fx": entry}})
    command, *args = hub_command("serve", "--stdio", "-c", str(config))
    params = StdioServerParameters(command=command, args=args)

    with anyio.fail_after(30):
        async with mcp_client(params) as client:
            names = await _tool_names(client)

    assert "fx__echo" in names
