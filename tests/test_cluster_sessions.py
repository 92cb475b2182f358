"""Handshake-era sessions any replica serves (`hub.endpoint.session_manager`): hub replicas sharing a real
Redis and one key, each on its own loopback port, and clients whose requests land on a
different replica each time (a round-robin transport: no stickiness), with API keys on."""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp_types import InitializeRequestParams
from sse_starlette.sse import AppStatus

from hub.signals import Changes, wait_for_any
from tests.clients import http_client, mcp_client
from tests.cluster_fixtures import CALLER_KEY, OTHER_KEY, RedisServer, api_keys, replicas
from tests.conftest import RunningHub, fixture_entry, running_hub, tool_text

pytestmark = pytest.mark.anyio

KEY_ENV = "HUB_SESSIONS_TEST_KEY"
KEY = "sessions-test-cluster-key-0123456789abcdef"
VERSION = "2025-11-25"


def servers() -> dict[str, Any]:
    """The fleet (built when a test runs: an entry made at import would not be forked)."""
    return {"fx": fixture_entry("fx")}


CLUSTER = {"secret_env": KEY_ENV}


@pytest.fixture(autouse=True)
def _cluster_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


class RoundRobin(httpx2.AsyncBaseTransport):
    """Sends each request to the next replica in turn (a balancer without stickiness)."""

    def __init__(self, hubs: list[RunningHub]) -> None:
        self._ports = [httpx2.URL(h.base_url).port for h in hubs]
        self._inner = httpx2.AsyncHTTPTransport()
        self._next = 0
        self.served: list[tuple[str, int]] = []
        """(HTTP method, replica index) of every request sent."""

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        index = self._next % len(self._ports)
        self._next += 1
        request.url = request.url.copy_with(port=self._ports[index])
        self.served.append((request.method, index))
        return await self._inner.handle_async_request(request)

    def replace(self, index: int, hub: RunningHub) -> None:
        """Send what goes to replica `index` to `hub` from now on (a replica restarted)."""
        self._ports[index] = httpx2.URL(hub.base_url).port

    async def aclose(self) -> None:
        await self._inner.aclose()


