"""The load generator: raw JSON-RPC over `httpx2.AsyncClient`, one closed-loop worker per client.

The same generator drives every target, so what differs between rows is the target alone.

- Handshake era (2025-11-25): one session per worker (`initialize`, `notifications/initialized`,
  then requests with `Mcp-Session-Id` and `MCP-Protocol-Version`); a session the target forgot
  (HTTP 404) is opened anew.
- Modern era (2026-07-28): no session. A target is first asked `server/discover` (what the SDK's
  `mode="auto"` client does); a target that refuses it does not serve the era, and its rows read
  "n/a". Every request then carries `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name` and
  `params._meta` protocolVersion / clientInfo / clientCapabilities, as the SDK's client stamps
  them (mcp/client/session.py `_make_modern_stamp`).

Only answers that echo the sent text count as calls; anything else is an error. CPU per call is
utime+stime from /proc/<pid>/stat of each named process over the window, divided by the calls in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

import httpx2
from _procs import cpu_times, log

HANDSHAKE_VERSION = "2025-11-25"
MODERN_VERSION = "2026-07-28"
ERAS = {"handshake": HANDSHAKE_VERSION, "modern": MODERN_VERSION}
CLIENT_INFO = {"name": "mcphub-bench", "version": "1.0"}
MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
    "io.modelcontextprotocol/clientInfo": CLIENT_INFO,
    "io.modelcontextprotocol/clientCapabilities": {},
}

REQUEST_TIMEOUT_SECONDS = 30.0
"""Longest wait for one answer (seconds); a full 10,000-tool list on a loaded machine is the slowest."""
SETUP_TIMEOUT_SECONDS = 60.0
"""Longest wait for every worker to open its session and for the probe call (seconds)."""

_BASE_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


class CallError(Exception):
    """An answer that is not the expected JSON-RPC result (HTTP error, JSON-RPC error, wrong echo)."""


def jsonrpc_from_body(response: httpx2.Response, request_id: int) -> dict[str, Any]:
    """The JSON-RPC response with `request_id` from a JSON or SSE (`text/event-stream`) body.

    :raises CallError: not HTTP 200, or no such response in the body.
    """
    if response.status_code != 200:
        raise CallError(f"HTTP {response.status_code}: {response.text[:200]}")
    content_type = response.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        message = json.loads(response.content)
        if isinstance(message, dict) and message.get("id") == request_id:
            return message
        raise CallError(f"unexpected JSON body: {response.text[:200]}")
    if content_type.startswith("text/event-stream"):
        for event in response.text.replace("\r\n", "\n").split("\n\n"):
            data = "\n".join(line[5:].lstrip(" ") for line in event.split("\n") if line.startswith("data:"))
            if data:
                message = json.loads(data)
                if isinstance(message, dict) and message.get("id") == request_id:
                    return message
        raise CallError(f"no response with id {request_id} in the SSE body: {response.text[:200]}")
    raise CallError(f"unexpected content-type {content_type!r}: {response.text[:200]}")


@dataclass
class Worker:
    """One closed-loop client: its own session (handshake era) or none (modern era).

    :param headers: extra headers on every request (e.g. `Authorization`).
    """

    client: httpx2.AsyncClient
    url: str
    era: str
    index: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    session_id: str | None = None
    next_id: int = 0
    _session_headers: dict[str, str] = field(default_factory=dict)

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    async def open(self) -> None:
        """Handshake era: `initialize` + `notifications/initialized`. Modern era: nothing.

        :raises CallError: refused, or answered without a session id.
        """
        if self.era != "handshake":
            return
        base = {**_BASE_HEADERS, **self.headers}
        request_id = self._id()
        body = {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "initialize",
            "params": {"protocolVersion": HANDSHAKE_VERSION, "capabilities": {}, "clientInfo": CLIENT_INFO},
        }
        response = await self.client.post(self.url, content=json.dumps(body), headers=base)
        message = jsonrpc_from_body(response, request_id)
        if "result" not in message:
            raise CallError(f"initialize failed: {message.get('error')}")
        self.session_id = response.headers.get("mcp-session-id")
        if not self.session_id:
            raise CallError("initialize answered without an mcp-session-id header")
        headers = {**base, "mcp-session-id": self.session_id, "mcp-protocol-version": HANDSHAKE_VERSION}
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        response = await self.client.post(self.url, content=json.dumps(note), headers=headers)
        if response.status_code not in (200, 202):
            raise CallError(f"notifications/initialized: HTTP {response.status_code}")
        self._session_headers = headers

    async def discover(self) -> dict[str, Any]:
        """Modern era: `server/discover` (SEP-2575), the probe an SDK client sends first.

        :returns: the DiscoverResult as a dict.
        :raises CallError: the target does not serve the modern era.
        """
        result, _ = await self.request("server/discover", {})
        return result

    async def close(self) -> None:
        if self.session_id:
            with contextlib.suppress(Exception):
                headers = {**self.headers, "mcp-session-id": self.session_id}
                await self.client.delete(self.url, headers=headers, timeout=2.0)
            self.session_id = None

    def _modern_headers(self, method: str, name: str | None) -> dict[str, str]:
        headers = {**_BASE_HEADERS, **self.headers, "mcp-protocol-version": MODERN_VERSION, "mcp-method": method}
        if name is not None:
            headers["mcp-name"] = name
        return headers

    async def request(self, method: str, params: dict[str, Any], name: str | None = None) -> tuple[dict[str, Any], int]:
        """One JSON-RPC request in this worker's era.

        :param name: the `Mcp-Name` header value in the modern era (tool name of a `tools/call`).
        :returns: (the result object, the size of the HTTP body in bytes).
        :raises CallError: an HTTP or JSON-RPC error.
        """
        request_id = self._id()
        if self.era == "handshake":
            headers = self._session_headers
        else:
            params = {**params, "_meta": MODERN_META}
            headers = self._modern_headers(method, name)
        body = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        response = await self.client.post(self.url, content=json.dumps(body), headers=headers)
        message = jsonrpc_from_body(response, request_id)
        result = message.get("result")
        if not isinstance(result, dict):
            raise CallError(f"JSON-RPC error: {message.get('error')}")
        return result, len(response.content)

    async def call(self, tool: str, text: str) -> None:
        """One `tools/call` of an echo tool.

        :raises CallError: the answer does not echo `text`.
        """
        result, _ = await self.request("tools/call", {"name": tool, "arguments": {"text": text}}, tool)
        content = result.get("content") or [{}]
        if result.get("isError") or content[0].get("text") != text:
            raise CallError(f"wrong answer: {json.dumps(result)[:200]}")


@dataclass
class ListWalk:
    """One full listing, every page followed through `nextCursor`."""

    items: int
    pages: int
    body_bytes: int
    seconds: float


async def list_all(worker: Worker, method: str = "tools/list", key: str = "tools", max_pages: int = 10_000) -> ListWalk:
    """Walk `method` from the first page to the last (`nextCursor` absent), as a client must.

    :raises CallError: an error answer, or more than `max_pages` pages (a cursor loop).
    """
    cursor: str | None = None
    items = pages = body_bytes = 0
    t0 = time.perf_counter()
    while True:
        result, size = await worker.request(method, {"cursor": cursor} if cursor else {})
        pages += 1
        body_bytes += size
        items += len(result.get(key) or [])
        cursor = result.get("nextCursor")
        if not cursor:
            return ListWalk(items, pages, body_bytes, time.perf_counter() - t0)
        if pages >= max_pages:
            raise CallError(f"{method}: more than {max_pages} pages (a cursor loop?)")


@dataclass
class Measurement:
    target: str
    era: str
    concurrency: int
    rep: int = 0
    calls: int = 0
    errors: int = 0
    seconds: float = 0.0
    calls_per_s: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    cpu_ms_per_call: dict[str, float | None] = field(default_factory=dict)
    """Per process ("gateway", "server", "loadgen"): CPU (user + system) ms per call over the window."""
    sys_cpu_ms_per_call: dict[str, float | None] = field(default_factory=dict)
    """The system (kernel) part of `cpu_ms_per_call`."""
    first_errors: list[str] = field(default_factory=list)
    failed: str | None = None
    """Why the measurement could not run at all (setup or probe call failed)."""
    unsupported: str | None = None
    """Why the target does not serve this era (it refused the era's first request)."""

    @property
    def usable(self) -> bool:
        return self.failed is None and self.unsupported is None and self.calls > 0


def _percentile(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


_SETUP_ERRORS = (CallError, httpx2.HTTPError, TimeoutError, json.JSONDecodeError)


async def measure(
    *,
    target: str,
    url: str,
    tool: str,
    era: str,
    concurrency: int,
    warmup: float,
    seconds: float,
    max_calls: int,
    cpu_pids: dict[str, int],
    headers: dict[str, str] | None = None,
    rep: int = 0,
) -> Measurement:
    """Closed-loop load of `concurrency` workers calling `tool`: `warmup` seconds, then a window of
    `seconds` (ended early after `max_calls` calls) in which calls, latencies and CPU are counted."""
    result = Measurement(target, era, concurrency, rep)
    limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    timeout = httpx2.Timeout(REQUEST_TIMEOUT_SECONDS)
    async with httpx2.AsyncClient(limits=limits, timeout=timeout, trust_env=False, verify=False) as client:
        workers = [Worker(client, url, era, i, dict(headers or {})) for i in range(concurrency)]
        try:
            async with asyncio.timeout(SETUP_TIMEOUT_SECONDS):
                if era == "modern":
                    try:
                        await workers[0].discover()
                    except (CallError, httpx2.HTTPStatusError, json.JSONDecodeError) as exc:
                        result.unsupported = f"server/discover refused: {exc}"
                        return result
                await asyncio.gather(*(w.open() for w in workers))
                await workers[0].call(tool, "probe")  # one correct answer before anything is measured
        except _SETUP_ERRORS as exc:
            result.failed = f"{type(exc).__name__}: {exc}"
            await asyncio.gather(*(w.close() for w in workers))
            return result

        latencies: list[float] = []
        window: list[float | None] = [None, None]  # [start, end] on perf_counter
        stop = asyncio.Event()
        full = asyncio.Event()

        async def run(worker: Worker) -> None:
            n = 0
            while not stop.is_set():
                n += 1
                text = f"w{worker.index}-{n}"
                t0 = time.perf_counter()
                error: str | None = None
                try:
                    await worker.call(tool, text)
                except (CallError, httpx2.HTTPError, json.JSONDecodeError) as exc:
                    error = f"{type(exc).__name__}: {exc}"
                t1 = time.perf_counter()
                start, end = window
                if start is not None and t1 >= start and end is None:  # inside the window
                    if error is None:
                        latencies.append(t1 - t0)
                        if len(latencies) >= max_calls:
                            full.set()
                    else:
                        result.errors += 1
                        if len(result.first_errors) < 3:
                            result.first_errors.append(error)
                if error and worker.era == "handshake" and "HTTP 404" in error:  # session lost: open a new one
                    with contextlib.suppress(CallError, httpx2.HTTPError, json.JSONDecodeError):
                        await worker.open()

        def snapshot() -> dict[str, tuple[float, float] | None]:
            times = {name: cpu_times(pid) for name, pid in cpu_pids.items()}
            own = os.times()
            times["loadgen"] = (own.user, own.system)
            return times

        tasks = [asyncio.create_task(run(w)) for w in workers]
        try:
            await asyncio.sleep(warmup)  # warm-up duration, not synchronisation
            cpu_before = snapshot()
            window[0] = time.perf_counter()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await full.wait()
            window[1] = time.perf_counter()
            cpu_after = snapshot()
            stop.set()
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT_SECONDS + 5):
                    await asyncio.gather(*tasks)
            except TimeoutError:
                log("  some calls did not finish after the window; cancelled")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.gather(*(w.close() for w in workers))

    assert window[0] is not None and window[1] is not None
    result.seconds = window[1] - window[0]
    result.calls = len(latencies)
    result.calls_per_s = result.calls / result.seconds if result.seconds > 0 else 0.0
    if latencies:
        latencies.sort()
        result.p50_ms = _percentile(latencies, 0.50) * 1000
        result.p99_ms = _percentile(latencies, 0.99) * 1000
    for name, before in cpu_before.items():
        after = cpu_after.get(name)
        if before is None or after is None or not result.calls:
            result.cpu_ms_per_call[name] = result.sys_cpu_ms_per_call[name] = None
            continue
        user, system = after[0] - before[0], after[1] - before[1]
        result.cpu_ms_per_call[name] = (user + system) * 1000 / result.calls
        result.sys_cpu_ms_per_call[name] = system * 1000 / result.calls
    return result
