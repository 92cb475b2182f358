"""A handshake-era (2025-11-25) client for the replica tests, through the balancer.

- `HandshakeSession`: raw HTTP, one HTTP request per JSON-RPC message, so that HAProxy's count of
  each replica's answers tells which replica served which request. `initialize` opens the
  session; every later request carries `Mcp-Session-Id`. A request's answer is read from its
  SSE stream (or its JSON body: the hub answers JSON unless the call streams) message by message,
  so a test can answer what the hub asks the client in the middle of a call; `listening` holds
  the session's GET stream and collects what arrives on it.
- `run_session_load`: the stock SDK client (`mode="legacy"`: `initialize`, then a session) calling
  `fx__echo` through the balancer in a bounded loop, recording each call as `tests.replica_load`
  does, and every session id it sent and every HTTP status it got (so a test can say that the
  client kept one session and never saw 404 "Session not found").
- Which replica did what, read from HAProxy's per-replica answer counts (`served_by`) and each
  replica's `/metrics` (`mcphub_sessions`: the sessions it holds a copy of).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Final

import anyio
import httpx2
import redis
from mcp import MCPError
from mcp.client.streamable_http import streamable_http_client

from hub.cluster.redis_store import KEY_PREFIX
from tests.clients import http_client, mcp_client
from tests.cluster_fixtures import CALLER_KEY, RedisServer
from tests.conftest import tool_text, until
from tests.replica_fixtures import Replica, ReplicaCluster, counter
from tests.replica_load import LOAD_PAUSE_SECONDS, CallRecord, Load

HANDSHAKE_VERSION: Final = "2025-11-25"
INFO_URI: Final = "fx+fixture://info"
"""The fixture server `fx`'s resource, as the hub exposes it (`fx__touch` announces it changed)."""
UPDATED: Final = "notifications/resources/updated"
FIRST_TOUCHES: Final = 5
"""Touches allowed before the first update reaches a GET stream: a subscription reaches the
copies other replicas hold over Redis pub/sub, so an update in the same instant may miss it."""
DELIVERY_WAIT_SECONDS: Final = 5.0
"""How long each of those touches waits for its update. HAProxy without `option http-no-delay`
holds a small SSE event up to 200 ms (it asks the kernel for more data with MSG_MORE)."""
CLIENT_CAPABILITIES: Final[dict[str, Any]] = {"sampling": {}, "elicitation": {"form": {}}}
"""What the raw client declares: the hub relays a server's sampling and elicitation requests
only to a client that can answer them."""


