"""Answers over a size cap: the error that stands in for them, and how a stdout line's JSON-RPC
id is learnt without holding the line.

An adapter that refuses a server's answer for its size (a stdio line over `max_line_bytes`, a
Streamable HTTP JSON body over its cap) never buffers it whole: it discards it as it streams and
answers the request itself with `answer_too_large(...)`, a JSON-RPC error (-32603) whose `data`
says why and under which cap. Only that request fails; the connection carries on. A caller tells
the refusal from a server's own error with `answer_too_large_limit`.

To answer the right request, the id of a discarded stdout line is read from a bounded head and a
bounded rolling tail of the line (`OversizedLine`): servers put the top-level `"id"` first (the
Python SDK: `{"jsonrpc":"2.0","id":5,"result":...}`) or last (the TypeScript SDK:
`{"result":...,"jsonrpc":"2.0","id":5}`). Both ends are scanned structurally (strings, escapes
and nesting tracked), so an `"id"` nested inside the result is never taken for the message's.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any, Final

from mcp import MCPError
from mcp_types import INTERNAL_ERROR, ErrorData, JSONRPCError, RequestId

__all__ = [
    "ANSWER_TOO_LARGE",
    "LineKind",
    "LineVerdict",
    "OversizedLine",
    "answer_too_large",
    "answer_too_large_limit",
    "find_request_id",
]

ANSWER_TOO_LARGE: Final = "answer_too_large"
"""`error.data.reason` of an adapter's stand-in error for an answer refused for its size."""

WINDOW_BYTES: Final = 16 * 1024
"""Bytes kept of an oversized line's head, and of its tail: enough for the envelope members an
SDK writes around the result, however long a string id is in practice."""

_MISSING: Final[Any] = object()


def answer_too_large(request_id: RequestId, limit_bytes: int, message: str) -> JSONRPCError:
    """The JSON-RPC error that answers request `request_id` in place of a server's answer that
    was over `limit_bytes` and was discarded: code -32603 (INTERNAL_ERROR, JSON-RPC 2.0 section
    5.1), `message` as given, `data` `{"reason": "answer_too_large", "limit_bytes": N}`."""
    error = ErrorData(
        code=INTERNAL_ERROR, message=message, data={"reason": ANSWER_TOO_LARGE, "limit_bytes": limit_bytes}
    )
    return JSONRPCError(jsonrpc="2.0", id=request_id, error=error)


def answer_too_large_limit(error: MCPError) -> int | None:
    """The cap (bytes) under which an adapter refused the answer `error` stands for (see
    `answer_too_large`), or None when `error` is anything else (e.g. the server's own error)."""
    data = error.data
    if error.code != INTERNAL_ERROR or not isinstance(data, dict) or data.get("reason") != ANSWER_TOO_LARGE:
        return None
    limit = data.get("limit_bytes")
    return limit if isinstance(limit, int) and not isinstance(limit, bool) else None


class LineKind(enum.Enum):
    """What an oversized stdout line is, as far as its head and tail tell."""

    ANSWER = "answer"
    """A response or error response (`result`/`error`) to the request `LineVerdict.request_id`."""
    SERVER_MESSAGE = "server_message"
    """A request or notification from the server (`method`)."""
    NOT_JSON = "not_json"
    """Not a JSON object (a log line, binary noise, an endless line of garbage)."""
    UNKNOWN = "unknown"
    """A JSON object whose kind or id cannot be learnt from its two ends."""


@dataclass(frozen=True, slots=True)
class LineVerdict:
    kind: LineKind
    request_id: RequestId | None = None
    """Set when `kind` is ANSWER."""


@dataclass
class _Members:
    """Top-level members read from one end of a JSON object: scalar values, and the keys seen."""

    keys: set[str] = field(default_factory=set)
    values: dict[str, Any] = field(default_factory=dict)
    malformed: bool = False

    def verdict(self) -> LineVerdict | None:
        """A verdict these members alone settle, or None."""
        if self.malformed:
            return LineVerdict(LineKind.NOT_JSON)
        if "method" in self.keys:
            return LineVerdict(LineKind.SERVER_MESSAGE)
        request_id = _usable_id(self.values.get("id", _MISSING))
        if request_id is not None and self.keys & {"result", "error"}:
            return LineVerdict(LineKind.ANSWER, request_id)
        return None


