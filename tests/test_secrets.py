"""Configured secrets (stdio env values, remote headers) never reach a response or a log line,
even when a server itself prints them."""

from __future__ import annotations

import logging

import anyio
import pytest

from hub.servers import ServerState
from tests.clients import http_client, mcp_client
from tests.conftest import fixture_entry, free_port, http_fixture, running_hub

pytestmark = pytest.mark.anyio

STDIO_SECRET = "stdio-s3cret-0123456789"
HEADER_SECRET = "header-s3cret-9876543210"


async def _hub_outputs(base_url: str) -> str:
    async with http_client() as http:
        pages = [await http.get(f"{base_url}{path}") for path in ("/readyz", "/admin/servers", "/admin/routes")]
    return "\n".join(page.text for page in pages)


async def test_a_stdio_server_that_prints_its_secret_env_has_it_masked_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    leaky = fixture_entry("leaky", "--stderr-env", "API_TOKEN", env={"API_TOKEN": STDIO_SECRET})
    async with running_hub({"leaky": leaky}) as hub:
        with anyio.fail_after(15):
            async with mcp_client(hub.url) as client:
                assert (await client.call_tool("leaky__getenv", {"name": "API_TOKEN"})).content
            outputs = await _hub_outputs(hub.base_url)
    stderr_lines = [r.getMessage() for r in caplog.records if r.name == "hub.server_stderr"]
    assert "[leaky] API_TOKEN=***" in stderr_lines
    assert STDIO_SECRET not in caplog.text
    assert STDIO_SECRET not in outputs


@pytest.mark.slow
async def test_a_remote_servers_header_secret_appears_in_no_log_or_admin_output(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    headers = {"Authorization": f"Bearer {HEADER_SECRET}"}
    async with http_fixture("--name", "remote") as (url, _process):
        servers = {
            "remote": {"url": url, "headers": headers},
            # Nothing listens there: the failure must be reported without the header.
            "gone": {"url": f"http://127.0.0.1:{free_port()}/mcp", "headers": headers, "startup_timeout_seconds": 5},
        }
        async with running_hub(servers) as hub:
            with anyio.fail_after(15):
                async with mcp_client(hub.url) as client:
                    assert (await client.call_tool("remote__whoami", {})).content
                outputs = await _hub_outputs(hub.base_url)
            gone = hub.hub.server_status("gone")
    assert gone.state is not ServerState.READY and gone.last_error
    assert HEADER_SECRET not in caplog.text
    assert HEADER_SECRET not in outputs
