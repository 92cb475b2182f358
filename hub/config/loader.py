"""Loading the config: a file or parsed document -> a validated `HubConfig`, or one `ConfigError`.

The file shape is documented in DESIGN.md ("Config file") and in README.md; `config/hub.schema.json`
is generated from the models (`python -m hub.config > config/hub.schema.json`), and a test fails
when it is stale.

A file may be the hub's own shape, a client's MCP config pasted as-is (`mcpServers` of Claude
Desktop, Cursor and Claude Code; VS Code's `servers`/`inputs`), or both; string values may hold
`${VAR}`, `${VAR:-default}`, `${env:VAR}` and a few editor variables (`$${` is a literal `${`):
`hub.config.documents` has those rules. Every error is a `ConfigError` naming the file, the key
path and the reason.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from hub.config.base import Model
from hub.config.documents import config_error, prepare_document, read_document, workspace_folder
from hub.config.hub import HubConfig
from hub.config.schema import complete_schema
from hub.config.servers import SERVER_ID_PATTERN, SERVER_KIND_TAGS

__all__ = ["json_schema", "load_config", "parse_config"]

logger = logging.getLogger(__name__)


def parse_config(
    data: Any,
    *,
    file: str = "<config>",
    env: Mapping[str, str] | None = None,
    directory: str | Path | None = None,
) -> HubConfig:
    """Validate already-parsed YAML/JSON data into a `HubConfig`.

    The document may be the hub's own shape, a client config pasted as-is (`mcpServers`, VS
    Code's `servers`/`inputs`) or both; `${...}` references are resolved. The rules are in
    `hub.config.documents`. What the loader ignored is logged once (a warning) and kept in
    `HubConfig.warnings`.

    :param data: the document (a mapping), as `yaml.safe_load` returns it.
    :param file: the name used in error messages and warnings.
    :param env: the environment for `${VAR}` references and `*_env` keys. Default: `os.environ`.
    :param directory: the config file's directory: `${workspaceFolder}` (its parent when it is
        `.vscode` or `.cursor`) and relative `envFile` paths start there. Default: the current
        directory.
    :raises ConfigError: on any problem, naming `file`, the key path and the reason; when there
        are several, all are listed, separated by `; `.
    """
    environment = os.environ if env is None else env
    document = prepare_document(
        data,
        file=file,
        env=environment,
        hub_keys=HubConfig.model_fields.keys(),
        workspace=workspace_folder(Path(directory) if directory is not None else Path.cwd()),
    )
    try:
        config = HubConfig.model_validate(document.data, context={"env": environment})
    except ValidationError as exc:
        raise config_error(_validation_problems(exc, document.origins), file) from None
    problems = _prefix_problems(config, document.origins)
    if problems:
        raise config_error(problems, file)
    for warning in document.warnings:
        logger.warning("%s", warning)
    config._warnings = document.warnings
    return config


def _prefix_problems(config: HubConfig, origins: Mapping[str, str]) -> list[tuple[str, str]]:
    """Two servers may not share a prefix, and a prefix may not be another server's id (both
    would make `<prefix>__<name>` ambiguous). One problem per clashing prefix."""
    problems: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    reported: set[str] = set()
    for server_id, server in config.servers.items():
        prefix = server.exposed_prefix(server_id)
        if prefix is None:
            continue
        where = f"{origins.get(server_id, f'servers.{server_id}')}.prefix"
        if prefix in reported:
            continue
        if prefix in seen:
            problems.append((where, f"servers {seen[prefix]!r} and {server_id!r} both use the prefix {prefix!r}"))
            reported.add(prefix)
        elif prefix != server_id and prefix in config.servers:
            problems.append((where, f"server {server_id!r} uses the prefix {prefix!r}, which is another server's id"))
            reported.add(prefix)
        seen.setdefault(prefix, server_id)
    return problems


def _is_union_branch(part: str) -> bool:
    """Whether a location part is pydantic's label of a union member, not a key of the file."""
    return part.startswith(("function-after[", "function-before[", "function-wrap[", "literal[")) or part in {
        model.__name__ for model in Model.__subclasses__()
    }


def _validation_problems(exc: ValidationError, origins: Mapping[str, str]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    errors = exc.errors(include_url=False)
    for error in errors:
        location = [str(part) for part in error["loc"]]
        if len(location) >= 3 and location[0] == "servers" and location[2] in SERVER_KIND_TAGS:
            del location[2]  # the kind `ServerEntry` chose for the entry, not a key of the file
        if any(part.startswith("literal[") for part in location) and len(errors) > 1:
            continue  # `auth: none | {...}`: the mapping branch's errors say what is wrong
        location = [part for part in location if not _is_union_branch(part)]
        if len(location) >= 2 and location[0] == "servers" and location[1] in origins:
            location = [*origins[location[1]].split(".", 1), *location[2:]]
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = f"unknown key {location[-1]!r}"
        elif error["type"] == "model_type" and len(location) == 2 and location[0] == "servers":
            message = "must be a mapping with 'command' (stdio server), 'url' (remote server) or 'replicas'"
        elif error["type"] == "string_pattern_mismatch" and len(location) >= 2 and location[0] == "servers":
            message = f"server_id {location[1]!r} must match {SERVER_ID_PATTERN}"
            location = location[:2]
        problems.append((".".join(location), message))
    return problems


def load_config(path: str | Path, *, env: Mapping[str, str] | None = None) -> HubConfig:
    """Read and validate a config file (YAML, or JSON, which is YAML too): the hub's own shape,
    or a client's MCP config as it is (`claude_desktop_config.json`, `.cursor/mcp.json`,
    `.vscode/mcp.json`, `.mcp.json`).

    :param env: as for `parse_config`. Default: `os.environ`.
    :raises ConfigError: the file cannot be read or parsed, or a value is wrong.
    """
    config = parse_config(read_document(path), file=str(path), env=env, directory=Path(path).absolute().parent)
    config._source = str(Path(path).resolve())
    return config


def json_schema() -> dict[str, Any]:
    """The JSON schema of the config file (what `config/hub.schema.json` holds): the models'
    schema, completed with what the loader accepts beyond them (`hub.config.schema`)."""
    return complete_schema(HubConfig.model_json_schema(), hub_keys=HubConfig.model_fields.keys())
