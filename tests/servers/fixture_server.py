"""A small, scriptable MCP server (mcp 2.3, both eras) that the tests run as a real peer.

Run it over stdio (default), Streamable HTTP or legacy SSE:

    python tests/servers/fixture_server.py [--transport stdio|http|sse] [--name NAME]
        [--extra-tools N] [--filler-bytes B] [--page-size K] [--weird-names] [--probe-tools] [--port 0]
        [--stderr-env NAME] [--json-response]

Over HTTP/SSE it binds 127.0.0.1, prints `PORT=<n>` on stdout once listening, and serves until
killed. Over Streamable HTTP it answers handshake-era requests with SSE (the SDK default), or
with plain JSON given `--json-response` (`StreamableHTTPSessionManager(json_response=True)`).
Tools:

- `echo(text)`: returns `text` (also as structuredContent `{"text": ...}`).
- `whoami()`: returns the server's `--name`.
- `pid()`: returns its process id.
- `slow(seconds, steps)`: reports `steps` progress notifications over `seconds`, then "done";
  writes "slow: cancelled" to stderr when the call is cancelled.
- `crash()`: exits the process mid-call.
- `getenv(name)`: the value of an environment variable, or "<unset>".
- `fail()`: returns an `isError` result.
- `add_tool(name)`: adds a tool `name` (answers "added") and announces `tools/list_changed`.
- with `--probe-tools`, tools that report what the server received:
  - `seen_authorization()`: the `Authorization` header of the HTTP request that carried this
    call ("" when there was none, or over stdio);
  - `reject_authorization(every)`: from now on, answer HTTP 401 (`WWW-Authenticate: Bearer
    error="invalid_token"`) to requests carrying the `Authorization` value this call came with,
    or with `every: true` to every request;
  - `env_names()`: the names of every variable in the process environment, space-separated;
  - `authorized_requests()`: how many HTTP requests carrying an `Authorization` header the
    server has served so far (calls, lists, pings: this one included).
- `tool_<i>` for i < `--extra-tools`: echo-like fillers (for pagination), each described by
  "filler" padded to `--filler-bytes` characters (for catalogs of realistic size).
- with `--weird-names`: tools named "has space", "a.b/c", "a_b_c" and one of 80 characters.

Resources: `fixture://info` (text: the name); template `fixture://items/{id}`; prompt `greet(name)`
with completion of `name`. Every list is paginated by `--page-size` (0: one page).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import uvicorn
from mcp import MCPError
from mcp.server import Server, ServerRequestContext
from mcp.server.context import CallNext, HandlerResult
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.models import InitializationOptions
from mcp.server.sse import SseServerTransport
from mcp.server.stdio import stdio_server
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ToolsListChanged
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

_TEXT_SCHEMA = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
_EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}


class _FixtureServer(Server[Any]):
    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        return super().create_initialization_options(
            NotificationOptions(tools_changed=True), experimental_capabilities, extensions
        )


class _AuthorizationGate:
    """Answers 401 to the `Authorization` values a `reject_authorization` call named (a server
    that revoked a token), or to everything once told to."""

    def __init__(self) -> None:
        self.rejected: set[str] = set()
        self.reject_every = False
        self.authorized = 0
        """HTTP requests served that carried an `Authorization` header."""

    def wrap(self, app: ASGIApp) -> ASGIApp:
        async def gated(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                authorization = Request(scope).headers.get("authorization", "")
                if self.reject_every or authorization in self.rejected:
                    challenge = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
                    await JSONResponse({"error": "invalid_token"}, 401, headers=challenge)(scope, receive, send)
                    return
                if authorization:
                    self.authorized += 1
            await app(scope, receive, send)

        return gated


def _authorization(ctx: ServerRequestContext[Any]) -> str:
    request = ctx.request
    return request.headers.get("authorization", "") if isinstance(request, Request) else ""


def _page(items: list[Any], cursor: str | None, size: int) -> tuple[list[Any], str | None]:
    if size <= 0:
        return items, None
    start = int(cursor or 0)
    end = start + size
    return items[start:end], (str(end) if end < len(items) else None)


def build_server(
    name: str,
    extra_tools: int,
    page_size: int,
    weird_names: bool,
    gate: _AuthorizationGate | None = None,
    filler_bytes: int = 0,
) -> Server[Any]:
    """The fixture server; `gate` (given with `--probe-tools`) adds the probe tools."""
    bus = InMemorySubscriptionBus()
    tools: list[types.Tool] = [
        types.Tool(name="echo", description="Echo the text back.", input_schema=_TEXT_SCHEMA),
        types.Tool(name="whoami", description="The server's name.", input_schema=_EMPTY_SCHEMA),
        types.Tool(name="pid", description="The server's process id.", input_schema=_EMPTY_SCHEMA),
        types.Tool(
            name="slow",
            description="Wait `delay` s, report progress `steps` times over `seconds` s, then answer.",
            input_schema={
                "type": "object",
                "properties": {
                    "seconds": {"type": "number"},
                    "steps": {"type": "integer"},
                    "delay": {"type": "number"},
                },
            },
        ),
        types.Tool(name="crash", description="Exit the process mid-call.", input_schema=_EMPTY_SCHEMA),
        types.Tool(
            name="getenv",
            description="The value of an environment variable, or '<unset>'.",
            input_schema={"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
        ),
        types.Tool(name="fail", description="Return an isError result.", input_schema=_EMPTY_SCHEMA),
        types.Tool(
            name="ask",
            description="Ask the client to sample and to elicit (pushed in the handshake era, "
            "InputRequiredResult in the modern era); returns both answers.",
            input_schema=_EMPTY_SCHEMA,
        ),
        types.Tool(name="log", description="Send one log message at each level.", input_schema=_EMPTY_SCHEMA),
        types.Tool(name="touch", description="Announce that fixture://info changed.", input_schema=_EMPTY_SCHEMA),
        types.Tool(
            name="add_tool",
            description="Add a tool and announce tools/list_changed.",
            input_schema={"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
        ),
    ]
    if gate is not None:
        tools += [
            types.Tool(
                name="seen_authorization",
                description="The Authorization header this call arrived with ('' if none).",
                input_schema=_EMPTY_SCHEMA,
            ),
            types.Tool(
                name="reject_authorization",
                description="Answer 401 to this call's Authorization value from now on (or to everything).",
                input_schema={"type": "object", "properties": {"every": {"type": "boolean"}}},
            ),
            types.Tool(name="env_names", description="Names in the environment.", input_schema=_EMPTY_SCHEMA),
            types.Tool(
                name="authorized_requests",
                description="How many HTTP requests with an Authorization header were served.",
                input_schema=_EMPTY_SCHEMA,
            ),
        ]
    filler = "filler".ljust(filler_bytes, ".")
    tools += [types.Tool(name=f"tool_{i}", description=filler, input_schema=_TEXT_SCHEMA) for i in range(extra_tools)]
    if weird_names:
        tools += [
            types.Tool(name=n, description="weird name", input_schema=_EMPTY_SCHEMA)
            for n in ("has space", "a.b/c", "a_b_c", "x" * 80)
        ]
    echo_like = {"echo"} | {f"tool_{i}" for i in range(extra_tools)}

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        page, cursor = _page(tools, params.cursor if params else None, page_size)
        return types.ListToolsResult(tools=page, next_cursor=cursor)

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> Any:
        args = params.arguments or {}
        tool = params.name
        if tool == "ask":
            return await _ask(ctx, params)
        if tool == "touch":
            if ctx.protocol_version == "2026-07-28":
                from mcp.shared.subscriptions import ResourceUpdated

                await bus.publish(ResourceUpdated(uri="fixture://info"))
            else:
                await ctx.session.send_resource_updated("fixture://info")
            return _text("touched")
        if tool == "log":
            for level in ("debug", "info", "warning", "error"):
                await ctx.session.send_log_message(level, f"{level} from {name}", "fixture", ctx.request_id)
            return _text("logged")
        if tool in echo_like:
            text = str(args.get("text", ""))
            return types.CallToolResult(
                content=[types.TextContent(type="text", text=text)], structured_content={"text": text}
            )
        if tool == "whoami":
            return _text(name)
        if tool == "pid":
            return _text(str(os.getpid()))
        if tool == "slow":
            seconds, steps = float(args.get("seconds", 0.2)), int(args.get("steps", 2))
            try:
                await anyio.sleep(float(args.get("delay", 0)))  # silent before the first progress
                for step in range(1, steps + 1):
                    await ctx.session.report_progress(step, steps, f"step {step}")
                    await anyio.sleep(seconds / max(steps, 1))
            except anyio.get_cancelled_exc_class():
                print("slow: cancelled", file=sys.stderr, flush=True)
                raise
            return _text("done")
        if tool == "seen_authorization" and gate is not None:
            return _text(_authorization(ctx))
        if tool == "reject_authorization" and gate is not None:
            if args.get("every"):
                gate.reject_every = True
            else:
                gate.rejected.add(_authorization(ctx))
            return _text("rejected")
        if tool == "authorized_requests" and gate is not None:
            return _text(str(gate.authorized))
        if tool == "env_names" and gate is not None:
            return _text(" ".join(sorted(os.environ)))
        if tool == "getenv":
            return _text(os.environ.get(str(args.get("name")), "<unset>"))
        if tool == "crash":
            sys.stdout.flush()
            os._exit(3)
        if tool == "fail":
            return types.CallToolResult(content=[types.TextContent(type="text", text="it failed")], is_error=True)
        if tool == "add_tool":
            tools.append(types.Tool(name=str(args["name"]), description="added at run time", input_schema=_TEXT_SCHEMA))
            echo_like.add(str(args["name"]))
            if ctx.protocol_version in ("2026-07-28",):
                await bus.publish(ToolsListChanged())
            else:
                await ctx.session.send_tool_list_changed()
            return _text("added")
        if any(t.name == tool for t in tools):
            return _text(tool)
        raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {tool}")

    async def list_resources(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        return types.ListResourcesResult(
            resources=[types.Resource(uri="fixture://info", name="info", mime_type="text/plain")]
        )

    async def list_templates(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(
            resource_templates=[types.ResourceTemplate(uri_template="fixture://items/{id}", name="item")]
        )

    async def read_resource(
        ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        uri = str(params.uri)
        if uri == "fixture://info":
            text = name
        elif uri.startswith("fixture://items/"):
            text = f"item {uri.removeprefix('fixture://items/')}"
        else:
            raise MCPError(types.INVALID_PARAMS, f"Unknown resource: {uri}")
        return types.ReadResourceResult(
            contents=[types.TextResourceContents(uri=uri, text=text, mime_type="text/plain")]
        )

    async def subscribe(ctx: ServerRequestContext[Any], params: types.SubscribeRequestParams) -> types.EmptyResult:
        print(f"subscribed: {params.uri}", file=sys.stderr, flush=True)
        return types.EmptyResult()

    async def unsubscribe(ctx: ServerRequestContext[Any], params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        print(f"unsubscribed: {params.uri}", file=sys.stderr, flush=True)
        return types.EmptyResult()

    async def list_prompts(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        prompt = types.Prompt(name="greet", arguments=[types.PromptArgument(name="name", required=True)])
        return types.ListPromptsResult(prompts=[prompt])

    async def get_prompt(ctx: ServerRequestContext[Any], params: types.GetPromptRequestParams) -> types.GetPromptResult:
        if params.name != "greet":
            raise MCPError(types.INVALID_PARAMS, f"Unknown prompt: {params.name}")
        who = (params.arguments or {}).get("name", "world")
        message = types.PromptMessage(role="user", content=types.TextContent(type="text", text=f"Hello, {who}!"))
        return types.GetPromptResult(messages=[message])

    async def complete(ctx: ServerRequestContext[Any], params: types.CompleteRequestParams) -> types.CompleteResult:
        values = [v for v in ("alice", "albert", "bob") if v.startswith(params.argument.value)]
        return types.CompleteResult(completion=types.Completion(values=values, total=len(values), has_more=False))

    return _FixtureServer(
        name,
        version="1.0",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_list_resource_templates=list_templates,
        on_read_resource=read_resource,
        on_list_prompts=list_prompts,
        on_get_prompt=get_prompt,
        on_completion=complete,
        on_subscribe_resource=subscribe,
        on_unsubscribe_resource=unsubscribe,
        on_subscriptions_listen=ListenHandler(bus),
    )


_SAMPLE = types.CreateMessageRequest(
    params=types.CreateMessageRequestParams(
        messages=[types.SamplingMessage(role="user", content=types.TextContent(type="text", text="say hi"))],
        max_tokens=10,
    )
)
_ELICIT = types.ElicitRequest(
    params=types.ElicitRequestFormParams(
        message="your name?",
        requested_schema={"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
    )
)


async def _ask(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> Any:
    """Sampling then elicitation: server-to-client requests in the handshake era, one
    InputRequiredResult round per question in the modern era."""
    if ctx.protocol_version != "2026-07-28":
        from mcp.shared.message import ServerMessageMetadata

        related = ServerMessageMetadata(related_request_id=ctx.request_id)
        sampled = await ctx.session.send_request(_SAMPLE, types.CreateMessageResult, metadata=related)
        elicited = await ctx.session.send_request(_ELICIT, types.ElicitResult, metadata=related)
    else:
        responses = params.input_responses or {}
        state = params.request_state or ""
        if "sample" not in responses and not state.startswith("sampled:"):
            return types.InputRequiredResult(input_requests={"sample": _SAMPLE}, request_state="asked")
        if "sample" in responses:
            state = "sampled:" + types.CreateMessageResult.model_validate(responses["sample"].model_dump()).content.text  # type: ignore[union-attr]
        if "elicit" not in responses:
            return types.InputRequiredResult(input_requests={"elicit": _ELICIT}, request_state=state)
        sampled = types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text=state.removeprefix("sampled:")), model="?"
        )
        elicited = types.ElicitResult.model_validate(responses["elicit"].model_dump())
    text = sampled.content.text if isinstance(sampled.content, types.TextContent) else "?"
    return _text(f"sampled={text} elicited={(elicited.content or {}).get('name')} action={elicited.action}")


def _text(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)])


def _http_app(server: Server[Any], transport: str, json_response: bool = False) -> Starlette:
    """The server's Starlette app for `http` (JSON responses when `json_response`) or `sse`."""
    if transport == "sse":
        sse = SseServerTransport("/messages/")

        async def handle_sse(request: Request) -> Response:
            async with sse.connect_sse(request.scope, request.receive, request._send) as streams:
                await server.run(streams[0], streams[1], server.create_initialization_options())
            return Response()

        return Starlette(routes=[Route("/sse", endpoint=handle_sse), Mount("/messages/", app=sse.handle_post_message)])

    manager = StreamableHTTPSessionManager(app=server, json_response=json_response)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with manager.run():
            yield

    return Starlette(routes=[Route("/mcp", endpoint=StreamableHTTPASGIApp(manager))], lifespan=lifespan)


