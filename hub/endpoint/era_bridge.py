"""Era bridging for multi-round-trip requests (2026-07-28 `InputRequiredResult`, SEP-2322).

A modern-era client cannot be sent server-to-client requests; a handshake-era server can only
send them. When a modern-era client's `tools/call`, `prompts/get` or `resources/read` goes to a
handshake-era server and that server asks for sampling, elicitation or roots mid-call, the hub
keeps the server-side call running (suspended on the question) in a task of its own and answers
the client with an `InputRequiredResult` holding the question. The client answers by retrying
the request with `input_responses` and the `request_state` it was given; the hub hands the
answer to the waiting server-side call and waits for its result or its next question.

`request_state` is a handle (`hub:<random id>`) sealed by the SDK's `RequestStateBoundary`
(AES-256-GCM under a random key made per hub process, so only this hub can mint or read it),
whose claims bind it to the method, the target name, the arguments, the principal
(`scope["state"]["principal"].id`, default "anonymous") and an expiry of
`input_required_ttl_seconds`. A tampered, foreign, expired or other principal's handle is
refused with -32602 "Invalid or expired requestState" before any handler runs. A modern-era
server's own `InputRequiredResult` is passed through with its `request_state` wrapped the same
way (`srv:<the server's state>`) and unwrapped unchanged on the way back: the hub never parses
it, and the server does its own verification.

A question not answered within the TTL cancels the server-side call (the server is sent
`notifications/cancelled`) and forgets the handle; so does a result nobody collects.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
import mcp_types as types
from mcp import MCPError
from mcp.server import ServerRequestContext
from mcp.server.request_state import RequestStateBoundary, RequestStateSecurity
from mcp_types import INVALID_PARAMS

from hub.client_channel import CURRENT_CHANNEL, ClientChannel, SamplingResult, refusal
from hub.endpoint.server_requests import principal_id
from hub.signals import Changes

__all__ = ["HANDLE_PREFIX", "SERVER_STATE_PREFIX", "Bridge", "BridgedCall"]

logger = logging.getLogger(__name__)

HANDLE_PREFIX = "hub:"
"""Plaintext prefix of a hub-minted handle to a suspended handshake-era call."""
SERVER_STATE_PREFIX = "srv:"
"""Plaintext prefix of a modern-era server's own `request_state`, passed through unparsed."""

_EVENT_BUFFER = 64


@dataclass
class _Question:
    request: types.InputRequest
    answered: anyio.Event = field(default_factory=anyio.Event)
    response: types.InputResponse | None = None


