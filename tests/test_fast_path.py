"""The lean path of plain requests (`hub.endpoint.fast_path`), over raw HTTP against a real hub
with API-key auth, a policy and a rate limit in front of the stdio fixture server: JSON answers
unless the call streams, SSE from the first message of a call that does, server-to-client
requests and their answers, clashing ids, cancellation, and errors identical to the SDK's path."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2
import pytest
from mcp_types import INVALID_PARAMS

from tests.clients import http_client
from tests.conftest import INITIALIZE, MCP_HEADERS, LogLines, RunningHub, fixture_entry, running_hub

pytestmark = pytest.mark.anyio

KEY = "fast-path-test-key"
HEADERS = {**MCP_HEADERS, "Authorization": f"Bearer {KEY}"}
RATE_LIMITED = -32029
REQUEST_CANCELLED = -32800
MODERN = "2026-07-28"
META = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
SERVER_LOG = "hub.server_stderr"


def _config() -> dict[str, Any]:
    return {
        "auth": {
            "api_keys": [{"id": "team", "key_sha256": hashlib.sha256(KEY.encode()).hexdigest(), "scopes": ["hub:call"]}]
        },
        "policies": [{"principal": "team", "allow": ["fx__*", "fx+*"], "deny": ["fx__pid"]}],
        "rate_limits": {"routes": {"fx__whoami": {"requests_per_second": 0.01, "burst": 1}}},
    }


@asynccontextmanager
async def _hub() -> AsyncIterator[tuple[RunningHub, httpx2.AsyncClient]]:
    async with running_hub({"fx": fixture_entry("fx")}, **_config()) as hub:
        async with http_client(timeout=30, limits=httpx2.Limits(max_connections=250)) as http:
            yield hub, http


async def _session(http: httpx2.AsyncClient, url: str, capabilities: dict[str, Any] | None = None) -> dict[str, str]:
    """Open a handshake-era session; the headers of its requests."""
    init = {**INITIALIZE, "params": {**INITIALIZE["params"], "capabilities": capabilities or {}}}  # type: ignore[dict-item]
    opened = await http.post(url, json=init, headers=HEADERS)
    assert opened.status_code == 200, opened.text
    headers = {**HEADERS, "mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
    done = await http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
    assert done.status_code == 202
    return headers


def _call(request_id: int, name: str, arguments: dict[str, Any], **params: Any) -> dict[str, Any]:
    body = {"name": name, "arguments": arguments, **params}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": body}


def _modern(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """`body` as a modern-era request: its `_meta` envelope and routing headers."""
    params = {**body["params"], "_meta": {**META, **body["params"].get("_meta", {})}}
    name = params.get("name", params.get("uri", ""))
    headers = {**HEADERS, "mcp-protocol-version": MODERN, "mcp-method": body["method"], "mcp-name": name}
    return {**body, "params": params}, headers


def _messages(response: httpx2.Response) -> list[dict[str, Any]]:
    """The JSON-RPC messages of a response: its JSON body, or its SSE events in order."""
    if response.headers["content-type"].startswith("application/json"):
        return [response.json()]
    return [json.loads(line[len("data: ") :]) for line in response.text.splitlines() if line.startswith("data: ")]


def _text(message: dict[str, Any]) -> str:
    text: str = message["result"]["content"][0]["text"]
    return text


async def test_a_plain_call_is_answered_with_json_in_both_eras() -> None:
    async with _hub() as (hub, http):
        fast = hub.hub.endpoint.session_manager("").fast_path
        headers = await _session(http, hub.url)
        served = fast.served
        echo = await http.post(hub.url, json=_call(7, "fx__echo", {"text": "hi"}), headers=headers)
        read = await http.post(
            hub.url,
            json={"jsonrpc": "2.0", "id": "r", "method": "resources/read", "params": {"uri": "fx+fixture://info"}},
            headers=headers,
        )
        prompt = {"jsonrpc": "2.0", "id": 8, "method": "prompts/get"}
        got = await http.post(
            hub.url, json={**prompt, "params": {"name": "fx__greet", "arguments": {"name": "Ada"}}}, headers=headers
        )
        complete = {"ref": {"type": "ref/prompt", "name": "fx__greet"}, "argument": {"name": "name", "value": "al"}}
        completed = await http.post(
            hub.url,
            json={"jsonrpc": "2.0", "id": 10, "method": "completion/complete", "params": complete},
            headers=headers,
        )
        body, modern_headers = _modern(_call(9, "fx__echo", {"text": "modern"}))
        modern = await http.post(hub.url, json=body, headers=modern_headers)
        for response in (echo, read, got, completed, modern):
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/json"
        assert echo.json() == {
            "jsonrpc": "2.0",
            "id": 7,
            "result": {
                "content": [{"type": "text", "text": "hi"}],
                "structuredContent": {"text": "hi"},
                "isError": False,
            },
        }
        assert echo.headers["mcp-session-id"] == headers["mcp-session-id"]
        assert read.json()["id"] == "r" and read.json()["result"]["contents"][0]["text"] == "fx"
        assert got.json()["result"]["messages"][0]["content"]["text"] == "Hello, Ada!"
        assert completed.json()["result"]["completion"]["values"] == ["alice", "albert"]
        assert modern.json()["id"] == 9 and _text(modern.json()) == "modern"
        assert modern.json()["result"]["resultType"] == "complete"
        assert fast.served == served + 5


async def test_lists_take_the_lean_path_with_the_same_pages_as_the_sdks_path() -> None:
    async with _hub() as (hub, http):
        fast = hub.hub.endpoint.session_manager("").fast_path
        headers = await _session(http, hub.url)
        methods = ("tools/list", "resources/list", "resources/templates/list", "prompts/list")
        served = fast.served
        lean = [
            await http.post(hub.url, json={"jsonrpc": "2.0", "id": n, "method": m}, headers=headers)
            for n, m in enumerate(methods)
        ]
        body, modern_headers = _modern({"jsonrpc": "2.0", "id": 9, "method": "tools/list", "params": {}})
        del modern_headers["mcp-name"]  # a list names nothing
        modern = await http.post(hub.url, json=body, headers=modern_headers)
        assert fast.served == served + 5
        fast.enabled = False
        sdk = [
            await http.post(hub.url, json={"jsonrpc": "2.0", "id": n, "method": m}, headers=headers)
            for n, m in enumerate(methods)
        ]
        modern_sdk = await http.post(hub.url, json=body, headers=modern_headers)
        assert fast.served == served + 5
        for response in (*lean, modern):
            assert response.status_code == 200 and response.headers["content-type"] == "application/json"
        assert [response.json() for response in lean] == [_messages(response)[-1] for response in sdk]
        assert modern.json() == modern_sdk.json()
        assert "fx__echo" in {tool["name"] for tool in lean[0].json()["result"]["tools"]}


@pytest.mark.parametrize("era", ["handshake", "modern"])
async def test_a_call_that_reports_progress_after_100_ms_streams_it_as_sse_then_the_result(era: str) -> None:
    async with _hub() as (hub, http):
        call = _call(3, "fx__slow", {"delay": 0.1, "seconds": 0.1, "steps": 2}, _meta={"progressToken": "tok"})
        if era == "handshake":
            body, headers = call, await _session(http, hub.url)
        else:
            body, headers = _modern(call)
        response = await http.post(hub.url, json=body, headers=headers)
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        messages = _messages(response)
        progress = [m["params"] for m in messages[:-1]]
        assert [m["method"] for m in messages[:-1]] == ["notifications/progress"] * 2
        assert [(p["progressToken"], p["progress"], p["total"]) for p in progress] == [("tok", 1, 2), ("tok", 2, 2)]
        assert messages[-1]["id"] == 3 and _text(messages[-1]) == "done"


async def test_log_messages_sent_mid_call_stream_as_sse_before_the_result() -> None:
    async with _hub() as (hub, http):
        headers = await _session(http, hub.url)
        level = {"jsonrpc": "2.0", "id": 1, "method": "logging/setLevel", "params": {"level": "info"}}
        assert (await http.post(hub.url, json=level, headers=headers)).status_code == 200
        response = await http.post(hub.url, json=_call(2, "fx__log", {}), headers=headers)
        assert response.headers["content-type"] == "text/event-stream"
        messages = _messages(response)
        assert [(m["method"], m["params"]["level"]) for m in messages[:-1]] == [
            ("notifications/message", level) for level in ("info", "warning", "error")
        ]
        assert messages[-1]["id"] == 2 and _text(messages[-1]) == "logged"


async def test_a_sampling_request_mid_call_reaches_the_client_on_the_call_stream_and_its_answer_completes_it() -> None:
    answers = {
        "sampling/createMessage": {"role": "assistant", "content": {"type": "text", "text": "hi"}, "model": "m"},
        "elicitation/create": {"action": "accept", "content": {"name": "Ada"}},
    }
    async with _hub() as (hub, http):
        headers = await _session(http, hub.url, {"sampling": {}, "elicitation": {"form": {}}})
        served = hub.hub.endpoint.session_manager("").fast_path.served
        asked: list[str] = []
        with anyio.fail_after(30):
            async with http.stream("POST", hub.url, json=_call(5, "fx__ask", {}), headers=headers) as response:
                assert response.headers["content-type"] == "text/event-stream"
                async for line in response.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    message = json.loads(line[len("data: ") :])
                    if "method" in message:  # a request of the server's: answer it on the session
                        asked.append(message["method"])
                        answer = {"jsonrpc": "2.0", "id": message["id"], "result": answers[message["method"]]}
                        posted = await http.post(hub.url, json=answer, headers=headers)
                        assert posted.status_code == 202
                    else:
                        result = message
        assert asked == ["sampling/createMessage", "elicitation/create"]
        assert result["id"] == 5 and _text(result) == "sampled=hi elicited=Ada action=accept"
        assert hub.hub.endpoint.session_manager("").fast_path.served == served + 1


@pytest.mark.e2e
async def test_two_hundred_concurrent_callers_with_clashing_ids_each_get_exactly_their_own_answer() -> None:
    sessions, per_session = 8, 25
    async with _hub() as (hub, http):
        opened = [await _session(http, hub.url) for _ in range(sessions)]
        answers: dict[tuple[int, int], dict[str, Any]] = {}

        async def caller(session: int, request_id: int) -> None:
            body = _call(request_id, "fx__echo", {"text": f"session {session} request {request_id}"})
            response = await http.post(hub.url, json=body, headers=opened[session])
            assert response.headers["content-type"] == "application/json"
            answers[session, request_id] = response.json()

        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                for session in range(sessions):
                    for request_id in range(1, per_session + 1):  # every session uses ids 1..25
                        tg.start_soon(caller, session, request_id)
        assert len(answers) == sessions * per_session
        for (session, request_id), answer in answers.items():
            assert answer["id"] == request_id
            assert _text(answer) == f"session {session} request {request_id}"


async def _first_progress(lines: AsyncIterator[str]) -> None:
    async for line in lines:
        if line.startswith("data: ") and "notifications/progress" in line:
            return
    raise AssertionError("the stream ended before any progress")


async def _server_saw_cancellation(log_lines: LogLines) -> None:
    with anyio.fail_after(20):
        await log_lines.wait_for("slow: cancelled")  # the server's stderr, relayed to the hub's log


async def test_a_cancelled_call_on_the_lean_path_ends_the_server_side_work_and_the_session_goes_on(
    caplog: pytest.LogCaptureFixture, log_lines: LogLines
) -> None:
    caplog.set_level(logging.INFO, logger=SERVER_LOG)
    async with _hub() as (hub, http):
        fast = hub.hub.endpoint.session_manager("").fast_path
        headers = await _session(http, hub.url)
        slow = _call(11, "fx__slow", {"seconds": 60, "steps": 60}, _meta={"progressToken": 1})
        with anyio.fail_after(30):
            async with http.stream("POST", hub.url, json=slow, headers=headers) as response:
                lines = response.aiter_lines()
                await _first_progress(lines)
                assert fast.in_flight == 1
                cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 11}}
                assert (await http.post(hub.url, json=cancel, headers=headers)).status_code == 202
                rest = [json.loads(line[6:]) async for line in lines if line.startswith("data: ")]
        assert rest[-1] == {
            "jsonrpc": "2.0",
            "id": 11,
            "error": {"code": REQUEST_CANCELLED, "message": "Request cancelled"},
        }
        await _server_saw_cancellation(log_lines)
        assert fast.in_flight == 0
        after = await http.post(hub.url, json=_call(12, "fx__echo", {"text": "still here"}), headers=headers)
        assert _text(after.json()) == "still here"


async def test_a_client_that_disconnects_mid_call_on_the_lean_path_frees_it(
    caplog: pytest.LogCaptureFixture, log_lines: LogLines
) -> None:
    caplog.set_level(logging.INFO, logger=SERVER_LOG)
    async with _hub() as (hub, http):
        fast = hub.hub.endpoint.session_manager("").fast_path
        headers = await _session(http, hub.url)
        slow = _call(21, "fx__slow", {"seconds": 60, "steps": 60}, _meta={"progressToken": 1})
        with anyio.fail_after(30):
            async with http.stream("POST", hub.url, json=slow, headers=headers) as response:
                await _first_progress(response.aiter_lines())
                assert fast.in_flight == 1
            # Leaving the block unread closes the connection: the client is gone.
            await _server_saw_cancellation(log_lines)
            await fast.changes.wait_for(lambda: fast.in_flight == 0)
        after = await http.post(hub.url, json=_call(22, "fx__echo", {"text": "again"}), headers=headers)
        assert _text(after.json()) == "again"


@pytest.mark.parametrize("era", ["handshake", "modern"])
async def test_errors_on_the_lean_path_have_the_json_rpc_body_and_status_of_the_sdk_path(era: str) -> None:
    cases = [
        ("unknown tool", _call(31, "fx__nope", {}), INVALID_PARAMS),
        ("invalid params", _call(32, "fx__echo", "not an object"), INVALID_PARAMS),  # type: ignore[arg-type]
        ("hidden by the policy", _call(33, "fx__pid", {}), INVALID_PARAMS),
        ("rate limited", _call(34, "fx__whoami", {}), RATE_LIMITED),
    ]
    async with _hub() as (hub, http):
        fast = hub.hub.endpoint.session_manager("").fast_path
        session = await _session(http, hub.url) if era == "handshake" else {}
        whoami = _call(30, "fx__whoami", {})
        first_body, first_headers = (whoami, session) if era == "handshake" else _modern(whoami)
        first = await http.post(hub.url, json=first_body, headers=first_headers)
        assert _text(_messages(first)[0]) == "fx"  # the rate limit's one call
        for what, call, code in cases:
            body, headers = (call, session) if era == "handshake" else _modern(call)
            served = fast.served
            lean = await http.post(hub.url, json=body, headers=headers)
            assert fast.served == served + 1, what
            fast.enabled = False  # the same request through the SDK's path
            try:
                sdk = await http.post(hub.url, json=body, headers=headers)
            finally:
                fast.enabled = True
            assert fast.served == served + 1, what
            assert lean.headers["content-type"] == "application/json", what
            (lean_error,), (sdk_error,) = _messages(lean), _messages(sdk)
            assert lean_error["error"]["code"] == code, (what, lean_error)
            if code == RATE_LIMITED:  # a moment later, a moment shorter
                for error in (lean_error["error"], sdk_error["error"]):
                    assert error["data"].pop("retry_after_seconds") > 0
                    error["message"] = re.sub(r"retry after [0-9.]+ s", "retry after N s", error["message"])
            assert lean_error == sdk_error, what
            assert lean.status_code == sdk.status_code, what
