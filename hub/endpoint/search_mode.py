"""Search mode (issue 14): `tools/list` offers two tools to search and call the catalog instead
of the catalog itself.

In search mode (`catalog.mode: search`: hub-wide, per profile, or per caller through the first
policy rule that applies to it; `hub.config.catalog`) a face lists, for each caller:

- `search_tools(query, limit=8)`: the tools that best answer `query`, best first, among those
  the caller may use on this face (policy, and the profile's globs), with their full
  definitions as `tools/list` would give them, both as `structuredContent` (`{"tools": [...]}`)
  and as the same JSON in a text block. Held definitions (pinning) and tools of servers that are
  down are never found; descriptions are the cleaned ones (`hub.catalog_search`).
- `call_tool(name, arguments)`: calls a tool by its exposed name. It is the direct call with
  another name in front: the face's own `tools/call` handler runs it, so every check applies
  alike (policy: a hidden tool is -32602 exactly like an unknown one; per-route rate limits
  -32029; pinning -32050; timeouts, retries, fallbacks; progress, server-to-client requests,
  multi-round-trip results and tasks are relayed).
- the tools `always_listed` selects, and with `expose_found` the tools the client found
  (`hub.endpoint.found_tools`).

Every tool the caller may use stays callable by its exposed name. Both synthetic names are
reserved (`hub.naming.RESERVED_TOOL_NAMES`), so no server's tool ever has them. A search counts
against `rate_limits.routes` as a call of a route named `search_tools`. Malformed arguments of
the two tools are tool errors (`isError`, MCP 2025-11-25: input validation errors are tool
execution errors) the model can correct.

The per-server faces (`/servers/<id>/mcp`) always list in full: they serve one server under its
original names.
"""

from __future__ import annotations

import fnmatch
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

import mcp_types as types
from cachetools import LRUCache
from mcp.server import ServerRequestContext

from hub.catalog_search import CatalogSearch
from hub.config.catalog import CatalogConfig, CatalogOverride
from hub.endpoint.found_tools import FoundTools
from hub.errors import RateLimited
from hub.naming import RESERVED_TOOL_NAMES
from hub.policy import Access, audit_logger
from hub.principals import Principal
from hub.search import DEFAULT_LIMIT, SearchHit

if TYPE_CHECKING:
    from hub.config import HubConfig
    from hub.endpoint.faces import Face

__all__ = [
    "CALL_TOOL",
    "CALL_TOOL_DEFINITION",
    "MAX_QUERY_CHARS",
    "MAX_SEARCH_LIMIT",
    "SEARCH_TOOLS",
    "SEARCH_TOOLS_DEFINITION",
    "FaceSearch",
    "search_configured",
]

logger = logging.getLogger(__name__)

SEARCH_TOOLS: Final = "search_tools"
CALL_TOOL: Final = "call_tool"

MAX_SEARCH_LIMIT: Final = 50
"""Most tools one `search_tools` call returns (a larger `limit` is lowered to it)."""
MAX_QUERY_CHARS: Final = 2000
"""Longest `query` searched (characters); a longer one is a tool error."""

SEARCH_TOOLS_DEFINITION: Final = types.Tool(
    name=SEARCH_TOOLS,
    title="Search tools",
    description=(
        "Find the tools that can do what you need, among every tool you may use here. Describe the task "
        "in plain words (for example: 'create a GitHub issue', 'what time is it in Tokyo'); returns up to "
        "`limit` tools, best first, with their full definitions. Then call one with call_tool (or by its "
        "name, if your client lists it)."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "What you want to do, in plain words.", "minLength": 1},
            "limit": {
                "type": "integer",
                "description": "Most tools to return.",
                "minimum": 1,
                "maximum": MAX_SEARCH_LIMIT,
                "default": DEFAULT_LIMIT,
            },
        },
        "required": ["query"],
    },
    output_schema={
        "type": "object",
        "properties": {
            "tools": {
                "type": "array",
                "description": "The tools found, best first, as tools/list gives them.",
                "items": {"type": "object"},
            }
        },
        "required": ["tools"],
    },
    annotations=types.ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False),
)
"""`search_tools(query, limit=8)`: what search mode lists first."""

