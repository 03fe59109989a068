"""Real third-party WHIP/WHEP clients against a real Netra: interop, not our own reading of
the RFCs.

- medooze's `whip-whep` WHIPClient publishes Chromium's fake camera; Netra's own viewer page
  decodes it.
- `whip-whep`'s WHEPClient plays a stream that Netra's streamer page publishes.
- `@eyevinn/webrtc-player` plays over WHEP a stream that WHIPClient publishes.
- `obslike.mjs` (libdatachannel, OBS Studio's WebRTC stack, driven as OBS 30.2+ drives it)
  publishes H.264 High with no candidates in its offer; Netra's viewer page decodes it.

The libraries come from npm (`tests/clients/package.json`, installed by `make clients`); the
client pages (`tests/clients/pages/`) are served from a second loopback port, so every WHIP
and WHEP call is cross-origin and exercises Netra's CORS headers: a Location, ETag or Link
the server did not expose reads as null in the page.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp import web
from playwright.async_api import Error as PlaywrightError

from .harness import (
    OUTPUT,
    ROOT,
    NetraServer,
    Pages,
    Tab,
    describe,
    free_port,
    go_live,
    new_room,
    wait_until,
    wait_video_size,
)

pytestmark = pytest.mark.browser

CLIENTS = ROOT / "tests" / "clients"
NODE_MODULES = CLIENTS / "node_modules"
INSTALLED = {
    "whip-whep": NODE_MODULES / "whip-whep" / "whip.js",
    "@eyevinn/webrtc-player bundle": CLIENTS / "bundles" / "eyevinn-webrtc-player.iife.js",
    "node-datachannel": NODE_MODULES / "node-datachannel" / "package.json",
}
SSE_REL = "urn:ietf:params:whep:ext:core:server-sent-events"

# Seconds: a client page has answered its POST; a decoding page shows moving video.
SIGNALED_WITHIN = 15.0
PLAYING_WITHIN = 15.0


def node() -> str:
    """The node binary, after checking the client kit is installed; fails (never skips)
    naming `make clients` otherwise."""
    missing = [f"{name} ({path})" for name, path in INSTALLED.items() if not path.exists()]
    binary = shutil.which("node")
    if binary is None:
        missing.append("node (Debian's nodejs)")
    if missing:
        pytest.fail(
            "the WHIP/WHEP client kit is not installed: missing "
            + ", ".join(missing)
            + ". Run `make clients` (Debian's nodejs and npm, then `npm ci && npm run build`"
            " in tests/clients).",
            pytrace=False,
        )
    assert binary is not None
    return binary


@pytest.fixture
async def client_site() -> AsyncIterator[str]:
    """The client pages and libraries on their own origin (another loopback port)."""
    node()
    app = web.Application()
    app.router.add_static("/pages", CLIENTS / "pages")
    app.router.add_static("/whip-whep", NODE_MODULES / "whip-whep")
    app.router.add_static("/bundles", CLIENTS / "bundles")
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


# --- reading the client pages (tests/clients/pages/kit.js) -----------------------------------


async def kit(tab: Tab) -> dict[str, Any]:
    state: dict[str, Any] = await tab.page.evaluate("() => window.kit || null") or {}
    return state


async def kit_report(tab: Tab) -> str:
    """A client page's account of itself (window.kit), for failure messages."""
    try:
        state = await kit(tab)
    except PlaywrightError as exc:
        return f"kit: unreadable ({exc})"
    if not state:
        return ""
    # The offers the page sent are long and rarely the story; the answers stay.
    state["http"] = [{k: v for k, v in e.items() if k != "sent"} for e in state.get("http", [])]
    return "kit: " + json.dumps(state, indent=1, default=str)


async def page_report(tab: Tab) -> str:
    """What a page says about itself: the harness's description, plus a client page's kit."""
    return f"{await describe(tab)}\n{await kit_report(tab)}"


async def open_client(pages: Pages, site: str, page: str, **query: str) -> Tab:
    tab = await pages.new_tab()
    await tab.page.goto(f"{site}/pages/{page}?{urlencode(query)}", timeout=15_000)
    return tab


