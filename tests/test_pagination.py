"""List pagination: every list the hub serves (tools, resources, resource templates, prompts;
on `/mcp`, on `/servers/<id>/mcp` and over stdio, in both eras) comes a page at a time with
keyset cursors that stay valid while the catalog changes, cut from what the caller may see;
a cursor the hub did not make for that list is refused with -32602."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp_types import INVALID_PARAMS
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

from hub.catalog import listing_key
from hub.config import parse_config
from hub.federation import FEDERATION_KEY
from hub.list_freshness import LIST_TTL_MS
from hub.pages import PAGE_MAX_BYTES, InvalidCursor, decode_cursor, encode_cursor, page_of
from tests.clients import http_client, mcp_client
from tests.conftest import RunningHub, fixture_entry, hub_command, running_hub

pytestmark = pytest.mark.anyio

ERAS = ["legacy", "auto"]
"""`Client` modes: the handshake era, and the modern era (`auto` negotiates 2026-07-28 with the hub)."""
LISTS = {
    "tools": "list_tools",
    "resources": "list_resources",
    "resource_templates": "list_resource_templates",
    "prompts": "list_prompts",
}
"""Each list kind and the `Client` method that fetches one page of it."""
MAX_PAGES = 1000
"""Bound on one walk: a cursor loop fails the test instead of hanging it."""
TEAM_KEY = "team-key-0123456789abcdef"
ADMIN_KEY = "admin-key-0123456789abcdef"


# ---------------------------------------------------------------- helpers


Walk = list[list[str]]
"""One walk of a list: the listing keys of each page, in the order served."""


async def walk(
    client: Client, kind: str, cursor: str | None = None, results: list[Any] | None = None
) -> tuple[Walk, list[str]]:
    """Every page of list `kind` from `cursor` on: `(keys per page, cursors the hub gave)`; each
    page's whole result is appended to `results` when given."""
    fetch: Callable[..., Awaitable[Any]] = getattr(client, LISTS[kind])
    pages: Walk = []
    cursors: list[str] = []
    for _ in range(MAX_PAGES):
        page = await fetch(cursor=cursor)
        if results is not None:
            results.append(page)
        pages.append([listing_key(item) for item in getattr(page, kind)])
        cursor = page.next_cursor
        if cursor is None:
            return pages, cursors
        cursors.append(cursor)
    raise AssertionError(f"{kind}: the pagination did not end after {MAX_PAGES} pages")


def flat(pages: Walk) -> list[str]:
    return [key for page in pages for key in page]


