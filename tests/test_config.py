"""hub/config/: YAML/JSON -> HubConfig, ${ENV} interpolation, mcpServers import, ConfigError."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hub.config import DEFAULT_HOST, DEFAULT_PORT, HubConfig, RemoteServer, StdioServer, load_config, parse_config
from hub.errors import ConfigError
from tests.schema_validation import load_checked, parse_checked

FILE = "hub.yaml"


def _error(data: Any, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(data, file=FILE, env=env or {})
    return info.value


def _assert_one_line(err: ConfigError) -> None:
    assert "\n" not in str(err)
    assert "\r" not in str(err)


# --- parsing and defaults -------------------------------------------------------------------------


def test_a_stdio_server_parses_with_its_command_args_and_env() -> None:
    config = parse_checked(
        {
            "servers": {
                "time": {"command": "mcp-server-time", "args": ["--local-timezone", "UTC"], "env": {"TZ": "UTC"}}
            }
        },
        env={},
    )

    server = config.servers["time"]
    assert server.command == "mcp-server-time"
    assert server.args == ["--local-timezone", "UTC"]
    assert server.env == {"TZ": "UTC"}
    assert isinstance(server, StdioServer)
    assert server.kind == "stdio"


def test_a_remote_server_parses_with_its_url_headers_and_timeout() -> None:
    config = parse_checked(
        {
            "servers": {
                "everything": {
                    "url": "http://127.0.0.1:3101/mcp",
                    "headers": {"Authorization": "Bearer abc"},
                    "timeout_seconds": 30,
                }
            }
        },
        env={},
    )

    server = config.servers["everything"]
    assert server.url == "http://127.0.0.1:3101/mcp"
    assert server.headers == {"Authorization": "Bearer abc"}
    assert server.timeout_seconds == 30.0
    assert isinstance(server, RemoteServer)


def test_a_server_without_optional_fields_gets_the_documented_defaults() -> None:
    server = parse_checked({"servers": {"time": {"command": "mcp-server-time"}}}, env={}).servers["time"]

    assert server.timeout_seconds == 60.0
    assert server.protocol == "auto"
    assert server.prefix is None
    assert server.exposed_prefix("time") == "time"
    assert server.tools.include == ["*"]
    assert server.tools.exclude == []
    assert server.enabled is True
    assert server.args == []
    assert server.env == {}
    assert isinstance(server, StdioServer) and server.cwd is None


def test_an_empty_document_is_a_hub_with_no_servers_on_the_default_address() -> None:
    config = parse_checked(None, file=FILE, env={})

    assert config == HubConfig()
    assert config.servers == {}
    assert config.listen.host == DEFAULT_HOST == "127.0.0.1"
    assert config.listen.port == DEFAULT_PORT == 8765


def test_a_configured_prefix_replaces_the_server_id_and_false_means_original_names() -> None:
    config = parse_checked(
        {"servers": {"time": {"command": "t", "prefix": "clock"}, "git": {"command": "g", "prefix": False}}}, env={}
    )

    assert config.servers["time"].exposed_prefix("time") == "clock"
    assert config.servers["git"].exposed_prefix("git") is None


@pytest.mark.parametrize(
    ("entry", "kind"),
    [
        ({"command": "mcp-server-time"}, "stdio"),
        ({"url": "https://example.com/mcp"}, "streamable_http"),
        ({"url": "https://example.com/mcp", "transport": "streamable_http"}, "streamable_http"),
        ({"url": "https://example.com/sse", "transport": "sse"}, "sse"),
    ],
)
def test_the_kind_of_a_server_follows_command_url_and_transport(entry: dict[str, Any], kind: str) -> None:
    assert parse_checked({"servers": {"s": entry}}, env={}).servers["s"].kind == kind


def test_parsing_does_not_modify_the_callers_document() -> None:
    data = {"mcpServers": {"remote": {"url": "${URL}", "type": "sse"}}}

    parse_checked(data, env={"URL": "http://127.0.0.1:1/sse"})

    assert data == {"mcpServers": {"remote": {"url": "${URL}", "type": "sse"}}}


# --- ${VAR} interpolation -------------------------------------------------------------------------


def test_an_env_reference_is_replaced_by_its_value_inside_a_longer_string() -> None:
    config = parse_checked(
        {"servers": {"e": {"url": "http://127.0.0.1:3101/mcp", "headers": {"Authorization": "Bearer ${TOKEN}"}}}},
        env={"TOKEN": "abc123"},
    )

    assert config.servers["e"].headers == {"Authorization": "Bearer abc123"}


def test_an_env_reference_with_a_default_uses_the_default_only_when_the_variable_is_unset() -> None:
    data = {"servers": {"git": {"command": "mcp-server-git", "args": ["--repository", "${REPO:-.}"]}}}

    assert parse_checked(data, env={}).servers["git"].args == ["--repository", "."]
    assert parse_checked(data, env={"REPO": "/srv/repo"}).servers["git"].args == ["--repository", "/srv/repo"]


def test_a_default_may_hold_colons_and_slashes() -> None:
    config = parse_checked({"servers": {"r": {"url": "${URL:-http://127.0.0.1:3101/mcp}"}}}, env={})

    assert config.servers["r"].url == "http://127.0.0.1:3101/mcp"


def test_a_double_dollar_brace_is_a_literal_and_needs_no_variable() -> None:
    config = parse_checked({"servers": {"s": {"command": "echo", "args": ["$${HOME}", "a$${B:-c}"]}}}, env={})

    assert config.servers["s"].args == ["${HOME}", "a${B:-c}"]


def test_an_interpolated_value_is_not_interpolated_again() -> None:
    config = parse_checked({"servers": {"s": {"command": "echo", "args": ["${A}"]}}}, env={"A": "${B}"})

    assert config.servers["s"].args == ["${B}"]


def test_an_interpolated_number_is_converted_by_the_field_type() -> None:
    config = parse_checked({"servers": {"s": {"command": "x", "timeout_seconds": "${T}"}}}, env={"T": "2.5"})

    assert config.servers["s"].timeout_seconds == 2.5


def test_an_unresolved_env_reference_fails_with_the_key_path() -> None:
    err = _error(
        {"servers": {"x": {"url": "http://127.0.0.1:1/mcp", "headers": {"Authorization": "Bearer ${MISSING}"}}}},
        env={"OTHER": "hunter2-other-value"},
    )

    assert err.file == FILE
    assert err.key_path == "servers.x.headers.Authorization"
    assert err.reason == "environment variable ${MISSING} is not set"
    assert str(err) == "hub.yaml: servers.x.headers.Authorization: environment variable ${MISSING} is not set"


def test_an_unresolved_env_reference_in_a_list_names_the_index() -> None:
    err = _error({"servers": {"x": {"command": "c", "args": ["--a", "${NOPE}"]}}})

    assert err.key_path == "servers.x.args[1]"


def test_an_unresolved_env_reference_message_never_contains_other_env_values() -> None:
    err = _error(
        {
            "servers": {
                "x": {
                    "url": "http://127.0.0.1:1/mcp",
                    "headers": {"Authorization": "Bearer ${TOKEN}", "X-Other": "${MISSING}"},
                }
            }
        },
        env={"TOKEN": "s3cret-token", "UNRELATED": "hunter2"},
    )

    assert err.key_path == "servers.x.headers.X-Other"
    assert "s3cret" not in str(err)
    assert "hunter2" not in str(err)
    _assert_one_line(err)


# --- mcpServers import ----------------------------------------------------------------------------


def test_a_claude_desktop_mcp_servers_map_is_imported_as_servers() -> None:
    config = parse_checked(
        {
            "mcpServers": {
                "My_Server": {"command": "npx", "args": ["-y", "some-server"], "env": {"API_KEY": "k"}},
                "remote": {"url": "https://example.com/sse", "type": "sse"},
            }
        },
        env={},
    )

    assert sorted(config.servers) == ["my-server", "remote"]
    mine = config.servers["my-server"]
    assert (mine.kind, mine.command, mine.args, mine.env) == ("stdio", "npx", ["-y", "some-server"], {"API_KEY": "k"})
    remote = config.servers["remote"]
    assert (remote.kind, remote.url, remote.transport) == ("sse", "https://example.com/sse", "sse")


@pytest.mark.parametrize(
    ("type_", "kind"),
    [("http", "streamable_http"), ("streamable-http", "streamable_http"), ("sse", "sse")],
)
def test_an_mcp_servers_type_maps_to_the_transport(type_: str, kind: str) -> None:
    config = parse_checked({"mcpServers": {"r": {"url": "https://example.com/mcp", "type": type_}}}, env={})

    assert config.servers["r"].kind == kind


def test_an_mcp_servers_stdio_type_and_host_ui_settings_are_accepted_and_ignored() -> None:
    config = parse_checked(
        {"mcpServers": {"t": {"type": "stdio", "command": "t", "autoApprove": ["x"], "disabled": True}}}, env={}
    )

    assert config.servers["t"].kind == "stdio"
    assert config.servers["t"].enabled is False


def test_mcp_servers_and_servers_merge_when_their_ids_differ() -> None:
    config = parse_checked(
        {"servers": {"time": {"command": "t"}}, "mcpServers": {"git": {"command": "g"}}},
        env={},
    )

    assert sorted(config.servers) == ["git", "time"]


def test_the_same_id_under_servers_and_mcp_servers_is_an_error() -> None:
    err = _error({"servers": {"remote": {"command": "a"}}, "mcpServers": {"remote": {"url": "http://127.0.0.1:1/"}}})

    assert err.file == FILE
    assert err.key_path == "mcpServers.remote"
    assert err.reason == "server_id 'remote' is also defined under servers"
    _assert_one_line(err)


def test_two_mcp_servers_names_deriving_the_same_id_are_an_error() -> None:
    err = _error({"mcpServers": {"My_Server": {"command": "a"}, "my server": {"command": "b"}}})

    assert err.key_path == "mcpServers.my server"
    assert err.reason == "derives the server_id 'my-server', already used by another entry"


def test_an_unknown_mcp_servers_type_is_an_error_at_its_key_path() -> None:
    err = _error({"mcpServers": {"r": {"url": "https://example.com/mcp", "type": "websocket"}}})

    assert err.key_path == "mcpServers.r.type"
    assert (
        err.reason
        == "unknown transport type 'websocket' (use one of stdio, http, streamable-http, streamableHttp, sse)"
    )


def test_a_json_claude_desktop_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "claude_desktop_config.json"
    path.write_text(
        json.dumps(
            {
                "mcpServers": {
                    "My_Server": {"command": "uvx", "args": ["mcp-server-time"], "env": {"TZ": "UTC"}},
                    "remote": {"url": "https://example.com/mcp", "type": "http"},
                }
            }
        ),
        encoding="utf-8",
    )

    config = load_checked(path)

    assert sorted(config.servers) == ["my-server", "remote"]
    assert config.servers["my-server"].args == ["mcp-server-time"]
    assert config.servers["remote"].kind == "streamable_http"


def test_a_yaml_file_loads_with_interpolation(tmp_path: Path) -> None:
    path = tmp_path / "hub.yaml"
    path.write_text(
        "listen: {host: 0.0.0.0, port: 9000}\n"
        "auth: {api_keys: [{id: ops, key_env: OPS_KEY, scopes: [hub:admin]}]}\n"
        "servers:\n"
        "  everything:\n"
        "    url: http://127.0.0.1:3101/mcp\n"
        '    headers: {Authorization: "Bearer ${EVERYTHING_TOKEN}"}\n',
        encoding="utf-8",
    )

    config = load_checked(path, env={"EVERYTHING_TOKEN": "t0k", "OPS_KEY": "k" * 20})

    assert (config.listen.host, config.listen.port) == ("0.0.0.0", 9000)
    assert config.servers["everything"].headers == {"Authorization": "Bearer t0k"}


# --- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "key_path", "reason"),
    [
        pytest.param(
            {"servers": {"a": {"command": "c", "x": 1}}}, "servers.a.x", "unknown key 'x'", id="unknown-server-key"
        ),
        pytest.param({"lisen": {}}, "lisen", "unknown key 'lisen'", id="unknown-top-level-key"),
        pytest.param(
            {"servers": {"Bad_Id": {"command": "c"}}},
            "servers.Bad_Id",
            "server_id 'Bad_Id' must match ^[a-z][a-z0-9-]{0,31}$",
            id="bad-server-id",
        ),
        pytest.param(
            {"servers": {"a": {"command": "c", "url": "http://127.0.0.1:1/mcp"}}},
            "servers.a",
            "give exactly one of 'command' (stdio server) or 'url' (remote server)",
            id="command-and-url",
        ),
        pytest.param(
            {"servers": {"a": {"args": ["x"]}}},
            "servers.a",
            "give exactly one of 'command' (stdio server) or 'url' (remote server)",
            id="neither-command-nor-url",
        ),
        pytest.param(
            {"servers": {"a": {"command": "c", "headers": {"X-Key": "v"}}}},
            "servers.a",
            "headers only apply to a remote server ('url')",
            id="headers-on-stdio",
        ),
        pytest.param(
            {"servers": {"a": {"url": "http://127.0.0.1:1/mcp", "args": ["x"]}}},
            "servers.a",
            "args only apply to a stdio server ('command')",
            id="args-on-remote",
        ),
        pytest.param(
            {"servers": {"a": {"command": "c", "timeout_seconds": -1}}},
            "servers.a.timeout_seconds",
            "Input should be greater than 0",
            id="negative-timeout",
        ),
        pytest.param(
            {"servers": {"a": {"url": "ftp://example.com/mcp"}}},
            "servers.a.url",
            "url must be an http:// or https:// URL",
            id="non-http-url",
        ),
        pytest.param(
            {"servers": {"a": {"command": "c", "prefix": "a__b"}}},
            "servers.a.prefix",
            "prefix 'a__b' must be 1-32 letters, digits or inner '-' (it is joined to names with '__')",
            id="prefix-with-separator",
        ),
        pytest.param(
            {"servers": {"a": {"url": "http://127.0.0.1:1/mcp", "transport": "websocket"}}},
            "servers.a.transport",
            "Input should be 'streamable_http' or 'sse'",
            id="unknown-transport",
        ),
        pytest.param(
            {"listen": {"port": 70000}}, "listen.port", "Input should be less than or equal to 65535", id="port"
        ),
        pytest.param(
            {"public_url": "hub.example.com"},
            "public_url",
            "public_url must be a base URL like https://hub.example.com, got 'hub.example.com'",
            id="public-url",
        ),
    ],
)
def test_a_bad_value_fails_with_the_file_the_key_path_and_the_reason(
    data: dict[str, Any], key_path: str, reason: str
) -> None:
    err = _error(data)

    assert err.file == FILE
    assert err.key_path == key_path
    assert err.reason == reason
    assert str(err) == f"{FILE}: {key_path}: {reason}"
    _assert_one_line(err)


PREFIX_CLASHES = [
    pytest.param(
        {"servers": {"a": {"command": "c", "prefix": "p"}, "b": {"command": "c", "prefix": "p"}}},
        "servers 'a' and 'b' both use the prefix 'p'",
        "servers.b.prefix",
        id="duplicate-prefix",
    ),
    pytest.param(
        {"servers": {"a": {"command": "c", "prefix": "b"}, "b": {"command": "c", "prefix": False}}},
        "server 'a' uses the prefix 'b', which is another server's id",
        "servers.a.prefix",
        id="prefix-is-another-unprefixed-servers-id",
    ),
    pytest.param(
        {"servers": {"b": {"command": "c"}, "a": {"command": "c", "prefix": "b"}}},
        "servers 'b' and 'a' both use the prefix 'b'",
        "servers.a.prefix",
        id="prefix-is-an-earlier-servers-id",
    ),
    pytest.param(
        {"servers": {"a": {"command": "c", "prefix": "b"}, "b": {"command": "c"}}},
        "server 'a' uses the prefix 'b', which is another server's id",
        "servers.a.prefix",
        id="prefix-is-a-later-servers-id",
    ),
]


@pytest.mark.parametrize(("data", "reason", "key_path"), PREFIX_CLASHES)
def test_a_prefix_clash_between_two_servers_fails_naming_both(data: dict[str, Any], reason: str, key_path: str) -> None:
    err = _error(data)

    assert err.file == FILE
    assert err.key_path == key_path
    assert err.reason == reason
    assert str(err) == f"{FILE}: {key_path}: {reason}"
    _assert_one_line(err)


def test_several_problems_are_listed_on_one_line_with_the_first_key_path_first() -> None:
    err = _error({"servers": {"a": {"command": "c", "x": 1, "timeout_seconds": 0}}})

    assert err.key_path == "servers.a.timeout_seconds"
    assert err.reason == "Input should be greater than 0; servers.a.x: unknown key 'x'"
    _assert_one_line(err)


def test_a_non_mapping_document_fails_naming_the_file() -> None:
    err = _error(["servers"])

    assert err.file == FILE
    assert err.key_path is None
    assert str(err) == "hub.yaml: the document must be a mapping (servers:, listen:, ...)"


def test_a_non_mapping_yaml_file_fails_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n", encoding="utf-8")

    with pytest.raises(ConfigError) as info:
        load_config(path, env={})

    assert info.value.file == str(path)
    assert str(info.value) == f"{path}: the document must be a mapping (servers:, listen:, ...)"


def test_a_duplicate_yaml_key_fails_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text(
        "servers:\n  time:\n    command: mcp-server-time\n  time:\n    command: other\n",
        encoding="utf-8",
    )

    with pytest.raises(ConfigError) as info:
        load_config(path, env={})

    assert info.value.file == str(path)
    assert str(info.value) == f"{path}: line 4, column 3: duplicate key 'time'"
    _assert_one_line(info.value)


def test_a_missing_file_fails_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"

    with pytest.raises(ConfigError) as info:
        load_config(path, env={})

    assert info.value.file == str(path)
    assert str(info.value) == f"{path}: cannot read the file: No such file or directory"


def test_a_directory_instead_of_a_file_fails_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, env={})

    assert str(info.value) == f"{tmp_path}: cannot read the file: Is a directory"


def test_a_file_that_is_not_utf8_fails_with_a_config_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"servers:\n  a:\n    command: caf\xe9\n")

    with pytest.raises(ConfigError) as info:
        load_config(path, env={})

    assert info.value.file == str(path)
    assert str(info.value) == (
        f"{path}: cannot read the file: 'utf-8' codec can't decode byte 0xe9 in position 30: invalid continuation byte"
    )


def test_invalid_yaml_fails_naming_the_file_and_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("servers:\n  a:\n    command: [unclosed\n", encoding="utf-8")

    with pytest.raises(ConfigError) as info:
        load_config(path, env={})

    assert info.value.file == str(path)
    assert str(info.value).startswith(f"{path}: line 4, column 1: ")
    _assert_one_line(info.value)


def test_an_error_in_a_loaded_file_names_the_file_and_the_key_path(tmp_path: Path) -> None:
    path = tmp_path / "hub.yaml"
    path.write_text("servers:\n  a:\n    command: c\n    x: 1\n", encoding="utf-8")

    with pytest.raises(ConfigError) as info:
        load_config(path, env={})

    assert str(info.value) == f"{path}: servers.a.x: unknown key 'x'"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"servers": {"a": {"command": "c", "prefix": "abc\n"}}}, id="prefix"),
        pytest.param({"public_url": "https://hub.example.com\n"}, id="public-url"),
    ],
)
def test_a_value_with_a_trailing_newline_is_rejected(data: dict[str, Any]) -> None:
    _error(data)


def test_an_mcp_servers_type_that_is_not_a_string_fails_with_a_config_error() -> None:
    err = _error({"mcpServers": {"r": {"url": "https://example.com/mcp", "type": ["http"]}}})

    assert err.key_path == "mcpServers.r.type"


def test_an_error_in_an_mcp_servers_entry_names_its_key_path_in_the_file() -> None:
    err = _error({"mcpServers": {"My_Server": {"command": "c", "bogus": 1}}})

    assert err.key_path == "mcpServers.My_Server.bogus"


# --- secrets --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "server",
    [
        pytest.param({"command": "c", "headers": {"Authorization": "Bearer s3cret-token"}}, id="headers-on-stdio"),
        pytest.param(
            {
                "url": "http://127.0.0.1:1/mcp",
                "headers": {"Authorization": "Bearer s3cret-token"},
                "timeout_seconds": 0,
            },
            id="bad-timeout",
        ),
        pytest.param({"url": "ftp://example.com/", "headers": {"Authorization": "Bearer s3cret-token"}}, id="bad-url"),
        pytest.param(
            {"url": "http://127.0.0.1:1/mcp", "headers": {"Authorization": "Bearer s3cret-token"}, "x": 1},
            id="unknown-key",
        ),
        pytest.param(
            {"url": "http://127.0.0.1:1/mcp", "headers": {"Authorization": "Bearer s3cret-token", "X-N": 5}},
            id="non-string-header",
        ),
        pytest.param({"command": "c", "env": {"API_KEY": "s3cret-token"}, "url": "http://x/"}, id="env-and-url"),
        pytest.param({"url": "http://127.0.0.1:1/mcp", "env": {"API_KEY": "s3cret-token"}}, id="env-on-remote"),
    ],
)
def test_header_and_env_values_never_appear_in_a_config_error(server: dict[str, Any]) -> None:
    err = _error({"servers": {"a": server}})

    assert err.file == FILE
    assert err.key_path is not None and err.key_path.startswith("servers.a")
    assert "s3cret" not in str(err)
    _assert_one_line(err)


def test_an_interpolated_secret_never_appears_in_a_config_error() -> None:
    err = _error(
        {"servers": {"a": {"command": "c", "headers": {"Authorization": "Bearer ${TOKEN}"}, "timeout_seconds": -5}}},
        env={"TOKEN": "s3cret-token"},
    )

    assert "s3cret" not in str(err)


def test_a_secret_on_a_line_with_a_yaml_syntax_error_does_not_appear_in_the_error(tmp_path: Path) -> None:
    path = tmp_path / "hub.yaml"
    path.write_text(
        "servers:\n  a:\n    url: http://127.0.0.1:1/mcp\n    headers: {Authorization: Bearer s3cret-token: x}\n",
        encoding="utf-8",
    )

    with pytest.raises(ConfigError) as info:
        load_config(path, env={})

    assert "s3cret" not in str(info.value)
    _assert_one_line(info.value)


def test_a_config_error_reads_file_key_path_reason() -> None:
    assert str(ConfigError("bad value", file="f.yaml", key_path="servers.a")) == "f.yaml: servers.a: bad value"
    assert str(ConfigError("bad value", file="f.yaml")) == "f.yaml: bad value"
