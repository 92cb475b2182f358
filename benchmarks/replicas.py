"""Calls/s of one hub replica against three behind a real HAProxy (round-robin) sharing a real Redis,
and the latency each call gains from the Redis round trips (issue 11), side by side in one run.

    python benchmarks/replicas.py [--era modern|handshake] [--reps 2] [--seconds 3] [--warmup 1]
                                  [--concurrency 1,16,64] [--json]

Every hub is the benchmark's governed hub (`_peers.hub_config`: an API key, a policy, a
per-principal and a per-route rate limit far above the load, metrics) in front of the fixture
server over stdio. The targets, measured interleaved by the same load generator as `bench.py`
(`_load.measure`, in the modern era by default; with `--era handshake` each client opens one
session and its requests land on every replica in turn, which rebuilds it from its sealed id
on first sight and checks its revocation in Redis on every request):

- `1 memory`: one hub, asked directly, rate limits counted in memory (no `cluster`);
- `1 redis`: one hub, asked directly, with `cluster.redis_url` (each call checks two limits in
  Redis: one Lua call each);
- `1 redis+lb`: that hub behind HAProxy;
- `3 redis+lb`: that hub and two more, all sharing the Redis, behind HAProxy round-robin.

"Added latency per call" is the p50 of `1 redis` minus that of `1 memory` at one client (median
over repetitions). Needs `redis-server` and `haproxy` (`scripts/install-test-services.sh`).
Everything listens on 127.0.0.1 and is stopped at the end, also on Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import secrets
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
for path in (str(HERE.parent), str(HERE)):
    if path not in sys.path:
        sys.path.insert(0, path)

from _load import Measurement, measure  # noqa: E402
from _peers import FIXTURE, hub_config, spawn_hub  # noqa: E402
from _procs import Process, Processes, log, started, wait_ready  # noqa: E402

from tests.balancer import Balancer, find_haproxy  # noqa: E402
from tests.cluster_fixtures import RedisServer, find_redis_server  # noqa: E402
from tests.conftest import free_port  # noqa: E402

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
    uvloop = None  # type: ignore[assignment]

TARGETS = ("1 memory", "1 redis", "1 redis+lb", "3 redis+lb")
CHECK_INTERVAL_MS = 2000
"""HAProxy's health checks here: the compose deployment's interval, so checks cost what they do there."""
CLUSTER_KEY_ENV = "MCPHUB_BENCH_CLUSTER_KEY"
"""The environment variable holding the replicas' shared key (`cluster.secret_env`)."""


@dataclass
class Replica:
    """A started hub: its name, port and the pids whose CPU is counted (the hub, its fixture)."""

    name: str
    port: int
    pids: dict[str, int]


def _csv_ints(text: str) -> list[int]:
    values = [int(x) for x in text.split(",") if x.strip()]
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("a comma-separated list of positive integers")
    return values


def _start_hubs(
    processes: Processes, work: Path, key: str, redis_url: str, allowed_hosts: list[str]
) -> dict[str, Replica]:
    """`memory` (no cluster) and `r1`..`r3` (sharing `redis_url`), started at once, each ready."""
    spawned: dict[str, tuple[Process, Callable[[], int]]] = {}
    # The replicas' shared key: a session (or requestState) one seals, any other opens.
    cluster_key = {CLUSTER_KEY_ENV: secrets.token_hex(32)}
    for name in ("memory", "r1", "r2", "r3"):
        state = work / f"{name}-state"
        state.mkdir()
        config = hub_config({"fx": {"command": sys.executable, "args": [str(FIXTURE)]}}, str(state), True)
        config["allowed_hosts"] = allowed_hosts
        if name != "memory":
            config["cluster"] = {"secret_env": CLUSTER_KEY_ENV, "redis_url": redis_url, "redis_timeout_seconds": 2.0}
        spawned[name] = spawn_hub(processes, name, config, work, key=key, env=cluster_key)
    hubs = {}
    for name, (process, wait_port) in spawned.items():
        port = wait_port()
        wait_ready(f"http://127.0.0.1:{port}/readyz", process)
        children = process.adopt_descendants()
        pids = {f"{name}": process.pid} | ({f"{name}-fx": children[0]} if len(children) == 1 else {})
        hubs[name] = Replica(name, port, pids)
        log(f"{name}: ready on port {port}")
    return hubs


async def _measure(
    args: argparse.Namespace, target: str, url: str, pids: dict[str, int], key: str, c: int, rep: int
) -> Measurement:
    log(f"rep {rep + 1}/{args.reps} {target:11} C={c}")
    result = await measure(
        target=target, url=url, tool="fx__echo", era=args.era, concurrency=c, warmup=args.warmup,
        seconds=args.seconds, max_calls=args.max_calls, cpu_pids=pids,
        headers={"authorization": f"Bearer {key}"}, rep=rep,
    )  # fmt: skip
    if result.failed:
        log(f"  FAILED: {result.failed}")
    else:
        log(f"  {result.calls_per_s:.0f} calls/s, p50 {result.p50_ms or 0:.2f} ms, errors {result.errors}")
    return result


def _cpu_by_role(result: Measurement) -> dict[str, float]:
    """CPU ms per call summed by role: hubs, fixtures, haproxy, redis, loadgen."""
    roles: dict[str, float] = {}
    for name, value in result.cpu_ms_per_call.items():
        role = "fixtures" if name.endswith("-fx") else "hubs" if name in ("memory", "r1", "r2", "r3") else name
        roles[role] = roles.get(role, 0.0) + (value or 0.0)
    return roles