@asynccontextmanager
async def spread_client(hubs: list[RunningHub], key: str, **options: Any) -> AsyncIterator[tuple[Client, RoundRobin]]:
    """An SDK client (handshake era) whose requests go round-robin over `hubs`."""
    balancer = RoundRobin(hubs)
    http = http_client(transport=balancer, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    async with (
        http,
        mcp_client(streamable_http_client(hubs[0].url, http_client=http), mode="legacy", **options) as client,
    ):
        yield client, balancer


def _headers(key: str, session_id: str | None = None) -> dict[str, str]:
    headers = {
        "Authorization": f"Bearer {key}",
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": VERSION,
    }
    if session_id is not None:
        headers["Mcp-Session-Id"] = session_id
    return headers


def _rpc(response: httpx2.Response) -> dict[str, Any]:
    """The JSON-RPC message of a response (a JSON body, or the first SSE `data:` line)."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        for line in response.text.splitlines():
            if line.startswith("data:") and line[5:].strip():
                message: dict[str, Any] = json.loads(line[5:])
                return message
        raise AssertionError(f"no message in {response.text!r}")
    body: dict[str, Any] = response.json()
    return body


async def _initialize(http: httpx2.AsyncClient, url: str, key: str) -> str:
    """Open a session on `url` (initialize + initialized); its id."""
    params = {"protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    response = await http.post(
        url, json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}, headers=_headers(key)
    )
    assert response.status_code == 200, response.text
    session_id = response.headers["mcp-session-id"]
    notified = await http.post(
        url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=_headers(key, session_id)
    )
    assert notified.status_code == 202
    return session_id


async def _list_tools(http: httpx2.AsyncClient, url: str, key: str, session_id: str) -> httpx2.Response:
    return await http.post(
        url, json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, headers=_headers(key, session_id)
    )


@pytest.mark.slow
async def test_a_session_opened_on_one_replica_lists_and_calls_on_the_others(redis_server: RedisServer) -> None:
    async with replicas(3, servers(), redis_server.url, auth=api_keys(), cluster=CLUSTER) as hubs:
        with anyio.fail_after(60):
            async with spread_client(hubs, CALLER_KEY) as (client, balancer):
                for _ in range(2):
                    tools = await client.list_tools()
                    assert "fx__echo" in [tool.name for tool in tools.tools]
                    assert tool_text(await client.call_tool("fx__echo", {"text": "hi"})) == "hi"
                posts = [index for method, index in balancer.served if method == "POST"]
                assert posts[0] == 0  # initialize
                assert set(posts[1:]) == {0, 1, 2}
                # Every replica holds a copy now: replicas 1 and 2 rebuilt it from its id.
                await _sessions_settle(hubs, lambda: all(h.hub.endpoint.open_sessions() == 1 for h in hubs))
                assert [h.hub.endpoint.session_manager("").rebuilt for h in hubs] == [0, 1, 1]


@pytest.mark.slow
async def test_another_principal_presenting_the_session_id_gets_404_on_every_replica(
    redis_server: RedisServer,
) -> None:
    async with replicas(3, servers(), redis_server.url, auth=api_keys(), cluster=CLUSTER) as hubs:
        with anyio.fail_after(60):
            async with http_client(timeout=30) as http:
                session_id = await _initialize(http, hubs[0].url, CALLER_KEY)
                for hub in hubs:
                    stolen = await _list_tools(http, hub.url, OTHER_KEY, session_id)
                    assert stolen.status_code == 404
                    assert _rpc(stolen)["error"]["message"] == "Session not found"
                    owned = await _list_tools(http, hub.url, CALLER_KEY, session_id)
                    assert owned.status_code == 200
                    assert "fx__echo" in [t["name"] for t in _rpc(owned)["result"]["tools"]]
                # The refusals built nothing: only the owner's requests left copies.
                assert [h.hub.endpoint.session_manager("").rebuilt for h in hubs] == [0, 1, 1]


@pytest.mark.slow
async def test_a_delete_on_one_replica_ends_the_session_on_every_replica(redis_server: RedisServer) -> None:
    async with replicas(3, servers(), redis_server.url, auth=api_keys(), cluster=CLUSTER) as hubs:
        with anyio.fail_after(60):
            async with http_client(timeout=30) as http:
                session_id = await _initialize(http, hubs[0].url, CALLER_KEY)
                assert (await _list_tools(http, hubs[2].url, CALLER_KEY, session_id)).status_code == 200
                deleted = await http.delete(hubs[1].url, headers=_headers(CALLER_KEY, session_id))
                assert deleted.status_code == 200
                for hub in hubs:
                    gone = await _list_tools(http, hub.url, CALLER_KEY, session_id)
                    assert gone.status_code == 404
                    assert _rpc(gone)["error"]["message"] == "Session not found"
                # The copies replicas 0 and 2 held are dropped.
                await _sessions_settle(
                    hubs, lambda: all(not h.hub.endpoint.session_manager("").holds(session_id) for h in hubs)
                )
                again = await http.delete(hubs[0].url, headers=_headers(CALLER_KEY, session_id))
                assert again.status_code == 404


async def test_a_tampered_a_foreign_or_an_expired_session_id_gets_404(redis_server: RedisServer) -> None:
    async with replicas(2, servers(), redis_server.url, auth=api_keys(), cluster=CLUSTER) as hubs:
        with anyio.fail_after(60):
            async with http_client(timeout=30) as http:
                session_id = await _initialize(http, hubs[0].url, CALLER_KEY)
                flipped = session_id[:-5] + ("A" if session_id[-5] != "A" else "B") + session_id[-4:]
                params = InitializeRequestParams(
                    protocol_version=VERSION,
                    capabilities=types.ClientCapabilities(),
                    client_info=types.Implementation(name="t", version="1"),
                )
                ids = hubs[0].hub.endpoint.session_ids
                expired, _ = ids.mint("api_key:caller", "", params, now=time.time() - ids.lifetime_seconds - 1)
                other_face, _ = ids.mint("api_key:caller", "fx", params)
                for bad in (flipped, expired, other_face, "not-a-session", session_id + "x"):
                    for hub in hubs:
                        refused = await _list_tools(http, hub.url, CALLER_KEY, bad)
                        assert refused.status_code == 404, bad
                # The id minted for the `fx` face opens on that face.
                on_face = await _list_tools(http, hubs[1].server_url("fx"), CALLER_KEY, other_face)
                assert on_face.status_code == 200


async def test_a_session_survives_the_replica_that_created_it_stopping(redis_server: RedisServer) -> None:
    cluster = {"redis_url": redis_server.url, "redis_timeout_seconds": 2.0, **CLUSTER}
    with anyio.fail_after(90):
        async with http_client(timeout=30) as http:
            async with running_hub(servers(), auth=api_keys(), cluster=cluster) as first:
                session_id = await _initialize(http, first.url, CALLER_KEY)
                assert (await _list_tools(http, first.url, CALLER_KEY, session_id)).status_code == 200
            async with running_hub(servers(), auth=api_keys(), cluster=cluster) as second:
                served = await _list_tools(http, second.url, CALLER_KEY, session_id)
                assert served.status_code == 200
                assert "fx__echo" in [t["name"] for t in _rpc(served)["result"]["tools"]]


async def test_a_hub_alone_serves_its_sessions_and_refuses_them_after_delete_or_restart() -> None:
    """Without `cluster` the key is random per process: the hub behaves as before, with
    sealed ids; a restarted hub (a new key) answers 404 and the client initializes again."""
    with anyio.fail_after(60):
        async with http_client(timeout=30) as http:
            async with running_hub(servers()) as hub:
                async with mcp_client(hub.url, mode="legacy") as client:
                    assert tool_text(await client.call_tool("fx__echo", {"text": "alone"})) == "alone"
                    assert hub.hub.endpoint.open_sessions() == 1
                await hub.hub.endpoint.session_changes.wait_for(
                    lambda: hub.hub.endpoint.open_sessions() == 0
                )  # the DELETE
                headers = _headers("unused")
                del headers["Authorization"]
                response = await http.post(
                    hub.url,
                    json={
                        "jsonrpc": "2.0",
                        "id": 1,
                        "method": "initialize",
                        "params": {
                            "protocolVersion": VERSION,
                            "capabilities": {},
                            "clientInfo": {"name": "t", "version": "1"},
                        },
                    },
                    headers=headers,
                )
                session_id = response.headers["mcp-session-id"]
                assert session_id.startswith("v1.") and all(0x21 <= ord(c) <= 0x7E for c in session_id)
                ended = await http.delete(hub.url, headers={**headers, "Mcp-Session-Id": session_id})
                assert ended.status_code == 200
                after = await http.post(
                    hub.url,
                    json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
                    headers={**headers, "Mcp-Session-Id": session_id},
                )
                assert after.status_code == 404


async def _sessions_settle(hubs: list[RunningHub], condition: Callable[[], bool]) -> None:
    """Wait until `condition` over the replicas' sessions holds: re-checked at every change of
    any replica's sessions (`Endpoint.session_changes`); the caller bounds the wait."""
    await wait_for_any(condition, *(h.hub.endpoint.session_changes for h in hubs))


def _applied(hubs: list[RunningHub]) -> int:
    return sum(h.hub.endpoint.session_manager("").applied for h in hubs)


async def test_a_log_level_set_through_one_replica_applies_on_the_others(redis_server: RedisServer) -> None:
    levels: list[str] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        levels.append(params.level)

    async with replicas(3, servers(), redis_server.url, auth=api_keys(), cluster=CLUSTER) as hubs:
        with anyio.fail_after(60), warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            async with spread_client(hubs, CALLER_KEY, logging_callback=on_log) as (client, _):
                await client.call_tool("fx__log", {})
                assert levels == ["debug", "info", "warning", "error"]
                await _sessions_settle(hubs, lambda: all(h.hub.endpoint.open_sessions() == 1 for h in hubs))
                await client.set_logging_level("error")
                await _sessions_settle(hubs, lambda: _applied(hubs) == 2)  # the two other copies
                levels.clear()
                for _ in range(3):  # one call on each replica
                    await client.call_tool("fx__log", {})
                assert levels == ["error", "error", "error"]


async def test_a_subscription_taken_through_one_replica_delivers_on_the_get_stream_another_holds(
    redis_server: RedisServer,
) -> None:
    updates: list[str] = []
    arrived = Changes()  # notified at each update the client hears

    async def on_message(message: object) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            updates.append(str(message.params.uri))
            arrived.notify()

    uri = "fx+fixture://info"
    async with replicas(3, servers(), redis_server.url, auth=api_keys(), cluster=CLUSTER) as hubs:
        with anyio.fail_after(60), warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            async with spread_client(hubs, CALLER_KEY, message_handler=on_message) as (client, balancer):
                await _sessions_settle(hubs, lambda: all(h.hub.endpoint.open_sessions() == 1 for h in hubs))
                gets = [index for method, index in balancer.served if method == "GET"]
                await client.subscribe_resource(uri)
                subscribed_on = balancer.served[-1][1]
                assert gets and subscribed_on != gets[0]  # the GET stream is held elsewhere
                await _sessions_settle(hubs, lambda: _applied(hubs) == 2)
                for count in (1, 2, 3):  # a touch through each replica: each update once
                    await client.call_tool("fx__touch", {})
                    await arrived.wait_for(lambda count=count: len(updates) >= count)
                assert updates == [uri, uri, uri]
                await client.unsubscribe_resource(uri)
                await _sessions_settle(hubs, lambda: _applied(hubs) == 4)
                assert all(len(h.hub.endpoint.subscriptions) == 0 for h in hubs)


async def test_answers_to_sampling_and_elicitation_posted_to_other_replicas_reach_the_replica_that_asked(
    redis_server: RedisServer,
) -> None:
    async def sampling(ctx: object, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text="yes"), model="m"
        )

    async def elicitation(ctx: object, params: types.ElicitRequestParams) -> types.ElicitResult:
        return types.ElicitResult(action="accept", content={"name": "ada"})

    async with replicas(3, servers(), redis_server.url, auth=api_keys(), cluster=CLUSTER) as hubs:
        with anyio.fail_after(60):
            async with spread_client(
                hubs, CALLER_KEY, sampling_callback=sampling, elicitation_callback=elicitation
            ) as (client, balancer):
                for _ in range(3):  # each call served by another replica
                    result = await client.call_tool("fx__ask", {})
                    assert tool_text(result) == "sampled=yes elicited=ada action=accept"
                answers = [h.hub.endpoint.answers for h in hubs]
                # Round-robin: every answer landed on a replica other than the one that asked.
                assert sum(a.forwarded for a in answers) == 6
                assert sum(a.received for a in answers) == 6
                assert {index for method, index in balancer.served if method == "POST"} == {0, 1, 2}


