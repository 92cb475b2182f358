"""Config of large catalogs (issue 14): the catalog mode (`catalog`: the whole catalog or search
mode) and endpoint profiles (`profiles`: curated URLs, each a subset of the catalog).

```yaml
catalog:                       # hub-wide (the /mcp endpoint and stdio); default mode: full
  mode: search                 # full | search
  always_listed: ["time__*"]   # listed beside search_tools and call_tool in search mode
  expose_found: true           # tools a client found are added to its tools/list
  max_found: 32                # most found tools kept per client (least recently found go first)
profiles:
  data-team:                   # served at /profiles/data-team/mcp
    description: Tools of the data team
    include: ["warehouse__*", "bi__*", "warehouse+*"]
    exclude: ["warehouse__drop_*"]
    catalog: {mode: search}    # only the keys given; the others come from `catalog`
policies:
  - scope: agents
    allow: ["*"]
    catalog: {mode: search}    # the first rule that applies to a caller decides its catalog too
```

Layers: the hub-wide `catalog`, then the profile's `catalog` (on `/profiles/<name>/mcp`), then
the `catalog` of the first policy rule that applies to the caller (the rule that decides its
access; a later rule is never consulted). Each layer sets only the keys it gives. The fields live
on a mixin that `hub.config` adds to `HubConfig`, so the file stays one document. Both keys take
effect on restart (a reload keeps the running values and says so).
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "DEFAULT_MAX_FOUND",
    "PROFILE_NAME_PATTERN",
    "CatalogConfig",
    "CatalogMode",
    "CatalogOverride",
    "HubCatalogSettings",
    "ProfileConfig",
]

CatalogMode = Literal["full", "search"]
"""How `tools/list` shows the catalog: `full` (every tool the caller may use) or `search` (the
synthetic `search_tools` and `call_tool`, plus `always_listed` and found tools)."""

DEFAULT_MAX_FOUND: Final = 32
"""Most found tools a client keeps in its `tools/list` with `expose_found` (tools)."""

PROFILE_NAME_PATTERN: Final = r"^[a-z][a-z0-9-]{0,31}$"
"""A profile's name: one URL path segment of lower-case letters, digits and `-` (as a server_id)."""


class _CatalogModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


def _check_globs(globs: list[str]) -> list[str]:
    for glob in globs:
        if not glob or len(glob) > 256 or any(c.isspace() for c in glob):
            raise ValueError(f"{glob!r} is not a glob of exposed names (1-256 characters, no spaces)")
    return globs


class CatalogConfig(_CatalogModel):
    """How the catalog is offered to a client (hub-wide; see the module docstring for the layers)."""

    mode: CatalogMode = "full"
    """`full` (default): `tools/list` holds every tool the caller may use. `search`: it holds
    `search_tools(query, limit)` and `call_tool(name, arguments)`, the `always_listed` tools and,
    with `expose_found`, the tools the client found; every tool the caller may use stays callable
    by its exposed name. Resources and prompts are listed in full either way."""

    always_listed: list[str] = Field(default_factory=list)
    """Globs on exposed tool names listed in search mode beside the two search tools (still only
    those the caller's policy allows). Default: none."""

    expose_found: bool = False
    """In search mode, add the tools a client's `search_tools` calls returned to that client's
    `tools/list` and tell it with `list_changed`: a handshake-era client per session
    (`notifications/tools/list_changed` on its session), a modern-era client per principal (a
    `subscriptions/listen` event to that principal's listen streams; its found set lasts
    `session_idle_timeout_seconds` after its last search). Default: false."""

    max_found: int = Field(default=DEFAULT_MAX_FOUND, ge=1, le=1000)
    """Most found tools kept per client with `expose_found`; past it, the least recently found
    leave the list. Default: 32 (tools)."""

    @field_validator("always_listed")
    @classmethod
    def _globs(cls, value: list[str]) -> list[str]:
        return _check_globs(value)


class CatalogOverride(_CatalogModel):
    """A `catalog` of a profile or a policy rule: each key given replaces the one beneath it."""

    mode: CatalogMode | None = None
    """As `catalog.mode`. Default: the layer beneath."""

    always_listed: list[str] | None = None
    """As `catalog.always_listed` (replaces the list, never merged). Default: the layer beneath."""

    expose_found: bool | None = None
    """As `catalog.expose_found`. Default: the layer beneath."""

    max_found: int | None = Field(default=None, ge=1, le=1000)
    """As `catalog.max_found` (tools). Default: the layer beneath."""

    @field_validator("always_listed")
    @classmethod
    def _globs(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _check_globs(value)

    def over(self, beneath: CatalogConfig) -> CatalogConfig:
        """`beneath` with the keys this override gives."""
        given = self.model_dump(exclude_none=True)
        return beneath.model_copy(update=given) if given else beneath


class ProfileConfig(_CatalogModel):
    """An endpoint profile: a curated URL (`/profiles/<name>/mcp`, both eras, scope `hub:call`)
    that serves the part of the catalog its globs select, intersected with each caller's policy."""

    description: str | None = Field(default=None, max_length=1024)
    """What the profile is for (shown by `mcphub routes --profile` and in the face's instructions)."""

    include: list[str] = Field(default_factory=lambda: ["*"])
    """Globs on exposed names that the profile serves: `<prefix>__<name>` for tools and prompts,
    `<server_id>+<uri>` for resources and resource templates (the names policies match). Default:
    everything."""

    exclude: list[str] = Field(default_factory=list)
    """Globs on exposed names the profile never serves, whatever `include` says. Default: none."""

    catalog: CatalogOverride | None = None
    """The profile's catalog mode over the hub-wide `catalog` (a policy rule's `catalog` still
    goes over it). Default: the hub-wide one."""

    @field_validator("include", "exclude")
    @classmethod
    def _globs(cls, value: list[str]) -> list[str]:
        return _check_globs(value)


ProfileName = Annotated[str, Field(pattern=PROFILE_NAME_PATTERN)]


class HubCatalogSettings(_CatalogModel):
    """The `catalog` and `profiles` fields of `HubConfig` (a mixin, see the module docstring)."""

    catalog: CatalogConfig = Field(default_factory=CatalogConfig)
    """How `tools/list` offers the catalog on `/mcp` and over stdio: in full (default) or in
    search mode (see `CatalogConfig`). Takes effect on restart."""

    profiles: dict[ProfileName, ProfileConfig] = Field(default_factory=dict)
    """Endpoint profiles by name (`^[a-z][a-z0-9-]{0,31}$`), each served at `/profiles/<name>/mcp`
    with the RFC 9728 metadata of that path. Default: none. Takes effect on restart."""
