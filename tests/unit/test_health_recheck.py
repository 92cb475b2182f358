"""hub/servers/health.py: after a health check whose own exchange broke, the next one comes after
`RECHECK_BACKOFF` (1 s, 2 s, 4 s, ...), never later than the check interval."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest

from hub.servers.health import HealthMonitor

pytestmark = pytest.mark.unit


def _monitor(interval_seconds: float) -> HealthMonitor:
    connection = SimpleNamespace(config=SimpleNamespace(health_check_interval_seconds=interval_seconds))
    return HealthMonitor(cast(Any, connection))


def test_broken_checks_in_a_row_double_the_wait_up_to_the_interval() -> None:
    assert [_monitor(30.0)._recheck_delay(n) for n in range(1, 8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_a_short_interval_caps_even_the_first_recheck() -> None:
    assert _monitor(0.5)._recheck_delay(1) == 0.5
