"""The micro-batching queue with a recording fake engine: batches form across calls, bounds hold."""

from __future__ import annotations

import asyncio

import pytest

from gram_ray.apply.batching import Busy, MicroBatcher


class FakeEngine:
    """Answers item -> item * 10 after ``delay`` seconds; records every batch it is given."""

    def __init__(self, delay: float = 0.0, fail_on: object = None):
        self.delay, self.fail_on, self.batches = delay, fail_on, []
        self.running = self.most_running = 0

    async def __call__(self, items, key):
        self.batches.append((list(items), key))
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        await asyncio.sleep(self.delay)
        self.running -= 1
        return [ValueError(f"bad {i}") if i == self.fail_on else i * 10 for i in items]


def test_concurrent_calls_share_batches_and_get_their_own_results():
    async def scenario():
        engine = FakeEngine(delay=0.01)
        batcher = MicroBatcher(engine, max_batch=8, wait_s=0.05, max_pending=1000, max_in_flight=1)
        results = await asyncio.gather(*(batcher.submit([2 * i, 2 * i + 1]) for i in range(12)))
        await batcher.close()
        return engine, batcher, results

    engine, batcher, results = asyncio.run(scenario())
    assert results == [[20 * i, 20 * i + 10] for i in range(12)]
    assert [len(items) for items, _ in engine.batches] == [8, 8, 8]  # 24 items, full batches, calls unsplit
    assert (batcher.batches, batcher.batched_items, batcher.pending) == (3, 24, 0)


def test_a_lone_call_waits_at_most_wait_s():
    async def scenario():
        batcher = MicroBatcher(FakeEngine(), max_batch=100, wait_s=0.02)
        loop = asyncio.get_running_loop()
        start = loop.time()
        result = await batcher.submit([1])
        return result, loop.time() - start

    result, seconds = asyncio.run(scenario())
    assert result == [10] and seconds < 1.0


def test_keys_are_batched_apart_and_in_flight_batches_are_bounded():
    async def scenario():
        engine = FakeEngine(delay=0.02)
        batcher = MicroBatcher(engine, max_batch=2, wait_s=0.0, max_in_flight=2)
        out = await asyncio.gather(*(batcher.submit([i], key=i % 2) for i in range(10)))
        return engine, out

    engine, out = asyncio.run(scenario())
    assert out == [[10 * i] for i in range(10)]
    assert all(len({i % 2 for i in items}) == 1 and key == items[0] % 2 for items, key in engine.batches)
    assert engine.most_running <= 2 * 2  # two batches, each of at most two keys


def test_past_max_pending_calls_are_refused_and_later_ones_admitted():
    async def scenario():
        batcher = MicroBatcher(FakeEngine(delay=0.05), max_batch=4, wait_s=0.0, max_pending=4)
        first = asyncio.create_task(batcher.submit([1, 2, 3]))
        await asyncio.sleep(0)
        with pytest.raises(Busy, match="admits 4"):
            await batcher.submit([4, 5])
        second = await batcher.submit([6])  # fits beside the first call
        return await first, second, await batcher.submit([7, 8, 9, 10])

    assert asyncio.run(scenario()) == ([10, 20, 30], [60], [70, 80, 90, 100])


def test_a_failing_item_fails_only_its_call():
    async def scenario():
        batcher = MicroBatcher(FakeEngine(fail_on=3), max_batch=10, wait_s=0.01)
        return await asyncio.gather(batcher.submit([1, 2]), batcher.submit([3, 4]), batcher.submit([5]),
                                    return_exceptions=True)

    ok, failed, also_ok = asyncio.run(scenario())
    assert ok == [10, 20] and also_ok == [50]
    assert isinstance(failed, ValueError) and str(failed) == "bad 3"


def test_a_call_given_up_before_dispatch_is_not_sent():
    async def scenario():
        engine = FakeEngine(delay=0.05)
        batcher = MicroBatcher(engine, max_batch=1, wait_s=0.0, max_in_flight=1)
        busy = asyncio.create_task(batcher.submit([1]))
        gone = asyncio.create_task(batcher.submit([2]))
        await asyncio.sleep(0.01)
        gone.cancel()
        await busy
        assert await batcher.submit([3]) == [30]
        return engine, batcher.pending

    engine, pending = asyncio.run(scenario())
    assert [items for items, _ in engine.batches] == [[1], [3]] and pending == 0


def test_settings_are_checked():
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(FakeEngine(), max_batch=0)