def _usable_id(value: Any) -> RequestId | None:
    """A JSON-RPC id we could have sent (MCP: a string or an integer), else None."""
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    return None


class OversizedLine:
    """The two ends of a stdout line too long to hold: its first and its last `WINDOW_BYTES`.

    `feed` it the line's bytes as they stream (the middle is dropped); `head_verdict()` may
    settle what the line is before it ends, `verdict()` settles it once the line has ended.
    """

    def __init__(self) -> None:
        self.size = 0
        """Bytes of the line seen so far."""
        self._head = bytearray()
        self._tail = bytearray()

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self.size += len(data)
        if len(self._head) < WINDOW_BYTES:
            self._head += data[: WINDOW_BYTES - len(self._head)]
        self._tail += data[-WINDOW_BYTES:]
        if len(self._tail) > WINDOW_BYTES:
            del self._tail[:-WINDOW_BYTES]

    def head_verdict(self) -> LineVerdict | None:
        """What the line is, when its head alone tells (id first, a `method`, not JSON); else None."""
        return _scan_head(bytes(self._head)).verdict()

    def verdict(self) -> LineVerdict:
        """What the (ended) line is, from its head and its tail together."""
        head = _scan_head(bytes(self._head))
        if head.malformed:
            return LineVerdict(LineKind.NOT_JSON)
        tail = _scan_tail(bytes(self._tail).rstrip())
        merged = _Members(head.keys | tail.keys, {**tail.values, **head.values}, tail.malformed)
        return merged.verdict() or LineVerdict(LineKind.UNKNOWN)


def find_request_id(body: bytes) -> RequestId | None:
    """The top-level `id` of the JSON-RPC message `body` (its head is scanned first, the whole
    body parsed only when that fails), or None."""
    found = _usable_id(_scan_head(body[:WINDOW_BYTES]).values.get("id", _MISSING))
    if found is not None:
        return found
    try:
        message = json.loads(body)
    except ValueError:
        return None
    return _usable_id(message.get("id", _MISSING)) if isinstance(message, dict) else None


# ---------------------------------------------------------------- scanning

_WS: Final = b" \t\r\n"
_SCALAR_BYTES: Final = frozenset(b"0123456789+-.eEtrufalsn")


class _Cut(Exception):
    """The window ended inside a token: nothing more can be read from this end."""


class _Bad(Exception):
    """Not JSON."""


def _scan_head(data: bytes) -> _Members:
    """Top-level members from the start of a JSON object, up to the first one the window cuts."""
    members = _Members()
    try:
        pos = _skip_ws(data, 0)
        if pos >= len(data):
            return members
        if data[pos] != ord("{"):
            raise _Bad
        pos += 1
        while True:
            pos = _skip_ws(data, pos)
            _need(data, pos)
            if data[pos] == ord("}"):
                return members
            key, pos = _string_forward(data, pos)
            pos = _expect(data, _skip_ws(data, pos), b":")
            pos = _skip_ws(data, pos + 1)
            members.keys.add(key)
            value, pos = _value_forward(data, pos)
            if value is not _MISSING:
                members.values[key] = value
            pos = _skip_ws(data, pos)
            _need(data, pos)
            if data[pos] == ord("}"):
                return members
            pos = _expect(data, pos, b",") + 1
    except _Cut:
        return members
    except _Bad:
        members.malformed = True
        return members