CALL_TOOL_DEFINITION: Final = types.Tool(
    name=CALL_TOOL,
    title="Call a tool",
    description=(
        "Call a tool that search_tools found, by its name, with arguments that match its input schema. "
        "Returns that tool's result."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "The tool's name, as search_tools returned it."},
            "arguments": {"type": "object", "description": "The tool's arguments (its inputSchema)."},
        },
        "required": ["name"],
    },
)
"""`call_tool(name, arguments)`: calls any tool the caller may use, as a direct call would."""

_SYNTHETIC: Final = (CALL_TOOL_DEFINITION, SEARCH_TOOLS_DEFINITION)  # listing-key order
_SETTINGS_CACHE_SIZE: Final = 4096

DirectCall = Callable[[ServerRequestContext[Any], types.CallToolRequestParams], Awaitable[Any]]
"""A face's own `tools/call` handler for exposed names (what `call_tool` delegates to)."""


def search_configured(config: HubConfig) -> bool:
    """Whether search mode is in effect anywhere: the hub-wide `catalog`, a profile's, or a
    policy rule's (then the search index is built at start-up)."""
    overrides = [profile.catalog for profile in config.profiles.values()]
    overrides += [rule.catalog for rule in config.policies or ()]
    return config.catalog.mode == "search" or any(o is not None and o.mode == "search" for o in overrides)


def _tool_error(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=message)], is_error=True)


def _definitions(tools: Sequence[types.Tool]) -> list[dict[str, Any]]:
    """Tools as `tools/list` puts them on the wire (camelCase, unset fields left out)."""
    return [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in tools]


