"""Resource URIs inside results, moved into the hub's namespace.

A server may point at its own resources from inside an answer: `resource_link` blocks and
embedded resources (`type: "resource"`) in a tool result's `content` (MCP 2025-06-18 and later,
server/tools "Resource Links", "Embedded Resources") or in a prompt's messages, and the
`contents[].uri` of a `resources/read` result (a resource may answer with sub-resources). Those
are the server's own URIs (`demo://resource/1`): a client of the aggregated endpoint cannot read
them, since every resource there is addressed as `<server_id>+<uri>` (DESIGN.md "Names").

`expose_uris` rewrites them into that form (in a model, or on the JSON object of a plain
`resources/read` result the server connection kept as sent, `hub.wire_results.WireResult`), so
a client follows a link by reading it through the hub, where `Catalog.resource_owner` routes it
back to the same server under the original URI. The per-server face (`/servers/<server_id>/mcp`)
serves original URIs and needs no rewriting.
Everything else in a result (text, structuredContent, `_meta`) is left as the server sent it.
"""

from __future__ import annotations

from typing import Any, TypeVar, cast

import mcp_types as types

from hub.naming import exposed_resource_uri
from hub.wire_results import WireResult

__all__ = ["expose_uris"]

_ResultT = TypeVar("_ResultT", bound=types.Result | WireResult)


def _block(server_id: str, block: Any) -> Any:
    """One content block with its resource URI exposed (unchanged when it carries none)."""
    if isinstance(block, types.ResourceLink):
        return block.model_copy(update={"uri": exposed_resource_uri(server_id, str(block.uri))})
    if isinstance(block, types.EmbeddedResource):
        return block.model_copy(update={"resource": _contents(server_id, block.resource)})
    return block


def _contents(server_id: str, contents: Any) -> Any:
    return contents.model_copy(update={"uri": exposed_resource_uri(server_id, str(contents.uri))})


def _carries_uris(blocks: list[Any]) -> bool:
    return any(isinstance(block, types.ResourceLink | types.EmbeddedResource) for block in blocks)


def expose_uris(server_id: str, result: _ResultT) -> _ResultT:
    """`result` with the resource URIs it carries rewritten to `<server_id>+<uri>`.

    Rewritten: `CallToolResult.content` resource links and embedded resources,
    `GetPromptResult.messages[].content` likewise, `ReadResourceResult.contents[].uri` (and
    `contents[].uri` of a `resources/read` `WireResult`; the other plain `WireResult`s carry no
    URI). Any other result (e.g. an `InputRequiredResult`) is returned as it is. The result is
    never mutated; the same object comes back when there is nothing to rewrite (the common case
    costs one scan of the content list).
    """
    if isinstance(result, WireResult):
        data = result.data
        if result.method != "resources/read" or not data["contents"]:
            return result
        contents = [{**item, "uri": exposed_resource_uri(server_id, item["uri"])} for item in data["contents"]]
        return cast(_ResultT, WireResult({**data, "contents": contents}, result.method))
    if isinstance(result, types.CallToolResult):
        if not _carries_uris(result.content):
            return result
        return result.model_copy(update={"content": [_block(server_id, block) for block in result.content]})
    if isinstance(result, types.ReadResourceResult):
        if not result.contents:
            return result
        return result.model_copy(update={"contents": [_contents(server_id, item) for item in result.contents]})
    if isinstance(result, types.GetPromptResult):
        if not _carries_uris([message.content for message in result.messages]):
            return result
        messages = [
            message.model_copy(update={"content": _block(server_id, message.content)}) for message in result.messages
        ]
        return result.model_copy(update={"messages": messages})
    return result
