"""The hub's configuration: YAML (or JSON) -> validated pydantic models.

The file shape is documented in DESIGN.md ("Config file") and in README.md; `config/hub.schema.json`
is generated from these models (`python -m hub.config --schema`), and a test fails when it is stale.

Besides the hub's own `servers:` map, a file may hold the de-facto `mcpServers` map used by Claude
Desktop, Cursor and VS Code (`command/args/env` or `url/type`); its entries are accepted as-is and
merged into `servers`.

String values may reference the environment as `${VAR}` or `${VAR:-default}`; `$${` is a literal
`${`. Every error is a `ConfigError` naming the file, the key path and the reason.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hub.errors import ConfigError

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "SERVER_ID_PATTERN",
    "FilterConfig",
    "HubConfig",
    "ListenConfig",
    "ServerConfig",
    "json_schema",
    "load_config",
    "parse_config",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_TIMEOUT_SECONDS = 60.0
DEFAULT_STARTUP_TIMEOUT_SECONDS = 30.0
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024  # bytes (4 MiB), the SDK's own default

SERVER_ID_PATTERN = r"^[a-z][a-z0-9-]{0,31}$"
"""A server_id: lowercase, starts with a letter, at most 32 characters, no `_` and no `+`, so
`<server_id>__<tool>` and `<server_id>+<uri>` are unambiguous."""

_PREFIX_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$"
_ENV_REF = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class ListenConfig(_Model):
    """Where the endpoint listens."""

    host: str = DEFAULT_HOST
    """Interface to bind. Default: 127.0.0.1 (loopback only)."""

    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    """TCP port. Default: 8765; 0 picks a free port."""


class FilterConfig(_Model):
    """Glob filters (fnmatch syntax, case-sensitive) on a server's original names."""

    include: list[str] = Field(default_factory=lambda: ["*"])
    """Names to keep. Default: everything."""

    exclude: list[str] = Field(default_factory=list)
    """Names to drop; wins over `include`. Default: nothing."""

    def allows(self, name: str) -> bool:
        """Whether `name` matches an `include` glob and no `exclude` glob."""
        return any(fnmatch.fnmatchcase(name, p) for p in self.include) and not any(
            fnmatch.fnmatchcase(name, p) for p in self.exclude
        )


