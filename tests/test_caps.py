"""Answers over a size cap (issue 10 items 4 and 5; SECURITY.md cases 26 and 27): an oversized
stdout line or Streamable HTTP JSON body is discarded as it streams, only the request it answers
fails, and the server keeps serving.

Real peers only: the faulty server as a stdio child and over loopback HTTP behind a running hub,
a small scripted stdio child for the adapter alone, and pure tests of the line-end scanner.
Measured values are printed; run with `-s` to see them.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import MCPError
from mcp.shared.message import SessionMessage
from mcp_types import INTERNAL_ERROR
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from adapters.http_pool import HttpPool
from adapters.oversize import (
    ANSWER_TOO_LARGE,
    LineKind,
    LineVerdict,
    OversizedLine,
    answer_too_large,
    answer_too_large_limit,
    find_request_id,
)
from adapters.stdio import stdio_transport
from hub.servers import ServerState
from tests.clients import mcp_client
from tests.conftest import faulty_entry, faulty_http, running_hub, serve_app
from tests.conftest import tool_text as _text
from tests.test_supervision import _peak_rss_bytes, _reset_peak_rss

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024
DEFAULT_MAX_RESULT_BYTES = 1024 * 1024


# ---------------------------------------------------------------- the line-end scanner (pure)

_BIG = b'"' + b"x" * 100_000 + b'"'


def _judge(line: bytes) -> tuple[LineVerdict | None, LineVerdict]:
    """Feed `line` in small pieces, as a pipe would; (verdict from the head, final verdict)."""
    oversized = OversizedLine()
    for start in range(0, len(line), 4093):
        oversized.feed(line[start : start + 4093])
    return oversized.head_verdict(), oversized.verdict()


def test_the_id_of_an_answer_is_read_from_its_head_when_it_comes_first() -> None:
    head, final = _judge(b'{"jsonrpc":"2.0","id":5,"result":{"content":[{"type":"text","text":' + _BIG + b"}]}}")
    assert head == final == LineVerdict(LineKind.ANSWER, 5)


def test_the_id_of_an_answer_is_read_from_its_tail_when_it_comes_last() -> None:
    line = b'{"result":{"content":[{"type":"text","text":' + _BIG + b'}]},"jsonrpc":"2.0","id":"r-\\"7\\""}\r'
    head, final = _judge(line)
    assert head is None  # nothing settles it before the line ends
    assert final == LineVerdict(LineKind.ANSWER, 'r-"7"')


def test_an_id_nested_inside_the_result_is_never_taken_for_the_answers_own() -> None:
    decoy_first = b'{"result":{"structuredContent":{"id":99},"text":' + _BIG + b'},"jsonrpc":"2.0","id":3}'
    decoy_last = b'{"result":{"text":' + _BIG + b',"meta":{"id":99}},"jsonrpc":"2.0","id":3}'
    no_own_id = b'{"jsonrpc":"2.0","result":{"text":' + _BIG + b',"id":99}}'
    assert _judge(decoy_first)[1] == LineVerdict(LineKind.ANSWER, 3)
    assert _judge(decoy_last)[1] == LineVerdict(LineKind.ANSWER, 3)
    assert _judge(no_own_id)[1] == LineVerdict(LineKind.UNKNOWN)


def test_requests_and_notifications_from_the_server_are_told_apart_from_answers() -> None:
    notification = b'{"method":"notifications/message","params":{"data":' + _BIG + b"}}"
    request_id_last = b'{"params":{"data":' + _BIG + b'},"method":"sampling/createMessage","jsonrpc":"2.0","id":4}'
    assert _judge(notification) == (LineVerdict(LineKind.SERVER_MESSAGE), LineVerdict(LineKind.SERVER_MESSAGE))
    assert _judge(request_id_last)[1] == LineVerdict(LineKind.SERVER_MESSAGE)


def test_a_line_that_is_not_a_json_object_is_known_from_its_first_bytes() -> None:
    assert _judge(b"x" * 100_000)[0] == LineVerdict(LineKind.NOT_JSON)
    assert _judge(b"  [1, 2, " + _BIG + b"]")[0] == LineVerdict(LineKind.NOT_JSON)


def test_an_id_cut_by_the_window_is_not_guessed() -> None:
    # A number that touches the end of the head window may go on after it.
    oversized = OversizedLine()
    oversized.feed(b'{"jsonrpc":"2.0","id":12')
    assert oversized.head_verdict() is None
    # A boolean or null id is not one the hub sends: the answer cannot be attributed.
    assert _judge(b'{"jsonrpc":"2.0","id":null,"error":{"message":' + _BIG + b"}}")[1].kind is LineKind.UNKNOWN


def test_the_id_of_a_request_body_is_found_from_its_head_or_by_parsing_it() -> None:
    assert find_request_id(b'{"jsonrpc":"2.0","id":"abc","method":"tools/call","params":{}}') == "abc"
    assert find_request_id(b'{"method":"tools/call","params":{"a":' + _BIG + b'},"id":4}') == 4
    assert find_request_id(b'{"jsonrpc":"2.0","method":"notifications/initialized"}') is None
    assert find_request_id(b"not json") is None


def test_the_stand_in_error_is_recognised_and_a_servers_own_error_is_not() -> None:
    error = answer_too_large(7, 4096, "too big").error
    assert answer_too_large_limit(MCPError(error.code, error.message, error.data)) == 4096
    assert error.code == INTERNAL_ERROR and error.data == {"reason": ANSWER_TOO_LARGE, "limit_bytes": 4096}
    assert answer_too_large_limit(MCPError(INTERNAL_ERROR, "too big")) is None
    assert answer_too_large_limit(MCPError(-32000, "x", {"reason": ANSWER_TOO_LARGE, "limit_bytes": 1})) is None


# ---------------------------------------------------------------- the stdio adapter alone

_CHILD = r"""
import json, sys
out = sys.stdout.buffer
cap = int(sys.argv[1])
def write(data):
    out.write(data)
    out.flush()
