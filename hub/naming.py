"""Exposed names <-> (server_id, original name): pure functions, no I/O.

Rules (DESIGN.md "Names"):

- A tool or prompt is exposed as `<prefix>__<original>` (prefix = server_id unless configured),
  or as `<original>` when the server's prefix is `false`.
- Every exposed name matches `^[A-Za-z0-9_-]{1,64}$`: valid under SEP-986 (MCP tool names,
  `[A-Za-z0-9_.-]{1,128}`) and under the function-name rules of the major LLM APIs. Other
  characters become `_`; a name over 64 characters keeps its head and gets `_` + 8 hex digits of
  a SHA-256 over (server_id, original).
- Collisions are resolved without looking at the order servers were added, so adding or
  removing a server never renames another server's tools, except where two servers both expose
  original names (`prefix: false`) and clash: then every clashing unprefixed name falls back to
  `<server_id>__<original>`, which is unique by construction (a server_id has no `_`).
  Inside one server, an original that survives sanitising unchanged keeps its name and the
  others that sanitise to it get a hash suffix.
- Every configured server claims its namespaces, `<prefix>__` and `<server_id>__`, whether it
  is up or has ever listed anything (pass it with no originals): an unprefixed name that would
  start with another server's namespace (compared case-insensitively, after sanitising) falls
  back to `<server_id>__<original>` with a collision note, so a `prefix: false` server can never
  take a name such as `fx__echo` that callers would take for server fx's (OWASP MCP Top 10:
  tool shadowing).
- The hub's own tool names (`RESERVED_TOOL_NAMES`: `search_tools` and `call_tool`, the two tools
  of search mode, `hub.endpoint.search_mode`) are never given to a server's tool: a `prefix: false`
  server's tool that would take one falls back to `<server_id>__<original>` with a note, whether
  search mode is on or not, so that no name changes meaning when the mode does.
- Resource URIs and URI templates are exposed as `<server_id>+<original>`; a server_id never
  holds `+`, so `split_resource_uri` reverses it.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter

__all__ = [
    "MAX_NAME_LENGTH",
    "NAME_PATTERN",
    "RESERVED_TOOL_NAMES",
    "SEPARATOR",
    "NameAssignment",
    "ServerNames",
    "assign_names",
    "exposed_resource_uri",
    "merge_names",
    "sanitize",
    "server_names",
    "split_resource_uri",
]

MAX_NAME_LENGTH = 64
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SEPARATOR = "__"
_INVALID = re.compile(r"[^A-Za-z0-9_-]")
_HASH_HEX_DIGITS = 8
RESERVED_TOOL_NAMES = frozenset({"search_tools", "call_tool"})
"""Exposed tool names that belong to the hub itself (search mode's synthetic tools)."""


def _digest(*parts: str, digits: int = _HASH_HEX_DIGITS) -> str:
    return hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:digits]


def sanitize(name: str) -> str:
    """Replace every character outside `[A-Za-z0-9_-]` with `_` (an empty name becomes `_`)."""
    return _INVALID.sub("_", name) or "_"


def _fit(name: str, server_id: str, original: str, *, force_hash: bool = False, digits: int = _HASH_HEX_DIGITS) -> str:
    """Shorten to MAX_NAME_LENGTH with a hash suffix; `force_hash` adds the suffix regardless."""
    if len(name) <= MAX_NAME_LENGTH and not force_hash:
        return name
    suffix = "_" + _digest(server_id, original, digits=digits)
    return name[: MAX_NAME_LENGTH - len(suffix)] + suffix


@dataclass(frozen=True, slots=True)
class NameAssignment:
    """The exposed name chosen for one (server_id, original) pair."""

    server_id: str
    original: str
    exposed: str
    note: str | None = None
    """Why the exposed name differs from the plain `<prefix>__<original>`, for `mcphub check`."""


ServerNames = Mapping[str, tuple[str, str | None]]
"""One server's names: `original -> (exposed, note)` (note as `NameAssignment.note`)."""


def server_names(server_id: str, prefix: str | None, originals: Sequence[str]) -> dict[str, tuple[str, str | None]]:
    """Names for one server's originals, resolving clashes inside the server only (the part of
    `assign_names` that depends on nothing but the server: computed once per listing)."""
    head = f"{prefix}{SEPARATOR}" if prefix is not None else ""
    candidates: dict[str, list[str]] = {}
    for original in dict.fromkeys(originals):
        candidates.setdefault(_fit(head + sanitize(original), server_id, original), []).append(original)
    result: dict[str, tuple[str, str | None]] = {}
    for name, group in candidates.items():
        for original in group:
            exact = head + original == name
            if len(group) == 1 or exact:
                note = (
                    None
                    if exact
                    else ("sanitized" if len(head + sanitize(original)) <= MAX_NAME_LENGTH else "shortened")
                )
                result[original] = (name, note)
            else:
                result[original] = (_fit(head + sanitize(original), server_id, original, force_hash=True), "collision")
    return result


def assign_names(
    servers: Iterable[tuple[str, str | None, Sequence[str]]], reserved: frozenset[str] = frozenset()
) -> list[NameAssignment]:
    """Choose exposed names for every server's originals (tools, or prompts: call once per kind).

    :param servers: `(server_id, prefix or None for original names, originals)` per server: every
        configured server, also one that is down or was never up (with its last known originals,
        or none), so that its namespaces stay claimed.
    :param reserved: names no server may take (`RESERVED_TOOL_NAMES` for tools): an unprefixed
        name equal to one falls back to `<server_id>__<original>`.
    :returns: one `NameAssignment` per distinct (server_id, original), exposed names all distinct
        and all matching `NAME_PATTERN`. The result does not depend on the order of `servers`.
    """
    fleet = [
        (server_id, prefix, server_names(server_id, prefix, originals)) for server_id, prefix, originals in servers
    ]
    merged = merge_names(fleet, reserved)
    return [
        NameAssignment(sid, original, name, note)
        for sid, names in sorted(((sid, merged[sid]) for sid, _, _ in fleet), key=lambda item: item[0])
        for original, (name, note) in names.items()
    ]


