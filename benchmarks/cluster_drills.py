"""What a cluster does for its viewers, measured on several machines on this one.

Each drill starts a cluster of its own (netra.bench.cluster: every node a `netra serve` in a
network namespace with its own address, Redis in another, 10 ms and 1 % loss each way on every
origin-edge link), a synthetic 720p publisher on the origin, and viewer bots in this process,
and prints one JSON object; `--json FILE` writes them all. docs/scale-out.md quotes them.

    unshare -n sh -c 'ip link set lo up; exec .venv/bin/python benchmarks/cluster_drills.py'

- hop: viewers on the origin (the reference) and on edges (100 an edge) at once; per group,
  latency from the publisher's send to the bot's receive (p50, p99) and loss after repair,
  over a window.
- skew: A/V skew at edge viewers against origin viewers. Each bot times every audio frame
  and every video frame's last packet against its capture time on the publisher's clock (from
  the sender reports, passed through both hops); a viewer's skew is the median audio offset
  less the median video offset, what a browser's lip sync has to absorb.
- cold-edge: the first viewer of an edge that has no pull yet, against a viewer of the origin:
  answer sent to first keyframe, alternately, `--trials` times.
- joiners: 4 edges x 25 viewers joining at once; keyframe requests the publisher received.
- kill-edge: `kill -9` an edge with 50 viewers; how many play again elsewhere within 5 s.
- link-cut: unplug an edge with 50 viewers from the LAN; how many play again elsewhere within
  15 s (the bots notice by their WebSocket heartbeat, as the pages do by theirs).
- redis-outage: Redis stopped for `--outage` s under live viewers on every node: loss during
  it against before it, whether any node exited, and when the room has its origin again.
- origin-killed: `kill -9` the origin; when edge viewers are told, and, once the streamer
  publishes again on an edge, how long after its first keyframe they play.
- streamer-back: `kill -9` the origin; half a second later its streamer publishes again on an
  edge (retrying `streamer-exists` every 0.25 s, as its page would); when it is accepted, and
  when viewers who then join each edge play, counted from the kill.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from netra.bench import procstat
from netra.bench.bot import ViewerBot
from netra.bench.clip import Clip, load_clip
from netra.bench.cluster import Audience, Cluster, ClusterOptions, RoamingViewer
from netra.bench.counter import Counter
from netra.bench.ladder import percentile
from netra.bench.publisher import SyntheticPublisher
from netra.bench.target import NetraSession, NetraTarget
from netra.cluster.redis_directory import origin_key

DRILLS = (
    "hop", "skew", "cold-edge", "joiners", "kill-edge", "link-cut", "redis-outage", "origin-killed",
    "streamer-back",
)  # fmt: skip


def ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


async def until(condition: Callable[[], bool], what: str, timeout: float) -> None:
    """Ask every 10 ms (a bot's tap has no event to wait on); fail naming `what`."""
    deadline = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"not within {timeout:g} s: {what}")
        await asyncio.sleep(0.01)


async def all_set(events: list[asyncio.Event], timeout: float) -> None:
    await asyncio.wait_for(asyncio.gather(*(event.wait() for event in events)), timeout)


@contextlib.asynccontextmanager
async def streaming(
    args: argparse.Namespace, clip: Clip, edges: int, **options: Any
) -> AsyncIterator[tuple[Cluster, SyntheticPublisher]]:
    with tempfile.TemporaryDirectory(prefix="netra-drill-") as workdir:
        cluster = Cluster(
            Path(workdir),
            ClusterOptions(
                edges=edges, delay_ms=args.delay_ms, loss=args.loss, cores=args.cores,
                relay_copies=args.relay_copies, **options,
            ),  # fmt: skip
        )
        publisher = SyntheticPublisher(clip)
        try:
            await cluster.start(None if args.no_pin else 0)
            await publisher.start(cluster.origin)
            yield cluster, publisher
        finally:
            with contextlib.suppress(Exception):
                await publisher.close()
            await cluster.close()


