"""The JSON schema of the config file (`config/hub.schema.json`, JSON Schema 2020-12).

`complete_schema` takes the models' own schema (`HubConfig.model_json_schema()`) and adds what
the loader (`hub.config.documents`) accepts beyond the models, and those rules of the models'
validators that JSON Schema can express, so that an editor accepts exactly the files the hub
loads and flags the same shape mistakes:

- `mcpServers` and VS Code's `servers`/`inputs` (entries: `ClientServerEntry`), a `$schema`
  key, and a client config's own top-level keys when the file has no hub settings;
- a `${...}` reference wherever a number, a boolean or a constrained string (enum, pattern)
  goes: the loader resolves it before the value is checked (`EnvReference`);
- closed maps: a `servers` key that is not a server_id is an error (as are the keys of other
  maps with a key pattern);
- a server entry is one of `StdioServer`, `RemoteServer`, `ReplicaGroup` (the models' own
  `oneOf`, each closed); a client entry, which may hold any kind's keys, gets exactly one of
  `command`/`url`/`replicas` and the stdio-only and remote-only keys as rules; one credential
  per server; a replica's `command` or `url` and the keys of its kind; a replica group's
  stdio settings and credentials only with a member of their kind; exactly one key source
  per API key and JWT config, one subject per policy rule, `auth` with api_keys and/or jwt.

What stays with the loader: values only known at load (unset variables, `*_env` secrets),
URL rules, prefix clashes and fallback ids. Quoted numbers and booleans (`"30"`), which the
models coerce, are flagged by the schema.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Iterable
from typing import Any

from hub.config.documents import CLIENT_SERVER_TYPES, IGNORED_CLIENT_ENTRY_KEYS
from hub.config.servers import REMOTE_ONLY_KEYS, REPLICA_MEMBER_KEYS, STDIO_ONLY_KEYS

__all__ = ["complete_schema"]

_DRAFT = "https://json-schema.org/draft/2020-12/schema"
_TITLE = "MCP federation hub configuration"
_ENV_REFERENCE = {"$ref": "#/$defs/EnvReference"}
_CONSTRAINED = ("pattern", "enum", "const")
_ANNOTATIONS = ("title", "description", "default", "examples")
_AUTHORIZATION = "^" + "".join(f"[{c.upper()}{c}]" for c in "authorization") + "$"
_REMOTE_TYPES = sorted(kind for kind, transport in CLIENT_SERVER_TYPES.items() if transport is not None)

_KIND_KEY = {"StdioServer": "command", "RemoteServer": "url", "ReplicaGroup": "replicas"}
"""Each kind of server entry and the key that makes an entry that kind."""
_NOT_GIVEN: dict[str, dict[str, Any]] = {
    "command": {"type": "null"},
    "url": {"type": "null"},
    "replicas": {"anyOf": [{"type": "null"}, {"type": "array", "maxItems": 0}]},
}
"""How a kind key may be written and count as not given."""

_CLIENT_ENTRY_KEYS: dict[str, dict[str, Any]] = {
    "type": {
        "enum": list(CLIENT_SERVER_TYPES),
        "type": "string",
        "description": "The client's transport field: `stdio`, or `http`/`streamable-http`/`streamableHttp` "
        "(the hub's `transport: streamable_http`) or `sse`. Give it or `transport`, not both.",
    },
    "disabled": {
        "type": "boolean",
        "description": "The client's switch: `true` is the hub's `enabled: false`. Give it or `enabled`, not both.",
    },
    "envFile": {
        "type": "string",
        "description": "A dotenv file (`KEY=value` lines) read at load into `env` (stdio servers only); `env` wins "
        "over it. A relative path starts at the workspace folder (the config file's directory, or its parent "
        "for `.vscode/` and `.cursor/`).",
    },
    **{
        key: {"description": "A host-side setting of the client; ignored by the hub."}
        for key in sorted(IGNORED_CLIENT_ENTRY_KEYS)
    },
}


def complete_schema(schema: dict[str, Any], *, hub_keys: Collection[str]) -> dict[str, Any]:
    """The config file's schema from the models' schema (which is not modified).

    :param schema: `HubConfig.model_json_schema()`.
    :param hub_keys: the hub's own top-level keys (`HubConfig.model_fields`).
    """
    schema = copy.deepcopy(schema)
    defs: dict[str, Any] = schema["$defs"]
    _close_pattern_maps(schema)
    server_map = schema["properties"].pop("servers")
    defs["ClientServerEntry"] = _client_entry(_merged_entry(defs))
    _absent_kind_keys(defs)
    for model in [schema, *defs.values()]:
        for name, field in model.get("properties", {}).items():
            model["properties"][name] = _widen(field)
    defs["EnvReference"] = {
        "type": "string",
        "pattern": r"(^|[^$])(\$\$)*\$\{",
        "description": "A `${...}` reference (`${VAR}`, `${VAR:-default}`, `${env:VAR}`, ...), resolved at load; "
        "the resolved text must be a valid value here.",
    }
    defs["RemoteServer"]["allOf"] = _credential_rules()
    group = defs["ReplicaGroup"]["properties"]
    defs["ReplicaGroup"]["allOf"] = [
        *_credential_rules(),
        {"if": _any_of(key for key in STDIO_ONLY_KEYS if key in group), "then": _a_member("command")},
        {"if": _any_of(key for key in REMOTE_ONLY_KEYS if key in group), "then": _a_member("url")},
    ]
    defs["ClientServerEntry"]["allOf"] = [
        *_kind_rules((*STDIO_ONLY_KEYS, "envFile")),
        *_credential_rules(),
        *_client_rules(),
    ]
    defs["ReplicaConfig"]["oneOf"] = [_given("command"), _given("url")]
    defs["ReplicaConfig"]["allOf"] = [
        {"if": _given("command"), "then": _none_of(("transport", "headers"))},
        {"if": _given("url"), "then": _none_of(("args", "env", "cwd"))},
    ]
    defs["ApiKeyConfig"]["oneOf"] = [_given("key_sha256"), _given("key_env")]
    defs["JwtConfig"]["oneOf"] = [_given("jwks_url"), _given("public_key_file"), _given("hs256_secret_env")]
    defs["PolicyRule"]["allOf"] = [
        {"oneOf": [_given("principal"), _given("scope")]},
        {"anyOf": [_non_empty("allow"), _given("servers")]},
    ]
    defs["AuthConfig"]["anyOf"] = [_non_empty("api_keys"), _given("jwt")]
    defs["ServerMap"] = {
        "type": "object",
        "description": "The hub's own `servers` map: keys are server_ids.",
        "patternProperties": server_map["patternProperties"],
        "additionalProperties": False,
    }
    defs["ClientServerMap"] = {
        "type": "object",
        "description": "A client's server map (`mcpServers`; VS Code's `servers`): free-form names, each made a "
        "server_id (`My_Server` -> `my-server`).",
        "propertyNames": {"pattern": "[A-Za-z0-9]"},
        "additionalProperties": {"$ref": "#/$defs/ClientServerEntry"},
    }
    defs["TypedServerMap"] = {
        "description": "A server map with at least one entry that has a `type` (VS Code's shape).",
        "not": {"additionalProperties": {"not": {"required": ["type"]}}},
    }
    properties = schema["properties"]
    properties["servers"] = {
        "title": server_map.get("title", "Servers"),
        "description": server_map["description"]
        + " Read in VS Code's shape (free-form names, entries with `type`) when the file has `inputs` or an "
        "entry has `type`; otherwise keys are server_ids and entries take the hub's keys only.",
        "$ref": "#/$defs/ClientServerMap",
    }
    properties["mcpServers"] = {
        "$ref": "#/$defs/ClientServerMap",
        "title": "mcpServers",
        "description": "The `mcpServers` map of Claude Desktop, Cursor and Claude Code, as-is; merged into "
        "`servers` (a server_id defined in both is an error).",
    }
    properties["inputs"] = {
        "type": "array",
        "title": "Inputs",
        "description": "VS Code's input variables: accepted and not used (a `${input:...}` reference is an "
        "error: the hub cannot ask a person; use an environment variable).",
    }
    properties["$schema"] = {
        "type": "string",
        "title": "$schema",
        "description": "The JSON schema of this file, for editors; not used by the hub.",
    }
    known = sorted({*hub_keys, "mcpServers", "inputs", "$schema"})
    schema.pop("additionalProperties", None)
    schema["allOf"] = [
        {
            "if": {"not": {"anyOf": [{"required": ["inputs"]}, _typed_servers()]}},
            "then": {"properties": {"servers": {"$ref": "#/$defs/ServerMap"}}},
        },
        {"if": _client_document(hub_keys), "else": {"propertyNames": {"enum": known}}},
    ]
    schema["type"] = ["object", "null"]  # an empty file is a hub with no servers
    schema["$schema"] = _DRAFT
    schema["title"] = _TITLE
    return schema


def _client_document(hub_keys: Collection[str]) -> dict[str, Any]:
    """A client config (`hub.config.documents`): a client server map and no hub settings; its
    other top-level keys are then allowed (and ignored)."""
    return {
        "allOf": [
            {"anyOf": [{"required": ["mcpServers"]}, {"required": ["servers", "inputs"]}, _typed_servers()]},
            _none_of(sorted(set(hub_keys) - {"servers"})),
            {"anyOf": [{"not": {"required": ["servers"]}}, {"required": ["inputs"]}, _typed_servers()]},
        ]
    }


def _typed_servers() -> dict[str, Any]:
    """`servers` is present and in VS Code's shape by its entries (one has a `type`)."""
    return {"required": ["servers"], "properties": {"servers": {"$ref": "#/$defs/TypedServerMap"}}}


