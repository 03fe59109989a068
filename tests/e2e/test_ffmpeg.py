"""FFmpeg publishes into Netra with its WHIP muxer's defaults, and a browser watches.

PyAV's wheel bundles FFmpeg 8.1 with the `whip` muxer (ffmpeg -f whip). Its DTLS certificate
is ECDSA P-224, which Netra accepts only because of netra.media.dtls and the `cryptography<47`
pin: this test fails the day that stops working.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from .harness import (
    NetraServer,
    Pages,
    assert_frames_advance,
    new_room,
    wait_state,
    wait_video_size,
)

pytestmark = pytest.mark.browser

PUBLISHER = Path(__file__).parents[1] / "clients" / "ffmpeg_publish.py"
SECONDS = 8  # long enough for the viewer to be offered the stream and play it
FPS = 30


@pytest.mark.parametrize("profile", ["baseline", "high"])
async def test_ffmpeg_publishes_with_its_defaults_and_a_browser_plays_it(
    netra: NetraServer, pages: Pages, profile: str
) -> None:
    room = new_room()
    viewer = await pages.open(f"/watch/{room}")
    await wait_state(viewer, "waiting", timeout=10, joined=True)

    options = {"authorization": netra.token(room, "publish")}
    ffmpeg = await asyncio.create_subprocess_exec(
        sys.executable, str(PUBLISHER), f"{netra.base_url}/whip/{room}", profile,
        str(SECONDS), str(FPS), json.dumps(options),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await wait_video_size(viewer, 320, 240, timeout=SECONDS)
        await wait_state(viewer, "live", timeout=2)
        await assert_frames_advance([viewer], f"viewer of FFmpeg ({profile})")
        out, err = await asyncio.wait_for(ffmpeg.communicate(), SECONDS + 20)
    finally:
        if ffmpeg.returncode is None:
            ffmpeg.kill()
            await ffmpeg.wait()
    assert ffmpeg.returncode == 0, err.decode()[-3000:]
    assert json.loads(out)["video_frames"] == SECONDS * FPS
    # FFmpeg's close is a WHIP DELETE: the stream ends for the viewer as when a page stops.
    await wait_state(viewer, "ended", timeout=5)
