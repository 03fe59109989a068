"""From a WHIP POST to the first frame a browser viewer shows, for two real publishers.

    .venv/bin/python benchmarks/whip_first_frame.py [--runs 5] [--output FILE]

It starts its own `python -m netra serve` on a free loopback port and Debian's Chromium as the
browser tests do (tests/e2e/harness.py). Each run opens a viewer page in a new room and waits
until it has joined, then publishes over WHIP with
- `aiortc`: the WHIP client of the integration tests (VP8 test pattern and a tone), and
- `ffmpeg`: FFmpeg's WHIP muxer with its defaults (tests/clients/ffmpeg_publish.py, H.264
  baseline, keyframe every second),
and measures from the POST reaching the server (the server log's "joined via whip" line, in
wall-clock milliseconds) to the viewer's first decoded frame (its first
requestVideoFrameCallback, performance.timeOrigin + marks.firstFrame: the same clock). Prints
the median and range per publisher; the JSON goes to bench-output/whip_first_frame.json.
Run it in a private network namespace, as the tests run: `unshare -n sh -c 'ip link set lo up
&& .venv/bin/python benchmarks/whip_first_frame.py'`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import secrets
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.harness import (  # noqa: E402
    NetraServer,
    Pages,
    run_benchmark,
    server_and_pages,
    wait_state,
    wait_until,
)
from tests.integration.whip_clients import WhipPublisher  # noqa: E402

from netra.media import aiortc_private  # noqa: E402 - the repository root is on the path now

FFMPEG = ROOT / "tests" / "clients" / "ffmpeg_publish.py"
FIRST_FRAME = (
    "() => window.netra.marks.firstFrame && performance.timeOrigin + window.netra.marks.firstFrame"
)
JOINED = re.compile(r"^(\S+ \S+) INFO netra\.agent: room=(\S+) .* joined via whip")


def posted_at(server: NetraServer, room: str) -> float:
    """Wall-clock ms at which the server took the room's WHIP POST (its log line)."""
    for line in server.log_path.read_text().splitlines():
        match = JOINED.match(line)
        if match and match.group(2) == room:
            return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp() * 1000
    raise RuntimeError(f"no WHIP POST for {room} in {server.log_path}")


async def publish_aiortc(server: NetraServer, room: str) -> Any:
    http = aiohttp.ClientSession()
    publisher = WhipPublisher(http, server.base_url, room, token=server.token(room, "publish"))
    await publisher.start()

    async def stop() -> None:
        await publisher.close()
        await http.close()

    return stop


async def publish_ffmpeg(server: NetraServer, room: str) -> Any:
    options = json.dumps({"authorization": server.token(room, "publish")})
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(FFMPEG), f"{server.base_url}/whip/{room}", "baseline", "6", "30",
        options, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip

    async def stop() -> None:
        if process.returncode is None:
            process.kill()
        await process.wait()

    return stop


PUBLISHERS = {"aiortc": publish_aiortc, "ffmpeg": publish_ffmpeg}


async def one_run(server: NetraServer, pages: Pages, publisher: str) -> float:
    room = f"bench-{secrets.token_hex(4)}"
    viewer = await pages.open(f"/watch/{room}")
    await wait_state(viewer, "waiting", timeout=10, joined=True)
    stop = await PUBLISHERS[publisher](server, room)
    try:
        shown = await wait_until(viewer, FIRST_FRAME, "the first frame", timeout=20)
    finally:
        await stop()
        await viewer.close()
    return float(shown) - posted_at(server, room)


async def measure(runs: int, log_path: Path) -> dict[str, Any]:
    aiortc_private.offer_host_addresses(["127.0.0.1"])  # this process's WHIP client
    result: dict[str, Any] = {"runs": runs, "unit": "ms", "publishers": {}}
    async with server_and_pages(log_path) as (server, _browser, pages):
        for publisher in PUBLISHERS:
            times = [await one_run(server, pages, publisher) for _ in range(runs)]
            result["publishers"][publisher] = {
                "median": statistics.median(times),
                "min": min(times),
                "max": max(times),
                "each": times,
            }
            print(
                f"{publisher:7s} WHIP POST -> first frame at a Chromium viewer:"
                f" median {statistics.median(times):.0f} ms"
                f" ({min(times):.0f}-{max(times):.0f}, {runs} runs)",
                flush=True,
            )
    result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--output", type=Path, default=ROOT / "bench-output/whip_first_frame.json")
    args = parser.parse_args()
    result = run_benchmark(lambda log: measure(args.runs, log), args.output)
    print(json.dumps(result["publishers"]))


if __name__ == "__main__":
    main()
