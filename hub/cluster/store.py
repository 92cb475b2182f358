"""The state replicas share: one small interface (`SharedStore`), kept in memory by a hub that
runs alone (`MemoryStore`) and in Redis by replicas that configure `cluster.redis_url`
(`hub.cluster.redis_store.RedisStore`).

What it offers, and only that:

- key-value with a TTL: `get`, `set`, `set_if_absent` (atomic: the first writer wins, as
  Redis `SET NX PX`), `delete`; keys and values are `bytes`/`str`, TTLs in seconds;
- publish/subscribe on named channels: `publish(channel, message)` and `subscribe(channel)`,
  an async iterator of messages that survives Redis restarts (it yields `RESUBSCRIBED` each time
  the channel is (re)subscribed, so a user can resync what it may have missed).

Who uses it: rate limits across replicas (`hub.endpoint.rate_limits`), resource-update fan-out
(`hub.cluster.fanout`), pins (`hub.cluster.pin_store`), handshake-era session state (revocations
by DELETE, log levels and subscriptions: keys with a TTL of the session's remaining lifetime,
`hub.cluster.session_state`) and routing a client's answer to the replica waiting for it (a
channel per replica, `hub.cluster.answers`). Breakers and health stay per replica.

Never on the request path for longer than `timeout_seconds`: a Redis call that fails or takes
longer raises `SharedStateUnavailable`, marks the store unavailable (logged once, in
`/readyz` as `shared_state: unavailable` and in `mcphub_shared_state_up`), and while it is
unavailable every call fails at once without touching the network; a background task
reconnects with backoff and the store recovers by itself. Users fall back to local state.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from hub.config.cluster import ClusterConfig
from hub.errors import HubError

__all__ = [
    "RESUBSCRIBED",
    "ChannelItem",
    "LocalChannels",
    "MemoryStore",
    "Resubscribed",
    "SharedStateUnavailable",
    "SharedStore",
    "StoreHealth",
    "listening",
    "store_for",
]

CHANNEL_BUFFER: Final = 1024
"""Messages kept per local subscriber of a channel before newer ones are dropped (a subscriber
that falls this far behind misses messages, as a Redis pub/sub client would)."""

_SWEEP_EVERY: Final = 1024
"""`MemoryStore` sweeps expired keys after this many writes."""


class SharedStateUnavailable(HubError):
    """The shared store cannot answer now (Redis down, slow or refusing); the caller falls back
    to local state. `reason` says why, without credentials."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"shared state unavailable: {reason}")


class Resubscribed:
    """The marker a channel subscription yields each time it is (re)subscribed (see `RESUBSCRIBED`)."""

    _instance: Resubscribed | None = None

    def __new__(cls) -> Resubscribed:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "RESUBSCRIBED"


RESUBSCRIBED: Final = Resubscribed()
"""Yielded by a subscription once the channel is subscribed, and again after each reconnection:
messages published in between were missed, so resync (e.g. ask the peers to announce again)."""

ChannelItem = bytes | Resubscribed
"""What a subscription yields: a message, or `RESUBSCRIBED`."""


@dataclass(frozen=True, slots=True)
class StoreHealth:
    """Where shared state stands: `local` (no Redis configured: nothing is shared), `ok`, or
    `unavailable` with the `reason` (the hub serves with local state meanwhile)."""

    status: Literal["local", "ok", "unavailable"]
    reason: str | None = None

    @property
    def up(self) -> bool:
        """Whether the store answers (`local` or `ok`)."""
        return self.status != "unavailable"


