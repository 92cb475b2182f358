"""`mcphub keys new ID [--scope S]... [--json]`: a fresh random API key for `auth.api_keys`,
and the config line that accepts it (only its SHA-256: the hub never stores a key)."""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Annotated

import typer

from hub.cli.runner import err, exit_with, out
from hub.config import ApiKeyConfig

__all__ = ["keys_app"]

keys_app = typer.Typer(help="API keys for the hub's auth.api_keys.", no_args_is_help=True)


@keys_app.command("new")
def keys_new(
    key_id: Annotated[str, typer.Argument(metavar="ID", help="The principal id the key authenticates as.")],
    scope: Annotated[
        list[str] | None, typer.Option("--scope", "-s", help="A scope to grant (repeatable). Default: hub:call.")
    ] = None,
    json_output: Annotated[
        bool,
        typer.Option("--json", help='Print {"id", "key", "key_sha256", "scopes", "config_line"} as JSON.'),
    ] = False,
) -> None:
    """Print a fresh random API key and the config line that accepts it (only its SHA-256).

    The key is shown once and stored nowhere; `--json` prints one object for scripts, whose
    `config_line` is the `auth.api_keys` list item to paste."""
    try:
        entry = ApiKeyConfig(id=key_id, key_sha256="0" * 64, scopes=scope or ["hub:call"])
    except ValueError as exc:
        exit_with(f"invalid key id or scope: {_first_error(exc)}", 2, exc)
    key = "mcphub_" + secrets.token_urlsafe(32)
    digest = hashlib.sha256(key.encode()).hexdigest()
    line = json.dumps({"id": entry.id, "key_sha256": digest, "scopes": entry.scopes})
    if json_output:
        data = {"id": entry.id, "key": key, "key_sha256": digest, "scopes": entry.scopes, "config_line": f"- {line}"}
        out.print(json.dumps(data), markup=False)
        return
    err.print("The key is shown once; give it to its user and keep only the config line.", markup=False)
    out.print(f"key: {key}", markup=False)
    out.print(f"config (under auth.api_keys): - {line}", markup=False)


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    return str(exc)