class ServerConfig(_Model):
    """One server in the fleet: a stdio subprocess (`command`) or a remote server (`url`)."""

    command: str | None = None
    """Executable of a stdio server, looked up on PATH."""

    args: list[str] = Field(default_factory=list)
    """Arguments of a stdio server."""

    env: dict[str, str] = Field(default_factory=dict)
    """Environment of a stdio server. Only these plus a safe minimum (HOME, LOGNAME, PATH, SHELL,
    TERM, USER) reach the child; never the hub's own environment."""

    cwd: str | None = None
    """Working directory of a stdio server. Default: the hub's."""

    url: str | None = None
    """Endpoint URL of a remote server (http or https)."""

    transport: Literal["streamable_http", "sse"] | None = None
    """How to reach a remote server: `streamable_http` (default) or legacy `sse`."""

    headers: dict[str, str] = Field(default_factory=dict)
    """Extra HTTP headers sent to a remote server (e.g. `Authorization`). Never logged."""

    protocol: Literal["auto", "legacy", "modern", "both"] = "auto"
    """Protocol era to speak: `auto` probes `server/discover` (2026-07-28) and falls back to the
    `initialize` handshake; `legacy` forces the handshake era; `modern` forces 2026-07-28;
    `both` (a server that serves both eras) keeps a modern-era connection and, from the first
    call of a handshake-era client on, a second handshake-era one (a second process for a stdio
    server), so each client gets the server's behaviour of its own era (e.g. sampling pushed
    mid-call rather than an `InputRequiredResult`)."""

    timeout_seconds: float = Field(default=DEFAULT_TIMEOUT_SECONDS, gt=0, le=86_400)
    """Seconds to wait for the answer to a request (call, read, get, complete, list) before it
    fails with a timeout naming the server, and the server is sent a cancellation. Default: 60."""

    startup_timeout_seconds: float = Field(default=DEFAULT_STARTUP_TIMEOUT_SECONDS, gt=0, le=3600)
    """Seconds a server may take to start (or connect) and negotiate before the attempt counts
    as failed and is retried with backoff. Default: 30."""

    prefix: str | Literal[False] | None = None
    """Namespace of this server's tool and prompt names (`<prefix>__<name>`). Default: the
    server_id. `false` exposes original names (a collision then falls back to the server_id)."""

    tools: FilterConfig = Field(default_factory=FilterConfig)
    """Which of the server's tools to expose, by original name."""

    enabled: bool = True
    """`false` keeps the entry in the file without starting it."""

    isolation: Literal["shared", "per_client"] = "shared"
    """`shared`: one server connection serves every client. `per_client`: each client session
    (handshake era) or principal (modern era) gets a server connection of its own, started on
    its first call and closed when the session ends. Use `per_client` for handshake-era stdio or
    SSE servers that send sampling/elicitation/roots requests mid-call (their requests carry no
    link to the call that caused them, so on a shared connection they can be relayed only while
    exactly one call is in flight) and for servers that keep per-user state."""

    @field_validator("prefix")
    @classmethod
    def _check_prefix(cls, value: str | Literal[False] | None) -> str | Literal[False] | None:
        if value is True:  # type: ignore[comparison-overlap]
            raise ValueError("prefix must be a string or false")
        if isinstance(value, str) and (not re.fullmatch(_PREFIX_PATTERN, value) or "--" in value or len(value) > 32):
            raise ValueError(
                f"prefix {value!r} must be 1-32 letters, digits or inner '-' (it is joined to names with '__')"
            )
        return value

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"https?://[^\s/]+(/\S*)?\Z", value):
            raise ValueError("url must be an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> ServerConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("give exactly one of 'command' (stdio server) or 'url' (remote server)")
        remote_only: tuple[str, ...] = ("transport", "headers")
        stdio_only: tuple[str, ...] = ("args", "env", "cwd")
        misplaced, kind = (
            (remote_only, "a remote server ('url')") if self.command else (stdio_only, "a stdio server ('command')")
        )
        wrong = [name for name in misplaced if name in self.model_fields_set]
        if wrong:
            raise ValueError(f"{', '.join(wrong)} only apply to {kind}")
        return self

    @property
    def kind(self) -> Literal["stdio", "streamable_http", "sse"]:
        """How the hub reaches this server."""
        if self.command is not None:
            return "stdio"
        return self.transport or "streamable_http"

    def exposed_prefix(self, server_id: str) -> str | None:
        """The namespace used for tool and prompt names, or None for original names."""
        if self.prefix is False:
            return None
        return self.prefix or server_id


ServerId = Annotated[str, Field(pattern=SERVER_ID_PATTERN)]


class HubConfig(_Model):
    """The whole hub configuration file."""

    listen: ListenConfig = Field(default_factory=ListenConfig)
    """Where the HTTP endpoint listens."""

    public_url: str | None = None
    """The hub's public base URL (e.g. `https://hub.example.com`), when it sits behind a proxy;
    its host is added to the allowed Host/Origin values."""

    allowed_hosts: list[str] = Field(default_factory=list)
    """Extra Host header values to accept (`host` or `host:port`, `host:*` for any port); the
    listen address and `public_url` are always allowed (DNS-rebinding protection)."""

    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024)
    """Largest accepted request body, in bytes. Default: 4 MiB; larger bodies get HTTP 413."""

    input_required_ttl_seconds: float = Field(default=60.0, gt=0, le=3600)
    """How long a modern-era client has to answer an `InputRequiredResult` the hub made for a
    handshake-era server's mid-call request (sampling, elicitation, roots) before the suspended
    server-side call is cancelled and its `requestState` handle expires. Default: 60."""

    servers: dict[ServerId, ServerConfig] = Field(default_factory=dict)
    """The fleet, keyed by server_id (`^[a-z][a-z0-9-]{0,31}$`)."""

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^\s/]+/?", value):
            raise ValueError(f"public_url must be a base URL like https://hub.example.com, got {value!r}")
        return value.rstrip("/") if value else value


