"""The hub's configuration: YAML (or JSON) -> validated pydantic models.

The file shape is documented in DESIGN.md ("Config file") and in README.md; `config/hub.schema.json`
is generated from these models (`python -m hub.config > config/hub.schema.json`), and a test fails
when it is stale.

Loading (`load_config`, `parse_config`) goes through `hub.config_loader`: a file may be the hub's
own shape, a client's MCP config pasted as-is (`mcpServers` of Claude Desktop, Cursor and Claude
Code; VS Code's `servers`/`inputs`), or both; string values may hold `${VAR}`, `${VAR:-default}`,
`${env:VAR}` and a few editor variables (`$${` is a literal `${`). Every error is a
`ConfigError` naming the file, the key path and the reason.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from hub.authority import parse_allowed_host, parse_authority
from hub.catalog_config import CatalogOverride, HubCatalogSettings
from hub.cluster.config import HubClusterSettings
from hub.config_loader import config_error, prepare_document, read_document, workspace_folder
from hub.config_schema import REMOTE_ONLY_KEYS, REPLICA_MEMBER_KEYS, STDIO_ONLY_KEYS, complete_schema
from hub.trust_config import HubTrustSettings, ServerTrustSettings

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "HUB_ID_PATTERN",
    "HUB_SCOPES",
    "LOOPBACK_HOSTS",
    "SERVER_ID_PATTERN",
    "ApiKeyConfig",
    "AuthConfig",
    "BreakerConfig",
    "FilterConfig",
    "HubConfig",
    "JwtConfig",
    "ListenConfig",
    "OAuthConfig",
    "PolicyRule",
    "RateLimitsConfig",
    "ReplicaConfig",
    "RetryConfig",
    "ServerConfig",
    "TokenBucketConfig",
    "TracingConfig",
    "is_loopback_url",
    "json_schema",
    "load_config",
    "parse_config",
    "require_auth_beyond_loopback",
]

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_TIMEOUT_SECONDS = 60.0
DEFAULT_STARTUP_TIMEOUT_SECONDS = 30.0
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024  # bytes (4 MiB), the SDK's own default
DEFAULT_MAX_HEADER_BYTES = 64 * 1024  # bytes (64 KiB): request line + header fields
DEFAULT_HEADER_TIMEOUT_SECONDS = 10.0
DEFAULT_BODY_TIMEOUT_SECONDS = 30.0
DEFAULT_MAX_RESULT_BYTES = 1024 * 1024  # bytes (1 MiB), FastMCP's response limit (SECURITY.md figures)
DEFAULT_MAX_CONCURRENCY = 64
DEFAULT_MAX_QUEUE = 256
DEFAULT_HEALTH_CHECK_INTERVAL_SECONDS = 30.0
DEFAULT_DRAIN_TIMEOUT_SECONDS = 60.0  # Envoy suggests 60-90 s between services
DEFAULT_SHUTDOWN_GRACE_SECONDS = 5.0  # Istio's terminationDrainDuration; a balancer's checks notice within it
DEFAULT_SESSION_IDLE_TIMEOUT_SECONDS = 1800.0  # the SDK's StreamableHTTPSessionManager default
DEFAULT_MAX_RESTARTS = 5
DEFAULT_RESTART_WINDOW_SECONDS = 60.0
DEFAULT_MAX_LINE_BYTES = 4 * 1024 * 1024  # bytes (4 MiB): a stdio stdout line
DEFAULT_MAX_TOOLS = 1000
DEFAULT_MAX_FEDERATION_DEPTH = 4
DEFAULT_LIST_PAGE_SIZE = 500  # items: 500 definitions of ~1 KiB (the reference servers' size) make ~0.5 MiB

HUB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
"""A hub_id: 1-64 letters, digits, `.`, `_` or `-` (it travels in an HTTP header and `_meta`)."""

SERVER_ID_PATTERN = r"^[a-z][a-z0-9-]{0,31}$"
"""A server_id: lowercase, starts with a letter, at most 32 characters, no `_` and no `+`, so
`<server_id>__<tool>` and `<server_id>+<uri>` are unambiguous."""

_PREFIX_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$"


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


class OAuthConfig(_Model):
    """OAuth 2.0 client credentials grant (RFC 6749 section 4.4) for the hub's connection to one
    remote server: the hub gets its own access token from the token endpoint, caches it, renews
    it before it expires, and once more when the server answers HTTP 401."""

    token_url: str
    """The authorization server's token endpoint: https (plain http only on loopback)."""

    client_id: str = Field(min_length=1)
    """The client id the hub is registered with at that authorization server."""

    client_secret_env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Environment variable holding the client secret, read once at load (unset or empty fails
    the load). The secret itself never belongs in the file; it is sent only to `token_url`."""

    scope: str | None = None
    """Space-separated scopes to request (RFC 6749 section 3.3). Default: none (the
    authorization server's default)."""

    audience: str | None = None
    """Sent as `audience`, for authorization servers that name the API that way (Auth0, Okta).
    Default: not sent."""

    resource: str | Literal[False] | None = None
    """The RFC 8707 `resource` parameter (the MCP authorization spec has clients send it).
    Default: the server's `url`; `false` leaves it out (for authorization servers that reject
    it, e.g. Microsoft Entra ID v2, which takes `scope: api://<app>/.default` instead)."""

    token_endpoint_auth_method: Literal["client_secret_basic", "client_secret_post"] = "client_secret_basic"
    """How the hub authenticates to the token endpoint (RFC 6749 section 2.3.1): HTTP Basic
    (default) or `client_id`/`client_secret` form fields."""

    _client_secret: str = PrivateAttr(default="")

    @field_validator("token_url")
    @classmethod
    def _check_token_url(cls, value: str) -> str:
        return _check_secure_url(value, "token_url")

    @field_validator("client_secret_env")
    @classmethod
    def _check_secret_set(cls, value: str, info: ValidationInfo) -> str:
        _secret_from_env(value, info)
        return value

    @model_validator(mode="after")
    def _resolve_secret(self, info: ValidationInfo) -> OAuthConfig:
        self._client_secret = _secret_from_env(self.client_secret_env, info)
        return self

    @property
    def client_secret(self) -> str:
        """The client secret read from `client_secret_env`."""
        return self._client_secret


def _secret_from_env(name: str, info: ValidationInfo) -> str:
    value = _env_of(info).get(name, "")
    if not value:
        raise ValueError(f"environment variable {name} is {'empty' if name in _env_of(info) else 'not set'}")
    return value


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


class ServerConfig(_Model, ServerTrustSettings):
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
    """Extra HTTP headers sent to a remote server (e.g. `Authorization: "Bearer ${TOKEN}"`).
    Never logged."""

    bearer_token_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Environment variable holding a static bearer token for a remote server, sent as
    `Authorization: Bearer <token>` (RFC 6750); read once at load (unset or empty fails the load)."""

    oauth: OAuthConfig | None = None
    """OAuth 2.0 client credentials for a remote server: the hub fetches, caches and renews its
    own access token. The token a client presents to the hub is never sent to any server."""

    _bearer_token: str = PrivateAttr(default="")

    protocol: Literal["auto", "legacy", "modern", "both"] = "auto"
    """Protocol era to speak: `auto` probes `server/discover` (2026-07-28) and falls back to the
    `initialize` handshake; `legacy` forces the handshake era; `modern` forces 2026-07-28;
    `both` (a server that serves both eras) keeps a modern-era connection and, from the first
    call of a handshake-era client on, a second handshake-era one (a second process for a stdio
    server), so each client gets the server's behaviour of its own era (e.g. sampling pushed
    mid-call rather than an `InputRequiredResult`). Under `auto` and `both`, a server whose tool
    pushes sampling, elicitation or roots/list mid-call in the modern era (as mcp 1.x code does),
    which that era refuses, is noticed at the first such call: the hub opens the handshake-era
    connection then, sends that call once more over it, and sends the server's later calls that
    may push there too (README, "Servers whose tools push")."""

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
    """Longest stdout line, in bytes, a stdio server may write; a longer line is discarded as it
    streams, never held whole. An answer over it fails only the call it answers (an `isError`
    result "result from <server> exceeded N bytes" for a tool call) and the child keeps serving;
    a longer line that is not JSON-RPC, or whose id cannot be read, or that goes on past 256
    times this, kills and restarts the child (its in-flight calls fail). Default: 4194304 (4 MiB)."""

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

    max_tools: int = Field(default=DEFAULT_MAX_TOOLS, ge=1, le=1_000_000)
    """Most tools taken from this server's listing (after the `tools` filters): the rest of the
    listing is dropped, with a warning naming the server and the counts, so one server (or a
    federation loop) can never grow the catalog without bound. Default: 1000."""

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
            per_member = [n for n in REPLICA_MEMBER_KEYS if n in self.model_fields_set]
            if per_member:
                raise ValueError(f"{', '.join(per_member)} belong in each replica, not beside 'replicas'")
            return self
        if (self.command is None) == (self.url is None):
            raise ValueError("give exactly one of 'command' (stdio server) or 'url' (remote server)")
        remote_only, stdio_only = REMOTE_ONLY_KEYS, STDIO_ONLY_KEYS
        misplaced, kind = (
            (remote_only, "a remote server ('url')") if self.command else (stdio_only, "a stdio server ('command')")
        )
        wrong = [name for name in misplaced if name in self.model_fields_set]
        if wrong:
            raise ValueError(f"{', '.join(wrong)} only apply to {kind}")
        return self

    @field_validator("bearer_token_env")
    @classmethod
    def _check_token_set(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            _secret_from_env(value, info)
        return value

    @model_validator(mode="after")
    def _one_credential(self, info: ValidationInfo) -> ServerConfig:
        given = [name for name in ("bearer_token_env", "oauth") if getattr(self, name) is not None]
        if any(header.lower() == "authorization" for header in self.headers):
            given.insert(0, "headers.Authorization")
        if len(given) > 1:
            raise ValueError(f"give one credential for a server, not {' and '.join(given)}")
        if self.bearer_token_env is not None:
            self._bearer_token = _secret_from_env(self.bearer_token_env, info)
        return self

    def http_headers(self) -> dict[str, str]:
        """The headers sent with every request to a remote server: `headers`, plus
        `Authorization: Bearer ...` when `bearer_token_env` is set."""
        if not self._bearer_token:
            return dict(self.headers)
        return {**self.headers, "Authorization": f"Bearer {self._bearer_token}"}

    def secret_values(self) -> list[str]:
        """Configured values to mask in anything the hub shows: `env` and `headers` values, the
        bearer token and the OAuth client secret."""
        values = [*self.env.values(), *self.headers.values(), self._bearer_token]
        if self.oauth is not None:
            values.append(self.oauth.client_secret)
        return [value for value in values if value]

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


LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
"""Hosts that count as loopback for `auth: none` and for plain-http URLs (JWKS, token endpoints)."""

HUB_SCOPES: Final = ("hub:call", "hub:admin", "hub:metrics")
"""The hub's own scopes: `hub:call` uses routes (`/mcp`, `/servers/<id>/mcp`), `hub:admin` the
admin API (and implies the other two), `hub:metrics` reads `/metrics`."""

_PRINCIPAL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@:/-]{0,127}$"
_SCOPE_PATTERN = r"^[\x21\x23-\x5B\x5D-\x7E]{1,128}$"  # RFC 6749 section 3.3 scope-token
_ASYMMETRIC_ALGORITHMS: Final = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES256K", "ES384", "ES512", "EdDSA"}
)
_HMAC_ALGORITHMS: Final = frozenset({"HS256", "HS384", "HS512"})
MIN_API_KEY_CHARS: Final = 16
MIN_HMAC_SECRET_BYTES: Final = 32

Scope = Annotated[str, Field(pattern=_SCOPE_PATTERN)]
PrincipalId = Annotated[str, Field(pattern=_PRINCIPAL_PATTERN)]


def _env_of(info: ValidationInfo) -> Mapping[str, str]:
    context = info.context if isinstance(info.context, dict) else {}
    env = context.get("env")
    return env if env is not None else os.environ


def is_loopback_url(url: str) -> bool:
    """Whether `url`'s host is a loopback name or address."""
    host = url.split("://", 1)[-1].split("/", 1)[0].rsplit("@", 1)[-1]
    host = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return host in LOOPBACK_HOSTS


