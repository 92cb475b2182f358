"""The wire shapes of tasks as the hub's server connections send and receive them, in both
protocol eras.

- 2026-07-28: the `io.modelcontextprotocol/tasks` extension (SEP-2663). A server that the
  client (through the hub) declared the extension to may answer `tools/call` with a flat
  `CreateTaskResult` (`resultType: "task"`, `taskId`, `status`, `createdAt`, `lastUpdatedAt`,
  `ttlMs`, `pollIntervalMs`); then `tasks/get`, `tasks/update`, `tasks/cancel` (each carrying
  `Mcp-Name: <taskId>` over HTTP) and optional `notifications/tasks`.
- 2025-11-25: the experimental tasks of that revision. A `tools/call` with `params.task`
  (`{"ttl": ms}`) is answered `{"task": Task}`; then `tasks/get`, `tasks/result`,
  `tasks/list`, `tasks/cancel` and optional `notifications/tasks/status`.

`TasksClientExtension` is what makes an `mcp.Client` accept the first (a result claim, so the
SDK parses `resultType: "task"` instead of rejecting it) and observe status notifications of
both; `call_tool_as_task` sends the second (the SDK's public API cannot receive it, see
`adapters._sdk.send_raw_request`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, Literal, TypeVar

import mcp_types as types
from mcp import MCPError
from mcp.client.extension import ClaimContext, ClientExtension, NotificationBinding, ResultClaim
from mcp.client.session import ClientSession
from mcp.shared.dispatcher import ProgressFnT
from mcp_types import INTERNAL_ERROR, PROTOCOL_VERSION_META_KEY, SERVER_INFO_META_KEY
from pydantic import ConfigDict, Field

from adapters._sdk import send_raw_request
from hub.result_cap import oversized

__all__ = [
    "RELATED_TASK_META_KEY",
    "STATUS_NOTIFICATIONS",
    "TASKS_EXTENSION",
    "CreatedTask",
    "LegacyCreatedTask",
    "TasksClientExtension",
    "call_tool_as_task",
    "capped_tool_result",
    "expose_related_task",
    "expose_task_ids",
    "task_request",
]

TASKS_EXTENSION: Final = "io.modelcontextprotocol/tasks"
"""The tasks extension's identifier (SEP-2663), in `capabilities.extensions`."""
RELATED_TASK_META_KEY: Final = "io.modelcontextprotocol/related-task"
"""`_meta` key tying a message to a task (2025-11-25 "Associating Task-Related Messages")."""
STATUS_NOTIFICATIONS: Final = ("notifications/tasks/status", "notifications/tasks")
"""Task status notifications: 2025-11-25, and SEP-2663."""
_HOP_META_KEYS: Final = (SERVER_INFO_META_KEY, PROTOCOL_VERSION_META_KEY)


class CreatedTask(types.Result):
    """A SEP-2663 `CreateTaskResult` (`Result & Task`, `resultType: "task"`) as a server sent it:
    every wire field is kept. `member` is the server connection that answered (set by it)."""

    model_config = ConfigDict(extra="allow")
    result_type: Literal["task"] = "task"
    task_id: str
    member: str | None = Field(default=None, exclude=True)


class LegacyCreatedTask(types.Result):
    """A 2025-11-25 `CreateTaskResult` (`{"task": Task}`) as a server sent it. `member` as in
    `CreatedTask`."""

    model_config = ConfigDict(extra="allow")
    task: dict[str, Any]
    member: str | None = Field(default=None, exclude=True)


class _TaskRequest(types.Request[dict[str, Any], str]):
    """A `tasks/*` request naming one task; SEP-2663 routes it by `Mcp-Name: <taskId>`."""

    name_param = "taskId"


class _TaskListRequest(types.Request[dict[str, Any], str]):
    """`tasks/list` (2025-11-25): names no task."""


_ParamsT = TypeVar("_ParamsT", bound=types.RequestParams)


def expose_related_task(params: _ParamsT, member: str) -> _ParamsT:
    """`params` of a server-to-client request (sampling, elicitation) with its
    `io.modelcontextprotocol/related-task` task id in the hub's namespace
    (`<member>+<task id>`, `hub.endpoint.tasks`), so the client can tell which of its tasks asks."""
    meta = params.meta
    related = meta.get(RELATED_TASK_META_KEY) if meta else None
    if not isinstance(related, dict) or not isinstance(related.get("taskId"), str):
        return params
    exposed = {**related, "taskId": f"{member}+{related['taskId']}"}
    return params.model_copy(update={"meta": {**(meta or {}), RELATED_TASK_META_KEY: exposed}})


def task_request(method: str, params: Mapping[str, Any]) -> types.Request[dict[str, Any], str]:
    """The request object for `method` (`tasks/get`, `tasks/update`, `tasks/cancel`,
    `tasks/result`, `tasks/list`) with `params` (`taskId`, ...) as they go on the wire."""
    if "taskId" in params:
        return _TaskRequest(method=method, params=dict(params))
    return _TaskListRequest(method=method, params=dict(params))


