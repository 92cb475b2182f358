"""Throughput, latency, CPU per call and memory of an `echo` tool: directly, through mcp-proxy 0.13 and
through the hub, side by side in one run (issue 12, "the benchmark first").

    python benchmarks/bench.py [--reps 2] [--seconds 3] [--concurrency 1,16,64] [--eras handshake,modern]
                               [--targets direct-sse,direct-json,mcp-proxy,floor,hub,hub-noauth] [--json]
    python benchmarks/bench.py --scale [--scale-servers 20] [--scale-tools 500]

Targets (all on 127.0.0.1, all in front of the same fixture server, every process stopped at the end,
also on Ctrl-C and SIGTERM):

- direct-sse: `tests/servers/fixture_server.py --transport http` (SSE answers in the handshake era);
- direct-json: the same with `--json-response`;
- mcp-proxy: PyPI `mcp-proxy` 0.13 in its own venv (`.cache/bench/mcp-proxy-venv`, created from the
  package registry when missing), bridging the fixture over stdio to Streamable HTTP;
- floor: `_floor.py`, the thinnest Python bridge on the hub's stack (uvicorn, uvloop, orjson, the
  fixture over stdio by request id) with no gateway feature: the lower bound of the hub's CPU;
- hub: the hub with an API key, a policy, rate limits and metrics, the fixture over stdio;
- hub-noauth: the hub with `auth: none`, the fixture over stdio.

The load generator is this process: C closed-loop clients sending raw JSON-RPC with `httpx2` on
uvloop (see `_load.py`). Repetitions are interleaved (every target once, then every target again,
...), and the table shows medians. `--scale` runs the scale rows instead (see `_scale.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import httpx2

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
    uvloop = None  # type: ignore[assignment]

from _load import ERAS, Measurement, measure
from _peers import HUB_RUNNER, TARGETS, Target, counted_calls, start_all, workdir
from _procs import Processes, log, rss_bytes, started
from _report import Summary, goal_lines, notes, rss_table, throughput_table
from _scale import ScaleRun, base_tool_count, run_scale, scale_report


def _csv_ints(text: str) -> list[int]:
    values = [int(x) for x in text.split(",") if x.strip()]
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("a comma-separated list of positive integers")
    return values


def _csv_choices(choices: tuple[str, ...]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        values = [x.strip() for x in text.split(",") if x.strip()]
        if not values or any(v not in choices for v in values):
            raise argparse.ArgumentTypeError(f"a comma-separated list of {', '.join(choices)}")
        return [c for c in choices if c in values]  # the canonical order

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--reps", type=int, default=2, help="interleaved repetitions; the table shows medians (default 2)")
    add("--seconds", type=float, default=3.0, help="measurement window per run, seconds (default 3)")
    add("--warmup", type=float, default=1.0, help="warm-up before each window, seconds (default 1)")
    add("--concurrency", type=_csv_ints, default=[1, 16, 64], help="closed-loop clients (default 1,16,64)")
    add("--eras", type=_csv_choices(tuple(ERAS)), default=list(ERAS),
        help="protocol eras to measure (default handshake,modern)")  # fmt: skip
    add("--targets", type=_csv_choices(TARGETS), default=list(TARGETS),
        help=f"what to measure (default {','.join(TARGETS)})")  # fmt: skip
    add("--max-calls", type=int, default=200_000, help="end a window early after this many calls")
    add("--hub-runner", metavar="SCRIPT", default=str(HUB_RUNNER),
        help="script that serves the hub: takes --config FILE.json, prints PORT=<n>, serves /readyz and /mcp; "
             "default benchmarks/_hub_runner.py, replace it to measure a variant")  # fmt: skip
    add("--hub-profile", metavar="OUT.prof|OUT.html",
        help="run the `hub` target (with --scale: the hub of N x M tools) under cProfile (.prof, pstats "
             "format) or pyinstrument (.html, plus a .txt next to it; needs `pip install pyinstrument`); written "
             "on exit (inflates hub CPU)")  # fmt: skip
    add("--scale", action="store_true", help="run the scale rows (large catalog, memory, start-up) instead")
    add("--scale-servers", type=int, default=20, help="--scale: stdio servers in the hub (default 20)")
    add("--scale-tools", type=int, default=500, help="--scale: tools per server (default 500)")
    add("--scale-lists", type=int, default=3, help="--scale: timed full lists per era (default 3)")
    add("--json", action="store_true", help="print the results as JSON instead of tables")
    return parser


def _runner() -> asyncio.Runner:
    return asyncio.Runner(loop_factory=uvloop.new_event_loop) if uvloop else asyncio.Runner()


def _header(args: argparse.Namespace, load_before: tuple[float, ...]) -> list[str]:
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    load_now = os.getloadavg()
    return [
        f"{now}; {os.cpu_count()} CPUs; load average {load_before[0]:.1f} at start, {load_now[0]:.1f} at end;"
        f" Python {sys.version.split()[0]}; {args.reps} interleaved rep(s) of {args.warmup:g} s warm-up"
        f" + {args.seconds:g} s; loadgen on {'uvloop' if uvloop else 'asyncio'}",
    ]


def throughput(args: argparse.Namespace) -> int:
    results: list[Measurement] = []
    metrics_counted: float | None = None
    rss_after: dict[str, dict[str, int | None]] = {}
    load_before = os.getloadavg()
    began = time.monotonic()
    with started() as processes, workdir() as work:
        targets, unavailable = start_all(
            processes, args.targets, work, hub_runner=Path(args.hub_runner).resolve(), hub_profile=args.hub_profile
        )
        for target in targets.values():
            target.record_idle_rss()
        runs = args.reps * len(args.eras) * len(args.concurrency) * len(targets)
        minutes = runs * (args.warmup + args.seconds + 0.5) / 60
        log(f"{runs} measurements of {args.warmup:g} s + {args.seconds:g} s: about {minutes:.1f} min")
        with _runner() as runner:
            for rep in range(args.reps):
                for era in args.eras:
                    for c in args.concurrency:
                        for target in targets.values():
                            results.append(runner.run(_measure_one(args, target, era, c, rep)))
        rss_after = {name: {k: rss_bytes(p) for k, p in t.cpu_pids.items()} for name, t in targets.items()}
        metrics_counted = _scrape_metrics(targets.get("hub"))
        _stop_profiled_first(processes, args)
    log(f"done in {time.monotonic() - began:.0f} s; all processes stopped")

    summary = Summary(results, unavailable)
    rows = summary.rows(args.eras, args.concurrency, args.targets)
    if args.json:
        print(json.dumps({
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "settings": {k: v for k, v in vars(args).items() if not k.startswith("scale")},
            "machine": {"cpus": os.cpu_count(), "loadavg_start": load_before, "loadavg_end": os.getloadavg(),
                        "python": sys.version.split()[0], "uvloop_loadgen": uvloop is not None},
            "targets": {n: {"url": t.url, "description": t.description, "pids": t.cpu_pids,
                            "idle_rss_bytes": t.idle_rss_bytes,
                            "rss_after_bytes": rss_after.get(n)} for n, t in targets.items()},
            "unavailable": unavailable,
            "hub_metrics_calls_counted": metrics_counted,
            "summary": [asdict(r) for r in rows],
            "measurements": [asdict(r) for r in results],
        }, indent=2))  # fmt: skip
        return 0
    lines = _header(args, load_before)
    lines += ["", *throughput_table(rows), "", *rss_table(targets, unavailable), ""]
    lines += goal_lines(summary, args.eras, args.concurrency)
    lines += [
        "",
        "x mcp-proxy / x direct-JSON: calls/s relative to that target in the same repetition (median of the",
        "per-repetition ratios). CPU ms/call: utime+stime from /proc/<pid>/stat over the window / calls (10 ms",
        "ticks): gateway = the hub or mcp-proxy process, server = the fixture that answers (HTTP for direct-*,",
        "stdio child otherwise), loadgen = this process. n/a: the target does not serve that era.",
    ]
    if metrics_counted is not None:
        lines.append(f"hub /metrics (scraped after the run with the bench key): {metrics_counted:,.0f} calls counted.")
    extra = notes(rows)
    if extra:
        lines += ["", "Notes:", *(f"  {n}" for n in extra)]
    print("\n".join(lines))
    return 0


async def _measure_one(args: argparse.Namespace, target: Target, era: str, c: int, rep: int) -> Measurement:
    log(f"rep {rep + 1}/{args.reps} {target.name:11} {era:9} C={c}")
    r = await measure(
        target=target.name, url=target.url, tool=target.tool, era=era, concurrency=c, warmup=args.warmup,
        seconds=args.seconds, max_calls=args.max_calls, cpu_pids=target.cpu_pids, headers=target.headers, rep=rep,
    )  # fmt: skip
    if r.unsupported:
        log(f"  n/a: {r.unsupported[:200]}")
    elif r.failed:
        log(f"  FAILED: {r.failed}")
    else:
        cpu = ", ".join(f"{k} {'-' if v is None else format(v, '.3f')}" for k, v in r.cpu_ms_per_call.items())
        p50 = "-" if r.p50_ms is None else f"{r.p50_ms:.2f}"
        log(f"  {r.calls_per_s:.0f} calls/s, p50 {p50} ms, errors {r.errors}, CPU ms/call: {cpu}")
    return r


def _scrape_metrics(hub: Target | None) -> float | None:
    """The hub's count of calls from `/metrics` (scope hub:metrics), or None without a governed hub."""
    if hub is None or hub.metrics_url is None:
        return None
    try:
        response = httpx2.get(hub.metrics_url, headers=hub.headers, timeout=10.0, trust_env=False)
    except httpx2.HTTPError as exc:
        log(f"hub /metrics: {exc!r}")
        return None
    if response.status_code != 200:
        log(f"hub /metrics: HTTP {response.status_code}")
        return None
    return counted_calls(response.text)