def _check_secure_url(value: str, what: str) -> str:
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s#]*)?", value):
        raise ValueError(f"{what} must be an http(s) URL, got {value!r}")
    if value.startswith("http://") and not is_loopback_url(value):
        raise ValueError(f"{what} must use https (plain http is accepted only on loopback), got {value!r}")
    return value


class ApiKeyConfig(_Model):
    """One API key. The key itself is never stored: give its SHA-256 (`mcphub keys new ID`
    prints both) or the name of an environment variable that holds it."""

    id: PrincipalId
    """The principal id this key authenticates as (shown in logs, `mcphub whoami`, policies)."""

    key_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    """Lowercase hex SHA-256 of the key."""

    key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Environment variable holding the key (at least 16 characters); read once at load."""

    scopes: list[Scope] = Field(default_factory=list)
    """Scopes granted to this key, e.g. `[hub:call, team-a]`."""

    _digest: bytes = PrivateAttr(default=b"")

    @model_validator(mode="after")
    def _resolve_key(self, info: ValidationInfo) -> ApiKeyConfig:
        if (self.key_sha256 is None) == (self.key_env is None):
            raise ValueError("give exactly one of key_sha256 or key_env")
        if self.key_sha256 is not None:
            self._digest = bytes.fromhex(self.key_sha256)
        else:
            assert self.key_env is not None
            value = _env_of(info).get(self.key_env, "")
            if len(value) < MIN_API_KEY_CHARS:
                problem = "is not set" if not value else f"holds fewer than {MIN_API_KEY_CHARS} characters"
                raise ValueError(f"environment variable {self.key_env} {problem}")
            self._digest = hashlib.sha256(value.encode()).digest()
        return self

    @property
    def digest(self) -> bytes:
        """SHA-256 of the key (32 bytes)."""
        return self._digest


class JwtConfig(_Model):
    """JWT access tokens from an OAuth 2.1 authorization server (MCP authorization spec,
    "Token Validation"; RFC 9068). Signature, `exp`, `nbf`, `iss` and `aud` are all enforced."""

    issuer: str
    """Expected `iss` claim (the authorization server's issuer identifier); also listed as the
    authorization server in the protected resource metadata (RFC 9728)."""

    audience: str | list[str] | None = None
    """Accepted `aud` value(s): this hub's resource URL (RFC 8707). Default: `<public_url>/mcp`."""

    jwks_url: str | None = None
    """JWKS document with the issuer's public keys (fetched asynchronously, cached, refreshed on
    an unknown `kid`). https, or http on loopback."""

    public_key_file: str | None = None
    """PEM file with the one public key that signs tokens (instead of `jwks_url`)."""

    hs256_secret_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Environment variable holding a shared HMAC secret (at least 32 bytes), for HS256/384/512
    tokens (instead of `jwks_url`)."""

    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"], min_length=1)
    """Accepted `alg` values. Asymmetric algorithms (RS*, PS*, ES*, EdDSA) for `jwks_url` and
    `public_key_file`, HS* for `hs256_secret_env`; mixing them, or `none`, is refused."""

    scope_claim: str = "scope"
    """Claim holding the scopes: a space-separated string (RFC 9068 `scope`) or a list (`scp`)."""

    principal_claim: str = "sub"
    """Claim that names the principal."""

    leeway_seconds: float = Field(default=30.0, ge=0, le=300)
    """Clock skew tolerated on `exp` and `nbf`, in seconds. Default: 30."""

    jwks_cache_seconds: float = Field(default=3600.0, gt=0)
    """How long fetched JWKS keys are used before a refetch, in seconds. Default: 3600."""

    jwks_refresh_min_seconds: float = Field(default=30.0, ge=0)
    """Minimum time between two JWKS fetches caused by tokens with an unknown `kid`, in seconds
    (so forged `kid`s cannot make the hub hammer the issuer). Default: 30."""

    _hmac_secret: bytes = PrivateAttr(default=b"")

    @field_validator("jwks_url")
    @classmethod
    def _check_jwks_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_secure_url(value, "jwks_url")

    @model_validator(mode="after")
    def _check_keys(self, info: ValidationInfo) -> JwtConfig:
        sources = [self.jwks_url, self.public_key_file, self.hs256_secret_env]
        if sum(source is not None for source in sources) != 1:
            raise ValueError("give exactly one of jwks_url, public_key_file or hs256_secret_env")
        algorithms = set(self.algorithms)
        if any(alg.lower() == "none" for alg in algorithms):
            raise ValueError("algorithm 'none' is never accepted")
        allowed = _HMAC_ALGORITHMS if self.hs256_secret_env else _ASYMMETRIC_ALGORITHMS
        wrong = sorted(algorithms - allowed)
        if wrong:
            kind = "an HMAC secret" if self.hs256_secret_env else "public keys"
            raise ValueError(f"algorithms {wrong} cannot be used with {kind} (allowed: {sorted(allowed)})")
        if self.hs256_secret_env:
            secret = _env_of(info).get(self.hs256_secret_env, "").encode()
            if len(secret) < MIN_HMAC_SECRET_BYTES:
                problem = "is not set" if not secret else f"holds fewer than {MIN_HMAC_SECRET_BYTES} bytes"
                raise ValueError(f"environment variable {self.hs256_secret_env} {problem}")
            self._hmac_secret = secret
        return self

    @property
    def hmac_secret(self) -> bytes:
        """The HS* secret read from `hs256_secret_env` (empty for public-key configs)."""
        return self._hmac_secret


class AuthConfig(_Model):
    """Authentication of the endpoint's callers (`/mcp`, `/servers/<id>/mcp`, `/admin/...`).
    Both API keys and JWTs travel as `Authorization: Bearer <value>`."""

    api_keys: list[ApiKeyConfig] = Field(default_factory=list)
    """Static API keys, each with its principal id and scopes."""

    jwt: JwtConfig | None = None
    """JWT access tokens from an OAuth authorization server."""

    authorization_servers: list[str] = Field(default_factory=list)
    """Authorization servers listed in the protected resource metadata (RFC 9728). Default:
    `[jwt.issuer]` when `jwt` is set."""

    scope_implies: dict[Scope, list[Scope]] = Field(default_factory=dict)
    """Scope hierarchy beyond the built-in one (`hub:admin` implies `hub:call` and
    `hub:metrics`): a scope implies the listed scopes, transitively."""

    @model_validator(mode="after")
    def _something_configured(self) -> AuthConfig:
        if not self.api_keys and self.jwt is None:
            raise ValueError("configure api_keys and/or jwt, or write `auth: none` for a loopback-only hub")
        ids = [key.id for key in self.api_keys]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate api key ids: {duplicates}")
        digests = [key.digest for key in self.api_keys]
        if len(set(digests)) != len(digests):
            raise ValueError("two api keys have the same key")
        for url in self.authorization_servers:
            _check_secure_url(url, "authorization_servers entry")
        return self


class PolicyRule(_Model):
    """One policy rule: who it applies to (`principal` or `scope`) and which routes it allows.

    Rules are tried in order; the first one that applies to the caller decides. Within it, a
    route is allowed when it is on one of `servers` (if given) and matches an `allow` glob (or
    `allow` is empty and `servers` is given), and no `deny` glob matches (deny wins). Globs
    (`*`, `?`, `[...]`) match exposed names: `<prefix>__<name>` for tools and prompts,
    `<server_id>+<uri>` for resources and resource templates, whichever face is used."""

    principal: PrincipalId | None = None
    """Applies to this principal id."""

    scope: Scope | None = None
    """Applies to callers holding this scope (after the scope hierarchy is applied)."""

    servers: list[ServerId] | None = None
    """Only routes of these servers can be allowed by this rule."""

    allow: list[str] = Field(default_factory=list)
    """Globs on exposed names this rule allows."""

    deny: list[str] = Field(default_factory=list)
    """Globs on exposed names this rule refuses, whatever `allow` says."""

    catalog: CatalogOverride | None = None
    """The catalog mode of the callers this rule applies to (search mode or the full list; see
    `catalog`), over the endpoint's (the hub-wide `catalog`, or a profile's). As for access, only
    the first rule that applies to a caller counts. Default: the endpoint's."""

    @model_validator(mode="after")
    def _one_subject(self) -> PolicyRule:
        if (self.principal is None) == (self.scope is None):
            raise ValueError("give exactly one of principal or scope")
        if not self.allow and self.servers is None:
            raise ValueError("allows nothing: give allow globs and/or servers")
        return self


