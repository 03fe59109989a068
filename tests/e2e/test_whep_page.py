"""The viewer page over WHEP (`/watch/{room}?via=whep`): the same page, states and debug
panel as over the WebSocket, but the player offers to /whep/{room} and learns from the
server's events when the stream stops and starts."""

from __future__ import annotations

import pytest

from .harness import (
    NetraServer,
    Pages,
    assert_frames_advance,
    go_live,
    new_room,
    wait_state,
    wait_until,
    wait_video_size,
    wait_viewer_count,
)

pytestmark = pytest.mark.browser


async def test_a_whep_viewer_waits_plays_sees_the_end_and_plays_the_next_stream(
    netra: NetraServer, pages: Pages
) -> None:
    room = new_room()
    viewer = await pages.open(f"/watch/{room}?via=whep")
    # 409 + Retry-After until the room is live: the page waits, then plays by itself.
    await wait_state(viewer, "waiting", timeout=10)

    streamer = await pages.open(pages.streamer_path(room))
    await wait_state(streamer, "waiting", timeout=10, joined=True)
    await go_live(streamer)
    await wait_video_size(viewer, 1280, 720, timeout=20)
    await wait_state(viewer, "live", timeout=5)
    await assert_frames_advance([viewer], "WHEP viewer")
    # A WHEP viewer is a viewer like any other: the streamer counts it, and the player hears
    # the count through the server's events.
    await wait_viewer_count(streamer, 1, timeout=5)
    await wait_viewer_count(viewer, 1, timeout=5)
    assert await viewer.page.evaluate("document.body.dataset.via") == "whep"

    await streamer.page.click("[data-action=stop]")
    await wait_state(viewer, "ended", timeout=10)

    await streamer.page.click("[data-action=go-live]")
    await wait_state(streamer, "live", timeout=10)
    await wait_state(viewer, "live", timeout=20)
    await assert_frames_advance([viewer], "WHEP viewer, second stream")


@pytest.mark.netra_args("--viewers-need-token")
async def test_a_whep_viewer_without_the_token_a_locked_server_needs_is_told_so(
    pages: Pages,
) -> None:
    viewer = await pages.open(f"/watch/{new_room()}?via=whep")
    await wait_state(viewer, "error", timeout=10)
    error = await wait_until(
        viewer, "() => document.querySelector('[data-role=error]').textContent", "error", 5
    )
    assert error.startswith("unauthorized"), error
