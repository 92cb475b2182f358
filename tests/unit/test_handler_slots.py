"""`HandlerSlot`: what a handler leaves reaches the middleware that opened the slot around it, and
only that one request's."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from hub.handler_slots import HandlerSlot

pytestmark = [pytest.mark.unit, pytest.mark.anyio]


async def test_a_value_left_inside_the_slot_comes_back_with_the_result() -> None:
    slot: HandlerSlot[str] = HandlerSlot("test")

    async def handler() -> str:
        assert slot.open
        assert slot.leave("wire form")
        return "stub"

    assert await slot.around(handler) == ("stub", "wire form")
    assert not slot.open  # closed again after the chain


async def test_with_no_middleware_around_the_handler_keeps_its_value() -> None:
    slot: HandlerSlot[str] = HandlerSlot("test")
    assert not slot.open
    assert slot.leave("wire form") is False


async def test_a_handler_that_leaves_nothing_gives_none() -> None:
    slot: HandlerSlot[int] = HandlerSlot("test")

    async def handler() -> str:
        return "result"

    assert await slot.around(handler) == ("result", None)


async def test_concurrent_requests_each_get_their_own_value() -> None:
    slot: HandlerSlot[int] = HandlerSlot("test")
    seen: dict[int, tuple[int, int | None]] = {}

    async def request(n: int) -> None:
        async def handler() -> int:
            await anyio.lowlevel.checkpoint()
            slot.leave(n)
            await anyio.lowlevel.checkpoint()
            return n

        seen[n] = await slot.around(handler)

    async with anyio.create_task_group() as tg:
        for n in range(20):
            tg.start_soon(request, n)
    assert seen == {n: (n, n) for n in range(20)}


async def test_the_slot_closes_when_the_chain_raises() -> None:
    slot: HandlerSlot[int] = HandlerSlot("test")

    async def handler() -> int:
        slot.leave(1)
        raise LookupError("boom")

    with pytest.raises(LookupError):
        await slot.around(handler)
    assert not slot.open
