"""Server CPU and memory while one browser streamer feeds browser viewers.

    .venv/bin/python benchmarks/browser_load.py [--viewers 5] [--seconds 60] [--output FILE]

Starts its own `python -m netra serve` on a free loopback port and Debian's Chromium as the
browser tests do (tests/e2e/harness.py); opens one streamer page and `--viewers` viewer pages in
one room, goes live, waits until every viewer decodes 1280x720 and 5 s more, then samples
once a second for `--seconds`:
- the server process's CPU (utime+stime of all its threads, /proc/PID/stat) as a share of
  one core, and its RSS (/proc/PID/status VmRSS);
- from each viewer's getStats (static/stats.js): frames decoded, frame size, frame rate,
  freezes and packets lost; from the streamer: what it encodes.
Prints a summary and writes JSON (bench-output/browser_load.json by default). Server, browser
and pages share this machine's cores, so the CPU figure includes contention, not only work.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.harness import (  # noqa: E402 - the repository root is on the path only now
    run_benchmark,
    server_and_pages,
    wait_state,
    wait_until,
    wait_video_size,
)

TICKS = os.sysconf("SC_CLK_TCK")
LATEST = "() => window.netra.sampler.latest"
SETTLE_SECONDS = 5
HAS_STATS = "() => (window.netra.sampler.latest?.framesDecoded ?? null) !== null"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def measure(viewers: int, seconds: int, log_path: Path) -> dict[str, Any]:
    async with server_and_pages(log_path) as (server, browser, pages):
        assert server.process is not None
        pid = server.process.pid
        room = f"load-{secrets.token_hex(4)}"
        streamer = await pages.open(pages.streamer_path(room))
        await wait_state(streamer, "waiting", timeout=20, joined=True)
        rss_idle = rss_mb(pid)
        await streamer.page.click("[data-action=go-live]")
        await wait_state(streamer, "live", timeout=20)
        tabs = [await pages.open(f"/watch/{room}") for _ in range(viewers)]
        for tab in tabs:
            await wait_video_size(tab, 1280, 720, timeout=30)
            await wait_until(tab, HAS_STATS, "a getStats sample with decoded frames", 10)
        # Page start-up saturates both vCPUs here (tests/e2e/harness.py); freezes
        # during it are counted apart from the steady window that follows.
        await asyncio.sleep(SETTLE_SECONDS)
        first = [await tab.page.evaluate(LATEST) for tab in tabs]
        samples = []
        cpu0, wall0 = cpu_seconds(pid), time.monotonic()
        previous_cpu, previous_wall = cpu0, wall0
        for _ in range(seconds):  # bounded: one sample a second
            await asyncio.sleep(1)
            cpu, wall = cpu_seconds(pid), time.monotonic()
            now = [await tab.page.evaluate(LATEST) for tab in tabs]
            encoder = await streamer.page.evaluate(LATEST)
            samples.append(
                {
                    "at": round(wall - wall0, 1),
                    "cpuPercent": round(
                        100 * (cpu - previous_cpu) / (wall - previous_wall), 1
                    ),
                    "rssMb": round(rss_mb(pid), 1),
                    "freezes": [v["freezeCount"] for v in now],
                    "keyFramesDecoded": [v["keyFrames"] for v in now],
                    "pliSent": [v["pliCount"] for v in now],
                    "streamerFps": encoder["framesPerSecond"],
                    "streamerKeyFrames": encoder["keyFrames"],
                }
            )
            previous_cpu, previous_wall = cpu, wall
        cpu_total = cpu_seconds(pid) - cpu0
        wall_total = time.monotonic() - wall0
        last = [await tab.page.evaluate(LATEST) for tab in tabs]
        sent = await streamer.page.evaluate(LATEST)
        per_viewer = []
        for a, b in zip(first, last, strict=True):
            per_viewer.append(
                {
                    "framesDecoded": (b["framesDecoded"] or 0) - (a["framesDecoded"] or 0),
                    "frameSize": f"{b['frameWidth']}x{b['frameHeight']}",
                    "framesPerSecond": b["framesPerSecond"],
                    "freezesAtStartUp": a["freezeCount"] or 0,
                    "freezes": (b["freezeCount"] or 0) - (a["freezeCount"] or 0),
                    "packetsLost": (b["packetsLost"] or 0) - (a["packetsLost"] or 0),
                    "videoKbps": b["videoKbps"],
                }
            )
        return {
            "viewers": viewers,
            "seconds": round(wall_total, 1),
            "serverCpuPercentOfOneCore": round(100 * cpu_total / wall_total, 1),
            "serverCpuPercentPeak": max(s["cpuPercent"] for s in samples),
            "serverRssMbIdle": round(rss_idle, 1),
            "serverRssMbMedian": statistics.median(s["rssMb"] for s in samples),
            "serverRssMbEnd": samples[-1]["rssMb"],
            "streamer": {
                "frameSize": f"{sent['frameWidth']}x{sent['frameHeight']}",
                "framesPerSecond": sent["framesPerSecond"],
                "videoKbps": sent["videoKbps"],
                "qualityLimitationReason": sent["qualityLimitationReason"],
            },
            "perViewer": per_viewer,
            "samples": samples,
            "chromium": browser.version,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--viewers", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--output", type=Path, default=ROOT / "bench-output/browser_load.json")
    args = parser.parse_args()
    result = run_benchmark(lambda log: measure(args.viewers, args.seconds, log), args.output)
    print(
        f"1 streamer + {result['viewers']} viewers over {result['seconds']} s"
        f" (Chromium {result['chromium']})"
    )
    print(
        f"server CPU: {result['serverCpuPercentOfOneCore']} % of one core"
        f" (peak 1 s sample {result['serverCpuPercentPeak']} %)"
    )
    print(
        f"server RSS: {result['serverRssMbIdle']} MB before going live,"
        f" median {result['serverRssMbMedian']} MB, end {result['serverRssMbEnd']} MB"
    )
    s = result["streamer"]
    print(
        f"streamer sends {s['frameSize']} at {s['framesPerSecond']} fps, {s['videoKbps']} kbit/s"
        f" (limit: {s['qualityLimitationReason']})"
    )
    for i, v in enumerate(result["perViewer"], 1):
        print(
            f"viewer {i}: {v['frameSize']} {v['framesPerSecond']} fps, {v['framesDecoded']} frames"
            f" decoded, {v['freezes']} freezes ({v['freezesAtStartUp']} during start-up),"
            f" {v['packetsLost']} packets lost,"
            f" {v['videoKbps']} kbit/s"
        )
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