async def test_an_idle_copy_is_freed_and_the_next_request_rebuilds_the_session() -> None:
    with anyio.fail_after(60):
        async with (
            http_client(timeout=30) as http,
            running_hub(servers(), session_idle_timeout_seconds=1.0) as hub,
        ):
            key = "unused"
            headers = {k: v for k, v in _headers(key).items() if k != "Authorization"}
            params = {"protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
            opened = await http.post(
                hub.url, json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}, headers=headers
            )
            session_id = opened.headers["mcp-session-id"]
            manager = hub.hub.endpoint.session_manager("")
            await manager.changes.wait_for(lambda: not manager.holds(session_id))  # idle: the copy is freed
            listed = await http.post(
                hub.url,
                json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
                headers={**headers, "Mcp-Session-Id": session_id},
            )
            assert listed.status_code == 200
            assert "fx__echo" in [t["name"] for t in _rpc(listed)["result"]["tools"]]
            assert manager.rebuilt == 1


async def test_with_redis_down_any_replica_still_serves_a_session_and_a_delete_holds_where_it_was_taken(
    redis_server: RedisServer,
) -> None:
    async with replicas(2, servers(), redis_server.url, auth=api_keys(), cluster=CLUSTER) as (a, b):
        with anyio.fail_after(60):
            async with http_client(timeout=30) as http:
                session_id = await _initialize(http, a.url, CALLER_KEY)
                await redis_server.killed()
                served = await _list_tools(http, b.url, CALLER_KEY, session_id)  # the id needs no Redis
                assert served.status_code == 200
                assert b.hub.store.health().status == "unavailable"
                deleted = await http.delete(b.url, headers=_headers(CALLER_KEY, session_id))
                assert deleted.status_code == 200
                assert (await _list_tools(http, b.url, CALLER_KEY, session_id)).status_code == 404


