"""Micro-batching: concurrent requests gathered into one call of a batch function, off the event loop.

One :class:`MicroBatcher` per kind of work (answers, retrievals). A request ``await``s
:meth:`MicroBatcher.submit`; a single gathering task takes the first waiting job, then keeps taking
jobs until ``max_batch`` are gathered or ``max_wait_ms`` have passed since the first, and runs the
batch function on the batch in an executor. Every batcher of an app shares one single-thread
executor, so the model (one copy, not thread-safe) runs one batch at a time and the event loop
keeps accepting requests meanwhile. ``max_batch=1`` turns batching off (each request its own call).

The batch function gets the payloads and returns one result per payload, in order; a result that
is an ``Exception`` is raised to that request alone (one bad question does not fail its batch).
"""
from __future__ import annotations

import asyncio
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence


class QueueFull(Exception):
    """More requests are waiting than ``max_queue``: the client should retry later (HTTP 503)."""


@dataclass
class _Job:
    payload: Any
    future: asyncio.Future
    queued: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    """Gathers jobs into batches of up to ``max_batch`` within ``max_wait_ms`` (module docstring).

    ``on_batch(size, seconds)`` is called after each batch (metrics)."""

    def __init__(self, fn: Callable[[Sequence[Any]], Sequence[Any]], executor: Executor, max_batch: int = 8,
                 max_wait_ms: float = 5.0, max_queue: int = 256, on_batch: Callable[[int, float], None] | None = None):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.fn, self.executor = fn, executor
        self.max_batch, self.max_wait = max_batch, max(0.0, max_wait_ms) / 1000.0
        self.max_queue = max_queue
        self.on_batch = on_batch
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task | None = None

    @property
    def depth(self) -> int:
        """Jobs waiting to be gathered."""
        return 0 if self._queue is None else self._queue.qsize()

    def start(self) -> None:
        """Start the gathering task on the running event loop (idempotent)."""
        if self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._gather_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
        while self._queue is not None and not self._queue.empty():  # nobody will answer them now
            job = self._queue.get_nowait()
            if not job.future.done():
                job.future.set_exception(QueueFull("the server is shutting down"))

    async def submit(self, payload: Any) -> Any:
        """The batch function's result for ``payload`` (raises its exception for this payload)."""
        self.start()
        if self._queue.qsize() >= self.max_queue:
            raise QueueFull(f"{self._queue.qsize()} requests are already waiting (--max-queue {self.max_queue})")
        fut = asyncio.get_running_loop().create_future()
        await self._queue.put(_Job(payload, fut))
        return await fut

    async def _gather_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            batch = [first]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch:
                left = deadline - loop.time()
                if left <= 0 and self._queue.empty():
                    break
                try:  # take what is already queued even when the wait is over
                    batch.append(self._queue.get_nowait() if left <= 0 else
                                 await asyncio.wait_for(self._queue.get(), left))
                except (asyncio.TimeoutError, asyncio.QueueEmpty):
                    break
            batch = [j for j in batch if not j.future.done()]  # a request that timed out is not run
            if not batch:
                continue
            t0 = time.perf_counter()
            try:
                results = await loop.run_in_executor(self.executor, self.fn, [j.payload for j in batch])
            except Exception as e:  # the batch function failed as a whole: every request gets the error
                results = [e] * len(batch)
            if self.on_batch is not None:
                self.on_batch(len(batch), time.perf_counter() - t0)
            for job, res in zip(batch, results):
                if job.future.done():
                    continue
                if isinstance(res, BaseException):
                    job.future.set_exception(res)
                else:
                    job.future.set_result(res)
