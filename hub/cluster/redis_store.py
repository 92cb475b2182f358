"""`SharedStore` in Redis (`cluster.redis_url`), with the asyncio client of the `redis` package.

- Every call is bounded by `timeout_seconds` (the client's socket timeouts and an outer
  deadline) and never retried inline: the first failure marks the store unavailable and raises
  `SharedStateUnavailable`; while unavailable, calls fail at once without I/O, so a dead Redis
  costs the request path at most one timeout per outage.
- A background task (`running()`) holds one pub/sub connection, always subscribed to a
  liveness channel, pings every `PING_INTERVAL_SECONDS`, and on failure reconnects with
  exponential backoff and jitter (tenacity), then re-subscribes every channel that has local
  subscribers, each of which then gets `RESUBSCRIBED`.
- Transitions are logged once each (`shared state unavailable: <reason>` / `shared state
  back`), never per call; every failed call is counted through `on_error(operation)`.

Keys and channels are namespaced under `mcphub:`; give each hub deployment sharing one Redis
server a database of its own (`redis://host:6379/<n>`).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final, TypeVar, cast

import anyio
import anyio.abc
import redis.asyncio
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from tenacity import AsyncRetrying, retry_if_exception_type, wait_random_exponential

from hub.cluster.store import (
    RESUBSCRIBED,
    ChannelItem,
    LocalChannels,
    SharedStateUnavailable,
    StoreHealth,
)

__all__ = ["KEY_PREFIX", "PING_INTERVAL_SECONDS", "REDIS_ERRORS", "RedisStore", "describe"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

KEY_PREFIX: Final = "mcphub:"
"""The prefix of every key and channel the hub uses in Redis."""

PING_INTERVAL_SECONDS: Final = 5.0
"""How often the background task checks that Redis answers while nothing else is sent."""

REDIS_ERRORS: Final = (RedisError, OSError, TimeoutError)
"""What a Redis call raises when Redis is down, slow or refusing (TimeoutError: our deadline)."""

_LIVENESS_CHANNEL: Final = KEY_PREFIX + "alive"
_READ_SECONDS: Final = 1.0
_RECONNECT_INITIAL_SECONDS: Final = 0.05
_RECONNECT_MAX_SECONDS: Final = 2.0


def describe(exc: BaseException) -> str:
    """One line about a Redis failure (host and port at most; the URL's credentials never
    appear in the client's messages)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    name = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
    return f"{name}: {text}"[:200] if text else name


class RedisStore:
    """Shared state in Redis (see the module docstring and `hub.cluster.store.SharedStore`).

    :param url: `redis://` or `rediss://` URL (credentials and database number as Redis URLs allow).
    :param timeout_seconds: the bound on each call, connecting included (default 0.5 s).
    :param on_error: called with the operation's name for every failed call (metrics).
    :param replica_id: this process's id among the replicas (default: 12 random hex digits).
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_seconds: float = 0.5,
        on_error: Callable[[str], None] | None = None,
        replica_id: str | None = None,
    ) -> None:
        self.url = url
        self.timeout_seconds = timeout_seconds
        self.on_error = on_error
        self._replica_id = replica_id or secrets.token_hex(6)
        self.client: redis.asyncio.Redis = redis.asyncio.Redis.from_url(
            url,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            retry=Retry(NoBackoff(), 0),
        )
        """The asyncio client (its connection pool is shared with the rate limits' storage)."""
        self._up = False
        self._reason = "not connected yet"
        self._down = anyio.Event()
        self._channels = LocalChannels()
        self._pubsub: PubSub | None = None

    # ---- SharedStore ----

    @property
    def replica_id(self) -> str:
        return self._replica_id

    @property
    def shared(self) -> bool:
        return True

    @property
    def available(self) -> bool:
        """Whether calls go to Redis now (False: they fail at once)."""
        return self._up

    def health(self) -> StoreHealth:
        return StoreHealth("ok") if self._up else StoreHealth("unavailable", self._reason)

    async def get(self, key: str) -> bytes | None:
        value: object = await self._call("get", lambda: self.client.get(KEY_PREFIX + key))
        return value if isinstance(value, bytes) else None

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        await self._call("set", lambda: self.client.set(KEY_PREFIX + key, value, px=_millis(ttl_seconds)))

    async def set_if_absent(self, key: str, value: bytes, ttl_seconds: float) -> bool:
        done: object = await self._call(
            "set_if_absent", lambda: self.client.set(KEY_PREFIX + key, value, px=_millis(ttl_seconds), nx=True)
        )
        return bool(done)

    async def delete(self, key: str) -> None:
        await self._call("delete", lambda: self.client.delete(KEY_PREFIX + key))

    async def publish(self, channel: str, message: bytes) -> None:
        await self._call("publish", lambda: self.client.publish(KEY_PREFIX + channel, message))

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[ChannelItem]]:
        full = KEY_PREFIX + channel
        first = full not in self._channels.subscribers
        async with self._channels.subscribed(full) as items:
            if first and self._up and self._pubsub is not None:
                try:
                    with anyio.fail_after(self.timeout_seconds):
                        await self._pubsub.subscribe(full)  # confirmed by the reader: RESUBSCRIBED
                except REDIS_ERRORS as exc:
                    self.report_failure("subscribe", exc)
            yield items
        if full not in self._channels.subscribers and self._up and self._pubsub is not None:
            with contextlib.suppress(*REDIS_ERRORS), anyio.move_on_after(self.timeout_seconds):
                await self._pubsub.unsubscribe(full)

    # ---- failures ----

    def report_failure(self, operation: str, exc: BaseException) -> None:
        """Count a failed call (made here or by a user with the same Redis, such as the rate
        limits' storage) and mark the store unavailable; the background task reconnects."""
        if self.on_error is not None:
            self.on_error(operation)
        if self._up:
            self._up = False
            self._reason = describe(exc)
            logger.warning(
                "shared state unavailable (%s): serving with this replica's local state until Redis is back",
                self._reason,
            )
            self._down.set()

    async def _call(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        if not self._up:
            raise SharedStateUnavailable(self._reason)
        try:
            with anyio.fail_after(self.timeout_seconds):
                return await call()
        except REDIS_ERRORS as exc:
            self.report_failure(operation, exc)
            raise SharedStateUnavailable(self._reason) from exc

    # ---- the background task ----

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._supervise)
                try:
                    yield
                finally:
                    tg.cancel_scope.cancel()
        finally:
            self._up = False
            self._reason = "stopped"
            with anyio.CancelScope(shield=True), anyio.move_on_after(self.timeout_seconds):
                await self._close_pubsub()
                await self.client.aclose()

    async def _supervise(self) -> None:
        first = True
        while True:
            retrying = AsyncRetrying(
                sleep=anyio.sleep,
                wait=wait_random_exponential(multiplier=_RECONNECT_INITIAL_SECONDS, max=_RECONNECT_MAX_SECONDS),
                retry=retry_if_exception_type(REDIS_ERRORS),
                before_sleep=lambda state: self._note_first_failure(state.outcome),
            )
            async for attempt in retrying:
                with attempt:
                    await self._open()
            self._down = anyio.Event()
            self._up = True
            if first:
                logger.info("shared state: connected to Redis")
            else:
                logger.warning("shared state back: Redis answers again, replicas share state again")
            first = False
            self._reason = "not connected yet"
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._read, tg.cancel_scope)
                    tg.start_soon(self._ping, tg.cancel_scope)
                    await self._down.wait()
                    tg.cancel_scope.cancel()
            except REDIS_ERRORS as exc:  # pragma: no cover - the tasks report their own failures
                self.report_failure("read", exc)
            await self._close_pubsub()

    def _note_first_failure(self, outcome: Any) -> None:
        exc = outcome.exception() if outcome is not None else None
        if exc is None:
            return
        if self._reason == "not connected yet":
            self._reason = describe(exc)
            logger.warning(
                "shared state unavailable (%s): serving with this replica's local state until Redis is back",
                self._reason,
            )
        if self.on_error is not None:
            self.on_error("connect")

    async def _open(self) -> None:
        # Connections pooled before an outage are dead: drop them all, or each would fail once.
        await self.client.connection_pool.disconnect()
        with anyio.fail_after(self.timeout_seconds * 2):
            await self.client.ping()
            pubsub = self.client.pubsub()
            try:
                await pubsub.subscribe(_LIVENESS_CHANNEL, *self._channels.subscribers)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await cast(Any, pubsub).aclose()
                raise
        self._pubsub = pubsub

    async def _close_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(*REDIS_ERRORS):
                await cast(Any, pubsub).aclose()

    async def _read(self, scope: anyio.CancelScope) -> None:
        pubsub = self._pubsub
        assert pubsub is not None
        try:
            while True:
                message = await pubsub.get_message(timeout=_READ_SECONDS)
                if message is None:
                    continue
                channel = message.get("channel")
                name = channel.decode() if isinstance(channel, bytes) else str(channel)
                if message.get("type") == "subscribe":
                    self._channels.deliver(name, RESUBSCRIBED)
                elif message.get("type") == "message" and isinstance(message.get("data"), bytes):
                    self._channels.deliver(name, message["data"])
        except REDIS_ERRORS as exc:
            self.report_failure("read", exc)
            scope.cancel()

    async def _ping(self, scope: anyio.CancelScope) -> None:
        while True:
            await anyio.sleep(PING_INTERVAL_SECONDS)
            try:
                with anyio.fail_after(self.timeout_seconds):
                    await self.client.ping()
            except REDIS_ERRORS as exc:
                self.report_failure("ping", exc)
                scope.cancel()
                return


def _millis(seconds: float) -> int:
    return max(1, round(seconds * 1000))
