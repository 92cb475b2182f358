"""Routed results carried as the server sent them (`WireResult`), and put into the answer
without a pydantic round trip.

A plain `tools/call` result (text content, an optional `structuredContent` object, `isError`,
`_meta`), `prompts/get` result (text messages, a description), `resources/read` result (text or
blob contents) or `completion/complete` result (`PLAIN` decides what is plain) used to be
validated into a model by the SDK client, copied by the hub's rewrites, dumped by the SDK server
and validated again against the caller's protocol version
(`mcp_types.methods.serialize_server_result`, the "sieve"). Here it stays the server's JSON
object from the server connection to the HTTP response. First `in_era` does to it what the SDK
client does to every result before validating it (a later revision's keys dropped on an older
connection; a key the connection's revision requires must be there), so the two paths start
from the same object.

`resources/read` and `completion/complete` results are small envelopes around strings that the
sieve passes through by reference, so the handler returns the (rewritten) JSON object itself
and the SDK shapes it as it shapes a model's dump (cache hints, the sieve, the modern era's
`serverInfo` stamp): the hub's rewrites are done on the object (`resources/read`: each
`contents[].uri` exposed, `hub.endpoint.resource_links`; `cacheScope` made `private`,
`privately_cached`; the hop stamps dropped, `restamped`). For `tools/call` and `prompts/get`,
whose content blocks the sieve would validate one by one:

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

from functools import cache, partial
from types import UnionType
from typing import Any, Final, get_args

import mcp_types as types
import orjson
from mcp.server import ServerRequestContext
from mcp.server.context import CallNext, HandlerResult
from mcp_types import PROTOCOL_VERSION_META_KEY, SERVER_INFO_META_KEY
from mcp_types.methods import SERVER_RESULTS
from mcp_types.version import KNOWN_PROTOCOL_VERSIONS
from pydantic import BaseModel

from hub.handler_slots import HandlerSlot

__all__ = [
    "PLAIN",
    "WireResult",
    "held",
    "in_era",
    "middleware",
    "plain_call_result",
    "plain_complete_result",
    "plain_prompt_result",
    "plain_read_result",
]

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


_READ_KEYS: Final = frozenset({"contents", "_meta", "resultType", "ttlMs", "cacheScope"})
_TEXT_CONTENTS_KEYS: Final = frozenset({"uri", "mimeType", "_meta", "text"})
_BLOB_CONTENTS_KEYS: Final = frozenset({"uri", "mimeType", "_meta", "blob"})
_CACHE_SCOPES: Final = ("public", "private")


def _resource_contents(item: Any) -> bool:
    if type(item) is not dict or type(item.get("uri")) is not str:
        return False
    if "text" in item:
        keys, body = _TEXT_CONTENTS_KEYS, item["text"]
    elif "blob" in item:
        keys, body = _BLOB_CONTENTS_KEYS, item["blob"]
    else:
        return False
    return (
        type(body) is str
        and item.keys() <= keys
        and ("mimeType" not in item or type(item["mimeType"]) is str)
        and ("_meta" not in item or type(item["_meta"]) is dict)
    )


def plain_read_result(raw: Any) -> bool:
    """Whether a server's `resources/read` result is plain: a JSON object of only `contents`
    (each `{"uri": str, "text" | "blob": str}` with an optional `mimeType` string and `_meta`
    object, nothing else), `_meta` (an object), `ttlMs` (an integer >= 0), `cacheScope`
    (`"public"` or `"private"`) and `resultType` `"complete"`. Anything else (an
    `InputRequiredResult`, a null, a field of another revision) takes the SDK's full path."""
    if type(raw) is not dict or not raw.keys() <= _READ_KEYS:
        return False
    contents = raw.get("contents")
    if type(contents) is not list or not all(_resource_contents(item) for item in contents):
        return False
    if "ttlMs" in raw and (type(raw["ttlMs"]) is not int or raw["ttlMs"] < 0):
        return False
    if "cacheScope" in raw and raw["cacheScope"] not in _CACHE_SCOPES:
        return False
    return _envelope_plain(raw)


_COMPLETE_KEYS: Final = frozenset({"completion", "_meta", "resultType"})
_COMPLETION_KEYS: Final = frozenset({"values", "total", "hasMore"})
_MAX_COMPLETION_VALUES: Final = 100
"""`Completion.values` "must not exceed 100 items" (the 2026-07-28 schema enforces it)."""


def plain_complete_result(raw: Any) -> bool:
    """Whether a server's `completion/complete` result is plain: a JSON object of only
    `completion` (`values`: at most 100 strings, optional `total` integer and `hasMore`
    boolean, nothing else), `_meta` (an object) and `resultType` `"complete"`."""
    if type(raw) is not dict or not raw.keys() <= _COMPLETE_KEYS:
        return False
    completion = raw.get("completion")
    if type(completion) is not dict or not completion.keys() <= _COMPLETION_KEYS:
        return False
    values = completion.get("values")
    if type(values) is not list or len(values) > _MAX_COMPLETION_VALUES or not all(type(v) is str for v in values):
        return False
    if "total" in completion and type(completion["total"]) is not int:
        return False
    if "hasMore" in completion and type(completion["hasMore"]) is not bool:
        return False
    return _envelope_plain(raw)


PLAIN: Final = {
    "tools/call": plain_call_result,
    "prompts/get": plain_prompt_result,
    "resources/read": plain_read_result,
    "completion/complete": plain_complete_result,
}
"""Each method whose plain results travel as sent, and its test of plainness."""

_FILLED: Final = frozenset({"tools/call", "prompts/get"})
"""The methods whose `WireResult` the handler holds for `middleware` (an envelope stub for the SDK
to shape, the bulk put back after); the others' handlers return the JSON object itself."""

