"""The official MCP conformance suite (`@modelcontextprotocol/conformance`, server mode) against
the hub.

- `/servers/<id>/mcp` fronting tests/servers/conformance_server.py, the fixture behind the hub
  over stdio and over Streamable HTTP, with `--requirements 2025-11-25` and `2026-07-28`;
- the aggregated `/mcp` with the scenarios that judge an endpoint itself, and with the `tasks-*`
  scenarios (the tasks extension, SEP-2663).

Every scored check must pass: there is no baseline of tolerated failures. The `tasks-*`
scenarios are unscored in the 2026-07-28 set (an extension), and must pass all the same. Node 22 and the suite
are installed into .cache/conformance by tests/conformance/toolkit.py; the tests are skipped
(with the reason shown) only when the npm registry cannot be reached.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.conformance import toolkit
from tests.conftest import ROOT, forked_argv, running_hub, stdio_entry

pytestmark = [pytest.mark.e2e, pytest.mark.conformance, pytest.mark.anyio]

CONFORMANCE_SERVER = str(ROOT / "tests" / "servers" / "conformance_server.py")
REQUIREMENT_SETS = ("2025-11-25", "2026-07-28")
# (scenario, protocol revision it runs at): the scenarios that judge the hub's own endpoint.
ENDPOINT_SCENARIOS = (
    ("dns-rebinding-protection", "2025-11-25"),
    ("dns-rebinding-protection", "2026-07-28"),
    ("server-session-lifecycle", "2025-11-25"),
    ("ping", "2025-11-25"),
    ("server-stateless", "2026-07-28"),
    ("http-header-validation", "2026-07-28"),
    ("caching", "2026-07-28"),
)


def task_scenarios(suite: toolkit.Toolkit) -> list[str]:
    """The suite's `tasks-*` scenarios (the 2026-07-28 set lists them as unscored extensions)."""
    listed = suite.requirements("2026-07-28").get("not_scored") or []
    assert isinstance(listed, list)
    return [str(entry["scenario"]) for entry in listed if str(entry.get("scenario", "")).startswith("tasks-")]


def task_failures(runs: list[toolkit.SuiteRun]) -> list[toolkit.FailedCheck]:
    return [failure for run in runs for failure in run.failures if failure.scenario.startswith("tasks-")]


@pytest.fixture(scope="session")
def suite() -> toolkit.Toolkit:
    try:
        return toolkit.install()
    except toolkit.Unreachable as exc:
        pytest.skip(f"conformance suite not installable: {exc}")


