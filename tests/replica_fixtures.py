"""Real peers for the multi-replica end-to-end tests: three `mcphub serve` processes over one
config file (a cluster key, a real Redis, API keys on) behind a real HAProxy balancing round-robin
with no stickiness and a health check on `/readyz`, all on 127.0.0.1.

- `Replica`: one `mcphub serve --json` process; SIGTERM / SIGKILL / restart on the same port.
- `Balancer`: one `haproxy -db` process (foreground) with its config in a temporary directory;
  its stats page tells which replicas it has in rotation.
- `ReplicaCluster` and the `replica_cluster` fixture (one per test module): the three replicas
  and the balancer, waited on (bounded) until every replica is ready and in rotation.
- `modern_call`: one raw modern-era (2026-07-28) request through any URL, and `run_load`: a
  bounded closed loop of such calls that records when each call started and ended and how.

`haproxy` comes from the OS packages (`scripts/install-test-services.sh`, run by `make test`);
without it the tests skip with the reason shown. Every process started here is stopped here.
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final, Protocol

import anyio
import httpx2
import pytest

from tests.cluster_fixtures import ADMIN_KEY, CALLER_KEY, RedisServer, api_keys
from tests.conftest import fixture_entry, free_port, until

CLUSTER_KEY_ENV: Final = "MCPHUB_E2E_CLUSTER_KEY"
"""The variable naming the replicas' shared key (`cluster.secret_env`)."""
CHECK_INTERVAL_MS: Final = 300
"""HAProxy's health check interval (milliseconds)."""
CHECK_FALL: Final = 2
"""Failed checks before HAProxy takes a replica out of rotation."""
CHECK_RISE: Final = 2
"""Passed checks before HAProxy puts a replica back."""
SHUTDOWN_GRACE_SECONDS: Final = 2.0
"""The replicas' `shutdown_grace_seconds`: above CHECK_INTERVAL_MS x CHECK_FALL (0.6 s), with room
for a loaded machine, so HAProxy has taken a draining replica out before it stops accepting."""
DRAIN_TIMEOUT_SECONDS: Final = 15.0
START_TIMEOUT_SECONDS: Final = 45.0
"""Longest wait for a replica to print `ready` (three start at once on a 2-core machine)."""
STOP_TIMEOUT_SECONDS: Final = 20.0
MODERN_VERSION: Final = "2026-07-28"
LOAD_ROUTE_LIMIT: Final = {"requests_per_second": 1_000_000.0, "burst": 1_000_000}
"""A per-route limit no test load reaches: every call counts in Redis, none is refused."""
OTHER_LIMIT: Final = 10
"""Requests principal `other` may make in its window (see `replica_config`)."""


