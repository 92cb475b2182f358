"""The concurrency limiter (`hub.admission.ConcurrencyLimiter`) in memory: slots, the queue, and
the idle event a drain waits on."""

from __future__ import annotations

import anyio
import pytest

from hub.admission import ConcurrencyLimiter, ServerRejected

pytestmark = [pytest.mark.unit, pytest.mark.anyio]


async def test_a_limiter_with_no_slot_in_use_and_none_awaited_is_idle_at_once() -> None:
    limiter = ConcurrencyLimiter("s", max_concurrency=2, max_queue=1)
    assert limiter.idle
    with anyio.fail_after(1):
        await limiter.wait_idle()


async def test_wait_idle_returns_only_once_the_held_slot_and_the_queued_request_are_both_done() -> None:
    queued = anyio.Event()
    limiter = ConcurrencyLimiter("s", 1, 1, on_depth=lambda depth: queued.set() if depth else None)
    release_first, first_in, second_in, release_second = anyio.Event(), anyio.Event(), anyio.Event(), anyio.Event()
    idle_seen: list[tuple[int, int]] = []

    async def hold(entered: anyio.Event, release: anyio.Event) -> None:
        async with limiter.slot(5):
            entered.set()
            await release.wait()

    async def watch() -> None:
        await limiter.wait_idle()
        idle_seen.append((limiter.in_use, limiter.waiting))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(hold, first_in, release_first)
            await first_in.wait()
            tg.start_soon(hold, second_in, release_second)
            await queued.wait()
            tg.start_soon(watch)
            assert not limiter.idle
            release_first.set()
            await second_in.wait()
            assert not idle_seen  # the slot passed from the first request to the queued one
            release_second.set()
    assert idle_seen == [(0, 0)]
    assert limiter.idle


async def test_a_request_refused_by_a_full_queue_leaves_the_limiter_idle_once_the_holder_is_done() -> None:
    limiter = ConcurrencyLimiter("s", max_concurrency=1, max_queue=0)
    held, release = anyio.Event(), anyio.Event()

    async def hold() -> None:
        async with limiter.slot(5):
            held.set()
            await release.wait()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(hold)
            await held.wait()
            with pytest.raises(ServerRejected) as refused:
                async with limiter.slot(5):
                    pass  # pragma: no cover - refused before the block
            assert refused.value.delivered is False
            release.set()
            await limiter.wait_idle()
    assert limiter.idle
