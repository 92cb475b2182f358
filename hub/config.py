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
    "BreakerConfig",
    "FilterConfig",
    "HubConfig",
    "ListenConfig",
    "ReplicaConfig",
    "RetryConfig",
    "ServerConfig",
    "TracingConfig",
    "json_schema",
    "load_config",
    "parse_config",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_TIMEOUT_SECONDS = 60.0
DEFAULT_STARTUP_TIMEOUT_SECONDS = 30.0
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024  # bytes (4 MiB), the SDK's own default
DEFAULT_MAX_RESULT_BYTES = 1024 * 1024  # bytes (1 MiB), FastMCP's response limit (SECURITY.md figures)
DEFAULT_MAX_CONCURRENCY = 64
DEFAULT_MAX_QUEUE = 256
DEFAULT_HEALTH_CHECK_INTERVAL_SECONDS = 30.0
DEFAULT_DRAIN_TIMEOUT_SECONDS = 60.0  # Envoy suggests 60-90 s between services
DEFAULT_SESSION_IDLE_TIMEOUT_SECONDS = 1800.0  # the SDK's StreamableHTTPSessionManager default
DEFAULT_MAX_RESTARTS = 5
DEFAULT_RESTART_WINDOW_SECONDS = 60.0
DEFAULT_MAX_LINE_BYTES = 4 * 1024 * 1024  # bytes (4 MiB): a stdio stdout line

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


class RetryConfig(_Model):
    """When and how often a failed request is sent again (hub/resilience.py has the rules).

    A request is retried only when it provably never reached a server (not connected, circuit
    open, queue full, refused before the write) or its tool is listed under `idempotent`; a
    result with `isError: true` is an answer and never retried. Rounds after the first wait a
    jittered exponential backoff and need the server's retry budget (Envoy's: retries in flight
    <= `budget_ratio` x active calls, at least `budget_min`).
    """

    attempts: int = Field(default=3, ge=1, le=10)
    """Rounds over the route's servers (replicas and fallbacks) per request, the first included.
    Default: 3; 1 disables retry (moving to a not yet tried replica or fallback still happens)."""

    backoff_initial_seconds: float = Field(default=0.1, gt=0, le=60)
    """Upper bound of the first backoff, in seconds; each round doubles it (full jitter: the
    wait is uniform in [0, bound]). Default: 0.1."""

    backoff_max_seconds: float = Field(default=1.0, gt=0, le=300)
    """Cap of the backoff bound, in seconds (Envoy: 10x the base). Default: 1."""

    budget_ratio: float = Field(default=0.2, ge=0, le=1)
    """Retries in flight to this server may be at most this share of its active calls.
    Default: 0.2 (Envoy's retry budget)."""

    budget_min: int = Field(default=3, ge=0, le=1000)
    """Retries in flight always allowed, whatever the ratio. Default: 3 (Envoy's)."""


class BreakerConfig(_Model):
    """Circuit breaker per server connection (per replica member): it opens after `failures`
    consecutive failures (timeouts, broken connections, JSON-RPC internal errors; never a tool's
    `isError` result), fails calls fast while open, lets one probe through after the cool-down
    (half-open) and closes on its success; the cool-down doubles each time it re-opens."""

    failures: int = Field(default=5, ge=1, le=1000)
    """Consecutive failures that open the circuit. Default: 5 (Envoy outlier detection)."""

    cooldown_seconds: float = Field(default=30.0, gt=0, le=3600)
    """Seconds the circuit stays open before a half-open probe. Default: 30."""

    cooldown_max_seconds: float = Field(default=300.0, gt=0, le=86_400)
    """Cap of the doubling cool-down, in seconds. Default: 300."""


