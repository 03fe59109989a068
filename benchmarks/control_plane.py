"""The cluster's control plane at 10,000 viewers of one stream, on the local redis-server
(docs/scale-out.md, "Reaching 10,000 viewers").

    .venv/bin/python benchmarks/control_plane.py [--nodes 58] [--joins 10000] [--seconds 60]
        [--reconnects 1250] [--burst 5] [--json FILE]

`--nodes` directories (netra.cluster.redis_directory, one Redis connection pool each, all in
this process) tick once a second as nodes do, each reporting its share of the room's viewers;
one of them holds the room's origin claim. Then `--joins` viewer joins arrive evenly over
`--seconds`, spread over the nodes, and after them `--reconnects` viewers of a dead node come
back within `--burst` seconds. Every join is charged the lookup a node makes when it does not
pull the room yet (one MGET): the worst case, since a node makes it only for its first viewer.
Prints each phase's latency (p50, p99) and Redis's commands per second and CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from redis import asyncio as aioredis

from netra.bench import procstat
from netra.bench.redis_server import RedisServer
from netra.cluster.directory import Node
from netra.cluster.redis_directory import RedisDirectory

ROOM = "big"


class Share:
    """A node's side: its viewers of the room."""

    def __init__(self) -> None:
        self.viewers = 0
        self.remote = 0

    def audiences(self) -> dict[str, int]:
        return {ROOM: self.viewers}

    def remote_audiences(self, counts: dict[str, int]) -> None:
        self.remote = counts.get(ROOM, 0)

    def lost(self, room: str) -> None:
        pass


async def commands_processed(url: str) -> int:
    client = aioredis.from_url(url)
    try:
        return int((await client.info("stats"))["total_commands_processed"])
    finally:
        await client.aclose()


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50_ms": round(pick(0.5) * 1000, 2), "p99_ms": round(pick(0.99) * 1000, 2),
            "max_ms": round(ordered[-1] * 1000, 2)}  # fmt: skip


async def arrivals(
    nodes: list[tuple[RedisDirectory, Share]], count: int, seconds: float, first: int
) -> list[float]:
    """`count` joins evenly over `seconds`; each one's lookup latency."""
    latencies: list[float] = []

    async def join(index: int) -> None:
        directory, share = nodes[index % len(nodes)]
        start = time.perf_counter()
        await directory.origins([ROOM])
        latencies.append(time.perf_counter() - start)
        share.viewers += 1

    tasks = []
    begin = time.perf_counter()
    for i in range(count):
        delay = begin + i * seconds / count - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(join(first + i)))
    await asyncio.gather(*tasks)
    return latencies


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as workdir:
        redis = RedisServer(Path(workdir))
        await redis.start()
        assert redis.pid is not None
        nodes = []
        try:
            for i in range(args.nodes):
                directory = RedisDirectory(Node(f"n{i}", f"http://10.0.{i // 250}.{i % 250}:8080"),
                                           redis.url)  # fmt: skip
                share = Share()
                await directory.start(share)
                nodes.append((directory, share))
            await nodes[0][0].claim(ROOM)
            await asyncio.sleep(2.0)
            phases: dict[str, Any] = {}
            for name, count, seconds in (
                ("rest", 0, 5.0),
                ("joins", args.joins, args.seconds),
                ("reconnects", args.reconnects, args.burst),
            ):
                commands = await commands_processed(redis.url)
                cpu = procstat.cpu_seconds(redis.pid)
                start = time.perf_counter()
                if count:
                    latencies = await arrivals(nodes, count, seconds, first=1)
                else:
                    await asyncio.sleep(seconds)
                    latencies = []
                elapsed = time.perf_counter() - start
                # the INFO call itself is one command
                done = await commands_processed(redis.url) - commands - 1
                phases[name] = {
                    "events": count,
                    "seconds": round(elapsed, 2),
                    "redis_commands_per_second": round(done / elapsed, 1),
                    "redis_cpu_core": round((procstat.cpu_seconds(redis.pid) - cpu) / elapsed, 4),
                    **(percentiles(latencies) if latencies else {}),
                }
            heard = nodes[0][1].remote
        finally:
            for directory, _ in nodes:
                await directory.close()
            redis.stop()
    return {"nodes": args.nodes, "phases": phases, "origin_hears_viewers": heard,
            "viewers_joined": args.joins + args.reconnects}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=58)
    parser.add_argument("--joins", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--reconnects", type=int, default=1250)
    parser.add_argument("--burst", type=float, default=5.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = asyncio.run(measure(args))
    for name, phase in result["phases"].items():
        latency = f", lookup p50 {phase['p50_ms']} ms, p99 {phase['p99_ms']} ms" if (
            "p99_ms" in phase) else ""  # fmt: skip
        print(f"{name:>10}: {phase['events']} events in {phase['seconds']} s, redis "
              f"{phase['redis_commands_per_second']} commands/s, "
              f"{phase['redis_cpu_core']:.1%} of a core{latency}")  # fmt: skip
    print(f"the origin's node hears {result['origin_hears_viewers']} viewers on the others")
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
