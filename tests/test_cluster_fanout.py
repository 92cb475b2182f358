"""Resource-update fan-out between replicas sharing a real Redis (`hub.cluster.fanout`): a client
subscribed through hub B gets, once, the `resources/updated` that hub A's server process reports,
in both eras (handshake-era `resources/subscribe` on the GET stream, modern-era
`subscriptions/listen` with `resourceSubscriptions`)."""

from __future__ import annotations

import warnings

import anyio
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPDeprecationWarning

from hub.signals import Changes
from tests.clients import mcp_client
from tests.cluster_fixtures import RedisServer, replicas
from tests.conftest import RunningHub, fixture_entry

pytestmark = pytest.mark.anyio

URI = "fx+fixture://info"


def _subscribed_at_server(hub: RunningHub) -> bool:
    return hub.hub.endpoint.subscriptions.subscribed_at_server("fx", "fixture://info")


async def _wait_subscribed_at_server(hub: RunningHub, subscribed: bool = True) -> None:
    """Wait (bound it) until hub's own subscription to the fixture's resource is `subscribed`."""
    await hub.hub.endpoint.subscriptions.changes.wait_for(lambda: _subscribed_at_server(hub) == subscribed)


async def test_an_update_reported_behind_hub_a_reaches_a_handshake_era_subscriber_on_hub_b_once(
    redis_server: RedisServer,
) -> None:
    updates: list[str] = []
    arrived = Changes()  # notified at each update the subscriber hears

    async def on_message(message: object) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            updates.append(str(message.params.uri))
            arrived.notify()

    servers = {"fx": fixture_entry("fx", protocol="legacy")}
    async with replicas(2, servers, redis_server.url) as (a, b):
        with anyio.fail_after(30), warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            async with (
                mcp_client(b.url, mode="legacy", message_handler=on_message) as subscriber,
                mcp_client(a.url, mode="legacy") as toucher,
            ):
                await subscriber.subscribe_resource(URI)
                # Hub A subscribes its own server process for hub B's subscriber.
                await _wait_subscribed_at_server(a)
                await toucher.call_tool("fx__touch", {})  # reported by hub A's process only
                await arrived.wait_for(lambda: len(updates) >= 1)
                await subscriber.call_tool("fx__touch", {})  # reported by hub B's own process
                await arrived.wait_for(lambda: len(updates) >= 2)
                assert updates == [URI, URI]  # one delivery each: no echo, no duplicate
                fanout_b = b.hub.endpoint.fanout
                assert fanout_b is not None and fanout_b.delivered == 1
                await subscriber.unsubscribe_resource(URI)
                await _wait_subscribed_at_server(a, subscribed=False)  # the interest is withdrawn everywhere


@pytest.mark.parametrize("server_era", ["legacy", "modern"])
async def test_an_update_reported_behind_hub_a_reaches_a_modern_era_listener_on_hub_b(
    server_era: str, redis_server: RedisServer
) -> None:
    servers = {"fx": fixture_entry("fx", protocol=server_era)}
    async with replicas(2, servers, redis_server.url) as (a, b):
        with anyio.fail_after(30):
            async with mcp_client(b.url) as listener, mcp_client(a.url) as toucher:
                async with listener.listen(resource_subscriptions=[URI]) as stream:
                    await _wait_subscribed_at_server(a)
                    # A modern-era server is subscribed by reopening the hub's own listen stream in
                    # the background: touch until an update comes through (bounded in count).
                    event: object = None
                    for _ in range(40):
                        await toucher.call_tool("fx__touch", {})
                        with anyio.move_on_after(0.25):
                            event = await stream.__anext__()
                        if event is not None:
                            break
    assert getattr(event, "uri", None) == URI
