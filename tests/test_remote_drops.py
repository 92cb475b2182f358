"""A remote server whose HTTP exchange for one request breaks: only that request fails, the
connection to the server lives on, and the server's other calls, in flight or later, are answered
(`adapters.broken_exchange`; SECURITY.md: one bad exchange never takes the rest down).

The server is the fixture server's own Streamable HTTP app, served in this process by uvicorn on
127.0.0.1, behind an ASGI layer that breaks the exchange of a POST carrying a marker: its answer
cut short after the response started (a JSON body, or an event stream ending before the answer),
or the connection dropped before any response (a raw socket server, for the pool's transport)."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2
import pytest
import uvicorn
from mcp import MCPError
from mcp_types import INTERNAL_ERROR

from adapters.broken_exchange import EXCHANGE_FAILED, exchange_failure
from adapters.http_pool import HttpPool
from hub.app import ServerState
from hub.servers.failures import Breakage, classify
from tests.clients import mcp_client
from tests.conftest import faulty_http, running_hub
from tests.servers.fixture_server import _http_app, build_server

pytestmark = pytest.mark.anyio

BREAK = "break-this-exchange"
"""An echo text that makes the server break the HTTP exchange carrying it."""
SERVER_ERROR = "answer-minus-32000"
"""An echo text the server answers with a JSON-RPC error -32000 of its own."""


class BreakingExchanges:
    """ASGI middleware: a POST whose body holds `BREAK` gets its response started and then its
    connection dropped (`mode` "json": a JSON body cut short; "sse": an event stream that ends
    before the answer); one holding `SERVER_ERROR` is answered with the server's own -32000."""

    def __init__(self, app: Any, mode: str) -> None:
        self.app = app
        self.mode = mode
        self.pings_to_break = 0
        """`ping` exchanges (handshake-era health checks) to break next."""
        self.pings: list[bool] = []
        """Every `ping` exchange seen: whether it was broken."""
        self.pinged = anyio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if b'"method":"ping"' in body.replace(b" ", b""):
            broken = self.pings_to_break > 0
            if broken:
                self.pings_to_break -= 1
            self.pings.append(broken)
            self.pinged.set()
            self.pinged = anyio.Event()
            if broken:
                body = BREAK.encode()
        if SERVER_ERROR.encode() in body:
            answer = {"jsonrpc": "2.0", "id": json.loads(body)["id"], "error": {"code": -32000, "message": "busy"}}
            content = json.dumps(answer).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": content})
            return
        if BREAK.encode() in body:
            if self.mode == "json":
                headers = [(b"content-type", b"application/json"), (b"content-length", b"1000")]
                first = b'{"jsonrpc": "2.0", '
            else:
                headers = [(b"content-type", b"text/event-stream")]
                first = b": an event stream that ends before the answer\n\n"
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": first, "more_body": True})
            raise RuntimeError("the test server breaks this exchange")  # uvicorn drops the connection
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


@asynccontextmanager
async def breaking_server(mode: str) -> AsyncIterator[str]:
    """The fixture server behind `BreakingExchanges(mode)`: yields its MCP URL."""
    async with breaking_app(mode) as (url, _):
        yield url


@asynccontextmanager
async def breaking_app(mode: str) -> AsyncIterator[tuple[str, BreakingExchanges]]:
    """The fixture server behind `BreakingExchanges(mode)`: yields its MCP URL and the layer."""
    app = BreakingExchanges(_http_app(build_server("remote", 0, 100, False), "http"), mode)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        server = uvicorn.Server(uvicorn.Config(app, log_level="critical", lifespan="on", access_log=False))
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            try:
                yield f"http://127.0.0.1:{sock.getsockname()[1]}/mcp", app
            finally:
                server.should_exit = True


@pytest.mark.parametrize("mode", ["json", "sse"])
@pytest.mark.parametrize("protocol", ["legacy", "modern"])
async def test_an_exchange_broken_mid_answer_fails_only_its_call_and_the_connection_lives_on(
    mode: str, protocol: str
) -> None:
    async with breaking_server(mode) as url, running_hub({"r": {"url": url, "protocol": protocol}}) as hub:
        async with mcp_client(hub.url) as client, anyio.create_task_group() as tg:
            in_flight: list[Any] = []

            async def slow_call() -> None:
                in_flight.append(await client.call_tool("r__slow", {"seconds": 1.0, "steps": 2}))

            with anyio.fail_after(30):
                tg.start_soon(slow_call)
                await hub.hub.wait_for_server("r", where=lambda status: status.in_flight == 1)
                with pytest.raises(MCPError) as broken:
                    await client.call_tool("r__echo", {"text": BREAK})
                # ServerUnavailable (-32000) naming the server: the exchange broke, the call
                # was delivered, so it is not retried.
                assert broken.value.code == -32000
                assert broken.value.data == {"server_id": "r"}
                assert "broke before its answer" in broken.value.message
                after = await client.call_tool("r__echo", {"text": "still here"})
                assert after.structured_content == {"text": "still here"}
        status = hub.hub.server_status("r")
        assert in_flight and not in_flight[0].is_error, "the call in flight beside the broken one was answered"
        assert (status.state.value, status.restarts, status.last_error) == ("ready", 0, None)


