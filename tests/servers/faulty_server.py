"""A misbehaving MCP server (mcp 2.3 lowlevel Server, both eras) for the resilience tests.

Run it over stdio (default) or Streamable HTTP:

    python tests/servers/faulty_server.py [--name NAME] [--transport stdio|http] [--port N]
        [--state-file PATH] [--garbage-at-start] [--ignore-stdin-eof] [--ignore-sigterm]
        [--exit-at-start CODE] [--start-delay SECONDS] [--id-last] [--json-response] [--gzip]

Switches:

- `--name NAME`: the server name reported in `initialize` (default "faulty").
- `--transport stdio|http`: stdio (default) or Streamable HTTP at `/mcp`. Over HTTP it binds
  127.0.0.1 only, prints `PORT=<n>` as its first stdout line once listening, and serves until
  killed.
- `--port N`: the HTTP port (default 0: any free port).
- `--state-file PATH`: a JSON object of call counters (`crash:<key>`, `fail:<key>`) kept on disk,
  so `crash_times`/`fail_times` count across restarts. Without it the counters live in memory.
- `--garbage-at-start` (stdio only): before serving, write three non-MCP lines to stdout: a plain
  log line, a line with ANSI escape codes, and a line of invalid UTF-8 (bytes 0xff 0xfe).
- `--ignore-stdin-eof`: when stdin reaches EOF keep the process running (stdio shutdown tests).
- `--ignore-sigterm`: ignore SIGTERM (only SIGKILL stops it).
- `--exit-at-start CODE`: exit immediately with CODE, before serving (a crash loop).
- `--start-delay SECONDS`: sleep that long before serving (a server slow to start, whether it is
  forked from a test zygote in milliseconds or started fresh).
- `--id-last` (stdio only): write responses with `id` as their last member, as the TypeScript
  SDK does (`{"result":...,"jsonrpc":"2.0","id":5}`).
- `--json-response` (http only): answer handshake-era requests with one JSON body, not SSE
  (modern-era requests are always answered with JSON).
- `--gzip` (http only): gzip answers when the client accepts it (Starlette's GZipMiddleware).

Tools:

- `echo(text)`: a text content `text`.
- `pid()`: the process id as text.
- `slow(seconds, progress_every=0)`: "done" after `seconds`; with `progress_every > 0` sends a
  progress notification every `progress_every` seconds when the caller gave a progressToken.
- `hang()`: never answers (sleeps until cancelled).
- `crash_mid_call()`: `os._exit(3)` while the call is in flight.
- `crash_times(n, key="default")`: the first `n` calls (counted per key, across restarts with
  `--state-file`) exit the process with `os._exit(3)`; later calls answer "ok after n crashes".
- `fail_times(n, key="default", code=-32603)`: the first `n` calls answer a JSON-RPC error
  (`code`, "induced failure k of n"); later calls answer "ok after n failures".
- `huge(size)`: one text content of exactly `size` bytes ("x" * size).
- `garbage_then_echo(text)` (stdio only): writes a plain line, an ANSI line and an invalid UTF-8
  line to stdout between JSON-RPC messages (never inside one), then answers `text`.
- `endless_line()` (stdio only): writes "x" to stdout with no newline, in chunks, until killed.
- `flip_tools()`: toggles an extra tool `flipped` (answers `flipped`) in the tool list, announces
  `tools/list_changed`, and answers "on" or "off".
- `announce_changes(n)`: sends `n` `tools/list_changed` notifications in a row (a burst), then
  answers "announced n".
- `tools_lists()`: how many `tools/list` requests this process has answered, as text.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import mcp_types as types
from mcp import MCPError
from mcp.server import Server, ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.models import InitializationOptions
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ToolsListChanged
from mcp.shared._context_streams import create_context_streams
from mcp.shared.message import SessionMessage

_GARBAGE = (
    b"faulty: a plain log line on stdout\n",
    b"\x1b[31mfaulty: red ANSI\x1b[0m \x1b[2K\n",
    b"faulty: invalid utf-8 \xff\xfe here\n",
)
_EMPTY: dict[str, Any] = {"type": "object", "properties": {}}


def _schema(**props: str) -> dict[str, Any]:
    return {"type": "object", "properties": {k: {"type": v} for k, v in props.items()}}


class _FaultyServer(Server[Any]):
    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        return super().create_initialization_options(
            NotificationOptions(tools_changed=True), experimental_capabilities, extensions
        )


class _Counters:
    """Per-key call counters, persisted to a JSON file when one is given."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._memory: dict[str, int] = {}

    def bump(self, key: str) -> int:
        """Increment `key` and return its new value (written to disk before returning)."""
        data = self._memory
        if self._path is not None and self._path.exists():
            data = json.loads(self._path.read_text() or "{}")
        data[key] = int(data.get(key, 0)) + 1
        if self._path is not None:
            tmp = self._path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data))
            os.replace(tmp, self._path)
        self._memory = data
        return data[key]