for line in sys.stdin.buffer:
    msg = json.loads(line)
    rid, method = msg.get("id"), msg.get("method")
    if method == "early":  # id first; the line stays open until the next request arrives
        write(b'{"jsonrpc":"2.0","id":%s,"result":{"text":"' % json.dumps(rid).encode() + b"x" * (2 * cap))
        nxt = json.loads(sys.stdin.buffer.readline())
        write(b'"}}\n')
        write(json.dumps({"jsonrpc": "2.0", "id": nxt["id"], "result": {"after": True}}).encode() + b"\n")
    elif method == "decoy":  # id last, a nested "id" inside the result
        body = {"result": {"meta": {"id": 99}, "text": "x" * (2 * cap)}, "jsonrpc": "2.0", "id": rid}
        write(json.dumps(body).encode() + b"\n")
    elif method == "notify":  # an oversized notification, then the answer
        note = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"data": "x" * (2 * cap)}}
        write(json.dumps(note).encode() + b"\n")
        write(json.dumps({"jsonrpc": "2.0", "id": rid, "result": {"noted": True}}).encode() + b"\n")
    elif method == "anonymous":  # an oversized answer with no id of its own
        write(json.dumps({"jsonrpc": "2.0", "result": {"text": "x" * (2 * cap), "id": 99}}).encode() + b"\n")
    elif method == "endless":  # looks like an answer, never ends
        write(b'{"jsonrpc":"2.0","result":{"text":"')
        while True:
            write(b"x" * 65536)
    else:
        write(json.dumps({"jsonrpc": "2.0", "id": rid, "result": {"echo": method}}).encode() + b"\n")
