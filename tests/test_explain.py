"""Route inspection (issue 9 item 6): `/admin/explain`, `/me/explain` and `mcphub explain` say
everything that decides a call of one name for one principal: route and naming, servers and the
member serving now, the deciding policy rule (index and text), rate limits, timeout/retry
settings, and a verdict. A real hub over real subprocess servers, real loopback HTTP."""

from __future__ import annotations

import functools
import hashlib
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.clients import http_client
from tests.conftest import RunningHub, fixture_entry, hub_command, running_hub
from tests.test_cli import ONE_SHOT_TIMEOUT_SECONDS, _cli_env, _serving, _write_config

pytestmark = pytest.mark.anyio

KEYS = {
    "team-a": "explain-team-a-key-0123456789",
    "team-b": "explain-team-b-key-0123456789",
    "ops": "explain-ops-key-0123456789abc",
}
SCOPES = {"team-a": ["hub:call", "team-a"], "team-b": ["hub:call", "team-b"], "ops": ["hub:admin"]}
POLICIES = [
    {"scope": "team-a", "allow": ["fx__*", "fx+*"]},
    {"scope": "team-b", "servers": ["other"], "deny": ["other__crash"]},
    {"scope": "hub:admin", "allow": ["*"]},
]


def _config() -> dict[str, Any]:
    return {
        "auth": {
            "api_keys": [
                {"id": pid, "key_sha256": hashlib.sha256(key.encode()).hexdigest(), "scopes": SCOPES[pid]}
                for pid, key in KEYS.items()
            ]
        },
        "policies": POLICIES,
        "rate_limits": {
            "per_principal": {"requests_per_second": 20, "burst": 40},
            "routes": {"fx__slow": {"requests_per_second": 1, "burst": 2}},
        },
        "servers": {
            "fx": fixture_entry(
                "fx", fallback=["spare"], timeout_seconds=7, timeouts={"slow": 30}, idempotent=["echo"]
            ),
            "spare": fixture_entry("spare", expose=False),
            "other": fixture_entry("other"),
        },
    }


@pytest.fixture
async def hub() -> AsyncIterator[RunningHub]:
    config = _config()
    async with running_hub(config.pop("servers"), **config) as running:
        yield running


async def _explain(hub: RunningHub, path: str, token: str, **query: Any) -> dict[str, Any]:
    async with http_client(timeout=10.0, headers={"Authorization": f"Bearer {token}"}) as http:
        response = await http.get(f"{hub.base_url}{path}", params=query)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


async def test_explain_names_the_policy_rule_that_denies_a_principal_and_its_text(hub: RunningHub) -> None:
    with anyio.fail_after(20):
        denied = await _explain(hub, "/admin/explain", KEYS["ops"], name="fx__echo", principal="team-b")
    assert denied["found"] is True
    assert denied["route"] == {
        "exposed": "fx__echo",
        "kind": "tools",
        "server_id": "fx",
        "original": "echo",
        "note": None,
        "notes": [],
        "served": True,
    }
    assert denied["principal"] == {"principal": "team-b", "scopes": ["hub:call", "team-b"], "source": "api_key"}
    assert denied["policy"] == {
        "allowed": False,
        "rule_index": 1,
        "rule": {"scope": "team-b", "servers": ["other"], "deny": ["other__crash"]},
        "reason": "server not in the rule's servers",
    }
    assert denied["verdict"]["callable"] is False
    assert any("policies[1]" in reason for reason in denied["verdict"]["reasons"])


async def test_explain_shows_servers_rate_limits_and_settings_of_an_allowed_route(hub: RunningHub) -> None:
    with anyio.fail_after(20):
        allowed = await _explain(hub, "/admin/explain", KEYS["ops"], name="fx__slow", principal="team-a")
    assert allowed["policy"]["allowed"] is True and allowed["policy"]["rule_index"] == 0
    assert allowed["servers"]["chain"] == ["fx", "spare"]
    assert allowed["servers"]["serving"] == "fx"
    assert allowed["servers"]["states"] == {"fx": "ready", "spare": "ready"}
    assert allowed["rate_limits"] == {
        "per_principal": {"requests_per_second": 20, "burst": 40},
        "route": {"glob": "fx__slow", "requests_per_second": 1, "burst": 2},
    }
    settings = allowed["settings"]
    assert settings["timeout_seconds"] == 30 and settings["max_timeout_seconds"] == 150
    assert settings["idempotent"] is False and settings["fallback"] == ["spare"]
    assert allowed["verdict"] == {"callable": True, "reasons": ["served by fx"]}
    echo = await _explain(hub, "/admin/explain", KEYS["ops"], name="fx__echo", principal="team-a")
    assert echo["settings"]["timeout_seconds"] == 7 and echo["settings"]["idempotent"] is True
    resource = await _explain(hub, "/admin/explain", KEYS["ops"], name="fx+fixture://info", principal="team-b")
    assert resource["route"]["kind"] == "resources" and resource["route"]["original"] == "fixture://info"
    assert resource["policy"]["allowed"] is False


