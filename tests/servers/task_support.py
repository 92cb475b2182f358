"""Server-side tasks for the conformance fixture, in both protocol eras, written from the MCP
specification texts and the conformance suite's `tasks-*` scenario requirements.

- 2026-07-28: the `io.modelcontextprotocol/tasks` extension (SEP-2663). Advertised under
  `capabilities.extensions`; task creation is server-directed (a client that declares the
  extension in its request's `_meta` clientCapabilities gets a flat `CreateTaskResult`,
  `resultType: "task"`, for a task tool); `tasks/get` (inlined `result`, `error` or
  `inputRequests`), `tasks/update` (`inputResponses`, partial answers allowed), `tasks/cancel`
  (empty acknowledgement, idempotent). A client that did not declare it gets -32021 on the
  tasks methods and on a `required` tool, and the synchronous result of an `optional` one.
  `tasks/result` and `tasks/list` do not exist (-32601). On HTTP, `Mcp-Name` must equal
  `params.taskId` (-32020 otherwise).
- 2025-11-25 (handshake era): the experimental tasks of that revision. Advertised as
  `capabilities.tasks` (list, cancel, `tools/call`); tools carry `execution.taskSupport`; a
  `tools/call` with `params.task` gets `{"task": {...}}`; `tasks/get`, `tasks/list`,
  `tasks/cancel` (-32602 on a terminal task) and `tasks/result` (blocks until the task ends;
  input the task needs is asked with real `elicitation/create` requests on that request's
  stream); `notifications/tasks/status` on every change. A tool result with `isError` is a
  `failed` task in this revision, `completed` in SEP-2663.

Tasks live in memory with real transitions (working -> input_required -> working ->
completed | failed | cancelled), are cancelled cooperatively (their worker is cancelled), and
are forgotten `ttl` after creation. The SDK (mcp 2.3) has no server side for tasks, so this is
done with its public lowlevel hooks: request handlers, the `tools/call` handler, and one
middleware that answers a handshake-era task-augmented `tools/call` itself (the SDK shapes a
handshake-era `tools/call` result as a `CallToolResult`, which a `CreateTaskResult` is not).
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import anyio.abc
import mcp_types as types
from mcp.server import ServerRequestContext
from mcp.server.context import CallNext, HandlerResult
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import MCP_NAME_HEADER, decode_header_value
from mcp.shared.message import ServerMessageMetadata
from mcp_types import (
    HEADER_MISMATCH,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    MISSING_REQUIRED_CLIENT_CAPABILITY,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ConfigDict, Field
from starlette.requests import Request

TASKS_EXTENSION = "io.modelcontextprotocol/tasks"
RELATED_TASK = "io.modelcontextprotocol/related-task"
TERMINAL = frozenset({"completed", "failed", "cancelled"})
DEFAULT_TTL_MS = 300_000
MAX_TTL_MS = 3_600_000
POLL_INTERVAL_MS = 250

Era = Literal["2025-11-25", "2026-07-28"]
V1: Era = "2025-11-25"
V2: Era = "2026-07-28"


class TaskIdParams(types.RequestParams):
    model_config = ConfigDict(extra="allow")
    task_id: str


class UpdateTaskParams(TaskIdParams):
    input_responses: dict[str, Any] = Field(default_factory=dict)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _modern(ctx: ServerRequestContext[Any, Any]) -> bool:
    return ctx.protocol_version in MODERN_PROTOCOL_VERSIONS


def declares_tasks(ctx: ServerRequestContext[Any, Any]) -> bool:
    """Whether the request's client declared the tasks extension (per request, 2026-07-28)."""
    caps = ctx.session.client_capabilities
    return caps is not None and bool(caps.extensions) and TASKS_EXTENSION in (caps.extensions or {})


def missing_extension() -> MCPError:
    return MCPError(
        MISSING_REQUIRED_CLIENT_CAPABILITY,
        f"this needs the {TASKS_EXTENSION} extension, which the request did not declare",
        {"requiredCapabilities": {"extensions": {TASKS_EXTENSION: {}}}},
    )


