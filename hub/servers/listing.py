"""Listing: what a server offers (tools, resources, resource templates, prompts) and when to
ask again.

Once connected, the supervisor has `Lister.list_everything` walk every list the server declared
(cursor by cursor, bounded: MAX_LIST_PAGES, a repeated cursor is a protocol error), filter its
tools by the server's `tools:` globs and cap them at `max_tools`, and `publish` the result as a
`ServerSnapshot` to the catalog. It lists again when the server announces a change
(`notifications/*/list_changed`, debounced: `relist_soon`; for a modern-era server, events of its
`subscriptions/listen` stream: `listen_for_changes`) or when its lists expire (`ttlMs`,
2026-07-28: `relist_at`, `hub.list_freshness`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

import anyio
import httpx2
from mcp import Client, MCPError
from mcp_types import METHOD_NOT_FOUND
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from hub.errors import ServerProtocolError, describe_failure
from hub.federation import Advertisement
from hub.list_freshness import (
    RELIST_CEILING_SECONDS,
    RELIST_FLOOR_SECONDS,
    announced_lists,
    page_ttl_ms,
    relist_interval_seconds,
)
from hub.servers.failures import Breakage, classify
from hub.servers.state import ServerSnapshot

if TYPE_CHECKING:
    from hub.servers.connection import ServerConnection

__all__ = ["MAX_LIST_PAGES", "Lister"]

# One logger for the whole package: operators and tests filter on "hub.servers".
logger = logging.getLogger("hub.servers")

MAX_LIST_PAGES: Final = 1000
"""A server whose pagination does not end after this many pages is treated as broken."""
_RELIST_DEBOUNCE_SECONDS: Final = 0.1
"""list_changed notifications arriving within this long of the first one cause one re-list."""


class Lister:
    """Lists `connection`'s server and publishes its snapshot (`connection.lister`)."""

    def __init__(self, connection: ServerConnection) -> None:
        self.connection = connection
        self.refresh = anyio.Event()
        """Set when the server announced a change: the supervisor re-lists."""
        self.relist_methods: set[str] | None = None
        """The list_changed methods of the burst whose debounce window is open, or None."""
        self._list_meta: dict[str, Any] | None = None
        self._list_ttls: dict[str, int] = {}
        """The shortest `ttlMs` each list carried at the last listing (modern era), by list."""
        self._listed_at = 0.0
        """`anyio.current_time()` of the last listing."""

    async def publish(self, snapshot: ServerSnapshot | None) -> None:
        """Make `snapshot` the connection's, and hand it to `on_snapshot` (None: the server
        stops contributing), shielded so the catalog never misses a withdrawal."""
        connection = self.connection
        connection.snapshot = snapshot or ServerSnapshot()
        if connection.on_snapshot is not None:
            with anyio.CancelScope(shield=True):
                await connection.on_snapshot(connection.server_id, snapshot)

    async def relist_soon(self, method: str) -> None:
        """Ask the supervisor for one re-list per burst of list_changed notifications: the first
        opens a window of `_RELIST_DEBOUNCE_SECONDS` that later ones join (each notification runs
        in a task of its own), then one line is logged and the refresh is set, unless a re-list
        is already pending (SECURITY.md case 38: a list_changed storm is debounced)."""
        pending = self.relist_methods
        if pending is not None:
            pending.add(method)
            return
        self.relist_methods = pending = {method}
        try:
            await anyio.sleep(_RELIST_DEBOUNCE_SECONDS)
        finally:
            self.relist_methods = None
        if not self.refresh.is_set():
            logger.info("server %s: %s, re-listing", self.connection.server_id, ", ".join(sorted(pending)))
            self.refresh.set()

    async def relist(self, client: Client, *, expired: bool) -> None:
        """List the server again and publish the listing. A re-list for expiry that fails (the
        server answers an error, breaks its pagination or does not answer in time) keeps the last
        listing and the connection, and is tried again after as long as it has been since the
        last good listing (so the wait doubles), within `RELIST_FLOOR_SECONDS` and
        `RELIST_CEILING_SECONDS`; a re-list the server asked for (list_changed) that fails ends
        the connection, as the first listing does."""
        connection = self.connection
        if not expired:
            await self.publish(await self.list_everything(client))
            return
        logger.debug("server %s: its lists expired (ttlMs), re-listing", connection.server_id)
        try:
            snapshot = await self.list_everything(client)
        except (TimeoutError, MCPError, ServerProtocolError, httpx2.TransportError) as exc:
            if classify(exc) is Breakage.CLOSED:
                raise  # the connection is gone: the supervisor reconnects
            now = anyio.current_time()
            connection.relist_at = now + min(max(now - self._listed_at, RELIST_FLOOR_SECONDS), RELIST_CEILING_SECONDS)
            logger.warning(
                "server %s: re-listing on expiry failed, keeping its last listing: %s",
                connection.server_id,
                describe_failure(exc),
            )
            return
        await self.publish(snapshot)

    async def list_everything(self, client: Client) -> ServerSnapshot:
        """Walk every list the server offers and schedule the next re-list by their `ttlMs`
        (`relist_at`; the catalog's connection only: a dedicated one publishes nothing).

        :raises TimeoutError: not done within the server's `timeout_seconds`.
        :raises ServerProtocolError: a pagination that repeats a cursor or does not end.
        :raises MCPError: the server's error answer to a list (other than method-not-found).
        """
        connection, config = self.connection, self.connection.config
        caps = client.server_capabilities
        self._list_meta = None
        self._list_ttls = {}
        with anyio.fail_after(config.timeout_seconds):
            tools = (
                [t for t in await self._walk(client.list_tools, "tools") if config.tools.allows(t.name)]
                if caps.tools
                else []
            )
            resources = await self._walk(client.list_resources, "resources") if caps.resources else []
            templates = await self._walk(client.list_resource_templates, "resource_templates") if caps.resources else []
            prompts = await self._walk(client.list_prompts, "prompts") if caps.prompts else []
        interval = None
        if connection.client_key is None and client.protocol_version in MODERN_PROTOCOL_VERSIONS:
            interval = relist_interval_seconds(self._list_ttls, announced_lists(caps))
        self._listed_at = anyio.current_time()
        connection.relist_at = None if interval is None else self._listed_at + interval
        if connection.federation is not None:  # a hub's list results carry its current advertisement
            advertised = Advertisement.found_in(self._list_meta, caps.experimental)
            await connection.federation.admit(connection, connection.server_id, advertised)
        if len(tools) > config.max_tools:
            logger.warning(
                "server %s offers %d tools, over its max_tools %d: dropped the last %d",
                connection.server_id,
                len(tools),
                config.max_tools,
                len(tools) - config.max_tools,
            )
            tools = tools[: config.max_tools]
        return ServerSnapshot(tuple(tools), tuple(resources), tuple(templates), tuple(prompts))

    async def _walk(self, list_page: Callable[..., Awaitable[Any]], attribute: str) -> list[Any]:
        server_id = self.connection.server_id
        items: list[Any] = []
        cursor: str | None = None
        seen_cursors: set[str] = set()
        for _ in range(MAX_LIST_PAGES):
            try:
                page = await list_page(cursor=cursor)
            except MCPError as exc:
                if exc.code == METHOD_NOT_FOUND:
                    return items
                raise
            items.extend(getattr(page, attribute))
            self._list_meta = page.meta or self._list_meta
            ttl_ms = page_ttl_ms(page)
            if ttl_ms is not None:
                self._list_ttls[attribute] = min(ttl_ms, self._list_ttls.get(attribute, ttl_ms))
            cursor = page.next_cursor
            if cursor is None:
                return items
            if cursor in seen_cursors:
                raise ServerProtocolError(server_id, f"{attribute} pagination repeats the cursor {cursor!r}")
            seen_cursors.add(cursor)
        raise ServerProtocolError(server_id, f"{attribute} pagination did not end after {MAX_LIST_PAGES} pages")

    async def listen_for_changes(self, client: Client) -> None:
        """Modern-era servers send list_changed and resources/updated only on a
        `subscriptions/listen` stream; its events also reach the inbox (SDK-NOTES 1.5), which
        refreshes or relays them. The stream is reopened whenever the set of subscribed
        resources changes (a listen filter is fixed when it opens)."""
        session_state = self.connection.session_state
        caps = client.server_capabilities
        tools = bool(caps.tools and caps.tools.list_changed)
        prompts = bool(caps.prompts and caps.prompts.list_changed)
        resources = bool(caps.resources and caps.resources.list_changed)
        subscribable = bool(caps.resources and caps.resources.subscribe)
        while True:
            changed = session_state.subscriptions_changed = anyio.Event()
            uris = sorted(session_state.subscriptions) if subscribable else []
            if tools or prompts or resources or uris:
                try:
                    await self._listen_once(client, tools, prompts, resources, uris, changed)
                except Exception as exc:  # the listen stream is best effort; the connection stays up
                    logger.info(
                        "server %s: subscriptions/listen ended: %s", self.connection.server_id, describe_failure(exc)
                    )
            await changed.wait()

    async def _listen_once(
        self, client: Client, tools: bool, prompts: bool, resources: bool, uris: list[str], changed: anyio.Event
    ) -> None:
        listen = client.listen(
            tools_list_changed=tools,
            prompts_list_changed=prompts,
            resources_list_changed=resources,
            resource_subscriptions=uris,
        )
        async with listen as subscription, anyio.create_task_group() as tg:

            async def stop_on_change() -> None:
                await changed.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(stop_on_change)
            async for _event in subscription:
                pass
            tg.cancel_scope.cancel()
