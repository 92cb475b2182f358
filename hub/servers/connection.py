"""Server connections: one supervised MCP client session per configured server.

Each `ServerConnection` runs in a task of its own (`Fleet` starts them), so one server failing to
start, crashing or hanging never cancels or delays another (SDK-NOTES.md section 7, gotcha 1: a
broken Streamable HTTP transport cancels the task that entered the `Client`, so that task must be
the connection's own supervisor and nothing else).

Life of a connection::

    starting --connected and listed--> ready --connection lost--> restarting --> ready ...
        \\--could not start--> failed (retrying with backoff) --> ready
    stdio: more than max_restarts exits within restart_window_seconds --> failed (crash loop:
        no more restarts) --restart() / reload--> restarting --> ready
    any --Fleet stops--> stopped

While a server is not ready it contributes nothing to the catalog, and calls routed to it fail
at once with `ServerUnavailable` (`delivered=False`: the router may send them elsewhere).

A connected server's reported state (`health_state`, shown in /readyz, /admin and `mcphub
servers`) is refined by its circuit breaker and health checks: `open` while the breaker is not
closed, `degraded` after recent failed requests or health checks, else `ready`. A server with
`replicas:` runs one connection per member, keyed `<server_id>/<n>` (`Fleet.members`).
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import logging
import math
import random
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
from mcp.client.session import ClientRequestContext
from mcp.shared.auth_utils import resource_url_from_server_url
from mcp.shared.dispatcher import ProgressFnT
from mcp_types import (
    CLIENT_CAPABILITIES_META_KEY,
    CONNECTION_CLOSED,
    INTERNAL_ERROR,
    LOG_LEVEL_META_KEY,
    METHOD_NOT_FOUND,
    REQUEST_TIMEOUT,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ConfigDict

from adapters import (
    ClientCredentialsAuth,
    HttpPool,
    sse_transport,
    stdio_transport,
    streamable_http_transport,
    watch_closed,
)
from adapters._sdk import Transport, stamp_each_request
from adapters.oversize import answer_too_large_limit
from hub.config import HubConfig, ServerConfig
from hub.errors import ServerProtocolError, ServerTimeout, ServerUnavailable, describe_failure
from hub.federation import Advertisement, Federation, inbound_chain, looping_server
from hub.launch import CannotLaunch, StderrTail, resolve_command
from hub.limits import BreakerState, CircuitBreaker, ConcurrencyLimiter
from hub.list_freshness import (
    RELIST_CEILING_SECONDS,
    RELIST_FLOOR_SECONDS,
    announced_lists,
    page_ttl_ms,
    relist_interval_seconds,
)
from hub.logs import counted, server_id_var
from hub.push_era import CARRYING_METHODS, PushingServers, PushNeedsHandshakeEra, pushed_method
from hub.redaction import SECRETS, mask_log_params, mask_model, secret_words
from hub.relay import CURRENT_CHANNEL, ClientChannel, SamplingResult, refusal
from hub.resilience import EventSink, ResultTooLarge, delivery_mark, is_transport_size_abort, track_delivery
from hub.startup import StartSlots, StartupGate
from hub.state import new_hub_id
from hub.task_wire import (
    CreatedTask,
    LegacyCreatedTask,
    TasksClientExtension,
    call_tool_as_task,
    expose_related_task,
    task_request,
)

__all__ = ["ConnectionLost", "Fleet", "ServerConnection", "ServerSnapshot", "ServerState", "ServerStatus"]

logger = logging.getLogger(__name__)
_stderr_logger = logging.getLogger("hub.server_stderr")

_T = TypeVar("_T")

MAX_LIST_PAGES: Final = 1000
"""A server whose pagination does not end after this many pages is treated as broken."""
BACKOFF_INITIAL_SECONDS: Final = 0.5
BACKOFF_MAX_SECONDS: Final = 30.0
_MODERN: Final = MODERN_PROTOCOL_VERSIONS[-1]
_EVENT_ENVELOPE_BYTES: Final = 64 * 1024
"""Allowance over `max_result_bytes` for one SSE event or JSON body (JSON-RPC envelope, `_meta`,
escaping)."""
_RELIST_DEBOUNCE_SECONDS: Final = 0.1
"""list_changed notifications arriving within this long of the first one cause one re-list."""


class ServerState(enum.StrEnum):
    """Where a server connection is in its life (shown in /readyz and `mcphub servers`)."""

    STARTING = "starting"
    READY = "ready"
    DEGRADED = "degraded"
    """Connected and serving, but recent requests or health checks failed."""
    OPEN = "open"
    """Connected, but its circuit breaker is open: requests fail fast (or go to a fallback)."""
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


class ConnectionLost(ServerUnavailable):
    """The server connection closed or broke while a request was on it. `generation` names the
    connection that was lost (`ServerConnection.generation`): every request in flight on it
    fails with the same one, and the circuit breaker counts them as one failure."""

    def __init__(self, server_id: str, message: str, *, delivered: bool, generation: int) -> None:
        super().__init__(server_id, message, delivered=delivered)
        self.generation = generation


_GENERATIONS: Final = itertools.count(1)
"""Connection generations, unique across every server connection of the process."""


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
    replica_of: str | None = None
    """The logical server_id when this is a replica member (`<server_id>/<n>`)."""
    breaker: str = "closed"
    """`closed`, `open` or `half_open`."""
    consecutive_failures: int = 0
    in_flight: int = 0
    queued: int = 0

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
            "replica_of": self.replica_of,
            "breaker": self.breaker,
            "consecutive_failures": self.consecutive_failures,
            "in_flight": self.in_flight,
            "queued": self.queued,
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
    on_task_status: Callable[[str, dict[str, Any]], Awaitable[None]] | None = None
    """Called with `(server_id, params)` for every task status notification the server sends
    (`notifications/tasks/status`, 2025-11-25; `notifications/tasks`, SEP-2663)."""
    spawn: Callable[[Callable[[], Coroutine[Any, Any, None]], str], None] | None = None
    """Starts a supervised background task (the fleet's); needed for `isolation: per_client`."""
    client_key: str | None = None
    """The client this connection is dedicated to (`isolation: per_client` clones), else None."""
    in_flight: int = 0
    """Requests sent through this connection and not answered yet (a drain waits for 0)."""
    events: EventSink = field(default_factory=EventSink)
    """Where breaker, queue and health events go (`Fleet.events`, wired to metrics)."""
    health_failures: int = 0
    """Consecutive failed health checks (state `degraded` while > 0)."""
    start_slots: StartSlots | None = None
    """Bounds how many stdio servers start at once (the fleet's); None: not bounded."""
    generation: int = 0
    """The current connection to the server: a number unique in the process, new each time it
    connects (0: never connected). Requests that fail because it was lost name it
    (`ConnectionLost`), so the breaker counts one loss once."""
    breaker: CircuitBreaker = field(init=False)
    limiter: ConcurrencyLimiter = field(init=False)
    _last_answer: float = field(default_factory=time.monotonic)
    """`time.monotonic()` of the last answer (or connect): health checks run when idle."""
    _client: Client | None = None
    _stderr_tail: StderrTail = field(default_factory=StderrTail)
    _inflight: list[ClientChannel] = field(default_factory=list)
    _subscriptions: set[str] = field(default_factory=set)
    _subscriptions_changed: anyio.Event = field(default_factory=anyio.Event)
    _log_level: str | None = None
    _clones: dict[str, ServerConnection] = field(default_factory=dict)
    _clone_scopes: dict[str, anyio.CancelScope] = field(default_factory=dict)
    _secrets: tuple[str, ...] = ()
    _auth: ClientCredentialsAuth | None = None
    federation: Federation | None = None
    """This hub's federation state: outgoing requests carry its hub chain, and a server that is
    this hub or federates it is refused (`hub.federation`)."""
    _list_meta: dict[str, Any] | None = None
    relist_at: float | None = None
    """`anyio.current_time()` at which this server's lists expire and it is listed again (their
    shortest `ttlMs`, bounded: `hub.list_freshness`); None while it is not connected, and for a
    server whose lists do not expire (it is re-listed only when it announces a change)."""
    _list_ttls: dict[str, int] = field(default_factory=dict)
    """The shortest `ttlMs` each list carried at the last listing (modern era), by list."""
    _listed_at: float = 0.0
    """`anyio.current_time()` of the last listing."""
    pushing: PushingServers | None = None
    """The fleet's record of the servers whose handlers push requests mid-call (`hub.push_era`);
    None: not learnt (a connection outside a fleet)."""

    def __post_init__(self) -> None:
        self._secrets = secret_words(self.config.secret_values())
        self._auth = self._oauth()
        # Masked process-wide too: in relayed log messages, errors and every log line (hub.redaction).
        SECRETS.register(self, self._secrets, ServerConnection._current_token if self._auth is not None else None)
        member = self.server_id
        self.breaker = CircuitBreaker(
            self.config.breaker, lambda state: self.events.emit("on_breaker_change", member, state.value)
        )
        self.limiter = ConcurrencyLimiter(
            member,
            self.config.max_concurrency,
            self.config.max_queue,
            lambda depth: self.events.emit("on_queue_depth", member, depth),
            lambda: self.events.emit("on_rejected", member),
        )

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
    _relist_methods: set[str] | None = None
    """The list_changed methods of the burst whose debounce window is open, or None."""
    _state_changed: anyio.Event = field(default_factory=anyio.Event)
    _restart_requested: anyio.Event = field(default_factory=anyio.Event)
    _close_reason: str | None = None
    """Why the current stdio child ended its connection (exit code, overlong line), if it did."""
    crash_looped: bool = False
    """True while the server is held `failed` by the crash-loop cap (waiting for `restart()`)."""
    awaiting_restart: bool = False
    """True while the server is `failed` and not retried until `restart()` (or a reload): after
    a crash loop, as a federation loop, or when it cannot be launched as configured
    (`CannotLaunch`)."""
    _starting_for: list[ClientChannel] = field(default_factory=list)
    """Channels of the client requests waiting for this `isolation: per_client` connection to start."""
    _client_roots: types.ListRootsResult | None = None
    """The roots the owning client last answered (`isolation: per_client` connections)."""
    _lost_generation: int = 0
    """The last generation a request found closed."""
    _no_calls: anyio.Event = field(default_factory=anyio.Event)

    @property
    def timeout_seconds(self) -> float:
        return self.config.timeout_seconds

    @property
    def health_state(self) -> ServerState:
        """`state`, refined for a connected server: `open` while its circuit is not closed,
        `degraded` after recent failed requests or health checks, else `ready`."""
        if self.state is not ServerState.READY:
            return self.state
        if self.breaker.state is not BreakerState.CLOSED:
            return ServerState.OPEN
        if self.breaker.consecutive_failures or self.health_failures:
            return ServerState.DEGRADED
        return ServerState.READY

    def status(self) -> ServerStatus:
        logical, slash, _ = self.server_id.partition("/")
        return ServerStatus(
            server_id=self.server_id,
            state=self.health_state,
            transport=self.config.kind,
            protocol_version=self.protocol_version,
            tools=len(self.snapshot.tools),
            resources=len(self.snapshot.resources),
            resource_templates=len(self.snapshot.resource_templates),
            prompts=len(self.snapshot.prompts),
            last_error=self.last_error,
            restarts=self.restarts,
            since=self.since,
            replica_of=logical if slash else None,
            breaker=self.breaker.state.value,
            consecutive_failures=self.breaker.consecutive_failures,
            in_flight=self.in_flight,
            queued=self.limiter.waiting,
        )

    async def wait_first_attempt(self) -> None:
        """Return once the first connection attempt has succeeded or failed."""
        await self._first_attempt_done.wait()

    async def wait_no_calls(self) -> None:
        """Return once no request is in flight on this connection (bound it with a timeout)."""
        while self.in_flight:
            await self._no_calls.wait()

    async def wait_for_state(self, *states: ServerState) -> ServerState:
        """Wait until the connection is in one of `states` (bound it with a timeout) and return it."""
        while self.state not in states:
            await self._state_changed.wait()
        return self.state

    @property
    def connected(self) -> bool:
        """Whether requests can be sent now: connected and listed, and no request has found the
        connection closed (the supervisor may not have noticed yet)."""
        return self._client is not None and self._lost_generation != self.generation

    @property
    def coming_up(self) -> bool:
        """Whether the server is not connected but on its way: starting, restarting, or just
        lost and about to restart. A `failed` (backing off, crash-looped, cannot launch),
        disabled or stopped server is not."""
        return not self.connected and self.state in (ServerState.STARTING, ServerState.RESTARTING, ServerState.READY)

    async def wait_state_change(self) -> None:
        """Return at the next change of `state` (bound it with a timeout)."""
        await self._state_changed.wait()

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
                resolve_command(self.server_id, config.command, config.cwd),
                config.args,
                env=config.env,
                cwd=config.cwd,
                on_stderr_line=self._on_stderr_line,
                max_line_bytes=config.max_line_bytes,
                on_close_reason=self._on_close_reason,
                redact=self._redact,
            )
        assert config.url is not None
        # Only the server's own configured credential goes out: the hub makes its own connections,
        # so a client's token never reaches a server (MCP authorization spec, "Token Passthrough").
        if config.kind == "sse":
            return sse_transport(
                config.url,
                self.pool,
                headers=config.http_headers(),
                timeout_seconds=config.timeout_seconds,
                auth=self._auth,
            )
        # An answer travels in one SSE event or one JSON body: cap it at the result cap plus the
        # JSON-RPC envelope, so an oversized result is cut off while it streams, never held whole.
        return streamable_http_transport(
            config.url,
            self.pool,
            headers=config.http_headers(),
            timeout_seconds=config.timeout_seconds,
            auth=self._auth,
            max_message_bytes=config.max_result_bytes + _EVENT_ENVELOPE_BYTES,
        )

    def _current_token(self) -> tuple[str, ...]:
        token = self._auth.token if self._auth is not None else None
        return (token,) if token else ()

    def _on_close_reason(self, reason: str) -> None:
        self._close_reason = reason

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

    async def _relist_soon(self, method: str) -> None:
        """Ask `_serve` for one re-list per burst of list_changed notifications: the first opens
        a window of `_RELIST_DEBOUNCE_SECONDS` that later ones join (each notification runs in a
        task of its own), then one line is logged and the refresh is set, unless a re-list is
        already pending (SECURITY.md case 38: a list_changed storm is debounced)."""
        pending = self._relist_methods
        if pending is not None:
            pending.add(method)
            return
        self._relist_methods = pending = {method}
        try:
            await anyio.sleep(_RELIST_DEBOUNCE_SECONDS)
        finally:
            self._relist_methods = None
        if not self._refresh.is_set():
            logger.info("server %s: %s, re-listing", self.server_id, ", ".join(sorted(pending)))
            self._refresh.set()

    async def _on_message(self, message: Any) -> None:
        if isinstance(
            message,
            types.ToolListChangedNotification
            | types.ResourceListChangedNotification
            | types.PromptListChangedNotification,
        ):
            await self._relist_soon(message.method)
        elif isinstance(message, types.LoggingMessageNotification):
            params = mask_log_params(message.params)
            data = self._redact(str(params.data)[:2000])
            logger.info("server %s log [%s]: %s", self.server_id, params.level, data)
            channel = self._channel()
            if channel is not None:
                await channel.log(params)
        elif isinstance(message, types.ResourceUpdatedNotification):
            if self.on_resource_updated is not None:
                await self.on_resource_updated(self.server_id, str(message.params.uri))
        elif isinstance(message, Exception):
            logger.warning("server %s sent something that is not MCP: %s", self.server_id, describe_failure(message))

    async def _on_task_status(self, params: dict[str, Any]) -> None:
        if self.on_task_status is not None:
            await self.on_task_status(self.server_id, params)

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
        if not count:
            logger.info("server %s sent %s with no call in flight: no client to ask", self.server_id, what)
            return refusal(f"the hub has no client request in flight to relay this {what} to")
        logger.warning("server %s sent %s with %d calls in flight: cannot tell whose", self.server_id, what, count)
        return refusal(
            f"the hub cannot tell which of its {count} in-flight calls this {what} belongs to; "
            "configure the server with isolation: per_client"
        )

    async def _on_sampling(
        self, context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> SamplingResult:
        channel = self._channel()
        if channel is None:
            return self._uncorrelated("sampling/createMessage")
        return await channel.sample(mask_model(expose_related_task(params, self.server_id)))

    async def _on_elicitation(
        self, context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult | types.ErrorData:
        channel = self._channel()
        if channel is None:
            return self._uncorrelated("elicitation/create")
        return await channel.elicit(mask_model(expose_related_task(params, self.server_id)))

    async def _on_list_roots(self, context: ClientRequestContext) -> types.ListRootsResult | types.ErrorData:
        """`roots/list` from the server: relayed to the client whose call is in flight. With no
        call in flight (a server asks at start-up), an `isolation: per_client` connection
        answers with its own client's roots (asked while that client's first call waits for
        the connection to start, else the last ones it answered), any other an empty list."""
        channel = self._channel()
        if channel is None and self._inflight:
            return self._uncorrelated("roots/list")
        known = self._client_roots or types.ListRootsResult(roots=[])
        if channel is None and not self._starting_for:
            return known
        result = await (channel or self._starting_for[0]).list_roots()
        if isinstance(result, types.ListRootsResult):
            if self.client_key is not None:
                self._client_roots = result
        elif channel is None:  # the owner cannot be asked (no roots capability, modern era)
            logger.debug("server %s: roots/list at start-up not relayed: %s", self.server_id, result.message)
            return known
        return result

    async def run(self) -> None:
        """Supervise the connection until cancelled: connect, list, serve, and reconnect with
        jittered exponential backoff (0.5 s doubling to 30 s, times a random 0.5-1) whenever it
        fails or breaks.

        A stdio server that exits more than `max_restarts` times within `restart_window_seconds`
        is in a crash loop: it stays `failed` (no more restarts) until `restart()` is called
        (`mcphub restart <server_id>`, POST /admin/servers/<server_id>/restart, or a reload).
        One that cannot be launched at all (`CannotLaunch`: command not found, not executable,
        bad cwd) is a configuration problem: it is `failed` at once, without retries, until the
        same. Remote servers are reconnected without a cap (the remote side may come back)."""
        if not self.config.enabled:
            self._set_state(ServerState.DISABLED)
            self._first_attempt_done.set()
            return
        failures = 0
        exits: deque[float] = deque()
        inbound_chain.set(())  # a per-client connection is started from a client's request
        try:
            while True:
                was_ready = requested = cannot_launch = False
                loop = None
                try:
                    await self._connect_and_serve()
                    requested = True  # it only returns when `restart()` was called
                except Exception as exc:
                    # A connection that had been ready starts the backoff afresh.
                    was_ready = self.state is ServerState.READY
                    failures = 1 if was_ready else failures + 1
                    cannot_launch = isinstance(exc, CannotLaunch)
                    loop = looping_server(self.server_id, exc)
                    self.last_error = self._redact(loop.message) if loop else self._explain(exc)
                    if not cannot_launch:
                        logger.warning("server %s: %s", self.server_id, self.last_error)
                    logger.debug("server %s failure detail", self.server_id, exc_info=exc)
                finally:
                    self._client = None
                    if self.federation is not None:
                        self.federation.forget(self)
                    await self._publish(None)
                if requested or self._restart_requested.is_set():
                    self._first_attempt_done.set()
                    logger.info("server %s: restart requested", self.server_id)
                    failures = 0
                    exits.clear()
                    self._restart_requested = anyio.Event()
                    self.restarts += 1
                    self._set_state(ServerState.RESTARTING)
                    continue
                now = time.monotonic()
                if loop is None:
                    exits.append(now)
                while exits and exits[0] < now - self.config.restart_window_seconds:
                    exits.popleft()
                crash_loop = self.config.command is not None and len(exits) > self.config.max_restarts
                # A federation loop is held like a crash loop: retrying would only loop again.
                if cannot_launch or loop is not None or crash_loop:
                    if crash_loop and not cannot_launch and loop is None:
                        self.last_error = (
                            f"crash loop: exited {len(exits)} times within {self.config.restart_window_seconds:g} s"
                            f" (max_restarts {self.config.max_restarts}); not restarting until a reload or"
                            f" `mcphub restart {self.server_id}`; last failure: {self.last_error}"
                        )
                    elif cannot_launch:
                        self.last_error = (
                            f"{self.last_error}; not retrying: fix the config, then reload or"
                            f" `mcphub restart {self.server_id}`"
                        )
                    # A crash loop or a federation loop is news; a command that cannot launch is a
                    # config to fix (a warning).
                    logger.log(
                        logging.WARNING if cannot_launch else logging.ERROR,
                        "server %s: %s",
                        self.server_id,
                        self.last_error,
                    )
                    self.crash_looped = not cannot_launch
                    self.awaiting_restart = True
                    self._set_state(ServerState.FAILED)
                    self._first_attempt_done.set()
                    await self._restart_requested.wait()
                    self.crash_looped = self.awaiting_restart = False
                else:
                    self._set_state(ServerState.RESTARTING if was_ready else ServerState.FAILED)
                    self._first_attempt_done.set()
                    delay = min(BACKOFF_MAX_SECONDS, BACKOFF_INITIAL_SECONDS * 2 ** max(0, failures - 1))
                    with anyio.move_on_after(delay * random.uniform(0.5, 1.0)):
                        await self._restart_requested.wait()
                if self._restart_requested.is_set():
                    logger.info("server %s: restart requested", self.server_id)
                    failures = 0
                    exits.clear()
                    self._restart_requested = anyio.Event()
                self.restarts += 1
                self._set_state(ServerState.RESTARTING)
        finally:
            self._client = None
            self._set_state(ServerState.STOPPED)
            self._first_attempt_done.set()

    def restart(self) -> None:
        """Ask the supervisor to restart this server now: a running one is disconnected (a stdio
        child is shut down) and started again, a backing-off one skips the wait, and a `failed`
        one (crash-loop cap) is given a fresh `max_restarts` budget. Returns at once; watch
        `state` (or `wait_for_state`) for the outcome."""
        self._restart_requested.set()

    def _explain(self, exc: BaseException) -> str:
        """`describe_failure(exc)`; when a stdio child went away, why (its exit code) and the
        meaningful lines of what it last wrote to stderr (`hub.launch.StderrTail`)."""
        text = describe_failure(exc)
        while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
            exc = exc.exceptions[0]
        lost = isinstance(exc, ServerUnavailable) or (isinstance(exc, MCPError) and exc.code == CONNECTION_CLOSED)
        if self.config.command is not None and lost and not isinstance(exc, CannotLaunch):
            tail = self._stderr_tail.summary()
            if self._close_reason:
                text = self._close_reason
            elif isinstance(exc, MCPError | ConnectionLost):  # closed before its exit status was read
                text = "the server exited"
            if tail:
                text += f"; its stderr ended with: {tail}"
        return self._redact(text)

    async def _connect_and_serve(self) -> None:
        """One connection attempt, then serving until the connection ends. A stdio server first
        waits for a start slot (`start_slots`); `startup_timeout_seconds` counts from when it
        has one, and the slot is given back once the handshake is done.

        :raises CannotLaunch: a stdio command that cannot be started (before any slot is taken).
        """
        self._stderr_tail.clear()
        self._close_reason = None
        closed = anyio.Event()
        config = self.config
        # The handshake-era connection of `protocol: both` (or of a server found to push), and
        # the per-client connections of a server found to push, speak the handshake era.
        legacy = config.protocol == "legacy" or self.client_key == _LEGACY_ERA_KEY
        mode = "legacy" if legacy or (self.client_key is not None and self.pushes_over_handshake_era) else "auto"
        transport = watch_closed(self._transport(), closed)
        slots = self.start_slots if config.command is not None else None
        slot: contextlib.AbstractAsyncContextManager[Callable[[], None]] = (
            slots.hold(self.server_id) if slots is not None else contextlib.nullcontext(_no_release)
        )
        client = Client(
            track_delivery(self.federation.stamp(transport) if self.federation is not None else transport),
            mode=mode,
            # Requests are bounded one by one (`_request`, listing); the handshake is bounded by
            # startup_timeout_seconds, so a slow-starting server is not cut off by a short timeout.
            read_timeout_seconds=None,
            message_handler=self._on_message,
            sampling_callback=self._on_sampling,
            elicitation_callback=self._on_elicitation,
            list_roots_callback=self._on_list_roots,
            cache=None,
            extensions=[TasksClientExtension(self._on_task_status)],
        )
        # The transport's task group must be entered and left in this task, nested in order, so
        # the connect deadline is a scope around the whole session, lifted once connected.
        async with slot as release_slot:
            with anyio.CancelScope(deadline=anyio.current_time() + config.startup_timeout_seconds) as connect_scope:
                async with client:
                    connect_scope.deadline = math.inf
                    release_slot()
                    await self._serve(client, closed)
        if connect_scope.cancelled_caught:
            raise ServerUnavailable(self.server_id, f"did not start within {config.startup_timeout_seconds:g} s")

    async def _serve(self, client: Client, closed: anyio.Event) -> None:
        """List everything, go ready, then re-list on every change, and whenever the lists
        expire (`relist_at`), until the connection closes."""
        config = self.config
        try:
            modern_required = config.protocol == "modern" or (config.protocol == "both" and self.client_key is None)
            if modern_required and client.protocol_version not in MODERN_PROTOCOL_VERSIONS:
                raise ServerProtocolError(self.server_id, f"speaks {client.protocol_version}, not {_MODERN}")
            self.protocol_version = client.protocol_version
            self.generation = next(_GENERATIONS)
            if client.protocol_version in MODERN_PROTOCOL_VERSIONS:
                _forward_client_capabilities(client)
            if self.federation is not None:  # before the first listing: see hub.federation on the race
                advertised = Advertisement.found_in(client.server_capabilities.experimental)
                await self.federation.admit(self, self.server_id, advertised)
            self._refresh = anyio.Event()
            await self._publish(await self._list_everything(client))
            self._client = client
            if client.protocol_version not in MODERN_PROTOCOL_VERSIONS:
                await self._restore_session_state(client)
            self.last_error = None
            # A fresh process or session that completed its handshake and listing serves at
            # once: failures of the connection before it say nothing about this one.
            self.breaker.reset()
            self.health_failures = 0
            self._set_state(ServerState.READY)
            self._first_attempt_done.set()
            logger.info(
                "server %s ready (%s, %s): %s, %s, %s, %s",
                self.server_id,
                config.kind,
                self.protocol_version,
                counted(len(self.snapshot.tools), "tool"),
                counted(len(self.snapshot.resources), "resource"),
                counted(len(self.snapshot.resource_templates), "resource template"),
                counted(len(self.snapshot.prompts), "prompt"),
            )
            async with anyio.create_task_group() as tg:
                if client.protocol_version in MODERN_PROTOCOL_VERSIONS:
                    tg.start_soon(self._listen_for_changes, client)
                tg.start_soon(self._health_loop, client)
                while not closed.is_set():
                    # While a burst of list_changed is being debounced, its re-list is the one
                    # to wait for: an expiry meanwhile would only add a second re-list.
                    expires = self.relist_at if self._relist_methods is None else None
                    with anyio.CancelScope(deadline=math.inf if expires is None else expires) as expiry:
                        await _wait_any(closed, self._refresh, self._restart_requested)
                    if self._restart_requested.is_set():
                        break  # `run` restarts the connection
                    expired = expiry.cancelled_caught and not self._refresh.is_set() and self._relist_methods is None
                    if (expired or self._refresh.is_set()) and not closed.is_set():
                        self._refresh = anyio.Event()
                        await self._relist(client, expired=expired)
                tg.cancel_scope.cancel()
            if self._restart_requested.is_set() and not closed.is_set():
                return
            raise ServerUnavailable(self.server_id, "the connection closed (the server exited or hung up)")
        finally:
            self._client = None
            self.relist_at = None

    async def _relist(self, client: Client, *, expired: bool) -> None:
        """List the server again and publish the listing. A re-list for expiry that fails (the
        server answers an error, breaks its pagination or does not answer in time) keeps the last
        listing and the connection, and is tried again after as long as it has been since the
        last good listing (so the wait doubles), within `RELIST_FLOOR_SECONDS` and
        `RELIST_CEILING_SECONDS`; a re-list the server asked for (list_changed) that fails ends
        the connection, as the first listing does."""
        if not expired:
            await self._publish(await self._list_everything(client))
            return
        logger.debug("server %s: its lists expired (ttlMs), re-listing", self.server_id)
        try:
            snapshot = await self._list_everything(client)
        except (TimeoutError, MCPError, ServerProtocolError, httpx2.TransportError) as exc:
            if isinstance(exc, MCPError) and exc.code == CONNECTION_CLOSED:
                raise  # the connection is gone: `run` reconnects
            now = anyio.current_time()
            self.relist_at = now + min(max(now - self._listed_at, RELIST_FLOOR_SECONDS), RELIST_CEILING_SECONDS)
            logger.warning(
                "server %s: re-listing on expiry failed, keeping its last listing: %s",
                self.server_id,
                describe_failure(exc),
            )
            return
        await self._publish(snapshot)

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
        """Walk every list the server offers and schedule the next re-list by their `ttlMs`
        (`relist_at`; the catalog's connection only: a dedicated one publishes nothing)."""
        caps = client.server_capabilities
        self._list_meta = None
        self._list_ttls = {}
        with anyio.fail_after(self.config.timeout_seconds):
            tools = (
                [t for t in await self._walk(client.list_tools, "tools") if self.config.tools.allows(t.name)]
                if caps.tools
                else []
            )
            resources = await self._walk(client.list_resources, "resources") if caps.resources else []
            templates = await self._walk(client.list_resource_templates, "resource_templates") if caps.resources else []
            prompts = await self._walk(client.list_prompts, "prompts") if caps.prompts else []
        interval = None
        if self.client_key is None and client.protocol_version in MODERN_PROTOCOL_VERSIONS:
            interval = relist_interval_seconds(self._list_ttls, announced_lists(caps))
        self._listed_at = anyio.current_time()
        self.relist_at = None if interval is None else self._listed_at + interval
        if self.federation is not None:  # a hub's list results carry its current advertisement
            advertised = Advertisement.found_in(self._list_meta, caps.experimental)
            await self.federation.admit(self, self.server_id, advertised)
        if len(tools) > self.config.max_tools:
            logger.warning(
                "server %s offers %d tools, over its max_tools %d: dropped the last %d",
                self.server_id,
                len(tools),
                self.config.max_tools,
                len(tools) - self.config.max_tools,
            )
            tools = tools[: self.config.max_tools]
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
            self._list_meta = page.meta or self._list_meta
            ttl_ms = page_ttl_ms(page)
            if ttl_ms is not None:
                self._list_ttls[attribute] = min(ttl_ms, self._list_ttls.get(attribute, ttl_ms))
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
            raise ServerUnavailable(self.server_id, f"not connected, state {self.state.value}{reason}", delivered=False)
        return client

    async def _request(
        self,
        method: str,
        send: Callable[[Client, ProgressFnT], Awaitable[_T]],
        *,
        timeout_seconds: float | None = None,
        max_timeout_seconds: float | None = None,
        relay: ProgressFnT | None = None,
    ) -> _T:
        """Send one request, translating transport-level failures once; a server's own MCP
        error passes through with its code; progress is relayed to `relay`.

        The request may wait `timeout_seconds` (default: the server's) for its answer; each
        progress notification from the server restarts that wait, but never past
        `max_timeout_seconds` from the start (default: 5x the timeout). On expiry the request's
        scope is cancelled, which the SDK turns into `notifications/cancelled` (handshake era)
        or an aborted request (modern era). The client channel in context
        (`hub.relay.CURRENT_CHANNEL`) is recorded as in flight for the request's duration, and
        picks the dedicated connection under `isolation: per_client` (or the handshake-era one
        under `protocol: both`, or of a server found to push: `_dedicated_key`).

        :raises ServerUnavailable: not connected (`delivered=False`), or the connection closed
            or broke (`ConnectionLost`; `delivered` tells whether the request had reached the
            transport).
        :raises ServerTimeout: no answer in time; the server was sent a cancellation.
        :raises ResultTooLarge: the transport refused an answer over its size cap while it streamed
            (Streamable HTTP SSE events and JSON bodies are capped at `max_result_bytes` plus an
            envelope allowance, stdio lines at `max_line_bytes`); only this request failed.
        :raises MCPError: the server's own error response, code unchanged.
        """
        channel = CURRENT_CHANNEL.get()
        if channel is not None and self.client_key is None:
            key = self._dedicated_key(channel, method)
            if key is not None:
                dedicated = await self._dedicated(key)
                return await dedicated._request(
                    method, send, timeout_seconds=timeout_seconds, max_timeout_seconds=max_timeout_seconds, relay=relay
                )
        client = self._require_client()
        generation = self.generation
        timeout = timeout_seconds if timeout_seconds is not None else self.config.timeout_seconds
        hard = max_timeout_seconds if max_timeout_seconds is not None else 5 * timeout
        start = anyio.current_time()
        hard_deadline = start + hard
        scope = anyio.CancelScope(deadline=min(start + timeout, hard_deadline))

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            scope.deadline = min(anyio.current_time() + timeout, hard_deadline)
            if relay is not None:
                await relay(progress, total, SECRETS.mask(message) if message else message)

        self.in_flight += 1
        if channel is not None:
            self._inflight.append(channel)
        logger.debug("server %s: sending %s", self.server_id, method)
        try:
            with delivery_mark() as mark:
                try:
                    with scope:
                        result = await send(client, on_progress)
                        self._last_answer = time.monotonic()
                        return result
                except MCPError as exc:
                    if is_transport_size_abort(exc):
                        self._last_answer = time.monotonic()
                        # The cap the answer ran into: the result cap, or a smaller line cap (stdio).
                        limit = min(self.config.max_result_bytes, answer_too_large_limit(exc) or math.inf)
                        logger.warning(
                            "server %s: %s answer over %d bytes refused in transit: %s",
                            self.server_id,
                            method,
                            limit,
                            exc.message,
                        )
                        raise ResultTooLarge(self.server_id, int(limit)) from exc
                    if exc.code != CONNECTION_CLOSED:
                        self._last_answer = time.monotonic()
                        raise
                    reason = f": {self._close_reason}" if self._close_reason else ""
                    self._lost_generation = generation
                    raise ConnectionLost(
                        self.server_id,
                        f"the connection closed during {method}{reason}",
                        delivered=mark.sent,
                        generation=generation,
                    ) from exc
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, httpx2.TransportError) as exc:
                    if not isinstance(exc, httpx2.TransportError):  # one HTTP request failing is not the end
                        self._lost_generation = generation
                    raise ConnectionLost(
                        self.server_id,
                        f"the connection broke during {method}",
                        delivered=mark.sent,
                        generation=generation,
                    ) from exc
            if anyio.current_time() >= hard_deadline:
                message = f"no answer to {method} within its hard maximum of {hard:g} s (cancelled)"
            else:
                message = f"no answer to {method} within {timeout:g} s (cancelled)"
            raise ServerTimeout(self.server_id, message)
        finally:
            if channel is not None:
                self._inflight.remove(channel)
            self.in_flight -= 1
            if not self.in_flight:
                self._no_calls.set()
                self._no_calls = anyio.Event()

    def _dedicated_key(self, channel: ClientChannel, method: str) -> str | None:
        """The dedicated connection a client's request goes to (None: this one): the client's
        own under `isolation: per_client`; the handshake-era one for a handshake-era client
        under `protocol: both`, and for a server found to push (`hub.push_era`) also for a
        modern-era client's requests that may push (its other requests, tasks among them, stay
        on the modern-era connection where they began)."""
        if self.config.isolation == "per_client":
            return channel.client_key
        if self.config.protocol == "both" and not channel.modern:
            return _LEGACY_ERA_KEY
        if self.pushes_over_handshake_era and (not channel.modern or method in CARRYING_METHODS):
            return _LEGACY_ERA_KEY
        return None

    @property
    def pushes_over_handshake_era(self) -> bool:
        """Whether this server (`protocol: auto` or `both`) was found to push requests mid-call,
        so its requests that may push go over a handshake-era connection (`hub.push_era`)."""
        return self.pushing is not None and self.config.protocol in ("auto", "both") and self.server_id in self.pushing

    async def _request_pushing(
        self, method: str, send: Callable[[Client, ProgressFnT], Awaitable[_T]], **options: Any
    ) -> _T:
        """`_request` for a request whose handler may push (`tools/call`, `prompts/get`,
        `resources/read`): when a modern-era connection of a `protocol: auto`/`both` server
        refuses the push (`hub.push_era.pushed_method`), the server is recorded as pushing.

        :raises PushNeedsHandshakeEra: that happened; the request may be sent again (it now
            goes over a handshake-era connection).
        :raises ServerUnavailable, ServerTimeout, MCPError: as `_request`.
        """
        eras: list[str | None] = []

        async def noting_era(client: Client, on_progress: ProgressFnT) -> _T:
            eras.append(client.protocol_version)
            return await send(client, on_progress)

        try:
            return await self._request(method, noting_era, **options)
        except MCPError as exc:
            pushed = pushed_method(exc)
            modern = bool(eras) and eras[-1] in MODERN_PROTOCOL_VERSIONS
            if pushed is None or not modern or self.pushing is None or self.config.protocol not in ("auto", "both"):
                raise
            if self.pushing.learn(self.server_id):
                logger.warning(
                    "server %s pushed %s during %s, which a %s connection cannot carry: its requests that"
                    " may push go over a handshake-era connection from now on",
                    self.server_id,
                    pushed,
                    method,
                    _MODERN,
                )
            raise PushNeedsHandshakeEra(self.server_id, pushed, method) from exc

    # ---- isolation: per_client ----

    async def _dedicated(self, client_key: str) -> ServerConnection:
        """This server's connection dedicated to `client_key`, started on first use and
        supervised by the fleet until `release_client(client_key)`.

        :raises ServerUnavailable: it could not be started (the reason names the failure).
        """
        dedicated = self._clones.get(client_key)
        if (
            dedicated is not None
            and client_key != _LEGACY_ERA_KEY
            and self.pushes_over_handshake_era
            and dedicated._is_modern()
            and not dedicated.in_flight
        ):
            self.release_client(client_key)  # this server pushes: reopened in the handshake era below
            dedicated = None
        if dedicated is None:
            if self.spawn is None:
                raise ServerUnavailable(self.server_id, "per-client connections need a running fleet")
            dedicated = ServerConnection(
                self.server_id,
                self.config,
                self.pool,
                on_resource_updated=self.on_resource_updated,
                on_task_status=self.on_task_status,
                client_key=client_key,
                events=self.events,
                federation=self.federation,
                start_slots=self.start_slots,
                pushing=self.pushing,
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
        channel = CURRENT_CHANNEL.get()
        if channel is not None:
            dedicated._starting_for.append(channel)
        try:
            await dedicated.wait_first_attempt()
        finally:
            if channel is not None:
                dedicated._starting_for.remove(channel)
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
        timeout_seconds: float | None = None,
        max_timeout_seconds: float | None = None,
        task: dict[str, Any] | None = None,
    ) -> types.CallToolResult | types.InputRequiredResult | CreatedTask | LegacyCreatedTask:
        """`tools/call` on this server under the original name. The server is always asked for
        progress (so a long call that reports progress keeps its timeout alive, up to the hard
        maximum); progress reaches `progress_callback` when given.

        With `allow_input_required` a modern-era server's `InputRequiredResult` is returned as
        it is (and `input_responses`/`request_state` are sent unchanged) for the caller to relay;
        otherwise it is answered through the client callbacks (`hub.relay`). Handshake-era
        servers never return one. A modern-era server may answer with a task (`CreatedTask`,
        SEP-2663) when the calling client declared the tasks extension; with `task` (the
        2025-11-25 `params.task`, e.g. `{"ttl": 60000}`) a handshake-era server is asked for a
        task-augmented call (`LegacyCreatedTask`). Either carries `member`: this connection's id.

        :param log_level: the lowest `notifications/message` level wanted (modern-era servers).
        :param timeout_seconds: default `config.timeout_for(name)`.
        :param max_timeout_seconds: default `config.hard_timeout_for(name)`.
        :raises ServerUnavailable: not connected, or the connection broke mid-call.
        :raises ServerTimeout: no answer in time (the server was sent a cancellation).
        :raises MCPError: the server's own error response, code unchanged.
        """

        async def send(
            client: Client, on_progress: ProgressFnT
        ) -> types.CallToolResult | types.InputRequiredResult | CreatedTask | LegacyCreatedTask:
            meta: Any = self._meta(log_level)
            if task is not None and client.protocol_version not in MODERN_PROTOCOL_VERSIONS:
                legacy = await call_tool_as_task(client.session, name, arguments, task, on_progress=on_progress)
                if isinstance(legacy, LegacyCreatedTask):
                    legacy.member = self.server_id
                return legacy
            if allow_input_required and self._is_modern():
                result = await client.session.call_tool(
                    name,
                    arguments,
                    progress_callback=on_progress,
                    input_responses=input_responses,
                    request_state=request_state,
                    meta=meta,
                    allow_input_required=True,
                    allow_claimed=True,
                )
                if isinstance(result, CreatedTask):
                    result.member = self.server_id
                elif not isinstance(result, types.CallToolResult | types.InputRequiredResult):
                    raise ServerProtocolError(self.server_id, f"tools/call returned {type(result).__name__}")
                return result
            return await client.call_tool(name, arguments, progress_callback=on_progress, meta=meta)

        return await self._request_pushing(
            "tools/call",
            send,
            timeout_seconds=timeout_seconds if timeout_seconds is not None else self.config.timeout_for(name),
            max_timeout_seconds=(
                max_timeout_seconds if max_timeout_seconds is not None else self.config.hard_timeout_for(name)
            ),
            relay=progress_callback,
        )

    async def send_task_request(
        self,
        method: str,
        params: dict[str, Any],
        *,
        timeout_seconds: float | None = None,
        max_timeout_seconds: float | None = None,
    ) -> dict[str, Any]:
        """One `tasks/*` request (`tasks/get`, `tasks/update`, `tasks/cancel`, `tasks/result`,
        `tasks/list`; `hub.task_wire`) with wire `params` (`taskId` is the server's own id); the
        result as the server sent it. Timeouts and errors as `call_tool`."""

        async def send(client: Client, _: ProgressFnT) -> dict[str, Any]:
            result = await client.session.send_request(task_request(method, params), _RawResult)
            return result.model_dump(by_alias=True, mode="json", exclude_unset=True)

        return await self._request(
            method, send, timeout_seconds=timeout_seconds, max_timeout_seconds=max_timeout_seconds
        )

    async def read_resource(
        self,
        uri: str,
        *,
        input_responses: types.InputResponses | None = None,
        request_state: str | None = None,
        allow_input_required: bool = False,
    ) -> types.ReadResourceResult | types.InputRequiredResult:
        """`resources/read` of an original URI; `allow_input_required` and errors as `call_tool`."""

        async def send(client: Client, _: ProgressFnT) -> types.ReadResourceResult | types.InputRequiredResult:
            if allow_input_required and self._is_modern():
                return await client.session.read_resource(
                    uri, input_responses=input_responses, request_state=request_state, allow_input_required=True
                )
            return await client.read_resource(uri)

        return await self._request_pushing("resources/read", send)

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

        async def send(client: Client, _: ProgressFnT) -> types.GetPromptResult | types.InputRequiredResult:
            if allow_input_required and self._is_modern():
                return await client.session.get_prompt(
                    name,
                    arguments,
                    input_responses=input_responses,
                    request_state=request_state,
                    allow_input_required=True,
                )
            return await client.get_prompt(name, arguments)

        return await self._request_pushing("prompts/get", send)

    async def complete(
        self,
        ref: types.PromptReference | types.ResourceTemplateReference,
        argument: dict[str, str],
        context_arguments: dict[str, str] | None,
    ) -> types.CompleteResult:
        """`completion/complete` with an original prompt name or URI template; errors as `call_tool`."""
        return await self._request(
            "completion/complete", lambda client, _: client.complete(ref, argument, context_arguments)
        )

    async def _health_loop(self, client: Client) -> None:
        """While connected: check health when idle for `health_check_interval_seconds`, and
        probe an open circuit as soon as its cool-down is over (so it can close without
        waiting for client traffic)."""
        interval = self.config.health_check_interval_seconds
        if interval <= 0:
            return
        self._last_answer = time.monotonic()
        while True:
            wait = self._last_answer + interval - time.monotonic()
            if self.breaker.state is BreakerState.OPEN:
                wait = min(wait, self.breaker.retry_in_seconds)
            if wait > 0:
                await anyio.sleep(wait)
                continue
            if self.breaker.state is BreakerState.CLOSED:
                if self.in_flight:  # not idle: its requests tell how it is doing
                    self._last_answer = time.monotonic()
                    continue
                await self.check_health(client)
            elif self.breaker.allow():
                await self.check_health(client)
            else:
                await anyio.sleep(min(interval, 1.0))  # a call is probing the circuit right now

    async def check_health(self, client: Client | None = None) -> bool:
        """One health check: `ping` in the handshake era (a `tools/list` page when the server
        does not know ping), one `tools/list` page in the modern era (ping is gone in
        2026-07-28). Bounded by `timeout_seconds`; the verdict goes to the breaker and
        `health_failures`. Returns whether the server answered."""
        client = client or self._client
        if client is None:
            return False
        ok = True
        lost: int | None = None  # the generation whose loss failed the check, if it was lost
        generation = self.generation
        try:
            with anyio.fail_after(self.config.timeout_seconds):
                if client.protocol_version in MODERN_PROTOCOL_VERSIONS:
                    await client.list_tools()
                else:
                    try:
                        await client.session.send_ping()
                    except MCPError as exc:
                        if exc.code != METHOD_NOT_FOUND:
                            raise
                        await client.list_tools()
        except MCPError as exc:
            ok = exc.code not in (CONNECTION_CLOSED, REQUEST_TIMEOUT, INTERNAL_ERROR)
            lost = generation if exc.code == CONNECTION_CLOSED else None
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, httpx2.TransportError):
            ok, lost = False, generation
        except TimeoutError:
            ok = False
        self._last_answer = time.monotonic()
        if ok:
            self.health_failures = 0
            self.breaker.record_success()
        else:
            self.health_failures += 1
            self.breaker.record_failure(lost)
            logger.warning("server %s: health check failed (%d in a row)", self.server_id, self.health_failures)
        self.events.emit("on_health_check", self.server_id, ok)
        return ok

    # ---- subscriptions and logging level (shared connection) ----

    async def subscribe(self, uri: str) -> None:
        """Subscribe to updates of original `uri`: `resources/subscribe` at a handshake-era
        server, a `subscriptions/listen` filter at a modern-era one (2026-07-28 replaced the
        former); updates reach `on_resource_updated`.

        :raises ServerUnavailable, ServerTimeout, MCPError: as `call_tool`.
        """
        if not self._is_modern():
            await self._request("resources/subscribe", lambda client, _: client.session.subscribe_resource(uri))
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
            await self._request("resources/unsubscribe", lambda client, _: client.session.unsubscribe_resource(uri))

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
                await self._request("logging/setLevel", lambda client, _: client.session.set_logging_level(level))