@asynccontextmanager
async def client_for(url: str, mode: str, key: str | None = None) -> AsyncIterator[Client]:
    """An SDK client of `url` in `mode` (optionally with an API key); checks the era it got."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with http_client(headers=headers, timeout=30) as http:
        async with mcp_client(streamable_http_client(url, http_client=http), mode=mode) as client:
            eras = HANDSHAKE_PROTOCOL_VERSIONS if mode == "legacy" else MODERN_PROTOCOL_VERSIONS
            assert client.protocol_version in eras
            yield client


def _sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _tool(name: str, description: str = "") -> types.Tool:
    return types.Tool(name=name, description=description, input_schema={"type": "object"})


def _raw_cursor(payload: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()


# ---------------------------------------------------------------- cursors and pages (pure)


def test_a_cursor_continues_after_its_key_on_its_own_list_and_face_only() -> None:
    cursor = encode_cursor("tools", "fx__echo")
    assert decode_cursor(cursor, "tools") == "fx__echo"
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    scoped = encode_cursor("resources", "fixture://ünï/código", scope="fx")
    assert decode_cursor(scoped, "resources", scope="fx") == "fixture://ünï/código"
    for kind, scope in [("prompts", None), ("tools", "fx")]:
        with pytest.raises(InvalidCursor):
            decode_cursor(cursor, kind, scope)  # type: ignore[arg-type]
    with pytest.raises(InvalidCursor):
        decode_cursor(scoped, "resources")  # the per-server face's cursor on /mcp
    with pytest.raises(InvalidCursor):
        decode_cursor(scoped, "resources", scope="other")


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not a cursor",
        "abc=",
        "a",  # not base64 (one char left over)
        base64.urlsafe_b64encode(b"\xff\xfe").decode().rstrip("="),  # not UTF-8
        _raw_cursor("just a string"),
        _raw_cursor([1, "tools", "x"]),
        _raw_cursor({"v": 2, "k": "tools", "after": "x"}),
        _raw_cursor({"v": True, "k": "tools", "after": "x"}),
        _raw_cursor({"v": "1", "k": "tools", "after": "x"}),
        _raw_cursor({"v": 1, "k": "tools"}),
        _raw_cursor({"v": 1, "k": "tools", "after": 7}),
        _raw_cursor({"v": 1, "k": "tools", "after": "x", "offset": 3}),
        _raw_cursor({"v": 1, "k": "tools", "after": "x", "s": None}),
    ],
)
def test_a_cursor_the_hub_did_not_make_is_refused(cursor: str) -> None:
    with pytest.raises(InvalidCursor) as refused:
        page_of([_tool("a")], "tools", cursor, 10)
    assert refused.value.kind == "tools"


def test_pages_hold_each_item_once_in_order_and_end_only_when_nothing_is_left_for_the_caller() -> None:
    items = [_tool(name) for name in ("a", "b", "b", "c", "d", "e", "f")]  # "b" twice (a server listing it twice)

    def pages_of(size: int, admit: Callable[[types.Tool], bool] | None = None) -> Walk:
        pages, cursor = [], None
        for _ in range(MAX_PAGES):
            page = page_of(items, "tools", cursor, size, admit=admit)
            pages.append([tool.name for tool in page.items])
            if (cursor := page.next_cursor) is None:
                return pages
        raise AssertionError("no end")

    assert pages_of(1) == [["a"], ["b", "b"], ["c"], ["d"], ["e"], ["f"]]  # a key is never split
    assert pages_of(3) == [["a", "b", "b"], ["c", "d", "e"], ["f"]]
    assert pages_of(7) == [["a", "b", "b", "c", "d", "e", "f"]]
    # Only what the caller may see is on its pages and counted; no empty page follows the last one.
    assert pages_of(2, admit=lambda tool: tool.name in ("a", "c", "d")) == [["a", "c"], ["d"]]
    assert pages_of(2, admit=lambda tool: False) == [[]]
    # A cursor after a key that is gone continues where that key would be.
    assert page_of(items, "tools", encode_cursor("tools", "bb"), 2).items == items[3:5]
    assert page_of(items, "tools", encode_cursor("tools", "z"), 2).items == []


def test_a_page_ends_before_its_definitions_pass_the_byte_cap_and_holds_at_least_one() -> None:
    big = [_tool(f"t{i:02}", "x" * (100 * 1024)) for i in range(12)]  # ~100 KiB each
    page = page_of(big, "tools", None, 500)
    sizes = [len(tool.model_dump_json(by_alias=True, exclude_none=True).encode()) for tool in page.items]
    assert len(page.items) == 5 and sum(sizes) <= PAGE_MAX_BYTES < sum(sizes) + sizes[0]
    assert page.next_cursor is not None
    huge = [_tool("a", "x" * PAGE_MAX_BYTES), _tool("b")]
    first = page_of(huge, "tools", None, 500)
    assert [tool.name for tool in first.items] == ["a"]
    assert [tool.name for tool in page_of(huge, "tools", first.next_cursor, 500).items] == ["b"]


# ---------------------------------------------------------------- through a hub (shared, read-only)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """Module scope, so one served hub can be shared by this module's read-only tests."""
    return "asyncio"


PAGE_SIZE = 2
SETTINGS: dict[str, Any] = {
    "list_page_size": PAGE_SIZE,
    "auth": {
        "api_keys": [
            {"id": "team", "key_sha256": _sha(TEAM_KEY), "scopes": ["hub:call", "team"]},
            {"id": "admin", "key_sha256": _sha(ADMIN_KEY), "scopes": ["hub:admin"]},
        ]
    },
    "policies": [
        # Names of the team's that sort before, between and after hidden ones.
        {"scope": "team", "allow": ["alpha__tool_1*", "alpha__echo", "beta__*", "gamma+*"]},
        {"scope": "hub:admin", "allow": ["*"]},
    ],
}


@pytest.fixture(scope="module")
async def hub() -> AsyncIterator[RunningHub]:
    """Three fixture servers (alpha with 20 extra tools, beta with 5, gamma with none): 58 tools,
    3 resources, 3 templates, 3 prompts, served in pages of 2."""
    servers = {
        "alpha": fixture_entry("alpha", "--extra-tools", "20"),
        "beta": fixture_entry("beta", "--extra-tools", "5"),
        "gamma": fixture_entry("gamma"),
    }
    async with running_hub(servers, **SETTINGS) as running:
        yield running


