"""The targets a benchmark measures, each in front of the same fixture server, and how each is started.

- `direct-sse`: `tests/servers/fixture_server.py --transport http`, SSE answers in the handshake era
  (the SDK default);
- `direct-json`: the same with `--json-response` (`json_response=True`);
- `mcp-proxy`: PyPI `mcp-proxy` 0.13 in its own venv (`.cache/bench/mcp-proxy-venv`), a 1:1 bridge
  in front of the fixture over stdio;
- `floor`: `_floor.py`, the thinnest Python bridge on the hub's own stack (uvicorn, uvloop, orjson,
  the fixture over stdio multiplexed by request id) with no gateway feature at all: the lower bound
  of a Python gateway's CPU per call;
- `hub`: the hub (`_hub_runner.py`) with an API key, a policy, rate limits and metrics, in front of
  the fixture over stdio;
- `hub-noauth`: the hub with `auth: none`, no policy, no rate limits, in front of the fixture over stdio.

Starting is split in two (`spawn_*` returns a `Pending` whose `ready()` waits) so that every
target starts at once and the slowest start bounds the wait, not their sum.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
from _procs import ROOT, START_TIMEOUT_SECONDS, STOP_TIMEOUT_SECONDS, Process, Processes, log, rss_bytes, wait_ready

FIXTURE = ROOT / "tests" / "servers" / "fixture_server.py"
HUB_RUNNER = ROOT / "benchmarks" / "_hub_runner.py"
FLOOR = ROOT / "benchmarks" / "_floor.py"

TARGETS = ("direct-sse", "direct-json", "mcp-proxy", "floor", "hub", "hub-noauth")
"""Every target, in the order each round measures them."""

MCP_PROXY_REQUIREMENT = "mcp-proxy>=0.13,<0.14"
MCP_PROXY_VENV = ROOT / ".cache" / "bench" / "mcp-proxy-venv"
"""mcp-proxy's own virtual environment (its `mcp` 1.x cannot share the hub's `mcp` 2.3)."""
INSTALL_TIMEOUT_SECONDS = 600.0
"""Longest wait for `python -m venv` plus `pip install` of mcp-proxy (seconds)."""
LOCK_TIMEOUT_SECONDS = INSTALL_TIMEOUT_SECONDS + 60
"""Longest wait for another benchmark that is creating the same venv (seconds)."""

BENCH_KEY_ENV = "MCPHUB_BENCH_KEY"
"""The environment variable through which the hub runner gets the benchmark's API key."""
BENCH_PRINCIPAL = "bench"
GENEROUS_BUCKET = {"requests_per_second": 1_000_000.0, "burst": 1_000_000}
"""A token bucket no benchmark load reaches: the limiter runs on every request but never refuses."""


class PeerUnavailable(RuntimeError):
    """A peer cannot be run here (e.g. its venv cannot be created: the package registry is unreachable)."""


@dataclass
class Target:
    """A started target, ready for load."""

    name: str
    url: str
    tool: str
    """The echo tool's name at this target (`echo`, or `fx__echo` through the hub)."""
    cpu_pids: dict[str, int]
    """Processes whose CPU is counted: `gateway` (hub or mcp-proxy) and `server` (the fixture)."""
    headers: dict[str, str] = field(default_factory=dict)
    """Sent with every request (the hub's API key)."""
    metrics_url: str | None = None
    """The hub's `/metrics`, scraped (with `headers`) after the run to show the calls it counted."""
    description: str = ""
    idle_rss_bytes: dict[str, int | None] = field(default_factory=dict)
    """Resident set of each process in `cpu_pids` once ready, before any load."""

    def record_idle_rss(self) -> None:
        self.idle_rss_bytes = {name: rss_bytes(pid) for name, pid in self.cpu_pids.items()}


Pending = Callable[[], Target]
"""Waits (bounded) until a spawned target serves, then describes it. Raises RuntimeError."""


def gateway_pids(process: Process) -> dict[str, int]:
    """The processes whose CPU counts for a gateway target: `gateway` (`process`) and `server`
    (its one child, the fixture over stdio), the child adopted to be stopped with it."""
    children = process.adopt_descendants()
    pids = {"gateway": process.pid}
    if len(children) == 1:
        pids["server"] = children[0]
    return pids


# ---------------------------------------------------------------------------------------------
# direct: the fixture server itself over Streamable HTTP


