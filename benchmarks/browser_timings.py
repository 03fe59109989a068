"""How fast Netra feels in a real browser: three start-up timings, measured in headless Chromium.

    .venv/bin/python benchmarks/browser_timings.py [--runs 5] [--viewers 5] [--output FILE]

It starts its own `python -m netra serve` on a free loopback port and launches Debian's
Chromium exactly as the browser tests do (tests/e2e/harness.py), then measures, each over
`--runs` runs, and prints the median (and min-max):

1. viewer page load → first decoded frame: a viewer opens the link of a stream that is already
   live; `firstFrame` is the first requestVideoFrameCallback of its <video>, in
   performance.now() since navigation start (ui.js `window.netra.marks`).
2. "Go live" click → the streamer's peer connection `connected` (marks `goLive`,
   `pcConnected` of one page; getUserMedia is inside this span).
3. "Go live" click → every waiting viewer decodes 1280x720: `--viewers` viewers wait in the
   room, the streamer goes live, and each viewer's first 1280x720 frame (`first720`) is
   compared with the click through performance.timeOrigin (both pages share one clock).

Results go to bench-output/browser_timings.json unless --output says otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.harness import (  # noqa: E402 - the repository root is on the path only now
    Pages,
    Tab,
    run_benchmark,
    server_and_pages,
    wait_state,
    wait_until,
)

HOOK = "() => ({origin: performance.timeOrigin, marks: window.netra.marks})"
WAIT = 20.0  # seconds any one step may take


def room() -> str:
    return f"bench-{secrets.token_hex(4)}"


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 1),
        "min": round(min(values), 1),
        "max": round(max(values), 1),
    }


async def marks(tab: Tab) -> dict[str, Any]:
    hook: dict[str, Any] = await tab.page.evaluate(HOOK)
    return hook


async def go_live(streamer: Tab) -> None:
    await wait_state(streamer, "waiting", timeout=WAIT, joined=True)
    await streamer.page.click("[data-action=go-live]")
    await wait_state(streamer, "live", timeout=WAIT)


async def viewer_first_frame(pages: Pages, runs: int) -> dict[str, Any]:
    """Runs of one viewer opening a stream that has been live for a few seconds."""
    name = room()
    streamer = await pages.open(pages.streamer_path(name))
    await go_live(streamer)
    await asyncio.sleep(3.0)  # past the encoder's start-up
    samples: list[dict[str, float]] = []
    for _ in range(runs):
        viewer = await pages.new_tab()
        await viewer.goto(f"/watch/{name}")
        await wait_until(
            viewer, "() => window.netra && 'firstFrame' in window.netra.marks", "a frame", WAIT
        )
        found = (await marks(viewer))["marks"]
        samples.append({k: round(v, 1) for k, v in found.items()})
        await viewer.close()
        pages.tabs.remove(viewer)
        await asyncio.sleep(0.5)
    await streamer.close()
    pages.tabs.remove(streamer)
    steps = ["wsOpen", "joined", "offerReceived", "answerSent", "pcConnected", "firstFrame"]
    return {
        "what": "viewer navigation start -> first decoded frame (ms)",
        "firstFrame": summary([s["firstFrame"] for s in samples]),
        "medianSteps": {k: round(statistics.median(s[k] for s in samples), 1) for k in steps},
        "runs": samples,
    }


async def streamer_connect(pages: Pages, runs: int) -> dict[str, Any]:
    """Runs of a streamer going live in an empty room."""
    samples: list[dict[str, float]] = []
    for _ in range(runs):
        streamer = await pages.open(pages.streamer_path(room()))
        await go_live(streamer)
        found = (await marks(streamer))["marks"]
        click = found["goLive"]
        samples.append(
            {
                k: round(found[k] - click, 1)
                for k in ("mediaReady", "offerSent", "answerReceived", "pcConnected")
            }
        )
        await streamer.page.click("[data-action=stop]")
        await wait_state(streamer, "ended", timeout=WAIT)
        await streamer.close()
        pages.tabs.remove(streamer)
    return {
        "what": "Go live click -> streamer peer connection connected (ms)",
        "pcConnected": summary([s["pcConnected"] for s in samples]),
        "runs": samples,
    }


async def viewers_at_720p(pages: Pages, runs: int, viewers: int) -> dict[str, Any]:
    """Runs of `viewers` waiting viewers, then Go live: when does each decode 1280x720?"""
    samples: list[list[float]] = []
    for _ in range(runs):
        name = room()
        streamer = await pages.open(pages.streamer_path(name))
        tabs = [await pages.open(f"/watch/{name}") for _ in range(viewers)]
        for tab in tabs:
            await wait_state(tab, "waiting", timeout=WAIT, joined=True)
        await go_live(streamer)
        for tab in tabs:
            await wait_until(
                tab, "() => 'first720' in window.netra.marks", "a 1280x720 frame", WAIT
            )
        s = await marks(streamer)
        click = s["origin"] + s["marks"]["goLive"]
        after = []
        for tab in tabs:
            v = await marks(tab)
            after.append(round(v["origin"] + v["marks"]["first720"] - click, 1))
        samples.append(after)
        for tab in [streamer, *tabs]:
            await tab.close()
            pages.tabs.remove(tab)
    return {
        "what": f"Go live click -> each of {viewers} waiting viewers decodes 1280x720 (ms)",
        "lastViewer": summary([max(run) for run in samples]),
        "firstViewer": summary([min(run) for run in samples]),
        "runs": samples,
    }


async def measure(runs: int, viewers: int, log_path: Path) -> dict[str, Any]:
    async with server_and_pages(log_path) as (server, browser, pages):
        started = time.monotonic()
        result: dict[str, Any] = {
            "viewerFirstFrame": await viewer_first_frame(pages, runs),
            "streamerConnect": await streamer_connect(pages, runs),
            "viewersAt720p": await viewers_at_720p(pages, runs, viewers),
        }
        result["seconds"] = round(time.monotonic() - started, 1)
        result["runsEach"] = runs
        result["chromium"] = browser.version
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--viewers", type=int, default=5, help="waiting viewers in timing 3")
    parser.add_argument("--output", type=Path, default=ROOT / "bench-output/browser_timings.json")
    args = parser.parse_args()
    result = run_benchmark(lambda log: measure(args.runs, args.viewers, log), args.output)

    first = result["viewerFirstFrame"]
    connect = result["streamerConnect"]["pcConnected"]
    at720 = result["viewersAt720p"]
    print(f"Chromium {result['chromium']}, {args.runs} runs each (median, min-max in ms)")
    print(
        f"viewer page load -> first decoded frame:  {first['firstFrame']['median']}"
        f"  ({first['firstFrame']['min']}-{first['firstFrame']['max']})"
    )
    print(f"  median steps: {first['medianSteps']}")
    print(f"Go live -> streamer pc connected:         {connect['median']}"
          f"  ({connect['min']}-{connect['max']})")  # fmt: skip
    print(
        f"Go live -> all {args.viewers} viewers decode 1280x720:   {at720['lastViewer']['median']}"
        f"  ({at720['lastViewer']['min']}-{at720['lastViewer']['max']});"
        f" first viewer {at720['firstViewer']['median']}"
    )
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
