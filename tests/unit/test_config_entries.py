"""hub/config/servers.py: a server entry is a `StdioServer`, a `RemoteServer` or a `ReplicaGroup`,
chosen by the key it has (pure tier: plain data in, models or one `ConfigError` out, no I/O)."""

from __future__ import annotations

from typing import Any

import pytest

from hub.config import (
    HubConfig,
    RemoteServer,
    ReplicaGroup,
    ServerSettings,
    StdioServer,
    parse_config,
)
from hub.config.servers import REMOTE_ONLY_KEYS, REPLICA_MEMBER_KEYS, STDIO_ONLY_KEYS, ReplicaConfig
from hub.errors import ConfigError
from tests.schema_validation import parse_checked, schema_errors

pytestmark = pytest.mark.unit

_URL = "http://127.0.0.1:9/mcp"
_ENV = {"TOKEN": "t0ken-value", "SECRET": "s3cret-value"}
_OAUTH = {"token_url": "https://idp.example.com/token", "client_id": "hub", "client_secret_env": "SECRET"}
_ONE_KIND = "give exactly one of 'command' (stdio server) or 'url' (remote server)"

_REMOTE_VALUES: dict[str, Any] = {
    "transport": "sse",
    "headers": {"X-Key": "v"},
    "bearer_token_env": "TOKEN",
    "oauth": _OAUTH,
}
_STDIO_VALUES: dict[str, Any] = {
    "args": ["x"],
    "env": {"A": "1"},
    "cwd": "/tmp",
    "max_restarts": 1,
    "restart_window_seconds": 5,
    "max_line_bytes": 4096,
}
_MEMBER_VALUES: dict[str, Any] = {**_STDIO_VALUES, **_REMOTE_VALUES}


def _refused(entry: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config({"servers": {"a": entry}}, file="hub.yaml", env=_ENV)
    return info.value


@pytest.mark.parametrize(
    ("entry", "kind"),
    [
        pytest.param({"command": "c"}, StdioServer, id="command"),
        pytest.param({"url": _URL}, RemoteServer, id="url"),
        pytest.param({"replicas": [{"command": "c"}, {"url": _URL}]}, ReplicaGroup, id="replicas"),
        pytest.param({"command": "c", "url": None, "replicas": []}, StdioServer, id="null-and-empty-kind-keys"),
        pytest.param({"url": _URL, "command": None}, RemoteServer, id="null-command"),
    ],
)
def test_the_key_an_entry_has_chooses_its_kind(entry: dict[str, Any], kind: type[ServerSettings]) -> None:
    server = parse_checked({"servers": {"a": entry}}, env=_ENV).servers["a"]

    assert type(server) is kind


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param({"command": "c", "url": _URL}, id="both"),
        pytest.param({"args": ["x"]}, id="neither"),
        pytest.param({}, id="empty"),
        pytest.param({"command": None, "url": None, "timeout_seconds": -1}, id="both-null-and-a-bad-value"),
    ],
)
def test_an_entry_with_both_or_neither_of_command_and_url_gets_one_line(entry: dict[str, Any]) -> None:
    error = _refused(entry)

    assert (error.key_path, error.reason) == ("servers.a", _ONE_KIND)


@pytest.mark.parametrize("key", REMOTE_ONLY_KEYS)
def test_a_remote_only_key_on_a_stdio_server_is_refused_naming_the_remote_kind(key: str) -> None:
    error = _refused({"command": "c", key: _REMOTE_VALUES[key]})

    assert (error.key_path, error.reason) == ("servers.a", f"{key} only apply to a remote server ('url')")
    assert schema_errors({"servers": {"a": {"command": "c", key: _REMOTE_VALUES[key]}}}) != []


@pytest.mark.parametrize("key", STDIO_ONLY_KEYS)
def test_a_stdio_only_key_on_a_remote_server_is_refused_naming_the_stdio_kind(key: str) -> None:
    error = _refused({"url": _URL, key: _STDIO_VALUES[key]})

    assert (error.key_path, error.reason) == ("servers.a", f"{key} only apply to a stdio server ('command')")
    assert schema_errors({"servers": {"a": {"url": _URL, key: _STDIO_VALUES[key]}}}) != []


def test_several_misplaced_keys_are_named_in_one_problem() -> None:
    error = _refused({"command": "c", "transport": "sse", "headers": {"X": "y"}})

    assert (error.key_path, error.reason) == ("servers.a", "transport, headers only apply to a remote server ('url')")


def test_a_bad_stdio_entry_reports_the_stdio_problems_only() -> None:
    error = _refused({"command": "c", "timeout_seconds": -1, "max_line_bytes": 1})

    assert error.key_path == "servers.a.timeout_seconds"
    assert error.reason == (
        "Input should be greater than 0; servers.a.max_line_bytes: Input should be greater than or equal to 1024"
    )


def test_a_bad_remote_entry_reports_the_remote_problems_only() -> None:
    error = _refused({"url": "ftp://x", "transport": "websocket"})

    assert error.key_path == "servers.a.url"
    assert error.reason.startswith("url must be an http:// or https:// URL; servers.a.transport: Input should be")
    assert "StdioServer" not in error.reason and "replicas" not in error.reason


@pytest.mark.parametrize("key", REPLICA_MEMBER_KEYS)
def test_a_per_member_key_beside_replicas_is_refused(key: str) -> None:
    error = _refused({"replicas": [{"command": "c"}], key: _MEMBER_VALUES[key]})

    assert (error.key_path, error.reason) == ("servers.a", f"{key} belong in each replica, not beside 'replicas'")


