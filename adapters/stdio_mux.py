"""A request-id multiplexer for the plain requests to one stdio server (issue 12, item 2).

The SDK session on a stdio transport (`adapters.stdio`) keeps the handshake, the lists, the
relays, the server's own requests and everything that is not a plain request. A `RequestMux`
attached to the same transport carries the plain ones (`hub.servers.raw_calls`: `tools/call`,
`prompts/get`, `resources/read`, `completion/complete`) without the SDK's per-request machinery
(a pydantic request model, a memory stream and a span per request, a hop to the writer task,
the pydantic parse of the answer and a hop to the dispatcher's task):

- **out**: the request line is written in the caller's task (`orjson`, one `write` of one whole
  line), under the transport's one write lock, which the SDK's writer takes too, so two lines
  never interleave;
- **in**: the transport's stdout reader offers each line to `route` first, while requests are
  pending here: an answer to one of them settles its waiter with the result object as parsed
  (no model), a `notifications/progress` whose `progressToken` is one of them is queued for its
  caller; every other line goes on to the SDK, validated from the object already parsed.

**Ids.** The mux numbers its requests from `FIRST_ID` = 2**40 upwards. The SDK's dispatcher
numbers its own from 1 by one per request, so it would need 2**40 (about 10**12) requests on
one connection to reach them: the two spaces never meet, and an answer tells by its id alone
whose it is. The ids are JSON integers, as the SDK's are (servers typed to expect a number
accept them), and stay far below 2**53, so a JavaScript server (whose JSON numbers are doubles)
reads and echoes them exactly. An id echoed as a string of digits is matched too (as the SDK's
`coerce_request_id` does).

**Progress.** The reader never awaits a caller: it appends the notification to the request's
backlog (the newest `PROGRESS_BACKLOG` kept) and wakes the waiting caller, which runs its own
`on_progress` in its own task (its context, its cancel scope), in order, before it takes the
answer. A slow client stalls only its own request; the dispatcher instead spawns a task per
notification in its task group (unordered, unbounded).

**Cancellation.** A caller cancelled after its write started (its deadline, its client gone)
sends `notifications/cancelled` (`requestId`, reason "caller cancelled"; MCP 2025-11-25
basic/utilities "Cancellation"), shielded and bounded by `CANCEL_WRITE_SECONDS`, as the SDK's
dispatcher does; its entry is dropped, and an answer that comes later is dropped silently.

**End.** When the transport ends (the child exited, was killed, wrote an endless line, or the
transport is leaving), `close` fails every waiter with `MCPError(CONNECTION_CLOSED)`, the
SDK's contract for the same event, and every later request at once.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import anyio
import anyio.lowlevel
import mcp_types as types
import orjson
import pydantic_core
from mcp import MCPError
from mcp.shared.dispatcher import ProgressFnT
from mcp_types import CONNECTION_CLOSED, ErrorData, JSONRPCError, JSONRPCResponse
from pydantic import BaseModel

__all__ = ["CANCEL_WRITE_SECONDS", "FIRST_ID", "HANDLED", "NOT_TAKEN", "PROGRESS_BACKLOG", "RequestMux", "Untaken"]

logger = logging.getLogger(__name__)

FIRST_ID: Final = 2**40
"""The mux's first request id (module docstring, "Ids")."""

CANCEL_WRITE_SECONDS: Final = 5.0
"""How long a cancelled caller may wait to write its `notifications/cancelled` (the SDK's bound)."""

PROGRESS_BACKLOG: Final = 64
"""Progress notifications queued per request while its caller is busy; older ones are dropped."""

HANDLED: Final[Any] = object()
"""`route`'s answer for a line the mux took (settled a waiter, queued progress, or dropped)."""


class Untaken(enum.Enum):
    """The type of `NOT_TAKEN`."""

    NOT_TAKEN = "not_taken"


NOT_TAKEN: Final = Untaken.NOT_TAKEN
"""`take`'s answer for a line it could not parse: the transport parses it its own way."""

_Outcome = dict[str, Any] | MCPError
_SendLine = Callable[[bytes], Awaitable[None]]


def _closed() -> MCPError:
    return MCPError(code=CONNECTION_CLOSED, message="Connection closed")