def _merged_entry(defs: dict[str, Any]) -> dict[str, Any]:
    """One object with the keys of every kind of server entry (a client entry's shape: its
    kind's rules are `_kind_rules`), each key as its kind's model has it; a kind key may also
    be written as not given (`_NOT_GIVEN`)."""
    properties: dict[str, Any] = {}
    for kind in _KIND_KEY:
        properties.update(copy.deepcopy(defs[kind]["properties"]))
    for key, absent in _NOT_GIVEN.items():
        given = properties[key]
        properties[key] = {"anyOf": [given, absent], "title": given["title"], "description": given["description"]}
    return {"type": "object", "properties": properties, "additionalProperties": False}


def _absent_kind_keys(defs: dict[str, Any]) -> None:
    """Each kind of entry accepts the other kinds' keys written as not given (`null`, or `[]`
    for `replicas`), as the loader does (`hub.config.servers`)."""
    for kind, own in _KIND_KEY.items():
        for key, absent in _NOT_GIVEN.items():
            if key != own:
                defs[kind]["properties"][key] = {
                    **absent,
                    "title": key.capitalize(),
                    "description": f"Not given here (`null`{' or `[]`' if key == 'replicas' else ''}): a "
                    f"`{key}` makes another kind of server entry.",
                }


def _client_entry(server: dict[str, Any]) -> dict[str, Any]:
    entry = copy.deepcopy(server)
    entry["title"] = "ClientServerEntry"
    entry["description"] = (
        "A server as a client config writes it (Claude Desktop, Cursor, VS Code, Claude Code): the hub's "
        "server keys plus the client's `type`, `disabled`, `envFile` and host-side settings."
    )
    entry["properties"]["env"]["additionalProperties"] = {"type": ["string", "number", "null"]}
    entry["properties"].update(copy.deepcopy(_CLIENT_ENTRY_KEYS))
    return entry


