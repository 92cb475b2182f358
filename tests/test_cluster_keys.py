"""The key replicas share (`cluster.secret_env`, hub.cluster): read and checked at load, rotated
as a ring, kept apart per purpose; a modern-era multi-round call sealed by one hub continues on
another hub holding the same key, and is refused by a hub holding another."""

from __future__ import annotations

import secrets
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import MCPError
from mcp.server.request_state import InvalidRequestState
from mcp_types import INVALID_PARAMS

from hub.cluster.keys import ClusterKeys
from hub.config import parse_config
from hub.errors import ConfigError
from tests.clients import mcp_client
from tests.conftest import RunningHub, fixture_entry, running_hub

KEY = secrets.token_hex(32)
OTHER_KEY = secrets.token_hex(32)


def test_the_cluster_key_is_read_from_its_variable_and_must_hold_32_bytes() -> None:
    config = parse_config({"cluster": {"secret_env": "K"}}, env={"K": KEY})
    assert config.cluster is not None and config.cluster.keys == (KEY.encode(),)
    for env, reason in (({}, "K is not set"), ({"K": "x" * 31}, "holds 31 bytes")):
        with pytest.raises(ConfigError) as refused:
            parse_config({"cluster": {"secret_env": "K"}}, env=env)
        assert reason in str(refused.value) and "cluster" in str(refused.value)
        assert "x" * 31 not in str(refused.value)
    with pytest.raises(ConfigError, match="needs secret_env"):
        parse_config({"cluster": {"previous_secret_envs": ["OLD"]}}, env={"OLD": KEY})
    with pytest.raises(ConfigError, match="same key"):
        parse_config({"cluster": {"secret_env": "A", "previous_secret_envs": ["B"]}}, env={"A": KEY, "B": KEY})
    assert parse_config({}).cluster is None


def test_a_rotated_ring_opens_what_the_old_key_sealed_and_purposes_never_open_each_other() -> None:
    old, new = KEY.encode(), OTHER_KEY.encode()
    sealed = ClusterKeys([old]).codec("request-state").seal(b"state")
    assert ClusterKeys([new, old]).codec("request-state").unseal(sealed) == b"state"
    with pytest.raises(InvalidRequestState):
        ClusterKeys([new]).codec("request-state").unseal(sealed)
    with pytest.raises(InvalidRequestState):
        ClusterKeys([old]).codec("session-id").unseal(sealed)
    assert ClusterKeys.from_config(None).shared is False
    random_one, random_two = ClusterKeys(), ClusterKeys()
    with pytest.raises(InvalidRequestState):
        random_two.codec("request-state").unseal(random_one.codec("request-state").seal(b"x"))


def _hub(key_env: str) -> Any:
    return running_hub({"fx": fixture_entry("fx")}, cluster={"secret_env": key_env})


async def _first_round(hub: RunningHub) -> types.InputRequiredResult:
    async with mcp_client(hub.url, mode="auto") as client:
        first = await client.session.call_tool("fx__ask", {}, allow_input_required=True)
    assert isinstance(first, types.InputRequiredResult) and first.request_state
    return first


_SAMPLED = types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text="hi"), model="m")


@pytest.mark.anyio
async def test_a_multi_round_call_sealed_by_one_replica_continues_on_another_with_the_same_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HUB_TEST_KEY", KEY)
    monkeypatch.setenv("HUB_OTHER_KEY", OTHER_KEY)
    with anyio.fail_after(40):
        async with _hub("HUB_TEST_KEY") as a, _hub("HUB_TEST_KEY") as b, _hub("HUB_OTHER_KEY") as stranger:
            first = await _first_round(a)
            responses = {"sample": _SAMPLED}
            async with mcp_client(b.url, mode="auto") as client:
                second = await client.session.call_tool(
                    "fx__ask",
                    {},
                    allow_input_required=True,
                    input_responses=responses,  # type: ignore[arg-type]
                    request_state=first.request_state,
                )
            async with mcp_client(stranger.url, mode="auto") as client:
                with pytest.raises(MCPError) as refused:
                    await client.session.call_tool(
                        "fx__ask",
                        {},
                        allow_input_required=True,
                        input_responses=responses,  # type: ignore[arg-type]
                        request_state=first.request_state,
                    )
    # Hub B opened hub A's requestState: the server got its own state back and asked the next question.
    assert isinstance(second, types.InputRequiredResult) and set(second.input_requests) == {"elicit"}
    assert refused.value.code == INVALID_PARAMS and refused.value.message == "Invalid or expired requestState"
