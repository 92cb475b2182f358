"""`mcphub serve`: run the hub, in five named steps.

1. `ServeOverrides.apply`: the config file plus the command line's overrides (`--host`,
   `--port`, `--locked`), also for every reload (`load_serve_config`).
2. `setup_serve_logging`: the log level and format (`--log-format`, else the config's).
3. `build_hub`: the `Hub`, wired to announce each server's first start attempt.
4. `Banner`: what `serve` prints: the config, each server as its first attempt left it, the
   catalog, the endpoint's URL and a client snippet, the drain phases; text for people, one
   JSON object per line with `--json`; on stdout (on stderr under `--stdio`, whose stdout is MCP).
5. `serve_http` / `serve_stdio`: serve until signalled (`hub.cli.shutdown`), reloading the config
   on SIGHUP (`reload_on_sighup`).
"""

from __future__ import annotations

import json
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final

import anyio
import typer
from rich.console import Console
from rich.markup import escape

from hub.app import (
    DrainPhase,
    DrainReport,
    Hub,
    ServerState,
    ServerStatus,
    force_locked,
    freeze_startup_heap,
    tune_for_serving,
)
from hub.cli.options import ConfigOption, JsonOption
from hub.cli.runner import err, exit_with, fail, out, run_command, setup_command_logging
from hub.cli.shutdown import serve_until_signalled
from hub.config import HubConfig, load_config, require_auth_beyond_loopback, resolve_config
from hub.errors import ConfigError
from hub.logs import LogFormat, counted

__all__ = [
    "Banner",
    "ServeOverrides",
    "build_hub",
    "load_serve_config",
    "reload_on_sighup",
    "serve",
    "serve_http",
    "serve_stdio",
    "setup_serve_logging",
]

logger = logging.getLogger(__name__)

DRAIN_EVENTS: Final = {DrainPhase.GRACE: "draining", DrainPhase.STOPPING: "stopping", DrainPhase.DRAINED: "drained"}
"""The `event` of each drain phase in `serve --json` output."""


@dataclass(frozen=True)
class ServeOverrides:
    """What the command line changes in the config file's settings (None: the file's value).

    :param host: `listen.host`.
    :param port: `listen.port` (0: any free port).
    :param locked: serve only definitions that match the lockfile (`pinning: locked` everywhere).
    """

    host: str | None = None
    port: int | None = None
    locked: bool = False

    def apply(self, loaded: HubConfig) -> HubConfig:
        """`loaded` with these overrides."""
        if self.locked:
            loaded = force_locked(loaded)
        if self.host is None and self.port is None:
            return loaded
        listen = loaded.listen.model_copy(
            update={k: v for k, v in {"host": self.host, "port": self.port}.items() if v is not None}
        )
        return loaded.model_copy(update={"listen": listen})


def load_serve_config(
    path: str | None, overrides: ServeOverrides, *, stdio: bool
) -> tuple[HubConfig, str, Callable[[], HubConfig] | None]:
    """Step 1: the config to serve (`resolve_config`: `path`, `$MCPHUB_CONFIG`, `./hub.yaml`, or
    the demo fleet) with `overrides`, where it came from, and how a reload reads it anew (None
    when it is not a file: the demo fleet cannot reload).

    :raises ConfigError: the file is unreadable or invalid, or (over HTTP) it serves beyond
        loopback without auth (`require_auth_beyond_loopback`).
    """
    loaded, source = resolve_config(path)
    config = overrides.apply(loaded)
    if not stdio:
        try:
            require_auth_beyond_loopback(config)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
    loader = (lambda: overrides.apply(load_config(source))) if Path(source).is_file() else None
    return config, source, loader


def setup_serve_logging(log_level: str, log_format: LogFormat | None, config: HubConfig | None = None) -> None:
    """Step 2: logging at `log_level` (debug under `--debug`) in `log_format`, else in the config's
    `log_format` once the config is known, else text."""
    if config is None:
        setup_command_logging(log_level, log_format or "text")
    elif log_format is None and config.log_format != "text":
        setup_command_logging(log_level, config.log_format)


