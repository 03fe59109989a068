"""The garbage-collector policy of a running server: no long pause on the forwarding path, and
memory that comes back after viewers leave (issue 9; measured in docs/benchmarks.md, "Memory:
churn, soak and the garbage collector").

What drives it, on CPython 3.11 and glibc:
- aiortc's peer connections are full of reference cycles, and a viewer's objects reach the
  oldest generation within seconds of joining: once it leaves, only a full collection frees
  them. Run too few (the old thresholds, 700/10/100) and memory climbs with every viewer who
  came and went.
- A full collection scans every tracked object that is not frozen, live or garbage, with the
  event loop stopped: its pause grows with the viewers connected (~1,500 objects each) and
  with the garbage waiting.
- What aiortc frees in C (OpenSSL, libsrtp) goes back to glibc's heap, not to the system,
  until malloc_trim() is called.

The policy:
1. `configure_gc()`, before the loop starts: collect, then freeze what start-up made (modules,
   the app), which no collection scans again; Python's default thresholds; every collection
   timed (`snapshot()`).
2. `FULL_COLLECTIONS`, which the app starts and stops in its loop, takes full collections over
   from the interpreter, which would run one from whichever allocation crosses its threshold.
   It looks at the Python heap (`sys.getallocatedblocks()`) once a second and runs a full
   collection itself, timed, if young collections have promoted anything since the last one,
   when:
   - the heap has grown by GROWTH of what the last one left to scan, as the interpreter's own
     rule does: garbage never grows past a quarter of what the viewers use, so neither does
     the pause (a pause is the live objects plus the garbage);
   - or, not within the last one's CPU time / MAX_DUTY seconds (100 ms of it are followed
     by 5 s without another), it would be short (the last one's CPU time scaled by the heap,
     under PAUSE_BUDGET_MS) and there is something to free: the heap grew (SWEEP_GROWTH) or
     peers closed. A small server gives back what leavers left within seconds; a busy one
     does not pause for it;
   - or, whatever it costs, the last was MAX_AGE seconds ago and peers closed since (or the
     app does not count them): the garbage of a big room that emptied is not kept for ever,
     and a busy server pauses for it at most once in five minutes.
   When a collection freed something, malloc_trim(0) hands glibc's free pages back.
3. Not done: freezing the survivors of each full collection. The next ones would be short,
   but a frozen object is never collected again: a viewer connected at a freeze would leak
   when it left, unless a full collection of everything (the long pause) unfroze it.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any

CHECK_EVERY = 1.0  # seconds between looks at the heap; also the shortest gap between two
MAX_DUTY = 0.02  # of the loop's time, at most, in full collections: the gap after a pause
GROWTH = 0.25  # of the heap the last full collection left to scan: collect now
# Heap blocks (~1 MB, three viewers' garbage): never urgent below this. Freeing garbage costs
# more per object than scanning what lives, so small servers collect small batches.
MIN_GROWTH = 10_000
PAUSE_BUDGET_MS = 20.0  # a full collection predicted shorter than this runs when useful
SWEEP_GROWTH = 5_000  # heap blocks, about what one viewer leaves behind: worth a sweep
MAX_AGE = 300.0  # seconds: the longest garbage waits, whatever the pause
NEVER = 1 << 30  # a generation-2 threshold the interpreter never reaches
RECENT = 256  # full-collection pauses kept for the percentiles

_startup_heap = 0  # heap blocks when configure_gc() froze start-up's objects


def _malloc_trim() -> Callable[[], object] | None:
    """glibc's malloc_trim(0), or None elsewhere (musl, macOS)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the process's own symbols: libc's among them
    except (OSError, AttributeError):
        return None
    return lambda: trim(0)


