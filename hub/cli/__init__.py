"""`mcphub`: run the hub and inspect a running one.

Commands: `serve`, `check`, `servers`, `routes [PATTERN] [--profile NAME]`, `call NAME`, `whoami`,
`keys new ID`, from `hub.cli.pins`: `pins [diff NAME | approve NAME|SERVER|--all]`, `lock`, and
from `hub.cli.search`: `search QUERY [--limit N] [--profile NAME]`.
Commands that talk to a running hub take `--url` (`$MCPHUB_URL`) and `--token` (`$MCPHUB_TOKEN`). Tables for people,
`--json` for scripts; exit code 0 only on success (2 for a bad config); errors are one line on
stderr, with a traceback only under `--debug`.
"""

from __future__ import annotations

import email.utils
import fnmatch
import hashlib
import json
import logging
import math
import os
import secrets
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from pathlib import Path
from typing import Annotated, Any, Final, NoReturn, TypeVar
from urllib.parse import urlencode

import anyio
import httpx2
import typer
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp_types import INVALID_PARAMS
from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from hub.app import Hub, resolve_config, startup_bound_seconds
from hub.cli.options import DEFAULT_URL, ConfigOption, JsonOption, TokenOption, UrlOption
from hub.cli.render import print_explanation
from hub.cli.shutdown import serve_until_signalled
from hub.config import ApiKeyConfig, HubConfig, load_config, require_auth_beyond_loopback
from hub.drain import DrainPhase, DrainReport
from hub.endpoint import HttpServer, bind_socket, run_event_loop
from hub.errors import RATE_LIMITED, ConfigError, HubError
from hub.http_server import HttpLimits
from hub.logs import LogFormat, counted, setup_logging
from hub.servers import ServerState, ServerStatus
from hub.trust_config import force_locked

__all__ = ["app", "main"]

RELOAD_TIMEOUT_SECONDS = 900.0
"""How long `mcphub reload` waits for the answer (the hub answers after draining)."""

app = typer.Typer(
    name="mcphub",
    help="MCP federation hub: one MCP endpoint for a fleet of MCP servers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# A terminal's width is its own; a pipe gets $COLUMNS when set, else 160 columns.
_out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160)
_err = Console(stderr=True, highlight=False, soft_wrap=True)
_state = {"debug": False}

T = TypeVar("T")


class _CliError(Exception):
    """An error already phrased for the user; exit code attached."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _fail(message: str, code: int = 1) -> NoReturn:
    raise _CliError(message, code)


def _leaf(exc: BaseException) -> BaseException:
    """The one exception inside (nested) exception groups, as task groups wrap it; else `exc`."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _run(fn: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine; turn every expected failure into one line on stderr and an exit code."""
    try:
        return run_event_loop(fn)
    except BaseException as raised:  # sorted below; anything else is re-raised
        exc = _leaf(raised)
        if isinstance(exc, typer.Exit | KeyboardInterrupt | SystemExit) and exc is not raised:
            raise exc from None
        if isinstance(exc, _CliError):
            _exit_with(str(exc), exc.code, exc)
        if isinstance(exc, ConfigError):
            _exit_with(f"config error: {exc}", 2, exc)
        if isinstance(exc, HubError):
            _exit_with(str(exc), 1, exc)
        if isinstance(exc, MCPError):
            _exit_with(_mcp_error_line(exc), 1, exc)
        if isinstance(exc, httpx2.ConnectError):
            _exit_with(f"cannot reach the hub ({type(exc).__name__}); is `mcphub serve` running?", 1, exc)
        if isinstance(exc, httpx2.HTTPError):
            _exit_with(f"HTTP error talking to the hub: {type(exc).__name__}", 1, exc)
        if isinstance(exc, KeyboardInterrupt):
            raise typer.Exit(130) from None
        raise


def _report(message: str, exc: BaseException) -> None:
    """One line on stderr (and, under `--debug`, the traceback in the log)."""
    if _state["debug"]:
        logging.getLogger(__name__).error("failure", exc_info=exc)
    _err.print(f"mcphub: {message}", markup=False)