@pytest.mark.parametrize("mode", ERAS)
async def test_a_client_of_each_era_walks_every_list_exactly_once_in_order(hub: RunningHub, mode: str) -> None:
    catalog = hub.hub.catalog
    results: list[Any] = []
    with anyio.fail_after(60):
        async with client_for(hub.url, mode, ADMIN_KEY) as client:
            walks = {kind: await walk(client, kind, results=results) for kind in LISTS}
    for kind, (pages, cursors) in walks.items():
        expected = [listing_key(item) for item in getattr(catalog, kind)]
        assert expected == sorted(expected)  # the catalog keeps each list in listing-key order
        assert flat(pages) == expected, kind
        assert all(len(page) == PAGE_SIZE for page in pages[:-1]) and 1 <= len(pages[-1]) <= PAGE_SIZE
        assert len(cursors) == len(pages) - 1 and len(set(cursors)) == len(cursors)
    assert len(flat(walks["tools"][0])) == 58 and len(walks["tools"][0]) == 29
    assert len(walks["prompts"][0]) == len(walks["resource_templates"][0]) == 2
    assert flat(walks["resources"][0]) == ["alpha+fixture://info", "beta+fixture://info", "gamma+fixture://info"]
    # Every page carries the hub's federation advertisement and, in the modern era, the lists'
    # cache hints (SEP-2549): private, since what a page holds depends on the principal.
    assert all(FEDERATION_KEY in (result.meta or {}) for result in results)
    if mode != "legacy":
        assert {(result.ttl_ms, result.cache_scope) for result in results} == {(LIST_TTL_MS, "private")}


@pytest.mark.parametrize("mode", ERAS)
async def test_a_principal_whose_policy_hides_some_routes_pages_through_its_own_only(
    hub: RunningHub, mode: str
) -> None:
    catalog = hub.hub.catalog
    with anyio.fail_after(60):
        async with client_for(hub.url, mode, TEAM_KEY) as client:
            tools, cursors = await walk(client, "tools")
            resources, _ = await walk(client, "resources")
            prompts, _ = await walk(client, "prompts")
    everything = [tool.name for tool in catalog.tools]
    own = [n for n in everything if n.startswith(("alpha__tool_1", "beta__")) or n == "alpha__echo"]
    assert flat(tools) == own and len(own) == 11 + 1 + 16  # alpha's tool_1, tool_10..19 and echo; beta's
    assert all(len(page) == PAGE_SIZE for page in tools[:-1]) and tools[-1]
    # Every cursor holds only a name the caller was given (here: the last of its page).
    assert [decode_cursor(cursor, "tools") for cursor in cursors] == [page[-1] for page in tools[:-1]]
    assert flat(resources) == ["gamma+fixture://info"]
    assert prompts == [["beta__greet"]]  # one page, no cursor: nothing hidden leaks as a page


@pytest.mark.parametrize("mode", ERAS)
async def test_the_per_server_face_paginates_its_original_names(hub: RunningHub, mode: str) -> None:
    view = hub.hub.catalog.server_view("alpha")
    with anyio.fail_after(60):
        async with client_for(hub.server_url("alpha"), mode, ADMIN_KEY) as client:
            tools, cursors = await walk(client, "tools")
            prompts, _ = await walk(client, "prompts")
    names = [tool.name for tool in view.tools]
    assert flat(tools) == names == sorted(names) and len(names) == 31 and "tool_19" in names
    assert all(len(page) == PAGE_SIZE for page in tools[:-1])
    assert [decode_cursor(cursor, "tools", scope="alpha") for cursor in cursors] == [p[-1] for p in tools[:-1]]
    assert prompts == [["greet"]]


@pytest.mark.parametrize("mode", ERAS)
async def test_a_cursor_the_hub_did_not_make_for_that_list_gets_invalid_params(hub: RunningHub, mode: str) -> None:
    refusals: list[MCPError] = []
    with anyio.fail_after(60):
        async with client_for(hub.url, mode, ADMIN_KEY) as client:
            tools_cursor = (await client.list_tools()).next_cursor
            assert tools_cursor is not None
            for kind, cursor in [
                ("tools", "garbage!"),
                ("tools", _raw_cursor({"v": 1, "k": "tools", "after": 3})),
                ("prompts", tools_cursor),  # a tools/list cursor on prompts/list
            ]:
                with pytest.raises(MCPError) as refused:
                    await getattr(client, LISTS[kind])(cursor=cursor)
                refusals.append(refused.value)
            # The session serves on: a walk from the start still works.
            assert len(flat((await walk(client, "tools"))[0])) == 58
        async with client_for(hub.server_url("alpha"), mode, ADMIN_KEY) as client:
            with pytest.raises(MCPError) as refused:
                await client.list_tools(cursor=tools_cursor)  # /mcp's cursor on /servers/alpha/mcp
            refusals.append(refused.value)
    for refusal in refusals:
        assert refusal.code == INVALID_PARAMS
        assert refusal.error.data == {"reason": "invalid_cursor"}
        assert "invalid cursor" in refusal.message


