"""Masking follows the data: a server's configured secrets never reach a client through what it
relays (log notifications, JSON-RPC errors and their data, progress messages), and never reach
a log line of the hub at any level, `--debug` included."""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
import yaml
from mcp import MCPError

from hub.redaction import (
    MASK,
    SECRETS,
    SecretRegistry,
    install_log_redaction,
    mask_error,
    mask_json,
    mask_log_params,
    mask_model,
    secret_words,
)
from tests.clients import http_client, mcp_client
from tests.conftest import ROOT, fixture_entry, http_fixture, hub_command, running_hub, stdio_entry, tool_text, until

pytestmark = pytest.mark.anyio

LEAKY_SERVER = str(ROOT / "tests" / "servers" / "leaky_server.py")
STDIO_SECRET = "stdio-leak-s3cret-4242"
HEADER_SECRET = "header-leak-s3cret-9797"


# ---------------------------------------------------------------- the masking itself


def test_secret_words_are_the_long_values_and_the_long_words_in_them() -> None:
    assert secret_words(["Bearer abcdefgh12345", "UTC", "short"]) == ("Bearer abcdefgh12345", "abcdefgh12345")


def test_every_string_in_any_json_shape_is_masked_keys_included() -> None:
    registry = SecretRegistry()
    owner = type("Owner", (), {})()
    registry.register(owner, ["tok-123456789"])
    value = {"a": ["x tok-123456789 y", 3, {"tok-123456789": None}], "b": ("tok-123456789",), "c": True}
    assert mask_json(value, registry) == {"a": [f"x {MASK} y", 3, {MASK: None}], "b": [MASK], "c": True}
    untouched = {"a": ["nothing here"]}
    assert mask_json(untouched, registry) is untouched
    error = mask_error(MCPError(-32050, "bad tok-123456789", {"t": ["tok-123456789"]}), registry)
    assert (error.code, error.message, error.error.data) == (-32050, f"bad {MASK}", {"t": [MASK]})
    params = types.LoggingMessageNotificationParams(
        level="error", data={"k": "tok-123456789"}, logger="l-tok-123456789"
    )
    masked = mask_log_params(params, registry)
    assert masked.data == {"k": MASK} and masked.logger == f"l-{MASK}"


def test_a_relayed_sampling_request_is_masked_and_an_untouched_one_is_the_same_object() -> None:
    registry = SecretRegistry()
    owner = type("Owner", (), {})()
    registry.register(owner, ["tok-123456789"])
    params = types.CreateMessageRequestParams(
        messages=[types.SamplingMessage(role="user", content=types.TextContent(type="text", text="use tok-123456789"))],
        max_tokens=5,
        system_prompt="key tok-123456789",
    )
    masked = mask_model(params, registry)
    assert "tok-123456789" not in masked.model_dump_json() and masked.system_prompt == f"key {MASK}"
    clean = types.CreateMessageRequestParams(messages=[], max_tokens=5)
    assert mask_model(clean, registry) is clean


def test_dynamic_secrets_are_masked_while_current_and_an_owners_secrets_leave_with_it() -> None:
    registry = SecretRegistry()

    class Owner:
        token = "first-token-0000"

    owner = Owner()
    registry.register(owner, [], lambda o: [o.token])
    assert registry.mask("first-token-0000") == MASK
    owner.token = "second-token-111"
    assert registry.mask("first-token-0000 second-token-111") == f"first-token-0000 {MASK}"
    del owner
    gc.collect()
    assert not registry.active


def test_every_log_record_of_the_process_is_masked_also_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    owner = type("Owner", (), {})()
    SECRETS.register(owner, ["log-secret-555555"])
    install_log_redaction()
    try:
        log = logging.getLogger("some.library")
        log.debug("sending %s", {"authorization": "Bearer log-secret-555555"})
        try:
            raise ValueError("failed with log-secret-555555")
        except ValueError:
            log.exception("boom")
    finally:
        SECRETS.forget(owner)
    assert "log-secret-555555" not in caplog.text
    assert f"Bearer {MASK}" in caplog.text and f"failed with {MASK}" in caplog.text


# ---------------------------------------------------------------- a real leaky server