class TokenBucketConfig(_Model):
    """A token bucket: `burst` requests at once, refilled at `requests_per_second`."""

    requests_per_second: float = Field(gt=0)
    """Sustained rate, in requests per second."""

    burst: int = Field(ge=1)
    """Bucket size: how many requests may arrive at once."""


class RateLimitsConfig(_Model):
    """Rate limits per principal (HTTP 429 with `Retry-After` when exceeded) and per principal
    and route (a JSON-RPC error carrying `retry_after_seconds`). None by default."""

    per_principal: TokenBucketConfig | None = None
    """HTTP requests to `/mcp` and `/servers/<id>/mcp` per principal."""

    principals: dict[PrincipalId, TokenBucketConfig] = Field(default_factory=dict)
    """Overrides of `per_principal` for named principals."""

    routes: dict[str, TokenBucketConfig] = Field(default_factory=dict)
    """Calls, reads and gets per principal of the routes whose exposed name matches the glob
    (first matching glob in file order)."""


class TracingConfig(_Model):
    """OpenTelemetry tracing: a span per routed request, exported over OTLP/HTTP. Off unless an
    endpoint is given here or in the standard `OTEL_EXPORTER_OTLP_ENDPOINT` variable."""

    otlp_endpoint: str | None = None
    """OTLP/HTTP collector base URL (e.g. `http://127.0.0.1:4318`). Default: none, or
    `OTEL_EXPORTER_OTLP_ENDPOINT` when set."""

    service_name: str = "mcphub"
    """The `service.name` resource attribute of the spans. Default: mcphub."""


