"""hub/endpoint/rate_limits.py `LocalWindows`: the moving windows counted in memory, on a clock of
the test's own; and `RateLimiter` counting a request limit with them."""

from __future__ import annotations

import threading

import pytest
from limits import RateLimitItemPerSecond

from hub.config import RateLimitsConfig, TokenBucketConfig
from hub.endpoint.rate_limits import LocalWindows, RateLimiter, window_for

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_window_takes_its_amount_then_refuses_until_its_oldest_hit_leaves_it() -> None:
    clock = Clock()
    windows = LocalWindows(clock)
    three_per_10s = RateLimitItemPerSecond(3, 10)
    for _ in range(3):
        assert windows.hit(three_per_10s, "alice") == 0.0
        clock.now += 1.0
    # Hits at 1000, 1001, 1002; now 1003: the first leaves the window at 1010.
    assert windows.hit(three_per_10s, "alice") == pytest.approx(7.0)
    clock.now = 1009.5
    assert windows.hit(three_per_10s, "alice") == pytest.approx(0.5)  # refused hits were not counted
    clock.now = 1010.5
    assert windows.hit(three_per_10s, "alice") == 0.0  # the hit of 1000 left the window
    assert windows.hit(three_per_10s, "alice") == pytest.approx(0.5)  # the next to leave: 1001


def test_a_hit_exactly_one_window_old_still_counts_as_in_the_moving_window_of_limits() -> None:
    clock = Clock()
    windows = LocalWindows(clock)
    one_per_second = RateLimitItemPerSecond(1, 1)
    assert windows.hit(one_per_second, "k") == 0.0
    clock.now += 1.0
    assert windows.hit(one_per_second, "k") == pytest.approx(0.001)  # the floor of a wait
    clock.now += 0.001
    assert windows.hit(one_per_second, "k") == 0.0


def test_keys_and_items_count_apart() -> None:
    clock = Clock()
    windows = LocalWindows(clock)
    one = RateLimitItemPerSecond(1, 5, namespace="request")
    route = RateLimitItemPerSecond(1, 5, namespace="route")
    assert windows.hit(one, "alice") == 0.0
    assert windows.hit(one, "bob") == 0.0
    assert windows.hit(route, "alice", "fx__*") == 0.0
    assert windows.hit(route, "alice", "gh__*") == 0.0
    assert windows.hit(one, "alice") > 0.0
    assert windows.hit(route, "alice", "fx__*") > 0.0


def test_keys_whose_hits_all_left_their_windows_are_dropped_at_the_next_sweep() -> None:
    clock = Clock()
    windows = LocalWindows(clock)
    short, long = RateLimitItemPerSecond(5, 1), RateLimitItemPerSecond(5, 60)
    for principal in ("a", "b", "c"):
        windows.hit(short, principal)
    windows.hit(long, "d")
    assert len(windows) == 4
    clock.now += 2.0
    windows.hit(long, "d")  # the hit that comes a second after the last sweep sweeps every key
    assert len(windows) == 1


@pytest.mark.anyio
async def test_the_rate_limiter_counts_a_principals_requests_in_this_process_without_starting_threads() -> None:
    bucket = {"requests_per_second": 1, "burst": 3}
    limiter = RateLimiter(RateLimitsConfig.model_validate({"per_principal": bucket}))
    assert window_for(TokenBucketConfig.model_validate(bucket)).amount == 3
    threads = threading.active_count()
    waits = [await limiter.check_request("alice") for _ in range(4)]
    assert waits[:3] == [0.0, 0.0, 0.0] and 0.0 < waits[3] <= 3.0
    assert await limiter.check_request("bob") == 0.0
    assert threading.active_count() == threads  # `limits`' MemoryStorage started a sweeper thread here
