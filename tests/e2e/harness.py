"""What the browser tests and benchmarks/browser_timings.py share: a Netra server in a
subprocess, one headless Chromium, and waits that say what they were waiting for.

A limit of this rig, measured: the server and six pages share the machine's 2 vCPUs. Chromium,
run as root, raises its browser, compositor and media threads to nice -8 and its audio threads
to SCHED_RR, and while five viewer pages start together both vCPUs are saturated: the server's
event loop then sat runnable but unscheduled for 0.3-2.4 s at a time (a server at nice -10
still showed it), and a fresh-clone CI run failed the 5 s first-frame budget. So Chromium runs
without CAP_SYS_NICE (chromium-unboosted): five viewers then played in 1.5-3.2 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    WebSocketRoute,
)
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from netra.bench.target import stop_process

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "test-output"
CHROMIUM = "/usr/bin/chromium"
UNBOOSTED = str(Path(__file__).with_name("chromium-unboosted"))  # CHROMIUM, without nice boosts
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # 30 fps instead of the fake camera's default 20 (shared/notes/fan-out.md).
    "--use-fake-device-for-media-stream=fps=30",
    "--use-fake-ui-for-media-stream",
    # Without it Chromium gathers no loopback candidates, and the server offers only 127.0.0.1.
    "--allow-loopback-in-peer-connection",
]


class ServerError(RuntimeError):
    """The Netra server did not start or died."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class NetraServer:
    """`python -m netra serve` on loopback, its output in `log_path`."""

    log_path: Path
    port: int = field(default_factory=free_port)
    startup_timeout: float = 20.0
    # Tokens for this server are minted with this secret (netra.auth.mint).
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    extra_args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None
    # When the last start() first got an answer: time.monotonic() and time.time().
    listening_at: float = 0.0
    listening_wall: float = 0.0
    _log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, poll_interval: float = 0.1) -> None:
        """Start the server and return once `GET /` answers 200 (asked every
        `poll_interval` s; `listening_at` is when it first did)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        command = [
            sys.executable, "-m", "netra", "serve",
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--candidate-address", "127.0.0.1",
            *self.extra_args,
        ]  # fmt: skip
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "NETRA_AUTH_SECRET": self.secret}
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env=env
        )
        deadline = time.monotonic() + self.startup_timeout
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(
                    f"netra serve exited with {self.process.returncode} before answering GET /;"
                    f" its log ({self.log_path}) ends:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(self.base_url + "/", timeout=1) as response:
                    if response.status == 200:
                        self.listening_at, self.listening_wall = time.monotonic(), time.time()
                        return
                    last_error = f"HTTP {response.status}"
            except (urllib.error.URLError, OSError) as exc:
                last_error = str(exc)
            time.sleep(poll_interval)
        self.stop()
        raise ServerError(
            f"netra serve did not answer GET / within {self.startup_timeout:.0f} s"
            f" ({last_error}); its log ends:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """Terminate exactly the process this object started."""
        process, self.process = self.process, None
        stop_process(process)
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self) -> float:
        """Stop the server (SIGTERM: it tells its clients `server-shutdown`) and start a new one
        on the same port; returns the monotonic time it answered again (asked every 20 ms, so
        that it is within 20 ms of when it listened)."""
        self.stop()
        self.start(poll_interval=0.02)
        return self.listening_at

    def token(self, room: str = "*", *grants: str) -> str:
        """A token of this server's, for `room` with these grants (publish, subscribe, admin)."""
        from netra.auth import mint

        return mint(self.secret, room=room, **{g: True for g in grants})  # type: ignore[arg-type]

    def rooms(self) -> list[dict[str, Any]]:
        """GET /api/rooms: every room's snapshot."""
        request = urllib.request.Request(
            self.base_url + "/api/rooms",
            headers={"Authorization": f"Bearer {self.token('*', 'admin')}"},
        )
        with urllib.request.urlopen(request, timeout=2) as response:
            rooms: list[dict[str, Any]] = json.load(response)["rooms"]
        return rooms

    async def wait_forwarding(self, room: str, viewers: int, timeout: float) -> None:
        """Wait until the server forwards video of `room` to `viewers` subscriptions (each has
        been sent packets), without touching any page."""

        def forwarding() -> int:
            for snapshot in self.rooms():
                if snapshot["id"] == room:
                    video = [p for p in snapshot["publications"] if p["kind"] == "video"]
                    subs = video[0]["subscriptions"] if video else []
                    return sum(1 for sub in subs if sub["packets"] > 0)
            return 0

        deadline = time.monotonic() + timeout
        while (sent := await asyncio.to_thread(forwarding)) < viewers:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout:.1f} s waiting for room {room!r} to forward"
                    f" video to {viewers} viewers (it does to {sent}): {self.rooms()}"
                )
            await asyncio.sleep(0.1)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


