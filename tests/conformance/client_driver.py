"""The hub as an MCP client under the conformance suite's client scenarios.

`conformance client --command "python tests/conformance/client_driver.py" --scenario X` starts
the suite's mock MCP server and runs this script with the mock server's URL as last argument.
The script serves a hub on 127.0.0.1 (port 0) whose only server entry is that URL, then runs a
stock client (the SDK's `mcp.Client`) against the hub's `/servers/mock/mcp`: it lists and calls
every tool, gets every prompt and reads every resource, answering sampling, elicitation (accept,
with the schema's defaults) and roots requests. What the mock server sees is therefore the hub's
client half at work, and the suite judges that.

The suite's mock servers listen on all interfaces: run this only inside a private network
namespace (see `run_client_scenarios` in tests/conformance/toolkit.py and
tests/test_conformance.py).

Environment (set by the suite): MCP_CONFORMANCE_SCENARIO, MCP_CONFORMANCE_PROTOCOL_VERSION
(the era the stock client speaks to the hub: 2026-07-28 or later selects the modern era).
Exit code 0 when the client session completed, 1 otherwise (the suite judges the checks).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.conftest import running_hub

CALL_TIMEOUT_SECONDS = 20.0
ECHO_TOOL = "json_schema_echo"


def sample_arguments(schema: dict[str, Any]) -> dict[str, Any]:
    """Arguments for a tool call: each property's default, else a plain value of its type."""
    plain = {"integer": 5, "number": 3, "string": "test", "boolean": True, "array": [], "object": {}}
    arguments: dict[str, Any] = {}
    for name, prop in (schema.get("properties") or {}).items():
        if not isinstance(prop, dict):
            continue
        if "default" in prop:
            arguments[name] = prop["default"]
        elif isinstance(prop.get("enum"), list) and prop["enum"]:
            arguments[name] = prop["enum"][0]
        elif isinstance(prop.get("type"), str) and prop["type"] in plain:
            arguments[name] = plain[prop["type"]]
    return arguments


def planned_calls(tools: list[types.Tool]) -> list[tuple[str, dict[str, Any]]]:
    """The tool calls to make: the scenario's own `toolCalls` (MCP_CONFORMANCE_CONTEXT) when it
    names them, else one call per tool with `sample_arguments`; `json_schema_echo` gets the other
    tools' input schema as its `schema` argument (SEP-1613 round trip)."""
    context = json.loads(os.environ.get("MCP_CONFORMANCE_CONTEXT") or "{}")
    if isinstance(context.get("toolCalls"), list):
        return [(str(call["name"]), dict(call.get("arguments") or {})) for call in context["toolCalls"]]
    calls: list[tuple[str, dict[str, Any]]] = []
    for tool in tools:
        if tool.name == ECHO_TOOL:
            focal = [other.input_schema for other in tools if other.name != ECHO_TOOL]
            calls += [(tool.name, {"schema": schema}) for schema in focal]
        else:
            calls.append((tool.name, sample_arguments(tool.input_schema)))
    return calls


async def on_sampling(ctx: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
    return types.CreateMessageResult(
        role="assistant",
        content=types.TextContent(type="text", text="Sampled by the conformance driver"),
        model="driver-model",
        stop_reason="endTurn",
    )


async def on_elicitation(ctx: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
    schema = getattr(params, "requested_schema", None) or {}
    content = {k: v["default"] for k, v in (schema.get("properties") or {}).items() if "default" in v}
    return types.ElicitResult(action="accept", content=content)


async def on_roots(ctx: Any) -> types.ListRootsResult:
    return types.ListRootsResult(roots=[types.Root(uri="file:///tmp/driver-root", name="driver")])


async def exercise(url: str, mode: str) -> list[str]:
    """Drive every tool, prompt and resource at `url`; returns one line per operation."""
    log: list[str] = []
    async with Client(
        streamable_http_client(url),
        mode=mode,  # type: ignore[arg-type]
        read_timeout_seconds=CALL_TIMEOUT_SECONDS,
        sampling_callback=on_sampling,
        elicitation_callback=on_elicitation,
        list_roots_callback=on_roots,
    ) as client:
        log.append(f"connected at {client.protocol_version}")
        tools = (await client.list_tools()).tools
        for name, arguments in planned_calls(tools):
            try:
                result = await client.call_tool(name, arguments)
                log.append(f"tool {name}: isError={result.is_error}")
            except MCPError as exc:
                log.append(f"tool {name}: error {exc.error.code} {exc.error.message}")
        capabilities = client.server_capabilities
        if capabilities is not None and capabilities.prompts is not None:
            for prompt in (await client.list_prompts()).prompts:
                args = {a.name: "test" for a in prompt.arguments or []}
                try:
                    await client.get_prompt(prompt.name, args)
                    log.append(f"prompt {prompt.name}: ok")
                except MCPError as exc:
                    log.append(f"prompt {prompt.name}: error {exc.error.code} {exc.error.message}")
        if capabilities is not None and capabilities.resources is not None:
            for resource in (await client.list_resources()).resources:
                try:
                    await client.read_resource(resource.uri)
                    log.append(f"resource {resource.uri}: ok")
                except MCPError as exc:
                    log.append(f"resource {resource.uri}: error {exc.error.code} {exc.error.message}")
    return log


async def drive(mock_url: str) -> int:
    version = os.environ.get("MCP_CONFORMANCE_PROTOCOL_VERSION", "2025-11-25")
    mode = "2026-07-28" if version >= "2026-07-28" else "legacy"
    async with running_hub({"mock": {"url": mock_url, "timeout_seconds": CALL_TIMEOUT_SECONDS}}) as hub:
        with anyio.fail_after(100):
            for line in await exercise(hub.server_url("mock"), mode):
                print(line, file=sys.stderr)
    return 0


def main() -> int:
    if len(sys.argv) < 2:
        print("usage: client_driver.py MOCK_SERVER_URL", file=sys.stderr)
        return 2
    return anyio.run(drive, sys.argv[-1])


if __name__ == "__main__":
    sys.exit(main())
