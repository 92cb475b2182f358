"""Server entries (`servers.<server_id>`): a stdio server, a remote server or a replica group.

An entry is one of three models, told apart by the key it has, since YAML entries carry no
type key: `command` makes a `StdioServer` (a subprocess spoken to over stdin/stdout), `url` a
`RemoteServer` (Streamable HTTP or legacy SSE), `replicas` a `ReplicaGroup` (several members
served round-robin under one set of names). All three share `ServerSettings` (timeouts, names,
limits, retry, breaker, fallbacks); a key of another kind is refused with a message naming the
kind it applies to, and an entry with both or neither of `command` and `url` is refused in one
line. A connection always runs a `MemberConfig` (`StdioServer | RemoteServer`):
`ServerEntry.members()` gives them, one for a server, one per member for a group.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import Discriminator, Field, PrivateAttr, Tag, ValidationInfo, field_validator, model_validator

from hub.config.base import Model, secret_from_env
from hub.config.server_settings import OAuthConfig, ServerSettings

__all__ = [
    "REMOTE_ONLY_KEYS",
    "REPLICA_MEMBER_KEYS",
    "SERVER_ID_PATTERN",
    "SERVER_KIND_TAGS",
    "STDIO_ONLY_KEYS",
    "MemberConfig",
    "RemoteServer",
    "ReplicaConfig",
    "ReplicaGroup",
    "ServerEntry",
    "ServerId",
    "StdioServer",
]

DEFAULT_MAX_RESTARTS = 5
DEFAULT_RESTART_WINDOW_SECONDS = 60.0
DEFAULT_MAX_LINE_BYTES = 4 * 1024 * 1024  # bytes (4 MiB): a stdio stdout line

SERVER_ID_PATTERN = r"^[a-z][a-z0-9-]{0,31}$"
"""A server_id: lowercase, starts with a letter, at most 32 characters, no `_` and no `+`, so
`<server_id>__<tool>` and `<server_id>+<uri>` are unambiguous."""

ServerId = Annotated[str, Field(pattern=SERVER_ID_PATTERN)]

_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_KIND_KEYS = ("command", "url", "replicas")

STDIO_ONLY_KEYS = ("args", "env", "cwd", "max_restarts", "restart_window_seconds", "max_line_bytes")
"""`StdioServer`'s keys besides `command`: refused beside `url` with a message naming the kind
(the models and the schema share it; a test checks it against the models)."""

REMOTE_ONLY_KEYS = ("transport", "headers", "bearer_token_env", "oauth")
"""`RemoteServer`'s keys besides `url`: refused beside `command` (shared likewise)."""

REPLICA_MEMBER_KEYS = ("args", "env", "cwd", "transport", "headers")
"""Keys that belong in each replica, never beside `replicas` (shared likewise)."""

_ONE_KIND = "give exactly one of 'command' (stdio server) or 'url' (remote server)"


def _url_checked(value: str | None) -> str | None:
    if value is not None and not re.match(r"https?://[^\s/]+(/\S*)?\Z", value):
        raise ValueError("url must be an http:// or https:// URL")
    return value


def _not_given(key: str, value: Any) -> bool:
    """A null `command`, `url` or `replicas`, or an empty `replicas`, counts as not given."""
    return key in _KIND_KEYS and (value is None or (key == "replicas" and value == []))


def _given(data: Any) -> Any:
    """An entry's keys without the kind keys it does not give (`_not_given`)."""
    if not isinstance(data, dict):
        return data
    return {key: value for key, value in data.items() if not _not_given(key, value)}


def _refuse_keys(data: Any, keys: tuple[str, ...], applies_to: str) -> Any:
    """A `mode="before"` check: the keys of another kind given in `data`, in one message naming
    the kind they apply to (rather than one "unknown key" each)."""
    data = _given(data)
    wrong = [key for key in keys if isinstance(data, dict) and key in data]
    if wrong:
        raise ValueError(f"{', '.join(wrong)} only apply to {applies_to}")
    return data


class _StdioLimits(Model):
    """How a stdio process is kept in check (a stdio server, and a replica group's stdio members)."""

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


