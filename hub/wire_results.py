"""Routed results carried as the server sent them (`WireResult`), and put into the answer
without a pydantic round trip.

A plain `tools/call` result (text content, an optional `structuredContent` object, `isError`,
`_meta`) or `prompts/get` result (text messages, a description; `PLAIN` decides what is plain)
used to be validated into a model by the SDK client, copied by the hub's rewrites, dumped by the SDK server and
validated again against the caller's protocol version (`mcp_types.methods.serialize_server_result`,
the "sieve"). Here it stays the server's JSON object from the server connection to the HTTP
response:

- the router and the handlers carry a `WireResult` (its `is_error`, its size against
  `max_result_bytes`: `oversized`; the hop-level `_meta` stamps dropped: `restamped`);
- the face's handler returns a small *envelope stub* in its place (`held`): the result's
  `_meta`, `isError` (`description`) and `resultType` with an empty content list and an empty
  `structuredContent` (an empty message list), which the SDK shapes for the caller's version as it shapes any result
  (cache hints, the sieve, `resultType`, the modern era's `serverInfo` stamp);
- `middleware`, the innermost of the face's chain, then puts the content blocks and the
  `structuredContent` (the messages) back into the shaped envelope, in the key order the sieve
  writes them.

So the envelope is the SDK's, and the bulk (content, structuredContent) is the server's bytes,
as `hub.prepared_lists` does for list items. What comes out is the same JSON, key for key and in
the same order, as the model path gives for the same result in every protocol version
(`tests/test_wire_results.py` holds the two against each other).
"""

from __future__ import annotations

from functools import partial
from typing import Any, Final

import mcp_types as types
import orjson
from mcp.server import ServerRequestContext
from mcp.server.context import CallNext, HandlerResult
from mcp_types import PROTOCOL_VERSION_META_KEY, SERVER_INFO_META_KEY

from hub.handler_slots import HandlerSlot

__all__ = ["PLAIN", "WireResult", "held", "middleware", "plain_call_result", "plain_prompt_result"]

_HOP_META_KEYS: Final = (SERVER_INFO_META_KEY, PROTOCOL_VERSION_META_KEY)
"""`_meta` stamps that describe one hop (as `hub.endpoint.era_routing.restamped` drops them)."""

_CALL_KEYS: Final = frozenset({"content", "structuredContent", "isError", "_meta", "resultType"})

_ENVELOPE_BYTES: Final = 256
"""Allowance for a result's fields outside its content (as `hub.result_cap.oversized`)."""


_PROMPT_KEYS: Final = frozenset({"description", "messages", "_meta", "resultType"})
_ROLES: Final = frozenset({"user", "assistant"})


def _text_block(block: Any) -> bool:
    return type(block) is dict and len(block) == 2 and block.get("type") == "text" and type(block.get("text")) is str


def _envelope_plain(raw: dict[str, Any]) -> bool:
    return ("_meta" not in raw or type(raw["_meta"]) is dict) and raw.get("resultType", "complete") == "complete"


def plain_prompt_result(raw: Any) -> bool:
    """Whether a server's `prompts/get` result is plain: a JSON object of only `messages` (each
    `{"role": "user" | "assistant", "content": <a text block>}`), `description` (a string),
    `_meta` (an object) and `resultType` `"complete"`."""
    if type(raw) is not dict or not raw.keys() <= _PROMPT_KEYS:
        return False
    messages = raw.get("messages")
    if type(messages) is not list:
        return False
    for message in messages:
        if type(message) is not dict or len(message) != 2 or message.get("role") not in _ROLES:
            return False
        if not _text_block(message.get("content")):
            return False
    return ("description" not in raw or type(raw["description"]) is str) and _envelope_plain(raw)


def plain_call_result(raw: Any) -> bool:
    """Whether a server's `tools/call` result is plain: a JSON object of only `content` (text
    blocks `{"type": "text", "text": str}`), `structuredContent` (an object), `isError` (a
    boolean), `_meta` (an object) and `resultType` `"complete"`. Anything else (images, resource
    links, annotations, an `InputRequiredResult`, a task, fields of another revision) is not,
    and takes the SDK's full path."""
    if type(raw) is not dict or not raw.keys() <= _CALL_KEYS:
        return False
    content = raw.get("content")
    if type(content) is not list or not all(_text_block(block) for block in content):
        return False
    if "structuredContent" in raw and type(raw["structuredContent"]) is not dict:
        return False
    return type(raw.get("isError", False)) is bool and _envelope_plain(raw)


