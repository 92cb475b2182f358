"""The whole config file (`HubConfig`): where the endpoint listens, its HTTP limits and
timeouts, tracing, and the blocks the other modules of `hub.config` define."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from hub.authority import parse_allowed_host, parse_authority
from hub.config.auth import AuthConfig
from hub.config.base import LOOPBACK_HOSTS, Model
from hub.config.catalog import HubCatalogSettings
from hub.config.cluster import HubClusterSettings
from hub.config.policies import PolicyRule, RateLimitsConfig
from hub.config.servers import ServerEntry, ServerId
from hub.config.trust import HubTrustSettings

__all__ = [
    "DEFAULT_BODY_TIMEOUT_SECONDS",
    "DEFAULT_HEADER_TIMEOUT_SECONDS",
    "DEFAULT_HOST",
    "DEFAULT_LIST_PAGE_SIZE",
    "DEFAULT_MAX_FEDERATION_DEPTH",
    "DEFAULT_MAX_HEADER_BYTES",
    "DEFAULT_PORT",
    "HUB_ID_PATTERN",
    "HubConfig",
    "ListenConfig",
    "TracingConfig",
    "require_auth_beyond_loopback",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024  # bytes (4 MiB), the SDK's own default
DEFAULT_MAX_HEADER_BYTES = 64 * 1024  # bytes (64 KiB): request line + header fields
DEFAULT_HEADER_TIMEOUT_SECONDS = 10.0
DEFAULT_BODY_TIMEOUT_SECONDS = 30.0


DEFAULT_DRAIN_TIMEOUT_SECONDS = 60.0  # Envoy suggests 60-90 s between services
DEFAULT_SHUTDOWN_GRACE_SECONDS = 5.0  # Istio's terminationDrainDuration; a balancer's checks notice within it
DEFAULT_SESSION_IDLE_TIMEOUT_SECONDS = 1800.0  # the SDK's StreamableHTTPSessionManager default


DEFAULT_MAX_FEDERATION_DEPTH = 4
DEFAULT_LIST_PAGE_SIZE = 500  # items: 500 definitions of ~1 KiB (the reference servers' size) make ~0.5 MiB

HUB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
"""A hub_id: 1-64 letters, digits, `.`, `_` or `-` (it travels in an HTTP header and `_meta`)."""


class ListenConfig(Model):
    """Where the endpoint listens."""

    host: str = DEFAULT_HOST
    """Interface to bind. Default: 127.0.0.1 (loopback only)."""

    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    """TCP port. Default: 8765; 0 picks a free port."""


class TracingConfig(Model):
    """OpenTelemetry tracing: a span per routed request, exported over OTLP/HTTP. Off unless an
    endpoint is given here or in the standard `OTEL_EXPORTER_OTLP_ENDPOINT` variable."""

    otlp_endpoint: str | None = None
    """OTLP/HTTP collector base URL (e.g. `http://127.0.0.1:4318`). Default: none, or
    `OTEL_EXPORTER_OTLP_ENDPOINT` when set."""

    service_name: str = "mcphub"
    """The `service.name` resource attribute of the spans. Default: mcphub."""


class HubConfig(Model, HubTrustSettings, HubClusterSettings, HubCatalogSettings):
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

    servers: dict[ServerId, ServerEntry] = Field(default_factory=dict)
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