class ReplicaConfig(_Model):
    """One member of a replicated server: how to reach it (stdio `command` or remote `url`).
    Every other setting (timeouts, filters, retry, ...) comes from the logical server."""

    command: str | None = None
    """Executable of a stdio member, looked up on PATH."""

    args: list[str] = Field(default_factory=list)
    """Arguments of a stdio member."""

    env: dict[str, str] = Field(default_factory=dict)
    """Environment of a stdio member (plus the safe minimum, as for a server)."""

    cwd: str | None = None
    """Working directory of a stdio member."""

    url: str | None = None
    """Endpoint URL of a remote member (http or https)."""

    transport: Literal["streamable_http", "sse"] | None = None
    """How to reach a remote member: `streamable_http` (default) or legacy `sse`."""

    headers: dict[str, str] = Field(default_factory=dict)
    """Extra HTTP headers sent to a remote member. Never logged."""

    @model_validator(mode="after")
    def _one_kind(self) -> ReplicaConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("give exactly one of 'command' (stdio member) or 'url' (remote member)")
        return self


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

    protocol: Literal["auto", "legacy", "modern"] = "auto"
    """Protocol era to speak: `auto` probes `server/discover` (2026-07-28) and falls back to the
    `initialize` handshake; `legacy` forces the handshake era; `modern` forces 2026-07-28."""

    timeout_seconds: float = Field(default=DEFAULT_TIMEOUT_SECONDS, gt=0, le=86_400)
    """Seconds to wait for the answer to a request (call, read, get, complete, list) before it
    fails with a timeout naming the server, and the server is sent a cancellation. Default: 60."""

    startup_timeout_seconds: float = Field(default=DEFAULT_STARTUP_TIMEOUT_SECONDS, gt=0, le=3600)
    """Seconds a server may take to start (or connect) and negotiate before the attempt counts
    as failed and is retried with backoff. Default: 30."""

    max_restarts: int = Field(default=DEFAULT_MAX_RESTARTS, ge=0, le=1000)
    """Crash-loop cap of a stdio server: how many times it is restarted (jittered exponential
    backoff, 0.5 s doubling to 30 s) within `restart_window_seconds`. One more exit in the window
    leaves it `failed` until a reload or `mcphub restart <server_id>`. Default: 5."""

    restart_window_seconds: float = Field(default=DEFAULT_RESTART_WINDOW_SECONDS, gt=0, le=86_400)
    """The sliding window, in seconds, over which `max_restarts` counts exits. Default: 60."""

    max_line_bytes: int = Field(default=DEFAULT_MAX_LINE_BYTES, ge=1024, le=1024**3)
    """Longest stdout line, in bytes, a stdio server may write; a longer line kills and restarts
    the child (its in-flight calls fail) instead of growing memory. Default: 4194304 (4 MiB)."""

    prefix: str | Literal[False] | None = None
    """Namespace of this server's tool and prompt names (`<prefix>__<name>`). Default: the
    server_id. `false` exposes original names (a collision then falls back to the server_id)."""

    tools: FilterConfig = Field(default_factory=FilterConfig)
    """Which of the server's tools to expose, by original name."""

    enabled: bool = True
    """`false` keeps the entry in the file without starting it."""

    timeouts: dict[str, Annotated[float, Field(gt=0, le=86_400)]] = Field(default_factory=dict)
    """Per-route timeouts: `{glob on original tool names: seconds}`; the first matching glob (in
    file order) replaces `timeout_seconds` for that tool's calls. Default: none."""

    max_timeout_seconds: float | None = Field(default=None, gt=0, le=86_400)
    """Hard maximum of one request, in seconds. A progress notification from the server restarts
    the ordinary timeout, but never beyond this; on expiry the server is sent a cancellation and
    the client gets a timeout naming the server. Default: 5x the request's timeout."""

    idempotent: list[str] = Field(default_factory=list)
    """Globs on original tool names the operator declares safe to send twice: only these are
    retried (or moved to a replica or fallback) after the request may have reached the server.
    Server-declared annotations (`idempotentHint`) are untrusted and ignored. Default: none."""

    retry: RetryConfig = Field(default_factory=RetryConfig)
    """Retry rounds, backoff and retry budget."""

    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    """Circuit breaker thresholds."""

    health_check_interval_seconds: float = Field(default=DEFAULT_HEALTH_CHECK_INTERVAL_SECONDS, ge=0, le=86_400)
    """A server idle this long gets a health check (`ping` in the handshake era, one `tools/list`
    page in the modern era); a failed check counts as a failure (state `degraded`, breaker).
    Default: 30; 0 disables health checks."""

    max_result_bytes: int = Field(default=DEFAULT_MAX_RESULT_BYTES, ge=1024)
    """Largest result accepted from this server, in bytes of serialized JSON; a larger one is
    replaced by an `isError` result "result from <server> exceeded N bytes". Default: 1 MiB."""

    max_concurrency: int = Field(default=DEFAULT_MAX_CONCURRENCY, ge=1, le=100_000)
    """Requests in flight to this server (to each replica member) at most. Default: 64."""

    max_queue: int = Field(default=DEFAULT_MAX_QUEUE, ge=0, le=1_000_000)
    """Requests that may wait for a slot beyond `max_concurrency`; one more fails fast with
    "server busy" (never an unbounded queue). Default: 256."""

    fallback: list[str] = Field(default_factory=list)
    """Server_ids that serve this server's routes, in order, when it is down, its circuit is open
    or a request failed before it was sent (or failed after, for an `idempotent` tool). A
    fallback serves a route only if it has the same original tool, resource or prompt."""

    expose: bool = True
    """`false`: the server contributes no names of its own to `/mcp` and serves only as a
    fallback of others (it still has `/servers/<server_id>/mcp`)."""

    replicas: list[ReplicaConfig] = Field(default_factory=list)
    """Members of one logical server (instead of `command`/`url`), served round-robin under one
    set of names; member ids are `<server_id>/1`, `<server_id>/2`, ... in status and logs."""

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
        if self.replicas:
            if self.command is not None or self.url is not None:
                raise ValueError("give either 'replicas' or 'command'/'url', not both")
            per_member = [n for n in ("args", "env", "cwd", "transport", "headers") if n in self.model_fields_set]
            if per_member:
                raise ValueError(f"{', '.join(per_member)} belong in each replica, not beside 'replicas'")
            return self
        if (self.command is None) == (self.url is None):
            raise ValueError("give exactly one of 'command' (stdio server) or 'url' (remote server)")
        remote_only: tuple[str, ...] = ("transport", "headers")
        stdio_only: tuple[str, ...] = ("args", "env", "cwd", "max_restarts", "restart_window_seconds", "max_line_bytes")
        misplaced, kind = (
            (remote_only, "a remote server ('url')") if self.command else (stdio_only, "a stdio server ('command')")
        )
        wrong = [name for name in misplaced if name in self.model_fields_set]
        if wrong:
            raise ValueError(f"{', '.join(wrong)} only apply to {kind}")
        return self

    @property
    def kind(self) -> Literal["stdio", "streamable_http", "sse", "replicas"]:
        """How the hub reaches this server (`replicas`: through its members)."""
        if self.replicas:
            return "replicas"
        if self.command is not None:
            return "stdio"
        return self.transport or "streamable_http"

    def members(self, server_id: str) -> list[tuple[str, ServerConfig]]:
        """`(member id, config)` of each connection this entry runs: itself under `server_id`,
        or for `replicas` one per member, `<server_id>/1`, `<server_id>/2`, ... (a `/` never
        occurs in a server_id), each with the logical server's settings and its own address."""
        if not self.replicas:
            return [(server_id, self)]
        return [
            (f"{server_id}/{index}", self.model_copy(update={**replica.model_dump(), "replicas": []}))
            for index, replica in enumerate(self.replicas, start=1)
        ]

    def timeout_for(self, tool: str | None) -> float:
        """Seconds a request may wait for its answer: the first `timeouts` glob matching the
        original tool name, else `timeout_seconds`."""
        if tool is not None:
            for pattern, seconds in self.timeouts.items():
                if fnmatch.fnmatchcase(tool, pattern):
                    return seconds
        return self.timeout_seconds

    def hard_timeout_for(self, tool: str | None) -> float:
        """The hard maximum of one request in seconds (`max_timeout_seconds`, default 5x its timeout)."""
        return self.max_timeout_seconds if self.max_timeout_seconds is not None else 5 * self.timeout_for(tool)

    def is_idempotent(self, tool: str) -> bool:
        """Whether the operator listed the original tool name under `idempotent`."""
        return any(fnmatch.fnmatchcase(tool, pattern) for pattern in self.idempotent)

    def exposed_prefix(self, server_id: str) -> str | None:
        """The namespace used for tool and prompt names, or None for original names."""
        if self.prefix is False:
            return None
        return self.prefix or server_id