async def _exercise(url: str, name: str, mode: str) -> tuple[list[Any], MCPError, list[str | None]]:
    """Call the leaky server's tools through the hub: (log messages, the error, progress messages)."""
    logs: list[Any] = []
    progress: list[str | None] = []
    received = anyio.Event()

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append(params.model_dump(mode="json"))
        received.set()

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(message)

    extra: dict[str, Any] = {"log_level": "debug"} if mode == "auto" else {}
    async with mcp_client(url, mode=mode, logging_callback=on_log, **extra) as client:
        assert tool_text(await client.call_tool(f"{name}leak_log", {})) == "logged"
        await received.wait()
        with pytest.raises(MCPError) as failed:
            await client.call_tool(f"{name}leak_error", {})
        assert tool_text(await client.call_tool(f"{name}leak_progress", {}, progress_callback=on_progress)) == "done"
    return logs, failed.value, progress


@pytest.mark.parametrize("mode", ["legacy", "auto"])
@pytest.mark.parametrize("server_era", ["legacy", "auto"])
async def test_a_servers_own_secret_never_reaches_a_client_or_a_debug_log_line(
    mode: str, server_era: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    leaky = stdio_entry(LEAKY_SERVER, env={"LEAKY_SECRET": STDIO_SECRET})
    async with http_fixture(script=LEAKY_SERVER) as (remote_url, _process):
        remote = {"url": remote_url, "headers": {"Authorization": f"Bearer {HEADER_SECRET}"}}
        servers = {"leaky": {**leaky, "protocol": server_era}, "remote": {**remote, "protocol": server_era}}
        async with running_hub(servers) as hub:
            with anyio.fail_after(40):
                results = {
                    face: await _exercise(url, prefix, mode)
                    for face, url, prefix in (
                        ("stdio", hub.url, "leaky__"),
                        ("remote", hub.url, "remote__"),
                        ("per-server", hub.server_url("remote"), ""),
                    )
                }
    for face, (logs, error, progress) in results.items():
        relayed = json.dumps([logs, error.message, error.error.data, progress])
        assert STDIO_SECRET not in relayed and HEADER_SECRET not in relayed, face
        assert error.code == -32050  # the server's own code passes through
        assert MASK in error.message and MASK in json.dumps(error.error.data)
        assert logs and MASK in json.dumps(logs)
        assert progress and all(MASK in (message or "") for message in progress)
    assert STDIO_SECRET not in caplog.text and HEADER_SECRET not in caplog.text


@pytest.mark.e2e
async def test_mcphub_serve_debug_logs_no_configured_secret(tmp_path: Path) -> None:
    """The real `mcphub --debug serve`: every line it writes at DEBUG, while clients of both eras
    make a leaky server log, fail and report progress with its secrets."""
    async with (
        http_fixture(script=LEAKY_SERVER) as (remote_url, _process),
        http_fixture(script=LEAKY_SERVER, transport="sse") as (sse_url, _sse_process),
    ):
        headers = {"Authorization": f"Bearer {HEADER_SECRET}"}
        config = {
            "state_dir": str(tmp_path / "state"),
            "listen": {"host": "127.0.0.1", "port": 0},
            "servers": {
                "leaky": stdio_entry(LEAKY_SERVER, env={"LEAKY_SECRET": STDIO_SECRET}),
                "remote": {"url": remote_url, "headers": headers},
                "legacy-sse": {"url": sse_url, "transport": "sse", "headers": headers},
                "fx": fixture_entry("fx", "--stderr-env", "LEAKY_SECRET", env={"LEAKY_SECRET": STDIO_SECRET}),
            },
        }
        (tmp_path / "hub.yaml").write_text(yaml.safe_dump(config))
        stderr_path = tmp_path / "stderr.log"
        with stderr_path.open("wb") as stderr:
            process = await anyio.open_process(
                hub_command("--debug", "serve", "-c", str(tmp_path / "hub.yaml"), "--json"),
                stdout=subprocess.PIPE,
                stderr=stderr,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            try:
                assert process.stdout is not None
                url = None
                with anyio.fail_after(40):
                    buffer = b""
                    while url is None:
                        buffer += await process.stdout.receive()
                        for line in buffer.split(b"\n"):
                            if b'"listening"' in line:
                                url = json.loads(line)["url"]
                    base = url.removesuffix("/mcp")

                    async def ready() -> bool:
                        async with http_client() as http:
                            return (await http.get(f"{base}/readyz")).json().get("status") == "ready"

                    await until(ready)
                    for mode in ("legacy", "auto"):
                        for prefix in ("leaky__", "remote__", "legacy-sse__"):
                            await _exercise(url, prefix, mode)
            finally:
                process.send_signal(signal.SIGINT)
                with anyio.move_on_after(15):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()
    text = stderr_path.read_text(errors="replace")
    assert " DEBUG " in text  # debug logging was on
    assert "LEAKY_SECRET=***" in text  # the child printed it on stderr: masked there too
    assert STDIO_SECRET not in text and HEADER_SECRET not in text
