"""Dedicated connections: a server connection's clones for one client or one era.

Most servers are shared: every client's requests go over one connection. Some requests need a
connection of their own, started on first use and supervised by the fleet beside the shared one:

- `isolation: per_client`: each client session gets its own connection (and so its own stdio
  child or remote session), closed when the session ends (`release_client`);
- `protocol: both`: handshake-era clients are served over a handshake-era connection
  (`_LEGACY_ERA_KEY`), modern-era ones over the shared modern-era connection;
- a `protocol: auto`/`both` server found to push requests mid-call (`hub.push_era`): its
  requests that may push go over a handshake-era connection, which can carry the push.

The router (`hub.router`, for routed calls, reads, gets and completions) and `calls.Sender`
(for the requests that do not go through the router: subscriptions, tasks) ask
`Clones.dedicated_key` which connection a request goes to, and `Clones.dedicated` for that
connection; a clone is a full `ServerConnection` with its `client_key` set, sharing the shared
connection's config, pool, fleet hooks and events, and with its own circuit breaker and
concurrency limiter (the router checks the clone's, never the shared connection's, for a request
the clone serves).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Final

import anyio

from hub.client_channel import CURRENT_CHANNEL, ClientChannel
from hub.errors import ServerUnavailable
from hub.push_era import CARRYING_METHODS

if TYPE_CHECKING:
    from hub.servers.connection import ServerConnection

__all__ = ["LEGACY_ERA_KEY", "Clones"]

# One logger for the whole package: operators and tests filter on "hub.servers".
logger = logging.getLogger("hub.servers")

LEGACY_ERA_KEY: Final = "era:handshake"
"""The dedicated connection of a `protocol: both` server that serves handshake-era clients."""


class Clones:
    """The connections dedicated to clients of `connection`'s server (`connection.clones`)."""

    def __init__(self, connection: ServerConnection) -> None:
        self.connection = connection
        self._clones: dict[str, ServerConnection] = {}
        self._clone_scopes: dict[str, anyio.CancelScope] = {}

    def __len__(self) -> int:
        return len(self._clones)

    def __iter__(self) -> Iterator[ServerConnection]:
        """The dedicated connections running now."""
        return iter(list(self._clones.values()))

    @property
    def pushes_over_handshake_era(self) -> bool:
        """Whether this server (`protocol: auto` or `both`) was found to push requests mid-call,
        so its requests that may push go over a handshake-era connection (`hub.push_era`)."""
        connection = self.connection
        pushing = connection.pushing
        auto = connection.config.protocol in ("auto", "both")
        return pushing is not None and auto and connection.server_id in pushing

    def dedicated_key(self, channel: ClientChannel, method: str) -> str | None:
        """The dedicated connection a client's request goes to (None: this one): the client's
        own under `isolation: per_client`; the handshake-era one for a handshake-era client
        under `protocol: both`, and for a server found to push (`hub.push_era`) also for a
        modern-era client's requests that may push (its other requests, tasks among them, stay
        on the modern-era connection where they began)."""
        config = self.connection.config
        if config.isolation == "per_client":
            return channel.client_key
        if config.protocol == "both" and not channel.modern:
            return LEGACY_ERA_KEY
        if self.pushes_over_handshake_era and (not channel.modern or method in CARRYING_METHODS):
            return LEGACY_ERA_KEY
        return None

    async def dedicated(self, client_key: str) -> ServerConnection:
        """This server's connection dedicated to `client_key`, started on first use and
        supervised by the fleet until `release(client_key)`.

        :raises ServerUnavailable: it could not be started (the reason names the failure).
        """
        connection = self.connection
        dedicated = self._clones.get(client_key)
        if (
            dedicated is not None
            and client_key != LEGACY_ERA_KEY
            and self.pushes_over_handshake_era
            and dedicated._is_modern()
            and not dedicated.in_flight
        ):
            self.release(client_key)  # this server pushes: reopened in the handshake era below
            dedicated = None
        if dedicated is None:
            if connection.spawn is None:
                reason = "per-client connections need a running fleet"
                raise ServerUnavailable(connection.server_id, reason, delivered=False)
            dedicated = type(connection)(  # a ServerConnection of its own
                connection.server_id,
                connection.config,
                connection.pool,
                on_resource_updated=connection.on_resource_updated,
                on_task_status=connection.on_task_status,
                client_key=client_key,
                events=connection.events,
                federation=connection.federation,
                start_slots=connection.start_slots,
                pushing=connection.pushing,
            )
            scope = anyio.CancelScope()
            self._clones[client_key] = dedicated
            self._clone_scopes[client_key] = scope
            connection.changes.notify()
            clone = dedicated

            async def supervise() -> None:
                # This task is started from a client's request: its copy of the context must not
                # name that client's channel, or every later server request would go to it.
                CURRENT_CHANNEL.set(None)
                try:
                    with scope:
                        await clone.run()
                finally:
                    if self._clones.get(client_key) is clone:
                        del self._clones[client_key]
                        self._clone_scopes.pop(client_key, None)
                        connection.changes.notify()

            connection.spawn(supervise, f"server {connection.server_id} for {client_key}")
            logger.info("server %s: starting a dedicated connection for %s", connection.server_id, client_key)
        channel = CURRENT_CHANNEL.get()
        if channel is not None:
            dedicated.inbox.starting_for.append(channel)
        try:
            await dedicated.wait_first_attempt()
        finally:
            if channel is not None:
                dedicated.inbox.starting_for.remove(channel)
        return dedicated

    def release(self, client_key: str) -> None:
        """Stop the connection dedicated to `client_key` (its client session ended), if any."""
        scope = self._clone_scopes.pop(client_key, None)
        if scope is not None:
            self._clones.pop(client_key, None)
            self.connection.changes.notify()
            scope.cancel()
            logger.info("server %s: closed the dedicated connection of %s", self.connection.server_id, client_key)
