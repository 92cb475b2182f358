"""The hub's MCP server faces: what one MCP server the endpoint serves offers, and how its
names resolve to `(server_id, original)`.

- `AggregateFace`: the whole catalog under exposed names (`/mcp`, and stdio);
- `ServerFace`: one server under its original names (`/servers/<id>/mcp`);
- `hub.endpoint.profiles.ProfileFace`: the aggregated face narrowed to a profile's globs.

A face is data and lookups only. The MCP requests a face answers are served by
`hub.endpoint.handlers.FaceHandlers`, inside the middleware of `hub.endpoint.request_boundary` (where an error
becomes JSON-RPC), on the lowlevel `mcp` Server that `hub.endpoint.mcp_server.build_mcp_server` wires.

Resource URIs resolve in RFC 3986 normal form (`hub.uris`), so the policy and the router see
one spelling of each.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

import mcp_types as types

from hub.catalog import Catalog, Kind
from hub.endpoint.resource_links import expose_uris
from hub.naming import exposed_resource_uri
from hub.pin_status import DefinitionHeld
from hub.uris import normalize_uri

__all__ = ["AggregateFace", "Face", "ServerFace"]

_ResultT = TypeVar("_ResultT", bound=types.Result)


class Face(Protocol):
    """What one MCP server face offers and how its names resolve to (server_id, original)."""

    cursor_scope: str | None
    """What the cursors of the face's lists are bound to (`hub.pages`): None for the aggregated
    face, the server_id of a per-server face, `profile:<name>` of a profile's."""

    def tools(self) -> Sequence[types.Tool]: ...
    def resources(self) -> Sequence[types.Resource]: ...
    def resource_templates(self) -> Sequence[types.ResourceTemplate]: ...
    def prompts(self) -> Sequence[types.Prompt]: ...
    def resolve_tool(self, name: str) -> tuple[str, str] | None: ...
    def resolve_prompt(self, name: str) -> tuple[str, str] | None: ...
    def resolve_uri(self, uri: str) -> tuple[str, str] | None: ...
    def input_schema(self, name: str) -> dict[str, object] | None: ...
    def claimed_by(self, name: str) -> str | None: ...
    def hold(self, kind: Kind, owner: tuple[str, str], name: str) -> DefinitionHeld | None:
        """The refusal for a held definition (pinning) of `owner` (`(server_id, original)`), or None."""
        ...

    def route_key(self, kind: Kind, name: str) -> tuple[str, str] | None:
        """`(server_id, exposed name or URI)` of `name` as this face shows it: what the policy
        decides on, whichever face is used."""
        ...

    def expose_result(self, server_id: str, result: _ResultT) -> _ResultT:
        """`result` from `server_id` with the resource URIs inside it (resource links, embedded
        resources, `contents[].uri`) in the form this face addresses resources by."""
        ...


class AggregateFace:
    """The whole catalog under exposed names (`/mcp`)."""

    cursor_scope: str | None = None

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    def tools(self) -> Sequence[types.Tool]:
        return self._catalog.tools

    def resources(self) -> Sequence[types.Resource]:
        return self._catalog.resources

    def resource_templates(self) -> Sequence[types.ResourceTemplate]:
        return self._catalog.resource_templates

    def prompts(self) -> Sequence[types.Prompt]:
        return self._catalog.prompts

    def resolve_tool(self, name: str) -> tuple[str, str] | None:
        route = self._catalog.tool_route(name)
        return (route.server_id, route.original) if route else None

    def resolve_prompt(self, name: str) -> tuple[str, str] | None:
        route = self._catalog.prompt_route(name)
        return (route.server_id, route.original) if route else None

    def resolve_uri(self, uri: str) -> tuple[str, str] | None:
        return self._catalog.resource_owner(uri)

    def input_schema(self, name: str) -> dict[str, object] | None:
        return self._catalog.tool_input_schema(name)

    def claimed_by(self, name: str) -> str | None:
        return self._catalog.claimed_by(name)

    def hold(self, kind: Kind, owner: tuple[str, str], name: str) -> DefinitionHeld | None:
        return self._catalog.hold(kind, owner[0], owner[1], name)

    def route_key(self, kind: Kind, name: str) -> tuple[str, str] | None:
        if kind == "tools" or kind == "prompts":
            route = self._catalog.tool_route(name) if kind == "tools" else self._catalog.prompt_route(name)
            return (route.server_id, name) if route else None
        owner = self._catalog.resource_owner(name)  # normalised: the policy decides on the normal form
        return (owner[0], exposed_resource_uri(*owner)) if owner else None

    def expose_result(self, server_id: str, result: _ResultT) -> _ResultT:
        return expose_uris(server_id, result)


class ServerFace:
    """One server under its original names (`/servers/<server_id>/mcp`)."""

    def __init__(self, catalog: Catalog, server_id: str) -> None:
        self._catalog = catalog
        self._server_id = server_id
        self.cursor_scope: str | None = server_id

    def tools(self) -> Sequence[types.Tool]:
        return self._catalog.server_view(self._server_id).tools

    def resources(self) -> Sequence[types.Resource]:
        return self._catalog.server_view(self._server_id).resources

    def resource_templates(self) -> Sequence[types.ResourceTemplate]:
        return self._catalog.server_view(self._server_id).resource_templates

    def prompts(self) -> Sequence[types.Prompt]:
        return self._catalog.server_view(self._server_id).prompts

    def resolve_tool(self, name: str) -> tuple[str, str] | None:
        return (self._server_id, name) if name in self._catalog.server_view(self._server_id).tool_names else None

    def resolve_prompt(self, name: str) -> tuple[str, str] | None:
        return (self._server_id, name) if name in self._catalog.server_view(self._server_id).prompt_names else None

    def resolve_uri(self, uri: str) -> tuple[str, str] | None:
        return self._server_id, normalize_uri(uri)

    def input_schema(self, name: str) -> dict[str, object] | None:
        return self._catalog.server_view(self._server_id).input_schemas.get(name)

    def claimed_by(self, name: str) -> str | None:
        return self._server_id

    def hold(self, kind: Kind, owner: tuple[str, str], name: str) -> DefinitionHeld | None:
        return self._catalog.hold(kind, owner[0], owner[1], name)

    def route_key(self, kind: Kind, name: str) -> tuple[str, str] | None:
        if kind == "tools" or kind == "prompts":
            exposed = self._catalog.exposed_name(kind, self._server_id, name)
            return (self._server_id, exposed) if exposed else None
        return self._server_id, exposed_resource_uri(self._server_id, normalize_uri(name))

    def expose_result(self, server_id: str, result: _ResultT) -> _ResultT:
        return result  # this face addresses resources by their original URIs