class HubConfig(_Model, HubTrustSettings, HubClusterSettings, HubCatalogSettings):
    """The whole hub configuration file."""

    listen: ListenConfig = Field(default_factory=ListenConfig)
    """Where the HTTP endpoint listens."""

    public_url: str | None = None
    """The hub's public base URL (e.g. `https://hub.example.com`), when it sits behind a proxy;
    its host is added to the allowed Host/Origin values."""

    allowed_hosts: list[str] = Field(default_factory=list)
    """Extra Host header values to accept (`host` or `host:port`, `host:*` for any port); the
    listen address and `public_url` are always allowed (DNS-rebinding protection). Host and
    Origin headers are parsed exactly and compared by host and port (`hub.authority`)."""

    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024)
    """Largest accepted request body, in bytes. Default: 4 MiB; larger bodies get HTTP 413
    (decided from `Content-Length`, or as the body streams in, before it is held whole)."""

    max_header_bytes: int = Field(default=DEFAULT_MAX_HEADER_BYTES, ge=1024, le=16 * 1024 * 1024)
    """Largest accepted request head (request line and header fields), in bytes. Default: 65536
    (64 KiB); a larger head gets HTTP 431 (RFC 6585) and is never read whole."""

    header_timeout_seconds: float = Field(default=DEFAULT_HEADER_TIMEOUT_SECONDS, gt=0, le=3600)
    """Seconds a client has to send a whole request head (request line and headers), counted from
    the connection's opening for its first request and from the head's first byte for later ones.
    Default: 10; a slower client gets HTTP 408 and is disconnected (slowloris)."""

    body_timeout_seconds: float = Field(default=DEFAULT_BODY_TIMEOUT_SECONDS, gt=0, le=3600)
    """Seconds a client has to send a whole request body, counted from the end of its head.
    Default: 30; a slower client gets HTTP 408 and is disconnected. Raise it with
    `max_body_bytes` for clients on slow links (30 s is 4 MiB at 140 KB/s)."""

    input_required_ttl_seconds: float = Field(default=60.0, gt=0, le=3600)
    """How long a modern-era client has to answer an `InputRequiredResult` the hub made for a
    handshake-era server's mid-call request (sampling, elicitation, roots) before the suspended
    server-side call is cancelled and its `requestState` handle expires. Default: 60."""

    max_concurrent_starts: int | None = Field(default=None, ge=1, le=1024)
    """How many stdio servers may be starting at once (process start through the MCP
    handshake); the others wait for a slot, and a server's `startup_timeout_seconds` counts from
    when it gets one. Remote servers are not limited. Default: four times the CPUs the hub may
    run on."""

    drain_timeout_seconds: float = Field(default=DEFAULT_DRAIN_TIMEOUT_SECONDS, ge=0, le=3600)
    """On reload, how long a removed or replaced server's in-flight requests may take to finish
    before its connection is stopped anyway (the Envoy drain model); on shutdown (SIGTERM or
    SIGINT to `mcphub serve`, after `shutdown_grace_seconds`), how long the requests in flight
    may take before the ones still running are failed with JSON-RPC -32000 (`data.reason:
    "shutting_down"`). Default: 60."""

    shutdown_grace_seconds: float = Field(default=DEFAULT_SHUTDOWN_GRACE_SECONDS, ge=0, le=3600)
    """Seconds `mcphub serve` goes on serving new requests after SIGTERM while `/readyz` already
    answers 503 (`status: draining`), so a load balancer or Kubernetes takes the replica out of
    rotation before it stops accepting connections; the requests then in flight get
    `drain_timeout_seconds` to finish. Default: 5, about what a balancer's health checks or
    Kubernetes' endpoint update take to notice. SIGTERM only: Ctrl-C (SIGINT) skips the grace,
    so a hub run by hand stops at once. 0 skips it on SIGTERM too (e.g. when a Kubernetes
    `preStop` hook already waits). The time a supervisor allows before SIGKILL (Kubernetes
    `terminationGracePeriodSeconds`, default 30; `docker stop --time`, default 10) should
    exceed the grace plus `drain_timeout_seconds` plus a few seconds for the servers to stop."""

    session_idle_timeout_seconds: float = Field(default=DEFAULT_SESSION_IDLE_TIMEOUT_SECONDS, gt=0, le=86_400)
    """Seconds a handshake-era client session may go with no request in flight and no open GET
    stream before this replica frees its copy of it (its server-side state, per-client server
    connections). The session id stays valid until `session_max_lifetime_seconds`: the next
    request rebuilds the session from its id (`hub.endpoint.session_manager`). Default: 1800 (the SDK's)."""

    list_page_size: int = Field(default=DEFAULT_LIST_PAGE_SIZE, ge=1, le=1_000_000)
    """Most items (tools, resources, resource templates or prompts) on one page of a list the
    endpoint serves; a longer list is paginated with opaque cursors that stay valid while the
    catalog changes (MCP spec, server/utilities/pagination). A page also ends before its
    definitions pass 512 KiB of JSON, so it fits the 1 MiB event cap of the SDK's clients.
    Default: 500. Clients that ignore `nextCursor` see the first page only. Takes effect on restart."""

    log_format: Literal["text", "json"] = "text"
    """Log line format on stderr: `text`, or `json` (one object per line with time, level,
    logger, message, server_id and request_id). `mcphub serve --log-format` overrides it."""

    tracing: TracingConfig = Field(default_factory=TracingConfig)
    """OpenTelemetry spans per routed request (needs the `otel` extra)."""

    servers: dict[ServerId, ServerConfig] = Field(default_factory=dict)
    """The fleet, keyed by server_id (`^[a-z][a-z0-9-]{0,31}$`)."""

    auth: Literal["none"] | AuthConfig = "none"
    """Who may call the endpoint. `none` (the default) is accepted only while the hub listens
    on loopback; anything else needs api_keys and/or jwt."""

    policies: list[PolicyRule] | None = None
    """Which principal may see and use which routes (first rule that applies decides; deny wins
    within a rule). Absent: every principal with `hub:call` may use every route."""

    rate_limits: RateLimitsConfig = Field(default_factory=RateLimitsConfig)
    """Token-bucket rate limits per principal and per route."""

    state_dir: str | None = None
    """Directory of the hub's state file (`state.json`: its `hub_id` and tool-definition pins),
    kept across restarts. Default: the user's state directory (`~/.local/state/mcphub` on
    Linux), one file per config file (see `hub.state`)."""

    hub_id: str | None = Field(default=None, pattern=HUB_ID_PATTERN)
    """This hub's stable identity among federated hubs (loop detection). Replicas of one hub
    share it. Default: generated once (`hub-` + 12 hex) and kept in the state file."""

    max_federation_depth: int = Field(default=DEFAULT_MAX_FEDERATION_DEPTH, ge=1, le=64)
    """Most hubs a request may have passed through before this one (its `Mcp-Hub-Chain` /
    `_meta` `io.mcphub/chain`); a longer chain, or one holding this hub's id, is refused as a
    federation loop (JSON-RPC -32010). Default: 4."""

    _source: str | None = PrivateAttr(default=None)
    _warnings: tuple[str, ...] = PrivateAttr(default=())

    @property
    def source(self) -> str | None:
        """The file this config was loaded from (None: built in memory)."""
        return self._source

    @property
    def warnings(self) -> tuple[str, ...]:
        """What loading ignored, one line each (`<file>: ...`), e.g. the top-level keys of a
        pasted client config the hub does not use; `mcphub check` shows them."""
        return self._warnings

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
        if value is not None and (
            not re.fullmatch(r"https?://[^\s/]+/?", value)
            or parse_authority(value.split("://", 1)[1].rstrip("/")) is None
        ):
            raise ValueError(f"public_url must be a base URL like https://hub.example.com, got {value!r}")
        return value.rstrip("/") if value else value

    @field_validator("allowed_hosts")
    @classmethod
    def _allowed_hosts_parse(cls, value: list[str]) -> list[str]:
        for entry in value:
            if parse_allowed_host(entry) is None:
                raise ValueError(f"{entry!r} is not a host, host:port or host:* value")
        return value

    @model_validator(mode="after")
    def _check_auth(self) -> HubConfig:
        jwt = self.auth.jwt if isinstance(self.auth, AuthConfig) else None
        if jwt is not None and jwt.audience is None and not self.public_url:
            raise ValueError("auth.jwt needs an audience: set auth.jwt.audience, or public_url (then <public_url>/mcp)")
        require_auth_beyond_loopback(self)
        return self

    @property
    def resource_url(self) -> str | None:
        """This hub's MCP resource identifier (RFC 8707, RFC 9728): `<public_url>/mcp`."""
        return f"{self.public_url}/mcp" if self.public_url else None

    @property
    def audiences(self) -> list[str]:
        """The `aud` values a JWT must carry one of."""
        if not isinstance(self.auth, AuthConfig) or self.auth.jwt is None:
            return []
        audience = self.auth.jwt.audience
        if audience is None:
            return [f"{self.public_url}/mcp"]
        return [audience] if isinstance(audience, str) else list(audience)


