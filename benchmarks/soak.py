"""A long watch: one streamer and `--viewers` viewers for `--minutes`, and what the server's
memory, the viewers' loss and their freezes do over that time.

    unshare -n sh -c 'ip link set lo up; .venv/bin/python benchmarks/soak.py \
        [--minutes 10] [--viewers 20] [--gc netra] [--churn 0 --churn-every 10] \
        [--forced-collections 0] [--pin] [--json F] [--chart F]'

- The server: `netra serve` in a subprocess with the probe of benchmarks/churn.py: its GC
  policy chosen by `--gc`, GET /_probe for tasks, peer connections and GC counters.
- The streamer: netra bench's synthetic 720p30 VP8 + Opus publisher (~300 RTP packets a
  second), in a process of its own (`soak.py publish`), so that the viewers' work here never
  stalls its clock.
- The viewers: netra bench's viewer bots (real aiortc peers over Netra's WebSocket protocol
  that count packets instead of decoding them, and send receiver reports, NACKs and PLIs as a
  browser would), each also timing the gaps between the video frames it receives (RTP marker
  bits): a gap over `--freeze-ms` (200) is a freeze. `--churn N --churn-every S` replaces N
  viewers every S seconds (they leave; N new ones join): the collector at work with the room
  full.

Every `--interval` seconds (10) it records: server RSS, descriptors, asyncio tasks, peer
connections not freed, event-loop lag, full collections (wall and CPU time of each); over the
viewers: loss (sequence gaps not repaired, as a share of packets expected), freezes, the
longest gap between frames, video frames received against the clip's frame rate, and this
process's own loop lag (a gap it causes is not the server's). Memory is read from the first
window on, once every viewer has joined. `--forced-collections N` then asks the server for N
full collections, 1 s apart, timed: what one costs with this room. It prints a row per window
and a summary (RSS first, last and its slope per minute; pauses; freezes), and writes JSON
(`--json`) and a PNG chart (`--chart`). It stops early if the server ends the stream.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from churn import POLICIES, Server, new_chart, run_async, save_chart  # noqa: E402 - beside this script

from netra.bench.bot import ViewerBot  # noqa: E402
from netra.bench.clip import load_clip  # noqa: E402
from netra.bench.publisher import SyntheticPublisher  # noqa: E402
from netra.bench.target import pinned, stop_process  # noqa: E402
from netra.media import aiortc_private  # noqa: E402
from netra.observability.loop_lag import LoopLag  # noqa: E402

JOIN_TIMEOUT = 30.0
PUBLISH_TIMEOUT = 30.0  # for the publisher to go live
MAX_PUBLISH_SECONDS = 24 * 3600.0  # a publisher left behind ends by itself
RECENT = 256  # full-collection pauses the probe keeps (netra.memory.RECENT)


class Watcher(ViewerBot):
    """A viewer bot that also times the gaps between the video frames it receives."""

    def __init__(self, index: int, freeze_s: float) -> None:
        super().__init__(index, None)
        self.freeze_s = freeze_s
        self.last_frame_at: float | None = None
        self.freezes: list[tuple[float, float]] = []  # (when it ended, gap seconds)
        self.longest_gap = 0.0  # in the current window

    def _on_rtp(self, data: bytes) -> None:
        # The end of a video frame: the marker bit on a packet of a video payload type.
        if data[1] & 0x80 and (data[1] & 0x7F) in self.video_payload_types:
            now = time.perf_counter()
            if self.last_frame_at is not None:
                gap = now - self.last_frame_at
                self.longest_gap = max(self.longest_gap, gap)
                if gap > self.freeze_s:
                    self.freezes.append((now, gap))
            self.last_frame_at = now
        super()._on_rtp(data)


@dataclass
class Window:
    t: float  # seconds since every viewer had joined, at the window's end
    viewers: int
    rss_mb: float
    fds: int
    tasks: int | None
    pcs_alive: int | None
    loop_lag_p99_ms: float | None
    loop_lag_max_ms: float | None
    full_collections: int  # in this window
    full_pause_max_ms: float | None  # in this window
    full_cpu_max_ms: float | None  # the CPU time of the longest
    loss: float  # sequence gaps not repaired / expected, all viewers
    frames_ratio: float | None  # video frames received per viewer / the clip's frame rate
    freezes: int  # gaps over --freeze-ms, all viewers
    longest_gap_ms: float
    # This process's own loop lag, p99/max over the last 10 s: a gap it causes is not the
    # server's.
    load_lag_p99_ms: float | None = None
    load_lag_max_ms: float | None = None
    loadavg: tuple[float, float, float] = field(default_factory=os.getloadavg)


@dataclass
class Soak:
    policy: str
    options: dict[str, str]
    windows: list[Window] = field(default_factory=list)
    full_pauses_ms: list[float] = field(default_factory=list)  # wall time
    full_pauses_cpu_ms: list[float] = field(default_factory=list)  # CPU time of the same
    failed_joins: int = 0
    replaced: int = 0
    ended: str | None = None  # why the soak stopped early
    forced: list[dict[str, Any]] = field(default_factory=list)  # --forced-collections
    summary: dict[str, Any] = field(default_factory=dict)


class Counts:
    """The viewers' counters at one instant, to subtract across a window."""

    def __init__(self, watchers: list[Watcher]) -> None:
        self.at = time.monotonic()
        self.per_viewer = {
            w.index: {s.ssrc: (s.expected, s.packets, s.frames) for s in w.streams.values()}
            for w in watchers
        }