async def ticking(bots: list[ViewerBot]) -> None:
    """Receiver reports once a second at spread phases, as independent browsers send them."""
    slots = 20
    beat = 0
    while True:
        await asyncio.sleep(1.0 / slots)
        now = time.perf_counter()
        for bot in bots[beat % slots :: slots]:
            bot.tick(now)
        beat += 1


async def hop(args: argparse.Namespace, clip: Clip) -> dict[str, Any]:
    # The origin's viewers are the reference; the edges' are the load the hop is judged at.
    homes = [0] * args.origin_viewers
    for edge in range(1, args.hop_edges + 1):
        homes += [edge] * args.viewers_per_edge
    async with streaming(args, clip, edges=args.hop_edges) as (cluster, publisher):
        assert publisher.video is not None
        counter = Counter(publisher.video.log, capacity=len(homes) + 8)
        bots = [ViewerBot(i, publisher.video.log, counter=counter) for i in range(len(homes))]
        ticks = asyncio.create_task(ticking(bots))
        try:
            for start in range(0, len(bots), 25):  # in slices, as a ladder's steps join
                await asyncio.gather(
                    *(b.start(cluster.nodes[homes[b.index]]) for b in bots[start : start + 25])
                )
            await asyncio.sleep(args.settle)  # a measurement window, not a wait for a state
            before = {}
            for bot in bots:
                for stream in bot.streams.values():
                    stream.clear_latencies()
                before[bot.index] = {s.ssrc: (s.expected, s.packets) for s in bot.streams.values()}
            await asyncio.sleep(args.window)
            groups: dict[str, dict[str, Any]] = {}
            for bot in bots:
                group = groups.setdefault(
                    "origin" if homes[bot.index] == 0 else "edges",
                    {"latencies": [], "expected": 0, "missing": 0},
                )
                for stream in bot.streams.values():
                    e0, p0 = before[bot.index].get(stream.ssrc, (stream.expected, stream.packets))
                    expected = stream.expected - e0
                    group["expected"] += expected
                    group["missing"] += max(0, expected - (stream.packets - p0))
                    if stream.video:
                        group["latencies"].extend(stream.latency_samples())
            copies = await origin_copies(cluster.origin)
        finally:
            ticks.cancel()
            await asyncio.gather(*(b.close() for b in bots), return_exceptions=True)
            await counter.close()
        links = [await link.counts() for link in cluster.links]
    result: dict[str, Any] = {
        "origin_viewers": args.origin_viewers,
        "edge_count": args.hop_edges,
        "viewers_per_edge": args.viewers_per_edge,
        "window_s": args.window,
    }
    for name, group in groups.items():
        result[name] = {
            "latency_p50_ms": ms(percentile(group["latencies"], 0.5)),
            "latency_p99_ms": ms(percentile(group["latencies"], 0.99)),
            "samples": len(group["latencies"]),
            "loss_after_repair": round(group["missing"] / max(1, group["expected"]), 5),
        }
    for q in ("p50", "p99"):
        edge, origin = result["edges"][f"latency_{q}_ms"], result["origin"][f"latency_{q}_ms"]
        if edge is not None and origin is not None:
            result[f"hop_adds_{q}_ms"] = round(edge - origin, 1)
            result[f"hop_adds_{q}_ms_beyond_link_delay"] = round(edge - origin - args.delay_ms, 1)
    result["links"] = links
    result["origin_copies"] = copies
    return result


async def origin_copies(origin: NetraTarget) -> dict[str, int]:
    """How the origin's subscriptions (the pulls' among them) stand on redundancy."""
    subscriptions = await origin.subscriptions()
    return {
        "subscriptions_in_two_copies": sum(s["copies"] > 1 for s in subscriptions),
        "times_raised": sum(s["copies_raised"] for s in subscriptions),
    }


