"""Real peers for the multi-replica end-to-end tests: three `mcphub serve` processes over one
config file (a cluster key, a real Redis, API keys on) behind a real HAProxy balancing round-robin
with no stickiness and a health check on `/readyz` (`tests.balancer`), all on 127.0.0.1.

- `Replica`: one `mcphub serve --json` process; SIGTERM / SIGKILL / restart on the same port.
- `ReplicaCluster` and the `replica_cluster` fixture (one per test module): the three replicas
  and the balancer, waited on (bounded) until every replica is ready and in rotation; each
  replica's `/metrics` and `/readyz` asked directly.

`haproxy` comes from the OS packages (`scripts/install-test-services.sh`, run by `make test`);
without it the tests skip with the reason shown. Every process started here is stopped here.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

import anyio
import pytest

from tests.balancer import CHECK_FALL, CHECK_INTERVAL_MS, Balancer, find_haproxy
from tests.clients import http_client
from tests.cluster_fixtures import ADMIN_KEY, RedisServer, api_keys, installed_service
from tests.conftest import fixture_entry, hub_command, until

CLUSTER_KEY_ENV: Final = "MCPHUB_E2E_CLUSTER_KEY"
"""The variable naming the replicas' shared key (`cluster.secret_env`)."""
SHUTDOWN_GRACE_SECONDS: Final = 1.5
"""The replicas' `shutdown_grace_seconds`: above HAProxy's check interval x fall count (0.6 s),
with room for a loaded machine, so HAProxy has taken a draining replica out before it stops
accepting (were it late, a refused connection is still sent to another replica)."""
assert SHUTDOWN_GRACE_SECONDS * 1000 > CHECK_INTERVAL_MS * CHECK_FALL
DRAIN_TIMEOUT_SECONDS: Final = 15.0
START_TIMEOUT_SECONDS: Final = 45.0
"""Longest wait for a replica to print `ready` (three start at once on a 2-core machine)."""
STOP_TIMEOUT_SECONDS: Final = 20.0
LOAD_ROUTE_LIMIT: Final = {"requests_per_second": 1_000_000.0, "burst": 1_000_000}
"""A per-route limit no test load reaches: every call counts in Redis, none is refused."""
OTHER_LIMIT: Final = 10
"""Requests principal `other` may make in its window (see `replica_config`)."""


def replica_config(balancer_port: int, redis_url: str) -> dict[str, Any]:
    """The one config every replica serves: two fixture servers over stdio, API keys, the cluster
    key and Redis, a drain grace above the balancer's check time, and rate limits (a per-route limit
    on every call, so each call touches Redis, and a limit of `OTHER_LIMIT` requests per 100 s for
    principal `other`)."""
    return {
        "listen": {"host": "127.0.0.1", "port": 0},
        "hub_id": "replicas-e2e",
        # Requests through the balancer carry its address as Host; its health check says localhost.
        "allowed_hosts": [f"127.0.0.1:{balancer_port}"],
        "servers": {"fx": fixture_entry("fx"), "fy": fixture_entry("fy")},
        "auth": api_keys(),
        "cluster": {"secret_env": CLUSTER_KEY_ENV, "redis_url": redis_url, "redis_timeout_seconds": 1.0},
        "shutdown_grace_seconds": SHUTDOWN_GRACE_SECONDS,
        "drain_timeout_seconds": DRAIN_TIMEOUT_SECONDS,
        "rate_limits": {
            "principals": {"other": {"requests_per_second": OTHER_LIMIT / 100, "burst": OTHER_LIMIT}},
            "routes": {"f*": LOAD_ROUTE_LIMIT},
        },
    }


