"""Inbound authentication and authorization with real tokens over real loopback HTTP: API keys,
JWTs signed here with generated RSA/EC keys and verified against a JWKS served on loopback,
RFC 9728 metadata, per-principal policy, session binding and rate limits."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import random
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import jwt
import mcp_types as types
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp_types import INVALID_PARAMS
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub.config import DEMO_FLEET_PATH, load_config, parse_config
from hub.errors import RATE_LIMITED, ConfigError
from tests.clients import http_client, mcp_client
from tests.conftest import INITIALIZE, MCP_HEADERS, ROOT, RunningHub, fixture_entry, running_hub, serve_app

pytestmark = pytest.mark.anyio

ISSUER = "https://idp.example.test"
PUBLIC_URL = "https://hub.example.test"
AUDIENCE = f"{PUBLIC_URL}/mcp"
TEAM_A_KEY = "team-a-key-0123456789abcdef"
TEAM_B_KEY = "team-b-key-0123456789abcdef"
ADMIN_KEY = "admin-key-0123456789abcdef"
BOT_KEY = "bot-key-0123456789abcdef"
NO_CALL_KEY = "no-call-key-0123456789abcdef"
ALL_KEYS = (TEAM_A_KEY, TEAM_B_KEY, ADMIN_KEY, BOT_KEY, NO_CALL_KEY)


def _sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


# ---------------------------------------------------------------- a JWKS issuer on loopback


@dataclass
class Issuer:
    """Signing keys, and the JWKS document a loopback server publishes for them."""

    url: str = ""
    published: list[dict[str, Any]] = field(default_factory=list)
    fetches: int = 0
    keys: dict[str, Any] = field(default_factory=dict)
    issued: list[str] = field(default_factory=list)

    def add_rsa(self, kid: str, publish: bool = True) -> None:
        self._add(kid, rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256", publish)

    def add_ec(self, kid: str, publish: bool = True) -> None:
        self._add(kid, ec.generate_private_key(ec.SECP256R1()), "ES256", publish)

    def _add(self, kid: str, private_key: Any, alg: str, publish: bool) -> None:
        self.keys[kid] = (private_key, alg)
        if publish:
            self.publish(kid)

    def publish(self, kid: str) -> None:
        private_key, alg = self.keys[kid]
        algorithm = jwt.algorithms.RSAAlgorithm if alg == "RS256" else jwt.algorithms.ECAlgorithm
        jwk = algorithm.to_jwk(private_key.public_key(), as_dict=True)
        self.published.append({**jwk, "kid": kid, "alg": alg, "use": "sig"})

    def token(self, kid: str, **overrides: Any) -> str:
        private_key, alg = self.keys[kid]
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "jwt-user",
            "scope": "hub:call team-a",
            "iat": now,
            "exp": now + 300,
        }
        claims.update(overrides)
        claims = {key: value for key, value in claims.items() if value is not None}
        token = jwt.encode(claims, private_key, algorithm=alg, headers={"kid": kid})
        self.issued.append(token)
        return token


@asynccontextmanager
async def jwks_server(issuer: Issuer) -> AsyncIterator[Issuer]:
    async def jwks(request: Request) -> Response:
        issuer.fetches += 1
        return JSONResponse({"keys": issuer.published})

    async with serve_app(Starlette(routes=[Route("/jwks.json", jwks)])) as base_url:
        issuer.url = f"{base_url}/jwks.json"
        yield issuer


def _auth_settings(issuer: Issuer, **jwt_extra: Any) -> dict[str, Any]:
    return {
        "public_url": PUBLIC_URL,
        "auth": {
            "api_keys": [
                {"id": "team-a", "key_sha256": _sha(TEAM_A_KEY), "scopes": ["hub:call", "team-a"]},
                {"id": "team-b", "key_sha256": _sha(TEAM_B_KEY), "scopes": ["hub:call", "team-b"]},
                {"id": "admin", "key_sha256": _sha(ADMIN_KEY), "scopes": ["hub:admin"]},
                {"id": "ci-bot", "key_sha256": _sha(BOT_KEY), "scopes": ["hub:call"]},
                {"id": "reader", "key_sha256": _sha(NO_CALL_KEY), "scopes": ["team-a"]},
            ],
            "jwt": {
                "issuer": ISSUER,
                "jwks_url": issuer.url,
                "algorithms": ["RS256", "ES256"],
                "jwks_refresh_min_seconds": 0,
                **jwt_extra,
            },
        },
        "allowed_hosts": ["hub.example.test"],
    }


POLICIES = [
    {"scope": "team-a", "allow": ["alpha__*", "alpha+*"], "deny": ["alpha__crash"]},
    {"scope": "team-b", "servers": ["beta"]},
    {"principal": "ci-bot", "allow": ["*"], "deny": ["*__fail"]},
    {"scope": "hub:admin", "allow": ["*"]},
]


@asynccontextmanager
async def auth_hub(issuer: Issuer, policies: Any = POLICIES, **extra: Any) -> AsyncIterator[RunningHub]:
    settings = {**_auth_settings(issuer, **extra.pop("jwt_extra", {})), **extra}
    if policies is not None:
        settings["policies"] = policies
    servers = {"alpha": fixture_entry("alpha"), "beta": fixture_entry("beta")}
    async with running_hub(servers, **settings) as hub:
        yield hub


@asynccontextmanager
async def client_for(url: str, token: str | None, mode: str = "auto") -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http_client(headers=headers, timeout=30) as http:
        async with mcp_client(streamable_http_client(url, http_client=http), mode=mode) as client:
            yield client


async def _post(url: str, token: str | None = None, *, body: Any = INITIALIZE, **headers: str) -> httpx2.Response:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with http_client(timeout=15) as http:
        return await http.post(url, json=body, headers={**MCP_HEADERS, **headers})


def _challenge(response: httpx2.Response) -> dict[str, str]:
    value = response.headers["www-authenticate"]
    scheme, _, params = value.partition(" ")
    assert scheme == "Bearer"
    parsed: dict[str, str] = {}
    for part in params.split(", "):
        key, _, quoted = part.partition("=")
        parsed[key] = quoted.strip('"')
    return parsed


@pytest.fixture
async def issuer(caplog: pytest.LogCaptureFixture) -> AsyncIterator[Issuer]:
    """The test's issuer; afterwards, no API key or token used in the test is in its logs."""
    caplog.set_level(logging.DEBUG)
    keys = Issuer()
    keys.add_rsa("rsa-1")
    keys.add_ec("ec-1")
    async with jwks_server(keys) as running:
        yield running
    logged = caplog.text
    assert not [key for key in ALL_KEYS if key in logged]
    assert not [token for token in keys.issued if token in logged or token.split(".")[2] in logged]


