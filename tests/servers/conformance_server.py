"""The project's conformance fixture: an MCP server (mcp 2.3, both eras) with exactly the tool,
resource and prompt names the official conformance suite (`@modelcontextprotocol/conformance`
0.2.0-alpha.12, server mode) calls, written from the suite's scenario requirements.

The tests put it *behind* the hub (pass-through path `/servers/<id>/mcp`) and point the suite at
the hub: every failed check is then something the hub lost or changed on the way.

    python tests/servers/conformance_server.py [--transport stdio|http] [--port 0]

Over HTTP it binds 127.0.0.1 (DNS-rebinding protection on), prints `PORT=<n>` once listening and
serves `/mcp` until killed; over stdio it serves stdin/stdout. Both eras are served at once:

- 2025-11-25 (handshake era): `initialize`, sessions, logging, progress, pushed server-to-client
  requests (`test_sampling`, `test_elicitation*`), `resources/subscribe`, SSE resumption
  (`test_reconnection`, in-memory event store). Asked in the modern era, where a server cannot
  push, `test_sampling` and `test_elicitation*` return the same request as an
  `InputRequiredResult` instead (so a hub speaking 2026-07-28 to this server must ask its
  handshake-era client with a real server-to-client request).
- 2026-07-28 (modern era): per-request `_meta`, `server/discover`, `subscriptions/listen`, and
  `InputRequiredResult` round trips (SEP-2322) on the `test_input_required_result_*` tools and
  prompt; the SDK seals `requestState` (key per process), so tampered state gets -32602.

The tool list always holds the same number of tools: `test_trigger_tool_change` swaps
`test_dynamic_tool_a` and `_b` (and `test_trigger_prompt_change` the `test_dynamic_prompt_*`),
then announces `list_changed`.

Tasks (`task_support.py`): the 2026-07-28 `io.modelcontextprotocol/tasks` extension (SEP-2663,
the suite's `tasks-*` scenarios) and the 2025-11-25 experimental tasks, on the suite's task
fixtures: `greet` (sync only), `slow_compute` (optional), `failing_job` (required; a tool
error), `protocol_error_job` (optional; a protocol error), `confirm_delete` and `multi_input`
(required; one and two elicitations while the task runs), `test_tool_with_task` (required;
SEP-2322 input first, then a task).
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import socket
import struct
import warnings
import zlib
from collections import OrderedDict
from typing import Annotated, Any

import anyio
import uvicorn
from mcp.server import ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.prompts import Prompt
from mcp.server.mcpserver.prompts.base import UserMessage
from mcp.server.mcpserver.tools import Tool
from mcp.server.streamable_http import EventCallback, EventId, EventMessage, EventStore, StreamId
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp_types import (
    INTERNAL_ERROR,
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    AudioContent,
    CallToolResult,
    ClientCapabilities,
    Completion,
    CompletionArgument,
    CompletionContext,
    CreateMessageResult,
    ElicitResult,
    EmbeddedResource,
    EmptyResult,
    ImageContent,
    InputRequiredResult,
    JSONRPCMessage,
    ListRootsResult,
    PromptReference,
    ResourceTemplateReference,
    SamplingMessage,
    SetLevelRequestParams,
    SubscribeRequestParams,
    TextContent,
    TextResourceContents,
    UnsubscribeRequestParams,
)
from mcp_types.version import is_version_at_least
from pydantic import Field
from task_support import TaskRun, TaskSupport, TaskTool, elicitation, text_result

# The 2025-11-25 scenarios use logging, pushed sampling and elicitation on purpose.
warnings.filterwarnings("ignore", category=MCPDeprecationWarning)

MODERN = "2026-07-28"


def _png() -> bytes:
    """A 2x1 PNG (one green, one blue pixel), built in code."""

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    header = struct.pack(">IIBBBBB", 2, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" + b"\x00\xff\x00" + b"\x00\x00\xff")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def _wav() -> bytes:
    """16 samples of 16-bit mono silence at 16 kHz."""
    samples = b"\x00\x00" * 16
    fmt = struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + len(samples))
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", 16)
        + fmt
        + (b"data" + struct.pack("<I", len(samples)) + samples)
    )


PNG_B64 = base64.b64encode(_png()).decode()
WAV_B64 = base64.b64encode(_wav()).decode()

# SEP-1613 / SEP-2106: the suite checks each of these keywords survives the listing.
SCHEMA_2020_12: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "addressDef",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}

_NEEDS = {"elicitation/create": "elicitation", "sampling/createMessage": "sampling", "roots/list": "roots"}
"""The client capability each embedded input request needs (SEP-2322)."""

PROMPT_NOTE = "Renamed by test_trigger_prompt_change"
COMPLETIONS = ("paris", "park", "party", "pasta", "alpha", "beta")


# --- input requests (SEP-2322) -------------------------------------------------------------


def elicit(message: str, field: str, kind: str = "string") -> dict[str, Any]:
    schema = {"type": "object", "properties": {field: {"type": kind}}, "required": [field]}
    return {"method": "elicitation/create", "params": {"message": message, "requestedSchema": schema}}


def sample(text: str, max_tokens: int) -> dict[str, Any]:
    message = {"role": "user", "content": {"type": "text", "text": text}}
    return {"method": "sampling/createMessage", "params": {"messages": [message], "maxTokens": max_tokens}}


ROOTS: dict[str, Any] = {"method": "roots/list", "params": {}}


class Round:
    """One call's view of the SEP-2322 exchange: the answers it brought and the state it echoed."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.answers = ctx.input_responses or {}
        self.state: dict[str, Any] = json.loads(ctx.request_state) if ctx.request_state else {}

    @property
    def modern(self) -> bool:
        version = self.ctx.protocol_version
        return version is not None and is_version_at_least(version, MODERN)

    def declared(self, capability: str) -> bool:
        caps = self.ctx.client_capabilities
        return caps is not None and getattr(caps, capability, None) is not None

    def require(self, *capabilities: str) -> None:
        """-32021 naming the capabilities the client did not declare (SEP-2575)."""
        missing = sorted(c for c in set(capabilities) if not self.declared(c))
        if missing:
            required = ClientCapabilities.model_validate({key: {} for key in missing})
            raise MCPError(
                code=MISSING_REQUIRED_CLIENT_CAPABILITY,
                message=f"the client did not declare: {', '.join(missing)}",
                data={"requiredCapabilities": required.model_dump(by_alias=True, exclude_none=True)},
            )

    def ask(self, requests: dict[str, dict[str, Any]], state: dict[str, Any] | None = None) -> InputRequiredResult:
        self.require(*(_NEEDS[r["method"]] for r in requests.values()))
        if not self.modern:
            raise ToolError(f"InputRequiredResult needs protocol {MODERN}; this call is {self.ctx.protocol_version}")
        payload: dict[str, Any] = {"inputRequests": requests}
        if state is not None:
            payload["requestState"] = json.dumps(state, sort_keys=True)
        return InputRequiredResult.model_validate(payload)

    def form(self, key: str, field: str) -> Any | None:
        answer = self.answers.get(key)
        if isinstance(answer, ElicitResult) and answer.action == "accept" and answer.content:
            return answer.content.get(field)
        return None

    def sampled(self, key: str) -> str | None:
        answer = self.answers.get(key)
        if isinstance(answer, CreateMessageResult) and isinstance(answer.content, TextContent):
            return answer.content.text
        return None

    def roots(self, key: str) -> list[str] | None:
        answer = self.answers.get(key)
        return [str(root.uri) for root in answer.roots] if isinstance(answer, ListRootsResult) else None