def window_delivery(
    watchers: list[Watcher], before: Counts, after: Counts, fps: int
) -> tuple[float, float | None]:
    """Loss and the frames ratio of the viewers present at both ends of the window."""
    expected = missing = 0
    ratios = []
    published = round((after.at - before.at) * fps)  # the publisher keeps its own clock
    for watcher in watchers:
        b0, b1 = before.per_viewer.get(watcher.index), after.per_viewer.get(watcher.index)
        if not b0 or not b1:
            continue  # joined during the window
        frames = 0
        for ssrc, (e1, p1, f1) in b1.items():
            e0, p0, f0 = b0.get(ssrc, (e1, p1, f1))
            expected += e1 - e0
            missing += max(0, (e1 - e0) - (p1 - p0))
            if watcher.streams[ssrc].video:
                frames += f1 - f0
        if published > 0:
            ratios.append(frames / published)
    loss = missing / expected if expected else 0.0
    return loss, (statistics.mean(ratios) if ratios else None)


async def join(server: Server, watchers: list[Watcher], soak: Soak) -> list[Watcher]:
    """Start these viewers together; returns those that connected."""
    results = await asyncio.gather(
        *(asyncio.wait_for(w.start(server), JOIN_TIMEOUT) for w in watchers),  # type: ignore[arg-type]
        return_exceptions=True,
    )
    joined = []
    for watcher, result in zip(watchers, results, strict=True):
        if isinstance(result, BaseException) or watcher.failed:
            soak.failed_joins += 1
            with contextlib.suppress(Exception):
                await watcher.close()
        else:
            joined.append(watcher)
    return joined


class Room:
    """The viewers watching now, and what the ones who left took with them this window."""

    def __init__(self, server: Server, soak: Soak, freeze_s: float, batch: int) -> None:
        self.server = server
        self.batch = batch
        self.soak = soak
        self.freeze_s = freeze_s
        self.watchers: list[Watcher] = []
        self.made = 0
        self.left_freezes = 0
        self.left_longest_gap = 0.0

    async def add(self, count: int) -> None:
        while count > 0:
            batch = [Watcher(self.made + i, self.freeze_s) for i in range(min(self.batch, count))]
            self.made += len(batch)
            count -= len(batch)
            self.watchers.extend(await join(self.server, batch, self.soak))

    async def replace(self, count: int) -> None:
        leaving, self.watchers = self.watchers[:count], self.watchers[count:]
        for watcher in leaving:
            self.left_freezes += len(watcher.freezes)
            self.left_longest_gap = max(self.left_longest_gap, watcher.longest_gap)
        await asyncio.gather(*(w.close() for w in leaving), return_exceptions=True)
        self.soak.replaced += len(leaving)
        await self.add(len(leaving))

    def take_freezes(self) -> tuple[int, float]:
        """Freezes and the longest gap since the last call; starts counting anew."""
        freezes = self.left_freezes + sum(len(w.freezes) for w in self.watchers)
        longest = max([self.left_longest_gap, *(w.longest_gap for w in self.watchers)])
        self.left_freezes, self.left_longest_gap = 0, 0.0
        for watcher in self.watchers:
            watcher.freezes.clear()
            watcher.longest_gap = 0.0
        return freezes, longest

    def tick(self) -> None:
        now = time.perf_counter()
        for watcher in list(self.watchers):
            watcher.tick(now)

    async def close(self) -> None:
        await asyncio.gather(*(w.close() for w in self.watchers), return_exceptions=True)


