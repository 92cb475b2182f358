"""`mcphub check [-c CONFIG] [--connect] [--json]`: validate a config without serving it; with
`--connect`, start every server once (pins read, never written) and show the servers as their
first start attempt left them and the route table. Exit code 2 for a bad config, 1 when a server
failed."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from hub.app import Hub, ServerStatus
from hub.cli.options import ConfigOption, JsonOption
from hub.cli.render import print_routes, print_servers
from hub.cli.runner import err, fail, out, run_command, setup_command_logging
from hub.config import resolve_config
from hub.logs import counted

__all__ = ["check"]


def check(
    config: ConfigOption = None,
    connect: Annotated[
        bool, typer.Option("--connect", help="Also start every server and print the route table.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Validate a config; with --connect, start every server once and show the routes."""
    setup_command_logging("error")

    async def run() -> None:
        hub_config, source = resolve_config(config)
        warnings = list(hub_config.warnings)
        if not json_output:
            for warning in warnings:
                err.print(f"mcphub: warning: {warning}", markup=False)
        if not connect:
            if json_output:
                out.print_json(data={"config": source, "servers": sorted(hub_config.servers), "warnings": warnings})
            else:
                out.print(
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
            await hub.wait_started()
            statuses = [first.get(s.server_id) or s.as_json() for s in hub.server_statuses()]
            routes = hub.routes_json()
        failed = [s for s in statuses if s["state"] not in ("ready", "degraded", "disabled")]
        if json_output:
            out.print_json(data={"config": source, "servers": statuses, "routes": routes, "warnings": warnings})
        else:
            print_servers(statuses)
            print_routes(routes)
        if failed:
            fail(
                f"{len(failed)} of {len(statuses)} servers failed: "
                + ", ".join(f"{s['server_id']} ({s['last_error']})" for s in failed)
            )

    run_command(run)
