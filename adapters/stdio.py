"""Local servers as stdio subprocesses, read with a bounded, forgiving line reader.

The child runs in its own session and process group (so the whole tree is killed on shutdown:
close stdin, wait 2 s, SIGTERM the group, wait 2 s, SIGKILL; MCP spec 2025-11-25, basic/lifecycle
"Shutdown", using the SDK's own escalation), gets only its configured environment plus a safe
minimum (HOME, LOGNAME, PATH, SHELL, TERM, USER), and has its stderr forwarded line by line to the
log with its server_id.

Its stdout is framed here rather than by the SDK's `stdio_client` (which decodes strictly and
buffers a partial line without limit, SECURITY.md cases 27 and 33):

- a line that is not a JSON-RPC message (a log line, ANSI codes, invalid UTF-8) is skipped and
  logged, truncated and rate-limited, and the session carries on (MCP spec, basic/transports
  "stdio": the server MUST NOT write anything else to stdout; we tolerate it);
- a line longer than `max_line_bytes` (default 4 MiB) is never buffered whole: it is discarded as
  it streams, keeping only its first and last 16 KiB to learn what it is (`adapters.oversize`).
  An answer to one of our requests fails that request alone, with a JSON-RPC error naming the
  cap (`answer_too_large`), as soon as its id is known; a request or notification from the server
  is skipped; the child keeps running. A line that is not JSON-RPC, whose id cannot be read, or
  that runs past 256 x `max_line_bytes` (an endless line) gets the child's process group killed
  at once and the connection ends, failing its in-flight requests.

Plain requests may share the transport with the SDK session through a request-id multiplexer
(`adapters.stdio_mux.RequestMux`, `mux=`): it writes its own lines under the same write lock and
is offered each stdout line first while it has requests pending.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from functools import partial

import anyio
import anyio.lowlevel
import mcp_types as types
from mcp.client.stdio import get_default_environment
from mcp.os.win32.utilities import ServerProcess
from mcp.shared.message import SessionMessage

from adapters._sdk import TransportStreams, create_process, drain_stdout, stop_process
from adapters.oversize import LineKind, LineVerdict, OversizedLine, answer_too_large
from adapters.stdio_mux import NOT_TAKEN, RequestMux

__all__ = ["DEFAULT_MAX_LINE_BYTES", "SKIPPED_LINE_LOG_CHARS", "STDERR_LINE_MAX_CHARS", "stdio_transport"]

logger = logging.getLogger(__name__)
_stderr_logger = logger.getChild("stderr")

STDERR_LINE_MAX_CHARS = 4096
"""A stderr line is cut to this many characters in the log (a child can write anything there)."""

DEFAULT_MAX_LINE_BYTES = 4 * 1024 * 1024
"""Longest stdout line (bytes, without the newline) accepted from a child: 4 MiB, the SDK's own
request body cap. A longer line is discarded (module docstring)."""

_DISCARD_FACTOR = 256
"""An oversized line is discarded up to this many times `max_line_bytes` (1 GiB at the default);
one still going past that is treated as endless and the child is killed."""

SKIPPED_LINE_LOG_CHARS = 200
"""A skipped (non-MCP) stdout line is logged as the `repr` of at most this many of its bytes."""

_SKIP_LOG_BURST = 5
_SKIP_LOG_WINDOW_SECONDS = 10.0
"""At most `_SKIP_LOG_BURST` skipped lines are logged one by one per window; the rest are counted
and reported in one line when the next window opens."""

_READ_CHUNK_BYTES = 65536
_STDERR_DRAIN_SECONDS = 1.0
"""After the child is stopped, how long stderr may still be read before the reader is cancelled
(a grandchild that escaped the kill could hold the pipe open)."""
_EXIT_CODE_WAIT_SECONDS = 0.2
"""After stdout ends, how long to wait for the child's exit status to name it in the reason."""
_WRITER_FLUSH_SECONDS = 0.5


