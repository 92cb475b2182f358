"""`hub.signals.Changes`, the re-armed event the hub's objects notify at each change."""

from __future__ import annotations

import anyio
import pytest

from hub.signals import Changes, wait_for_any

pytestmark = [pytest.mark.unit, pytest.mark.anyio]


def test_changes_can_be_made_and_notified_outside_an_event_loop() -> None:
    changes = Changes()
    changes.notify()
    changes.notify()
    assert changes.count == 2


async def test_wait_for_returns_at_once_when_the_predicate_already_holds() -> None:
    with anyio.fail_after(1):
        await Changes().wait_for(lambda: True)


async def test_wait_for_rechecks_the_predicate_at_every_notify_and_returns_once_it_holds() -> None:
    changes, state, checks = Changes(), {"n": 0}, []

    def reached_three() -> bool:
        checks.append(state["n"])
        return state["n"] >= 3

    async def bump_thrice() -> None:
        for _ in range(3):
            await anyio.lowlevel.checkpoint()
            state["n"] += 1
            changes.notify()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(changes.wait_for, reached_three)
            tg.start_soon(bump_thrice)
    assert checks[0] == 0 and checks[-1] == 3
    assert changes.count == 3


async def test_every_waiter_wakes_at_one_notify() -> None:
    changes, woken = Changes(), []

    async def waiter(name: str, started: anyio.Event) -> None:
        started.set()
        await changes.wait()
        woken.append(name)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for name in ("a", "b", "c"):
                started = anyio.Event()
                tg.start_soon(waiter, name, started)
                await started.wait()
            changes.notify()
    assert sorted(woken) == ["a", "b", "c"]


async def test_wait_past_misses_no_change_made_between_reading_the_count_and_waiting() -> None:
    changes = Changes()
    seen = changes.count
    changes.notify()  # before the wait starts
    with anyio.fail_after(1):
        assert await changes.wait_past(seen) == seen + 1


async def test_wait_for_any_rechecks_at_a_notify_of_any_source_and_returns_once_the_condition_holds() -> None:
    first, second, state, checks = Changes(), Changes(), {"a": False, "b": False}, []

    def both() -> bool:
        checks.append(dict(state))
        return state["a"] and state["b"]

    async def change_each() -> None:
        await anyio.lowlevel.checkpoint()
        state["a"] = True
        first.notify()
        await anyio.lowlevel.checkpoint()
        state["b"] = True
        second.notify()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_for_any, both, first, second)
            tg.start_soon(change_each)
    assert checks[0] == {"a": False, "b": False} and checks[-1] == {"a": True, "b": True}


async def test_wait_for_any_misses_no_notify_made_before_its_waiters_start() -> None:
    source, state = Changes(), {"ready": False}

    def ready() -> bool:
        if not state["ready"]:
            # Changed and notified while the check runs, before any waiter is listening.
            state["ready"] = True
            source.notify()
            return False
        return True

    with anyio.fail_after(1):
        await wait_for_any(ready, source)
    assert source.count == 1


async def test_wait_for_any_returns_at_once_when_the_condition_holds_even_with_no_source() -> None:
    with anyio.fail_after(1):
        await wait_for_any(lambda: True)


async def test_wait_for_any_with_no_source_refuses_a_condition_that_does_not_hold() -> None:
    with anyio.fail_after(1), pytest.raises(ValueError):
        await wait_for_any(lambda: False)
