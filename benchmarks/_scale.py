"""The scale rows (`bench.py --scale`): a large catalog, the hub's memory, its time to a full catalog.

- **Full `tools/list`** of N servers x M tools (default 20 x 500 = 10,000) through the hub, walked
  through `nextCursor` to the end; the hub does not paginate its lists yet, so today that is one
  page, and the report says so. Beside it, the same number of tools listed from one server
  holding them all (the fixture over Streamable HTTP with JSON answers).
- **Idle RSS** of the hub with 0 servers, with N servers of the fixture's built-in tools only,
  and with N x M tools: per server and per catalog tool by difference.
- **Start to full catalog**: from spawning the hub to `/readyz` answering 200 with every server
  past its first start, against the servers' own floor: the same N fixture servers started at
  once over stdio by `mcp.Client` (`mode="auto"`, as the hub connects), each timed from spawn to
  the end of its first full `tools/list`.
- **Start-up delay** (exact, in the same run): a client walks the hub's `tools/list` from the
  moment the hub listens (the hub answers lists once every server had its first start); each
  fixture writes the wall-clock time it answered its own first full `tools/list` (to the hub;
  `--first-list-stamp`); the row is the end of that walk minus the slowest server's stamp.

The three goal rows of issue 12 item 5 are printed last, each MET or MISSED: a full paginated
`tools/list` of the N x M catalog in <= `GOAL_LIST_MS` of hub CPU (a walk's CPU time of the hub
process, servers idle; the walk's wall time beside it); hub idle RSS with N servers <=
`GOAL_RSS_BASE_MB` + `GOAL_RSS_PER_SERVER_MB` x N; the start-up delay <= `GOAL_STARTUP_DELAY_MS`.

The hub runs with `auth: none` here (authentication does not change catalog size or start-up),
a start-up timeout of `STARTUP_TIMEOUT_SECONDS` per server (20 Python servers starting at once on
2 cores take a while), and its state in a temporary directory.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx2
from _load import REQUEST_TIMEOUT_SECONDS, CallError, Worker, list_all
from _peers import FIXTURE, HUB_RUNNER, fixture_argv, hub_config, spawn_hub
from _procs import Process, Processes, cpu_times, log, rss_bytes, wait_ready
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

STARTUP_TIMEOUT_SECONDS = 180.0
"""Per-server `startup_timeout_seconds` of the scale hubs, and the bound on reaching a full catalog."""
HUB_STOP_TIMEOUT_SECONDS = 60.0
"""How long a scale hub may take to stop (it stops every server it started) before it is killed."""
GOAL_LIST_MS = 20.0
"""Goal: hub CPU (ms) of one full paginated `tools/list` of the N x M catalog (issue 12 item 5)."""
GOAL_RSS_BASE_MB = 60.0
GOAL_RSS_PER_SERVER_MB = 1.0
"""Goal: hub idle RSS <= `GOAL_RSS_BASE_MB` + `GOAL_RSS_PER_SERVER_MB` per server (MB)."""
GOAL_STARTUP_DELAY_MS = 100.0
"""Goal: the hub's first full `tools/list` ends at most this long after its slowest server
answered its own first one (ms)."""


@dataclass
class ListStats:
    """Full listings of one era: median time, and what the last one returned."""

    median_ms: float
    items: int
    pages: int
    body_bytes: int
    hub_cpu_ms: float | None = None
    """CPU time (user + system) of the hub process per timed walk (mean over the walks; the
    kernel counts it in ticks of 10 ms, so more walks read finer)."""


@dataclass
class HubStart:
    servers: int
    tools: int
    """Tools in the catalog as `/readyz` reports them once ready."""
    ready_seconds: float
    """From spawning the hub to `/readyz` 200 with every server past its first start."""
    idle_rss_bytes: int | None
    servers_ready: int
    startup_delay_ms: float | None = None
    """The end of the hub's first full `tools/list` (asked for as the hub started listening)
    minus the time its slowest server answered its own first full `tools/list`; None when a
    server wrote no stamp (not every server started)."""


@dataclass
class ScaleRun:
    rep: int
    base_tools: int
    """Tools the fixture has without `--extra-tools`."""
    extra_tools: int
    servers: int
    own_first_list_seconds: list[float] = field(default_factory=list)
    own_tools: int = 0
    hubs: dict[str, HubStart] = field(default_factory=dict)
    """"empty" (0 servers), "small" (N x built-in tools), "full" (N x M tools)."""
    hub_lists: dict[str, ListStats] = field(default_factory=dict)
    one_server_lists: dict[str, ListStats] = field(default_factory=dict)
    one_server_rss_bytes: int | None = None


async def _own_first_list(extra_tools: int, errlog: TextIO) -> tuple[float, int]:
    """Spawn one fixture over stdio, connect as the hub does, list every tool: (seconds, tools)."""
    args = [str(FIXTURE), *(["--extra-tools", str(extra_tools)] if extra_tools else [])]
    params = StdioServerParameters(command=sys.executable, args=args)
    t0 = time.perf_counter()
    async with Client(stdio_client(params, errlog=errlog)) as client:
        tools, cursor = 0, None
        while True:
            page = await client.list_tools(cursor=cursor)
            tools += len(page.tools)
            if not (cursor := page.next_cursor):
                break
        return time.perf_counter() - t0, tools


async def own_first_lists(servers: int, extra_tools: int, errlog: TextIO) -> list[tuple[float, int]]:
    """`servers` fixtures started at once, each timed from spawn to its first full list; their
    stderr goes to `errlog` (a real file: the SDK hands its descriptor to the child)."""
    async with asyncio.timeout(STARTUP_TIMEOUT_SECONDS):
        return await asyncio.gather(*(_own_first_list(extra_tools, errlog) for _ in range(servers)))


async def _list_stats(url: str, era: str, lists: int, pid: int | None = None) -> ListStats:
    """One warm-up listing, then `lists` timed full listings (walking `nextCursor`); with `pid`
    (the hub), also the CPU time that process spent per timed listing."""
    timeout = httpx2.Timeout(REQUEST_TIMEOUT_SECONDS)
    async with httpx2.AsyncClient(timeout=timeout, trust_env=False) as client:
        worker = Worker(client, url, era)
        await worker.open()
        try:
            await list_all(worker)
            before = cpu_times(pid) if pid is not None else None
            walks = [await list_all(worker) for _ in range(lists)]
            after = cpu_times(pid) if pid is not None else None
        finally:
            await worker.close()
    last = walks[-1]
    cpu_ms = None
    if before is not None and after is not None:
        cpu_ms = (sum(after) - sum(before)) / len(walks) * 1000
    return ListStats(
        statistics.median(w.seconds for w in walks) * 1000, last.items, last.pages, last.body_bytes, cpu_ms
    )


async def _first_full_list(url: str, era: str) -> float:
    """Walk the hub's `tools/list` once, from as soon as it listens: the wall-clock time
    (`time.time()`) the walk ended (the hub answers lists once every server had its first start)."""
    timeout = httpx2.Timeout(STARTUP_TIMEOUT_SECONDS)
    async with httpx2.AsyncClient(timeout=timeout, trust_env=False) as client:
        worker = Worker(client, url, era)
        await worker.open()
        try:
            await list_all(worker)
        finally:
            await worker.close()
    return time.time()


def _slowest_stamp(stamps: Path, servers: int) -> float | None:
    """The latest time a server of the run answered its own first full `tools/list`, or None
    unless every one of the `servers` wrote its stamp."""
    times = [float(path.read_text(encoding="utf-8")) for path in stamps.glob("s*") if path.stat().st_size]
    return max(times) if len(times) == servers else None


def _servers(count: int, extra_tools: int, stamps: Path) -> dict[str, Any]:
    """`count` fixture servers `s00`, `s01`...; each writes its first-list stamp into `stamps`."""
    args = [str(FIXTURE), *(["--extra-tools", str(extra_tools)] if extra_tools else [])]
    return {
        f"s{i:02d}": {
            "command": sys.executable,
            "args": [*args, "--first-list-stamp", str(stamps / f"s{i:02d}")],
            "startup_timeout_seconds": STARTUP_TIMEOUT_SECONDS,
        }
        for i in range(count)
    }


def _start_hub(
    runner: asyncio.Runner, processes: Processes, work: Path, name: str, servers: dict[str, Any], era: str,
    profile: str | None = None, hub_runner: Path = HUB_RUNNER,
) -> tuple[Process, str, HubStart]:  # fmt: skip
    state_dir = work / f"{name}-state"
    state_dir.mkdir(exist_ok=True)
    stamps = work / f"{name}-stamps"
    stamps.mkdir(exist_ok=True)
    config = hub_config(servers, str(state_dir), governance=False)
    # Stopping 20 stdio servers takes a while on a loaded machine; a graceful stop beats a kill.
    process, wait_port = spawn_hub(
        processes, name, config, work, runner=hub_runner, profile=profile, stop_timeout_seconds=HUB_STOP_TIMEOUT_SECONDS
    )
    port = wait_port()
    listed_at = runner.run(_first_full_list(f"http://127.0.0.1:{port}/mcp", era))
    response = wait_ready(f"http://127.0.0.1:{port}/readyz", process, timeout=STARTUP_TIMEOUT_SECONDS + 30)
    ready_seconds = time.perf_counter() - process.started_at
    slowest = _slowest_stamp(stamps, len(servers)) if servers else None
    process.adopt_descendants()
    body = response.json()
    statuses = body.get("servers", [])
    start = HubStart(
        servers=len(statuses),
        tools=sum(int(s.get("tools") or 0) for s in statuses),
        ready_seconds=ready_seconds,
        idle_rss_bytes=rss_bytes(process.pid),
        servers_ready=sum(1 for s in statuses if s.get("state") == "ready"),
        startup_delay_ms=None if slowest is None else (listed_at - slowest) * 1000,
    )
    delay = "-" if start.startup_delay_ms is None else f"{start.startup_delay_ms:.0f} ms"
    log(
        f"{name}: {start.servers_ready}/{start.servers} servers ready, {start.tools} tools, "
        f"{ready_seconds:.2f} s from spawn, idle RSS {(start.idle_rss_bytes or 0) / 2**20:.1f} MB, "
        f"first full list {delay} after the slowest server's own"
    )
    return process, f"http://127.0.0.1:{port}/mcp", start


def base_tool_count(runner: asyncio.Runner) -> int:
    """How many tools the fixture has without `--extra-tools` (other work may add some)."""
    with open(os.devnull, "w") as errlog:
        [(_, tools)] = runner.run(own_first_lists(1, 0, errlog))
    return tools


def run_scale(
    runner: asyncio.Runner, processes: Processes, work: Path, *, rep: int, base_tools: int, servers: int,
    tools_per_server: int, eras: list[str], lists: int, hub_profile: str | None = None,
    hub_runner: Path = HUB_RUNNER,
) -> ScaleRun:  # fmt: skip
    """One repetition of every scale row (each hub is stopped before the next starts); with
    `hub_profile`, the hub of N x M tools runs under the profiler (`_hub_runner.py --profile`:
    its whole run, start-up and lists; the last repetition's profile is kept); every hub is
    served by `hub_runner` (`bench.py --hub-runner`: a variant of the hub)."""
    extra = max(0, tools_per_server - base_tools)
    run = ScaleRun(rep, base_tools, extra, servers)

    log(f"scale rep {rep + 1}: {servers} fixture servers started at once over stdio, own first list")
    with open(os.devnull, "w") as errlog:
        own = runner.run(own_first_lists(servers, extra, errlog))
    run.own_first_list_seconds = sorted(s for s, _ in own)
    run.own_tools = sum(n for _, n in own)

    for name, count, extra_of_name in (("empty", 0, 0), ("small", servers, 0), ("full", servers, extra)):
        fleet = _servers(count, extra_of_name, work / f"hub-scale-{name}-stamps")
        profile = hub_profile if name == "full" else None
        process, url, start = _start_hub(
            runner, processes, work, f"hub-scale-{name}", fleet, eras[0], profile, hub_runner
        )
        run.hubs[name] = start
        if name == "full":
            for era in eras:
                log(f"  full tools/list through the hub, {era} era, {lists} times")
                try:
                    run.hub_lists[era] = runner.run(_list_stats(url, era, lists, process.pid))
                except (CallError, httpx2.HTTPError) as exc:
                    log(f"  FAILED: {type(exc).__name__}: {exc}")
        processes.stop(process)

    total_extra = max(0, run.hubs["full"].tools - base_tools) if run.hubs["full"].tools else servers * tools_per_server
    argv = fixture_argv("--transport", "http", "--port", "0", "--json-response", "--extra-tools", str(total_extra))
    one = Process("one-server", argv)
    processes.append(one)
    url = f"http://127.0.0.1:{one.wait_port()}/mcp"
    for era in eras:
        log(f"  full tools/list from one server holding {base_tools + total_extra} tools, {era} era")
        try:
            run.one_server_lists[era] = runner.run(_list_stats(url, era, lists))
        except (CallError, httpx2.HTTPError) as exc:
            log(f"  FAILED: {type(exc).__name__}: {exc}")
    run.one_server_rss_bytes = rss_bytes(one.pid)
    processes.stop(one)
    return run


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def scale_report(runs: list[ScaleRun], eras: list[str]) -> list[str]:
    """The scale rows as text: medians over the repetitions."""
    if not runs:
        return ["Scale: no run completed."]
    first = runs[0]
    servers, per_server = first.servers, first.base_tools + first.extra_tools

    def hub(name: str, attr: str) -> float | None:
        values = [getattr(r.hubs[name], attr) for r in runs if name in r.hubs]
        return _median([float(v) for v in values if v is not None])

    rss = {name: hub(name, "idle_rss_bytes") for name in ("empty", "small", "full")}
    tools = {name: hub(name, "tools") for name in ("empty", "small", "full")}
    per_server_mb = per_tool_kb = None
    if rss["empty"] is not None and rss["small"] is not None and servers:
        per_server_mb = (rss["small"] - rss["empty"]) / servers / 2**20
    if rss["small"] is not None and rss["full"] is not None and tools["full"] and tools["small"] is not None:
        if tools["full"] > tools["small"]:
            per_tool_kb = (rss["full"] - rss["small"]) / (tools["full"] - tools["small"]) / 1024
    slowest = _median([max(r.own_first_list_seconds) for r in runs if r.own_first_list_seconds])
    own_median = _median([statistics.median(r.own_first_list_seconds) for r in runs if r.own_first_list_seconds])

    def mb(value: float | None) -> str:
        return _fmt(None if value is None else value / 2**20, ".1f")

    lines = [
        f"Scale (medians of {len(runs)} repetition(s); the hub with auth: none):",
        f"  fixture: {first.base_tools} built-in tools + --extra-tools {first.extra_tools} = {per_server} per server;"
        f" {servers} servers = {servers * per_server:,} tools (the hub's catalog: {_fmt(tools['full'], ',.0f')})",
        f"  servers' own start to first full tools/list ({servers} at once, mcp.Client over stdio):"
        f" slowest {_fmt(slowest, '.2f')} s, median {_fmt(own_median, '.2f')} s",
        f"  hub start to full catalog: {_fmt(hub('full', 'ready_seconds'), '.2f')} s with"
        f" {servers} x {per_server} tools,"
        f" {_fmt(hub('small', 'ready_seconds'), '.2f')} s with {servers} x {first.base_tools},"
        f" {_fmt(hub('empty', 'ready_seconds'), '.2f')} s with none",
        f"  hub idle RSS: {mb(rss['empty'])} MB with 0 servers, {mb(rss['small'])} MB with {servers} x"
        f" {first.base_tools} tools, {mb(rss['full'])} MB with {servers} x {per_server} tools:"
        f" {_fmt(per_server_mb, '.2f')} MB per server, {_fmt(per_tool_kb, '.1f')} KB per catalog tool",
    ]
    rows = []
    for label, attr in (("through the hub", "hub_lists"), ("one server holding them all", "one_server_lists")):
        for era in eras:
            stats = [getattr(r, attr)[era] for r in runs if era in getattr(r, attr)]
            if not stats:
                rows.append(f"    {label:28} {era:9}  FAILED")
                continue
            last = stats[-1]
            cpu = _median([s.hub_cpu_ms for s in stats if s.hub_cpu_ms is not None])
            note = f"  hub CPU {_fmt(cpu, '.0f')} ms" if attr == "hub_lists" else ""
            rows.append(
                f"    {label:28} {era:9} {_fmt(_median([s.median_ms for s in stats]), '8.0f')} ms"
                f"  {last.items:>6,} tools  {last.pages:>3} page(s)  {last.body_bytes / 2**20:5.2f} MB{note}"
            )
    one_rss = _median([float(r.one_server_rss_bytes) for r in runs if r.one_server_rss_bytes])
    lines += ["  full tools/list, walked through nextCursor (median per full list):", *rows]
    lines.append(f"  one server holding them all: RSS {mb(one_rss)} MB after listing")
    return lines + _goal_rows(runs, eras, rss["small"])


def _verdict(value: float | None, goal: float) -> str:
    return "-" if value is None else ("MET" if value <= goal else "MISSED")


def _goal_rows(runs: list[ScaleRun], eras: list[str], small_rss: float | None) -> list[str]:
    """The three goals of issue 12 item 5, each with its measured figure and MET or MISSED."""
    first = runs[0]
    servers, tools = first.servers, first.servers * (first.base_tools + first.extra_tools)
    lines = ["  goals (issue 12 item 5):"]
    for era in eras:
        stats = [r.hub_lists[era] for r in runs if era in r.hub_lists]
        cpu = _median([s.hub_cpu_ms for s in stats if s.hub_cpu_ms is not None])
        wall = _median([s.median_ms for s in stats])
        lines.append(
            f"    full paginated tools/list of {tools:,} tools, {era:9} hub CPU {_fmt(cpu, '6.1f')} ms"
            f" (wall {_fmt(wall, '.0f')} ms) <= {GOAL_LIST_MS:g} ms: {_verdict(cpu, GOAL_LIST_MS)}"
        )
    limit = GOAL_RSS_BASE_MB + GOAL_RSS_PER_SERVER_MB * servers
    rss = None if small_rss is None else small_rss / 2**20
    lines.append(
        f"    hub idle RSS with {servers} servers {_fmt(rss, '6.1f')} MB <= {GOAL_RSS_BASE_MB:g} +"
        f" {GOAL_RSS_PER_SERVER_MB:g} x {servers} = {limit:g} MB: {_verdict(rss, limit)}"
    )
    delays = [r.hubs["full"].startup_delay_ms for r in runs if "full" in r.hubs]
    delay = _median([d for d in delays if d is not None])
    lines.append(
        f"    first full tools/list after the slowest server's own ({servers} x {first.base_tools + first.extra_tools}"
        f" tools) {_fmt(delay, '6.0f')} ms <= {GOAL_STARTUP_DELAY_MS:g} ms: {_verdict(delay, GOAL_STARTUP_DELAY_MS)}"
    )
    return lines
