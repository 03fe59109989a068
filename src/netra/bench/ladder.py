"""The ladder: add viewers in steps, let the server settle, measure it over a window.

It stops at the first step with loss over 1 %, server CPU over 90 % or a viewer that could not
join, or when it reaches its bound in viewers or time. The server runs pinned to one core and
this process to another, so the load generator never competes with what it measures.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from netra.bench import procstat
from netra.bench.bot import ViewerBot
from netra.bench.clip import Clip
from netra.bench.counter import Counter
from netra.bench.publisher import SyntheticPublisher
from netra.bench.target import Target
from netra.observability.loop_lag import LoopLag

LOSS_LIMIT = 0.01
CPU_LIMIT = 0.90
JOIN_TIMEOUT = 20.0


@dataclass
class LadderOptions:
    step: int = 25
    max_viewers: int = 500
    settle: float = 3.0
    window: float = 6.0
    time_limit: float = 900.0
    impaired: int = 1  # viewers (of the first step) whose path drops packets
    server_cpu: int | None = 0
    load_cpu: int | None = 1
    native_bots: bool = True  # bots count in a native receive thread (bench/counter.py)
    server_cores: float = 1.0  # the CPU the server may use: its limit is 90 % of that


@dataclass
class Step:
    viewers: int
    cpu: float  # share of one core
    rss_mb: float
    loss: float  # healthy viewers: the larger of sequence-gap loss and missing frames
    worst_loss: float
    mbps_per_viewer: float
    us_per_packet_viewer: float | None
    connect_ms: tuple[float | None, float | None]  # p50, p95 of this step's joiners
    first_keyframe_ms: tuple[float | None, float | None]  # p50, p95, from the answer
    keyframe_after_connect_ms: tuple[float | None, float | None]  # p50, p95
    latency_ms: tuple[float | None, float | None]  # p50, p99, publisher send -> bot receive
    keyframe_requests: int  # received by the publisher during this step
    load_cpu: float
    failed_joins: int
    impaired_loss: float | None
    server: dict[str, object] = field(default_factory=dict)  # Target.diagnostics() at the end
    load_lag_ms: dict[str, float | None] = field(default_factory=dict)  # this process's loop
    # The calibration loop, timed after this step's window: the VM's speed drifts (2-3x over
    # an hour here), and a ladder whose speed changed mid-way measured two machines.
    calibration_ms: float = 0.0
    passed: bool = False
    why: str = ""


@dataclass
class LadderResult:
    target: str
    options: LadderOptions
    calibration_ms: float
    clip: dict[str, float]
    steps: list[Step] = field(default_factory=list)
    max_keyframe_requests_per_second: int = 0
    baseline_cpu: float = 0.0
    baseline_rss_mb: float = 0.0

    @property
    def passed(self) -> list[Step]:
        return [s for s in self.steps if s.passed]

    @property
    def most_viewers(self) -> int:
        return max((s.viewers for s in self.passed), default=0)

    def slope(self, y: Callable[[Step], float | None], x: Callable[[Step], float]) -> float | None:
        points = [(x(s), y(s)) for s in self.passed]
        pairs = [(a, b) for a, b in points if b is not None]
        if len(pairs) < 2:
            return None
        return statistics.linear_regression([a for a, _ in pairs], [b for _, b in pairs]).slope

    @property
    def drift(self) -> float | None:
        """How much slower (>1) or faster the machine was at the last step than at the start."""
        if not self.steps or not self.calibration_ms or not self.steps[-1].calibration_ms:
            return None
        return self.steps[-1].calibration_ms / self.calibration_ms

    @property
    def marginal_us(self) -> float | None:
        """Slope of server CPU against packet-viewers per second over the passing steps."""
        pps = self.clip["packets_per_second"]
        slope = self.slope(lambda s: s.cpu, lambda s: s.viewers * pps)
        return None if slope is None else slope * 1e6

    @property
    def rss_per_viewer_mb(self) -> float | None:
        return self.slope(lambda s: s.rss_mb, lambda s: float(s.viewers))

    def to_json(self) -> dict[str, object]:
        return {
            "target": self.target,
            "options": asdict(self.options),
            "calibration_ms": round(self.calibration_ms, 1),
            "clip": self.clip,
            "baseline": {"cpu": self.baseline_cpu, "rss_mb": self.baseline_rss_mb},
            "steps": [asdict(s) for s in self.steps],
            "most_viewers": self.most_viewers,
            "marginal_us_per_packet_viewer": _round(self.marginal_us, 2),
            "rss_per_viewer_mb": _round(self.rss_per_viewer_mb, 3),
            "max_keyframe_requests_per_second": self.max_keyframe_requests_per_second,
            "drift": _round(self.drift, 2),
        }


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ms(values: list[float], q: float) -> float | None:
    value = percentile(values, q)
    return None if value is None else round(value * 1000, 1)


def max_per_second(times: list[float]) -> int:
    """The most events inside any one-second window."""
    best = start = 0
    for end, t in enumerate(times):
        while t - times[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


class _Snapshot:
    """Counters of every viewer at one instant, to subtract across a window."""

    def __init__(
        self, bots: list[ViewerBot], publisher: SyntheticPublisher, pids: list[int]
    ) -> None:
        self.at = time.perf_counter()
        self.server_cpu = procstat.total_cpu_seconds(pids)
        self.load_cpu = procstat.cpu_seconds(os.getpid())
        self.frames_sent = publisher.frames_sent
        self.per_bot = {
            bot.index: {
                ssrc: (s.expected, s.packets, s.frames, s.octets) for ssrc, s in bot.streams.items()
            }
            for bot in bots
        }


def _start_window(
    bots: list[ViewerBot], publisher: SyntheticPublisher, pids: list[int]
) -> _Snapshot:
    for bot in bots:  # latency samples are kept per window
        for stream in bot.streams.values():
            stream.clear_latencies()
    return _Snapshot(bots, publisher, pids)


def _measure(
    viewers: int,
    bots: list[ViewerBot],
    joiners: list[ViewerBot],
    failed: int,
    before: _Snapshot,
    after: _Snapshot,
    pids: list[int],
    keyframe_requests: int,
) -> Step:
    elapsed = after.at - before.at
    frames_published = after.frames_sent - before.frames_sent
    expected = missing = packets = octets = 0
    frame_ratios: list[float] = []
    worst = 0.0
    latencies: list[float] = []
    impaired_losses: list[float] = []
    for bot in bots:
        b0, b1 = before.per_bot.get(bot.index, {}), after.per_bot.get(bot.index, {})
        bot_expected = bot_missing = 0
        frames = 0
        for ssrc, (e1, p1, f1, o1) in b1.items():
            e0, p0, f0, o0 = b0.get(ssrc, (e1, p1, f1, o1))
            bot_expected += e1 - e0
            bot_missing += max(0, (e1 - e0) - (p1 - p0))
            packets += p1 - p0
            octets += o1 - o0
            if bot.streams[ssrc].video:
                frames += f1 - f0
        # One frame of slack: a window's edges cut the publisher's and the viewer's counts at
        # slightly different frames (the one in flight).
        short = max(0, frames_published - frames - 1)
        frame_loss = short / frames_published if frames_published > 0 else 0.0
        bot_loss = max(bot_missing / bot_expected if bot_expected else 1.0, frame_loss)
        if bot.impaired:
            impaired_losses.append(bot_loss)
            continue
        expected += bot_expected
        missing += bot_missing
        frame_ratios.append(frame_loss)
        worst = max(worst, bot_loss)
        for stream in bot.streams.values():
            latencies.extend(stream.latency_samples())
    healthy = [b for b in bots if not b.impaired]
    gap_loss = missing / expected if expected else (1.0 if healthy else 0.0)
    frame_loss = statistics.fmean(frame_ratios) if frame_ratios else 0.0
    cpu_used = after.server_cpu - before.server_cpu
    connect = [b.connect_seconds for b in joiners if b.connect_seconds is not None]
    keyframes = [
        k if k is not None else float("inf")
        for k in (b.first_keyframe_seconds for b in joiners if not b.impaired)
    ]
    after_connect = [
        k if k is not None else float("inf")
        for k in (b.keyframe_after_connect_seconds for b in joiners if not b.impaired)
    ]
    return Step(
        viewers=viewers,
        cpu=round(cpu_used / elapsed, 4),
        rss_mb=round(procstat.total_rss_bytes(pids) / 2**20, 1),
        loss=round(max(gap_loss, frame_loss), 5),
        worst_loss=round(worst, 5),
        mbps_per_viewer=round(octets * 8 / elapsed / max(1, len(bots)) / 1e6, 3),
        us_per_packet_viewer=round(cpu_used / packets * 1e6, 2) if packets else None,
        connect_ms=(_ms(connect, 0.5), _ms(connect, 0.95)),
        first_keyframe_ms=(_ms(keyframes, 0.5), _ms(keyframes, 0.95)),
        keyframe_after_connect_ms=(_ms(after_connect, 0.5), _ms(after_connect, 0.95)),
        latency_ms=(_ms(latencies, 0.5), _ms(latencies, 0.99)),
        keyframe_requests=keyframe_requests,
        load_cpu=round((after.load_cpu - before.load_cpu) / elapsed, 3),
        failed_joins=failed,
        impaired_loss=round(statistics.fmean(impaired_losses), 4) if impaired_losses else None,
    )


def _verdict(step: Step, cores: float) -> str:
    if step.failed_joins:
        return f"{step.failed_joins} viewers could not join"
    if step.loss > LOSS_LIMIT:
        return f"loss {step.loss:.1%} > {LOSS_LIMIT:.0%}"
    if step.cpu > CPU_LIMIT * cores:
        return f"CPU {step.cpu:.0%} > {CPU_LIMIT:.0%} of {cores:g} cores"
    return ""


async def _join(bots: list[ViewerBot], target: Target) -> int:
    results = await asyncio.gather(
        *(bot.start(target, JOIN_TIMEOUT) for bot in bots), return_exceptions=True
    )
    return sum(1 for r in results if isinstance(r, BaseException))


async def run_ladder(
    target: Target,
    clip: Clip,
    options: LadderOptions,
    on_step: Callable[[Step], None] = lambda step: None,
) -> LadderResult:
    if options.load_cpu is not None:
        os.sched_setaffinity(0, {options.load_cpu})
    result = LadderResult(
        target=target.name,
        options=options,
        calibration_ms=procstat.calibration_ms(),
        clip={
            "width": clip.width,
            "height": clip.height,
            "fps": clip.fps,
            "video_mbps": round(clip.video_bitrate / 1e6, 3),
            "packets_per_second": round(clip.packets_per_second, 1),
        },
    )
    started = time.perf_counter()
    load_lag = LoopLag()  # a late load generator would be charged to the server
    load_lag.start()
    await target.start(options.server_cpu)
    publisher = SyntheticPublisher(clip)
    bots: list[ViewerBot] = []
    ticker: asyncio.Task[None] | None = None
    counter: Counter | None = None
    try:
        await publisher.start(target)
        assert publisher.video is not None
        video_log = publisher.video.log
        if options.native_bots:
            counter = Counter(video_log, capacity=options.max_viewers + options.step)

        async def tick() -> None:
            # Each bot reports once a second at its own phase, as independent browsers do;
            # all at once would be a burst of hundreds of RTCP packets every second.
            slots = 20
            for beat in itertools.count():
                await asyncio.sleep(1.0 / slots)
                now = time.perf_counter()
                for bot in bots[beat % slots :: slots]:
                    bot.tick(now)

        ticker = asyncio.create_task(tick(), name="bench-rtcp")
        await asyncio.sleep(options.settle)
        before = _start_window(bots, publisher, target.pids)
        await asyncio.sleep(options.window)
        after = _Snapshot(bots, publisher, target.pids)
        result.baseline_cpu = round(
            (after.server_cpu - before.server_cpu) / (after.at - before.at), 4
        )
        result.baseline_rss_mb = round(procstat.total_rss_bytes(target.pids) / 2**20, 1)
        while len(bots) < options.max_viewers:
            if time.perf_counter() - started > options.time_limit:
                break
            step_start = time.perf_counter()
            joiners = [
                ViewerBot(
                    len(bots) + i,
                    video_log,
                    impaired=len(bots) + i < options.impaired,
                    counter=counter,
                )
                for i in range(min(options.step, options.max_viewers - len(bots)))
            ]
            bots.extend(joiners)
            failed = await _join(joiners, target)
            # This process's own full collections would stall every bot at once and show up
            # as server latency and loss: the bots live until the end, so freeze them.
            gc.freeze()
            await asyncio.sleep(options.settle)
            before = _start_window(bots, publisher, target.pids)
            await asyncio.sleep(options.window)
            after = _Snapshot(bots, publisher, target.pids)
            requests = sum(1 for t in publisher.keyframe_requests if t >= step_start)
            step = _measure(len(bots), bots, joiners, failed, before, after, target.pids, requests)
            with contextlib.suppress(Exception):
                step.server = await target.diagnostics()
            step.load_lag_ms = load_lag.snapshot()
            step.calibration_ms = round(procstat.calibration_ms(), 1)
            step.why = _verdict(step, options.server_cores)
            step.passed = not step.why
            result.steps.append(step)
            on_step(step)
            if not step.passed:
                break
        result.max_keyframe_requests_per_second = max_per_second(publisher.keyframe_requests)
    finally:
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        await load_lag.stop()
        await _close_all(bots, publisher)
        if counter is not None:
            await counter.close()
        gc.unfreeze()
        await target.stop()
    return result


async def _close_all(bots: list[ViewerBot], publisher: SyntheticPublisher) -> None:
    for start in range(0, len(bots), 50):  # in slices: hundreds of closes at once stall
        await asyncio.gather(
            *(asyncio.wait_for(b.close(), 10) for b in bots[start : start + 50]),
            return_exceptions=True,
        )
    with contextlib.suppress(Exception):
        await asyncio.wait_for(publisher.close(), 10)