def _interpolate(value: Any, path: str, env: Mapping[str, str], errors: list[tuple[str, str]]) -> Any:
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            name, default = match.group(1), match.group(2)
            if default is not None:
                return env.get(name) or default  # `:-` also replaces an empty value, as in sh
            if name in env:
                return env[name]
            errors.append((path, f"environment variable ${{{name}}} is not set"))
            return ""

        return _ENV_REF.sub(substitute, value)
    if isinstance(value, dict):
        return {
            key: _interpolate(item, f"{path}.{key}" if path else str(key), env, errors) for key, item in value.items()
        }
    if isinstance(value, list):
        return [_interpolate(item, f"{path}[{index}]", env, errors) for index, item in enumerate(value)]
    return value


def _server_id_from_client_name(name: str) -> str:
    """mcpServers keys are free-form ("GitHub", "my_server"); derive a valid server_id."""
    slug = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    slug = re.sub(r"-{2,}", "-", slug)
    if slug and not slug[0].isalpha():
        slug = f"s-{slug}"
    return slug[:32].rstrip("-")


def _import_mcp_servers(raw: Any, errors: list[tuple[str, str]], origins: dict[str, str]) -> dict[str, Any]:
    """Translate the Claude Desktop / Cursor / VS Code `mcpServers` map into `servers` entries;
    `origins` maps each derived server_id to its key path in the file (`mcpServers.<name>`)."""
    if not isinstance(raw, dict):
        errors.append(("mcpServers", "must be a mapping of server names to entries"))
        return {}
    servers: dict[str, Any] = {}
    for name, entry in raw.items():
        path = f"mcpServers.{name}"
        if not isinstance(entry, dict):
            errors.append((path, "must be a mapping"))
            continue
        server_id = _server_id_from_client_name(str(name))
        if not re.fullmatch(SERVER_ID_PATTERN, server_id):
            errors.append((path, f"cannot derive a server_id from {name!r}"))
            continue
        if server_id in servers:
            errors.append((path, f"derives the server_id {server_id!r}, already used by another entry"))
            continue
        origins[server_id] = path
        converted: dict[str, Any] = {}
        for key, value in entry.items():
            if key == "type" and not isinstance(value, str):
                errors.append((f"{path}.type", "must be a string (stdio, http, streamable-http or sse)"))
            elif key == "type":
                # Claude Code/VS Code say "stdio", "http" or "streamable-http", "sse".
                kinds = {
                    "http": "streamable_http",
                    "streamable-http": "streamable_http",
                    "streamableHttp": "streamable_http",
                    "sse": "sse",
                    "stdio": None,
                }
                if value not in kinds:
                    errors.append((f"{path}.type", f"unknown transport type {value!r}"))
                elif kinds[value] is not None:
                    converted["transport"] = kinds[value]
            elif key in ("disabled",):
                converted["enabled"] = not bool(value)
            elif key in ("autoApprove", "alwaysAllow", "envFile", "description"):
                continue  # host-side UI settings with no meaning for the hub
            else:
                converted[key] = value
        servers[server_id] = converted
    return servers


