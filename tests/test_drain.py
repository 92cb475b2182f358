"""Draining for deploys (`hub.endpoint.drain`, `hub.cli.shutdown`): on SIGTERM `/readyz` turns 503 at once,
new requests are served through `shutdown_grace_seconds`, in-flight calls finish (bounded by
`drain_timeout_seconds`, then fail with -32000 `shutting_down`), open SSE streams end cleanly,
and `mcphub serve` exits 0; a second signal stops at once.

In-process tests drive `Hub.drain` on a hub served on loopback; the end-to-end ones send real
signals to real `mcphub serve` processes and read their `--json` events."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx2
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream
from conftest import fixture_entry, running_hub, tool_text
from mcp import Client, MCPError
from mcp_types import CONNECTION_CLOSED
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from hub.config import parse_config
from hub.endpoint.drain import SHUTTING_DOWN, DrainPhase
from hub.endpoint.http_server import HttpServer, bind_socket
from hub.reload import plan_reload
from tests.clients import http_client, mcp_client
from tests.conftest import hub_command
from tests.test_cli import _cli_env

pytestmark = pytest.mark.anyio

MODES = ["legacy", "auto"]
"""Client eras: the handshake era (initialize, sessions, GET stream) and the modern one."""

HANDSHAKE_VERSION = "2025-11-25"
START_TIMEOUT_SECONDS = 30.0
SDK_HTTP_LOGGER = "mcp.client.streamable_http"


# --- helpers --------------------------------------------------------------------------------------


def _no_stop() -> None:
    """`stop_accepting` for an in-process hub: the test's HTTP server keeps listening, so the
    drain gate's own refusals are what a late request meets."""


class _Progress:
    """A progress callback that tells when a call is in flight (its first progress arrived)."""

    def __init__(self) -> None:
        self.started = anyio.Event()

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.started.set()


@dataclass
class _Outcome:
    """How a call or a stream ended: its result text, or the error it raised."""

    done: anyio.Event = field(default_factory=anyio.Event)
    text: str | None = None
    error: BaseException | None = None


async def _slow_call(client: Client, seconds: float, progress: _Progress, outcome: _Outcome) -> None:
    """Call `fx__slow` for `seconds`; the tools are listed first, or the SDK client lists them
    after the answer (to check it against an output schema), and a draining hub refuses that."""
    try:
        await client.list_tools()
        result = await client.call_tool(
            "fx__slow", {"seconds": seconds, "steps": max(1, int(seconds))}, progress_callback=progress
        )
        outcome.text = tool_text(result)
    except MCPError as exc:
        outcome.error = exc
    finally:
        outcome.done.set()


def _mcp_headers(session_id: str | None = None) -> dict[str, str]:
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    if session_id is not None:
        headers |= {"mcp-session-id": session_id, "mcp-protocol-version": HANDSHAKE_VERSION}
    return headers


async def _raw_get_stream(http: httpx2.AsyncClient, url: str, opened: anyio.Event, outcome: _Outcome) -> None:
    """A handshake-era session opened by hand, then its GET stream read to its end: `outcome.text`
    is "complete" when the body ended properly (the chunked terminator came), else `error` is
    what the read raised (an abrupt close: incomplete chunked read)."""
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": HANDSHAKE_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"},
        },
    }
    try:
        answer = await http.post(url, json=initialize, headers=_mcp_headers())
        assert answer.status_code == 200, answer.text
        session_id = answer.headers["mcp-session-id"]
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert (await http.post(url, json=initialized, headers=_mcp_headers(session_id))).status_code == 202
        headers = _mcp_headers(session_id) | {"accept": "text/event-stream"}
        async with http.stream("GET", url, headers=headers) as stream:
            assert stream.status_code == 200
            opened.set()
            async for _ in stream.aiter_bytes():
                pass
        outcome.text = "complete"
    except httpx2.HTTPError as exc:
        outcome.error = exc
    finally:
        outcome.done.set()


