"""A modern-era (2026-07-28) client in raw HTTP for the replica tests: one stateless request
(`modern_post`, `modern_call`), and `run_load`, a bounded loop of `fx__echo` calls that records
when each call started and ended and how it ended. Raw requests, so that each call is exactly one
HTTP request the balancer places (the SDK's client adds its own lists and caches them)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Final

import anyio
import httpx2

from tests.clients import http_client
from tests.cluster_fixtures import CALLER_KEY

MODERN_VERSION: Final = "2026-07-28"


def modern_request(request_id: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """A modern-era (2026-07-28) JSON-RPC request: the envelope in `params._meta`, as the SDK's
    client stamps it."""
    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
        "io.modelcontextprotocol/clientInfo": {"name": "replicas-e2e", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": {**params, "_meta": meta}}


def modern_headers(method: str, name: str | None, key: str) -> dict[str, str]:
    headers = {
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
        "mcp-protocol-version": MODERN_VERSION,
        "mcp-method": method,
        "authorization": f"Bearer {key}",
    }
    if name is not None:
        headers["mcp-name"] = name
    return headers


async def modern_post(
    http: httpx2.AsyncClient,
    url: str,
    method: str,
    params: dict[str, Any],
    *,
    name: str | None = None,
    key: str = CALLER_KEY,
    request_id: int = 1,
) -> httpx2.Response:
    """One stateless modern-era request to `url` (`name`: the `Mcp-Name` header, e.g. a tool's)."""
    return await http.post(
        url, json=modern_request(request_id, method, params), headers=modern_headers(method, name, key)
    )


async def modern_call(
    http: httpx2.AsyncClient, url: str, tool: str, arguments: dict[str, Any], key: str = CALLER_KEY, request_id: int = 1
) -> httpx2.Response:
    """One stateless `tools/call` (2026-07-28) to `url`."""
    params = {"name": tool, "arguments": arguments}
    return await modern_post(http, url, "tools/call", params, name=tool, key=key, request_id=request_id)


@dataclass
class CallRecord:
    """One call of a load loop: when it started and ended (`time.monotonic`), and its failure."""

    started: float
    ended: float
    error: str | None = None


@dataclass
class Load:
    """The calls of a load loop, appended as they end."""

    calls: list[CallRecord] = field(default_factory=list)
    stop: anyio.Event = field(default_factory=anyio.Event)

    @property
    def failures(self) -> list[CallRecord]:
        return [call for call in self.calls if call.error is not None]

    def ended_after(self, moment: float) -> int:
        return sum(1 for call in self.calls if call.ended > moment)


LOAD_PAUSE_SECONDS: Final = 0.05
"""Each load client's pause between two calls: the load stays bounded in rate (at most
workers / LOAD_PAUSE_SECONDS calls per second), so that on 2 cores it does not starve the
replicas being restarted of CPU. A pacing interval, not a wait for anything."""


async def run_load(url: str, load: Load, workers: int = 4, max_calls: int = 20_000) -> None:
    """`workers` closed-loop clients calling `fx__echo` through `url` (modern era, a connection
    pool shared by all), each pausing `LOAD_PAUSE_SECONDS` between calls, until `load.stop` is set
    or `max_calls` calls were made; the caller bounds the time. A call counts as failed unless it
    answered HTTP 200 with the echo of its text."""
    count = 0

    async def worker(index: int, http: httpx2.AsyncClient) -> None:
        nonlocal count
        while not load.stop.is_set() and count < max_calls:
            count += 1
            text = f"w{index}-{count}"
            started = time.monotonic()
            error: str | None = None
            try:
                answer = await modern_call(http, url, "fx__echo", {"text": text}, request_id=count)
                if answer.status_code != 200:
                    error = f"HTTP {answer.status_code}: {answer.text[:200]}"
                else:
                    result = answer.json().get("result") or {}
                    if (result.get("content") or [{}])[0].get("text") != text:
                        error = f"wrong answer: {answer.text[:200]}"
            except httpx2.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            load.calls.append(CallRecord(started, time.monotonic(), error))
            await anyio.sleep(LOAD_PAUSE_SECONDS)

    async with http_client(timeout=30) as http, anyio.create_task_group() as tg:
        for index in range(workers):
            tg.start_soon(worker, index, http)