class BridgedCall:
    """One modern-era client's request to a handshake-era server, run in the bridge's task
    group; a `hub.endpoint.server_requests.ClientChannel` whose questions become `InputRequiredResult` rounds.

    :param capabilities: what the client declared in `_meta` (questions it cannot answer are
        refused to the server at once, -32600).
    :param log_channel: where the server's log messages for this call go.
    """

    def __init__(
        self,
        handle: str,
        principal: str,
        client_key: str,
        capabilities: types.ClientCapabilities | None,
        log_channel: ClientChannel,
        ttl_seconds: float,
    ) -> None:
        self.handle = handle
        self.principal = principal
        self._client_key = client_key
        self._capabilities = capabilities or types.ClientCapabilities()
        self._log_channel = log_channel
        self._ttl = ttl_seconds
        self._keys = itertools.count(1)
        self._questions: dict[str, _Question] = {}
        self._asked = anyio.Event()
        self.done = anyio.Event()
        self.result: types.Result | None = None
        self.error: BaseException | None = None
        self.scope = anyio.CancelScope()
        self.collected = anyio.Event()

    @property
    def client_key(self) -> str:
        return self._client_key

    @property
    def modern(self) -> bool:
        return True

    @property
    def capabilities(self) -> types.ClientCapabilities | None:
        return self._capabilities

    # ---- ClientChannel: the server side asks ----

    async def _ask(self, request: types.InputRequest) -> types.InputResponse | None:
        key = f"q{next(self._keys)}"
        question = _Question(request)
        self._questions[key] = question
        self._asked.set()
        with anyio.move_on_after(self._ttl):
            await question.answered.wait()
        self._questions.pop(key, None)
        if question.response is None:
            logger.info("bridged call %s: no answer within %g s, cancelling it", self.handle[:12], self._ttl)
            self.scope.cancel()
        return question.response

    async def sample(self, params: types.CreateMessageRequestParams) -> SamplingResult:
        if self._capabilities.sampling is None:
            return refusal("the client did not declare the sampling capability")
        response = await self._ask(types.CreateMessageRequest(params=params))
        target = types.CreateMessageResultWithTools if params.tools else types.CreateMessageResult
        converted: SamplingResult = _convert(response, target)
        return converted

    async def elicit(self, params: types.ElicitRequestParams) -> types.ElicitResult | types.ErrorData:
        if self._capabilities.elicitation is None:
            return refusal("the client did not declare the elicitation capability")
        converted: types.ElicitResult | types.ErrorData = _convert(
            await self._ask(types.ElicitRequest(params=params)), types.ElicitResult
        )
        return converted

    async def list_roots(self) -> types.ListRootsResult | types.ErrorData:
        if self._capabilities.roots is None:
            return refusal("the client did not declare the roots capability")
        converted: types.ListRootsResult | types.ErrorData = _convert(
            await self._ask(types.ListRootsRequest()), types.ListRootsResult
        )
        return converted

    async def log(self, params: types.LoggingMessageNotificationParams) -> None:
        await self._log_channel.log(params)

    # ---- the client side answers ----

    def answer(self, responses: types.InputResponses | None) -> None:
        """Hand each response to the question with the same key; unknown keys are ignored."""
        for key, response in (responses or {}).items():
            question = self._questions.get(key)
            if question is not None and not question.answered.is_set():
                question.response = response
                question.answered.set()

    async def next_round(self) -> types.Result:
        """Wait until the call finishes (its result, or its error raised) or has unanswered
        questions (an `InputRequiredResult` carrying them and this call's handle)."""
        while True:
            pending = {k: q.request for k, q in self._questions.items() if not q.answered.is_set()}
            if self.done.is_set():
                self.collected.set()
                if self.error is not None:
                    raise self.error
                assert self.result is not None
                return self.result
            if pending:
                return types.InputRequiredResult(input_requests=pending, request_state=self.handle)
            self._asked = anyio.Event()
            async with anyio.create_task_group() as tg:

                async def wait(event: anyio.Event) -> None:
                    await event.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(wait, self._asked)
                tg.start_soon(wait, self.done)


def _convert(response: types.InputResponse | None, target: type[Any]) -> Any:
    if response is None:
        return types.ErrorData(code=INVALID_PARAMS, message="the client did not answer in time")
    if isinstance(response, target):
        return response
    try:
        return target.model_validate(response.model_dump(by_alias=True, exclude_none=True))
    except ValueError:
        return types.ErrorData(code=INVALID_PARAMS, message=f"the client's answer is not a {target.__name__}")


