"""Prepared list pages (`hub.prepared_lists`): the pages a face serves are cut and serialized
once per catalog change and policy view, and are exactly the pages `hub.pages.page_of` cuts
from what the caller may see (same items, same cursors); a new catalog list replaces them; two
policy views never share a page; an invalid cursor is still refused."""

from __future__ import annotations

from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import MCPError
from mcp_types import INVALID_PARAMS

from hub.catalog import Catalog, Kind, listing_key
from hub.config import PolicyRule, RateLimitsConfig, parse_config
from hub.endpoint.rate_limits import RateLimiter
from hub.pages import PAGE_MAX_BYTES, InvalidCursor, encode_cursor, page_of
from hub.policy import Access, Policy
from hub.prepared_lists import WARM_VERSIONS, PreparedLists, _wired, warm_lists
from hub.principals import Principal
from hub.servers import ServerSnapshot
from tests.conftest import fixture_entry, running_hub
from tests.test_pagination import ERAS, client_for, flat, walk

VERSIONS = ["2025-11-25", "2026-07-28"]
"""A handshake-era and the modern-era protocol version (each page is shaped per version)."""
RULES = [
    {"scope": "team", "allow": ["alpha__*"], "deny": ["alpha__tool_1*"]},
    {"scope": "ops", "servers": ["beta"]},
]
TEAM = Principal("team-1", frozenset({"hub:call", "team"}), "api_key")
TEAMMATE = Principal("team-2", frozenset({"hub:call", "team"}), "jwt")
OPS = Principal("ops-1", frozenset({"hub:call", "ops"}), "api_key")
STRANGER = Principal("stranger", frozenset({"hub:call"}), "api_key")
LOCAL = Principal("local", frozenset({"hub:call"}), "local")


def _tools(servers: dict[str, int], description: str = "a tool") -> tuple[types.Tool, ...]:
    """`count` tools per server, exposed as `<server>__tool_<i>`, in listing-key order."""
    tools = [
        types.Tool(name=f"{server}__tool_{i}", description=description, input_schema={"type": "object"})
        for server, count in servers.items()
        for i in range(count)
    ]
    return tuple(sorted(tools, key=listing_key))


def _route_key(kind: Kind, name: str) -> tuple[str, str] | None:
    """The aggregated face's route key of an exposed tool name (its prefix is the server)."""
    server, separator, _ = name.partition("__")
    return (server, name) if separator else None


def _access(rules: list[dict[str, Any]] | None = RULES) -> Access:
    policy = Policy(None if rules is None else [PolicyRule.model_validate(rule) for rule in rules])
    return Access(policy, RateLimiter(RateLimitsConfig()))


def _prepared(access: Access, page_size: int = 7, scope: str | None = None) -> PreparedLists:
    return PreparedLists(access, _route_key, page_size, scope)


def _params(cursor: str | None) -> types.PaginatedRequestParams | None:
    return None if cursor is None else types.PaginatedRequestParams(cursor=cursor)


def _prepared_walk(
    lists: PreparedLists, principal: Principal, source: tuple[types.Tool, ...], version: str
) -> tuple[list[list[dict[str, Any]]], list[str]]:
    pages: list[list[dict[str, Any]]] = []
    cursors: list[str] = []
    cursor: str | None = None
    for _ in range(len(source) + 1):
        page = lists.page(version, principal, "tools", source, _params(cursor))
        pages.append(page.items)
        if page.next_cursor is None:
            return pages, cursors
        cursors.append(cursor := page.next_cursor)
    raise AssertionError("the prepared pages did not end")