class _StdoutWriter:
    """Writes whole byte blocks to fd 1 under a lock, so garbage never lands inside a message."""

    def __init__(self) -> None:
        self.lock = anyio.Lock()

    @staticmethod
    def _write_all(data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(1, view) :]

    async def write(self, data: bytes) -> None:
        async with self.lock:
            await anyio.to_thread.run_sync(self._write_all, data)


def build_server(name: str, counters: _Counters, stdout: _StdoutWriter | None) -> Server[Any]:
    bus = InMemorySubscriptionBus()
    flipped = [False]
    tools = [
        types.Tool(name="echo", description="Echo the text back.", input_schema=_schema(text="string")),
        types.Tool(name="pid", description="The process id.", input_schema=_EMPTY),
        types.Tool(
            name="slow",
            description="Answer 'done' after `seconds`, with progress every `progress_every` s.",
            input_schema=_schema(seconds="number", progress_every="number"),
        ),
        types.Tool(name="hang", description="Never answer.", input_schema=_EMPTY),
        types.Tool(name="crash_mid_call", description="Exit while the call is in flight.", input_schema=_EMPTY),
        types.Tool(
            name="crash_times",
            description="Exit on the first n calls.",
            input_schema=_schema(n="integer", key="string"),
        ),
        types.Tool(
            name="fail_times",
            description="JSON-RPC error on the first n calls.",
            input_schema=_schema(n="integer", key="string", code="integer"),
        ),
        types.Tool(name="huge", description="A text of exactly `size` bytes.", input_schema=_schema(size="integer")),
        types.Tool(name="flip_tools", description="Toggle the tool `flipped`.", input_schema=_EMPTY),
        types.Tool(
            name="announce_changes",
            description="Send n tools/list_changed in a row.",
            input_schema=_schema(n="integer"),
        ),
        types.Tool(name="tools_lists", description="tools/list requests answered so far.", input_schema=_EMPTY),
    ]
    if stdout is not None:
        tools += [
            types.Tool(
                name="garbage_then_echo",
                description="Write garbage lines to stdout, then echo.",
                input_schema=_schema(text="string"),
            ),
            types.Tool(name="endless_line", description="Write one never-ending line.", input_schema=_EMPTY),
        ]
    flipped_tool = types.Tool(name="flipped", description="Present when flipped on.", input_schema=_EMPTY)
    tools_lists = [0]

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        tools_lists[0] += 1
        return types.ListToolsResult(tools=tools + ([flipped_tool] if flipped[0] else []))

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        args = params.arguments or {}
        tool = params.name
        if tool == "echo":
            return _text(str(args.get("text", "")))
        if tool == "pid":
            return _text(str(os.getpid()))
        if tool == "slow":
            seconds, every = float(args.get("seconds", 0)), float(args.get("progress_every", 0))
            if every > 0:
                elapsed = 0.0
                while elapsed + every < seconds:
                    await anyio.sleep(every)
                    elapsed += every
                    await ctx.session.report_progress(elapsed, seconds, f"{elapsed:g}s")
                await anyio.sleep(seconds - elapsed)
            else:
                await anyio.sleep(seconds)
            return _text("done")
        if tool == "hang":
            await anyio.sleep_forever()
        if tool == "crash_mid_call":
            os._exit(3)
        if tool == "crash_times":
            n, key = int(args.get("n", 1)), str(args.get("key", "default"))
            if counters.bump(f"crash:{key}") <= n:
                os._exit(3)
            return _text(f"ok after {n} crashes")
        if tool == "fail_times":
            n, key = int(args.get("n", 1)), str(args.get("key", "default"))
            k = counters.bump(f"fail:{key}")
            if k <= n:
                raise MCPError(int(args.get("code", types.INTERNAL_ERROR)), f"induced failure {k} of {n}")
            return _text(f"ok after {n} failures")
        if tool == "huge":
            return _text("x" * int(args.get("size", 0)))
        if tool == "garbage_then_echo" and stdout is not None:
            for line in _GARBAGE:
                await stdout.write(line)
            return _text(str(args.get("text", "")))
        if tool == "endless_line" and stdout is not None:
            chunk = b"x" * 65536
            async with stdout.lock:
                while True:
                    await anyio.to_thread.run_sync(stdout._write_all, chunk)
        if tool == "flip_tools":
            flipped[0] = not flipped[0]
            if ctx.protocol_version in ("2026-07-28",):
                await bus.publish(ToolsListChanged())
            else:
                await ctx.session.send_tool_list_changed()
            return _text("on" if flipped[0] else "off")
        if tool == "announce_changes":
            n = int(args.get("n", 1))
            for _ in range(n):
                if ctx.protocol_version in ("2026-07-28",):
                    await bus.publish(ToolsListChanged())
                else:
                    await ctx.session.send_tool_list_changed()
            return _text(f"announced {n}")
        if tool == "tools_lists":
            return _text(str(tools_lists[0]))
        if tool == "flipped" and flipped[0]:
            return _text("flipped")
        raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {tool}")

    return _FaultyServer(
        name,
        version="1.0",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_subscriptions_listen=ListenHandler(bus),
    )


