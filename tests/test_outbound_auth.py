"""The hub's own credentials toward servers (issue 3, item 5; SECURITY.md A.3, D.2, cases 4, 22,
23, 44): static headers, bearer tokens and OAuth client credentials reach the server; a client's
token never does; stdio children see only their own environment; no secret or token shows up
in logs, /readyz, /admin, `mcphub check` or error messages.

Real peers only: the fixture server over loopback HTTP (`--probe-tools` echoes the
`Authorization` header it received), a loopback token endpoint (tests/servers/auth_server.py),
the hub itself on a free port.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp_types import TextContent

from hub.config import parse_config
from hub.errors import ConfigError
from hub.servers import ServerState
from tests.clients import http_client, mcp_client
from tests.conftest import ROOT, RunningHub, fixture_entry, free_port, http_fixture, hub_command, running_hub
from tests.servers.auth_server import AuthServer, Registration, serve_auth_server

pytestmark = pytest.mark.anyio

CLIENT_TOKEN = "client-own-token-0123456789abcdef"
HEADER_TOKEN = "static-header-token-5555aaaa"
BEARER_TOKEN = "bearer-env-token-7777bbbb"
CLIENT_SECRET = "oauth-client:secret/9999%cccc"  # RFC 6749 2.3.1: form-encoded in Basic
WRONG_SECRET = "wrong-client-secret-1111dddd"
HUB_SECRET = "hub-process-secret-3333eeee"
OTHER_SERVER_SECRET = "other-server-secret-4444ffff"


def _text(result: Any) -> str:
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


@asynccontextmanager
async def _client_with_token(url: str, token: str = CLIENT_TOKEN) -> AsyncIterator[Client]:
    """A client of the hub that presents its own bearer token."""
    async with (
        http_client(headers={"Authorization": f"Bearer {token}"}) as http,
        mcp_client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


def _oauth(auth: AuthServer, client_id: str = "hub", secret_env: str = "OUTBOUND_SECRET", **extra: Any) -> Any:
    return {"client_id": client_id, "client_secret_env": secret_env, "token_url": auth.token_url, **extra}


async def _hub_pages(hub: RunningHub) -> str:
    async with http_client() as http:
        pages = [await http.get(f"{hub.base_url}{path}") for path in ("/readyz", "/admin/servers", "/admin/routes")]
    return "\n".join(page.text for page in pages)


# --- what reaches the server ------------------------------------------------------------------


async def test_each_server_sees_only_its_configured_credential_never_the_clients_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HEADER_TOKEN", HEADER_TOKEN)
    monkeypatch.setenv("BEARER_TOKEN", BEARER_TOKEN)
    monkeypatch.setenv("OUTBOUND_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("CLIENT_KEY", CLIENT_TOKEN)  # the client's token is a valid API key of the hub
    hub_auth = {"api_keys": [{"id": "team-a", "key_env": "CLIENT_KEY", "scopes": ["hub:call"]}]}
    async with (
        serve_auth_server({"hub": Registration(CLIENT_SECRET), "hub-sse": Registration(CLIENT_SECRET)}) as auth,
        http_fixture("--probe-tools") as (url, _process),
        http_fixture("--probe-tools", transport="sse") as (sse_url, _sse_process),
    ):
        servers = {
            "plain": {"url": url},
            "static": {"url": url, "headers": {"Authorization": "Bearer ${HEADER_TOKEN}"}},
            "bearer": {"url": url, "bearer_token_env": "BEARER_TOKEN"},
            "sso": {"url": url, "oauth": _oauth(auth, scope="crm.read", audience="https://crm.example")},
            "legacy": {"url": sse_url, "transport": "sse", "oauth": _oauth(auth, client_id="hub-sse")},
        }
        async with running_hub(servers, auth=hub_auth) as hub:
            with anyio.fail_after(20):
                async with _client_with_token(hub.url) as client:
                    seen = {sid: _text(await client.call_tool(f"{sid}__seen_authorization", {})) for sid in servers}
                async with _client_with_token(hub.server_url("sso")) as client:
                    seen_direct = _text(await client.call_tool("seen_authorization", {}))
    (sso_token,), (sse_token,) = auth.tokens_for("hub"), auth.tokens_for("hub-sse")
    assert seen == {
        "plain": "",
        "static": f"Bearer {HEADER_TOKEN}",
        "bearer": f"Bearer {BEARER_TOKEN}",
        "sso": f"Bearer {sso_token}",
        "legacy": f"Bearer {sse_token}",
    }
    assert seen_direct == seen["sso"]
    assert all(CLIENT_TOKEN not in value for value in seen.values())
    assert auth.issued[[t.client_id for t in auth.issued].index("hub")].form == {
        "grant_type": "client_credentials",
        "scope": "crm.read",
        "audience": "https://crm.example",
        "resource": url,  # RFC 8707: the server's canonical URL
    }


async def test_one_oauth_token_serves_many_calls_and_is_sent_with_client_secret_post_when_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OUTBOUND_SECRET", CLIENT_SECRET)
    async with (
        serve_auth_server({"hub": Registration(CLIENT_SECRET)}) as auth,
        http_fixture("--probe-tools") as (url, _process),
    ):
        oauth = _oauth(auth, token_endpoint_auth_method="client_secret_post", resource=False)
        async with running_hub({"sso": {"url": url, "oauth": oauth}}) as hub:
            with anyio.fail_after(20):
                async with mcp_client(hub.url) as client:
                    seen = [_text(await client.call_tool("sso__seen_authorization", {})) for _ in range(10)]
                    async with anyio.create_task_group() as tg:
                        for _ in range(10):
                            tg.start_soon(client.call_tool, "sso__echo", {"text": "hi"})
    (token,) = auth.tokens_for("hub")
    assert set(seen) == {f"Bearer {token}"}
    assert auth.issued[0].form == {"grant_type": "client_credentials", "client_id": "hub"}


async def test_a_short_lived_oauth_token_is_renewed_before_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTBOUND_SECRET", CLIENT_SECRET)
    async with (
        serve_auth_server({"hub": Registration(CLIENT_SECRET, expires_in_seconds=1)}) as auth,
        http_fixture("--probe-tools") as (url, _process),
    ):
        # The hub's own health checks (every 0.1 s while idle) carry the token between calls.
        entry = {"url": url, "oauth": _oauth(auth), "health_check_interval_seconds": 0.1}
        async with running_hub({"sso": entry}) as hub:
            with anyio.fail_after(15):
                async with mcp_client(hub.url) as client:
                    first = _text(await client.call_tool("sso__seen_authorization", {}))
                    # The server never answers 401 here: a new token can only come from the expiry.
                    await auth.changes.wait_for(lambda: len(auth.tokens_for("hub")) >= 2)
                    seen = _text(await client.call_tool("sso__seen_authorization", {}))
                    requests = int(_text(await client.call_tool("sso__authorized_requests", {})))
    tokens = auth.tokens_for("hub")
    assert auth.refused == 0
    assert first == f"Bearer {tokens[0]}" and seen == f"Bearer {tokens[-1]}" and first != seen
    assert len(tokens) < requests  # cached between renewals, not fetched per request


async def test_a_401_from_the_server_makes_the_hub_fetch_one_new_token_and_retry_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("OUTBOUND_SECRET", CLIENT_SECRET)
    async with (
        serve_auth_server({"hub": Registration(CLIENT_SECRET)}) as auth,
        http_fixture("--probe-tools") as (url, _process),
    ):
        async with running_hub({"sso": {"url": url, "oauth": _oauth(auth)}}) as hub:
            with anyio.fail_after(20):
                async with mcp_client(hub.url) as client:
                    first = _text(await client.call_tool("sso__seen_authorization", {}))
                    await client.call_tool("sso__reject_authorization", {})  # the server revokes it
                    second = _text(await client.call_tool("sso__seen_authorization", {}))
                    assert len(auth.issued) == 2
                    await client.call_tool("sso__reject_authorization", {"every": True})
                    with pytest.raises(MCPError):
                        await client.call_tool("sso__whoami", {})
            issued_after_refusal = len(auth.issued)
    tokens = auth.tokens_for("hub")
    assert (first, second) == (f"Bearer {tokens[0]}", f"Bearer {tokens[1]}")
    assert issued_after_refusal == 3  # one new token for the refused call, then it gives up
    assert "answered HTTP 401 to a fresh token" in caplog.text
    assert not [token for token in tokens if token in caplog.text]


# --- failures are clear and leak nothing -------------------------------------------------------


@pytest.mark.slow
async def test_a_renewal_refused_mid_life_takes_the_server_down_with_the_reason_until_the_endpoint_accepts_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OUTBOUND_SECRET", CLIENT_SECRET)
    async with (
        serve_auth_server({"hub": Registration(CLIENT_SECRET, expires_in_seconds=1)}) as auth,
        http_fixture("--probe-tools") as (url, _process),
    ):
        entry = {"url": url, "oauth": _oauth(auth), "health_check_interval_seconds": 0.1}  # checks renew it
        async with running_hub({"sso": entry}) as hub:
            with anyio.fail_after(20):
                async with mcp_client(hub.url) as client:
                    assert _text(await client.call_tool("sso__whoami", {})) == "fixture"
                    registration = auth.clients.pop("hub")  # the authorization server revokes the hub
                    # The token is due for renewal about 0.9 s after it was issued; a call made
                    # after the endpoint refused the renewal fails.
                    await auth.changes.wait_for(lambda: auth.refused >= 1)
                    failure: MCPError | None = None
                    try:
                        await client.call_tool("sso__whoami", {})
                    except MCPError as exc:
                        failure = exc
                down = await hub.hub.wait_for_server("sso", ServerState.RESTARTING, ServerState.FAILED)
                auth.clients["hub"] = registration
                await hub.hub.wait_for_server("sso", ServerState.READY)
            reason = down.last_error
    assert failure is not None and CLIENT_SECRET not in str(failure)
    assert reason is not None and f"{auth.token_url} refused the client credentials: HTTP 401" in reason
    assert CLIENT_SECRET not in reason


async def test_a_refused_or_unreachable_token_endpoint_fails_the_server_naming_the_endpoint_not_the_secret(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("OUTBOUND_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("WRONG_SECRET", WRONG_SECRET)
    monkeypatch.setenv("BEARER_TOKEN", BEARER_TOKEN)
    nowhere = f"http://127.0.0.1:{free_port()}/token"
    async with (
        serve_auth_server({"hub": Registration(CLIENT_SECRET)}) as auth,
        http_fixture("--probe-tools") as (url, _process),
    ):
        servers = {
            "good": {"url": url, "oauth": _oauth(auth)},
            "bearer": {"url": url, "bearer_token_env": "BEARER_TOKEN"},
            "refused": {"url": url, "oauth": _oauth(auth, secret_env="WRONG_SECRET"), "startup_timeout_seconds": 10},
            "nowhere": {"url": url, "oauth": {**_oauth(auth), "token_url": nowhere}, "startup_timeout_seconds": 10},
        }
        async with running_hub(servers) as hub:
            with anyio.fail_after(20):
                async with _client_with_token(hub.url) as client:
                    seen = _text(await client.call_tool("good__seen_authorization", {}))
                    with pytest.raises(MCPError) as refused_call:
                        await client.call_tool("refused__whoami", {})
                pages = await _hub_pages(hub)
                statuses = {}
                for sid in ("refused", "nowhere"):  # between retries the state is `restarting` for a moment
                    # as it failed, before its next retry
                    statuses[sid] = await hub.hub.wait_for_server(sid, ServerState.FAILED)
            refused, unreachable = statuses["refused"], statuses["nowhere"]
    assert refused.state is ServerState.FAILED and unreachable.state is ServerState.FAILED
    assert refused.last_error == (
        f"the OAuth token endpoint {auth.token_url} refused the client credentials: HTTP 401 (invalid_client)"
    )
    assert unreachable.last_error == f"cannot reach the OAuth token endpoint {nowhere}: ConnectError"
    secrets = [CLIENT_SECRET, WRONG_SECRET, BEARER_TOKEN, CLIENT_TOKEN, *auth.tokens_for("hub")]
    assert seen == f"Bearer {auth.tokens_for('hub')[0]}"
    for text in (caplog.text, pages, str(refused_call.value)):
        assert [secret for secret in secrets if secret in text] == []
    assert "sent the secret" not in caplog.text + pages  # the token endpoint's error_description


@pytest.mark.e2e
def test_mcphub_check_reports_a_refused_token_endpoint_without_any_secret(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, str, str, list[str]]:
        async with (
            serve_auth_server({"hub": Registration(CLIENT_SECRET)}) as auth,
            http_fixture("--probe-tools") as (url, _process),
        ):
            config = {
                "servers": {
                    "good": {"url": url, "oauth": _oauth(auth)},
                    "static": {"url": url, "headers": {"Authorization": "Bearer ${HEADER_TOKEN}"}},
                    "refused": {"url": url, "oauth": _oauth(auth, secret_env="WRONG_SECRET")},
                }
            }
            path = tmp_path / "hub.yaml"
            path.write_text(yaml.safe_dump(config))
            env = {
                "PATH": "/usr/bin:/bin",
                "OUTBOUND_SECRET": CLIENT_SECRET,
                "WRONG_SECRET": WRONG_SECRET,
                "HEADER_TOKEN": HEADER_TOKEN,
            }
            with anyio.fail_after(60):
                result = await anyio.run_process(
                    hub_command("--debug", "check", "--connect", "-c", str(path)),
                    env=env,
                    cwd=ROOT,
                    check=False,
                )
            return result.returncode, result.stdout.decode(), result.stderr.decode(), auth.tokens_for("hub")

    code, out, err, tokens = anyio.run(scenario)
    assert code == 1
    assert "refused" in err and "HTTP 401 (invalid_client)" in err and "/token" in err
    assert len(tokens) == 1
    leaked = [s for s in (CLIENT_SECRET, WRONG_SECRET, HEADER_TOKEN, *tokens) if s in out + err]
    assert leaked == []


# --- stdio children ------------------------------------------------------------------------------


async def test_a_stdio_child_sees_only_its_own_env_never_the_hubs_or_another_servers_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HUB_SIGNING_KEY", HUB_SECRET)
    monkeypatch.setenv("OUTBOUND_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("BEARER_TOKEN", BEARER_TOKEN)
    servers = {
        "alpha": fixture_entry("alpha", "--probe-tools", env={"ALPHA_TOKEN": OTHER_SERVER_SECRET}),
        "beta": fixture_entry("beta", "--probe-tools", env={"BETA_SETTING": "mine"}),
        # Remote servers whose secrets live in the hub's environment; they need not be up.
        "billing": {"url": f"http://127.0.0.1:{free_port()}/mcp", "bearer_token_env": "BEARER_TOKEN"},
        "crm": {
            "url": f"http://127.0.0.1:{free_port()}/mcp",
            "oauth": {
                "client_id": "hub",
                "client_secret_env": "OUTBOUND_SECRET",
                "token_url": f"http://127.0.0.1:{free_port()}/token",
            },
        },
    }
    async with running_hub(servers) as hub:
        with anyio.fail_after(15):
            async with mcp_client(hub.url) as client:
                names = set(_text(await client.call_tool("beta__env_names", {})).split())
                values = {
                    name: _text(await client.call_tool("beta__getenv", {"name": name}))
                    for name in ("BETA_SETTING", "ALPHA_TOKEN", "HUB_SIGNING_KEY", "OUTBOUND_SECRET", "BEARER_TOKEN")
                }
                alpha_own = _text(await client.call_tool("alpha__getenv", {"name": "ALPHA_TOKEN"}))
    assert values == {
        "BETA_SETTING": "mine",
        "ALPHA_TOKEN": "<unset>",
        "HUB_SIGNING_KEY": "<unset>",
        "OUTBOUND_SECRET": "<unset>",
        "BEARER_TOKEN": "<unset>",
    }
    assert alpha_own == OTHER_SERVER_SECRET
    # Only the entry's own variables plus the SDK's safe minimum (and what Python itself sets).
    safe = {"HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", "LC_CTYPE"}
    assert names - safe == {"BETA_SETTING"}, names


# --- config --------------------------------------------------------------------------------------


def test_outbound_credentials_are_checked_at_load_with_a_clear_key_path() -> None:
    env = {"SECRET": "s3cret-value"}
    oauth = {"client_id": "hub", "client_secret_env": "SECRET", "token_url": "https://idp.example.com/token"}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"bearer_token_env": "MISSING"}, "servers.x.bearer_token_env: environment variable MISSING is not set"),
        ({"oauth": {**oauth, "client_secret_env": "MISSING"}}, "servers.x.oauth.client_secret_env: environment"),
        ({"oauth": {**oauth, "token_url": "http://idp.example.com/token"}}, "token_url must use https"),
        ({"oauth": {**oauth, "client_secret": "literal"}}, "servers.x.oauth.client_secret: unknown key"),
        ({"oauth": oauth, "bearer_token_env": "SECRET"}, "not bearer_token_env and oauth"),
        ({"headers": {"authorization": "Bearer x"}, "oauth": oauth}, "not headers.Authorization and oauth"),
    ]
    for extra, expected in cases:
        with pytest.raises(ConfigError) as error:
            parse_config({"servers": {"x": {"url": "https://x.example.com/mcp", **extra}}}, env=env)
        assert expected in str(error.value)
        assert "s3cret-value" not in str(error.value)
    stdio = fixture_entry("x", bearer_token_env="SECRET")
    with pytest.raises(ConfigError, match="only apply to a remote server"):
        parse_config({"servers": {"x": stdio}}, env=env)
    loopback = parse_config(
        {"servers": {"x": {"url": "http://127.0.0.1:1/mcp", "oauth": {**oauth, "token_url": "http://127.0.0.1:1/t"}}}},
        env=env,
    )
    assert loopback.servers["x"].oauth is not None and loopback.servers["x"].oauth.client_secret == "s3cret-value"
    assert "s3cret-value" not in repr(loopback) + loopback.model_dump_json()
