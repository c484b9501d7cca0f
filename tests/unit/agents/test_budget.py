"""The in-flight budget: bounded, first come first served, no thundering herd."""

from __future__ import annotations

import asyncio

from agents.producing import Budget


async def test_waiters_are_admitted_in_order_and_only_when_they_fit() -> None:
    budget = Budget(max_records=10, max_bytes=1000)
    await budget.acquire(100, 8)
    admitted: list[str] = []

    async def take(name: str, records: int) -> None:
        await budget.acquire(10, records)
        admitted.append(name)

    tasks = [asyncio.create_task(take(n, r)) for n, r in [("a", 5), ("b", 1), ("c", 1)]]
    await asyncio.sleep(0)
    assert admitted == []  # "b" would fit, but "a" came first
    budget.release(4, 50)  # 4 pending: a (5) fits, b (1) fits, c would make 11
    await asyncio.sleep(0)
    assert admitted == ["a", "b"] and budget.records == 10
    budget.release(1, 10)
    await asyncio.gather(*tasks)
    assert admitted == ["a", "b", "c"] and budget.records == 10


async def test_an_oversize_request_goes_through_when_nothing_is_pending() -> None:
    budget = Budget(max_records=2, max_bytes=10)
    await budget.acquire(1_000_000, 5)
    assert budget.records == 5
    budget.release(5, 1_000_000)
    assert budget.records == 0 and budget.bytes == 0
    await asyncio.wait_for(budget.wait_empty(), 1)


async def test_a_cancelled_waiter_leaves_no_trace() -> None:
    budget = Budget(max_records=1, max_bytes=100)
    await budget.acquire(1)
    waiter = asyncio.create_task(budget.acquire(1))
    later = asyncio.create_task(budget.acquire(1))
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.sleep(0)
    budget.release(1, 1)
    await asyncio.wait_for(later, 1)
    assert budget.records == 1 and waiter.cancelled()


async def test_half_free_needs_both_limits_half_free_and_nobody_waiting() -> None:
    budget = Budget(max_records=10, max_bytes=1000)
    assert budget.half_free()
    assert budget.take_now(100, 6)
    assert not budget.half_free()  # 6 of 10 records
    budget.release(1, 0)
    assert budget.half_free()  # 5 of 10 records, 100 of 1000 bytes
    waiter = asyncio.create_task(budget.acquire(10, 6))
    await asyncio.sleep(0)  # let it queue (it does not fit: 5 + 6 > 10)
    assert not budget.half_free()
    budget.release(5, 100)
    await waiter
    assert not budget.half_free()  # 6 of 10 again
    budget.release(6, 10)
    budget.force(600)
    assert not budget.half_free()  # 600 of 1000 bytes
