"""Slots: a limit per key, a FIFO queue beyond it, and idempotent release."""

from __future__ import annotations

import asyncio

from wxgate.slots import Slots


def test_limit_then_fifo_handover():
    async def scenario() -> list[str]:
        slots = Slots()
        assert slots.try_acquire("app", "a", 2) and slots.try_acquire("app", "b", 2)
        assert not slots.try_acquire("app", "c", 2)
        order: list[str] = []

        async def wait(holder: str) -> None:
            await slots.acquire("app", holder, 2)
            order.append(holder)

        tasks = [asyncio.create_task(wait(h)) for h in ("c", "d", "e")]
        await asyncio.sleep(0)
        assert slots.waiting("app") == 3
        for holder in ("a", "b", "c"):
            slots.release(holder)
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)
        assert slots.in_use("app") == 2
        return order

    assert asyncio.run(scenario()) == ["c", "d", "e"]


def test_release_is_idempotent_and_per_key():
    slots = Slots()
    assert slots.try_acquire(("app", "shared"), "f1", 1)
    assert slots.try_acquire(("other", "shared"), "f2", 1)
    assert slots.release("f1") is True
    assert slots.release("f1") is False
    assert slots.counts() == {("other", "shared"): 1}


def test_cancelled_waiter_does_not_take_a_slot():
    async def scenario() -> int:
        slots = Slots()
        slots.try_acquire("app", "a", 1)
        task = asyncio.create_task(slots.acquire("app", "gone", 1))
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.sleep(0)
        slots.release("a")
        # The cancelled waiter left the line; the next caller gets the slot at once.
        assert slots.try_acquire("app", "b", 1)
        return slots.in_use("app")

    assert asyncio.run(scenario()) == 1


def test_force_acquire_counts_beyond_the_limit():
    slots = Slots()
    slots.try_acquire("app", "a", 1)
    slots.force_acquire("app", "b")
    assert slots.in_use("app") == 2


def test_keys_with_nothing_held_or_waiting_are_dropped():
    async def scenario() -> set[object]:
        slots = Slots()
        slots.try_acquire(("10.0.0.1", "app"), "a", 1)
        gone = asyncio.create_task(slots.acquire(("10.0.0.1", "app"), "gone", 1))
        served = asyncio.create_task(slots.acquire(("10.0.0.1", "app"), "served", 1))
        slots.try_acquire(("10.0.0.2", "app"), "b", 1)
        left = asyncio.create_task(slots.acquire(("10.0.0.2", "app"), "left", 1))
        await asyncio.sleep(0)
        gone.cancel()
        left.cancel()
        await asyncio.sleep(0)
        for holder in ("a", "b"):
            slots.release(holder)
        await served
        slots.release("served")
        await asyncio.gather(gone, left, return_exceptions=True)
        return slots.keys()

    assert asyncio.run(scenario()) == set()


def test_slots_are_counted_per_device_key():
    slots = Slots()
    assert slots.try_acquire(("10.0.0.1", "app", "shared"), "a", 1)
    assert slots.try_acquire(("10.0.0.2", "app", "shared"), "b", 1)
    assert not slots.try_acquire(("10.0.0.1", "app", "shared"), "c", 1)