# ---------------------------------------------------------------- 401 and the metadata pointer


async def test_no_token_gets_401_with_the_metadata_pointer_and_the_metadata_names_the_issuer(issuer: Issuer) -> None:
    async with auth_hub(issuer) as hub:
        response = await _post(hub.url)
        async with http_client(timeout=15) as http:
            challenge = _challenge(response)
            metadata = await http.get(hub.base_url + "/.well-known/oauth-protected-resource/mcp")
            per_server = await http.get(hub.base_url + "/.well-known/oauth-protected-resource/servers/alpha/mcp")
            unknown = await http.get(hub.base_url + "/.well-known/oauth-protected-resource/servers/nope/mcp")
            server_401 = await http.post(hub.server_url("alpha"), json=INITIALIZE, headers=MCP_HEADERS)

    assert response.status_code == 401
    assert "error" not in challenge  # no token was presented (RFC 6750 section 3)
    assert challenge["resource_metadata"] == f"{PUBLIC_URL}/.well-known/oauth-protected-resource/mcp"
    assert challenge["scope"] == "hub:call"
    assert metadata.status_code == 200
    document = metadata.json()
    assert document["resource"] == AUDIENCE
    assert document["authorization_servers"] == [ISSUER]
    assert {"hub:call", "hub:admin", "team-a", "team-b"} <= set(document["scopes_supported"])
    assert document["bearer_methods_supported"] == ["header"]
    assert per_server.json()["resource"] == f"{PUBLIC_URL}/servers/alpha/mcp"
    assert unknown.status_code == 404
    assert _challenge(server_401)["resource_metadata"].endswith("/oauth-protected-resource/servers/alpha/mcp")


