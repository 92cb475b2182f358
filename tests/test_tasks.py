"""Tasks through the hub (`hub.endpoint.tasks`), with SDK clients of both eras against the conformance
fixture (tests/servers/conformance_server.py, tasks in both eras) behind a real hub:

- modern era (2026-07-28, the `io.modelcontextprotocol/tasks` extension): create a task with
  `tools/call`, poll `tasks/get` until the result is inlined, answer its input with
  `tasks/update`, cancel one;
- handshake era (2025-11-25 experimental tasks): `tools/call` with `params.task`, `tasks/get`,
  `tasks/result` (the task's questions relayed, its status notifications relayed), `tasks/list`,
  `tasks/cancel`;
- tasks are the creating principal's own; the policy guards their creation; a face advertises
  tasks only while a ready server offers them; task ids name the server that holds them.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client, MCPError
from mcp.client.extension import ClientExtension, NotificationBinding
from mcp.client.streamable_http import streamable_http_client
from mcp_types import (
    HEADER_MISMATCH,
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    MISSING_REQUIRED_CLIENT_CAPABILITY,
)
from pydantic import ConfigDict

from adapters._sdk import send_raw_request
from hub.endpoint.task_routes import TaskRoute, TaskRoutes
from hub.signals import Changes
from hub.task_wire import TASKS_EXTENSION, CreatedTask, TasksClientExtension, task_request
from tests.clients import http_client, mcp_client
from tests.conftest import NPM_CACHE, ROOT, fixture_entry, running_hub, stdio_entry, until

pytestmark = pytest.mark.anyio

CONFORMANCE_SERVER = str(ROOT / "tests" / "servers" / "conformance_server.py")
ALICE_KEY = "alice-key-0123456789abcdef"
BOB_KEY = "bob-key-0123456789abcdef0"
TERMINAL = ("completed", "failed", "cancelled")


def _sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


AUTH = {
    "api_keys": [
        {"id": "alice", "key_sha256": _sha(ALICE_KEY), "scopes": ["hub:call"]},
        {"id": "bob", "key_sha256": _sha(BOB_KEY), "scopes": ["hub:call"]},
    ]
}


def tasks_server(**extra: Any) -> dict[str, Any]:
    """A `servers:` entry: the conformance fixture over stdio (tasks in both eras)."""
    return stdio_entry(CONFORMANCE_SERVER, "--transport", "stdio", **extra)


class Raw(types.Result):
    """A result as the hub sent it."""

    model_config = ConfigDict(extra="allow")


class StatusWatch(ClientExtension):
    """Collects `notifications/tasks/status` (2025-11-25) a client receives."""

    identifier = "io.example/task-status-watch"

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.changes = Changes()
        """Notified at each status notification collected."""

    def notifications(self) -> list[NotificationBinding[Any]]:
        async def collect(params: Raw) -> None:
            self.seen.append(params.model_dump(by_alias=True, exclude_unset=True))
            self.changes.notify()

        return [NotificationBinding(method="notifications/tasks/status", params_type=Raw, handler=collect)]


@asynccontextmanager
async def connect(url: str, mode: str, key: str | None = None, **options: Any) -> AsyncIterator[Client]:
    """An SDK client of the hub in `mode` (`legacy`: 2025-11-25; `auto`: 2026-07-28), as the
    principal of API key `key` (None: no credential)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with http_client(headers=headers, timeout=30) as http:
        async with mcp_client(streamable_http_client(url, http_client=http), mode=mode, **options) as client:
            yield client


def modern(url: str, key: str | None = None, **options: Any) -> Any:
    """A 2026-07-28 client that declares the tasks extension."""
    return connect(url, "auto", key, extensions=[TasksClientExtension()], **options)


