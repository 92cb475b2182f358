"""Endpoint profiles (issue 14): curated URLs, each serving part of the catalog.

A profile (`profiles.<name>` in the config, `hub.config.catalog.ProfileConfig`) is served at
`/profiles/<name>/mcp` in both eras, under the same authentication (scope `hub:call`) and policy
as `/mcp`: a caller sees and uses what the profile's globs select *and* its policy allows.
`ProfileFace` is the aggregated face (`hub.endpoint.faces.AggregateFace`: exposed names, the same routes)
with every list filtered and every name outside the profile answered as an unknown one (-32602,
exactly as a name the policy hides), so a profile discloses nothing beyond itself.

Globs match what policies match: exposed tool and prompt names (`<prefix>__<name>`) and exposed
resource URIs and URI templates (`<server_id>+<uri>`, RFC 3986 normal form); `exclude` wins over
`include`. Filtered lists are computed once per catalog change (the catalog makes new lists on
every change), so a list request costs what it costs on `/mcp`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Final, Generic, TypeVar

import mcp_types as types

from hub.catalog import Catalog, Kind, listing_key
from hub.catalog_routes import KINDS
from hub.config.catalog import ProfileConfig
from hub.endpoint.faces import AggregateFace
from hub.uris import normalize_uri_pattern

__all__ = ["PROFILE_PREFIX", "ProfileFace"]

PROFILE_PREFIX: Final = "/profiles/"
"""Where profiles are served: `/profiles/<name>/mcp`."""

_ItemT = TypeVar("_ItemT", types.Tool, types.Prompt, types.Resource, types.ResourceTemplate)


class _Narrowed(Generic[_ItemT]):
    """One catalog list narrowed to a profile, and the list it was narrowed from."""

    def __init__(self) -> None:
        self.source: Sequence[_ItemT] | None = None
        self.view: tuple[_ItemT, ...] = ()


class ProfileFace(AggregateFace):
    """The aggregated face narrowed to one profile's globs (see the module docstring).

    :param catalog: the merged catalog.
    :param name: the profile's name (cursors of its lists are bound to it).
    :param config: its globs.
    """

    def __init__(self, catalog: Catalog, name: str, config: ProfileConfig) -> None:
        super().__init__(catalog)
        self.name = name
        self.config = config
        self.cursor_scope = f"profile:{name}"
        self._include = tuple(map(normalize_uri_pattern, config.include))
        self._exclude = tuple(map(normalize_uri_pattern, config.exclude))
        self._tools = _Narrowed[types.Tool]()
        self._resources = _Narrowed[types.Resource]()
        self._templates = _Narrowed[types.ResourceTemplate]()
        self._prompts = _Narrowed[types.Prompt]()
        self._announced: dict[Kind, tuple[object, ...]] = {}

    def selects(self, exposed: str) -> bool:
        """Whether the profile serves the exposed name or (normalised) exposed URI `exposed`."""
        return any(fnmatch.fnmatchcase(exposed, p) for p in self._include) and not any(
            fnmatch.fnmatchcase(exposed, p) for p in self._exclude
        )

    def _view(self, kind: Kind, items: Sequence[_ItemT], narrowed: _Narrowed[_ItemT]) -> tuple[_ItemT, ...]:
        """`items` (a catalog list, in listing-key order) narrowed to the profile, kept until the
        catalog replaces the list."""
        if narrowed.source is not items:
            narrowed.source = items
            narrowed.view = tuple(item for item in items if self._in(kind, listing_key(item)))
        return narrowed.view

    def _in(self, kind: Kind, key: str) -> bool:
        route = super().route_key(kind, key)
        return route is not None and self.selects(route[1])

    def tools(self) -> Sequence[types.Tool]:
        return self._view("tools", super().tools(), self._tools)

    def resources(self) -> Sequence[types.Resource]:
        return self._view("resources", super().resources(), self._resources)

    def resource_templates(self) -> Sequence[types.ResourceTemplate]:
        return self._view("resource_templates", super().resource_templates(), self._templates)

    def prompts(self) -> Sequence[types.Prompt]:
        return self._view("prompts", super().prompts(), self._prompts)

    def resolve_tool(self, name: str) -> tuple[str, str] | None:
        return super().resolve_tool(name) if self.selects(name) else None

    def resolve_prompt(self, name: str) -> tuple[str, str] | None:
        return super().resolve_prompt(name) if self.selects(name) else None

    def resolve_uri(self, uri: str) -> tuple[str, str] | None:
        key = super().route_key("resources", uri)
        return super().resolve_uri(uri) if key is not None and self.selects(key[1]) else None

    def input_schema(self, name: str) -> dict[str, object] | None:
        return super().input_schema(name) if self.selects(name) else None

    def claimed_by(self, name: str) -> str | None:
        return super().claimed_by(name) if self.selects(name) else None

    def route_key(self, kind: Kind, name: str) -> tuple[str, str] | None:
        key = super().route_key(kind, name)
        return key if key is not None and self.selects(key[1]) else None

    def changed(self, kinds: frozenset[Kind]) -> frozenset[Kind]:
        """Of the catalog lists that changed (`kinds`), those whose profile view differs from
        the one last announced (so a change outside the profile sends no `list_changed`)."""
        lists = {
            "tools": self.tools,
            "resources": self.resources,
            "resource_templates": self.resource_templates,
            "prompts": self.prompts,
        }
        different: set[Kind] = set()
        for kind in KINDS:
            if kind not in kinds:
                continue
            view = tuple(lists[kind]())
            if self._announced.get(kind, ()) != view:
                different.add(kind)
            self._announced[kind] = view
        return frozenset(different)