def _exit_with(message: str, code: int, exc: BaseException) -> NoReturn:
    _report(message, exc)
    raise typer.Exit(code)


def _rate_limited(retry_after_seconds: float | None) -> str:
    """The line for a refusal by a rate limit (HTTP 429 per principal, JSON-RPC -32029 per route)."""
    if retry_after_seconds is None:
        return "rate limited, retry later"
    return f"rate limited, retry after {max(1, math.ceil(retry_after_seconds))} s"


def _mcp_error_line(exc: MCPError) -> str:
    """One line for a JSON-RPC error answered by the hub: -32029 as "rate limited, retry after
    N s", an unknown name (-32602) with the names the hub suggests, else code and message."""
    data = exc.data if isinstance(exc.data, dict) else {}
    if exc.code == RATE_LIMITED:
        seconds = data.get("retry_after_seconds")
        return f"{_rate_limited(seconds if isinstance(seconds, int | float) else None)} (MCP error {exc.code})"
    line = f"MCP error {exc.code}: {exc.message}"
    suggestions = data.get("suggestions")
    if exc.code == INVALID_PARAMS and isinstance(suggestions, list) and suggestions and "did you mean" not in line:
        line += f"; did you mean {' or '.join(repr(str(name)) for name in suggestions)}?"
    return line


def _setup_logging(level: str, log_format: LogFormat = "text") -> None:
    setup_logging(level, log_format)


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False) -> None:
    _state["debug"] = debug


# ---------------------------------------------------------------- serve


