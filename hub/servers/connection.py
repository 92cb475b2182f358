"""The server connection: the hub's live, supervised MCP client session to one server, and the
surface the rest of the hub uses (requests, state, status).

A `ServerConnection` is a small core of state with one collaborator per concept, each in its
own module and holding a reference back to the connection:

- `supervisor` (`supervisor.Supervisor`): connect, list, serve, reconnect with backoff, the
  crash-loop cap, `restart()`;
- `lifecycle` (`lifecycle.Lifecycle`): the moves from state to state, and the waits on them;
- `link` (`transport.ServerLink`): the transport (stdio, Streamable HTTP, SSE), credentials,
  a stdio child's stderr, redaction;
- `lister` (`listing.Lister`): tools/resources/templates/prompts, list_changed, expiry, the
  snapshot published to the catalog;
- `session_state` (`session_state.SessionState`): resource subscriptions and logging level,
  restored after a reconnect;
- `inbox` (`inbox.Inbox`): notifications and server-to-client requests, relayed to the client
  whose call is in flight;
- `sender` (`calls.Sender`): one request with its deadline and its errors (`failures`);
- `clones` (`isolation.Clones`): connections dedicated to one client or one era;
- `health` (`health.HealthMonitor`): checks of an idle server, feeding the circuit breaker.

The path of a call: the router takes a connection from the `Fleet` (`fleet.py`) and calls,
say, `call_tool`; it builds the SDK request and hands it to `sender.request`, which picks a
dedicated connection if the client has one, sends it over the SDK `Client` that the supervisor
connected, bounds it by its deadline and maps a failure once; the answer (or the server's own
error) comes back to the router unchanged. While it is in flight, what the server sends back
unasked (progress, logs, sampling, elicitation, roots) reaches the inbox and goes to that
call's client.

While a server is not ready (its life: `supervisor.py`, `lifecycle.py`) it contributes nothing
to the catalog, and calls routed to it fail at once with `ServerUnavailable` (`delivered=False`:
the router may send them elsewhere); what it reports is `status.py`'s. A server with `replicas:`
runs one connection per member, keyed `<server_id>/<n>` (`Fleet.members`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import mcp_types as types
from mcp import Client
from mcp.shared.dispatcher import ProgressFnT
from mcp_types import LOG_LEVEL_META_KEY
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from adapters import HttpPool
from hub.admission import CircuitBreaker, ConcurrencyLimiter
from hub.config import MemberConfig
from hub.deadline import RequestDeadline
from hub.errors import ServerProtocolError, ServerUnavailable
from hub.federation import Federation
from hub.push_era import PushingServers
from hub.redaction import SECRETS
from hub.retry_rules import EventSink
from hub.servers.calls import Sender
from hub.servers.health import HealthMonitor
from hub.servers.inbox import Inbox
from hub.servers.isolation import Clones
from hub.servers.lifecycle import Lifecycle
from hub.servers.listing import Lister
from hub.servers.raw_calls import call_tool_raw, complete_raw, get_prompt_raw, read_resource_raw, stdio_route
from hub.servers.session_state import SessionState
from hub.servers.state import ServerSnapshot, ServerState, ServerStatus
from hub.servers.status import health_state, status_of
from hub.servers.supervisor import Supervisor
from hub.servers.transport import ServerLink
from hub.signals import Changes
from hub.startup import StartSlots
from hub.task_wire import CreatedTask, LegacyCreatedTask, call_tool_as_task
from hub.wire_results import WireResult

__all__ = ["ServerConnection"]


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
    config: MemberConfig
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
    changes: Changes = field(default_factory=Changes)
    """Notified at every change of `state` (also to the same state: `restarts` and `last_error`
    change with it), of `in_flight`, and of the dedicated connections (`dedicated_connections`):
    `await connection.changes.wait_for(lambda: ...)` (or `wait_until`) instead of polling."""
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
    federation: Federation | None = None
    """This hub's federation state: outgoing requests carry its hub chain, and a server that is
    this hub or federates it is refused (`hub.federation`)."""
    relist_at: float | None = None
    """`anyio.current_time()` at which this server's lists expire and it is listed again (their
    shortest `ttlMs`, bounded: `hub.list_freshness`); None while it is not connected, and for a
    server whose lists do not expire (it is re-listed only when it announces a change)."""
    pushing: PushingServers | None = None
    """The fleet's record of the servers whose handlers push requests mid-call (`hub.push_era`);
    None: not learnt (a connection outside a fleet)."""
    crash_looped: bool = False
    """True while the server is held `failed` by the crash-loop cap (waiting for `restart()`)."""
    awaiting_restart: bool = False
    """True while the server is `failed` and not retried until `restart()` (or a reload): after
    a crash loop, as a federation loop, or when it cannot be launched as configured
    (`CannotLaunch`)."""

    # The collaborators, one per concept (see the module docstring).
    lifecycle: Lifecycle = field(init=False)
    link: ServerLink = field(init=False)
    supervisor: Supervisor = field(init=False)
    lister: Lister = field(init=False)
    session_state: SessionState = field(init=False)
    inbox: Inbox = field(init=False)
    sender: Sender = field(init=False)
    clones: Clones = field(init=False)
    health: HealthMonitor = field(init=False)

    # Shared by the collaborators of this package, not used outside it.
    _client: Client | None = None
    """The SDK client while connected and listed (set by the supervisor), else None."""
    _last_answer: float = field(default_factory=time.monotonic)
    """`time.monotonic()` of the last answer (or connect): health checks run when idle."""
    _lost_generation: int = 0
    """The last generation a request found closed."""

    def __post_init__(self) -> None:
        self.lifecycle = Lifecycle(self)
        self.link = ServerLink(self)
        # Masked process-wide too: in relayed log messages, errors and every log line (hub.redaction).
        SECRETS.register(
            self, self.link.secrets, ServerConnection._current_token if self.link.auth is not None else None
        )
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
        self.supervisor = Supervisor(self)
        self.lister = Lister(self)
        self.session_state = SessionState(self)
        self.inbox = Inbox(self)
        self.sender = Sender(self)
        self.clones = Clones(self)
        self.health = HealthMonitor(self)

    def _current_token(self) -> tuple[str, ...]:
        return self.link.current_token()

    # ---- life and state ----

    @property
    def timeout_seconds(self) -> float:
        return self.config.timeout_seconds

    @property
    def health_state(self) -> ServerState:
        """`state`, refined for a connected server: `open` while its circuit is not closed,
        `degraded` after recent failed requests or health checks, else `ready` (`status`)."""
        return health_state(self)

    def status(self) -> ServerStatus:
        """What /readyz, the admin API and `mcphub servers` show (`status.status_of`)."""
        return status_of(self)

    async def run(self) -> None:
        """Supervise the connection until cancelled (`supervisor.Supervisor.run`: connect, list,
        serve, reconnect with backoff; the crash-loop cap for stdio servers)."""
        await self.supervisor.run()

    def restart(self) -> None:
        """Ask the supervisor to restart this server now: a running one is disconnected (a stdio
        child is shut down) and started again, a backing-off one skips the wait, and a `failed`
        one (crash-loop cap) is given a fresh `max_restarts` budget. Returns at once; watch
        `state` (or `wait_for_state`) for the outcome."""
        self.supervisor.restart_requested.set()

    async def wait_first_attempt(self) -> None:
        """Return once the first connection attempt has succeeded or failed."""
        await self.lifecycle.first_attempt()

    async def wait_no_calls(self) -> None:
        """Return once no request is in flight on this connection (bound it with a timeout)."""
        await self.changes.wait_for(lambda: not self.in_flight)

    async def wait_for_state(self, *states: ServerState) -> ServerState:
        """Wait until the connection is in one of `states` (bound it with a timeout) and return it."""
        return await self.lifecycle.reach(*states)

    async def wait_state_change(self) -> None:
        """Return at the next change of `state` (bound it with a timeout)."""
        await self.lifecycle.next_change()

    async def wait_until(self, predicate: Callable[[ServerConnection], bool]) -> None:
        """Return once `predicate(self)` holds, re-checked at every `changes` notification
        (state, `restarts`, `last_error`, `in_flight`, dedicated connections); bound it with a
        timeout."""
        await self.changes.wait_for(lambda: predicate(self))

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

    # ---- dedicated connections (isolation.Clones) ----

    def release_client(self, client_key: str) -> None:
        """Stop the connection dedicated to `client_key` (its client session ended), if any."""
        self.clones.release(client_key)

    @property
    def dedicated_connections(self) -> int:
        """How many per-client connections of this server are open."""
        return len(self.clones)

    @property
    def pushes_over_handshake_era(self) -> bool:
        """Whether this server (`protocol: auto` or `both`) was found to push requests mid-call,
        so its requests that may push go over a handshake-era connection (`hub.push_era`)."""
        return self.clones.pushes_over_handshake_era

    # ---- requests (sent by calls.Sender) ----

    def _is_modern(self) -> bool:
        return self.protocol_version in MODERN_PROTOCOL_VERSIONS

    def _meta(self, log_level: str | None) -> dict[str, Any] | None:
        """Per-request `_meta` for a modern-era server: the logging opt-in (2026-07-28 logging)."""
        level = log_level or self.session_state.log_level
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
        deadline: RequestDeadline | None = None,
        wire: bool = False,
    ) -> types.CallToolResult | types.InputRequiredResult | CreatedTask | LegacyCreatedTask | WireResult:
        """`tools/call` on this server under the original name. The server is always asked for
        progress (so a long call that reports progress keeps its timeout alive, up to the hard
        maximum); progress reaches `progress_callback` when given.

        With `allow_input_required` a modern-era server's `InputRequiredResult` is returned as
        it is (and `input_responses`/`request_state` are sent unchanged) for the caller to relay;
        otherwise it is answered through the client callbacks (`hub.endpoint.server_requests`). Handshake-era
        servers never return one. A modern-era server may answer with a task (`CreatedTask`,
        SEP-2663) when the calling client declared the tasks extension; with `task` (the
        2025-11-25 `params.task`, e.g. `{"ttl": 60000}`) a handshake-era server is asked for a
        task-augmented call (`LegacyCreatedTask`). Either carries `member`: this connection's id.

        :param log_level: the lowest `notifications/message` level wanted (modern-era servers).
        :param timeout_seconds: default `config.timeout_for(name)`.
        :param max_timeout_seconds: default `config.hard_timeout_for(name)`.
        :param deadline: the request's deadline, started by the router when it arrived
            (`hub.deadline`); when given, the two timeouts above are not used.
        :param wire: a plain result may come back as the server sent it (`raw_calls`: a
            `hub.wire_results.WireResult`, no pydantic round trip).
        :raises ServerUnavailable: not connected, the deadline had passed before it was sent
            (`delivered=False`), or the connection broke mid-call.
        :raises ServerTimeout: no answer in time (the server was sent a cancellation).
        :raises MCPError: the server's own error response, code unchanged.
        """

        async def send(client: Client, on_progress: ProgressFnT) -> Any:
            meta: Any = self._meta(log_level)
            if task is not None and client.protocol_version not in MODERN_PROTOCOL_VERSIONS:
                legacy = await call_tool_as_task(client.session, name, arguments, task, on_progress=on_progress)
                if isinstance(legacy, LegacyCreatedTask):
                    legacy.member = self.server_id
                return legacy
            if wire and task is None and input_responses is None and request_state is None:
                route = stdio_route(self, client)
                fallback = partial(full, client, on_progress, meta)
                return await call_tool_raw(self, client, name, arguments, meta, on_progress, fallback, route)
            return await full(client, on_progress, meta)

        async def full(client: Client, on_progress: ProgressFnT, meta: Any) -> Any:
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

        return await self.sender.request_pushing(
            "tools/call",
            send,
            timeout_seconds=timeout_seconds if timeout_seconds is not None else self.config.timeout_for(name),
            max_timeout_seconds=(
                max_timeout_seconds if max_timeout_seconds is not None else self.config.hard_timeout_for(name)
            ),
            relay=progress_callback,
            deadline=deadline,
        )

    async def read_resource(
        self,
        uri: str,
        *,
        input_responses: types.InputResponses | None = None,
        request_state: str | None = None,
        allow_input_required: bool = False,
        deadline: RequestDeadline | None = None,
        wire: bool = False,
    ) -> types.ReadResourceResult | types.InputRequiredResult | WireResult:
        """`resources/read` of an original URI; `allow_input_required`, `deadline` (default: the
        server's `timeout_seconds` from now), `wire` and errors as `call_tool`."""

        async def send(client: Client, _: ProgressFnT) -> Any:
            if wire and input_responses is None and request_state is None:
                return await read_resource_raw(client, uri, lambda: full(client), stdio_route(self, client))
            return await full(client)

        async def full(client: Client) -> types.ReadResourceResult | types.InputRequiredResult:
            if allow_input_required and self._is_modern():
                return await client.session.read_resource(
                    uri, input_responses=input_responses, request_state=request_state, allow_input_required=True
                )
            return await client.read_resource(uri)

        return await self.sender.request_pushing("resources/read", send, deadline=deadline)

    async def get_prompt(
        self,
        name: str,
        arguments: dict[str, str] | None,
        *,
        input_responses: types.InputResponses | None = None,
        request_state: str | None = None,
        allow_input_required: bool = False,
        deadline: RequestDeadline | None = None,
        wire: bool = False,
    ) -> types.GetPromptResult | types.InputRequiredResult | WireResult:
        """`prompts/get` under the original name; `allow_input_required`, `deadline` (default:
        the server's `timeout_seconds` from now), `wire` and errors as `call_tool`."""

        async def send(client: Client, _: ProgressFnT) -> Any:
            if wire and input_responses is None and request_state is None:
                return await get_prompt_raw(client, name, arguments, lambda: full(client), stdio_route(self, client))
            return await full(client)

        async def full(client: Client) -> types.GetPromptResult | types.InputRequiredResult:
            if allow_input_required and self._is_modern():
                return await client.session.get_prompt(
                    name,
                    arguments,
                    input_responses=input_responses,
                    request_state=request_state,
                    allow_input_required=True,
                )
            return await client.get_prompt(name, arguments)

        return await self.sender.request_pushing("prompts/get", send, deadline=deadline)

    async def complete(
        self,
        ref: types.PromptReference | types.ResourceTemplateReference,
        argument: dict[str, str],
        context_arguments: dict[str, str] | None,
        *,
        deadline: RequestDeadline | None = None,
        wire: bool = False,
    ) -> types.CompleteResult | WireResult:
        """`completion/complete` with an original prompt name or URI template; `deadline` (default:
        the server's `timeout_seconds` from now), `wire` and errors as `call_tool`."""

        async def send(client: Client, _: ProgressFnT) -> types.CompleteResult | WireResult:
            if not wire:
                return await client.complete(ref, argument, context_arguments)
            fallback = partial(client.complete, ref, argument, context_arguments)
            return await complete_raw(client, ref, argument, context_arguments, fallback, stdio_route(self, client))

        return await self.sender.request("completion/complete", send, deadline=deadline)

    # ---- subscriptions and logging level (session_state.SessionState) ----

    async def subscribe(self, uri: str) -> None:
        """Subscribe to updates of original `uri`: `resources/subscribe` at a handshake-era
        server, a `subscriptions/listen` filter at a modern-era one (2026-07-28 replaced the
        former); updates reach `on_resource_updated`.

        :raises ServerUnavailable, ServerTimeout, MCPError: as `call_tool`.
        """
        await self.session_state.subscribe(uri)

    async def unsubscribe(self, uri: str) -> None:
        """Undo `subscribe(uri)`; errors as `call_tool`."""
        await self.session_state.unsubscribe(uri)

    @property
    def subscriptions(self) -> frozenset[str]:
        """The original URIs this connection is subscribed to at its server."""
        return frozenset(self.session_state.subscriptions)

    async def set_logging_level(self, level: types.LoggingLevel) -> None:
        """`logging/setLevel` at a handshake-era server; for a modern-era server the level
        becomes the default per-request logging opt-in (`_meta` logLevel, 2026-07-28).

        :raises ServerUnavailable, ServerTimeout, MCPError: as `call_tool`.
        """
        await self.session_state.set_logging_level(level)
