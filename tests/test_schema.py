"""config/: the generated JSON schema is current, and every example fleet loads."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from hub.config import json_schema, load_config

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"
SCHEMA_PATH = CONFIG_DIR / "hub.schema.json"
REGENERATE = "python -m hub.config > config/hub.schema.json"

# `${VAR}` and `${VAR:-default}`, but not the `$${` literal.
_ENV_REFERENCE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}")


def test_the_committed_json_schema_matches_the_models() -> None:
    committed = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))

    assert committed == json_schema(), f"{SCHEMA_PATH} is stale; regenerate it with: {REGENERATE}"


def test_the_json_schema_describes_the_config_file() -> None:
    schema = json_schema()

    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "MCP federation hub configuration"
    assert schema["additionalProperties"] is False
    assert schema["properties"]["servers"]["patternProperties"] == {
        "^[a-z][a-z0-9-]{0,31}$": {"$ref": "#/$defs/ServerConfig"}
    }
    assert set(schema["$defs"]) == {
        "BreakerConfig",
        "FilterConfig",
        "ListenConfig",
        "ReplicaConfig",
        "RetryConfig",
        "ServerConfig",
        "TracingConfig",
    }


def test_the_json_schema_documents_every_field_with_its_docstring() -> None:
    schema = json_schema()
    models: list[dict[str, Any]] = [schema, *schema["$defs"].values()]

    undocumented = [
        f"{model['title']}.{name}"
        for model in models
        for name, field in model["properties"].items()
        if not field.get("description")
    ]

    assert undocumented == []


def _dummy_value(name: str) -> str:
    """A value valid wherever a variable of that name is likely used."""
    if name.endswith("URL"):
        return "http://127.0.0.1:9/mcp"
    if name.endswith(("PORT", "SECONDS", "BYTES")):
        return "9"
    return "dummy-value"


def _env_for(text: str) -> dict[str, str]:
    """Dummy values for every `${VAR}` the file needs; `${VAR:-default}` keeps its default."""
    return {
        match.group(1): _dummy_value(match.group(1)) for match in _ENV_REFERENCE.finditer(text) if not match.group(2)
    }


def test_env_references_are_found_except_literals_and_defaults() -> None:
    text = 'a: "${TOKEN}" \nb: "$${NOT_A_VAR}"\nc: "${REPO:-.}"\nd: "x${HUB_URL}y"\n'

    assert _env_for(text) == {"TOKEN": "dummy-value", "HUB_URL": "http://127.0.0.1:9/mcp"}


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda path: path.name)
def test_every_example_config_loads(path: Path) -> None:
    env = _env_for(path.read_text(encoding="utf-8"))

    config = load_config(path, env=env)

    assert config.servers, f"{path.name} defines no servers"


def test_the_demo_fleet_in_config_is_the_one_the_hub_embeds() -> None:
    """`config/demo.yaml` documents the fleet `mcphub serve` runs with no config; the package
    ships its own copy (hub/fleets/demo.yaml) so an installed hub has it too."""
    from hub.app import DEMO_FLEET_PATH

    assert (CONFIG_DIR / "demo.yaml").read_text() == DEMO_FLEET_PATH.read_text()
