"""`mcphub pins` and `mcphub lock`: tool-definition pins of a running hub, and the lockfile.

- `mcphub pins [--json]`: every pinned or pending definition (name, server, kind, status
  `pinned`/`changed`/`new`/`held`, first seen, last changed).
- `mcphub pins diff NAME [--json]`: what changed (the description as a unified diff, schema
  changes as JSON paths added/removed/changed).
- `mcphub pins approve NAME|SERVER` or `mcphub pins approve --all`: pin what is pending.
- `mcphub lock [-c CONFIG] [-o PATH] [--json]`: start every server once and write the lockfile.

They follow `hub.cli.runner`'s conventions (`--url`, `--token`, `--json`, one-line errors, exit codes:
1 for a refusal or a failed server, 2 for a bad config); `hub.cli` registers them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from hub.app import Hub, LockEntries, lockfile_path, read_lockfile, write_lockfile
from hub.cli.client import admin_get, admin_request
from hub.cli.options import DEFAULT_URL, JsonOption, TokenOption, UrlOption
from hub.cli.runner import exit_with, fail, out, run_command, setup_command_logging
from hub.config import HubConfig, resolve_config
from hub.errors import ConfigError

__all__ = ["lock", "pins_app"]

pins_app = typer.Typer(help="Tool-definition pins of the running hub (needs hub:admin).", invoke_without_command=True)


@pins_app.callback()
def pins(
    ctx: typer.Context, url: UrlOption = DEFAULT_URL, token: TokenOption = None, json_output: JsonOption = False
) -> None:
    """List every pinned or pending definition: name, server, kind, status, first seen, last changed."""
    if ctx.invoked_subcommand is not None:
        return

    async def run() -> None:
        data = await admin_get(url, "/admin/pins", token)
        if json_output:
            out.print_json(data=data)
            return
        table = Table("name", "server", "kind", "status", "first seen", "last changed", "note")
        colours = {"pinned": "green", "changed": "yellow", "new": "yellow", "held": "red"}
        for row in data["pins"]:
            note = "" if row["listed"] or row["status"] == "held" else "not listed"
            reason = row["reason"]
            table.add_row(
                row["exposed"],
                row["server_id"],
                row["kind"],
                f"[{colours.get(row['status'], 'dim')}]{row['status']}[/]" + (f" ({reason})" if reason else ""),
                row["first_seen"] or "-",
                row["last_changed"] or "-",
                note,
            )
        out.print(table)

    run_command(run)


@pins_app.command("diff")
def diff(
    name: Annotated[str, typer.Argument(help="Exposed name (tool, prompt) or URI template, e.g. fx__echo.")],
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show what changed between a definition's pin (or lockfile entry) and what its server lists now."""

    async def run() -> None:
        _, data = await admin_request("GET", url, "/admin/pins/diff", token, params={"name": name}, refused=(404,))
        if json_output:
            out.print_json(data=data)
            return
        out.print(
            f"{data['exposed']} ({data['kind']} {data['original']!r} of server {data['server_id']}): {data['status']}"
            + (f" ({data['reason']})" if data["reason"] else ""),
            markup=False,
        )
        out.print(f"  pinned  {data['pinned'] or '-'}\n  current {data['current'] or '-'}", markup=False)
        if not data["description"] and not data["changes"]:
            out.print("no difference", markup=False)
        if data["description"]:
            out.print(data["description"].rstrip("\n"), markup=False)
        for change in data["changes"]:
            out.print(_change_line(change), markup=False)

    run_command(run)


def _short(value: Any, limit: int = 200) -> str:
    text = json.dumps(value, ensure_ascii=True, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _change_line(change: dict[str, Any]) -> str:
    if change["change"] == "added":
        return f"+ {change['path']}: {_short(change['new'])}"
    if change["change"] == "removed":
        return f"- {change['path']}: {_short(change['old'])}"
    return f"~ {change['path']}: {_short(change['old'])} -> {_short(change['new'])}"


@pins_app.command("approve")
def approve(
    target: Annotated[
        str | None, typer.Argument(help="An exposed name, or a server_id (all of its definitions).")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Approve every pending definition.")] = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Pin what is pending (changed or new) for a name, a server, or everything: it is served again."""
    if (target is None) == (not all_):
        exit_with("give a NAME or SERVER, or --all", 2, ValueError("bad arguments"))
    body: dict[str, Any] = {"all": True} if all_ else {"target": target}

    async def run() -> None:
        _, data = await admin_request(
            "POST", url, "/admin/pins/approve", token, body=body, timeout_seconds=30.0, refused=(404, 409)
        )
        if json_output:
            out.print_json(data=data)
            return
        approved = data["approved"]
        if not approved:
            out.print("nothing was pending: no definition approved", markup=False)
        else:
            names = ", ".join(f"{r['exposed']} ({r['server_id']})" for r in approved)
            out.print(f"approved {len(approved)} definition(s): {names}", markup=False)
        for skipped in data["skipped"]:
            out.print(f"skipped {skipped['server_id']}: {skipped['reason']}", markup=False)

    run_command(run)


def _unpinned(config: HubConfig) -> HubConfig:
    """`config` with pinning off everywhere (`mcphub lock` records definitions, it judges none)."""
    servers = {sid: server.model_copy(update={"pinning": None}) for sid, server in config.servers.items()}
    return config.model_copy(update={"pinning": "off", "servers": servers})


def _summary(old: LockEntries | None, new: LockEntries) -> str:
    if old is None:
        return "a new lockfile"
    added = sum(1 for key in new if key not in old)
    removed = sum(1 for key in old if key not in new)
    changed = sum(1 for key in new if key in old and old[key][0] != new[key][0])
    return f"{added} added, {changed} changed, {removed} removed since the previous lockfile"


def lock(
    config: Annotated[
        str | None,
        typer.Option(
            "--config", "-c", help="Config file (YAML or JSON). Default: $MCPHUB_CONFIG, ./hub.yaml, or the demo fleet."
        ),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option("--output", "-o", help="Where to write it. Default: `lockfile`, or hub.lock beside the config."),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Start every server once and write the lockfile (`hub.lock`): every tool, prompt and
    resource-template definition with its fingerprint, for `pinning: locked` / `serve --locked`.
    Exit code 1 (and nothing written) when a server does not start."""
    setup_command_logging("error")

    async def run() -> None:
        hub_config, source = resolve_config(config)
        path = Path(output) if output else lockfile_path(hub_config)
        hub = Hub(_unpinned(hub_config), pins_read_only=True)
        enabled = sorted(sid for sid, server in hub_config.servers.items() if server.enabled)
        async with hub.running():
            await hub.wait_started()
            statuses = [status.as_json() for status in hub.server_statuses()]
            entries = hub.lock_entries(enabled)
        failed = [s for s in statuses if s["state"] not in ("ready", "degraded", "disabled")]
        if failed:
            fail(
                f"lockfile not written: {len(failed)} of {len(statuses)} servers failed: "
                + ", ".join(f"{s['server_id']} ({s['last_error']})" for s in failed)
            )
        try:
            previous: LockEntries | None = read_lockfile(path)
        except ConfigError:
            previous = None
        try:
            write_lockfile(path, entries, enabled)
        except OSError as exc:
            fail(f"cannot write {path}: {exc.strerror or exc}")
        summary = _summary(previous, entries)
        if json_output:
            out.print_json(
                data={"lockfile": str(path), "config": source, "servers": enabled, "definitions": len(entries)}
            )
        else:
            out.print(f"wrote {path}: {len(entries)} definitions of {len(enabled)} servers ({summary})", markup=False)

    run_command(run)
