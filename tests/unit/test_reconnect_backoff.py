"""The supervisor's reconnect backoff (`hub.servers.supervisor.RECONNECT_BACKOFF`), a tenacity
wait strategy called with retry states: the delay sequence, with no sleeping."""

from __future__ import annotations

import pytest
from tenacity import AsyncRetrying, RetryCallState

from hub.servers.supervisor import (
    BACKOFF_INITIAL_SECONDS,
    BACKOFF_MAX_SECONDS,
    RECONNECT_BACKOFF,
    reconnect_delay_seconds,
)

pytestmark = pytest.mark.unit

DRAWS = 200
"""Draws per failure count: enough that the jitter's spread shows (a miss has odds below 1e-19)."""


def _ceiling(failures: int) -> float:
    return min(BACKOFF_MAX_SECONDS, BACKOFF_INITIAL_SECONDS * 2 ** (failures - 1))


def _retry_state(attempt_number: int) -> RetryCallState:
    state = RetryCallState(AsyncRetrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempt_number
    return state


@pytest.mark.parametrize("failures", [1, 2, 3, 4, 5, 6, 7, 8, 12, 40])
def test_the_reconnect_delay_after_n_failures_lies_between_half_and_all_of_its_doubling_ceiling(
    failures: int,
) -> None:
    ceiling = _ceiling(failures)
    delays = [RECONNECT_BACKOFF(_retry_state(failures)) for _ in range(DRAWS)]
    assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
    # Jittered, and over the whole range: never a fixed delay, never below half the ceiling.
    assert min(delays) < ceiling * 0.6
    assert max(delays) > ceiling * 0.9


def test_the_reconnect_ceiling_doubles_from_half_a_second_and_stops_at_thirty_seconds() -> None:
    ceilings = [max(RECONNECT_BACKOFF(_retry_state(n)) for _ in range(DRAWS)) for n in range(1, 10)]
    assert [round(c / _ceiling(n), 1) for n, c in enumerate(ceilings, start=1)] == [1.0] * 9
    assert _ceiling(1) == 0.5 and _ceiling(7) == 30.0 and _ceiling(9) == 30.0
    assert max(RECONNECT_BACKOFF(_retry_state(1000)) for _ in range(DRAWS)) <= BACKOFF_MAX_SECONDS


def test_reconnect_delay_seconds_draws_from_the_strategy_for_the_count_of_failures() -> None:
    for failures in (1, 3, 9):
        delays = {reconnect_delay_seconds(failures) for _ in range(DRAWS)}
        assert len(delays) > 1
        assert all(_ceiling(failures) / 2 <= d <= _ceiling(failures) for d in delays)