async def test_a_principal_asking_about_itself_learns_nothing_of_routes_it_may_not_see(hub: RunningHub) -> None:
    with anyio.fail_after(20):
        hidden = await _explain(hub, "/me/explain", KEYS["team-b"], name="fx__echo")
        unknown = await _explain(hub, "/me/explain", KEYS["team-b"], name="fx__echoo")
        own = await _explain(hub, "/me/explain", KEYS["team-b"], name="other__echoo")
        mine = await _explain(hub, "/me/explain", KEYS["team-a"], name="fx__echo")
    # A hidden route answers exactly like an unknown name.
    assert hidden.keys() == unknown.keys() == {"name", "found", "suggestions", "verdict"}
    assert hidden["found"] is unknown["found"] is False
    assert hidden["verdict"] == {"callable": False, "reasons": ["no route is named 'fx__echo'"]}
    assert not any(s.startswith("fx__") for s in hidden["suggestions"] + unknown["suggestions"])
    assert own["found"] is False and "other__echo" in own["suggestions"]
    assert mine["found"] is True and mine["verdict"]["callable"] is True
    assert mine["principal"]["principal"] == "team-a"


async def test_explain_needs_a_name_and_admin_for_another_principal(hub: RunningHub) -> None:
    async with http_client(timeout=10.0) as http:
        no_name = await http.get(f"{hub.base_url}/admin/explain", headers={"Authorization": f"Bearer {KEYS['ops']}"})
        not_admin = await http.get(
            f"{hub.base_url}/admin/explain",
            params={"name": "fx__echo", "principal": "team-a"},
            headers={"Authorization": f"Bearer {KEYS['team-b']}"},
        )
    assert no_name.status_code == 400
    assert not_admin.status_code == 403


def _mcphub(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        hub_command(*args),
        capture_output=True,
        text=True,
        timeout=ONE_SHOT_TIMEOUT_SECONDS,
        env=_cli_env(),
    )


@pytest.mark.slow
async def test_mcphub_explain_answers_why_a_principal_cannot_call_a_tool_in_one_command(tmp_path: Path) -> None:
    config = _write_config(tmp_path / "hub.yaml", {**_config(), "state_dir": str(tmp_path / "state")})
    async with _serving(config, tmp_path / "serve.log") as served:
        hub_options = ("--url", served.base_url, "--token", KEYS["ops"])
        denied, as_json, own = [
            await anyio.to_thread.run_sync(functools.partial(_mcphub, "explain", *args, *hub_options))
            for args in (
                ("fx__echo", "--principal", "team-b"),
                ("fx__echo", "--principal", "team-b", "--json"),
                ("other__echo",),
            )
        ]
    assert denied.returncode == 1, denied.stderr
    assert "DENIED by policies[1]" in denied.stdout
    assert "verdict: NOT callable" in denied.stdout
    assert json.loads(as_json.stdout)["policy"]["rule_index"] == 1
    assert own.returncode == 0, own.stdout + own.stderr
    assert "verdict: callable: served by other" in own.stdout


async def test_explain_of_a_definition_held_by_pinning_shows_the_pin_the_pending_diff_and_why_not(
    tmp_path: Path,
) -> None:
    from tests.test_pins import _rugpull

    state_dir = str(tmp_path / "state")
    async with running_hub({"rp": _rugpull()}, pinning="block", state_dir=state_dir):
        pass  # trust on first use: the first listing is pinned
    async with running_hub({"rp": _rugpull("--pulled")}, pinning="block", state_dir=state_dir) as hub:
        with anyio.fail_after(20):
            async with http_client(timeout=10.0) as http:
                response = await http.get(f"{hub.base_url}/admin/explain", params={"name": "rp__echo"})
    held = response.json()
    assert held["found"] is True and held["policy"] is None
    pin = held["pin"]
    assert pin["status"] == "held" and pin["held"] is True and pin["reason"] == "changed"
    assert pin["pinned"] != pin["fingerprint"] and pin["first_seen"] is not None
    assert any(change["path"].startswith("$.inputSchema") for change in pin["pending"]["changes"])
    assert "<IMPORTANT>" in pin["pending"]["description"]
    assert held["verdict"]["callable"] is False
    assert any("held by pinning (changed)" in reason for reason in held["verdict"]["reasons"])