async def _one(message: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """A JSON answer as a stream of one message."""
    yield message


class SessionRefused(AssertionError):
    """A request of the session was not answered as it should have been (status and body)."""


async def sse_messages(response: httpx2.Response) -> AsyncIterator[dict[str, Any]]:
    """The JSON-RPC messages of an SSE body, one per event, as they arrive."""
    data: list[str] = []
    async for line in response.aiter_lines():
        if line.startswith("data:"):
            data.append(line[5:].strip())
        elif not line and data:
            message = json.loads("\n".join(data))
            data = []
            if isinstance(message, dict):
                yield message


@dataclass
class Stream:
    """What arrived on a GET stream (`messages`), and whether the server ended it (`ended`)."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    ended: anyio.Event = field(default_factory=anyio.Event)

    def methods(self, method: str) -> list[dict[str, Any]]:
        """The notifications named `method` that arrived, in order."""
        return [message for message in self.messages if message.get("method") == method]

    def arrived(self, method: str, count: int = 1) -> Callable[[], bool]:
        """The condition that at least `count` notifications `method` arrived (for `until`)."""
        return lambda: len(self.methods(method)) >= count


@dataclass
class HandshakeSession:
    """One handshake-era session of principal `key` at `url`, in raw HTTP (see the module
    docstring). `open` sets `session_id`."""

    http: httpx2.AsyncClient
    url: str
    key: str = CALLER_KEY
    session_id: str | None = None
    _last_id: int = 0

    def headers(self, key: str | None = None) -> dict[str, str]:
        """A request's headers: this session's id (once open) under `key` (default: its own)."""
        headers = {
            "authorization": f"Bearer {key or self.key}",
            "accept": "application/json, text/event-stream",
            "content-type": "application/json",
            "mcp-protocol-version": HANDSHAKE_VERSION,
        }
        if self.session_id is not None:
            headers["mcp-session-id"] = self.session_id
        return headers

    def _request(self, method: str, params: dict[str, Any] | None) -> dict[str, Any]:
        self._last_id += 1
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": self._last_id, "method": method}
        if params is not None:
            message["params"] = params
        return message

    async def open(self) -> None:
        """`initialize` (its answer carries the session id), then `notifications/initialized`."""
        params = {
            "protocolVersion": HANDSHAKE_VERSION,
            "capabilities": CLIENT_CAPABILITIES,
            "clientInfo": {"name": "replicas-e2e", "version": "1"},
        }
        async with self.streaming("initialize", params) as (response, messages):
            answer = await anext(messages)
            if "result" not in answer:
                raise SessionRefused(f"initialize: {answer}")
            self.session_id = response.headers["mcp-session-id"]
        notified = await self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        if notified.status_code != 202:
            raise SessionRefused(f"initialized: HTTP {notified.status_code}: {notified.text[:200]}")

    async def post(self, message: dict[str, Any], key: str | None = None) -> httpx2.Response:
        """POST one message (a notification, or an answer to what the hub asked) and read the
        whole answer."""
        return await self.http.post(self.url, json=message, headers=self.headers(key))

    @asynccontextmanager
    async def streaming(
        self, method: str, params: dict[str, Any] | None = None
    ) -> AsyncIterator[tuple[httpx2.Response, AsyncIterator[dict[str, Any]]]]:
        """POST the request `method` and yield its response (headers received) and the messages
        of its SSE body as they arrive: what the hub asks mid-call, then the answer.

        A plain answer may come as `application/json` instead (the hub's lean path answers JSON
        unless the call streams; MCP transports 2025-11-25 "Sending Messages to the Server":
        either is allowed): it is then the stream's one message.

        :raises SessionRefused: the request was not answered 200 with an SSE or JSON body."""
        request = self._request(method, params)
        async with self.http.stream("POST", self.url, json=request, headers=self.headers()) as response:
            kind = response.headers.get("content-type", "")
            if response.status_code == 200 and kind.startswith("application/json"):
                await response.aread()
                yield response, _one(response.json())
                return
            if response.status_code != 200 or not kind.startswith("text/event-stream"):
                await response.aread()
                raise SessionRefused(f"{method}: HTTP {response.status_code}: {response.text[:200]}")
            yield response, sse_messages(response)

    async def exchange(self, method: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Send the request `method` and return the messages of its stream: what came before
        its answer (notifications: progress, log messages), then the answer."""
        seen: list[dict[str, Any]] = []
        async with self.streaming(method, params) as (_, messages):
            async for message in messages:
                seen.append(message)
                if "method" not in message:
                    return seen
        raise SessionRefused(f"{method}: the stream ended without an answer")

    async def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send the request `method` and return its answer (`result` or `error`)."""
        return (await self.exchange(method, params))[-1]

    async def call(self, tool: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        """`tools/call`; its `result`.

        :raises SessionRefused: it was answered with an error."""
        answer = await self.request("tools/call", {"name": tool, "arguments": arguments or {}})
        if "result" not in answer:
            raise SessionRefused(f"{tool}: {answer}")
        result: dict[str, Any] = answer["result"]
        return result

    async def try_request(self, method: str, key: str | None = None) -> httpx2.Response:
        """One request `method` (no params) under `key`, its whole answer, whatever its status."""
        return await self.http.post(self.url, json=self._request(method, None), headers=self.headers(key))

    async def try_listening(self, key: str | None = None) -> httpx2.Response:
        """Open the session's GET stream under `key` and close it at once: its answer (the body
        read only when it is not a stream)."""
        async with self.http.stream("GET", self.url, headers=self.headers(key)) as answer:
            if answer.status_code != 200:
                await answer.aread()
            return answer

    @asynccontextmanager
    async def listening(self) -> AsyncIterator[Stream]:
        """Hold the session's GET stream while the block runs (entered once its headers came):
        what arrives is appended to the `Stream` yielded.

        :raises SessionRefused: the GET was not answered 200 with an SSE body."""
        stream = Stream()
        async with (
            self.http.stream("GET", self.url, headers=self.headers(), timeout=httpx2.Timeout(30, read=None)) as answer,
            anyio.create_task_group() as tg,
        ):
            if answer.status_code != 200:
                await answer.aread()
                raise SessionRefused(f"GET: HTTP {answer.status_code}: {answer.text[:200]}")

            async def collect() -> None:
                try:
                    async for message in sse_messages(answer):
                        stream.messages.append(message)
                except httpx2.HTTPError:
                    pass  # the connection ended without the body's end: ended all the same
                stream.ended.set()

            tg.start_soon(collect)
            try:
                yield stream
            finally:
                tg.cancel_scope.cancel()

    async def delete(self, key: str | None = None) -> httpx2.Response:
        """DELETE the session (under `key`, default its own)."""
        return await self.http.delete(self.url, headers=self.headers(key))


@dataclass
class SessionLoad(Load):
    """The calls of a handshake-era load, with what its HTTP client saw."""

    session_ids: set[str] = field(default_factory=set)
    """Every `Mcp-Session-Id` the client sent."""
    statuses: list[tuple[str, int]] = field(default_factory=list)
    """(method, status) of every answer the client got."""
    initializes: int = 0
    """`initialize` requests the client sent (1: it never opened another session)."""

    def refused(self) -> list[tuple[str, int]]:
        """Answers 404 (the session unknown) or 400 (no session)."""
        return [(method, status) for method, status in self.statuses if status in (400, 404)]


class LostPostAs502(httpx2.AsyncBaseTransport):
    """An HTTP transport that answers a POST whose connection was lost (the replica serving it
    died: `httpx2.TransportError`) with a 502, as HAProxy does when the replica dies before the
    answer's headers. The stock SDK client ends its whole session on a transport error of a
    handshake-era POST (mcp 2.3, `streamable_http_client`'s task group) but fails only that
    request on a 502: with this transport the load sees the call fail and goes on in its one
    session, which is what the replica tests measure."""

    def __init__(self) -> None:
        self._inner = httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        try:
            return await self._inner.handle_async_request(request)
        except httpx2.TransportError as exc:
            if request.method != "POST":
                raise
            return httpx2.Response(502, text=f"lost connection: {type(exc).__name__}", request=request)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def run_session_load(url: str, load: SessionLoad, max_calls: int = 5_000) -> None:
    """One stock SDK client in the handshake era calling `fx__echo` through `url` in a closed
    loop (one call in flight, `LOAD_PAUSE_SECONDS` between calls) until `load.stop` is set or
    `max_calls` calls were made; the caller bounds the time. A call counts as failed unless it
    answered the echo of its text. A POST whose connection is lost is answered 502
    (`LostPostAs502`), so the call fails and the client keeps its session."""

    async def on_request(request: httpx2.Request) -> None:
        session_id = request.headers.get("mcp-session-id")
        if session_id is not None:
            load.session_ids.add(session_id)
        elif request.method == "POST" and b'"initialize"' in request.content:
            load.initializes += 1

    async def on_response(response: httpx2.Response) -> None:
        load.statuses.append((response.request.method, response.status_code))

    hooks: dict[str, list[Callable[..., Any]]] = {"request": [on_request], "response": [on_response]}
    async with (
        http_client(
            headers={"Authorization": f"Bearer {CALLER_KEY}"},
            timeout=30,
            event_hooks=hooks,
            transport=LostPostAs502(),
        ) as http,
        mcp_client(streamable_http_client(url, http_client=http), mode="legacy") as client,
    ):
        for count in range(max_calls):
            if load.stop.is_set():
                break
            text = f"s-{count}"
            started = time.monotonic()
            error: str | None = None
            try:
                answer = tool_text(await client.call_tool("fx__echo", {"text": text}))
                if answer != text:
                    error = f"wrong answer: {answer[:200]}"
            except MCPError as exc:
                error = f"MCPError {exc.error.code}: {exc.error.message}"
            load.calls.append(CallRecord(started, time.monotonic(), error))
            await anyio.sleep(LOAD_PAUSE_SECONDS)


# ---------------------------------------------------------------- which replica did what


async def answer_counts(cluster: ReplicaCluster, kind: str) -> list[int]:
    """Answers of `kind` (`hrsp_2xx`, `hrsp_4xx`) HAProxy relayed from each replica."""
    stats = await cluster.balancer.stats()
    return [int(stats[r.name][kind] or 0) for r in cluster.replicas]


async def served_by(cluster: ReplicaCluster, before: list[int], kind: str = "hrsp_2xx") -> int:
    """The replica HAProxy relayed exactly one `kind` answer from since the counts `before`
    (and no other replica any)."""
    after = await answer_counts(cluster, kind)
    grown = {index: a - b for index, (b, a) in enumerate(zip(before, after, strict=True)) if a != b}
    assert list(grown.values()) == [1], (kind, before, after)
    (index,) = grown
    return index


async def sessions_per_replica(cluster: ReplicaCluster) -> list[float]:
    """`mcphub_sessions` of each replica: the handshake-era sessions it holds a copy of."""
    return [counter(await cluster.metrics(r), "mcphub_sessions") for r in cluster.replicas]


async def sessions_are(cluster: ReplicaCluster, wanted: list[float]) -> bool:
    """Whether each replica holds `wanted` handshake-era sessions."""
    return await sessions_per_replica(cluster) == wanted


async def rebuilt_on(cluster: ReplicaCluster, replica: Replica, timeout_seconds: float = 30) -> None:
    """Wait (bounded) until `replica` holds one handshake-era session (`mcphub_sessions`): a
    replica started after the session opened holds one only by rebuilding it from its id."""

    async def holds_one() -> bool:
        return counter(await cluster.metrics(replica), "mcphub_sessions") == 1

    with anyio.fail_after(timeout_seconds):
        await until(holds_one)


async def next_with_id(messages: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    """The next message on a stream that has an id (a request to the client, or the answer)."""
    async for message in messages:
        if "id" in message:
            return message
    raise AssertionError("the stream ended")


def result_text(result: dict[str, Any]) -> str:
    """The text of a raw `CallToolResult`'s first content block."""
    text: str = result["content"][0]["text"]
    return text


def forget_windows(server: RedisServer, principal: str) -> None:
    """Delete the rate-limit windows of `principal` in `server` (a fresh window)."""
    with redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=5) as client:
        for key in client.keys(f"{KEY_PREFIX}ratelimit*/{principal}/*"):
            client.delete(key)


async def touch_until_updated(session: HandshakeSession, stream: Stream) -> int:
    """Call `fx__touch` through the session until an update of `INFO_URI` arrives on its GET
    stream `stream` (at most `FIRST_TOUCHES` touches, each waiting `DELIVERY_WAIT_SECONDS`);
    the updates that arrived.

    :raises AssertionError: none arrived."""
    for _ in range(FIRST_TOUCHES):
        assert result_text(await session.call("fx__touch")) == "touched"
        with anyio.move_on_after(DELIVERY_WAIT_SECONDS):
            await until(stream.arrived(UPDATED))
        if stream.methods(UPDATED):
            return len(stream.methods(UPDATED))
    raise AssertionError(f"no update of {INFO_URI} after {FIRST_TOUCHES} touches: {stream.messages}")