def _kind_rules(stdio_only: Iterable[str]) -> list[dict[str, Any]]:
    """`hub.config.servers`' choice of a kind, for a client entry (which has every kind's keys):
    exactly one of `command`/`url`/`replicas`, and no key of another kind."""
    return [
        {"oneOf": [_given("command"), _given("url"), _non_empty("replicas")]},
        {"if": _non_empty("replicas"), "then": _none_of(REPLICA_MEMBER_KEYS)},
        {"if": _given("command"), "then": _none_of(REMOTE_ONLY_KEYS)},
        {"if": _given("url"), "then": _none_of(stdio_only)},
    ]


def _credential_rules() -> list[dict[str, Any]]:
    """One credential per server: no two of `headers.Authorization`, `bearer_token_env`, `oauth`."""
    authorization_header = {
        "required": ["headers"],
        "properties": {"headers": {"not": {"propertyNames": {"not": {"pattern": _AUTHORIZATION}}}}},
    }
    credentials = [authorization_header, _given("bearer_token_env"), _given("oauth")]
    return [
        {"not": {"allOf": [first, second]}}
        for index, first in enumerate(credentials)
        for second in credentials[index + 1 :]
    ]


def _client_rules() -> list[dict[str, Any]]:
    """`hub.config.documents`'s checks of a client entry."""
    return [
        {"not": {"required": ["type", "transport"]}},
        {"not": {"required": ["disabled", "enabled"]}},
        {"if": {"required": ["type"], "properties": {"type": {"const": "stdio"}}}, "then": _none_of(["url"])},
        {"if": {"required": ["type"], "properties": {"type": {"enum": _REMOTE_TYPES}}}, "then": _none_of(["command"])},
    ]


