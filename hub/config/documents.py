"""From a config file to the document the config models validate: YAML reading, `${...}`
references, and client configs pasted as they are.

`hub.config.load_config` / `parse_config` are the entry points; this module works on plain
data and knows nothing of the models beyond the top-level key names it is given.

**Shapes.** A file holds the hub's own shape (`servers:` keyed by server_id, plus hub settings),
a client's MCP config pasted as-is, or both:

- `mcpServers` (Claude Desktop, Cursor, Claude Code `.mcp.json`): names are
  free-form (`My_Server` becomes the server_id `my-server`).
- VS Code's `.vscode/mcp.json`: top-level `servers` plus optional `inputs`, entries with
  `type: stdio|http|sse`. `servers` is read in VS Code's shape when the file has a top-level
  `inputs` key or any entry has a `type` key (the hub's own entries say `transport`, never
  `type`); otherwise it is the hub's map, whose names must be server_ids.
- Client entries take `type`, `command`, `args`, `env` (numbers become strings, `null` drops
  the variable), `envFile` (a dotenv file read at load; `env` wins over it), `cwd`, `url`,
  `headers`, `disabled`, every hub server key (`timeout_seconds`, `tools`, ...), and ignore
  host-side UI keys (`autoApprove`, `alwaysAllow`, `description`, `dev`, `gallery`, `version`).

**Client config or hub config.** A file is read as a *client config* when it has a client
server map (`mcpServers`, or `servers` in VS Code's shape) and none of the hub's own top-level
settings; its other top-level keys (Claude Desktop's `globalShortcut`, `preferences`, ...) are
then ignored, and one warning names them. Any hub setting (`listen`, `auth`, a hub-shaped
`servers`, ...) makes it a hub config, where an unknown top-level key is an error: the loader
cannot tell a typo from a client's key there. `inputs` and a `$schema` key are always accepted
and never used.

**`${...}` references** in string values (keys are never resolved; a resolved value is never
resolved again):

- `${VAR}`, `${env:VAR}` (Cursor, VS Code): the environment variable; unset is an error.
- `${VAR:-default}`, `${env:VAR:-default}` (Claude Code, sh): `default` when unset or empty.
- `${userHome}`: the home directory of the user running the hub.
- `${workspaceFolder}`: the config file's directory, or its parent when that is `.vscode` or
  `.cursor` (where those clients keep their file); the current directory for a config built
  in memory. `${workspaceFolderBasename}`: its last component.
- `${pathSeparator}`, `${/}`: the OS path separator (`/`).
- `$${`: a literal `${`.

Anything else is an error naming the key path and the form: `${input:...}` (VS Code would ask
a person for the value: use an environment variable), `${command:...}` and `${config:...}`
(they need the editor), VS Code's editor-state variables (`${file}`, `${cwd}`,
`${selectedText}`, ...), other forms (`${VAR:=x}`, `${workspaceFolder:name}`), nested or
unclosed `${`. A predefined or editor name shadows an environment variable of the same name;
`${env:NAME}` reaches the variable.
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from dotenv import dotenv_values

from hub.errors import ConfigError

__all__ = [
    "CLIENT_SERVER_TYPES",
    "IGNORED_CLIENT_ENTRY_KEYS",
    "ConfigDocument",
    "config_error",
    "prepare_document",
    "read_document",
    "server_id_from_client_name",
    "workspace_folder",
]

logger = logging.getLogger(__name__)

CLIENT_SERVER_TYPES: dict[str, str | None] = {
    "stdio": None,
    "http": "streamable_http",
    "streamable-http": "streamable_http",
    "streamableHttp": "streamable_http",
    "sse": "sse",
}
"""A client entry's `type` -> the hub's `transport` (None: a stdio server). Claude Code and
VS Code write `stdio`, `http`, `sse`; Cursor and others `streamable-http` / `streamableHttp`."""

IGNORED_CLIENT_ENTRY_KEYS: frozenset[str] = frozenset(
    {"autoApprove", "alwaysAllow", "description", "dev", "gallery", "version"}
)
"""Host-side settings of a client entry with no meaning for the hub (tool auto-approval, VS
Code's dev-mode watch/debug and gallery metadata)."""

_CLIENT_DIRECTORIES = frozenset({".vscode", ".cursor"})
_REFERENCE = re.compile(r"\$\$\{|\$\{(?P<body>[^{}]*)\}|\$\{")
_ENV_REFERENCE = re.compile(r"(?:env:)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>.*))?", re.DOTALL)
_SHOWN_FORM = re.compile(r"[A-Za-z_/][A-Za-z0-9_]*(?::[A-Za-z0-9_.-]+)?")
_EDITOR_VARIABLES = frozenset(
    {
        "columnNumber",
        "cwd",
        "defaultBuildTask",
        "execPath",
        "extensionInstallFolder",
        "file",
        "fileBasename",
        "fileBasenameNoExtension",
        "fileDirname",
        "fileDirnameBasename",
        "fileExtname",
        "fileWorkspaceFolder",
        "lineNumber",
        "relativeFile",
        "relativeFileDirname",
        "selectedText",
    }
)
"""VS Code's predefined variables that describe the editor's state (the open file, the
selection, ...): they have no value outside it, so `${file}` is an error, not a variable."""
_SUPPORTED_FORMS = (
    "${VAR}, ${VAR:-default}, ${env:VAR}, ${userHome}, ${workspaceFolder}, ${workspaceFolderBasename}, "
    "${pathSeparator}; write $${ for a literal ${"
)

Problems = list[tuple[str, str]]


@dataclass(frozen=True)
class ConfigDocument:
    """A document ready for `HubConfig.model_validate`."""

    data: dict[str, Any]
    """Hub settings and `servers` (client entries translated, references resolved)."""

    origins: dict[str, str]
    """server_id -> its key path in the file, for servers that came from a client map
    (`mcpServers.My_Server`, `servers.GitHub`), so errors name what the file says."""

    warnings: tuple[str, ...]
    """What the loader ignored (at most one line: a client config's other top-level keys)."""


def config_error(problems: Problems, file: str) -> ConfigError:
    """One ConfigError for all problems: the first names the key path, the rest follow, `; `-separated."""
    (first_path, first_reason), rest = problems[0], problems[1:]
    return ConfigError(
        "; ".join([first_reason, *(f"{path}: {reason}" for path, reason in rest)]),
        file=file,
        key_path=first_path or None,
    )


def workspace_folder(config_directory: Path) -> Path:
    """What `${workspaceFolder}` means for a file in `config_directory`: that directory, or its
    parent for `.vscode/mcp.json` and `.cursor/mcp.json`."""
    return config_directory.parent if config_directory.name in _CLIENT_DIRECTORIES else config_directory


def server_id_from_client_name(name: str) -> str:
    """A server_id for a free-form client server name (`GitHub` -> `github`, `my_server` ->
    `my-server`, `7zip` -> `s-7zip`); empty when the name has no ASCII letter or digit. A
    non-empty result always matches `^[a-z][a-z0-9-]{0,31}$`."""
    slug = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    slug = re.sub(r"-{2,}", "-", slug)
    if slug and not slug[0].isalpha():
        slug = f"s-{slug}"
    return slug[:32].rstrip("-")


# --------------------------------------------------------------------------- reading


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses duplicate keys (a duplicate server_id must not silently win)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in mapping:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        mapping[key] = loader.construct_object(value_node, deep=deep)
    return mapping


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_document(path: str | Path) -> Any:
    """The parsed YAML (or JSON, which is YAML too) of a config file, duplicate keys refused.

    :raises ConfigError: the file cannot be read or parsed (naming the line and column).
    """
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"cannot read the file: {reason}", file=file) from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}{problem}", file=file) from None


