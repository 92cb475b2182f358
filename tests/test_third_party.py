"""End to end: real third-party MCP servers (PyPI and npm) behind a real hub, called with the SDK client.

PyPI: `mcp-server-time` and `mcp-server-git` (installed with the hub). npm: the reference
`server-everything` (stdio, Streamable HTTP, legacy SSE) and `server-memory`, installed by the
`npm_servers` fixture (skipped when npm/node are absent).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import fixture_entry, free_port, running_hub, until
from mcp import Client, MCPError, StdioServerParameters
from mcp_types import (
    INVALID_PARAMS,
    BlobResourceContents,
    EmbeddedResource,
    ResourceLink,
    TextContent,
    TextResourceContents,
)
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_MODERN_VERSION

from tests.clients import http_client, mcp_client

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

CLIENT_MODES = ("auto", "legacy")
"""`auto` speaks the modern era (2026-07-28) to the hub; `legacy` forces the handshake era."""

GIT_READ_TOOLS = ["git_status", "git_diff_unstaged", "git_diff_staged", "git_diff", "git_log", "git_show", "git_branch"]
GIT_WRITE_TOOLS = ("git_commit", "git_add", "git_reset", "git_checkout", "git_create_branch")

# Binds every listening socket of a node process to loopback: the npm servers call
# `app.listen(PORT)`, which would otherwise listen on every interface.
_LOOPBACK_ONLY_JS = """
const net = require("net");
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const port = args[0];
  if ((typeof port === "number" || /^[0-9]+$/.test(String(port))) && typeof args[1] !== "string") {
    args.splice(1, 0, "127.0.0.1");
  }
  return listen.apply(this, args);
};
"""


def _python_server_command(name: str) -> str:
    return shutil.which(name) or str(Path(sys.executable).parent / name)


async def _git(*args: str) -> str:
    with anyio.fail_after(30):
        result = await anyio.run_process(["git", *args])
    return result.stdout.decode()


async def _git_repository(path: Path) -> Path:
    """A git repository at `path` with one commit (of README.md)."""
    await anyio.Path(path).mkdir(parents=True, exist_ok=True)
    await _git("init", "-q", str(path))
    await anyio.Path(path / "README.md").write_text("hello\n")
    await _git("-C", str(path), "add", "README.md")
    await _git("-C", str(path), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "first commit")
    return path


def _git_entry(repository: Path, **extra: Any) -> dict[str, Any]:
    return {"command": _python_server_command("mcp-server-git"), "args": ["--repository", str(repository)], **extra}


def _time_entry() -> dict[str, Any]:
    return {"command": _python_server_command("mcp-server-time"), "args": ["--local-timezone", "UTC"]}


def _node_script(npm_servers: Path, name: str) -> str:
    """The real path of an npm server's entry script (the .bin entry is a symlink to it)."""
    return str((npm_servers / name).resolve())


def _everything_entry(npm_servers: Path) -> dict[str, Any]:
    return {"command": "node", "args": [_node_script(npm_servers, "mcp-server-everything")]}


def _text(result: Any) -> str:
    block = result.content[0]
    assert isinstance(block, TextContent), block
    return block.text


def _only_text(contents: Any) -> list[str]:
    texts = []
    for item in contents:
        assert isinstance(item, TextResourceContents), item
        texts.append(item.text)
    return texts


async def _tool_names(client: Client) -> set[str]:
    return {tool.name for tool in (await client.list_tools()).tools}


async def _readiness(base_url: str) -> dict[str, dict[str, Any]]:
    """/readyz as {server_id: status}."""
    async with http_client(timeout=10.0) as http:
        response = await http.get(f"{base_url}/readyz")
    assert response.status_code == 200, response.text
    return {server["server_id"]: server for server in response.json()["servers"]}