def _schema_tool() -> Tool:
    def json_schema_2020_12_tool(
        name: str | None = None,
        address: dict[str, str] | None = None,
        contactMethod: str | None = None,
        phone: str | None = None,
        email: str | None = None,
    ) -> str:
        given = {"name": name, "address": address, "contactMethod": contactMethod, "phone": phone, "email": email}
        return f"received {json.dumps({k: v for k, v in given.items() if v is not None}, sort_keys=True)}"

    tool = Tool.from_function(json_schema_2020_12_tool, description="Tool with JSON Schema 2020-12 features")
    return tool.model_copy(update={"parameters": SCHEMA_2020_12})


# --- tasks (task_support.py) -----------------------------------------------------------------


def _schema(**properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties}


async def _slow_compute(arguments: dict[str, Any], run: TaskRun) -> CallToolResult:
    seconds = float(arguments.get("seconds", 1))
    label = str(arguments.get("label", "job"))
    await anyio.sleep(max(0.0, min(seconds, 600.0)))
    return text_result(f"Computed {label} in {seconds:g} s")


async def _failing_job(arguments: dict[str, Any], run: TaskRun) -> CallToolResult:
    await anyio.sleep(1.0)
    return text_result("failing_job failed on purpose", is_error=True)


async def _protocol_error_job(arguments: dict[str, Any], run: TaskRun) -> CallToolResult:
    await anyio.sleep(0.2)
    raise MCPError(INTERNAL_ERROR, "protocol_error_job crashed on purpose")