def _stop_profiled_first(processes: Processes, args: argparse.Namespace) -> None:
    """A profiled hub writes its profile while stopping: stop it first, so a slow write is not cut
    short by the others' shutdown."""
    if args.hub_profile:
        for process in list(processes):
            if process.name == "hub":
                processes.stop(process)


def scale(args: argparse.Namespace) -> int:
    runs: list[ScaleRun] = []
    load_before = os.getloadavg()
    began = time.monotonic()
    with started() as processes, workdir() as work, _runner() as runner:
        base = base_tool_count(runner)
        log(f"the fixture has {base} built-in tools")
        for rep in range(args.reps):
            runs.append(run_scale(
                runner, processes, work, rep=rep, base_tools=base, servers=args.scale_servers,
                tools_per_server=args.scale_tools, eras=args.eras, lists=args.scale_lists,
                hub_profile=args.hub_profile, hub_runner=Path(args.hub_runner).resolve(),
            ))  # fmt: skip
    log(f"done in {time.monotonic() - began:.0f} s; all processes stopped")
    if args.json:
        print(json.dumps({
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "settings": {k: v for k, v in vars(args).items() if k.startswith("scale") or k in ("reps", "eras")},
            "machine": {"cpus": os.cpu_count(), "loadavg_start": load_before, "loadavg_end": os.getloadavg()},
            "runs": [asdict(r) for r in runs],
        }, indent=2))  # fmt: skip
        return 0
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    load_now = os.getloadavg()
    print(f"{now}; {os.cpu_count()} CPUs; load average {load_before[0]:.1f} at start, {load_now[0]:.1f} at end\n")
    print("\n".join(scale_report(runs, args.eras)))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.reps < 1 or args.seconds <= 0 or args.warmup < 0 or args.scale_servers < 1 or args.scale_tools < 1:
        _parser().error("--reps, --seconds, --scale-servers and --scale-tools must be positive, --warmup >= 0")
    return scale(args) if args.scale else throughput(args)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as exc:  # a process did not start or get ready (the message carries its stderr)
        log(f"failed: {exc}")
        sys.exit(1)
    except KeyboardInterrupt:
        log("interrupted; all processes stopped")
        sys.exit(130)
