"""deploy/grafana/mcphub.json: every metric name its PromQL queries exists in a live hub's
`/metrics` (a real hub over real fixture servers, driven through calls, retries, failover, an
opening breaker, a full queue, a refused retry, a changed definition, health checks and a reload,
so that every labelled series exists), and the dashboard covers what an operator looks at first."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import MCPError
from prometheus_client.parser import text_string_to_metric_families

from hub.app import Hub
from hub.config import parse_config
from tests.clients import http_client, mcp_client
from tests.conftest import ROOT, RunningHub, faulty_entry, serve_app, until

DASHBOARD = ROOT / "deploy" / "grafana" / "mcphub.json"

# ------------------------------------------------------------------ metric names in PromQL

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_VARIABLE = re.compile(r"\$(?:\{[^}]*\}|\w+)")
_IDENTIFIER = re.compile(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless"})
_KEYWORDS |= frozenset({"offset", "inf", "nan"})
_LABEL_VALUES = re.compile(r"^\s*label_values\((?:(?P<selector>.*),)?\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$", re.DOTALL)


def metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions or
    aggregations (followed by `(`), keywords, label names (in `{...}`, `by (...)`, ...),
    strings, durations or Grafana variables (`$__rate_interval`)."""
    text = _STRING.sub('""', expression)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _VARIABLE.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or match.group() in _KEYWORDS:
            continue
        names.add(match.group())
    return names


def variable_metric_names(query: str) -> set[str]:
    """Metric names in a Grafana Prometheus variable query (`label_values(selector, label)`,
    `label_values(label)`, or a PromQL expression)."""
    match = _LABEL_VALUES.match(query)
    if match is None:
        return metric_names(query)
    return metric_names(match.group("selector")) if match.group("selector") else set()


def test_metric_names_are_found_and_functions_labels_keywords_and_variables_are_not() -> None:
    assert metric_names(
        'histogram_quantile(0.99, sum by (server_id, le) (rate(a_bucket{x=~"y|z", w="{q}"}[$__rate_interval])))'
    ) == {"a_bucket"}
    assert metric_names("sum(rate(a_total[5m])) / ignoring(outcome) sum(rate(b_total[5m] offset 1h))") == {
        "a_total",
        "b_total",
    }
    assert metric_names("topk(10, sum without (instance) (c)) > bool 0.5 and on (job) d unless e") == {"c", "d", "e"}
    assert metric_names('count(f{state!~"ok|tool_error"} == 1) or vector(0)') == {"f"}
    assert metric_names("rate(g:recorded[1m]) * 1e3") == {"g:recorded"}
    assert variable_metric_names('label_values(h{instance=~"$instance"}, server_id)') == {"h"}
    assert variable_metric_names("label_values(instance)") == set()


# ------------------------------------------------------------------------------ the dashboard


def _dashboard() -> dict[str, Any]:
    document = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row holds its panels


def _queries(dashboard: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in _panels(dashboard) for target in panel.get("targets", [])]


def _queried_metric_names(dashboard: dict[str, Any]) -> set[str]:
    names = set().union(*(metric_names(expr) for expr in _queries(dashboard)))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            names |= variable_metric_names(variable["query"]["query"])
    return names


def test_the_dashboard_covers_calls_errors_latency_states_breakers_retries_and_sessions() -> None:
    dashboard = _dashboard()
    names = _queried_metric_names(dashboard)
    queries = _queries(dashboard)

    assert {
        "mcphub_calls_total",
        "mcphub_call_duration_seconds_bucket",
        "mcphub_server_state",
        "mcphub_breaker_opens_total",
        "mcphub_retries_total",
        "mcphub_failovers_total",
        "mcphub_sessions",
    } <= names
    assert any("by (route)" in q and "mcphub_calls_total" in q for q in queries)  # calls by route
    assert any("by (server_id, outcome)" in q and 'outcome!~"ok|tool_error"' in q for q in queries)  # errors
    assert any(q.startswith("histogram_quantile(0.99, sum by (server_id, le)") for q in queries)  # latency


def test_every_panel_reads_the_dashboards_datasource_and_fits_the_grid() -> None:
    dashboard = _dashboard()
    panels = list(_panels(dashboard))
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}

    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert len({panel["id"] for panel in panels}) == len(panels)
    for panel in panels:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            assert panel["targets"] and panel["description"], panel["title"]
            for target in panel["targets"]:
                assert target["datasource"] == panel["datasource"]
    assert dashboard["uid"] == "mcphub"


# --------------------------------------------------------------------------- a live /metrics


@asynccontextmanager
async def _serving(hub: Hub) -> AsyncIterator[RunningHub]:
    async with serve_app(hub.http_app()) as base_url:
        with anyio.fail_after(30):
            await hub.wait_started()
        yield RunningHub(hub, base_url)


def _sample_names(text: str) -> set[str]:
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


@pytest.mark.anyio
@pytest.mark.slow
async def test_every_metric_the_dashboard_queries_exists_in_a_live_hubs_metrics(tmp_path: Path) -> None:
    wanted = _queried_metric_names(_dashboard())
    config = parse_config(
        {
            "state_dir": str(tmp_path),
            "servers": {
                # fx fails over to spare, retries and opens its breaker at the first failure.
                "fx": faulty_entry(
                    "fx",
                    idempotent=["fail_times"],
                    retry={"attempts": 2, "backoff_initial_seconds": 0.01},
                    breaker={"failures": 1, "cooldown_seconds": 600},
                    fallback=["spare"],
                    health_check_interval_seconds=0,
                ),
                # spare takes one request at a time, queues none, may never retry and is
                # health-checked whenever idle.
                "spare": faulty_entry(
                    "spare",
                    idempotent=["fail_times"],
                    retry={"attempts": 2, "budget_min": 0, "budget_ratio": 0},
                    max_concurrency=1,
                    max_queue=0,
                    health_check_interval_seconds=0.2,
                ),
            },
        },
        file="<test>",
    )
    hub = Hub(config, config_loader=lambda: config)
    async with _serving(hub) as running, http_client(timeout=30) as http:

        async def scraped() -> set[str]:
            return _sample_names((await http.get(f"{running.base_url}/metrics")).text)

        with anyio.fail_after(60):
            async with mcp_client(running.url) as client:  # a handshake-era session stays open meanwhile
                await client.call_tool("fx__echo", {"text": "hi"})
                # fx fails (breaker opens), spare fails, a retry round: spare answers.
                await client.call_tool("fx__fail_times", {"n": 1, "key": "failover"})
                with pytest.raises(MCPError):  # spare's retry budget refuses the retry
                    await client.call_tool("spare__fail_times", {"n": 1, "key": "budget"})
                async with anyio.create_task_group() as tg:
                    tg.start_soon(client.call_tool, "spare__slow", {"seconds": 2})
                    await hub.wait_for_server("spare", where=lambda s: s.in_flight == 1)
                    with pytest.raises(MCPError):  # no slot, no queue: refused at once
                        await client.call_tool("spare__echo", {"text": "busy"})
                await client.call_tool("spare__flip_tools", {})  # a new definition after pinning
                assert (await http.post(f"{running.base_url}/admin/reload")).status_code == 200

                async def all_seen() -> bool:
                    return wanted <= await scraped()

                with anyio.move_on_after(20):
                    await until(all_seen)
                names = await scraped()

    assert sorted(wanted - names) == []
    assert len(wanted) >= 15
