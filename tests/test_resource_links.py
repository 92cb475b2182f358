"""Resource URIs inside results are moved into the hub's namespace (hub.endpoint.resource_links): pure
rewriting rules; the end-to-end check with a real server is in tests/test_third_party.py."""

from __future__ import annotations

import mcp_types as types

from hub.endpoint.resource_links import expose_uris


def _link(uri: str) -> types.ResourceLink:
    return types.ResourceLink(type="resource_link", uri=uri, name="r")


def _embedded(uri: str) -> types.EmbeddedResource:
    return types.EmbeddedResource(type="resource", resource=types.TextResourceContents(uri=uri, text="t"))


def test_resource_links_and_embedded_resources_in_a_tool_result_get_the_servers_namespace() -> None:
    text = types.TextContent(type="text", text="demo://not-a-link stays text")
    result = types.CallToolResult(
        content=[text, _link("demo://resource/1"), _embedded("demo://resource/2")],
        structured_content={"uri": "demo://resource/1"},
    )
    exposed = expose_uris("everything", result)
    assert exposed.content[0] == text
    link, embedded = exposed.content[1], exposed.content[2]
    assert isinstance(link, types.ResourceLink) and link.uri == "everything+demo://resource/1"
    assert link.name == "r"
    assert isinstance(embedded, types.EmbeddedResource) and embedded.resource.uri == "everything+demo://resource/2"
    assert exposed.structured_content == {"uri": "demo://resource/1"}, "structured content is the server's data"
    assert result.content[1] == _link("demo://resource/1"), "the server's result is not mutated"


def test_a_result_without_resource_uris_is_returned_as_the_same_object() -> None:
    result = types.CallToolResult(content=[types.TextContent(type="text", text="x")])
    assert expose_uris("fx", result) is result
    required = types.InputRequiredResult(input_requests={}, request_state="s")
    assert expose_uris("fx", required) is required


def test_read_contents_and_prompt_messages_get_the_servers_namespace() -> None:
    read = types.ReadResourceResult(
        contents=[
            types.TextResourceContents(uri="fixture://info", text="a"),
            types.BlobResourceContents(uri="fixture://info/raw", blob="YQ=="),
        ]
    )
    assert [item.uri for item in expose_uris("fx", read).contents] == ["fx+fixture://info", "fx+fixture://info/raw"]
    prompt = types.GetPromptResult(
        messages=[
            types.PromptMessage(role="user", content=types.TextContent(type="text", text="hi")),
            types.PromptMessage(role="user", content=_embedded("demo://resource/3")),
        ]
    )
    exposed = expose_uris("everything", prompt)
    embedded = exposed.messages[1].content
    assert isinstance(embedded, types.EmbeddedResource)
    assert embedded.resource.uri == "everything+demo://resource/3"
    assert exposed.messages[0] == prompt.messages[0]
