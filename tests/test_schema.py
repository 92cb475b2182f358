"""config/: the generated JSON schema is current and accepts exactly what the loader accepts:
every example fleet and test config loads and conforms to it, and a config the loader refuses
for its shape is refused by the schema too."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from hub.config import DEMO_FLEET_PATH, json_schema, load_config, parse_config
from hub.errors import ConfigError
from tests.schema_validation import ROOT, SCHEMA_PATH, read_yaml, schema_errors

CONFIG_DIR = ROOT / "config"
TEST_CONFIG_DIR = ROOT / "tests" / "configs"
DEPLOY_DIR = ROOT / "deploy"
# The configs the deployment files run: the image's default, the compose replicas', the
# Kubernetes fleet ConfigMap's.
DEPLOY_CONFIG_FILES = sorted(DEPLOY_DIR.rglob("hub.yaml"))
REGENERATE = "python -m hub.config > config/hub.schema.json"
MODELINE = "# yaml-language-server: $schema=./hub.schema.json\n"

# Every config file in the repository: the examples, the embedded demo fleet, the test fixtures.
CONFIG_FILES = sorted(
    [
        *CONFIG_DIR.glob("*.yaml"),
        DEMO_FLEET_PATH,
        *DEPLOY_CONFIG_FILES,
        *(path for path in TEST_CONFIG_DIR.rglob("*") if path.suffix in (".json", ".yaml", ".yml")),
    ]
)

# `${VAR}`, `${env:VAR}` and `${VAR:-default}`, but not the `$${` literal.
_ENV_REFERENCE = re.compile(r"(?<!\$)\$\{(?:env:)?([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}")


def test_the_committed_json_schema_matches_the_models() -> None:
    committed = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))

    assert committed == json_schema(), f"{SCHEMA_PATH} is stale; regenerate it with: {REGENERATE}"


def test_the_json_schema_describes_the_config_file() -> None:
    schema = json_schema()

    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "MCP federation hub configuration"
    assert schema["$defs"]["ServerMap"]["patternProperties"] == {
        "^[a-z][a-z0-9-]{0,31}$": {
            "oneOf": [
                {"$ref": "#/$defs/StdioServer"},
                {"$ref": "#/$defs/RemoteServer"},
                {"$ref": "#/$defs/ReplicaGroup"},
            ]
        }
    }
    assert schema["$defs"]["ServerMap"]["additionalProperties"] is False
    assert {"mcpServers", "inputs", "$schema", "servers", "listen", "auth"} <= set(schema["properties"])
    assert {"FilterConfig", "ListenConfig", "StdioServer", "AuthConfig", "PolicyRule", "ClientServerEntry"} <= set(
        schema["$defs"]
    )
    assert schema["properties"]["auth"]["default"] == "none"


def test_the_json_schema_documents_every_field_with_its_docstring() -> None:
    schema = json_schema()
    models: list[dict[str, Any]] = [schema, *(d for d in schema["$defs"].values() if "properties" in d)]

    undocumented = [
        f"{model['title']}.{name}"
        for model in models
        for name, field in model["properties"].items()
        if not field.get("description")
    ]

    assert len(models) > 10
    assert undocumented == []


def _dummy_value(name: str) -> str:
    """A value valid wherever a variable of that name is likely used."""
    if name.endswith("URL"):
        return "http://127.0.0.1:9/mcp"
    if name.endswith(("PORT", "SECONDS", "BYTES")):
        return "9"
    return "dummy-value"


_ENV_KEY = re.compile(r"\b\w*_env:\s*([A-Za-z_][A-Za-z0-9_]*)")


def _env_for(text: str) -> dict[str, str]:
    """Dummy values for every `${VAR}` the file needs (`${VAR:-default}` keeps its default) and
    for every variable a `*_env:` key names (secrets read at load; at least 32 characters)."""
    env = {
        match.group(1): _dummy_value(match.group(1)) for match in _ENV_REFERENCE.finditer(text) if not match.group(2)
    }
    env.update({m.group(1): f"dummy-secret-{m.group(1)}-0123456789abcdef" for m in _ENV_KEY.finditer(text)})
    return env


def test_env_references_are_found_except_literals_and_defaults() -> None:
    text = 'a: "${TOKEN}" \nb: "$${NOT_A_VAR}"\nc: "${REPO:-.}"\nd: "x${HUB_URL}y"\n'

    assert _env_for(text) == {"TOKEN": "dummy-value", "HUB_URL": "http://127.0.0.1:9/mcp"}


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda path: path.name)
def test_every_example_config_loads(path: Path) -> None:
    env = _env_for(path.read_text(encoding="utf-8"))

    config = load_config(path, env=env)

    assert config.servers, f"{path.name} defines no servers"


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_config_file_loads_and_conforms_to_the_json_schema(path: Path) -> None:
    config = load_config(path, env=_env_for(path.read_text(encoding="utf-8")))

    assert config.servers
    assert schema_errors(read_yaml(path)) == []


def test_the_config_files_cover_the_examples_the_demo_fleet_and_every_client_shape() -> None:
    names = {str(path.relative_to(ROOT)) for path in CONFIG_FILES}

    assert {"config/example.yaml", "config/demo.yaml", "hub/fleets/demo.yaml"} <= names
    assert {"deploy/hub.yaml", "deploy/compose/hub.yaml", "deploy/kubernetes/hub.yaml"} <= names
    assert {
        "tests/configs/claude_desktop_config.json",
        "tests/configs/cursor-project/.cursor/mcp.json",
        "tests/configs/vscode-project/.vscode/mcp.json",
        "tests/configs/claude-code-project/.mcp.json",
    } <= names


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda path: path.name)
def test_every_example_config_names_the_schema_for_editors_on_its_first_line(path: Path) -> None:
    first_line = path.read_text(encoding="utf-8").splitlines(keepends=True)[0]

    assert first_line == MODELINE
    assert (path.parent / first_line.split("=", 1)[1].strip()).resolve() == SCHEMA_PATH


@pytest.mark.parametrize("path", DEPLOY_CONFIG_FILES, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_deployment_config_names_the_schema_for_editors_on_its_first_line(path: Path) -> None:
    first_line = path.read_text(encoding="utf-8").splitlines()[0]

    assert first_line.startswith("# yaml-language-server: $schema=")
    assert (path.parent / first_line.split("=", 1)[1].strip()).resolve() == SCHEMA_PATH


def test_the_demo_fleet_in_config_is_the_one_the_hub_embeds() -> None:
    """`config/demo.yaml` documents the fleet `mcphub serve` runs with no config; the package
    ships its own copy (hub/fleets/demo.yaml) so an installed hub has it too. Only the example
    names the schema: the installed copy has no `config/` beside it."""
    assert (CONFIG_DIR / "demo.yaml").read_text().removeprefix(MODELINE) == DEMO_FLEET_PATH.read_text()


# --- the schema refuses what the loader refuses for its shape ---------------------------------------

_URL = "http://127.0.0.1:1/mcp"
_SECRETS = {"TOKEN": "t" * 40, "SECRET": "s" * 40}
_OAUTH = {"token_url": "https://idp.example.com/token", "client_id": "hub", "client_secret_env": "SECRET"}

SHAPE_ERRORS = [
    pytest.param(["servers"], None, id="non-mapping-document"),
    pytest.param({"lisen": {}}, "lisen", id="unknown-top-level-key"),
    pytest.param({"globalShortcut": "x", "preferences": {}}, "globalShortcut", id="client-keys-without-a-server-map"),
    pytest.param(
        {"listen": {"port": 1}, "mcpServers": {"a": {"command": "c"}}, "globalShortcut": "x"},
        "globalShortcut",
        id="client-key-beside-hub-settings",
    ),
    pytest.param(
        {"servers": {"a": {"command": "c"}}, "mcpServers": {"b": {"command": "c"}}, "globalShortcut": "x"},
        "globalShortcut",
        id="client-key-beside-a-hub-servers-map",
    ),
    pytest.param({"$schema": 1}, "$schema", id="schema-key-not-a-string"),
    pytest.param({"inputs": {}, "servers": {}}, "inputs", id="inputs-not-a-list"),
    pytest.param({"servers": {"a": {"command": "c", "x": 1}}}, "servers.a.x", id="unknown-server-key"),
    pytest.param({"servers": {"Bad_Id": {"command": "c"}}}, "servers.Bad_Id", id="bad-server-id"),
    pytest.param({"servers": {"a": {"command": "c", "url": _URL}}}, "servers.a", id="command-and-url"),
    pytest.param({"servers": {"a": {"args": ["x"]}}}, "servers.a", id="neither-command-nor-url"),
    pytest.param(
        {"servers": {"a": {"command": "c", "replicas": [{"command": "d"}]}}}, "servers.a", id="replicas-and-command"
    ),
    pytest.param(
        {"servers": {"a": {"replicas": [{"command": "d"}], "args": ["x"]}}}, "servers.a", id="args-beside-replicas"
    ),
    pytest.param(
        {"servers": {"a": {"replicas": [{"command": "d", "url": _URL}]}}}, "servers.a", id="replica-command-and-url"
    ),
    pytest.param({"servers": {"a": {"command": "c", "headers": {"X": "v"}}}}, "servers.a", id="headers-on-stdio"),
    pytest.param({"servers": {"a": {"url": _URL, "args": ["x"]}}}, "servers.a", id="args-on-remote"),
    pytest.param({"servers": {"a": {"url": _URL, "max_restarts": 1}}}, "servers.a", id="max-restarts-on-remote"),
    pytest.param(
        {"servers": {"a": {"url": _URL, "headers": {"authorization": "Bearer x"}, "bearer_token_env": "TOKEN"}}},
        "servers.a",
        id="header-and-bearer-token",
    ),
    pytest.param(
        {"servers": {"a": {"url": _URL, "bearer_token_env": "TOKEN", "oauth": _OAUTH}}},
        "servers.a",
        id="bearer-token-and-oauth",
    ),
    pytest.param(
        {"servers": {"a": {"url": _URL, "transport": "websocket"}}}, "servers.a.transport", id="unknown-transport"
    ),
    pytest.param(
        {"servers": {"a": {"command": "c", "timeout_seconds": "soon"}}},
        "servers.a.timeout_seconds",
        id="timeout-not-a-number",
    ),
    pytest.param({"listen": {"port": 70000}}, "listen.port", id="port-out-of-range"),
    pytest.param({"mcpServers": ["a"]}, "mcpServers", id="mcp-servers-not-a-mapping"),
    pytest.param({"mcpServers": {"a": "npx x"}}, "mcpServers.a", id="mcp-servers-entry-not-a-mapping"),
    pytest.param({"mcpServers": {"!!!": {"command": "c"}}}, "mcpServers.!!!", id="mcp-servers-name-without-letters"),
    pytest.param(
        {"mcpServers": {"a": {"url": _URL, "type": "websocket"}}}, "mcpServers.a.type", id="mcp-servers-unknown-type"
    ),
    pytest.param(
        {"mcpServers": {"a": {"command": "c", "bogus": 1}}}, "mcpServers.a.bogus", id="mcp-servers-unknown-key"
    ),
    pytest.param(
        {"mcpServers": {"a": {"command": "c", "url": _URL}}}, "mcpServers.a", id="mcp-servers-command-and-url"
    ),
    pytest.param({"mcpServers": {"a": {"type": "stdio", "url": _URL}}}, "mcpServers.a.type", id="stdio-type-with-url"),
    pytest.param(
        {"mcpServers": {"a": {"type": "http", "command": "c"}}}, "mcpServers.a.type", id="http-type-with-command"
    ),
    pytest.param(
        {"mcpServers": {"a": {"type": "sse", "transport": "sse", "url": _URL}}},
        "mcpServers.a.type",
        id="type-and-transport",
    ),
    pytest.param(
        {"mcpServers": {"a": {"command": "c", "disabled": True, "enabled": True}}},
        "mcpServers.a.disabled",
        id="disabled-and-enabled",
    ),
    pytest.param(
        {"mcpServers": {"a": {"command": "c", "disabled": "yes"}}}, "mcpServers.a.disabled", id="disabled-not-a-boolean"
    ),
    pytest.param(
        {"mcpServers": {"a": {"url": _URL, "envFile": ".env"}}}, "mcpServers.a.envFile", id="env-file-on-remote"
    ),
    pytest.param(
        {"mcpServers": {"a": {"command": "c", "env": {"K": ["v"]}}}}, "mcpServers.a.env.K", id="env-value-a-list"
    ),
    pytest.param(
        {"servers": {"GitHub": {"type": "http", "url": _URL, "bogus": 1}}},
        "servers.GitHub.bogus",
        id="vscode-entry-unknown-key",
    ),
    pytest.param({"auth": {}}, "auth", id="auth-without-api-keys-or-jwt"),
    pytest.param(
        {"auth": {"api_keys": [{"id": "a", "key_sha256": "0" * 64, "key_env": "TOKEN"}]}},
        "auth.api_keys.0",
        id="api-key-with-two-sources",
    ),
    pytest.param(
        {
            "auth": {
                "jwt": {
                    "issuer": "https://idp.example.com",
                    "audience": "https://hub.example.com/mcp",
                    "jwks_url": "https://idp.example.com/jwks",
                    "public_key_file": "key.pem",
                }
            }
        },
        "auth.jwt",
        id="jwt-with-two-key-sources",
    ),
    pytest.param({"policies": [{"principal": "a", "scope": "s", "allow": ["*"]}]}, "policies.0", id="two-subjects"),
    pytest.param({"policies": [{"scope": "s"}]}, "policies.0", id="policy-allowing-nothing"),
    pytest.param(
        {"rate_limits": {"principals": {"bad id!": {"requests_per_second": 1, "burst": 1}}}},
        "rate_limits.principals",
        id="principal-id-key",
    ),
]


@pytest.mark.parametrize(("document", "key_path"), SHAPE_ERRORS)
def test_a_config_the_loader_refuses_for_its_shape_is_refused_by_the_schema_too(
    document: Any, key_path: str | None
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(document, file="hub.yaml", env=_SECRETS)

    assert (info.value.key_path or None) == key_path or (info.value.key_path or "").startswith(f"{key_path}.")
    assert schema_errors(document) != []


ACCEPTED = [
    pytest.param(None, id="empty-document"),
    pytest.param({"servers": {"a": {"command": "c", "timeout_seconds": "${T}"}}}, id="reference-for-a-number"),
    pytest.param({"servers": {"a": {"command": "c", "enabled": "${ON:-true}"}}}, id="reference-for-a-boolean"),
    pytest.param({"servers": {"a": {"url": _URL, "transport": "${KIND}"}}}, id="reference-for-an-enum"),
    pytest.param({"hub_id": "${HUB_ID}", "listen": {"port": "${PORT:-8765}"}}, id="reference-for-a-pattern"),
    pytest.param({"servers": {"a": {"command": "c", "prefix": False}}}, id="prefix-false"),
    pytest.param({"servers": {"a": {"replicas": [], "command": "c"}}}, id="empty-replicas-beside-command"),
    pytest.param({"servers": {"a": {"command": "c", "url": None}}}, id="null-url-beside-command"),
    pytest.param({"$schema": "./hub.schema.json", "servers": {}}, id="schema-key"),
    pytest.param({"mcpServers": {}, "globalShortcut": "x"}, id="client-config-with-no-servers"),
    pytest.param({"inputs": [], "servers": {"My Server": {"command": "c"}}}, id="vscode-shape-by-inputs"),
    pytest.param({"servers": {"My Server": {"type": "stdio", "command": "c"}, "b": {"command": "c"}}}, id="by-type"),
    pytest.param(
        {"mcpServers": {"a": {"command": "c", "env": {"N": 3, "GONE": None}}}, "preferences": {"x": 1}},
        id="client-env-numbers-and-null",
    ),
    pytest.param({"mcpServers": {"a": {"url": _URL, "type": "streamableHttp"}}}, id="streamable-http-type"),
    pytest.param({"servers": {"a": {"url": _URL, "headers": {"Authorization": "Bearer ${TOKEN}"}}}}, id="header"),
]


@pytest.mark.parametrize("document", ACCEPTED)
def test_a_config_the_loader_accepts_is_accepted_by_the_schema(document: Any) -> None:
    env = {"T": "2", "KIND": "sse", "HUB_ID": "hub-1", **_SECRETS}

    parse_config(document, file="hub.yaml", env=env)

    assert schema_errors(document) == []