class GcPauses:
    """Times every collection through gc.callbacks: how many per generation, how long."""

    def __init__(self) -> None:
        self.collections = [0, 0, 0]
        self.collected = [0, 0, 0]
        self.total_ms = [0.0, 0.0, 0.0]
        self.max_ms = [0.0, 0.0, 0.0]
        self.recent_full_ms: deque[float] = deque(maxlen=RECENT)
        # CPU time of the full collections: on a machine shared with other work, wall time
        # also counts the time the kernel gave the core to someone else.
        self.recent_full_cpu_ms: deque[float] = deque(maxlen=RECENT)
        self.full_cpu_ms = 0.0
        self.full_cpu_ms_max = 0.0
        self._started = 0.0
        self._started_cpu = 0.0
        self._installed = False

    def install(self) -> None:
        if not self._installed:
            gc.callbacks.append(self._on_gc)
            self._installed = True

    def uninstall(self) -> None:
        if self._installed:
            gc.callbacks.remove(self._on_gc)
            self._installed = False

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        # Collections never nest: the interpreter refuses one while another runs.
        generation = info["generation"]
        if phase == "start":
            self._started = time.perf_counter()
            if generation == 2:
                self._started_cpu = time.thread_time()
            return
        ms = (time.perf_counter() - self._started) * 1000
        self.collections[generation] += 1
        self.collected[generation] += info["collected"]
        self.total_ms[generation] += ms
        if ms > self.max_ms[generation]:
            self.max_ms[generation] = ms
        if generation == 2:
            self.recent_full_ms.append(ms)
            cpu_ms = (time.thread_time() - self._started_cpu) * 1000
            self.recent_full_cpu_ms.append(cpu_ms)
            self.full_cpu_ms += cpu_ms
            self.full_cpu_ms_max = max(self.full_cpu_ms_max, cpu_ms)

    def snapshot(self) -> dict[str, object]:
        recent = sorted(self.recent_full_ms)
        p99 = recent[min(len(recent) - 1, int(0.99 * len(recent)))] if recent else None
        return {
            "collections": list(self.collections),
            "collected": list(self.collected),
            "pause_ms_total": [round(v, 1) for v in self.total_ms],
            "pause_ms_max": [round(v, 1) for v in self.max_ms],
            "full_pause_ms_p99": None if p99 is None else round(p99, 1),
            "full_cpu_ms_total": round(self.full_cpu_ms, 1),
            "full_cpu_ms_max": round(self.full_cpu_ms_max, 1),
        }