def fixture_argv(*args: str) -> list[str]:
    """The fixture server run by this interpreter (the project's venv: `mcp` 2.3)."""
    return [sys.executable, str(FIXTURE), *args]


def spawn_direct(processes: Processes, json_response: bool) -> Pending:
    name = "direct-json" if json_response else "direct-sse"
    argv = fixture_argv("--transport", "http", "--port", "0", *(["--json-response"] if json_response else []))
    process = Process(name, argv)
    processes.append(process)

    def ready() -> Target:
        port = process.wait_port()
        answers = "JSON" if json_response else "SSE in the handshake era"
        return Target(
            name,
            f"http://127.0.0.1:{port}/mcp",
            "echo",
            {"server": process.pid},
            description=f"the fixture over Streamable HTTP, answering {answers}",
        )

    return ready


def spawn_floor(processes: Processes) -> Pending:
    """`_floor.py` in front of the fixture over stdio (it starts the fixture itself)."""
    process = Process("floor", [sys.executable, str(FLOOR)])
    processes.append(process)

    def ready() -> Target:
        port = process.wait_port()
        pids = gateway_pids(process)
        return Target(
            "floor",
            f"http://127.0.0.1:{port}/mcp",
            "echo",
            pids,
            description="the thinnest Python bridge (uvicorn, uvloop, orjson, no feature), the fixture over stdio",
        )

    return ready


# ---------------------------------------------------------------------------------------------
# mcp-proxy 0.13 in its own venv


def ensure_mcp_proxy(venv: Path = MCP_PROXY_VENV) -> Path:
    """mcp-proxy's executable, creating its venv from the package registry (`pip install
    'mcp-proxy>=0.13,<0.14'`) when missing. Safe against other benchmarks doing the same at once
    (a file lock; a half-built venv is rebuilt).

    :raises PeerUnavailable: the venv or the install failed (e.g. the registry is unreachable).
    """
    venv = venv.resolve()  # scripts' shebangs name the venv's path: never one through a link
    exe = venv / "bin" / "mcp-proxy"
    stamp = venv / ".bench-installed"

    def installed() -> bool:
        if not (exe.exists() and stamp.is_file() and stamp.read_text() == MCP_PROXY_REQUIREMENT):
            return False
        shebang = exe.read_bytes().split(b"\n", 1)[0]
        return Path(shebang.removeprefix(b"#!").decode(errors="replace").strip()).exists()  # not a moved venv

    if installed():
        return exe
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        deadline = time.monotonic() + LOCK_TIMEOUT_SECONDS
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise PeerUnavailable(
                        f"{venv} is locked by another process for over {LOCK_TIMEOUT_SECONDS:g} s"
                    ) from None
                time.sleep(0.5)  # another benchmark is installing it; bounded by the deadline above
        if installed():
            return exe
        log(f"creating {venv} with {MCP_PROXY_REQUIREMENT} from the package registry (once)")
        shutil.rmtree(venv, ignore_errors=True)
        python = str(venv / "bin" / "python")
        pip_install = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", MCP_PROXY_REQUIREMENT]
        steps = [
            ("python -m venv", [sys.executable, "-m", "venv", str(venv)]),
            (f"pip install '{MCP_PROXY_REQUIREMENT}'", pip_install),
        ]
        for label, argv in steps:
            try:
                subprocess.run(argv, check=True, capture_output=True, timeout=INSTALL_TIMEOUT_SECONDS)
            except subprocess.CalledProcessError as exc:
                errors = (exc.stderr or b"").decode("utf-8", "replace").strip().splitlines()
                detail = " ".join(line for line in errors if line.startswith("ERROR")) or " ".join(errors[-3:])
                raise PeerUnavailable(f"`{label}` failed: {detail[-600:]}") from exc
            except subprocess.TimeoutExpired as exc:
                raise PeerUnavailable(f"`{label}` took over {INSTALL_TIMEOUT_SECONDS:g} s") from exc
        if not exe.exists():
            raise PeerUnavailable(f"{MCP_PROXY_REQUIREMENT} installed no {exe}")
        stamp.write_text(MCP_PROXY_REQUIREMENT)
    return exe


