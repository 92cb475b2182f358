"""Search mode as served: a hub in front of 5,000 and 10,000 tools, measured through its endpoint.

    python benchmarks/tool_search/served.py                       # 5,000 and 10,000 tools, both eras
    python benchmarks/tool_search/served.py --sizes 5000 --searches 300 --json

For each catalog size, one hub (`benchmarks/_hub_runner.py`, a separate process on uvloop, as
`mcphub serve`) fronts one stdio server (`catalog_server.py`) holding the 111 real tools of the
snapshot plus generated padding, exposed under the snapshot's names (`prefix: false`). The hub is
in search mode on `/mcp`; a profile `full` (`catalog: {mode: full}`) serves the same catalog in
full, so both listings come from one hub. Measured with raw JSON-RPC over HTTP (`_load.Worker`):

1. Listings: bytes of the whole `tools/list` (every page) in full and in search mode, and the
   median size of a `search_tools` answer (limit 8) over the labelled queries: what a model reads
   (the `{"tools": [...]}` JSON once; the answer carries it twice on the wire, as
   `structuredContent` and as text, and a client hands the model one of them). Saved per
   session = full list - (search-mode list + one answer); tokens ~ bytes / 4.
2. Quality as served: recall@1, recall@5 and MRR of `search_tools` over the labelled queries
   (`queries.yaml`), per split, among all N tools.
3. Latency per era: sequential `search_tools` calls (queries cycled), a direct `tools/call` of a
   catalog tool, and the same tool through `call_tool`: wall p50/p99 and the hub's CPU per request
   (utime+stime from /proc); the hub's RSS after the run.

Numbers belong to one run on one machine: read the ratios (search against a plain call) more than
the absolute figures on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BENCHMARKS = HERE.parent
ROOT = BENCHMARKS.parent
for path in (str(ROOT), str(BENCHMARKS), str(HERE)):
    if path not in sys.path:
        sys.path.insert(0, path)

import httpx2  # noqa: E402
from _load import ERAS, Worker, list_all  # noqa: E402
from _procs import Process, cpu_times, log, rss_bytes, started, wait_ready  # noqa: E402
from data import SPLITS, load_catalog, load_queries, measure, padding_tools  # noqa: E402

SIZES = (5000, 10_000)
BYTES_PER_TOKEN = 4
HUB_START_TIMEOUT_SECONDS = 300.0
"""Longest wait for the hub to list the whole catalog (the catalog server starts and pages it)."""
BASELINE_TOOL = "git__git_status"
"""A real tool of the snapshot (without an output schema, which the stand-in server's answers
would not match), called directly and through `call_tool` for the baseline rows."""
BASELINE_ARGUMENTS = {"repo_path": "/tmp/repo"}


def _fleet(work: Path, size: int) -> Path:
    """Write the tools and the hub config for a catalog of `size` tools; return the config path."""
    real = load_catalog()
    tools = real + padding_tools(size - len(real))
    tools_file = work / f"tools-{size}.json"
    tools_file.write_text(json.dumps([t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools]))
    config = {
        "servers": {
            "catalog": {
                "command": sys.executable,
                "args": [str(HERE / "catalog_server.py"), "--tools", str(tools_file)],
                "prefix": False,
                "max_tools": size + 1000,
                "startup_timeout_seconds": HUB_START_TIMEOUT_SECONDS,
                "timeout_seconds": 120,
            }
        },
        "catalog": {"mode": "search"},
        "profiles": {"full": {"catalog": {"mode": "full"}}},
        "state_dir": str(work / f"state-{size}"),
    }
    path = work / f"hub-{size}.json"
    path.write_text(json.dumps(config))
    return path


def _percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def _timed(
    hub_pid: int, count: int, request: Callable[[int], Awaitable[int]], warmup: int = 20
) -> dict[str, float]:
    """Run `request(i)` `warmup` times, then `count` times sequentially: wall p50/p99 (ms), the
    hub's CPU per request (ms) and the median answer size (bytes)."""
    for i in range(warmup):
        await request(i)
    before = cpu_times(hub_pid)
    walls: list[float] = []
    sizes: list[int] = []
    for i in range(count):
        t0 = time.perf_counter()
        sizes.append(await request(i))
        walls.append(time.perf_counter() - t0)
    after = cpu_times(hub_pid)
    cpu = (sum(after) - sum(before)) / count * 1000 if before and after else float("nan")
    return {
        "p50_ms": round(_percentile(walls, 0.5) * 1000, 2),
        "p99_ms": round(_percentile(walls, 0.99) * 1000, 2),
        "hub_cpu_ms": round(cpu, 2),
        "answer_bytes": int(statistics.median(sizes)),
    }


