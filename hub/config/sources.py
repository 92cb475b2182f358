"""Which config the hub runs: a path given on the command line, else `$MCPHUB_CONFIG`, else
`./hub.yaml`, else the embedded demo fleet (`hub/fleets/demo.yaml`: mcp-server-time and a
read-only mcp-server-git), so `mcphub serve` with no argument serves something useful."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from hub.config.hub import HubConfig
from hub.config.loader import load_config

__all__ = ["CONFIG_ENV", "DEFAULT_CONFIG_NAME", "DEMO_FLEET_PATH", "demo_config", "resolve_config"]

DEFAULT_CONFIG_NAME: Final = "hub.yaml"
"""The config file looked for in the working directory."""
CONFIG_ENV: Final = "MCPHUB_CONFIG"
"""The environment variable naming the config file."""
DEMO_FLEET_PATH: Final = Path(__file__).parent.parent / "fleets" / "demo.yaml"
"""The embedded demo fleet."""


def demo_config() -> tuple[HubConfig, str]:
    """The embedded demo fleet and its name for messages.

    :raises ConfigError: the demo fleet does not load (a packaging error).
    """
    return load_config(DEMO_FLEET_PATH), "<embedded demo fleet>"


def resolve_config(path: str | None) -> tuple[HubConfig, str]:
    """The config to run and where it came from: `path`, else `$MCPHUB_CONFIG`, else
    `./hub.yaml`, else the demo fleet.

    :raises ConfigError: the chosen file is unreadable or invalid.
    """
    chosen = path or os.environ.get(CONFIG_ENV)
    if chosen:
        return load_config(chosen), chosen
    if Path(DEFAULT_CONFIG_NAME).is_file():
        return load_config(DEFAULT_CONFIG_NAME), DEFAULT_CONFIG_NAME
    return demo_config()