def require_auth_beyond_loopback(config: HubConfig, host: str | None = None) -> None:
    """Refuse `auth: none` on a listen address other than loopback.

    :param host: the address actually bound (e.g. from `mcphub serve --host`). Default:
        `config.listen.host`.
    :raises ValueError: the hub would serve without authentication beyond this machine.
    """
    host = config.listen.host if host is None else host
    if config.auth == "none" and host not in LOOPBACK_HOSTS:
        raise ValueError(
            f"auth: none is only allowed on loopback, but the hub listens on {host!r}; "
            "configure auth (api_keys and/or jwt) or listen on 127.0.0.1"
        )


def parse_config(
    data: Any,
    *,
    file: str = "<config>",
    env: Mapping[str, str] | None = None,
    directory: str | Path | None = None,
) -> HubConfig:
    """Validate already-parsed YAML/JSON data into a `HubConfig`.

    The document may be the hub's own shape, a client config pasted as-is (`mcpServers`, VS
    Code's `servers`/`inputs`) or both; `${...}` references are resolved. The rules are in
    `hub.config_loader`. What the loader ignored is logged once (a warning) and kept in
    `HubConfig.warnings`.

    :param data: the document (a mapping), as `yaml.safe_load` returns it.
    :param file: the name used in error messages and warnings.
    :param env: the environment for `${VAR}` references and `*_env` keys. Default: `os.environ`.
    :param directory: the config file's directory: `${workspaceFolder}` (its parent when it is
        `.vscode` or `.cursor`) and relative `envFile` paths start there. Default: the current
        directory.
    :raises ConfigError: on any problem, naming `file`, the key path and the reason; when there
        are several, all are listed, separated by `; `.
    """
    environment = os.environ if env is None else env
    document = prepare_document(
        data,
        file=file,
        env=environment,
        hub_keys=HubConfig.model_fields.keys(),
        workspace=workspace_folder(Path(directory) if directory is not None else Path.cwd()),
    )
    try:
        config = HubConfig.model_validate(document.data, context={"env": environment})
    except ValidationError as exc:
        raise config_error(_validation_problems(exc, document.origins), file) from None
    problems = _prefix_problems(config, document.origins)
    if problems:
        raise config_error(problems, file)
    for warning in document.warnings:
        logger.warning("%s", warning)
    config._warnings = document.warnings
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


