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
