"""What the catalog is made of (pure values, no I/O): the `Kind`s of definitions, a `Route` (one
exposed name and the server that owns it), a `ServerView` (one server's own listing), the
listing key every served list is ordered by, and the renamed copies of definitions kept from
one rebuild to the next. `hub.catalog` merges them; `hub.catalog_parts` prepares them per server.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, TypeVar

import mcp_types as types

from hub.pin_status import PinStatus
from hub.servers import ServerSnapshot

__all__ = [
    "EMPTY_VIEW",
    "KINDS",
    "Kind",
    "Renamed",
    "Route",
    "ServerView",
    "listing_key",
    "snapshot_offers",
    "sorted_listing",
    "template_matches",
]

Kind = Literal["tools", "resources", "resource_templates", "prompts"]
KINDS: tuple[Kind, ...] = ("tools", "resources", "resource_templates", "prompts")


@dataclass(frozen=True, slots=True)
class Route:
    """One exposed name (or URI) and the server that owns it."""

    kind: Kind
    exposed: str
    server_id: str
    original: str
    note: str | None = None
    """Why the exposed name is not the plain `<prefix>__<original>` (sanitized, shortened, collision)."""
    fallbacks: tuple[str, ...] = ()
    """The server's configured fallbacks that offer the same original right now, in order."""
    served: bool = True
    """Whether a server can answer it now: its own server is up, or a fallback offers it. False:
    the route is reserved for its server while that server is down (not listed; a call gets
    "server down", -32000)."""
    pin: PinStatus | None = None
    """The definition's standing against its pin or the lockfile (None: `pinning: off`, or a
    resource, which is not pinned)."""
    hygiene: tuple[str, ...] = ()
    """What description hygiene found or did (e.g. `description: stripped 3 invisible characters
    (zero-width)`)."""

    @property
    def held(self) -> bool:
        """Whether pinning holds the definition (hidden, refused until approved)."""
        return self.pin is not None and not self.pin.served

    @property
    def listed(self) -> bool:
        """Whether the route appears in lists: served and not held."""
        return self.served and not self.held

    def notes(self) -> list[str]:
        """Every note for people: naming, reservation, pin and hygiene."""
        notes = [self.note] if self.note else []
        if not self.served:
            notes.append(f"reserved for server {self.server_id} while it is down")
        pin_note = self.pin.note() if self.pin is not None else None
        if pin_note:
            notes.append(pin_note)
        return [*notes, *self.hygiene]


@dataclass(frozen=True, slots=True)
class ServerView:
    """One server's listing as served at `/servers/<server_id>/mcp`: original names."""

    tools: tuple[types.Tool, ...]
    resources: tuple[types.Resource, ...]
    resource_templates: tuple[types.ResourceTemplate, ...]
    prompts: tuple[types.Prompt, ...]
    tool_names: frozenset[str]
    prompt_names: frozenset[str]
    input_schemas: dict[str, dict[str, object]]


EMPTY_VIEW = ServerView((), (), (), (), frozenset(), frozenset(), {})


def template_matches(template: str, uri: str) -> bool:
    """Whether `uri` could come from URI template `template` (its literal head matches)."""
    head = template.split("{", 1)[0]
    return uri.startswith(head) and (uri == template or "{" in template)


def snapshot_offers(snapshot: ServerSnapshot, kind: Kind, original: str) -> bool:
    """Whether a server's snapshot has the original tool or prompt name, resource URI (listed,
    or matching one of its URI templates) or URI template `original`."""
    if kind == "tools":
        return any(tool.name == original for tool in snapshot.tools)
    if kind == "prompts":
        return any(prompt.name == original for prompt in snapshot.prompts)
    if kind == "resource_templates":
        return any(t.uri_template == original for t in snapshot.resource_templates)
    return any(str(r.uri) == original for r in snapshot.resources) or any(
        template_matches(t.uri_template, original) for t in snapshot.resource_templates
    )


ListedT = TypeVar("ListedT", types.Tool, types.Prompt, types.Resource, types.ResourceTemplate)


def listing_key(item: types.Tool | types.Prompt | types.Resource | types.ResourceTemplate) -> str:
    """What a listed definition is identified and ordered by: a tool's or prompt's name, a
    resource's URI, a resource template's URI template (as the list shows it)."""
    if isinstance(item, types.Resource):
        return item.uri
    if isinstance(item, types.ResourceTemplate):
        return item.uri_template
    return item.name


def sorted_listing(items: Iterable[ListedT]) -> tuple[ListedT, ...]:
    """`items` in listing-key order (code point order of `listing_key`): the order of every list
    the catalog serves, so that a page after a keyset cursor is a bisect (`hub.pages`)."""
    return tuple(sorted(items, key=listing_key))


class Renamed:
    """Renamed copies of one server's definitions (exposed name, or exposed URI or URI
    template), kept from one rebuild of its part to the next while its definition object and
    exposed name stay the same: a change copies only what changed, and the definitions that
    stay keep their identity, which the caches of `hub.pages` and `hub.prepared_lists` are
    keyed by.

    :param previous: the copies of the server's previous part (None: none yet).
    """

    def __init__(self, previous: Renamed | None = None) -> None:
        self._kept = previous.copies if previous is not None else {}
        self.copies: dict[tuple[int, str, str], tuple[object, object]] = {}
        """The copies this part used: `(id(original), field, exposed) -> (original, copy)`."""

    def __call__(self, item: ListedT, field_name: str, exposed: str) -> ListedT:
        key = (id(item), field_name, exposed)
        kept = self._kept.get(key)
        if kept is not None and kept[0] is item:  # the entry holds `item`, so its id is not reused
            copy: ListedT = kept[1]  # type: ignore[assignment]
        else:
            copy = item.model_copy(update={field_name: exposed})
        self.copies[key] = (item, copy)
        return copy
