"""What the `mcphub` CLI tells a person when something is off, as a real subprocess: command-line
mistakes in one line with exit code 2, rate limits as "rate limited, retry after N s", unknown
tools with the names the caller may use instead, tables that never cut an exposed name, and
`keys new --json` for scripts."""

from __future__ import annotations

import functools
import hashlib
import json
import re
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import fixture_entry, free_port
from mcp_types import INVALID_PARAMS

from hub.config import parse_config
from hub.errors import RATE_LIMITED
from tests.conftest import hub_command
from tests.test_cli import ONE_SHOT_TIMEOUT_SECONDS, _assert_one_error_line, _cli_env, _Served, _serving, _write_config

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
"""`slow`: every test here runs `mcphub` as a subprocess (1.5 s of CPU to import the SDK, each)."""

TEAM_KEY = "errors-team-key-0123456789abcdef"
BUSY_KEY = "errors-busy-key-0123456789abcdef"
ADMIN_KEY = "errors-admin-key-0123456789abcdef"
_RATE_LIMITED_LINE = re.compile(r"^mcphub: rate limited, retry after \d+ s")


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


def _sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _config() -> dict[str, Any]:
    """Servers `fx` and `everything` (with long and odd tool names); `team` may use fx's tools
    and whoami at most once per 100 s; `busy` may send one request to /mcp per 100 s."""
    slow = {"requests_per_second": 0.01, "burst": 1}
    return {
        "auth": {
            "api_keys": [
                {"id": "team", "key_sha256": _sha(TEAM_KEY), "scopes": ["hub:call"]},
                {"id": "busy", "key_sha256": _sha(BUSY_KEY), "scopes": ["hub:call"]},
                {"id": "ops", "key_sha256": _sha(ADMIN_KEY), "scopes": ["hub:admin"]},
            ]
        },
        "policies": [
            {"principal": "team", "allow": ["fx__*"]},
            {"principal": "busy", "allow": ["*"]},
            {"scope": "hub:admin", "allow": ["*"]},
        ],
        "rate_limits": {"principals": {"busy": slow}, "routes": {"fx__whoami": slow}},
        "servers": {"fx": fixture_entry("fx"), "everything": fixture_entry("everything", "--weird-names")},
    }


def _run(*args: str, columns: int | None = None) -> subprocess.CompletedProcess[str]:
    env = _cli_env()
    if columns is not None:
        env["COLUMNS"] = str(columns)
    return subprocess.run(hub_command(*args), capture_output=True, text=True, timeout=ONE_SHOT_TIMEOUT_SECONDS, env=env)


async def _run_async(*args: str, columns: int | None = None) -> subprocess.CompletedProcess[str]:
    return await anyio.to_thread.run_sync(functools.partial(_run, *args, columns=columns))


async def _run_many(*commands: list[str], columns: int | None = None) -> list[subprocess.CompletedProcess[str]]:
    """Independent commands at once (each is mostly interpreter start-up), results in order."""
    results: dict[int, subprocess.CompletedProcess[str]] = {}

    async def run(index: int, command: list[str]) -> None:
        results[index] = await _run_async(*command, columns=columns)

    async with anyio.create_task_group() as tg:
        for index, command in enumerate(commands):
            tg.start_soon(run, index, command)
    return [results[index] for index in range(len(commands))]


@pytest.fixture(scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[_Served]:
    directory = tmp_path_factory.mktemp("served-errors")
    async with _serving(_write_config(directory / "hub.yaml", _config()), directory / "serve.log") as running:
        yield running


# ---------------------------------------------------------------- the command line itself


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["call", "fx__echo", "--arg", "message"], "--arg takes key=value, got 'message'"),
        (["call", "fx__echo", "--json-args", "{bad"], "--json-args is not valid JSON"),
        (["call", "fx__echo", "--json-args", "[1]"], "--json-args must be a JSON object"),
        (["call"], "Missing argument 'NAME'"),
        (["call", "fx__echo", "--bogus"], "No such option: --bogus"),
        (["serve", "--port", "abc"], "Invalid value for '--port'"),
        (["routes", "--url"], "Option '--url' requires an argument"),
        (["no-such-command"], "No such command 'no-such-command'"),
    ],
    ids=[
        "arg-without-value",
        "json-args-not-json",
        "json-args-not-object",
        "missing-name",
        "unknown-option",
        "bad-port",
        "option-without-value",
        "unknown-command",
    ],
)
def test_a_command_line_mistake_exits_2_with_one_line_and_no_traceback(args: list[str], expected: str) -> None:
    # The URL leads nowhere: the command line is refused before anything is contacted.
    result = _run(*args, *(["--url", f"http://127.0.0.1:{free_port()}"] if args[0] == "call" and len(args) > 1 else []))

    assert result.returncode == 2, result
    assert expected in _assert_one_error_line(result)