"""
_CAP = 4096


@asynccontextmanager
async def _child(reasons: list[str]) -> AsyncIterator[tuple[Any, Any]]:
    transport = stdio_transport(
        "scripted",
        sys.executable,
        ["-c", _CHILD, str(_CAP)],
        max_line_bytes=_CAP,
        on_close_reason=reasons.append,
        on_stderr_line=lambda line: None,
    )
    async with transport as streams:
        yield streams


def _request(request_id: int, method: str) -> SessionMessage:
    return SessionMessage(types.JSONRPCRequest(jsonrpc="2.0", id=request_id, method=method))


async def _receive(read: Any) -> types.JSONRPCMessage:
    item = await read.receive()
    assert isinstance(item, SessionMessage), item
    return item.message


async def test_an_answer_whose_id_comes_first_fails_its_request_before_the_line_even_ends() -> None:
    reasons: list[str] = []
    with anyio.fail_after(20):
        async with _child(reasons) as (read, write):
            await write.send(_request(1, "early"))
            refused = await _receive(read)  # the child is still holding the line open here
            await write.send(_request(2, "echo"))
            after = await _receive(read)
    assert isinstance(refused, types.JSONRPCError) and refused.id == 1
    assert refused.error.code == INTERNAL_ERROR
    assert refused.error.data == {"reason": ANSWER_TOO_LARGE, "limit_bytes": _CAP}
    assert refused.error.message == (
        f"the server's answer was larger than max_line_bytes ({_CAP} bytes) and was discarded"
    )
    assert isinstance(after, types.JSONRPCResponse) and after.id == 2 and after.result == {"after": True}
    assert reasons == []


async def test_an_answer_whose_id_comes_last_fails_its_own_request_not_a_nested_ids() -> None:
    reasons: list[str] = []
    with anyio.fail_after(20):
        async with _child(reasons) as (read, write):
            await write.send(_request(1, "decoy"))
            refused = await _receive(read)
            await write.send(_request(2, "echo"))
            after = await _receive(read)
    assert isinstance(refused, types.JSONRPCError) and refused.id == 1
    assert answer_too_large_limit_of(refused) == _CAP
    assert isinstance(after, types.JSONRPCResponse) and after.id == 2
    assert reasons == []


def answer_too_large_limit_of(error: types.JSONRPCError) -> int | None:
    return answer_too_large_limit(MCPError(error.error.code, error.error.message, error.error.data))


async def test_an_oversized_notification_from_the_server_is_skipped_and_the_session_carries_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="adapters.stdio")
    reasons: list[str] = []
    with anyio.fail_after(20):
        async with _child(reasons) as (read, write):
            await write.send(_request(1, "notify"))
            answer = await _receive(read)
    assert isinstance(answer, types.JSONRPCResponse) and answer.id == 1 and answer.result == {"noted": True}
    assert reasons == []
    assert "[scripted] discarded a request or notification from the server over max_line_bytes" in caplog.text


@pytest.mark.parametrize(
    ("method", "reason"),
    [
        ("anonymous", f"longer than {_CAP} bytes whose JSON-RPC id could not be read; killed it"),
        ("endless", f"longer than {256 * _CAP} bytes (256 x max_line_bytes) and still going; killed it"),
    ],
)
async def test_an_oversized_line_that_answers_nothing_attributable_kills_the_child(method: str, reason: str) -> None:
    reasons: list[str] = []
    with anyio.fail_after(20):
        async with _child(reasons) as (read, write):
            await write.send(_request(1, method))
            with pytest.raises(anyio.EndOfStream):
                await read.receive()
    assert len(reasons) == 1 and reasons[0].endswith(reason), reasons


# ---------------------------------------------------------------- stdio behind the hub


@pytest.mark.parametrize(
    ("id_order", "protocol"),
    [("id-first", "auto"), ("id-last", "legacy")],  # the Python SDK's order at 2026-07-28; the TypeScript SDK's
)
async def test_a_tool_answer_over_max_line_bytes_fails_only_that_call_and_the_child_keeps_serving(
    id_order: str, protocol: str
) -> None:
    flags = ["--id-last"] if id_order == "id-last" else []
    entry = faulty_entry("big", *flags, protocol=protocol)  # default max_line_bytes: 4 MiB
    async with running_hub({"big": entry}) as hub:
        with anyio.fail_after(60):
            async with mcp_client(hub.url) as client:
                pid = _text(await client.call_tool("big__pid", {}))
                slow: list[types.CallToolResult] = []

                async def in_flight() -> None:
                    slow.append(await client.call_tool("big__slow", {"seconds": 1}))

                async with anyio.create_task_group() as tg:
                    tg.start_soon(in_flight)
                    started = time.monotonic()
                    over = await client.call_tool("big__huge", {"size": 8 * MiB})
                    failed_after = time.monotonic() - started
                after = await client.call_tool("big__huge", {"size": 100 * 1024})
                pid_after = _text(await client.call_tool("big__pid", {}))
                status = hub.hub.server_status("big")
    assert over.is_error and _text(over) == f"result from big exceeded {DEFAULT_MAX_RESULT_BYTES} bytes"
    assert _text(slow[0]) == "done"  # the call in flight beside it was not disturbed
    assert len(_text(after)) == 100 * 1024 and not after.is_error
    assert pid_after == pid and status.restarts == 0 and status.state is ServerState.READY
    assert status.breaker == "closed" and status.consecutive_failures == 0
    print(f"\n[measure] {id_order}: 8 MiB answer over a 4 MiB line cap refused after {failed_after * 1000:.0f} ms")


async def test_a_line_cap_below_the_result_cap_is_the_limit_the_error_names() -> None:
    async with running_hub({"tight": faulty_entry("tight", max_line_bytes=65536)}) as hub:
        with anyio.fail_after(30):
            async with mcp_client(hub.url) as client:
                under = await client.call_tool("tight__huge", {"size": 60_000})
                over = await client.call_tool("tight__huge", {"size": 70_000})
    assert len(_text(under)) == 60_000
    assert over.is_error and _text(over) == "result from tight exceeded 65536 bytes"


async def test_the_hub_holds_no_more_than_the_line_cap_of_an_answer_far_over_it() -> None:
    _reset_peak_rss()
    peak_before = _peak_rss_bytes()
    async with running_hub({"flood": faulty_entry("flood", max_line_bytes=MiB)}) as hub:
        with anyio.fail_after(60):
            async with mcp_client(hub.url) as client:
                over = await client.call_tool("flood__huge", {"size": 64 * MiB})
                echo = await client.call_tool("flood__echo", {"text": "still here"})
        grown = _peak_rss_bytes() - peak_before
    assert over.is_error and _text(over) == f"result from flood exceeded {MiB} bytes"
    assert _text(echo) == "still here"
    assert grown < 24 * MiB, f"the hub's peak RSS grew by {grown / MiB:.1f} MiB for a 64 MiB answer"
    print(f"\n[measure] 64 MiB answer over a 1 MiB line cap: hub peak RSS grew {grown / MiB:.1f} MiB")


# ---------------------------------------------------------------- Streamable HTTP JSON bodies


@pytest.mark.parametrize(
    ("flags", "protocol"),
    [
        ((), "auto"),  # 2026-07-28: every answer is one JSON body
        (("--json-response",), "legacy"),  # a handshake-era server answering with JSON bodies
        (("--gzip",), "auto"),  # 64 MiB of "x" gzips to ~64 KiB: under the cap on the wire, not decoded
    ],
    ids=["modern", "handshake-json", "modern-gzip"],
)
async def test_a_json_answer_over_the_cap_fails_only_that_call_with_bounded_hub_memory(
    flags: tuple[str, ...], protocol: str
) -> None:
    async with faulty_http(*flags) as (url, _process):
        entry = {"url": url, "protocol": protocol, "max_result_bytes": 65536}
        async with running_hub({"remote": entry}) as hub:
            with anyio.fail_after(60):
                async with mcp_client(hub.url) as client:
                    _reset_peak_rss()
                    peak_before = _peak_rss_bytes()
                    over = await client.call_tool("remote__huge", {"size": 64 * MiB})
                    grown = _peak_rss_bytes() - peak_before
                    under = await client.call_tool("remote__huge", {"size": 60_000})
                    echo = await client.call_tool("remote__echo", {"text": "after"})
                    status = hub.hub.server_status("remote")
    assert over.is_error and _text(over) == "result from remote exceeded 65536 bytes"
    assert len(_text(under)) == 60_000 and not under.is_error
    assert _text(echo) == "after"
    assert status.state is ServerState.READY and status.restarts == 0
    assert status.breaker == "closed" and status.consecutive_failures == 0
    assert grown < 24 * MiB, f"the hub's peak RSS grew by {grown / MiB:.1f} MiB for a 64 MiB answer"
    shape = " ".join(flags) or "modern"
    print(f"\n[measure] {shape}: 64 MiB JSON answer refused; hub peak RSS grew {grown / MiB:.1f} MiB")


# ---------------------------------------------------------------- the capped JSON body alone


_REQUEST = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "huge"}}


async def _crafted(request: Request) -> Response:
    """Answers shaped by the `shape` query parameter; the body of a JSON-RPC answer otherwise."""
    shape = request.query_params["shape"]
    payload = json.dumps({"jsonrpc": "2.0", "id": 7, "result": {"text": "x" * 100_000}}).encode()
    if shape == "declared":  # Content-Length says it all: refused before a byte is read
        return Response(payload, media_type="application/json")
    if shape == "brotli":
        return Response(b"\x00" * 10, media_type="application/json", headers={"content-encoding": "br"})
    if shape == "corrupt-gzip":
        return Response(b"\x1f\x8b" + b"\x00" * 64, media_type="application/json", headers={"content-encoding": "gzip"})
    if shape == "deflate":  # raw deflate, as many servers send it
        packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        body = packer.compress(b'{"jsonrpc":"2.0","id":7,"result":{}}') + packer.flush()
        return Response(body, media_type="application/json", headers={"content-encoding": "deflate"})

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), 8192):
            yield payload[start : start + 8192]

    return StreamingResponse(chunks(), media_type="application/json")  # no Content-Length


@asynccontextmanager
async def _crafting_server() -> AsyncIterator[str]:
    async with serve_app(Starlette(routes=[Route("/mcp", _crafted, methods=["POST"])])) as base_url:
        yield f"{base_url}/mcp"


@pytest.mark.parametrize("shape", ["declared", "chunked"])
async def test_a_json_body_over_the_cap_is_answered_with_the_stand_in_error_for_its_request(shape: str) -> None:
    pool = HttpPool()
    try:
        async with _crafting_server() as url, pool.client(max_json_bytes=4096) as http:
            with anyio.fail_after(10):
                response = await http.post(url, params={"shape": shape}, json=_REQUEST)
    finally:
        await pool.aclose()
    answer = types.jsonrpc_message_adapter.validate_json(response.content)
    assert isinstance(answer, types.JSONRPCError) and answer.id == 7
    assert answer.error.data == {"reason": ANSWER_TOO_LARGE, "limit_bytes": 4096}
    assert answer.error.message == "the server's JSON answer was larger than 4096 bytes and was discarded"


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ("brotli", "the server answered with content-encoding 'br', which was not offered"),
        ("corrupt-gzip", "the server's gzip answer could not be decoded"),
    ],
)
async def test_a_json_body_that_cannot_be_decoded_under_the_cap_fails_its_request_alone(
    shape: str, message: str
) -> None:
    pool = HttpPool()
    try:
        async with _crafting_server() as url, pool.client(max_json_bytes=1 * MiB) as http:
            with anyio.fail_after(10):
                response = await http.post(url, params={"shape": shape}, json=_REQUEST)
    finally:
        await pool.aclose()
    answer = types.jsonrpc_message_adapter.validate_json(response.content)
    assert isinstance(answer, types.JSONRPCError) and answer.id == 7
    assert answer.error.code == INTERNAL_ERROR and answer.error.message == message
    assert answer.error.data is None  # not a size refusal: the hub passes it on as the server's failure


async def test_a_json_body_under_the_cap_is_handed_on_decoded_whatever_its_deflate_flavour() -> None:
    pool = HttpPool()
    try:
        async with _crafting_server() as url, pool.client(max_json_bytes=4096) as http:
            with anyio.fail_after(10):
                response = await http.post(url, params={"shape": "deflate"}, json=_REQUEST)
    finally:
        await pool.aclose()
    assert response.json() == {"jsonrpc": "2.0", "id": 7, "result": {}}
    assert "content-encoding" not in response.headers
