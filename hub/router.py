"""Dispatch of routed requests: one deadline per request, retry only when safe, fallback,
replicas, circuit breakers, concurrency caps and the result size cap.

The endpoint resolves an exposed name to `(server_id, original)` (catalog); the router sends the
request under the original name and returns the answer unchanged (content, structuredContent,
isError). One request goes like this:

0. Its deadline starts (`hub.deadline.RequestDeadline`): the route's timeout
   (`timeout_for(original)`) from now, pushed on by each progress notification up to the hard
   maximum (`hard_timeout_for`) from now. Every step below spends this one clock; no step
   starts a timeout of its own.
1. Candidates, in order: the route's server (its replica members round-robin, starting one
   further each request), then each `fallback:` server (its members likewise) that offers the
   same original tool, resource or prompt right now.
2. A *round* walks the candidates. When none of them is connected but one is on its way
   (starting, restarting, or just lost and about to restart), the round first waits for it,
   bounded by the server's `startup_timeout_seconds` from the request's arrival and by the
   deadline (a `failed`, disabled or stopped server is not waited for; a wait the deadline
   ends fails unsent, `ServerUnavailable` "waiting for the server to start ... ran out").
   For each member the router resolves the connection that will serve the request: the
   calling client's dedicated one when it has one (`isolation: per_client`, the
   handshake-era connection of `protocol: both` or of a server that pushes:
   `servers.isolation.Clones`, started within the deadline), else the member itself; that
   connection's own breaker and queue decide. A member that is not connected, whose circuit
   is open or whose queue is full is skipped (the request never left the hub: failover,
   free); a request still queued at its deadline is refused unsent (`ServerRejected` "no free
   slot before the request's N s ran out"). The first member that takes the request answers
   it, within what is left of the deadline (`ServerTimeout` "no answer to tools/call within N
   s", saying how much of it went on waiting for a slot). If the request failed after it may
   have reached the server (timeout, broken connection, -32603), the round moves on only for a
   tool the operator listed under `idempotent:` (and for reads: `resources/read`,
   `prompts/get`, `completion/complete` ask for data and change nothing), and only while time
   is left (after a timeout none is); otherwise the failure is the answer.
3. When a round fails as a whole and the failure is safe to repeat, tenacity (built only once
   a first round has failed: a request answered at once costs no retry machinery) waits a
   jittered exponential backoff and runs another round, up to `retry.attempts` rounds, each needing a
   token from the server's retry budget (hub/retry_rules.py has the rules and the table) and a
   backoff that ends before the deadline. A round refused everywhere by open circuits or full
   queues (`ServerRejected`) is not repeated: those refusals exist to fail fast.

Errors a caller catches: `ServerUnavailable` (no candidate could take the request, or the
connection broke, or the deadline passed before it could be sent: `delivered=False`; names the
server), `ServerTimeout` (names the server; it was sent a cancellation), `MCPError` (the
server's own error, code unchanged). A tool result over `max_result_bytes` becomes an
`isError` result "result from <server> exceeded N bytes"; a resource or prompt over it fails
with a `ServerError` saying the same.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import anyio
import mcp_types as types
from mcp import MCPError
from mcp.shared.dispatcher import ProgressFnT

from hub.admission import BreakerState, RetryBudget, ServerRejected
from hub.catalog import Kind, snapshot_offers
from hub.client_channel import CURRENT_CHANNEL
from hub.config import ServerEntry
from hub.deadline import RequestDeadline
from hub.errors import ServerError, ServerTimeout, ServerUnavailable
from hub.result_cap import ResultTooLarge, oversized
from hub.retry_rounds import later_rounds
from hub.retry_rules import EventSink, Failure, classify_failure
from hub.servers import ConnectionLost, Fleet, ServerConnection
from hub.task_wire import CreatedTask, LegacyCreatedTask
from hub.tracing import CallTracer
from hub.wire_results import WireResult

__all__ = ["ProgressFn", "Router"]

logger = logging.getLogger(__name__)

ProgressFn = ProgressFnT
"""`(progress, total, message)`, as `notifications/progress` carries them."""

_T = TypeVar("_T", bound=types.Result | WireResult)
_Send = Callable[[ServerConnection, RequestDeadline], Awaitable[_T]]


@dataclass
class _Call:
    """One client request on its way through the router."""

    server_id: str
    kind: Kind
    method: str
    """The MCP method sent (`tools/call`, `resources/read`, `prompts/get`, `completion/complete`)."""
    original: str
    config: ServerEntry
    repeatable: bool
    """May be sent again after it may have reached a server (idempotent tool, or a read)."""
    deadline: RequestDeadline
    """The request's one deadline, from its arrival to its answer (`hub.deadline`)."""
    wait_deadline: float = 0.0
    """`anyio.current_time()` until which the request may wait for a starting server (its
    `startup_timeout_seconds` from arrival; the request's deadline bounds it too)."""
    token: bool = False
    """Holds a retry-budget token (from a granted retry until the end of its round)."""
    answered_by: str | None = None


