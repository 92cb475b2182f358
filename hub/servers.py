"""Server connections: one supervised MCP client session per configured server.

Each `ServerConnection` runs in a task of its own (`Fleet` starts them), so one server failing to
start, crashing or hanging never cancels or delays another (SDK-NOTES.md section 7, gotcha 1: a
broken Streamable HTTP transport cancels the task that entered the `Client`, so that task must be
the connection's own supervisor and nothing else).

Life of a connection::

    starting --connected and listed--> ready --connection lost--> restarting --> ready ...
        \\--could not start--> failed (retrying with backoff) --> ready
    any --Fleet stops--> stopped

While a server is not ready it contributes nothing to the catalog, and calls routed to it fail
at once with `ServerUnavailable`.
"""

from __future__ import annotations

import enum
import logging
import math
import os
import random
import shutil
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, TypeVar

import anyio
import anyio.abc
import httpx2
import mcp_types as types
from mcp import Client, MCPError
from mcp.client._transport import Transport
from mcp.shared.auth_utils import resource_url_from_server_url
from mcp.shared.dispatcher import ProgressFnT
from mcp_types import CONNECTION_CLOSED, METHOD_NOT_FOUND
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from adapters import (
    ClientCredentialsAuth,
    HttpPool,
    sse_transport,
    stdio_transport,
    streamable_http_transport,
    watch_closed,
)
from hub.config import HubConfig, ServerConfig
from hub.errors import ServerProtocolError, ServerTimeout, ServerUnavailable, describe_failure

__all__ = ["Fleet", "ServerConnection", "ServerSnapshot", "ServerState", "ServerStatus"]

logger = logging.getLogger(__name__)
_stderr_logger = logging.getLogger("hub.server_stderr")

_T = TypeVar("_T")

MAX_LIST_PAGES: Final = 1000
"""A server whose pagination does not end after this many pages is treated as broken."""
BACKOFF_INITIAL_SECONDS: Final = 0.5
BACKOFF_MAX_SECONDS: Final = 30.0
_MODERN: Final = MODERN_PROTOCOL_VERSIONS[-1]


class ServerState(enum.StrEnum):
    """Where a server connection is in its life (shown in /readyz and `mcphub servers`)."""

    STARTING = "starting"
    READY = "ready"
    RESTARTING = "restarting"
    FAILED = "failed"
    STOPPED = "stopped"
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class ServerSnapshot:
    """Everything one server offered at its last listing (full cursor walk), original names;
    tools already filtered by the server's `tools: {include, exclude}`."""

    tools: tuple[types.Tool, ...] = ()
    resources: tuple[types.Resource, ...] = ()
    resource_templates: tuple[types.ResourceTemplate, ...] = ()
    prompts: tuple[types.Prompt, ...] = ()


def _resolve_command(command: str) -> str:
    """Find a bare command on PATH, then beside the hub's own interpreter (its virtual
    environment's bin/, where servers installed with the hub live even when it is not activated)."""
    if os.sep in command:
        return command
    search = os.pathsep.join(p for p in (os.environ.get("PATH", ""), os.path.dirname(sys.executable)) if p)
    return shutil.which(command, path=search) or command


@dataclass
class ServerStatus:
    """What /readyz and the admin API report for one server (no secrets)."""

    server_id: str
    state: ServerState
    transport: str
    protocol_version: str | None
    tools: int
    resources: int
    resource_templates: int
    prompts: int
    last_error: str | None
    restarts: int
    since: float
    """Unix time of the last state change."""

    def as_json(self) -> dict[str, Any]:
        return {
            "server_id": self.server_id,
            "state": self.state.value,
            "transport": self.transport,
            "protocol_version": self.protocol_version,
            "tools": self.tools,
            "resources": self.resources,
            "resource_templates": self.resource_templates,
            "prompts": self.prompts,
            "last_error": self.last_error,
            "restarts": self.restarts,
            "since": self.since,
        }


