"""Shared test harness: a real hub on loopback (port 0) over real subprocess servers.

Everything listens on 127.0.0.1 only; every wait is bounded; every process a test starts is
stopped by the test that started it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from anyio.abc import Process
from starlette.types import ASGIApp

from hub.app import Hub
from hub.config import HubConfig, parse_config
from hub.endpoint import HttpServer, bind_socket
from hub.signals import Changes
from tests.clients import mcp_client
from tests.fork_session import (  # the run's fork server: these hooks are this file's own
    FORK_LAUNCHER,
    FORK_SOCKET_ENV,
    pytest_collection_finish,  # noqa: F401
    pytest_configure,  # noqa: F401
    pytest_terminal_summary,  # noqa: F401
    pytest_unconfigure,  # noqa: F401
)

pytest_plugins = ["tests.parallel", "tests.cluster_fixtures", "tests.replica_fixtures"]
"""How tests share out among parallel workers (`tests.parallel`: `xdist_group`s); real Redis for
the cluster tests (`redis_server`); three `mcphub serve` replicas behind a real HAProxy for the
replica end-to-end tests (`replica_cluster`). The run's fork server, which forks the test
servers and `mcphub` runs, is started by this file's hooks (`tests.fork_session`: a plugin
module this file also imports cannot be one of `pytest_plugins`)."""

ROOT = Path(__file__).resolve().parent.parent
FIXTURE_SERVER = str(ROOT / "tests" / "servers" / "fixture_server.py")
FAULTY_SERVER = str(ROOT / "tests" / "servers" / "faulty_server.py")
"""The misbehaving fixture server (crashes, hangs, garbage on stdout, huge results, ...)."""
NPM_CACHE = ROOT / ".cache" / "npm"
NPM_PACKAGES = ("@modelcontextprotocol/server-everything@2026.8.31", "@modelcontextprotocol/server-memory@2026.8.31")
NPM_INSTALL_TIMEOUT_SECONDS = 600


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session", autouse=True)
def _private_state_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Hubs built without a `state_dir` (and `mcphub` subprocesses) keep their state file under
    a temporary XDG_STATE_HOME, never in the user's own state directory."""
    previous = os.environ.get("XDG_STATE_HOME")
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("xdg-state"))
    try:
        yield
    finally:
        if previous is None:
            del os.environ["XDG_STATE_HOME"]
        else:
            os.environ["XDG_STATE_HOME"] = previous


def forked_argv(*argv: str, direct: bool = False) -> list[str]:
    """The command line running `python *argv` (`SCRIPT ARGS...` or `-m MODULE ARGS...`): forked
    by the run's fork server (`tests/fork_server.py`, through `tests/fork_launcher.py`)
    while it runs, else (or with `direct=True`) `[sys.executable, *argv]` itself."""
    socket_path = os.environ.get(FORK_SOCKET_ENV)
    if not socket_path or direct:
        return [sys.executable, *argv]
    # -I -S: the launcher imports C modules of the standard library only, and starts in ~12 ms.
    return [sys.executable, "-I", "-S", FORK_LAUNCHER, socket_path, *argv]


def hub_command(*args: str, direct: bool = False) -> list[str]:
    """The argv of `mcphub ARGS...`: `python -m hub ARGS...`, forked as `forked_argv` says.
    To the test it behaves as a direct start: exit code, stdout/stderr, stdin, environment, cwd,
    and SIGTERM/SIGINT/SIGHUP sent to it reach the hub (`tests/test_fork_server.py`).
    `direct=True` for a test that needs a fresh interpreter or the very process it started."""
    return forked_argv("-m", "hub", *args, direct=direct)


def stdio_entry(script: str, *args: str, direct: bool = False, **extra: Any) -> dict[str, Any]:
    """A `servers:` entry running the test server `script` (`tests/servers/*.py`) over stdio
    with `args`, forked as `forked_argv` says."""
    command, *argv = forked_argv(script, *args, direct=direct)
    return {"command": command, "args": argv, **extra}