class Router:
    """Sends requests to the servers of a route (see the module docstring for the rules).

    :param fleet: the server connections; its `events` sink receives the router's events too.
    :param tracer: opens a CLIENT span per attempt (None: tracing off, no cost).
    """

    def __init__(self, fleet: Fleet, *, tracer: CallTracer | None = None) -> None:
        self._fleet = fleet
        self._tracer = tracer
        self._budgets: dict[str, RetryBudget] = {}
        self._rotation: dict[str, int] = {}

    @property
    def events(self) -> EventSink:
        """Where call, retry, failover and budget events go (the fleet's sink)."""
        return self._fleet.events

    # ---- public API (original names) ----

    async def wait_started(self, server_id: str | None = None) -> None:
        """Wait until every server (or logical `server_id`'s members) has had its first start
        attempt, each bounded by its `startup_timeout_seconds` from now (`hub.startup`): a list
        request answered sooner would show clients a catalog without them."""
        await self._fleet.startup.wait(server_id)

    def starting(self, server_id: str | None = None) -> bool:
        """Whether a first start attempt (of any server, or of `server_id`) is still to come."""
        return bool(self._fleet.startup.pending(server_id))

    async def wait_serving(self, server_id: str) -> bool:
        """Wait while `server_id` is not connected but on its way (starting, restarting),
        bounded by its `startup_timeout_seconds` and `timeout_seconds`; True once a member is
        connected, False when none is or will be (failed, disabled, stopped, not configured)."""
        members = self._fleet.members(server_id)
        if not members:
            return False
        config = members[0].config
        await _wait_serving(members, min(config.startup_timeout_seconds, config.timeout_seconds))
        return any(m.connected for m in self._fleet.members(server_id))

    def require_ready(self, server_id: str) -> None:
        """:raises ServerUnavailable: `server_id` is not configured, or none of its members is connected."""
        members = self._fleet.members(server_id)
        if not members:
            raise ServerUnavailable(server_id, "not configured", delivered=False)
        errors: list[ServerUnavailable] = []
        for member in members:
            try:
                member.require_ready()
                return
            except ServerUnavailable as exc:
                errors.append(exc)
        raise errors[0]

    async def call_tool(
        self,
        server_id: str,
        name: str,
        arguments: dict[str, Any] | None,
        progress: ProgressFn | None = None,
        **mrtr: Any,
    ) -> types.CallToolResult | types.InputRequiredResult | CreatedTask | LegacyCreatedTask | WireResult:
        """`tools/call` of original tool `name` on `server_id` (or its replicas and fallbacks);
        progress is relayed to `progress`. A result over `max_result_bytes` comes back as an
        `isError` result naming the server and the limit.

        :param mrtr: `input_responses`, `request_state`, `allow_input_required`, `log_level`,
            `task`, `wire`, passed to `ServerConnection.call_tool` (2026-07-28 multi-round-trip
            requests; tasks, `hub.endpoint.tasks`; with `wire` a plain result comes back as the server
            sent it, `hub.wire_results.WireResult`).
        """
        try:
            return await self._dispatch(
                server_id,
                "tools",
                "tools/call",
                name,
                lambda c, deadline: c.call_tool(name, arguments, progress_callback=progress, deadline=deadline, **mrtr),
            )
        except ResultTooLarge as exc:
            return types.CallToolResult(content=[types.TextContent(type="text", text=exc.message)], is_error=True)

    async def read_resource(
        self, server_id: str, uri: str, **mrtr: Any
    ) -> types.ReadResourceResult | types.InputRequiredResult | WireResult:
        """`resources/read` of original `uri` on `server_id` (or its replicas and fallbacks);
        `mrtr` (and `wire`) as `call_tool`."""
        return await self._dispatch(
            server_id,
            "resources",
            "resources/read",
            uri,
            lambda c, deadline: c.read_resource(uri, deadline=deadline, **mrtr),
        )

    async def get_prompt(
        self, server_id: str, name: str, arguments: dict[str, str] | None, **mrtr: Any
    ) -> types.GetPromptResult | types.InputRequiredResult | WireResult:
        """`prompts/get` of original prompt `name` on `server_id` (or its replicas and fallbacks);
        `mrtr` (and `wire`) as `call_tool`."""
        return await self._dispatch(
            server_id,
            "prompts",
            "prompts/get",
            name,
            lambda c, deadline: c.get_prompt(name, arguments, deadline=deadline, **mrtr),
        )

    async def complete(
        self,
        server_id: str,
        ref: types.PromptReference | types.ResourceTemplateReference,
        argument: dict[str, str],
        context_arguments: dict[str, str] | None,
        *,
        wire: bool = False,
    ) -> types.CompleteResult | WireResult:
        """`completion/complete` on `server_id`; `ref` already carries the original name or URI
        template; `wire` as `call_tool`."""
        kind: Kind = "prompts" if isinstance(ref, types.PromptReference) else "resource_templates"
        original = ref.name if isinstance(ref, types.PromptReference) else ref.uri
        return await self._dispatch(
            server_id,
            kind,
            "completion/complete",
            original,
            lambda c, deadline: c.complete(ref, argument, context_arguments, deadline=deadline, wire=wire),
        )

    def plan(self, server_id: str, kind: Kind, original: str) -> dict[str, Any]:
        """For `/admin/routes`: the route's chain (`[server_id, fallbacks offering it...]`), its
        candidate members in order, and the member that would serve it now (None: none can)."""
        members = self._fleet.members(server_id)
        config = members[0].config if members else None
        candidates = self._candidates(server_id, kind, original, config, advance=False) if config else []
        serving = next((c.server_id for c in candidates if _available(c)), None)
        chain = list(dict.fromkeys(c.server_id.partition("/")[0] for c in candidates))
        if server_id not in chain:
            chain.insert(0, server_id)
        return {"chain": chain, "members": [c.server_id for c in candidates], "serving": serving}

    def budget(self, server_id: str) -> RetryBudget | None:
        """The retry budget of logical `server_id`, once a request has used it."""
        return self._budgets.get(server_id)

    # ---- dispatch ----

    def _candidates(
        self, server_id: str, kind: Kind, original: str, config: ServerEntry, *, advance: bool
    ) -> list[ServerConnection]:
        order: list[ServerConnection] = []
        for index, sid in enumerate([server_id, *config.fallback]):
            members = self._fleet.members(sid)
            if index > 0:
                members = [m for m in members if snapshot_offers(m.snapshot, kind, original)]
            if not members:
                continue
            start = self._rotation.get(sid, 0)
            if advance:
                self._rotation[sid] = start + 1
            start %= len(members)
            order.extend(members[start:] + members[:start])
        return order

    async def _dispatch(self, server_id: str, kind: Kind, method: str, original: str, send: _Send[_T]) -> _T:
        members = self._fleet.members(server_id)
        if not members:
            raise ServerUnavailable(server_id, "not configured", delivered=False)
        config = members[0].config
        deadline = RequestDeadline(config.timeout_for(original), config.hard_timeout_for(original))
        call = _Call(
            server_id,
            kind,
            method,
            original,
            config,
            repeatable=kind != "tools" or config.is_idempotent(original),
            deadline=deadline,
            wait_deadline=deadline.arrived + config.startup_timeout_seconds,
        )
        budget = self._budgets.get(server_id)
        if budget is None or (budget.ratio, budget.minimum) != (config.retry.budget_ratio, config.retry.budget_min):
            budget = self._budgets[server_id] = RetryBudget(config.retry.budget_ratio, config.retry.budget_min)
        started = time.monotonic()
        outcome = "error"
        with budget.call():
            try:
                try:
                    result = await self._round(call, send)
                except Exception as exc:
                    result = await later_rounds(call, budget, self.events, partial(self._round, call, send), exc)
                outcome = "is_error" if getattr(result, "is_error", False) else "ok"
                return result
            except ResultTooLarge:
                outcome = "too_large"
                raise
            except ServerTimeout:
                outcome = "timeout"
                raise
            except ServerUnavailable:
                outcome = "unavailable"
                raise
            finally:
                if call.token:
                    budget.release()
                self.events.emit(
                    "on_call", original, call.answered_by or server_id, outcome, time.monotonic() - started
                )

    async def _round(self, call: _Call, send: _Send[_T]) -> _T:
        """One round (module docstring, step 2): wait while no candidate is connected but one
        is coming up, then walk them. A walk that reached no server because the connection it
        found had just been lost (the supervisor had not noticed yet) waits and walks again,
        within the same wait deadline. The wait ends at the request's deadline at the latest."""
        while True:
            candidates = self._candidates(call.server_id, call.kind, call.original, call.config, advance=False)
            wait_until = min(call.wait_deadline, call.deadline.at)
            if await _wait_serving(candidates, wait_until - anyio.current_time()):
                logger.debug("server %s: waited for it to start", call.server_id)
            candidates = self._candidates(call.server_id, call.kind, call.original, call.config, advance=True)
            try:
                return await self._walk(call, send, candidates)
            except ServerUnavailable as exc:
                if exc.delivered or isinstance(exc, ServerRejected):
                    raise
                coming_up = not any(c.connected for c in candidates) and any(c.coming_up for c in candidates)
                if coming_up and call.deadline.expired():
                    phase = f"waiting for the server to start ({exc.message})"
                    raise ServerUnavailable(call.server_id, call.deadline.ran_out(phase), delivered=False) from exc
                if not coming_up or anyio.current_time() >= wait_until:
                    raise

    async def _walk(self, call: _Call, send: _Send[_T], candidates: list[ServerConnection]) -> _T:
        """One walk over `candidates`: the first that takes the request answers it."""
        first: ServerError | MCPError | None = None
        skipped: list[str] = []
        rejected_everywhere = True
        lost: ServerError | MCPError | None = None  # the last failure after a possible delivery: the one to report
        previous: str | None = None
        for position, connection in enumerate(candidates, start=1):
            if call.deadline.expired():
                break  # nothing left for another replica or fallback
            if previous is not None:
                self.events.emit("on_failover", previous, connection.server_id)
            previous = connection.server_id
            try:
                if self._tracer is None:
                    return await self._attempt(call, connection, send)
                return await self._tracer.attempt(
                    call.kind, call.original, connection, partial(self._attempt, call, connection, send)
                )
            except (ServerUnavailable, ServerTimeout, MCPError) as exc:
                failure = classify_failure(exc)
                if failure is None:
                    raise
                first = first or exc
                if failure is Failure.NOT_DELIVERED:
                    assert isinstance(exc, ServerUnavailable)
                    skipped.append(f"{connection.server_id}: {exc.message}")
                    rejected_everywhere = rejected_everywhere and isinstance(exc, ServerRejected)
                    continue
                lost = exc
                if not call.repeatable:
                    raise
                if position < len(candidates) and not call.deadline.expired():
                    logger.warning(
                        "server %s failed %s (%s); trying the next replica or fallback",
                        connection.server_id,
                        call.original,
                        exc,
                    )
        if lost is not None:
            raise lost
        if first is None:
            if candidates and call.deadline.expired():
                raise ServerUnavailable(call.server_id, call.deadline.ran_out("routing"), delivered=False)
            raise ServerUnavailable(call.server_id, "no server offers this route right now", delivered=False)
        if len(skipped) > 1:
            if rejected_everywhere:
                raise ServerRejected(call.server_id, "; ".join(skipped)) from first
            raise ServerUnavailable(call.server_id, "; ".join(skipped), delivered=False) from first
        raise first

    async def _attempt(self, call: _Call, member: ServerConnection, send: _Send[_T]) -> _T:
        """Send to one member, over the connection that serves this client (`_serving`):
        readiness, that connection's breaker and concurrency checks first (failing them means
        the request never left), then the request; that breaker gets the verdict."""
        member.require_ready()
        connection = await self._serving(call, member)
        connection.require_ready()
        breaker = connection.breaker
        if not breaker.allow():
            raise ServerRejected(
                connection.server_id,
                f"circuit open after {breaker.consecutive_failures} consecutive failures; next probe in "
                f"{breaker.retry_in_seconds:.1f} s",
            )
        deadline = call.deadline
        try:
            queued = anyio.current_time()
            async with connection.limiter.slot(deadline.remaining(), request_seconds=deadline.seconds):
                deadline.queued_seconds += anyio.current_time() - queued
                result = await send(connection, deadline)
        except (ServerUnavailable, ServerTimeout, MCPError) as exc:
            # The breaker's verdict follows the same classification as the retry rules.
            failure = classify_failure(exc)
            if failure is Failure.NOT_DELIVERED:
                breaker.release()
            elif failure is None:
                breaker.record_success()  # the server answered: its own JSON-RPC error
            else:
                # Every request in flight on a lost connection fails at once: one failure.
                breaker.record_failure(exc.generation if isinstance(exc, ConnectionLost) else None)
            raise
        except ResultTooLarge:
            breaker.record_success()
            call.answered_by = connection.server_id
            raise
        except BaseException:
            breaker.release()  # cancelled by the client, or a bug: no verdict on the server
            raise
        breaker.record_success()
        call.answered_by = connection.server_id
        if oversized(result, connection.config.max_result_bytes):
            raise ResultTooLarge(connection.server_id, connection.config.max_result_bytes)
        return result

    async def _serving(self, call: _Call, member: ServerConnection) -> ServerConnection:
        """The connection that serves this request at `member`: the calling client's dedicated
        one when it has one (`isolation: per_client`, the handshake-era connection of a
        `protocol: both` server or of one that pushes: `servers.isolation.Clones`), started
        on first use within the request's deadline; else `member` itself. Its own breaker and
        limiter then decide whether the request may go.

        :raises ServerUnavailable: the dedicated connection could not be started, or not
            within the deadline (`delivered=False`).
        """
        channel = CURRENT_CHANNEL.get()
        if channel is None or member.client_key is not None:
            return member
        key = member.clones.dedicated_key(channel, call.method)
        if key is None:
            return member
        with anyio.move_on_after(call.deadline.remaining()):
            return await member.clones.dedicated(key)
        phase = "starting the connection dedicated to this client"
        raise ServerUnavailable(member.server_id, call.deadline.ran_out(phase), delivered=False)