async def _forward_stderr(fd: int, on_line: Callable[[str], None], done: anyio.Event, scope: anyio.CancelScope) -> None:
    """Hand each stderr line of the child to `on_line` until EOF or `scope` is cancelled; partial
    lines are joined, long ones cut at STDERR_LINE_MAX_CHARS, bytes that are not UTF-8 replaced.

    `scope` is shielded: the pipe stays read while the child shuts down even when the caller is
    cancelled (closing it early would lose the child's last words and could kill it by EPIPE
    before the close-stdin grace period is over)."""
    os.set_blocking(fd, False)
    try:
        with scope:
            await _read_lines(fd, on_line)
    finally:
        os.close(fd)
        done.set()


async def _read_lines(fd: int, on_line: Callable[[str], None]) -> None:
    pending = b""
    while True:
        await anyio.wait_readable(fd)
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            continue
        if not chunk:
            break
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        if len(pending) > STDERR_LINE_MAX_CHARS:
            lines.append(pending)
            pending = b""
        for line in lines:
            _deliver(line, on_line)
    _deliver(pending, on_line)


def _unchanged(text: str) -> str:
    return text


def _log_line(server_id: str, text: str) -> None:
    _stderr_logger.info("[%s] %s", server_id, text)


def _deliver(line: bytes, on_line: Callable[[str], None]) -> None:
    text = line.decode("utf-8", "replace").rstrip("\r")[:STDERR_LINE_MAX_CHARS]
    if text:
        on_line(text)


class _SkipLog:
    """Rate-limited warnings about stdout lines that are not MCP, tagged with the server_id."""

    def __init__(self, server_id: str, redact: Callable[[str], str]) -> None:
        self.server_id = server_id
        self.redact = redact
        self.skipped = 0
        self._window_start = -_SKIP_LOG_WINDOW_SECONDS
        self._in_window = 0
        self._suppressed = 0

    def skip(self, line: bytes, why: str) -> None:
        self.skipped += 1
        now = time.monotonic()
        if now - self._window_start >= _SKIP_LOG_WINDOW_SECONDS:
            if self._suppressed:
                logger.warning("[%s] skipped %d more stdout lines that are not MCP", self.server_id, self._suppressed)
            self._window_start, self._in_window, self._suppressed = now, 0, 0
        if self._in_window >= _SKIP_LOG_BURST:
            self._suppressed += 1
            return
        self._in_window += 1
        logger.warning(
            "[%s] skipped a stdout line that is not MCP (%s, %d bytes): %s",
            self.server_id,
            why,
            len(line),
            self.redact(repr(line[:SKIPPED_LINE_LOG_CHARS])),
        )


def _parse(line: bytes, mux: RequestMux | None = None) -> types.JSONRPCMessage | str | None:
    """The JSON-RPC message on `line`, or why it is not one (one short phrase, never a traceback);
    None when `mux` took it (while it has requests pending it sees each line first, parsed once)."""
    taken = mux.take(line) if mux is not None and mux.busy else NOT_TAKEN
    if taken is not NOT_TAKEN:
        return taken
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid UTF-8"
    try:
        return types.jsonrpc_message_adapter.validate_json(line, by_name=False)
    except ValueError:
        return "not a JSON-RPC message"


