"""Real peers for the cluster tests: a `redis-server` of the OS packages on 127.0.0.1, one per
test worker (pytest-xdist), with no persistence, in a temporary directory.

`make test` installs the packages first (`scripts/install-test-services.sh`); run alone, the
fixture runs the same script (as root, once, under a file lock) and skips with the script's
reason when `redis-server` is still missing. Fixtures:

- `redis_server`: the worker's Redis, flushed before each test, running (restarted if a test
  left it killed). `kill()` and `restart()` (same port) simulate an outage inside a test.
"""

from __future__ import annotations

import fcntl
import os
import selectors
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis

from tests.conftest import RunningHub, running_hub, until

ROOT = Path(__file__).resolve().parent.parent
INSTALL_SCRIPT = ROOT / "scripts" / "install-test-services.sh"
START_TIMEOUT_SECONDS = 15.0
INSTALL_TIMEOUT_SECONDS = 900


def find_redis_server() -> str | None:
    found = shutil.which("redis-server")
    if found is None and os.access("/usr/bin/redis-server", os.X_OK):
        found = "/usr/bin/redis-server"
    return found


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One `redis-server` process this test session started (and only ever stops itself)."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start on `port` and return once it accepts connections (bounded)."""
        assert not self.running
        process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--daemonize",
                "no",
                "--logfile",
                "",
                "--loglevel",
                "notice",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.process = process
        assert process.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        output = b""
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            while b"Ready to accept connections" not in output:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or process.poll() is not None:
                    self.kill()
                    raise RuntimeError(f"redis-server did not start: {output.decode(errors='replace')[-500:]}")
                if selector.select(remaining):
                    chunk = os.read(process.stdout.fileno(), 65536)
                    if not chunk:
                        continue
                    output += chunk
        # Its log is not read any more: send it nowhere, so a full pipe never stalls Redis.
        process.stdout.close()

    def kill(self) -> None:
        """SIGKILL the server (an outage: no goodbye to the clients) and reap it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def restart(self) -> None:
        """Start again on the same port (after `kill`)."""
        self.start()

    async def killed(self) -> None:
        await anyio.to_thread.run_sync(self.kill)

    async def restarted(self) -> None:
        await anyio.to_thread.run_sync(self.restart)

    def flush(self) -> None:
        with redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5) as client:
            client.flushall()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def installed_service(find: Callable[[], str | None], reason: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The program `find` locates, installed by the project's script
    (`scripts/install-test-services.sh`: redis-server and haproxy, as root) when missing, once
    per machine under a lock shared by the test workers; the test is skipped, with `reason` and
    what the script said, when it cannot be had."""
    binary = find()
    if binary is not None:
        return binary
    lock_path = tmp_path_factory.getbasetemp().parent / "install-test-services.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if find() is None:
            try:
                result = subprocess.run(
                    [str(INSTALL_SCRIPT)], capture_output=True, timeout=INSTALL_TIMEOUT_SECONDS, check=False
                )
                said = result.stderr.decode(errors="replace").strip()
                if said:
                    reason = f"{reason}: {said.splitlines()[-1]}"
            except (OSError, subprocess.TimeoutExpired) as exc:
                reason = f"{reason}: {INSTALL_SCRIPT.name} failed: {exc}"
    binary = find()
    if binary is None:
        pytest.skip(reason)
    return binary


@pytest.fixture(scope="session")
def redis_binary(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The `redis-server` program (`installed_service`)."""
    return installed_service(find_redis_server, "redis-server is not installed", tmp_path_factory)


@pytest.fixture(scope="session")
def _redis_session(redis_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(redis_binary, tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_server(_redis_session: RedisServer) -> RedisServer:
    """This worker's Redis, running and empty."""
    if not _redis_session.running:
        _redis_session.restart()
    _redis_session.flush()
    return _redis_session


# ---------------------------------------------------------------- hubs sharing one Redis


def _sha(key: str) -> str:
    import hashlib

    return hashlib.sha256(key.encode()).hexdigest()


CALLER_KEY = "cluster-caller-key-0123456789"
"""API key of principal `caller` (hub:call) on `replicas` hubs."""
OTHER_KEY = "cluster-other-key-0123456789"
"""API key of principal `other` (hub:call)."""
ADMIN_KEY = "cluster-admin-key-0123456789"
"""API key of principal `admin` (hub:admin)."""


def api_keys() -> dict[str, Any]:
    """`auth:` with the three keys above."""
    return {
        "api_keys": [
            {"id": "caller", "key_sha256": _sha(CALLER_KEY), "scopes": ["hub:call"]},
            {"id": "other", "key_sha256": _sha(OTHER_KEY), "scopes": ["hub:call"]},
            {"id": "admin", "key_sha256": _sha(ADMIN_KEY), "scopes": ["hub:admin"]},
        ]
    }


@asynccontextmanager
async def replicas(
    count: int, servers: dict[str, Any], redis_url: str, **settings: Any
) -> AsyncIterator[list[RunningHub]]:
    """`count` hubs on loopback over the same config, sharing `redis_url` (`cluster.redis_url`,
    calls bounded at 2 s for a loaded test machine); yields once each has its servers started
    and its shared state `ok`."""
    cluster = {"redis_url": redis_url, "redis_timeout_seconds": 2.0, **settings.pop("cluster", {})}
    async with AsyncExitStack() as stack:
        hubs = [
            await stack.enter_async_context(running_hub(servers, cluster=cluster, **settings)) for _ in range(count)
        ]
        with anyio.fail_after(15):
            await until(lambda: all(h.hub.store.health().status == "ok" for h in hubs))
        yield hubs