def _default(value: Any) -> Any:
    """orjson's fallback: a pydantic model inside params, as the SDK's writer would dump it."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_unset=True)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _line(message: dict[str, Any]) -> bytes:
    """`message` as one JSON line (compact, UTF-8, ending in a newline)."""
    try:
        return orjson.dumps(message, default=_default, option=orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:
        # What orjson refuses (an integer past 64 bits, a non-string key): pydantic writes it.
        return pydantic_core.to_json(message, inf_nan_mode="null", fallback=_default) + b"\n"


def _mux_key(request_id: object) -> int | None:
    """The mux id `request_id` stands for (an integer, or its digits as a string), else None."""
    if type(request_id) is int:
        return request_id if request_id >= FIRST_ID else None
    if type(request_id) is str and request_id.isascii() and request_id.isdigit():
        number = int(request_id)
        return number if number >= FIRST_ID else None
    return None


def _outcome(message: dict[str, Any]) -> _Outcome | None:
    """The result or error a response carries, or None when it is not a valid JSON-RPC response
    (the SDK's own validation then rejects the line and the transport skips it)."""
    if message.get("jsonrpc") == "2.0":
        result = message.get("result")
        if type(result) is dict and "error" not in message:
            return result
        error = message.get("error")
        if type(error) is dict and "result" not in message:
            code, text = error.get("code"), error.get("message")
            if type(code) is int and type(text) is str:
                return MCPError(code=code, message=text, data=error.get("data"))
    # An unusual spelling (a float code, say): decided exactly as the SDK decides it.
    try:
        parsed = types.jsonrpc_message_adapter.validate_python(message, by_name=False)
    except ValueError:
        return None
    if isinstance(parsed, JSONRPCResponse):
        return parsed.result
    if isinstance(parsed, JSONRPCError):
        return MCPError(code=parsed.error.code, message=parsed.error.message, data=parsed.error.data)
    return None


class _Waiter:
    """One pending request: its outcome once known, and progress its caller has not run yet."""

    __slots__ = ("backlog", "event", "on_progress", "outcome")

    def __init__(self, on_progress: ProgressFnT | None) -> None:
        self.event = anyio.Event()
        self.outcome: _Outcome | None = None
        self.backlog: deque[tuple[float, float | None, str | None]] | None = None
        self.on_progress = on_progress

    def settle(self, outcome: _Outcome) -> None:
        if self.outcome is None:
            self.outcome = outcome
            self.event.set()

    def progress(self, progress: float, total: float | None, message: str | None) -> None:
        if self.backlog is None:
            self.backlog = deque(maxlen=PROGRESS_BACKLOG)
        self.backlog.append((progress, total, message))
        self.event.set()

    async def wait(self) -> _Outcome:
        """The outcome, once every progress notification that came before it has been run."""
        while True:
            await self.event.wait()
            backlog, on_progress = self.backlog, self.on_progress
            while backlog and on_progress is not None:
                progress, total, message = backlog.popleft()
                try:
                    await on_progress(progress, total, message)
                except Exception:  # a relay that fails must not fail the request (the SDK's rule)
                    logger.exception("progress callback raised")
            if self.outcome is not None:
                return self.outcome
            self.event = anyio.Event()


class RequestMux:
    """Sends requests on one stdio transport under ids of its own and settles their answers
    (module docstring). Create one per transport and pass it to
    `adapters.stdio.stdio_transport(..., mux=...)`, which attaches it while it runs."""

    def __init__(self) -> None:
        self._pending: dict[int, _Waiter] = {}
        self._next_id = FIRST_ID
        self._send_line: _SendLine | None = None
        self.closed = False
        """True once the transport ended: every request fails with CONNECTION_CLOSED."""
        self.sent = 0
        """Requests whose write has started so far."""

    # ---- the transport's side (adapters.stdio) ----

    def attach(self, send_line: _SendLine) -> None:
        """Write lines with `send_line` (one whole line per call, under the transport's write
        lock); called by the transport once its child runs."""
        self._send_line = send_line

    @property
    def busy(self) -> bool:
        """Whether a request is pending (only then does the reader offer lines to `route`)."""
        return bool(self._pending)

    def take(self, line: bytes) -> types.JSONRPCMessage | str | Untaken | None:
        """Parse stdout `line` once (orjson) and `route` it: None when the mux took it, else the
        JSON-RPC message for the SDK (validated from the parsed object) or why it is not one;
        `NOT_TAKEN` when it is no JSON-RPC message at all (invalid UTF-8, not JSON), for the
        transport's own parse and account of why."""
        try:
            parsed = self.route(orjson.loads(line))
        except orjson.JSONDecodeError:
            return self._take_unusual(line)
        if parsed is HANDLED:
            return None
        try:
            return types.jsonrpc_message_adapter.validate_python(parsed, by_name=False)
        except ValueError:
            return "not a JSON-RPC message"

    def _take_unusual(self, line: bytes) -> types.JSONRPCMessage | Untaken | None:
        """`take` for a line orjson cannot read: a JSON-RPC message pydantic reads (an integer
        past 64 bits in a result, say) is routed as any other; anything else is `NOT_TAKEN`."""
        try:
            message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
        except ValueError:
            return NOT_TAKEN  # the transport's own parse says why it is not one
        routed = self.route(message.model_dump(by_alias=True, exclude_unset=True))
        return None if routed is HANDLED else message

    def route(self, message: Any) -> Any:
        """Take `message` (a stdout line parsed as JSON) if it is the mux's, else hand it back.

        :returns: `HANDLED` for an answer to a mux id (settling its waiter; a late one is
            dropped) or progress for one (queued for its caller); `message` itself otherwise,
            for the SDK.
        """
        if type(message) is not dict:
            return message
        request_id = message.get("id")
        if request_id is not None:
            if "method" in message:
                return message  # a request from the server
            key = _mux_key(request_id)
            if key is None:
                return message  # an answer to the SDK's own request
            waiter = self._pending.get(key)
            if waiter is None:
                logger.debug("dropping an answer to request %r: it is no longer waited for", request_id)
                return HANDLED
            outcome = _outcome(message)
            if outcome is None:
                return message
            waiter.settle(outcome)
            return HANDLED
        if message.get("method") == "notifications/progress":
            params = message.get("params")
            if type(params) is not dict:
                return message
            key = _mux_key(params.get("progressToken"))
            if key is None:
                return message
            waiter = self._pending.get(key)
            progress, total, text = params.get("progress"), params.get("total"), params.get("message")
            if (
                waiter is not None
                and waiter.on_progress is not None
                and isinstance(progress, int | float)
                and not isinstance(progress, bool)
            ):
                waiter.progress(
                    float(progress),
                    float(total) if isinstance(total, int | float) else None,
                    text if isinstance(text, str) else None,
                )
            return HANDLED  # nothing else listens to progress for a mux request
        return message

    def refuse(self, request_id: object, error: ErrorData) -> bool:
        """Fail the mux request `request_id` with `error` (its answer was refused, e.g. for its
        size: `adapters.oversize.answer_too_large`). False when the id is not the mux's."""
        key = _mux_key(request_id)
        if key is None:
            return False
        waiter = self._pending.get(key)
        if waiter is not None:
            waiter.settle(MCPError(code=error.code, message=error.message, data=error.data))
        return True

    def close(self) -> None:
        """The transport ended: fail every pending request, and every later one, with
        `MCPError(CONNECTION_CLOSED)`. Idempotent."""
        self.closed = True
        for waiter in self._pending.values():
            waiter.settle(_closed())

    # ---- the caller's side ----

    async def request(
        self,
        method: str,
        params: Mapping[str, Any],
        *,
        on_progress: ProgressFnT | None = None,
        on_write: Callable[[], None] | None = None,
    ) -> dict[str, Any]:
        """Send request `method` with `params` (final: stamped as the SDK would stamp them) and
        return its result object as the server sent it.

        :param on_progress: runs (in this task) for each `notifications/progress` of the request,
            whose id is then its `progressToken` (added to `params._meta`).
        :param on_write: called once the request's write has started: from then on the request
            counts as delivered (the SDK's own rule for its courtesy cancel).
        :raises MCPError: the server's error response (code, message and `data` as sent), or
            CONNECTION_CLOSED (the transport ended, before or while the request was pending).
        """
        send_line = self._send_line
        if self.closed or send_line is None:
            raise _closed()
        request_id = self._next_id
        self._next_id += 1
        if on_progress is not None:
            params = dict(params)
            params["_meta"] = {**(params.get("_meta") or {}), "progressToken": request_id}
        line = _line({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        waiter = _Waiter(on_progress)
        self._pending[request_id] = waiter
        written = False
        try:
            # A cancellation from before is taken here, while the request provably never left.
            await anyio.lowlevel.checkpoint_if_cancelled()
            written = True
            self.sent += 1
            if on_write is not None:
                on_write()
            try:
                await send_line(line)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                raise _closed() from None
            outcome = await waiter.wait()
        except anyio.get_cancelled_exc_class():
            if written and not self.closed:
                await self._cancel(request_id, send_line)
            raise
        finally:
            self._pending.pop(request_id, None)
        if isinstance(outcome, MCPError):
            raise outcome
        return outcome

    async def _cancel(self, request_id: int, send_line: _SendLine) -> None:
        """Tell the server the caller gave up on `request_id` (shielded: the caller is being
        cancelled; bounded: a wedged pipe must not hold it)."""
        line = _line(
            {
                "jsonrpc": "2.0",
                "method": "notifications/cancelled",
                "params": {"requestId": request_id, "reason": "caller cancelled"},
            }
        )
        with anyio.move_on_after(CANCEL_WRITE_SECONDS, shield=True) as scope:
            try:
                await send_line(line)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                logger.debug("cancellation of request %r not sent: the transport is closed", request_id)
        if scope.cancelled_caught:
            logger.warning("cancellation of request %r not sent: the server's stdin is blocked", request_id)