def _given(key: str) -> dict[str, Any]:
    """`key` is present and not null."""
    return {"required": [key], "properties": {key: {"not": {"type": "null"}}}}


def _non_empty(key: str) -> dict[str, Any]:
    """`key` is present and a non-empty list."""
    return {"required": [key], "properties": {key: {"type": "array", "minItems": 1}}}


def _any_of(keys: Iterable[str]) -> dict[str, Any]:
    """One of `keys` is present."""
    return {"anyOf": [{"required": [key]} for key in keys]}


def _a_member(key: str) -> dict[str, Any]:
    """A replica group with a member that gives `key` (`command` or `url`)."""
    return {"properties": {"replicas": {"contains": _given(key)}}}


def _none_of(keys: Iterable[str]) -> dict[str, Any]:
    """None of `keys` is present."""
    return {"not": {"anyOf": [{"required": [key]} for key in keys]}}


def _close_pattern_maps(node: Any) -> None:
    """A map with a key pattern (`servers`, `rate_limits.principals`, ...) allows no other key."""
    if isinstance(node, dict):
        if "patternProperties" in node:
            node.setdefault("additionalProperties", False)
        for value in node.values():
            _close_pattern_maps(value)
    elif isinstance(node, list):
        for value in node:
            _close_pattern_maps(value)


def _widen(node: Any) -> Any:
    """Let a `${...}` reference stand wherever a number, a boolean or a constrained string goes
    (the loader resolves references before the models check the value)."""
    if not isinstance(node, dict) or "$ref" in node:
        return node
    if "anyOf" in node:
        branches: list[Any] = []
        for branch in (_widen(branch) for branch in node["anyOf"]):
            for alternative in branch["anyOf"] if set(branch) == {"anyOf"} else [branch]:
                if alternative not in branches:
                    branches.append(alternative)
        node["anyOf"] = branches
        return node
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            node[key] = _widen(node[key])
    for key in ("properties", "patternProperties"):
        if isinstance(node.get(key), dict):
            node[key] = {name: _widen(value) for name, value in node[key].items()}
    kind = node.get("type")
    if kind in ("integer", "number", "boolean") or (kind == "string" and any(k in node for k in _CONSTRAINED)):
        annotations = {key: node.pop(key) for key in _ANNOTATIONS if key in node}
        return {**annotations, "anyOf": [node, _ENV_REFERENCE]}
    return node
