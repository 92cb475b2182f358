"""What every server entry has, whatever its kind (`ServerSettings`: timeouts, names, limits,
retry, breaker, fallbacks), and the blocks inside it: name filters, retry, circuit breaker, plus
the OAuth client credentials a remote server's connection uses. `hub.config.servers` holds the
entries themselves (`StdioServer | RemoteServer | ReplicaGroup`)."""

from __future__ import annotations

import fnmatch
import re
from typing import Annotated, Literal

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from hub.config.base import Model, check_secure_url, secret_from_env
from hub.config.trust import ServerTrustSettings

__all__ = ["BreakerConfig", "FilterConfig", "OAuthConfig", "RetryConfig", "ServerSettings"]

DEFAULT_TIMEOUT_SECONDS = 60.0
DEFAULT_STARTUP_TIMEOUT_SECONDS = 30.0
DEFAULT_MAX_RESULT_BYTES = 1024 * 1024  # bytes (1 MiB), FastMCP's response limit (SECURITY.md figures)
DEFAULT_MAX_CONCURRENCY = 64
DEFAULT_MAX_QUEUE = 256
DEFAULT_HEALTH_CHECK_INTERVAL_SECONDS = 30.0
DEFAULT_MAX_TOOLS = 1000

_PREFIX_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$"


class FilterConfig(Model):
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


class OAuthConfig(Model):
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
        return check_secure_url(value, "token_url")

    @field_validator("client_secret_env")
    @classmethod
    def _check_secret_set(cls, value: str, info: ValidationInfo) -> str:
        secret_from_env(value, info)
        return value

    @model_validator(mode="after")
    def _resolve_secret(self, info: ValidationInfo) -> OAuthConfig:
        self._client_secret = secret_from_env(self.client_secret_env, info)
        return self

    @property
    def client_secret(self) -> str:
        """The client secret read from `client_secret_env`."""
        return self._client_secret


class RetryConfig(Model):
    """When and how often a failed request is sent again (hub/retry_rules.py has the rules).

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


class BreakerConfig(Model):
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


class ServerSettings(Model, ServerTrustSettings):
    """The settings every server entry has, whatever its kind (`hub.config.servers`: a stdio
    server, a remote server or a replica group): how long its requests may take, how its names
    are exposed, how much it may be sent, and what happens when it fails."""

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