async def skew(args: argparse.Namespace, clip: Clip) -> dict[str, Any]:
    async with streaming(args, clip, edges=1) as (cluster, _):
        bots = [ViewerBot(i, None, sync=True) for i in range(10)]  # even: origin, odd: edge
        ticks = asyncio.create_task(ticking(bots))
        try:
            await asyncio.gather(*(b.start(cluster.nodes[b.index % 2]) for b in bots))
            await asyncio.sleep(args.settle)  # a measurement window, not a wait for a state
            for bot in bots:
                assert bot.sync is not None
                bot.sync = {"audio": [], "video": []}
            await asyncio.sleep(args.window)
            skews: dict[str, list[float]] = {"origin": [], "edge": []}
            for bot in bots:
                assert bot.sync is not None
                audio, video = bot.sync["audio"], bot.sync["video"]
                if audio and video:
                    group = skews["origin" if bot.index % 2 == 0 else "edge"]
                    group.append(statistics.median(audio) - statistics.median(video))
        finally:
            ticks.cancel()
            await asyncio.gather(*(b.close() for b in bots), return_exceptions=True)
    origin, edge = statistics.median(skews["origin"]), statistics.median(skews["edge"])
    return {
        "viewers": {name: len(values) for name, values in skews.items()},
        "origin_skew_ms": [ms(v) for v in skews["origin"]],
        "edge_skew_ms": [ms(v) for v in skews["edge"]],
        "edge_minus_origin_skew_ms": ms(edge - origin),
        "window_s": args.window,
    }


async def first_keyframe(node: NetraTarget, index: int) -> float:
    bot = ViewerBot(index, None)
    try:
        await bot.start(node)
        await all_set([bot.keyframed], 10)
        seconds = bot.first_keyframe_seconds
        assert seconds is not None
        return seconds
    finally:
        await bot.close()


async def cold_edge(args: argparse.Namespace, clip: Clip) -> dict[str, Any]:
    origin_s: list[float] = []
    edge_s: list[float] = []
    # No linger: the edge's pull ends with its viewer, so that each trial finds it cold.
    async with streaming(args, clip, edges=1, relay_linger=0.0) as (cluster, _):
        edge = cluster.edges[0]
        for trial in range(args.trials):
            origin_s.append(await first_keyframe(cluster.origin, 2 * trial))
            await until_no_pull(edge)
            edge_s.append(await first_keyframe(edge, 2 * trial + 1))
    diffs = [e - o for e, o in zip(edge_s, origin_s, strict=True)]
    return {
        "trials": args.trials,
        "origin_first_keyframe_ms": {
            "p50": ms(statistics.median(origin_s)),
            "max": ms(max(origin_s)),
        },
        "cold_edge_first_keyframe_ms": {
            "p50": ms(statistics.median(edge_s)),
            "max": ms(max(edge_s)),
        },
        "cold_edge_minus_origin_ms": {"p50": ms(statistics.median(diffs)), "max": ms(max(diffs))},
        "trials_ms": {"origin": [ms(s) for s in origin_s], "cold_edge": [ms(s) for s in edge_s]},
        "rtt_ms": 2 * args.delay_ms,
    }


async def until_no_pull(edge: NetraTarget, timeout: float = 15.0) -> None:
    deadline = time.perf_counter() + timeout
    while (await edge_pulls(edge)) and time.perf_counter() < deadline:
        await asyncio.sleep(0.1)


async def edge_pulls(edge: NetraTarget) -> dict[str, Any]:
    return dict((await edge.rooms())["cluster"]["pulls"])


