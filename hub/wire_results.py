"""Routed results carried as the server sent them (`WireResult`), and put into the answer
without a pydantic round trip.

A plain `tools/call` result (text content, an optional `structuredContent` object, `isError`,
`_meta`; `hub.servers.raw_calls` decides what is plain) used to be validated into a
`CallToolResult` by the SDK client, copied by the hub's rewrites, dumped by the SDK server and
validated again against the caller's protocol version (`mcp_types.methods.serialize_server_result`,
the "sieve"). Here it stays the server's JSON object from the server connection to the HTTP
response:

- the router and the handlers carry a `WireResult` (its `is_error`, its size against
  `max_result_bytes`: `oversized`; the hop-level `_meta` stamps dropped: `restamped`);
- the face's `tools/call` handler returns a small *envelope stub* in its place (`held`): the
  result's `_meta`, `isError` and `resultType` with an empty content list and an empty
  `structuredContent`, which the SDK shapes for the caller's version as it shapes any result
  (cache hints, the sieve, `resultType`, the modern era's `serverInfo` stamp);
- `middleware`, the innermost of the face's chain, then puts the content blocks and the
  `structuredContent` back into the shaped envelope, in the key order the sieve writes them.

So the envelope is the SDK's, and the bulk (content, structuredContent) is the server's bytes,
as `hub.prepared_lists` does for list items. What comes out is the same JSON, key for key and in
the same order, as the model path gives for the same result in every protocol version
(`tests/test_wire_results.py` holds the two against each other).
"""

from __future__ import annotations

import contextvars
from typing import Any, Final

import mcp_types as types
import orjson
from mcp.server import ServerRequestContext
from mcp.server.context import CallNext, HandlerResult
from mcp_types import PROTOCOL_VERSION_META_KEY, SERVER_INFO_META_KEY

__all__ = ["WireResult", "held", "middleware", "plain_call_result"]

_HOP_META_KEYS: Final = (SERVER_INFO_META_KEY, PROTOCOL_VERSION_META_KEY)
"""`_meta` stamps that describe one hop (as `hub.era_routing.restamped` drops them)."""

_CALL_KEYS: Final = frozenset({"content", "structuredContent", "isError", "_meta", "resultType"})

_ENVELOPE_BYTES: Final = 256
"""Allowance for a result's fields outside its content (as `hub.resilience.oversized`)."""


def plain_call_result(raw: Any) -> bool:
    """Whether a server's `tools/call` result is plain: a JSON object of only `content` (text
    blocks `{"type": "text", "text": str}`), `structuredContent` (an object), `isError` (a
    boolean), `_meta` (an object) and `resultType` `"complete"`. Anything else (images, resource
    links, annotations, an `InputRequiredResult`, a task, fields of another revision) is not,
    and takes the SDK's full path."""
    if type(raw) is not dict or not raw.keys() <= _CALL_KEYS:
        return False
    content = raw.get("content")
    if type(content) is not list:
        return False
    for block in content:
        if (
            type(block) is not dict
            or len(block) != 2
            or block.get("type") != "text"
            or type(block.get("text")) is not str
        ):
            return False
    if "structuredContent" in raw and type(raw["structuredContent"]) is not dict:
        return False
    if "_meta" in raw and type(raw["_meta"]) is not dict:
        return False
    return type(raw.get("isError", False)) is bool and raw.get("resultType", "complete") == "complete"


class WireResult:
    """A plain `tools/call` result (`plain_call_result`) as the server sent it: `data`, a JSON
    object with wire keys. Never mutated: `restamped` returns a new one."""

    __slots__ = ("data",)

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    @property
    def is_error(self) -> bool:
        """The result's `isError` (absent: False)."""
        return self.data.get("isError") is True

    @property
    def meta(self) -> dict[str, Any] | None:
        """The result's `_meta`, or None."""
        meta: dict[str, Any] | None = self.data.get("_meta")
        return meta

    def restamped(self) -> WireResult:
        """This result without the server's hop-level `_meta` stamps (`hub.era_routing`)."""
        meta = self.meta
        if not meta or not any(key in meta for key in _HOP_META_KEYS):
            return self
        kept = {key: value for key, value in meta.items() if key not in _HOP_META_KEYS}
        data = {key: value for key, value in self.data.items() if key != "_meta"}
        if kept:
            data["_meta"] = kept
        return WireResult(data)

    def oversized(self, limit: int) -> bool:
        """Whether the result's JSON is over `limit` bytes, measured block by block as
        `hub.resilience.oversized` measures a model (stopping once past the limit)."""
        total = _ENVELOPE_BYTES
        items: list[Any] = list(self.data["content"])
        if "structuredContent" in self.data:
            items.append(self.data["structuredContent"])
        for item in items:
            total += len(orjson.dumps(item))
            if total > limit:
                return True
        return False

    def model(self) -> types.CallToolResult:
        """The result as the SDK's model (for a caller outside the face's middleware chain)."""
        return types.CallToolResult.model_validate(self.data, by_name=False)

    def stub(self) -> dict[str, Any]:
        """The envelope stub the handler returns for the SDK to shape (module docstring): every
        key the model path would dump except the bulk, which `middleware` puts back."""
        data = self.data
        stub: dict[str, Any] = {}
        if "_meta" in data:
            stub["_meta"] = data["_meta"]
        stub["content"] = []
        if "structuredContent" in data:
            stub["structuredContent"] = {}
        stub["isError"] = data.get("isError", False)
        stub["resultType"] = "complete"
        return stub

    def fill(self, shaped: dict[str, Any]) -> dict[str, Any]:
        """`shaped` (the SDK's shaping of `stub()`) with this result's content blocks (in the
        sieve's key order, `text` then `type`) and `structuredContent` put in."""
        data = self.data
        filled = {**shaped, "content": [{"text": block["text"], "type": "text"} for block in data["content"]]}
        if "structuredContent" in shaped:
            filled["structuredContent"] = data["structuredContent"]
        return filled


class _Slot:
    """Where the `tools/call` handler leaves its `WireResult` for `middleware`."""

    __slots__ = ("result",)

    def __init__(self) -> None:
        self.result: WireResult | None = None


_SLOT: contextvars.ContextVar[_Slot | None] = contextvars.ContextVar("hub_wire_result", default=None)


def held(result: Any) -> Any:
    """What a `tools/call` handler returns for `result`: a `WireResult` is left for `middleware`
    (the SDK gets its envelope stub), or, when no middleware waits for it, turned into its
    model; any other result is returned as it is."""
    if not isinstance(result, WireResult):
        return result
    slot = _SLOT.get()
    if slot is None:
        return result.model()
    slot.result = result
    return result.stub()


async def middleware(ctx: ServerRequestContext[Any], call_next: CallNext) -> HandlerResult:
    """Server middleware (innermost): a `tools/call` answer whose handler left a `WireResult`
    (`held`) gets its content and `structuredContent` put into the envelope the SDK shaped."""
    if ctx.method != "tools/call":
        return await call_next(ctx)
    slot = _Slot()
    token = _SLOT.set(slot)
    try:
        result = await call_next(ctx)
    finally:
        _SLOT.reset(token)
    wire = slot.result
    if wire is None or not isinstance(result, dict):
        return result
    return wire.fill(result)
