"""The floor: the thinnest Python bridge on the hub's own stack, for benchmarks/bench.py (`floor`).

    python benchmarks/_floor.py [--profile OUT.prof]

It measures what a Python process costs per call before it does anything a gateway is for:
uvicorn with httptools on uvloop (as the hub serves), a raw ASGI callable, orjson, and one stdio
child (the fixture server) multiplexed by request id, as the hub's own `adapters.stdio_mux` does.
No SDK on the serving side, no Starlette, no authentication, policy, rate limit, metrics,
validation, session check, timeout, namespacing or logging. It is not an MCP server anyone should
run (it answers `initialize` and `server/discover` with canned results and forwards every other
request as is); it is the lower bound the hub's CPU per call is compared with (issue 12: "a plain
call must cost the hub little more than parsing, a dictionary lookup, an in-memory policy
decision and a write").

Binds 127.0.0.1 on a free port, prints `PORT=<n>` on stdout, serves POST `/mcp` until
SIGTERM/SIGINT. The child is started with the handshake (`initialize` 2025-11-25,
`notifications/initialized`) before the port is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket
import sys
from pathlib import Path
from typing import Any

import orjson
import uvicorn

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "servers" / "fixture_server.py"
HANDSHAKE_VERSION = "2025-11-25"
START_TIMEOUT_SECONDS = 30.0
ANSWER_TIMEOUT_SECONDS = 30.0
_JSON = [(b"content-type", b"application/json")]


class Child:
    """The fixture over stdio: requests written with ids of its own, answers matched back."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process
        self._next_id = 1
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}

    async def read_forever(self) -> None:
        """Settle each answer's waiter; drop everything else (logs, notifications)."""
        assert self._process.stdout is not None
        while line := await self._process.stdout.readline():
            try:
                message = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            waiter = self._pending.pop(message.get("id"), None) if isinstance(message, dict) else None
            if waiter is not None and not waiter.done():
                waiter.set_result(message)
        for waiter in self._pending.values():
            if not waiter.done():
                waiter.set_exception(ConnectionError("the child exited"))

    async def request(self, method: str, params: Any) -> dict[str, Any]:
        """The child's JSON-RPC response (a dict with `result` or `error`) to `method`."""
        assert self._process.stdin is not None
        request_id = self._next_id
        self._next_id += 1
        waiter = self._pending[request_id] = asyncio.get_running_loop().create_future()
        line = orjson.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        self._process.stdin.write(line + b"\n")
        try:
            return await asyncio.wait_for(waiter, ANSWER_TIMEOUT_SECONDS)
        finally:
            self._pending.pop(request_id, None)

    def notify(self, method: str) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(orjson.dumps({"jsonrpc": "2.0", "method": method}) + b"\n")


class Floor:
    """The ASGI app: one JSON-RPC message per POST, answered with JSON."""

    def __init__(self, child: Child, initialize_result: dict[str, Any]) -> None:
        self._child = child
        self._initialize = initialize_result
        self._session = secrets.token_hex(16).encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["method"] != "POST":
            await self._status(send, 200 if scope["method"] == "DELETE" else 405)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError:
            await self._status(send, 400)
            return
        if not isinstance(request, dict) or "id" not in request:
            await self._status(send, 202)  # a notification or a response: accepted
            return
        method = request.get("method")
        headers = list(_JSON)
        if method == "initialize":
            answer: dict[str, Any] = {"result": self._initialize}
            headers.append((b"mcp-session-id", self._session))
        elif method == "server/discover":
            answer = {"result": {**self._initialize, "supportedVersions": [HANDSHAKE_VERSION]}}
        else:
            params = request.get("params") or {}
            if isinstance(params, dict) and "_meta" in params:  # the modern era's envelope: the child speaks 2025-11-25
                params = {key: value for key, value in params.items() if key != "_meta"}
            try:
                answer = await self._child.request(method, params)
            except (ConnectionError, TimeoutError) as exc:
                answer = {"error": {"code": -32603, "message": str(exc)}}
        answer.pop("id", None)
        answer["id"] = request["id"]
        answer["jsonrpc"] = "2.0"
        payload = orjson.dumps(answer)
        headers.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    @staticmethod
    async def _status(send: Any, status: int) -> None:
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})


async def serve(sock: socket.socket) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(FIXTURE),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        limit=16 * 1024 * 1024,
    )
    child = Child(process)
    reader = asyncio.create_task(child.read_forever())
    init = {"protocolVersion": HANDSHAKE_VERSION, "capabilities": {}, "clientInfo": {"name": "floor", "version": "1"}}
    answer = await asyncio.wait_for(child.request("initialize", init), START_TIMEOUT_SECONDS)
    child.notify("notifications/initialized")
    print(f"PORT={sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(
        Floor(child, answer["result"]),
        loop="none",
        http="httptools",
        lifespan="off",
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)
    try:
        await server.serve(sockets=[sock])
    finally:
        reader.cancel()
        if process.returncode is None:
            process.terminate()
            await process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", metavar="OUT.prof", help="record the run with cProfile into this file")
    args = parser.parse_args()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    os.set_inheritable(sock.fileno(), False)  # the child must not hold the listening socket
    import uvloop

    if not args.profile:
        uvloop.run(serve(sock))
        return
    import cProfile
    import time

    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    try:
        uvloop.run(serve(sock))
    finally:
        profiler.disable()
        profiler.dump_stats(args.profile)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