async def joiners(args: argparse.Namespace, clip: Clip) -> dict[str, Any]:
    async with streaming(args, clip, edges=4) as (cluster, publisher):
        await asyncio.sleep(2.0)  # past the stream's first keyframe: joiners need fresh ones
        started = time.perf_counter()
        bots = [ViewerBot(i, None) for i in range(100)]
        ticks = asyncio.create_task(ticking(bots))
        try:
            await asyncio.gather(*(b.start(cluster.edges[b.index % 4]) for b in bots))
            await all_set([b.keyframed for b in bots], 20)
            playing = time.perf_counter() - started
            await asyncio.sleep(2.0)  # requests sent late still count
        finally:
            ticks.cancel()
            await asyncio.gather(*(b.close() for b in bots), return_exceptions=True)
        requests = [t - started for t in publisher.keyframe_requests if t >= started]
    per_second = [
        sum(1 for t in requests if s <= t < s + 1) for s in range(int(max(requests, default=0)) + 1)
    ]
    return {
        "joiners": 100,
        "edges": 4,
        "all_playing_s": round(playing, 2),
        "keyframe_requests": len(requests),
        "max_keyframe_requests_per_second": max(per_second, default=0),
        "first_keyframe_p50_ms": ms(statistics.median(b.first_keyframe_seconds or 0 for b in bots)),
    }


async def kill_edge(args: argparse.Namespace, clip: Clip) -> dict[str, Any]:
    return await edge_lost(args, clip, Cluster.kill, within_s=5.0)


async def link_cut(args: argparse.Namespace, clip: Clip) -> dict[str, Any]:
    return await edge_lost(args, clip, Cluster.cut, within_s=15.0)


async def edge_lost(
    args: argparse.Namespace,
    clip: Clip,
    lose: Callable[[Cluster, NetraTarget], None],
    within_s: float,
) -> dict[str, Any]:
    async with streaming(args, clip, edges=2) as (cluster, _):
        doomed = [RoamingViewer(i, cluster.nodes, home=1) for i in range(50)]
        async with Audience(doomed):
            await all_set([v.bot.keyframed for v in doomed], 30)
            lose(cluster, cluster.edges[0])
            lost = time.perf_counter()
            with contextlib.suppress(TimeoutError):
                await all_set([v.back for v in doomed], within_s + 10)
            back = [v.back_at - lost for v in doomed if v.back_at is not None]
    within = sum(1 for b in back if b <= within_s)
    return {
        "viewers": len(doomed),
        "within_s": within_s,
        "playing_again_within": within,
        "share_within": round(within / len(doomed), 3),
        "back_p50_ms": ms(statistics.median(back)) if back else None,
        "back_max_ms": ms(max(back)) if back else None,
        "on_nodes": sorted({v.node for v in doomed}),
    }


def window_loss(viewers: list[RoamingViewer]) -> Callable[[], Awaitable[float]]:
    """Loss over the coming window: call to start it, await the result to end it."""
    before = {
        v.index: {s.ssrc: (s.expected, s.packets) for s in v.bot.streams.values()} for v in viewers
    }

    async def end() -> float:
        expected = missing = 0
        for viewer in viewers:
            for stream in viewer.bot.streams.values():
                e0, p0 = before[viewer.index].get(stream.ssrc, (stream.expected, stream.packets))
                expected += stream.expected - e0
                missing += max(0, (stream.expected - e0) - (stream.packets - p0))
        return missing / max(1, expected)

    return end


async def redis_outage(args: argparse.Namespace, clip: Clip) -> dict[str, Any]:
    import redis.asyncio as aioredis

    async with streaming(args, clip, edges=2) as (cluster, _):
        viewers = [RoamingViewer(i, cluster.nodes, home=i % 3) for i in range(15)]
        redis_server = cluster.redis
        assert redis_server is not None
        async with Audience(viewers):
            await all_set([v.bot.keyframed for v in viewers], 30)
            baseline = window_loss(viewers)
            await asyncio.sleep(args.outage)
            loss_before = await baseline()
            during = window_loss(viewers)
            redis_server.stop()
            await asyncio.sleep(args.outage)  # the outage itself
            loss_during = await during()
            alive = [node.pid for node in cluster.nodes if node.running]
            await redis_server.start()
            back = time.perf_counter()
            client = aioredis.from_url(redis_server.url)
            try:
                while await client.get(origin_key("bench")) is None:
                    if time.perf_counter() - back > 10:
                        break
                    await asyncio.sleep(0.05)
                origin_after = time.perf_counter() - back
                claim = await client.get(origin_key("bench"))
            finally:
                await client.aclose()
            roamed = sum(1 for v in viewers if v.lost_at is not None)
    return {
        "outage_s": args.outage,
        "viewers": len(viewers),
        "loss_before": round(loss_before, 5),
        "loss_during": round(loss_during, 5),
        "nodes_alive": f"{len(alive)} of {len(cluster.nodes)}",
        "viewers_that_lost_their_node": roamed,
        "origin_claimed_again_ms": ms(origin_after),
        "origin_claim": json.loads(claim) if claim else None,
    }


