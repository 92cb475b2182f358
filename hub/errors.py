"""The hub's error hierarchy; JSON-RPC translation happens once, in the endpoint
(`hub.endpoint.request_boundary`; what a server's failure means is decided in `hub.servers.failures`).

```
HubError
+-- ConfigError            bad file or values; the CLI exits 2
+-- ServerError            .server_id
|   +-- ServerUnavailable  could not start/connect, or the connection broke
|   +-- ServerTimeout      also a TimeoutError
|   +-- ServerProtocolError  the server broke MCP
+-- RouteNotFound          -> JSON-RPC -32602 naming what was asked for
+-- AuthError              -> HTTP 401 / 403 (503 when the issuer's keys cannot be fetched)
+-- RateLimited            -> JSON-RPC RATE_LIMITED (-32029) with retry_after_seconds
```

An `MCPError` answered by a server passes through with its code; a `CallToolResult` with
`isError: true` is data, not an exception.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import httpx2
from mcp import MCPError
from mcp.client.auth.exceptions import OAuthTokenError

__all__ = [
    "RATE_LIMITED",
    "AuthError",
    "ConfigError",
    "HubError",
    "RateLimited",
    "RouteNotFound",
    "ServerError",
    "ServerProtocolError",
    "ServerTimeout",
    "ServerUnavailable",
    "describe_failure",
]


RATE_LIMITED: Final = -32029
"""JSON-RPC error code of a call refused by a per-route rate limit (`RateLimited`; server-defined
range; `data.retry_after_seconds` says when to retry)."""


class HubError(Exception):
    """Base of every error the hub raises on purpose."""


class ConfigError(HubError):
    """A config file or value is wrong.

    `str(err)` is one line: `<file>: <key.path>: <reason>` (parts omitted when unknown).
    """

    def __init__(self, reason: str, *, file: str | None = None, key_path: str | None = None) -> None:
        self.reason = reason
        self.file = file
        self.key_path = key_path
        super().__init__(": ".join(part for part in (file, key_path, reason) if part))


class ServerError(HubError):
    """Something went wrong with one server; `server_id` names it."""

    def __init__(self, server_id: str, message: str) -> None:
        self.server_id = server_id
        self.message = message
        super().__init__(f"server '{server_id}': {message}")


class ServerUnavailable(ServerError):
    """The server could not be started or reached, or its connection broke.

    `delivered` is False only when the request provably never left the hub (the server was not
    connected, its circuit was open, its queue was full, or the SDK refused the write): such a
    request is safe to send again anywhere. True means it may have reached the server (the
    rules are in `hub.retry_rules`).
    """

    def __init__(self, server_id: str, message: str, *, delivered: bool = True) -> None:
        super().__init__(server_id, message)
        self.delivered = delivered


class ServerTimeout(ServerError, TimeoutError):
    """The server did not answer within its timeout; it was sent a cancellation."""


class ServerProtocolError(ServerError):
    """The server answered something that is not valid MCP."""


class RouteNotFound(HubError):
    """No route has the name or URI a client asked for (JSON-RPC -32602 at the endpoint).

    `suggestions` are names the caller may use that are spelled like the one asked for (at most
    3, from `hub.suggestions`); `str(err)` is `unknown tool: 'x'`, followed by `; did you mean
    'a' or 'b'?` when there are any.
    """

    def __init__(self, kind: str, name: str, suggestions: Sequence[str] = ()) -> None:
        self.kind = kind
        self.name = name
        self.suggestions = list(suggestions)
        message = f"unknown {kind}: {name!r}"
        if self.suggestions:
            quoted = [repr(s) for s in self.suggestions]
            listed = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
            message += f"; did you mean {listed}?"
        super().__init__(message)


class AuthError(HubError):
    """A request that cannot be authenticated or authorised (HTTP, before any MCP handling).

    :ivar status: HTTP status: 401, 403, or 503 when the issuer's keys cannot be fetched.
    :ivar error: the RFC 6750 error code (`invalid_token`, `insufficient_scope`), or None when
        no credentials were presented.
    :ivar scope: for `insufficient_scope`, the one scope that is needed.
    """

    def __init__(self, status: int, error: str | None, description: str, scope: str | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description
        self.scope = scope


class RateLimited(HubError):
    """A principal used a route faster than `rate_limits.routes` allows (JSON-RPC
    `RATE_LIMITED`, with `retry_after_seconds` in the error data)."""

    def __init__(self, exposed: str, retry_after_seconds: float) -> None:
        self.exposed = exposed
        self.retry_after_seconds = retry_after_seconds
        super().__init__(f"rate limit exceeded for {exposed!r}; retry after {retry_after_seconds:.1f} s")


def describe_failure(exc: BaseException) -> str:
    """One line for /readyz and logs saying what went wrong: never a header, a token or a
    URL's query or userinfo (exception groups are described by their first leaf)."""
    if isinstance(exc, BaseExceptionGroup):
        leaves = exc.exceptions
        return describe_failure(leaves[0]) if leaves else type(exc).__name__
    if isinstance(exc, ServerError):
        return exc.message
    if isinstance(exc, OAuthTokenError):
        return str(exc)  # written to name the token endpoint and the OAuth error code, never a secret
    if isinstance(exc, MCPError):
        return f"MCP error {exc.code}: {exc.message}"
    if isinstance(exc, FileNotFoundError):
        return f"command not found: {exc.filename or exc}"
    if isinstance(exc, httpx2.HTTPStatusError):
        return f"HTTP {exc.response.status_code} from {exc.request.url.copy_with(query=None, userinfo=b'')}"
    if isinstance(exc, httpx2.TransportError):
        return f"cannot reach the server: {type(exc).__name__}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__