class Banner:
    """What `mcphub serve` prints as it starts, serves and drains.

    :param console: where (stdout; stderr under `--stdio`).
    :param json_output: one JSON object per line (`{"event": ...}`) instead of text.
    """

    def __init__(self, console: Console, *, json_output: bool) -> None:
        self.console = console
        self.json_output = json_output

    def say(self, text: str, data: dict[str, Any]) -> None:
        """Print `text` (rich markup), or `data` as one JSON line with `--json`."""
        if self.json_output:
            self.console.print(json.dumps(data), markup=False, highlight=False, soft_wrap=True)
        else:
            self.console.print(text)

    def config_loaded(self, source: str, config: HubConfig) -> None:
        """Step 1 is done: where the config came from and its servers."""
        self.say(
            f"mcphub: config {escape(source)}, {counted(len(config.servers), 'server')}",
            {"event": "config", "source": source, "servers": list(config.servers)},
        )

    async def server_started(self, status: ServerStatus) -> None:
        """One server's first start attempt is over: ready (with its counts), disabled, or failed."""
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
        self.say(text, {"event": "server", **status.as_json()})

    async def started(self, hub: Hub) -> None:
        """Every server's first start attempt is over: the catalog's size."""
        self.say(
            f"mcphub: {counted(len(hub.catalog.tools), 'tool')} in the catalog",
            {"event": "ready", "tools": len(hub.catalog.tools)},
        )

    def listening(self, url: str) -> None:
        """The endpoint's URL and how to add it to a client (always on stdout: HTTP only); with
        `--json`, also the serving process's pid (what a supervisor signals, whatever started it)."""
        if self.json_output:
            self.say("", {"event": "listening", "url": url, "pid": os.getpid()})
            return
        out.print(f"mcphub: MCP endpoint {url}", markup=False)
        out.print(f"mcphub: add it to a client, e.g. `claude mcp add --transport http hub {url}`, or:", markup=False)
        out.print(json.dumps({"mcpServers": {"hub": {"type": "http", "url": url}}}, indent=2), markup=False)

    async def drain_phase(self, phase: DrainPhase, report: DrainReport) -> None:
        """A phase of the drain begins (`Hub.drain`)."""
        data = {"event": DRAIN_EVENTS[phase], **report.as_json()}
        if phase is DrainPhase.GRACE:
            grace = report.grace_seconds
            self.say(f"mcphub: draining ({report.cause}): /readyz answers 503; serving for {grace:g} s", data)
        elif phase is DrainPhase.STOPPING:
            self.say("mcphub: not accepting connections; waiting for the requests in flight", data)
        else:
            failed = counted(report.requests_failed, "request")
            self.say(f"mcphub: drained in {report.seconds:.3g} s ({failed} failed)", data)


def build_hub(config: HubConfig, banner: Banner, config_loader: Callable[[], HubConfig] | None) -> Hub:
    """Step 3: the hub, announcing each server's first start attempt and the catalog on `banner`;
    the heap built so far is frozen (`hub.gc_tuning`: a serving process's GC).

    :raises ConfigError: e.g. `pinning: locked` without a valid lockfile.
    """
    hub = Hub(config, on_server_started=banner.server_started, on_started=banner.started, config_loader=config_loader)
    freeze_startup_heap()
    return hub


async def reload_on_sighup(hub: Hub) -> None:
    """Reload the config (`Hub.reload`) on each SIGHUP, logging the outcome, until cancelled."""
    with anyio.open_signal_receiver(signal.SIGHUP) as signals:
        async for _ in signals:
            logger.info("SIGHUP: reloading the config")
            try:
                report = await hub.reload()
            except RuntimeError as exc:  # not serving yet
                logger.warning("SIGHUP ignored: %s", exc)
                continue
            logger.info("reload %s: %s", report.status, json.dumps(report.as_json()))


async def serve_stdio(hub: Hub) -> None:
    """Step 5 over stdio: serve until the host closes stdin."""
    async with hub.running(), anyio.create_task_group() as tg:
        tg.start_soon(reload_on_sighup, hub)
        # A stdio host lists tools right after initialize and may ignore list_changed: its
        # lists wait for every server's first start attempt (hub.startup), not its initialize.
        await hub.serve_stdio()
        tg.cancel_scope.cancel()


async def serve_http(hub: Hub, banner: Banner) -> int:
    """Step 5 over HTTP: bind `listen`, print the URL, serve until SIGTERM/SIGINT and drain
    (`serve_until_signalled`); the exit status (0, or 128 + the signal that stopped it at once).

    :raises CliError: the address cannot be bound (exit code 1).
    """
    listen = hub.config.listen
    try:
        server, url = hub.bind_http()
    except OSError as exc:
        fail(f"cannot listen on {listen.host}:{listen.port}: {exc.strerror or exc}")
    banner.listening(url)
    async with anyio.create_task_group() as tg:
        tg.start_soon(reload_on_sighup, hub)
        status = await serve_until_signalled(hub, server, on_phase=banner.drain_phase)
        tg.cancel_scope.cancel()
    return status


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
    tune_for_serving()
    setup_serve_logging(log_level, log_format)
    try:
        hub_config, source, config_loader = load_serve_config(config, ServeOverrides(host, port, locked), stdio=stdio)
    except ConfigError as exc:
        exit_with(f"config error: {exc}", 2, exc)
    setup_serve_logging(log_level, log_format, hub_config)
    banner = Banner(err if stdio else out, json_output=json_output)
    banner.config_loaded(source, hub_config)
    try:
        hub = build_hub(hub_config, banner, config_loader)
    except ConfigError as exc:
        exit_with(f"config error: {exc}", 2, exc)
    if stdio:
        run_command(lambda: serve_stdio(hub))
        return
    status = run_command(lambda: serve_http(hub, banner))
    if status:
        raise typer.Exit(status)
