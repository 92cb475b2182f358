"""The router's candidate order (`hub.router.Router._candidates`): the server's own members
first, rotated round-robin across requests, then each fallback in configured order, and a
fallback only when it offers the same original. Pure: a fake of the fleet's `members` interface
and real `ServerSnapshot`s, no connection, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import mcp_types as types
import pytest

from hub.config import parse_config
from hub.router import Router
from hub.servers import ServerSnapshot

pytestmark = pytest.mark.unit


def _tool(name: str) -> types.Tool:
    return types.Tool(name=name, input_schema={"type": "object"})


@dataclass
class _Member:
    """What `_candidates` reads of a server connection."""

    server_id: str
    snapshot: ServerSnapshot = field(default_factory=ServerSnapshot)


class _Fleet:
    """The fleet's `members(server_id)` interface over fixed members."""

    def __init__(self, members: dict[str, list[_Member]]) -> None:
        self._members = members

    def members(self, server_id: str) -> list[_Member]:
        return list(self._members.get(server_id, []))


ECHO = ServerSnapshot(tools=(_tool("echo"),))


def _router(members: dict[str, list[_Member]]) -> Router:
    return Router(cast(Any, _Fleet(members)))


def _order(router: Router, config: Any, *, advance: bool, original: str = "echo") -> list[str]:
    return [m.server_id for m in router._candidates("main", "tools", original, config, advance=advance)]


CONFIG = parse_config(
    {
        "servers": {
            "main": {"command": "main-server", "fallback": ["spare", "last"]},
            "spare": {"command": "spare-server"},
            "last": {"command": "last-server"},
        }
    },
    file="<test>",
).servers["main"]


def test_the_servers_own_members_come_first_and_then_each_fallback_in_configured_order() -> None:
    router = _router(
        {
            "main": [_Member("main/1", ECHO), _Member("main/2", ECHO)],
            "spare": [_Member("spare", ECHO)],
            "last": [_Member("last", ECHO)],
        }
    )
    assert _order(router, CONFIG, advance=False) == ["main/1", "main/2", "spare", "last"]


def test_members_rotate_round_robin_across_requests_only_when_advancing() -> None:
    router = _router({"main": [_Member("main/1"), _Member("main/2"), _Member("main/3")]})
    assert _order(router, CONFIG, advance=False) == ["main/1", "main/2", "main/3"]
    assert _order(router, CONFIG, advance=True) == ["main/1", "main/2", "main/3"]
    assert _order(router, CONFIG, advance=True) == ["main/2", "main/3", "main/1"]
    assert _order(router, CONFIG, advance=True) == ["main/3", "main/1", "main/2"]
    assert _order(router, CONFIG, advance=False) == ["main/1", "main/2", "main/3"]


def test_a_fallback_that_does_not_offer_the_same_original_is_skipped() -> None:
    router = _router(
        {
            "main": [_Member("main")],
            "spare": [_Member("spare", ServerSnapshot(tools=(_tool("other"),)))],
            "last": [_Member("last", ECHO)],
        }
    )
    assert _order(router, CONFIG, advance=False) == ["main", "last"]


def test_the_servers_own_members_are_candidates_even_when_their_listing_is_empty() -> None:
    # A server that is down keeps its names: its own members are tried (and fail fast, not
    # delivered), never replaced by another server that merely lists the same name.
    router = _router({"main": [_Member("main")], "spare": [], "last": []})
    assert _order(router, CONFIG, advance=False) == ["main"]
