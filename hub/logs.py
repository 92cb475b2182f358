"""Structured logging: one JSON object per line (or the classic text line), carrying the request
id and the server_id a line belongs to.

The request id is assigned per incoming MCP request at the endpoint's boundary (`new_request_id`)
and kept in a context variable, so every log line written while that request is handled (endpoint
-> router -> server connection) carries it without being passed around. It is the hub's own
correlation id, unrelated to the client's JSON-RPC id, and is never put into a response.

The server_id is a context variable too: set while a request is routed to a server, and for
the whole life of each server connection's supervising task (`Fleet`), so the connection's own
lines (start, crash, stderr) carry it.

Python warnings become log lines too (`setup_logging`): stderr carries only formatted lines.
The SDK's `MCPDeprecationWarning`s, which flag the handshake-era features the hub serves on
purpose (logging, subscriptions, sampling, roots), are logged at DEBUG; any other warning at
WARNING, once per place in the code that raises it (Python's default warning filter).
"""

from __future__ import annotations

import contextvars
import datetime
import logging
import random
import sys
import warnings
from typing import Any, Final, Literal, TextIO

import pythonjsonlogger.json
from mcp.shared.exceptions import MCPDeprecationWarning

from hub.redaction import install_log_redaction

__all__ = [
    "JsonFormatter",
    "LogFormat",
    "TextFormatter",
    "counted",
    "current_request_id",
    "current_server_id",
    "new_request_id",
    "request_id_var",
    "server_id_var",
    "setup_logging",
]

LogFormat = Literal["text", "json"]

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("mcphub_request_id", default=None)
"""The hub's correlation id of the MCP request being handled, or None outside a request."""

server_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("mcphub_server_id", default=None)
"""The server_id the current work concerns, or None."""

_REQUEST_ID_BITS: Final = 64
"""Random bits in a request id (16 hex characters)."""

_NOISY_LOGGERS: Final = (
    "httpx2",
    "mcp.server.streamable_http_manager",
    "mcp.server.streamable_http",
    "mcp.client.streamable_http",
)
"""Loggers whose per-request lines are noise at INFO; held at WARNING or above."""
_WARNINGS_LOGGER: Final = "py.warnings"
"""The logger Python warnings are written to (the name `logging.captureWarnings` uses)."""

_BODY_LOGGERS: Final = (
    "mcp.client.sse",
    "mcp.client.stdio",
    "mcp.server.sse",
    "mcp.server.runner",
    "mcp.shared.jsonrpc_dispatcher",
    "httpcore2",
)
"""Loggers that write whole JSON-RPC messages, frames or HTTP headers at DEBUG ("Sending client
message: ...", "Received JSON: ...", response headers); held at INFO or above even under
`--debug`, so request and result bodies never reach the log (`hub.redaction` masks configured
secrets in whatever else is logged). `mcp.client.streamable_http` dumps too, and is held at
WARNING with the noisy ones."""


def new_request_id() -> str:
    """A fresh random request id (16 hex characters), set as the current one and returned.

    For correlating log lines, not a secret: `random` (reseeded in a forked child), not the
    operating system's generator, which costs a system call per request."""
    request_id = f"{random.getrandbits(_REQUEST_ID_BITS):016x}"
    request_id_var.set(request_id)
    return request_id


def counted(count: int, singular: str, plural: str | None = None) -> str:
    """`count` and its noun in the right number, for log lines and CLI output: `counted(1,
    "resource")` is "1 resource", `counted(0, "resource template")` is "0 resource templates"
    (`plural` defaults to `singular` + "s")."""
    return f"{count} {singular if count == 1 else plural or singular + 's'}"


def current_request_id() -> str | None:
    return request_id_var.get()


def current_server_id() -> str | None:
    return server_id_var.get()


def _context_of(record: logging.LogRecord) -> tuple[str | None, str | None]:
    """`(request_id, server_id)` of a record: explicit `extra=` values win over the context."""
    request_id = getattr(record, "request_id", None) or request_id_var.get()
    server_id = getattr(record, "server_id", None) or server_id_var.get()
    return request_id, server_id


class JsonFormatter(pythonjsonlogger.json.JsonFormatter):
    """One JSON object per line (python-json-logger): `time` (UTC, ISO 8601 with milliseconds),
    `level`, `logger`, `message`, and when known `server_id`, `request_id`, `exception` (the
    formatted traceback) and `stack`.

    Only these fields: the library's default of adding every `extra=` attribute of a record is
    turned off, because the hub masks secrets in a record's message and traceback
    (`hub.redaction`) and cannot vouch for what a library puts in its extras.
    """

    def __init__(self) -> None:
        super().__init__(json_ensure_ascii=False)

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        request_id, server_id = _context_of(record)
        log_data["time"] = datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC).isoformat(
            timespec="milliseconds"
        )
        log_data["level"] = record.levelname.lower()
        log_data["logger"] = record.name
        log_data["message"] = record.message or record.getMessage()  # a dict message as its text
        if server_id is not None:
            log_data["server_id"] = server_id
        if request_id is not None:
            log_data["request_id"] = request_id
        # The traceback as `hub.redaction` masked it (`exc_text`) before the library's own text.
        exception = record.exc_text or message_dict.get("exc_info")
        if exception:
            log_data["exception"] = exception
        if message_dict.get("stack_info"):
            log_data["stack"] = message_dict["stack_info"]


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message`, followed by `[server=... req=...]` when known."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        request_id, server_id = _context_of(record)
        tags = [f"server={server_id}"] if server_id else []
        if request_id:
            tags.append(f"req={request_id}")
        if not tags:
            return text
        first, newline, rest = text.partition("\n")
        return f"{first} [{' '.join(tags)}]{newline}{rest}"


def _log_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """`warnings.showwarning` replacement: one log line on `py.warnings` (DEBUG for the SDK's
    deprecation notices, else WARNING) instead of two raw lines on stderr."""
    if file is not None:  # an explicit destination is the caller's choice
        file.write(warnings.formatwarning(message, category, filename, lineno, line))
        return
    level = logging.DEBUG if issubclass(category, MCPDeprecationWarning) else logging.WARNING
    text = str(message).splitlines()[0] if str(message) else ""
    logging.getLogger(_WARNINGS_LOGGER).log(level, "%s: %s (%s:%d)", category.__name__, text, filename, lineno)


def setup_logging(level: str = "info", log_format: LogFormat = "text") -> None:
    """Configure the root logger once for the process: `level` (debug, info, warning, error),
    `log_format` text or json, to stderr (stdout may be the MCP stdio channel). Configured
    secrets are masked in every record (`hub.redaction`), the SDK's and httpcore2's
    body-dumping loggers stay at INFO or above even at `debug`, and Python warnings are logged
    through it too (see the module docstring)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    for noisy in _NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    for dumper in _BODY_LOGGERS:
        logging.getLogger(dumper).setLevel(max(logging.INFO, root.level))
    install_log_redaction()
    warnings.showwarning = _log_warning
