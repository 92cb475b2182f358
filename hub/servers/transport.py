"""The link to one server: which transport reaches it, with which credentials, and what its
stdio child says on the way out.

A connection's supervisor asks `ServerLink.transport()` for a fresh transport on every connect
(`adapters`: stdio subprocess, Streamable HTTP or legacy SSE). The link owns what must outlive
reconnects: the server's configured secrets and its OAuth client (whose cached token is reused),
the tail of a stdio child's stderr and why it ended its connection, and the redaction of both
before they reach a log or `last_error`; and a stdio transport's request-id multiplexer
(`adapters.stdio_mux`), which the raw path sends plain requests through.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

from mcp import MCPError
from mcp.shared.auth_utils import resource_url_from_server_url

from adapters import ClientCredentialsAuth, sse_transport, stdio_transport, streamable_http_transport
from adapters._sdk import Transport
from adapters.stdio_mux import RequestMux
from hub.config import RemoteServer, StdioServer
from hub.errors import describe_failure
from hub.launch import CannotLaunch, StderrTail, resolve_command
from hub.redaction import secret_words
from hub.servers.failures import Breakage, classify
from hub.servers.state import ConnectionLost

if TYPE_CHECKING:
    from hub.servers.connection import ServerConnection

__all__ = ["ServerLink"]

_stderr_logger = logging.getLogger("hub.server_stderr")

_EVENT_ENVELOPE_BYTES: Final = 64 * 1024
"""Allowance over `max_result_bytes` for one SSE event or JSON body (JSON-RPC envelope, `_meta`,
escaping)."""


class ServerLink:
    """How `connection` reaches its server (`connection.link`)."""

    def __init__(self, connection: ServerConnection) -> None:
        self.connection = connection
        config = connection.config
        self.secrets: tuple[str, ...] = secret_words(config.secret_values())
        """The server's configured secrets (env and header values, bearer token, OAuth client
        secret) and each word of 8 or more characters in them."""
        self.auth: ClientCredentialsAuth | None = self._oauth()
        """The server's OAuth client credentials, made once so its cached token outlives reconnects."""
        self.stderr_tail = StderrTail()
        self.close_reason: str | None = None
        """Why the current stdio child ended its connection (exit code, overlong line), if it did."""
        self.mux: RequestMux | None = None
        """The request-id multiplexer of the last stdio transport made (`transport()`), which
        carries the raw path's plain requests (`raw_calls`); None for a remote server. Made
        anew on every connect, before the supervisor's new `Client` is published: while
        `connection._client` is a client, this is the mux of that client's transport."""

    def _oauth(self) -> ClientCredentialsAuth | None:
        connection = self.connection
        config = connection.config
        if not isinstance(config, RemoteServer) or config.oauth is None:
            return None
        oauth = config.oauth
        resource = resource_url_from_server_url(config.url) if oauth.resource is None else oauth.resource or None
        return ClientCredentialsAuth(
            oauth.token_url,
            oauth.client_id,
            oauth.client_secret,
            http=connection.pool.client(timeout_seconds=connection.config.timeout_seconds),
            scope=oauth.scope,
            audience=oauth.audience,
            resource=resource,
            token_endpoint_auth_method=oauth.token_endpoint_auth_method,
            timeout_seconds=min(connection.config.timeout_seconds, 30.0),
            name=connection.server_id,
        )

    def transport(self) -> Transport:
        """A new transport to the server, as configured (not connected yet).

        :raises CannotLaunch: a stdio command that cannot be started (not found, not executable,
            bad cwd).
        """
        server_id, config = self.connection.server_id, self.connection.config
        self.mux = None
        if isinstance(config, StdioServer):
            self.mux = RequestMux()
            return stdio_transport(
                server_id,
                resolve_command(server_id, config.command, config.cwd),
                config.args,
                env=config.env,
                cwd=config.cwd,
                on_stderr_line=self._on_stderr_line,
                max_line_bytes=config.max_line_bytes,
                on_close_reason=self._on_close_reason,
                redact=self.redact,
                mux=self.mux,
            )
        # Only the server's own configured credential goes out: the hub makes its own connections,
        # so a client's token never reaches a server (MCP authorization spec, "Token Passthrough").
        if config.kind == "sse":
            return sse_transport(
                config.url,
                self.connection.pool,
                headers=config.http_headers(),
                timeout_seconds=config.timeout_seconds,
                auth=self.auth,
            )
        # An answer travels in one SSE event or one JSON body: cap it at the result cap plus the
        # JSON-RPC envelope, so an oversized result is cut off while it streams, never held whole.
        return streamable_http_transport(
            config.url,
            self.connection.pool,
            headers=config.http_headers(),
            timeout_seconds=config.timeout_seconds,
            auth=self.auth,
            max_message_bytes=config.max_result_bytes + _EVENT_ENVELOPE_BYTES,
        )

    def current_token(self) -> tuple[str, ...]:
        """The current OAuth access token, if any (masked wherever it appears)."""
        token = self.auth.token if self.auth is not None else None
        return (token,) if token else ()

    def starting(self) -> None:
        """A new connection attempt begins: forget the last child's stderr and exit reason."""
        self.stderr_tail.clear()
        self.close_reason = None

    def _on_close_reason(self, reason: str) -> None:
        self.close_reason = reason

    def _on_stderr_line(self, line: str) -> None:
        line = self.redact(line)
        _stderr_logger.info("[%s] %s", self.connection.server_id, line)
        self.stderr_tail.append(line)

    def redact(self, text: str) -> str:
        """Mask this server's configured secrets (env and header values, bearer token, OAuth
        client secret, and each word of 8 or more characters in them) and its current OAuth
        access token in text that came from the server."""
        token = self.auth.token if self.auth is not None else None
        for secret in (*self.secrets, *([token] if token else [])):
            text = text.replace(secret, "***")
        return text

    def explain(self, exc: BaseException) -> str:
        """`describe_failure(exc)`; when a stdio child went away, why (its exit code) and the
        meaningful lines of what it last wrote to stderr (`hub.launch.StderrTail`)."""
        text = describe_failure(exc)
        while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
            exc = exc.exceptions[0]
        lost = classify(exc) in (Breakage.UNAVAILABLE, Breakage.CLOSED)
        if self.connection.config.kind == "stdio" and lost and not isinstance(exc, CannotLaunch):
            tail = self.stderr_tail.summary()
            if self.close_reason:
                text = self.close_reason
            elif isinstance(exc, MCPError | ConnectionLost):  # closed before its exit status was read
                text = "the server exited"
            if tail:
                text += f"; its stderr ended with: {tail}"
        return self.redact(text)
