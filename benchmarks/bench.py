"""Throughput, latency and CPU per call of an `echo` tool, directly and through the hub, in one run.

    python benchmarks/bench.py [--seconds 5] [--concurrency 1,16] [--eras handshake,modern] [--json]

What it starts (all on 127.0.0.1, port 0; every process is stopped at the end):

- direct: `tests/servers/fixture_server.py --transport http` (Streamable HTTP in the SDK's default
  mode: SSE responses in the handshake era, JSON in the modern era; uvloop), tool `echo`;
- hub: `benchmarks/_hub_runner.py` (the hub's HTTP endpoint in front of the same fixture run over
  stdio), tool `fx__echo`, ready once `GET /readyz` answers 200.

The load generator is this process (separate from the servers, so its CPU is not counted as theirs):
a closed loop of C concurrent workers sending raw JSON-RPC with `httpx2.AsyncClient` on uvloop.

- handshake era (2025-11-25): one session per worker (`initialize`, `notifications/initialized`,
  then `tools/call` with `Mcp-Session-Id` and `MCP-Protocol-Version`);
- modern era (2026-07-28): no session; every POST carries `MCP-Protocol-Version`, `Mcp-Method`,
  `Mcp-Name` and `params._meta` protocolVersion / clientInfo / clientCapabilities, as the SDK's
  client stamps them (mcp/client/session.py `_make_modern_stamp`).

Each measurement warms up for `--warmup` seconds, then counts the calls that complete inside a window
of `--seconds` (ended early after `--max-calls`). Only answers that echo the sent text count as calls;
anything else is an error. CPU per call is utime+stime from /proc/<pid>/stat (the process's own
threads, not its children) over the window, divided by the calls in it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx2

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
    uvloop = None  # type: ignore[assignment]

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "servers" / "fixture_server.py"
HUB_RUNNER = ROOT / "benchmarks" / "_hub_runner.py"

HANDSHAKE_VERSION = "2025-11-25"
MODERN_VERSION = "2026-07-28"
ERAS = {"handshake": HANDSHAKE_VERSION, "modern": MODERN_VERSION}
CLIENT_INFO = {"name": "mcphub-bench", "version": "1.0"}
CLK_TCK = os.sysconf("SC_CLK_TCK")

START_TIMEOUT_SECONDS = 30.0
"""Longest wait for a process to print its port, and for the hub's /readyz to answer 200."""
STOP_TIMEOUT_SECONDS = 10.0
"""Longest wait for a process to exit after SIGTERM before it is killed."""
REQUEST_TIMEOUT_SECONDS = 10.0

TARGET_CPU_MS_PER_CALL = 1.0
TARGET_RATIO = 0.90


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# processes


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat from field 3 (state) on, or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw[raw.rindex(")") + 2 :].split()


def cpu_times(pid: int) -> tuple[float, float] | None:
    """(utime, stime) of `pid` itself (all its threads, not its children), in seconds."""
    fields = _proc_stat(pid)
    if fields is None:
        return None
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK  # fields 14 and 15 of stat(5)


def _start_time(pid: int) -> str | None:
    fields = _proc_stat(pid)
    return fields[19] if fields else None  # field 22: starttime, tells a recycled pid apart


