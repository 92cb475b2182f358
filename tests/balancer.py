"""A real HAProxy (the OS package) balancing hub replicas on 127.0.0.1, for the replica tests and
`benchmarks/replicas.py`: round-robin, no stickiness, a health check on `/readyz`, the config
written to a temporary directory, run in the foreground (`haproxy -db`) and stopped by its owner.
Its stats page (CSV) tells which replicas it has in rotation and how many answers each gave.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Final, Protocol

import anyio
import httpx2

from tests.conftest import free_port, until

CHECK_INTERVAL_MS: Final = 300
"""HAProxy's health check interval here (milliseconds; the compose deployment's is 2000)."""
CHECK_FALL: Final = 2
"""Failed checks before HAProxy takes a replica out of rotation."""
CHECK_RISE: Final = 2
"""Passed checks before HAProxy puts a replica back."""
START_TIMEOUT_SECONDS: Final = 45.0
STOP_TIMEOUT_SECONDS: Final = 20.0


def find_haproxy() -> str | None:
    return shutil.which("haproxy") or next(
        (path for path in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if os.access(path, os.X_OK)), None
    )


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
    option http-no-delay

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
