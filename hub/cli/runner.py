"""How one `mcphub` command runs and fails: the consoles, the `--debug` flag, and the one
translation of every expected failure into one line on stderr and an exit code.

Exit codes: 0 on success, 1 for a refusal or a failure (the hub's answer, a failed server), 2 for
a bad config or a malformed option, 130 for Ctrl-C. A traceback only under `--debug`.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeVar

import httpx2
import typer
from mcp import MCPError
from mcp_types import INVALID_PARAMS
from rich.console import Console

from hub.app import run_event_loop
from hub.errors import RATE_LIMITED, ConfigError, HubError
from hub.logs import LogFormat, setup_logging

__all__ = [
    "CliError",
    "err",
    "exit_with",
    "fail",
    "mcp_error_line",
    "out",
    "rate_limited",
    "report",
    "run_command",
    "setup_command_logging",
    "state",
]

T = TypeVar("T")

out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160)
"""Standard output, for results. A terminal's width is its own; a pipe gets $COLUMNS when set,
else 160 columns."""
err = Console(stderr=True, highlight=False, soft_wrap=True)
"""Standard error, for errors, warnings and (under `serve --stdio`) the console output."""
state = {"debug": False}
"""The root options every command reads: `debug` (`mcphub --debug`)."""


class CliError(Exception):
    """An error already phrased for the user; exit code attached (default 1)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int = 1) -> NoReturn:
    """Stop the command with `message` (one line on stderr) and exit code `code`.

    :raises CliError: always.
    """
    raise CliError(message, code)


def setup_command_logging(default_level: str, log_format: LogFormat = "text") -> None:
    """Set up logging at `default_level`, or `debug` under `mcphub --debug`."""
    setup_logging("debug" if state["debug"] else default_level, log_format)


def _leaf(exc: BaseException) -> BaseException:
    """The one exception inside (nested) exception groups, as task groups wrap it; else `exc`."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def run_command(fn: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine; turn every expected failure into one line on stderr and an exit code
    (`CliError`: its code; `ConfigError`: 2; `HubError`, `MCPError`, HTTP errors: 1; Ctrl-C: 130)."""
    try:
        return run_event_loop(fn)
    except BaseException as raised:  # sorted below; anything else is re-raised
        exc = _leaf(raised)
        if isinstance(exc, typer.Exit | KeyboardInterrupt | SystemExit) and exc is not raised:
            raise exc from None
        if isinstance(exc, CliError):
            exit_with(str(exc), exc.code, exc)
        if isinstance(exc, ConfigError):
            exit_with(f"config error: {exc}", 2, exc)
        if isinstance(exc, HubError):
            exit_with(str(exc), 1, exc)
        if isinstance(exc, MCPError):
            exit_with(mcp_error_line(exc), 1, exc)
        if isinstance(exc, httpx2.ConnectError):
            exit_with(f"cannot reach the hub ({type(exc).__name__}); is `mcphub serve` running?", 1, exc)
        if isinstance(exc, httpx2.HTTPError):
            exit_with(f"HTTP error talking to the hub: {type(exc).__name__}", 1, exc)
        if isinstance(exc, KeyboardInterrupt):
            raise typer.Exit(130) from None
        raise


def report(message: str, exc: BaseException) -> None:
    """One line on stderr (and, under `--debug`, the traceback in the log)."""
    if state["debug"]:
        logging.getLogger(__name__).error("failure", exc_info=exc)
    err.print(f"mcphub: {message}", markup=False)


def exit_with(message: str, code: int, exc: BaseException) -> NoReturn:
    """Report `message` for `exc` and exit with `code`.

    :raises typer.Exit: always.
    """
    report(message, exc)
    raise typer.Exit(code)


def rate_limited(retry_after_seconds: float | None) -> str:
    """The line for a refusal by a rate limit (HTTP 429 per principal, JSON-RPC -32029 per route)."""
    if retry_after_seconds is None:
        return "rate limited, retry later"
    return f"rate limited, retry after {max(1, math.ceil(retry_after_seconds))} s"


def mcp_error_line(exc: MCPError) -> str:
    """One line for a JSON-RPC error answered by the hub: -32029 as "rate limited, retry after
    N s", an unknown name (-32602) with the names the hub suggests, else code and message."""
    data = exc.data if isinstance(exc.data, dict) else {}
    if exc.code == RATE_LIMITED:
        seconds = data.get("retry_after_seconds")
        return f"{rate_limited(seconds if isinstance(seconds, int | float) else None)} (MCP error {exc.code})"
    line = f"MCP error {exc.code}: {exc.message}"
    suggestions = data.get("suggestions")
    if exc.code == INVALID_PARAMS and isinstance(suggestions, list) and suggestions and "did you mean" not in line:
        line += f"; did you mean {' or '.join(repr(str(name)) for name in suggestions)}?"
    return line