def descendants(root: int) -> list[int]:
    """Every live process whose parent chain reaches `root` (stdio servers run in sessions of their own)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _proc_stat(int(entry))
            if fields:
                children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class Process:
    """A child process that prints `PORT=<n>` once listening; stdout is read by a thread (so a
    wait for the port is bounded), stderr goes to a temporary file shown when something fails."""

    def __init__(self, name: str, argv: list[str]) -> None:
        self.name = name
        self._stderr = tempfile.TemporaryFile()
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr, text=True
        )
        self.pid = self.proc.pid
        self._extra: list[tuple[int, str | None]] = []
        threading.Thread(target=self._read_stdout, name=f"{name} stdout", daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.strip())
        self._lines.put(None)

    def wait_port(self, timeout: float = START_TIMEOUT_SECONDS) -> int:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"{self.name} printed no PORT= within {timeout:g} s{self.stderr_tail()}")
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self.proc.wait(timeout=STOP_TIMEOUT_SECONDS)
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}) before listening{self.stderr_tail()}")
            if line.startswith("PORT="):
                return int(line.removeprefix("PORT="))

    def adopt_descendants(self) -> list[int]:
        """Remember the current descendants (to stop any the process leaves behind) and return them."""
        pids = descendants(self.pid)
        self._extra = [(pid, _start_time(pid)) for pid in pids]
        return pids

    def stderr_tail(self, chars: int = 3000) -> str:
        self._stderr.seek(0)
        text = self._stderr.read().decode("utf-8", "replace")[-chars:]
        return f"\n--- {self.name} stderr (tail) ---\n{text}" if text.strip() else ""

    def stop(self) -> None:
        """SIGTERM, bounded wait, SIGKILL; then the same for descendants it left behind."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                log(f"{self.name} (pid {self.pid}) ignored SIGTERM for {STOP_TIMEOUT_SECONDS:g} s; killing it")
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT_SECONDS)
        for pid, started in self._extra:
            _stop_pid(pid, started, f"{self.name} child")
        self._stderr.close()


def _stop_pid(pid: int, started: str | None, name: str) -> None:
    """Stop `pid` if it is still the process we saw (same start time)."""

    def alive() -> bool:
        return started is not None and _start_time(pid) == started

    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not alive():
            return
        log(f"{name} (pid {pid}) outlived its parent; sending {sig.name}")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS / 2
        while alive() and time.monotonic() < deadline:
            time.sleep(0.05)  # polling for exit; no other notification exists for a non-child


