"""The hub's state file (hub.state): a stable hub_id, atomic writes, a corrupt file set aside."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from hub.app import Hub
from hub.config import HUB_ID_PATTERN, load_config, parse_config
from hub.state import STATE_FILE_NAME, StateFile, default_state_path, state_path


def test_a_generated_hub_id_is_stored_once_and_stays_the_same_across_restarts(tmp_path: Path) -> None:
    first = Hub(parse_config({"state_dir": str(tmp_path)}))
    second = Hub(parse_config({"state_dir": str(tmp_path)}))
    assert first.hub_id == second.hub_id
    assert re.fullmatch(r"hub-[0-9a-f]{12}", first.hub_id)
    assert re.fullmatch(HUB_ID_PATTERN, first.hub_id)
    stored = json.loads((tmp_path / STATE_FILE_NAME).read_text())
    assert stored["hub_id"] == first.hub_id


def test_a_configured_hub_id_wins_and_is_not_written(tmp_path: Path) -> None:
    hub = Hub(parse_config({"state_dir": str(tmp_path), "hub_id": "hub-a"}))
    assert hub.hub_id == "hub-a"
    assert not (tmp_path / STATE_FILE_NAME).exists()


def test_without_state_dir_each_config_file_has_a_state_file_of_its_own(tmp_path: Path) -> None:
    one, two = tmp_path / "one" / "hub.yaml", tmp_path / "two" / "hub.yaml"
    for path in (one, two):
        path.parent.mkdir()
        path.write_text("servers: {}\n")
    path_one = state_path(None, load_config(one).source)
    path_two = state_path(None, load_config(two).source)
    assert path_one != path_two
    assert path_one.name.startswith("hub-") and path_one.suffix == ".json"
    assert path_one == default_state_path(str(one))
    assert state_path(None, None).name == "default.json"
    assert state_path(str(tmp_path), str(one)) == tmp_path / STATE_FILE_NAME


def test_an_unreadable_state_file_is_set_aside_and_the_hub_starts_afresh(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / STATE_FILE_NAME
    path.write_text("{not json")
    with caplog.at_level(logging.ERROR, logger="hub.state"):
        state = StateFile(path)
        assert state.get("hub_id") is None
    kept = list(tmp_path.glob(f"{STATE_FILE_NAME}.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_text() == "{not json"
    assert "unreadable" in caplog.text
    state.put("pins", {"a": 1})
    assert StateFile(path).get("pins") == {"a": 1}
    assert not list(tmp_path.glob(f".{STATE_FILE_NAME}.*")), "no temporary file is left behind"


def test_a_section_with_non_ascii_text_and_an_integer_past_64_bits_is_written_and_read_back(tmp_path: Path) -> None:
    """Written by orjson, or by `json` for what orjson cannot write (an integer past 64 bits in a
    server's schema, kept in a pin): either way sorted, indented UTF-8 JSON ending in a newline."""
    path = tmp_path / STATE_FILE_NAME
    plain = {"b": "naïve ☃", "a": [1, 2]}
    StateFile(path).put("plain", plain)
    text = path.read_text(encoding="utf-8")
    assert text.endswith("}\n") and "naïve ☃" in text and text.index('"a"') < text.index('"b"')

    huge = {"maximum": 2**70, "title": "naïve"}
    StateFile(path).put("huge", huge)

    again = StateFile(path)
    assert again.get("plain") == plain and again.get("huge") == huge
    assert path.read_text(encoding="utf-8").endswith("}\n")
