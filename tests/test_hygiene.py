"""Description hygiene (hub/hygiene.py): invisible and control characters stripped or flagged,
overlong descriptions cut, with the reason on the route. Pure functions first, then a real hub
over tests/servers/poisoned_server.py (Unicode tags, bidi, zero-width, controls, 1 MiB)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest

from hub.config.trust import DescriptionsConfig
from hub.hygiene import clean_definition, clean_text, reveal
from tests.clients import http_client, mcp_client
from tests.conftest import ROOT, hub_command, running_hub, stdio_entry
from tests.servers.poisoned_server import (
    ARGUMENT,
    CONTROLS,
    HIDDEN,
    HUGE_CHARS,
    PROMPT,
    PROMPT_ARGUMENT,
    RESOURCE,
    TAGGED,
    TEMPLATE,
)

POISONED_SERVER = str(ROOT / "tests" / "servers" / "poisoned_server.py")
STRIP = DescriptionsConfig()
FLAG = DescriptionsConfig(sanitize="flag")
OFF = DescriptionsConfig(sanitize="off")


def _poisoned(**extra: Any) -> dict[str, Any]:
    return stdio_entry(POISONED_SERVER, **extra)


# ---------------------------------------------------------------- pure


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("a\U000e0041\U000e007fb", "Unicode tags"),
        ("a\u202eb\u2066c", "bidi controls"),
        ("a\u200bb\u200d\u2060\ufeff", "zero-width"),
        ("a\x00b\x1b\x7f\x85\x9f", "control characters"),
    ],
)
def test_each_kind_of_invisible_character_is_stripped_and_named(text: str, category: str) -> None:
    cleaned, findings = clean_text(text, STRIP)

    assert cleaned == text.translate({ord(c): None for c in text if c not in "abc"})
    hidden = len(text) - len(cleaned)
    assert findings == [f"stripped {hidden} invisible characters ({category})"]


def test_tab_newline_and_ordinary_unicode_are_kept() -> None:
    text = "Line\tone\nligne deux: café, 天气, emoji 😀, Arabic مرحبا"

    assert clean_text(text, STRIP) == (text, [])


def test_mixed_categories_are_counted_each() -> None:
    assert clean_text("\u200b\u200bx\U000e0001", STRIP)[1] == [
        "stripped 3 invisible characters (Unicode tags 1, zero-width 2)"
    ]


def test_flag_leaves_the_characters_in_and_says_so() -> None:
    assert clean_text("a\u202eb", FLAG) == (
        "a\u202eb",
        ["1 invisible character left in place (bidi controls; sanitize: flag)"],
    )


@pytest.mark.parametrize("settings", [STRIP, FLAG])
def test_a_description_over_max_chars_is_cut_to_max_chars_with_a_visible_marker(settings: DescriptionsConfig) -> None:
    cleaned, findings = clean_text("y" * 1_000_000, settings)

    marker = re.search(r" \[\.\.\. cut by mcphub: 1000000 characters, (\d+) shown\]$", cleaned)
    assert len(cleaned) == settings.max_chars == 4096
    assert (
        marker is not None and cleaned[: marker.start()] == "y" * int(marker.group(1)) and int(marker.group(1)) > 4000
    )
    assert findings == ["cut from 1000000 to 4096 characters"]


def test_off_serves_descriptions_unchanged_even_huge_ones() -> None:
    text = "\u200b" + "z" * 10_000

    assert clean_text(text, OFF) == (text, [])


def test_a_tools_nested_schema_descriptions_are_cleaned_and_their_paths_named() -> None:
    tool = types.Tool(
        name="t",
        description="ok",
        input_schema={
            "type": "object",
            "properties": {
                "a": {"type": "string", "description": "x\u200b"},
                "description": {"type": "object", "properties": {"b": {"description": "\U000e0042y"}}},
            },
        },
        output_schema={"anyOf": [{"description": "\u202ez"}]},
    )

    cleaned, notes = clean_definition(tool, STRIP)

    assert cleaned.description == "ok"
    assert cleaned.input_schema["properties"]["a"]["description"] == "x"
    assert cleaned.input_schema["properties"]["description"]["properties"]["b"]["description"] == "y"
    assert cleaned.output_schema == {"anyOf": [{"description": "z"}]}
    assert notes == (
        "inputSchema.properties.a.description: stripped 1 invisible character (zero-width)",
        "inputSchema.properties.description.properties.b.description: stripped 1 invisible character (Unicode tags)",
        "outputSchema.anyOf[0].description: stripped 1 invisible character (bidi controls)",
    )
    assert tool.input_schema["properties"]["a"]["description"] == "x\u200b"  # the original is untouched


def test_a_clean_definition_comes_back_as_the_same_object() -> None:
    tool = types.Tool(name="t", description="fine", input_schema={"type": "object", "properties": {}})

    assert clean_definition(tool, STRIP) == (tool, ())
    assert clean_definition(tool, STRIP)[0] is tool


def test_reveal_writes_hidden_characters_as_code_points() -> None:
    assert reveal("a\U000e0041\u200bb\tc") == "a<U+E0041><U+200B>b\tc"


# ---------------------------------------------------------------- a real hub over the poisoned server


@pytest.mark.anyio
async def test_a_hub_strips_hidden_characters_and_cuts_a_1_mib_description_in_every_face_with_route_notes() -> None:
    async with running_hub({"p": _poisoned()}) as hub:
        with anyio.fail_after(30):
            async with mcp_client(hub.url) as client:
                tools = {t.name: t for t in (await client.list_tools()).tools}
                prompts = (await client.list_prompts()).prompts
                resources = (await client.list_resources()).resources
                templates = (await client.list_resource_templates()).resource_templates
            async with mcp_client(hub.server_url("p")) as own:
                own_tools = {t.name: t for t in (await own.list_tools()).tools}
            async with http_client() as http:
                routes = {r["exposed"]: r for r in (await http.get(f"{hub.base_url}/admin/routes")).json()["routes"]}
        raw = hub.hub.catalog.definitions("p")
    tagged = tools["p__tagged"]
    assert tagged.description == "Echo the text." and tagged.input_schema["properties"]["text"]["description"] == (
        "The text to echo."
    )
    huge = tools["p__huge"].description or ""
    assert len(huge) == 4096 and "cut by mcphub: 1048576 characters" in huge
    assert tools["p__controls"].description == "Line one[31m\tred\nline two."
    assert own_tools["tagged"].description == "Echo the text." and len(own_tools["huge"].description or "") == 4096
    assert prompts[0].description == "Greet emos someone." and prompts[0].arguments is not None
    assert prompts[0].arguments[0].description == "Who."
    assert resources[0].description == "Read me." and templates[0].description == "A poison."
    assert routes["p__tagged"]["hygiene"] == [
        f"description: stripped {len(HIDDEN)} invisible characters (Unicode tags)",
        "inputSchema.properties.text.description: stripped 2 invisible characters (bidi controls 1, zero-width 1)",
    ]
    assert routes["p__huge"]["notes"] == ["description: cut from 1048576 to 4096 characters"]
    assert routes["p+poison://readme"]["hygiene"] == ["description: stripped 1 invisible character (zero-width)"]
    # Pins fingerprint what the server sent, before hygiene.
    assert raw[("tools", "tagged")][1]["description"] == TAGGED
    assert raw[("tools", "huge")][1]["description"] == "x" * HUGE_CHARS
    assert raw[("tools", "tagged")][1]["inputSchema"]["properties"]["text"]["description"] == ARGUMENT
    assert raw[("tools", "controls")][1]["description"] == CONTROLS
    assert raw[("prompts", "greet")][1]["description"] == PROMPT
    assert raw[("prompts", "greet")][1]["arguments"][0]["description"] == PROMPT_ARGUMENT
    assert raw[("resource_templates", "poison://{id}")][1]["description"] == TEMPLATE
    assert resources[0].description == RESOURCE.replace("\ufeff", "")


@pytest.mark.anyio
async def test_flag_keeps_hidden_characters_but_still_cuts_and_a_servers_own_setting_wins() -> None:
    servers = {"p": _poisoned(descriptions={"sanitize": "flag"}), "q": _poisoned(descriptions={"max_chars": 100_000})}
    async with running_hub(servers) as hub:
        with anyio.fail_after(30):
            async with mcp_client(hub.url) as client:
                tools = {t.name: t for t in (await client.list_tools()).tools}
        routes = {r.exposed: r for r in hub.hub.catalog.routes()}
    assert tools["p__tagged"].description == TAGGED
    assert (
        routes["p__tagged"].hygiene[0]
        == f"description: {len(HIDDEN)} invisible characters left in place (Unicode tags; sanitize: flag)"
    )
    assert len(tools["p__huge"].description or "") == 4096
    assert tools["q__tagged"].description == "Echo the text."  # q keeps the global `strip`
    assert len(tools["q__huge"].description or "") == 100_000


def test_check_connect_shows_why_a_description_was_changed(tmp_path: Path) -> None:
    config = tmp_path / "hub.json"
    config.write_text(json.dumps({"servers": {"p": _poisoned()}, "state_dir": str(tmp_path / "state")}))

    result = subprocess.run(
        hub_command("check", "--connect", "-c", str(config), "--json"),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    routes = {r["exposed"]: r for r in json.loads(result.stdout)["routes"]}
    assert "description: cut from 1048576 to 4096 characters" in routes["p__huge"]["notes"]
    assert f"description: stripped {len(HIDDEN)} invisible characters (Unicode tags)" in routes["p__tagged"]["notes"]
    state = json.loads((tmp_path / "state" / "state.json").read_text())
    assert "pins" not in state  # check shows pin status but pins nothing
