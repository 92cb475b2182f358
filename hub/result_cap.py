"""The result size cap (`max_result_bytes`): whether a server's result is over it, measured
without serializing a whole large result, and whether a transport refused an answer in transit for
its size. The router turns `ResultTooLarge` into an `isError` result (SECURITY.md: a hostile
server's oversized answer fails that request alone).
"""

from __future__ import annotations

from typing import Any

import mcp_types as types
import pydantic_core
from mcp import MCPError
from mcp_types import CONNECTION_CLOSED

from adapters.oversize import answer_too_large_limit
from hub.errors import ServerError
from hub.wire_results import WireResult

__all__ = ["ResultTooLarge", "is_transport_size_abort", "oversized"]


class ResultTooLarge(ServerError):
    """A server's result exceeded its `max_result_bytes`; the router turns it into an `isError`
    result "result from <server> exceeded N bytes"."""

    def __init__(self, server_id: str, limit: int) -> None:
        super().__init__(server_id, f"result from {server_id} exceeded {limit} bytes")
        self.limit = limit


_ENVELOPE_BYTES = 256
"""Allowance for a result's fields outside its content lists (`_meta`, `isError`, brackets)."""


def _json_size(value: Any) -> int:
    if hasattr(value, "__pydantic_serializer__"):
        return len(value.__pydantic_serializer__.to_json(value, by_alias=True, exclude_none=True))
    return len(pydantic_core.to_json(value))


def oversized(result: types.Result | WireResult, limit: int) -> bool:
    """Whether `result` serializes to more than `limit` bytes of JSON. Measured item by item
    (content blocks, resource contents, prompt messages, structuredContent), stopping as soon as
    the sum passes `limit`, so no serialized copy of a whole large result is ever built."""
    if isinstance(result, WireResult):
        return result.oversized(limit)
    total = _ENVELOPE_BYTES
    items: list[Any] = []
    if isinstance(result, types.CallToolResult):
        items = [*result.content]
        if result.structured_content is not None:
            items.append(result.structured_content)
    elif isinstance(result, types.ReadResourceResult):
        items = [*result.contents]
    elif isinstance(result, types.GetPromptResult):
        items = [*result.messages]
    else:
        items = [result]
    for item in items:
        total += _json_size(item)
        if total > limit:
            return True
    return False


def is_transport_size_abort(exc: MCPError) -> bool:
    """Whether `exc` stands for an answer refused in transit for its size: an adapter's
    stand-in error for an oversized stdout line or Streamable HTTP JSON body
    (`adapters.oversize.answer_too_large`), or the SDK aborting an SSE event over its size cap
    (`httpx2.SSEError` "... exceeded the N byte limit", resolved as CONNECTION_CLOSED)."""
    if answer_too_large_limit(exc) is not None:
        return True
    return exc.code == CONNECTION_CLOSED and exc.message.startswith("SSE stream failed") and "byte limit" in exc.message
