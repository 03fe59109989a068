"""What a viewer receives in the first seconds after "Go live": frame size and rate per second.

    .venv/bin/python benchmarks/start_resolution.py [--seconds 12] [--output FILE]

Starts its own `python -m netra serve` on loopback and Debian's Chromium as the browser tests
do (tests/e2e/harness.py); one viewer waits in a room, the streamer goes live, and once a second
the viewer's <video> size and getStats frame rate are printed. Chromium on aiortc's REMB-only
feedback starts at 640x360; Netra's two hints (the server's x-google-start-bitrate in its
answer, media/sdp.py, and the streamer page's degradationPreference "maintain-resolution",
static/protocol.js) are what this shows working. To see either one's share, remove it in a
scratch copy and run this with PYTHONPATH pointing at that copy's src/.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.harness import run_benchmark, server_and_pages, wait_state  # noqa: E402

RECEIVED = """() => {
  const video = document.querySelector('[data-role=remote-video]');
  const latest = window.netra.sampler.latest;
  return {width: video.videoWidth, height: video.videoHeight,
          fps: latest ? latest.framesPerSecond : null};
}"""


async def measure(seconds: int, log_path: Path) -> dict[str, Any]:
    async with server_and_pages(log_path) as (server, browser, pages):
        room = f"start-{secrets.token_hex(4)}"
        streamer = await pages.open(pages.streamer_path(room))
        viewer = await pages.open(f"/watch/{room}")
        await wait_state(streamer, "waiting", timeout=20, joined=True)
        await wait_state(viewer, "waiting", timeout=20, joined=True)
        clicked = time.monotonic()
        await streamer.page.click("[data-action=go-live]")
        timeline = []
        for _ in range(seconds):  # bounded: one sample a second
            await asyncio.sleep(1)
            sample = await viewer.page.evaluate(RECEIVED)
            sample["at"] = round(time.monotonic() - clicked, 1)
            timeline.append(sample)
            print(f"{sample['at']:5.1f} s  {sample['width']}x{sample['height']}"
                  f" @ {sample['fps']} fps", flush=True)  # fmt: skip
        first_720 = next(
            (s["at"] for s in timeline if (s["width"], s["height"]) == (1280, 720)), None
        )
        return {"timeline": timeline, "first720s": first_720, "chromium": browser.version}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=12)
    parser.add_argument(
        "--output", type=Path, default=ROOT / "bench-output/start_resolution.json"
    )
    args = parser.parse_args()
    result = run_benchmark(lambda log: measure(args.seconds, log), args.output)
    print(f"first 1280x720 sample {result['first720s']} s after Go live; written to {args.output}")


if __name__ == "__main__":
    main()