@asynccontextmanager
async def stdio_transport(
    server_id: str,
    command: str,
    args: Sequence[str] = (),
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    on_stderr_line: Callable[[str], None] | None = None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    on_close_reason: Callable[[str], None] | None = None,
    redact: Callable[[str], str] | None = None,
    mux: RequestMux | None = None,
) -> AsyncIterator[TransportStreams]:
    """Start `command` as a stdio MCP server and yield its streams; stop the whole tree on exit.

    The read stream carries `SessionMessage`s only: stdout lines that are not JSON-RPC messages
    are skipped and logged (MCP spec, basic/transports "stdio"). An answer over `max_line_bytes`
    is replaced by a JSON-RPC error for its request (`adapters.oversize.answer_too_large`). The
    read stream ends when the child closes stdout (it exited) or writes an oversized line that
    answers nothing it can attribute (module docstring); the SDK then fails the requests in
    flight with `MCPError(CONNECTION_CLOSED)`.

    :param server_id: names the child in log lines.
    :param env: the child's own variables, on top of the safe minimum; the hub's environment is
        never inherited.
    :param on_stderr_line: called with each line the child writes to stderr (without the line
        end). Default: log it at INFO on `adapters.stdio.stderr` with the server_id.
    :param max_line_bytes: longest stdout line in bytes (default 4 MiB); a longer one is
        discarded as it streams (module docstring). At most this plus 96 KiB is ever buffered.
    :param on_close_reason: called once, before the read stream ends, with a one-line reason when
        the child ends the connection ("the server process exited with code 3", "... wrote a
        stdout line longer than 4194304 bytes that is not JSON-RPC; killed it").
    :param redact: applied to every skipped stdout line before it is logged (mask the child's
        secrets). Default: unchanged.
    :param mux: a `adapters.stdio_mux.RequestMux` to attach: it writes its requests beside the
        SDK's (one write lock), sees each stdout line first while it has requests pending, and
        fails them with CONNECTION_CLOSED when the transport ends.
    :raises OSError: the command cannot be started (not found, not executable, bad cwd).
    """
    read_fd, write_fd = os.pipe()
    try:
        errlog = os.fdopen(write_fd, "w", encoding="utf-8", errors="replace")
    except BaseException:
        os.close(read_fd)
        os.close(write_fd)
        raise
    stderr_done = anyio.Event()
    stderr_scope = anyio.CancelScope(shield=True)
    on_line = on_stderr_line or partial(_log_line, server_id)
    async with anyio.create_task_group() as stderr_tg:
        stderr_tg.start_soon(_forward_stderr, read_fd, on_line, stderr_done, stderr_scope)
        try:
            child_env = get_default_environment() | dict(env or {})
            process = await create_process(command=command, args=list(args), env=child_env, errlog=errlog, cwd=cwd)
            # The child holds its own copy of the write end; ours must not keep EOF away.
            errlog.close()
            skip_log = _SkipLog(server_id, redact or _unchanged)
            async with _session_streams(process, max_line_bytes, on_close_reason, skip_log, mux) as streams:
                yield streams
        finally:
            errlog.close()
            with anyio.move_on_after(_STDERR_DRAIN_SECONDS, shield=True):
                await stderr_done.wait()
            stderr_scope.cancel()


