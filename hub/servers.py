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
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, TypeVar

import anyio
import anyio.abc
import httpx2
import mcp_types as types
from mcp import Client, MCPError
from mcp.client._transport import Transport
from mcp.client.session import ClientRequestContext
from mcp.shared.auth_utils import resource_url_from_server_url
from mcp.shared.dispatcher import ProgressFnT
from mcp_types import CLIENT_CAPABILITIES_META_KEY, CONNECTION_CLOSED, LOG_LEVEL_META_KEY, METHOD_NOT_FOUND
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
from hub.relay import CURRENT_CHANNEL, ClientChannel, SamplingResult, refusal

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
    :param on_resource_updated: called with `(server_id, original uri)` for every
        `notifications/resources/updated` the server sends (2025-11-25 "Subscriptions"), and
        for every `ResourceUpdated` event of a modern-era server's `subscriptions/listen` stream.
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
    on_resource_updated: Callable[[str, str], Awaitable[None]] | None = None
    spawn: Callable[[Callable[[], Coroutine[Any, Any, None]], str], None] | None = None
    """Starts a supervised background task (the fleet's); needed for `isolation: per_client`."""
    client_key: str | None = None
    """The client this connection is dedicated to (`isolation: per_client` clones), else None."""
    _client: Client | None = None
    _stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=3))
    _inflight: list[ClientChannel] = field(default_factory=list)
    _subscriptions: set[str] = field(default_factory=set)
    _subscriptions_changed: anyio.Event = field(default_factory=anyio.Event)
    _log_level: str | None = None
    _clones: dict[str, ServerConnection] = field(default_factory=dict)
    _clone_scopes: dict[str, anyio.CancelScope] = field(default_factory=dict)
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
            channel = self._channel()
            if channel is not None:
                await channel.log(message.params)
        elif isinstance(message, types.ResourceUpdatedNotification):
            if self.on_resource_updated is not None:
                await self.on_resource_updated(self.server_id, str(message.params.uri))
        elif isinstance(message, Exception):
            logger.warning("server %s sent something that is not MCP: %s", self.server_id, describe_failure(message))

    # ---- server-to-client requests (hub.relay) ----

    def _channel(self) -> ClientChannel | None:
        """The client channel a server request or notification belongs to: the one in context
        (Streamable HTTP, modern era), else the only client with calls in flight on this
        connection (handshake-era stdio/SSE, where nothing links the two; SDK-NOTES 2.6)."""
        channel = CURRENT_CHANNEL.get()
        if channel is not None:
            return channel
        distinct = {id(c): c for c in self._inflight}
        if len(distinct) == 1:
            return next(iter(distinct.values()))
        return None

    def _uncorrelated(self, what: str) -> types.ErrorData:
        count = len(self._inflight)
        logger.warning("server %s sent %s with %d calls in flight: cannot tell whose", self.server_id, what, count)
        return refusal(
            f"the hub cannot tell which of its {count} in-flight calls this {what} belongs to; "
            "configure the server with isolation: per_client"
        )

    async def _on_sampling(
        self, context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> SamplingResult:
        channel = self._channel()
        return self._uncorrelated("sampling/createMessage") if channel is None else await channel.sample(params)

    async def _on_elicitation(
        self, context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult | types.ErrorData:
        channel = self._channel()
        return self._uncorrelated("elicitation/create") if channel is None else await channel.elicit(params)

    async def _on_list_roots(self, context: ClientRequestContext) -> types.ListRootsResult | types.ErrorData:
        channel = self._channel()
        return self._uncorrelated("roots/list") if channel is None else await channel.list_roots()

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
        if config.protocol == "both":
            mode = "legacy" if self.client_key == _LEGACY_ERA_KEY else "auto"
        client = Client(
            watch_closed(self._transport(), closed),
            mode=mode,
            # Requests are bounded one by one (`_request`, listing); the handshake is bounded by
            # startup_timeout_seconds, so a slow-starting server is not cut off by a short timeout.
            read_timeout_seconds=None,
            message_handler=self._on_message,
            sampling_callback=self._on_sampling,
            elicitation_callback=self._on_elicitation,
            list_roots_callback=self._on_list_roots,
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
            modern_required = config.protocol == "modern" or (config.protocol == "both" and self.client_key is None)
            if modern_required and client.protocol_version not in MODERN_PROTOCOL_VERSIONS:
                raise ServerProtocolError(self.server_id, f"speaks {client.protocol_version}, not {_MODERN}")
            self.protocol_version = client.protocol_version
            if client.protocol_version in MODERN_PROTOCOL_VERSIONS:
                _forward_client_capabilities(client)
            self._refresh = anyio.Event()
            await self._publish(await self._list_everything(client))
            self._client = client
            if client.protocol_version not in MODERN_PROTOCOL_VERSIONS:
                await self._restore_session_state(client)
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
        """Modern-era servers send list_changed and resources/updated only on a
        `subscriptions/listen` stream; its events also reach `_on_message` (SDK-NOTES 1.5),
        which refreshes or relays them. The stream is reopened whenever the set of subscribed
        resources changes (a listen filter is fixed when it opens)."""
        caps = client.server_capabilities
        tools = bool(caps.tools and caps.tools.list_changed)
        prompts = bool(caps.prompts and caps.prompts.list_changed)
        resources = bool(caps.resources and caps.resources.list_changed)
        subscribable = bool(caps.resources and caps.resources.subscribe)
        while True:
            changed = self._subscriptions_changed = anyio.Event()
            uris = sorted(self._subscriptions) if subscribable else []
            if tools or prompts or resources or uris:
                try:
                    await self._listen_once(client, tools, prompts, resources, uris, changed)
                except Exception as exc:  # the listen stream is best effort; the connection stays up
                    logger.info("server %s: subscriptions/listen ended: %s", self.server_id, describe_failure(exc))
            await changed.wait()

    async def _listen_once(
        self, client: Client, tools: bool, prompts: bool, resources: bool, uris: list[str], changed: anyio.Event
    ) -> None:
        listen = client.listen(
            tools_list_changed=tools,
            prompts_list_changed=prompts,
            resources_list_changed=resources,
            resource_subscriptions=uris,
        )
        async with listen as subscription, anyio.create_task_group() as tg:

            async def stop_on_change() -> None:
                await changed.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(stop_on_change)
            async for _event in subscription:
                pass
            tg.cancel_scope.cancel()

    async def _restore_session_state(self, client: Client) -> None:
        """After a (re)connect to a handshake-era server: its logging level and resource
        subscriptions are per session, so set them again."""
        with anyio.fail_after(self.config.timeout_seconds):
            if self._log_level is not None and client.server_capabilities.logging is not None:
                await client.session.set_logging_level(self._log_level)  # type: ignore[arg-type]
            for uri in sorted(self._subscriptions):
                await client.session.subscribe_resource(uri)

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

    @property
    def server_capabilities(self) -> types.ServerCapabilities | None:
        """What the server declared (None while not connected)."""
        client = self._client
        return client.server_capabilities if client is not None else None

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
        `notifications/cancelled` (handshake era) or an aborted request (modern era). The
        client channel in context (`hub.relay.CURRENT_CHANNEL`) is recorded as in flight for
        the request's duration, and picks the dedicated connection under `isolation: per_client`.
        """
        channel = CURRENT_CHANNEL.get()
        if channel is not None and self.client_key is None:
            key: str | None = None
            if self.config.isolation == "per_client":
                key = channel.client_key
            elif self.config.protocol == "both" and not channel.modern:
                key = _LEGACY_ERA_KEY
            if key is not None:
                dedicated = await self._dedicated(key)
                return await dedicated._request(method, send)
        client = self._require_client()
        if channel is not None:
            self._inflight.append(channel)
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
        finally:
            if channel is not None:
                self._inflight.remove(channel)

    # ---- isolation: per_client ----

    async def _dedicated(self, client_key: str) -> ServerConnection:
        """This server's connection dedicated to `client_key`, started on first use and
        supervised by the fleet until `release_client(client_key)`.

        :raises ServerUnavailable: it could not be started (the reason names the failure).
        """
        dedicated = self._clones.get(client_key)
        if dedicated is None:
            if self.spawn is None:
                raise ServerUnavailable(self.server_id, "per-client connections need a running fleet")
            dedicated = ServerConnection(
                self.server_id,
                self.config,
                self.pool,
                on_resource_updated=self.on_resource_updated,
                client_key=client_key,
            )
            scope = anyio.CancelScope()
            self._clones[client_key] = dedicated
            self._clone_scopes[client_key] = scope

            async def supervise() -> None:
                # This task is started from a client's request: its copy of the context must not
                # name that client's channel, or every later server request would go to it.
                CURRENT_CHANNEL.set(None)
                try:
                    with scope:
                        await dedicated.run()
                finally:
                    if self._clones.get(client_key) is dedicated:
                        del self._clones[client_key]
                        self._clone_scopes.pop(client_key, None)

            self.spawn(supervise, f"server {self.server_id} for {client_key}")
            logger.info("server %s: starting a dedicated connection for %s", self.server_id, client_key)
        await dedicated.wait_first_attempt()
        return dedicated

    def release_client(self, client_key: str) -> None:
        """Stop the connection dedicated to `client_key` (its client session ended), if any."""
        scope = self._clone_scopes.pop(client_key, None)
        if scope is not None:
            self._clones.pop(client_key, None)
            scope.cancel()
            logger.info("server %s: closed the dedicated connection of %s", self.server_id, client_key)

    @property
    def dedicated_connections(self) -> int:
        """How many per-client connections of this server are open."""
        return len(self._clones)

    def _is_modern(self) -> bool:
        return self.protocol_version in MODERN_PROTOCOL_VERSIONS

    def _meta(self, log_level: str | None) -> dict[str, Any] | None:
        """Per-request `_meta` for a modern-era server: the logging opt-in (2026-07-28 logging)."""
        level = log_level or self._log_level
        return {LOG_LEVEL_META_KEY: level} if level is not None and self._is_modern() else None

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any] | None,
        *,
        progress_callback: ProgressFnT | None = None,
        input_responses: types.InputResponses | None = None,
        request_state: str | None = None,
        allow_input_required: bool = False,
        log_level: str | None = None,
    ) -> types.CallToolResult | types.InputRequiredResult:
        """`tools/call` on this server under the original name, within its timeout.

        With `allow_input_required` a modern-era server's `InputRequiredResult` is returned as
        it is (and `input_responses`/`request_state` are sent unchanged) for the caller to relay;
        otherwise it is answered through the client callbacks (`hub.relay`). Handshake-era
        servers never return one.

        :param log_level: the lowest `notifications/message` level wanted (modern-era servers).
        :raises ServerUnavailable: not connected, or the connection broke mid-call.
        :raises ServerTimeout: no answer within `timeout_seconds` (the server was sent a cancellation).
        :raises MCPError: the server's own error response, code unchanged.
        """

        async def send(client: Client) -> types.CallToolResult | types.InputRequiredResult:
            meta: Any = self._meta(log_level)
            if allow_input_required and self._is_modern():
                result = await client.session.call_tool(
                    name,
                    arguments,
                    progress_callback=progress_callback,
                    input_responses=input_responses,
                    request_state=request_state,
                    meta=meta,
                    allow_input_required=True,
                )
                if not isinstance(result, types.CallToolResult | types.InputRequiredResult):
                    raise ServerProtocolError(self.server_id, f"tools/call returned {type(result).__name__}")
                return result
            return await client.call_tool(name, arguments, progress_callback=progress_callback, meta=meta)

        return await self._request("tools/call", send)

    async def read_resource(
        self,
        uri: str,
        *,
        input_responses: types.InputResponses | None = None,
        request_state: str | None = None,
        allow_input_required: bool = False,
    ) -> types.ReadResourceResult | types.InputRequiredResult:
        """`resources/read` of an original URI; `allow_input_required` and errors as `call_tool`."""

        async def send(client: Client) -> types.ReadResourceResult | types.InputRequiredResult:
            if allow_input_required and self._is_modern():
                return await client.session.read_resource(
                    uri, input_responses=input_responses, request_state=request_state, allow_input_required=True
                )
            return await client.read_resource(uri)

        return await self._request("resources/read", send)

    async def get_prompt(
        self,
        name: str,
        arguments: dict[str, str] | None,
        *,
        input_responses: types.InputResponses | None = None,
        request_state: str | None = None,
        allow_input_required: bool = False,
    ) -> types.GetPromptResult | types.InputRequiredResult:
        """`prompts/get` under the original name; `allow_input_required` and errors as `call_tool`."""

        async def send(client: Client) -> types.GetPromptResult | types.InputRequiredResult:
            if allow_input_required and self._is_modern():
                return await client.session.get_prompt(
                    name,
                    arguments,
                    input_responses=input_responses,
                    request_state=request_state,
                    allow_input_required=True,
                )
            return await client.get_prompt(name, arguments)

        return await self._request("prompts/get", send)

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

    # ---- subscriptions and logging level (shared connection) ----

    async def subscribe(self, uri: str) -> None:
        """Subscribe to updates of original `uri`: `resources/subscribe` at a handshake-era
        server, a `subscriptions/listen` filter at a modern-era one (2026-07-28 replaced the
        former); updates reach `on_resource_updated`.

        :raises ServerUnavailable, ServerTimeout, MCPError: as `call_tool`.
        """
        if not self._is_modern():
            await self._request("resources/subscribe", lambda client: client.session.subscribe_resource(uri))
        else:
            self._require_client()
        if uri not in self._subscriptions:
            self._subscriptions.add(uri)
            self._subscriptions_changed.set()

    async def unsubscribe(self, uri: str) -> None:
        """Undo `subscribe(uri)`; errors as `call_tool`."""
        if uri in self._subscriptions:
            self._subscriptions.discard(uri)
            self._subscriptions_changed.set()
        if not self._is_modern():
            await self._request("resources/unsubscribe", lambda client: client.session.unsubscribe_resource(uri))

    @property
    def subscriptions(self) -> frozenset[str]:
        """The original URIs this connection is subscribed to at its server."""
        return frozenset(self._subscriptions)

    async def set_logging_level(self, level: types.LoggingLevel) -> None:
        """`logging/setLevel` at a handshake-era server; for a modern-era server the level
        becomes the default per-request logging opt-in (`_meta` logLevel, 2026-07-28).

        :raises ServerUnavailable, ServerTimeout, MCPError: as `call_tool`.
        """
        self._log_level = level
        if not self._is_modern():
            caps = self._require_client().server_capabilities
            if caps.logging is not None:
                await self._request("logging/setLevel", lambda client: client.session.set_logging_level(level))


_LEGACY_ERA_KEY: Final = "era:handshake"
"""The dedicated connection of a `protocol: both` server that serves handshake-era clients."""


def _forward_client_capabilities(client: Client) -> None:
    """Make a modern-era connection declare, on each request, the capabilities of the client the
    request is relayed for (`_meta` clientCapabilities, 2026-07-28 "Client capabilities"), so the
    server asks only for what that client can answer and refuses what it cannot (-32021).

    The SDK stamps the connection's own capabilities on every request with no per-request
    override, so its stamp is wrapped (a private attribute, `ClientSession._stamp`)."""
    session: Any = client.session
    original = session._stamp

    def stamp(data: dict[str, Any], opts: Any) -> None:
        original(data, opts)
        channel = CURRENT_CHANNEL.get()
        if channel is None:
            return
        declared = channel.capabilities or types.ClientCapabilities()
        meta = data.setdefault("params", {}).setdefault("_meta", {})
        meta[CLIENT_CAPABILITIES_META_KEY] = declared.model_dump(by_alias=True, mode="json", exclude_none=True)

    session._stamp = stamp


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
        tg = self._tg

        def spawn(fn: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
            tg.start_soon(fn, name=name)

        for connection in self.connections.values():
            connection.spawn = spawn
            tg.start_soon(connection.run, name=f"server {connection.server_id}")
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

    def release_client(self, client_key: str) -> None:
        """A client session ended: close the `isolation: per_client` connections dedicated to it."""
        for connection in self.connections.values():
            connection.release_client(client_key)
