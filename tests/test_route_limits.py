"""Per-route rate limits (`hub.endpoint.rate_limits.RateLimiter.check_route`): the first glob in file order
that matches a route decides its window, on every call of that route (the match is remembered
per route, never re-decided differently), and a route no glob matches is never limited."""

from __future__ import annotations

import pytest

from hub.config import RateLimitsConfig, TokenBucketConfig
from hub.endpoint.rate_limits import RateLimiter

pytestmark = pytest.mark.anyio


def _limiter() -> RateLimiter:
    one = TokenBucketConfig(requests_per_second=0.01, burst=1)
    three = TokenBucketConfig(requests_per_second=0.03, burst=3)
    return RateLimiter(RateLimitsConfig(routes={"fx__echo": one, "fx__*": three}))


async def test_each_route_is_counted_in_the_window_of_the_first_glob_it_matches_call_after_call() -> None:
    limiter = _limiter()
    echo = [await limiter.check_route("p", "fx__echo") for _ in range(2)]
    other = [await limiter.check_route("p", "fx__other") for _ in range(4)]
    assert echo[0] == 0.0 and echo[1] > 0  # "fx__echo": burst 1
    assert other[:3] == [0.0, 0.0, 0.0] and other[3] > 0  # "fx__*": burst 3, its own window


async def test_a_route_no_glob_matches_is_never_limited_and_principals_are_counted_apart() -> None:
    limiter = _limiter()
    assert [await limiter.check_route("p", "gx__echo") for _ in range(5)] == [0.0] * 5
    assert await limiter.check_route("p", "fx__echo") == 0.0
    assert await limiter.check_route("q", "fx__echo") == 0.0
    assert await limiter.check_route("p", "fx__echo") > 0