async def _measure_hub(base: str, hub_pid: int, size: int, eras: Sequence[str], searches: int) -> dict[str, Any]:
    queries = load_queries()
    row: dict[str, Any] = {"tools": size}
    timeout = httpx2.Timeout(120.0)
    async with httpx2.AsyncClient(timeout=timeout, trust_env=False) as http:
        # Wait until the hub lists the whole catalog (the server pages it to the hub at start-up).
        deadline = time.monotonic() + HUB_START_TIMEOUT_SECONDS
        full = Worker(http, f"{base}/profiles/full/mcp", "modern")
        while (walk := await list_all(full)).items < size:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the hub lists {walk.items} of {size} tools")
            await asyncio.sleep(0.5)  # bounded poll of a process outside this one
        row["full_list_bytes"], row["full_list_pages"] = walk.body_bytes, walk.pages
        searching = Worker(http, f"{base}/mcp", "modern")
        t0 = time.perf_counter()
        await searching.request(
            "tools/call", {"name": "search_tools", "arguments": {"query": "warm up"}}, "search_tools"
        )
        row["first_search_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        listing = await list_all(searching)
        row["search_list_bytes"], row["search_list_tools"] = listing.body_bytes, listing.items

        ranked: dict[str, list[str]] = {}
        wire: list[int] = []
        read: list[int] = []
        for labelled in queries:
            result, body_bytes = await searching.request(
                "tools/call", {"name": "search_tools", "arguments": {"query": labelled.query}}, "search_tools"
            )
            ranked[labelled.query] = [t["name"] for t in result["structuredContent"]["tools"]]
            wire.append(body_bytes)
            read.append(len(json.dumps(result["structuredContent"], separators=(",", ":")).encode()))
        row["search_answer_wire_bytes"] = int(statistics.median(wire))
        row["search_answer_bytes"] = int(statistics.median(read))
        row["quality"] = {}
        for split in (*SPLITS, "all"):
            chosen = [q for q in queries if split in ("all", q.split)]
            q = measure(lambda text: ranked[text], chosen)
            row["quality"][split] = {
                "queries": q.queries,
                "recall_at_1": round(q.recall_at_1, 3),
                "recall_at_5": round(q.recall_at_5, 3),
                "mrr": round(q.mrr, 3),
            }

        row["eras"] = {}
        for era in eras:
            worker = Worker(http, f"{base}/mcp", era)
            await worker.open()

            async def search(i: int, worker: Worker = worker) -> int:
                query = queries[i % len(queries)].query
                arguments = {"name": "search_tools", "arguments": {"query": query}}
                return (await worker.request("tools/call", arguments, "search_tools"))[1]

            async def direct(i: int, worker: Worker = worker) -> int:
                arguments = {"name": BASELINE_TOOL, "arguments": BASELINE_ARGUMENTS}
                return (await worker.request("tools/call", arguments, BASELINE_TOOL))[1]

            async def via_call_tool(i: int, worker: Worker = worker) -> int:
                inner = {"name": BASELINE_TOOL, "arguments": BASELINE_ARGUMENTS}
                return (await worker.request("tools/call", {"name": "call_tool", "arguments": inner}, "call_tool"))[1]

            log(f"{size} tools, {era} era: {searches} searches, direct calls, call_tool calls")
            row["eras"][era] = {
                "search_tools": await _timed(hub_pid, searches, search),
                "direct_call": await _timed(hub_pid, searches, direct),
                "call_tool": await _timed(hub_pid, searches, via_call_tool),
            }
            await worker.close()
    row["hub_rss_mb"] = round((rss_bytes(hub_pid) or 0) / 2**20, 1)
    return row


def run(sizes: Sequence[int], eras: Sequence[str], searches: int) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="mcphub-served-") as tmp, started() as processes:
        work = Path(tmp)
        for size in sizes:
            config = _fleet(work, size)
            hub = Process(f"hub-{size}", [sys.executable, str(BENCHMARKS / "_hub_runner.py"), "--config", str(config)])
            processes.append(hub)
            port = hub.wait_port()
            base = f"http://127.0.0.1:{port}"
            wait_ready(f"{base}/readyz", hub, timeout=HUB_START_TIMEOUT_SECONDS)
            hub.adopt_descendants()
            log(f"hub with {size} tools ready in {time.perf_counter() - hub.started_at:.1f} s")
            rows.append(asyncio.run(_measure_hub(base, hub.pid, size, eras, searches)))
            processes.stop(hub)
    return rows


