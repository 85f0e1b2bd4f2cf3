"""A micro-batching queue: many small concurrent requests judged as few large engine batches.

RL clients call a reward model once per rollout, hundreds of calls at once, one or two judge prompts
each (OpenRLHF's ``SingleTurnAgentExecutor``). The queue admits each call's prompts, waits up to
``wait_s`` after the first one (or until ``max_batch`` prompts are queued), and hands the collected
prompts to the engine together; at most ``max_in_flight`` batches run at once, so while the engine works
on one batch the next one fills up. Calls are refused (``Busy``, HTTP 429) only when more than
``max_pending`` prompts are admitted and not yet answered. A call's prompts stay together in one batch;
a call that gave up (timeout, disconnect) before its batch left is not sent to the engine.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Busy(Exception):
    """More prompts are waiting than the queue admits; the client should retry later."""


@dataclass
class _Entry(Generic[T]):
    items: Sequence[T]
    key: Hashable
    future: asyncio.Future = field(repr=False)


class MicroBatcher(Generic[T, R]):
    """Collects ``submit`` calls into batches for ``run_batch(items, key)``; calls of one batch that
    share a key (for example a sampling setting) go to ``run_batch`` as one list.

    ``run_batch`` returns one result per item, or an exception in an item's place to fail only the call
    that item came from.
    """

    def __init__(self, run_batch: Callable[[list[T], Hashable], Awaitable[Sequence[R | BaseException]]],
                 max_batch: int = 256, wait_s: float = 0.005, max_pending: int = 8192, max_in_flight: int = 2):
        if max_batch < 1 or max_pending < 1 or max_in_flight < 1 or wait_s < 0:
            raise ValueError("max_batch, max_pending and max_in_flight must be >= 1 and wait_s >= 0")
        self.run_batch = run_batch
        self.max_batch, self.wait_s, self.max_pending = max_batch, wait_s, max_pending
        self._slots = asyncio.Semaphore(max_in_flight)
        self._queue: deque[_Entry[T]] = deque()
        self._queued_items = 0
        self._arrived = asyncio.Event()
        self._worker: asyncio.Task | None = None
        self._running: set[asyncio.Task] = set()
        self.pending = 0  # items admitted and not yet answered
        self.batches = 0  # batches sent, and the items in them (what batching promises are about)
        self.batched_items = 0

    async def submit(self, items: Sequence[T], key: Hashable = None) -> list[R]:
        """The results for ``items``, in order, once their batch has run."""
        if not items:
            return []
        if self.pending + len(items) > self.max_pending:
            raise Busy(f"{self.pending} prompts are waiting for the engine; the server admits {self.max_pending}")
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self.pending += len(items)
        self._queue.append(_Entry(items, key, future))
        self._queued_items += len(items)
        self._arrived.set()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._dispatch())
        try:
            return await future
        finally:
            self.pending -= len(items)

    async def _dispatch(self) -> None:
        while True:
            await self._slots.acquire()
            while not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.wait_s
            while self._queued_items < self.max_batch and (left := deadline - loop.time()) > 0:
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), left)
                except TimeoutError:
                    break
            batch = self._take()
            if not batch:
                self._slots.release()
                continue
            task = asyncio.create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    def _take(self) -> list[_Entry[T]]:
        """Queued calls up to ``max_batch`` items (a larger call alone), skipping calls already given up."""
        batch: list[_Entry[T]] = []
        size = 0
        while self._queue:
            entry = self._queue[0]
            if batch and size + len(entry.items) > self.max_batch:
                break
            self._queue.popleft()
            self._queued_items -= len(entry.items)
            if entry.future.done():  # cancelled while waiting
                continue
            batch.append(entry)
            size += len(entry.items)
        return batch

    async def _run(self, batch: list[_Entry[T]]) -> None:
        try:
            self.batches += 1
            self.batched_items += sum(len(e.items) for e in batch)
            by_key: dict[Hashable, list[_Entry[T]]] = {}
            for entry in batch:
                by_key.setdefault(entry.key, []).append(entry)
            await asyncio.gather(*(self._run_key(key, entries) for key, entries in by_key.items()))
        finally:
            self._slots.release()

    async def _run_key(self, key: Hashable, entries: list[_Entry[T]]) -> None:
        flat = [item for entry in entries for item in entry.items]
        try:
            results: Sequence[Any] = await self.run_batch(flat, key)
            if len(results) != len(flat):
                raise RuntimeError(f"batch of {len(flat)} items got {len(results)} results")
        except Exception as exc:
            results = [exc] * len(flat)
        start = 0
        for entry in entries:
            mine = results[start:start + len(entry.items)]
            start += len(entry.items)
            if entry.future.done():
                continue
            failed = next((r for r in mine if isinstance(r, BaseException)), None)
            if failed is not None:
                entry.future.set_exception(failed)
            else:
                entry.future.set_result(list(mine))

    async def close(self) -> None:
        """Stop dispatching and wait for the batches already sent."""
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        await asyncio.gather(*self._running, return_exceptions=True)
