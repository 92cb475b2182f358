"""hub/gc_tuning.py: a serving process's garbage-collector settings (process-wide state, put
back after each test)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from hub.gc_tuning import YOUNG_THRESHOLD, freeze_startup_heap, tune_for_serving

pytestmark = pytest.mark.unit


@pytest.fixture
def collector_settings() -> Iterator[None]:
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


@pytest.mark.usefixtures("collector_settings")
def test_serving_raises_only_the_young_generations_threshold() -> None:
    gc.set_threshold(700, 11, 12)
    tune_for_serving()
    assert gc.get_threshold() == (YOUNG_THRESHOLD, 11, 12)


@pytest.mark.usefixtures("collector_settings")
def test_freezing_collects_cycles_first_then_takes_what_is_alive_out_of_every_collection() -> None:
    class Node:
        other: object

    alive = Node()
    alive.other = alive  # a cycle still referenced: frozen
    garbage = Node()
    garbage.other = garbage  # a cycle nobody references: collected before the freeze
    collected = weakref.ref(garbage)
    del garbage
    gc.unfreeze()
    freeze_startup_heap()
    assert collected() is None
    assert gc.get_freeze_count() > 0
    assert not any(obj is alive for obj in gc.get_objects())  # no generation holds it now
    gc.unfreeze()
    assert any(obj is alive for obj in gc.get_objects())