@dataclass(eq=False)
class ServerConnection:
    """The hub's live, supervised MCP client session to one server.

    :param server_id: the key under `servers:`.
    :param config: the server's entry.
    :param pool: the shared HTTP pool (remote servers).
    :param on_snapshot: called with the server's new `ServerSnapshot` after every (re-)listing,
        and with None when the server stops contributing (down, restarting, stopped).
    """

    server_id: str
    config: ServerConfig
    pool: HttpPool
    on_snapshot: Callable[[str, ServerSnapshot | None], Awaitable[None]] | None = None
    state: ServerState = ServerState.STARTING
    protocol_version: str | None = None
    last_error: str | None = None
    restarts: int = 0
    since: float = field(default_factory=time.time)
    snapshot: ServerSnapshot = field(default_factory=ServerSnapshot)
    _client: Client | None = None
    _stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=3))
    _secrets: tuple[str, ...] = ()
    _auth: ClientCredentialsAuth | None = None

    def __post_init__(self) -> None:
        values = self.config.secret_values()
        words = {word for value in values for word in (value, *value.split()) if len(word) >= 8}
        self._secrets = tuple(sorted(words, key=len, reverse=True))
        self._auth = self._oauth()

    def _oauth(self) -> ClientCredentialsAuth | None:
        """The server's OAuth client credentials, made once so its cached token outlives reconnects."""
        oauth, url = self.config.oauth, self.config.url
        if oauth is None or url is None:
            return None
        resource = resource_url_from_server_url(url) if oauth.resource is None else oauth.resource or None
        return ClientCredentialsAuth(
            oauth.token_url,
            oauth.client_id,
            oauth.client_secret,
            http=self.pool.client(timeout_seconds=self.config.timeout_seconds),
            scope=oauth.scope,
            audience=oauth.audience,
            resource=resource,
            token_endpoint_auth_method=oauth.token_endpoint_auth_method,
            timeout_seconds=min(self.config.timeout_seconds, 30.0),
            name=self.server_id,
        )

    _first_attempt_done: anyio.Event = field(default_factory=anyio.Event)
    _refresh: anyio.Event = field(default_factory=anyio.Event)
    _state_changed: anyio.Event = field(default_factory=anyio.Event)

    @property
    def timeout_seconds(self) -> float:
        return self.config.timeout_seconds

    def status(self) -> ServerStatus:
        return ServerStatus(
            server_id=self.server_id,
            state=self.state,
            transport=self.config.kind,
            protocol_version=self.protocol_version,
            tools=len(self.snapshot.tools),
            resources=len(self.snapshot.resources),
            resource_templates=len(self.snapshot.resource_templates),
            prompts=len(self.snapshot.prompts),
            last_error=self.last_error,
            restarts=self.restarts,
            since=self.since,
        )

    async def wait_first_attempt(self) -> None:
        """Return once the first connection attempt has succeeded or failed."""
        await self._first_attempt_done.wait()

    async def wait_for_state(self, *states: ServerState) -> ServerState:
        """Wait until the connection is in one of `states` (bound it with a timeout) and return it."""
        while self.state not in states:
            await self._state_changed.wait()
        return self.state

    def _set_state(self, state: ServerState) -> None:
        if state is not self.state:
            self.state = state
            self.since = time.time()
            self._state_changed.set()
            self._state_changed = anyio.Event()

    def _transport(self) -> Transport:
        config = self.config
        if config.command is not None:
            return stdio_transport(
                self.server_id,
                _resolve_command(config.command),
                config.args,
                env=config.env,
                cwd=config.cwd,
                on_stderr_line=self._on_stderr_line,
            )
        assert config.url is not None
        factory = sse_transport if config.kind == "sse" else streamable_http_transport
        # Only the server's own configured credential goes out: the hub makes its own connections,
        # so a client's token never reaches a server (MCP authorization spec, "Token Passthrough").
        return factory(
            config.url,
            self.pool,
            headers=config.http_headers(),
            timeout_seconds=config.timeout_seconds,
            auth=self._auth,
        )

    def _on_stderr_line(self, line: str) -> None:
        line = self._redact(line)
        _stderr_logger.info("[%s] %s", self.server_id, line)
        self._stderr_tail.append(line)

    def _redact(self, text: str) -> str:
        """Mask this server's configured secrets (env and header values, bearer token, OAuth
        client secret, and each word of 8 or more characters in them) and its current OAuth
        access token in text that came from the server."""
        token = self._auth.token if self._auth is not None else None
        for secret in (*self._secrets, *([token] if token else [])):
            text = text.replace(secret, "***")
        return text

    async def _on_message(self, message: Any) -> None:
        if isinstance(
            message,
            types.ToolListChangedNotification
            | types.ResourceListChangedNotification
            | types.PromptListChangedNotification,
        ):
            logger.info("server %s: %s, re-listing", self.server_id, message.method)
            self._refresh.set()
        elif isinstance(message, types.LoggingMessageNotification):
            data = self._redact(str(message.params.data)[:2000])
            logger.info("server %s log [%s]: %s", self.server_id, message.params.level, data)
        elif isinstance(message, Exception):
            logger.warning("server %s sent something that is not MCP: %s", self.server_id, describe_failure(message))

    async def run(self) -> None:
        """Supervise the connection until cancelled: connect, list, serve, and reconnect with
        jittered exponential backoff (0.5 s doubling to 30 s) whenever it fails or breaks."""
        if not self.config.enabled:
            self._set_state(ServerState.DISABLED)
            self._first_attempt_done.set()
            return
        failures = 0
        try:
            while True:
                was_ready = False
                try:
                    await self._connect_and_serve()
                except Exception as exc:
                    # A connection that had been ready starts the backoff afresh.
                    was_ready = self.state is ServerState.READY
                    failures = 1 if was_ready else failures + 1
                    self.last_error = self._explain(exc)
                    logger.warning("server %s: %s", self.server_id, self.last_error)
                    logger.debug("server %s failure detail", self.server_id, exc_info=exc)
                finally:
                    self._client = None
                    await self._publish(None)
                self._first_attempt_done.set()
                self._set_state(ServerState.RESTARTING if was_ready else ServerState.FAILED)
                self.restarts += 1
                delay = min(BACKOFF_MAX_SECONDS, BACKOFF_INITIAL_SECONDS * 2 ** max(0, failures - 1))
                await anyio.sleep(delay * random.uniform(0.5, 1.0))
                self._set_state(ServerState.RESTARTING)
        finally:
            self._client = None
            self._set_state(ServerState.STOPPED)
            self._first_attempt_done.set()

    def _explain(self, exc: BaseException) -> str:
        """`describe_failure(exc)`, plus the child's last stderr line when a stdio server went away."""
        text = describe_failure(exc)
        while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
            exc = exc.exceptions[0]
        lost = isinstance(exc, ServerUnavailable) or (isinstance(exc, MCPError) and exc.code == CONNECTION_CLOSED)
        if self.config.command is not None and lost and self._stderr_tail:
            text = f"the server exited; its last stderr line: {self._stderr_tail[-1][:300]}"
        return self._redact(text)

    async def _connect_and_serve(self) -> None:
        self._stderr_tail.clear()
        closed = anyio.Event()
        config = self.config
        mode = "legacy" if config.protocol == "legacy" else "auto"
        client = Client(
            watch_closed(self._transport(), closed),
            mode=mode,
            # Requests are bounded one by one (`_request`, listing); the handshake is bounded by
            # startup_timeout_seconds, so a slow-starting server is not cut off by a short timeout.
            read_timeout_seconds=None,
            message_handler=self._on_message,
            cache=None,
        )
        # The transport's task group must be entered and left in this task, nested in order, so
        # the connect deadline is a scope around the whole session, lifted once connected.
        with anyio.CancelScope(deadline=anyio.current_time() + config.startup_timeout_seconds) as connect_scope:
            async with client:
                connect_scope.deadline = math.inf
                await self._serve(client, closed)
        if connect_scope.cancelled_caught:
            raise ServerUnavailable(self.server_id, f"did not start within {config.startup_timeout_seconds:g} s")

    async def _serve(self, client: Client, closed: anyio.Event) -> None:
        """List everything, go ready, then re-list on every change until the connection closes."""
        config = self.config
        try:
            if config.protocol == "modern" and client.protocol_version not in MODERN_PROTOCOL_VERSIONS:
                raise ServerProtocolError(self.server_id, f"speaks {client.protocol_version}, not {_MODERN}")
            self.protocol_version = client.protocol_version
            self._refresh = anyio.Event()
            await self._publish(await self._list_everything(client))
            self._client = client
            self.last_error = None
            self._set_state(ServerState.READY)
            self._first_attempt_done.set()
            logger.info(
                "server %s ready (%s, %s): %d tools, %d resources, %d resource templates, %d prompts",
                self.server_id,
                config.kind,
                self.protocol_version,
                len(self.snapshot.tools),
                len(self.snapshot.resources),
                len(self.snapshot.resource_templates),
                len(self.snapshot.prompts),
            )
            async with anyio.create_task_group() as tg:
                if client.protocol_version in MODERN_PROTOCOL_VERSIONS:
                    tg.start_soon(self._listen_for_changes, client)
                while not closed.is_set():
                    await _wait_any(closed, self._refresh)
                    if self._refresh.is_set() and not closed.is_set():
                        self._refresh = anyio.Event()
                        await self._publish(await self._list_everything(client))
                tg.cancel_scope.cancel()
            raise ServerUnavailable(self.server_id, "the connection closed (the server exited or hung up)")
        finally:
            self._client = None

    async def _listen_for_changes(self, client: Client) -> None:
        """Modern-era servers send list_changed only on a `subscriptions/listen` stream; its
        events also reach `_on_message` (SDK-NOTES 1.5), which triggers the refresh."""
        caps = client.server_capabilities
        tools = bool(caps.tools and caps.tools.list_changed)
        prompts = bool(caps.prompts and caps.prompts.list_changed)
        resources = bool(caps.resources and caps.resources.list_changed)
        if not (tools or prompts or resources):
            return
        try:
            listen = client.listen(
                tools_list_changed=tools, prompts_list_changed=prompts, resources_list_changed=resources
            )
            async with listen as subscription:
                async for _event in subscription:
                    pass
        except Exception as exc:  # the listen stream is best effort; the connection itself stays up
            logger.info("server %s: subscriptions/listen ended: %s", self.server_id, describe_failure(exc))

    async def _publish(self, snapshot: ServerSnapshot | None) -> None:
        self.snapshot = snapshot or ServerSnapshot()
        if self.on_snapshot is not None:
            with anyio.CancelScope(shield=True):
                await self.on_snapshot(self.server_id, snapshot)

    async def _list_everything(self, client: Client) -> ServerSnapshot:
        caps = client.server_capabilities
        with anyio.fail_after(self.config.timeout_seconds):
            tools = (
                [t for t in await self._walk(client.list_tools, "tools") if self.config.tools.allows(t.name)]
                if caps.tools
                else []
            )
            resources = await self._walk(client.list_resources, "resources") if caps.resources else []
            templates = await self._walk(client.list_resource_templates, "resource_templates") if caps.resources else []
            prompts = await self._walk(client.list_prompts, "prompts") if caps.prompts else []
        return ServerSnapshot(tuple(tools), tuple(resources), tuple(templates), tuple(prompts))

    async def _walk(self, list_page: Callable[..., Awaitable[Any]], attribute: str) -> list[Any]:
        items: list[Any] = []
        cursor: str | None = None
        seen_cursors: set[str] = set()
        for _ in range(MAX_LIST_PAGES):
            try:
                page = await list_page(cursor=cursor)
            except MCPError as exc:
                if exc.code == METHOD_NOT_FOUND:
                    return items
                raise
            items.extend(getattr(page, attribute))
            cursor = page.next_cursor
            if cursor is None:
                return items
            if cursor in seen_cursors:
                raise ServerProtocolError(self.server_id, f"{attribute} pagination repeats the cursor {cursor!r}")
            seen_cursors.add(cursor)
        raise ServerProtocolError(self.server_id, f"{attribute} pagination did not end after {MAX_LIST_PAGES} pages")

    def require_ready(self) -> None:
        """:raises ServerUnavailable: the server is not connected (down, restarting, failed, disabled)."""
        self._require_client()

    def _require_client(self) -> Client:
        client = self._client
        if client is None:
            reason = f" ({self.last_error})" if self.last_error else ""
            raise ServerUnavailable(self.server_id, f"not connected, state {self.state.value}{reason}")
        return client

    async def _request(self, method: str, send: Callable[[Client], Awaitable[_T]]) -> _T:
        """Send one request within `timeout_seconds`, translating transport-level failures once;
        a server's own MCP error passes through with its code.

        On expiry the request's scope is cancelled, which the SDK turns into
        `notifications/cancelled` (handshake era) or an aborted request (modern era).
        """
        client = self._require_client()
        try:
            with anyio.fail_after(self.config.timeout_seconds):
                return await send(client)
        except TimeoutError as exc:
            message = f"no answer to {method} within {self.config.timeout_seconds:g} s (cancelled)"
            raise ServerTimeout(self.server_id, message) from exc
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED:
                raise ServerUnavailable(self.server_id, f"the connection closed during {method}") from exc
            raise
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, httpx2.TransportError) as exc:
            raise ServerUnavailable(self.server_id, f"the connection broke during {method}") from exc

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any] | None,
        *,
        progress_callback: ProgressFnT | None = None,
    ) -> types.CallToolResult:
        """`tools/call` on this server under the original name, within its timeout.

        :raises ServerUnavailable: not connected, or the connection broke mid-call.
        :raises ServerTimeout: no answer within `timeout_seconds` (the server was sent a cancellation).
        :raises MCPError: the server's own error response, code unchanged.
        """
        return await self._request(
            "tools/call", lambda client: client.call_tool(name, arguments, progress_callback=progress_callback)
        )

    async def read_resource(self, uri: str) -> types.ReadResourceResult:
        """`resources/read` of an original URI; errors as `call_tool`."""
        return await self._request("resources/read", lambda client: client.read_resource(uri))

    async def get_prompt(self, name: str, arguments: dict[str, str] | None) -> types.GetPromptResult:
        """`prompts/get` under the original name; errors as `call_tool`."""
        return await self._request("prompts/get", lambda client: client.get_prompt(name, arguments))

    async def complete(
        self,
        ref: types.PromptReference | types.ResourceTemplateReference,
        argument: dict[str, str],
        context_arguments: dict[str, str] | None,
    ) -> types.CompleteResult:
        """`completion/complete` with an original prompt name or URI template; errors as `call_tool`."""
        return await self._request(
            "completion/complete", lambda client: client.complete(ref, argument, context_arguments)
        )