async def test_a_remote_server_that_dies_mid_call_is_found_gone_at_once_not_at_the_next_health_check() -> None:
    # Its death breaks the call's exchange (the transport lives on); a health check right after
    # finds it gone (it cannot connect), so the supervisor reconnects without waiting 30 s.
    async with (
        faulty_http() as (url, _),
        running_hub({"r": {"url": url, "health_check_interval_seconds": 30}}) as hub,
    ):
        async with mcp_client(hub.url) as client:
            with anyio.fail_after(15):
                with pytest.raises(MCPError) as crashed:
                    await client.call_tool("r__crash_mid_call", {})
                await hub.hub.wait_for_server("r", ServerState.RESTARTING, ServerState.FAILED)
    assert crashed.value.code == -32000 and crashed.value.data == {"server_id": "r"}


async def test_a_health_check_whose_own_exchange_breaks_is_repeated_soon_not_at_the_next_interval() -> None:
    # A server still dying may take the check's connection and break it too: the monitor checks
    # again after RECHECK_BACKOFF (1 s for the first), not after the 30 s interval.
    async with (
        breaking_app("json") as (url, server),
        running_hub({"r": {"url": url, "protocol": "legacy", "health_check_interval_seconds": 30}}) as hub,
    ):
        async with mcp_client(hub.url) as client:
            server.pings_to_break = 1
            with anyio.fail_after(15):
                with pytest.raises(MCPError):
                    await client.call_tool("r__echo", {"text": BREAK})  # asks for a check at once
                while len(server.pings) < 2:
                    await server.pinged.wait()
            after = await client.call_tool("r__echo", {"text": "still here"})
        status = hub.hub.server_status("r")
    assert server.pings[:2] == [True, False]
    assert after.structured_content == {"text": "still here"}
    assert (status.state.value, status.restarts) == ("ready", 0)


@pytest.mark.parametrize("protocol", ["legacy", "modern"])
async def test_a_servers_own_minus_32000_error_passes_through_and_leaves_its_connection_in_use(protocol: str) -> None:
    # -32000 is JSON-RPC's implementation-defined server error: servers answer it for anything;
    # it is not the connection closing.
    async with breaking_server("json") as url, running_hub({"r": {"url": url, "protocol": protocol}}) as hub:
        async with mcp_client(hub.url) as client:
            with anyio.fail_after(30):
                with pytest.raises(MCPError) as answered:
                    await client.call_tool("r__echo", {"text": SERVER_ERROR})
                assert (answered.value.code, answered.value.message) == (-32000, "busy")
                after = await client.call_tool("r__echo", {"text": "still here"})
        assert after.structured_content == {"text": "still here"}
        assert hub.hub.server_status("r").restarts == 0


@asynccontextmanager
async def dropping_listener() -> AsyncIterator[str]:
    """A TCP server on 127.0.0.1 that reads one HTTP request and closes the connection without
    answering; yields its URL."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)

    async def drop(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            received = b""
            with anyio.move_on_after(10):
                while b"\r\n\r\n" not in received:
                    received += await stream.receive()

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, drop)
        try:
            yield f"http://127.0.0.1:{listener.extra(anyio.abc.SocketAttribute.local_port)}/mcp"
        finally:
            tg.cancel_scope.cancel()


async def test_a_connection_dropped_before_an_answer_gets_a_request_the_stand_in_and_a_notification_202() -> None:
    pool = HttpPool()
    try:
        async with dropping_listener() as url, pool.client() as client:
            with anyio.fail_after(10):
                request = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "echo"}}
                answer = await client.post(url, json=request)
                notified = await client.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
                not_json_rpc = client.post(url, data={"grant_type": "client_credentials"})
                with pytest.raises(httpx2.RemoteProtocolError):
                    await not_json_rpc  # e.g. an OAuth token request: not ours to answer
    finally:
        await pool.aclose()
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["id"] == 7 and body["error"]["code"] == INTERNAL_ERROR
    assert body["error"]["data"] == {"reason": EXCHANGE_FAILED, "error": "RemoteProtocolError"}
    assert exchange_failure(MCPError(**body["error"])) == "RemoteProtocolError"
    assert classify(MCPError(**body["error"])) is Breakage.REQUEST_FAILED
    assert notified.status_code == 202