@pytest.mark.parametrize("key", ["command", "url"])
def test_replicas_beside_command_or_url_are_refused(key: str) -> None:
    error = _refused({"replicas": [{"command": "c"}], key: "c" if key == "command" else _URL})

    assert (error.key_path, error.reason) == ("servers.a", "give either 'replicas' or 'command'/'url', not both")


@pytest.mark.parametrize(
    ("replica", "reason"),
    [
        pytest.param(
            {"command": "c", "headers": {"X": "y"}}, "headers only apply to a remote member ('url')", id="stdio"
        ),
        pytest.param({"url": _URL, "env": {"A": "1"}}, "env only apply to a stdio member ('command')", id="remote"),
        pytest.param(
            {"args": ["x"]}, "give exactly one of 'command' (stdio member) or 'url' (remote member)", id="none"
        ),
    ],
)
def test_a_replica_with_a_key_of_the_other_kind_is_refused(replica: dict[str, Any], reason: str) -> None:
    document = {"servers": {"a": {"replicas": [{"command": "ok"}, replica]}}}

    error = _refused(document["servers"]["a"])

    assert (error.key_path, error.reason) == ("servers.a.replicas.1", reason)
    assert schema_errors(document) != []


def test_a_group_credential_and_a_member_authorization_header_are_refused_together() -> None:
    error = _refused(
        {"replicas": [{"url": _URL, "headers": {"Authorization": "Bearer x"}}], "bearer_token_env": "TOKEN"}
    )

    assert (error.key_path, error.reason) == (
        "servers.a",
        "give one credential for a server, not headers.Authorization and bearer_token_env",
    )


@pytest.mark.parametrize(
    ("group", "reason"),
    [
        pytest.param(
            {"replicas": [{"url": _URL}], "max_restarts": 2, "max_line_bytes": 4096},
            "max_restarts, max_line_bytes only apply to a stdio member ('command'), and this group has none",
            id="stdio-settings-without-a-stdio-member",
        ),
        pytest.param(
            {"replicas": [{"command": "c"}], "bearer_token_env": "TOKEN"},
            "bearer_token_env only apply to a remote member ('url'), and this group has none",
            id="credential-without-a-remote-member",
        ),
    ],
)
def test_a_groups_settings_of_one_kind_need_a_member_of_that_kind(group: dict[str, Any], reason: str) -> None:
    error = _refused(group)

    assert (error.key_path, error.reason) == ("servers.a", reason)
    assert schema_errors({"servers": {"a": group}}) != []


def test_a_groups_members_are_stdio_and_remote_servers_with_the_groups_settings() -> None:
    group = {
        "replicas": [{"command": "c", "args": ["-v"]}, {"url": _URL, "transport": "sse", "headers": {"X": "y"}}],
        "timeout_seconds": 5,
        "max_restarts": 2,
        "bearer_token_env": "TOKEN",
        "prefix": "grp",
    }
    server = parse_checked({"servers": {"a": group}}, env=_ENV).servers["a"]

    (stdio_id, stdio), (remote_id, remote) = server.members("a")

    assert (stdio_id, remote_id) == ("a/1", "a/2")
    assert isinstance(stdio, StdioServer) and isinstance(remote, RemoteServer)
    assert (stdio.command, stdio.args, stdio.max_restarts, stdio.timeout_seconds) == ("c", ["-v"], 2, 5.0)
    assert (remote.kind, remote.timeout_seconds, remote.exposed_prefix("a/2")) == ("sse", 5.0, "grp")
    assert remote.http_headers() == {"X": "y", "Authorization": "Bearer t0ken-value"}
    assert "t0ken-value" in server.secret_values() and "y" in server.secret_values()


def test_a_stdio_or_remote_server_is_its_own_one_member() -> None:
    config = parse_checked({"servers": {"s": {"command": "c"}, "r": {"url": _URL}}}, env=_ENV)

    assert [
        (member_id, member is config.servers[sid])
        for sid in ("s", "r")
        for member_id, member in config.servers[sid].members(sid)
    ] == [
        ("s", True),
        ("r", True),
    ]


def test_an_entry_that_is_not_a_mapping_is_refused_saying_what_an_entry_is() -> None:
    error = _refused("npx some-server")

    assert error.key_path == "servers.a"
    assert error.reason == "must be a mapping with 'command' (stdio server), 'url' (remote server) or 'replicas'"


def test_entries_built_in_code_keep_their_kind() -> None:
    config = HubConfig(servers={"s": StdioServer(command="c"), "r": RemoteServer(url=_URL)})

    assert (type(config.servers["s"]), type(config.servers["r"])) == (StdioServer, RemoteServer)


def test_the_kind_only_keys_are_exactly_the_keys_one_kind_has_and_the_other_has_not() -> None:
    stdio, remote = set(StdioServer.model_fields), set(RemoteServer.model_fields)

    assert set(STDIO_ONLY_KEYS) == stdio - remote - {"command"}
    assert set(REMOTE_ONLY_KEYS) == remote - stdio - {"url"}
    assert set(REPLICA_MEMBER_KEYS) == set(ReplicaConfig.model_fields) - {"command", "url"}
    assert "replicas" not in stdio | remote and not {"command", "url"} & set(ReplicaGroup.model_fields)