async def test_a_hub_that_federates_this_hub_walks_its_pages_into_a_whole_catalog(hub: RunningHub) -> None:
    entry = {"url": hub.url, "headers": {"Authorization": f"Bearer {ADMIN_KEY}"}}
    async with running_hub({"a": entry}, hub_id="hub-b", list_page_size=7) as b:
        assert [tool.name for tool in b.hub.catalog.tools] == [f"a__{tool.name}" for tool in hub.hub.catalog.tools]
        with anyio.fail_after(60):
            async with client_for(b.url, "legacy") as client:
                tools, _ = await walk(client, "tools")
    assert len(flat(tools)) == 58 and [len(page) for page in tools] == [7] * 8 + [2]


# ---------------------------------------------------------------- catalog changes between pages


@pytest.mark.parametrize("mode", ERAS)
async def test_a_cursor_stays_valid_while_servers_and_tools_come_and_go_between_pages(mode: str) -> None:
    servers = {"fx": fixture_entry("fx", "--extra-tools", "6"), "old": fixture_entry("old")}
    async with running_hub(servers, list_page_size=5) as hub:
        catalog = hub.hub.catalog
        before = [tool.name for tool in catalog.tools]
        with anyio.fail_after(60):
            async with client_for(hub.url, mode) as client:
                first = await client.list_tools()
                assert first.next_cursor is not None
                seen = [tool.name for tool in first.tools]
                assert seen == before[:5]
                # Between pages: a tool is added behind the cursor and one ahead of it, server
                # `old` is removed and server `new` added by a reload.
                await client.call_tool("fx__add_tool", {"name": "aaa"})
                await client.call_tool("fx__add_tool", {"name": "zzz"})
                await catalog.changes.wait_for(lambda: {"fx__aaa", "fx__zzz"} <= {tool.name for tool in catalog.tools})
                config = hub.hub.config
                new_servers = {"fx": servers["fx"], "new": fixture_entry("new")}
                reloaded = parse_config(
                    {"servers": new_servers, "list_page_size": 5, "state_dir": config.state_dir}, file="<test>"
                )
                report = await hub.hub.reload(reloaded)
                assert report.status == "applied" and report.plan.removed == ("old",)
                await catalog.changes.wait_for(lambda: "new__echo" in {tool.name for tool in catalog.tools})
                rest, _ = await walk(client, "tools", first.next_cursor)
        after = [tool.name for tool in catalog.tools]
    seen += flat(rest)
    assert len(seen) == len(set(seen))  # nothing twice
    assert seen == sorted(seen)  # in order
    throughout = set(before) & set(after)
    assert throughout <= set(seen)  # everything listed throughout, exactly once
    assert "fx__zzz" in seen and "new__echo" in seen  # what came ahead of the cursor
    assert "fx__aaa" not in seen  # what came behind it is for the next walk
    assert not any(name.startswith("old__") for name in seen)  # `old` left before its page
    assert seen == before[:5] + [name for name in after if name > before[4]]


# ---------------------------------------------------------------- stdio


@pytest.mark.parametrize("mode", ERAS)
async def test_serve_stdio_paginates_the_catalog(tmp_path: Path, mode: str) -> None:
    config = tmp_path / "hub.json"
    config.write_text(json.dumps({"servers": {"fx": fixture_entry("fx")}, "list_page_size": 3}))
    command, *args = hub_command("serve", "--stdio", "-c", str(config))
    params = StdioServerParameters(command=command, args=args)
    with anyio.fail_after(60):
        async with mcp_client(params, mode=mode) as client:
            tools, cursors = await walk(client, "tools")
            with pytest.raises(MCPError) as refused:
                await client.list_tools(cursor="garbage")
    names = flat(tools)
    assert names == sorted(names) and len(names) == len(set(names)) == 11 and "fx__echo" in names
    assert [len(page) for page in tools] == [3, 3, 3, 2] and len(cursors) == 3
    assert refused.value.code == INVALID_PARAMS


# ---------------------------------------------------------------- the catalog that was unreadable


@pytest.mark.e2e
async def test_a_catalog_of_3000_tools_is_readable_by_a_handshake_era_client_under_the_1_mib_event_cap() -> None:
    # ~560 bytes a tool, as in the report (10,000 tools in 4.4 MB): one message would be over the
    # SDK client's 1 MiB SSE event cap ("Server-sent event exceeded the 1048576 byte limit").
    servers = {f"s{n}": fixture_entry(f"s{n}", "--extra-tools", "750", "--filler-bytes", "400") for n in range(4)}
    async with running_hub(servers, start_timeout=120) as hub:
        catalog = hub.hub.catalog
        whole = sum(len(tool.model_dump_json(by_alias=True, exclude_none=True)) for tool in catalog.tools)
        assert len(catalog.tools) == 4 * 761 and whole > 1024 * 1024
        names = [tool.name for tool in catalog.tools]
        with anyio.fail_after(120):
            async with client_for(hub.url, "legacy") as client:
                pages, _ = await walk(client, "tools")
    assert flat(pages) == names
    assert len(pages) == 7 and all(len(page) == 500 for page in pages[:-1])