@contextlib.contextmanager
def started(processes: list[Process]) -> Iterator[None]:
    """Stop every process in `processes` on exit, also on SIGTERM/SIGINT to this one."""

    def on_signal(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        yield
    finally:
        for process in reversed(processes):
            try:
                process.stop()
            except Exception as exc:  # keep stopping the others
                log(f"stopping {process.name} failed: {exc!r}")
        signal.signal(signal.SIGTERM, previous)


def wait_ready(url: str, process: Process, timeout: float = START_TIMEOUT_SECONDS) -> None:
    """Poll `GET url` until it answers 200 (bounded); fail early if the process exits."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    with httpx2.Client(trust_env=False, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.proc.poll() is not None:
                raise RuntimeError(f"{process.name} exited ({process.proc.returncode}){process.stderr_tail()}")
            try:
                response = client.get(url)
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}: {response.text[:300]}"
            except httpx2.TransportError as exc:
                last = repr(exc)
            time.sleep(0.1)  # poll interval of a bounded readiness probe
    raise RuntimeError(f"{url} not ready within {timeout:g} s (last: {last}){process.stderr_tail()}")


# ---------------------------------------------------------------------------------------------
# the load generator


class CallError(Exception):
    pass


def _jsonrpc_from_body(response: httpx2.Response, request_id: int) -> dict[str, Any]:
    """The JSON-RPC response with `request_id` from a JSON or SSE (`text/event-stream`) body."""
    if response.status_code != 200:
        raise CallError(f"HTTP {response.status_code}: {response.text[:200]}")
    content_type = response.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        message = json.loads(response.content)
        if isinstance(message, dict) and message.get("id") == request_id:
            return message
        raise CallError(f"unexpected JSON body: {response.text[:200]}")
    if content_type.startswith("text/event-stream"):
        for event in response.text.replace("\r\n", "\n").split("\n\n"):
            data = "\n".join(line[5:].lstrip(" ") for line in event.split("\n") if line.startswith("data:"))
            if data:
                message = json.loads(data)
                if isinstance(message, dict) and message.get("id") == request_id:
                    return message
        raise CallError(f"no response with id {request_id} in the SSE body: {response.text[:200]}")
    raise CallError(f"unexpected content-type {content_type!r}: {response.text[:200]}")


@dataclass
class Worker:
    """One closed-loop client: its own session (handshake era) or none (modern era)."""

    client: httpx2.AsyncClient
    url: str
    tool: str
    era: str
    index: int
    session_id: str | None = None
    next_id: int = 0
    _headers: dict[str, str] = field(default_factory=dict)

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    async def open(self) -> None:
        if self.era != "handshake":
            return
        base = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
        request_id = self._id()
        body = {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "initialize",
            "params": {"protocolVersion": HANDSHAKE_VERSION, "capabilities": {}, "clientInfo": CLIENT_INFO},
        }
        response = await self.client.post(self.url, content=json.dumps(body), headers=base)
        message = _jsonrpc_from_body(response, request_id)
        if "result" not in message:
            raise CallError(f"initialize failed: {message.get('error')}")
        self.session_id = response.headers.get("mcp-session-id")
        if not self.session_id:
            raise CallError("initialize answered without an mcp-session-id header")
        headers = {**base, "mcp-session-id": self.session_id, "mcp-protocol-version": HANDSHAKE_VERSION}
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        response = await self.client.post(self.url, content=json.dumps(note), headers=headers)
        if response.status_code not in (200, 202):
            raise CallError(f"notifications/initialized: HTTP {response.status_code}")
        self._headers = headers

    async def close(self) -> None:
        if self.session_id:
            with contextlib.suppress(Exception):
                await self.client.delete(self.url, headers={"mcp-session-id": self.session_id}, timeout=2.0)
            self.session_id = None

    async def call(self, text: str) -> None:
        """One `tools/call` of the echo tool; raises CallError unless it echoes `text`."""
        request_id = self._id()
        params: dict[str, Any] = {"name": self.tool, "arguments": {"text": text}}
        if self.era == "handshake":
            headers = self._headers
        else:
            params["_meta"] = {
                "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
                "io.modelcontextprotocol/clientInfo": CLIENT_INFO,
                "io.modelcontextprotocol/clientCapabilities": {},
            }
            headers = {
                "accept": "application/json, text/event-stream",
                "content-type": "application/json",
                "mcp-protocol-version": MODERN_VERSION,
                "mcp-method": "tools/call",
                "mcp-name": self.tool,
            }
        body = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}
        response = await self.client.post(self.url, content=json.dumps(body), headers=headers)
        message = _jsonrpc_from_body(response, request_id)
        result = message.get("result")
        if not isinstance(result, dict):
            raise CallError(f"JSON-RPC error: {message.get('error')}")
        content = result.get("content") or [{}]
        if result.get("isError") or content[0].get("text") != text:
            raise CallError(f"wrong answer: {json.dumps(result)[:200]}")


@dataclass
class Measurement:
    target: str
    era: str
    concurrency: int
    calls: int = 0
    errors: int = 0
    seconds: float = 0.0
    calls_per_s: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    cpu_ms_per_call: dict[str, float | None] = field(default_factory=dict)
    """Per process ("hub", "server", "loadgen"): CPU (user + system) ms per call over the window."""
    sys_cpu_ms_per_call: dict[str, float | None] = field(default_factory=dict)
    """The system (kernel) part of `cpu_ms_per_call`."""
    first_errors: list[str] = field(default_factory=list)
    failed: str | None = None
    """Why the measurement could not run at all (setup or probe call failed)."""


def _percentile(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


async def measure(
    *, target: str, url: str, tool: str, era: str, concurrency: int, warmup: float, seconds: float,
    max_calls: int, cpu_pids: dict[str, int],
) -> Measurement:
    result = Measurement(target, era, concurrency)
    limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    timeout = httpx2.Timeout(REQUEST_TIMEOUT_SECONDS)
    async with httpx2.AsyncClient(limits=limits, timeout=timeout, trust_env=False, verify=False) as client:
        workers = [Worker(client, url, tool, era, i) for i in range(concurrency)]
        try:
            async with asyncio.timeout(START_TIMEOUT_SECONDS):
                await asyncio.gather(*(w.open() for w in workers))
                await workers[0].call("probe")  # one correct answer before anything is measured
        except (CallError, httpx2.HTTPError, TimeoutError, json.JSONDecodeError) as exc:
            result.failed = f"{type(exc).__name__}: {exc}"
            await asyncio.gather(*(w.close() for w in workers))
            return result

        latencies: list[float] = []
        window: list[float | None] = [None, None]  # [start, end] on perf_counter
        stop = asyncio.Event()
        full = asyncio.Event()

        async def run(worker: Worker) -> None:
            n = 0
            while not stop.is_set():
                n += 1
                text = f"w{worker.index}-{n}"
                t0 = time.perf_counter()
                error: str | None = None
                try:
                    await worker.call(text)
                except (CallError, httpx2.HTTPError, json.JSONDecodeError) as exc:
                    error = f"{type(exc).__name__}: {exc}"
                t1 = time.perf_counter()
                start, end = window
                if start is not None and t1 >= start and end is None:  # inside the window
                    if error is None:
                        latencies.append(t1 - t0)
                        if len(latencies) >= max_calls:
                            full.set()
                    else:
                        result.errors += 1
                        if len(result.first_errors) < 3:
                            result.first_errors.append(error)
                if error and worker.era == "handshake" and "HTTP 404" in error:  # session lost: open a new one
                    with contextlib.suppress(CallError, httpx2.HTTPError, json.JSONDecodeError):
                        await worker.open()

        def snapshot() -> dict[str, tuple[float, float] | None]:
            times = {name: cpu_times(pid) for name, pid in cpu_pids.items()}
            own = os.times()
            times["loadgen"] = (own.user, own.system)
            return times

        tasks = [asyncio.create_task(run(w)) for w in workers]
        try:
            await asyncio.sleep(warmup)  # warm-up duration, not synchronisation
            cpu_before = snapshot()
            window[0] = time.perf_counter()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await full.wait()
            window[1] = time.perf_counter()
            cpu_after = snapshot()
            stop.set()
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT_SECONDS + 5):
                    await asyncio.gather(*tasks)
            except TimeoutError:
                log("  some calls did not finish after the window; cancelled")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.gather(*(w.close() for w in workers))

    assert window[0] is not None and window[1] is not None
    result.seconds = window[1] - window[0]
    result.calls = len(latencies)
    result.calls_per_s = result.calls / result.seconds if result.seconds > 0 else 0.0
    if latencies:
        latencies.sort()
        result.p50_ms = _percentile(latencies, 0.50) * 1000
        result.p99_ms = _percentile(latencies, 0.99) * 1000
    for name, before in cpu_before.items():
        after = cpu_after.get(name)
        if before is None or after is None or not result.calls:
            result.cpu_ms_per_call[name] = result.sys_cpu_ms_per_call[name] = None
            continue
        user, system = after[0] - before[0], after[1] - before[1]
        result.cpu_ms_per_call[name] = (user + system) * 1000 / result.calls
        result.sys_cpu_ms_per_call[name] = system * 1000 / result.calls
    return result


# ---------------------------------------------------------------------------------------------
# report


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _usable(r: Measurement | None) -> Measurement | None:
    return r if r is not None and not r.failed and r.calls > 0 else None


def _ratio(hub: Measurement | None, direct: Measurement | None) -> float | None:
    h, d = _usable(hub), _usable(direct)
    return h.calls_per_s / d.calls_per_s if h and d else None


def table(results: list[Measurement], eras: list[str], concurrencies: list[int]) -> str:
    by_key = {(r.target, r.era, r.concurrency): r for r in results}
    headers = [
        "era", "C", "direct/s", "hub/s", "hub/direct", "direct p50/p99 ms", "hub p50/p99 ms",
        "errors d/h", "hub CPU ms/call", "server CPU ms/call d/h",
    ]

    def rate(r: Measurement | None) -> str:
        if r is None:
            return "-"
        return _fmt(r.calls_per_s, ".0f") if _usable(r) else "FAILED"

    def latency(r: Measurement | None) -> str:
        return f"{_fmt(r.p50_ms, '.2f')} / {_fmt(r.p99_ms, '.2f')}" if r and _usable(r) else "-"

    def cpu(r: Measurement | None, name: str) -> str:
        return _fmt(r.cpu_ms_per_call.get(name), ".3f") if r and _usable(r) else "-"

    rows: list[list[str]] = []
    notes: list[str] = []
    verdicts: list[str] = []
    for era in eras:
        for c in concurrencies:
            d, h = by_key.get(("direct", era, c)), by_key.get(("hub", era, c))
            for r in (d, h):
                if r is not None and r.failed:
                    notes.append(f"{r.target} {era} C={c}: FAILED: {r.failed}")
                elif r is not None and r.first_errors:
                    notes.append(f"{r.target} {era} C={c}: {r.errors} errors, e.g. {r.first_errors[0]}")
            ratio = _ratio(h, d)
            rows.append([
                era, str(c), rate(d), rate(h), _fmt(ratio, ".2f"), latency(d), latency(h),
                f"{d.errors if d else '-'} / {h.errors if h else '-'}",
                cpu(h, "hub"), f"{cpu(d, 'server')} / {cpu(h, 'server')}",
            ])
            if _usable(h):
                assert h is not None
                hub_cpu = h.cpu_ms_per_call.get("hub")
                cpu_met = hub_cpu is not None and hub_cpu < TARGET_CPU_MS_PER_CALL
                ratio_met = "n/a" if ratio is None else "met" if ratio >= TARGET_RATIO else "MISSED"
                verdicts.append(f"  {era:9} C={c:<3}  CPU {'met' if cpu_met else 'MISSED'}, ratio {ratio_met}")

    widths = [max(len(x) for x in col) for col in zip(headers, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return " | ".join(x.ljust(w) if i < 2 else x.rjust(w) for i, (x, w) in pairs)

    lines = [line(headers), "-+-".join("-" * w for w in widths), *(line(row) for row in rows)]
    lines += [
        "",
        f"Targets (not asserted): hub CPU < {TARGET_CPU_MS_PER_CALL:g} ms/call; "
        f"hub calls/s >= {TARGET_RATIO:.0%} of direct.",
        *verdicts,
        "",
        "direct: the fixture over Streamable HTTP (SSE responses in the handshake era, JSON in the modern era);",
        "hub: the hub's /mcp (the same) -> the same fixture over stdio. server CPU d/h: the HTTP fixture / the",
        "hub's stdio fixture child. CPU = utime+stime from /proc/<pid>/stat (10 ms ticks) over the window / calls.",
    ]
    if notes:
        lines += ["", "Notes:", *(f"  {n}" for n in notes)]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# main


def _csv_ints(text: str) -> list[int]:
    values = [int(x) for x in text.split(",") if x.strip()]
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("a comma-separated list of positive integers")
    return values


def _csv_choices(choices: set[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        values = [x.strip() for x in text.split(",") if x.strip()]
        if not values or any(v not in choices for v in values):
            raise argparse.ArgumentTypeError(f"a comma-separated list of {sorted(choices)}")
        return values

    return parse


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="measurement window per run (default 5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up before each window (default 1)")
    parser.add_argument("--concurrency", type=_csv_ints, default=[1, 16], help="closed-loop clients (default 1,16)")
    parser.add_argument("--eras", type=_csv_choices(set(ERAS)), default=["handshake", "modern"],
                        help="protocol eras to measure (default handshake,modern)")
    parser.add_argument("--targets", type=_csv_choices({"direct", "hub"}), default=["direct", "hub"],
                        help="what to measure (default direct,hub)")
    parser.add_argument("--max-calls", type=int, default=200_000, help="end a window early after this many calls")
    parser.add_argument("--hub-runner", metavar="SCRIPT", default=str(HUB_RUNNER),
                        help="script that serves the hub (prints PORT=<n>, serves /readyz and /mcp with fx__echo); "
                             "default benchmarks/_hub_runner.py, replace it to measure a variant")
    parser.add_argument("--hub-profile", metavar="OUT.prof|OUT.html",
                        help="run the hub under cProfile (.prof, pstats format) or pyinstrument (.html, plus a .txt "
                             "next to it; needs `pip install pyinstrument`) and write the profile there on exit "
                             "(inflates hub CPU)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    args = parser.parse_args()

    processes: list[Process] = []
    results: list[Measurement] = []
    began = time.monotonic()
    with started(processes):
        endpoints: dict[str, tuple[str, str, dict[str, int]]] = {}
        if "direct" in args.targets:
            argv = [sys.executable, str(FIXTURE), "--transport", "http", "--port", "0"]
            fixture = Process("fixture (http)", argv)
            processes.append(fixture)
        if "hub" in args.targets:
            argv = [sys.executable, str(Path(args.hub_runner).resolve())]
            if args.hub_profile:
                out = Path(args.hub_profile).resolve()
                argv += ["--pyinstrument" if out.suffix == ".html" else "--profile", str(out)]
            hub = Process("hub", argv)
            processes.append(hub)
        if "direct" in args.targets:
            port = fixture.wait_port()
            endpoints["direct"] = (f"http://127.0.0.1:{port}/mcp", "echo", {"server": fixture.pid})
            log(f"direct: fixture pid {fixture.pid} on port {port}")
        if "hub" in args.targets:
            port = hub.wait_port()
            wait_ready(f"http://127.0.0.1:{port}/readyz", hub)
            children = hub.adopt_descendants()
            cpu_pids = {"hub": hub.pid}
            if len(children) == 1:
                cpu_pids["server"] = children[0]
            log(f"hub: pid {hub.pid} on port {port}, ready; stdio server pid(s) {children}")
            endpoints["hub"] = (f"http://127.0.0.1:{port}/mcp", "fx__echo", cpu_pids)

        run_loop = asyncio.Runner(loop_factory=uvloop.new_event_loop) if uvloop else asyncio.Runner()
        with run_loop as runner:
            for era in args.eras:
                for c in args.concurrency:
                    for target in args.targets:
                        url, tool, cpu_pids = endpoints[target]
                        log(f"measuring {target:6} {era:9} C={c} ({args.warmup:g} s warm-up + {args.seconds:g} s)")
                        r = runner.run(measure(
                            target=target, url=url, tool=tool, era=era, concurrency=c,
                            warmup=args.warmup, seconds=args.seconds, max_calls=args.max_calls, cpu_pids=cpu_pids,
                        ))
                        if r.failed:
                            log(f"  FAILED: {r.failed}")
                        else:
                            cpu = ", ".join(f"{k} {_fmt(v, '.3f')}" for k, v in r.cpu_ms_per_call.items())
                            log(f"  {r.calls_per_s:.0f} calls/s, p50 {_fmt(r.p50_ms, '.2f')} ms, errors {r.errors}, "
                                f"CPU ms/call: {cpu}")
                        results.append(r)
    log(f"done in {time.monotonic() - began:.0f} s; all processes stopped")

    if args.json:
        print(json.dumps({
            "settings": {"seconds": args.seconds, "warmup": args.warmup, "concurrency": args.concurrency,
                         "eras": args.eras, "targets": args.targets, "max_calls": args.max_calls,
                         "cpus": os.cpu_count(), "uvloop_loadgen": uvloop is not None},
            "targets": {"hub_cpu_ms_per_call_below": TARGET_CPU_MS_PER_CALL,
                        "hub_to_direct_ratio_at_least": TARGET_RATIO},
            "results": [asdict(r) for r in results],
        }, indent=2))
    else:
        print(table(results, args.eras, args.concurrency))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as exc:  # a process did not start or get ready (the message carries its stderr)
        log(f"failed: {exc}")
        sys.exit(1)
    except KeyboardInterrupt as exc:
        log(f"interrupted ({exc or 'SIGINT'}); all processes stopped")
        sys.exit(130)