async def send_rtcp(room: Room) -> None:
    """Receiver reports and PLIs, once a second per viewer (ViewerBot.tick)."""
    while True:
        await asyncio.sleep(1.0)
        room.tick()


class Streamer:
    """The publisher in a process of its own (`soak.py publish`): a streamer is another
    machine, and the viewers' work here must not stall its clock."""

    def __init__(self, server: Server, log: Path | None) -> None:
        self._server = server
        self._log = log
        self._process: subprocess.Popen[bytes] | None = None

    async def start(self, cpu: int | None) -> None:
        command = [
            sys.executable, str(Path(__file__).resolve()), "publish",
            "--port", str(self._server.port), "--room", self._server.room,
            *(["--status"] if self._log else []),
        ]  # fmt: skip
        env = {**os.environ, "SOAK_SECRET": self._server.secret}
        stderr = None if self._log is None else self._log.open("ab")
        process = subprocess.Popen(
            pinned(command, cpu), env=env, stdout=subprocess.PIPE, stderr=stderr
        )
        if stderr is not None:
            stderr.close()
        self._process = process
        assert process.stdout is not None
        line = await asyncio.wait_for(
            asyncio.get_running_loop().run_in_executor(None, process.stdout.readline),
            PUBLISH_TIMEOUT,
        )
        if line.strip() != b"live":
            raise RuntimeError(f"the publisher did not go live: {line!r}")

    def stop(self) -> None:
        stop_process(self._process)  # our own child, by its handle
        self._process = None


async def publish(port: int, room: str, secret: str, status: bool) -> None:
    """`soak.py publish`: go live, say so on stdout, stream until terminated (SIGTERM);
    with `status`, say how it is doing on stderr every 10 s."""
    aiortc_private.offer_host_addresses(["127.0.0.1"])
    server = Server("netra", room=room, secret=secret)
    server.port = port
    publisher = SyntheticPublisher(load_clip())
    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    try:
        await publisher.start(server)  # type: ignore[arg-type]  # duck-typed Target
        print("live", flush=True)
        deadline = time.monotonic() + MAX_PUBLISH_SECONDS
        while not stop.done() and time.monotonic() < deadline:
            # How it is doing, on stderr (--publisher-log): if the server calls it silent,
            # this says whether it was.
            await asyncio.wait([stop], timeout=10.0)
            if not status:
                continue
            print(
                f"{time.strftime('%H:%M:%S')} publisher: {publisher.frames_sent} frames sent, "
                f"{len(publisher.keyframe_requests)} keyframe requests, "
                f"peer {publisher.pc.connectionState}",
                file=sys.stderr,
                flush=True,
            )
    finally:
        await publisher.close()