class FullCollections:
    """Runs this process's full collections from the event loop (see the module)."""

    def __init__(self) -> None:
        self.scheduled = 0  # full collections this ran
        self.last_ms: float | None = None  # the pause of the last one
        # Its CPU time: what decides when the next may run. Wall time also counts the time
        # the kernel gave the core to another process, which no policy here can change.
        self.last_cpu_ms: float | None = None
        self.trims = 0
        self.trim_ms_max = 0.0
        self._trim: Callable[[], object] | None = None
        self._closed: Callable[[], int] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._threshold2 = 10
        self._base = 0  # heap blocks no collection scans: start-up's, frozen
        self._scanned = 0  # heap blocks when the last one ran, garbage included
        self._heap_after = 0  # heap blocks it left
        self._closed_after = 0  # peers closed when it ran
        self._last = 0.0  # time.monotonic() when it ran

    def start(self, closed: Callable[[], int] | None = None) -> None:
        """Take full collections over; call it in the running loop. Idempotent.

        `closed`, when given, counts the peer connections closed so far (it only grows): a
        departure is the surest sign of new garbage, so a cheap sweep then runs even when the
        heap has not grown (the last viewers of a room leaving), and a busy server with no
        departures never pauses for MAX_AGE."""
        if self._timer is not None:
            return
        self._closed = closed
        self._trim = _malloc_trim()
        young0, young1, self._threshold2 = gc.get_threshold()
        gc.set_threshold(young0, young1, NEVER)
        self._base = _startup_heap or sys.getallocatedblocks()
        self._heap_after = sys.getallocatedblocks()
        self._closed_after = closed() if closed else 0
        self._last = time.monotonic()
        self._timer = asyncio.get_running_loop().call_later(CHECK_EVERY, self._check)

    def stop(self) -> None:
        """Give full collections back to the interpreter. Idempotent."""
        if self._timer is None:
            return
        self._timer.cancel()
        self._timer = None
        young0, young1, _ = gc.get_threshold()
        gc.set_threshold(young0, young1, self._threshold2)

    def _check(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(CHECK_EVERY, self._check)
        closed = self._closed() - self._closed_after if self._closed else None
        if self.due(sys.getallocatedblocks(), time.monotonic(), gc.get_count()[2], closed):
            self.collect()

    def predicted_ms(self, heap: int) -> float:
        """What a full collection would cost now, in CPU ms: the last one's, scaled by the
        heap it would scan (0 before the first, which comes at start-up, when it is cheap)."""
        if self.last_cpu_ms is None:
            return 0.0
        scale = max(0, heap - self._base) / max(1, self._scanned - self._base)
        return self.last_cpu_ms * scale

    def due(self, heap: int, now: float, promotions: int, closed: int | None) -> bool:
        """Whether to collect now (a pure decision, given the state the last one left).

        `promotions`: young collections that moved survivors into the oldest generation since
        the last full one (gc.get_count()[2]): with none, it holds no new garbage.
        `closed`: peers closed since the last full collection, None when not counted."""
        if promotions == 0:
            return False
        grown = heap - self._heap_after
        if grown >= max(GROWTH * (self._heap_after - self._base), MIN_GROWTH):
            # Not held back: garbage left to pile up would only make the pause longer.
            return True
        since = now - self._last
        if since < (self.last_cpu_ms or 0.0) / 1000 / MAX_DUTY:
            return False
        useful = grown >= SWEEP_GROWTH or bool(closed)
        if useful and self.predicted_ms(heap) <= PAUSE_BUDGET_MS:
            return True
        return since >= MAX_AGE and closed != 0

    def collect(self) -> None:
        scanned = sys.getallocatedblocks()
        started, started_cpu = time.perf_counter(), time.thread_time()
        gc.collect()
        self.last_ms = (time.perf_counter() - started) * 1000
        self.last_cpu_ms = (time.thread_time() - started_cpu) * 1000
        self.scheduled += 1
        self._scanned = scanned
        self._heap_after = sys.getallocatedblocks()
        self._closed_after = self._closed() if self._closed else 0
        self._last = time.monotonic()
        if self._trim is not None and scanned - self._heap_after >= SWEEP_GROWTH:
            # What aiortc's C side freed (OpenSSL, libsrtp) sits in glibc's heap until then:
            # RSS would stay at the high-water mark of the garbage.
            started = time.perf_counter()
            self._trim()
            self.trims += 1
            self.trim_ms_max = max(self.trim_ms_max, (time.perf_counter() - started) * 1000)


PAUSES = GcPauses()
FULL_COLLECTIONS = FullCollections()


def configure_gc() -> None:
    """Before the event loop starts (app.run); FULL_COLLECTIONS.start() follows in the loop."""
    global _startup_heap
    gc.collect()  # start-up's garbage, so that it is not frozen with the rest
    gc.freeze()
    _startup_heap = sys.getallocatedblocks()
    gc.set_threshold(700, 10, 10)  # Python's defaults, until FULL_COLLECTIONS takes over
    PAUSES.install()


def snapshot() -> dict[str, object]:
    """The collector's counters, for /metrics. Per generation (0, 1, 2): collections, objects
    freed, pauses' total and worst (ms). Full collections: the p99 pause of the last 256, CPU
    time (total, worst), how many the server ran itself and the last one's pause, the
    malloc_trim calls after them and the longest. Objects frozen at start-up; the Python heap
    in blocks."""
    full = FULL_COLLECTIONS
    return {
        **PAUSES.snapshot(),
        "scheduled_full": full.scheduled,
        "last_full_ms": None if full.last_ms is None else round(full.last_ms, 1),
        "trims": full.trims,
        "trim_ms_max": round(full.trim_ms_max, 1),
        "frozen": gc.get_freeze_count(),
        "heap_blocks": sys.getallocatedblocks(),
    }
