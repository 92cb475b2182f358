"""The benchmark's pieces start, answer and stop: `benchmarks/bench.py` run with a tiny budget.

These tests check that the benchmark works (every target serves its echo tool, mcp-proxy is
reported n/a where it cannot serve an era, every process is stopped, the scale rows walk whole
lists); they never look at its figures, which belong to `make bench`.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.clients import http_client
from tests.conftest import ROOT, http_fixture

BENCHMARKS = ROOT / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

from _load import HANDSHAKE_VERSION, Worker, list_all  # noqa: E402
from _peers import PeerUnavailable, ensure_mcp_proxy  # noqa: E402

BENCH_TIMEOUT_SECONDS = 600
"""Bound on one benchmark run here (a shared 2-core machine under load starts Python slowly)."""

pytestmark = pytest.mark.anyio


def _run_bench(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench.py"), *args, "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=BENCH_TIMEOUT_SECONDS,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _running(pid: int, marker: str) -> bool:
    """Whether `pid` is alive and still the process whose command line holds `marker`."""
    try:
        return marker in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.fixture(scope="module")
def mcp_proxy() -> Path:
    """mcp-proxy 0.13's executable (its venv is created from the registry once, into .cache/bench)."""
    try:
        return ensure_mcp_proxy()
    except PeerUnavailable as exc:
        pytest.skip(f"mcp-proxy 0.13 cannot be installed here: {exc}")


@pytest.mark.e2e
def test_the_benchmark_measures_mcp_proxy_and_the_governed_hub_in_one_run_and_stops_them(mcp_proxy: Path) -> None:
    result = _run_bench(
        "--targets", "direct-json,mcp-proxy,floor,hub", "--eras", "handshake,modern", "--concurrency", "1",
        "--reps", "1", "--seconds", "0.5", "--warmup", "0.2",
    )  # fmt: skip
    rows = {(r["target"], r["era"]): r for r in result["summary"]}

    measured = [("direct-json", "handshake"), ("mcp-proxy", "handshake"), ("hub", "handshake"), ("hub", "modern")]
    for key in [*measured, ("floor", "handshake"), ("floor", "modern")]:
        row = rows[key]
        assert row["status"] == "", (key, row["status"])
        assert row["calls_per_s"] > 0 and row["errors"] == 0, (key, row)
        assert row["p50_ms"] is not None and row["cpu_ms_per_call"]["loadgen"] is not None
    assert rows[("hub", "handshake")]["vs_mcp_proxy"] is not None
    assert rows[("hub", "handshake")]["vs_direct_json"] is not None
    assert rows[("mcp-proxy", "handshake")]["cpu_ms_per_call"]["gateway"] is not None
    assert rows[("mcp-proxy", "handshake")]["cpu_ms_per_call"]["server"] is not None
    # mcp-proxy 0.13 is built on mcp 1.x: no modern era, reported as such rather than dropped.
    assert rows[("mcp-proxy", "modern")]["status"].startswith("n/a: server/discover refused")

    hub_calls = sum(m["calls"] for m in result["measurements"] if m["target"] == "hub")
    assert result["hub_metrics_calls_counted"] >= hub_calls > 0
    targets = result["targets"]
    assert set(targets) == {"direct-json", "mcp-proxy", "floor", "hub"}
    # The floor's CPU is its own process's, and the fixture behind it is its child.
    assert set(targets["floor"]["pids"]) == {"gateway", "server"}
    assert targets["hub"]["idle_rss_bytes"]["gateway"] > 0
    assert targets["mcp-proxy"]["idle_rss_bytes"]["server"] > 0
    # Every process started (the gateways and the fixtures behind them) is gone after the run.
    for name, marker in (
        ("direct-json", "fixture_server.py"),
        ("mcp-proxy", "mcp-proxy"),
        ("floor", "_floor.py"),
        ("hub", "_hub_runner"),
    ):
        gateway_and_server = targets[name]["pids"]
        assert gateway_and_server
        for role, pid in gateway_and_server.items():
            assert not _running(pid, "fixture_server.py" if role == "server" else marker), (name, role, pid)


@pytest.mark.e2e
def test_the_scale_rows_report_the_whole_catalog_the_hub_memory_and_its_start_up() -> None:
    result = _run_bench(
        "--scale", "--scale-servers", "2", "--scale-tools", "15", "--scale-lists", "1", "--reps", "1",
        "--eras", "modern",
    )  # fmt: skip
    [run] = result["runs"]
    per_server = max(15, run["base_tools"])
    assert run["hubs"]["full"]["tools"] == 2 * per_server
    assert run["hubs"]["full"]["servers_ready"] == 2
    assert run["hubs"]["small"]["tools"] == 2 * run["base_tools"]
    assert run["hubs"]["empty"]["servers"] == 0
    assert all(run["hubs"][name]["idle_rss_bytes"] > 0 for name in ("empty", "small", "full"))
    assert run["hub_lists"]["modern"]["items"] == 2 * per_server
    assert run["one_server_lists"]["modern"]["items"] == 2 * per_server
    assert len(run["own_first_list_seconds"]) == 2
    assert run["own_tools"] == 2 * per_server


async def test_the_list_walk_follows_next_cursor_to_the_last_page_in_both_eras() -> None:
    async with (
        http_fixture("--extra-tools", "9") as (whole_url, _),
        http_fixture("--page-size", "4", "--extra-tools", "9") as (paged_url, _),
        http_client(trust_env=False, timeout=10.0) as client,
    ):
        for era in ("handshake", "modern"):
            walks = []
            for url in (whole_url, paged_url):
                worker = Worker(client, url, era)
                with anyio.fail_after(20):
                    await worker.open()
                    walks.append(await list_all(worker))
                    await worker.close()
            whole, paged = walks
            assert whole.pages == 1
            assert paged.items == whole.items > 9
            assert paged.pages == math.ceil(whole.items / 4)


async def test_the_fixture_answers_json_with_json_response_and_sse_without() -> None:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": HANDSHAKE_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    seen = {}
    for flag in ((), ("--json-response",)):
        async with http_fixture(*flag) as (url, _), http_client(trust_env=False, timeout=10.0) as client:
            with anyio.fail_after(20):
                response = await client.post(url, json=body, headers=headers)
            assert response.status_code == 200
            seen[flag] = response.headers["content-type"].split(";")[0]
    assert seen == {(): "text/event-stream", ("--json-response",): "application/json"}


@pytest.mark.slow
def test_mcp_proxy_is_reported_unavailable_when_the_registry_cannot_serve_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # no registry: pip may only look in an empty folder
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "no-packages"))
    venv = tmp_path / "mcp-proxy-venv"
    with pytest.raises(PeerUnavailable, match="pip install"):
        ensure_mcp_proxy(venv)
    assert not (venv / ".bench-installed").exists()  # a later run with a registry builds it anew