async def _listen(client: Client, opened: anyio.Event, outcome: _Outcome) -> None:
    """A modern-era `subscriptions/listen` stream held until it ends: `outcome.text` is "ended"
    when it ended gracefully (its result came), else `error` is what was raised
    (`SubscriptionLost` for an abrupt drop)."""
    try:
        async with client.listen(tools_list_changed=True) as subscription:
            opened.set()
            async for _ in subscription:
                pass
        outcome.text = "ended"
    except Exception as exc:
        outcome.error = exc
    finally:
        outcome.done.set()


class _SdkStreamLog(logging.Handler):
    """Watches the SDK client's GET stream through its log: opened, ended with an error, or
    ended normally (the SDK then says it reconnects)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.opened = anyio.Event()
        self.ended = anyio.Event()
        self.errors_before_end = 0

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("GET SSE connection established"):
            self.opened.set()
        elif message.startswith("GET stream error") and not self.ended.is_set():
            self.errors_before_end += 1
        elif message.startswith("GET stream disconnected"):
            self.ended.set()


@asynccontextmanager
async def _watching_sdk_streams() -> AsyncIterator[_SdkStreamLog]:
    logger = logging.getLogger(SDK_HTTP_LOGGER)
    watch, level = _SdkStreamLog(), logger.level
    logger.addHandler(watch)
    logger.setLevel(logging.DEBUG)
    try:
        yield watch
    finally:
        logger.removeHandler(watch)
        logger.setLevel(level)


# --- a real `mcphub serve` ------------------------------------------------------------------------

_EVENTS = ("listening", "ready", "draining", "stopping", "drained")


@dataclass
class _Served:
    process: Process
    base_url: str
    log: Path
    events: dict[str, anyio.Event]
    data: dict[str, dict[str, Any]]

    @property
    def url(self) -> str:
        return f"{self.base_url}/mcp"

    async def event(self, name: str, timeout_seconds: float = 15.0) -> dict[str, Any]:
        """Wait (bounded) for the `serve --json` event `name` and return it."""
        with anyio.fail_after(timeout_seconds):
            await self.events[name].wait()
        return self.data[name]

    async def exit_status(self, timeout_seconds: float) -> int:
        with anyio.fail_after(timeout_seconds):
            return await self.process.wait()

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@asynccontextmanager
async def _serving(tmp_path: Path, **settings: Any) -> AsyncIterator[_Served]:
    """`mcphub serve --json` over the fixture server `fx`, with `settings` at the top of its
    config; yields once every server had its first start attempt. Its events are read as they
    come; on exit it is killed if still running."""
    config = tmp_path / "hub.yaml"
    config.write_text(json.dumps({"servers": {"fx": fixture_entry("fx")}, **settings}))
    log = tmp_path / "serve.log"
    events = {name: anyio.Event() for name in _EVENTS}
    data: dict[str, dict[str, Any]] = {}
    with log.open("wb") as stderr:
        process = await anyio.open_process(
            hub_command("serve", "-c", str(config), "--port", "0", "--json"),
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=_cli_env(),
        )

        async def read_events() -> None:
            assert process.stdout is not None
            stdout = BufferedByteReceiveStream(process.stdout)
            try:
                while True:
                    event = json.loads(await stdout.receive_until(b"\n", 1 << 20))
                    if event["event"] in events:
                        data[event["event"]] = event
                        events[event["event"]].set()
            except (anyio.EndOfStream, anyio.IncompleteRead, anyio.ClosedResourceError):
                return

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(read_events)
                with anyio.fail_after(START_TIMEOUT_SECONDS):
                    await events["ready"].wait()
                base_url = data["listening"]["url"].removesuffix("/mcp")
                try:
                    yield _Served(process, base_url, log, events, data)
                finally:
                    tg.cancel_scope.cancel()
        finally:
            if process.returncode is None:
                process.kill()
            with anyio.move_on_after(10, shield=True):
                await process.aclose()  # the pipes too: a forked hub's close a moment after its launcher died


# --- config ---------------------------------------------------------------------------------------


def test_the_grace_defaults_to_5_seconds_and_a_reload_applies_both_drain_settings_without_a_restart() -> None:
    servers = {"fx": fixture_entry("fx")}
    old = parse_config({"servers": servers}, file="<test>")
    new = parse_config({"servers": servers, "shutdown_grace_seconds": 0, "drain_timeout_seconds": 5}, file="<test>")
    assert old.shutdown_grace_seconds == 5
    assert plan_reload(old, new).restart_required == ()


# --- in process: readiness and the HTTP gate ------------------------------------------------------


async def test_once_draining_readyz_answers_503_draining_while_healthz_and_calls_are_served_with_connection_close() -> (
    None
):
    async with running_hub({"fx": fixture_entry("fx")}) as hub:
        with anyio.fail_after(20):
            async with http_client(base_url=hub.base_url) as http:
                assert (await http.get("/readyz")).status_code == 200
                hub.hub.endpoint.drain.begin()
                ready = await http.get("/readyz")
                health = await http.get("/healthz")
            async with mcp_client(hub.url) as client:
                echoed = tool_text(await client.call_tool("fx__echo", {"text": "still served"}))
    assert ready.status_code == 503
    assert ready.json()["status"] == "draining"
    assert ready.json()["drain"]["phase"] == DrainPhase.GRACE.value
    assert [s["state"] for s in ready.json()["servers"]] == ["ready"]
    assert health.status_code == 200
    assert health.headers["connection"] == "close"
    assert echoed == "still served"


async def test_after_the_grace_a_request_on_an_open_connection_gets_503_with_connection_close_not_a_reset() -> None:
    async with running_hub({"fx": fixture_entry("fx")}) as hub:
        with anyio.fail_after(20):
            async with http_client(base_url=hub.base_url) as http:
                hub.hub.endpoint.drain.stop_accepting()
                ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
                refused = await http.post("/mcp", json=ping, headers=_mcp_headers())
                admin = await http.get("/admin/servers")
                health = await http.get("/healthz")
                ready = await http.get("/readyz")
    assert refused.status_code == 503
    assert refused.headers["connection"] == "close"
    assert refused.headers["retry-after"] == "1"
    error = refused.json()["error"]
    assert error["code"] == CONNECTION_CLOSED
    assert error["data"] == {"reason": SHUTTING_DOWN}
    assert admin.status_code == 503
    assert admin.json()["error"] == SHUTTING_DOWN
    assert health.status_code == 200
    assert ready.status_code == 503
    assert ready.json()["drain"]["phase"] == DrainPhase.STOPPING.value


# --- in process: the drain sequence ---------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_a_drain_waits_for_the_call_in_flight_whose_answer_reaches_its_client(mode: str) -> None:
    progress, outcome = _Progress(), _Outcome()
    async with running_hub({"fx": fixture_entry("fx")}, drain_timeout_seconds=30) as hub:
        drain = hub.hub.endpoint.drain
        with anyio.fail_after(30):
            async with mcp_client(hub.url, mode=mode) as client, anyio.create_task_group() as tg:
                tg.start_soon(_slow_call, client, 1.0, progress, outcome)
                await progress.started.wait()
                report = await hub.hub.drain("test", 0, stop_accepting=_no_stop)
                await outcome.done.wait()
    assert outcome.error is None
    assert outcome.text == "done"
    assert report.requests_at_stop == 1
    assert report.requests_failed == 0
    assert drain.drained.is_set()
    assert drain.requests_in_flight == 0


@pytest.mark.parametrize("mode", MODES)
async def test_a_call_still_running_when_drain_timeout_seconds_runs_out_fails_with_a_shutting_down_error(
    mode: str,
) -> None:
    progress, outcome = _Progress(), _Outcome()
    async with running_hub({"fx": fixture_entry("fx")}, drain_timeout_seconds=0.5) as hub:
        with anyio.fail_after(30):
            async with mcp_client(hub.url, mode=mode) as client, anyio.create_task_group() as tg:
                tg.start_soon(_slow_call, client, 30.0, progress, outcome)
                await progress.started.wait()
                report = await hub.hub.drain("test", 0, stop_accepting=_no_stop)
                await outcome.done.wait()
    assert isinstance(outcome.error, MCPError), outcome
    assert outcome.error.code == CONNECTION_CLOSED
    assert outcome.error.data == {"reason": SHUTTING_DOWN}
    assert "drain_timeout_seconds (0.5 s)" in outcome.error.message
    assert report.requests_failed == 1
    assert hub.hub.endpoint.drain.calls_in_flight == 0


async def test_hurrying_a_drain_skips_the_grace_and_fails_the_call_in_flight_at_once() -> None:
    progress, outcome = _Progress(), _Outcome()
    async with running_hub({"fx": fixture_entry("fx")}, drain_timeout_seconds=60) as hub:
        drain = hub.hub.endpoint.drain
        with anyio.fail_after(20):  # far below the grace plus the drain timeout
            async with mcp_client(hub.url) as client, anyio.create_task_group() as tg:
                tg.start_soon(_slow_call, client, 60.0, progress, outcome)
                await progress.started.wait()
                reports = []

                async def drain_it() -> None:
                    reports.append(await hub.hub.drain("SIGTERM", 60, stop_accepting=_no_stop))

                tg.start_soon(drain_it)
                await drain.started.wait()
                drain.hurry("SIGINT")
                await outcome.done.wait()
                await drain.drained.wait()
    assert isinstance(outcome.error, MCPError), outcome
    assert outcome.error.code == CONNECTION_CLOSED
    assert outcome.error.data == {"reason": SHUTTING_DOWN}
    assert "stopping at once" in outcome.error.message
    assert reports[0].hurried_by == "SIGINT"
    assert reports[0].requests_failed == 1


async def test_a_drain_ends_a_get_stream_with_a_complete_body_and_a_listen_stream_with_its_result() -> None:
    get_opened, get_outcome = anyio.Event(), _Outcome()
    listen_opened, listen_outcome = anyio.Event(), _Outcome()
    async with running_hub({"fx": fixture_entry("fx")}) as hub:
        drain = hub.hub.endpoint.drain
        with anyio.fail_after(20):
            async with (
                http_client() as http,
                mcp_client(hub.url, mode="auto") as modern,
                anyio.create_task_group() as tg,
            ):
                tg.start_soon(_raw_get_stream, http, hub.url, get_opened, get_outcome)
                tg.start_soon(_listen, modern, listen_opened, listen_outcome)
                await get_opened.wait()
                await listen_opened.wait()
                assert drain.open_streams == 2
                report = await hub.hub.drain("test", 0, stop_accepting=_no_stop)
                await get_outcome.done.wait()
                await listen_outcome.done.wait()
    assert report.streams_at_stop == 2
    assert get_outcome.error is None, repr(get_outcome.error)
    assert get_outcome.text == "complete"
    assert listen_outcome.error is None, repr(listen_outcome.error)
    assert listen_outcome.text == "ended"
    assert drain.open_streams == 0


async def test_an_http_server_that_leaves_signals_to_its_caller_keeps_their_handlers_and_can_stop_accepting() -> None:
    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello")

    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    sock = bind_socket("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    server = HttpServer(Starlette(routes=[Route("/", hello)]), sock, handle_signals=False)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve)
            with anyio.fail_after(10):
                async with http_client() as http:
                    first = await http.get(url)
                    during = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
                    server.stop_accepting()
                    again = await http.get(url)  # the connection opened before is still served
                    async with http_client() as fresh:
                        with pytest.raises(httpx2.ConnectError):
                            await fresh.get(url)
            server.stop()
    finally:
        sock.close()
    assert during == before
    assert first.text == again.text == "hello"


async def _iterations_until(event: anyio.Event, bound: int) -> int:
    """Event-loop iterations (`anyio.lowlevel.checkpoint()`: each lets every ready callback and
    I/O event run once) until `event` is set; fails past `bound`."""
    iterations = 0
    while not event.is_set():
        assert iterations < bound, f"not set within {bound} event-loop iterations"
        await anyio.lowlevel.checkpoint()
        iterations += 1
    return iterations


async def test_a_stopped_http_server_waits_for_its_running_request_then_ends_within_a_few_loop_iterations() -> None:
    """uvicorn alone ends a stop on its 0.1 s ticks (0.1-0.3 s, thousands of loop iterations
    here); the hub's server waits on its connections and requests (`hub.endpoint.http_lifecycle`):
    an idle keep-alive connection is closed at once, a request running at the stop still gets
    its answer, and the server (its lifespan ended) is done a few iterations after that."""
    entered, release, lifespan_ended, served = anyio.Event(), anyio.Event(), anyio.Event(), anyio.Event()

    async def slow(request: Request) -> PlainTextResponse:
        entered.set()
        await release.wait()
        return PlainTextResponse("done")

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        lifespan_ended.set()

    sock = bind_socket("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = Starlette(routes=[Route("/slow", slow), Route("/hello", hello)], lifespan=lifespan)
    server = HttpServer(app, sock, handle_signals=False)
    answers: list[str] = []

    async def serve() -> None:
        await server.serve()
        served.set()

    async def slow_request(http: httpx2.AsyncClient) -> None:
        answers.append((await http.get(f"{url}/slow")).text)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(serve)
            with anyio.fail_after(10):
                async with http_client() as idle, http_client() as busy:
                    answers.append((await idle.get(f"{url}/hello")).text)  # its connection stays open, idle
                    tg.start_soon(slow_request, busy)
                    await entered.wait()
                    server.stop()
                    for _ in range(200):  # what a stop with nothing running takes, and more
                        await anyio.lowlevel.checkpoint()
                    assert not served.is_set() and not lifespan_ended.is_set()  # the request holds it
                    release.set()
                    await _iterations_until(served, bound=200)
    finally:
        sock.close()
    assert answers == ["hello", "done"]
    assert lifespan_ended.is_set()


# --- end to end: signals to `mcphub serve` --------------------------------------------------------


@pytest.mark.e2e
async def test_sigterm_turns_readyz_503_serves_new_calls_through_the_grace_lets_the_slow_call_finish_and_exits_0(
    tmp_path: Path,
) -> None:
    grace, drain_timeout = 5, 30
    progress, outcome = _Progress(), _Outcome()
    async with _serving(tmp_path, shutdown_grace_seconds=grace, drain_timeout_seconds=drain_timeout) as hub:
        async with _watching_sdk_streams() as sdk_streams, anyio.create_task_group() as tg:
            async with mcp_client(hub.url, mode="legacy", read_timeout_seconds=60) as client:
                tg.start_soon(_slow_call, client, grace + 3.0, progress, outcome)
                with anyio.fail_after(20):
                    await progress.started.wait()
                    await sdk_streams.opened.wait()
                hub.process.send_signal(signal.SIGTERM)
                draining = await hub.event("draining")
                with anyio.fail_after(grace):
                    async with http_client(base_url=hub.base_url) as http:
                        ready = await http.get("/readyz")
                        health = await http.get("/healthz")
                    async with mcp_client(hub.url) as newcomer:
                        echoed = tool_text(await newcomer.call_tool("fx__echo", {"text": "during the grace"}))
                served_during_grace = not hub.events["stopping"].is_set()
                with anyio.fail_after(grace + drain_timeout):
                    await outcome.done.wait()
                    await sdk_streams.ended.wait()
        drained = await hub.event("drained", grace + drain_timeout)
        status = await hub.exit_status(30)
    assert draining["cause"] == "SIGTERM"
    assert draining["grace_seconds"] == grace
    assert ready.status_code == 503
    assert ready.json()["status"] == "draining"
    assert health.status_code == 200
    assert echoed == "during the grace"
    assert served_during_grace
    assert outcome.error is None, repr(outcome.error)
    assert outcome.text == "done"
    assert sdk_streams.errors_before_end == 0
    assert drained["requests_at_stop"] >= 1
    assert drained["requests_failed"] == 0
    assert status == 0, hub.log_tail()


@pytest.mark.e2e
async def test_sigterm_ends_open_get_and_listen_streams_cleanly_and_exits_0(tmp_path: Path) -> None:
    get_opened, get_outcome = anyio.Event(), _Outcome()
    listen_opened, listen_outcome = anyio.Event(), _Outcome()
    async with _serving(tmp_path, shutdown_grace_seconds=0) as hub:
        with anyio.fail_after(30):
            async with (
                http_client() as http,
                mcp_client(hub.url, mode="auto") as modern,
                anyio.create_task_group() as tg,
            ):
                tg.start_soon(_raw_get_stream, http, hub.url, get_opened, get_outcome)
                tg.start_soon(_listen, modern, listen_opened, listen_outcome)
                await get_opened.wait()
                await listen_opened.wait()
                hub.process.send_signal(signal.SIGTERM)
                await get_outcome.done.wait()
                await listen_outcome.done.wait()
        stopping = await hub.event("stopping")
        status = await hub.exit_status(30)
    assert stopping["streams_at_stop"] == 2
    assert get_outcome.error is None, repr(get_outcome.error)
    assert get_outcome.text == "complete"
    assert listen_outcome.error is None, repr(listen_outcome.error)
    assert listen_outcome.text == "ended"
    assert status == 0, hub.log_tail()


@pytest.mark.e2e
async def test_a_second_sigterm_during_the_drain_stops_at_once_failing_the_call_in_flight(tmp_path: Path) -> None:
    progress, outcome = _Progress(), _Outcome()
    async with _serving(tmp_path, shutdown_grace_seconds=60, drain_timeout_seconds=60) as hub:
        # Every wait below is far shorter than the grace plus the drain timeout (120 s).
        with anyio.fail_after(30):
            async with mcp_client(hub.url, read_timeout_seconds=60) as client, anyio.create_task_group() as tg:
                tg.start_soon(_slow_call, client, 60.0, progress, outcome)
                await progress.started.wait()
                hub.process.send_signal(signal.SIGTERM)
                await hub.event("draining")
                hub.process.send_signal(signal.SIGTERM)
                await outcome.done.wait()
        drained = await hub.event("drained")
        status = await hub.exit_status(20)
    assert isinstance(outcome.error, MCPError), outcome
    assert outcome.error.code == CONNECTION_CLOSED
    assert outcome.error.data == {"reason": SHUTTING_DOWN}
    assert "stopping at once" in outcome.error.message
    assert drained["hurried_by"] == "SIGTERM"
    assert status == 128 + signal.SIGTERM, hub.log_tail()


@pytest.mark.e2e
async def test_a_drain_that_times_out_fails_the_slower_call_with_a_clear_error_and_still_exits_0(
    tmp_path: Path,
) -> None:
    progress, outcome = _Progress(), _Outcome()
    async with _serving(tmp_path, shutdown_grace_seconds=0, drain_timeout_seconds=1) as hub:
        with anyio.fail_after(30):
            async with mcp_client(hub.url, read_timeout_seconds=60) as client, anyio.create_task_group() as tg:
                tg.start_soon(_slow_call, client, 60.0, progress, outcome)
                await progress.started.wait()
                hub.process.send_signal(signal.SIGTERM)
                await outcome.done.wait()
        drained = await hub.event("drained")
        status = await hub.exit_status(20)
    assert isinstance(outcome.error, MCPError), outcome
    assert outcome.error.code == CONNECTION_CLOSED
    assert outcome.error.data == {"reason": SHUTTING_DOWN}
    assert "drain_timeout_seconds (1 s)" in outcome.error.message
    assert drained["requests_failed"] == 1
    assert status == 0, hub.log_tail()


@pytest.mark.e2e
async def test_ctrl_c_skips_the_grace_so_an_idle_hub_stops_at_once_and_exits_0(tmp_path: Path) -> None:
    async with _serving(tmp_path, shutdown_grace_seconds=60) as hub:
        hub.process.send_signal(signal.SIGINT)
        draining = await hub.event("draining")
        status = await hub.exit_status(20)  # far shorter than the grace
    assert draining["cause"] == "SIGINT"
    assert draining["grace_seconds"] == 0
    assert status == 0, hub.log_tail()