class _RawResult(types.Result):
    """A result kept as the server sent it (every field, nulls included)."""

    model_config = ConfigDict(extra="allow")


def _no_release() -> None:
    """The slot release of a start that holds no slot (remote servers)."""


_LEGACY_ERA_KEY: Final = "era:handshake"
"""The dedicated connection of a `protocol: both` server that serves handshake-era clients."""


def _forward_client_capabilities(client: Client) -> None:
    """Make a modern-era connection declare, on each request, the capabilities of the client the
    request is relayed for (`_meta` clientCapabilities, 2026-07-28 "Client capabilities"), so the
    server asks only for what that client can answer and refuses what it cannot (-32021).

    The SDK stamps the connection's own capabilities on every request with no per-request
    override (`adapters._sdk.stamp_each_request`)."""

    def declare(data: dict[str, Any]) -> None:
        channel = CURRENT_CHANNEL.get()
        if channel is None:
            return
        declared = channel.capabilities or types.ClientCapabilities()
        meta = data.setdefault("params", {}).setdefault("_meta", {})
        meta[CLIENT_CAPABILITIES_META_KEY] = declared.model_dump(by_alias=True, mode="json", exclude_none=True)

    stamp_each_request(client.session, declare)


async def _wait_any(*events: anyio.Event) -> None:
    async with anyio.create_task_group() as tg:

        async def wait_one(event: anyio.Event) -> None:
            await event.wait()
            tg.cancel_scope.cancel()

        for event in events:
            tg.start_soon(wait_one, event)