async def run(args: argparse.Namespace) -> Soak:
    soak = Soak(policy=args.gc, options={k: str(v) for k, v in vars(args).items()})
    server = Server(
        args.gc,
        cpu=0 if args.pin else None,
        room="soak",
        lean_receivers=args.lean_receivers,
        log=args.server_log,
        log_level="INFO" if args.server_log else "WARNING",
    )
    await server.start()
    streamer = Streamer(server, args.publisher_log)
    fps = load_clip().fps
    room = Room(server, soak, args.freeze_ms / 1000, args.join_batch)
    rtcp: asyncio.Task[None] | None = None
    own_lag = LoopLag()
    own_lag.start()
    try:
        await streamer.start(1 if args.pin else None)
        rtcp = asyncio.create_task(send_rtcp(room), name="soak-rtcp")
        print(f"== {args.gc}: server pid {server.pid}; {args.viewers} viewers joining", flush=True)
        await room.add(args.viewers)
        await asyncio.sleep(args.settle)  # joining costs what it costs: not in the figures
        probe = await server.probe()
        full_seen = probe["gc"]["collections"][2]
        joining = probe.get("gc_recent_full_ms", [])
        print(
            f"joined: {len(room.watchers)} viewers, {soak.failed_joins} failed; "
            f"RSS {server.rss_mb():.1f} MB; full collections so far {full_seen}, the last "
            f"{len(joining[-5:])} took {joining[-5:]} ms",
            flush=True,
        )
        room.take_freezes()
        counts = Counts(room.watchers)
        started = time.monotonic()
        end = started + args.minutes * 60
        next_churn = started + args.churn_every if args.churn else float("inf")
        print(HEADER, flush=True)
        while time.monotonic() < end:
            window_end = min(end, time.monotonic() + args.interval)
            while (now := time.monotonic()) < window_end:
                if now >= next_churn:
                    next_churn += args.churn_every
                    await room.replace(args.churn)
                else:
                    await asyncio.sleep(min(1.0, window_end - now, max(0.0, next_churn - now)))
            after = Counts(room.watchers)
            loss, ratio = window_delivery(room.watchers, counts, after, fps)
            counts = after
            freezes, longest = room.take_freezes()
            probe = await server.probe()  # first: a request handled meanwhile is a task
            state, lag = await server.room_state()
            # The full collections run since the last window (the probe keeps the last 256).
            full_now = probe["gc"]["collections"][2]
            new = min(RECENT, full_now - full_seen)
            full_seen = full_now
            pauses = _last(probe.get("gc_recent_full_ms", []), new)
            cpu = _last(probe.get("gc_recent_full_cpu_ms", []), new)
            soak.full_pauses_ms.extend(pauses)
            soak.full_pauses_cpu_ms.extend(cpu)
            window = Window(
                t=round(time.monotonic() - started, 1),
                viewers=0 if state is None else int(state["viewers"]),
                rss_mb=round(server.rss_mb(), 1),
                fds=server.fds(),
                tasks=probe.get("tasks"),
                pcs_alive=probe.get("pcs_alive"),
                loop_lag_p99_ms=lag.get("p99_ms"),
                loop_lag_max_ms=lag.get("max_ms"),
                full_collections=len(pauses),
                full_pause_max_ms=max(pauses) if pauses else None,
                full_cpu_max_ms=max(cpu) if cpu else None,
                loss=round(loss, 5),
                frames_ratio=None if ratio is None else round(ratio, 4),
                freezes=freezes,
                longest_gap_ms=round(longest * 1000, 1),
                load_lag_p99_ms=own_lag.snapshot()["p99_ms"],
                load_lag_max_ms=own_lag.snapshot()["max_ms"],
            )
            soak.windows.append(window)
            print(row(window), flush=True)
            if state is None or not state["live"]:
                # The server ended the stream (a streamer silent for 8 s counts as gone):
                # what follows would measure nothing.
                soak.ended = f"the stream ended at {window.t:.0f} s"
                print(f"stopped: {soak.ended}", flush=True)
                break
        for _ in range(args.forced_collections):
            # What a full collection costs with this room, asked for outright, 1 s apart.
            await asyncio.sleep(1.0)
            soak.forced.append(await server.collect())
    finally:
        if rtcp is not None:
            rtcp.cancel()
        await own_lag.stop()
        await room.close()
        streamer.stop()
        await server.stop()
    return soak