async def origin_killed(args: argparse.Namespace, clip: Clip) -> dict[str, Any]:
    async with streaming(args, clip, edges=2) as (cluster, _):
        bots = [ViewerBot(i, None) for i in range(10)]
        ticks = asyncio.create_task(ticking(bots))
        again: list[ViewerBot] = []
        try:
            await asyncio.gather(*(b.start(cluster.edges[b.index % 2]) for b in bots))
            await all_set([b.keyframed for b in bots], 30)
            cluster.kill(cluster.origin)
            killed = time.perf_counter()
            sessions = [b.session for b in bots if isinstance(b.session, NetraSession)]

            def told(kind: str) -> list[float]:
                return [s.first[kind] - killed for s in sessions if kind in s.first]

            with contextlib.suppress(TimeoutError):
                await until(lambda: len(told("stream-ended")) == len(bots), "all told", 15)
            told_s = told("stream-ended")
            stalled_s = told("stream-stalled")
            # The viewers wait in the room as the pages do; the streamer publishes on edge 2.
            await asyncio.gather(*(b.close() for b in bots))
            again = [ViewerBot(100 + i, None) for i in range(10)]
            ticks.cancel()
            ticks = asyncio.create_task(ticking(again))
            joins = [
                asyncio.create_task(b.start(cluster.edges[b.index % 2], timeout=30)) for b in again
            ]
            await asyncio.sleep(1.0)  # the viewers are waiting for an offer
            publisher = SyntheticPublisher(clip)
            try:
                await publisher.start(cluster.edges[1])
                published = time.perf_counter()  # its first packet is a keyframe
                await asyncio.gather(*joins)
                await all_set([b.keyframed for b in again], 15)
                playing = [
                    b.video.keyframe_at - published
                    for b in again
                    if b.video and b.video.keyframe_at
                ]
            finally:
                await publisher.close()
        finally:
            ticks.cancel()
            await asyncio.gather(*(b.close() for b in [*bots, *again]), return_exceptions=True)
    return {
        "edge_viewers": len(bots),
        "told_stalled": len(stalled_s),
        "told_stalled_max_ms": ms(max(stalled_s)) if stalled_s else None,
        "told": len(told_s),
        "told_max_ms": ms(max(told_s)) if told_s else None,
        "told_p50_ms": ms(statistics.median(told_s)) if told_s else None,
        "playing_after_new_origin_first_keyframe_max_ms": ms(max(playing)) if playing else None,
        "playing_after_new_origin_first_keyframe_p50_ms": ms(statistics.median(playing))
        if playing
        else None,
    }


async def publish_until_accepted(
    node: NetraTarget, clip: Clip, deadline: float
) -> tuple[SyntheticPublisher, int]:
    """Publish on `node`, again every 0.25 s while the room is another node's, until
    `deadline` (time.perf_counter())."""
    attempts = 0
    while True:
        attempts += 1
        publisher = SyntheticPublisher(clip)
        try:
            await publisher.start(node)
            return publisher, attempts
        except RuntimeError as exc:
            await publisher.close()
            if "streamer-exists" not in str(exc) or time.perf_counter() > deadline:
                raise
        await asyncio.sleep(0.25)