async def _confirm_delete(arguments: dict[str, Any], run: TaskRun) -> CallToolResult:
    filename = str(arguments.get("filename", "file"))
    answers = await run.ask({"confirm": elicitation(f"Delete {filename}?", "confirm", "boolean")})
    confirmed = answers["confirm"].get("action") == "accept"
    return text_result(f"Deleted {filename}" if confirmed else f"Kept {filename}")


async def _multi_input(arguments: dict[str, Any], run: TaskRun) -> CallToolResult:
    answers = await run.ask(
        {"name": elicitation("What is your name?", "name"), "confirm": elicitation("Go ahead?", "confirm", "boolean")}
    )
    actions = ", ".join(f"{key}={answer.get('action')}" for key, answer in sorted(answers.items()))
    return text_result(f"Both inputs received: {actions}")


async def _tool_with_task(arguments: dict[str, Any], run: TaskRun) -> CallToolResult:
    name = arguments.get("name")
    if name is None:  # 2025-11-25: no SEP-2322 round before the task, so the task asks
        answer = (await run.ask({"user_name": elicitation("What is your name?", "name")}))["user_name"]
        content = answer.get("content") if isinstance(answer, dict) else None
        name = content.get("name") if isinstance(content, dict) else "stranger"
    await anyio.sleep(0.2)
    return text_result(f"Hello, {name}! (from a task)")


def task_tools() -> list[TaskTool]:
    """The suite's task fixtures (SEP-2663 scenarios' "Required server fixtures")."""
    number, string, boolean = {"type": "number"}, {"type": "string"}, {"type": "boolean"}
    return [
        TaskTool(
            "slow_compute",
            "Sleeps `seconds`, then answers",
            _schema(seconds=number, label=string),
            "optional",
            _slow_compute,
        ),
        TaskTool("failing_job", "Reports a tool error after about 1 s", _schema(), "required", _failing_job),
        TaskTool("protocol_error_job", "Fails with a JSON-RPC error", _schema(), "optional", _protocol_error_job),
        TaskTool(
            "confirm_delete",
            "Asks for confirmation while it runs",
            _schema(filename=string),
            "required",
            _confirm_delete,
        ),
        TaskTool("multi_input", "Asks two questions at once while it runs", _schema(), "required", _multi_input),
        TaskTool(
            "test_tool_with_task",
            "Asks the user's name (SEP-2322), then greets from a task",
            _schema(name=string, confirm=boolean),
            "required",
            _tool_with_task,
        ),
    ]


# --- the server ----------------------------------------------------------------------------


