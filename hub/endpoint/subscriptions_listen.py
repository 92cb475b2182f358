"""`subscriptions/listen` of a face (2026-07-28): the modern era's stream of list changes and
resource updates, with its `resourceSubscriptions` forwarded to the servers that own them.

The SDK's `ListenHandler` serves the stream from the face's subscription bus (`hub.endpoint.endpoint`
publishes `list_changed` there; `hub.endpoint.found_tools.TargetedBus` can reach the streams of one client).
`FaceListenHandler` adds the hub's part: each subscribed URI the caller may see is subscribed at
its server through the shared `hub.endpoint.server_requests.Subscriptions` for as long as the stream is open, and
the server's `resources/updated` reach the bus (`_BusTarget`). A URI the caller may not see, or
that no server owns, is skipped silently (the answer does not disclose it).
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

import mcp_types as types
from mcp import MCPError
from mcp.server import ServerRequestContext
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ResourceUpdated

from hub.endpoint.callers import caller_principal, client_key
from hub.endpoint.face_services import FaceServices
from hub.endpoint.faces import Face
from hub.endpoint.found_tools import LISTENER_KEY
from hub.errors import HubError
from hub.policy import Access

__all__ = ["FaceListenHandler"]

# The request path's modules share the faces' logger: operators and tests filter on "hub.endpoint.faces".
logger = logging.getLogger("hub.endpoint.faces")


class _BusTarget:
    """Delivers `resources/updated` to a face's modern-era listeners (`subscriptions/listen`
    streams filter the bus events by the URIs each one asked for)."""

    def __init__(self, bus: InMemorySubscriptionBus) -> None:
        self._bus = bus

    async def send_resource_updated(self, uri: str) -> None:
        await self._bus.publish(ResourceUpdated(uri=uri))


class FaceListenHandler(ListenHandler):
    """`subscriptions/listen` (2026-07-28) whose `resourceSubscriptions` are forwarded to the
    owning servers for as long as the stream is open (through the shared `Subscriptions`)."""

    def __init__(self, bus: InMemorySubscriptionBus, face: Face, services: FaceServices, access: Access) -> None:
        super().__init__(bus)
        self._face = face
        self._services = services
        self._access = access
        self._target = _BusTarget(bus)

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], params: types.SubscriptionsListenRequestParams
    ) -> types.SubscriptionsListenResult:
        # The stream's bus listener is registered under its client (`hub.endpoint.found_tools.TargetedBus`).
        token = LISTENER_KEY.set(client_key(ctx))
        try:
            return await self._listen(ctx, params)
        finally:
            LISTENER_KEY.reset(token)

    async def _listen(
        self, ctx: ServerRequestContext[Any, Any], params: types.SubscriptionsListenRequestParams
    ) -> types.SubscriptionsListenResult:
        uris = params.notifications.resource_subscriptions or []
        if not uris:
            return await super().__call__(ctx, params)
        subscriptions = self._services.subscriptions
        key = f"listen:{secrets.token_hex(8)}"
        try:
            principal = caller_principal(ctx)
            for uri in uris:
                owner = self._face.resolve_uri(uri)
                if owner is None or not self._access.visible(principal, self._face.route_key("resources", uri)):
                    continue
                try:
                    await subscriptions.subscribe(key, self._target, uri, *owner)
                except (HubError, MCPError) as exc:
                    logger.info("listen: %s not subscribed at %s: %s", uri, owner[0], exc)
            return await super().__call__(ctx, params)
        finally:
            subscriptions.forget(key)
