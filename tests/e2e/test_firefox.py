"""Firefox (Debian's firefox-esr, over WebDriver BiDi) watches a Chromium streamer and streams
to a Chromium viewer, through Netra's own pages."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest

from . import firefox as ff
from .harness import (
    OUTPUT,
    NetraServer,
    Pages,
    assert_frames_advance,
    describe,
    go_live,
    new_room,
    wait_state,
    wait_video_size,
    wait_viewer_count,
)

pytestmark = pytest.mark.browser

# How bright the picture in the <video> is (mean luma 0-255 over a 64x36 sample): 0 for a
# black frame. Both fake cameras fill the frame with colour (Chromium's a green-grey pattern,
# Firefox's a colour cycling from bright green), well above 40.
BRIGHTNESS = """(selector) => {
  const canvas = document.createElement('canvas');
  canvas.width = 64;
  canvas.height = 36;
  const g = canvas.getContext('2d');
  g.drawImage(document.querySelector(selector), 0, 0, 64, 36);
  const px = g.getImageData(0, 0, 64, 36).data;
  let sum = 0;
  for (let i = 0; i < px.length; i += 4) {
    sum += 0.299 * px[i] + 0.587 * px[i + 1] + 0.114 * px[i + 2];
  }
  return Math.round(sum / (px.length / 4));
}"""
NOT_BLACK = 40


@pytest.fixture
async def firefox(request: pytest.FixtureRequest, netra: NetraServer) -> AsyncIterator[ff.Firefox]:
    """A Firefox of this test alone (its output in test-output/firefox-<test>.log), whose user
    has allowed the test's server camera and microphone; fails the test if one of its pages
    reported an error (an uncaught exception, or Firefox's own, such as "ICE failed")."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    log_path = OUTPUT / f"firefox-{name}.log"
    failure = None
    try:
        async with ff.launch_firefox(log_path, media_origins=[netra.base_url]) as browser:
            yield browser
            errors = browser.errors()
            assert not errors, "uncaught errors in the Firefox pages:\n" + "\n".join(errors)
    except ff.FirefoxError as exc:
        failure = str(exc)
    if failure is not None:
        pytest.fail(failure, pytrace=False)  # a missing or broken Firefox fails, never skips


async def test_firefox_plays_a_chromium_streamer_and_sees_the_stream_end(
    netra: NetraServer, pages: Pages, firefox: ff.Firefox
) -> None:
    room = new_room()
    streamer = await pages.open(pages.streamer_path(room))
    await go_live(streamer)

    viewer = await firefox.open(f"{netra.base_url}/watch/{room}")
    await ff.wait_state(viewer, "live", timeout=10, joined=True)
    await ff.wait_video_size(viewer, 1280, 720, timeout=10)
    await ff.assert_frames_advance(viewer, "Firefox viewer")
    brightness = await viewer.evaluate(BRIGHTNESS, "[data-role=remote-video]")
    assert brightness > NOT_BLACK, f"a dark picture ({brightness}): {await ff.describe(viewer)}"
    await wait_viewer_count(streamer, 1, timeout=5)

    await streamer.page.click("[data-action=stop]")
    await ff.wait_state(viewer, "ended", timeout=5)
    shown = await viewer.evaluate("() => document.querySelector('[data-role=state]').textContent")
    assert shown == "Stream ended", shown


async def test_chromium_plays_a_firefox_streamer_and_sees_the_stream_end(
    netra: NetraServer, pages: Pages, firefox: ff.Firefox
) -> None:
    room = new_room()
    streamer = await firefox.open(netra.base_url + pages.streamer_path(room))
    await ff.wait_state(streamer, "waiting", timeout=10, joined=True)
    await streamer.click("[data-action=go-live]")
    await ff.wait_state(streamer, "live", timeout=10)

    viewer = await pages.open(f"/watch/{room}")
    await wait_state(viewer, "live", timeout=10, joined=True)
    await wait_video_size(viewer, 1280, 720, timeout=10)
    await assert_frames_advance([viewer], "Chromium viewer of Firefox")
    brightness = await viewer.page.evaluate(BRIGHTNESS, "[data-role=remote-video]")
    assert brightness > NOT_BLACK, f"a dark picture ({brightness}): {await describe(viewer)}"
    await ff.wait_viewer_count(streamer, 1, timeout=5)

    await streamer.click("[data-action=stop]")
    await wait_state(viewer, "ended", timeout=5)