class _RemoteCredentials(Model):
    """The one credential a remote server's connection sends (a remote server, and a replica
    group's remote members). A client's own token never reaches a server (MCP authorization
    spec, "Token Passthrough")."""

    bearer_token_env: str | None = Field(default=None, pattern=_ENV_NAME)
    """Environment variable holding a static bearer token for a remote server, sent as
    `Authorization: Bearer <token>` (RFC 6750); read once at load (unset or empty fails the load)."""

    oauth: OAuthConfig | None = None
    """OAuth 2.0 client credentials for a remote server: the hub fetches, caches and renews its
    own access token. The token a client presents to the hub is never sent to any server."""

    _bearer_token: str = PrivateAttr(default="")

    @field_validator("bearer_token_env")
    @classmethod
    def _check_token_set(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            secret_from_env(value, info)
        return value

    def _resolve_credential(self, info: ValidationInfo, headers: dict[str, str]) -> None:
        """One credential at most (`headers.Authorization`, `bearer_token_env`, `oauth`); reads the token."""
        given = [name for name in ("bearer_token_env", "oauth") if getattr(self, name) is not None]
        if any(header.lower() == "authorization" for header in headers):
            given.insert(0, "headers.Authorization")
        if len(given) > 1:
            raise ValueError(f"give one credential for a server, not {' and '.join(given)}")
        if self.bearer_token_env is not None:
            self._bearer_token = secret_from_env(self.bearer_token_env, info)

    def _credential_secrets(self) -> list[str]:
        return [self._bearer_token, self.oauth.client_secret if self.oauth is not None else ""]


class StdioServer(_StdioLimits, ServerSettings):
    """A server the hub runs as a subprocess and speaks to over stdin/stdout (`command`)."""

    command: str
    """Executable of a stdio server, looked up on PATH."""

    args: list[str] = Field(default_factory=list)
    """Arguments of a stdio server."""

    env: dict[str, str] = Field(default_factory=dict)
    """Environment of a stdio server. Only these plus a safe minimum (HOME, LOGNAME, PATH, SHELL,
    TERM, USER) reach the child; never the hub's own environment."""

    cwd: str | None = None
    """Working directory of a stdio server. Default: the hub's."""

    @model_validator(mode="before")
    @classmethod
    def _refuse_remote_keys(cls, data: Any) -> Any:
        return _refuse_keys(data, REMOTE_ONLY_KEYS, "a remote server ('url')")

    @property
    def kind(self) -> Literal["stdio"]:
        """How the hub reaches this server: `stdio`."""
        return "stdio"

    def members(self, server_id: str) -> list[tuple[str, MemberConfig]]:
        """`[(server_id, self)]`: the one connection this entry runs."""
        return [(server_id, self)]

    def secret_values(self) -> list[str]:
        """Configured values to mask in anything the hub shows: the `env` values."""
        return [value for value in self.env.values() if value]


class RemoteServer(_RemoteCredentials, ServerSettings):
    """A server the hub reaches over HTTP (`url`): Streamable HTTP, or legacy SSE."""

    url: str
    """Endpoint URL of a remote server (http or https)."""

    transport: Literal["streamable_http", "sse"] | None = None
    """How to reach a remote server: `streamable_http` (default) or legacy `sse`."""

    headers: dict[str, str] = Field(default_factory=dict)
    """Extra HTTP headers sent to a remote server (e.g. `Authorization: "Bearer ${TOKEN}"`).
    Never logged."""

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        return _url_checked(value)

    @model_validator(mode="before")
    @classmethod
    def _refuse_stdio_keys(cls, data: Any) -> Any:
        return _refuse_keys(data, STDIO_ONLY_KEYS, "a stdio server ('command')")

    @model_validator(mode="after")
    def _one_credential(self, info: ValidationInfo) -> RemoteServer:
        self._resolve_credential(info, self.headers)
        return self

    @property
    def kind(self) -> Literal["streamable_http", "sse"]:
        """How the hub reaches this server: `streamable_http` (the default) or `sse`."""
        return self.transport or "streamable_http"

    def members(self, server_id: str) -> list[tuple[str, MemberConfig]]:
        """`[(server_id, self)]`: the one connection this entry runs."""
        return [(server_id, self)]

    def http_headers(self) -> dict[str, str]:
        """The headers sent with every request: `headers`, plus `Authorization: Bearer ...`
        when `bearer_token_env` is set."""
        if not self._bearer_token:
            return dict(self.headers)
        return {**self.headers, "Authorization": f"Bearer {self._bearer_token}"}

    def secret_values(self) -> list[str]:
        """Configured values to mask in anything the hub shows: the `headers` values, the bearer
        token and the OAuth client secret."""
        return [value for value in (*self.headers.values(), *self._credential_secrets()) if value]


class ReplicaConfig(Model):
    """One member of a replica group: how to reach it (stdio `command` or remote `url`). Every
    other setting (timeouts, filters, retry, ...) comes from the group."""

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

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        return _url_checked(value)

    @model_validator(mode="after")
    def _one_kind(self) -> ReplicaConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("give exactly one of 'command' (stdio member) or 'url' (remote member)")
        misplaced, kind = (
            (("transport", "headers"), "a remote member ('url')")
            if self.command is not None
            else (("args", "env", "cwd"), "a stdio member ('command')")
        )
        wrong = [name for name in misplaced if name in self.model_fields_set]
        if wrong:
            raise ValueError(f"{', '.join(wrong)} only apply to {kind}")
        return self


class ReplicaGroup(_StdioLimits, _RemoteCredentials, ServerSettings):
    """Members of one logical server (`replicas`), served round-robin under one set of names.
    The group's settings apply to every member; `max_restarts`, `restart_window_seconds` and
    `max_line_bytes` to its stdio members, `bearer_token_env` and `oauth` to its remote ones."""

    replicas: list[ReplicaConfig] = Field(min_length=1)
    """Members of one logical server (instead of `command`/`url`), served round-robin under one
    set of names; member ids are `<server_id>/1`, `<server_id>/2`, ... in status and logs."""

    @model_validator(mode="before")
    @classmethod
    def _refuse_member_keys(cls, data: Any) -> Any:
        data = _given(data)
        if isinstance(data, dict):
            if "command" in data or "url" in data:
                raise ValueError("give either 'replicas' or 'command'/'url', not both")
            per_member = [key for key in REPLICA_MEMBER_KEYS if key in data]
            if per_member:
                raise ValueError(f"{', '.join(per_member)} belong in each replica, not beside 'replicas'")
        return data

    @model_validator(mode="after")
    def _one_credential(self, info: ValidationInfo) -> ReplicaGroup:
        for replica in self.replicas:  # a member's Authorization header is a credential too
            self._resolve_credential(info, replica.headers)
        return self

    @model_validator(mode="after")
    def _settings_for_its_members(self) -> ReplicaGroup:
        """The stdio settings need a stdio member, the remote credentials a remote one."""
        for keys, kind, members in (
            (
                _StdioLimits.model_fields,
                "a stdio member ('command')",
                [r for r in self.replicas if r.command is not None],
            ),
            (
                _RemoteCredentials.model_fields,
                "a remote member ('url')",
                [r for r in self.replicas if r.url is not None],
            ),
        ):
            wrong = [key for key in keys if key in self.model_fields_set]
            if wrong and not members:
                raise ValueError(f"{', '.join(wrong)} only apply to {kind}, and this group has none")
        return self

    @property
    def kind(self) -> Literal["replicas"]:
        """How the hub reaches this server: through its members."""
        return "replicas"

    def members(self, server_id: str) -> list[tuple[str, MemberConfig]]:
        """`(member id, config)` of each member: `<server_id>/1`, `<server_id>/2`, ... (a `/`
        never occurs in a server_id), each a `StdioServer` or `RemoteServer` with the group's
        settings and its own address."""
        shared: dict[str, Any] = {name: getattr(self, name) for name in ServerSettings.model_fields}
        members: list[tuple[str, MemberConfig]] = []
        for index, replica in enumerate(self.replicas, start=1):
            member: MemberConfig
            if replica.command is not None:
                limits = {name: getattr(self, name) for name in _StdioLimits.model_fields}
                address = replica.model_dump(include={"command", "args", "env", "cwd"})
                member = StdioServer.model_construct(**{**shared, **limits, **address})
            else:
                credentials = {name: getattr(self, name) for name in _RemoteCredentials.model_fields}
                address = replica.model_dump(include={"url", "transport", "headers"})
                member = RemoteServer.model_construct(**{**shared, **credentials, **address})
                member._bearer_token = self._bearer_token
            members.append((f"{server_id}/{index}", member))
        return members

    def secret_values(self) -> list[str]:
        """Configured values to mask in anything the hub shows: every member's `env` and
        `headers` values, the bearer token and the OAuth client secret."""
        values = [value for replica in self.replicas for value in (*replica.env.values(), *replica.headers.values())]
        return [value for value in (*values, *self._credential_secrets()) if value]


MemberConfig: TypeAlias = StdioServer | RemoteServer
"""The config of one server connection: a stdio server, a remote server, or a member of a
replica group (`ServerEntry.members()`)."""


def _entry_kind(value: Any) -> str | None:
    """Which model validates an entry: `replicas` if it has replicas, else `stdio` for a
    `command`, `remote` for a `url`; None (one error, `_ONE_KIND`) for both or neither."""
    for model, tag in ((StdioServer, "stdio"), (RemoteServer, "remote"), (ReplicaGroup, "replicas")):
        if isinstance(value, model):
            return tag
    if not isinstance(value, dict):
        return "stdio"  # not a mapping: the model's own error says so
    given = [key for key in _KIND_KEYS if key in value and not _not_given(key, value[key])]
    if "replicas" in given:
        return "replicas"
    if given == ["command"]:
        return "stdio"
    return "remote" if given == ["url"] else None


SERVER_KIND_TAGS = ("stdio", "remote", "replicas")
"""The tags of `ServerEntry`'s members: pydantic adds the chosen one to an error's location."""

ServerEntry = Annotated[
    Annotated[StdioServer, Tag("stdio")]
    | Annotated[RemoteServer, Tag("remote")]
    | Annotated[ReplicaGroup, Tag("replicas")],
    Discriminator(_entry_kind, custom_error_type="server_kind", custom_error_message=_ONE_KIND),
]
"""One entry of `servers`: a `StdioServer`, a `RemoteServer` or a `ReplicaGroup`, chosen by the
key it has (`command`, `url`, `replicas`)."""