def _scan_tail(data: bytes) -> _Members:
    """Top-level members from the end of a JSON object backwards, up to the first one the
    window cuts (`data` ends at the object's closing brace)."""
    members = _Members()
    try:
        pos = len(data) - 1
        if pos < 0:
            return members
        if data[pos] != ord("}"):
            raise _Bad
        pos -= 1
        while True:
            pos = _skip_ws_back(data, pos)
            _need(data, pos)
            value, pos = _value_back(data, pos)
            pos = _expect(data, _skip_ws_back(data, pos), b":")
            key, pos = _string_back(data, _skip_ws_back(data, pos - 1))
            members.keys.add(key)
            if value is not _MISSING:
                members.values[key] = value
            pos = _skip_ws_back(data, pos)
            _need(data, pos)
            if data[pos] == ord("{"):
                return members
            pos = _expect(data, pos, b",") - 1
    except _Cut:
        return members
    except _Bad:
        members.malformed = True
        return members


def _need(data: bytes, pos: int) -> None:
    if not 0 <= pos < len(data):
        raise _Cut


def _expect(data: bytes, pos: int, char: bytes) -> int:
    _need(data, pos)
    if data[pos] != char[0]:
        raise _Bad
    return pos


def _skip_ws(data: bytes, pos: int) -> int:
    while pos < len(data) and data[pos] in _WS:
        pos += 1
    return pos


def _skip_ws_back(data: bytes, pos: int) -> int:
    while pos >= 0 and data[pos] in _WS:
        pos -= 1
    return pos


def _decode(token: bytes) -> Any:
    try:
        return json.loads(token)
    except ValueError:
        raise _Bad from None


def _backslashes_before(data: bytes, pos: int) -> int:
    """How many backslashes directly precede `pos` (an odd count escapes the byte at `pos`)."""
    run = 0
    while pos - run - 1 >= 0 and data[pos - run - 1] == 0x5C:
        run += 1
    return run


def _string_forward(data: bytes, pos: int) -> tuple[Any, int]:
    """The string starting at `pos` (a quote) and the position after it."""
    _expect(data, pos, b'"')
    end = pos + 1
    while True:
        end = data.find(b'"', end)
        if end < 0:
            raise _Cut
        if _backslashes_before(data, end) % 2 == 0:
            return _decode(data[pos : end + 1]), end + 1
        end += 1


def _string_back(data: bytes, pos: int) -> tuple[Any, int]:
    """The string ending at `pos` (a quote) and the position before it."""
    _expect(data, pos, b'"')
    start = pos - 1
    while True:
        start = data.rfind(b'"', 0, start + 1)
        if start < 0:
            raise _Cut
        run = _backslashes_before(data, start)
        if start - run <= 0:
            raise _Cut  # what precedes the window could escape this quote
        if run % 2 == 0:
            return _decode(data[start : pos + 1]), start - 1
        start -= 1


def _value_forward(data: bytes, pos: int) -> tuple[Any, int]:
    """A member's value at `pos`: a scalar (decoded) or a skipped composite (`_MISSING`)."""
    _need(data, pos)
    first = data[pos]
    if first == ord('"'):
        return _string_forward(data, pos)
    if first in b"{[":
        depth = 0
        while True:
            _need(data, pos)
            char = data[pos]
            if char == ord('"'):
                _, pos = _string_forward(data, pos)
                continue
            if char in b"{[":
                depth += 1
            elif char in b"}]":
                depth -= 1
                if depth == 0:
                    return _MISSING, pos + 1
            pos += 1
    end = pos
    while end < len(data) and data[end] in _SCALAR_BYTES:
        end += 1
    if end >= len(data):
        raise _Cut  # the number may go on after the window
    return _decode(data[pos:end]), end


def _value_back(data: bytes, pos: int) -> tuple[Any, int]:
    """A member's value ending at `pos`, and the position before it (see `_value_forward`)."""
    last = data[pos]
    if last == ord('"'):
        return _string_back(data, pos)
    if last in b"}]":
        depth = 0
        while True:
            _need(data, pos)
            char = data[pos]
            if char == ord('"'):
                _, pos = _string_back(data, pos)
                continue
            if char in b"}]":
                depth += 1
            elif char in b"{[":
                depth -= 1
                if depth == 0:
                    return _MISSING, pos - 1
            pos -= 1
    start = pos
    while start >= 0 and data[start] in _SCALAR_BYTES:
        start -= 1
    if start < 0:
        raise _Cut
    return _decode(data[start + 1 : pos + 1]), start
