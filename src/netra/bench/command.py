"""`netra bench`: run the ladder against Netra, or interleaved with Janus, and report."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from netra.bench import counter, report
from netra.bench.clip import load_clip
from netra.bench.ladder import LadderOptions, LadderResult, run_ladder
from netra.bench.target import Target, TargetUnavailable
from netra.media import aiortc_private


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--against",
        choices=("janus",),
        help="also run Janus's VideoRoom, interleaved A/B/A/B, and compare",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="also run `netra serve --workers N` (with its own redis-server), interleaved with "
        "one process, and compare (use with --cores)",
    )
    parser.add_argument(
        "--nodes",
        type=int,
        default=1,
        help="also run a cluster of N nodes in network namespaces (an origin, N-1 edges, "
        "10 ms and 1 %% loss on each origin-edge link; needs root, in `unshare -n`), "
        "interleaved with a cluster of one, and compare (use with --cores)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="SRC",
        help="also run the server from another checkout's src/ (its native modules built), "
        "interleaved with this one, and compare: one version against another",
    )
    parser.add_argument(
        "--cores",
        type=float,
        help="CPU quota of each server process, in cores (a cgroup; needs root): the load tool "
        "stays outside it",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="ladders per server when comparing"
    )
    parser.add_argument(
        "--fanout",
        choices=("auto", "native", "python"),
        default="auto",
        help="the server's per-viewer forwarding path (netra serve --fanout)",
    )
    parser.add_argument(
        "--bots",
        choices=("native", "python"),
        default="native" if counter.available() else "python",
        help="how viewer bots count packets: a native receive thread, or Python per packet",
    )
    parser.add_argument("--step", type=int, default=25, help="viewers added per step")
    parser.add_argument("--max-viewers", type=int, default=500, help="bound on viewers")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds after each step")
    parser.add_argument("--window", type=float, default=6.0, help="seconds measured per step")
    parser.add_argument("--time-limit", type=float, default=900.0, help="seconds per ladder")
    parser.add_argument("--impaired", type=int, default=1, help="viewers that drop packets")
    parser.add_argument("--no-pin", action="store_true", help="do not pin to CPUs 0 and 1")
    parser.add_argument("--out", type=Path, default=Path("bench-output"), help="output folder")


def _targets(args: argparse.Namespace, redis_url: str | None) -> list[Target]:
    from netra.bench.target import NetraTarget

    if args.nodes > 1:
        from netra.bench.cluster import ClusterOptions, ClusterTarget

        options = ClusterOptions(cores=args.cores)
        return [ClusterTarget(1, options), ClusterTarget(args.nodes, options)]
    targets: list[Target] = [NetraTarget(fanout=args.fanout, cores=args.cores)]
    if args.baseline is not None:
        baseline = NetraTarget(fanout=args.fanout, cores=args.cores, source=args.baseline)
        baseline.name = "netra-baseline"
        targets.append(baseline)
    if args.workers > 1:
        assert redis_url is not None
        cluster = NetraTarget(
            fanout=args.fanout,
            cores=args.cores,
            workers=args.workers,
            args=("--redis", redis_url),
        )
        cluster.name = f"netra-{args.workers}-workers"
        targets.append(cluster)
    if args.against == "janus":
        from netra.bench.janus import JanusTarget

        targets.append(JanusTarget())
    return targets


def _server_cores(target: Target, args: argparse.Namespace) -> float:
    """What the target may use: its processes' quotas, or the one core it is pinned to."""
    workers = getattr(target, "workers", 1)
    return args.cores * workers if args.cores else 1.0


def _spread(values: list[float]) -> str:
    if not values:
        return "-"
    median = statistics.median(values)
    return f"{median:.3g} ({min(values):.3g}–{max(values):.3g})"


def _compare(results: list[LadderResult]) -> dict[str, dict[str, list[float]]]:
    by_target: dict[str, list[LadderResult]] = {}
    for result in results:
        by_target.setdefault(result.target, []).append(result)
    table: dict[str, dict[str, list[float]]] = {}
    for name, runs in by_target.items():

        def values(
            pick: Callable[[LadderResult], float | None], runs: list[LadderResult] = runs
        ) -> list[float]:
            return [v for v in (pick(r) for r in runs) if v is not None]

        def at(r: LadderResult, viewers: int, field: str, index: int) -> float | None:
            step = next((s for s in r.steps if s.viewers == viewers), None)
            return getattr(step, field)[index] if step is not None else None

        def last_passed(r: LadderResult, field: str, index: int) -> float | None:
            steps = r.passed
            return getattr(steps[-1], field)[index] if steps else None

        table[name] = {
            "most_viewers": values(lambda r: r.most_viewers),
            "marginal_us_per_packet_viewer": values(lambda r: r.marginal_us),
            "rss_per_viewer_mb": values(lambda r: r.rss_per_viewer_mb),
            "connect_p50_ms": values(lambda r: last_passed(r, "connect_ms", 0)),
            "first_keyframe_p95_ms": values(lambda r: last_passed(r, "first_keyframe_ms", 1)),
            "keyframe_after_connect_p95_ms": values(
                lambda r: last_passed(r, "keyframe_after_connect_ms", 1)
            ),
            "keyframe_p95_at_200_ms": values(lambda r: at(r, 200, "first_keyframe_ms", 1)),
            "latency_p99_at_200_ms": values(lambda r: at(r, 200, "latency_ms", 1)),
            "calibration_ms": values(lambda r: r.calibration_ms),
        }
    return table


