"""`netra bench` in small: a real `netra serve`, the synthetic 720p publisher and ten viewer
bots, one of them on a path that drops packets and stalls.

The full ladder is a benchmark (docs/benchmarks.md), never a timed test; this proves that the
load tool measures delivery and that one bad viewer costs the others nothing.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from netra.bench.clip import load_clip
from netra.bench.ladder import LadderOptions, run_ladder
from netra.bench.redis_server import RedisServer
from netra.bench.target import NetraTarget

from .conftest import _assert_nothing_left


async def test_ten_viewers_get_every_packet_while_an_impaired_one_is_resynced(
    loopback_candidates: None,
) -> None:
    tasks_before = asyncio.all_tasks()
    threads_before = set(threading.enumerate())
    options = LadderOptions(
        step=10,
        max_viewers=10,
        settle=2.0,
        window=5.0,
        time_limit=60.0,
        impaired=1,
        server_cpu=None,  # CI machines differ; pinning is for the benchmark
        load_cpu=None,
    )

    result = await run_ladder(NetraTarget(), load_clip(), options)

    [step] = result.steps
    assert step.failed_joins == 0
    assert step.passed, step.why
    # The nine healthy viewers: nothing lost, 720p30's bitrate, a keyframe soon after answering.
    assert step.loss == 0.0
    assert step.worst_loss == 0.0
    assert step.mbps_per_viewer > 2.0
    p50, p95 = step.first_keyframe_ms
    assert p95 is not None and p95 < 2000
    assert step.latency_ms[0] is not None  # latency was measured, not assumed
    # The impaired viewer really lost packets, even after retransmissions and resyncs: its
    # loss is what the others did not see.
    assert step.impaired_loss is not None and step.impaired_loss > 0.0
    await _assert_nothing_left(tasks_before, threads_before, "after the ladder")


async def test_a_two_worker_server_is_measured_across_both_workers_each_under_its_quota(
    loopback_candidates: None, tmp_path: Path
) -> None:
    redis = RedisServer(tmp_path)
    await redis.start()
    try:
        options = LadderOptions(
            step=6, max_viewers=6, settle=2.0, window=4.0, time_limit=60.0, impaired=0,
            server_cpu=None, load_cpu=None, server_cores=0.8,
        )  # fmt: skip
        target = NetraTarget(workers=2, cores=0.4, args=("--redis", redis.url))
        seen: list[tuple[list[int], list[str]]] = []

        def on_step(step: object) -> None:
            groups = [Path(f"/proc/{pid}/cgroup").read_text() for pid in target.pids]
            seen.append((list(target.pids), groups))

        result = await run_ladder(target, load_clip(), options, on_step)
    finally:
        redis.stop()
    [step] = result.steps
    assert step.passed and step.loss == 0.0, step.why
    [(pids, groups)] = seen
    assert len(set(pids)) == 2  # both workers' CPU is counted
    assert all("netra-bench-" in group for group in groups), groups  # each under a quota
    assert step.cpu > 0.0