async def test_a_profile_session_opens_on_that_profile_of_another_replica_only(redis_server: RedisServer) -> None:
    profiles = {"echoes": {"include": ["fx__echo"]}}
    async with replicas(2, servers(), redis_server.url, auth=api_keys(), cluster=CLUSTER, profiles=profiles) as hubs:
        with anyio.fail_after(60):
            async with http_client(timeout=30) as http:
                profile_url = f"{hubs[0].base_url}/profiles/echoes/mcp"
                session_id = await _initialize(http, profile_url, CALLER_KEY)
                served = await _list_tools(http, f"{hubs[1].base_url}/profiles/echoes/mcp", CALLER_KEY, session_id)
                assert served.status_code == 200
                assert [t["name"] for t in _rpc(served)["result"]["tools"]] == ["fx__echo"]
                assert hubs[1].hub.endpoint.session_manager("profile:echoes").rebuilt == 1
                for elsewhere in (hubs[1].url, hubs[1].server_url("fx")):  # another face: unknown there
                    assert (await _list_tools(http, elsewhere, CALLER_KEY, session_id)).status_code == 404


@pytest.mark.slow
async def test_a_client_keeps_its_session_while_every_replica_restarts_in_turn(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The replicas share this process: sse-starlette would end every SSE response of the
    # process when one of them stops (its shutdown watcher reads the stopping uvicorn server);
    # separate processes, as in a deployment, do not share that.
    monkeypatch.setattr(AppStatus, "enable_automatic_graceful_drain", False)
    cluster = {"redis_url": redis_server.url, "redis_timeout_seconds": 2.0, **CLUSTER}

    async def replica(stop: anyio.Event, *, task_status: anyio.abc.TaskStatus[RunningHub]) -> None:
        async with running_hub(servers(), auth=api_keys(), cluster=cluster) as hub:
            task_status.started(hub)
            await stop.wait()

    with anyio.fail_after(120):
        async with anyio.create_task_group() as tg:
            stops = [anyio.Event() for _ in range(2)]
            hubs = [await tg.start(replica, stop) for stop in stops]
            async with spread_client(hubs, CALLER_KEY) as (client, balancer):
                assert tool_text(await client.call_tool("fx__echo", {"text": "before"})) == "before"
                for index in range(2):
                    stops[index].set()  # the replica stops (first the one that opened the session)
                    stopping = hubs[index].hub.endpoint
                    await stopping.session_changes.wait_for(lambda stopping=stopping: stopping.open_sessions() == 0)
                    stops[index] = anyio.Event()
                    hubs[index] = await tg.start(replica, stops[index])
                    balancer.replace(index, hubs[index])
                    for _ in range(2):  # one call on each replica
                        assert tool_text(await client.call_tool("fx__echo", {"text": "after"})) == "after"
            for stop in stops:
                stop.set()