def _client_snippet(url: str) -> str:
    return json.dumps({"mcpServers": {"hub": {"type": "http", "url": url}}}, indent=2)


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Interface to bind (overrides listen.host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind, 0 for any (overrides listen.port).")] = None,
    stdio: Annotated[bool, typer.Option("--stdio", help="Serve the catalog on stdin/stdout instead of HTTP.")] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    log_format: Annotated[
        LogFormat | None, typer.Option("--log-format", help="text or json (one object per line). Default: config.")
    ] = None,
    json_output: JsonOption = False,
    locked: Annotated[
        bool, typer.Option("--locked", help="Serve only definitions that match the lockfile (pinning: locked).")
    ] = False,
) -> None:
    """Run the hub: start every server and serve the catalog at /mcp (or over stdio).

    SIGHUP (or `mcphub reload`) re-reads the config file and applies it while serving. SIGTERM
    drains (readiness 503, shutdown_grace_seconds, in-flight requests finish) and exits 0;
    Ctrl-C drains without the grace; a second signal stops at once (exit 128 + signal)."""

    level = "debug" if _state["debug"] else log_level
    _setup_logging(level, log_format or "text")
    try:
        hub_config, source = resolve_config(config)
    except ConfigError as exc:
        _exit_with(f"config error: {exc}", 2, exc)

    def with_overrides(loaded: HubConfig) -> HubConfig:
        if locked:
            loaded = force_locked(loaded)
        if host is None and port is None:
            return loaded
        listen = loaded.listen.model_copy(
            update={k: v for k, v in {"host": host, "port": port}.items() if v is not None}
        )
        return loaded.model_copy(update={"listen": listen})

    hub_config = with_overrides(hub_config)
    if not stdio:
        try:
            require_auth_beyond_loopback(hub_config)
        except ValueError as exc:
            _exit_with(f"config error: {exc}", 2, exc)
    if log_format is None and hub_config.log_format != "text":
        _setup_logging(level, hub_config.log_format)
    config_loader = (lambda: with_overrides(load_config(source))) if Path(source).is_file() else None
    console = _err if stdio else _out

    def say(text: str, data: dict[str, Any]) -> None:
        if json_output:
            console.print(json.dumps(data), markup=False, highlight=False, soft_wrap=True)
        else:
            console.print(text)

    say(
        f"mcphub: config {escape(source)}, {counted(len(hub_config.servers), 'server')}",
        {"event": "config", "source": source, "servers": list(hub_config.servers)},
    )

    async def server_started(status: ServerStatus) -> None:
        if status.state is ServerState.READY:
            text = (
                f"  [green]ready[/]    {status.server_id} ({status.transport}, {status.protocol_version}): "
                f"{counted(status.tools, 'tool')}, {counted(status.resources, 'resource')}, "
                f"{counted(status.prompts, 'prompt')}"
            )
        elif status.state is ServerState.DISABLED:
            text = f"  [dim]disabled[/] {status.server_id}"
        else:
            text = f"  [red]{status.state.value}[/]   {status.server_id}: {escape(status.last_error or '')}"
        say(text, {"event": "server", **status.as_json()})

    async def started(hub: Hub) -> None:
        say(
            f"mcphub: {counted(len(hub.catalog.tools), 'tool')} in the catalog",
            {"event": "ready", "tools": len(hub.catalog.tools)},
        )

    try:
        hub = Hub(hub_config, on_server_started=server_started, on_started=started, config_loader=config_loader)
    except ConfigError as exc:  # e.g. `pinning: locked` without a valid lockfile
        _exit_with(f"config error: {exc}", 2, exc)

    async def reload_on_sighup() -> None:
        log = logging.getLogger(__name__)
        with anyio.open_signal_receiver(signal.SIGHUP) as signals:
            async for _ in signals:
                log.info("SIGHUP: reloading the config")
                try:
                    report = await hub.reload()
                except RuntimeError as exc:  # not serving yet
                    log.warning("SIGHUP ignored: %s", exc)
                    continue
                log.info("reload %s: %s", report.status, json.dumps(report.as_json()))

    async def serve_stdio() -> None:
        async with hub.running(), anyio.create_task_group() as tg:
            tg.start_soon(reload_on_sighup)
            # A stdio host lists tools right after initialize and may ignore list_changed: its
            # lists wait for every server's first start attempt (hub.startup), not its initialize.
            await hub.endpoint.serve_stdio()
            tg.cancel_scope.cancel()

    async def serve_http() -> None:
        try:
            sock = bind_socket(hub_config.listen.host, hub_config.listen.port)
        except OSError as exc:
            _fail(f"cannot listen on {hub_config.listen.host}:{hub_config.listen.port}: {exc.strerror or exc}")
        bound_host, bound_port = sock.getsockname()[:2]
        shown_host = f"[{bound_host}]" if ":" in bound_host else bound_host
        url = f"http://{shown_host}:{bound_port}/mcp"
        if json_output:
            say("", {"event": "listening", "url": url})
        else:
            _out.print(f"mcphub: MCP endpoint {url}", markup=False)
            _out.print(
                f"mcphub: add it to a client, e.g. `claude mcp add --transport http hub {url}`, or:", markup=False
            )
            _out.print(_client_snippet(url), markup=False)
        server = HttpServer(hub.http_app(), sock, limits=HttpLimits.from_config(hub_config), handle_signals=False)
        async with anyio.create_task_group() as tg:
            tg.start_soon(reload_on_sighup)
            status = await serve_until_signalled(hub, server, on_phase=announce_drain)
            tg.cancel_scope.cancel()
        if status:
            raise typer.Exit(status)

    async def announce_drain(phase: DrainPhase, report: DrainReport) -> None:
        data = {"event": _DRAIN_EVENTS[phase], **report.as_json()}
        if phase is DrainPhase.GRACE:
            say(f"mcphub: draining ({report.cause}): /readyz answers 503; serving for {report.grace_seconds:g} s", data)
        elif phase is DrainPhase.STOPPING:
            say("mcphub: not accepting connections; waiting for the requests in flight", data)
        else:
            failed = counted(report.requests_failed, "request")
            say(f"mcphub: drained in {report.seconds:.3g} s ({failed} failed)", data)

    _run(serve_stdio if stdio else serve_http)


_DRAIN_EVENTS: Final = {DrainPhase.GRACE: "draining", DrainPhase.STOPPING: "stopping", DrainPhase.DRAINED: "drained"}
"""The `event` of each drain phase in `serve --json` output."""


# ---------------------------------------------------------------- check


