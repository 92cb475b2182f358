"""Local servers as stdio subprocesses.

The child runs in its own session and process group (so the whole tree is killed on shutdown:
close stdin, wait 2 s, SIGTERM the group, wait 2 s, SIGKILL; MCP spec, lifecycle "Shutdown"), gets
only its configured environment plus a safe minimum (HOME, LOGNAME, PATH, SHELL, TERM, USER),
and has its stderr forwarded line by line to the log with its server_id. Bytes that are not
UTF-8 on stdout are replaced rather than tearing the connection down.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial

import anyio
from mcp.client._transport import TransportStreams
from mcp.client.stdio import StdioServerParameters, stdio_client

__all__ = ["STDERR_LINE_MAX_CHARS", "stdio_transport"]

logger = logging.getLogger(__name__)
_stderr_logger = logger.getChild("stderr")

STDERR_LINE_MAX_CHARS = 4096
"""A stderr line is cut to this many characters in the log (a child can write anything there)."""

_STDERR_DRAIN_SECONDS = 1.0
"""After the child is stopped, how long stderr may still be read before the reader is cancelled
(a grandchild that escaped the kill could hold the pipe open)."""


async def _forward_stderr(fd: int, on_line: Callable[[str], None], done: anyio.Event) -> None:
    """Hand each stderr line of the child to `on_line` until EOF; partial lines are joined, long
    ones cut at STDERR_LINE_MAX_CHARS, bytes that are not UTF-8 replaced."""
    os.set_blocking(fd, False)
    pending = b""
    try:
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
    finally:
        os.close(fd)
        done.set()


def _log_line(server_id: str, text: str) -> None:
    _stderr_logger.info("[%s] %s", server_id, text)


def _deliver(line: bytes, on_line: Callable[[str], None]) -> None:
    text = line.decode("utf-8", "replace").rstrip("\r")[:STDERR_LINE_MAX_CHARS]
    if text:
        on_line(text)


@asynccontextmanager
async def stdio_transport(
    server_id: str,
    command: str,
    args: Sequence[str] = (),
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    on_stderr_line: Callable[[str], None] | None = None,
) -> AsyncIterator[TransportStreams]:
    """Start `command` as a stdio MCP server and yield its streams; stop the whole tree on exit.

    :param server_id: names the child in log lines.
    :param env: the child's own variables, on top of the safe minimum; the hub's environment is
        never inherited.
    :param on_stderr_line: called with each line the child writes to stderr (without the line
        end). Default: log it at INFO on `adapters.stdio.stderr` with the server_id.
    :raises OSError: the command cannot be started (not found, not executable, bad cwd).
    """
    read_fd, write_fd = os.pipe()
    try:
        errlog = os.fdopen(write_fd, "w", encoding="utf-8", errors="replace")
    except BaseException:
        os.close(read_fd)
        os.close(write_fd)
        raise
    params = StdioServerParameters(
        command=command, args=list(args), env=dict(env or {}), cwd=cwd, encoding_error_handler="replace"
    )
    stderr_done = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_forward_stderr, read_fd, on_stderr_line or partial(_log_line, server_id), stderr_done)
        try:
            async with stdio_client(params, errlog=errlog) as streams:
                # The child holds its own copy of the write end; ours must not keep EOF away.
                errlog.close()
                yield streams
        finally:
            errlog.close()
            with anyio.move_on_after(_STDERR_DRAIN_SECONDS, shield=True):
                await stderr_done.wait()
            tg.cancel_scope.cancel()