def package_versions(exe: Path, *names: str) -> str:
    """`name version` of each package in the venv of `exe`, e.g. "mcp-proxy 0.13.0, mcp 1.30.0"."""
    code = "import importlib.metadata as m, sys; print(', '.join(f'{n} {m.version(n)}' for n in sys.argv[1:]))"
    done = subprocess.run(
        [str(exe.parent / "python"), "-c", code, *names], capture_output=True, text=True, timeout=60, check=False
    )
    return done.stdout.strip() or "versions unknown"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spawn_mcp_proxy(processes: Processes, exe: Path) -> Pending:
    """mcp-proxy bridging the fixture over stdio to Streamable HTTP at `/mcp` (it answers JSON).

    It takes a port number, not a socket, and logs its port only at INFO; INFO would also log two
    lines per request (uvicorn's access log, the SDK's "Processing request"), which a measured
    deployment would turn off. So it runs at `--log-level WARNING` on a port picked free just
    before, and is respawned on another port (3 tries) if that one got taken meanwhile.
    """
    versions = package_versions(exe, "mcp-proxy", "mcp")
    attempt: list[tuple[Process, int]] = []

    def spawn() -> None:
        port = _free_port()
        argv = [str(exe), "--host", "127.0.0.1", "--port", str(port), "--log-level", "WARNING", "--", *fixture_argv()]
        process = Process("mcp-proxy", argv)
        processes.append(process)
        attempt.append((process, port))

    spawn()

    def ready() -> Target:
        for tries in range(3):
            process, port = attempt[-1]
            try:
                wait_ready(f"http://127.0.0.1:{port}/status", process)
                break
            except RuntimeError as exc:
                if tries == 2 or process.proc.poll() is None or "address already in use" not in str(exc).lower():
                    raise
                log(f"mcp-proxy: port {port} was taken meanwhile; trying another")
                processes.stop(process)
                spawn()
        pids = gateway_pids(process)
        return Target(
            "mcp-proxy",
            f"http://127.0.0.1:{port}/mcp",
            "echo",
            pids,
            description=f"{versions}, no uvloop (as pip installs it), in front of the fixture over stdio",
        )

    return ready


# ---------------------------------------------------------------------------------------------
# the hub


def hub_config(servers: dict[str, Any], state_dir: str, governance: bool) -> dict[str, Any]:
    """A hub config (the YAML document as a mapping) for `servers`.

    With `governance`: an API key (`key_env: MCPHUB_BENCH_KEY`, scopes `hub:call` and
    `hub:metrics`), a policy allowing the `fx__*` tools but `fx__crash`, and per-principal and
    per-route rate limits far above any benchmark load. Metrics are always recorded by the hub.
    """
    config: dict[str, Any] = {"servers": servers, "state_dir": state_dir}
    if governance:
        config["auth"] = {
            "api_keys": [{"id": BENCH_PRINCIPAL, "key_env": BENCH_KEY_ENV, "scopes": ["hub:call", "hub:metrics"]}]
        }
        config["policies"] = [{"principal": BENCH_PRINCIPAL, "allow": ["fx__*"], "deny": ["fx__crash"]}]
        config["rate_limits"] = {"per_principal": GENEROUS_BUCKET, "routes": {"fx__*": GENEROUS_BUCKET}}
    return config


def spawn_hub(
    processes: Processes,
    name: str,
    config: dict[str, Any],
    workdir: Path,
    *,
    runner: Path = HUB_RUNNER,
    profile: str | None = None,
    key: str | None = None,
    env: dict[str, str] | None = None,
    stop_timeout_seconds: float = STOP_TIMEOUT_SECONDS,
) -> tuple[Process, Callable[[], int]]:
    """Start `runner --config FILE` (the hub serving `config`) and return it with a function that
    waits for its port. The caller waits for readiness (what "ready" means depends on the run).
    `key` is the API key (in `BENCH_KEY_ENV`); `env` adds environment variables."""
    path = workdir / f"{name}.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    argv = [sys.executable, str(runner), "--config", str(path)]
    if profile:
        out = Path(profile).resolve()
        argv += ["--pyinstrument" if out.suffix == ".html" else "--profile", str(out)]
    environment = ({BENCH_KEY_ENV: key} if key else {}) | (env or {})
    process = Process(name, argv, env=environment or None, stop_timeout_seconds=stop_timeout_seconds)
    processes.append(process)
    return process, process.wait_port


