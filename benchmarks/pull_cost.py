"""What a pull between nodes costs (docs/scale-out.md): the origin's CPU for each edge that
pulls a stream, against one viewer's; and an edge's CPU with one pull and no viewer.

    .venv/bin/python benchmarks/pull_cost.py [--viewers 20] [--edges 3] [--window 20]
        [--json FILE]

Starts Debian's redis-server, an origin and `--edges` edges (`netra serve --redis`, each a
process of its own on core 1, loopback only) and a 720p synthetic publisher on the origin
(this process, core 0, with the viewer bots). The origin's CPU (/proc) is measured over
`--window` seconds at each level, on the way up and again on the way down (their difference
is the run's noise):

- ingest: the publisher alone;
- viewers: `--viewers` bots watch on the origin; a viewer costs (viewers - ingest) / N;
- viewers and pulls: one bot watches on each edge and leaves again, so that each edge keeps
  its pull (a long --relay-linger) with no viewer: a pull costs the origin
  (viewers and pulls - viewers) / edges, and each edge's own CPU is that of one pull and no
  viewer. A pull is in the viewers' group (the server orders every offer's media sections as
  a pull does), so it shares their serialization of each packet.

The viewer bots send a receiver report a second, as browsers do (an edge's pull sends its own).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from netra.bench import procstat
from netra.bench.bot import ViewerBot
from netra.bench.clip import load_clip
from netra.bench.publisher import SyntheticPublisher
from netra.bench.redis_server import RedisServer
from netra.bench.target import NetraTarget
from netra.media import aiortc_private


async def cpu_share(pids: list[int], seconds: float) -> list[float]:
    """Each process's CPU over `seconds`, as a share of one core."""
    before = [procstat.cpu_seconds(pid) for pid in pids]
    start = time.monotonic()
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - start
    return [(procstat.cpu_seconds(pid) - b) / elapsed for pid, b in zip(pids, before, strict=True)]


async def watch_briefly(target: NetraTarget, index: int) -> None:
    bot = ViewerBot(index, None)
    try:
        await bot.start(target)
    finally:
        await bot.close()


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    os.sched_setaffinity(0, {0})
    aiortc_private.offer_host_addresses(["127.0.0.1"])
    clip = load_clip()
    result: dict[str, Any] = {"calibration_ms": round(procstat.calibration_ms(), 1)}
    with tempfile.TemporaryDirectory() as workdir:
        redis = RedisServer(Path(workdir))
        await redis.start()
        secret = "bench-" + "s" * 48
        common = ("--redis", redis.url, "--relay-linger", "600")
        origin = NetraTarget(args=(*common, "--node-id", "origin"), secret=secret)
        edges = [
            NetraTarget(args=(*common, "--node-id", f"edge{i}"), secret=secret)
            for i in range(args.edges)
        ]
        publisher = SyntheticPublisher(clip)
        bots: list[ViewerBot] = []
        reporter: asyncio.Task[None] | None = None
        try:
            await origin.start(cpu=1)
            for edge in edges:
                await edge.start(cpu=1)
            await publisher.start(origin)

            async def report() -> None:
                # Each bot sends its receiver report once a second, as a browser does: an
                # edge's pull sends its own, so a viewer must too for a fair comparison.
                while True:
                    await asyncio.sleep(1.0)
                    now = time.perf_counter()
                    for bot in bots:
                        bot.tick(now)

            reporter = asyncio.create_task(report())
            await asyncio.sleep(args.settle)
            ingest = (await cpu_share([origin.pid], args.window))[0]

            bots = [ViewerBot(i, None) for i in range(args.viewers)]
            await asyncio.gather(*(bot.start(origin) for bot in bots))
            await asyncio.sleep(args.settle)
            viewers = (await cpu_share([origin.pid], args.window))[0]

            for i, edge in enumerate(edges):
                await watch_briefly(edge, 1000 + i)
            await asyncio.sleep(args.settle)
            spy = None
            if args.profile:  # where an idle edge's time goes, while it is measured
                spy = await asyncio.create_subprocess_exec(
                    str(Path(sys.executable).with_name("py-spy")), "record",
                    "--pid", str(edges[0].pid), "--duration",
                    str(int(args.window)), "--format", "raw", "--output", str(args.profile),
                    stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
                )  # fmt: skip
            shares = await cpu_share([origin.pid, *(e.pid for e in edges)], args.window)
            if spy is not None:
                await spy.wait()

            for edge in edges:  # the pulls end
                await edge.stop()
            await asyncio.sleep(args.settle)
            viewers_again = (await cpu_share([origin.pid], args.window))[0]
            await asyncio.gather(*(bot.close() for bot in bots))
            bots = []
            await asyncio.sleep(args.settle)
            ingest_again = (await cpu_share([origin.pid], args.window))[0]
        finally:
            if reporter is not None:
                reporter.cancel()
            await asyncio.gather(*(bot.close() for bot in bots))
            await publisher.close()
            for target in (*edges, origin):
                await target.stop()
            redis.stop()
    # Each level is measured on the way up and on the way down: their difference is the noise.
    alone = (ingest + ingest_again) / 2
    watched = (viewers + viewers_again) / 2
    per_viewer = (watched - alone) / args.viewers
    per_pull = (shares[0] - watched) / args.edges
    result.update(
        {
            "origin_ingest_core": round(alone, 4),
            "origin_ingest_first_last_core": [round(ingest, 4), round(ingest_again, 4)],
            "origin_with_viewers_core": round(watched, 4),
            "origin_with_viewers_first_last_core": [round(viewers, 4), round(viewers_again, 4)],
            "viewers": args.viewers,
            "per_viewer_core": round(per_viewer, 5),
            "origin_with_viewers_and_pulls_core": round(shares[0], 4),
            "edges": args.edges,
            "per_pull_core": round(per_pull, 5),
            "pull_in_viewers": round(per_pull / per_viewer, 2) if per_viewer > 0 else None,
            "edge_one_pull_no_viewer_core": [round(s, 4) for s in shares[1:]],
            "edge_median_core": round(statistics.median(shares[1:]), 4),
        }
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--viewers", type=int, default=20)
    parser.add_argument("--edges", type=int, default=3)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--settle", type=float, default=3.0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--profile", type=Path, help="py-spy the first edge (raw format)")
    args = parser.parse_args()
    result = asyncio.run(measure(args))
    first, last = result["origin_ingest_first_last_core"]
    print(f"origin, publisher only:      {result['origin_ingest_core']:.1%} of a core"
          f" (first {first:.1%}, last {last:.1%})")  # fmt: skip
    up, down = result["origin_with_viewers_first_last_core"]
    print(f"one viewer on the origin:    {result['per_viewer_core']:.2%} of a core"
          f" (from {result['viewers']} viewers: {up:.1%} then {down:.1%})")  # fmt: skip
    print(f"one pull by an edge:         {result['per_pull_core']:.2%} of a core"
          f" = {result['pull_in_viewers']} viewers (from {result['edges']} edges)")  # fmt: skip
    print(f"an edge, one pull, no viewer: {result['edge_median_core']:.1%} of a core (median)")
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
