"""Resource URIs are normalised (RFC 3986 section 6.2.2) before routing and policy, so no
spelling of a denied resource slips past a deny rule, on either face, in either era."""

from __future__ import annotations

import re
import string

import anyio
import mcp_types as types
import pytest
from hypothesis import given
from hypothesis import strategies as st
from mcp import MCPError
from mcp_types import INVALID_PARAMS

from hub.uris import UNRESERVED, normalize_uri, normalize_uri_pattern, remove_dot_segments
from tests.clients import mcp_client
from tests.conftest import fixture_entry, running_hub

# ---------------------------------------------------------------- the function


@pytest.mark.parametrize(
    ("path", "expected"),
    [  # RFC 3986 section 5.2.4's own examples, and the edges of the algorithm
        ("/a/b/c/./../../g", "/a/g"),
        ("mid/content=5/../6", "mid/6"),
        ("/../a", "/a"),
        ("/a/..", "/"),
        ("/a/.", "/a/"),
        ("a/./b", "a/b"),
        ("..", ""),
        ("/a/b", "/a/b"),
    ],
)
def test_dot_segments_are_removed_as_rfc_3986_says(path: str, expected: str) -> None:
    assert remove_dot_segments(path) == expected


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("fx+fixture://INFO", "fx+fixture://info"),
        ("fx+fixture://%69nfo", "fx+fixture://info"),
        ("FX+Fixture://info", "fx+fixture://info"),
        ("fixture://info/a/./b/../C%7e%2f?q=%41#F%3a", "fixture://info/a/C~%2F?q=A#F%3A"),
        ("file:///TMP/%2E%2E/x", "file:///x"),
        ("http://User%41@EXAMPLE.com:8080/Path", "http://UserA@example.com:8080/Path"),
        ("http://[::1]:80/x", "http://[::1]:80/x"),
        ("urn:ISBN:0-%34", "urn:ISBN:0-4"),
        ("fixture://items/{id}", "fixture://items/{id}"),
        ("FIXTURE://Host/{+path}/../x%7e", "fixture://host/{+path}/../x~"),
        ("fixture://{host}/A", "fixture://{host}/A"),
        ("no-scheme/%7e", "no-scheme/~"),
    ],
)
def test_a_uri_is_brought_to_its_normal_form(uri: str, expected: str) -> None:
    assert normalize_uri(uri) == expected


def test_a_policy_glob_is_normalised_like_the_uris_it_matches() -> None:
    assert normalize_uri_pattern("fx+FIXTURE://Info*") == "fx+fixture://info*"
    assert normalize_uri_pattern("fx+fixture://%69nfo") == "fx+fixture://info"
    assert normalize_uri_pattern("time__*") == "time__*"
    assert normalize_uri_pattern("Git__Log") == "Git__Log"


_segment = st.text(alphabet=string.ascii_letters + string.digits + "-._~%!$&'()*+,;=:@", max_size=8)
_uri = st.builds(
    lambda scheme, host, segments, query: f"{scheme}://{host}/{'/'.join(segments)}" + (f"?{query}" if query else ""),
    st.from_regex(r"[A-Za-z][A-Za-z0-9+.-]{0,6}", fullmatch=True),
    st.text(alphabet=string.ascii_letters + string.digits + "-.", min_size=1, max_size=10),
    st.lists(st.one_of(_segment, st.sampled_from([".", ".."])), max_size=5),
    st.one_of(st.none(), _segment),
)


@given(_uri)
def test_normalising_twice_changes_nothing(uri: str) -> None:
    once = normalize_uri(uri)
    assert normalize_uri(once) == once


@given(_uri, st.randoms(use_true_random=False))
def test_every_spelling_of_a_uri_has_one_normal_form(uri: str, random: object) -> None:
    """Flipping the case of the scheme and host and percent-encoding unreserved characters
    (with either hex case) never changes the normal form."""
    rnd = random  # hypothesis' seeded Random
    scheme, _, rest = uri.partition("://")
    host, slash, tail = rest.partition("/")

    def respell(text: str, flip_case: bool) -> str:
        out = []
        # A percent-encoded triplet already in the URI is one character: its two hex digits are
        # kept (respelling them would make another URI), with either hex case.
        for char in re.findall(r"%[0-9A-Fa-f]{2}|.", text, flags=re.S):
            if len(char) == 3:
                out.append(char.lower() if rnd.random() < 0.5 else char.upper())  # type: ignore[attr-defined]
            elif char in UNRESERVED and rnd.random() < 0.3:  # type: ignore[attr-defined]
                code = f"{ord(char):02X}"
                out.append("%" + (code.lower() if rnd.random() < 0.5 else code))  # type: ignore[attr-defined]
            elif flip_case and rnd.random() < 0.5:  # type: ignore[attr-defined]
                out.append(char.swapcase())
            else:
                out.append(char)
        return "".join(out)

    variant = "".join(c.swapcase() if rnd.random() < 0.5 else c for c in scheme)  # type: ignore[attr-defined]
    variant += "://" + respell(host, flip_case=True) + slash + respell(tail, flip_case=False)
    assert normalize_uri(variant) == normalize_uri(uri)


# ---------------------------------------------------------------- through the hub

pytestmark_anyio = pytest.mark.anyio
_DENIED = "fx+fixture://info"
_VARIANTS = ["fx+fixture://info", "fx+fixture://INFO", "fx+fixture://%69nfo", "FX+Fixture://In%66o"]


@pytestmark_anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_no_spelling_of_a_denied_resource_is_read_on_either_face(mode: str) -> None:
    policies = [{"principal": "anonymous", "allow": ["*"], "deny": ["fx+FIXTURE://Info"]}]
    async with running_hub({"fx": fixture_entry("fx")}, policies=policies) as hub:
        with anyio.fail_after(30):
            async with mcp_client(hub.url, mode=mode) as client:
                listed = {str(r.uri) for r in (await client.list_resources()).resources}
                assert _DENIED not in listed
                for uri in _VARIANTS:
                    with pytest.raises(MCPError) as refused:
                        await client.read_resource(uri)
                    # Refused by the hub as an unknown route (not answered by the server).
                    assert refused.value.code == INVALID_PARAMS, uri
                    assert refused.value.error.data == {"kind": "resource", "name": uri, "suggestions": []}
                # What is not denied still reads, through its template.
                item = (await client.read_resource("fx+fixture://items/%37")).contents[0]
                assert isinstance(item, types.TextResourceContents) and "7" in item.text
            async with mcp_client(hub.server_url("fx"), mode=mode) as client:
                assert not (await client.list_resources()).resources
                for uri in ("fixture://info", "fixture://INFO", "fixture://%69nfo", "FIXTURE://info"):
                    with pytest.raises(MCPError) as refused:
                        await client.read_resource(uri)
                    assert refused.value.code == INVALID_PARAMS, uri
                    assert refused.value.error.data == {"kind": "resource", "name": uri, "suggestions": []}


@pytestmark_anyio
async def test_a_spelling_of_a_resource_reaches_the_server_in_normal_form() -> None:
    async with running_hub({"fx": fixture_entry("fx")}) as hub:
        with anyio.fail_after(30):
            async with mcp_client(hub.url) as client:
                for uri in _VARIANTS:
                    content = (await client.read_resource(uri)).contents[0]
                    assert isinstance(content, types.TextResourceContents) and content.text == "fx", uri