async def _without_channel(fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
    CURRENT_CHANNEL.set(None)  # this task's context is a copy of its spawner's, whoever that was
    await fn()


class Bridge:
    """The suspended calls of modern-era clients to handshake-era servers, and the
    `requestState` protection of every multi-round-trip result the hub returns.

    Use as `async with bridge:` around serving (it owns the calls' task group).

    :param ttl_seconds: how long a handle lives and a question waits (`input_required_ttl_seconds`).
    :param keys: the `requestState` sealing ring (`hub.cluster.keys.ClusterKeys.for_purpose`), the
        sealing key first. Default: one random key for this process.
    """

    def __init__(self, ttl_seconds: float, keys: Sequence[bytes] | None = None) -> None:
        self.ttl_seconds = ttl_seconds
        ring = list(keys) if keys else [os.urandom(32)]
        self.security = RequestStateSecurity(keys=ring, ttl=ttl_seconds, bind_principal=principal_id)
        self._calls: dict[str, BridgedCall] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self.changes = Changes()
        """Notified whenever a bridged call starts or ends (`suspended` changes):
        `await bridge.changes.wait_for(lambda: not bridge.suspended)`."""

    def boundary(self, audience: str) -> RequestStateBoundary:
        """The middleware sealing and verifying `requestState` on one face (`audience`: the
        face's server name, so a handle from one face is refused by another)."""
        return RequestStateBoundary(self.security, default_audience=audience)

    @property
    def suspended(self) -> int:
        """How many bridged calls are alive (running or waiting for an answer)."""
        return len(self._calls)

    async def __aenter__(self) -> Bridge:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        tg, self._tg = self._tg, None
        return await tg.__aexit__(exc_type, exc, tb)

    def spawn(self, fn: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
        """Run `fn` in the bridge's task group (dropped, with a log line, when not serving)."""
        if self._tg is None:
            logger.info("not serving: %s skipped", name)
            return
        self._tg.start_soon(_without_channel, fn, name=name)

    def running(self) -> AbstractAsyncContextManager[Bridge]:
        """`self` as an async context manager (for an exit stack)."""
        return self

    async def start(
        self,
        ctx: ServerRequestContext[Any],
        client_key: str,
        log_channel: ClientChannel,
        send: Callable[[], Awaitable[types.Result]],
    ) -> types.Result:
        """Run `send` (a routed request to a handshake-era server) as a bridged call and return
        its result, or an `InputRequiredResult` for its first question. A client that goes
        away before a question is asked cancels the call.

        :raises MCPError: the hub is not serving (no task group), or what `send` raised.
        """
        if self._tg is None:
            raise MCPError(INVALID_PARAMS, "the hub is shutting down")
        handle = HANDLE_PREFIX + secrets.token_urlsafe(24)
        call = BridgedCall(
            handle,
            principal_id(ctx),
            client_key,
            ctx.session.client_capabilities,
            log_channel,
            self.ttl_seconds,
        )
        self._calls[handle] = call
        self.changes.notify()
        self._tg.start_soon(self._run, call, send, name=f"bridged call {handle[:12]}")
        return await self._collect(call)

    async def resume(self, ctx: ServerRequestContext[Any], handle: str, responses: types.InputResponses | None) -> Any:
        """Answer the suspended call `handle` (already verified by the boundary) and return its
        next round, as `start`.

        :raises MCPError: -32602 the handle is unknown (expired, finished, or cancelled).
        """
        call = self._calls.get(handle)
        if call is None or call.principal != principal_id(ctx):
            raise MCPError(INVALID_PARAMS, "Invalid or expired requestState", {"reason": "invalid_request_state"})
        call.answer(responses)
        return await self._collect(call)

    async def _collect(self, call: BridgedCall) -> types.Result:
        try:
            return await call.next_round()
        except anyio.get_cancelled_exc_class():
            # The client went away while the call was running: cancel it, unless it is waiting
            # for an answer (the client may still retry within the TTL).
            if not call._questions:
                call.scope.cancel()
            raise

    async def _run(self, call: BridgedCall, send: Callable[[], Awaitable[types.Result]]) -> None:
        token = CURRENT_CHANNEL.set(call)
        try:
            with call.scope:
                try:
                    call.result = await send()
                except Exception as exc:
                    call.error = exc
            if call.scope.cancelled_caught:
                call.error = MCPError(INVALID_PARAMS, "the request was cancelled (its input was not provided in time)")
            call.done.set()
            with anyio.move_on_after(self.ttl_seconds):
                await call.collected.wait()
        finally:
            CURRENT_CHANNEL.reset(token)
            self._calls.pop(call.handle, None)
            self.changes.notify()
