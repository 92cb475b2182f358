"""Composition root: config -> catalog, fleet, router, endpoint -> a running service."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import anyio
from starlette.types import ASGIApp

from hub.catalog import Catalog
from hub.config import HubConfig, load_config
from hub.endpoint import Endpoint
from hub.router import Router
from hub.servers import Fleet, ServerConnection, ServerStatus

__all__ = ["DEFAULT_CONFIG_NAME", "Hub", "demo_config", "resolve_config", "startup_bound_seconds"]

DEFAULT_CONFIG_NAME = "hub.yaml"
CONFIG_ENV = "MCPHUB_CONFIG"
DEMO_FLEET_PATH = Path(__file__).parent / "fleets" / "demo.yaml"


def demo_config() -> tuple[HubConfig, str]:
    """The embedded demo fleet (mcp-server-time and read-only mcp-server-git) and its name."""
    return load_config(DEMO_FLEET_PATH), "<embedded demo fleet>"


def resolve_config(path: str | None) -> tuple[HubConfig, str]:
    """The config to run: `path`, else `$MCPHUB_CONFIG`, else `./hub.yaml`, else the demo fleet.

    :raises ConfigError: the chosen file is unreadable or invalid.
    """
    chosen = path or os.environ.get(CONFIG_ENV)
    if chosen:
        return load_config(chosen), chosen
    if Path(DEFAULT_CONFIG_NAME).is_file():
        return load_config(DEFAULT_CONFIG_NAME), DEFAULT_CONFIG_NAME
    return demo_config()


def startup_bound_seconds(config: HubConfig) -> float:
    """How long every server's first start attempt can take at most, in seconds."""
    return max((s.startup_timeout_seconds + s.timeout_seconds for s in config.servers.values()), default=0.0) + 5.0


class Hub:
    """The hub's objects, wired: `catalog` <- `fleet` snapshots; `endpoint` -> `router` -> `fleet`.

    :param config: the validated config.
    :param on_server_started: awaited with each server's `ServerStatus` as soon as its first start
        attempt has succeeded or failed.
    :param on_started: awaited once every server has finished its first start attempt (bounded by
        `startup_bound_seconds`).
    """

    def __init__(
        self,
        config: HubConfig,
        *,
        on_server_started: Callable[[ServerStatus], Awaitable[None]] | None = None,
        on_started: Callable[[Hub], Awaitable[None]] | None = None,
    ) -> None:
        self.config = config
        self.catalog = Catalog(config)
        self.fleet = Fleet(config, on_snapshot=self.catalog.set_snapshot)
        self.router = Router(self.fleet)
        self.endpoint = Endpoint(config, self.catalog, self.fleet, self.router)
        self._on_server_started = on_server_started
        self._on_started = on_started

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Hub]:
        """Start every server (each in its own supervised task) and stop them all on exit."""
        async with self.fleet, anyio.create_task_group() as tg:
            if self._on_server_started is not None or self._on_started is not None:
                tg.start_soon(self._announce_started)
            yield self
            tg.cancel_scope.cancel()

    async def _announce_started(self) -> None:
        with anyio.move_on_after(startup_bound_seconds(self.config)):
            async with anyio.create_task_group() as tg:
                for connection in self.fleet.connections.values():
                    tg.start_soon(self._announce_one, connection)
        if self._on_started is not None:
            await self._on_started(self)

    async def _announce_one(self, connection: ServerConnection) -> None:
        await connection.wait_first_attempt()
        if self._on_server_started is not None:
            await self._on_server_started(connection.status())

    def http_app(self) -> ASGIApp:
        """The HTTP app; its lifespan runs the fleet."""

        @contextlib.asynccontextmanager
        async def lifespan() -> AsyncIterator[None]:
            async with self.running():
                yield

        return self.endpoint.http_app(lifespan)