def _environment(state_home: Path, cluster_key: str) -> dict[str, str]:
    """This environment without MCPHUB_* (a stray MCPHUB_CONFIG would change what runs), with the
    cluster key and a state directory of the replica's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCPHUB_")}
    return env | {CLUSTER_KEY_ENV: cluster_key, "XDG_STATE_HOME": str(state_home)}


class Replica:
    """One `mcphub serve --json` process this test module started (and only ever stops itself).

    Its `--json` events are read by a thread; `events[name]` is set when `name` came (for the
    current run: a restart clears them)."""

    EVENTS: Final = ("listening", "ready", "draining", "stopping", "drained")

    def __init__(self, name: str, config_file: Path, directory: Path, cluster_key: str) -> None:
        self.name = name
        self.config_file = config_file
        self.directory = directory
        self.port = 0
        """0 until the first start has bound a port; every restart binds the same one."""
        self.process: subprocess.Popen[bytes] | None = None
        self.events: dict[str, threading.Event] = {}
        self.data: dict[str, dict[str, Any]] = {}
        self.log = directory / f"{name}.log"
        self._env = _environment(directory / f"{name}-state", cluster_key)
        self._log_file: IO[bytes] | None = None
        self._interrupted: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def spawn(self) -> None:
        """Start the process (on `port`, or any port the first time); `wait_ready` waits for it."""
        assert not self.running
        self.events = {name: threading.Event() for name in self.EVENTS}
        self.data = {}
        if self._log_file is not None:
            self._log_file.close()
        self._log_file = self.log.open("ab")
        # Forked by this worker's zygote, as any `mcphub` a test starts (a fresh interpreter
        # costs ~1.5 s of CPU); `kill` signals the hub itself, by the pid it announced.
        command = hub_command("serve", "-c", str(self.config_file), "--port", str(self.port), "--json")
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            env=self._env,
        )
        self.process = process
        threading.Thread(target=self._read_events, args=(process,), name=f"{self.name} events", daemon=True).start()

    def _read_events(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        events, data = self.events, self.data
        for line in process.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            name = event.get("event") if isinstance(event, dict) else None
            if name in events:
                data[name] = event
                if name == "listening":
                    self.port = int(event["url"].rsplit(":", 1)[1].split("/", 1)[0])
                events[name].set()
        process.stdout.close()

    def wait_ready_blocking(self, timeout_seconds: float = START_TIMEOUT_SECONDS) -> None:
        """Block until the replica listens and has started its servers (bounded)."""
        deadline = time.monotonic() + timeout_seconds
        for name in ("listening", "ready"):
            if not self.events[name].wait(max(0.0, deadline - time.monotonic())):
                raise RuntimeError(f"{self.name} did not print {name!r} in {timeout_seconds:g} s\n{self.log_tail()}")

    async def wait_event(self, name: str, timeout_seconds: float = START_TIMEOUT_SECONDS) -> dict[str, Any]:
        """Wait (bounded) for the `serve --json` event `name` of the current run and return it."""
        event = self.events[name]
        with anyio.fail_after(timeout_seconds):
            await until(event.is_set)
        return self.data[name]

    async def restart(self) -> None:
        """Start again on the same port (after an exit) and wait until it serves."""
        assert self.port, "restart needs a first start"
        self.spawn()
        await self.wait_event("listening")
        await self.wait_event("ready")

    def terminate(self) -> None:
        """SIGTERM: the drain a deploy starts (/readyz 503, grace, in-flight calls finish, exit 0)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the hub (the pid of its `listening` event): a crash, no drain; its stdio servers
        exit when their stdin closes. A forked hub's launcher then exits as killed by SIGKILL too."""
        assert self.process is not None
        os.kill(int(self.data["listening"]["pid"]), signal.SIGKILL)

    async def exit_status(self, timeout_seconds: float = STOP_TIMEOUT_SECONDS) -> int:
        """Wait (bounded) for the process to exit and return its status."""
        process = self.process
        assert process is not None
        with anyio.fail_after(timeout_seconds):
            await until(lambda: process.poll() is not None)
        status = process.returncode
        assert status is not None
        return status

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def interrupt(self) -> None:
        """SIGINT, once: a drain without the grace (`stop` waits for the exit)."""
        if self.process is not None and self.process.poll() is None and self.process is not self._interrupted:
            self.process.send_signal(signal.SIGINT)
            self._interrupted = self.process

    def stop(self) -> None:
        """SIGINT (a drain without the grace), bounded; then SIGKILL."""
        process = self.process
        if process is not None and process.poll() is None:
            self.interrupt()
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


@dataclass
class ReplicaCluster:
    replicas: list[Replica]
    balancer: Balancer
    redis: RedisServer

    @property
    def url(self) -> str:
        return self.balancer.url

    async def metrics(self, replica: Replica) -> str:
        """`/metrics` of one replica, asked directly (not through the balancer)."""
        async with http_client(timeout=10, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as http:
            answer = await http.get(f"{replica.base_url}/metrics")
        answer.raise_for_status()
        return answer.text

    async def readiness(self, replica: Replica) -> tuple[int, dict[str, Any]]:
        """(status, body) of one replica's `/readyz`, asked directly as `hub:admin`."""
        async with http_client(timeout=10, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as http:
            answer = await http.get(f"{replica.base_url}/readyz")
        return answer.status_code, answer.json()

    async def in_rotation(self) -> None:
        """Wait (bounded) until Redis and every replica run, each replica reaches Redis
        (`/readyz` `shared_state: ok`), and HAProxy has all of them UP."""
        if not self.redis.running:
            await self.redis.restarted()
        for replica in self.replicas:
            if not replica.running:
                await replica.restart()

        async def shared_state_ok() -> bool:
            states = [(await self.readiness(r))[1].get("shared_state") for r in self.replicas]
            return states == ["ok"] * len(states)

        with anyio.fail_after(START_TIMEOUT_SECONDS):
            await until(shared_state_ok)
        await self.balancer.wait_status({r.name: "UP" for r in self.replicas})


def counter(metrics_text: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`, in a Prometheus text
    exposition."""
    total = 0.0
    for line in metrics_text.splitlines():
        if not line.startswith(f"{name}{{") and not line.startswith(f"{name} "):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{key}="{wanted}"' in head for key, wanted in labels.items()):
            total += float(value)
    return total


@pytest.fixture(scope="session")
def haproxy_binary(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The `haproxy` program (`tests.cluster_fixtures.installed_service`)."""
    return installed_service(find_haproxy, "haproxy is not installed (the OS package `haproxy`)", tmp_path_factory)


@pytest.fixture(scope="module")
def replica_cluster(
    haproxy_binary: str, _redis_session: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ReplicaCluster]:
    """Three replicas behind HAProxy, sharing this worker's Redis: started once per test module
    (three hubs and their servers starting at once is the slow part: 10-20 s on 2 cores), every
    replica ready and in rotation. A test that stops a replica or Redis starts it again, and
    tests that need all three call `ReplicaCluster.in_rotation` first."""
    if not _redis_session.running:
        _redis_session.restart()
    directory = tmp_path_factory.mktemp("replicas")
    cluster_key = secrets.token_hex(32)
    replicas = [Replica(f"r{i}", directory / "hub.json", directory, cluster_key) for i in (1, 2, 3)]
    balancer = Balancer(haproxy_binary, directory, replicas)
    (directory / "hub.json").write_text(json.dumps(replica_config(balancer.port, _redis_session.url)))
    try:
        for replica in replicas:
            replica.spawn()
        for replica in replicas:
            replica.wait_ready_blocking()
        balancer.start()
        balancer.wait_all_up_blocking()
        yield ReplicaCluster(replicas, balancer, _redis_session)
    finally:
        balancer.stop()
        for replica in replicas:
            replica.interrupt()
        for replica in replicas:
            replica.stop()