def fixture_entry(name: str, *args: str, direct: bool = False, **extra: Any) -> dict[str, Any]:
    """A `servers:` entry running the fixture server over stdio: forked by the run's fork
    server (`tests/fork_server.py`, through `tests/fork_launcher.py`) while it runs, else (or
    with `direct=True`) `python tests/servers/fixture_server.py` itself."""
    return stdio_entry(FIXTURE_SERVER, "--name", name, *args, direct=direct, **extra)


def faulty_entry(name: str, *args: str, direct: bool = False, **extra: Any) -> dict[str, Any]:
    """A `servers:` entry running the faulty server over stdio (forked as `fixture_entry`)."""
    return stdio_entry(FAULTY_SERVER, "--name", name, *args, direct=direct, **extra)


def tool_text(result: types.CallToolResult) -> str:
    """The text of a tool result's first content block."""
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    return block.text


async def until(condition: Callable[[], bool | Awaitable[bool]]) -> None:
    """Poll `condition` until it holds (the caller bounds the wait with `anyio.fail_after`).

    Only for waits on an outside process (a child's pid, a file it writes, a port, another
    process's HTTP or CLI answers, Redis): what the hub itself does is waited on through its
    public waits and change signals (`Hub.wait_for_server(server_id, *states, where=...)`,
    `Hub.server_changes`, `hub.signals.Changes`: `catalog.changes`, `bridge.changes`,
    `endpoint.subscriptions.changes`, `fleet.startup.changes`; `hub.signals.wait_for_any` for a
    condition over several of them) or a log line (`log_lines`); what a test's own client hears
    is waited on through a `Changes` its handler notifies."""
    while True:
        value = condition()
        if value if isinstance(value, bool) else await value:
            return
        await anyio.sleep(0.02)


class LogLines(logging.Handler):
    """Every log message while installed (`log_lines` fixture), and a wait on one: a test waits
    on a log line, never polls `caplog`. Levels are the loggers' own (`caplog.set_level`)."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []
        self.changes = Changes()
        self._loop_thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        # An anyio event is set only from its loop's thread; a line logged by a worker thread is
        # seen at the next change (the hub's server stderr and relay lines come from the loop).
        if threading.get_ident() == self._loop_thread:
            self.changes.notify()

    def seen(self, text: str) -> bool:
        return any(text in message for message in self.messages)

    async def wait_for(self, text: str) -> None:
        """Return once a message containing `text` was logged (bound it with a timeout)."""
        await self.changes.wait_for(lambda: self.seen(text))


@pytest.fixture
def log_lines() -> Iterator[LogLines]:
    """A `LogLines` on the root logger for the test's duration."""
    handler = LogLines()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


@dataclass
class RunningHub:
    hub: Hub
    base_url: str

    @property
    def url(self) -> str:
        """The aggregated endpoint."""
        return f"{self.base_url}/mcp"

    def server_url(self, server_id: str) -> str:
        return f"{self.base_url}/servers/{server_id}/mcp"


@asynccontextmanager
async def serve_app(app: ASGIApp) -> AsyncIterator[str]:
    """Serve an ASGI app on 127.0.0.1:<free port> until the block exits; yields its base URL."""
    sock = bind_socket("127.0.0.1", 0)
    http = HttpServer(app, sock)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(http.serve)
            try:
                yield f"http://127.0.0.1:{sock.getsockname()[1]}"
            finally:
                http.stop()
    finally:
        sock.close()  # uvicorn closes it once it served; not when the block ended before that


@asynccontextmanager
async def running_hub(
    servers: dict[str, Any], *, start_timeout: float = 30.0, config: HubConfig | None = None, **settings: Any
) -> AsyncIterator[RunningHub]:
    """Serve a hub over `servers` (or the whole `config`) on 127.0.0.1:<free port>; yields once
    every server has finished its first start attempt."""
    with tempfile.TemporaryDirectory(prefix="mcphub-state-") as state_dir:
        if config is None:
            # Each hub gets a state directory of its own: its own hub_id and pins.
            settings.setdefault("state_dir", state_dir)
            config = parse_config({"servers": servers, **settings}, file="<test>")
        hub = Hub(config)
        async with serve_app(hub.http_app()) as base_url:
            with anyio.fail_after(start_timeout):
                await hub.wait_started()
            yield RunningHub(hub, base_url)