@app.command()
def check(
    config: ConfigOption = None,
    connect: Annotated[
        bool, typer.Option("--connect", help="Also start every server and print the route table.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Validate a config; with --connect, start every server once and show the routes."""
    _setup_logging("debug" if _state["debug"] else "error")

    async def run() -> None:
        hub_config, source = resolve_config(config)
        warnings = list(hub_config.warnings)
        if not json_output:
            for warning in warnings:
                _err.print(f"mcphub: warning: {warning}", markup=False)
        if not connect:
            if json_output:
                _out.print_json(data={"config": source, "servers": sorted(hub_config.servers), "warnings": warnings})
            else:
                _out.print(
                    f"{source}: OK, {counted(len(hub_config.servers), 'server')}: {', '.join(hub_config.servers)}",
                    markup=False,
                )
            return
        # Each server is reported as its first attempt left it (a server that failed it, with its
        # stderr), not as its restarts have left it by the time the slowest one is up.
        first: dict[str, dict[str, Any]] = {}

        async def record(status: ServerStatus) -> None:
            first[status.server_id] = status.as_json()

        hub = Hub(hub_config, on_server_started=record, pins_read_only=True)
        async with hub.running():
            with anyio.move_on_after(startup_bound_seconds(hub_config)):
                await hub.fleet.startup.wait_settled()
            statuses = [first.get(sid) or c.status().as_json() for sid, c in hub.fleet.connections.items()]
            routes = hub.endpoint.routes_json()
        failed = [s for s in statuses if s["state"] not in ("ready", "degraded", "disabled")]
        if json_output:
            _out.print_json(data={"config": source, "servers": statuses, "routes": routes, "warnings": warnings})
        else:
            _print_servers(statuses)
            _print_routes(routes)
        if failed:
            _fail(
                f"{len(failed)} of {len(statuses)} servers failed: "
                + ", ".join(f"{s['server_id']} ({s['last_error']})" for s in failed)
            )

    _run(run)


# ---------------------------------------------------------------- admin API readers


def _auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _retry_after_seconds(response: httpx2.Response) -> float | None:
    """The `Retry-After` of an answer in seconds (delay-seconds or HTTP-date, RFC 9110 10.2.3)."""
    value = response.headers.get("retry-after", "").strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class _RateLimitWatch:
    """An httpx2 response hook that remembers the hub's HTTP 429 (per-principal rate limit).

    The SDK's Streamable HTTP client turns a 429 whose body is not a JSON-RPC error into a
    generic -32603 "Server returned an error response", so `call` asks this watch what happened.
    """

    def __init__(self) -> None:
        self.limited = False
        self.retry_after_seconds: float | None = None

    async def __call__(self, response: httpx2.Response) -> None:
        if response.status_code == 429:
            self.limited = True
            self.retry_after_seconds = _retry_after_seconds(response)


def _refusal(response: httpx2.Response, path: str) -> str:
    """One line for a non-200 answer of the hub, with its OAuth error when it gave one."""
    if response.status_code == 429:
        return _rate_limited(_retry_after_seconds(response))
    try:
        body = response.json()
    except ValueError:
        body = {}
    detail = body.get("error_description") or body.get("error") if isinstance(body, dict) else None
    hint = ""
    if response.status_code == 401:
        hint = " (pass a token with --token or MCPHUB_TOKEN)"
    return f"the hub answered HTTP {response.status_code} for {path}" + (f": {detail}" if detail else "") + hint


async def _admin_get(url: str, path: str, token: str | None) -> Any:
    async with httpx2.AsyncClient(timeout=10.0, headers=_auth_headers(token)) as client:
        response = await client.get(url.rstrip("/") + path)
    if response.status_code != 200:
        _fail(_refusal(response, path))
    return response.json()


async def _admin_post(url: str, path: str, token: str | None) -> Any:
    async with httpx2.AsyncClient(timeout=10.0, headers=_auth_headers(token)) as client:
        response = await client.post(url.rstrip("/") + path)
    if response.status_code == 404:
        _fail(str(response.json().get("error", f"not found: {path}")))
    if response.status_code not in (200, 202):
        _fail(_refusal(response, f"POST {path}"))
    return response.json()


_SQUEEZED_COLUMN_CELLS: Final = 6
"""The least width (content and padding) a table leaves each wrapping column."""

_Cell = str | Text


def _print_table(headers: Sequence[str], rows: Sequence[Sequence[_Cell]], whole: Collection[int]) -> None:
    """Print a table for people. The columns at the indexes in `whole` (the names people copy:
    exposed names, server ids) are never wrapped or cut; the others wrap, folding long words,
    the widest first, to make room. When even that does not fit the console, the table is
    printed wider than the console (the terminal wraps its lines) rather than cut a name.
    A `str` cell is plain text (never markup); a `Text` cell keeps its style."""
    table = Table()
    for index, header in enumerate(headers):
        if index in whole:
            table.add_column(header, no_wrap=True, overflow="ignore")
        else:
            table.add_column(header, overflow="fold")
    cells = [[Text(cell) if isinstance(cell, str) else cell for cell in row] for row in rows]
    for row in cells:
        table.add_row(*row)
    needed = len(headers) + 1  # borders
    for index, header in enumerate(headers):
        if index in whole:
            needed += max([cell_len(header)] + [row[index].cell_len for row in cells]) + 2
        else:
            needed += _SQUEEZED_COLUMN_CELLS
    if needed > _out.width:
        table.width = needed
    _out.print(table, crop=False)


_STATE_COLOURS: Final = {
    "ready": "green",
    "degraded": "yellow",
    "open": "red",
    "failed": "red",
    "restarting": "yellow",
    "starting": "yellow",
}


def _print_servers(servers: list[dict[str, Any]]) -> None:
    headers = ("server", "state", "transport", "protocol", "tools", "resources", "prompts", "restarts")
    rows: list[list[_Cell]] = []
    for s in servers:
        name = Text(s["server_id"])
        if s.get("replica_of"):
            name.append(f" (replica of {s['replica_of']})", style="dim")
        failures = s.get("consecutive_failures", 0)
        rows.append(
            [
                name,
                Text(s["state"], style=_STATE_COLOURS.get(s["state"], "dim")),
                s["transport"],
                s["protocol_version"] or "-",
                str(s["tools"]),
                str(s["resources"] + s["resource_templates"]),
                str(s["prompts"]),
                str(s["restarts"]),
                s.get("breaker", "closed") + (f" ({counted(failures, 'failure')})" if failures else ""),
                s["last_error"] or "",
            ]
        )
    _print_table((*headers, "breaker", "last error"), rows, whole=(0,))


def _print_routes(routes: list[dict[str, Any]]) -> None:
    headers = ("exposed name", "kind", "server", "original", "server state", "fallback chain", "serving now", "note")
    rows: list[list[_Cell]] = [
        [
            r["exposed"],
            r["kind"],
            r["server_id"],
            r["original"],
            r["server_state"],
            " -> ".join(r.get("chain") or [r["server_id"]]),
            r.get("serving") or "-",
            "; ".join(r.get("notes") or ([r["note"]] if r["note"] else [])),
        ]
        for r in routes
    ]
    _print_table(headers, rows, whole=(0,))


@app.command()
def servers(url: UrlOption = DEFAULT_URL, token: TokenOption = None, json_output: JsonOption = False) -> None:
    """Show every server of the running hub with its state (needs hub:admin)."""

    async def run() -> None:
        data = await _admin_get(url, "/admin/servers", token)
        if json_output:
            _out.print_json(data=data)
        else:
            _print_servers(data["servers"])

    _run(run)


@app.command()
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
        data = await _admin_get(url, path, token)
        selected = [r for r in data["routes"] if pattern is None or fnmatch.fnmatchcase(r["exposed"], pattern)]
        if json_output:
            _out.print_json(data={"routes": selected})
        else:
            _print_routes(selected)

    _run(run)


@app.command()
def reload(
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Make the running hub re-read its config file and apply it (as SIGHUP does): added servers
    start, removed ones drain and stop, changed ones are replaced, unchanged ones are untouched.
    A bad config is rejected whole (exit code 2) and the running one keeps serving."""

    async def run() -> None:
        async with httpx2.AsyncClient(timeout=RELOAD_TIMEOUT_SECONDS, headers=_auth_headers(token)) as client:
            response = await client.post(url.rstrip("/") + "/admin/reload")
        if response.status_code not in (200, 400):
            _fail(_refusal(response, "POST /admin/reload"))
        data = response.json()
        if json_output:
            _out.print_json(data=data)
        if data["status"] == "rejected":
            _fail(f"reload rejected, the running config stays: {data['error']}", 2)
        if not json_output:
            parts = [f"{key} {', '.join(data[key])}" for key in ("added", "removed", "replaced") if data[key]]
            _out.print(f"reload {data['status']}: " + ("; ".join(parts) or "no server changed"), markup=False)
            if data["drain_seconds"]:
                drains = ", ".join(f"{sid} {sec:g} s" for sid, sec in data["drain_seconds"].items())
                _out.print(f"drained: {drains}", markup=False)
            if data["drain_timed_out"]:
                _out.print(f"stopped with calls in flight: {', '.join(data['drain_timed_out'])}", markup=False)
            if data["restart_required"]:
                keys = ", ".join(data["restart_required"])
                _out.print(f"needs a restart to take effect (running values kept): {keys}", markup=False)

    _run(run)


@app.command()
def restart(
    server_id: Annotated[str, typer.Argument(metavar="ID", help="The server to restart (its key under `servers:`).")],
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    wait: Annotated[float, typer.Option("--wait", help="Seconds to wait for it to be ready (0: do not wait).")] = 30.0,
    json_output: JsonOption = False,
) -> None:
    """Restart one server of the running hub (also one `failed` after a crash loop) and wait
    until it is ready again. Exit code 1 when it is not ready within --wait seconds."""

    async def run() -> None:
        before = await _admin_post(url, f"/admin/servers/{server_id}/restart", token)
        status = before
        deadline = time.monotonic() + wait
        while wait > 0:
            servers = (await _admin_get(url, "/admin/servers", token))["servers"]
            status = next((s for s in servers if s["server_id"] == server_id), status)
            if status["state"] in ("ready", "degraded") and status["restarts"] > before["restarts"]:
                break
            if time.monotonic() >= deadline:
                reason = f" ({status['last_error']})" if status["last_error"] else ""
                _fail(f"server '{server_id}' is {status['state']} {wait:g} s after the restart{reason}")
            await anyio.sleep(0.2)
        if json_output:
            _out.print_json(data=status)
        elif wait > 0:
            restarts = status["restarts"]
            _out.print(f"server '{server_id}' restarted: {status['state']} (restarts {restarts})", markup=False)
        else:
            _out.print(f"server '{server_id}': restart requested", markup=False)

    _run(run)


# ---------------------------------------------------------------- call


def _parse_args(args: list[str], json_args: str | None) -> dict[str, Any]:
    """The tool arguments from `--json-args` and `--arg key=value` (a value that parses as JSON
    is JSON). :raises _CliError: (exit code 2) for a malformed option."""
    arguments: dict[str, Any] = {}
    if json_args:
        try:
            parsed = json.loads(json_args)
        except json.JSONDecodeError as exc:
            _fail(f"--json-args is not valid JSON: {exc.msg} at position {exc.pos}", 2)
        if not isinstance(parsed, dict):
            _fail("--json-args must be a JSON object", 2)
        arguments.update(parsed)
    for item in args:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            _fail(f"--arg takes key=value, got {item!r} (e.g. --arg {item or 'key'}=value)", 2)
        try:
            arguments[key] = json.loads(raw)
        except json.JSONDecodeError:
            arguments[key] = raw
    return arguments


@app.command()
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
        watch = _RateLimitWatch()
        with anyio.fail_after(120):
            async with httpx2.AsyncClient(
                headers=_auth_headers(token), timeout=120.0, event_hooks={"response": [watch]}
            ) as http:
                probe = await http.get(url.rstrip("/") + "/me")
                if probe.status_code != 200:
                    _fail(_refusal(probe, "/me"))
                transport = streamable_http_client(url.rstrip("/") + "/mcp", http_client=http)
                try:
                    async with Client(transport) as client:
                        result = await client.call_tool(name, arguments)
                except (MCPError, httpx2.HTTPError, ExceptionGroup) as exc:
                    if watch.limited:  # whatever the SDK made of it, the hub said 429
                        raise _CliError(_rate_limited(watch.retry_after_seconds)) from exc
                    raise
        if json_output:
            _out.print_json(data=result.model_dump(mode="json", by_alias=True, exclude_none=True))
        else:
            for block in result.content:
                _out.print(block.text if block.type == "text" else f"<{block.type} content>", markup=False)
        if result.is_error:
            raise typer.Exit(1)

    _run(run)


@app.command()
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
            data = await _admin_get(url, f"/me/explain?{urlencode({'name': name})}", token)
        else:
            query = urlencode([("name", name), ("principal", principal), *(("scope", s) for s in scope or [])])
            data = await _admin_get(url, f"/admin/explain?{query}", token)
        if json_output:
            _out.print_json(data=data)
        else:
            print_explanation(data, _out)
        if not data["verdict"]["callable"]:
            raise typer.Exit(1)

    _run(run)


@app.command()
def whoami(url: UrlOption = DEFAULT_URL, token: TokenOption = None, json_output: JsonOption = False) -> None:
    """Show the principal and scopes the running hub sees for the given token."""

    async def run() -> None:
        data = await _admin_get(url, "/me", token)
        if json_output:
            _out.print_json(data=data)
        else:
            _out.print(f"principal: {data['principal']} ({data['source']})", markup=False)
            _out.print(f"scopes:    {' '.join(data['scopes']) or '-'}", markup=False)

    _run(run)


keys_app = typer.Typer(help="API keys for the hub's auth.api_keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


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
        _exit_with(f"invalid key id or scope: {_first_error(exc)}", 2, exc)
    key = "mcphub_" + secrets.token_urlsafe(32)
    digest = hashlib.sha256(key.encode()).hexdigest()
    line = json.dumps({"id": entry.id, "key_sha256": digest, "scopes": entry.scopes})
    if json_output:
        data = {"id": entry.id, "key": key, "key_sha256": digest, "scopes": entry.scopes, "config_line": f"- {line}"}
        _out.print(json.dumps(data), markup=False)
        return
    _err.print("The key is shown once; give it to its user and keep only the config line.", markup=False)
    _out.print(f"key: {key}", markup=False)
    _out.print(f"config (under auth.api_keys): - {line}", markup=False)


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    return str(exc)


def _usage_error(exc: Exception) -> tuple[str, int] | None:
    """`(one line, exit code)` for an error of the command line itself (unknown command or
    option, missing argument, bad value: exit code 2), else None. Recognised by click's
    exception protocol (`format_message`, `exit_code`), since typer vendors click privately."""
    format_message = getattr(exc, "format_message", None)
    exit_code = getattr(exc, "exit_code", None)
    if not callable(format_message) or not isinstance(exit_code, int):
        return None
    line = " ".join(str(format_message()).split())
    ctx = getattr(exc, "ctx", None)
    command_path = getattr(ctx, "command_path", None)
    if exit_code == 2 and isinstance(command_path, str):
        line += f" (see `{command_path} --help`)"
    return line, exit_code


def _register_trust_commands() -> None:
    from hub.cli.pins import lock, pins_app
    from hub.cli.search import search  # these reach this module's helpers at run time

    app.add_typer(pins_app, name="pins")
    app.command("lock")(lock)
    app.command("search")(search)


_register_trust_commands()


def main() -> None:
    """Console-script entry point. Errors of the command line (unknown option, missing
    argument, bad value) are one line on stderr with exit code 2, like every error of the CLI."""
    try:
        outcome = app(standalone_mode=False)
    except _CliError as exc:  # raised outside `_run`: still the user's one line
        _report(str(exc), exc)
        sys.exit(exc.code)
    except typer.Abort as exc:
        _report("aborted", exc)
        sys.exit(130)
    except Exception as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # typer printed the help already
            sys.exit(2)
        usage = _usage_error(exc)
        if usage is None:
            raise
        _report(usage[0], exc)
        sys.exit(usage[1])
    sys.exit(outcome if isinstance(outcome, int) else 0)


if __name__ == "__main__":
    main()
