"""The named steps of `mcphub serve` (`hub.cli.serve`), each on its own: the overrides, the
config it serves (and reloads), and the banner. Pure tier: real config objects and a rich
console writing to a string; the end-to-end `serve` is in `tests/test_cli.py`."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from hub.app import DrainPhase, DrainReport
from hub.cli.serve import Banner, ServeOverrides, load_serve_config
from hub.config import parse_config
from hub.errors import ConfigError
from tests.conftest import fixture_entry


def _config_data(**settings: Any) -> dict[str, Any]:
    return {
        "listen": {"host": "127.0.0.1", "port": 9001},
        "servers": {"echo": fixture_entry("echo", pinning="off"), "more": fixture_entry("more")},
        **settings,
    }


def _write(path: Path, data: dict[str, Any]) -> str:
    path.write_text(json.dumps(data), encoding="utf-8")  # JSON is YAML
    return str(path)


def _banner(*, json_output: bool) -> tuple[Banner, io.StringIO]:
    text = io.StringIO()
    return Banner(Console(file=text, width=200, highlight=False), json_output=json_output), text


def test_overrides_change_only_the_listen_fields_given() -> None:
    config = parse_config(_config_data())

    assert ServeOverrides().apply(config) is config
    port_only = ServeOverrides(port=0).apply(config)
    assert (port_only.listen.host, port_only.listen.port) == ("127.0.0.1", 0)
    both = ServeOverrides(host="::1", port=9100).apply(config)
    assert (both.listen.host, both.listen.port) == ("::1", 9100)
    assert config.listen.port == 9001  # the loaded config is never changed in place


def test_locked_pins_every_server_even_one_that_turned_pinning_off() -> None:
    config = parse_config(_config_data())

    locked = ServeOverrides(locked=True).apply(config)

    assert locked.pinning == "locked"
    assert {sid: server.pinning for sid, server in locked.servers.items()} == {"echo": None, "more": None}
    assert config.servers["echo"].pinning == "off"


def test_a_host_override_beyond_loopback_without_auth_is_refused_over_http_but_not_over_stdio(tmp_path: Path) -> None:
    path = _write(tmp_path / "hub.yaml", _config_data())
    beyond_loopback = ServeOverrides(host="0.0.0.0")

    with pytest.raises(ConfigError) as refused:
        load_serve_config(path, beyond_loopback, stdio=False)
    assert refused.value.file is None  # the file is fine: the command line made it wrong
    assert "0.0.0.0" in str(refused.value)

    config, source, loader = load_serve_config(path, beyond_loopback, stdio=True)
    assert (source, config.listen.host) == (path, "0.0.0.0")
    assert loader is not None


def test_a_reload_reads_the_file_anew_with_the_same_overrides(tmp_path: Path) -> None:
    file = tmp_path / "hub.yaml"
    path = _write(file, _config_data())
    config, _, loader = load_serve_config(path, ServeOverrides(port=0, locked=True), stdio=False)
    assert loader is not None
    assert (sorted(config.servers), config.listen.port, config.pinning) == (["echo", "more"], 0, "locked")

    data = _config_data()
    del data["servers"]["more"]
    _write(file, data)
    reloaded = loader()

    assert (sorted(reloaded.servers), reloaded.listen.port, reloaded.pinning) == (["echo"], 0, "locked")


def test_the_demo_fleet_is_served_without_a_loader_since_there_is_no_file_to_reload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./hub.yaml here
    monkeypatch.delenv("MCPHUB_CONFIG", raising=False)

    config, source, loader = load_serve_config(None, ServeOverrides(), stdio=False)

    assert (source, loader) == ("<embedded demo fleet>", None)
    assert config.servers


@pytest.mark.anyio
async def test_with_json_the_banner_prints_one_object_per_line_each_with_its_event() -> None:
    banner, text = _banner(json_output=True)
    config = parse_config(_config_data())

    banner.config_loaded("hub.yaml", config)
    banner.listening("http://127.0.0.1:9001/mcp")
    report = DrainReport(cause="SIGTERM", grace_seconds=5.0, timeout_seconds=30.0)
    for phase in (DrainPhase.GRACE, DrainPhase.STOPPING, DrainPhase.DRAINED):
        await banner.drain_phase(phase, report)

    events = [json.loads(line) for line in text.getvalue().splitlines()]
    assert [event["event"] for event in events] == ["config", "listening", "draining", "stopping", "drained"]
    assert events[0] == {"event": "config", "source": "hub.yaml", "servers": ["echo", "more"]}
    assert events[1] == {"event": "listening", "url": "http://127.0.0.1:9001/mcp", "pid": os.getpid()}
    assert {key: events[2][key] for key in ("cause", "grace_seconds", "timeout_seconds")} == {
        "cause": "SIGTERM",
        "grace_seconds": 5.0,
        "timeout_seconds": 30.0,
    }


@pytest.mark.anyio
async def test_as_text_the_banner_says_the_config_and_each_drain_phase_in_one_line() -> None:
    banner, text = _banner(json_output=False)
    config = parse_config(_config_data())

    banner.config_loaded("[odd]/hub.yaml", config)  # a path is never read as markup
    report = DrainReport(cause="SIGTERM", grace_seconds=5.0, timeout_seconds=30.0, requests_failed=1, seconds=2.5)
    for phase in (DrainPhase.GRACE, DrainPhase.STOPPING, DrainPhase.DRAINED):
        await banner.drain_phase(phase, report)

    assert text.getvalue().splitlines() == [
        "mcphub: config [odd]/hub.yaml, 2 servers",
        "mcphub: draining (SIGTERM): /readyz answers 503; serving for 5 s",
        "mcphub: not accepting connections; waiting for the requests in flight",
        "mcphub: drained in 2.5 s (1 request failed)",
    ]