async def _wait_serving(connections: list[ServerConnection], timeout_seconds: float) -> bool:
    """Wait at most `timeout_seconds` while none of `connections` is connected and one of them
    is coming up; True when it waited (whatever the outcome), False when there was nothing to
    wait for."""
    if timeout_seconds <= 0 or any(c.connected for c in connections):
        return False
    if not any(c.coming_up for c in connections):
        return False
    with anyio.move_on_after(timeout_seconds):
        while not any(c.connected for c in connections) and any(c.coming_up for c in connections):
            if len(connections) == 1:
                await connections[0].wait_state_change()
            else:
                async with anyio.create_task_group() as tg:

                    async def changed(connection: ServerConnection) -> None:
                        await connection.wait_state_change()
                        tg.cancel_scope.cancel()

                    for connection in connections:
                        tg.start_soon(changed, connection)
    return True


def _available(connection: ServerConnection) -> bool:
    """Whether a member would take a request now (connected, circuit admitting, queue not full)."""
    try:
        connection.require_ready()
    except ServerUnavailable:
        return False
    if connection.breaker.state is not BreakerState.CLOSED and not connection.breaker.would_allow():
        return False
    limiter = connection.limiter
    return limiter.in_use < limiter.max_concurrency or limiter.waiting < limiter.max_queue