@asynccontextmanager
async def _session_streams(
    process: ServerProcess,
    max_line_bytes: int,
    on_close_reason: Callable[[str], None] | None,
    skip_log: _SkipLog,
    mux: RequestMux | None,
) -> AsyncIterator[TransportStreams]:
    """Bridge a running child's pipes to memory streams; shut the child down on exit."""
    read_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](0)
    writer_done = anyio.Event()
    server_id = skip_log.server_id
    write_lock = anyio.Lock(fast_acquire=True)

    async def send_line(data: bytes) -> None:  # the SDK's writer and the mux: lines never interleave
        assert process.stdin is not None
        async with write_lock:
            await process.stdin.send(data)

    if mux is not None:
        mux.attach(send_line)
    shutting_down = False

    def close_reason(reason: str) -> None:
        if not shutting_down and on_close_reason is not None:
            on_close_reason(reason)

    async def deliver(line: bytes) -> None:
        line = line.removesuffix(b"\r")
        if not line.strip():
            return
        message = _parse(line, mux)
        if isinstance(message, str):
            skip_log.skip(line, message)
        elif message is not None:
            await read_writer.send(SessionMessage(message))
            if mux is not None and mux.busy:
                # Let the SDK's dispatcher take it in (spawn its handler) before a mux answer read
                # after it wakes its caller: a log sent before a result is relayed before it.
                await anyio.lowlevel.checkpoint()

    async def refuse(verdict: LineVerdict) -> str | None:
        """Act on an oversized line's verdict: answer the request it answers with an error, or
        skip a server request/notification; the kill reason when neither applies."""
        if verdict.kind is LineKind.ANSWER:
            assert verdict.request_id is not None
            # INFO: the caller gets the error, and the hub logs the refusal as a warning.
            logger.info(
                "[%s] discarding a stdout line over max_line_bytes (%d bytes): the answer to request %r",
                server_id,
                max_line_bytes,
                verdict.request_id,
            )
            message = f"the server's answer was larger than max_line_bytes ({max_line_bytes} bytes) and was discarded"
            refusal = answer_too_large(verdict.request_id, max_line_bytes, message)
            if mux is None or not mux.refuse(verdict.request_id, refusal.error):
                await read_writer.send(SessionMessage(refusal))
            return None
        if verdict.kind is LineKind.SERVER_MESSAGE:
            # Nobody waits for it here; a server request among them times out at the server.
            logger.warning(
                "[%s] discarded a request or notification from the server over max_line_bytes (%d bytes)",
                server_id,
                max_line_bytes,
            )
            return None
        if verdict.kind is LineKind.NOT_JSON:
            return f"the server wrote a stdout line longer than {max_line_bytes} bytes that is not JSON-RPC; killed it"
        return (
            f"the server wrote a stdout line longer than {max_line_bytes} bytes whose JSON-RPC id could not be"
            " read; killed it"
        )

    async def stdout_reader() -> None:
        assert process.stdout is not None
        pending = bytearray()
        oversized: OversizedLine | None = None
        settled = False  # the oversized line's fate was decided from its head
        discard_limit = _DISCARD_FACTOR * max_line_bytes
        reason: str | None = None
        try:
            async with read_writer:
                while reason is None:
                    try:
                        chunk = await process.stdout.receive(_READ_CHUNK_BYTES)
                    except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
                        break
                    view = memoryview(chunk)
                    start = 0
                    while reason is None:
                        end = chunk.find(b"\n", start)
                        stop = len(chunk) if end < 0 else end
                        if oversized is None and len(pending) + stop - start <= max_line_bytes:
                            pending += view[start:stop]
                        elif oversized is None:
                            # Over the cap: from here on only the line's two ends are kept.
                            oversized, settled = OversizedLine(), False
                            oversized.feed(pending)
                            oversized.feed(view[start:stop])
                            pending = bytearray()
                            verdict = oversized.head_verdict()
                            if verdict is not None:
                                settled = True
                                reason = await refuse(verdict)
                        else:
                            oversized.feed(view[start:stop])
                        if oversized is not None and oversized.size > discard_limit and reason is None:
                            reason = (
                                f"the server wrote a stdout line longer than {discard_limit} bytes"
                                f" ({_DISCARD_FACTOR} x max_line_bytes) and still going; killed it"
                            )
                        if end < 0 or reason is not None:
                            break
                        start = end + 1
                        if oversized is None:
                            await deliver(bytes(pending))
                            pending.clear()
                        else:
                            if not settled:
                                reason = await refuse(oversized.verdict())
                            oversized = None
                if reason is not None:
                    # A line that is no answer we can attribute: stop it here, never holding it whole.
                    logger.error("[%s] %s (pid %d)", server_id, reason, process.pid)
                    with suppress(ProcessLookupError, PermissionError):
                        os.killpg(process.pid, signal.SIGKILL)
                    close_reason(reason)
                    return
                with anyio.move_on_after(_EXIT_CODE_WAIT_SECONDS):
                    await process.wait()
                code = process.returncode
                close_reason(
                    f"the server process exited with code {code}"
                    if code is not None
                    else "the server process closed its stdout"
                )
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass  # the session is gone (shutdown); the drain below keeps the child from blocking
        finally:
            if mux is not None:
                mux.close()  # after close_reason: its requests fail naming why
            await drain_stdout(process)

    async def stdin_writer() -> None:
        assert process.stdin is not None
        try:
            async with write_reader:
                async for session_message in write_reader:
                    data = session_message.message.model_dump_json(by_alias=True, exclude_unset=True)
                    await send_line(data.encode() + b"\n")
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            # The child may still be alive: end the read side so no request waits forever.
            await read_writer.aclose()
        finally:
            writer_done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(stdout_reader)
        tg.start_soon(stdin_writer)
        try:
            yield read_stream, write_stream
        finally:
            shutting_down = True
            if mux is not None:
                mux.close()
            with anyio.CancelScope(shield=True):
                read_stream.close()
                write_stream.close()
                with anyio.move_on_after(_WRITER_FLUSH_SECONDS):
                    await writer_done.wait()
                # close stdin, 2 s grace, SIGTERM the group, 2 s, SIGKILL (the SDK's escalation)
                await stop_process(process)
                for stream in (read_stream, write_stream, read_writer, write_reader):
                    await stream.aclose()
                await anyio.lowlevel.checkpoint()
            tg.cancel_scope.cancel()