async def call(client: Client, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """One `tasks/*` request; the result as the hub sent it (its own `_meta` stamp aside)."""
    result = await client.session.send_request(task_request(method, params), Raw)
    answer = result.model_dump(by_alias=True, exclude_unset=True)
    meta = answer.pop("_meta", None) or {}
    assert set(meta) <= {"io.modelcontextprotocol/serverInfo"}, meta
    return answer


async def create_modern(client: Client, tool: str, arguments: dict[str, Any]) -> CreatedTask:
    result = await client.session.call_tool(tool, arguments, allow_claimed=True)
    assert isinstance(result, CreatedTask), result
    return result


async def create_legacy(client: Client, tool: str, arguments: dict[str, Any], ttl: int = 60_000) -> dict[str, Any]:
    """A 2025-11-25 task-augmented `tools/call`; the `Task` it created."""
    raw = await send_raw_request(
        client.session, "tools/call", {"name": tool, "arguments": arguments, "task": {"ttl": ttl}}
    )
    assert set(raw) == {"task"}, raw
    return dict(raw["task"])


async def settle(client: Client, task_id: str, *, until_status: tuple[str, ...] = TERMINAL) -> dict[str, Any]:
    """Poll `tasks/get` until the task reaches one of `until_status` (bounded by the caller)."""
    latest: dict[str, Any] = {}

    async def reached() -> bool:
        latest.update(await call(client, "tasks/get", {"taskId": task_id}))
        return latest["status"] in until_status

    await until(reached)
    return latest


def legacy_hub(**settings: Any) -> Any:
    """A hub on two task servers spoken to in the handshake era (2025-11-25 tasks)."""
    return running_hub(
        {"a": tasks_server(protocol="legacy"), "b": tasks_server(protocol="legacy")}, auth=AUTH, **settings
    )


# ---- modern era (2026-07-28, SEP-2663) ----


async def test_a_modern_era_task_is_created_polled_and_its_result_inlined_through_the_hub() -> None:
    async with running_hub({"conf": tasks_server()}, auth=AUTH) as hub, modern(hub.url, ALICE_KEY) as client:
        assert TASKS_EXTENSION in (client.server_capabilities.extensions or {})
        assert client.server_capabilities.tasks is None  # the 2025-11-25 slot is not used in this era
        created = await create_modern(client, "conf__slow_compute", {"seconds": 0.5, "label": "x"})
        assert created.task_id.startswith("conf+")
        wire = created.model_dump(by_alias=True, exclude_none=True)
        assert wire["status"] == "working" and wire["ttlMs"] == 300_000 and "requestState" not in wire

        working = await call(client, "tasks/get", {"taskId": created.task_id})
        assert (working["taskId"], working["resultType"]) == (created.task_id, "complete")
        with anyio.fail_after(20):
            done = await settle(client, created.task_id)

        assert done["status"] == "completed"
        assert done["result"]["content"][0]["text"] == "Computed x in 0.5 s"
        assert "io.modelcontextprotocol/serverInfo" not in done["result"].get("_meta", {})


async def test_a_modern_era_task_waits_for_input_answered_with_tasks_update() -> None:
    async with running_hub({"conf": tasks_server()}, auth=AUTH) as hub, modern(hub.url, ALICE_KEY) as client:
        created = await create_modern(client, "conf__multi_input", {})
        with anyio.fail_after(20):
            waiting = await settle(client, created.task_id, until_status=("input_required", *TERMINAL))
        assert waiting["status"] == "input_required"
        first, second = sorted(waiting["inputRequests"])
        assert waiting["inputRequests"][first]["method"] == "elicitation/create"

        ack = await call(
            client,
            "tasks/update",
            {"taskId": created.task_id, "inputResponses": {first: {"action": "accept", "content": {"name": "A"}}}},
        )
        assert ack == {"resultType": "complete"}
        partial = await call(client, "tasks/get", {"taskId": created.task_id})
        assert partial["status"] == "input_required" and list(partial["inputRequests"]) == [second]
        await call(
            client, "tasks/update", {"taskId": created.task_id, "inputResponses": {second: {"action": "decline"}}}
        )
        with anyio.fail_after(20):
            done = await settle(client, created.task_id)

        assert done["status"] == "completed"
        assert "Both inputs received" in done["result"]["content"][0]["text"]


async def test_a_modern_era_task_is_cancelled_through_the_hub() -> None:
    async with running_hub({"conf": tasks_server()}, auth=AUTH) as hub, modern(hub.url, ALICE_KEY) as client:
        created = await create_modern(client, "conf__slow_compute", {"seconds": 60})
        ack = await call(client, "tasks/cancel", {"taskId": created.task_id})
        with anyio.fail_after(20):
            done = await settle(client, created.task_id)
        again = await call(client, "tasks/cancel", {"taskId": created.task_id})

        assert ack == {"resultType": "complete"} and again == {"resultType": "complete"}
        assert done["status"] == "cancelled"


async def test_a_modern_era_client_without_the_extension_gets_a_synchronous_result_or_minus_32021() -> None:
    async with running_hub({"conf": tasks_server()}, auth=AUTH) as hub, connect(hub.url, "auto", ALICE_KEY) as client:
        inline = await client.call_tool("conf__slow_compute", {"seconds": 0})
        with pytest.raises(MCPError) as required:
            await client.call_tool("conf__failing_job", {})
        with pytest.raises(MCPError) as gated:
            await call(client, "tasks/get", {"taskId": "conf+anything"})

    assert inline.content[0].text == "Computed job in 0 s"  # type: ignore[union-attr]
    assert required.value.code == MISSING_REQUIRED_CLIENT_CAPABILITY
    assert required.value.error.data == {"requiredCapabilities": {"extensions": {TASKS_EXTENSION: {}}}}
    assert gated.value.code == MISSING_REQUIRED_CLIENT_CAPABILITY


async def test_a_task_request_whose_mcp_name_header_differs_from_its_task_id_is_refused() -> None:
    async with running_hub({"conf": tasks_server()}, auth=AUTH) as hub:
        async with modern(hub.url, ALICE_KEY) as client:
            created = await create_modern(client, "conf__slow_compute", {"seconds": 60})
        meta = {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {"extensions": {TASKS_EXTENSION: {}}},
        }
        headers = {
            "Authorization": f"Bearer {ALICE_KEY}",
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": "2026-07-28",
            "Mcp-Method": "tasks/get",
            "Mcp-Name": "conf+somebody-else",
        }
        body = {"jsonrpc": "2.0", "id": 1, "method": "tasks/get", "params": {"taskId": created.task_id, "_meta": meta}}
        async with http_client(timeout=30) as http:
            answer = (await http.post(hub.url, json=body, headers=headers)).json()

    assert answer["error"]["code"] == HEADER_MISMATCH


async def test_task_ids_name_the_replica_that_holds_each_task_and_every_one_resolves() -> None:
    member = stdio_entry(CONFORMANCE_SERVER, "--transport", "stdio")
    servers = {"conf": {"replicas": [member, member]}}
    async with running_hub(servers, auth=AUTH) as hub, modern(hub.url, ALICE_KEY) as client:
        created = [await create_modern(client, "conf__slow_compute", {"seconds": 0.2}) for _ in range(4)]
        with anyio.fail_after(30):
            done = [await settle(client, task.task_id) for task in created]

    assert {task.task_id.split("+")[0] for task in created} == {"conf/1", "conf/2"}
    assert [task["status"] for task in done] == ["completed"] * 4


# ---- handshake era (2025-11-25 experimental tasks) ----


async def test_a_handshake_era_task_is_created_polled_and_its_result_fetched_through_the_hub() -> None:
    watch = StatusWatch()
    asked: list[dict[str, Any]] = []

    async def elicit(context: object, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append({"message": params.message, "meta": params.meta})
        return types.ElicitResult(action="accept", content={"confirm": True})

    async with (
        legacy_hub() as hub,
        connect(hub.url, "legacy", ALICE_KEY, extensions=[watch], elicitation_callback=elicit) as client,
    ):
        offered = client.server_capabilities.tasks
        assert offered is not None and offered.list is not None and offered.cancel is not None
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert tools["a__failing_job"].execution == types.ToolExecution(task_support="required")

        task = await create_legacy(client, "a__slow_compute", {"seconds": 0.3})
        got = await client.session.send_request(
            types.GetTaskRequest(params=types.GetTaskRequestParams(task_id=task["taskId"])), types.GetTaskResult
        )
        with anyio.fail_after(20):
            result = await client.session.send_request(
                types.GetTaskPayloadRequest(params=types.GetTaskPayloadRequestParams(task_id=task["taskId"])),
                types.CallToolResult,
            )
            asking = await create_legacy(client, "a__confirm_delete", {"filename": "notes.txt"})
            confirmed = await client.session.send_request(
                types.GetTaskPayloadRequest(params=types.GetTaskPayloadRequestParams(task_id=asking["taskId"])),
                types.CallToolResult,
            )
            await watch.changes.wait_for(
                lambda: any(s.get("taskId") == asking["taskId"] and s.get("status") == "completed" for s in watch.seen)
            )

    assert task["taskId"].startswith("a+") and task["ttl"] == 60_000
    assert got.task_id == task["taskId"] and got.status in ("working", "completed")
    assert result.content[0].text == "Computed job in 0.3 s"  # type: ignore[union-attr]
    assert result.meta == {"io.modelcontextprotocol/related-task": {"taskId": task["taskId"]}}
    # The task's question reached the client tagged with the hub's task id, and its answer the task.
    assert asked == [
        {"message": "Delete notes.txt?", "meta": {"io.modelcontextprotocol/related-task": {"taskId": asking["taskId"]}}}
    ]
    assert confirmed.content[0].text == "Deleted notes.txt"  # type: ignore[union-attr]
    statuses = [s["status"] for s in watch.seen if s["taskId"] == asking["taskId"]]
    assert statuses == ["input_required", "working", "completed"]


async def test_a_handshake_era_task_is_cancelled_and_a_finished_one_cannot_be_cancelled() -> None:
    async with legacy_hub() as hub, connect(hub.url, "legacy", ALICE_KEY) as client:
        task = await create_legacy(client, "a__slow_compute", {"seconds": 60})
        cancelled = await client.session.send_request(
            types.CancelTaskRequest(params=types.CancelTaskRequestParams(task_id=task["taskId"])),
            types.CancelTaskResult,
        )
        with pytest.raises(MCPError) as again:
            await client.session.send_request(
                types.CancelTaskRequest(params=types.CancelTaskRequestParams(task_id=task["taskId"])),
                types.CancelTaskResult,
            )

    assert (cancelled.task_id, cancelled.status) == (task["taskId"], "cancelled")
    assert again.value.code == INVALID_PARAMS


async def test_tasks_list_merges_the_callers_own_tasks_across_servers() -> None:
    async with legacy_hub() as hub:
        async with connect(hub.url, "legacy", ALICE_KEY) as alice, connect(hub.url, "legacy", BOB_KEY) as bob:
            mine = [
                await create_legacy(alice, tool, {"seconds": 30}) for tool in ("a__slow_compute", "b__slow_compute")
            ]
            theirs = await create_legacy(bob, "a__slow_compute", {"seconds": 30})
            listed = await alice.session.send_request(types.ListTasksRequest(), types.ListTasksResult)
            listed_by_bob = await bob.session.send_request(types.ListTasksRequest(), types.ListTasksResult)

    assert sorted(task.task_id for task in listed.tasks) == sorted(task["taskId"] for task in mine)
    assert {task.task_id.split("+")[0] for task in listed.tasks} == {"a", "b"}
    assert [task.task_id for task in listed_by_bob.tasks] == [theirs["taskId"]]
    assert all(task.status == "working" for task in listed.tasks)


# ---- principals, policy, advertisement ----


async def test_another_principal_can_neither_see_nor_use_a_task_in_either_era() -> None:
    async with running_hub({"conf": tasks_server(), "old": tasks_server(protocol="legacy")}, auth=AUTH) as hub:
        async with modern(hub.url, ALICE_KEY) as alice, modern(hub.url, BOB_KEY) as bob:
            created = await create_modern(alice, "conf__slow_compute", {"seconds": 60})
            refusals = []
            for method in ("tasks/get", "tasks/cancel"):
                with pytest.raises(MCPError) as refused:
                    await call(bob, method, {"taskId": created.task_id})
                refusals.append(refused.value)
            with pytest.raises(MCPError) as unknown:
                await call(bob, "tasks/get", {"taskId": "conf+no-such-task"})
            still_working = await call(alice, "tasks/get", {"taskId": created.task_id})
        async with connect(hub.url, "legacy", ALICE_KEY) as alice, connect(hub.url, "legacy", BOB_KEY) as bob:
            task = await create_legacy(alice, "old__slow_compute", {"seconds": 60})
            task_id = task["taskId"]
            for request in (
                types.GetTaskRequest(params=types.GetTaskRequestParams(task_id=task_id)),
                types.GetTaskPayloadRequest(params=types.GetTaskPayloadRequestParams(task_id=task_id)),
                types.CancelTaskRequest(params=types.CancelTaskRequestParams(task_id=task_id)),
            ):
                with pytest.raises(MCPError) as refused:
                    await bob.session.send_request(request, Raw)
                refusals.append(refused.value)
            listed_by_bob = await bob.session.send_request(types.ListTasksRequest(), types.ListTasksResult)
            alive = await alice.session.send_request(
                types.GetTaskRequest(params=types.GetTaskRequestParams(task_id=task["taskId"])), types.GetTaskResult
            )

    # Exactly the answer an unknown task id gets: nothing about the task leaks.
    assert [error.code for error in refusals] == [INVALID_PARAMS] * 5
    assert refusals[0].message == unknown.value.message.replace("conf+no-such-task", created.task_id)
    assert still_working["status"] == "working" and alive.status == "working"
    assert listed_by_bob.tasks == []


async def test_a_principal_the_policy_refuses_a_tool_can_create_no_task_for_it() -> None:
    policies = [{"principal": "alice", "allow": ["*"]}, {"principal": "bob", "allow": ["*"], "deny": ["*slow_compute"]}]
    async with running_hub(
        {"conf": tasks_server(), "old": tasks_server(protocol="legacy")}, auth=AUTH, policies=policies
    ) as hub:
        async with modern(hub.url, BOB_KEY) as bob:
            with pytest.raises(MCPError) as modern_refused:
                await bob.session.call_tool("conf__slow_compute", {"seconds": 1}, allow_claimed=True)
        async with connect(hub.url, "legacy", BOB_KEY) as bob:
            with pytest.raises(MCPError) as legacy_refused:
                await send_raw_request(
                    bob.session, "tools/call", {"name": "old__slow_compute", "arguments": {}, "task": {}}
                )
        routed = len(hub.hub.endpoint.tasks.routes)

    assert modern_refused.value.code == INVALID_PARAMS and "conf__slow_compute" in modern_refused.value.message
    assert legacy_refused.value.code == INVALID_PARAMS
    assert routed == 0


async def test_a_face_advertises_tasks_only_while_a_ready_server_of_it_offers_them() -> None:
    servers = {"plain": fixture_entry("plain"), "conf": tasks_server(), "old": tasks_server(protocol="legacy")}
    async with running_hub(servers) as hub:
        seen: dict[tuple[str, str], tuple[bool, bool]] = {}
        for face, url in (
            ("plain", hub.server_url("plain")),
            ("conf", hub.server_url("conf")),
            ("old", hub.server_url("old")),
            ("all", hub.url),
        ):
            for mode in ("legacy", "auto"):
                async with connect(url, mode) as client:
                    caps = client.server_capabilities
                    seen[face, mode] = (caps.tasks is not None, TASKS_EXTENSION in (caps.extensions or {}))
        async with connect(hub.server_url("plain"), "legacy") as client:
            with pytest.raises(MCPError) as no_method:
                await client.session.send_request(types.ListTasksRequest(), types.ListTasksResult)
        old = hub.hub.fleet.get("old")
        assert old is not None
        await hub.hub.fleet.stop(old)  # no ready server of the face offers tasks any more
        async with connect(hub.server_url("old"), "legacy") as client:
            gone = client.server_capabilities.tasks

    assert gone is None
    assert seen == {
        ("plain", "legacy"): (False, False),
        ("plain", "auto"): (False, False),
        ("conf", "legacy"): (False, False),  # spoken to in the modern era: no 2025-11-25 tasks to relay
        ("conf", "auto"): (False, True),
        ("old", "legacy"): (True, False),
        ("old", "auto"): (False, False),  # spoken to in the handshake era: no SEP-2663 tasks to relay
        ("all", "legacy"): (True, False),
        ("all", "auto"): (False, True),
    }
    assert no_method.value.code == METHOD_NOT_FOUND


# ---- the route table ----


def _route(principal: str, exposed_id: str, expires: float) -> TaskRoute:
    return TaskRoute(exposed_id, principal, "s", "s", exposed_id, ("s", "s__t"), "t", "2026-07-28", 0.0, expires)


def test_the_route_table_keeps_each_principals_own_tasks_within_bounds_and_forgets_expired_ones() -> None:
    routes = TaskRoutes(max_per_principal=2, max_routes=3)
    far = time.monotonic() + 3600
    for exposed in ("s+1", "s+2", "s+3"):
        routes.add(_route("api_key:alice", exposed, far))
    assert [r.exposed_id for r in routes.of("api_key:alice")] == ["s+2", "s+3"]  # her oldest forgotten

    routes.add(_route("api_key:bob", "s+1", far))
    assert routes.get("api_key:bob", "s+2") is None  # alice's task id is not bob's
    assert [r.principal for r in routes.holding("s+1")] == ["api_key:bob"]

    routes.add(_route("api_key:carol", "s+9", far))
    assert len(routes) == 3 and [r.exposed_id for r in routes.of("api_key:alice")] == ["s+3"]  # the oldest overall

    expired = TaskRoutes(max_per_principal=2, max_routes=3)
    expired.add(_route("api_key:bob", "s+old", time.monotonic() - 1))
    assert expired.get("api_key:bob", "s+old") is None and len(expired) == 0


# ---- a third-party server ----


@pytest.mark.e2e
async def test_a_third_party_servers_required_task_tool_is_callable_through_the_hub(npm_servers: Any) -> None:
    """server-everything's `simulate-research-query` (taskSupport: required, 2025-11-25 tasks;
    asks a question mid-task when `ambiguous`) through the hub."""
    asked: list[Any] = []

    async def elicit(context: object, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params.meta)
        return types.ElicitResult(action="accept", content={"interpretation": "programming"})

    entry = {"command": str(NPM_CACHE / "node_modules" / ".bin" / "mcp-server-everything"), "args": ["stdio"]}
    async with (
        running_hub({"everything": entry}) as hub,
        connect(hub.url, "legacy", elicitation_callback=elicit) as client,
    ):
        offered = client.server_capabilities.tasks
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        task = await create_legacy(
            client, "everything__simulate-research-query", {"topic": "python", "ambiguous": True}
        )
        with anyio.fail_after(60):
            result = await client.session.send_request(
                types.GetTaskPayloadRequest(params=types.GetTaskPayloadRequestParams(task_id=task["taskId"])),
                types.CallToolResult,
            )

    assert tools["everything__simulate-research-query"].execution == types.ToolExecution(task_support="required")
    assert offered is not None
    assert "Clarification**: programming" in result.content[0].text  # type: ignore[union-attr]
    assert asked == [{"io.modelcontextprotocol/related-task": {"taskId": task["taskId"]}}]
