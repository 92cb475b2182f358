"""Resource-update fan-out between replicas: a `notifications/resources/updated` that one
replica's server connection receives reaches the client sessions subscribed through another
replica (their GET stream or `subscriptions/listen` stream is held there).

Which updates need it depends on where the server runs:

- A **stdio server** runs as one process per replica: an update its process on replica A
  reports (e.g. after a tool call routed to A) is news to the subscribers on replica B, whose
  own process knows nothing of it. So (1) while any replica has subscribers for a resource,
  every replica keeps its own process subscribed to it (a replica announces its interest on
  the channel when it gains its first subscriber or loses its last, re-announces all of it
  every `HEARTBEAT_SECONDS`, and an announcement not refreshed within `INTEREST_TTL_SECONDS`
  lapses, so a replica that dies releases its interest by itself); and (2) every update
  from such a process is published on the channel and delivered by each other replica to its
  own subscribers.
- A **remote server** (Streamable HTTP, SSE) is one server all replicas reach: each replica's
  connection subscribes for its own subscribers and the server notifies each subscribed
  connection itself, so nothing is published (that would deliver every update twice).

Each published update is delivered once per subscriber, by the replicas other than its sender
(a replica never delivers or re-publishes its own message: no echo). With Redis unavailable,
each replica delivers what its own connections report (as a hub alone does); when Redis is
back the replicas announce their interest again (`RESUBSCRIBED`: hello, then the full set).
Without Redis this module is not used at all.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.abc

from hub.cluster.store import SharedStateUnavailable, SharedStore

if TYPE_CHECKING:  # the endpoint attaches its subscriptions; at run time this module never imports it
    from hub.endpoint.server_requests import Subscriptions

__all__ = ["CHANNEL", "HEARTBEAT_SECONDS", "INTEREST_TTL_SECONDS", "ResourceFanout"]

logger = logging.getLogger(__name__)

CHANNEL: Final = "resources"
"""The store channel of interest announcements and updates."""

HEARTBEAT_SECONDS: Final = 10.0
"""How often a replica re-announces every resource it has subscribers for."""

INTEREST_TTL_SECONDS: Final = 3 * HEARTBEAT_SECONDS
"""How long an announcement of interest holds without being refreshed."""

_Key = tuple[str, str]


class ResourceFanout:
    """The other replicas, for `hub.endpoint.server_requests.Subscriptions` (its `SubscriptionPeers`).

    :param store: the shared store (a Redis one; see the module docstring).
    :param per_replica: whether a server_id runs as a process of its own on each replica (stdio).
    """

    def __init__(self, store: SharedStore, per_replica: Callable[[str], bool]) -> None:
        self._store = store
        self._per_replica = per_replica
        self._subscriptions: Subscriptions | None = None
        self._local: set[_Key] = set()
        self._remote: dict[_Key, dict[str, float]] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self.delivered = 0
        """Updates from other replicas delivered here (for tests and diagnostics)."""

    def attach(self, subscriptions: Subscriptions) -> None:
        """Serve `subscriptions` (sets itself as its peers)."""
        self._subscriptions = subscriptions
        subscriptions.peers = self

    def has_remote_interest(self, server_id: str, original: str) -> bool:
        """Whether another replica announced subscribers for `(server_id, original)`."""
        return bool(self._remote.get((server_id, original)))

    # ---- SubscriptionPeers ----

    def interest(self, server_id: str, original: str, present: bool) -> None:
        if not self._per_replica(server_id):
            return
        key = (server_id, original)
        if present:
            self._local.add(key)
        else:
            self._local.discard(key)
        self._send_soon({"kind": "interest", "server_id": server_id, "uri": original, "on": present})

    async def updated(self, server_id: str, original: str) -> None:
        if self._per_replica(server_id):
            await self._send({"kind": "updated", "server_id": server_id, "uri": original})

    # ---- the channel ----

    def _send_soon(self, message: dict[str, Any]) -> None:
        if self._tg is not None:
            self._tg.start_soon(self._send, message)

    async def _send(self, message: dict[str, Any]) -> None:
        payload = json.dumps({"v": 1, "from": self._store.replica_id, **message}).encode()
        try:
            await self._store.publish(CHANNEL, payload)
        except SharedStateUnavailable:
            pass  # logged once by the store; interest is announced again when Redis is back

    async def _announce_all(self) -> None:
        await self._send({"kind": "interests", "items": sorted([sid, uri] for sid, uri in self._local)})

    async def run(self) -> None:
        """Announce, listen and expire, until cancelled (the hub runs it in its lifespan)."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(self._heartbeat)
            try:
                async with self._store.subscribe(CHANNEL) as items:
                    async for item in items:
                        if not isinstance(item, bytes):  # (re)subscribed: ask everyone to announce
                            await self._send({"kind": "hello"})
                            await self._announce_all()
                            continue
                        await self._receive(item)
            finally:
                self._tg = None
                tg.cancel_scope.cancel()

    async def _receive(self, payload: bytes) -> None:
        try:
            message = json.loads(payload)
            sender = message["from"]
            kind = message["kind"]
        except (ValueError, KeyError, TypeError):
            logger.debug("ignored a malformed message on the %s channel", CHANNEL)
            return
        if sender == self._store.replica_id or not isinstance(sender, str):
            return
        if kind == "hello":
            await self._announce_all()
        elif kind == "updated":
            server_id, uri = message.get("server_id"), message.get("uri")
            if isinstance(server_id, str) and isinstance(uri, str) and self._subscriptions is not None:
                self.delivered += 1
                await self._subscriptions.deliver(server_id, uri)
        elif kind == "interest":
            server_id, uri = message.get("server_id"), message.get("uri")
            if isinstance(server_id, str) and isinstance(uri, str):
                self._note(sender, (server_id, uri), bool(message.get("on")))
        elif kind == "interests":
            items = message.get("items")
            if isinstance(items, list):
                announced = {(i[0], i[1]) for i in items if isinstance(i, list) and len(i) == 2}
                for key in [k for k, senders in self._remote.items() if sender in senders and k not in announced]:
                    self._note(sender, key, False)
                for key in announced:
                    if all(isinstance(part, str) for part in key):
                        self._note(sender, key, True)

    def _note(self, sender: str, key: _Key, present: bool) -> None:
        if not self._per_replica(key[0]):
            return
        senders = self._remote.get(key)
        had = bool(senders)
        if present:
            self._remote.setdefault(key, {})[sender] = time.monotonic() + INTEREST_TTL_SECONDS
        elif senders is not None:
            senders.pop(sender, None)
            if not senders:
                del self._remote[key]
        now_has = bool(self._remote.get(key))
        if now_has != had or (present and self._subscriptions is not None):
            self._tell(key, now_has)

    def _tell(self, key: _Key, present: bool) -> None:
        if self._subscriptions is None or self._tg is None:
            return
        subscriptions = self._subscriptions
        if present and subscriptions.subscribed_at_server(*key):
            return
        self._tg.start_soon(subscriptions.remote_interest, key[0], key[1], present)

    async def _heartbeat(self) -> None:
        while True:
            await anyio.sleep(HEARTBEAT_SECONDS)
            if self._local:
                await self._announce_all()
            now = time.monotonic()
            for key, senders in list(self._remote.items()):
                for sender in [s for s, deadline in senders.items() if deadline <= now]:
                    logger.info("replica %s did not refresh its interest in %s %s; it lapses", sender, *key)
                    self._note(sender, key, False)