INVALID_TOKEN_CASES = {
    "expired": "token expired",
    "not_yet_valid": "token not yet valid",
    "bad_signature": "bad token signature",
    "alg_none": "token algorithm not accepted",
    "hs256_with_public_key": "token algorithm not accepted",
    "wrong_issuer": "token from an unexpected issuer",
    "wrong_audience": "token not issued for this resource (audience)",
    "no_exp": "token lacks the exp claim",
    "unknown_api_key": "unknown API key",
    "garbage_jwt": "malformed token",
    "basic_scheme": "send the token as Authorization: Bearer <token>",
}


def _invalid_token(issuer: Issuer, case: str, now: int) -> str:
    if case == "expired":
        return issuer.token("rsa-1", iat=now - 900, exp=now - 600)
    if case == "not_yet_valid":
        return issuer.token("rsa-1", nbf=now + 600)
    if case == "bad_signature":
        header, payload, _ = issuer.token("rsa-1").split(".")
        _, _, other_signature = issuer.token("rsa-1", sub="someone-else").split(".")
        return f"{header}.{payload}.{other_signature}"
    if case == "alg_none":
        return jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": now + 60}, None, algorithm="none")
    if case == "hs256_with_public_key":
        return _hs256_signed_with_public_pem(issuer, now)
    if case == "wrong_issuer":
        return issuer.token("ec-1", iss="https://evil.example.test")
    if case == "wrong_audience":
        return issuer.token("ec-1", aud="https://other.example.test/mcp")
    if case == "no_exp":
        return issuer.token("rsa-1", exp=None)
    if case == "unknown_api_key":
        return "not-a-configured-key-0123456789"
    if case == "garbage_jwt":
        return "abc.def.ghi"
    assert case == "basic_scheme"
    return TEAM_A_KEY


async def test_an_invalid_token_gets_401_invalid_token_and_is_never_logged(
    issuer: Issuer, caplog: pytest.LogCaptureFixture
) -> None:
    now = int(time.time())
    tokens = {case: _invalid_token(issuer, case, now) for case in INVALID_TOKEN_CASES}
    caplog.set_level(logging.DEBUG)
    answers = {}
    async with auth_hub(issuer) as hub, http_client(timeout=15) as http:
        for case, token in tokens.items():
            scheme = "Basic" if case == "basic_scheme" else "Bearer"
            headers = {**MCP_HEADERS, "Authorization": f"{scheme} {token}"}
            answers[case] = await http.post(hub.url, json=INITIALIZE, headers=headers)
    for case, response in answers.items():
        assert response.status_code == 401, case
        challenge = _challenge(response)
        assert (challenge["error"], challenge["error_description"]) == ("invalid_token", INVALID_TOKEN_CASES[case])
        assert tokens[case] not in response.text, case
    for token in tokens.values():
        assert token not in caplog.text


