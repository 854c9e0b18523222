"""A lane: the texts that queue for the model, and where its calls run.

Texts that arrive while the lane's call is running go together into its next call (up to
``max_batch_size``): a batch is formed when the call before it ends, not when its first text
arrives. Ray Serve's ``@serve.batch`` forms a batch at the arrival of its first text, so with
no wait (``batch_wait_timeout_s=0``) and one model thread every batch held one text and the
others queued behind it one by one (bench/serving.py, 2 cores: concurrency-32 throughput equal
to concurrency 1's); waiting for a batch to fill instead costs every lone request that wait.
Here a lone text runs at once, and under load each call takes everything that queued meanwhile.
``wait_s`` > 0 still lets a batch wait that long for more texts before it runs.

A lane's calls run on a worker thread of its own, or ``inline`` on the event loop. Inline
suits short calls (a batch of tweets: milliseconds): a hand-off to a thread and back costs two
wake-ups and a GIL exchange per call, and while the model holds the GIL the loop could not
parse much anyway (bench/README.md, 2026-12-08: one replica, 2 cores, inline against a thread,
paired runs: concurrency-32 throughput +30%, the replica's CPU per request 0.77-0.88 against
0.96-1.18 ms). After an inline call the loop runs a few rounds, so the requests that arrived
meanwhile reach the queue before the next call is formed. A thread suits calls that may be
long (a 10,000-character text): the loop keeps answering (``/health``, other lanes) meanwhile.

Each text's answer comes back with when its call started and how long the call ran (the
``Server-Timing`` header's ``wait`` and ``model``). A text whose request gave up (its awaiting
task was cancelled: the 504 budget) is left out of the next call.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

Answer = tuple[Any, float, float]  # (result, call start as perf_counter, call seconds)
ARRIVAL_ROUNDS = 3  # loop rounds after an inline call: a request's socket read, its ASGI task, submit


class Lane:
    def __init__(self, run: Callable[[list[str]], list[Any]], max_batch_size: int,
                 wait_s: float = 0.0, name: str = "lane", inline: bool = False) -> None:
        self._run, self._max, self._wait_s = run, max_batch_size, wait_s
        self._thread = None if inline else ThreadPoolExecutor(1, thread_name_prefix=f"profner-{name}")
        self._queue: list[tuple[str, asyncio.Future]] = []
        self._draining = False

    async def submit(self, text: str) -> Answer:
        """The answer for ``text``, from the lane's next call that takes it."""
        future = asyncio.get_running_loop().create_future()
        self._queue.append((text, future))
        if not self._draining:
            self._draining = True
            asyncio.ensure_future(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                if self._wait_s:
                    await asyncio.sleep(self._wait_s)
                batch = [item for item in self._queue[: self._max] if not item[1].done()]
                del self._queue[: self._max]
                if not batch:
                    continue
                started = time.perf_counter()
                texts = [text for text, _ in batch]
                try:
                    results = (self._run(texts) if self._thread is None else
                               await loop.run_in_executor(self._thread, self._run, texts))
                except Exception as error:  # noqa: BLE001 - every waiting request gets it
                    results = [error] * len(batch)
                seconds = time.perf_counter() - started
                for (_, future), result in zip(batch, results):
                    if not future.done():
                        future.set_result((result, started, seconds))
                if self._thread is None:
                    for _ in range(ARRIVAL_ROUNDS):
                        await asyncio.sleep(0)
        finally:
            self._draining = False
