"""Rate-limit windows counted in Redis, so that N requests spread over the replicas get the
limit of one (`hub.endpoint.rate_limits` uses this when `cluster.redis_url` is set).

The `limits` library's moving-window strategy over its Redis storage, sharing the
`RedisStore`'s connection pool (its timeouts) with no retries inline: a failed or slow call is
reported to the store (which then fails fast until it reconnects) and the caller counts in its
own memory meanwhile.
"""

from __future__ import annotations

import time
from typing import Any, Final, cast

import anyio
from limits import RateLimitItem
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from hub.cluster.redis_store import KEY_PREFIX, REDIS_ERRORS, RedisStore

__all__ = ["SharedWindows", "retry_after"]

_MIN_WAIT_SECONDS: Final = 0.001


def retry_after(stats: tuple[float, int]) -> float:
    """The seconds until a full window has room again, from the `limits` library's window
    stats `(reset time (epoch s), remaining)`; at least 1 ms."""
    return max(stats[0] - time.time(), _MIN_WAIT_SECONDS)


class SharedWindows:
    """Moving windows in Redis through `store`'s pool.

    :param store: the replicas' Redis store (`cluster.redis_url`).
    """

    def __init__(self, store: RedisStore) -> None:
        self._store = store
        storage = RedisStorage(
            "async+" + store.url,
            implementation="redispy",
            key_prefix=KEY_PREFIX + "ratelimit",
            **cast(
                dict[str, Any],
                {"connection_pool": store.client.connection_pool, "retry": Retry(NoBackoff(), 0)},
            ),
        )
        self._limiter = MovingWindowRateLimiter(storage)

    @property
    def available(self) -> bool:
        """Whether Redis answers now (False: count locally without trying)."""
        return self._store.available

    async def hit(self, item: RateLimitItem, *identifiers: str) -> float | None:
        """Count one hit of `item` for `identifiers` across the replicas.

        :returns: 0.0 when allowed, else the seconds until it would be; None when Redis failed
            or took longer than `cluster.redis_timeout_seconds` (reported to the store; the
            caller counts locally).
        """
        try:
            with anyio.fail_after(self._store.timeout_seconds):
                if await self._limiter.hit(item, *identifiers):
                    return 0.0
                return retry_after(await self._limiter.get_window_stats(item, *identifiers))
        except REDIS_ERRORS as exc:
            self._store.report_failure("ratelimit", exc)
            return None