_DRAIN_POLL_SECONDS: Final = 0.01


class Fleet:
    """Every configured server's connection, each supervised in its own task.

    Use as `async with Fleet(config, on_snapshot=...) as fleet:`; leaving the block stops every
    server (stdio children are shut down as whole process trees).

    `connections` maps each server_id to its *current* connection, the one new requests go to.
    Hot reload changes the fleet while it runs (`start`, `switch`, `drain`, `stop`): a changed
    server gets a new connection that is started beside the old one, switched in once its first
    attempt is over, and the old one is drained (its in-flight requests finish) and then stopped,
    the Envoy drain model. Only the current connection of a server_id publishes to the catalog.

    Start-up (`hub.startup`): `startup` is the gate list requests wait on (every server until
    its first attempt is over, and each server a reload adds until it is switched in);
    `start_slots` bounds how many stdio servers start at once (`max_concurrent_starts`).
    """

    def __init__(
        self,
        config: HubConfig,
        *,
        on_snapshot: Callable[[str, ServerSnapshot | None], Awaitable[None]] | None = None,
        federation: Federation | None = None,
    ) -> None:
        self.pool = HttpPool()
        self.federation = federation or Federation(config.hub_id or new_hub_id(), config.max_federation_depth)
        """This hub's federation state, shared by every connection (the hub passes its `hub_id`)."""
        self.events = EventSink()
        """Breaker, queue and health events of every connection (set `events.target` to wire metrics)."""
        self._on_snapshot = on_snapshot
        self.on_resource_updated: Callable[[str, str], Awaitable[None]] | None = None
        """Given to every connection, including those a reload starts (`resources/updated` relay)."""
        self.on_task_status: Callable[[str, dict[str, Any]], Awaitable[None]] | None = None
        """Given to every connection likewise (task status notifications, `hub.tasks`)."""
        self.startup = StartupGate()
        """Servers whose first start attempt is still to come (list requests wait on it)."""
        self.start_slots = StartSlots(config.max_concurrent_starts)
        """How many stdio servers may be starting at once."""
        self.pushing = PushingServers()
        """The servers found to push requests mid-call (`hub.push_era`), shared by every connection."""
        # A server with `replicas` runs one connection per member, keyed `<server_id>/<n>`.
        self.connections: dict[str, ServerConnection] = {
            member_id: self._new_connection(member_id, member)
            for server_id, server in config.servers.items()
            for member_id, member in server.members(server_id)
        }
        for connection in self.connections.values():
            self._gate(connection)
        self._runs: dict[ServerConnection, tuple[anyio.CancelScope, anyio.Event]] = {}
        self._tg: anyio.abc.TaskGroup | None = None

    def _new_connection(self, server_id: str, server: ServerConfig) -> ServerConnection:
        connection = ServerConnection(
            server_id,
            server,
            self.pool,
            events=self.events,
            spawn=self._spawn,
            on_resource_updated=self.on_resource_updated,
            federation=self.federation,
            on_task_status=self.on_task_status,
            start_slots=self.start_slots,
            pushing=self.pushing,
        )

        async def publish(sid: str, snapshot: ServerSnapshot | None) -> None:
            if self._on_snapshot is not None and self.connections.get(sid) is connection:
                await self._on_snapshot(sid, snapshot)

        connection.on_snapshot = publish
        return connection

    def _gate(self, connection: ServerConnection) -> None:
        """Make list requests wait for `connection`'s first attempt (bounded by its start-up timeout)."""
        if connection.config.enabled:
            self.startup.open(connection, connection.server_id, connection.config.startup_timeout_seconds)

    async def __aenter__(self) -> Fleet:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()

        for connection in self.connections.values():
            self._launch(connection)
            self._tg.start_soon(self._ungate_after_first_attempt, connection)
        return self

    async def _ungate_after_first_attempt(self, connection: ServerConnection) -> None:
        try:
            await connection.wait_first_attempt()
        finally:
            self.startup.close(connection)

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

    def _spawn(self, fn: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
        """Start a background task in the fleet's task group (`isolation: per_client` connections)."""
        assert self._tg is not None, "the fleet is not running"
        self._tg.start_soon(fn, name=name)

    def _launch(self, connection: ServerConnection) -> None:
        assert self._tg is not None, "the fleet is not running"
        scope, done = anyio.CancelScope(), anyio.Event()
        self._runs[connection] = (scope, done)

        async def supervise() -> None:
            server_id_var.set(connection.server_id)
            try:
                with scope:
                    await connection.run()
            finally:
                self._runs.pop(connection, None)
                self.startup.close(connection)
                done.set()

        self._tg.start_soon(supervise, name=f"server {connection.server_id}")

    async def wait_first_attempts(self, timeout_seconds: float | None = None) -> None:
        """Wait until every current server has connected or failed once (bounded by
        `timeout_seconds`); see also `startup.wait_settled()`, which includes servers a reload
        is adding."""
        with anyio.move_on_after(timeout_seconds):
            for connection in self.connections.values():
                await connection.wait_first_attempt()

    def get(self, server_id: str) -> ServerConnection | None:
        return self.connections.get(server_id)

    def release_client(self, client_key: str) -> None:
        """A client session ended: close the `isolation: per_client` connections dedicated to it."""
        for connection in self.connections.values():
            connection.release_client(client_key)

    def members(self, server_id: str) -> list[ServerConnection]:
        """The connections serving logical `server_id`: itself, or its replica members
        (`<server_id>/1`, `<server_id>/2`, ...) in member order; empty when not configured."""
        connection = self.connections.get(server_id)
        if connection is not None:
            return [connection]
        prefix = f"{server_id}/"
        found = [(key, c) for key, c in self.connections.items() if key.startswith(prefix)]
        return [c for _, c in sorted(found, key=lambda item: int(item[0].rpartition("/")[2]))]

    async def start(self, server_id: str, server: ServerConfig, *, gate: bool = False) -> ServerConnection:
        """Start a connection for `server` beside the current one (if any), without routing to
        it, and return it once its first attempt has succeeded or failed (bounded by the
        server's `startup_timeout_seconds` plus `timeout_seconds` for the listing; a stdio
        server still waiting for a start slot then is switched in while it starts).

        :param gate: list requests wait for it until it is switched in (`switch`) or stopped
            (a server a reload adds: clients must not list the catalog without it).
        :raises RuntimeError: the fleet is not running.
        """
        if self._tg is None:
            raise RuntimeError("the fleet is not running")
        connection = self._new_connection(server_id, server)
        self.pushing.forget(server_id)  # a changed entry may be a changed server
        if gate:
            self._gate(connection)
        try:
            self._launch(connection)
            with anyio.move_on_after(server.startup_timeout_seconds + server.timeout_seconds + 1.0):
                await connection.wait_first_attempt()
        except BaseException:
            self.startup.close(connection)
            raise
        return connection

    async def switch(self, server_id: str, connection: ServerConnection | None) -> ServerConnection | None:
        """Make `connection` the current one for `server_id` (None: remove the server) and
        publish its listing (or nothing) to the catalog; return the previous connection, which
        keeps serving its in-flight requests until it is drained and stopped."""
        previous = self.connections.pop(server_id, None)
        if connection is not None:
            self.connections[server_id] = connection
        try:
            if self._on_snapshot is not None:
                ready = connection is not None and connection.state is ServerState.READY
                await self._on_snapshot(server_id, connection.snapshot if ready and connection else None)
        finally:
            if connection is not None:
                self.startup.close(connection)
        return previous

    async def drain(self, connection: ServerConnection, timeout_seconds: float) -> bool:
        """Wait until `connection` has no request in flight and none waiting for one of its
        concurrency slots, at most `timeout_seconds`; True when it drained, False when the
        timeout ran out first."""
        limiter = connection.limiter
        with anyio.move_on_after(timeout_seconds):
            while connection.in_flight or limiter.in_use or limiter.waiting:
                if connection.in_flight:
                    await connection.wait_no_calls()
                else:  # a request holds or awaits a slot but has not been sent yet: a short poll
                    await anyio.sleep(_DRAIN_POLL_SECONDS)
            return True
        return False

    async def stop(self, connection: ServerConnection, timeout_seconds: float = 10.0) -> None:
        """Cancel `connection`'s supervising task and wait (at most `timeout_seconds`) until it
        has shut down (a stdio child and its process group are gone)."""
        self.startup.close(connection)
        run = self._runs.get(connection)
        if run is None:
            return
        scope, done = run
        scope.cancel()
        with anyio.move_on_after(timeout_seconds):
            await done.wait()