def _page_of_walk(
    access: Access, principal: Principal, source: tuple[types.Tool, ...], page_size: int
) -> tuple[list[list[types.Tool]], list[str]]:
    """The walk the unprepared handlers served: `page_of` with the caller's policy as `admit`."""

    def admit(item: types.Tool) -> bool:
        return access.visible(principal, _route_key("tools", item.name))

    pages: list[list[types.Tool]] = []
    cursors: list[str] = []
    cursor: str | None = None
    for _ in range(len(source) + 1):
        page = page_of(source, "tools", cursor, page_size, admit=admit if access.restricts(principal) else None)
        pages.append(page.items)
        if page.next_cursor is None:
            return pages, cursors
        cursors.append(cursor := page.next_cursor)
    raise AssertionError("page_of did not end")


def _wire(tool: types.Tool) -> dict[str, Any]:
    return tool.model_dump(by_alias=True, mode="json", exclude_none=True)


# ---------------------------------------------------------------- pure


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("principal", [TEAM, OPS, STRANGER, LOCAL], ids=lambda p: p.id)
def test_prepared_pages_hold_the_items_and_cursors_page_of_cuts_for_the_caller(
    principal: Principal, version: str
) -> None:
    access = _access()
    source = _tools({"alpha": 40, "beta": 23, "gamma": 5})
    lists = _prepared(access)
    for _ in range(2):  # the second walk is served from the prepared pages
        pages, cursors = _prepared_walk(lists, principal, source, version)
        expected_pages, expected_cursors = _page_of_walk(access, principal, source, 7)
        assert cursors == expected_cursors
        assert pages == [[_wire(tool) for tool in page] for page in expected_pages]
    if principal is STRANGER:  # no rule applies to it: an empty first page, no cursor
        assert pages == [[]] and cursors == []
    if principal is LOCAL:  # nothing restricts it: the whole list
        assert len(flat([[item["name"] for item in page] for page in pages])) == len(source)


