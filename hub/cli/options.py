"""The command-line options every `mcphub` command that talks to a running hub shares (typer
annotations), so `hub.cli` and the command modules it registers spell them once."""

from __future__ import annotations

from typing import Annotated, Final

import typer

from hub.config import DEFAULT_PORT

__all__ = ["DEFAULT_URL", "ConfigOption", "JsonOption", "TokenOption", "UrlOption"]

DEFAULT_URL: Final = f"http://127.0.0.1:{DEFAULT_PORT}"
"""Where `mcphub` looks for a running hub unless `--url` or `$MCPHUB_URL` says otherwise."""

UrlOption = Annotated[str, typer.Option("--url", envvar="MCPHUB_URL", help="Base URL of the running hub.")]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token", envvar="MCPHUB_TOKEN", help="Bearer token (API key or JWT) for the running hub.", show_default=False
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
ConfigOption = Annotated[
    str | None,
    typer.Option(
        "--config", "-c", help="Config file (YAML or JSON). Default: $MCPHUB_CONFIG, ./hub.yaml, or the demo fleet."
    ),
]
