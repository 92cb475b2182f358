"""The `mcphub` CLI against a served hub with authentication: `--token` / `MCPHUB_TOKEN`,
`whoami`, `routes` per principal, `servers` needing hub:admin, `keys new`, and `serve` refusing
`auth: none` beyond loopback. Real subprocesses throughout."""

from __future__ import annotations

import functools
import hashlib
import json
import re
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from hub.config import parse_config
from tests.conftest import fixture_entry, hub_command
from tests.test_cli import ONE_SHOT_TIMEOUT_SECONDS, _assert_one_error_line, _cli_env, _Served, _serving, _write_config

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
"""`slow`: every test here runs `mcphub` as a subprocess (1.5 s of CPU to import the SDK, each)."""

TEAM_KEY = "cli-team-key-0123456789abcdef"
ADMIN_KEY = "cli-admin-key-0123456789abcdef"


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


def _run(*args: str, token_env: str | None = None) -> subprocess.CompletedProcess[str]:
    env = _cli_env()
    if token_env is not None:
        env["MCPHUB_TOKEN"] = token_env
    return subprocess.run(hub_command(*args), capture_output=True, text=True, timeout=ONE_SHOT_TIMEOUT_SECONDS, env=env)


async def _run_async(*args: str, token_env: str | None = None) -> subprocess.CompletedProcess[str]:
    return await anyio.to_thread.run_sync(functools.partial(_run, *args, token_env=token_env))


@pytest.fixture(scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[_Served, Path]]:
    directory = tmp_path_factory.mktemp("served-auth")
    config = {
        "auth": {
            "api_keys": [
                {"id": "team", "key_sha256": hashlib.sha256(TEAM_KEY.encode()).hexdigest(), "scopes": ["hub:call"]},
                {"id": "ops", "key_sha256": hashlib.sha256(ADMIN_KEY.encode()).hexdigest(), "scopes": ["hub:admin"]},
            ]
        },
        "policies": [{"principal": "team", "allow": ["fx__*"]}, {"scope": "hub:admin", "allow": ["*"]}],
        "servers": {"fx": fixture_entry("fx"), "other": fixture_entry("other")},
    }
    log = directory / "serve.log"
    async with _serving(_write_config(directory / "hub.yaml", config), log) as running:
        yield running, log


async def test_whoami_shows_the_principal_for_a_token_given_by_option_or_environment(
    served: tuple[_Served, Path],
) -> None:
    hub, _ = served
    by_option, by_env, none = [
        await _run_async("whoami", "--url", hub.base_url, "--token", TEAM_KEY, "--json"),
        await _run_async("whoami", "--url", hub.base_url, token_env=ADMIN_KEY),
        await _run_async("whoami", "--url", hub.base_url),
    ]
    assert by_option.returncode == 0, by_option.stderr
    assert json.loads(by_option.stdout) == {"principal": "team", "scopes": ["hub:call"], "source": "api_key"}
    assert by_env.returncode == 0, by_env.stderr
    assert "principal: ops (api_key)" in by_env.stdout
    assert "hub:admin hub:call hub:metrics" in by_env.stdout
    assert none.returncode == 1
    line = _assert_one_error_line(none)
    assert "HTTP 401" in line and "--token" in line


async def test_routes_show_what_the_principal_may_use_and_servers_needs_admin(served: tuple[_Served, Path]) -> None:
    hub, _ = served
    team_routes = await _run_async("routes", "--url", hub.base_url, "--token", TEAM_KEY, "--json")
    admin_routes = await _run_async("routes", "--url", hub.base_url, "--token", ADMIN_KEY, "--json")
    team_servers = await _run_async("servers", "--url", hub.base_url, "--token", TEAM_KEY)
    admin_servers = await _run_async("servers", "--url", hub.base_url, "--token", ADMIN_KEY, "--json")
    assert team_routes.returncode == 0, team_routes.stderr
    team = {r["exposed"] for r in json.loads(team_routes.stdout)["routes"]}
    admin = {r["exposed"] for r in json.loads(admin_routes.stdout)["routes"]}
    assert team and all(name.startswith("fx__") for name in team)
    assert "other__echo" in admin and team < admin
    assert team_servers.returncode == 1
    assert "HTTP 403" in _assert_one_error_line(team_servers)
    assert {s["server_id"] for s in json.loads(admin_servers.stdout)["servers"]} == {"fx", "other"}


async def test_call_uses_the_token_and_a_denied_tool_is_unknown(served: tuple[_Served, Path]) -> None:
    hub, log = served
    allowed = await _run_async("call", "fx__echo", "--arg", "text=hello", "--url", hub.base_url, "--token", TEAM_KEY)
    denied = await _run_async("call", "other__echo", "--arg", "text=x", "--url", hub.base_url, "--token", TEAM_KEY)
    anonymous = await _run_async("call", "fx__echo", "--arg", "text=x", "--url", hub.base_url)
    assert (allowed.returncode, allowed.stdout.strip()) == (0, "hello")
    assert denied.returncode == 1 and "unknown tool: 'other__echo'" in _assert_one_error_line(denied)
    assert anonymous.returncode == 1 and "HTTP 401" in _assert_one_error_line(anonymous)
    text = log.read_text()
    assert TEAM_KEY not in text and ADMIN_KEY not in text
    assert "principal=team" in text and "route=other__echo" in text  # the audit line


def test_keys_new_prints_a_key_and_a_config_line_that_accepts_exactly_that_key() -> None:
    result = _run("keys", "new", "ci-bot", "--scope", "hub:call", "--scope", "deploy")
    assert result.returncode == 0, result.stderr
    key = re.search(r"^key: (\S+)$", result.stdout, re.M)
    line = re.search(r"^config \(under auth.api_keys\): - (\{.*\})$", result.stdout, re.M)
    assert key and line, result.stdout
    entry = json.loads(line.group(1))
    assert entry["id"] == "ci-bot" and entry["scopes"] == ["hub:call", "deploy"]
    assert entry["key_sha256"] == hashlib.sha256(key.group(1).encode()).hexdigest()
    assert len(key.group(1)) >= 40
    parse_config({"auth": {"api_keys": [entry]}})  # the printed line is a valid config entry
    again = _run("keys", "new", "ci-bot")
    assert key.group(1) not in again.stdout
    bad = _run("keys", "new", "has space")
    assert bad.returncode == 2 and "invalid key id" in _assert_one_error_line(bad)


def test_serve_beyond_loopback_without_auth_exits_2_with_one_line(tmp_path: Path) -> None:
    config = _write_config(tmp_path / "hub.yaml", {"servers": {}})
    result = _run("serve", "-c", str(config), "--host", "0.0.0.0", "--port", "0")
    assert result.returncode == 2
    assert "auth: none is only allowed on loopback" in _assert_one_error_line(result)
