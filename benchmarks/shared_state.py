"""What the shared state (`cluster.redis_url`) costs per call, measured side by side in one run:

1. `RateLimiter.check_request` alone, counted in memory vs in a real Redis on loopback (one
   moving-window Lua call per allowed request);
2. a `tools/call` through a hub with a per-principal and a per-route limit (two limiter hits
   per call), without and with Redis: the added latency per call of the Redis round trips.

    python benchmarks/shared_state.py [--calls N] [--hits N]

Needs `redis-server` (`scripts/install-test-services.sh`). Prints a table; every process it
starts listens on 127.0.0.1 only and is stopped at the end.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hub.cluster.redis_store import RedisStore
from hub.config import RateLimitsConfig
from hub.endpoint.rate_limits import RateLimiter
from tests.cluster_fixtures import RedisServer, find_redis_server
from tests.conftest import fixture_entry, running_hub, until

LIMITS: dict[str, Any] = {
    "per_principal": {"requests_per_second": 100000, "burst": 100000},
    "routes": {"fx__*": {"requests_per_second": 100000, "burst": 100000}},
}


def _row(name: str, samples: list[float]) -> tuple[str, float, float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return name, statistics.median(ordered) * 1000, statistics.fmean(ordered) * 1000, p99 * 1000


async def _limiter(limiter: RateLimiter, hits: int) -> list[float]:
    samples = []
    for index in range(hits):
        started = time.perf_counter()
        wait = await limiter.check_request(f"p{index % 10}")
        samples.append(time.perf_counter() - started)
        assert wait == 0.0
    return samples


async def _calls(url: str, calls: int) -> list[float]:
    samples = []
    async with Client(url) as client:
        for _ in range(20):  # warm-up
            await client.call_tool("fx__echo", {"text": "x"})
        for _ in range(calls):
            started = time.perf_counter()
            await client.call_tool("fx__echo", {"text": "x"})
            samples.append(time.perf_counter() - started)
    return samples


async def main(calls: int, hits: int) -> None:
    binary = find_redis_server()
    if binary is None:
        sys.exit("redis-server is not installed (scripts/install-test-services.sh installs it)")
    with tempfile.TemporaryDirectory() as directory:
        redis_server = RedisServer(binary, Path(directory))
        redis_server.start()
        try:
            rows = []
            memory = RateLimiter(RateLimitsConfig.model_validate(LIMITS))
            rows.append(_row("limiter hit, memory", await _limiter(memory, hits)))
            store = RedisStore(redis_server.url, timeout_seconds=2.0)
            async with store.running():
                with anyio.fail_after(10):
                    await until(lambda: store.available)
                shared = RateLimiter(RateLimitsConfig.model_validate(LIMITS), store)
                rows.append(_row("limiter hit, Redis", await _limiter(shared, hits)))
            servers = {"fx": fixture_entry("fx")}
            # Interleaved: without Redis, with Redis, without, with.
            per_target: dict[str, list[float]] = {"tools/call, memory limits": [], "tools/call, Redis limits": []}
            for _ in range(2):
                async with running_hub(servers, rate_limits=LIMITS) as hub:
                    per_target["tools/call, memory limits"] += await _calls(hub.url, calls)
                cluster = {"redis_url": redis_server.url, "redis_timeout_seconds": 2.0}
                async with running_hub(servers, rate_limits=LIMITS, cluster=cluster) as hub:
                    with anyio.fail_after(10):
                        await until(lambda: hub.hub.store.health().status == "ok")
                    per_target["tools/call, Redis limits"] += await _calls(hub.url, calls)
            rows += [_row(name, samples) for name, samples in per_target.items()]
        finally:
            redis_server.stop()
    print(f"{'what':32} {'median ms':>10} {'mean ms':>10} {'p99 ms':>10}")
    for name, median, mean, p99 in rows:
        print(f"{name:32} {median:10.3f} {mean:10.3f} {p99:10.3f}")
    added = rows[3][1] - rows[2][1]
    print(f"added latency per call (median, 2 limiter hits): {added:.3f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500, help="timed tools/call per hub run (2 runs each)")
    parser.add_argument("--hits", type=int, default=3000, help="timed limiter hits per storage")
    args = parser.parse_args()
    anyio.run(main, args.calls, args.hits)
