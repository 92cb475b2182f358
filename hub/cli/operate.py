"""The commands that act on a running hub (`--url`, `--token`): `reload` (`POST /admin/reload`,
as SIGHUP), `restart ID` (`POST /admin/servers/ID/restart?wait=S`: the hub answers once it is ready) and
`call NAME` (a `tools/call` through `/mcp`, as a client would). Exit code 1 for a refusal or a
tool error, 2 for a rejected config or malformed arguments."""

from __future__ import annotations

import json
from typing import Annotated, Any

import anyio
import httpx2
import typer
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client

from adapters.tls import client_tls_context
from hub.cli.client import ADMIN_TIMEOUT_SECONDS, RateLimitWatch, admin_request, auth_headers, refusal
from hub.cli.options import DEFAULT_URL, JsonOption, TokenOption, UrlOption
from hub.cli.runner import CliError, fail, out, rate_limited, run_command

__all__ = ["call", "reload", "restart"]

RELOAD_TIMEOUT_SECONDS = 900.0
"""How long `mcphub reload` waits for the answer (the hub answers after draining)."""


def reload(
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Make the running hub re-read its config file and apply it (as SIGHUP does): added servers
    start, removed ones drain and stop, changed ones are replaced, unchanged ones are untouched.
    A bad config is rejected whole (exit code 2) and the running one keeps serving."""

    async def run() -> None:
        _, data = await admin_request(
            "POST", url, "/admin/reload", token, timeout_seconds=RELOAD_TIMEOUT_SECONDS, accept=(200, 400)
        )
        if json_output:
            out.print_json(data=data)
        if data["status"] == "rejected":
            fail(f"reload rejected, the running config stays: {data['error']}", 2)
        if not json_output:
            parts = [f"{key} {', '.join(data[key])}" for key in ("added", "removed", "replaced") if data[key]]
            out.print(f"reload {data['status']}: " + ("; ".join(parts) or "no server changed"), markup=False)
            if data["drain_seconds"]:
                drains = ", ".join(f"{sid} {sec:g} s" for sid, sec in data["drain_seconds"].items())
                out.print(f"drained: {drains}", markup=False)
            if data["drain_timed_out"]:
                out.print(f"stopped with calls in flight: {', '.join(data['drain_timed_out'])}", markup=False)
            if data["restart_required"]:
                keys = ", ".join(data["restart_required"])
                out.print(f"needs a restart to take effect (running values kept): {keys}", markup=False)

    run_command(run)


def restart(
    server_id: Annotated[str, typer.Argument(metavar="ID", help="The server to restart (its key under `servers:`).")],
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    wait: Annotated[
        float,
        typer.Option("--wait", min=0, help="Seconds to wait for it to be ready (0: do not wait; the hub allows 300)."),
    ] = 30.0,
    json_output: JsonOption = False,
) -> None:
    """Restart one server of the running hub (also one `failed` after a crash loop) and wait
    until it is ready again. Exit code 1 when it is not ready within --wait seconds."""

    async def run() -> None:
        path = f"/admin/servers/{server_id}/restart"
        # The hub holds the answer until the server is back (200) or `wait` passes (504).
        code, status = await admin_request(
            "POST",
            url,
            path,
            token,
            params={"wait": f"{wait:g}"},
            timeout_seconds=ADMIN_TIMEOUT_SECONDS + wait,
            accept=(200, 202, 504),
            refused=(404,),
        )
        if code == 504:
            reason = f" ({status['last_error']})" if status["last_error"] else ""
            fail(f"server '{server_id}' is {status['state']} {wait:g} s after the restart{reason}")
        if json_output:
            out.print_json(data=status)
        elif wait > 0:
            restarts = status["restarts"]
            out.print(f"server '{server_id}' restarted: {status['state']} (restarts {restarts})", markup=False)
        else:
            out.print(f"server '{server_id}': restart requested", markup=False)

    run_command(run)


def _parse_args(args: list[str], json_args: str | None) -> dict[str, Any]:
    """The tool arguments from `--json-args` and `--arg key=value` (a value that parses as JSON
    is JSON). :raises _CliError: (exit code 2) for a malformed option."""
    arguments: dict[str, Any] = {}
    if json_args:
        try:
            parsed = json.loads(json_args)
        except json.JSONDecodeError as exc:
            fail(f"--json-args is not valid JSON: {exc.msg} at position {exc.pos}", 2)
        if not isinstance(parsed, dict):
            fail("--json-args must be a JSON object", 2)
        arguments.update(parsed)
    for item in args:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            fail(f"--arg takes key=value, got {item!r} (e.g. --arg {item or 'key'}=value)", 2)
        try:
            arguments[key] = json.loads(raw)
        except json.JSONDecodeError:
            arguments[key] = raw
    return arguments


def call(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Exposed tool name, e.g. time__get_current_time.")],
    arg: Annotated[
        list[str] | None, typer.Option("--arg", "-a", help="key=value (value parsed as JSON when it is JSON).")
    ] = None,
    json_args: Annotated[str | None, typer.Option("--json-args", help="All arguments as one JSON object.")] = None,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Call a tool through the running hub's /mcp and print its result.

    Exit code 0 on success, 1 when the tool's result is an error or the hub refuses (an unknown
    name is shown with the names the hub suggests; a rate limit as "rate limited, retry after
    N s"), 2 for malformed --arg or --json-args."""

    async def run() -> None:
        arguments = _parse_args(arg or [], json_args)
        watch = RateLimitWatch()
        with anyio.fail_after(120):
            async with httpx2.AsyncClient(
                verify=client_tls_context(),
                headers=auth_headers(token),
                timeout=120.0,
                event_hooks={"response": [watch]},
            ) as http:
                probe = await http.get(url.rstrip("/") + "/me")
                if probe.status_code != 200:
                    fail(refusal(probe, "/me"))
                transport = streamable_http_client(url.rstrip("/") + "/mcp", http_client=http)
                try:
                    async with Client(transport) as client:
                        result = await client.call_tool(name, arguments)
                except (MCPError, httpx2.HTTPError, ExceptionGroup) as exc:
                    if watch.limited:  # whatever the SDK made of it, the hub said 429
                        raise CliError(rate_limited(watch.retry_after_seconds)) from exc
                    raise
        if json_output:
            out.print_json(data=result.model_dump(mode="json", by_alias=True, exclude_none=True))
        else:
            for block in result.content:
                out.print(block.text if block.type == "text" else f"<{block.type} content>", markup=False)
        if result.is_error:
            raise typer.Exit(1)

    run_command(run)
