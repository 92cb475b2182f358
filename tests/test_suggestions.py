""" "Did you mean ...?" for unknown tool and prompt names: the pure ranking (`close_names`), and
the endpoint's -32602 answer, whose suggestions come only from the names the calling principal
may see, so a name hidden by policy is answered exactly like an unknown one."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp_types import INVALID_PARAMS

from hub.suggestions import MAX_SUGGESTIONS, close_names, suggest
from tests.clients import http_client, mcp_client
from tests.conftest import RunningHub, fixture_entry, running_hub

pytestmark = pytest.mark.anyio

NAMES = [
    "everything__echo",
    "everything__add",
    "everything__touch",
    "everything__get-resource-reference",
    "fx__echo",
    "other__echo",
    "time__get_current_time",
]

TEAM_KEY = "suggest-team-key-0123456789abcdef"
ADMIN_KEY = "suggest-admin-key-0123456789abcdef"


# ---------------------------------------------------------------- close_names (pure)


@pytest.mark.parametrize(
    ("asked", "expected"),
    [
        ("everything__ecoh", ["everything__echo"]),  # a typo after the prefix
        ("everythng__echo", ["everything__echo"]),  # a typo in the prefix
        ("EVERYTHING__ECHO", ["everything__echo"]),  # another case
        ("echo", ["everything__echo", "fx__echo", "other__echo"]),  # the original name, unprefixed
        ("get_current_time", ["time__get_current_time"]),
        ("zzz", []),
        ("", []),
    ],
)
def test_close_names_ranks_the_visible_names_spelled_most_like_the_asked_one(asked: str, expected: list[str]) -> None:
    assert close_names(asked, NAMES) == expected


def test_close_names_gives_at_most_three_best_first_ties_by_name_and_never_the_name_itself() -> None:
    names = [f"srv{i}__echo" for i in range(9, 0, -1)]

    assert close_names("echo", names) == ["srv1__echo", "srv2__echo", "srv3__echo"]
    assert close_names("srv1__echo", names, limit=10) == [f"srv{i}__echo" for i in range(2, 10)]
    assert "srv1__echo" not in close_names("srv1__echo", names)
    assert len(close_names("srv__echo", names)) == MAX_SUGGESTIONS


def test_close_names_ignores_an_asked_name_longer_than_any_tool_name() -> None:
    assert close_names("a" * 201, ["a" * 64]) == []


async def test_suggest_over_a_big_catalog_answers_the_same_as_close_names() -> None:
    names = [f"server{i % 50}__tool_number_{i}" for i in range(3000)]

    with anyio.fail_after(30):
        suggested = await suggest("server7__tool_numbr_57", names)

    assert suggested == close_names("server7__tool_numbr_57", names)
    assert suggested[0] == "server7__tool_number_57"


# ---------------------------------------------------------------- the endpoint's -32602


def _sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@asynccontextmanager
async def _policy_hub() -> AsyncIterator[RunningHub]:
    """Servers alpha and beta; `team` may use alpha's tools and prompts except alpha__crash."""
    settings = {
        "auth": {
            "api_keys": [
                {"id": "team", "key_sha256": _sha(TEAM_KEY), "scopes": ["hub:call"]},
                {"id": "ops", "key_sha256": _sha(ADMIN_KEY), "scopes": ["hub:admin"]},
            ]
        },
        "policies": [
            {"principal": "team", "allow": ["alpha__*"], "deny": ["alpha__crash"]},
            {"scope": "hub:admin", "allow": ["*"]},
        ],
    }
    async with running_hub({"alpha": fixture_entry("alpha"), "beta": fixture_entry("beta")}, **settings) as hub:
        yield hub


@asynccontextmanager
async def _client(url: str, token: str) -> AsyncIterator[Client]:
    async with http_client(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        async with mcp_client(streamable_http_client(url, http_client=http)) as client:
            yield client


async def _refusal(client: Client, name: str, *, prompt: bool = False) -> MCPError:
    with pytest.raises(MCPError) as caught, anyio.fail_after(15):
        if prompt:
            await client.get_prompt(name, {"name": "x"})
        else:
            await client.call_tool(name, {})
    return caught.value


async def test_an_unknown_tool_is_answered_with_the_closest_names_in_message_and_data() -> None:
    async with _policy_hub() as hub, _client(hub.url, ADMIN_KEY) as client:
        typo = await _refusal(client, "alpha__ecoh")
        unprefixed = await _refusal(client, "echo")
        prompt = await _refusal(client, "alpha__great", prompt=True)
        hopeless = await _refusal(client, "zzz")

    assert typo.code == INVALID_PARAMS
    assert typo.data == {"kind": "tool", "name": "alpha__ecoh", "suggestions": ["alpha__echo"]}
    assert typo.message == "unknown tool: 'alpha__ecoh'; did you mean 'alpha__echo'?"
    assert unprefixed.data["suggestions"] == ["alpha__echo", "beta__echo"]
    assert unprefixed.message == "unknown tool: 'echo'; did you mean 'alpha__echo' or 'beta__echo'?"
    assert prompt.code == INVALID_PARAMS and prompt.data["suggestions"] == ["alpha__greet"]
    assert hopeless.code == INVALID_PARAMS
    assert (hopeless.message, hopeless.data["suggestions"]) == ("unknown tool: 'zzz'", [])


async def test_suggestions_come_only_from_what_the_principal_may_see_so_hidden_names_stay_unknown() -> None:
    asked = ["beta__echo", "beta__ecoh", "alpha__crash", "alpha__crsh", "echo", "crash", "beta__greet"]
    async with _policy_hub() as hub:
        async with _client(hub.url, TEAM_KEY) as client:
            visible = sorted(tool.name for tool in (await client.list_tools()).tools)
            visible_prompts = sorted(prompt.name for prompt in (await client.list_prompts()).prompts)
            answers = {name: await _refusal(client, name) for name in asked}
            prompt = await _refusal(client, "beta__greet", prompt=True)
        async with _client(hub.server_url("alpha"), TEAM_KEY) as client:
            original = await _refusal(client, "crash")  # hidden on the per-server face too

    assert "alpha__crash" not in visible and not any(name.startswith("beta__") for name in visible)
    for name, error in answers.items():
        # What the team may see decides the answer; whether the name exists elsewhere does not.
        expected = close_names(name, visible)
        assert error.code == INVALID_PARAMS, name
        assert error.data == {"kind": "tool", "name": name, "suggestions": expected}, name
        assert error.message.startswith(f"unknown tool: {name!r}"), name
        assert set(expected) <= set(visible) and "alpha__crash" not in expected
    assert answers["beta__echo"].data["suggestions"] == ["alpha__echo"]
    assert answers["echo"].data["suggestions"] == ["alpha__echo"]
    assert prompt.data["suggestions"] == close_names("beta__greet", visible_prompts) == ["alpha__greet"]
    assert original.code == INVALID_PARAMS and "crash" not in original.data["suggestions"]
