"""The read-only commands that ask a running hub (`--url`, `$MCPHUB_URL`; `--token`,
`$MCPHUB_TOKEN`): `servers` (`/admin/servers`), `routes [PATTERN] [--profile NAME]`
(`/me/routes`), `explain NAME [--principal ID]` (`/me/explain`, `/admin/explain`) and `whoami`
(`/me`). Tables for people, `--json` for scripts; exit code 1 for a refusal."""

from __future__ import annotations

import fnmatch
from typing import Annotated
from urllib.parse import urlencode

import typer

from hub.cli.client import admin_get
from hub.cli.options import DEFAULT_URL, JsonOption, TokenOption, UrlOption
from hub.cli.render import print_explanation, print_routes, print_servers
from hub.cli.runner import out, run_command

__all__ = ["explain", "routes", "servers", "whoami"]


def servers(url: UrlOption = DEFAULT_URL, token: TokenOption = None, json_output: JsonOption = False) -> None:
    """Show every server of the running hub with its state (needs hub:admin)."""

    async def run() -> None:
        data = await admin_get(url, "/admin/servers", token)
        if json_output:
            out.print_json(data=data)
        else:
            print_servers(data["servers"])

    run_command(run)


def routes(
    pattern: Annotated[str | None, typer.Argument(help="Glob on exposed names (e.g. 'git__*').")] = None,
    profile: Annotated[
        str | None, typer.Option("--profile", help="Only the routes profile NAME serves (/profiles/NAME/mcp).")
    ] = None,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show the routes the caller may use: exposed name -> server and original name (with
    --profile, those of one endpoint profile)."""

    async def run() -> None:
        path = "/me/routes" if profile is None else f"/me/routes?{urlencode({'profile': profile})}"
        data = await admin_get(url, path, token)
        selected = [r for r in data["routes"] if pattern is None or fnmatch.fnmatchcase(r["exposed"], pattern)]
        if json_output:
            out.print_json(data={"routes": selected})
        else:
            print_routes(selected)

    run_command(run)


def explain(
    name: Annotated[str, typer.Argument(help="Exposed name (tool, prompt) or exposed resource URI.")],
    principal: Annotated[
        str | None,
        typer.Option("--principal", help="Explain for this principal id (needs hub:admin). Default: the token's own."),
    ] = None,
    scope: Annotated[
        list[str] | None, typer.Option("--scope", "-s", help="With --principal of a JWT subject: its scopes.")
    ] = None,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Everything that decides a call of NAME: route, naming, servers serving it now, the policy
    rule for the principal, rate limits, timeouts and retry, pin status, and the verdict.
    Exit code 1 when the principal cannot call it now."""

    async def run() -> None:
        if principal is None:
            data = await admin_get(url, f"/me/explain?{urlencode({'name': name})}", token)
        else:
            query = urlencode([("name", name), ("principal", principal), *(("scope", s) for s in scope or [])])
            data = await admin_get(url, f"/admin/explain?{query}", token)
        if json_output:
            out.print_json(data=data)
        else:
            print_explanation(data, out)
        if not data["verdict"]["callable"]:
            raise typer.Exit(1)

    run_command(run)


def whoami(url: UrlOption = DEFAULT_URL, token: TokenOption = None, json_output: JsonOption = False) -> None:
    """Show the principal and scopes the running hub sees for the given token."""

    async def run() -> None:
        data = await admin_get(url, "/me", token)
        if json_output:
            out.print_json(data=data)
        else:
            out.print(f"principal: {data['principal']} ({data['source']})", markup=False)
            out.print(f"scopes:    {' '.join(data['scopes']) or '-'}", markup=False)

    run_command(run)