def elicitation(message: str, field_name: str, kind: str = "string") -> dict[str, Any]:
    schema = {"type": "object", "properties": {field_name: {"type": kind}}, "required": [field_name]}
    return {"method": "elicitation/create", "params": {"mode": "form", "message": message, "requestedSchema": schema}}


def accepted(answer: Any, field_name: str) -> Any | None:
    """The accepted value of `field_name` in an elicitation answer (wire dict), if any."""
    if isinstance(answer, Mapping) and answer.get("action") == "accept":
        content = answer.get("content")
        if isinstance(content, Mapping):
            return content.get(field_name)
    return None


def text_result(text: str, *, is_error: bool = False) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=is_error)


@dataclass
class TaskRun:
    """One task: its state and the worker running it."""

    task_id: str
    era: Era
    tool: str
    ttl_ms: int
    session: Any = None
    """The handshake-era session that created it (`notifications/tasks/status` go there)."""
    inline: bool = False
    """Run synchronously inside its `tools/call` (no task was created): it cannot ask for input."""
    on_change: Callable[[TaskRun], None] | None = None
    status: str = "working"
    status_message: str | None = None
    created_at: str = field(default_factory=_now)
    last_updated_at: str = ""
    created: float = field(default_factory=time.monotonic)
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Input requests the task waits on, by key (keys are never reused within a task)."""
    answers: dict[str, Any] = field(default_factory=dict)
    asking: set[str] = field(default_factory=set)
    changed: anyio.Event = field(default_factory=anyio.Event)
    done: anyio.Event = field(default_factory=anyio.Event)
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    _keys: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self.last_updated_at = self.created_at

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def expired(self) -> bool:
        return time.monotonic() > self.created + self.ttl_ms / 1000

    def _set(self, status: str, message: str | None = None) -> None:
        if self.terminal:
            return  # terminal states never change (both revisions)
        self.status, self.status_message, self.last_updated_at = status, message, _now()
        if self.terminal:
            self.done.set()
        self.changed.set()
        self.changed = anyio.Event()
        if self.on_change is not None:
            self.on_change(self)

    # ---- the worker's side ----

    async def ask(self, requests: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """Put the task in `input_required` until every request is answered; returns the
        answers by the keys given (the wire keys get a per-task serial, never reused)."""
        if self.inline:
            raise MCPError(INVALID_PARAMS, f"tool {self.tool!r} needs input, which only a task can ask for")
        keys = {f"{key}-{next(self._keys)}": key for key in requests}
        self.pending.update({wire: requests[key] for wire, key in keys.items()})
        self._set("input_required", "waiting for the client's input")
        while any(wire in self.pending for wire in keys):
            changed = self.changed
            await changed.wait()
        self._set("working")
        return {key: self.answers.pop(wire) for wire, key in keys.items()}

    def answer(self, responses: Mapping[str, Any]) -> None:
        """Deliver answers; keys not outstanding are ignored (SEP-2663 tasks/update)."""
        answered = [key for key in responses if key in self.pending]
        for key in answered:
            del self.pending[key]
            self.answers[key] = responses[key]
        if answered:
            self.changed.set()
            self.changed = anyio.Event()

    def finish(self, result: types.CallToolResult) -> None:
        self.result = result.model_dump(by_alias=True, mode="json", exclude_none=True)
        # 2025-11-25: an isError tool result is a failed task; SEP-2663: a completed one.
        failed = result.is_error and self.era == V1
        self._set("failed" if failed else "completed", "the tool reported an error" if result.is_error else None)

    def fail(self, error: types.ErrorData) -> None:
        self.error = error.model_dump(by_alias=True, mode="json", exclude_none=True)
        self._set("failed", error.message)

    def cancel(self) -> None:
        self._set("cancelled", "cancelled by request")
        self.scope.cancel()

    # ---- wire shapes ----

    def task(self) -> dict[str, Any]:
        """The `Task` object of the task's revision."""
        base: dict[str, Any] = {
            "taskId": self.task_id,
            "status": self.status,
            "createdAt": self.created_at,
            "lastUpdatedAt": self.last_updated_at,
        }
        if self.status_message is not None:
            base["statusMessage"] = self.status_message
        if self.era == V1:
            return {**base, "ttl": self.ttl_ms, "pollInterval": POLL_INTERVAL_MS}
        return {**base, "ttlMs": self.ttl_ms, "pollIntervalMs": POLL_INTERVAL_MS}

    def detailed(self) -> dict[str, Any]:
        """SEP-2663 `DetailedTask`: the task with its result, error or input requests inlined."""
        detail = self.task()
        if self.status == "completed" and self.result is not None:
            detail["result"] = self.result
        elif self.status == "failed" and self.error is not None:
            detail["error"] = self.error
        elif self.status == "input_required":
            detail["inputRequests"] = dict(self.pending)
        return detail


