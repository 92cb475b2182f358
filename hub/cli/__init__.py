"""`mcphub`: run the hub and inspect a running one.

The root command and its groups, one module each:

- `hub.cli.serve`: `serve`; `hub.cli.check`: `check`;
- `hub.cli.inspect`: `servers`, `routes [PATTERN] [--profile NAME]`, `explain NAME`, `whoami`;
- `hub.cli.operate`: `reload`, `restart ID`, `call NAME`;
- `hub.cli.keys`: `keys new ID`; `hub.cli.pins`: `pins [diff NAME | approve NAME|SERVER|--all]`,
  `lock`; `hub.cli.search`: `search QUERY [--limit N] [--profile NAME]`.

Commands that talk to a running hub take `--url` (`$MCPHUB_URL`) and `--token` (`$MCPHUB_TOKEN`).
Tables for people, `--json` for scripts; exit code 0 only on success (2 for a bad config or a
malformed command line); errors are one line on stderr, with a traceback only under `--debug`
(`hub.cli.runner`). The CLI imports nothing of the hub below `hub.app` (and `hub.config`,
`hub.errors`, `hub.logs`): `tests/test_cli_layering.py`.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from hub.cli import check, inspect, keys, operate, pins, search, serve
from hub.cli.runner import CliError, report, state

__all__ = ["app", "main"]

app = typer.Typer(
    name="mcphub",
    help="MCP federation hub: one MCP endpoint for a fleet of MCP servers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False) -> None:
    state["debug"] = debug


# The order of registration is the order of `mcphub --help`.
app.command()(serve.serve)
app.command()(check.check)
app.command()(inspect.servers)
app.command()(inspect.routes)
app.command()(operate.reload)
app.command()(operate.restart)
app.command()(operate.call)
app.command()(inspect.explain)
app.command()(inspect.whoami)
app.add_typer(keys.keys_app, name="keys")
app.add_typer(pins.pins_app, name="pins")
app.command("lock")(pins.lock)
app.command("search")(search.search)


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


def main() -> None:
    """Console-script entry point. Errors of the command line (unknown option, missing
    argument, bad value) are one line on stderr with exit code 2, like every error of the CLI."""
    try:
        outcome = app(standalone_mode=False)
    except CliError as exc:  # raised outside `run_command`: still the user's one line
        report(str(exc), exc)
        sys.exit(exc.code)
    except typer.Abort as exc:
        report("aborted", exc)
        sys.exit(130)
    except Exception as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # typer printed the help already
            sys.exit(2)
        usage = _usage_error(exc)
        if usage is None:
            raise
        report(usage[0], exc)
        sys.exit(usage[1])
    sys.exit(outcome if isinstance(outcome, int) else 0)


if __name__ == "__main__":
    main()
