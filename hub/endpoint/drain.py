"""Draining a serving hub for a deploy: its phases, what each phase does to HTTP traffic, and
the sequence `mcphub serve` runs on SIGTERM (`hub.cli.shutdown` maps signals to it).

A drain goes through these phases (`DrainPhase`):

- `grace`, for `shutdown_grace_seconds` (default 5): `/readyz` answers 503 with `status:
  draining` at once, so a balancer (or Kubernetes) takes this replica out of rotation, while
  every request is still served as usual. Every response now carries `Connection: close`, so
  a client or balancer holding a persistent connection opens a new one (to another replica)
  for its next request.
- `stopping`: the listening socket is closed, so new connections are refused: every balancer
  retries a refused connection on another replica (HAProxy `retries`/`redispatch`, nginx
  `proxy_next_upstream error`, Envoy's connect-failure retry), as nothing was sent yet, even
  for a POST; a 503 is retried only where configured (`retry-on 503`, `http_503`). A request
  that still arrives on a connection opened before gets 503 with `Connection: close` and
  `Retry-After: 1` (never a reset), except `/healthz` and `/readyz`, which answer as usual.
  Open SSE streams are ended with a proper end: a handshake-era GET stream ends its chunked
  body (the SDK client then reconnects, through the balancer, to another replica) and a
  `subscriptions/listen` stream ends with its `SubscriptionsListenResult` (the spec's graceful
  closure, 2026-07-28 SEP-2575). Requests in flight are waited for, at most
  `drain_timeout_seconds` (default 60); the MCP requests still running then are failed with
  JSON-RPC -32000 and `data.reason: "shutting_down"` (their answer is written before the
  connection closes).
- `drained`: no request in flight; the caller stops the HTTP server, whose lifespan stops the
  fleet (servers shut down as on any exit).

A second signal during a drain hurries it: what is left of the grace and of the wait is
skipped and the MCP requests in flight are failed at once (`Drain.hurry`).

`Drain.track` is the MCP-level part (an SDK server middleware on every face: the requests it
can fail); `DrainGate` is the HTTP-level part (an ASGI middleware in front of the endpoint).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

import anyio
from mcp import MCPError
from mcp.server import ServerRequestContext
from mcp.server.context import CallNext, HandlerResult
from mcp_types import CONNECTION_CLOSED
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.endpoint.http_guards import is_mcp_path
from hub.logs import counted

__all__ = ["ANSWER_SECONDS", "SHUTTING_DOWN", "Drain", "DrainGate", "DrainPhase", "DrainReport"]

logger = logging.getLogger(__name__)

SHUTTING_DOWN: Final = "shutting_down"
"""`data.reason` of the JSON-RPC error (-32000) a request gets when a drain fails it, and of the
503 a request gets once the hub has stopped accepting."""

ANSWER_SECONDS: Final = 5.0
"""Seconds the requests a drain failed get to write their error answer before the drain ends
anyway (the HTTP server then closes what is left)."""

_PROBES: Final = frozenset({"/healthz", "/readyz"})
"""Paths answered as usual even once new requests are refused (cheap, and what operators look at)."""

_LISTEN_METHOD: Final = b"subscriptions/listen"


class DrainPhase(StrEnum):
    """Where a drain is (`Drain.phase`; `drain.phase` of `/readyz`)."""

    SERVING = "serving"
    """Not draining."""
    GRACE = "grace"
    """Readiness 503; everything else served as usual (responses close their connection)."""
    STOPPING = "stopping"
    """Not accepting; streams ended; waiting for the requests in flight."""
    DRAINED = "drained"
    """Nothing left in flight; the HTTP server and the fleet are being stopped."""


@dataclass
class DrainReport:
    """What one drain did (the `drained` event of `mcphub serve --json`, and its log line).

    :param cause: what started it (`SIGTERM`, `SIGINT`, ...).
    :param hurried_by: what cut it short (a second signal), or None.
    """

    cause: str
    grace_seconds: float
    timeout_seconds: float
    requests_at_stop: int = 0
    """Requests in flight when the grace ended (the ones waited for)."""
    streams_at_stop: int = 0
    """SSE streams open when the grace ended (the ones ended)."""
    requests_failed: int = 0
    """MCP requests still running when the wait ran out (or was cut short), failed with -32000."""
    seconds: float = 0.0
    """From the signal to `drained`."""
    hurried_by: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "cause": self.cause,
            "grace_seconds": self.grace_seconds,
            "timeout_seconds": self.timeout_seconds,
            "requests_at_stop": self.requests_at_stop,
            "streams_at_stop": self.streams_at_stop,
            "requests_failed": self.requests_failed,
            "seconds": round(self.seconds, 3),
            "hurried_by": self.hurried_by,
        }


class Drain:
    """The drain state of one endpoint: its phase, the events a caller can wait on, and the
    counts of what is in flight. One per `Endpoint` (`Endpoint.drain`); `run` is the sequence.

    Events: `started` (the grace began: readiness is 503), `stopping` (the grace ended: new
    requests are refused), `drained` (nothing left in flight).
    """

    def __init__(self) -> None:
        self.phase = DrainPhase.SERVING
        self.started = anyio.Event()
        self.stopping = anyio.Event()
        self.drained = anyio.Event()
        self.requests_in_flight = 0
        """HTTP requests being served, SSE streams aside (`DrainGate`)."""
        self.open_streams = 0
        """Handshake-era GET streams and `subscriptions/listen` streams open (`DrainGate`)."""
        self._no_requests: anyio.Event | None = None
        self._calls: set[anyio.CancelScope] = set()
        self._failure = ""
        self._waiting: anyio.CancelScope | None = None
        self._hurried_by: str | None = None

    @property
    def draining(self) -> bool:
        """True from the start of the grace on (readiness answers 503)."""
        return self.phase is not DrainPhase.SERVING

    @property
    def refusing(self) -> bool:
        """True once new requests are refused (the grace is over)."""
        return self.phase is DrainPhase.STOPPING or self.phase is DrainPhase.DRAINED

    @property
    def calls_in_flight(self) -> int:
        """MCP requests whose handler is running (`subscriptions/listen` aside)."""
        return len(self._calls)

    # ---- phases ----

    def begin(self) -> None:
        """Enter the grace: readiness 503, responses close their connection."""
        if self.phase is DrainPhase.SERVING:
            self.phase = DrainPhase.GRACE
            self.started.set()

    def stop_accepting(self) -> None:
        """End the grace: new requests get 503."""
        self.begin()
        if self.phase is DrainPhase.GRACE:
            self.phase = DrainPhase.STOPPING
            self.stopping.set()

    def finish(self) -> None:
        self.stop_accepting()
        self.phase = DrainPhase.DRAINED
        self.drained.set()

    def hurry(self, cause: str) -> None:
        """Cut the drain short (a second signal): skip what is left of the grace and of the wait,
        and fail the MCP requests in flight at once."""
        if self._hurried_by is None:
            self._hurried_by = cause
        if self._waiting is not None:
            self._waiting.cancel()

    async def run(
        self,
        *,
        cause: str,
        grace_seconds: float,
        timeout_seconds: float,
        stop_accepting: Callable[[], None],
        end_streams: Callable[[], None],
        on_phase: Callable[[DrainPhase, DrainReport], Awaitable[None]] | None = None,
    ) -> DrainReport:
        """Drain: the grace (`grace_seconds`), then stop accepting (`stop_accepting()` closes the
        listening socket; new requests on open connections get 503), end the SSE streams
        (`end_streams()`), wait for the requests in flight (at most `timeout_seconds`), fail the
        MCP requests still running (JSON-RPC -32000, `data.reason: "shutting_down"`), and
        return once nothing is in flight (their answers get at most `ANSWER_SECONDS`). Each
        phase is logged once (INFO) with its counts and reported to `on_phase`.
        """
        report = DrainReport(cause, grace_seconds, timeout_seconds)
        began = time.monotonic()
        self.begin()
        logger.info(
            "drain (%s): /readyz answers 503; serving new requests for %g s (shutdown_grace_seconds); "
            "%s in flight, %s open",
            cause,
            grace_seconds,
            counted(self.requests_in_flight, "request"),
            counted(self.open_streams, "SSE stream"),
        )
        if on_phase is not None:
            await on_phase(DrainPhase.GRACE, report)
        await self._wait(anyio.sleep_forever, grace_seconds)

        self.stop_accepting()
        stop_accepting()
        report.requests_at_stop, report.streams_at_stop = self.requests_in_flight, self.open_streams
        logger.info(
            "drain: not accepting connections any more (new requests on open ones get 503); ending %s; "
            "waiting for %s in flight, at most %g s (drain_timeout_seconds)%s",
            counted(self.open_streams, "SSE stream"),
            counted(self.requests_in_flight, "request"),
            timeout_seconds,
            "" if self._hurried_by else "; a second signal stops at once",
        )
        end_streams()
        if on_phase is not None:
            await on_phase(DrainPhase.STOPPING, report)
        if not await self._wait(self._all_answered, timeout_seconds):
            if self._hurried_by is not None:
                self._failure = f"the hub is stopping at once ({self._hurried_by} during its drain); retry the request"
                reason = f"stopping at once ({self._hurried_by})"
            else:
                self._failure = (
                    f"the hub is shutting down: the request was still running after drain_timeout_seconds "
                    f"({timeout_seconds:g} s); retry it"
                )
                reason = f"still running after {timeout_seconds:g} s"
            report.requests_failed = len(self._calls)
            logger.warning(
                "drain: %s; failing %s with -32000 (%s)",
                reason,
                counted(report.requests_failed, "MCP request"),
                counted(self.requests_in_flight, "HTTP request") + " in flight",
            )
            for scope in list(self._calls):
                scope.cancel()
            with anyio.move_on_after(ANSWER_SECONDS):
                await self._all_answered()
        self.finish()
        report.seconds = time.monotonic() - began
        report.hurried_by = self._hurried_by
        logger.info(
            "drain: drained in %.3g s (%s failed; %s and %s left to the HTTP server's stop); stopping",
            report.seconds,
            counted(report.requests_failed, "request"),
            counted(self.requests_in_flight, "request"),
            counted(self.open_streams, "SSE stream"),
        )
        if on_phase is not None:
            await on_phase(DrainPhase.DRAINED, report)
        return report

    async def _wait(self, fn: Callable[[], Awaitable[object]], seconds: float) -> bool:
        """Await `fn()` for at most `seconds`, or until `hurry`; True when it returned."""
        with anyio.move_on_after(seconds) as scope:
            self._waiting = scope
            try:
                if self._hurried_by is not None:
                    scope.cancel()
                await fn()
                return True
            finally:
                self._waiting = None
        return False

    async def _all_answered(self) -> None:
        while self.requests_in_flight:
            self._no_requests = anyio.Event()
            await self._no_requests.wait()

    # ---- the MCP level: requests a drain can fail ----

    async def track(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """SDK server middleware (outermost on every face): runs each MCP request so that a
        drain can fail it; a failed request answers JSON-RPC -32000 with `data: {"reason":
        "shutting_down"}`. Notifications and `subscriptions/listen` (ended by the drain on its
        own terms) pass untouched.

        :raises MCPError: -32000 when a drain failed the request.
        """
        if ctx.request_id is None or ctx.method == "subscriptions/listen":
            return await call_next(ctx)
        scope = anyio.CancelScope()
        self._calls.add(scope)
        try:
            with scope:
                return await call_next(ctx)
        finally:
            self._calls.discard(scope)
        # Only reached when the drain cancelled `scope` (any other cancellation propagates).
        raise MCPError(CONNECTION_CLOSED, self._failure or "the hub is shutting down", {"reason": SHUTTING_DOWN})

    # ---- the HTTP level (DrainGate) ----

    def _enter(self, stream: bool) -> None:
        if stream:
            self.open_streams += 1
        else:
            self.requests_in_flight += 1

    def _leave(self, stream: bool) -> None:
        if stream:
            self.open_streams -= 1
            return
        self.requests_in_flight -= 1
        if not self.requests_in_flight and self._no_requests is not None:
            self._no_requests.set()


def _is_stream(scope: Scope) -> bool:
    """A request whose response is a standing SSE stream: a GET on an MCP path (handshake era)
    or a `subscriptions/listen` POST (modern era: `Mcp-Method` is required and checked against
    the body by the SDK)."""
    method = scope["method"]
    if method == "GET":
        return is_mcp_path(scope["path"])
    if method == "POST":
        for name, value in scope["headers"]:
            if name == b"mcp-method":
                listen: bool = value.strip() == _LISTEN_METHOD
                return listen
    return False


def _closing(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [(name, value) for name, value in headers if name.lower() != b"connection"] + [(b"connection", b"close")]


class DrainGate:
    """ASGI middleware in front of the endpoint: counts the requests and SSE streams in flight
    for `drain`, adds `Connection: close` to every response once the drain has begun, and once
    the grace is over answers new requests (but `/healthz` and `/readyz`) with 503,
    `Connection: close` and `Retry-After: 1`: a JSON-RPC error (-32000, `data.reason:
    "shutting_down"`) on the MCP paths, `{"error": "shutting_down", ...}` elsewhere."""

    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self._app = app
        self._drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        drain = self._drain
        if drain.refusing and scope["path"] not in _PROBES:
            await _refuse(scope, send)
            return
        stream = _is_stream(scope)

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and drain.phase is not DrainPhase.SERVING:
                message = {**message, "headers": _closing(list(message.get("headers", ())))}
            await send(message)

        drain._enter(stream)
        try:
            await self._app(scope, receive, send_closing)
        finally:
            drain._leave(stream)


async def _refuse(scope: Scope, send: Send) -> None:
    message = "the hub is shutting down; retry the request (another replica will take it)"
    if is_mcp_path(scope["path"]):
        payload: dict[str, Any] = {
            "jsonrpc": "2.0",
            "id": None,
            "error": {"code": CONNECTION_CLOSED, "message": message, "data": {"reason": SHUTTING_DOWN}},
        }
    else:
        payload = {"error": SHUTTING_DOWN, "error_description": message}
    body = json.dumps(payload, separators=(",", ":")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", b"1"),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