def _print_comparison(table: dict[str, dict[str, list[float]]]) -> None:
    rows = (
        ("most viewers passed", "most_viewers"),
        ("µs per packet-viewer (marginal)", "marginal_us_per_packet_viewer"),
        ("RSS per viewer, MB", "rss_per_viewer_mb"),
        ("connect p50 at the last passing step, ms", "connect_p50_ms"),
        ("first keyframe p95 there (from the answer), ms", "first_keyframe_p95_ms"),
        ("  of which after connected, p95, ms", "keyframe_after_connect_p95_ms"),
        ("first keyframe p95 at 200 viewers, ms", "keyframe_p95_at_200_ms"),
        ("added latency p99 at 200 viewers, ms", "latency_p99_at_200_ms"),
        ("calibration loop, ms", "calibration_ms"),
    )
    names = list(table)
    print("\nmedian (min–max) over runs")
    print(" | ".join(["metric".ljust(46), *(n.ljust(22) for n in names)]))
    for label, key in rows:
        cells = [_spread(table[n][key]) for n in names]
        print(" | ".join([label.ljust(46), *(c.ljust(22) for c in cells)]))
    if "netra" in table and "janus" in table:
        netra = statistics.median(table["netra"]["most_viewers"])
        janus = statistics.median(table["janus"]["most_viewers"])
        if janus:
            print(f"\nviewers per core, Netra / Janus (medians): {netra / janus:.2f}x")
    # The baseline: one process, or a cluster of one node.
    baseline = next((n for n in ("netra", "netra-1-node") if n in table), None)
    for name in names:
        if name.startswith("netra-") and baseline is not None and name != baseline:
            one = statistics.median(table[baseline]["most_viewers"])
            many = statistics.median(table[name]["most_viewers"])
            if one:
                print(f"\nviewers, {name} / {baseline} (medians): {many / one:.2f}x")


def _missing_extras() -> list[str]:
    import importlib.util

    return [name for name in ("numpy", "matplotlib") if importlib.util.find_spec(name) is None]


async def _run(args: argparse.Namespace) -> int:
    missing = _missing_extras()
    if missing:
        print(
            f"netra bench needs {', '.join(missing)}: pip install 'netra[bench]' "
            "(or `make install-bench` in a checkout)",
            file=sys.stderr,
        )
        return 2
    aiortc_private.offer_host_addresses(["127.0.0.1"])  # loopback only, never the LAN
    options = LadderOptions(
        step=args.step,
        max_viewers=args.max_viewers,
        settle=args.settle,
        window=args.window,
        time_limit=args.time_limit,
        impaired=args.impaired,
        server_cpu=None if args.no_pin else 0,
        load_cpu=None if args.no_pin else 1,
        native_bots=args.bots == "native",
    )
    if args.workers <= 1:
        return await _run_targets(args, options, _targets(args, None))
    import tempfile

    from netra.bench.redis_server import RedisServer

    with tempfile.TemporaryDirectory(prefix="netra-bench-redis-") as workdir:
        redis = RedisServer(Path(workdir))
        await redis.start()
        try:
            return await _run_targets(args, options, _targets(args, redis.url))
        finally:
            redis.stop()


async def _run_targets(
    args: argparse.Namespace, options: LadderOptions, targets: list[Target]
) -> int:
    print("encoding the clip (cached after the first run)…", flush=True)
    clip = load_clip()
    print(
        f"clip: {clip.width}x{clip.height} at {clip.fps} fps, "
        f"{clip.video_bitrate / 1e6:.2f} Mbit/s video, {clip.packets_per_second:.0f} packets/s",
        flush=True,
    )
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results: list[LadderResult] = []
    compared = args.against or args.workers > 1 or args.nodes > 1 or args.baseline
    repeats = args.repeats if compared else 1
    for repeat in range(repeats):
        for target in targets:  # interleaved: this VM's speed drifts within an hour
            print(f"\n== {target.name}, run {repeat + 1} of {repeats}", flush=True)
            print(report.header(), flush=True)
            try:
                result = await run_ladder(
                    target,
                    clip,
                    dataclasses.replace(options, server_cores=_server_cores(target, args)),
                    lambda step: print(report.row(step), flush=True),
                )
            except TargetUnavailable as exc:
                print(f"netra bench: {target.name} cannot run here: {exc}", file=sys.stderr)
                return 2
            report.summary(result, sys.stdout)
            results.append(result)
    payload: dict[str, object] = {"runs": [r.to_json() for r in results]}
    if compared:
        comparison = _compare(results)
        payload["comparison"] = comparison
        _print_comparison(comparison)
    json_path = args.out / f"bench-{stamp}.json"
    chart_path = args.out / f"bench-{stamp}.png"
    report.write_json(json_path, payload)
    report.write_chart(chart_path, results, f"netra bench, {clip.packets_per_second:.0f} pkt/s")
    print(f"\nwrote {json_path} and {chart_path}")
    return 0


def main(args: argparse.Namespace) -> None:
    if args.bots == "native" and not counter.available():
        sys.exit("netra bench --bots native: the native counter is not built (make install)")
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        pass
    else:
        if args.bots == "python":  # the native counter pauses sockets, which uvloop cannot
            uvloop.install()
    sys.exit(asyncio.run(_run(args)))