_MODELS: Final[dict[str, type[BaseModel]]] = {
    "tools/call": types.CallToolResult,
    "prompts/get": types.GetPromptResult,
    "resources/read": types.ReadResourceResult,
    "completion/complete": types.CompleteResult,
}

_SDK_CLIENT_DEFAULT_VERSION: Final = "2025-11-25"
"""The revision the SDK client validates results against before any is negotiated."""


def _wire_keys(row: Any) -> tuple[frozenset[str], frozenset[str]]:
    """`(every wire key, the required wire keys of its complete result)` of a row of the SDK's
    per-revision result surface (`mcp_types.methods.SERVER_RESULTS`)."""
    members = [
        m
        for m in (get_args(row) if isinstance(row, UnionType) else (row,))
        if isinstance(m, type) and issubclass(m, BaseModel)
    ]
    keys = {field.alias or name for member in members for name, field in member.model_fields.items()}
    complete = [m for m in members if not m.__name__.startswith("InputRequired")]
    required = {
        field.alias or name for m in complete[:1] for name, field in m.model_fields.items() if field.is_required()
    }
    return frozenset(keys), frozenset(required)


@cache
def _era_keys(method: str, version: str) -> tuple[frozenset[str], frozenset[str]]:
    """`(keys of later revisions than version, keys version requires)` of `method`'s result."""
    row = SERVER_RESULTS.get((method, version))
    if row is None or version not in KNOWN_PROTOCOL_VERSIONS:
        return frozenset(), frozenset()
    keys, required = _wire_keys(row)
    later: set[str] = set()
    for newer in KNOWN_PROTOCOL_VERSIONS[KNOWN_PROTOCOL_VERSIONS.index(version) + 1 :]:
        if (newer_row := SERVER_RESULTS.get((method, newer))) is not None:
            later |= _wire_keys(newer_row)[0]
    return frozenset(later - keys), required


def in_era(method: str, raw: Any, version: str | None) -> Any:
    """A server's `method` result `raw` as the SDK client takes it on a connection of revision
    `version` before validating it (`ClientSession.send_request`): the keys only later revisions
    define dropped (e.g. the 2026-07-28 `ttlMs`, `cacheScope` and `resultType` on a handshake-era
    connection: outside the negotiated contract); None when a key `version` requires is missing
    (the SDK's validation would refuse it: the full path raises that error). `raw` is never
    mutated; it comes back as it is when nothing is dropped."""
    if type(raw) is not dict:
        return raw
    later, required = _era_keys(method, version or _SDK_CLIENT_DEFAULT_VERSION)
    if not required <= raw.keys():
        return None
    if later.isdisjoint(raw):
        return raw
    return {key: value for key, value in raw.items() if key not in later}


class WireResult:
    """A plain `tools/call`, `prompts/get`, `resources/read` or `completion/complete` result
    (`PLAIN`) as the server sent it: `data`, a JSON object with wire keys, the answer to `method`.
    Never mutated: `restamped` and `privately_cached` return a new one."""

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

    def privately_cached(self) -> WireResult:
        """This result with a server's `cacheScope` made `"private"`: a server's `"public"` is about
        its own callers; behind the hub the caller is a principal (as the handler does to a model)."""
        if self.data.get("cacheScope", "private") == "private":
            return self
        return WireResult({**self.data, "cacheScope": "private"}, self.method)

    def oversized(self, limit: int) -> bool:
        """Whether the result's JSON is over `limit` bytes, measured block by block (message by
        message, resource contents by contents; a completion whole) as
        `hub.result_cap.oversized` measures a model (stopping once past the limit)."""
        total = _ENVELOPE_BYTES
        method = self.method
        if method == "prompts/get":
            items: list[Any] = list(self.data["messages"])
        elif method == "resources/read":
            items = list(self.data["contents"])
        elif method == "completion/complete":
            items = [self.data]
        else:
            items = list(self.data["content"])
            if "structuredContent" in self.data:
                items.append(self.data["structuredContent"])
        for item in items:
            total += len(orjson.dumps(item))
            if total > limit:
                return True
        return False

    def model(self) -> BaseModel:
        """The result as the SDK's model (`CallToolResult`, `GetPromptResult`,
        `ReadResourceResult`, `CompleteResult`: for a caller outside the face's middleware chain)."""
        return _MODELS[self.method].model_validate(self.data, by_name=False)

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
    """What a routed request's handler returns for `result`: a `tools/call` or `prompts/get`
    `WireResult` is left for `middleware` (the SDK gets its envelope stub), or, when no
    middleware waits for it, turned into its model; a `resources/read` or `completion/complete`
    one is its JSON object with `resultType` (as a model's dump has it: the modern era's sieve
    requires it), for the SDK to shape; any other result is returned as it is."""
    if not isinstance(result, WireResult):
        return result
    if result.method not in _FILLED:
        data = result.data  # plain: its resultType, when there, is "complete"
        return data if "resultType" in data else {**data, "resultType": "complete"}
    if not _SLOT.leave(result):
        return result.model()
    return result.stub()


async def middleware(ctx: ServerRequestContext[Any], call_next: CallNext) -> HandlerResult:
    """Server middleware (innermost): a `tools/call` or `prompts/get` answer whose handler left
    a `WireResult` (`held`) gets its content and `structuredContent` (its messages) put into the
    envelope the SDK shaped."""
    if ctx.method not in _FILLED:
        return await call_next(ctx)
    result, wire = await _SLOT.around(partial(call_next, ctx))
    if wire is None or not isinstance(result, dict):
        return result
    return wire.fill(result)
