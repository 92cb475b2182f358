"""hub/naming.py: exposed names <-> (server_id, original), pure functions."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

import pytest

from hub.naming import (
    MAX_NAME_LENGTH,
    NAME_PATTERN,
    RESERVED_TOOL_NAMES,
    NameAssignment,
    assign_names,
    exposed_resource_uri,
    sanitize,
    split_resource_uri,
)

pytestmark = pytest.mark.unit

Server = tuple[str, str | None, Sequence[str]]


def _exposed(servers: Sequence[Server]) -> dict[tuple[str, str], str]:
    return {(item.server_id, item.original): item.exposed for item in assign_names(servers)}


def _assert_valid_and_unique(assignments: list[NameAssignment]) -> None:
    names = [item.exposed for item in assignments]
    assert len(names) == len(set(names)), sorted(names)
    for name in names:
        assert NAME_PATTERN.fullmatch(name), repr(name)


# --- prefixes -------------------------------------------------------------------------------------


def test_two_servers_exporting_the_same_tool_name_get_distinct_prefixed_names() -> None:
    assert assign_names([("time", "time", ["now"]), ("clock", "clock", ["now"])]) == [
        NameAssignment("clock", "now", "clock__now", None),
        NameAssignment("time", "now", "time__now", None),
    ]


def test_a_configured_prefix_is_used_instead_of_the_server_id() -> None:
    assert assign_names([("time", "t", ["now"])]) == [NameAssignment("time", "now", "t__now", None)]


def test_an_unprefixed_server_without_a_clash_keeps_its_original_names() -> None:
    assert assign_names([("git", None, ["git_status", "git_log"])]) == [
        NameAssignment("git", "git_status", "git_status", None),
        NameAssignment("git", "git_log", "git_log", None),
    ]


def test_two_unprefixed_servers_with_the_same_name_both_fall_back_to_their_server_id() -> None:
    result = assign_names([("b", None, ["search", "only-b"]), ("a", None, ["search"])])

    assert result == [
        NameAssignment("a", "search", "a__search", "collision"),
        NameAssignment("b", "search", "b__search", "collision"),
        NameAssignment("b", "only-b", "only-b", None),
    ]


def test_an_unprefixed_name_clashing_with_a_prefixed_name_loses_and_the_prefixed_keeps_its_name() -> None:
    result = assign_names([("u", None, ["github__search"]), ("github", "github", ["search"])])

    assert result == [
        NameAssignment("github", "search", "github__search", None),
        NameAssignment("u", "github__search", "u__github__search", "collision: the prefix of server github"),
    ]


def test_an_unprefixed_name_in_another_servers_namespace_falls_back_even_when_that_server_lists_nothing() -> None:
    # fx is configured but down (or never up): it lists nothing, yet `fx__echo` stays fx's.
    result = assign_names([("shadow", None, ["fx__echo", "plain"]), ("fx", "fx", [])])

    assert result == [
        NameAssignment("shadow", "fx__echo", "shadow__fx__echo", "collision: the prefix of server fx"),
        NameAssignment("shadow", "plain", "plain", None),
    ]


@pytest.mark.parametrize("original", ["FX__echo", "Fx__echo", "fx.__echo", "fx__", "fx___echo", "f" + "x__" + "y" * 80])
def test_a_name_that_only_looks_like_another_servers_after_case_or_sanitising_falls_back_too(original: str) -> None:
    [item] = [
        a for a in assign_names([("shadow", None, [original]), ("fx", "fx", ["echo"])]) if a.server_id == "shadow"
    ]

    assert item.exposed.startswith("shadow__") and item.note == "collision: the prefix of server fx"
    assert NAME_PATTERN.fullmatch(item.exposed)


def test_a_configured_prefix_and_the_server_id_behind_it_are_both_claimed() -> None:
    result = _exposed([("shadow", None, ["gh__a", "github__b", "ghx__c"]), ("github", "gh", ["a"])])

    assert result == {
        ("github", "a"): "gh__a",
        ("shadow", "gh__a"): "shadow__gh__a",
        ("shadow", "github__b"): "shadow__github__b",
        ("shadow", "ghx__c"): "ghx__c",
    }


def test_an_unprefixed_servers_own_id_is_not_a_clash_for_it() -> None:
    assert assign_names([("git", None, ["git__status"])]) == [NameAssignment("git", "git__status", "git__status", None)]


def test_an_unprefixed_name_in_another_unprefixed_servers_fallback_namespace_falls_back() -> None:
    # `b`'s own `x` falls back to `b__x` when it clashes; `c` cannot take `b__x` beforehand.
    result = _exposed([("b", None, ["x"]), ("c", None, ["b__x", "x"])])

    assert result == {("b", "x"): "b__x", ("c", "b__x"): "c__b__x", ("c", "x"): "c__x"}


def test_a_repeated_original_is_assigned_once() -> None:
    assert assign_names([("s", "s", ["x", "x"])]) == [NameAssignment("s", "x", "s__x", None)]


def test_a_fallback_name_that_equals_another_unprefixed_original_keeps_a_server_prefix() -> None:
    result = assign_names([("a", None, ["x"]), ("b", None, ["x"]), ("c", None, ["a__x"])])

    _assert_valid_and_unique(result)
    for item in result:
        assert item.exposed == item.original or item.exposed.startswith(f"{item.server_id}__"), item


# --- sanitising and shortening --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("original", "sanitized"),
    [
        ("get weather", "get_weather"),
        ("files/read", "files_read"),
        ("v1.search", "v1_search"),
        ("café", "caf_"),
        ("天气", "__"),
        ("a\r\nb", "a__b"),
        ("", "_"),
        ("ok-name_1", "ok-name_1"),
    ],
)
def test_characters_outside_the_allowed_set_become_underscores(original: str, sanitized: str) -> None:
    assert sanitize(original) == sanitized


@pytest.mark.parametrize(
    ("original", "exposed"),
    [
        ("get weather", "s__get_weather"),
        ("files/read", "s__files_read"),
        ("v1.search", "s__v1_search"),
        ("café", "s__caf_"),
        ("line\r\nbreak", "s__line__break"),
        ("", "s___"),
    ],
)
def test_a_name_with_invalid_characters_is_exposed_sanitized_and_pattern_valid(original: str, exposed: str) -> None:
    [item] = assign_names([("s", "s", [original])])

    assert (item.exposed, item.note) == (exposed, "sanitized")
    assert NAME_PATTERN.fullmatch(item.exposed)


def test_an_empty_unprefixed_name_is_exposed_as_an_underscore() -> None:
    assert assign_names([("s", None, [""])]) == [NameAssignment("s", "", "_", "sanitized")]


def test_a_name_over_64_characters_is_shortened_to_64_with_a_hash_suffix() -> None:
    original = "x" * 100
    [item] = assign_names([("s", "s", [original])])

    assert len(item.exposed) == MAX_NAME_LENGTH == 64
    assert item.exposed[:55] == "s__" + "x" * 52
    assert re.fullmatch(r"_[0-9a-f]{8}", item.exposed[55:])
    assert item.note == "shortened"


def test_a_name_of_exactly_64_characters_is_not_shortened() -> None:
    original = "y" * 61

    assert assign_names([("s", "s", [original])]) == [NameAssignment("s", original, "s__" + original, None)]


def test_shortening_is_deterministic_and_tells_names_with_the_same_head_apart() -> None:
    first, second = "z" * 80 + "first", "z" * 80 + "second"

    once = _exposed([("s", "s", [first, second])])
    again = _exposed([("s", "s", [second, first])])

    assert once == again
    assert once[("s", first)] != once[("s", second)]
    assert once[("s", first)][:55] == once[("s", second)][:55]


def test_an_unprefixed_name_over_64_characters_is_shortened_too() -> None:
    [item] = assign_names([("s", None, ["é" * 70])])

    assert len(item.exposed) == 64
    assert NAME_PATTERN.fullmatch(item.exposed)


# --- collisions inside one server -----------------------------------------------------------------


@pytest.mark.parametrize("originals", [["a.b", "a_b"], ["a_b", "a.b"]])
def test_inside_one_server_the_exact_name_keeps_the_plain_name_and_the_sanitized_one_gets_a_suffix(
    originals: list[str],
) -> None:
    by_original = {item.original: item for item in assign_names([("s", "s", originals)])}

    assert by_original["a_b"] == NameAssignment("s", "a_b", "s__a_b", None)
    dotted = by_original["a.b"]
    assert dotted.note == "collision"
    assert re.fullmatch(r"s__a_b_[0-9a-f]{8}", dotted.exposed)


def test_inside_one_server_names_that_all_sanitize_alike_all_get_distinct_suffixes() -> None:
    result = assign_names([("s", "s", ["a.b", "a b", "a/b"])])

    _assert_valid_and_unique(result)
    for item in result:
        assert item.note == "collision"
        assert re.fullmatch(r"s__a_b_[0-9a-f]{8}", item.exposed)


def test_the_same_clashing_originals_on_two_servers_stay_distinct() -> None:
    result = assign_names([("s", None, ["a.b", "a_b"]), ("t", None, ["a.b", "a_b"])])

    _assert_valid_and_unique(result)


# --- properties over generated fleets -------------------------------------------------------------

_ALPHABET = "abcxyzAB019_-./ :+\r\né天😀"
_SEEDS = range(8)


def _random_name(rng: random.Random) -> str:
    shape = rng.random()
    if shape < 0.15:
        return rng.choice(["a.b", "a_b", "a b", "", "_", "search", "x" * 70, "x" * 70 + "y"])
    length = rng.randint(0, 90) if shape < 0.3 else rng.randint(1, 8)
    return "".join(rng.choice(_ALPHABET) for _ in range(length))


def _random_fleet(rng: random.Random, *, unprefixed: bool) -> list[Server]:
    ids = rng.sample(["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta"], rng.randint(2, 5))
    fleet: list[Server] = []
    for server_id in ids:
        roll = rng.random()
        if unprefixed and roll < 0.3:
            prefix: str | None = None
        elif roll < 0.5:
            prefix = server_id.upper()  # never another server's id: ids are lowercase
        else:
            prefix = server_id
        fleet.append((server_id, prefix, [_random_name(rng) for _ in range(rng.randint(0, 25))]))
    return fleet


@pytest.mark.parametrize("seed", _SEEDS)
@pytest.mark.parametrize("unprefixed", [False, True])
def test_every_exposed_name_is_pattern_valid_and_unique_for_any_fleet(seed: int, unprefixed: bool) -> None:
    fleet = _random_fleet(random.Random(seed), unprefixed=unprefixed)

    result = assign_names(fleet)

    _assert_valid_and_unique(result)
    assert sorted((item.server_id, item.original) for item in result) == sorted(
        {(server_id, original) for server_id, _, originals in fleet for original in originals}
    )


@pytest.mark.parametrize("seed", _SEEDS)
@pytest.mark.parametrize("unprefixed", [False, True])
def test_shuffling_the_servers_and_their_names_does_not_change_any_assignment(seed: int, unprefixed: bool) -> None:
    rng = random.Random(seed)
    fleet = _random_fleet(rng, unprefixed=unprefixed)
    expected = set(assign_names(fleet))

    for _ in range(5):
        shuffled = [(server_id, prefix, rng.sample(list(names), len(names))) for server_id, prefix, names in fleet]
        rng.shuffle(shuffled)
        assert set(assign_names(shuffled)) == expected


@pytest.mark.parametrize("seed", _SEEDS)
def test_adding_a_prefixed_server_never_renames_another_servers_names(seed: int) -> None:
    rng = random.Random(seed)
    fleet = _random_fleet(rng, unprefixed=False)
    before = _exposed(fleet)
    newcomer_names = [_random_name(rng) for _ in range(30)] + [original for _, _, names in fleet for original in names]

    after = _exposed([*fleet, ("newcomer", "newcomer", newcomer_names)])

    assert {key: name for key, name in after.items() if key[0] != "newcomer"} == before


def test_adding_a_prefixed_server_renames_an_unprefixed_name_it_clashes_with() -> None:
    before = _exposed([("u", None, ["github__search", "other"])])
    after = _exposed([("u", None, ["github__search", "other"]), ("github", "github", ["search"])])

    assert before == {("u", "github__search"): "github__search", ("u", "other"): "other"}
    assert after == {
        ("u", "github__search"): "u__github__search",
        ("u", "other"): "other",
        ("github", "search"): "github__search",
    }


# --- resource URIs --------------------------------------------------------------------------------


def test_a_resource_uri_is_exposed_as_server_id_plus_uri_and_splits_back() -> None:
    exposed = exposed_resource_uri("everything", "demo://resource/1")

    assert exposed == "everything+demo://resource/1"
    assert split_resource_uri(exposed) == ("everything", "demo://resource/1")


@pytest.mark.parametrize(
    "uri",
    ["git+ssh://host/repo", "file:///a+b/c+d.txt", "demo://{id}+{name}", "+", "", "no-scheme+"],
)
def test_a_resource_uri_containing_plus_round_trips(uri: str) -> None:
    assert split_resource_uri(exposed_resource_uri("srv-1", uri)) == ("srv-1", uri)


@pytest.mark.parametrize("exposed", ["demo://resource/1", "", "+demo://resource/1"])
def test_an_exposed_uri_without_a_server_id_and_plus_does_not_split(exposed: str) -> None:
    assert split_resource_uri(exposed) is None


def test_a_prefix_false_server_never_takes_a_tool_name_reserved_for_the_hubs_search_mode() -> None:
    servers = [("u", None, ["search_tools", "call_tool", "other"]), ("p", "p", ["search_tools"])]
    named = {(a.server_id, a.original): (a.exposed, a.note) for a in assign_names(servers, RESERVED_TOOL_NAMES)}

    assert named[("u", "search_tools")] == ("u__search_tools", "collision: a hub tool name")
    assert named[("u", "call_tool")] == ("u__call_tool", "collision: a hub tool name")
    assert named[("u", "other")] == ("other", None)
    assert named[("p", "search_tools")] == ("p__search_tools", None)
    # Prompts reserve nothing: a prompt may be called search_tools.
    assert assign_names([("u", None, ["search_tools"])]) == [NameAssignment("u", "search_tools", "search_tools", None)]
