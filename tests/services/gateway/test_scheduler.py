"""FairScheduler: caps, bounded queues and weighted fairness, without processes."""

from __future__ import annotations

import asyncio

import pytest

from services.gateway.scheduler import FairScheduler, QueueFull


def run(coro):
    return asyncio.run(coro)


def test_flooding_tenant_cannot_starve_another():
    async def scenario():
        scheduler = FairScheduler(capacity=2)
        order: list[str] = []

        async def request(tenant, weight):
            await scheduler.acquire(tenant, weight, cap=10, max_queue=100)
            order.append(tenant)
            await asyncio.sleep(0.001)
            scheduler.release(tenant)

        flood = [asyncio.create_task(request("a", 1)) for _ in range(40)]
        await asyncio.sleep(0)  # a's backlog is queued first
        quiet = [asyncio.create_task(request("b", 1)) for _ in range(4)]
        await asyncio.gather(*flood, *quiet)
        return order

    order = run(scenario())
    # b's four requests are served within the first dozen grants, not after a's 40.
    assert max(i for i, t in enumerate(order) if t == "b") < 12, order


def test_weights_share_a_contended_budget():
    async def scenario():
        scheduler = FairScheduler(capacity=1)
        served: list[str] = []

        async def request(tenant, weight):
            await scheduler.acquire(tenant, weight, cap=100, max_queue=100)
            served.append(tenant)
            await asyncio.sleep(0)
            scheduler.release(tenant)

        blocker = asyncio.create_task(request("warmup", 1))
        tasks = [asyncio.create_task(request("gold", 4)) for _ in range(40)] + [
            asyncio.create_task(request("bronze", 1)) for _ in range(40)
        ]
        await asyncio.gather(blocker, *tasks)
        return served[1:41]

    first_half = run(scenario())
    ratio = first_half.count("gold") / max(1, first_half.count("bronze"))
    assert 2.5 <= ratio <= 6, first_half


def test_per_tenant_cap_and_bounded_queue():
    async def scenario():
        scheduler = FairScheduler(capacity=100)
        await scheduler.acquire("a", 1, cap=1, max_queue=1)
        waiter = asyncio.create_task(scheduler.acquire("a", 1, cap=1, max_queue=1))
        await asyncio.sleep(0)
        assert scheduler.queued("a") == 1 and scheduler.inflight("a") == 1
        with pytest.raises(QueueFull):
            await scheduler.acquire("a", 1, cap=1, max_queue=1)
        scheduler.release("a")
        await waiter
        assert scheduler.inflight("a") == 1 and scheduler.queued("a") == 0

    run(scenario())


@pytest.mark.parametrize("release_first", [False, True], ids=["cancelled-then-released", "released-while-cancelling"])
def test_cancelled_waiter_gives_its_place_back(release_first):
    async def scenario():
        scheduler = FairScheduler(capacity=1)
        await scheduler.acquire("a", 1, cap=5, max_queue=5)
        waiter = asyncio.create_task(scheduler.acquire("b", 1, cap=5, max_queue=5))
        await asyncio.sleep(0)
        waiter.cancel()
        if release_first:
            scheduler.release("a")  # dispatch meets the cancelled future before its task has run
        with pytest.raises(asyncio.CancelledError):
            await waiter
        if not release_first:
            scheduler.release("a")
        assert scheduler.active == 0 and scheduler.queued("b") == 0

    run(scenario())


def test_waiters_held_by_their_own_cap_do_not_delay_others():
    async def scenario():
        scheduler = FairScheduler(capacity=4)
        await scheduler.acquire("a", 1, cap=2, max_queue=4)
        await scheduler.acquire("a", 1, cap=2, max_queue=4)
        queued_a = [asyncio.create_task(scheduler.acquire("a", 1, cap=2, max_queue=4)) for _ in range(4)]
        await asyncio.sleep(0)
        assert scheduler.queued("a") == 4 and not scheduler.has_room("a")
        # Budget is left and b is under its cap: b starts without waiting for one of a's releases.
        granted = asyncio.create_task(scheduler.acquire("b", 1, cap=8, max_queue=8))
        await asyncio.sleep(0)
        assert granted.done() and scheduler.inflight("b") == 1
        for task in queued_a:
            task.cancel()
        await asyncio.gather(*queued_a, return_exceptions=True)
        assert scheduler.queued("a") == 0 and scheduler.has_room("a")

    run(scenario())


def test_raised_cap_on_reload_lets_waiters_go():
    async def scenario():
        scheduler = FairScheduler(capacity=10)
        await scheduler.acquire("a", 1, cap=1, max_queue=4)
        waiter = asyncio.create_task(scheduler.acquire("a", 1, cap=1, max_queue=4))
        await asyncio.sleep(0)
        assert not waiter.done()
        # The next request arrives with the reloaded limits (cap 3): the waiter goes too.
        await asyncio.wait_for(scheduler.acquire("a", 1, cap=3, max_queue=4), timeout=1)
        await asyncio.sleep(0)
        assert waiter.done() and scheduler.inflight("a") == 3

    run(scenario())