def _is_union_branch(part: str) -> bool:
    """Whether a location part is pydantic's label of a union member, not a key of the file."""
    return part.startswith(("function-after[", "function-before[", "function-wrap[", "literal[")) or part in {
        model.__name__ for model in _Model.__subclasses__()
    }


def _validation_problems(exc: ValidationError, origins: Mapping[str, str]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    errors = exc.errors(include_url=False)
    for error in errors:
        location = [str(part) for part in error["loc"]]
        if any(part.startswith("literal[") for part in location) and len(errors) > 1:
            continue  # `auth: none | {...}`: the mapping branch's errors say what is wrong
        location = [part for part in location if not _is_union_branch(part)]
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


def load_config(path: str | Path, *, env: Mapping[str, str] | None = None) -> HubConfig:
    """Read and validate a config file (YAML, or JSON, which is YAML too): the hub's own shape,
    or a client's MCP config as it is (`claude_desktop_config.json`, `.cursor/mcp.json`,
    `.vscode/mcp.json`, `.mcp.json`).

    :param env: as for `parse_config`. Default: `os.environ`.
    :raises ConfigError: the file cannot be read or parsed, or a value is wrong.
    """
    config = parse_config(read_document(path), file=str(path), env=env, directory=Path(path).absolute().parent)
    config._source = str(Path(path).resolve())
    return config


def json_schema() -> dict[str, Any]:
    """The JSON schema of the config file (what `config/hub.schema.json` holds): the models'
    schema, completed with what the loader accepts beyond them (`hub.config_schema`)."""
    return complete_schema(HubConfig.model_json_schema(), hub_keys=HubConfig.model_fields.keys())


if __name__ == "__main__":  # pragma: no cover - `python -m hub.config --schema > config/hub.schema.json`
    print(json.dumps(json_schema(), indent=2, sort_keys=True))