def merge_names(
    servers: Iterable[tuple[str, str | None, ServerNames]], reserved: frozenset[str] = frozenset()
) -> dict[str, ServerNames]:
    """The cross-server step of `assign_names`, over names each server chose alone
    (`server_names`): unprefixed names that fall into another server's namespace or onto a
    reserved name, and unprefixed names that clash, fall back to `<server_id>__<original>`;
    what still clashes gets a 16-digit hash.

    :param servers: `(server_id, prefix or None, its server_names)` for every configured server.
    :returns: each server's final names; a server none of whose names changed gets its own
        mapping back (the same object), so a caller can tell what changed by identity.
    """
    fleet = list(servers)
    prefixes: dict[str, str | None] = {server_id: prefix for server_id, prefix, _ in fleet}
    claims = _namespace_claims(prefixes)
    moved: dict[tuple[str, str], tuple[str, str | None]] = {}
    fallen: set[tuple[str, str]] = set()
    for server_id, prefix, names in fleet:
        if prefix is None:
            for original, named in names.items():
                owner = _claimed_by_another(named[0], server_id, claims)
                if owner is not None:
                    fallen.add((server_id, original))
                    moved[(server_id, original)] = (
                        server_names(server_id, server_id, [original])[original][0],
                        f"collision: the prefix of server {owner}",
                    )
        if not reserved.isdisjoint(map(itemgetter(0), names.values())):
            for original, (name, _note) in names.items():
                if name in reserved and (server_id, original) not in fallen:
                    fallen.add((server_id, original))
                    moved[(server_id, original)] = (
                        server_names(server_id, server_id, [original])[original][0],
                        "collision: a hub tool name",
                    )

    def current() -> Iterator[tuple[tuple[str, str], tuple[str, str | None]]]:
        for server_id, _prefix, names in fleet:
            for original, named in names.items():
                key = (server_id, original)
                yield key, moved.get(key, named)

    def count() -> Counter[str]:
        """How many (server_id, original) hold each exposed name (counted in C, then the moved
        names corrected: a fleet's names are counted at every catalog change)."""
        owners: Counter[str] = Counter()
        for _server_id, _prefix, names in fleet:
            owners.update(map(itemgetter(0), names.values()))
        for (server_id, original), (name, _note) in moved.items():
            owners[by_server[server_id][original][0]] -= 1
            owners[name] += 1
        return owners

    by_server = {server_id: names for server_id, _prefix, names in fleet}
    # An unprefixed name loses every clash and falls back to `<server_id>__<original>`. A fallback
    # can only clash with another unprefixed original (prefixes are never another server's id),
    # which then falls back in turn; each round moves at least one name, so this ends.
    while True:
        owners = count()
        if max(owners.values(), default=0) <= 1:
            break
        losers = [
            key for key, (name, _) in current() if owners[name] > 1 and prefixes[key[0]] is None and key not in fallen
        ]
        if not losers:
            break
        for server_id, original in losers:
            fallen.add((server_id, original))
            moved[(server_id, original)] = (server_names(server_id, server_id, [original])[original][0], "collision")
    # What still clashes shares a head and an 8-digit hash: give those 16 digits.
    clashing = (
        [key for key, (name, _note) in current() if owners[name] > 1] if max(owners.values(), default=0) > 1 else []
    )
    for key in clashing:
        server_id, original = key
        prefix = server_id if key in fallen else prefixes[server_id]
        head = f"{prefix}{SEPARATOR}" if prefix is not None else ""
        moved[key] = (_fit(head + sanitize(original), server_id, original, force_hash=True, digits=16), "collision")
    result: dict[str, ServerNames] = {}
    for server_id, _prefix, names in fleet:
        changes = {original: moved[(server_id, original)] for original in names if (server_id, original) in moved}
        result[server_id] = {**names, **changes} if changes else names
    return result


def _namespace_claims(prefixes: dict[str, str | None]) -> dict[str, frozenset[str]]:
    """Lower-cased namespace (`<prefix>` or `<server_id>`) -> the servers that claim it."""
    claims: dict[str, set[str]] = {}
    for server_id, prefix in prefixes.items():
        for namespace in {server_id, prefix} - {None}:
            assert namespace is not None
            claims.setdefault(namespace.lower(), set()).add(server_id)
    return {namespace: frozenset(owners) for namespace, owners in claims.items()}


def _claimed_by_another(name: str, server_id: str, claims: dict[str, frozenset[str]]) -> str | None:
    """The other server whose namespace the exposed `name` starts with (`<namespace>__...`), if any."""
    head, separator, _ = name.partition(SEPARATOR)
    if not separator:
        return None
    owners = claims.get(head.lower(), frozenset()) - {server_id}
    return min(owners) if owners else None


def exposed_resource_uri(server_id: str, uri: str) -> str:
    """`<server_id>+<uri>` (also for URI templates)."""
    return f"{server_id}+{uri}"


def split_resource_uri(exposed: str) -> tuple[str, str] | None:
    """Reverse `exposed_resource_uri`: `(server_id, original uri)`, or None when there is no `+`."""
    server_id, plus, uri = exposed.partition("+")
    if not plus or not server_id:
        return None
    return server_id, uri
