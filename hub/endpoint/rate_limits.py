"""Rate limits per principal and per (principal, route), configured under `rate_limits:` (MCP
security best practices: "Rate limit tool invocations"), counted by the `limits` library with
its moving-window strategy: in this process's memory, or in Redis when `cluster.redis_url` is
set, so that N requests spread over the replicas get the limit of one.

How `{requests_per_second: r, burst: b}` is enforced (`window_for`): at most `n` requests in
any window of `w` whole seconds, where `w = max(1, round(b / r))` and `n = max(1, round(r * w))`.
When `b / r` is a whole number of seconds (e.g. `r: 0.5, b: 3`: 3 requests per 6 s), that is
exactly `b` requests at once and `r` per second sustained; otherwise the window is rounded to
whole seconds (the library's unit) and `n` follows the rate (e.g. `r: 10, b: 5`: 10 per 1 s).
Unlike a token bucket, a spent burst comes back when its requests leave the window, not one
request at a time: `Retry-After` / `retry_after_seconds` is the time until the oldest request
in the window leaves it (up to `w`).

A request over its limit is refused at once with that time; nothing ever waits in a queue.
With Redis configured and unavailable (down, or slower than `cluster.redis_timeout_seconds`),
the limits are counted in this replica's memory until Redis is back (logged once each way), so
the hub keeps serving; counts made meanwhile stay local.

In this process's memory the windows are the hub's own (`LocalWindows`), the same moving window
as the library's: its `MemoryStorage` sweeps expired entries from a `threading.Timer` that it
starts anew 10 ms after a hit whenever the last one has finished, so steady traffic started
about 100 threads a second, and the event loop blocked in each `Thread.start` until the new
thread ran (py-spy, 640 calls/s on 2 cores: ~1% of the hub's wall time, worse under load).
"""

from __future__ import annotations

import fnmatch
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, cast

from cachetools import LRUCache

from hub.cluster.store import SharedStore
from hub.config import RateLimitsConfig, TokenBucketConfig

if TYPE_CHECKING:
    from limits import RateLimitItem

    from hub.cluster.redis_limits import SharedWindows
    from hub.cluster.redis_store import RedisStore

__all__ = ["LocalWindows", "RateLimiter", "window_for"]

logger = logging.getLogger(__name__)

_MIN_WAIT_SECONDS: Final = 0.001
"""The shortest wait a refusal names (a window full to the microsecond still says 1 ms)."""
_ROUTES_KEPT: Final = 4096
"""Routes whose matching `routes` glob is remembered (least recently used dropped)."""
_REQUEST_NAMESPACE: Final = "request"
_ROUTE_NAMESPACE: Final = "route"
_SWEEP_SECONDS: Final = 1.0
"""How often `LocalWindows` drops the hits that left their windows, for every key."""


def window_for(limit: TokenBucketConfig, namespace: str = "LIMITER") -> RateLimitItem:
    """The moving window enforcing `limit` (see the module docstring): `n` requests per `w` s."""
    from limits import RateLimitItemPerSecond  # the `limits` library loads only when a limit is used

    seconds = max(1, round(limit.burst / limit.requests_per_second))
    amount = max(1, round(limit.requests_per_second * seconds))
    return RateLimitItemPerSecond(amount, seconds, namespace=namespace)