def _print(rows: list[dict[str, Any]]) -> None:
    print("\n## Listings as served (bytes of JSON over HTTP; tokens ~ bytes / 4)\n")
    print(
        "| tools | full tools/list (pages) | search-mode tools/list | search_tools answer: read / on the wire | saved |"
    )
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        full, searched = r["full_list_bytes"], r["search_list_bytes"] + r["search_answer_bytes"]
        saved = full - searched
        cells = [
            f"{r['tools']:,}",
            f"{full:,} B ({r['full_list_pages']} pages; ~{full // BYTES_PER_TOKEN:,} tokens)",
            f"{r['search_list_bytes']:,} B ({r['search_list_tools']} tools)",
            f"{r['search_answer_bytes']:,} / {r['search_answer_wire_bytes']:,} B",
            f"{saved:,} B ({saved / full:.1%}; ~{searched // BYTES_PER_TOKEN:,} tokens left)",
        ]
        print("| " + " | ".join(cells) + " |")
    print("\n## Quality as served (search_tools over the labelled queries, among all the tools)\n")
    print("| tools | split | queries | recall@1 | recall@5 | MRR |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        for split, q in r["quality"].items():
            cells = [
                f"{r['tools']:,}",
                split,
                str(q["queries"]),
                *(str(q[k]) for k in ("recall_at_1", "recall_at_5", "mrr")),
            ]
            print("| " + " | ".join(cells) + " |")
    print("\n## Latency through the endpoint (sequential; wall p50 / p99 ms; hub CPU ms per request)\n")
    print("| tools | era | search_tools | direct tools/call | call_tool | hub RSS |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        for era, m in r["eras"].items():
            cells = [
                f"{m[k]['p50_ms']} / {m[k]['p99_ms']} (CPU {m[k]['hub_cpu_ms']})"
                for k in ("search_tools", "direct_call", "call_tool")
            ]
            print(f"| {r['tools']:,} | {era} | {' | '.join(cells)} | {r['hub_rss_mb']} MB |")
    print(
        "\nFirst search after start-up (index already built from the catalog change): "
        + ", ".join(f"{r['tools']:,} tools {r['first_search_ms']} ms" for r in rows)
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="catalog sizes (default 5000,10000)")
    parser.add_argument("--eras", default=",".join(ERAS), help="handshake,modern (default both)")
    parser.add_argument("--searches", type=int, default=300, help="timed requests per row (default 300)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    eras = [e for e in args.eras.split(",") if e]
    if any(size < len(load_catalog()) for size in sizes) or any(e not in ERAS for e in eras):
        parser.error(f"sizes must be >= {len(load_catalog())}; eras among {', '.join(ERAS)}")
    rows = run(sizes, eras, args.searches)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        _print(rows)


if __name__ == "__main__":
    main()