# --------------------------------------------------------------------------- the document


def prepare_document(
    data: Any, *, file: str, env: Mapping[str, str], hub_keys: Collection[str], workspace: Path
) -> ConfigDocument:
    """Recognise the shape, drop what the hub does not use, resolve `${...}` references and
    translate client entries into `servers` entries (the rules are in this module's docstring).

    :param hub_keys: the hub's own top-level keys (`HubConfig.model_fields`).
    :param workspace: what `${workspaceFolder}` means, and where relative `envFile` paths start.
    :raises ConfigError: every problem found, naming `file` and the key paths.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("the document must be a mapping (servers:, listen:, ...)", file=file)
    data = dict(data)
    problems: Problems = []
    if not isinstance(data.pop("$schema", ""), str):
        problems.append(("$schema", "must be a string (the URL or path of the JSON schema)"))
    has_inputs = "inputs" in data
    if not isinstance(data.pop("inputs", []), list):
        problems.append(("inputs", "must be a list (VS Code's input variables)"))
    servers = data.get("servers")
    vscode = isinstance(servers, dict) and (
        has_inputs or any(isinstance(entry, dict) and "type" in entry for entry in servers.values())
    )
    client_maps = [key for key, present in (("mcpServers", "mcpServers" in data), ("servers", vscode)) if present]
    settings = [str(key) for key in data if key in hub_keys and not (key == "servers" and vscode)]
    unknown = [key for key in data if key not in hub_keys and key != "mcpServers"]
    warnings: tuple[str, ...] = ()
    if unknown and client_maps:
        for key in unknown:
            del data[key]
        if settings:
            problems.extend(
                (
                    str(key),
                    f"unknown key {str(key)!r} (a client config's own keys are ignored only in a file without "
                    f"hub settings, and this one has {settings[0]!r})",
                )
                for key in unknown
            )
        else:
            warnings = (
                f"{file}: read as a client config ({' and '.join(client_maps)}, no hub settings); ignored the "
                f"top-level keys the hub does not use: {', '.join(str(key) for key in unknown)}",
            )
    resolver = _Resolver(env, workspace)
    data = resolver.resolve(data, "", problems)
    origins: dict[str, str] = {}
    imported: dict[str, Any] = {}
    for key in client_maps:
        _import_client_map(key, data.pop(key), imported, origins, workspace, problems)
    if client_maps:
        own = data.get("servers") or {}
        if not isinstance(own, dict):
            problems.append(("servers", "must be a mapping of server_id to entries"))
        else:
            for server_id in sorted(imported.keys() & own.keys()):
                problems.append((origins[server_id], f"server_id {server_id!r} is also defined under servers"))
            data["servers"] = {**imported, **own}
    if problems:
        raise config_error(problems, file)
    return ConfigDocument(data, origins, warnings)


class _Resolver:
    """Resolves `${...}` references in every string of a document."""

    def __init__(self, env: Mapping[str, str], workspace: Path) -> None:
        self._env = env
        self._predefined = {
            "userHome": os.path.expanduser("~"),
            "workspaceFolder": str(workspace),
            "workspaceFolderBasename": workspace.name,
            "pathSeparator": os.sep,
            "/": os.sep,
        }

    def resolve(self, value: Any, path: str, problems: Problems) -> Any:
        if isinstance(value, str):
            if any(match.group(0) == "${" for match in _REFERENCE.finditer(value)):
                # One problem for the whole string: what follows an unclosed `${` is not a reference.
                problems.append((path, "'${' without its '}', or a nested '${' (write $${ for a literal ${)"))
                return value
            return _REFERENCE.sub(lambda match: self._substitute(match, path, problems), value)
        if isinstance(value, dict):
            return {
                key: self.resolve(item, f"{path}.{key}" if path else str(key), problems) for key, item in value.items()
            }
        if isinstance(value, list):
            return [self.resolve(item, f"{path}[{index}]", problems) for index, item in enumerate(value)]
        return value

    def _substitute(self, match: re.Match[str], path: str, problems: Problems) -> str:
        if match.group(0) == "$${":
            return "${"
        body = match.group("body")
        if body in self._predefined:
            return self._predefined[body]
        if body in _EDITOR_VARIABLES:
            problems.append((path, _unsupported(body)))
            return ""
        reference = _ENV_REFERENCE.fullmatch(body)
        if reference is not None:
            name, default = reference.group("name"), reference.group("default")
            if default is not None:
                return self._env.get(name) or default  # `:-` also replaces an empty value, as in sh
            if name in self._env:
                return self._env[name]
            problems.append((path, f"environment variable ${{{body}}} is not set"))
            return ""
        problems.append((path, _unsupported(body)))
        return ""


def _unsupported(body: str) -> str:
    """Why a `${body}` reference cannot be resolved. Only its leading name is shown: the rest of
    the text may be a value (a secret) that was meant literally."""
    shown = _SHOWN_FORM.match(body)
    form = "${" + (shown.group(0) if shown else "") + ("..." if not shown or shown.end() < len(body) else "") + "}"
    if body.startswith("input:"):
        variable = re.sub(r"[^A-Za-z0-9]+", "_", body.removeprefix("input:")).strip("_").upper() or "VALUE"
        return (
            f"{form} asks a person for the value in VS Code, which the hub cannot do: put the value in an "
            f"environment variable and write ${{{variable}}} or ${{env:{variable}}}"
        )
    if body.startswith(("command:", "config:")):
        return f"{form} needs the editor (it runs a command or reads a setting there), which the hub has not"
    if body in _EDITOR_VARIABLES:
        return (
            f"{form} is an editor variable (VS Code's open file, selection or window), which has no value in the "
            f"hub; write ${{env:{body}}} for an environment variable of that name"
        )
    return f"unsupported reference {form}: the hub resolves {_SUPPORTED_FORMS}"


# --------------------------------------------------------------------------- client entries


def _import_client_map(
    key: str, raw: Any, servers: dict[str, Any], origins: dict[str, str], workspace: Path, problems: Problems
) -> None:
    """Translate one client server map (`mcpServers`, or VS Code's `servers`) into `servers`
    entries keyed by derived server_ids; `origins` records each one's key path in the file."""
    if not isinstance(raw, dict):
        problems.append((key, "must be a mapping of server names to entries"))
        return
    for name, entry in raw.items():
        path = f"{key}.{name}"
        if not isinstance(entry, dict):
            problems.append((path, "must be a mapping"))
            continue
        server_id = server_id_from_client_name(str(name))
        if not server_id:
            problems.append((path, f"cannot derive a server_id from {name!r} (it needs a letter or a digit)"))
            continue
        if server_id in servers:
            problems.append((path, f"derives the server_id {server_id!r}, already used by another entry"))
            continue
        origins[server_id] = path
        servers[server_id] = _client_entry(entry, path, workspace, problems)


def _client_entry(entry: dict[str, Any], path: str, workspace: Path, problems: Problems) -> dict[str, Any]:
    converted: dict[str, Any] = {}
    kind = entry.get("type")
    if "type" in entry:
        if not isinstance(kind, str) or kind not in CLIENT_SERVER_TYPES:
            shown = repr(kind) if isinstance(kind, str) else "a non-string"
            problems.append(
                (f"{path}.type", f"unknown transport type {shown} (use one of {', '.join(CLIENT_SERVER_TYPES)})")
            )
        elif "transport" in entry:
            problems.append((f"{path}.type", "give either type or transport, not both"))
        else:
            remote = CLIENT_SERVER_TYPES[kind] is not None
            wrong = "command" if remote else "url"
            if wrong in entry:
                needs = "a 'url' (a remote server)" if remote else "a 'command' (a stdio server)"
                problems.append((f"{path}.type", f"type {kind!r} needs {needs}, but the entry has a {wrong!r}"))
            elif remote:
                converted["transport"] = CLIENT_SERVER_TYPES[kind]
    for key, value in entry.items():
        if key == "type" or key in IGNORED_CLIENT_ENTRY_KEYS:
            continue
        if key == "disabled":
            if not isinstance(value, bool):
                problems.append((f"{path}.disabled", "must be true or false"))
            elif "enabled" in entry:
                problems.append((f"{path}.disabled", "give either disabled or enabled, not both"))
            else:
                converted["enabled"] = not value
        elif key == "env" and isinstance(value, dict):
            # VS Code allows numbers, and null to remove a variable (the hub starts from none).
            converted["env"] = {
                name: str(item) if isinstance(item, int | float) and not isinstance(item, bool) else item
                for name, item in value.items()
                if item is not None
            }
        elif key != "envFile":
            converted[key] = value
    if "envFile" in entry:
        file_env = _read_env_file(entry["envFile"], "url" in entry, f"{path}.envFile", workspace, problems)
        converted["env"] = {**file_env, **converted.get("env", {})}
    return converted


def _read_env_file(value: Any, remote: bool, path: str, workspace: Path, problems: Problems) -> dict[str, str]:
    """The variables of a dotenv file (`KEY=value` lines, `#` comments, quotes, `export`; no
    `${...}` expansion inside it), read at load like every other secret source."""
    if remote:
        problems.append((path, "only applies to a stdio server ('command')"))
        return {}
    if not isinstance(value, str) or not value:
        problems.append((path, "must be the path of a dotenv file"))
        return {}
    file = workspace / Path(value).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        problems.append((path, f"cannot read {file}: {reason}"))
        return {}
    values = dotenv_values(stream=io.StringIO(text), interpolate=False)
    return {name: item for name, item in values.items() if item is not None}