async def streamer_back(args: argparse.Namespace, clip: Clip) -> dict[str, Any]:
    async with streaming(args, clip, edges=2) as (cluster, _):
        viewers: list[ViewerBot] = []
        ticks: asyncio.Task[None] | None = None
        try:
            cluster.kill(cluster.origin)
            killed = time.perf_counter()
            await asyncio.sleep(0.5)  # the page's socket drops, and it reconnects to an edge
            publisher, attempts = await publish_until_accepted(
                cluster.edges[1], clip, killed + 15
            )
            accepted = time.perf_counter() - killed
            try:
                viewers = [ViewerBot(i, None) for i in range(10)]
                ticks = asyncio.create_task(ticking(viewers))
                await asyncio.gather(*(b.start(cluster.edges[b.index % 2]) for b in viewers))
                await all_set([b.keyframed for b in viewers], 15)
                playing = [
                    b.video.keyframe_at - killed for b in viewers if b.video and b.video.keyframe_at
                ]
            finally:
                await publisher.close()
        finally:
            if ticks is not None:
                ticks.cancel()
            await asyncio.gather(*(b.close() for b in viewers), return_exceptions=True)
    return {
        "accepted_after_kill_ms": ms(accepted),
        "attempts": attempts,
        "viewers": len(viewers),
        "playing_after_kill_p50_ms": ms(statistics.median(playing)) if playing else None,
        "playing_after_kill_max_ms": ms(max(playing)) if playing else None,
    }


RUNNERS = {
    "hop": hop,
    "skew": skew,
    "cold-edge": cold_edge,
    "joiners": joiners,
    "kill-edge": kill_edge,
    "link-cut": link_cut,
    "redis-outage": redis_outage,
    "origin-killed": origin_killed,
    "streamer-back": streamer_back,
}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    clip = load_clip()
    results: dict[str, Any] = {}
    for name in args.drills:
        started = time.perf_counter()
        try:
            results[name] = await RUNNERS[name](args, clip)
        except Exception as exc:  # one drill's failure is its result; the others still run
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
        results[name]["seconds"] = round(time.perf_counter() - started, 1)
        # This VM's speed drifts 2-3x within an hour: a figure goes with the speed it had.
        results[name]["calibration_ms"] = round(procstat.calibration_ms(), 1)
        results[name]["relay_copies"] = args.relay_copies
        print(json.dumps({name: results[name]}), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("drills", nargs="*", choices=[[], *DRILLS], help="default: all")
    parser.add_argument("--delay-ms", type=float, default=10.0, help="one way, origin-edge links")
    parser.add_argument("--loss", type=float, default=0.01, help="each way, origin-edge links")
    parser.add_argument("--cores", type=float, help="each node's CPU quota")
    parser.add_argument(
        "--relay-copies", type=int, help="datagrams of each packet sent to a pull (0: adapt to"
        " loss; default: the server's)"
    )
    parser.add_argument("--origin-viewers", type=int, default=10, help="hop: the reference")
    parser.add_argument("--hop-edges", type=int, default=1, help="hop")
    parser.add_argument("--viewers-per-edge", type=int, default=100, help="hop")
    parser.add_argument("--settle", type=float, default=5.0, help="hop, skew")
    parser.add_argument("--window", type=float, default=20.0, help="hop, skew")
    parser.add_argument("--trials", type=int, default=10, help="cold-edge")
    parser.add_argument("--outage", type=float, default=30.0, help="redis-outage, seconds")
    parser.add_argument("--no-pin", action="store_true", help="do not pin to CPUs 0 and 1")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.drills = args.drills or list(DRILLS)
    if not args.no_pin:  # as netra bench: the nodes on CPU 0, this process (bots) on CPU 1
        os.sched_setaffinity(0, {1})
    results = asyncio.run(main_async(args))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    sys.exit(1 if any("error" in r for r in results.values()) else 0)


if __name__ == "__main__":
    main()