class SharedStore(Protocol):
    """State shared by the replicas of one hub (see the module docstring).

    Every method may raise `SharedStateUnavailable` (only the Redis store does); none waits
    longer than the store's timeout.
    """

    @property
    def replica_id(self) -> str:
        """This process's id among the replicas (random per process), for messages it publishes."""
        ...

    @property
    def shared(self) -> bool:
        """Whether other replicas see this state (a Redis is configured)."""
        ...

    def health(self) -> StoreHealth:
        """Where the store stands now (no I/O)."""
        ...

    async def get(self, key: str) -> bytes | None:
        """The value of `key`, or None when absent or expired."""
        ...

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        """Set `key` to `value` for `ttl_seconds` (> 0; millisecond resolution)."""
        ...

    async def set_if_absent(self, key: str, value: bytes, ttl_seconds: float) -> bool:
        """Set `key` only if it is absent (atomically); True when this call set it."""
        ...

    async def delete(self, key: str) -> None:
        """Remove `key` (absent: nothing happens)."""
        ...

    async def publish(self, channel: str, message: bytes) -> None:
        """Send `message` to every subscriber of `channel` on every replica, this one included
        (at most once; lost while Redis is down, as Redis pub/sub is)."""
        ...

    def subscribe(self, channel: str) -> contextlib.AbstractAsyncContextManager[AsyncIterator[ChannelItem]]:
        """`async with store.subscribe(channel) as items: async for item in items:` messages
        of `channel` (`bytes`) and `RESUBSCRIBED` markers, until the block exits; Redis
        restarts do not end it (see `RESUBSCRIBED`)."""
        ...

    def running(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Run the store's background work (connecting, reconnecting, reading channels) while
        the block runs; the hub enters it in its lifespan."""
        ...


class LocalChannels:
    """This process's subscribers of named channels: bounded memory streams, newest dropped when full."""

    def __init__(self) -> None:
        self.subscribers: dict[str, set[MemoryObjectSendStream[ChannelItem]]] = {}
        self.dropped = 0

    def deliver(self, channel: str, item: ChannelItem) -> None:
        for stream in list(self.subscribers.get(channel, ())):
            try:
                stream.send_nowait(item)
            except anyio.WouldBlock:
                self.dropped += 1
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self.subscribers.get(channel, set()).discard(stream)

    @contextlib.asynccontextmanager
    async def subscribed(
        self,
        channel: str,
        *,
        initial: ChannelItem | None = None,
        on_first: Callable[[], None] | None = None,
        on_last: Callable[[], None] | None = None,
    ) -> AsyncIterator[AsyncIterator[ChannelItem]]:
        send, receive = anyio.create_memory_object_stream[ChannelItem](CHANNEL_BUFFER)
        if initial is not None:
            send.send_nowait(initial)
        streams = self.subscribers.setdefault(channel, set())
        first = not streams
        streams.add(send)
        if first and on_first is not None:
            on_first()
        try:
            async with receive:
                yield receive
        finally:
            send.close()
            streams.discard(send)
            if not streams:
                self.subscribers.pop(channel, None)
                if on_last is not None:
                    on_last()


class MemoryStore:
    """Shared state of a hub that runs alone: a dict with TTLs and in-process channels
    (`shared` is False: users keep their local behaviour and need not publish at all)."""

    def __init__(self, replica_id: str = "local") -> None:
        self._replica_id = replica_id
        self._values: dict[str, tuple[bytes, float]] = {}
        self._writes = 0
        self._channels = LocalChannels()

    @property
    def replica_id(self) -> str:
        return self._replica_id

    @property
    def shared(self) -> bool:
        return False

    def health(self) -> StoreHealth:
        return StoreHealth("local")

    def _live(self, key: str) -> bytes | None:
        found = self._values.get(key)
        if found is None:
            return None
        if found[1] <= time.monotonic():
            del self._values[key]
            return None
        return found[0]

    def _write(self, key: str, value: bytes, ttl_seconds: float) -> None:
        self._values[key] = (value, time.monotonic() + ttl_seconds)
        self._writes += 1
        if self._writes % _SWEEP_EVERY == 0:
            now = time.monotonic()
            for stale in [k for k, (_, deadline) in self._values.items() if deadline <= now]:
                del self._values[stale]

    async def get(self, key: str) -> bytes | None:
        return self._live(key)

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        self._write(key, value, ttl_seconds)

    async def set_if_absent(self, key: str, value: bytes, ttl_seconds: float) -> bool:
        if self._live(key) is not None:
            return False
        self._write(key, value, ttl_seconds)
        return True

    async def delete(self, key: str) -> None:
        self._values.pop(key, None)

    async def publish(self, channel: str, message: bytes) -> None:
        self._channels.deliver(channel, message)

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[ChannelItem]]:
        async with self._channels.subscribed(channel, initial=RESUBSCRIBED) as items:
            yield items

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        yield


def store_for(cluster: ClusterConfig | None, *, on_error: Callable[[str], None] | None = None) -> SharedStore:
    """The shared store `cluster` asks for: Redis at `cluster.redis_url` (a `RedisStore`), else
    a `MemoryStore`. redis-py is imported only then (it loads OpenTelemetry's SDK when that is
    installed, which a hub running alone should not pay for)."""
    if cluster is None or cluster.redis_url is None:
        return MemoryStore()
    from hub.cluster.redis_store import RedisStore

    return RedisStore(cluster.redis_url, timeout_seconds=cluster.redis_timeout_seconds, on_error=on_error)


@contextlib.asynccontextmanager
async def listening(listen: Callable[[], Coroutine[Any, Any, None]], *, enabled: bool = True) -> AsyncIterator[None]:
    """Run `listen` (a loop over one of the store's channels) in the background while the block
    runs, cancelled when it ends; nothing when not `enabled` (a store shared by no replica).
    Not waited for: with Redis down at start the subscription is made once Redis is back."""
    if not enabled:
        yield
        return
    async with anyio.create_task_group() as tg:
        tg.start_soon(listen)
        try:
            yield
        finally:
            tg.cancel_scope.cancel()