def test_a_page_of_large_definitions_ends_at_the_byte_cap_as_page_of_cuts_it() -> None:
    access = _access(None)
    principal = Principal("anyone", frozenset({"hub:call"}), "api_key")
    source = _tools({"alpha": 12}, description="x" * (PAGE_MAX_BYTES // 5))
    pages, cursors = _prepared_walk(_prepared(access, page_size=100), principal, source, VERSIONS[0])
    expected_pages, expected_cursors = _page_of_walk(access, principal, source, 100)
    assert [len(page) for page in pages] == [len(page) for page in expected_pages] and len(pages) > 1
    assert cursors == expected_cursors


def test_two_policy_views_never_share_a_page_and_one_views_principals_do() -> None:
    lists = _prepared(_access())
    source = _tools({"alpha": 30, "beta": 30})
    team = lists.page(VERSIONS[1], TEAM, "tools", source, None)
    teammate = lists.page(VERSIONS[1], TEAMMATE, "tools", source, None)
    ops = lists.page(VERSIONS[1], OPS, "tools", source, None)
    team_names = {item["name"] for item in team.items}
    ops_names = {item["name"] for item in ops.items}
    assert team_names and all(n.startswith("alpha__") and not n.startswith("alpha__tool_1") for n in team_names)
    assert ops_names and all(n.startswith("beta__") for n in ops_names)
    # The same rule decides for both team members: one prepared page, one cursor.
    assert teammate.items is team.items and teammate.next_cursor == team.next_cursor
    # A cursor of one view only moves the start within the other's own list.
    assert team.next_cursor is not None
    moved = lists.page(VERSIONS[1], OPS, "tools", source, _params(team.next_cursor))
    assert {item["name"] for item in moved.items} <= {t.name for t in source if t.name.startswith("beta__")}


def test_the_same_rule_gives_principals_the_same_view_and_decisions() -> None:
    policy = _access().policy
    assert policy.view_of(TEAM) == policy.view_of(TEAMMATE) == 0
    assert policy.view_of(OPS) == 1
    assert policy.view_of(STRANGER) == policy.view_of(Principal("x", frozenset({"team"}), "api_key")) == "none"
    assert policy.view_of(LOCAL) == Policy(None).view_of(OPS) == "all"
    for tool in _tools({"alpha": 15, "beta": 3}):
        route = ("alpha" if tool.name.startswith("alpha") else "beta", tool.name)
        assert policy.allows(TEAM, *route) == policy.allows(TEAMMATE, *route)


def test_a_new_catalog_list_replaces_every_prepared_view_of_it() -> None:
    lists = _prepared(_access())
    before = _tools({"alpha": 9, "beta": 9})
    first = lists.page(VERSIONS[0], TEAM, "tools", before, None)
    assert lists.page(VERSIONS[0], TEAM, "tools", before, None).items is first.items
    added = types.Tool(name="alpha__a_new_one", input_schema={"type": "object"})
    after = tuple(sorted([*_tools({"alpha": 9, "beta": 9, "aardvark": 2}), added], key=listing_key))
    fresh = lists.page(VERSIONS[0], TEAM, "tools", after, None)
    assert fresh.items[0]["name"] == "alpha__a_new_one"
    assert first.items[0]["name"] != "alpha__a_new_one"


def test_a_cursor_between_page_boundaries_gets_the_page_page_of_cuts_from_there() -> None:
    access = _access(None)
    source = _tools({"alpha": 30})
    lists = _prepared(access)
    lists.page(VERSIONS[0], OPS, "tools", source, None)  # prepares the pages from the start
    between = encode_cursor("tools", "alpha__tool_12")  # no page of the walk ends there
    page = lists.page(VERSIONS[0], OPS, "tools", source, _params(between))
    expected = page_of(source, "tools", between, 7)
    assert [item["name"] for item in page.items] == [tool.name for tool in expected.items]
    assert page.next_cursor == expected.next_cursor


@pytest.mark.parametrize(
    "cursor", ["garbage!", encode_cursor("prompts", "alpha__tool_1"), encode_cursor("tools", "a", "alpha")]
)
def test_a_cursor_the_hub_did_not_make_for_the_list_and_face_is_refused(cursor: str) -> None:
    lists = _prepared(_access())
    with pytest.raises(InvalidCursor):
        lists.page(VERSIONS[1], TEAM, "tools", _tools({"alpha": 3}), _params(cursor))


# ---------------------------------------------------------------- through the hub


@pytest.mark.anyio
async def test_a_change_of_one_server_keeps_the_other_servers_listed_definitions_and_makes_a_new_list() -> None:
    config = parse_config({"servers": {"alpha": {"command": "x"}, "beta": {"command": "x"}}}, file="<test>")
    catalog = Catalog(config)
    plain = {"type": "object"}
    await catalog.set_snapshot("alpha", ServerSnapshot(tools=(types.Tool(name="a", input_schema=plain),)))
    await catalog.set_snapshot("beta", ServerSnapshot(tools=(types.Tool(name="b", input_schema=plain),)))
    before = catalog.tools
    await catalog.set_snapshot("beta", ServerSnapshot(tools=(types.Tool(name="c", input_schema=plain),)))
    after = catalog.tools
    assert [tool.name for tool in before] == ["alpha__a", "beta__b"]
    assert [tool.name for tool in after] == ["alpha__a", "beta__c"]
    assert after is not before  # the list a prepared view was made from is gone: the view is stale
    assert after[0] is before[0]  # alpha's definition kept its identity (and its cached wire form)
    await catalog.reconfigure({"alpha": config.servers["alpha"].model_copy(update={"prefix": "x"})})
    assert [tool.name for tool in catalog.tools] == ["x__a"] and catalog.tools[0] is not before[0]


@pytest.mark.anyio
async def test_a_catalog_change_serializes_only_its_new_definitions_before_any_list_asks() -> None:
    config = parse_config({"servers": {"alpha": {"command": "x"}, "beta": {"command": "x"}}}, file="<test>")
    catalog = Catalog(config)
    catalog.add_listener(warm_lists(catalog))
    plain = {"type": "object"}
    await catalog.set_snapshot("alpha", ServerSnapshot(tools=(types.Tool(name="a", input_schema=plain),)))
    warmed = {version: _wired("tools", version, catalog.tools) for version in WARM_VERSIONS}
    await catalog.set_snapshot("beta", ServerSnapshot(tools=(types.Tool(name="b", input_schema=plain),)))
    for version in WARM_VERSIONS:  # alpha's wire form was kept; beta's was made by the change
        kept, made = _wired._wire[id(catalog.tools[0])][1][version], _wired._wire[id(catalog.tools[1])][1][version]
        assert kept is warmed[version][0] and made["name"] == "beta__b"
    lists = _prepared(_access(None))
    page = lists.page(WARM_VERSIONS[1], OPS, "tools", catalog.tools, None)
    assert page.items[0] is warmed[WARM_VERSIONS[1]][0]


@pytest.mark.anyio
async def test_a_change_told_once_per_merged_server_walks_the_new_list_once() -> None:
    config = parse_config({"servers": {"alpha": {"command": "x"}, "beta": {"command": "x"}}}, file="<test>")
    catalog = Catalog(config)
    warm = warm_lists(catalog)
    plain = {"type": "object"}
    await catalog.set_snapshot("alpha", ServerSnapshot(tools=(types.Tool(name="a", input_schema=plain),)))
    await warm("alpha", frozenset({"tools"}))
    first = catalog.tools[0]
    assert id(first) in _wired._wire
    del _wired._wire[id(first)]  # forgotten: a second walk of the same list would make it again
    await warm("beta", frozenset({"tools"}))  # the same rebuild told for another merged server
    assert id(first) not in _wired._wire
    await catalog.set_snapshot("beta", ServerSnapshot(tools=(types.Tool(name="b", input_schema=plain),)))
    await warm("beta", frozenset({"tools"}))  # a new list: only what the last one did not hold is walked
    assert catalog.tools[0] is first  # alpha did not change: its definition is kept
    assert id(catalog.tools[1]) in _wired._wire
    assert id(first) not in _wired._wire  # not walked again


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ERAS)
async def test_a_servers_list_changed_and_a_reload_reach_the_next_walk_of_prepared_pages(mode: str) -> None:
    servers = {"fx": fixture_entry("fx", "--extra-tools", "6")}
    async with running_hub(servers, list_page_size=4) as hub:
        catalog = hub.hub.catalog

        async def fresh_walk() -> list[str]:  # a new client each time: the modern era's client caches lists
            async with client_for(hub.url, mode) as client:
                return flat((await walk(client, "tools"))[0])

        with anyio.fail_after(60):
            first = await fresh_walk()
            assert first == [tool.name for tool in catalog.tools]
            async with client_for(hub.url, mode) as client:
                await client.call_tool("fx__add_tool", {"name": "aaa"})  # the server sends list_changed
                with pytest.raises(MCPError) as refused:
                    await client.list_tools(cursor="garbage!")
            await catalog.changes.wait_for(lambda: "fx__aaa" in {tool.name for tool in catalog.tools})
            second = await fresh_walk()
            config = hub.hub.config
            reloaded = parse_config(
                {"servers": {**servers, "new": fixture_entry("new")}, "list_page_size": 4,
                 "state_dir": config.state_dir},
                file="<test>",
            )  # fmt: skip
            assert (await hub.hub.reload(reloaded)).status == "applied"
            await catalog.changes.wait_for(lambda: "new__echo" in {tool.name for tool in catalog.tools})
            third = await fresh_walk()
            listed = [tool.name for tool in catalog.tools]
    assert "fx__aaa" not in first and second == sorted([*first, "fx__aaa"])
    assert third == listed and "new__echo" in listed
    assert refused.value.code == INVALID_PARAMS and refused.value.error.data == {"reason": "invalid_cursor"}
