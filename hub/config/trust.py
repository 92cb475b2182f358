"""Config of the catalog's trust features: tool-definition pinning (`pinning`, `lockfile`) and
description hygiene (`descriptions`), globally and per server.

The fields live on two mixins that `hub.config` adds to `HubConfig` and to every server entry
(`ServerSettings`), so the file shape stays one document:

```yaml
pinning: warn                 # off | warn | block | locked (default warn)
lockfile: hub.lock            # default: hub.lock beside the config file
descriptions: {sanitize: strip, max_chars: 4096}
servers:
  fx:
    command: ...
    pinning: block            # this server only (default: the global value)
    descriptions: {max_chars: 16384}   # unset keys come from the global value
```
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from hub.config import HubConfig

__all__ = [
    "DEFAULT_MAX_DESCRIPTION_CHARS",
    "LOCKFILE_NAME",
    "DescriptionsConfig",
    "DescriptionsOverride",
    "HubTrustSettings",
    "PinningMode",
    "SanitizeMode",
    "ServerTrustSettings",
    "descriptions_for",
    "force_locked",
    "lockfile_path",
    "pinning_for",
]

PinningMode = Literal["off", "warn", "block", "locked"]
"""How a server's tool, prompt and resource-template definitions are checked (`hub.pins`)."""

SanitizeMode = Literal["strip", "flag", "off"]
"""What description hygiene does with invisible and control characters (`hub.hygiene`)."""

LOCKFILE_NAME: Final = "hub.lock"
"""The lockfile's default name, beside the config file."""

DEFAULT_MAX_DESCRIPTION_CHARS: Final = 4096
"""Longest description served, in characters (a longer one is cut with a visible marker)."""


class _TrustModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class DescriptionsConfig(_TrustModel):
    """Hygiene of the descriptions the hub serves: tools, prompts (and their arguments),
    resources, resource templates, and every `description` inside a tool's `inputSchema` and
    `outputSchema`. Pins fingerprint the definition as the server sent it, before this."""

    sanitize: SanitizeMode = "strip"
    """`strip` (default): remove invisible and control characters (Unicode tags U+E0000-E007F,
    bidi overrides and isolates U+202A-202E and U+2066-2069, zero-width U+200B-200D, U+2060 and
    U+FEFF, C0 controls other than tab and newline, DEL, C1 controls) and note it on the route;
    `flag`: leave them in and note it; `off`: serve descriptions unchanged (not even cut)."""

    max_chars: int = Field(default=DEFAULT_MAX_DESCRIPTION_CHARS, ge=64, le=1_048_576)
    """Longest description served, in characters; a longer one is cut (ending with a visible
    marker that says so) unless `sanitize` is `off`. Default: 4096."""


class DescriptionsOverride(_TrustModel):
    """A server's `descriptions:`; each key left out takes the global value."""

    sanitize: SanitizeMode | None = None
    """As the global `descriptions.sanitize`. Default: the global value."""

    max_chars: int | None = Field(default=None, ge=64, le=1_048_576)
    """As the global `descriptions.max_chars`. Default: the global value."""


class ServerTrustSettings(_TrustModel):
    """Per-server trust settings (a mixin of `hub.config.server_settings.ServerSettings`)."""

    pinning: PinningMode | None = None
    """Tool-definition pinning of this server: `off`, `warn`, `block` or `locked` (see the
    global `pinning`). Default: the global value."""

    descriptions: DescriptionsOverride | None = None
    """Description hygiene of this server's definitions. Default: the global `descriptions`."""


class HubTrustSettings(_TrustModel):
    """Hub-wide trust settings (a mixin of `HubConfig`)."""

    pinning: PinningMode = "warn"
    """Tool-definition pinning (trust on first use): every tool, prompt and resource template is
    fingerprinted (SHA-256 of canonical JSON) and the first listing of each server is pinned in
    the state file. Afterwards a changed or new definition is, with `warn` (default), served but
    flagged (a `hub.audit` warning, `mcphub_definition_changes_total`, a route note); with
    `block`, hidden and refused (JSON-RPC -32050) until `mcphub pins approve`. `locked` serves
    only definitions that match the lockfile and pins nothing; `off` checks nothing."""

    lockfile: str | None = None
    """The lockfile `mcphub lock` writes and `pinning: locked` enforces (a relative path is taken
    from the config file's directory). Default: `hub.lock` beside the config file (the current
    directory for a config that came from no file)."""

    descriptions: DescriptionsConfig = Field(default_factory=DescriptionsConfig)
    """Description hygiene (invisible characters, length), per server in `servers.<id>.descriptions`."""


def pinning_for(config: HubConfig, server_id: str) -> PinningMode:
    """The pinning mode of one server: its own `pinning`, else the global one."""
    server = config.servers.get(server_id)
    own = server.pinning if server is not None else None
    return own if own is not None else config.pinning


def descriptions_for(config: HubConfig, server_id: str) -> DescriptionsConfig:
    """The description hygiene of one server: the global `descriptions` with its own keys over it."""
    server = config.servers.get(server_id)
    own = server.descriptions if server is not None else None
    if own is None:
        return config.descriptions
    return config.descriptions.model_copy(update=own.model_dump(exclude_none=True))


def lockfile_path(config: HubConfig) -> Path:
    """Where the lockfile is: `lockfile` (relative to the config file's directory), else
    `hub.lock` beside the config file, else `./hub.lock` for a config that came from no file."""
    base = Path(config.source).parent if config.source else Path.cwd()
    return base / Path(config.lockfile or LOCKFILE_NAME).expanduser()


def force_locked(config: HubConfig) -> HubConfig:
    """`config` with every server locked (`mcphub serve --locked`): the global `pinning` is
    `locked` and no server overrides it."""
    servers = {sid: server.model_copy(update={"pinning": None}) for sid, server in config.servers.items()}
    return config.model_copy(update={"pinning": "locked", "servers": servers})