HEADER = (
    f"{'t s':>6} {'view':>4} {'RSS MB':>7} {'fds':>5} {'tasks':>5} {'PCs':>5} "
    f"{'lag p99/max':>11} {'fullGC':>6} {'max ms':>6} {'loss':>7} {'frames':>6} "
    f"{'freezes':>7} {'gap ms':>6} {'own lag':>9} {'load':>5}"
)


def row(w: Window) -> str:
    def n(v: Any, spec: str = "") -> str:
        return "-" if v is None else format(v, spec)

    lag = n(w.loop_lag_p99_ms, ".0f") + "/" + n(w.loop_lag_max_ms, ".0f")
    own = n(w.load_lag_p99_ms, ".0f") + "/" + n(w.load_lag_max_ms, ".0f")
    return (
        f"{w.t:>6.0f} {w.viewers:>4} {w.rss_mb:>7.1f} {w.fds:>5} {n(w.tasks):>5} "
        f"{n(w.pcs_alive):>5} {lag:>11} {w.full_collections:>6} "
        f"{n(w.full_pause_max_ms, '.0f'):>6} {w.loss:>7.2%} {n(w.frames_ratio, '.3f'):>6} "
        f"{w.freezes:>7} {w.longest_gap_ms:>6.0f} {own:>9} {w.loadavg[0]:>5.2f}"
    )


def summarise(soak: Soak) -> dict[str, Any]:
    windows = soak.windows
    if not windows:
        return {}
    minutes = [w.t / 60 for w in windows]
    rss = [w.rss_mb for w in windows]
    slope = statistics.linear_regression(minutes, rss).slope if len(windows) > 1 else None
    pauses = sorted(soak.full_pauses_ms)
    cpu = sorted(soak.full_pauses_cpu_ms)
    lags = [w.loop_lag_max_ms for w in windows if w.loop_lag_max_ms is not None]
    return {
        "viewers": windows[-1].viewers,
        "ended_early": soak.ended,
        "failed_joins": soak.failed_joins,
        "replaced": soak.replaced,
        "rss_first_mb": rss[0],
        "rss_last_mb": rss[-1],
        "rss_max_mb": max(rss),
        "rss_slope_mb_per_min": None if slope is None else round(slope, 3),
        "loss_mean": round(statistics.mean(w.loss for w in windows), 5),
        "loss_worst_window": max(w.loss for w in windows),
        "freezes": sum(w.freezes for w in windows),
        "longest_gap_ms": max(w.longest_gap_ms for w in windows),
        "full_collections": len(pauses),
        "full_pause_p50_ms": _pct(pauses, 0.5),
        "full_pause_p99_ms": _pct(pauses, 0.99),
        "full_pause_max_ms": pauses[-1] if pauses else None,
        "full_cpu_p50_ms": _pct(cpu, 0.5),
        "full_cpu_p99_ms": _pct(cpu, 0.99),
        "full_cpu_max_ms": cpu[-1] if cpu else None,
        "load_lag_max_ms": max(
            (w.load_lag_max_ms for w in windows if w.load_lag_max_ms is not None), default=None
        ),
        "loop_lag_max_ms": max(lags) if lags else None,
        "loop_lag_p99_median_ms": statistics.median(
            w.loop_lag_p99_ms for w in windows if w.loop_lag_p99_ms is not None
        )
        if any(w.loop_lag_p99_ms is not None for w in windows)
        else None,
        "forced_collections_ms": [f["ms"] for f in soak.forced],
        "forced_collections_cpu_ms": [f["cpu_ms"] for f in soak.forced],
        "forced_collections_objects": [f["objects"] for f in soak.forced],
        "loadavg_first": windows[0].loadavg,
        "loadavg_last": windows[-1].loadavg,
    }


def _last(values: list[float], count: int) -> list[float]:
    return values[len(values) - count :] if count > 0 else []


def _pct(ordered: list[float], q: float) -> float | None:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else None