@asynccontextmanager
async def http_fixture(
    *args: str, transport: str = "http", script: str = FIXTURE_SERVER
) -> AsyncIterator[tuple[str, Process]]:
    """A fixture server (`script`: the fixture server, or `FAULTY_SERVER`) as a remote server on
    127.0.0.1: yields (its MCP URL, its process), which is killed afterwards. Forked as
    `forked_argv` says. To take the server down mid-test, `kill_server(url, process)`: killing
    `process` kills a forked server only a moment after its launcher, when the zygote kills it,
    so the test's next request could still reach it."""
    process = await anyio.open_process(
        forked_argv(script, "--transport", transport, "--port", "0", *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        # Importing the SDK takes 1.5 s of CPU; on 2 cores shared by parallel workers (and other
        # test runs) a start took over 20 s.
        with anyio.fail_after(60):
            buffer = b""
            while b"\n" not in buffer:
                buffer += await process.stdout.receive()
        line = buffer.split(b"\n", 1)[0].decode()
        assert line.startswith("PORT="), line
        path = "/sse" if transport == "sse" else "/mcp"
        yield f"http://127.0.0.1:{line.removeprefix('PORT=')}{path}", process
    finally:
        if process.returncode is None:
            process.kill()
        with anyio.move_on_after(5, shield=True):
            # Closes the pipes too: a forked server's ends close only when the zygote has killed
            # it, a moment after its launcher died, so EOF may not have come yet.
            await process.aclose()


async def kill_server(url: str, process: Process) -> None:
    """SIGKILL the fixture or faulty server at `url`, started as `process` (`http_fixture`:
    forked or not), by the pid its `pid` tool answers, and return once `process` has exited: a
    forked server's launcher exits, as killed by SIGKILL too, only when the zygote has reaped the
    server, so the server is gone (its port refuses, its streams are broken)."""
    with anyio.fail_after(30):
        async with mcp_client(url) as client:
            pid = int(tool_text(await client.call_tool("pid", {})))
        os.kill(pid, signal.SIGKILL)
        await process.wait()


def faulty_http(*args: str, transport: str = "http") -> AbstractAsyncContextManager[tuple[str, Process]]:
    """The faulty server as a remote server (see `http_fixture`)."""
    return http_fixture(*args, transport=transport, script=FAULTY_SERVER)


def free_port() -> int:
    """A port free right now on 127.0.0.1 (for third-party servers that take a port number)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def npm_servers() -> Path:
    """`node_modules/.bin` holding the npm reference servers, installed once into .cache/npm.

    Skipped, with the reason shown, when node/npm are absent or the registry cannot be reached.
    """
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("npm/node not installed: the npm reference servers cannot run here")
    bin_dir = NPM_CACHE / "node_modules" / ".bin"
    stamp = NPM_CACHE / ".installed"
    wanted = "\n".join(NPM_PACKAGES)

    def installed() -> bool:
        return stamp.is_file() and stamp.read_text() == wanted and (bin_dir / "mcp-server-everything").exists()

    if installed():
        return bin_dir
    NPM_CACHE.mkdir(parents=True, exist_ok=True)
    # Parallel test workers (pytest-xdist) each run this fixture: one installs, the others wait.
    with (NPM_CACHE.parent / "npm.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if installed():
            return bin_dir
        try:
            subprocess.run(
                [
                    "npm",
                    "install",
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                    "--prefix",
                    str(NPM_CACHE),
                    *NPM_PACKAGES,
                ],
                check=True,
                capture_output=True,
                timeout=NPM_INSTALL_TIMEOUT_SECONDS,
                env={**os.environ, "npm_config_update_notifier": "false"},
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            detail = getattr(exc, "stderr", b"") or b""
            pytest.skip(f"npm install of the reference servers failed: {detail.decode(errors='replace')[-300:]}")
        stamp.write_text(wanted)
    return bin_dir


class Recorder:
    """A `ResilienceEvents` target (the fleet's event sink) that records every event as
    `(name, *args)`."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def __getattr__(self, name: str) -> Any:
        return lambda *args: self.events.append((name, *args))

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [event for event in self.events if event[0] == name]


INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}},
}
"""A handshake-era `initialize` request, for raw HTTP tests."""
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
"""The headers a Streamable HTTP POST carries."""