class _TaskStatusParams(types.NotificationParams):
    model_config = ConfigDict(extra="allow")
    task_id: str


async def _unrequested(result: CreatedTask, context: ClaimContext) -> types.CallToolResult:
    """A task answered to a call that did not ask for one (`Client.call_tool` resolves claims):
    the hub relays a task only where its client declared the extension, so this is a server
    that created a task for a client that cannot take it."""
    raise MCPError(INTERNAL_ERROR, f"the server answered {context.tool_name!r} with a task the client did not ask for")


class TasksClientExtension(ClientExtension):
    """The hub's `mcp.Client` side of tasks: accepts SEP-2663 `CreateTaskResult`s on
    `tools/call` (modern era) and hands every task status notification (both eras) to
    `on_status` as its wire params (`{"taskId": ..., "status": ..., ...}`).

    The extension is advertised in the connection's own capabilities; on a routed request the
    server sees the calling client's capabilities instead (`hub.servers`), so a server creates
    tasks only for clients that declared the extension themselves.
    """

    identifier = TASKS_EXTENSION

    def __init__(self, on_status: Callable[[dict[str, Any]], Awaitable[None]] | None = None) -> None:
        self._on_status = on_status

    def claims(self) -> Sequence[ResultClaim[Any]]:
        return [ResultClaim(result_type="task", model=CreatedTask, resolve=_unrequested)]

    def notifications(self) -> Sequence[NotificationBinding[Any]]:
        return [
            NotificationBinding(method=method, params_type=_TaskStatusParams, handler=self._status)
            for method in STATUS_NOTIFICATIONS
        ]

    async def _status(self, params: _TaskStatusParams) -> None:
        if self._on_status is not None:
            await self._on_status(params.model_dump(by_alias=True, mode="json", exclude_none=True))


async def call_tool_as_task(
    session: ClientSession,
    name: str,
    arguments: dict[str, Any] | None,
    task: Mapping[str, Any],
    *,
    on_progress: ProgressFnT | None = None,
) -> types.CallToolResult | LegacyCreatedTask:
    """A 2025-11-25 task-augmented `tools/call` (`params.task`, e.g. `{"ttl": 60000}`): the
    server's `CreateTaskResult`, or its `CallToolResult` when it ran the call without a task
    (a server that does not support tasks for the tool ignores `task`, 2025-11-25 "Task
    Support and Handling").

    :raises MCPError: the server's error (e.g. -32601 for a tool that forbids tasks).
    :raises pydantic.ValidationError: the answer is neither shape.
    """
    params: dict[str, Any] = {"name": name, "task": dict(task)}
    if arguments is not None:
        params["arguments"] = arguments
    raw = await send_raw_request(session, "tools/call", params, on_progress=on_progress)
    if isinstance(raw.get("task"), dict):
        return LegacyCreatedTask.model_validate(raw)
    return types.CallToolResult.model_validate(raw)


def expose_task_ids(wire: Mapping[str, Any], exposed_id: str) -> dict[str, Any]:
    """A server's task message (`CreateTaskResult`, `Task`, `DetailedTask`, a status
    notification's params, a `tasks/result` result) with its task id (top level, `task`,
    `_meta` related-task) set to `exposed_id` and the server's hop-level `_meta` stamps
    (`serverInfo`, `protocolVersion`) dropped: the hub stamps its own."""
    out = dict(wire)
    if "taskId" in out:
        out["taskId"] = exposed_id
    task = out.get("task")
    if isinstance(task, dict) and "taskId" in task:
        out["task"] = {**task, "taskId": exposed_id}
    meta = out.get("_meta")
    if isinstance(meta, dict):
        kept = {key: value for key, value in meta.items() if key not in _HOP_META_KEYS}
        if isinstance(kept.get(RELATED_TASK_META_KEY), dict):
            kept[RELATED_TASK_META_KEY] = {**kept[RELATED_TASK_META_KEY], "taskId": exposed_id}
        if kept:
            out["_meta"] = kept
        else:
            del out["_meta"]
    return out


def capped_tool_result(result: dict[str, Any], member: str, limit: int) -> dict[str, Any]:
    """`result` (a `CallToolResult` as a JSON object), or, when it serializes to more than
    `limit` bytes (`max_result_bytes` of `member`'s server), an `isError` result saying so, as
    a direct call's result would be (`hub.router`)."""
    try:
        model = types.CallToolResult.model_validate(result)
    except ValueError:
        return result if len(json.dumps(result)) <= limit else _too_large_result(member, limit)
    return _too_large_result(member, limit) if oversized(model, limit) else result


def _too_large_result(member: str, limit: int) -> dict[str, Any]:
    text = f"result from {member} exceeded {limit} bytes"
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True).model_dump(
        by_alias=True, mode="json", exclude_none=True
    )