async def _wait_any(*events: anyio.Event) -> None:
    async with anyio.create_task_group() as tg:

        async def wait_one(event: anyio.Event) -> None:
            await event.wait()
            tg.cancel_scope.cancel()

        for event in events:
            tg.start_soon(wait_one, event)


class Fleet:
    """Every configured server's connection, each supervised in its own task.

    Use as `async with Fleet(config, on_snapshot=...) as fleet:`; leaving the block stops every
    server (stdio children are shut down as whole process trees).
    """

    def __init__(
        self, config: HubConfig, *, on_snapshot: Callable[[str, ServerSnapshot | None], Awaitable[None]] | None = None
    ) -> None:
        self.pool = HttpPool()
        self.connections: dict[str, ServerConnection] = {
            server_id: ServerConnection(server_id, server, self.pool, on_snapshot)
            for server_id, server in config.servers.items()
        }
        self._tg: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> Fleet:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        for connection in self.connections.values():
            self._tg.start_soon(connection.run, name=f"server {connection.server_id}")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        try:
            await self._tg.__aexit__(exc_type, exc, tb)
        finally:
            with anyio.CancelScope(shield=True):
                await self.pool.aclose()

    async def wait_first_attempts(self, timeout_seconds: float | None = None) -> None:
        """Wait until every server has connected or failed once (bounded by `timeout_seconds`)."""
        with anyio.move_on_after(timeout_seconds):
            for connection in self.connections.values():
                await connection.wait_first_attempt()

    def get(self, server_id: str) -> ServerConnection | None:
        return self.connections.get(server_id)
