"""How late the event loop wakes up: every packet waits behind whatever holds the loop.

A task asks to sleep SAMPLE_INTERVAL and records how much later it woke; the worst and the
99th percentile over the last WINDOW samples are what `/api/rooms` and `/metrics` report. A
lag of tens of milliseconds is latency added to every viewer at once (a garbage collection, a
burst of joins), which per-packet counters cannot show.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

SAMPLE_INTERVAL = 0.05
WINDOW = 200  # samples: the last ten seconds


class LoopLag:
    def __init__(self) -> None:
        self._samples: deque[float] = deque(maxlen=WINDOW)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time() + SAMPLE_INTERVAL
            await asyncio.sleep(SAMPLE_INTERVAL)
            self._samples.append(max(0.0, loop.time() - asked))

    def snapshot(self) -> dict[str, float | None]:
        if not self._samples:
            return {"max_ms": None, "p99_ms": None}
        ordered = sorted(self._samples)
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        return {"max_ms": round(ordered[-1] * 1000, 1), "p99_ms": round(p99 * 1000, 1)}