def build() -> tuple[MCPServer, TaskSupport]:
    """The fixture server with every name the suite calls."""
    server = MCPServer(name="hub-conformance-fixture", version="1.0.0", tools=[_schema_tool()])
    dynamic = {"tool": "a", "prompt": "a"}

    def text(value: str) -> list[TextContent]:
        return [TextContent(type="text", text=value)]

    # Content tools: fixed payloads.
    payloads: dict[str, tuple[str, list[Any]]] = {
        "test_simple_text": ("Returns simple text", text("This is a simple text response for testing.")),
        "test_image_content": (
            "Returns a PNG image",
            [ImageContent(type="image", data=PNG_B64, mime_type="image/png")],
        ),
        "test_audio_content": (
            "Returns a WAV clip",
            [AudioContent(type="audio", data=WAV_B64, mime_type="audio/wav")],
        ),
        "test_embedded_resource": (
            "Returns an embedded text resource",
            [
                EmbeddedResource(
                    type="resource",
                    resource=TextResourceContents(
                        uri="test://embedded-resource",
                        mime_type="text/plain",
                        text="This is an embedded resource content.",
                    ),
                )
            ],
        ),
        "test_multiple_content_types": (
            "Returns text, image and an embedded resource",
            [
                TextContent(type="text", text="Multiple content types test:"),
                ImageContent(type="image", data=PNG_B64, mime_type="image/png"),
                EmbeddedResource(
                    type="resource",
                    resource=TextResourceContents(
                        uri="test://mixed-content-resource",
                        mime_type="application/json",
                        text=json.dumps({"test": "data", "value": 123}),
                    ),
                ),
            ],
        ),
    }

    def returning(content: list[Any]) -> Any:
        def fixed() -> list[Any]:
            return list(content)

        return fixed

    for name, (description, content) in payloads.items():
        server.add_tool(returning(content), name=name, description=description)

    @server.tool(description="Always fails with an isError result")
    def test_error_handling() -> str:
        raise ToolError("This tool intentionally returns an error for testing")

    @server.tool(description="Echoes region, sent by modern clients as the Mcp-Param-Region header (SEP-2243)")
    def test_x_mcp_header(region: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Region"})]) -> str:
        return f"region={region}"

    # Notifications during a call.
    async def three_logs(ctx: Context) -> str:
        for step, message in enumerate(("Tool execution started", "Tool processing data", "Tool execution completed")):
            if step:
                await anyio.sleep(0.05)
            await ctx.log("info", message, logger_name="conformance")
        return "Logging finished: 3 messages"

    @server.tool(description="Sends three info log messages 50 ms apart")
    async def test_tool_with_logging(ctx: Context) -> str:
        return await three_logs(ctx)

    @server.tool(description="Sends three info log messages (only if the request set a log level at 2026-07-28)")
    async def test_logging_tool(ctx: Context) -> str:
        return await three_logs(ctx)

    @server.tool(description="Reports progress 0, 50 and 100 of 100")
    async def test_tool_with_progress(ctx: Context) -> str:
        for step, value in enumerate((0, 50, 100)):
            if step:
                await anyio.sleep(0.05)
            await ctx.report_progress(value, 100)
        return "Progress finished"

    @server.tool(description="Closes its SSE stream mid-call; the result arrives after the client resumes")
    async def test_reconnection(ctx: Context) -> str:
        await ctx.close_sse_stream()
        await anyio.sleep(0.2)
        return "Reconnection finished"

    # Pushed server-to-client requests (handshake era).
    # Asking the client mid-call: a pushed server-to-client request in the handshake era; in the
    # modern era, where a server cannot push, the same request as an InputRequiredResult.
    async def elicit_now(ctx: Context, message: str, schema: dict[str, Any]) -> str | InputRequiredResult:
        turn = Round(ctx)
        if turn.modern:
            answer = turn.answers.get("elicitation")
            if not isinstance(answer, ElicitResult):
                request = {"method": "elicitation/create", "params": {"message": message, "requestedSchema": schema}}
                return turn.ask({"elicitation": request})
        else:
            answer = await ctx.session.elicit_form(message, schema, related_request_id=ctx.request_context.request_id)
        return f"User response: action={answer.action}, content={json.dumps(answer.content, sort_keys=True)}"

    def completed(answer: str | InputRequiredResult) -> str | InputRequiredResult:
        return answer.replace("User response:", "Elicitation completed:") if isinstance(answer, str) else answer

    @server.tool(description="Asks the client's LLM (sampling/createMessage) and returns its answer")
    async def test_sampling(prompt: str, ctx: Context) -> str | InputRequiredResult:
        turn = Round(ctx)
        if turn.modern:
            text = turn.sampled("sampling")
            if text is None:
                return turn.ask({"sampling": sample(prompt, 100)})
        else:
            message = SamplingMessage(role="user", content=TextContent(type="text", text=prompt))
            answer = await ctx.session.create_message(
                [message], max_tokens=100, related_request_id=ctx.request_context.request_id
            )
            text = answer.content.text if isinstance(answer.content, TextContent) else str(answer.content)
        return f"LLM response: {text}"

    @server.tool(description="Asks the user (elicitation/create) for a username and an email")
    async def test_elicitation(message: str, ctx: Context) -> str | InputRequiredResult:
        properties = {
            "username": {"type": "string", "description": "User's response"},
            "email": {"type": "string", "description": "User's email address"},
        }
        schema = {"type": "object", "properties": properties, "required": ["username", "email"]}
        return await elicit_now(ctx, message, schema)

    @server.tool(description="Elicitation whose fields carry defaults (SEP-1034)")
    async def test_elicitation_sep1034_defaults(ctx: Context) -> str | InputRequiredResult:
        properties = {
            "name": {"type": "string", "default": "John Doe"},
            "age": {"type": "integer", "default": 30},
            "score": {"type": "number", "default": 95.5},
            "status": {"type": "string", "enum": ["active", "inactive", "pending"], "default": "active"},
            "verified": {"type": "boolean", "default": True},
        }
        answer = await elicit_now(ctx, "Confirm your details", {"type": "object", "properties": properties})
        return completed(answer)

    @server.tool(description="Elicitation with the five enum shapes of SEP-1330")
    async def test_elicitation_sep1330_enums(ctx: Context) -> str | InputRequiredResult:
        titled = [{"const": "value1", "title": "First Option"}, {"const": "value2", "title": "Second Option"}]
        properties = {
            "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
            "titledSingle": {"type": "string", "oneOf": titled},
            "legacyEnum": {
                "type": "string",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"],
            },
            "untitledMulti": {"type": "array", "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
            "titledMulti": {"type": "array", "items": {"anyOf": titled}},
        }
        answer = await elicit_now(ctx, "Choose options", {"type": "object", "properties": properties})
        return completed(answer)

    # InputRequiredResult round trips (modern era).
    @server.tool(description="Asks the user's name (key user_name), then greets")
    async def test_input_required_result_elicitation(ctx: Context) -> str | InputRequiredResult:
        turn = Round(ctx)
        name = turn.form("user_name", "name")
        return f"Hello, {name}!" if name is not None else turn.ask({"user_name": elicit("What is your name?", "name")})

    @server.tool(description="Asks the client's LLM (key capital_question), then answers")
    async def test_input_required_result_sampling(ctx: Context) -> str | InputRequiredResult:
        turn = Round(ctx)
        answer = turn.sampled("capital_question")
        if answer is None:
            return turn.ask({"capital_question": sample("What is the capital of France?", 100)})
        return f"LLM response: {answer}"

    @server.tool(description="Asks the client's roots (key client_roots), then lists them")
    async def test_input_required_result_list_roots(ctx: Context) -> str | InputRequiredResult:
        turn = Round(ctx)
        roots = turn.roots("client_roots")
        return f"Roots: {', '.join(roots)}" if roots is not None else turn.ask({"client_roots": ROOTS})

    async def confirm_with_state(ctx: Context) -> str | InputRequiredResult:
        turn = Round(ctx)
        ok = turn.form("confirm", "ok")
        if ok is None or turn.state.get("asked") != "confirm":
            return turn.ask({"confirm": elicit("Please confirm", "ok", "boolean")}, {"asked": "confirm"})
        return f"state-ok (confirmed: {ok})"

    @server.tool(description="Asks for confirmation with a requestState; answers state-ok once it comes back")
    async def test_input_required_result_request_state(ctx: Context) -> str | InputRequiredResult:
        return await confirm_with_state(ctx)

    @server.tool(description="As test_input_required_result_request_state; a tampered requestState gets -32602")
    async def test_input_required_result_tampered_state(ctx: Context) -> str | InputRequiredResult:
        return await confirm_with_state(ctx)

    @server.tool(description="Asks elicitation, sampling and roots in one round")
    async def test_input_required_result_multiple_inputs(ctx: Context) -> str | InputRequiredResult:
        turn = Round(ctx)
        name, greeting, roots = turn.form("user_name", "name"), turn.sampled("greeting"), turn.roots("client_roots")
        if name is None or greeting is None or roots is None or turn.state.get("asked") != "three":
            wanted = {
                "user_name": elicit("What is your name?", "name"),
                "greeting": sample("Generate a greeting", 50),
                "client_roots": ROOTS,
            }
            return turn.ask(wanted, {"asked": "three"})
        return f"{greeting} {name} (roots: {', '.join(roots)})"

    @server.tool(description="Two elicitation rounds (step1: name, step2: colour), with a changing requestState")
    async def test_input_required_result_multi_round(ctx: Context) -> str | InputRequiredResult:
        turn = Round(ctx)
        if turn.state.get("round") == 2 and (color := turn.form("step2", "color")) is not None:
            return f"{turn.state['name']} likes {color}"
        if turn.state.get("round") == 2:
            return turn.ask({"step2": elicit("Step 2: What is your favorite color?", "color")}, turn.state)
        if turn.state.get("round") == 1 and (name := turn.form("step1", "name")) is not None:
            return turn.ask(
                {"step2": elicit("Step 2: What is your favorite color?", "color")}, {"round": 2, "name": name}
            )
        return turn.ask({"step1": elicit("Step 1: What is your name?", "name")}, {"round": 1})

    @server.tool(description="Asks only for what the client declared (elicitation, sampling, roots)")
    async def test_input_required_result_capabilities(ctx: Context) -> str | InputRequiredResult:
        turn = Round(ctx)
        if turn.answers:
            return f"Answered: {', '.join(sorted(turn.answers))}"
        offers = {
            "user_name": elicit("What is your name?", "name"),
            "capital_question": sample("What is the capital of France?", 100),
            "client_roots": ROOTS,
        }
        wanted = {key: req for key, req in offers.items() if turn.declared(_NEEDS[req["method"]])}
        return turn.ask(wanted) if wanted else "Nothing to ask: no input capability declared"

    # Hooks of the server-stateless scenario.
    @server.tool(description="Needs the client's sampling capability (-32021 without it)")
    async def test_missing_capability(ctx: Context) -> str | InputRequiredResult:
        turn = Round(ctx)
        turn.require("sampling")
        if not turn.modern:
            return await test_sampling("Say hello", ctx)
        answer = turn.sampled("hello")
        return f"LLM response: {answer}" if answer is not None else turn.ask({"hello": sample("Say hello", 20)})

    @server.tool(description="An elicitation during a call: InputRequiredResult (modern) or pushed (handshake)")
    async def test_streaming_elicitation(ctx: Context) -> str | InputRequiredResult:
        turn = Round(ctx)
        if not turn.modern:
            schema = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
            return await elicit_now(ctx, "Say something", schema)
        said = turn.form("say", "text")
        return f"You said: {said}" if said is not None else turn.ask({"say": elicit("Say something", "text")})

    def dynamic_tool() -> str:
        return "dynamic"

    def dynamic_prompt() -> str:
        return "A prompt whose name changes."

    server.add_tool(dynamic_tool, name="test_dynamic_tool_a", description="Renamed by test_trigger_tool_change")
    server.add_prompt(Prompt.from_function(dynamic_prompt, name="test_dynamic_prompt_a", description=PROMPT_NOTE))

    def swap(kind: str) -> tuple[str, str]:
        old = f"test_dynamic_{kind}_{dynamic[kind]}"
        dynamic[kind] = "b" if dynamic[kind] == "a" else "a"
        return old, f"test_dynamic_{kind}_{dynamic[kind]}"

    @server.tool(description="Swaps test_dynamic_tool_a/_b and announces tools/list_changed")
    async def test_trigger_tool_change(ctx: Context) -> str:
        old, new = swap("tool")
        server.remove_tool(old)
        server.add_tool(dynamic_tool, name=new, description="Renamed by test_trigger_tool_change")
        await ctx.notify_tools_changed()
        if not Round(ctx).modern:
            await ctx.session.send_tool_list_changed()
        return f"{old} -> {new}"

    @server.tool(description="Swaps test_dynamic_prompt_a/_b and announces prompts/list_changed")
    async def test_trigger_prompt_change(ctx: Context) -> str:
        old, new = swap("prompt")
        server.remove_prompt(old)
        server.add_prompt(Prompt.from_function(dynamic_prompt, name=new, description=PROMPT_NOTE))
        await ctx.notify_prompts_changed()
        if not Round(ctx).modern:
            await ctx.session.send_prompt_list_changed()
        return f"{old} -> {new}"

    # Resources.
    @server.resource("test://static-text", name="static-text", description="Static text", mime_type="text/plain")
    def static_text() -> str:
        return "This is the content of the static text resource."

    @server.resource("test://static-binary", name="static-binary", description="A PNG", mime_type="image/png")
    def static_binary() -> bytes:
        return _png()

    @server.resource(
        "test://template/{id}/data", name="template", description="Data for an id", mime_type="application/json"
    )
    def template(id: str) -> str:
        return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})

    @server.resource(
        "test://watched-resource", name="watched", description="Subscribable resource", mime_type="text/plain"
    )
    def watched() -> str:
        return "Watched resource content"

    # Prompts.
    @server.prompt(description="A prompt without arguments")
    def test_simple_prompt() -> list[UserMessage]:
        return [UserMessage(role="user", content=TextContent(type="text", text="This is a simple prompt for testing."))]

    @server.prompt(description="A prompt with two required arguments")
    def test_prompt_with_arguments(arg1: str, arg2: str) -> list[UserMessage]:
        line = f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"
        return [UserMessage(role="user", content=TextContent(type="text", text=line))]

    @server.prompt(description="A prompt embedding the resource it is given")
    def test_prompt_with_embedded_resource(resourceUri: str) -> list[UserMessage]:
        embedded = TextResourceContents(
            uri=resourceUri, mime_type="text/plain", text="Embedded resource content for testing."
        )
        return [
            UserMessage(role="user", content=EmbeddedResource(type="resource", resource=embedded)),
            UserMessage(
                role="user", content=TextContent(type="text", text="Please process the embedded resource above.")
            ),
        ]

    @server.prompt(description="A prompt with an image")
    def test_prompt_with_image() -> list[UserMessage]:
        return [
            UserMessage(role="user", content=ImageContent(type="image", data=PNG_B64, mime_type="image/png")),
            UserMessage(role="user", content=TextContent(type="text", text="Please analyze the image above.")),
        ]

    @server.prompt(description="Asks for context (key user_context) before rendering (SEP-2322)")
    def test_input_required_result_prompt(ctx: Context) -> list[UserMessage] | InputRequiredResult:
        turn = Round(ctx)
        context = turn.form("user_context", "context")
        if context is None:
            return turn.ask({"user_context": elicit("What context should the prompt use?", "context")})
        return [UserMessage(role="user", content=TextContent(type="text", text=f"Context: {context}"))]

    @server.completion()
    async def complete(
        ref: PromptReference | ResourceTemplateReference,
        argument: CompletionArgument,
        context: CompletionContext | None,
    ) -> Completion:
        values = [word for word in COMPLETIONS if word.startswith(argument.value.lower())]
        return Completion(values=values, total=len(values), has_more=False)

    # Handshake-era methods MCPServer leaves unregistered.
    subscribed: set[str] = set()

    async def set_level(ctx: ServerRequestContext[Any, Any], params: SetLevelRequestParams) -> EmptyResult:
        return EmptyResult()

    async def subscribe(ctx: ServerRequestContext[Any, Any], params: SubscribeRequestParams) -> EmptyResult:
        subscribed.add(str(params.uri))
        return EmptyResult()

    async def unsubscribe(ctx: ServerRequestContext[Any, Any], params: UnsubscribeRequestParams) -> EmptyResult:
        subscribed.discard(str(params.uri))
        return EmptyResult()

    lowlevel = server._lowlevel_server  # MCPServer has no public hook for these three methods
    lowlevel.add_request_handler("logging/setLevel", SetLevelRequestParams, set_level)
    lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, unsubscribe)

    @server.tool(description="Greets (sync only: never a task)")
    def greet(name: str) -> str:
        return f"Hello, {name}!"

    tasks = TaskSupport(task_tools())
    tasks.install(server)
    return server, tasks