def _text(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)])


async def _serve_stdio(server: Server[Any], stdout: _StdoutWriter, ignore_eof: bool, id_last: bool) -> None:
    """Our own stdio transport: whole-message writes under `stdout.lock`, so tools can inject lines."""
    read_writer, read_stream = create_context_streams[SessionMessage | Exception](0)
    write_stream, write_reader = create_context_streams[SessionMessage](0)
    stdin = anyio.wrap_file(sys.stdin.buffer)

    async def stdin_reader() -> None:
        async with read_writer:
            async for line in stdin:
                try:
                    message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
                except Exception as exc:
                    await read_writer.send(exc)
                    continue
                await read_writer.send(SessionMessage(message))

    async def stdout_writer() -> None:
        broken = False
        async with write_reader:
            async for session_message in write_reader:
                if broken:
                    continue  # the client is gone (its end of stdout closed): drop what is left
                message = session_message.message
                data = message.model_dump_json(by_alias=True, exclude_unset=True)
                if id_last and isinstance(message, types.JSONRPCResponse):
                    fields = json.loads(data)
                    data = json.dumps({"result": fields["result"], "jsonrpc": "2.0", "id": fields["id"]})
                try:
                    await stdout.write(data.encode() + b"\n")
                except OSError:
                    broken = True

    async with anyio.create_task_group() as tg:
        tg.start_soon(stdin_reader)
        tg.start_soon(stdout_writer)
        await server.run(read_stream, write_stream, server.create_initialization_options())
        tg.cancel_scope.cancel()
    if ignore_eof:
        # stderr may be a pipe to a client that is gone (a hub killed with SIGKILL): keep running.
        with contextlib.suppress(OSError):
            print("faulty: stdin closed, ignoring EOF", file=sys.stderr, flush=True)
        await anyio.sleep_forever()


async def _serve_http(server: Server[Any], port: int, json_response: bool, gzip: bool) -> None:
    # Imported here: a stdio child that restarts often should not pay for the HTTP stack.
    import uvicorn
    from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.gzip import GZipMiddleware
    from starlette.routing import Route

    manager = StreamableHTTPSessionManager(app=server, json_response=json_response)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async with manager.run():
            yield

    middleware = [Middleware(GZipMiddleware)] if gzip else []
    app = Starlette(
        routes=[Route("/mcp", endpoint=StreamableHTTPASGIApp(manager))], lifespan=lifespan, middleware=middleware
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # IPPROTO_TCP: TCP_NODELAY
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(512)
    print(f"PORT={sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False)
    await uvicorn.Server(config).serve(sockets=[sock])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="faulty")
    parser.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--state-file", type=Path)
    parser.add_argument("--garbage-at-start", action="store_true")
    parser.add_argument("--ignore-stdin-eof", action="store_true")
    parser.add_argument("--ignore-sigterm", action="store_true")
    parser.add_argument("--exit-at-start", type=int, metavar="CODE")
    parser.add_argument("--start-delay", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--id-last", action="store_true")
    parser.add_argument("--json-response", action="store_true")
    parser.add_argument("--gzip", action="store_true")
    args = parser.parse_args()
    if args.exit_at_start is not None:
        print(f"faulty: exiting at start with {args.exit_at_start}", file=sys.stderr, flush=True)
        os._exit(args.exit_at_start)
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if args.start_delay > 0:
        time.sleep(args.start_delay)
    print(f"faulty server {args.name} starting ({args.transport}) pid={os.getpid()}", file=sys.stderr, flush=True)
    if args.garbage_at_start and args.transport == "stdio":
        for line in _GARBAGE:
            _StdoutWriter._write_all(line)
    stdout = _StdoutWriter() if args.transport == "stdio" else None
    server = build_server(args.name, _Counters(args.state_file), stdout)
    server.middleware.clear()
    options = {"use_uvloop": True} if sys.platform != "win32" else {}
    if stdout is not None:
        anyio.run(_serve_stdio, server, stdout, args.ignore_stdin_eof, args.id_last, backend_options=options)
    else:
        anyio.run(_serve_http, server, args.port, args.json_response, args.gzip, backend_options=options)


if __name__ == "__main__":
    main()