async def launch_chromium(playwright: Playwright) -> Browser:
    if not os.access(CHROMIUM, os.X_OK):
        raise FileNotFoundError(
            f"{CHROMIUM} is missing: the browser tests drive Debian's Chromium"
            " (`make chromium` or `apt-get install chromium`); Playwright never downloads one here"
        )
    return await playwright.chromium.launch(
        executable_path=UNBOOSTED, headless=True, args=CHROMIUM_ARGS
    )


@dataclass
class Tab:
    """One page in its own browser context, with what it logged."""

    page: Page
    context: BrowserContext
    base_url: str
    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    async def goto(self, path: str) -> None:
        await self.page.goto(self.base_url + path, timeout=15_000)

    async def close(self) -> None:
        """Close the tab as a person does: the page gets its pagehide (and so leaves the room;
        Playwright's own close skips the page's unload handlers), then the context goes."""
        try:
            async with self.page.expect_event("close", timeout=5_000):
                await self.page.close(run_before_unload=True)
        finally:
            await self.context.close()


class Pages:
    """Opens Netra pages, each in a fresh browser context (a separate 'user')."""

    def __init__(self, browser: Browser, server: NetraServer) -> None:
        self.browser = browser
        self.server = server
        self.base_url = server.base_url
        self.tabs: list[Tab] = []

    def streamer_path(self, room: str) -> str:
        """The streamer page's link with a publish token for `room`, as a site would hand out."""
        return f"/stream/{room}?token={self.server.token(room, 'publish')}"

    async def new_tab(self) -> Tab:
        """A blank page in a new context: a user whose browser is open, before the link."""
        context = await self.browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(10_000)  # clicks and reads fail after 10 s, naming the selector
        page = await context.new_page()
        tab = Tab(page=page, context=context, base_url=self.base_url)

        def on_console(message: ConsoleMessage) -> None:
            tab.console.append(f"{message.type}: {message.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda error: tab.errors.append(str(error)))
        self.tabs.append(tab)
        return tab

    async def open(self, path: str) -> Tab:
        tab = await self.new_tab()
        await tab.goto(path)
        return tab

    async def close(self) -> None:
        for tab in self.tabs:
            try:
                await tab.context.close()
            except PlaywrightError:
                pass
        self.tabs.clear()


# Beware when testing sound: Playwright runs every evaluate (wait_until, wait_state, …) in
# Chromium as a user gesture (CDP Runtime.callFunctionOn, userGesture: true), and so, seen in
# a test, is the delivery of a routed WebSocket's messages (SignalingTap). A page the test has
# read from or tapped has the user activation a click gives, and may play sound; Chromium's own
# autoplay policy (document-user-activation-required, headless too) refuses it to an untouched
# page.

# What a page says about itself when a wait fails: window.netra (ui.js) and the DOM.
DESCRIBE = """() => {
  const n = window.netra;
  const video = document.querySelector('video');
  const text = (sel) => { const e = document.querySelector(sel); return e ? e.textContent : null; };
  const quality = video && video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : null;
  return {
    url: location.pathname,
    state: document.body.dataset.state,
    reason: document.body.dataset.reason,
    error: text('[data-role=error]'),
    viewerCount: text('[data-role=viewer-count]'),
    video: video ? {width: video.videoWidth, height: video.videoHeight,
                    frames: quality ? quality.totalVideoFrames : null,
                    paused: video.paused, readyState: video.readyState} : null,
    marks: n ? n.marks : null,
    rendered: n ? n.frames : null,
    stats: n && n.sampler ? n.sampler.latest : null,
    timeline: n ? n.timeline.entries.slice(-12).map((e) =>
      `${(e.at / 1000).toFixed(3)} ${e.what}=${e.value}${e.detail ? ' (' + e.detail + ')' : ''}`
    ) : null,
  };
}"""


async def describe(tab: Tab) -> str:
    try:
        info: Any = await tab.page.evaluate(DESCRIBE)
    except PlaywrightError as exc:
        info = {"describe-failed": str(exc)}
    if tab.errors:
        info["pageErrors"] = tab.errors[-5:]
    if tab.console:
        info["console"] = tab.console[-8:]
    return json.dumps(info, indent=1, default=str)


async def wait_until(tab: Tab, expression: str, what: str, timeout: float, arg: Any = None) -> Any:
    """Wait until `expression` (a JS function) returns truthy; on timeout fail with `what`
    and everything the page can say about itself."""
    try:
        handle = await tab.page.wait_for_function(
            expression, arg=arg, timeout=max(timeout, 0.001) * 1000, polling=100
        )
        return await handle.json_value()
    except PlaywrightTimeoutError:
        waited = f"after {timeout:.1f} s" if timeout > 0 else "(its deadline had already passed)"
        raise AssertionError(
            f"timed out {waited} waiting for {what};"
            f" the page {tab.page.url} says:\n{await describe(tab)}"
        ) from None


async def wait_state(tab: Tab, state: str, timeout: float, *, joined: bool = False) -> None:
    """Wait for body[data-state] to be `state` (after the client has joined, if `joined`)."""
    await wait_until(
        tab,
        "([state, joined]) => document.body.dataset.state === state"
        " && (!joined || (window.netra && 'joined' in window.netra.marks))",
        f"state {state!r}" + (" after joining" if joined else ""),
        timeout,
        arg=[state, joined],
    )


async def wait_viewer_count(tab: Tab, count: int, timeout: float) -> None:
    await wait_until(
        tab,
        "(n) => document.querySelector('[data-role=viewer-count]').textContent === String(n)",
        f"viewer count {count}",
        timeout,
        arg=count,
    )


async def wait_video_size(tab: Tab, width: int, height: int, timeout: float) -> None:
    await wait_until(
        tab,
        "([w, h]) => { const v = document.querySelector('[data-role=remote-video]');"
        " return v && v.videoWidth === w && v.videoHeight === h && !v.paused; }",
        f"the remote video to play at {width}x{height}",
        timeout,
        arg=[width, height],
    )


# What a person sees of an element: it takes room on the screen, is not transparent or hidden
# by an ancestor, and at its centre it is the topmost thing (not covered by something else).
SEEN = """(e) => {
  const box = e.getBoundingClientRect();
  if (box.width === 0 || box.height === 0) return false;
  for (let n = e; n; n = n.parentElement) {
    const style = getComputedStyle(n);
    if (style.display === 'none' || style.visibility === 'hidden' || style.opacity === '0') {
      return false;
    }
  }
  const x = box.left + box.width / 2, y = box.top + box.height / 2;
  if (x < 0 || y < 0 || x > innerWidth || y > innerHeight) return false;
  const top = document.elementFromPoint(x, y);
  return top !== null && (top === e || e.contains(top));
}"""


async def seen(tab: Tab, selector: str) -> bool:
    """Whether a person looking at the page sees `selector` (Playwright's is_visible, and
    not transparent, off screen or covered)."""
    locator = tab.page.locator(selector)
    if not await locator.is_visible():
        return False
    await locator.scroll_into_view_if_needed()
    visible: bool = await locator.evaluate(SEEN)
    return visible


FRAME_COUNTS = """() => {
  const v = document.querySelector('[data-role=remote-video]');
  return {decoded: v.getVideoPlaybackQuality().totalVideoFrames,
          rendered: window.netra.frames.count};
}"""


async def frame_counts(tab: Tab) -> dict[str, int]:
    counts: dict[str, int] = await tab.page.evaluate(FRAME_COUNTS)
    return counts


# Record the wall-clock time (ms) of every frame the remote video presents from now on, in
# the page (requestVideoFrameCallback), so that a gap is measured where it happens and not by
# a test-side poll that a busy machine delays.
START_FRAME_LOG = """() => {
  const video = document.querySelector('[data-role=remote-video]');
  const log = [];
  window.frameLog = log;
  const onFrame = (now) => {
    if (window.frameLog !== log) return;
    log.push(performance.timeOrigin + now);
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
}"""


async def start_frame_log(tab: Tab) -> None:
    await tab.page.evaluate(START_FRAME_LOG)


async def frame_log(tab: Tab) -> list[float]:
    """Wall-clock ms (time.time() * 1000) of each frame presented since start_frame_log."""
    times: list[float] = await tab.page.evaluate("() => window.frameLog.slice()")
    return times


def longest_gap(times: list[float], start: float, end: float) -> float:
    """The longest stretch (ms) without a frame between wall-clock ms `start` and `end`."""
    inside = [t for t in times if start <= t <= end]
    points = [start, *inside, end]
    return max(later - earlier for earlier, later in zip(points, points[1:], strict=False))


# --- steps every browser test takes -------------------------------------------------


def new_room() -> str:
    return f"e2e-{secrets.token_hex(4)}"


def remaining(since: float, budget: float) -> float:
    return budget - (time.monotonic() - since)


async def go_live(streamer: Tab, within: float | None = None) -> float:
    """Click "Go live" once the page has joined; returns the monotonic time of the click.
    With `within`, the page must say it is live (its peer connection connected) within that
    many seconds of the click, as the page itself measured it."""
    await wait_state(streamer, "waiting", timeout=10, joined=True)
    clicked = time.monotonic()
    await streamer.page.click("[data-action=go-live]")
    await wait_state(streamer, "live", timeout=10 if within is None else within + 2)
    if within is not None:
        marks = await streamer.page.evaluate("() => window.netra.marks")
        took = (marks["live"] - marks["goLive"]) / 1000
        print(f"streamer connected {took:.2f} s after Go live")
        assert took <= within, (
            f"the streamer was connected {took:.2f} s after Go live (budget {within:.1f} s);"
            f" its marks (ms since it opened): {marks}"
        )
    return clicked


async def assert_frames_advance(tabs: list[Tab], what: str) -> None:
    """Sample decoded and presented frame counts, then again until both have grown.

    The second sample may take up to 3 s: on a 2-core machine running six pages, the server
    is sometimes kept off the CPU for ~1 s while the pages start (see harness.py), and every
    viewer freezes once then; a stream that has stopped still fails here.
    """
    before = await asyncio.gather(*(frame_counts(tab) for tab in tabs))
    # Concurrently, each with its own 3 s: one slow page does not eat the others' time.
    await asyncio.gather(
        *(
            wait_until(
                tab,
                "(first) => { const v = document.querySelector('[data-role=remote-video]');"
                " return v.getVideoPlaybackQuality().totalVideoFrames > first.decoded"
                " && window.netra.frames.count > first.rendered; }",
                f"{what} {index}: more frames decoded and presented than {first}",
                timeout=3.0,
                arg=first,
            )
            for index, (tab, first) in enumerate(zip(tabs, before, strict=True))
        )
    )


# --- the signaling socket, seen and steered from the test ---------------------------------

Message = dict[str, Any]
# Given a socket and a message, return the message to pass on (maybe changed), or None to
# swallow it.
Hook = Callable[["TappedSocket", Message], Message | None]


@dataclass
class TappedSocket:
    """One WebSocket of a page, through the test: the page's end and the server's end, and
    every message each way (parsed), in order."""

    page_end: WebSocketRoute
    server_end: WebSocketRoute
    up: list[Message] = field(default_factory=list)  # page → server, as the page sent them
    down: list[Message] = field(default_factory=list)  # server → page, as the server sent them
    closed: list[tuple[str, int | None]] = field(default_factory=list)  # ("page"|"server", code)
    cut: bool = False  # dropped by the test: closes no longer cross
    opened_at: float = field(default_factory=time.monotonic)

    def sent(self, kind: str) -> list[Message]:
        return [m for m in self.up if m.get("type") == kind]

    def received(self, kind: str) -> list[Message]:
        return [m for m in self.down if m.get("type") == kind]

    def errors(self, code: str) -> list[Message]:
        return [m for m in self.received("error") if m.get("code") == code]


class SignalingTap:
    """Routes a page's signaling WebSocket through the test (Playwright's route_web_socket).

    Every message is recorded; `up` and `down` hooks may change or swallow messages on their
    way; `drop()` kills a socket the way a network does. Measured: context.set_offline() does
    not touch an open WebSocket (a live streamer stayed live and kept its socket for 15 s), so
    this is how a test takes a page's signaling away. Measured too: what a tapped page sends
    as it closes (its `leave` on pagehide) never reaches the server, since Playwright ends a
    page's routed sockets with the page; untapped pages' last messages do arrive.
    """

    def __init__(self, up: Hook | None = None, down: Hook | None = None) -> None:
        self.up = up
        self.down = down
        self.sockets: list[TappedSocket] = []
        # While set, the page's new sockets die at once without reaching the server, like
        # connects on a network that is down.
        self.offline = False
        self.refused: list[float] = []  # when each of those was refused (time.monotonic())

    async def attach(self, tab: Tab) -> None:
        """Tap every /ws the tab opens from now on (call before tab.goto)."""
        await tab.page.route_web_socket(re.compile(r"/ws$"), self._route)

    def _route(self, page_end: WebSocketRoute) -> None:
        if self.offline:
            self.refused.append(time.monotonic())
            asyncio.ensure_future(_close(page_end, 4999, "network down (test)"))
            return
        server_end = page_end.connect_to_server()
        tapped = TappedSocket(page_end, server_end)
        self.sockets.append(tapped)

        def relay(
            record: list[Message], hook: Hook | None, to: WebSocketRoute
        ) -> Callable[[str | bytes], None]:
            def on_message(raw: str | bytes) -> None:
                try:
                    message = json.loads(raw)
                except ValueError:
                    message = None
                if not isinstance(message, dict):  # not the protocol's: record-free, as is
                    if not tapped.cut:
                        to.send(raw)
                    return
                record.append(message)
                if tapped.cut:
                    return
                out = hook(tapped, message) if hook else message
                if out is not None:
                    to.send(json.dumps(out))

            return on_message

        def on_close(side: str, other: WebSocketRoute) -> Callable[[int | None, str | None], None]:
            def closed(code: int | None, reason: str | None) -> None:
                tapped.closed.append((side, code))
                if not tapped.cut:  # a close the test did not make crosses as usual
                    asyncio.ensure_future(_close(other, code, reason))

            return closed

        page_end.on_message(relay(tapped.up, self.up, server_end))
        server_end.on_message(relay(tapped.down, self.down, page_end))
        page_end.on_close(on_close("page", server_end))
        server_end.on_close(on_close("server", page_end))

    async def drop(self, tapped: TappedSocket, *, server_notices: bool) -> None:
        """The page's socket dies (the page sees a close with 1006's stand-in, 4999). If not
        `server_notices`, the server's end stays open and answers its pings, like a socket
        whose death the server has not noticed yet; `forget()` ends it later."""
        tapped.cut = True
        await _close(tapped.page_end, 4999, "dropped by the test")
        if server_notices:
            await self.forget(tapped)

    async def forget(self, tapped: TappedSocket) -> None:
        """Close the server's end of a dropped socket: the server notices the client is gone."""
        tapped.cut = True
        # The server's end is a real browser WebSocket: 1000 or 3000-4999 only (1001 is ignored).
        await _close(tapped.server_end, 1000, "dropped by the test")

    async def outage(self, tapped: TappedSocket, seconds: float) -> None:
        """The page's network goes away for `seconds`: its socket dies (the server sees it
        close), and every reconnect meanwhile fails."""
        self.offline = True
        try:
            await self.drop(tapped, server_notices=True)
            await asyncio.sleep(seconds)  # the outage itself, not a wait for a condition
        finally:
            self.offline = False


async def tapped_tab(pages: Pages, path: str, tap: SignalingTap) -> Tab:
    """A page whose signaling goes through `tap` from its first frame."""
    tab = await pages.new_tab()
    await tap.attach(tab)
    await tab.goto(path)
    return tab


async def _close(end: WebSocketRoute, code: int | None, reason: str | None) -> None:
    try:
        if code is None or code == 1005:
            await end.close()
        else:
            await end.close(code=code, reason=reason or "")
    except PlaywrightError:
        pass  # that end is gone already (its page closed)


async def eventually(check: Callable[[], bool], what: str, timeout: float) -> None:
    """Wait until `check()` (a test-side condition) holds; on timeout fail with `what`."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}")
        await asyncio.sleep(0.05)


async def holds(check: Callable[[], bool], what: str, seconds: float) -> None:
    """Check that `check()` stays true for `seconds` (sampled every 50 ms)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not check():
            raise AssertionError(f"{what} stopped holding")
        await asyncio.sleep(0.05)
    assert check(), f"{what} stopped holding"


STATES_SEEN = """() => window.netra.timeline.entries
  .filter((e) => e.what === 'state').map((e) => `${e.value}:${e.detail || ''}`)"""


async def states_seen(tab: Tab) -> list[str]:
    """Every state the page's client went through, as `state:reason`, oldest first."""
    seen: list[str] = await tab.page.evaluate(STATES_SEEN)
    return seen


@contextlib.asynccontextmanager
async def server_and_pages(log_path: Path) -> AsyncIterator[tuple[NetraServer, Browser, Pages]]:
    """For the benchmarks: a Netra server, one Chromium and its Pages, all stopped at the end
    (the server by the PID this started)."""
    from playwright.async_api import async_playwright

    server = NetraServer(log_path=log_path)
    server.start()
    try:
        async with async_playwright() as playwright:
            browser = await launch_chromium(playwright)
            pages = Pages(browser, server)
            try:
                yield server, browser, pages
            finally:
                await pages.close()
                await browser.close()
    finally:
        server.stop()


def run_benchmark(
    measure: Callable[[Path], Any], output: Path
) -> dict[str, Any]:
    """Run `measure(server_log_path)` and write its result as JSON to `output`."""
    output.parent.mkdir(parents=True, exist_ok=True)
    log_path = output.with_suffix(".server.log")
    log_path.unlink(missing_ok=True)
    result: dict[str, Any] = asyncio.run(measure(log_path))
    output.write_text(json.dumps(result, indent=1) + "\n")
    return result
