"""What a handshake-era session keeps beyond its sealed id: its end (DELETE) and its mutable
state (the `logging/setLevel` level), in the shared store so that every replica sees them.

A session id (`hub.cluster.session_ids`) cannot be changed once minted, so a DELETE cannot be
written into it: it is recorded as a *revocation*, the key `session:revoked:<session key>` with
a TTL of the session's remaining lifetime (after that the id no longer opens anyway). Every
replica checks it before serving a session (`revoked`), and the replica that takes the DELETE
also announces it on the `sessions` channel, so the replicas holding a copy of the session
drop it at once (its GET stream ends) rather than at their copy's next request.

The log level a client set with `logging/setLevel` is kept as `session:level:<session key>`
(same TTL), so a replica rebuilding the session applies it, and announced on the same channel
so that the replicas already holding a copy apply it as soon as the announcement arrives
(Redis pub/sub: a request sent to another replica in the same instant may still be relayed at
the previous level).

Resource subscriptions (`resources/subscribe`) are kept the same way, as the list
`session:subscriptions:<session key>` (at most `MAX_SHARED_SUBSCRIPTIONS` URIs) and announced,
so that the replica holding the session's GET stream delivers the updates of a subscription
taken through another replica (`hub.cluster.session_copies`).

Announcements are JSON objects: `{"revoked": <session key>}`, `{"level": <session key>,
"value": <level>, "from": <replica id>}`, `{"subscription": <session key>, "uri": <exposed
URI>, "present": <bool>, "from": <replica id>}`.

With a `MemoryStore` (a hub alone) the same keys live in memory: a DELETEd id is refused
until it would have expired. With Redis unavailable each replica serves with what it knows
locally: its own revocations (kept in memory as well) and the levels it set; the unavailability
is already reported by the store (`/readyz`, `mcphub_shared_state_up`).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Final

from cachetools import TTLCache

from hub.cluster.session_ids import SessionClaims, SessionIds, session_key
from hub.cluster.store import SharedStateUnavailable, SharedStore, listening

__all__ = ["CHANNEL", "MAX_SHARED_SUBSCRIPTIONS", "SessionState"]

logger = logging.getLogger(__name__)

CHANNEL: Final = "sessions"
"""The store channel on which a replica announces the session keys it revoked."""

_LOCAL_REVOCATIONS: Final = 100_000
"""Revoked session keys this replica remembers itself (for when the store is unavailable)."""

MAX_SHARED_SUBSCRIPTIONS: Final = 1000
"""Resource subscriptions of one session the store keeps; past it a subscription holds on the
replica that took it only (logged)."""

_LEVELS: Final = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")


def _revoked_key(key: str) -> str:
    return f"session:revoked:{key}"


def _level_key(key: str) -> str:
    return f"session:level:{key}"


def _subscriptions_key(key: str) -> str:
    return f"session:subscriptions:{key}"


class SessionState:
    """Revocations and log levels of handshake-era sessions (see the module docstring).

    :param store: the state replicas share (`hub.cluster.store`).
    :param ids: the hub's session ids (for the sessions' remaining lifetimes).
    """

    def __init__(self, store: SharedStore, ids: SessionIds) -> None:
        self._store = store
        self._ids = ids
        self._revoked: TTLCache[str, bool] = TTLCache(_LOCAL_REVOCATIONS, ids.lifetime_seconds)
        self._listeners: list[Callable[[str], None]] = []
        self._level_listeners: list[Callable[[str, str], None]] = []
        self._subscription_listeners: list[Callable[[str, str, bool], None]] = []

    def on_revoked(self, listener: Callable[[str], None]) -> None:
        """Call `listener(session_key)` when a session is revoked, here or (with Redis) on
        another replica."""
        self._listeners.append(listener)

    def on_level(self, listener: Callable[[str, str], None]) -> None:
        """Call `listener(session_key, level)` when another replica's client of a session sets
        its level (`logging/setLevel`; with Redis only)."""
        self._level_listeners.append(listener)

    def on_subscription(self, listener: Callable[[str, str, bool], None]) -> None:
        """Call `listener(session_key, exposed_uri, present)` when another replica's client of a
        session subscribes (`present`) or unsubscribes (with Redis only)."""
        self._subscription_listeners.append(listener)

    def _announce(self, key: str) -> None:
        for listener in list(self._listeners):
            listener(key)

    async def revoke(self, session_id: str, claims: SessionClaims) -> None:
        """End the session of `session_id` everywhere (a DELETE): recorded here at once, in the
        store for its remaining lifetime, and announced to the other replicas. A store that is
        unavailable is logged: the other replicas then still accept the id."""
        key = session_key(session_id)
        self._revoked[key] = True
        self._announce(key)
        ttl = self._ids.remaining_seconds(claims)
        try:
            await self._store.set(_revoked_key(key), b"1", ttl)
            if self._store.shared:
                await self._store.publish(CHANNEL, json.dumps({"revoked": key}).encode())
        except SharedStateUnavailable as exc:
            logger.warning("session %s ended on this replica only: %s", key, exc.reason)

    async def revoked(self, session_id: str) -> bool:
        """Whether `session_id` was DELETEd (here, or on a replica whose revocation the store
        holds); False when the store cannot answer and this replica knows of none."""
        key = session_key(session_id)
        if key in self._revoked:
            return True
        try:
            found = await self._store.get(_revoked_key(key)) is not None
        except SharedStateUnavailable:
            return False
        if found:
            self._revoked[key] = True
        return found

    async def set_log_level(self, session_id: str, level: str) -> None:
        """Keep the `logging/setLevel` level of a session for the replicas that rebuild it
        (nothing for an id that does not open: not a session this hub minted)."""
        claims = self._ids.open(session_id)
        if claims is None:
            return
        key = session_key(session_id)
        try:
            await self._store.set(_level_key(key), level.encode(), self._ids.remaining_seconds(claims))
            if self._store.shared:
                announcement = {"level": key, "value": level, "from": self._store.replica_id}
                await self._store.publish(CHANNEL, json.dumps(announcement).encode())
        except SharedStateUnavailable as exc:
            logger.info("log level of session %s kept on this replica only: %s", key, exc.reason)

    async def log_level(self, session_id: str) -> str | None:
        """The level a session set with `logging/setLevel` (on any replica), or None."""
        try:
            raw = await self._store.get(_level_key(session_key(session_id)))
        except SharedStateUnavailable:
            return None
        level = raw.decode(errors="replace") if raw is not None else None
        return level if level in _LEVELS else None

    async def set_subscribed(self, session_id: str, uri: str, present: bool) -> None:
        """Record that the client of `session_id` subscribed to the exposed `uri` (`present`)
        or unsubscribed, for the other replicas (with Redis only)."""
        claims = self._ids.open(session_id)
        if claims is None or not self._store.shared:
            return
        key = session_key(session_id)
        try:
            uris = set(await self._subscriptions(key))
            if present and uri not in uris and len(uris) >= MAX_SHARED_SUBSCRIPTIONS:
                logger.warning("subscription of session %s kept on this replica only: over the shared cap", key)
                return
            if present:
                uris.add(uri)
            else:
                uris.discard(uri)
            value = json.dumps(sorted(uris)).encode()
            await self._store.set(_subscriptions_key(key), value, self._ids.remaining_seconds(claims))
            announcement = {"subscription": key, "uri": uri, "present": present, "from": self._store.replica_id}
            await self._store.publish(CHANNEL, json.dumps(announcement).encode())
        except SharedStateUnavailable as exc:
            logger.info("subscription of session %s kept on this replica only: %s", key, exc.reason)

    async def subscriptions(self, session_id: str) -> list[str]:
        """The exposed URIs the client of `session_id` subscribed to (on any replica)."""
        if not self._store.shared:
            return []
        try:
            return await self._subscriptions(session_key(session_id))
        except SharedStateUnavailable:
            return []

    async def _subscriptions(self, key: str) -> list[str]:
        raw = await self._store.get(_subscriptions_key(key))
        if raw is None:
            return []
        try:
            uris = json.loads(raw)
        except ValueError:
            return []
        return [uri for uri in uris if isinstance(uri, str)] if isinstance(uris, list) else []

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Listen for the other replicas' revocations while the block runs (with Redis only)."""
        # Until it subscribes (Redis down at start), `revoked` asks the store (or knows only
        # this replica's revocations).
        async with listening(self._listen, enabled=self._store.shared):
            yield

    async def _listen(self) -> None:
        async with self._store.subscribe(CHANNEL) as items:
            async for item in items:
                if not isinstance(item, bytes):
                    continue  # RESUBSCRIBED: what was missed meanwhile is still in the store
                try:
                    message = json.loads(item)
                except ValueError:
                    logger.warning("dropped a malformed announcement on channel %r", CHANNEL)
                    continue
                if not isinstance(message, dict):
                    continue
                self._received(message)

    def _received(self, message: dict[str, object]) -> None:
        revoked = message.get("revoked")
        if isinstance(revoked, str):
            if revoked not in self._revoked:
                self._revoked[revoked] = True
                self._announce(revoked)
            return
        if message.get("from") == self._store.replica_id:
            return  # this replica applied it already
        key, level = message.get("level"), message.get("value")
        if isinstance(key, str) and isinstance(level, str) and level in _LEVELS:
            for level_listener in list(self._level_listeners):
                level_listener(key, level)
        key, uri, present = message.get("subscription"), message.get("uri"), message.get("present")
        if isinstance(key, str) and isinstance(uri, str) and isinstance(present, bool):
            for listener in list(self._subscription_listeners):
                listener(key, uri, present)
