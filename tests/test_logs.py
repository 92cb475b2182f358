"""Structured logs: one JSON object per line, and a request id that follows one MCP request
across the hub's log lines (endpoint -> router -> server connection) and never reaches a client."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import pytest
from mcp import Client, MCPError

from hub.app import Hub
from hub.config import parse_config
from hub.logs import JsonFormatter, TextFormatter, request_id_var, server_id_var
from tests.test_reload import faulty, serve_hub

pytestmark = pytest.mark.anyio


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


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


def test_a_line_outside_any_request_has_no_context_ids() -> None:
    entry = json.loads(JsonFormatter().format(_record("idle")))
    assert "request_id" not in entry and "server_id" not in entry


async def test_one_request_id_follows_a_call_from_the_endpoint_to_the_server_connection_and_is_not_returned() -> None:
    config = parse_config({"servers": {"fx": faulty("fx")}}, file="<test>")
    async with serve_hub(Hub(config)) as hub:
        with _json_lines_of("hub") as captured, anyio.fail_after(30):
            async with Client(hub.url) as client:
                first = await client.call_tool("fx__echo", {"text": "a"})
                with pytest.raises(MCPError) as failed:
                    await client.call_tool("fx__fail_times", {"n": 1, "key": "logs"})
    entries = [json.loads(line) for line in captured.lines]
    by_request: dict[str, set[str]] = {}
    for entry in entries:
        if "request_id" in entry:
            by_request.setdefault(entry["request_id"], set()).add(entry["logger"])
            assert entry["server_id"] == "fx"
    routed = [loggers for loggers in by_request.values() if {"hub.faces", "hub.servers"} <= loggers]
    assert len(routed) == 2, by_request
    for request_id in by_request:
        assert request_id not in first.model_dump_json()
        assert request_id not in str(failed.value.error.model_dump())
