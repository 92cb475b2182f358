"""The misbehaving fixture server itself (tests/servers/faulty_server.py), spoken to directly over
Streamable HTTP in both eras, so the resilience tests can trust its switches. Its stdio-only
misbehaviour is proven through the hub in tests/test_supervision.py."""

from __future__ import annotations

import anyio
import pytest
from mcp import MCPError
from mcp_types import INTERNAL_ERROR

from tests.clients import mcp_client
from tests.conftest import faulty_http
from tests.conftest import tool_text as _text

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_the_faulty_servers_tools_do_what_its_docstring_says(mode: str) -> None:
    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    async with faulty_http("--name", "faulty") as (url, _):
        with anyio.fail_after(30):
            async with mcp_client(url, mode=mode) as client:
                assert _text(await client.call_tool("echo", {"text": "hi"})) == "hi"
                assert _text(await client.call_tool("pid", {})).isdigit()
                assert len(_text(await client.call_tool("huge", {"size": 100_000}))) == 100_000
                errors = []
                for _ in range(2):
                    with pytest.raises(MCPError) as raised:
                        await client.call_tool("fail_times", {"n": 2, "key": mode})
                    errors.append((raised.value.code, raised.value.message))
                assert _text(await client.call_tool("fail_times", {"n": 2, "key": mode})) == "ok after 2 failures"
                slow = await client.call_tool(
                    "slow", {"seconds": 0.4, "progress_every": 0.1}, progress_callback=on_progress
                )
                names = {tool.name for tool in (await client.list_tools()).tools}
                assert _text(await client.call_tool("flip_tools", {})) == "on"
                flipped = {tool.name for tool in (await client.list_tools()).tools}
                assert _text(await client.call_tool("flipped", {})) == "flipped"
                assert _text(await client.call_tool("flip_tools", {})) == "off"
                flopped = {tool.name for tool in (await client.list_tools()).tools}
                with anyio.move_on_after(0.3) as hang_scope:
                    await client.call_tool("hang", {})
    assert errors == [(INTERNAL_ERROR, "induced failure 1 of 2"), (INTERNAL_ERROR, "induced failure 2 of 2")]
    assert _text(slow) == "done"
    assert progress == pytest.approx([0.1, 0.2, 0.3])
    assert "flipped" not in names and "flipped" in flipped and "flipped" not in flopped
    assert not {"garbage_then_echo", "endless_line"} & names  # stdio only
    assert hang_scope.cancelled_caught
