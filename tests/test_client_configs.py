"""Pasting a client's MCP config as it is (hub/config/documents.py): Claude Desktop, Cursor, VS Code
and Claude Code files load; `${env:VAR}` and the editor variables the hub understands are
resolved, every other `${...}` form is an error naming the key path; a client config's other
top-level keys are ignored with one warning, a hub config's unknown keys stay errors."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hub.config import load_config, parse_config
from hub.errors import ConfigError
from tests.clients import mcp_client
from tests.conftest import FIXTURE_SERVER, hub_command, running_hub, tool_text
from tests.schema_validation import ROOT, load_checked, parse_checked, schema_errors

CONFIGS = ROOT / "tests" / "configs"
FILE = "hub.yaml"
HOME = os.path.expanduser("~")
CLI_TIMEOUT_SECONDS = 60.0


def _error(data: Any, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(data, file=FILE, env=env or {})
    assert "\n" not in str(info.value)
    return info.value


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "hub.config.loader" and r.levelno == logging.WARNING]


# --- whole client files ---------------------------------------------------------------------------


def test_a_whole_claude_desktop_config_loads_its_mcp_servers_and_warns_once_naming_the_other_keys(
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = CONFIGS / "claude_desktop_config.json"

    with caplog.at_level(logging.WARNING, logger="hub.config.loader"):
        config = load_checked(path)

    assert sorted(config.servers) == ["brave-search", "filesystem"]
    assert config.servers["brave-search"].env == {"BRAVE_API_KEY": "brave-key-from-the-desktop-config"}
    assert config.servers["filesystem"].args[-1] == "/Users/someone/Desktop"
    assert config.warnings == (
        f"{path}: read as a client config (mcpServers, no hub settings); ignored the top-level keys the hub "
        "does not use: globalShortcut, preferences",
    )
    assert _warnings(caplog) == list(config.warnings)


def test_a_cursor_config_resolves_env_references_editor_variables_and_its_env_file() -> None:
    project = CONFIGS / "cursor-project"

    config = load_checked(project / ".cursor" / "mcp.json", env={"NOTES_TOKEN": "n0tes", "TRACKER_TOKEN": "tr4ck"})

    notes = config.servers["notes"]
    assert notes.args == ["-y", "notes-mcp", "--root", f"{project}/notes", "--cache", f"{HOME}/.notes-cache"]
    assert notes.env == {
        "NOTES_REGION": "eu-west-1",
        "NOTES_MODE": "read-only",
        "NOTES_TOKEN": "n0tes",  # `env` wins over the envFile
        "NOTES_PROJECT": "cursor-project",
    }
    assert config.servers["tracker"].headers == {"Authorization": "Bearer tr4ck"}
    assert config.warnings == ()


def test_a_vscode_mcp_json_loads_its_typed_servers_and_ignores_its_inputs_and_host_settings() -> None:
    project = CONFIGS / "vscode-project"

    config = load_checked(project / ".vscode" / "mcp.json", env={"PERPLEXITY_API_KEY": "pplx", "GITHUB_TOKEN": "gh"})

    assert sorted(config.servers) == ["fetch", "github", "legacy-events", "perplexity"]
    perplexity = config.servers["perplexity"]
    assert (perplexity.kind, perplexity.env) == ("stdio", {"PERPLEXITY_API_KEY": "pplx", "PERPLEXITY_TIMEOUT": "30"})
    github = config.servers["github"]
    assert (github.kind, github.url, github.headers) == (
        "streamable_http",
        "https://api.githubcopilot.com/mcp/",
        {"Authorization": "Bearer gh"},
    )
    assert config.servers["fetch"].cwd == str(project)
    assert config.servers["legacy-events"].kind == "sse"
    assert config.warnings == ()


def test_a_claude_code_mcp_json_resolves_variables_and_their_defaults() -> None:
    path = CONFIGS / "claude-code-project" / ".mcp.json"

    config = load_checked(path, env={"API_KEY": "k3y", "DB_PASSWORD": "pw", "DB_CONFIG": ""})

    api = config.servers["api-server"]
    assert (api.kind, api.url, api.headers) == (
        "streamable_http",
        "https://api.example.com/mcp",
        {"Authorization": "Bearer k3y"},
    )
    database = config.servers["local-db"]
    assert (database.args, database.env) == (["--config", "./db.json"], {"DB_PASSWORD": "pw"})


def test_a_client_config_whose_variable_is_unset_fails_naming_its_key_path() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(CONFIGS / "cursor-project" / ".cursor" / "mcp.json", env={"NOTES_TOKEN": "n"})

    assert info.value.key_path == "mcpServers.tracker.headers.Authorization"
    assert info.value.reason == "environment variable ${env:TRACKER_TOKEN} is not set"


# --- client config or hub config ------------------------------------------------------------------


def test_a_client_config_without_other_keys_loads_without_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="hub.config.loader"):
        config = parse_checked({"mcpServers": {"a": {"command": "c"}}})

    assert config.warnings == ()
    assert _warnings(caplog) == []


def test_a_vscode_shaped_file_with_other_keys_is_a_client_config_too() -> None:
    config = parse_checked({"servers": {"GitHub": {"type": "http", "url": "https://x.example/mcp"}}, "extra": 1})

    assert list(config.servers) == ["github"]
    assert config.warnings == (
        "hub.yaml: read as a client config (servers, no hub settings); ignored the top-level keys the hub does "
        "not use: extra",
    )


def test_a_client_key_beside_a_hub_setting_is_an_error_naming_the_setting() -> None:
    err = _error({"listen": {"port": 9000}, "mcpServers": {"a": {"command": "c"}}, "globalShortcut": "x"})

    assert err.key_path == "globalShortcut"
    assert err.reason == (
        "unknown key 'globalShortcut' (a client config's own keys are ignored only in a file without hub "
        "settings, and this one has 'listen')"
    )


def test_an_unknown_top_level_key_of_a_hub_config_without_a_client_map_stays_a_plain_error() -> None:
    err = _error({"servers": {"a": {"command": "c"}}, "lisen": {"port": 1}})

    assert (err.key_path, err.reason) == ("lisen", "unknown key 'lisen'")


# --- VS Code's `servers` or the hub's -------------------------------------------------------------


@pytest.mark.parametrize(
    "document",
    [
        pytest.param({"servers": {"My Server": {"type": "stdio", "command": "c"}}}, id="an-entry-has-type"),
        pytest.param({"inputs": [], "servers": {"My Server": {"command": "c"}}}, id="the-file-has-inputs"),
        pytest.param(
            {"servers": {"My Server": {"command": "c"}, "other": {"type": "sse", "url": "http://127.0.0.1:1/sse"}}},
            id="another-entry-has-type",
        ),
    ],
)
def test_servers_is_read_in_vscode_shape_when_an_entry_has_a_type_or_the_file_has_inputs(
    document: dict[str, Any],
) -> None:
    config = parse_checked(document)

    assert "my-server" in config.servers
    assert config.servers["my-server"].command == "c"


def test_a_servers_map_without_type_or_inputs_is_the_hubs_and_needs_server_ids() -> None:
    err = _error({"servers": {"My Server": {"command": "c"}}})

    assert err.key_path == "servers.My Server"
    assert err.reason == "server_id 'My Server' must match ^[a-z][a-z0-9-]{0,31}$"


def test_an_unknown_key_of_a_vscode_entry_fails_at_its_key_path_in_the_file() -> None:
    err = _error({"servers": {"GitHub": {"type": "http", "url": "https://x.example/mcp", "bogus": 1}}})

    assert (err.key_path, err.reason) == ("servers.GitHub.bogus", "unknown key 'bogus'")


def test_a_bad_value_in_a_vscode_entry_fails_at_its_key_path_in_the_file() -> None:
    err = _error({"inputs": [], "servers": {"GitHub": {"url": "https://x.example/mcp", "timeout_seconds": 0}}})

    assert (err.key_path, err.reason) == ("servers.GitHub.timeout_seconds", "Input should be greater than 0")


def test_mcp_servers_and_vscode_servers_in_one_file_merge_and_a_shared_id_is_an_error() -> None:
    merged = parse_checked({"mcpServers": {"a": {"command": "c"}}, "servers": {"B": {"type": "stdio", "command": "c"}}})
    err = _error({"mcpServers": {"a": {"command": "c"}}, "servers": {"A": {"type": "stdio", "command": "c"}}})

    assert sorted(merged.servers) == ["a", "b"]
    assert (err.key_path, err.reason) == ("servers.A", "derives the server_id 'a', already used by another entry")


# --- client entries -------------------------------------------------------------------------------


def test_client_env_numbers_become_strings_and_null_drops_the_variable() -> None:
    config = parse_checked({"mcpServers": {"a": {"command": "c", "env": {"N": 3, "F": 1.5, "GONE": None}}}})

    assert config.servers["a"].env == {"N": "3", "F": "1.5"}


def test_host_side_settings_of_a_client_entry_are_ignored() -> None:
    entry = {
        "type": "stdio",
        "command": "c",
        "autoApprove": ["x"],
        "alwaysAllow": ["y"],
        "description": "d",
        "dev": {"watch": "src/**"},
        "gallery": True,
        "version": "1.0.0",
    }

    config = parse_checked({"mcpServers": {"a": entry}})

    assert config.servers["a"].command == "c"


@pytest.mark.parametrize(
    ("entry", "key_path", "reason"),
    [
        pytest.param(
            {"type": "stdio", "url": "https://x.example/mcp"},
            "mcpServers.a.type",
            "type 'stdio' needs a 'command' (a stdio server), but the entry has a 'url'",
            id="stdio-with-url",
        ),
        pytest.param(
            {"type": "sse", "command": "c"},
            "mcpServers.a.type",
            "type 'sse' needs a 'url' (a remote server), but the entry has a 'command'",
            id="sse-with-command",
        ),
        pytest.param(
            {"type": "http", "transport": "sse", "url": "https://x.example/mcp"},
            "mcpServers.a.type",
            "give either type or transport, not both",
            id="type-and-transport",
        ),
        pytest.param(
            {"command": "c", "disabled": False, "enabled": True},
            "mcpServers.a.disabled",
            "give either disabled or enabled, not both",
            id="disabled-and-enabled",
        ),
        pytest.param(
            {"command": "c", "disabled": "no"}, "mcpServers.a.disabled", "must be true or false", id="disabled-text"
        ),
        pytest.param(
            {"url": "https://x.example/mcp", "envFile": "x.env"},
            "mcpServers.a.envFile",
            "only applies to a stdio server ('command')",
            id="env-file-on-remote",
        ),
    ],
)
def test_a_contradictory_client_entry_fails_naming_the_key(entry: dict[str, Any], key_path: str, reason: str) -> None:
    err = _error({"mcpServers": {"a": entry}})

    assert (err.key_path, err.reason) == (key_path, reason)
    assert schema_errors({"mcpServers": {"a": entry}}) != []


def test_an_env_file_is_read_relative_to_the_config_file_without_expanding_references(tmp_path: Path) -> None:
    (tmp_path / "server.env").write_text("# comment\nA=1\nexport B='two words'\nC=${NOT_EXPANDED}\nEMPTY=\n")
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {"a": {"command": "c", "envFile": "server.env", "env": {"A": "env"}}}}))

    config = load_checked(path)

    assert config.servers["a"].env == {"A": "env", "B": "two words", "C": "${NOT_EXPANDED}", "EMPTY": ""}


def test_a_missing_env_file_fails_naming_the_key_path_and_the_file(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {"a": {"command": "c", "envFile": "missing.env"}}}))

    with pytest.raises(ConfigError) as info:
        load_config(path, env={})

    assert info.value.key_path == "mcpServers.a.envFile"
    assert info.value.reason == f"cannot read {tmp_path / 'missing.env'}: No such file or directory"


def test_an_env_file_value_never_appears_in_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "server.env").write_text("API_KEY=s3cret-token\n")
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {"a": {"command": "c", "envFile": "server.env", "url": "http://x/"}}}))

    with pytest.raises(ConfigError) as info:
        load_config(path, env={})

    assert "s3cret" not in str(info.value)


# --- ${...} references ----------------------------------------------------------------------------


def _args(value: str, env: dict[str, str] | None = None, **kwargs: Any) -> list[str]:
    return (
        parse_config({"servers": {"s": {"command": "c", "args": [value]}}}, env=env or {}, **kwargs).servers["s"].args
    )


def test_an_env_colon_reference_is_the_same_as_a_plain_one() -> None:
    assert _args("${env:TOKEN}", {"TOKEN": "abc"}) == _args("${TOKEN}", {"TOKEN": "abc"}) == ["abc"]
    assert _args("${env:TOKEN:-fallback}") == _args("${TOKEN:-fallback}") == ["fallback"]


def test_user_home_and_the_path_separator_are_resolved() -> None:
    assert _args("${userHome}${pathSeparator}x${/}y") == [f"{HOME}{os.sep}x{os.sep}y"]


def test_a_predefined_name_shadows_a_variable_that_env_colon_still_reaches() -> None:
    assert _args("${userHome}|${env:userHome}", {"userHome": "/from/env"}) == [f"{HOME}|/from/env"]


@pytest.mark.parametrize(
    ("directory", "workspace"),
    [
        pytest.param("project", "project", id="the-config-directory"),
        pytest.param("project/.vscode", "project", id="the-project-of-a-vscode-directory"),
        pytest.param("project/.cursor", "project", id="the-project-of-a-cursor-directory"),
    ],
)
def test_the_workspace_folder_is_the_config_directory_or_the_project_above_vscode_or_cursor(
    tmp_path: Path, directory: str, workspace: str
) -> None:
    (tmp_path / directory).mkdir(parents=True)
    path = tmp_path / directory / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {"s": {"command": "c", "args": ["${workspaceFolder}"]}}}))

    config = load_checked(path)

    assert config.servers["s"].args == [str(tmp_path / workspace)]


def test_the_workspace_folder_of_a_config_built_in_memory_is_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    assert _args("${workspaceFolder}/${workspaceFolderBasename}") == [f"{tmp_path}/{tmp_path.name}"]
    assert _args("${workspaceFolder}", directory=tmp_path / ".vscode") == [str(tmp_path)]


def test_an_input_reference_is_an_error_that_says_to_use_an_environment_variable() -> None:
    err = _error({"servers": {"gh": {"type": "stdio", "command": "c", "env": {"TOKEN": "${input:github-token}"}}}})

    assert err.key_path == "servers.gh.env.TOKEN"
    assert err.reason == (
        "${input:github-token} asks a person for the value in VS Code, which the hub cannot do: put the value in "
        "an environment variable and write ${GITHUB_TOKEN} or ${env:GITHUB_TOKEN}"
    )


@pytest.mark.parametrize("form", ["${command:pickProcess}", "${config:editor.fontSize}"])
def test_command_and_config_references_are_errors_that_name_the_editor(form: str) -> None:
    err = _error({"servers": {"s": {"command": "c", "args": [form]}}})

    assert err.key_path == "servers.s.args[0]"
    assert err.reason == f"{form} needs the editor (it runs a command or reads a setting there), which the hub has not"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        pytest.param("${workspaceFolder:api}", "${workspaceFolder:api}", id="multi-root-workspace"),
        pytest.param("${VAR:=x}", "${VAR...}", id="assign-default"),
        pytest.param("${VAR-x}", "${VAR...}", id="dash-default"),
        pytest.param("${}", "${...}", id="empty"),
        pytest.param("${env:1BAD}", "${env:1BAD}", id="bad-variable-name"),
    ],
)
def test_a_reference_form_the_hub_does_not_understand_is_an_error_naming_the_key_path_and_the_form(
    value: str, shown: str
) -> None:
    err = _error({"mcpServers": {"s": {"command": "c", "args": ["--x", f"a{value}b"]}}})

    assert err.key_path == "mcpServers.s.args[1]"
    assert err.reason.startswith(f"unsupported reference {shown}: the hub resolves ${{VAR}}, ${{VAR:-default}}, ")


@pytest.mark.parametrize("name", ["file", "cwd", "selectedText", "relativeFileDirname"])
def test_an_editor_state_variable_is_an_error_while_env_colon_reaches_a_variable_of_that_name(name: str) -> None:
    err = _error({"servers": {"s": {"command": "c", "args": [f"${{{name}}}"]}}}, env={name: "v"})

    assert err.key_path == "servers.s.args[0]"
    assert err.reason == (
        f"${{{name}}} is an editor variable (VS Code's open file, selection or window), which has no value in the "
        f"hub; write ${{env:{name}}} for an environment variable of that name"
    )
    assert _args(f"${{env:{name}}}", {name: "v"}) == ["v"]


@pytest.mark.parametrize("value", ["${A:-${B}}", "${UNCLOSED", "x ${ y"])
def test_a_nested_or_unclosed_reference_is_an_error(value: str) -> None:
    err = _error({"servers": {"s": {"command": "c", "cwd": value}}})

    assert err.key_path == "servers.s.cwd"
    assert err.reason == "'${' without its '}', or a nested '${' (write $${ for a literal ${)"


def test_an_unsupported_reference_never_shows_what_follows_its_name() -> None:
    err = _error({"mcpServers": {"s": {"url": "http://x/", "headers": {"X-Key": "${KEY:=s3cret-token}"}}}})

    assert "s3cret" not in str(err)
    assert err.key_path == "mcpServers.s.headers.X-Key"


def test_a_schema_key_is_accepted_and_unused() -> None:
    config = parse_checked({"$schema": "../config/hub.schema.json", "servers": {"a": {"command": "c"}}})

    assert list(config.servers) == ["a"]


# --- end to end -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_pasted_client_config_gives_its_server_the_credentials_of_env_references_and_env_file(
    tmp_path: Path,
) -> None:
    (tmp_path / "server.env").write_text("FROM_FILE=file-value\n")
    path = tmp_path / "mcp.json"
    path.write_text(
        json.dumps(
            {
                "globalShortcut": "Alt+Space",
                "mcpServers": {
                    "Fixture": {
                        "command": sys.executable,
                        "args": [FIXTURE_SERVER, "--name", "fixture"],
                        "env": {"API_KEY": "${env:HUB_TEST_API_KEY}"},
                        "envFile": "${workspaceFolder}/server.env",
                    }
                },
            }
        )
    )
    config = load_config(path, env={**os.environ, "HUB_TEST_API_KEY": "key-from-the-environment"})

    async with running_hub({}, config=config) as hub, mcp_client(hub.url) as client:
        api_key = await client.call_tool("fixture__getenv", {"name": "API_KEY"})
        from_file = await client.call_tool("fixture__getenv", {"name": "FROM_FILE"})

    assert tool_text(api_key) == "key-from-the-environment"
    assert tool_text(from_file) == "file-value"


@pytest.mark.slow
def test_mcphub_check_of_a_claude_desktop_config_exits_0_and_shows_the_warning() -> None:
    path = CONFIGS / "claude_desktop_config.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCPHUB_")}

    def check(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            hub_command("check", "-c", str(path), *extra),
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_SECONDS,
            env=env,
        )

    table, as_json = check(), check("--json")

    assert table.returncode == 0, table.stderr
    assert "OK, 2 servers" in table.stdout
    assert table.stderr.splitlines() == [
        f"mcphub: warning: {path}: read as a client config (mcpServers, no hub settings); ignored the top-level "
        "keys the hub does not use: globalShortcut, preferences"
    ]
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert data["servers"] == ["brave-search", "filesystem"]
    assert data["warnings"] == [table.stderr.splitlines()[0].removeprefix("mcphub: warning: ")]
