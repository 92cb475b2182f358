"""`hub.admission.CircuitBreaker`: how failures count (a small real object, a fake clock)."""

from __future__ import annotations

import pytest

from hub.admission import BreakerState, CircuitBreaker
from hub.config import BreakerConfig

pytestmark = pytest.mark.unit


def test_failures_of_one_lost_connection_count_once_and_a_reset_closes_the_breaker() -> None:
    now = [0.0]
    breaker = CircuitBreaker(BreakerConfig(failures=2, cooldown_seconds=30), clock=lambda: now[0])
    for _ in range(5):
        breaker.record_failure(lost_generation=7)
    assert breaker.state is BreakerState.CLOSED and breaker.consecutive_failures == 1
    breaker.record_failure(lost_generation=8)
    assert _state(breaker) is BreakerState.OPEN and not breaker.allow()
    breaker.record_failure(lost_generation=7)  # a late failure of an already counted loss
    assert breaker.consecutive_failures == 2
    breaker.reset()
    assert _state(breaker) is BreakerState.CLOSED and breaker.consecutive_failures == 0 and breaker.allow()
    breaker.record_failure()
    breaker.record_failure()
    assert _state(breaker) is BreakerState.OPEN  # other failures count one by one


def _state(breaker: CircuitBreaker) -> BreakerState:
    return breaker.state