async def _serve_http(
    server: Server[Any], transport: str, port: int, gate: _AuthorizationGate | None, json_response: bool = False
) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # IPPROTO_TCP: TCP_NODELAY
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(512)
    print(f"PORT={sock.getsockname()[1]}", flush=True)
    app = _http_app(server, transport, json_response)
    app = gate.wrap(app) if gate is not None else app
    config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False)
    await uvicorn.Server(config).serve(sockets=[sock])


async def _serve_stdio(server: Server[Any]) -> None:
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def _first_list_stamp(path: Path) -> Callable[[ServerRequestContext[Any], CallNext], Awaitable[HandlerResult]]:
    """A middleware that writes the time its server answers the last page of its first
    `tools/list` (for the scale benchmark's start-up row)."""
    done = False

    async def stamp(ctx: ServerRequestContext[Any], call_next: CallNext) -> HandlerResult:
        nonlocal done
        result = await call_next(ctx)
        if not done and ctx.method == "tools/list" and isinstance(result, dict) and not result.get("nextCursor"):
            done = True
            await anyio.Path(path).write_text(f"{time.time():.6f}", encoding="utf-8")
        return result

    return stamp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transport", choices=["stdio", "http", "sse"], default="stdio")
    parser.add_argument("--name", default="fixture")
    parser.add_argument("--extra-tools", type=int, default=0)
    parser.add_argument("--filler-bytes", type=int, default=0, help="pad filler descriptions to B chars")
    parser.add_argument("--page-size", type=int, default=0)
    parser.add_argument("--weird-names", action="store_true")
    parser.add_argument("--probe-tools", action="store_true", help="add the probe tools (see above)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--json-response", action="store_true", help="Streamable HTTP: answer with JSON, never SSE (default: SSE)"
    )
    parser.add_argument(
        "--stderr-env", metavar="NAME", help="write NAME=<its value> to stderr at start (a leaky server)"
    )
    parser.add_argument(
        "--first-list-stamp",
        metavar="FILE",
        help="write the wall-clock time (time.time()) to FILE as the first full tools/list is answered",
    )
    args = parser.parse_args()
    gate = _AuthorizationGate() if args.probe_tools else None
    server = build_server(args.name, args.extra_tools, args.page_size, args.weird_names, gate, args.filler_bytes)
    server.middleware.clear()
    if args.first_list_stamp:
        server.middleware.append(_first_list_stamp(Path(args.first_list_stamp)))
    print(f"fixture server {args.name} starting ({args.transport})", file=sys.stderr, flush=True)
    if args.stderr_env:
        print(f"{args.stderr_env}={os.environ.get(args.stderr_env)}", file=sys.stderr, flush=True)
    options = {"use_uvloop": True} if sys.platform != "win32" else {}
    if args.transport == "stdio":
        anyio.run(_serve_stdio, server, backend_options=options)
    else:
        anyio.run(_serve_http, server, args.transport, args.port, gate, args.json_response, backend_options=options)


if __name__ == "__main__":
    main()
