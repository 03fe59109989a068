"""A streamer and viewers in a real headless Chromium, through a real Netra server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from .harness import (
    OUTPUT,
    Message,
    NetraServer,
    Pages,
    SignalingTap,
    Tab,
    TappedSocket,
    assert_frames_advance,
    describe,
    go_live,
    new_room,
    remaining,
    seen,
    tapped_tab,
    wait_state,
    wait_until,
    wait_video_size,
    wait_viewer_count,
)

pytestmark = pytest.mark.browser

# The brief: every viewer plays 1280x720 within this many seconds of "Go live".
FULL_SIZE_WITHIN = 10.0
# Issue 9's criteria, as a person would time them: a viewer who opens the link of a live
# stream sees its first frame within 5 s; a streamer is connected within 3 s of Go live.
FIRST_FRAME_WITHIN = 5.0
CONNECTED_WITHIN = 3.0


# The debug panel is open, and shows (table and log) a stats sample newer than `since` in
# which frames were decoded.
DEBUG_PANEL_FILLED = """(since) => {
  const s = window.netra.sampler.latest;
  return document.querySelector('[data-role=debug]').open && s && s.at > since
    && s.framesDecoded > 0 && document.querySelector('[data-role=stats] tr') !== null
    && document.querySelector('[data-role=stats-log]').textContent.trim() !== '';
}"""

UNMUTE_PROMPT = "[data-action=click-to-unmute]"
# A page's milestones (ui.js window.netra.marks) and the wall-clock ms its clock starts at.
HOOK = "() => ({origin: performance.timeOrigin, marks: window.netra.marks})"


async def sound(viewer: Tab) -> dict[str, bool]:
    """Whether the viewer's <video> is muted, and whether a person sees the "Click to unmute"
    prompt (not merely whether the page meant to hide it)."""
    muted = await viewer.page.evaluate("document.querySelector('[data-role=remote-video]').muted")
    return {"muted": muted, "prompt": await seen(viewer, UNMUTE_PROMPT)}


async def assert_first_frame_in_time(viewer: Tab, what: str) -> float:
    """Check that `viewer`, which opened the link of a live stream and has shown a frame, did
    so within FIRST_FRAME_WITHIN of opening it; returns that time in seconds."""
    # The page marks it at the frame's presentation, a moment after the <video> has a size.
    marks = await wait_until(
        viewer, "() => 'firstFrame' in window.netra.marks && window.netra.marks", "a frame", 2
    )
    # The page's clock starts when it began to load the link (performance.timeOrigin).
    first: float = marks["firstFrame"] / 1000
    assert first <= FIRST_FRAME_WITHIN, (
        f"{what} showed its first frame {first:.2f} s after opening the link"
        f" (budget {FIRST_FRAME_WITHIN:.0f} s); its marks (ms): {marks}"
    )
    return first


async def plays_in_time(viewer: Tab, what: str, clicked_wall: float) -> tuple[float, float]:
    """Wait for `viewer`, which opened the link of a live stream, to play 1280x720, then check
    the times its page measured: its first frame within FIRST_FRAME_WITHIN of opening the link
    and 1280x720 within FULL_SIZE_WITHIN of Go live (`clicked_wall`, wall-clock ms). Returns
    both, in seconds."""
    # A generous wait, so that a late viewer fails with how late it was.
    await wait_video_size(viewer, 1280, 720, timeout=FULL_SIZE_WITHIN + 10)
    await wait_until(viewer, "() => 'first720' in window.netra.marks", "a 1280x720 frame", 2)
    page = await viewer.page.evaluate(HOOK)
    marks = page["marks"]
    first = await assert_first_frame_in_time(viewer, what)
    full = (page["origin"] + marks["first720"] - clicked_wall) / 1000
    assert full <= FULL_SIZE_WITHIN, (
        f"{what} played 1280x720 {full:.2f} s after Go live (budget {FULL_SIZE_WITHIN:.0f} s);"
        f" its marks (ms since it opened the link): {marks}"
    )
    return first, full


async def save_timings(streamer: Tab, viewers: list[Tab], path: Path) -> None:
    """Write when each viewer showed its first 1280x720 frame, in ms after "Go live"."""
    s = await streamer.page.evaluate(HOOK)
    clicked = s["origin"] + s["marks"]["goLive"]
    rows = []
    for viewer in viewers:
        v = await viewer.page.evaluate(HOOK)
        rows.append({k: round(v["origin"] + ms - clicked) for k, ms in v["marks"].items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"msAfterGoLive": rows}, indent=1))


async def test_five_viewers_play_720p_and_see_the_stream_end(
    netra: NetraServer, pages: Pages
) -> None:
    room = new_room()
    streamer = await pages.open(pages.streamer_path(room))
    # Five users with a browser open on Netra's home page (new contexts, and the first page of
    # a site in each, cost seconds of CPU between them on a 2-core machine: the browser's
    # start-up, not Netra's; a fresh-clone CI run once saw a viewer page take 3.5 s to load)...
    viewers = list(await asyncio.gather(*(pages.new_tab() for _ in range(5))))
    await asyncio.gather(*(viewer.goto("/") for viewer in viewers))
    await go_live(streamer, within=CONNECTED_WITHIN)
    s = await streamer.page.evaluate(HOOK)
    clicked_wall = s["origin"] + s["marks"]["goLive"]

    # ...open the link at about the same time once the stream is live. Each viewer is waited
    # for on its own, all at once: a viewer that plays is not failed by a slow one before it.
    await asyncio.gather(*(viewer.goto(f"/watch/{room}") for viewer in viewers))
    times = await asyncio.gather(
        *(
            plays_in_time(viewer, f"viewer {index} (of 5)", clicked_wall)
            for index, viewer in enumerate(viewers)
        )
    )
    print(
        "5 viewers at once, first frame after opening the link (s):"
        f" {sorted(round(first, 2) for first, _ in times)};"
        f" 1280x720 after Go live (s): {sorted(round(full, 2) for _, full in times)}"
    )
    await assert_frames_advance(viewers, "viewer")
    for viewer in viewers:
        await wait_state(viewer, "live", timeout=2)
    await save_timings(streamer, viewers, OUTPUT / "fan-out-timings.json")

    await wait_viewer_count(streamer, 5, timeout=5)
    OUTPUT.mkdir(parents=True, exist_ok=True)
    await streamer.page.screenshot(path=str(OUTPUT / "streamer.png"))
    opened_at = await viewers[0].page.evaluate("performance.now()")
    await viewers[0].page.click("[data-role=debug] summary")
    await wait_until(
        viewers[0],
        DEBUG_PANEL_FILLED,
        "the open debug panel to show a stats sample taken after it opened",
        timeout=5,
        arg=opened_at,
    )
    await viewers[0].page.screenshot(path=str(OUTPUT / "viewer.png"), full_page=True)

    await viewers.pop().close()
    await wait_viewer_count(streamer, 4, timeout=5)

    await streamer.page.click("[data-action=stop]")
    await wait_state(streamer, "ended", timeout=5)
    for viewer in viewers:
        await wait_state(viewer, "ended", timeout=5)


async def test_a_viewer_who_came_early_waits_then_plays_by_itself(
    netra: NetraServer, pages: Pages
) -> None:
    room = new_room()
    viewer = await pages.open(f"/watch/{room}")
    await wait_state(viewer, "waiting", timeout=10, joined=True)
    assert await viewer.page.text_content("[data-role=state]") == "Waiting for the streamer…"

    streamer = await pages.open(pages.streamer_path(room))
    await wait_viewer_count(streamer, 1, timeout=5)
    clicked = await go_live(streamer, within=CONNECTED_WITHIN)

    await wait_video_size(viewer, 1280, 720, timeout=remaining(clicked, FULL_SIZE_WITHIN))
    await wait_state(viewer, "live", timeout=2)
    await assert_frames_advance([viewer], "viewer")
    # The test read this page before the stream began, which counts as a click (harness.py):
    # like a user who has touched the page, the viewer hears at once, with no prompt.
    assert await sound(viewer) == {"muted": False, "prompt": False}


async def test_a_second_streamer_in_a_room_is_refused(netra: NetraServer, pages: Pages) -> None:
    room = new_room()
    first = await pages.open(pages.streamer_path(room))
    await go_live(first)

    second = await pages.open(pages.streamer_path(room))
    await wait_state(second, "error", timeout=10)
    error = await second.page.text_content("[data-role=error]")
    assert error is not None and "streamer-exists" in error, error
    # The first streamer is not disturbed by the refusal.
    assert await first.page.evaluate("document.body.dataset.state") == "live"

    # Once the first one stops, the second one can go live from its error page.
    await first.page.click("[data-action=stop]")
    await wait_state(first, "ended", timeout=5)
    await second.page.click("[data-action=go-live]")
    await wait_state(second, "live", timeout=10)


async def test_viewers_play_again_when_the_streamer_goes_live_again(
    netra: NetraServer, pages: Pages
) -> None:
    room = new_room()
    streamer = await pages.open(pages.streamer_path(room))
    await go_live(streamer)
    viewer = await pages.open(f"/watch/{room}")
    await wait_state(viewer, "live", timeout=10)

    await streamer.page.click("[data-action=stop]")
    await wait_state(viewer, "ended", timeout=5)
    assert await viewer.page.text_content("[data-role=state]") == "Stream ended"

    await streamer.page.click("[data-action=go-live]")
    await wait_state(streamer, "live", timeout=10)
    await wait_state(viewer, "live", timeout=10)
    await wait_video_size(viewer, 1280, 720, timeout=10)
    await assert_frames_advance([viewer], "viewer")


async def test_the_home_page_leads_to_a_room(netra: NetraServer, pages: Pages) -> None:
    # The link `netra serve` prints: the home page with a publish token for any room, which
    # the page keeps and takes out of the address bar.
    token = netra.token("*", "publish")
    home = await pages.open(f"/?token={token}")
    assert "token" not in home.page.url, home.page.url
    room = await home.page.input_value("[data-role=room-input]")
    assert room.startswith("room-"), room
    watch = await home.page.get_attribute("[data-role=watch-link]", "href")
    assert watch == f"/watch/{room}"

    await home.page.fill("[data-role=room-input]", "bad room!")
    assert await home.page.is_disabled("[data-action=go-live]")
    await home.page.fill("[data-role=room-input]", "my_room-1")
    await home.page.click("[data-action=go-live]")
    await home.page.wait_for_url(f"{netra.base_url}/stream/my_room-1", timeout=5_000)
    await wait_state(home, "waiting", timeout=10, joined=True)
    # The access log names the paths, never the credential in a query string.
    assert "GET /?" not in netra.log_tail(400) and token not in netra.log_tail(400)
    assert '"GET /stream/my_room-1"' in netra.log_tail(400)


async def test_a_viewer_nobody_has_clicked_plays_muted_and_unmutes_with_one_click(
    netra: NetraServer, pages: Pages
) -> None:
    room = new_room()
    streamer = await pages.open(pages.streamer_path(room))
    await go_live(streamer)

    # Touch nothing of the viewer page until its play() has been refused or not: a read would
    # count as a click (harness.py). Packets flow to it only after its answer, which it sends
    # after its `track` handler (and play()) ran.
    viewer = await pages.open(f"/watch/{room}")
    await netra.wait_forwarding(room, viewers=1, timeout=10)

    # Sound was refused without a click: the picture plays anyway, muted, and says so.
    await wait_video_size(viewer, 1280, 720, timeout=10)
    await assert_first_frame_in_time(viewer, "the viewer")
    await viewer.page.locator(UNMUTE_PROMPT).wait_for(state="visible", timeout=5_000)
    assert await sound(viewer) == {"muted": True, "prompt": True}
    await assert_frames_advance([viewer], "viewer")

    # One click and it plays with sound, and the prompt is gone from the screen.
    await viewer.page.click(UNMUTE_PROMPT)
    await wait_until(
        viewer,
        "() => { const v = document.querySelector('[data-role=remote-video]');"
        " return !v.muted && !v.paused; }",
        "the video to play unmuted after the click",
        timeout=5,
    )
    await viewer.page.locator(UNMUTE_PROMPT).wait_for(state="hidden", timeout=2_000)
    assert await sound(viewer) == {"muted": False, "prompt": False}
    assert await viewer.page.text_content("[data-action=mute]") == "Mute"
    await assert_frames_advance([viewer], "viewer")

    # Muting is the user's choice now: no prompt to undo it.
    await viewer.page.click("[data-action=mute]")
    assert await sound(viewer) == {"muted": True, "prompt": False}
    assert await viewer.page.text_content("[data-action=mute]") == "Unmute"


async def test_a_streamer_page_without_a_token_asks_for_one_and_goes_live_with_it(
    netra: NetraServer, pages: Pages
) -> None:
    room = new_room()
    streamer = await pages.open(f"/stream/{room}")
    form = streamer.page.locator("[data-role=token-form]")
    await form.wait_for(state="visible", timeout=5_000)
    assert f"netra token --room {room} --publish" in await form.inner_text()
    assert await streamer.page.is_disabled("[data-action=go-live]")

    # A token for another room is refused by the server, and the page asks again.
    await streamer.page.fill("[data-role=token-input]", netra.token("elsewhere", "publish"))
    await streamer.page.click("[data-action=use-token]")
    await wait_state(streamer, "error", timeout=10)
    assert "forbidden" in (await describe(streamer))
    await form.wait_for(state="visible", timeout=5_000)

    await streamer.page.fill("[data-role=token-input]", netra.token(room, "publish"))
    await streamer.page.click("[data-action=use-token]")
    await wait_state(streamer, "waiting", timeout=10, joined=True)
    await go_live(streamer)
    await wait_state(streamer, "live", timeout=10)


async def test_a_browser_is_told_by_name_which_offered_codec_it_cannot_decode(
    pages: Pages,
) -> None:
    """The viewer page checks an offer against this browser's own receive capabilities
    before applying it (sdp.js `undecodableCodecs`)."""
    viewer = await pages.open(f"/watch/{new_room()}")
    missing = await viewer.page.evaluate(
        """async () => {
          const { undecodableCodecs } = await import('/static/sdp.js');
          const caps = (kind) => RTCRtpReceiver.getCapabilities(kind);
          const offer = (video) => 'v=0\\r\\nm=audio 9 UDP/TLS/RTP/SAVPF 111\\r\\n'
            + 'a=rtpmap:111 opus/48000/2\\r\\n' + `m=video 9 UDP/TLS/RTP/SAVPF 96 97\\r\\n${video}`
            + 'a=rtpmap:97 rtx/90000\\r\\na=fmtp:97 apt=96\\r\\n';
          return {
            vp8: undecodableCodecs(offer('a=rtpmap:96 VP8/90000\\r\\n'), caps),
            h264: undecodableCodecs(offer('a=rtpmap:96 H264/90000\\r\\n'), caps),
            unknown: undecodableCodecs(offer('a=rtpmap:96 XV1/90000\\r\\n'
              + 'a=fmtp:96 profile-level-id=640c1f\\r\\n'), caps),
          };
        }"""
    )
    assert missing == {
        "vp8": [],
        "h264": [],
        "unknown": ["video/XV1 (profile-level-id=640c1f)"],
    }, missing


async def test_a_viewer_offered_a_codec_its_browser_cannot_decode_is_told_which(
    netra: NetraServer, pages: Pages
) -> None:
    room = new_room()

    def rename_vp8(_: TappedSocket, message: Message) -> Message:
        # A codec no browser has, in place of what the streamer sends.
        if message["type"] == "offer":
            return {**message, "sdp": message["sdp"].replace("VP8/90000", "XV1/90000")}
        return message

    viewer = await tapped_tab(pages, f"/watch/{room}", SignalingTap(down=rename_vp8))
    await wait_state(viewer, "waiting", timeout=10, joined=True)
    streamer = await pages.open(pages.streamer_path(room))
    await go_live(streamer)

    await wait_state(viewer, "error", timeout=10)
    error = await viewer.page.text_content("[data-role=error]")
    assert error == "unsupported-codec: this browser cannot decode video/XV1", error