def chart(path: Path, soaks: list[Soak]) -> None:
    figure, axes = new_chart()
    for soak in soaks:
        minutes = [w.t / 60 for w in soak.windows]
        axes[0].plot(minutes, [w.rss_mb for w in soak.windows], label=soak.policy)
        axes[1].plot(minutes, [w.loss * 100 for w in soak.windows], label=f"{soak.policy} loss %")
        axes[1].plot(
            minutes,
            [w.freezes for w in soak.windows],
            linestyle="--",
            label=f"{soak.policy} freezes",
        )
        axes[2].plot(minutes, [w.loop_lag_max_ms for w in soak.windows], label=f"{soak.policy} lag")
        axes[2].plot(
            minutes,
            [w.longest_gap_ms for w in soak.windows],
            linestyle="--",
            label=f"{soak.policy} longest frame gap",
        )
        pause_at = [(w.t / 60, w.full_pause_max_ms) for w in soak.windows if w.full_pause_max_ms]
        if pause_at:
            axes[2].scatter(
                *zip(*pause_at, strict=True), marker="x", label=f"{soak.policy} full GC"
            )
    titles = (
        "server RSS, MB",
        "viewers' loss (%) and freezes per window",
        "server loop lag max, frame gaps, GC pauses (ms)",
    )
    save_chart(path, figure, axes, titles, "minutes", "soak: one streamer, viewers watching")


async def main(args: argparse.Namespace) -> int:
    aiortc_private.offer_host_addresses(["127.0.0.1"])  # loopback only, never the LAN
    if args.pin:
        os.sched_setaffinity(0, {1})
    print(f"load average at start: {os.getloadavg()}", flush=True)
    soaks = []
    for policy in args.gc.split(","):
        args.gc = policy
        soak = await run(args)
        soak.summary = summarise(soak)
        print(f"{policy}: {json.dumps(soak.summary)}", flush=True)
        soaks.append(soak)
    print(f"load average at end: {os.getloadavg()}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(s) for s in soaks], indent=1) + "\n")
        print(f"wrote {args.json}")
    if args.chart:
        chart(args.chart, soaks)
        print(f"wrote {args.chart}")
    return 0


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to watch")
    parser.add_argument("--viewers", type=int, default=20, help="viewers watching")
    parser.add_argument(
        "--gc", default="netra", help=f"server GC policy, or a comma list: {', '.join(POLICIES)}"
    )
    parser.add_argument("--churn", type=int, default=0, help="viewers replaced each time")
    parser.add_argument("--churn-every", type=float, default=10.0, help="seconds between")
    parser.add_argument("--freeze-ms", type=float, default=200.0, help="a gap this long freezes")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds per window")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds after joining")
    parser.add_argument("--join-batch", type=int, default=25, help="viewers that join at once")
    parser.add_argument(
        "--forced-collections",
        type=int,
        default=0,
        help="full collections to ask the server for at the end, timed (what one costs)",
    )
    parser.add_argument("--pin", action="store_true", help="server on CPU 0, this on CPU 1")
    parser.add_argument(
        "--lean-receivers",
        action="store_true",
        help="experiment: the server drops its viewers' unused bitrate estimators (churn.py)",
    )
    parser.add_argument("--server-log", type=Path, help="the server's INFO log goes here")
    parser.add_argument("--publisher-log", type=Path, help="the publisher's stderr goes here")
    parser.add_argument("--json", type=Path, help="write every window here")
    parser.add_argument("--chart", type=Path, help="write a PNG chart here")
    args = parser.parse_args(argv)
    for policy in args.gc.split(","):
        if policy not in POLICIES:
            parser.error(f"--gc: {policy!r} is not one of {', '.join(POLICIES)}")
    return args


if __name__ == "__main__":
    if sys.argv[1:2] == ["publish"]:
        publisher = argparse.ArgumentParser(prog="soak.py publish")
        publisher.add_argument("--port", type=int, required=True)
        publisher.add_argument("--room", required=True)
        publisher.add_argument("--status", action="store_true")
        given = publisher.parse_args(sys.argv[2:])
        secret = os.environ["SOAK_SECRET"]
        run_async(lambda: publish(given.port, given.room, secret, given.status))
    else:
        options = parse(sys.argv[1:])
        sys.exit(run_async(lambda: main(options)))