def parse_config(data: Any, *, file: str = "<config>", env: Mapping[str, str] | None = None) -> HubConfig:
    """Validate already-parsed YAML/JSON data into a `HubConfig`.

    :param data: the document (a mapping), as `yaml.safe_load` returns it.
    :param file: the name used in error messages.
    :param env: the environment for `${VAR}` interpolation. Default: `os.environ`.
    :raises ConfigError: on any problem, naming `file`, the key path and the reason; when there
        are several, all are listed, separated by `; `.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("the document must be a mapping (servers:, listen:, ...)", file=file)
    errors: list[tuple[str, str]] = []
    data = _interpolate(data, "", os.environ if env is None else env, errors)
    origins: dict[str, str] = {}
    imported = _import_mcp_servers(data.pop("mcpServers"), errors, origins) if "mcpServers" in data else {}
    if imported:
        servers = data.get("servers") or {}
        if not isinstance(servers, dict):
            errors.append(("servers", "must be a mapping of server_id to entries"))
        else:
            for server_id in sorted(imported.keys() & servers.keys()):
                errors.append((origins[server_id], f"server_id {server_id!r} is also defined under servers"))
            data["servers"] = {**imported, **servers}
    if errors:
        raise _config_error(errors, file)
    try:
        config = HubConfig.model_validate(data)
    except ValidationError as exc:
        raise _config_error(_validation_problems(exc, origins), file) from None
    problems = _prefix_problems(config, origins)
    if problems:
        raise _config_error(problems, file)
    return config


def _prefix_problems(config: HubConfig, origins: Mapping[str, str]) -> list[tuple[str, str]]:
    """Two servers may not share a prefix, and a prefix may not be another server's id (both
    would make `<prefix>__<name>` ambiguous). One problem per clashing prefix."""
    problems: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    reported: set[str] = set()
    for server_id, server in config.servers.items():
        prefix = server.exposed_prefix(server_id)
        if prefix is None:
            continue
        where = f"{origins.get(server_id, f'servers.{server_id}')}.prefix"
        if prefix in reported:
            continue
        if prefix in seen:
            problems.append((where, f"servers {seen[prefix]!r} and {server_id!r} both use the prefix {prefix!r}"))
            reported.add(prefix)
        elif prefix != server_id and prefix in config.servers:
            problems.append((where, f"server {server_id!r} uses the prefix {prefix!r}, which is another server's id"))
            reported.add(prefix)
        seen.setdefault(prefix, server_id)
    return problems


def _config_error(problems: list[tuple[str, str]], file: str) -> ConfigError:
    """One ConfigError for all problems: the first names the key path, the rest follow."""
    (first_path, first_reason), rest = problems[0], problems[1:]
    return ConfigError(
        "; ".join([first_reason, *(f"{path}: {reason}" for path, reason in rest)]),
        file=file,
        key_path=first_path or None,
    )


def _validation_problems(exc: ValidationError, origins: Mapping[str, str]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for error in exc.errors(include_url=False):
        location = [str(part) for part in error["loc"]]
        if len(location) >= 2 and location[0] == "servers" and location[1] in origins:
            location = [*origins[location[1]].split(".", 1), *location[2:]]
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = f"unknown key {location[-1]!r}"
        elif error["type"] == "string_pattern_mismatch" and len(location) >= 2 and location[0] == "servers":
            message = f"server_id {location[1]!r} must match {SERVER_ID_PATTERN}"
            location = location[:2]
        problems.append((".".join(location), message))
    return problems


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses duplicate keys (a duplicate server_id must not silently win)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
        if key in mapping:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        mapping[key] = loader.construct_object(value_node, deep=deep)  # type: ignore[no-untyped-call]
    return mapping


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_config(path: str | Path, *, env: Mapping[str, str] | None = None) -> HubConfig:
    """Read and validate a config file (YAML, or JSON, which is YAML too).

    :raises ConfigError: the file cannot be read or parsed, or a value is wrong.
    """
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"cannot read the file: {reason}", file=file) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}{problem}", file=file) from None
    return parse_config(data, file=file, env=env)


def json_schema() -> dict[str, Any]:
    """The JSON schema of the config file (what `config/hub.schema.json` holds)."""
    schema = HubConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "MCP federation hub configuration"
    return schema


if __name__ == "__main__":  # pragma: no cover - `python -m hub.config --schema > config/hub.schema.json`
    print(json.dumps(json_schema(), indent=2, sort_keys=True))