@asynccontextmanager
async def conformance_entry(transport: str, **extra: Any) -> AsyncIterator[dict[str, Any]]:
    """A `servers:` entry for the conformance fixture: a stdio command, or the URL of a fixture
    process serving Streamable HTTP on 127.0.0.1 (started and stopped here)."""
    if transport == "stdio":
        yield stdio_entry(CONFORMANCE_SERVER, "--transport", "stdio", **extra)
        return
    process = await anyio.open_process(
        forked_argv(CONFORMANCE_SERVER, "--transport", "http", "--port", "0"),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        buffer = b""
        with anyio.fail_after(20):
            while b"\n" not in buffer:
                buffer += await process.stdout.receive()
        line = buffer.split(b"\n", 1)[0].decode()
        assert line.startswith("PORT="), line
        yield {"url": f"http://127.0.0.1:{line.removeprefix('PORT=')}/mcp", **extra}
    finally:
        if process.returncode is None:
            process.terminate()
        with anyio.move_on_after(5, shield=True):
            await process.wait()
        if process.returncode is None:
            process.kill()
        with anyio.move_on_after(5, shield=True):
            await process.aclose()  # the pipes too (a forked server's close when the zygote killed it)


async def in_parallel(*jobs: Any, at_once: int = 2) -> list[toolkit.SuiteRun]:
    """Run blocking suite invocations in worker threads, `at_once` at a time (the hub keeps
    serving in this event loop). Some checks have sub-second windows (server-stateless waits
    500 ms for a response), so the load on a 2-core machine is kept moderate."""
    results: list[toolkit.SuiteRun | None] = [None] * len(jobs)
    limiter = anyio.CapacityLimiter(at_once)

    async def one(index: int, job: Any) -> None:
        results[index] = await anyio.to_thread.run_sync(job, abandon_on_cancel=True, limiter=limiter)

    with anyio.fail_after(600):
        async with anyio.create_task_group() as tg:
            for index, job in enumerate(jobs):
                tg.start_soon(one, index, job)
    return [run for run in results if run is not None]


def verdict(runs: list[toolkit.SuiteRun]) -> str:
    return "\n".join(run.report() for run in runs)


# The official suite's server-stateless checks give a call sub-second windows (test_logging_tool,
# 100 ms of its own, must answer within 500 ms); beside other workers' start-up storms a run on
# 2 cores missed one (CI of 2026-11-29), so these runs are `serial`: one at a time in a process
# of their own, after the parallel run's busiest first seconds (`tests.parallel.serial_order`).
@pytest.mark.serial
@pytest.mark.parametrize(
    ("transport", "protocol", "sets"),
    [
        ("stdio", "auto", REQUIREMENT_SETS),
        ("http", "auto", REQUIREMENT_SETS),
        # The hub speaking the handshake era to the fixture: pushed sampling/elicitation relayed.
        ("stdio", "legacy", ("2025-11-25",)),
        ("http", "legacy", ("2025-11-25",)),
    ],
)
async def test_requirement_sets_through_server_path(
    suite: toolkit.Toolkit, transport: str, protocol: str, sets: tuple[str, ...], tmp_path: Path
) -> None:
    """Requirement sets at `/servers/conf/mcp`, the fixture behind the hub over `transport`,
    spoken to in `protocol` (the server entry's era setting): zero scored failures, exit 0, and
    no failure in the (unscored) `tasks-*` scenarios either."""
    async with conformance_entry(transport, protocol=protocol) as entry, running_hub({"conf": entry}) as hub:
        url = hub.server_url("conf")
        runs = await in_parallel(
            *(
                partial(
                    toolkit.run_server_suite,
                    suite,
                    url,
                    tmp_path / rev,
                    requirements=rev,
                    label=f"{rev} via {transport} ({protocol} to the fixture)",
                )
                for rev in sets
            )
        )
    print(verdict(runs))
    assert len(runs) == len(sets)
    for run in runs:
        assert run.passed > 0, run.output[-2000:]
    assert not any(run.scored_failures for run in runs), verdict(runs)
    assert all(run.returncode == 0 for run in runs), verdict(runs)
    assert not task_failures(runs), verdict(runs)
    if "2026-07-28" in sets:
        modern = runs[sets.index("2026-07-28")]
        ran = {name: counts for name, counts in modern.scenarios.items() if name.startswith("tasks-")}
        assert sum(passed for passed, _ in ran.values()) > 0, verdict(runs)


async def test_task_scenarios_on_aggregated_endpoint(suite: toolkit.Toolkit, tmp_path: Path) -> None:
    """The `tasks-*` scenarios against the aggregated `/mcp` (the fixture's names passed through
    unprefixed): every check passes."""
    scenarios = task_scenarios(suite)
    assert len(scenarios) >= 10, scenarios
    async with conformance_entry("stdio", prefix=False) as entry, running_hub({"conf": entry}) as hub:
        runs = await in_parallel(
            partial(
                toolkit.run_server_suite,
                suite,
                hub.url,
                tmp_path / "tasks",
                scenarios=scenarios,
                label="tasks-* on /mcp",
            )
        )
    print(verdict(runs))
    assert len(runs) == 1 and runs[0].passed > 0, verdict(runs)
    assert not runs[0].failures, verdict(runs)
    assert runs[0].returncode == 0, verdict(runs)


TASK_REQUIRED_TOOLS = ("confirm_delete", "failing_job", "multi_input", "test_tool_with_task")
"""The fixture's tools that only run as tasks (`taskSupport: required`)."""


@pytest.mark.serial  # server-stateless's sub-second windows, as the requirement sets above
async def test_endpoint_scenarios_on_aggregated_endpoint(suite: toolkit.Toolkit, tmp_path: Path) -> None:
    """The scenarios that judge an endpoint itself, against the aggregated `/mcp` (the fixture's
    names passed through unprefixed, so the scenarios find their diagnostic tools).

    `http-header-validation` calls the first listed tool with no arguments and no tasks
    extension; the hub lists tools sorted by name, where a task-only tool comes first and
    rightly answers -32021 to such a call. These scenarios do not use tasks (their own run is
    above), so the task-only tools are filtered out of this hub."""
    without_task_only = {"tools": {"exclude": list(TASK_REQUIRED_TOOLS)}}
    async with (
        conformance_entry("stdio", prefix=False, **without_task_only) as entry,
        running_hub({"conf": entry}) as hub,
    ):
        runs = await in_parallel(
            *(
                partial(
                    toolkit.run_server_suite,
                    suite,
                    hub.url,
                    tmp_path / f"{scenario}-{rev}",
                    scenarios=[scenario],
                    spec_version=rev,
                    label=f"{scenario} at {rev} on /mcp",
                )
                for scenario, rev in ENDPOINT_SCENARIOS
            )
        )
    print(verdict(runs))
    assert len(runs) == len(ENDPOINT_SCENARIOS)
    for run in runs:
        assert run.passed > 0, run.output[-2000:]
    assert not any(run.failures for run in runs), verdict(runs)
    assert all(run.returncode == 0 for run in runs), verdict(runs)


# (scenario, protocol revision): the client scenarios the hub's client half must pass.
CLIENT_SCENARIOS = (
    ("initialize", "2025-11-25"),
    ("tools_call", "2025-11-25"),
    ("tools_call", "2026-07-28"),
    ("sse-retry", "2025-11-25"),
    ("request-metadata", "2026-07-28"),
    ("sep-2322-client-request-state", "2026-07-28"),
    ("http-standard-headers", "2026-07-28"),
    ("http-custom-headers", "2026-07-28"),
    ("http-invalid-tool-headers", "2026-07-28"),
    ("json-schema-ref-no-deref", "2026-07-28"),
    ("json-schema-2020-12-preservation", "2026-07-28"),
)
CLIENT_DRIVER = f"{sys.executable} {ROOT / 'tests' / 'conformance' / 'client_driver.py'}"


async def test_client_scenarios_through_hub(suite: toolkit.Toolkit, tmp_path: Path) -> None:
    """The suite's mock server behind a hub, a stock client in front (tests/conformance/
    client_driver.py), all inside a private network namespace: every check passes."""
    results = await in_parallel(
        *(
            partial(
                toolkit.run_client_scenario,
                suite,
                scenario,
                CLIENT_DRIVER,
                tmp_path / f"{scenario}-{rev}",
                spec_version=rev,
            )
            for scenario, rev in CLIENT_SCENARIOS
        ),
        at_once=3,
    )
    print(verdict(results))
    assert len(results) == len(CLIENT_SCENARIOS)
    for run in results:
        assert run.passed > 0, run.output[-2000:]
    assert not any(run.failures for run in results), verdict(results)
    assert all(run.returncode == 0 for run in results), verdict(results)
