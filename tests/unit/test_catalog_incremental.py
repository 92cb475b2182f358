"""Incremental catalog rebuilds (hub/catalog.py over hub/catalog_parts.py): a change of one
server remakes that server's part only, and the merged catalog is the one a full rebuild makes
from the same state, for any sequence of servers listing, changing, going down, being removed
and re-added, with clashing names, reserved names, hygiene findings, held pins and fallbacks.
Also: the pins of a burst of changes are stored once, when the burst settled (hub/pin_writer.py).
Pure in-memory catalogs and pin stores (no I/O)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import anyio
import mcp_types as types
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hub.catalog import Catalog, Kind
from hub.config import HubConfig, parse_config
from hub.pin_store import MemoryPinStore
from hub.pins import Pins
from hub.servers import ServerSnapshot

pytestmark = [pytest.mark.anyio, pytest.mark.unit]

_FLEET: dict[str, dict[str, Any]] = {
    "alpha": {"command": "unused"},
    "beta": {"command": "unused", "prefix": False, "pinning": "block"},
    "gamma": {"command": "unused", "prefix": False, "fallback": ["alpha"]},
    "delta": {"command": "unused", "expose": False},
}
_NAMES = ("echo", "alpha__echo", "search_tools", "a.b/c", "x" * 70, "ping")
_DESCRIPTIONS = ("first", "second", "hidden\u200bword")


def _config(servers: Mapping[str, dict[str, Any]]) -> HubConfig:
    return parse_config({"pinning": "warn", "servers": dict(servers)}, file="<test>")


def _snapshot(tools: Mapping[str, int], resources: tuple[str, ...] = ()) -> ServerSnapshot:
    return ServerSnapshot(
        tools=tuple(
            types.Tool(name=name, description=_DESCRIPTIONS[variant], input_schema={"type": "object"})
            for name, variant in tools.items()
        ),
        resources=tuple(types.Resource(uri=uri, name=uri.rsplit("/", 1)[-1]) for uri in resources),
        resource_templates=(types.ResourceTemplate(uri_template="mem://items/{id}", name="items"),),
        prompts=tuple(types.Prompt(name=name) for name in tools if name == "ping"),
    )


def _state(catalog: Catalog, server_ids: list[str]) -> dict[str, Any]:
    """Everything a client or an operator can see of a catalog."""
    kinds: tuple[Kind, ...] = ("tools", "prompts")
    return {
        "tools": [t.model_dump() for t in catalog.tools],
        "resources": [r.model_dump() for r in catalog.resources],
        "resource_templates": [t.model_dump() for t in catalog.resource_templates],
        "prompts": [p.model_dump() for p in catalog.prompts],
        "routes": catalog.routes(),
        "views": {sid: catalog.server_view(sid) for sid in server_ids},
        "exposed": {
            (kind, sid, name): catalog.exposed_name(kind, sid, name)  # type: ignore[arg-type]
            for kind in kinds
            for sid in server_ids
            for name in _NAMES
        },
        "by_original": {
            (route.kind, route.server_id, route.original): catalog.route_of(route.kind, route.server_id, route.original)
            for route in catalog.routes()
        },
    }


async def _full_rebuild(
    servers: Mapping[str, dict[str, Any]],
    pins: Pins,
    live: Mapping[str, ServerSnapshot],
    last_known: Mapping[str, ServerSnapshot],
) -> Catalog:
    """A catalog built from scratch over the same state (pins adopted from `pins`)."""
    copy = Pins(MemoryPinStore())
    copy.adopt(pins.document())
    catalog = Catalog(_config(servers), copy)
    for sid, snapshot in last_known.items():
        if sid in servers and sid not in live:
            await catalog.set_snapshot(sid, snapshot)
            await catalog.set_snapshot(sid, None)
    for sid, snapshot in live.items():
        await catalog.set_snapshot(sid, snapshot)
    return catalog


_tools = st.dictionaries(st.sampled_from(_NAMES), st.integers(0, len(_DESCRIPTIONS) - 1), max_size=4)
_resources = st.lists(st.sampled_from(("mem://a", "mem://b", "mem://c")), max_size=2, unique=True).map(tuple)
_step = st.one_of(
    st.tuples(st.just("list"), st.sampled_from(sorted(_FLEET)), _tools, _resources),
    st.tuples(st.just("down"), st.sampled_from(sorted(_FLEET))),
    st.tuples(st.just("remove"), st.sampled_from(("gamma", "delta"))),
    st.tuples(st.just("restore")),
    st.tuples(st.just("approve")),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_step, min_size=1, max_size=12))
@example([("list", "beta", {"echo": 0}, ()), ("list", "beta", {"echo": 1}, ()), ("approve",)])
@example(
    [("list", "gamma", {"echo": 0}, ()), ("list", "alpha", {"echo": 0}, ()), ("down", "gamma"), ("remove", "gamma")]
)
@example([("list", "gamma", {}, ()), ("down", "gamma"), ("remove", "gamma"), ("restore",)])
def test_after_any_sequence_of_changes_the_incremental_catalog_equals_a_full_rebuild(steps: list[Any]) -> None:
    async def scenario() -> None:
        servers = dict(_FLEET)
        pins = Pins(MemoryPinStore())
        catalog = Catalog(_config(servers), pins)
        live: dict[str, ServerSnapshot] = {}
        last_known: dict[str, ServerSnapshot] = {}
        for step in steps:
            if step[0] == "list":
                _, sid, tools, resources = step
                if sid not in servers:
                    continue
                live[sid] = last_known[sid] = _snapshot(tools, resources)
                await catalog.set_snapshot(sid, live[sid])
            elif step[0] == "down":
                live.pop(step[1], None)
                await catalog.set_snapshot(step[1], None)
            elif step[0] == "approve":  # the held definitions of the blocking server are approved
                pins.approve("beta", "block", pins.pending_names("beta"))
                await catalog.refresh()
            else:
                servers = dict(_FLEET) if step[0] == "restore" else {k: v for k, v in servers.items() if k != step[1]}
                for sid in [sid for sid in last_known if sid not in servers]:  # it forgets a removed server
                    del last_known[sid]
                    if live.pop(sid, None) is not None:
                        await catalog.set_snapshot(sid, None)
                await catalog.reconfigure(_config(servers).servers)
            reference = await _full_rebuild(servers, pins, live, last_known)
            assert _state(catalog, sorted(_FLEET)) == _state(reference, sorted(_FLEET)), step

    anyio.run(scenario)


async def test_a_change_of_one_server_keeps_every_other_servers_definitions_and_views() -> None:
    catalog = Catalog(_config(_FLEET), Pins(MemoryPinStore()))
    await catalog.set_snapshot("alpha", _snapshot({"echo": 0, "ping": 0}))
    await catalog.set_snapshot("delta", _snapshot({"echo": 0}))
    alpha_tools = catalog.tools
    alpha_view = catalog.server_view("alpha")

    await catalog.set_snapshot("beta", _snapshot({"search_tools": 0, "echo": 1}))

    kept = {tool.name: tool for tool in alpha_tools}
    now = {tool.name: tool for tool in catalog.tools}
    assert all(now[name] is tool for name, tool in kept.items())  # the same objects, not copies
    assert catalog.server_view("alpha") is alpha_view
    assert sorted(now) == ["alpha__echo", "alpha__ping", "beta__search_tools", "echo"]


async def test_listeners_hear_of_a_change_once_and_not_of_a_relisting_that_changes_nothing() -> None:
    catalog = Catalog(_config(_FLEET), Pins(MemoryPinStore()))
    heard: list[tuple[str, frozenset[Kind]]] = []

    async def listener(server_id: str, kinds: frozenset[Kind]) -> None:
        heard.append((server_id, kinds))

    catalog.add_listener(listener)
    await catalog.set_snapshot("alpha", _snapshot({"echo": 0}))
    tools = catalog.tools
    await catalog.set_snapshot("alpha", _snapshot({"echo": 0}))  # equal, but a new listing

    assert heard == [("alpha", frozenset({"tools", "resource_templates"}))]
    assert catalog.tools is tools


async def test_a_changed_definition_of_a_blocking_server_is_held_and_its_other_tools_stay() -> None:
    pins = Pins(MemoryPinStore())
    catalog = Catalog(_config(_FLEET), pins)
    await catalog.set_snapshot("beta", _snapshot({"echo": 0, "ping": 0}))
    await catalog.set_snapshot("alpha", _snapshot({"echo": 0}))

    await catalog.set_snapshot("beta", _snapshot({"echo": 1, "ping": 0}))

    route = catalog.tool_route("echo")
    assert route is not None and route.held and route.pin is not None and route.pin.reason == "changed"
    assert [t.name for t in catalog.tools] == ["alpha__echo", "ping"]
    assert [t.name for t in catalog.server_view("beta").tools] == ["ping"]
    held = catalog.hold("tools", "beta", "echo", "echo")
    assert held is not None and held.data()["reason"] == "changed"

    pins.approve("beta", "block", [("tools", "echo")])
    await catalog.refresh()

    assert [t.name for t in catalog.tools] == ["alpha__echo", "echo", "ping"]
    assert catalog.hold("tools", "beta", "echo", "echo") is None


class _CountingStore(MemoryPinStore):
    """A pin store that counts its writes and signals each one (saves run in a worker thread)."""

    def __init__(self) -> None:
        super().__init__()
        self.saves = 0
        self.saved = threading.Event()

    def save(self, document: Mapping[str, Any]) -> None:
        super().save(document)
        self.saves += 1
        self.saved.set()


async def test_the_pins_of_a_burst_of_listings_are_stored_once_after_the_burst_settled() -> None:
    store = _CountingStore()
    pins = Pins(store)
    catalog = Catalog(_config(_FLEET), pins)
    settled = anyio.Event()

    with anyio.fail_after(10):
        async with catalog.pin_writer.running(settled.wait):
            for sid in ("alpha", "beta", "gamma"):
                await catalog.set_snapshot(sid, _snapshot({"echo": 0}))
            assert store.saves == 0 and pins.dirty  # every server listed, nothing stored yet

            settled.set()
            assert await anyio.to_thread.run_sync(store.saved.wait, 5)

            assert store.saves == 1
            assert store.document is not None and sorted(store.document["pins"]) == ["alpha", "beta", "gamma"]
            assert not pins.dirty

            await catalog.set_snapshot("alpha", _snapshot({"echo": 1}))  # after start-up: stored at once
            store.saved.clear()
            assert await anyio.to_thread.run_sync(store.saved.wait, 5)
            assert store.saves == 2 and store.document["pending"]["alpha"]["tools"]["echo"]

        await catalog.set_snapshot("alpha", _snapshot({"echo": 2}))  # no background writer: stored inline
        assert store.saves == 3


async def test_pins_changed_while_the_writer_stops_are_stored_on_the_way_out() -> None:
    store = _CountingStore()
    pins = Pins(store)
    catalog = Catalog(_config(_FLEET), pins)
    never = anyio.Event()

    with anyio.fail_after(10):
        async with catalog.pin_writer.running(never.wait):
            await catalog.set_snapshot("alpha", _snapshot({"echo": 0}))
            assert store.saves == 0

    assert store.saves == 1 and store.document is not None and "alpha" in store.document["pins"]
    assert not pins.dirty