class RecentEvents(EventStore):
    """SSE resumption (2025-11-25): the last `limit` events of every stream, in memory."""

    def __init__(self, limit: int = 1000) -> None:
        self._events: OrderedDict[EventId, tuple[StreamId, JSONRPCMessage | None]] = OrderedDict()
        self._limit = limit
        self._ids = itertools.count(1)

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        event_id = f"e{next(self._ids)}"
        self._events[event_id] = (stream_id, message)
        while len(self._events) > self._limit:
            self._events.popitem(last=False)
        return event_id

    async def replay_events_after(self, last_event_id: EventId, send_callback: EventCallback) -> StreamId | None:
        if last_event_id not in self._events:
            return None
        stream_id = self._events[last_event_id][0]
        after = False
        for event_id, (sid, message) in list(self._events.items()):
            if after and sid == stream_id and message is not None:
                await send_callback(EventMessage(message, event_id))
            after = after or event_id == last_event_id
        return stream_id


async def serve_stdio() -> None:
    server, tasks = build()
    async with tasks.running():
        await server.run_stdio_async()


async def serve_http(port: int) -> None:
    server, tasks = build()
    app = server.streamable_http_app(event_store=RecentEvents(), retry_interval=1000, host="127.0.0.1")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(512)
    print(f"PORT={sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False, timeout_graceful_shutdown=1)
    async with tasks.running():
        await uvicorn.Server(config).serve(sockets=[sock])


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    parser.add_argument("--port", type=int, default=0, help="HTTP port on 127.0.0.1 (0: any free port)")
    args = parser.parse_args()
    if args.transport == "stdio":
        anyio.run(serve_stdio)
    else:
        anyio.run(serve_http, args.port)


if __name__ == "__main__":
    main()