ServerId = Annotated[str, Field(pattern=SERVER_ID_PATTERN)]


class TracingConfig(_Model):
    """OpenTelemetry tracing: a span per routed request, exported over OTLP/HTTP. Off unless an
    endpoint is given here or in the standard `OTEL_EXPORTER_OTLP_ENDPOINT` variable."""

    otlp_endpoint: str | None = None
    """OTLP/HTTP collector base URL (e.g. `http://127.0.0.1:4318`). Default: none, or
    `OTEL_EXPORTER_OTLP_ENDPOINT` when set."""

    service_name: str = "mcphub"
    """The `service.name` resource attribute of the spans. Default: mcphub."""


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

    drain_timeout_seconds: float = Field(default=DEFAULT_DRAIN_TIMEOUT_SECONDS, ge=0, le=3600)
    """On reload, how long a removed or replaced server's in-flight requests may take to finish
    before its connection is stopped anyway (the Envoy drain model). Default: 60."""

    session_idle_timeout_seconds: float = Field(default=DEFAULT_SESSION_IDLE_TIMEOUT_SECONDS, gt=0, le=86_400)
    """Seconds a handshake-era client session may go with no request in flight and no open GET
    stream before the hub closes it and frees its resources; the client then gets HTTP 404 and
    initializes again (MCP transport spec, session management). Default: 1800 (the SDK's)."""

    log_format: Literal["text", "json"] = "text"
    """Log line format on stderr: `text`, or `json` (one object per line with time, level,
    logger, message, server_id and request_id). `mcphub serve --log-format` overrides it."""

    tracing: TracingConfig = Field(default_factory=TracingConfig)
    """OpenTelemetry spans per routed request (needs the `otel` extra)."""

    servers: dict[ServerId, ServerConfig] = Field(default_factory=dict)
    """The fleet, keyed by server_id (`^[a-z][a-z0-9-]{0,31}$`)."""

    @model_validator(mode="after")
    def _check_fallbacks(self) -> HubConfig:
        for server_id, server in self.servers.items():
            for index, other in enumerate(server.fallback):
                if other == server_id:
                    raise ValueError(f"servers.{server_id}.fallback[{index}]: a server cannot be its own fallback")
                if other not in self.servers:
                    raise ValueError(f"servers.{server_id}.fallback[{index}]: unknown server_id {other!r}")
            if len(set(server.fallback)) != len(server.fallback):
                raise ValueError(f"servers.{server_id}.fallback: lists a server twice")
        return self

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
