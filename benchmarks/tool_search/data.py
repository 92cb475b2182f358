"""The benchmark's data: the real servers' snapshot (`catalog.json`), the labelled queries
(`queries.yaml`), generated padding tools, and the quality measures (recall@k, MRR).

Shared by `run.py` and by the smoke test in `tests/test_tool_search.py`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mcp_types as types
import yaml

from hub.naming import assign_names

HERE = Path(__file__).resolve().parent
CATALOG_PATH = HERE / "catalog.json"
QUERIES_PATH = HERE / "queries.yaml"
SPLITS = ("tune", "test", "fresh")


@dataclass(frozen=True)
class LabelledQuery:
    """One benchmark query: what a user asks and the exposed tool names that answer it."""

    query: str
    expected: tuple[str, ...]
    split: str


def load_catalog(path: Path = CATALOG_PATH) -> list[types.Tool]:
    """The snapshot's tools under the names the hub exposes them by (`<server_id>__<name>`)."""
    document = json.loads(path.read_text())
    servers: dict[str, list[dict[str, Any]]] = {sid: s["tools"] for sid, s in document["servers"].items()}
    assignments = assign_names((sid, sid, [t["name"] for t in tools]) for sid, tools in servers.items())
    exposed = {(a.server_id, a.original): a.exposed for a in assignments}
    return [
        types.Tool.model_validate({**tool, "name": exposed[(sid, tool["name"])]})
        for sid, tools in sorted(servers.items())
        for tool in tools
    ]


def load_queries(path: Path = QUERIES_PATH) -> list[LabelledQuery]:
    """The labelled queries, in file order."""
    document = yaml.safe_load(path.read_text())
    return [LabelledQuery(q["query"], tuple(q["expected"]), q["split"]) for q in document["queries"]]


@dataclass(frozen=True)
class Quality:
    """Quality of one ranking function on a set of queries."""

    queries: int
    recall_at_1: float
    """Share of queries whose first result is an expected tool."""
    recall_at_5: float
    """Share of queries with an expected tool among the first five results."""
    mrr: float
    """Mean reciprocal rank of the first expected tool (0 when not among the first 8)."""
    misses: tuple[tuple[str, tuple[str, ...]], ...]
    """(query, first five results) of the queries not found in the first five."""


def measure(rank: Callable[[str], Sequence[str]], queries: Iterable[LabelledQuery]) -> Quality:
    """recall@1, recall@5 and MRR of `rank` (query -> ranked exposed names) over `queries`."""
    found1 = found5 = 0
    reciprocal = 0.0
    misses: list[tuple[str, tuple[str, ...]]] = []
    count = 0
    for labelled in queries:
        count += 1
        ranked = list(rank(labelled.query))
        position = next((i for i, name in enumerate(ranked) if name in labelled.expected), None)
        if position is not None:
            reciprocal += 1.0 / (position + 1)
            found1 += position == 0
            found5 += position < 5
        if position is None or position >= 5:
            misses.append((labelled.query, tuple(ranked[:5])))
    if count == 0:
        return Quality(0, 0.0, 0.0, 0.0, ())
    return Quality(count, found1 / count, found5 / count, reciprocal / count, tuple(misses))


_DOMAINS = (
    "billing crm hr payroll inventory shipping warehouse analytics marketing support ticketing calendar email "
    "docs wiki storage backup monitoring alerting logging metrics deploy ci build registry dns cdn firewall vpn "
    "identity iam secrets vault kafka queue cache search vector ml training notebook etl warehouse2 lake bi "
    "survey forms chat video meeting sales quotes contracts legal compliance audit risk fraud payments invoices"
).split()
_VERBS = "list get create update delete archive restore export import sync approve reject assign close open".split()
_NOUNS = (
    "record item entry job task report invoice order customer account user group role policy rule event "
    "alert dashboard pipeline dataset model snapshot bucket object secret key token webhook template campaign"
).split()
_PARAMS = "id name status owner limit cursor query tags region project since until format priority".split()


def padding_tools(count: int, seed: int = 14) -> list[types.Tool]:
    """`count` generated tools from made-up servers (`<domain><n>__<verb>_<noun>`), with
    descriptions and schemas shaped like real ones, to grow a catalog to a given size.

    Deterministic for a given `seed`. Names never clash with the real snapshot's servers.
    """
    rng = random.Random(seed)
    tools: list[types.Tool] = []
    seen: set[str] = set()
    server = 0
    while len(tools) < count:
        domain = f"{_DOMAINS[server % len(_DOMAINS)]}{server // len(_DOMAINS)}"
        server += 1
        for _ in range(rng.randint(5, 30)):
            verb, noun = rng.choice(_VERBS), rng.choice(_NOUNS)
            name = f"{domain}__{verb}_{noun}"
            if name in seen:
                continue
            seen.add(name)
            params = rng.sample(_PARAMS, rng.randint(1, 5))
            schema = {
                "type": "object",
                "properties": {p: {"type": "string", "description": f"The {noun} {p} to {verb} by"} for p in params},
                "required": params[:1],
            }
            description = (
                f"{verb.capitalize()} a {noun} in the {domain.rstrip('0123456789')} system. "
                f"Use it to {verb} {noun}s by {', '.join(params)}; returns the {noun} as JSON."
            )
            tools.append(types.Tool(name=name, description=description, input_schema=schema))
            if len(tools) == count:
                break
    return tools