async def wait_kit(tab: Tab, state: str, timeout: float) -> None:
    """Wait for a client page's kit.state, failing at once (with what it saw) on 'error'."""
    try:
        await wait_until(
            tab,
            "(s) => window.kit && (window.kit.state === s || window.kit.state === 'error')",
            f"the client page to reach {state!r}",
            timeout,
            arg=state,
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{await kit_report(tab)}") from None
    seen = await kit(tab)
    if seen["state"] != state:
        raise AssertionError(
            f"the client page failed before {state!r}: {seen['error']}\n{await page_report(tab)}"
        )


async def wait_playing(tab: Tab, what: str, timeout: float) -> None:
    """The page's remote <video> plays real video: it has a size and is not paused."""
    try:
        await wait_until(
            tab,
            "() => { const v = document.querySelector('[data-role=remote-video]');"
            " return v && v.videoWidth > 0 && v.videoHeight > 0 && !v.paused"
            " && v.readyState >= 2; }",
            f"{what} to play video",
            timeout,
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{await kit_report(tab)}") from None


# Decoded frames (the element's playback quality) and presented frames (kit.js's
# requestVideoFrameCallback count, or the Netra viewer's own).
FRAMES = """() => {
  const v = document.querySelector('[data-role=remote-video]');
  const presented = window.kit ? window.kit.frames : window.netra.frames.count;
  return {decoded: v.getVideoPlaybackQuality().totalVideoFrames, presented,
          size: `${v.videoWidth}x${v.videoHeight}`};
}"""

FRAMES_GREW = """(first) => {
  const v = document.querySelector('[data-role=remote-video]');
  const presented = window.kit ? window.kit.frames : window.netra.frames.count;
  return v.getVideoPlaybackQuality().totalVideoFrames > first.decoded + 10
    && presented > first.presented + 10;
}"""


async def assert_frames_advance(tab: Tab, what: str) -> dict[str, Any]:
    """More than 10 frames decoded and presented within 3 s (a stalled stream fails)."""
    first: dict[str, Any] = await tab.page.evaluate(FRAMES)
    try:
        await wait_until(
            tab,
            FRAMES_GREW,
            f"{what}: more frames decoded and presented than {first}",
            3.0,
            arg=first,
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{await kit_report(tab)}") from None
    last: dict[str, Any] = await tab.page.evaluate(FRAMES)
    return last


def exchanges(state: dict[str, Any], method: str) -> list[dict[str, Any]]:
    return [entry for entry in state["http"] if entry["method"] == method]


# The client page's POST to `path` has an answer (or an error), or the page gave up.
POST_ANSWERED = """(path) => window.kit && (window.kit.state === 'error' || window.kit.http.some(
  (e) => e.method === 'POST' && e.url.endsWith(path) && ('status' in e || 'error' in e)))"""


async def session_created(tab: Tab, kind: str, room: str, timeout: float) -> dict[str, Any]:
    """Wait for the library's POST to /{kind}/{room} to be answered, then check the answer as
    the page saw it: exactly 201, Location (an absolute path to the session) and ETag readable
    across origins, and an SDP answer holding the server's candidates (RFC 9725 §4.3.2; none
    of these clients can receive trickled ones)."""
    path = f"/{kind}/{room}"
    try:
        await wait_until(
            tab,
            POST_ANSWERED,
            f"the library's POST to {path} to be answered",
            timeout,
            arg=path,
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{await kit_report(tab)}") from None
    state = await kit(tab)
    posts = [e for e in exchanges(state, "POST") if e["url"].endswith(path)]
    assert posts, f"the client page failed before its POST to {path}:\n{await kit_report(tab)}"
    post = posts[-1]
    seen = {key: value for key, value in post.items() if key != "sent"}
    assert post.get("status") == 201, f"POST {path} (exactly 201 expected): {seen}"
    location = post.get("location") or ""
    assert location.startswith(f"{path}/"), (
        f"POST {path}: Location not readable cross-origin, or not an absolute path: {seen}"
    )
    assert post.get("etag"), f"POST {path}: ETag not readable cross-origin: {seen}"
    assert "a=candidate:" in (post.get("body") or ""), (
        f"POST {path}: the answer lists no server candidates: {seen}"
    )
    return post


def assert_trickle_accepted(state: dict[str, Any]) -> None:
    """Every trickle PATCH the library sent got 204."""
    for patch in exchanges(state, "PATCH"):
        assert patch.get("status") == 204, f"PATCH {patch['url']}: {patch}"


async def stop_and_check_delete(tab: Tab, stop: str, post: dict[str, Any]) -> None:
    """Call the page's stop function (the library's DELETE) and check it got exactly 200.

    whip-whep's stop() closes its RTCPeerConnection first and sends DELETE right after (OBS
    does the same); @eyevinn/webrtc-player sends DELETE first. Either way the session must
    still answer 200."""
    await tab.page.evaluate(f"() => window.{stop}()")
    await wait_kit(tab, "stopped", 10)
    state = await kit(tab)
    deletes = exchanges(state, "DELETE")
    assert deletes, f"the library sent no DELETE: {state['http']}"
    assert deletes[-1]["url"].endswith(post["location"]), f"DELETE went elsewhere: {deletes}"
    assert deletes[-1].get("status") == 200, (
        f"DELETE (exactly 200 expected, also right after the client closed its peer"
        f" connection): {deletes[-1]}\n{await kit_report(tab)}"
    )


async def whipclient_publishing(
    netra: NetraServer, pages: Pages, client_site: str, room: str
) -> tuple[Tab, dict[str, Any]]:
    """whip-whep's WHIPClient publishing the fake camera into `room`, and its POST."""
    publisher = await open_client(
        pages, client_site, "whip-publish.html",
        endpoint=f"{netra.base_url}/whip/{room}", token=netra.token(room, "publish"),
    )  # fmt: skip
    post = await session_created(publisher, "whip", room, SIGNALED_WITHIN)
    await wait_kit(publisher, "published", SIGNALED_WITHIN)
    return publisher, post


# --- the tests ---------------------------------------------------------------------------------


async def test_whip_whep_whipclient_publishes_and_a_netra_viewer_decodes(
    netra: NetraServer, pages: Pages, client_site: str
) -> None:
    room = new_room()
    publisher, post = await whipclient_publishing(netra, pages, client_site, room)

    viewer = await pages.open(f"/watch/{room}")
    await wait_playing(viewer, "the Netra viewer", PLAYING_WITHIN)
    await assert_frames_advance(viewer, "the Netra viewer")

    assert_trickle_accepted(await kit(publisher))
    await stop_and_check_delete(publisher, "stopPublishing", post)


async def test_whip_whep_whepclient_plays_a_stream_from_the_streamer_page(
    netra: NetraServer, pages: Pages, client_site: str
) -> None:
    room = new_room()
    streamer = await pages.open(pages.streamer_path(room))
    await go_live(streamer)

    player = await open_client(
        pages, client_site, "whep-play.html", endpoint=f"{netra.base_url}/whep/{room}"
    )
    post = await session_created(player, "whep", room, SIGNALED_WITHIN)
    assert SSE_REL in (post.get("link") or ""), f"no server-sent events Link readable: {post}"
    await wait_kit(player, "playing", SIGNALED_WITHIN)
    await wait_playing(player, "WHEPClient", PLAYING_WITHIN)
    await assert_frames_advance(player, "WHEPClient")

    state = await kit(player)
    assert state.get("eventsUrl"), f"whip-whep found no events URL in the Link header: {state}"
    # whip-whep POSTs the event list to the Link's URL and opens an EventSource on the
    # Location it gets back, both cross-origin; the stream is live, so 'active' comes first.
    try:
        await wait_until(
            player,
            "() => window.kit.eventSourceState === 1"
            " && window.kit.sse.some((e) => e.startsWith('active'))",
            "whip-whep's EventSource open and an 'active' event on it",
            5,
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{await kit_report(player)}") from None
    assert_trickle_accepted(state)
    await stop_and_check_delete(player, "stopPlaying", post)


async def test_eyevinn_webrtc_player_plays_a_stream_from_whipclient(
    netra: NetraServer, pages: Pages, client_site: str
) -> None:
    room = new_room()
    publisher, _ = await whipclient_publishing(netra, pages, client_site, room)

    player = await open_client(
        pages, client_site, "eyevinn-play.html", endpoint=f"{netra.base_url}/whep/{room}"
    )
    post = await session_created(player, "whep", room, SIGNALED_WITHIN)
    await wait_playing(player, "@eyevinn/webrtc-player", PLAYING_WITHIN)
    await assert_frames_advance(player, "@eyevinn/webrtc-player")
    await stop_and_check_delete(player, "stopPlaying", post)


async def test_obs_like_publisher_sends_h264_high_and_a_netra_viewer_decodes(
    netra: NetraServer, pages: Pages, tmp_path: Path
) -> None:
    binary = node()
    media = await run_media_maker(tmp_path)
    room = new_room()
    obs = await asyncio.create_subprocess_exec(
        binary, str(CLIENTS / "obslike.mjs"),
        "--url", f"{netra.base_url}/whip/{room}",
        "--token", netra.token(room, "publish"),
        "--h264", media["video"]["path"], "--opus", media["audio"]["path"],
        "--seconds", "0",  # until told to stop, like OBS's Stop Streaming button
        "--bind", "127.0.0.1",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        viewer = await pages.open(f"/watch/{room}")
        size = media["video"]["size"].split("x")
        await unless_exited(
            obs,
            wait_video_size(viewer, int(size[0]), int(size[1]), timeout=PLAYING_WITHIN),
            "the Netra viewer to decode the OBS-like stream",
        )
        await unless_exited(
            obs,
            assert_frames_advance(viewer, "the Netra viewer of the OBS-like stream"),
            "the Netra viewer's frames to advance",
        )
        assert obs.stdin is not None
        obs.stdin.write(b"stop\n")
        await obs.stdin.drain()
        result, stderr = await obs_result(obs, timeout=20)
    finally:
        if obs.returncode is None:
            obs.kill()  # the process this test started, by its handle
            await obs.communicate()
    seen = f"obslike said: {json.dumps(result, indent=1)}\nits log:\n{stderr}"
    assert result["post"]["status"] == 201, seen
    assert result["delete"]["status"] == 200, seen
    assert result["offer"]["candidates"] == 0 and not result["offer"]["endOfCandidates"], seen
    assert "profile-level-id=640c1f" in result["offer"]["h264Fmtp"], seen
    assert result["connected"] and result["video"]["frames"] > 0, seen
    assert result["ok"] and obs.returncode == 0, seen


# --- the OBS-like publisher's plumbing ---------------------------------------------------------


async def run_media_maker(out: Path) -> dict[str, Any]:
    """H.264 High and Opus files for obslike.mjs (tests/clients/media.py, PyAV's libx264)."""
    maker = await asyncio.create_subprocess_exec(
        sys.executable, str(CLIENTS / "media.py"), str(out), "--seconds", "4",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        stdout, stderr = await asyncio.wait_for(maker.communicate(), timeout=60)
    finally:
        if maker.returncode is None:
            maker.kill()
            await maker.communicate()
    assert maker.returncode == 0, f"media.py failed: {stderr.decode(errors='replace')}"
    made: dict[str, Any] = json.loads(stdout)
    return made


async def obs_result(obs: asyncio.subprocess.Process, timeout: float) -> tuple[dict[str, Any], str]:
    """Wait for obslike.mjs to exit; its JSON line and its log."""
    try:
        stdout, stderr = await asyncio.wait_for(obs.communicate(), timeout=timeout)
    except TimeoutError:
        raise AssertionError(f"obslike.mjs did not exit within {timeout:.0f} s") from None
    log = stderr.decode(errors="replace")
    lines = stdout.decode(errors="replace").strip().splitlines()
    if not lines:
        raise AssertionError(f"obslike.mjs printed no result (exit {obs.returncode}):\n{log}")
    result: dict[str, Any] = json.loads(lines[-1])
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / "obslike-result.json").write_text(json.dumps(result, indent=1) + "\n")
    (OUTPUT / "obslike.log").write_text(log)
    return result, log


async def unless_exited(obs: asyncio.subprocess.Process, wait: Any, what: str) -> None:
    """Await `wait`, but fail at once, with obslike's own account, if it exits first."""
    waiting = asyncio.ensure_future(wait)
    exited = asyncio.ensure_future(obs.wait())
    try:
        done, _ = await asyncio.wait({waiting, exited}, return_when=asyncio.FIRST_COMPLETED)
        if waiting in done:
            waiting.result()
            return
        result, log = await obs_result(obs, timeout=5)
        raise AssertionError(
            f"obslike.mjs exited ({obs.returncode}) while waiting for {what}:"
            f" {json.dumps(result, indent=1)}\nits log:\n{log}"
        )
    finally:
        for task in (waiting, exited):
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