def test_keys_new_json_prints_the_key_once_with_its_digest_and_a_config_line_that_accepts_it() -> None:
    result = _run("keys", "new", "ci-bot", "--scope", "hub:call", "--scope", "deploy", "--json")

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    data = json.loads(result.stdout)
    assert set(data) == {"id", "key", "key_sha256", "scopes", "config_line"}
    assert (data["id"], data["scopes"]) == ("ci-bot", ["hub:call", "deploy"])
    assert data["key_sha256"] == hashlib.sha256(data["key"].encode()).hexdigest()
    assert result.stdout.count(data["key"]) == 1
    assert data["key"] not in data["config_line"]
    entry = json.loads(data["config_line"].removeprefix("- "))
    assert entry == {"id": "ci-bot", "key_sha256": data["key_sha256"], "scopes": ["hub:call", "deploy"]}
    parse_config({"auth": {"api_keys": [entry]}})  # the line is a valid auth.api_keys entry


# ---------------------------------------------------------------- against a served hub


async def test_call_of_a_misspelled_tool_suggests_only_names_the_caller_may_use(served: _Served) -> None:
    url = served.base_url
    typo, team_unprefixed, admin_unprefixed = await _run_many(
        ["call", "fx__ecoh", "--arg", "text=x", "--url", url, "--token", TEAM_KEY],
        ["call", "echo", "--arg", "text=x", "--url", url, "--token", TEAM_KEY],
        ["call", "echo", "--arg", "text=x", "--url", url, "--token", ADMIN_KEY],
    )

    assert typo.returncode == 1
    line = _assert_one_error_line(typo)
    assert str(INVALID_PARAMS) in line and line.endswith("unknown tool: 'fx__ecoh'; did you mean 'fx__echo'?")
    assert team_unprefixed.returncode == 1
    assert _assert_one_error_line(team_unprefixed).endswith("did you mean 'fx__echo'?")  # everything__echo is hidden
    assert admin_unprefixed.returncode == 1
    assert "did you mean 'everything__echo' or 'fx__echo'?" in _assert_one_error_line(admin_unprefixed)


async def test_call_over_the_principals_request_rate_says_rate_limited_and_when_to_retry(served: _Served) -> None:
    result = await _run_async("call", "fx__echo", "--arg", "text=x", "--url", served.base_url, "--token", BUSY_KEY)

    assert result.returncode == 1
    line = _assert_one_error_line(result)
    assert _RATE_LIMITED_LINE.match(line), line
    assert "-32603" not in line


async def test_call_over_a_routes_rate_limit_says_rate_limited_and_when_to_retry(served: _Served) -> None:
    first = await _run_async("call", "fx__whoami", "--url", served.base_url, "--token", TEAM_KEY)
    second = await _run_async("call", "fx__whoami", "--url", served.base_url, "--token", TEAM_KEY)

    assert (first.returncode, first.stdout.strip()) == (0, "fx")
    assert second.returncode == 1
    line = _assert_one_error_line(second)
    assert _RATE_LIMITED_LINE.match(line), line
    assert f"(MCP error {RATE_LIMITED})" in line


@pytest.mark.parametrize("columns", [120, 60])
async def test_routes_shows_every_exposed_name_whole_in_a_narrow_terminal(served: _Served, columns: int) -> None:
    as_json, table = await _run_many(
        ["routes", "--url", served.base_url, "--token", ADMIN_KEY, "--json"],
        ["routes", "--url", served.base_url, "--token", ADMIN_KEY],
        columns=columns,
    )

    assert as_json.returncode == 0 and table.returncode == 0, table.stderr
    names = [route["exposed"] for route in json.loads(as_json.stdout)["routes"]]
    assert "everything__echo" in names and max(len(name) for name in names) == 64  # a shortened weird name
    for name in names:
        assert re.search(rf"[│ ]{re.escape(name)} ", table.stdout), name


async def test_check_connect_shows_every_exposed_name_whole_at_120_columns(tmp_path: Path) -> None:
    config = _write_config(tmp_path / "hub.yaml", {"servers": _config()["servers"]})

    as_json, table = await _run_many(
        ["check", "--connect", "--json", "-c", str(config)], ["check", "--connect", "-c", str(config)], columns=120
    )

    assert as_json.returncode == 0 and table.returncode == 0, table.stderr
    names = [route["exposed"] for route in json.loads(as_json.stdout)["routes"]]
    assert len(names) > 20
    for name in names:
        assert re.search(rf"[│ ]{re.escape(name)} ", table.stdout), name
    assert max(len(line) for line in table.stdout.splitlines()) <= 120
