"""Structured logs: one JSON object per line, and a request id that follows one MCP request
across the hub's log lines (endpoint -> router -> server connection) and never reaches a client."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import mcp_types as types
import pytest
from mcp import MCPError

from hub.app import Hub
from hub.config import parse_config
from hub.logs import JsonFormatter, TextFormatter, counted, request_id_var, server_id_var
from hub.signals import Changes
from tests.clients import mcp_client
from tests.conftest import faulty_entry, fixture_entry, running_hub, tool_text, until
from tests.test_cli import _serving, _write_config
from tests.test_reload import faulty, serve_hub

pytestmark = pytest.mark.anyio


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []
        self.changes = Changes()
        """Notified (on the event loop that made this handler) after each line."""
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # made outside an event loop: nobody waits on it
            self._loop = None

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.changes.notify)  # a line may come from any thread


@contextmanager
def _json_lines_of(logger_name: str) -> Iterator[_Lines]:
    handler = _Lines()
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _record(message: str, exc_info: bool = False) -> logging.LogRecord:
    info = None
    if exc_info:
        try:
            raise ValueError("boom")
        except ValueError:
            import sys

            info = sys.exc_info()
    return logging.LogRecord("hub.test", logging.WARNING, __file__, 1, message, (), info)


def test_a_json_line_has_time_level_logger_message_and_the_context_ids() -> None:
    request_token = request_id_var.set("0123456789abcdef")
    server_token = server_id_var.set("fx")
    try:
        line = JsonFormatter().format(_record("line one\nline two", exc_info=True))
        text = TextFormatter().format(_record("plain"))
    finally:
        request_id_var.reset(request_token)
        server_id_var.reset(server_token)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "warning"
    assert entry["logger"] == "hub.test"
    assert entry["message"] == "line one\nline two"
    assert entry["server_id"] == "fx"
    assert entry["request_id"] == "0123456789abcdef"
    assert "ValueError: boom" in entry["exception"]
    assert entry["time"].endswith("+00:00")
    assert text.endswith("hub.test: plain [server=fx req=0123456789abcdef]")


def test_counted_puts_a_noun_in_the_number_its_count_needs() -> None:
    assert [counted(n, "resource") for n in (0, 1, 2)] == ["0 resources", "1 resource", "2 resources"]
    assert counted(1, "resource template") == "1 resource template"
    assert counted(3, "entry", "entries") == "3 entries"


def test_a_line_outside_any_request_has_no_context_ids() -> None:
    entry = json.loads(JsonFormatter().format(_record("idle")))
    assert "request_id" not in entry and "server_id" not in entry


async def test_one_request_id_follows_a_call_from_the_endpoint_to_the_server_connection_and_is_not_returned() -> None:
    config = parse_config({"servers": {"fx": faulty("fx")}}, file="<test>")
    async with serve_hub(Hub(config)) as hub:
        with _json_lines_of("hub") as captured, anyio.fail_after(30):
            async with mcp_client(hub.url) as client:
                first = await client.call_tool("fx__echo", {"text": "a"})
                with pytest.raises(MCPError) as failed:
                    await client.call_tool("fx__fail_times", {"n": 1, "key": "logs"})
    entries = [json.loads(line) for line in captured.lines]
    by_request: dict[str, set[str]] = {}
    for entry in entries:
        if "request_id" in entry:
            by_request.setdefault(entry["request_id"], set()).add(entry["logger"])
            assert entry["server_id"] == "fx"
    routed = [loggers for loggers in by_request.values() if {"hub.endpoint.faces", "hub.servers"} <= loggers]
    assert len(routed) == 2, by_request
    for request_id in by_request:
        assert request_id not in first.model_dump_json()
        assert request_id not in str(failed.value.error.model_dump())


# ---------------------------------------------------------------- log noise


def _messages(captured: _Lines) -> list[str]:
    return [json.loads(line)["message"] for line in captured.lines]


@pytest.mark.parametrize("protocol", ["legacy", "modern"])
async def test_a_burst_of_list_changed_causes_one_re_list_and_one_log_line(protocol: str) -> None:
    entry = faulty_entry("fx", protocol=protocol, health_check_interval_seconds=0)  # no health-check listings
    async with running_hub({"fx": entry}) as hub, mcp_client(hub.url) as client:

        async def tools_lists() -> int:
            return int(tool_text(await client.call_tool("fx__tools_lists", {})))

        with _json_lines_of("hub.servers") as captured, anyio.fail_after(30):
            before = await tools_lists()
            # The server sends its 5 notifications before the answer, in one burst.
            assert tool_text(await client.call_tool("fx__announce_changes", {"n": 5})) == "announced 5"
            await captured.changes.wait_for(lambda: any("re-listing" in message for message in _messages(captured)))
            await until(lambda: _at_least(tools_lists, before + 1))
            after = await tools_lists()
    relists = [message for message in _messages(captured) if "re-listing" in message]
    assert relists == ["server fx: notifications/tools/list_changed, re-listing"]
    assert after == before + 1


async def _at_least(count: Callable[[], Awaitable[int]], wanted: int) -> bool:
    return await count() >= wanted


async def test_a_refused_call_of_an_unknown_tool_logs_the_name_asked_for_escaped_and_cut_never_arguments() -> None:
    asked = "nope\n__x\x1b[31m" + "y" * 200
    async with running_hub({"fx": fixture_entry("fx")}) as hub, mcp_client(hub.url) as client:
        with _json_lines_of("hub.endpoint.faces") as captured, anyio.fail_after(30):
            with pytest.raises(MCPError):
                await client.call_tool(asked, {"secret": "arguments-stay-out-of-logs"})
            with pytest.raises(MCPError):
                await client.read_resource("nothere+fixture://x?token=query-stays-out-of-logs")
    lines = [message for message in _messages(captured) if ": not_found" in message or ": invalid" in message]
    assert lines[0].startswith("tools/call <unknown> 'nope\\n__x\\x1b[31myyy")
    assert lines[0].endswith("...': not_found") and "y" * 100 not in lines[0]
    assert lines[1].startswith("resources/read <unknown> 'nothere+fixture://x?...'")
    text = "\n".join(captured.lines)
    assert "arguments-stay-out-of-logs" not in text and "query-stays-out-of-logs" not in text
    assert "\n" not in "".join(_messages(captured))


async def test_counts_in_log_lines_are_singular_for_one() -> None:
    with _json_lines_of("hub") as captured:
        async with running_hub({"fx": fixture_entry("fx")}):
            pass
    messages = _messages(captured)
    ready = next(message for message in messages if message.startswith("server fx ready"))
    changed = next(message for message in messages if message.startswith("catalog changed"))
    assert ready.endswith(" tools, 1 resource, 1 resource template, 1 prompt"), ready
    assert changed.endswith(" tools, 1 resource, 1 resource template, 1 prompt"), changed


_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: ")


@pytest.mark.slow
async def test_serve_writes_only_formatted_lines_to_stderr_when_the_sdk_warns_of_deprecations(tmp_path: Path) -> None:
    # Relaying log messages to, and subscribing for, a handshake-era client makes the SDK warn.
    config = _write_config(tmp_path / "hub.yaml", {"servers": {"fx": fixture_entry("fx", protocol="legacy")}})
    log = tmp_path / "serve.log"
    received: list[types.LoggingMessageNotificationParams] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        received.append(params)

    async with _serving(config, log) as served:
        with anyio.fail_after(30):
            async with mcp_client(f"{served.base_url}/mcp", mode="legacy", logging_callback=on_log) as client:
                await client.session.set_logging_level("debug")
                await client.call_tool("fx__log", {})
                await client.session.subscribe_resource("fx+fixture://info")
                await client.session.unsubscribe_resource("fx+fixture://info")
    lines = log.read_text().splitlines()
    assert received, "no log message was relayed: the deprecated paths did not run"
    assert lines and all(_LOG_LINE.match(line) for line in lines), [line for line in lines if not _LOG_LINE.match(line)]
    # Only the fixture server's own stderr (relayed, tagged [fx]) may mention its deprecations.
    assert not any("MCPDeprecationWarning" in line for line in lines if " hub.server_stderr: " not in line)


@pytest.mark.slow
def test_a_python_warning_becomes_one_warning_log_line_once_per_place() -> None:
    script = (
        "import warnings\n"
        "from mcp.shared.exceptions import MCPDeprecationWarning\n"
        "from hub.logs import setup_logging\n"
        "setup_logging('info')\n"
        "for _ in range(3):\n"
        "    warnings.warn('disk almost full\\nsecond line', UserWarning)\n"
        "    warnings.warn('the handshake era is deprecated', MCPDeprecationWarning)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert _LOG_LINE.match(lines[0]) and " WARNING py.warnings: UserWarning: disk almost full (" in lines[0]


def test_a_json_line_holds_no_extra_fields_and_the_masked_traceback() -> None:
    record = _record("failed", exc_info=True)
    record.authorization = "Bearer sk-should-not-appear"  # as `extra=` would set it
    record.exc_text = "Traceback (most recent call last):\nValueError: ***"  # what hub.redaction leaves
    entry = json.loads(JsonFormatter().format(record))
    assert set(entry) == {"time", "level", "logger", "message", "exception"}
    assert entry["exception"].endswith("ValueError: ***")
    assert "sk-should-not-appear" not in json.dumps(entry)