PLAIN: Final = {"tools/call": plain_call_result, "prompts/get": plain_prompt_result}
"""Each method whose plain results travel as sent, and its test of plainness."""


class WireResult:
    """A plain `tools/call` or `prompts/get` result (`PLAIN`) as the server sent it: `data`, a
    JSON object with wire keys, the answer to `method`. Never mutated: `restamped` returns a
    new one."""

    __slots__ = ("data", "method")

    def __init__(self, data: dict[str, Any], method: str = "tools/call") -> None:
        self.data = data
        self.method = method

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
        """This result without the server's hop-level `_meta` stamps (`hub.endpoint.era_routing`)."""
        meta = self.meta
        if not meta or not any(key in meta for key in _HOP_META_KEYS):
            return self
        kept = {key: value for key, value in meta.items() if key not in _HOP_META_KEYS}
        data = {key: value for key, value in self.data.items() if key != "_meta"}
        if kept:
            data["_meta"] = kept
        return WireResult(data, self.method)

    def oversized(self, limit: int) -> bool:
        """Whether the result's JSON is over `limit` bytes, measured block by block (message by
        message) as `hub.result_cap.oversized` measures a model (stopping once past the limit)."""
        total = _ENVELOPE_BYTES
        if self.method == "prompts/get":
            items: list[Any] = list(self.data["messages"])
        else:
            items = list(self.data["content"])
            if "structuredContent" in self.data:
                items.append(self.data["structuredContent"])
        for item in items:
            total += len(orjson.dumps(item))
            if total > limit:
                return True
        return False

    def model(self) -> types.CallToolResult | types.GetPromptResult:
        """The result as the SDK's model (for a caller outside the face's middleware chain)."""
        if self.method == "prompts/get":
            return types.GetPromptResult.model_validate(self.data, by_name=False)
        return types.CallToolResult.model_validate(self.data, by_name=False)

    def stub(self) -> dict[str, Any]:
        """The envelope stub the handler returns for the SDK to shape (module docstring): every
        key the model path would dump except the bulk, which `middleware` puts back."""
        data = self.data
        stub: dict[str, Any] = {}
        if "_meta" in data:
            stub["_meta"] = data["_meta"]
        if self.method == "prompts/get":
            if "description" in data:
                stub["description"] = data["description"]
            stub["messages"] = []
            stub["resultType"] = "complete"
            return stub
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
        if self.method == "prompts/get":
            messages = [
                {"content": {"text": message["content"]["text"], "type": "text"}, "role": message["role"]}
                for message in data["messages"]
            ]
            return {**shaped, "messages": messages}
        filled = {**shaped, "content": [{"text": block["text"], "type": "text"} for block in data["content"]]}
        if "structuredContent" in shaped:
            filled["structuredContent"] = data["structuredContent"]
        return filled


_SLOT: HandlerSlot[WireResult] = HandlerSlot("hub_wire_result")
"""Where the `tools/call` or `prompts/get` handler leaves its `WireResult` for `middleware`."""


def held(result: Any) -> Any:
    """What a `tools/call` or `prompts/get` handler returns for `result`: a `WireResult` is left for `middleware`
    (the SDK gets its envelope stub), or, when no middleware waits for it, turned into its
    model; any other result is returned as it is."""
    if not isinstance(result, WireResult):
        return result
    if not _SLOT.leave(result):
        return result.model()
    return result.stub()


async def middleware(ctx: ServerRequestContext[Any], call_next: CallNext) -> HandlerResult:
    """Server middleware (innermost): a `tools/call` or `prompts/get` answer whose handler left
    a `WireResult` (`held`) gets its content and `structuredContent` (its messages) put into the
    envelope the SDK shaped."""
    if ctx.method not in PLAIN:
        return await call_next(ctx)
    result, wire = await _SLOT.around(partial(call_next, ctx))
    if wire is None or not isinstance(result, dict):
        return result
    return wire.fill(result)
