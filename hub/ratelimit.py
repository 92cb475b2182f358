"""Rate limits: token buckets per principal and per (principal, route), configured under
`rate_limits:` (MCP security best practices: "Rate limit tool invocations").

A request that finds its bucket empty is refused at once with the time until a token is back;
nothing ever waits in a queue. Buckets live in bounded LRU caches, so a flood of distinct
principals cannot grow memory without bound (an evicted bucket restarts full).
"""

from __future__ import annotations

import fnmatch
import time
from dataclasses import dataclass, field
from typing import Final, TypeVar

from cachetools import LRUCache

from hub.config import RateLimitsConfig, TokenBucketConfig

__all__ = ["RateLimiter", "TokenBucket"]

_K = TypeVar("_K")

MAX_TRACKED_BUCKETS: Final = 100_000
"""Most buckets kept per kind (principal, principal x route); least recently used go first."""


@dataclass(slots=True)
class TokenBucket:
    """`burst` tokens, refilled continuously at `rate` tokens per second."""

    rate: float
    burst: int
    tokens: float = field(init=False)
    stamp: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = float(self.burst)

    def take(self, now: float | None = None) -> float:
        """Take one token. :returns: 0.0 when taken, else the seconds until one is available."""
        now = time.monotonic() if now is None else now
        self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimiter:
    """The hub's rate limits.

    :param config: the `rate_limits:` section; an empty one limits nothing.
    """

    def __init__(self, config: RateLimitsConfig) -> None:
        self._config = config
        self._principal_buckets: LRUCache[str, TokenBucket] = LRUCache(MAX_TRACKED_BUCKETS)
        self._route_buckets: LRUCache[tuple[str, str], TokenBucket] = LRUCache(MAX_TRACKED_BUCKETS)

    @property
    def limits_requests(self) -> bool:
        """Whether any per-principal request limit is configured."""
        return self._config.per_principal is not None or bool(self._config.principals)

    def check_request(self, principal_id: str) -> float:
        """Count one HTTP request of `principal_id`.

        :returns: 0.0 when allowed, else the seconds to wait (the `Retry-After` value).
        """
        limit = self._config.principals.get(principal_id, self._config.per_principal)
        if limit is None:
            return 0.0
        return _bucket(self._principal_buckets, principal_id, limit).take()

    def check_route(self, principal_id: str, exposed: str) -> float:
        """Count one call, read or get of route `exposed` (exposed name or URI) by `principal_id`.

        :returns: 0.0 when allowed, else the seconds to wait.
        """
        for pattern, limit in self._config.routes.items():
            if fnmatch.fnmatchcase(exposed, pattern):
                return _bucket(self._route_buckets, (principal_id, pattern), limit).take()
        return 0.0


def _bucket(cache: LRUCache[_K, TokenBucket], key: _K, limit: TokenBucketConfig) -> TokenBucket:
    bucket = cache.get(key)
    if bucket is None:
        bucket = cache[key] = TokenBucket(limit.requests_per_second, limit.burst)
    return bucket