class RateLimiter:
    """The hub's rate limits.

    :param config: the `rate_limits:` section; an empty one limits nothing.
    :param store: the shared store; a shared one (`RedisStore`) makes the limits hold across
        replicas (`hub.cluster.redis_limits`), anything else keeps them in this process.
    """

    def __init__(self, config: RateLimitsConfig, store: SharedStore | None = None) -> None:
        self._config = config
        self._local_windows = LocalWindows()
        self._shared: SharedWindows | None = None
        if store is not None and store.shared:
            # Imported only for replicas: redis-py loads OpenTelemetry's SDK when it is installed.
            from hub.cluster.redis_limits import SharedWindows

            self._shared = SharedWindows(cast("RedisStore", store))
        self._counting_locally = False
        self._windows: dict[tuple[str, float, int], RateLimitItem] = {}
        self._route_limits: LRUCache[str, tuple[str, TokenBucketConfig] | None] = LRUCache(_ROUTES_KEPT)
        """Per exposed route: the first `routes` glob it matches and its limit (None: none), so
        the globs are matched once per route, not per request."""

    @property
    def limits_requests(self) -> bool:
        """Whether any per-principal request limit is configured."""
        return self._config.per_principal is not None or bool(self._config.principals)

    async def check_request(self, principal_id: str) -> float:
        """Count one HTTP request of `principal_id`.

        :returns: 0.0 when allowed, else the seconds until it would be (the `Retry-After` value).
        """
        limit = self._config.principals.get(principal_id, self._config.per_principal)
        if limit is None:
            return 0.0
        return await self._hit(self._window(_REQUEST_NAMESPACE, limit), principal_id)

    async def check_route(self, principal_id: str, exposed: str) -> float:
        """Count one call, read or get of route `exposed` (exposed name or URI) by `principal_id`
        against the first `routes` glob it matches (file order).

        :returns: 0.0 when allowed, else the seconds until it would be.
        """
        if not self._config.routes:
            return 0.0
        routes = self._route_limits
        if exposed in routes:
            matched = routes[exposed]
        else:
            matched = routes[exposed] = next(
                (
                    (pattern, limit)
                    for pattern, limit in self._config.routes.items()
                    if fnmatch.fnmatchcase(exposed, pattern)
                ),
                None,
            )
        if matched is None:
            return 0.0
        pattern, limit = matched
        return await self._hit(self._window(_ROUTE_NAMESPACE, limit), principal_id, pattern)

    def _window(self, kind: str, limit: TokenBucketConfig) -> RateLimitItem:
        key = (kind, limit.requests_per_second, limit.burst)
        item = self._windows.get(key)
        if item is None:
            item = self._windows[key] = window_for(limit, kind)
        return item

    async def _hit(self, item: RateLimitItem, *identifiers: str) -> float:
        if self._shared is not None and self._shared.available:
            wait = await self._shared.hit(item, *identifiers)
            if wait is not None:
                if self._counting_locally:
                    self._counting_locally = False
                    logger.warning("rate limits: counted across the replicas again (Redis is back)")
                return wait
        if self._shared is not None and not self._counting_locally:
            self._counting_locally = True
            logger.warning("rate limits: Redis unavailable, counting on this replica only until it is back")
        return self._local_windows.hit(item, *identifiers)


class LocalWindows:
    """Moving windows in this process's memory (see the module docstring): at most
    `item.amount` hits in any `item.get_expiry()` seconds per key (`item.key_for(*identifiers)`),
    as the `limits` library's `MovingWindowRateLimiter` counts them. A hit trims its own key's
    window; every key is swept at most once a second, by whichever hit comes then. Not
    thread-safe: the hub counts on its event loop."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._hits: dict[str, tuple[float, deque[float]]] = {}
        """Per key: its window (seconds) and the `clock()` of its hits, oldest first."""
        self._swept = clock()

    def hit(self, item: RateLimitItem, *identifiers: str) -> float:
        """Count one hit of `identifiers` against `item` when its window has room.

        :returns: 0.0 when counted, else the seconds until the oldest hit in the window leaves it
            (at least 1 ms); a refused hit is not counted.
        """
        now = self._clock()
        if now - self._swept >= _SWEEP_SECONDS:
            self._sweep(now)
        key = item.key_for(*identifiers)
        window = float(item.get_expiry())
        entry = self._hits.get(key)
        if entry is None:
            entry = self._hits[key] = (window, deque())
        hits = entry[1]
        start = now - window
        while hits and hits[0] < start:  # a hit exactly `window` old still counts, as in `limits`
            hits.popleft()
        if len(hits) < item.amount:
            hits.append(now)
            return 0.0
        return max(hits[0] + window - now, _MIN_WAIT_SECONDS)

    def _sweep(self, now: float) -> None:
        self._swept = now
        for key, (window, hits) in list(self._hits.items()):
            start = now - window
            while hits and hits[0] < start:
                hits.popleft()
            if not hits:
                del self._hits[key]

    def __len__(self) -> int:
        """Keys with hits in their window (as of the last sweep)."""
        return len(self._hits)