def _hs256_signed_with_public_pem(issuer: Issuer, now: int) -> str:
    """Algorithm confusion: an HS256 token whose HMAC secret is the issuer's public key."""
    public_pem = (
        issuer.keys["rsa-1"][0]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = jwt.utils.base64url_encode(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
    payload = jwt.utils.base64url_encode(
        json.dumps({"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": now + 60, "scope": "hub:admin"}).encode()
    )
    signature = hmac.new(public_pem, header + b"." + payload, hashlib.sha256).digest()
    return b".".join([header, payload, jwt.utils.base64url_encode(signature)]).decode()


async def test_a_token_in_the_query_string_is_refused_even_when_valid(issuer: Issuer) -> None:
    async with auth_hub(issuer) as hub:
        response = await _post(f"{hub.url}?access_token={TEAM_A_KEY}", TEAM_A_KEY)
    assert response.status_code == 401
    assert "query string" in _challenge(response)["error_description"]


async def test_valid_jwts_of_both_key_types_and_api_keys_authenticate_as_their_principals(issuer: Issuer) -> None:
    async with auth_hub(issuer) as hub, http_client(timeout=15) as http:
        seen = {}
        for label, token in [
            ("rsa", issuer.token("rsa-1", sub="alice", scope="hub:call team-a")),
            ("ec", issuer.token("ec-1", sub="bob", scope=["hub:call", "team-b"])),
            ("key", TEAM_B_KEY),
        ]:
            response = await http.get(hub.base_url + "/me", headers={"Authorization": f"Bearer {token}"})
            seen[label] = response.json()
    assert seen["rsa"] == {"principal": "alice", "scopes": ["hub:call", "team-a"], "source": "jwt"}
    assert seen["ec"] == {"principal": "bob", "scopes": ["hub:call", "team-b"], "source": "jwt"}
    assert seen["key"] == {"principal": "team-b", "scopes": ["hub:call", "team-b"], "source": "api_key"}


async def test_an_unknown_kid_refetches_the_jwks_so_a_rotated_key_is_accepted(issuer: Issuer) -> None:
    async with auth_hub(issuer) as hub, http_client(timeout=15) as http:
        first = await http.get(hub.base_url + "/me", headers={"Authorization": f"Bearer {issuer.token('rsa-1')}"})
        fetches_before = issuer.fetches
        issuer.add_rsa("rsa-2")  # the issuer rotates: the new key is published after the hub cached the old set
        rotated = await http.get(hub.base_url + "/me", headers={"Authorization": f"Bearer {issuer.token('rsa-2')}"})
    assert first.status_code == 200 and rotated.status_code == 200
    assert fetches_before == 1 and issuer.fetches == 2


async def test_refetches_for_unknown_kids_are_rate_limited(issuer: Issuer) -> None:
    issuer.add_rsa("unpublished", publish=False)
    async with auth_hub(issuer, jwt_extra={"jwks_refresh_min_seconds": 3600}) as hub:
        async with http_client(timeout=15) as http:
            ok = await http.get(hub.base_url + "/me", headers={"Authorization": f"Bearer {issuer.token('rsa-1')}"})
            forged = [
                await http.get(hub.base_url + "/me", headers={"Authorization": f"Bearer {issuer.token('unpublished')}"})
                for _ in range(20)
            ]
    assert ok.status_code == 200
    assert {r.status_code for r in forged} == {401}
    assert _challenge(forged[0])["error_description"] == "token signed with an unknown key"
    assert issuer.fetches == 1


# ---------------------------------------------------------------- scopes and the admin API


async def test_insufficient_scope_gets_403_naming_only_the_needed_scope(issuer: Issuer) -> None:
    async with auth_hub(issuer) as hub, http_client(timeout=15) as http:
        no_call = await _post(hub.url, NO_CALL_KEY)
        team_admin = await http.get(hub.base_url + "/admin/servers", headers={"Authorization": f"Bearer {TEAM_A_KEY}"})
        admin = await http.get(hub.base_url + "/admin/servers", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        readyz_public = await http.get(hub.base_url + "/readyz")
        readyz_admin = await http.get(hub.base_url + "/readyz", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert no_call.status_code == 403
    assert _challenge(no_call)["error"] == "insufficient_scope"
    assert _challenge(no_call)["scope"] == "hub:call"
    assert team_admin.status_code == 403 and _challenge(team_admin)["scope"] == "hub:admin"
    assert admin.status_code == 200
    assert {s["server_id"] for s in admin.json()["servers"]} == {"alpha", "beta"}
    assert readyz_public.status_code == 200
    assert readyz_public.json() == {"status": "ready", "servers_by_state": {"ready": 2}}
    assert {s["server_id"] for s in readyz_admin.json()["servers"]} == {"alpha", "beta"}


# ---------------------------------------------------------------- policy: lists equal calls


async def _listed(client: Client) -> dict[str, set[str]]:
    return {
        "tools": {t.name for t in (await client.list_tools()).tools},
        "resources": {str(r.uri) for r in (await client.list_resources()).resources},
        "templates": {t.uri_template for t in (await client.list_resource_templates()).resource_templates},
        "prompts": {p.name for p in (await client.list_prompts()).prompts},
    }


async def _callable(client: Client, names: set[str]) -> set[str]:
    reachable = set()
    for name in sorted(names):
        try:
            await client.call_tool(name, {"text": "x"} if name.endswith("__echo") else {})
        except MCPError as exc:
            assert exc.code == INVALID_PARAMS and exc.message.startswith(f"unknown tool: {name!r}"), exc.message
        else:
            reachable.add(name)
    return reachable


SAFE_TOOLS = {"alpha__echo", "alpha__whoami", "alpha__pid", "beta__echo", "beta__whoami", "beta__pid", "beta__fail"}
"""Every tool of the fixture servers that is safe to call repeatedly (no crash, no sleeping)."""


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_each_principal_sees_and_can_call_exactly_its_allowed_routes(issuer: Issuer, mode: str) -> None:
    jwt_team_b = issuer.token("ec-1", sub="carol", scope="hub:call team-b")
    async with auth_hub(issuer) as hub:
        views = {}
        for who, token in [
            ("team-a", TEAM_A_KEY),
            ("jwt-team-b", jwt_team_b),
            ("ci-bot", BOT_KEY),
            ("admin", ADMIN_KEY),
        ]:
            async with client_for(hub.url, token, mode) as client:
                listed = await _listed(client)
                called = await _callable(client, SAFE_TOOLS)
                views[who] = (listed, called)

    team_a, _ = views["team-a"]
    assert {n for n in team_a["tools"]} == {n for n in team_a["tools"] if n.startswith("alpha__")}
    assert "alpha__crash" not in team_a["tools"] and "alpha__echo" in team_a["tools"]
    assert team_a["resources"] == {"alpha+fixture://info"}
    assert team_a["templates"] == {"alpha+fixture://items/{id}"}
    assert team_a["prompts"] == {"alpha__greet"}
    team_b, _ = views["jwt-team-b"]
    assert team_b["tools"] and all(n.startswith("beta__") for n in team_b["tools"])
    bot, _ = views["ci-bot"]
    assert "alpha__fail" not in bot["tools"] and "beta__fail" not in bot["tools"] and "alpha__crash" in bot["tools"]
    for who, (listed, called) in views.items():
        assert called == listed["tools"] & SAFE_TOOLS, who


async def test_a_denied_route_is_refused_like_an_unknown_one_whatever_name_is_tried(issuer: Issuer) -> None:
    async with auth_hub(issuer) as hub:
        async with client_for(hub.url, TEAM_A_KEY) as client:
            refused = {}
            for name in ["beta__echo", "BETA__echo", "Beta__Echo", "echo", "beta__ECHO", "beta__no_such_tool"]:
                with pytest.raises(MCPError) as caught:
                    await client.call_tool(name, {"text": "x"})
                refused[name] = (caught.value.code, caught.value.message)
            with pytest.raises(MCPError) as read:
                await client.read_resource("beta+fixture://info")
            with pytest.raises(MCPError) as prompt:
                await client.get_prompt("beta__greet", {"name": "x"})
            allowed = await client.call_tool("alpha__echo", {"text": "ok"})
        async with client_for(hub.server_url("beta"), TEAM_A_KEY) as client:
            per_server_tools = (await client.list_tools()).tools
            with pytest.raises(MCPError) as original:
                await client.call_tool("echo", {"text": "x"})
        async with client_for(hub.server_url("alpha"), TEAM_A_KEY) as client:
            alpha_tools = {t.name for t in (await client.list_tools()).tools}
            with pytest.raises(MCPError) as denied_original:
                await client.call_tool("crash", {})

    for name, (code, message) in refused.items():
        # "did you mean" names only routes team-a may use (tests/test_suggestions.py)
        assert code == INVALID_PARAMS and message.startswith(f"unknown tool: {name!r}"), message
        assert "beta__" not in message.partition("did you mean")[2], message
    assert read.value.code == INVALID_PARAMS and prompt.value.code == INVALID_PARAMS
    assert not allowed.is_error
    assert per_server_tools == []
    assert (original.value.code, original.value.message) == (INVALID_PARAMS, "unknown tool: 'echo'")
    assert "echo" in alpha_tools and "crash" not in alpha_tools
    assert denied_original.value.message == "unknown tool: 'crash'"


async def test_refused_calls_are_audit_logged_with_principal_route_and_rule(
    issuer: Issuer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hub.audit")
    async with auth_hub(issuer) as hub, client_for(hub.url, TEAM_A_KEY) as client:
        with pytest.raises(MCPError):
            await client.call_tool("alpha__crash", {})
    audits = [r.getMessage() for r in caplog.records if r.name == "hub.audit"]
    assert any(
        "principal=team-a" in line and "route=alpha__crash" in line and "rule=policies[0]" in line for line in audits
    ), audits
    assert TEAM_A_KEY not in caplog.text


@pytest.mark.slow
async def test_generated_policies_filter_lists_exactly_as_they_guard_calls(issuer: Issuer) -> None:
    """Property test: for random policies over the fixture's tool names, each principal's
    tools/list is exactly the set of tools it can call."""
    rng = random.Random(20261121)
    names = sorted(SAFE_TOOLS)
    for _ in range(3):
        policies = []
        for scope in ("team-a", "team-b"):
            allow = rng.sample(["alpha__*", "beta__*", "*__echo", "*__pid", "*", "*whoami"], k=rng.randint(1, 3))
            deny = rng.sample([*names, "*__fail", "beta__*"], k=rng.randint(0, 2))
            policies.append({"scope": scope, "allow": allow, "deny": deny})
        async with auth_hub(issuer, policies=policies) as hub:
            for token in (TEAM_A_KEY, TEAM_B_KEY, BOT_KEY):
                async with client_for(hub.url, token) as client:
                    listed = (await _listed(client))["tools"]
                    called = await _callable(client, SAFE_TOOLS)
                assert called == listed & SAFE_TOOLS, (policies, token)


async def test_without_policies_every_principal_with_hub_call_uses_every_route(issuer: Issuer) -> None:
    async with auth_hub(issuer, policies=None) as hub, client_for(hub.url, TEAM_A_KEY) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        result = await client.call_tool("beta__whoami", {})
    assert {"alpha__echo", "beta__echo", "alpha__crash"} <= tools
    block = result.content[0]
    assert isinstance(block, types.TextContent) and block.text == "beta"


# ---------------------------------------------------------------- sessions bound to principals


async def test_a_session_opened_by_one_principal_is_404_for_another(issuer: Issuer) -> None:
    async with auth_hub(issuer) as hub:
        opened = await _post(hub.url, TEAM_A_KEY)
        session_id = opened.headers["mcp-session-id"]
        ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
        session_headers = {"mcp-session-id": session_id, "mcp-protocol-version": "2025-11-25"}
        stolen = await _post(hub.url, TEAM_B_KEY, body=ping, **session_headers)
        same_scopes_other_principal = await _post(
            hub.url, issuer.token("rsa-1", sub="team-a"), body=ping, **session_headers
        )
        owner = await _post(hub.url, TEAM_A_KEY, body=ping, **session_headers)
    assert opened.status_code == 200
    assert all(0x21 <= ord(c) <= 0x7E for c in session_id) and len(session_id) >= 32
    assert stolen.status_code == 404
    assert same_scopes_other_principal.status_code == 404  # a JWT principal named like the API key is another principal
    assert owner.status_code == 200


# ---------------------------------------------------------------- rate limits


async def test_a_principal_over_its_request_rate_gets_429_with_retry_after_and_others_are_unaffected(
    issuer: Issuer,
) -> None:
    limits = {"per_principal": {"requests_per_second": 0.5, "burst": 3}}
    async with auth_hub(issuer, rate_limits=limits) as hub:
        a = [await _post(hub.url, TEAM_A_KEY) for _ in range(4)]
        b = await _post(hub.url, TEAM_B_KEY)
    assert [r.status_code for r in a] == [200, 200, 200, 429]
    # 3 per 6 s moving window (hub.endpoint.rate_limits.window_for): the burst comes back when it leaves the window.
    assert 5 <= int(a[3].headers["retry-after"]) <= 6
    assert a[3].json()["error"] == "rate_limited"
    assert b.status_code == 200


async def test_a_per_route_limit_answers_a_json_rpc_error_with_the_retry_time(issuer: Issuer) -> None:
    limits = {"routes": {"alpha__echo": {"requests_per_second": 0.1, "burst": 2}}}
    async with auth_hub(issuer, rate_limits=limits) as hub, client_for(hub.url, TEAM_A_KEY) as client:
        first = await client.call_tool("alpha__echo", {"text": "1"})
        second = await client.call_tool("alpha__echo", {"text": "2"})
        with pytest.raises(MCPError) as third:
            await client.call_tool("alpha__echo", {"text": "3"})
        other_route = await client.call_tool("alpha__whoami", {})
    assert not first.is_error and not second.is_error and not other_route.is_error
    assert third.value.code == RATE_LIMITED
    # 2 per 20 s moving window: the retry time is when the first call leaves the window.
    assert isinstance(third.value.error.data, dict) and 10 < third.value.error.data["retry_after_seconds"] <= 20


# ---------------------------------------------------------------- config rules


def test_auth_none_beyond_loopback_is_refused_at_load() -> None:
    with pytest.raises(ConfigError, match="auth: none is only allowed on loopback"):
        parse_config({"listen": {"host": "0.0.0.0"}})
    with pytest.raises(ConfigError, match="auth: none is only allowed on loopback"):
        parse_config({"listen": {"host": "10.1.2.3"}, "auth": "none"})
    assert parse_config({"listen": {"host": "127.0.0.1"}, "auth": "none"}).auth == "none"


@pytest.mark.parametrize(
    ("jwt_config", "message"),
    [
        ({"algorithms": ["none"]}, "algorithm 'none' is never accepted"),
        ({"algorithms": ["RS256", "HS256"]}, "cannot be used with public keys"),
        ({"jwks_url": "http://idp.example.test/jwks"}, "must use https"),
        ({"public_key_file": "/x.pem"}, "exactly one of jwks_url, public_key_file or hs256_secret_env"),
    ],
)
def test_unsafe_jwt_settings_are_refused_at_load(jwt_config: dict[str, Any], message: str) -> None:
    base = {"issuer": ISSUER, "audience": AUDIENCE, "jwks_url": "https://idp.example.test/jwks"}
    with pytest.raises(ConfigError, match=message):
        parse_config({"auth": {"jwt": {**base, **jwt_config}}})


def test_api_keys_from_the_environment_are_kept_only_as_digests() -> None:
    config = parse_config(
        {"auth": {"api_keys": [{"id": "ops", "key_env": "OPS_KEY", "scopes": ["hub:admin"]}]}},
        env={"OPS_KEY": "ops-secret-0123456789"},
    )
    dumped = json.dumps(config.model_dump(mode="json"))
    assert "ops-secret-0123456789" not in dumped and "OPS_KEY" in dumped
    with pytest.raises(ConfigError, match="OPS_KEY is not set"):
        parse_config({"auth": {"api_keys": [{"id": "ops", "key_env": "OPS_KEY"}]}}, env={})


# ---------------------------------------------------------------- the example config


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """An empty git repository for mcp-server-git."""
    path = tmp_path / "repo"
    path.mkdir()
    subprocess.run(["git", "init", "-q", str(path)], check=True, timeout=30)
    return path


@pytest.mark.e2e
async def test_the_example_config_gives_each_team_exactly_its_routes_and_the_admin_the_admin_api(
    repository: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """config/example.yaml's auth, policies and rate limits over the demo fleet's real servers."""
    caplog.set_level(logging.DEBUG)
    env = {
        "TEAM_A_KEY": TEAM_A_KEY,
        "TEAM_B_KEY": TEAM_B_KEY,
        "OPS_KEY": ADMIN_KEY,
        "EVERYTHING_TOKEN": "everything-token-0123456789",
        "BILLING_TOKEN": "billing-token-0123456789",
        "CRM_SECRET": "crm-secret-0123456789",
        "PATH": os.environ["PATH"],
    }
    example = load_config(ROOT / "config" / "example.yaml", env=env)
    demo = load_config(DEMO_FLEET_PATH, env={"MCPHUB_GIT_REPOSITORY": str(repository)})
    config = example.model_copy(update={"servers": demo.servers})
    async with running_hub({}, config=config) as hub, http_client(timeout=15) as http:
        anonymous = await _post(hub.url)
        views = {}
        for who, token in [("team-a", TEAM_A_KEY), ("team-b", TEAM_B_KEY), ("ops", ADMIN_KEY)]:
            async with client_for(hub.url, token) as client:
                views[who] = ((await _listed(client))["tools"], client)
                if who == "team-a":
                    now = await client.call_tool("time__get_current_time", {"timezone": "UTC"})
                    with pytest.raises(MCPError) as denied:
                        await client.call_tool("git__git_status", {"repo_path": str(repository)})
        admin = await http.get(hub.base_url + "/admin/routes", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        team_admin = await http.get(hub.base_url + "/admin/routes", headers={"Authorization": f"Bearer {TEAM_A_KEY}"})

    assert anonymous.status_code == 401 and "resource_metadata" in _challenge(anonymous)
    team_a, team_b, ops = (views[who][0] for who in ("team-a", "team-b", "ops"))
    assert team_a == {"time__get_current_time", "time__convert_time", "git__git_log"}
    assert team_b and all(name.startswith("git__") and not name.startswith("git__git_diff") for name in team_b)
    assert team_a | team_b <= ops
    assert not now.is_error
    assert denied.value.code == INVALID_PARAMS
    assert admin.status_code == 200 and team_admin.status_code == 403
    for secret in (*env.values(), TEAM_A_KEY):
        if secret != env["PATH"]:
            assert secret not in caplog.text


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        ({"api_keys": [{"id": "x"}]}, "<test>: auth.api_keys.0: give exactly one of key_sha256 or key_env"),
        ({"api_keys": [{"id": "x", "key_sha256": "abc"}]}, "<test>: auth.api_keys.0.key_sha256: "),
        ({}, "<test>: auth: configure api_keys and/or jwt, or write `auth: none`"),
        ("nothing", "<test>: auth: Input should be"),
    ],
)
def test_a_bad_auth_section_is_one_clear_error_with_its_key_path(auth: Any, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"auth": auth}, file="<test>")
    assert str(caught.value).startswith(message), str(caught.value)
    assert "function-after" not in str(caught.value) and "literal[" not in str(caught.value)