def spawn_hub_target(
    processes: Processes, workdir: Path, governance: bool, runner: Path = HUB_RUNNER, profile: str | None = None
) -> Pending:
    name = "hub" if governance else "hub-noauth"
    state_dir = workdir / f"{name}-state"
    state_dir.mkdir(exist_ok=True)
    config = hub_config({"fx": {"command": sys.executable, "args": [str(FIXTURE)]}}, str(state_dir), governance)
    key = secrets.token_urlsafe(32) if governance else None
    process, wait_port = spawn_hub(processes, name, config, workdir, runner=runner, profile=profile, key=key)

    def ready() -> Target:
        port = wait_port()
        wait_ready(f"http://127.0.0.1:{port}/readyz", process)
        pids = gateway_pids(process)
        base = f"http://127.0.0.1:{port}"
        if key:
            check_authentication(base, key, process)
        what = "API key + policy + rate limits + metrics" if governance else "auth: none"
        return Target(
            name,
            f"{base}/mcp",
            "fx__echo",
            pids,
            headers={"authorization": f"Bearer {key}"} if key else {},
            metrics_url=f"{base}/metrics" if governance else None,
            description=f"the hub ({what}) in front of the fixture over stdio",
        )

    return ready


def check_authentication(base: str, key: str, process: Process) -> None:
    """Make sure the governed hub is what it claims to be: `/me` refuses a caller without the key
    (401) and names the bench principal with it.

    :raises RuntimeError: it does not.
    """
    with httpx2.Client(trust_env=False, timeout=10.0) as client:
        anonymous = client.get(f"{base}/me")
        mine = client.get(f"{base}/me", headers={"authorization": f"Bearer {key}"})
    principal = mine.json().get("principal") if mine.status_code == 200 else None
    if anonymous.status_code != 401 or principal != BENCH_PRINCIPAL:
        raise RuntimeError(
            f"{process.name}: authentication is not on as configured (/me without the key: HTTP"
            f" {anonymous.status_code}; with it: HTTP {mine.status_code}, principal {principal!r})"
        )


def counted_calls(metrics_text: str) -> float:
    """The sum of `mcphub_calls_total` samples in a Prometheus text exposition."""
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith("mcphub_calls_total{") or line.startswith("mcphub_calls_total "):
            with contextlib.suppress(ValueError, IndexError):
                total += float(line.rsplit(" ", 1)[1])
    return total


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    """A temporary directory for hub configs and state files, removed on exit."""
    with tempfile.TemporaryDirectory(prefix="mcphub-bench-") as path:
        yield Path(path)


def start_all(
    processes: Processes,
    names: list[str],
    work: Path,
    *,
    hub_runner: Path = HUB_RUNNER,
    hub_profile: str | None = None,
) -> tuple[dict[str, Target], dict[str, str]]:
    """Start the named targets at once and wait until each serves.

    :returns: (the targets that serve, {name: why it cannot run} for the others: mcp-proxy when
        its venv cannot be created).
    :raises RuntimeError: a target that should run did not start (its stderr is in the message).
    """
    unavailable: dict[str, str] = {}
    pending: dict[str, Pending] = {}
    proxy_exe: Path | None = None
    if "mcp-proxy" in names:
        try:
            proxy_exe = ensure_mcp_proxy()
        except PeerUnavailable as exc:
            unavailable["mcp-proxy"] = str(exc)
            log(f"mcp-proxy cannot run here: {exc}")
    for name in names:
        if name in ("direct-sse", "direct-json"):
            pending[name] = spawn_direct(processes, json_response=name == "direct-json")
        elif name == "floor":
            pending[name] = spawn_floor(processes)
        elif name == "mcp-proxy" and proxy_exe is not None:
            pending[name] = spawn_mcp_proxy(processes, proxy_exe)
        elif name in ("hub", "hub-noauth"):
            profile = hub_profile if name == "hub" else None
            pending[name] = spawn_hub_target(processes, work, name == "hub", hub_runner, profile)
    targets: dict[str, Target] = {}
    deadline = time.monotonic() + START_TIMEOUT_SECONDS * 2
    for name, ready in pending.items():
        if time.monotonic() > deadline:
            raise RuntimeError(f"targets did not all start within {START_TIMEOUT_SECONDS * 2:g} s")
        targets[name] = ready()
        log(f"{name}: ready at {targets[name].url} (pids {targets[name].cpu_pids})")
    return targets, unavailable