def _port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@asynccontextmanager
async def _remote_everything(npm_servers: Path, tmp_path: Path, transport: str) -> AsyncIterator[int]:
    """server-everything as a remote server (`streamableHttp` or `sse`) on 127.0.0.1; yields its port."""
    preload = tmp_path / "loopback-only.cjs"
    await anyio.Path(preload).write_text(_LOOPBACK_ONLY_JS)
    port = free_port()
    process = await anyio.open_process(
        ["node", "--require", str(preload), _node_script(npm_servers, "mcp-server-everything"), transport],
        env={**os.environ, "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with anyio.fail_after(20):
            # A third-party server with no readiness signal: poll a TCP connect, bounded.
            async def accepts() -> bool:
                assert process.returncode is None, f"server-everything {transport} exited with {process.returncode}"
                return await anyio.to_thread.run_sync(_port_accepts, port)

            await until(accepts)
        yield port
    finally:
        if process.returncode is None:
            process.terminate()
        with anyio.move_on_after(5, shield=True):
            await process.wait()
        if process.returncode is None:
            process.kill()
            with anyio.move_on_after(5, shield=True):
                await process.wait()


# --- PyPI servers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", CLIENT_MODES)
async def test_the_pypi_time_and_git_servers_are_listed_namespaced_and_answer_calls_in_either_era(
    tmp_path: Path, mode: str
) -> None:
    repository = await _git_repository(tmp_path / "repo")
    async with running_hub({"time": _time_entry(), "git": _git_entry(repository)}) as hub:
        with anyio.fail_after(30):
            async with mcp_client(hub.url, mode=mode) as client:
                names = await _tool_names(client)
                now = await client.call_tool("time__get_current_time", {"timezone": "UTC"})
                status = await client.call_tool("git__git_status", {"repo_path": str(repository)})
                log = await client.call_tool("git__git_log", {"repo_path": str(repository)})

    assert {"time__get_current_time", "time__convert_time", "git__git_status", "git__git_log"} <= names
    assert not now.is_error and "UTC" in _text(now)
    assert not status.is_error and "branch" in _text(status).lower()
    assert not log.is_error and "first commit" in _text(log)


async def test_a_tools_include_filter_hides_the_git_write_tools_from_listing_and_from_calls(tmp_path: Path) -> None:
    repository = await _git_repository(tmp_path / "repo")
    servers = {
        "git": _git_entry(repository, tools={"include": GIT_READ_TOOLS}),
        # The same server unfiltered, to show the write tools exist and only the filter hides them.
        "gitall": _git_entry(repository),
    }
    async with running_hub(servers) as hub:
        with anyio.fail_after(30):
            async with mcp_client(hub.url) as client:
                names = await _tool_names(client)
                with pytest.raises(MCPError) as refused:
                    await client.call_tool("git__git_commit", {"repo_path": str(repository), "message": "sneaky"})
                status = await client.call_tool("git__git_status", {"repo_path": str(repository)})

    assert {f"gitall__{tool}" for tool in GIT_WRITE_TOOLS} <= names
    assert {f"git__{tool}" for tool in GIT_READ_TOOLS} <= names
    assert not {f"git__{tool}" for tool in GIT_WRITE_TOOLS} & names
    assert refused.value.code == INVALID_PARAMS
    assert not status.is_error
    assert "sneaky" not in await _git("-C", str(repository), "log", "--oneline")


# --- npm servers ----------------------------------------------------------------------------------


async def test_stdio_server_everything_is_handshake_era_and_the_fixture_is_modern_and_both_serve_clients_of_either_era(
    npm_servers: Path,
) -> None:
    async with running_hub({"everything": _everything_entry(npm_servers), "fx": fixture_entry("fx")}) as hub:
        with anyio.fail_after(30):
            servers = await _readiness(hub.base_url)
            answers: dict[str, tuple[str | None, set[str], str, str]] = {}
            for mode in CLIENT_MODES:
                async with mcp_client(hub.url, mode=mode) as client:
                    names = await _tool_names(client)
                    everything = await client.call_tool("everything__echo", {"message": f"hi {mode}"})
                    fixture = await client.call_tool("fx__echo", {"text": f"hi {mode}"})
                    answers[mode] = (client.protocol_version, names, _text(everything), _text(fixture))

    assert servers["everything"]["state"] == "ready"
    assert servers["everything"]["protocol_version"] in HANDSHAKE_PROTOCOL_VERSIONS
    assert servers["fx"]["state"] == "ready"
    assert servers["fx"]["protocol_version"] == LATEST_MODERN_VERSION
    assert answers["auto"][0] == LATEST_MODERN_VERSION
    assert answers["legacy"][0] in HANDSHAKE_PROTOCOL_VERSIONS
    for mode in CLIENT_MODES:
        _, names, everything_text, fixture_text = answers[mode]
        assert {"everything__echo", "everything__get-sum", "fx__echo"} <= names
        assert everything_text == f"Echo: hi {mode}"
        assert fixture_text == f"hi {mode}"


@pytest.mark.parametrize(
    ("launch_as", "path", "transport"), [("streamableHttp", "/mcp", "streamable_http"), ("sse", "/sse", "sse")]
)
async def test_server_everything_as_a_remote_server_answers_through_the_hub(
    npm_servers: Path, tmp_path: Path, launch_as: str, path: str, transport: str
) -> None:
    async with _remote_everything(npm_servers, tmp_path, launch_as) as port:
        entry = {"url": f"http://127.0.0.1:{port}{path}", "transport": transport, "timeout_seconds": 20}
        async with running_hub({"everything": entry}) as hub:
            with anyio.fail_after(30):
                servers = await _readiness(hub.base_url)
                async with mcp_client(hub.url) as client:
                    echoed = await client.call_tool("everything__echo", {"message": "over the wire"})
                    total = await client.call_tool("everything__get-sum", {"a": 2, "b": 3})

    assert servers["everything"]["state"] == "ready"
    assert servers["everything"]["transport"] == transport
    assert _text(echoed) == "Echo: over the wire"
    assert "5" in _text(total)


async def test_server_memory_stores_an_entity_created_through_the_hub_and_reads_it_back(
    npm_servers: Path, tmp_path: Path
) -> None:
    memory_file = tmp_path / "memory.jsonl"
    entry = {
        "command": "node",
        "args": [_node_script(npm_servers, "mcp-server-memory")],
        "env": {"MEMORY_FILE_PATH": str(memory_file)},
    }
    entity = {"name": "hub_test_entity", "entityType": "test", "observations": ["created through the hub"]}
    async with running_hub({"memory": entry}) as hub:
        with anyio.fail_after(30):
            async with mcp_client(hub.url) as client:
                names = await _tool_names(client)
                created = await client.call_tool("memory__create_entities", {"entities": [entity]})
                opened = await client.call_tool("memory__open_nodes", {"names": ["hub_test_entity"]})

    assert {"memory__create_entities", "memory__open_nodes", "memory__read_graph"} <= names
    assert not created.is_error
    assert not opened.is_error
    assert "hub_test_entity" in _text(opened)
    assert "created through the hub" in _text(opened)
    assert "hub_test_entity" in await anyio.Path(memory_file).read_text()


async def test_server_everything_resources_and_prompts_are_exposed_namespaced_with_the_servers_own_content(
    npm_servers: Path,
) -> None:
    entry = _everything_entry(npm_servers)
    async with running_hub({"everything": entry}) as hub:
        with anyio.fail_after(30):
            async with mcp_client(StdioServerParameters(command="node", args=entry["args"])) as direct:
                direct_resources = (await direct.list_resources()).resources
                direct_templates = (await direct.list_resource_templates()).resource_templates
                direct_prompts = (await direct.list_prompts()).prompts
                original_uri = str(direct_resources[0].uri)
                direct_read = await direct.read_resource(original_uri)
                direct_prompt = await direct.get_prompt("simple-prompt")
            async with mcp_client(hub.url) as client:
                resources = (await client.list_resources()).resources
                templates = (await client.list_resource_templates()).resource_templates
                prompts = (await client.list_prompts()).prompts
                hub_read = await client.read_resource(f"everything+{original_uri}")
                hub_prompt = await client.get_prompt("everything__simple-prompt")

    assert {str(r.uri) for r in resources} == {f"everything+{r.uri}" for r in direct_resources}
    assert {t.uri_template for t in templates} == {f"everything+{t.uri_template}" for t in direct_templates}
    assert {p.name for p in prompts} == {f"everything__{p.name}" for p in direct_prompts}
    assert "everything__simple-prompt" in {p.name for p in prompts}
    assert _only_text(hub_read.contents) == _only_text(direct_read.contents)
    assert hub_prompt.messages == direct_prompt.messages


@pytest.mark.parametrize("mode", CLIENT_MODES)
async def test_resource_links_and_embedded_resources_from_server_everything_can_be_read_back_through_the_hub(
    npm_servers: Path, mode: str
) -> None:
    async with running_hub({"everything": _everything_entry(npm_servers)}) as hub:
        with anyio.fail_after(40):
            async with mcp_client(hub.url, mode=mode) as client:
                links = await client.call_tool("everything__get-resource-links", {"count": 2})
                link_blocks = [block for block in links.content if isinstance(block, ResourceLink)]
                reads = [await client.read_resource(str(block.uri)) for block in link_blocks]
                reference = await client.call_tool(
                    "everything__get-resource-reference", {"resourceType": "Text", "resourceId": 4}
                )
                prompt = await client.get_prompt(
                    "everything__resource-prompt", {"resourceType": "Text", "resourceId": "6"}
                )
            async with mcp_client(hub.server_url("everything"), mode=mode) as per_server:
                original = await per_server.call_tool("get-resource-links", {"count": 2})

    assert [str(block.uri) for block in link_blocks] == [
        "everything+demo://resource/dynamic/blob/1",
        "everything+demo://resource/dynamic/text/2",
    ]
    blob, text = reads[0].contents[0], reads[1].contents[0]
    assert isinstance(blob, BlobResourceContents) and blob.uri == "everything+demo://resource/dynamic/blob/1"
    assert isinstance(text, TextResourceContents) and text.text.startswith("Resource 2: This is a plaintext resource")
    assert text.uri == "everything+demo://resource/dynamic/text/2"
    embedded = [block for block in reference.content if isinstance(block, EmbeddedResource)]
    assert [str(block.resource.uri) for block in embedded] == ["everything+demo://resource/dynamic/text/4"]
    in_prompt = [m.content for m in prompt.messages if isinstance(m.content, EmbeddedResource)]
    assert [str(block.resource.uri) for block in in_prompt] == ["everything+demo://resource/dynamic/text/6"]
    # The per-server face addresses resources by their original URIs, and keeps them.
    assert [str(b.uri) for b in original.content if isinstance(b, ResourceLink)] == [
        "demo://resource/dynamic/blob/1",
        "demo://resource/dynamic/text/2",
    ]