Work = Callable[[dict[str, Any], TaskRun], Awaitable[types.CallToolResult]]


@dataclass(frozen=True)
class TaskTool:
    """A tool that runs as a task: `support` is `optional` (a task when the client can take
    one, else run inline) or `required` (a task or an error)."""

    name: str
    description: str
    input_schema: dict[str, Any]
    support: Literal["optional", "required"]
    work: Work


class _RelayedStatus(types.Notification[dict[str, Any], str]):
    """`notifications/tasks/status` (2025-11-25)."""


class TaskSupport:
    """The tasks of one fixture server process (see the module docstring).

    Use `install(server)` once, and run the server inside `running()` (task workers need a
    task group that outlives the request that created them).
    """

    def __init__(self, tools: list[TaskTool]) -> None:
        self.tools = {tool.name: tool for tool in tools}
        self.tasks: dict[str, TaskRun] = {}
        self._tg: anyio.abc.TaskGroup | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                yield
            finally:
                self._tg = None
                tg.cancel_scope.cancel()

    # ---- installation ----

    def install(self, server: MCPServer, *, mrtr_tools: Mapping[str, Any] | None = None) -> None:
        lowlevel = server._lowlevel_server  # MCPServer has no public hook for extension methods of both eras
        lowlevel.extensions[TASKS_EXTENSION] = {}
        original_caps = lowlevel.get_capabilities

        def get_capabilities(*args: Any, **kwargs: Any) -> types.ServerCapabilities:
            caps = original_caps(*args, **kwargs)
            if kwargs.get("protocol_version") in MODERN_PROTOCOL_VERSIONS:
                return caps
            v1 = types.ServerTasksCapability(
                list=types.TasksListCapability(),
                cancel=types.TasksCancelCapability(),
                requests=types.ServerTasksRequestsCapability(
                    tools=types.TasksToolsCapability(call=types.TasksCallCapability())
                ),
            )
            return caps.model_copy(update={"tasks": v1})

        lowlevel.get_capabilities = get_capabilities  # type: ignore[method-assign]

        list_entry = lowlevel.get_request_handler("tools/list")
        call_entry = lowlevel.get_request_handler("tools/call")
        assert list_entry is not None and call_entry is not None
        list_tools, call_tool = list_entry.handler, call_entry.handler

        async def listed(ctx: ServerRequestContext[Any, Any], params: Any) -> types.ListToolsResult:
            result = await list_tools(ctx, params)
            assert isinstance(result, types.ListToolsResult)
            extra = [
                types.Tool(
                    name=tool.name,
                    description=tool.description,
                    input_schema=tool.input_schema,
                    execution=types.ToolExecution(task_support=tool.support),
                )
                for tool in self.tools.values()
            ]
            return result.model_copy(update={"tools": [*result.tools, *extra]})

        async def called(ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams) -> Any:
            tool = self.tools.get(params.name)
            if tool is None:
                return await call_tool(ctx, params)
            return await self._call(ctx, tool, params)

        lowlevel.add_request_handler("tools/list", list_entry.params_type, listed)
        lowlevel.add_request_handler("tools/call", call_entry.params_type, called)
        lowlevel.add_request_handler("tasks/get", TaskIdParams, self._get)
        lowlevel.add_request_handler("tasks/cancel", TaskIdParams, self._cancel)
        lowlevel.add_request_handler("tasks/update", UpdateTaskParams, self._update)
        lowlevel.add_request_handler("tasks/result", TaskIdParams, self._result)
        lowlevel.add_request_handler("tasks/list", types.PaginatedRequestParams, self._list)
        lowlevel.middleware.append(self._handshake_task_call)

    # ---- tools/call ----

    async def _call(
        self, ctx: ServerRequestContext[Any, Any], tool: TaskTool, params: types.CallToolRequestParams
    ) -> Any:
        arguments = dict(params.arguments or {})
        if not _modern(ctx):
            # A task-augmented call was answered by the middleware; this one is not augmented.
            if tool.support == "required":
                raise MCPError(METHOD_NOT_FOUND, f"tool {tool.name!r} must be called as a task (params.task)")
            return await self._inline(tool, arguments)
        if not declares_tasks(ctx):
            if tool.support == "required":
                raise missing_extension()
            return await self._inline(tool, arguments)
        if tool.name == "test_tool_with_task":
            # SEP-2663 + SEP-2322: gather the name synchronously (MRTR), then run as a task.
            answer = (params.input_responses or {}).get("user_name")
            name = accepted(answer.model_dump(by_alias=True) if answer is not None else None, "name")
            if name is None:
                return types.InputRequiredResult.model_validate(
                    {
                        "inputRequests": {"user_name": elicitation("What is your name?", "name")},
                        "requestState": "asked-user-name",
                    }
                )
            arguments["name"] = name
        run = self._start(tool, arguments, V2, DEFAULT_TTL_MS)
        return {"resultType": "task", **run.task()}

    async def _handshake_task_call(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """A 2025-11-25 task-augmented `tools/call` of a task tool: create the task and answer
        `CreateTaskResult` here (past the SDK's CallToolResult shaping of handshake-era results)."""
        params = ctx.params if isinstance(ctx.params, Mapping) else {}
        task = params.get("task")
        name = params.get("name")
        if ctx.method != "tools/call" or _modern(ctx) or not isinstance(task, Mapping) or name not in self.tools:
            return await call_next(ctx)
        requested = task.get("ttl")
        ttl = min(int(requested), MAX_TTL_MS) if isinstance(requested, int) and requested > 0 else DEFAULT_TTL_MS
        arguments = params.get("arguments")
        run = self._start(self.tools[name], dict(arguments or {}), V1, ttl, session=ctx.session)
        return {"task": run.task()}

    async def _inline(self, tool: TaskTool, arguments: dict[str, Any]) -> types.CallToolResult:
        return await tool.work(arguments, TaskRun("inline", V2, tool.name, DEFAULT_TTL_MS, inline=True))

    def _start(self, tool: TaskTool, arguments: dict[str, Any], era: Era, ttl_ms: int, session: Any = None) -> TaskRun:
        if self._tg is None:
            raise MCPError(INTERNAL_ERROR, "the server is shutting down")
        self._purge()
        run = TaskRun(
            secrets.token_hex(12),
            era,
            tool.name,
            ttl_ms,
            session=session,
            on_change=self._notify if era == V1 else None,
        )
        self.tasks[run.task_id] = run  # durably created before CreateTaskResult goes out
        self._tg.start_soon(self._work, run, tool, arguments, name=f"task {run.task_id}")
        return run

    async def _work(self, run: TaskRun, tool: TaskTool, arguments: dict[str, Any]) -> None:
        with run.scope:
            try:
                result = await tool.work(arguments, run)
            except MCPError as exc:
                run.fail(exc.error)
            except Exception as exc:
                run.fail(types.ErrorData(code=INTERNAL_ERROR, message=f"{tool.name} crashed: {exc}"))
            else:
                run.finish(result)
        if not run.terminal:
            run.cancel()

    def _notify(self, run: TaskRun) -> None:
        session, tg = run.session, self._tg
        if session is None or tg is None:
            return
        notification = _RelayedStatus(method="notifications/tasks/status", params=run.task())

        async def send() -> None:
            with contextlib.suppress(Exception), anyio.move_on_after(5):
                await session.send_notification(notification)

        tg.start_soon(send)

    # ---- tasks/* ----

    def _purge(self) -> None:
        for task_id in [task_id for task_id, run in self.tasks.items() if run.expired]:
            self.tasks.pop(task_id).scope.cancel()

    def _lookup(
        self, ctx: ServerRequestContext[Any, Any], params: TaskIdParams, *, modern_only: bool = False
    ) -> TaskRun:
        if _modern(ctx):
            if not declares_tasks(ctx):
                raise missing_extension()
            request = ctx.request
            if isinstance(request, Request):
                name = decode_header_value(request.headers.get(MCP_NAME_HEADER))
                if name != params.task_id:
                    raise MCPError(HEADER_MISMATCH, "Mcp-Name header does not match params.taskId")
        elif modern_only:
            raise MCPError(METHOD_NOT_FOUND, "Method not found", ctx.method)
        self._purge()
        run = self.tasks.get(params.task_id)
        if run is None:
            raise MCPError(INVALID_PARAMS, "Failed to retrieve task: Task not found")
        return run

    async def _get(self, ctx: ServerRequestContext[Any, Any], params: TaskIdParams) -> dict[str, Any]:
        run = self._lookup(ctx, params)
        return run.detailed() if _modern(ctx) else run.task()

    async def _cancel(self, ctx: ServerRequestContext[Any, Any], params: TaskIdParams) -> dict[str, Any]:
        run = self._lookup(ctx, params)
        if _modern(ctx):
            run.cancel()  # a terminal task stays as it is; the acknowledgement is the same
            return {}
        if run.terminal:
            raise MCPError(INVALID_PARAMS, f"Cannot cancel task: already {run.status}")
        run.cancel()
        return run.task()

    async def _update(self, ctx: ServerRequestContext[Any, Any], params: UpdateTaskParams) -> dict[str, Any]:
        run = self._lookup(ctx, params, modern_only=True)
        run.answer(params.input_responses)
        return {}

    async def _result(self, ctx: ServerRequestContext[Any, Any], params: TaskIdParams) -> dict[str, Any]:
        if _modern(ctx):
            raise MCPError(METHOD_NOT_FOUND, "Method not found", "tasks/result")
        run = self._lookup(ctx, params)
        async with anyio.create_task_group() as tg:
            while not run.terminal:
                for key in [key for key in run.pending if key not in run.asking]:
                    run.asking.add(key)
                    tg.start_soon(self._ask_client, ctx, run, key)
                changed = run.changed
                await changed.wait()
            tg.cancel_scope.cancel()
        if run.error is not None:
            raise MCPError.from_error_data(types.ErrorData.model_validate(run.error))
        if run.result is None:
            raise MCPError(INVALID_PARAMS, f"task {run.task_id} was {run.status} without a result")
        meta = {**(run.result.get("_meta") or {}), RELATED_TASK: {"taskId": run.task_id}}
        return {**run.result, "_meta": meta}

    async def _ask_client(self, ctx: ServerRequestContext[Any, Any], run: TaskRun, key: str) -> None:
        """2025-11-25: input a task needs is a real request to the client, tagged with the task,
        on the stream of the `tasks/result` request that waits for it."""
        request = dict(run.pending[key])
        request["params"] = {**request.get("params", {}), "_meta": {RELATED_TASK: {"taskId": run.task_id}}}
        try:
            answer = await ctx.session.send_request(
                types.ElicitRequest.model_validate(request),
                types.ElicitResult,
                metadata=ServerMessageMetadata(related_request_id=ctx.request_id),
            )
            run.answer({key: answer.model_dump(by_alias=True, mode="json", exclude_none=True)})
        except MCPError as exc:
            run.answer({key: {"action": "cancel", "error": exc.message}})
        finally:
            run.asking.discard(key)

    async def _list(self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams) -> dict[str, Any]:
        if _modern(ctx):
            raise MCPError(METHOD_NOT_FOUND, "Method not found", "tasks/list")
        self._purge()
        return {"tasks": [run.task() for run in self.tasks.values() if run.era == V1]}