class FaceSearch:
    """Search mode of one face (the aggregated face, or a profile's).

    :param index: the catalog's search index, shared by every face.
    :param face: the face (its tools and what it serves).
    :param access: the policy and rate limits.
    :param catalog: the hub-wide `catalog` settings.
    :param override: the profile's `catalog`, if any (a policy rule's goes over both).
    :param found: found sets (`expose_found`); None: this face never exposes found tools.
    """

    def __init__(
        self,
        index: CatalogSearch,
        face: Face,
        access: Access,
        catalog: CatalogConfig,
        override: CatalogOverride | None = None,
        *,
        found: FoundTools | None = None,
    ) -> None:
        self.index = index
        self._face = face
        self._access = access
        self._base = override.over(catalog) if override is not None else catalog
        self.found = found
        self._settings: LRUCache[tuple[str, frozenset[str]], CatalogConfig] = LRUCache(_SETTINGS_CACHE_SIZE)
        self._by_name: tuple[Sequence[types.Tool] | None, dict[str, types.Tool]] = (None, {})
        self._always: dict[tuple[str, ...], tuple[Sequence[types.Tool], tuple[types.Tool, ...]]] = {}

    # ---- settings ----

    def settings(self, principal: Principal) -> CatalogConfig:
        """The caller's catalog settings on this face: hub-wide, then the profile's, then the
        `catalog` of the first policy rule that applies to the caller."""
        key = (principal.id, principal.scopes)
        settings = self._settings.get(key)
        if settings is None:
            rule = self._access.policy.rule_for(principal)
            settings = rule.catalog.over(self._base) if rule is not None and rule.catalog is not None else self._base
            self._settings[key] = settings
        return settings

    def searching(self, principal: Principal) -> bool:
        """Whether the caller gets search mode on this face."""
        return self.settings(principal).mode == "search"

    # ---- tools/list ----

    def listing(self, principal: Principal, client_key: str) -> list[types.Tool] | None:
        """The caller's `tools/list` in search mode, in listing-key order and already narrowed to
        what it may see; None when the caller gets the full list."""
        settings = self.settings(principal)
        if settings.mode != "search":
            return None
        tools = self._face.tools()
        chosen: dict[str, types.Tool] = {tool.name: tool for tool in _SYNTHETIC}
        for tool in self._always_listed(tools, tuple(settings.always_listed)):
            chosen[tool.name] = tool
        if settings.expose_found and self.found is not None:
            by_name = self._names(tools)
            for name in self.found.names(client_key):
                if (definition := by_name.get(name)) is not None:
                    chosen[name] = definition
        restricted = self._access.restricts(principal)
        return sorted(
            (
                tool
                for name, tool in chosen.items()
                if name in RESERVED_TOOL_NAMES
                or not restricted
                or self._access.visible(principal, self._face.route_key("tools", name))
            ),
            key=lambda tool: tool.name,
        )

    def _names(self, tools: Sequence[types.Tool]) -> dict[str, types.Tool]:
        if self._by_name[0] is not tools:
            self._by_name = (tools, {tool.name: tool for tool in tools})
        return self._by_name[1]

    def _always_listed(self, tools: Sequence[types.Tool], globs: tuple[str, ...]) -> tuple[types.Tool, ...]:
        if not globs:
            return ()
        cached = self._always.get(globs)
        if cached is not None and cached[0] is tools:
            return cached[1]
        chosen = tuple(tool for tool in tools if any(fnmatch.fnmatchcase(tool.name, glob) for glob in globs))
        self._always[globs] = (tools, chosen)
        return chosen

    # ---- tools/call ----

    def serves(self, principal: Principal, name: str) -> bool:
        """Whether `name` is one of the synthetic tools and the caller is in search mode."""
        return name in RESERVED_TOOL_NAMES and self.searching(principal)

    async def find(self, principal: Principal, query: str, limit: int) -> list[SearchHit]:
        """The tools that best answer `query` among those `principal` may use on this face."""
        face, access = self._face, self._access
        if access.restricts(principal):

            def allowed(name: str) -> bool:
                return access.visible(principal, face.route_key("tools", name))

        else:

            def allowed(name: str) -> bool:
                return face.route_key("tools", name) is not None

        return await self.index.search(query, limit, allowed)

    async def call(
        self,
        ctx: ServerRequestContext[Any],
        params: types.CallToolRequestParams,
        principal: Principal,
        client_key: str,
        direct: DirectCall,
        announce: Callable[[], Awaitable[None]],
    ) -> Any:
        """Serve a call of `search_tools` or `call_tool` (see `serves`).

        :param client_key: whose found set a search adds to (`hub.endpoint.found_tools`).
        :param direct: the face's handler of direct calls, which `call_tool` delegates to.
        :param announce: tells the client its `tools/list` changed (found tools were added).
        :raises RateLimited: a search over the caller's `rate_limits.routes` budget.
        """
        arguments = params.arguments or {}
        if params.name == CALL_TOOL:
            name, inner = arguments.get("name"), arguments.get("arguments")
            if not isinstance(name, str) or not name:
                return _tool_error("call_tool needs `name`: the name of a tool search_tools returned")
            if inner is not None and not isinstance(inner, dict):
                return _tool_error("call_tool's `arguments` must be an object (the tool's arguments)")
            if name in RESERVED_TOOL_NAMES:
                return _tool_error(f"call {name} directly, not through call_tool")
            return await direct(ctx, params.model_copy(update={"name": name, "arguments": inner}))
        return await self._search(principal, client_key, arguments, announce)

    async def _search(
        self,
        principal: Principal,
        client_key: str,
        arguments: dict[str, Any],
        announce: Callable[[], Awaitable[None]],
    ) -> types.CallToolResult:
        query, limit = arguments.get("query"), arguments.get("limit", DEFAULT_LIMIT)
        if not isinstance(query, str) or not query.strip():
            return _tool_error("search_tools needs `query`: what you want to do, in plain words")
        if len(query) > MAX_QUERY_CHARS:
            return _tool_error(f"search_tools' `query` is longer than {MAX_QUERY_CHARS} characters; say it shorter")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            return _tool_error(f"search_tools' `limit` must be an integer from 1 to {MAX_SEARCH_LIMIT}")
        wait = await self._access.limiter.check_route(principal.id, SEARCH_TOOLS)
        if wait > 0:
            audit_logger.warning("rate limited: principal=%s route=%s", principal.id, SEARCH_TOOLS)
            raise RateLimited(SEARCH_TOOLS, wait)
        hits = await self.find(principal, query, min(limit, MAX_SEARCH_LIMIT))
        settings = self.settings(principal)
        if settings.expose_found and self.found is not None and hits:
            if self.found.add(client_key, [hit.name for hit in hits], settings.max_found):
                await announce()
        found = {"tools": _definitions([hit.tool for hit in hits])}
        text = json.dumps(found, ensure_ascii=False, separators=(",", ":"))
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)], structured_content=found)
