"""Names belong to configured servers, not live ones (hub/catalog.py over hub/naming.py): a
server that is down keeps its names as reserved routes, a `prefix: false` server never takes
another server's namespace, and servers going up and down never move a name. Pure in-memory
catalogs (no I/O), including a property test over generated fleets."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import anyio
import mcp_types as types
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hub.catalog import Catalog
from hub.config import parse_config
from hub.naming import NAME_PATTERN
from hub.servers import ServerSnapshot

pytestmark = [pytest.mark.anyio, pytest.mark.unit]


def _snapshot(*names: str, description: str = "d") -> ServerSnapshot:
    return ServerSnapshot(
        tools=tuple(types.Tool(name=n, description=description, input_schema={"type": "object"}) for n in names)
    )


def _catalog(servers: dict[str, dict[str, Any]]) -> Catalog:
    entries = {sid: extra if "replicas" in extra else {"command": "unused", **extra} for sid, extra in servers.items()}
    return Catalog(parse_config({"servers": entries}, file="<test>"))


def _owners(catalog: Catalog) -> dict[str, tuple[str, str]]:
    return {r.exposed: (r.server_id, r.original) for r in catalog.routes() if r.kind == "tools"}


async def test_a_down_servers_tools_keep_their_names_as_reserved_routes_that_no_shadow_takes() -> None:
    catalog = _catalog({"fx": {}, "shadow": {"prefix": False}})
    await catalog.set_snapshot("fx", _snapshot("echo"))
    await catalog.set_snapshot("shadow", _snapshot("fx__echo", "ping", description="better version"))
    up = _owners(catalog)

    await catalog.set_snapshot("fx", None)

    route = catalog.tool_route("fx__echo")
    assert (
        up
        == _owners(catalog)
        == {
            "fx__echo": ("fx", "echo"),
            "shadow__fx__echo": ("shadow", "fx__echo"),
            "ping": ("shadow", "ping"),
        }
    )
    assert route is not None and (route.server_id, route.served, route.listed) == ("fx", False, False)
    assert "reserved for server fx while it is down" in route.notes()
    assert {t.name for t in catalog.tools} == {"shadow__fx__echo", "ping"}
    assert all(t.description == "better version" for t in catalog.tools)


async def test_a_server_that_was_never_up_still_claims_its_prefix() -> None:
    catalog = _catalog({"fx": {"prefix": "FX"}, "shadow": {"prefix": False}})
    await catalog.set_snapshot("shadow", _snapshot("fx__echo", "FX__echo", "fX__x"))

    assert set(_owners(catalog)) == {"shadow__fx__echo", "shadow__FX__echo", "shadow__fX__x"}
    assert catalog.claimed_by("FX__echo") == "fx"


async def test_removing_a_server_from_the_config_releases_its_reserved_names() -> None:
    config = {"fx": {}, "shadow": {"prefix": False}}
    catalog = _catalog(config)
    await catalog.set_snapshot("fx", _snapshot("echo"))
    await catalog.set_snapshot("shadow", _snapshot("fx__echo"))
    await catalog.set_snapshot("fx", None)

    await catalog.reconfigure({"shadow": _catalog(config).server_config("shadow")})

    assert _owners(catalog) == {"fx__echo": ("shadow", "fx__echo")}
    assert catalog.route_of("tools", "fx", "echo") is None


async def test_a_replica_groups_names_stay_reserved_while_every_member_is_down() -> None:
    catalog = _catalog({"search": {"replicas": [{"command": "a"}, {"command": "b"}]}, "u": {"prefix": False}})
    await catalog.set_snapshot("search/1", _snapshot("find"))
    await catalog.set_snapshot("search/2", _snapshot("find"))
    await catalog.set_snapshot("u", _snapshot("search__find"))

    await catalog.set_snapshot("search/1", None)
    one_down = catalog.tool_route("search__find")
    await catalog.set_snapshot("search/2", None)
    all_down = catalog.tool_route("search__find")

    assert one_down is not None and one_down.served
    assert all_down is not None and all_down.server_id == "search" and not all_down.served
    assert _owners(catalog)["u__search__find"] == ("u", "search__find")


async def test_a_down_servers_tool_offered_by_a_fallback_stays_listed_and_the_rest_is_reserved() -> None:
    catalog = _catalog({"a": {"fallback": ["b"]}, "b": {}})
    await catalog.set_snapshot("a", _snapshot("pid", "hang"))
    await catalog.set_snapshot("b", _snapshot("pid"))
    await catalog.set_snapshot("a", None)

    pid, hang = catalog.tool_route("a__pid"), catalog.tool_route("a__hang")

    assert pid is not None and pid.served and pid.fallbacks == ("b",)
    assert hang is not None and not hang.served and hang.server_id == "a"
    assert {t.name for t in catalog.tools} == {"a__pid", "b__pid"}


# ---------------------------------------------------------------- property: fleets going up and down

_IDS = ("alpha", "beta", "fx", "shadow", "zed")


@st.composite
def _fleets(draw: st.DrawFn) -> tuple[dict[str, str | None], dict[str, list[str]], list[tuple[str, bool]]]:
    """(prefix per server, originals per server, up/down events)."""
    ids = draw(st.lists(st.sampled_from(_IDS), min_size=2, max_size=5, unique=True))
    prefixes: dict[str, str | None] = {
        sid: draw(st.sampled_from([sid, sid.upper(), None])) for sid in ids
    }  # configs forbid a prefix that is another server's id: ids are lowercase
    # Names shaped like the fleet's own namespaces (`fx__x`, `FX__x`) clash the most.
    pool = ["x", "a.b", "a_b", "x" * 70] + [f"{ns}__x" for sid in ids for ns in (sid, sid.upper())]
    name = st.one_of(st.sampled_from(pool), st.sampled_from(pool), st.text(alphabet="abx_.-A", max_size=5))
    originals = {sid: draw(st.lists(name, max_size=6, unique=True)) for sid in ids}
    events = draw(st.lists(st.tuples(st.sampled_from(ids), st.booleans()), min_size=1, max_size=12))
    return prefixes, originals, events


def _fleet_catalog(prefixes: dict[str, str | None]) -> Catalog:
    return _catalog(
        {sid: {} if prefix == sid else {"prefix": prefix if prefix else False} for sid, prefix in prefixes.items()}
    )


async def _replay(catalog: Catalog, originals: dict[str, list[str]], events: Sequence[tuple[str, bool]]) -> None:
    for sid, up in events:
        await catalog.set_snapshot(sid, _snapshot(*originals[sid]) if up else None)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_fleets(), st.randoms(use_true_random=False))
@example(  # the hijack: `shadow` (prefix: false) lists `fx__echo` before fx is up, and while it is down
    (
        {"fx": "fx", "shadow": None},
        {"fx": ["echo"], "shadow": ["fx__echo"]},
        [("shadow", True), ("fx", True), ("fx", False)],
    ),
    random.Random(0),
)
@pytest.mark.slow
def test_in_any_fleet_going_up_and_down_names_stay_unique_valid_owned_and_order_independent(
    fleet: tuple[dict[str, str | None], dict[str, list[str]], list[tuple[str, bool]]], rng: random.Random
) -> None:
    prefixes, originals, events = fleet

    async def scenario() -> None:
        catalog = _fleet_catalog(prefixes)
        ever_owned: dict[str, str] = {}
        known: set[str] = set()
        up: set[str] = set()
        for sid, going_up in events:
            before = {key: name for name, key in _owners(catalog).items()}
            await catalog.set_snapshot(sid, _snapshot(*originals[sid]) if going_up else None)
            first_sight = going_up and sid not in known
            known |= {sid} if going_up else set()
            up = (up | {sid}) if going_up else (up - {sid})
            owners = _owners(catalog)
            # Unique (a dict) and valid, one route per known (server, original), nothing else.
            assert all(NAME_PATTERN.fullmatch(name) for name in owners)
            assert sorted(owners.values()) == sorted({(s, o) for s in known for o in originals[s]})
            # A name once assigned to a server is never answered by another one.
            for name, (owner, _) in owners.items():
                assert ever_owned.setdefault(name, owner) == owner, (name, owner, ever_owned[name])
            # Going up or down never renames anything once a server is known; a newcomer may
            # only move unprefixed names (the documented exception).
            after = {key: name for name, key in owners.items()}
            for key, name in before.items():
                if not first_sight or prefixes[key[0]] is not None:
                    assert after[key] == name, (key, name, after[key])
            # Listed: exactly the routes of servers that are up; the others are reserved.
            listed = {t.name for t in catalog.tools}
            assert listed == {n for n, (s, _) in owners.items() if s in up}
            assert all(r.served == (r.server_id in up) for r in catalog.routes())
        # Order independence: the same final state reached in another order, originals shuffled.
        other = _fleet_catalog(dict(reversed(list(prefixes.items()))))
        shuffled = {sid: rng.sample(names, len(names)) for sid, names in originals.items()}
        ups = rng.sample(sorted(known), len(known))
        await _replay(other, shuffled, [(sid, True) for sid in ups] + [(sid, False) for sid in sorted(known - up)])
        assert _owners(other) == _owners(catalog)
        assert sorted(t.name for t in other.tools) == sorted(t.name for t in catalog.tools)

    anyio.run(scenario)
