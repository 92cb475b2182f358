"""`hub.startup`: the start-up gate list requests wait on, and the slots that bound concurrent
stdio starts (small real objects, no I/O)."""

from __future__ import annotations

import anyio
import pytest

from hub.signals import Changes
from hub.startup import StartSlots, StartupGate, default_max_concurrent_starts

pytestmark = [pytest.mark.unit, pytest.mark.anyio]


async def test_start_slots_let_at_most_their_limit_start_at_once_and_can_be_given_back_early() -> None:
    slots = StartSlots(2)
    running, most, given_back = 0, 0, 0
    gave_back = Changes()  # notified each time a start gives its slot back
    release_early = anyio.Event()

    async def start(server_id: str, early: bool) -> None:
        nonlocal running, most, given_back
        async with slots.hold(server_id) as release:
            running += 1
            most = max(most, running)
            await anyio.lowlevel.checkpoint()
            running -= 1
            if early:
                release()
                given_back += 1
                gave_back.notify()
                await release_early.wait()  # holds on to the block, not to the slot
        if not early:
            given_back += 1
            gave_back.notify()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(start, "early", True)
            for i in range(6):
                tg.start_soon(start, f"s{i}", False)
            await gave_back.wait_for(lambda: given_back == 7)
            # Every slot is free while the early one still holds its block.
            free = (slots.starting, slots.waiting, running)
            release_early.set()
    assert free == (0, 0, 0)
    assert most == 2
    assert StartSlots().limit == default_max_concurrent_starts() >= 4  # four per CPU by default


async def test_the_startup_gate_waits_for_pending_servers_each_at_most_its_bound_and_by_scope() -> None:
    gate = StartupGate()
    assert gate.settled
    gate.open("a", "alpha", 600)
    gate.open("b", "beta/1", 0.05)
    assert gate.pending() == ["alpha", "beta/1"] and gate.pending("beta") == ["beta/1"]
    with anyio.fail_after(10):
        await gate.wait("beta")  # its only server never starts: the bound ends the wait
        async with anyio.create_task_group() as tg:
            tg.start_soon(gate.wait)
            await gate.changes.wait_for(lambda: gate.waiters == 1)
            gate.close("a")
        gate.close("b")
        await gate.wait_settled()
    assert gate.settled and gate.waiters == 0


def test_the_startup_gate_notifies_its_changes_at_each_open_close_and_waiter() -> None:
    gate = StartupGate()
    gate.open("a", "alpha", 1)
    gate.close("a")
    gate.close("a")  # no longer open: nothing changed
    assert gate.changes.count == 2