def find_haproxy() -> str | None:
    return shutil.which("haproxy") or next(
        (path for path in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if os.access(path, os.X_OK)), None
    )


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
        process = subprocess.Popen(
            [sys.executable, "-m", "hub", "serve", "-c", str(self.config_file), "--port", str(self.port), "--json"],
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
        """SIGKILL: a crash, no drain; its stdio servers exit when their stdin closes."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)

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


class Backend(Protocol):
    """What the balancer needs of a replica: a name and the port it listens on (127.0.0.1)."""

    @property
    def name(self) -> str: ...

    @property
    def port(self) -> int: ...


def haproxy_config(
    port: int, stats_port: int, replicas: Sequence[Backend], check_interval_ms: int = CHECK_INTERVAL_MS
) -> str:
    """Round-robin over the replicas, no stickiness (no cookie, stick table or hashing), a replica
    in rotation only while its `/readyz` answers 200; the directives that matter are those of
    `deploy/compose/haproxy.cfg` (only the check is faster here). A request whose connection is
    refused (a replica that stopped or crashed, before the check took it out) is sent to another
    replica: nothing reached the refused one, so this never runs a call twice. Each request gets
    a connection of its own to its replica (`http-server-close`), so none is written on a pooled
    connection to a replica that has just died."""
    servers = "\n".join(f"    server {r.name} 127.0.0.1:{r.port}" for r in replicas)
    return f"""\
global
    maxconn 1024

defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout http-request 10s
    option http-server-close
    retries 3
    option redispatch 1
    retry-on conn-failure

frontend mcp
    bind 127.0.0.1:{port}
    default_backend hubs

backend hubs
    balance roundrobin
    option httpchk
    http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host localhost
    http-check expect status 200
    default-server check inter {check_interval_ms}ms fall {CHECK_FALL} rise {CHECK_RISE}
{servers}

listen stats
    bind 127.0.0.1:{stats_port}
    stats enable
    stats uri /stats
"""


class Balancer:
    """One `haproxy -db` (foreground, no daemon) this test module started."""

    def __init__(
        self,
        binary: str,
        directory: Path,
        replicas: Sequence[Backend],
        check_interval_ms: int = CHECK_INTERVAL_MS,
        port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.stats_port = free_port()
        self.config_file = directory / f"haproxy-{self.port}.cfg"
        self.log = directory / f"haproxy-{self.port}.log"
        self.binary = binary
        self.replicas = replicas
        self.check_interval_ms = check_interval_ms
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """The aggregated endpoint through the balancer."""
        return f"http://127.0.0.1:{self.port}/mcp"

    def start(self) -> None:
        config = haproxy_config(self.port, self.stats_port, self.replicas, self.check_interval_ms)
        self.config_file.write_text(config, encoding="utf-8")
        self._log_file = self.log.open("ab")
        self.process = subprocess.Popen(
            [self.binary, "-db", "-f", str(self.config_file)],
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    def stats_blocking(self) -> dict[str, dict[str, str]]:
        """HAProxy's stats of backend `hubs`, one row per replica: {name: {column: value}}
        (`status`: UP, DOWN, "UP 1/2", ...; `hrsp_2xx`: 2xx answers it relayed from that replica)."""
        with httpx2.Client(trust_env=False, timeout=5) as http:
            text = http.get(f"http://127.0.0.1:{self.stats_port}/stats;csv").text
        rows = csv.DictReader(io.StringIO(text.removeprefix("# ")))
        return {row["svname"]: row for row in rows if row["pxname"] == "hubs" and row["svname"] not in ("BACKEND",)}

    async def stats(self) -> dict[str, dict[str, str]]:
        return await anyio.to_thread.run_sync(self.stats_blocking)

    async def wait_status(self, wanted: dict[str, str], timeout_seconds: float = START_TIMEOUT_SECONDS) -> None:
        """Wait (bounded) until each named replica has the status wanted in HAProxy (UP or DOWN)."""

        async def reached() -> bool:
            stats = await self.stats()
            return all(name in stats and stats[name]["status"] == status for name, status in wanted.items())

        with anyio.fail_after(timeout_seconds):
            await until(reached)

    def wait_all_up_blocking(self, timeout_seconds: float = START_TIMEOUT_SECONDS) -> None:
        """Block until HAProxy has every replica UP (bounded).

        :raises RuntimeError: HAProxy exited, or not every replica was UP in time (with its log).
        """
        deadline = time.monotonic() + timeout_seconds
        while True:
            try:
                stats = self.stats_blocking()
            except httpx2.TransportError:  # not listening yet
                stats = {}
            if len(stats) == len(self.replicas) and all(row["status"] == "UP" for row in stats.values()):
                return
            if time.monotonic() > deadline or (self.process is not None and self.process.poll() is not None):
                raise RuntimeError(f"HAProxy did not take every replica in:\n{self.log.read_text(errors='replace')}")
            time.sleep(0.05)  # a bounded poll of HAProxy's stats page: it has no other readiness signal

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
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
        async with httpx2.AsyncClient(timeout=10, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as http:
            answer = await http.get(f"{replica.base_url}/metrics")
        answer.raise_for_status()
        return answer.text

    async def readiness(self, replica: Replica) -> tuple[int, dict[str, Any]]:
        """(status, body) of one replica's `/readyz`, asked directly as `hub:admin`."""
        async with httpx2.AsyncClient(timeout=10, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as http:
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
def replica_cluster(_redis_session: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplicaCluster]:
    """Three replicas behind HAProxy, sharing this worker's Redis: started once per test worker
    (three hubs and their servers starting at once is the slow part: 10-20 s on 2 cores), every
    replica ready and in rotation. A test that stops a replica or Redis starts it again, and
    tests that need all three call `ReplicaCluster.in_rotation` first."""
    haproxy = find_haproxy()
    if haproxy is None:
        pytest.skip("haproxy is not installed (the OS package `haproxy`; scripts/install-test-services.sh)")
    if not _redis_session.running:
        _redis_session.restart()
    directory = tmp_path_factory.mktemp("replicas")
    cluster_key = secrets.token_hex(32)
    replicas = [Replica(f"r{i}", directory / "hub.json", directory, cluster_key) for i in (1, 2, 3)]
    balancer = Balancer(haproxy, directory, replicas)
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


# ---------------------------------------------------------------- modern-era calls and load


def modern_request(request_id: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """A modern-era (2026-07-28) JSON-RPC request: the envelope in `params._meta`, as the SDK's
    client stamps it."""
    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
        "io.modelcontextprotocol/clientInfo": {"name": "replicas-e2e", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": {**params, "_meta": meta}}


def modern_headers(method: str, name: str | None, key: str) -> dict[str, str]:
    headers = {
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
        "mcp-protocol-version": MODERN_VERSION,
        "mcp-method": method,
        "authorization": f"Bearer {key}",
    }
    if name is not None:
        headers["mcp-name"] = name
    return headers


async def modern_post(
    http: httpx2.AsyncClient,
    url: str,
    method: str,
    params: dict[str, Any],
    *,
    name: str | None = None,
    key: str = CALLER_KEY,
    request_id: int = 1,
) -> httpx2.Response:
    """One stateless modern-era request to `url` (`name`: the `Mcp-Name` header, e.g. a tool's)."""
    return await http.post(
        url, json=modern_request(request_id, method, params), headers=modern_headers(method, name, key)
    )


async def modern_call(
    http: httpx2.AsyncClient, url: str, tool: str, arguments: dict[str, Any], key: str = CALLER_KEY, request_id: int = 1
) -> httpx2.Response:
    """One stateless `tools/call` (2026-07-28) to `url`."""
    params = {"name": tool, "arguments": arguments}
    return await modern_post(http, url, "tools/call", params, name=tool, key=key, request_id=request_id)


@dataclass
class CallRecord:
    """One call of a load loop: when it started and ended (`time.monotonic`), and its failure."""

    started: float
    ended: float
    error: str | None = None


@dataclass
class Load:
    """The calls of a load loop, appended as they end."""

    calls: list[CallRecord] = field(default_factory=list)
    stop: anyio.Event = field(default_factory=anyio.Event)

    @property
    def failures(self) -> list[CallRecord]:
        return [call for call in self.calls if call.error is not None]

    def ended_after(self, moment: float) -> int:
        return sum(1 for call in self.calls if call.ended > moment)


LOAD_PAUSE_SECONDS: Final = 0.01
"""Each load client's pause between two calls: the load stays bounded in rate (at most
workers / LOAD_PAUSE_SECONDS calls per second), so that on 2 cores it does not starve the
replicas being restarted of CPU. A pacing interval, not a wait for anything."""


async def run_load(url: str, load: Load, workers: int = 4, max_calls: int = 20_000) -> None:
    """`workers` closed-loop clients calling `fx__echo` through `url` (modern era, a connection
    pool shared by all), each pausing `LOAD_PAUSE_SECONDS` between calls, until `load.stop` is set
    or `max_calls` calls were made; the caller bounds the time. A call counts as failed unless it
    answered HTTP 200 with the echo of its text."""
    count = 0

    async def worker(index: int, http: httpx2.AsyncClient) -> None:
        nonlocal count
        while not load.stop.is_set() and count < max_calls:
            count += 1
            text = f"w{index}-{count}"
            started = time.monotonic()
            error: str | None = None
            try:
                answer = await modern_call(http, url, "fx__echo", {"text": text}, request_id=count)
                if answer.status_code != 200:
                    error = f"HTTP {answer.status_code}: {answer.text[:200]}"
                else:
                    result = answer.json().get("result") or {}
                    if (result.get("content") or [{}])[0].get("text") != text:
                        error = f"wrong answer: {answer.text[:200]}"
            except httpx2.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            load.calls.append(CallRecord(started, time.monotonic(), error))
            await anyio.sleep(LOAD_PAUSE_SECONDS)

    async with httpx2.AsyncClient(timeout=30) as http, anyio.create_task_group() as tg:
        for index in range(workers):
            tg.start_soon(worker, index, http)