def _report(results: list[Measurement], concurrency: list[int]) -> list[str]:
    def of(target: str, c: int) -> list[Measurement]:
        return [r for r in results if r.target == target and r.concurrency == c and r.usable]

    def median_of(values: list[float]) -> str:
        return "-" if not values else format(statistics.median(values), ".2f")

    lines = [
        "| replicas, shared state | C | calls/s | x 1 redis+lb | p50 / p99 ms "
        "| CPU ms/call: hubs / fixtures / haproxy / redis | errors |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in concurrency:
        base = {r.rep: r.calls_per_s for r in of("1 redis+lb", c)}
        for target in TARGETS:
            runs = of(target, c)
            if not runs:
                lines.append(f"| {target} | {c} | FAILED | | | | |")
                continue
            ratio = median_of([r.calls_per_s / base[r.rep] for r in runs if base.get(r.rep)])
            roles = [_cpu_by_role(run) for run in runs]
            cpu = " / ".join(
                median_of([cost[role] for cost in roles if role in cost])
                for role in ("hubs", "fixtures", "haproxy", "redis")
            )
            rate = statistics.median([r.calls_per_s for r in runs])
            p50 = median_of([r.p50_ms for r in runs if r.p50_ms is not None])
            p99 = median_of([r.p99_ms for r in runs if r.p99_ms is not None])
            errors = sum(r.errors for r in runs)
            lines.append(f"| {target} | {c} | {rate:.0f} | {ratio} | {p50} / {p99} | {cpu} | {errors} |")
    added = []
    for rep in sorted({r.rep for r in results}):
        memory = [r.p50_ms for r in of("1 memory", 1) if r.rep == rep and r.p50_ms is not None]
        redis = [r.p50_ms for r in of("1 redis", 1) if r.rep == rep and r.p50_ms is not None]
        if memory and redis:
            added.append(redis[0] - memory[0])
    if added:
        each = ", ".join(f"{a:.2f}" for a in added)
        lines += [
            "",
            "Added latency per call of the Redis round trips (p50 at C=1, `1 redis` - `1 memory`): "
            f"{statistics.median(added):.2f} ms (per repetition: {each})",
        ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--era", choices=("modern", "handshake"), default="modern", help="default modern")
    parser.add_argument("--reps", type=int, default=2, help="interleaved repetitions; medians shown (default 2)")
    parser.add_argument("--seconds", type=float, default=3.0, help="measurement window, seconds (default 3)")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up before each window, seconds (default 1)")
    parser.add_argument("--concurrency", type=_csv_ints, default=[1, 16, 64], help="clients (default 1,16,64)")
    parser.add_argument("--max-calls", type=int, default=200_000, help="end a window early after N calls")
    parser.add_argument("--json", action="store_true", help="print every measurement as JSON")
    args = parser.parse_args(argv)
    redis_binary, haproxy = find_redis_server(), find_haproxy()
    if redis_binary is None or haproxy is None:
        log("needs redis-server and haproxy (scripts/install-test-services.sh installs them)")
        return 1
    load_before = os.getloadavg()
    key = secrets.token_urlsafe(32)
    results: list[Measurement] = []
    with started() as processes, tempfile.TemporaryDirectory(prefix="mcphub-bench-") as directory:
        work = Path(directory)
        redis = RedisServer(redis_binary, work)
        balancers: list[Balancer] = []
        try:
            redis.start()
            ports = [free_port(), free_port()]
            hubs = _start_hubs(processes, work, key, redis.url, [f"127.0.0.1:{port}" for port in ports])
            one = Balancer(haproxy, work, [hubs["r1"]], CHECK_INTERVAL_MS, ports[0])
            three = Balancer(haproxy, work, [hubs["r1"], hubs["r2"], hubs["r3"]], CHECK_INTERVAL_MS, ports[1])
            for balancer in (one, three):
                balancers.append(balancer)
                balancer.start()
                balancer.wait_all_up_blocking()
            redis_pid = {"redis": redis.process.pid} if redis.process else {}
            plan: dict[str, tuple[str, dict[str, int]]] = {
                "1 memory": (f"http://127.0.0.1:{hubs['memory'].port}/mcp", hubs["memory"].pids),
                "1 redis": (f"http://127.0.0.1:{hubs['r1'].port}/mcp", hubs["r1"].pids | redis_pid),
            }
            for name, balancer, members in (("1 redis+lb", one, ["r1"]), ("3 redis+lb", three, ["r1", "r2", "r3"])):
                assert balancer.process is not None
                pids = {"haproxy": balancer.process.pid} | redis_pid
                for member in members:
                    pids |= hubs[member].pids
                plan[name] = (balancer.url, pids)
            runner = asyncio.Runner(loop_factory=uvloop.new_event_loop) if uvloop else asyncio.Runner()
            with runner:
                for rep in range(args.reps):
                    for c in args.concurrency:
                        for target, (url, pids) in plan.items():
                            results.append(runner.run(_measure(args, target, url, pids, key, c, rep)))
        finally:
            for balancer in balancers:
                balancer.stop()
            redis.stop()
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    if args.json:
        print(json.dumps({"date": now, "loadavg_start": load_before, "loadavg_end": os.getloadavg(),
                          "measurements": [asdict(r) for r in results]}, indent=2))  # fmt: skip
        return 0
    print(
        f"{now}; {os.cpu_count()} CPUs; load average {load_before[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end;"
        f" {args.era} era; {args.reps} interleaved rep(s) of {args.warmup:g} s warm-up + {args.seconds:g} s\n"
    )
    print("\n".join(_report(results, args.concurrency)))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as exc:
        log(f"failed: {exc}")
        sys.exit(1)
    except KeyboardInterrupt:
        log("interrupted; all processes stopped")
        sys.exit(130)
