"""Debian's Firefox ESR in the browser tests, driven over WebDriver BiDi.

Playwright drives only its own Firefox build (a download, not available here); Debian's
`firefox-esr` speaks WebDriver BiDi itself (shared/notes/browsers.md). This is a small asyncio
client of it over aiohttp's WebSocket, with the same waits as harness.py's for Chromium: each
says what it waited for and, on failure, what the page says about itself (harness.DESCRIBE).

Unlike Playwright's, this client's reads and waits do not count as a user gesture
(`userActivation: false`): only `click()` does, so a Firefox page the test merely watches is a
page nobody has clicked, as for a person who opened a link.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp

from netra.bench.target import stop_process

from .harness import DESCRIBE

FIREFOX = "/usr/bin/firefox-esr"
# From the start of the process to an open BiDi session. Measured on this 2-core machine: 4-6 s
# when idle, up to 22 s under a load average of 10 (Firefox sets up a fresh profile each time).
STARTUP_TIMEOUT = 60.0
COMMAND_TIMEOUT = 15.0  # any one BiDi command (a navigation waits for the page's load event)
POLL = 0.1  # seconds between two evaluations of a wait's condition

# The profile's user.js (shared/notes/browsers.md): the fake camera and microphone without a
# prompt, ICE on loopback with plain addresses, and a start that asks nothing and calls nobody.
PREFS: dict[str, bool | int | str] = {
    "media.navigator.streams.fake": True,
    "media.navigator.permission.disabled": True,
    # Else Firefox gathers no 127.0.0.1 candidate, and the server offers only 127.0.0.1.
    "media.peerconnection.ice.loopback": True,
    # Else host candidates are mDNS `.local` names, which aioice cannot resolve.
    "media.peerconnection.ice.obfuscate_host_addresses": False,
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.startup.page": 0,
    "browser.aboutwelcome.enabled": False,
    "startup.homepage_welcome_url": "about:blank",
    "startup.homepage_welcome_url.additional": "",
    "datareporting.policy.dataSubmissionEnabled": False,
    "datareporting.healthreport.uploadEnabled": False,
    "toolkit.telemetry.enabled": False,
    "toolkit.telemetry.reportingpolicy.firstRun": False,
    "app.update.auto": False,
    "app.update.disabledForTesting": True,
    "app.normandy.enabled": False,
    "messaging-system.rsexperimentloader.enabled": False,
    "extensions.update.enabled": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
}
# What the profile's user allows the test's server (see _start).
MEDIA_KINDS = ("camera", "microphone")


class FirefoxError(RuntimeError):
    """Firefox is missing, did not start, or broke its BiDi connection."""


class BiDiError(RuntimeError):
    """A BiDi command answered with an error."""


class ScriptError(RuntimeError):
    """A script evaluated in a page threw."""


def user_js(prefs: dict[str, bool | int | str]) -> str:
    return "".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in prefs.items())


class BiDi:
    """One WebDriver BiDi session: commands matched to their answers by id, events kept."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.log: list[dict[str, Any]] = []  # log.entryAdded params, oldest first
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for frame in self._ws:
                if frame.type != aiohttp.WSMsgType.TEXT:
                    continue
                message = json.loads(frame.data)
                if message.get("type") == "event":
                    if message.get("method") == "log.entryAdded":
                        self.log.append(message["params"])
                    continue
                future = self._pending.pop(message.get("id"), None)
                if future is not None and not future.done():
                    future.set_result(message)
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(FirefoxError("Firefox closed its BiDi connection"))
            self._pending.clear()

    async def command(
        self, method: str, params: dict[str, Any], timeout: float = COMMAND_TIMEOUT
    ) -> dict[str, Any]:
        if self._reader.done():
            raise FirefoxError(f"{method}: Firefox's BiDi connection is closed")
        id_ = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[id_] = future
        await self._ws.send_str(json.dumps({"id": id_, "method": method, "params": params}))
        try:
            answer = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise FirefoxError(f"{method}: no answer from Firefox within {timeout:.1f} s") from None
        finally:
            self._pending.pop(id_, None)
        if answer.get("type") == "error":
            raise BiDiError(f"{method}: {answer.get('error')}: {answer.get('message')}")
        result: dict[str, Any] = answer["result"]
        return result

    async def close(self) -> None:
        await self._ws.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._reader, 5)


# Where to click to hit the element: its centre, once scrolled into view, with whether the
# element (or a child) is what a click there would land on.
CLICK_TARGET = """(selector) => {
  const e = document.querySelector(selector);
  if (!e) return null;
  e.scrollIntoView({block: 'center'});
  const r = e.getBoundingClientRect();
  const x = Math.round(r.x + r.width / 2), y = Math.round(r.y + r.height / 2);
  const top = document.elementFromPoint(x, y);
  return {x, y, hit: top !== null && e.contains(top), disabled: Boolean(e.disabled)};
}"""


@dataclass
class FirefoxTab:
    """One tab of Firefox, with what its pages logged."""

    bidi: BiDi
    context: str
    url: str = "about:blank"

    async def goto(self, url: str) -> None:
        """Navigate and return once the page's load event has fired (its modules have run)."""
        await self.bidi.command(
            "browsingContext.navigate", {"context": self.context, "url": url, "wait": "complete"}
        )
        self.url = url

    async def evaluate(
        self, function: str, arg: Any = None, *, user_activation: bool = False,
        timeout: float = COMMAND_TIMEOUT,
    ) -> Any:  # fmt: skip
        """Call the JS `function` (as for Playwright's page.evaluate: it may be async) with the
        JSON value `arg` in the page; return its result through JSON. `user_activation` makes
        the call count as a click on the page (e.g. for play() with sound)."""
        wrapper = (
            "async (json) => { const value = await (" + function + ")(JSON.parse(json));"
            " return JSON.stringify(value === undefined ? null : value); }"
        )
        result = await self.bidi.command(
            "script.callFunction",
            {
                "functionDeclaration": wrapper,
                "arguments": [{"type": "string", "value": json.dumps(arg)}],
                "target": {"context": self.context},
                "awaitPromise": True,
                "userActivation": user_activation,
                "resultOwnership": "none",
            },
            timeout,
        )
        if result["type"] == "exception":
            details = result["exceptionDetails"]
            raise ScriptError(details.get("text") or json.dumps(details)[:500])
        return json.loads(result["result"]["value"])

    async def click(self, selector: str) -> None:
        """Click the element's centre with the mouse, as a person would: it must be shown and
        not covered, and the click is a user gesture (a camera or sound may start)."""
        box = await self.evaluate(CLICK_TARGET, selector)
        if box is None:
            raise AssertionError(f"no {selector} to click on {self.url}:\n{await describe(self)}")
        if not box["hit"] or box["disabled"]:
            raise AssertionError(
                f"{selector} is {'disabled' if box['disabled'] else 'covered or hidden'}"
                f" on {self.url}:\n{await describe(self)}"
            )
        pointer = [
            {"type": "pointerMove", "x": box["x"], "y": box["y"]},
            {"type": "pointerDown", "button": 0},
            {"type": "pointerUp", "button": 0},
        ]
        await self.bidi.command(
            "input.performActions",
            {
                "context": self.context,
                "actions": [
                    {"type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
                     "actions": pointer},
                ],
            },
        )  # fmt: skip

    def log(self) -> list[dict[str, Any]]:
        """What this tab's pages logged: console messages and uncaught errors."""
        return [e for e in self.bidi.log if e.get("source", {}).get("context") == self.context]

    def errors(self) -> list[str]:
        """Errors of this tab's pages: uncaught exceptions, and what Firefox reports against
        the page itself (such as "WebRTC: ICE failed")."""
        return [
            f"{e.get('text')} ({_where(e)})"
            for e in self.log()
            if e.get("type") == "javascript" and e.get("level") == "error"
        ]


def _where(entry: dict[str, Any]) -> str:
    frames = (entry.get("stackTrace") or {}).get("callFrames") or []
    if not frames:
        return "no stack"
    top = frames[0]
    return f"{top.get('url')}:{top.get('lineNumber')}"


@dataclass
class Firefox:
    """A Firefox process this test started, its temporary profile and its BiDi session."""

    process: subprocess.Popen[bytes]
    root: Path  # the temporary directory holding the profile and HOME
    log_path: Path
    bidi: BiDi | None = None
    http: aiohttp.ClientSession | None = None
    tabs: list[FirefoxTab] = field(default_factory=list)
    _log: IO[bytes] | None = None

    async def new_tab(self) -> FirefoxTab:
        assert self.bidi is not None
        created = await self.bidi.command("browsingContext.create", {"type": "tab"})
        context = created["context"]
        # The size the Chromium pages have (harness.Pages).
        await self.bidi.command(
            "browsingContext.setViewport",
            {"context": context, "viewport": {"width": 1280, "height": 900}},
        )
        tab = FirefoxTab(self.bidi, context)
        self.tabs.append(tab)
        return tab

    async def open(self, url: str) -> FirefoxTab:
        tab = await self.new_tab()
        await tab.goto(url)
        return tab

    def errors(self) -> list[str]:
        return [f"{tab.url}: {error}" for tab in self.tabs for error in tab.errors()]

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def _start(root: Path, log: IO[bytes], media_origins: Sequence[str]) -> subprocess.Popen[bytes]:
    profile, home = root / "profile", root / "home"
    profile.mkdir()
    home.mkdir()
    # Firefox gathers ICE candidates on every interface (loopback too, by the pref) only for a
    # page that may use the camera or microphone; any other page gets only the address of the
    # default route, and the tests' network namespace has none. Measured with MOZ_LOG=nicer:5:
    # "use only default local addresses: yes", "failed to find default addresses", no
    # candidate, "ICE failed", even for a page that had called getUserMedia. So the profile
    # holds the choice a user makes once for a site: allow camera and microphone (permission
    # 1), in the format of the permission manager's defaults file.
    granted = profile / "permissions"
    granted.write_text(
        "".join(f"origin\t{kind}\t1\t{o}\n" for o in media_origins for kind in MEDIA_KINDS)
    )
    prefs = {**PREFS, "permissions.manager.defaultsUrl": granted.as_uri()}
    (profile / "user.js").write_text(user_js(prefs))
    # Everything Firefox writes outside the profile goes to this HOME, removed with the profile.
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "MOZ_CRASHREPORTER_DISABLE": "1",
    }
    command = [
        FIREFOX, "--headless", "--no-remote", "--profile", str(profile),
        # Port 0: Firefox picks a free one and writes it to WebDriverBiDiServer.json.
        "--remote-debugging-port", "0",
    ]  # fmt: skip
    # Its own process group, so that the content processes it forks can be found (and, if
    # they outlive it, ended) by this one id, without touching anybody else's Firefox.
    return subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )


async def _bidi_url(firefox: Firefox, deadline: float) -> str:
    """The WebSocket address Firefox writes into its profile once its BiDi server listens."""
    written = firefox.root / "profile" / "WebDriverBiDiServer.json"
    for _ in range(int(STARTUP_TIMEOUT / POLL) + 1):
        if firefox.process.poll() is not None:
            raise FirefoxError(
                f"firefox-esr exited with {firefox.process.returncode} before its BiDi server"
                f" listened; its log ({firefox.log_path}) ends:\n{firefox.log_tail()}"
            )
        with contextlib.suppress(OSError, ValueError, KeyError):
            server = json.loads(written.read_text())
            return f"ws://{server['ws_host']}:{server['ws_port']}/session"
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(POLL)
    raise FirefoxError(
        f"firefox-esr wrote no {written.name} within {STARTUP_TIMEOUT:.0f} s;"
        f" its log ({firefox.log_path}) ends:\n{firefox.log_tail()}"
    )


async def _stop(firefox: Firefox) -> None:
    """Close the session (Firefox quits), then make sure the process and its children are gone,
    by the ids this started: the PID, and the process group it leads."""
    if firefox.bidi is not None:
        with contextlib.suppress(FirefoxError, BiDiError, aiohttp.ClientError, ConnectionError):
            await firefox.bidi.command("browser.close", {}, timeout=5)
        await firefox.bidi.close()
    if firefox.http is not None:
        await firefox.http.close()
    process = firefox.process
    with contextlib.suppress(subprocess.TimeoutExpired):
        await asyncio.to_thread(process.wait, 10)
    await asyncio.to_thread(stop_process, process)  # terminate, then kill, if it did not quit
    # Content processes end when their parent does; give them a moment, then end the rest of
    # the group this test created.
    for _ in range(50):
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        await asyncio.sleep(POLL)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    if firefox._log is not None:
        firefox._log.close()


@contextlib.asynccontextmanager
async def launch_firefox(
    log_path: Path, media_origins: Sequence[str] = ()
) -> AsyncIterator[Firefox]:
    """A headless Firefox ESR with a fresh profile and a BiDi session, whose user has allowed
    camera and microphone to `media_origins` (e.g. "http://127.0.0.1:8080"); at the end the
    session is closed, the process ended and the profile removed."""
    if not os.access(FIREFOX, os.X_OK):
        raise FirefoxError(
            f"{FIREFOX} is missing: the Firefox tests drive Debian's Firefox ESR"
            " (`make firefox` or `apt-get install firefox-esr`)"
        )
    log_path.parent.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="netra-firefox-"))
    log = open(log_path, "wb")  # noqa: SIM115 - closed in _stop()
    firefox: Firefox | None = None
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        process = _start(root, log, media_origins)
        firefox = Firefox(process=process, root=root, log_path=log_path, _log=log)
        url = await _bidi_url(firefox, deadline)
        firefox.http = aiohttp.ClientSession()
        try:
            ws = await firefox.http.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=5))
        except aiohttp.ClientError as exc:
            raise FirefoxError(f"cannot connect to Firefox's BiDi server at {url}: {exc}") from exc
        firefox.bidi = BiDi(ws)
        # The BiDi server listens early; the session waits for the first window to be ready.
        left = max(deadline - time.monotonic(), 1.0)
        try:
            await firefox.bidi.command("session.new", {"capabilities": {}}, timeout=left)
            await firefox.bidi.command("session.subscribe", {"events": ["log.entryAdded"]})
        except (FirefoxError, BiDiError) as exc:
            raise FirefoxError(
                f"Firefox opened no BiDi session ({exc}); its log ({log_path}) ends:\n"
                + firefox.log_tail()
            ) from exc
        yield firefox
    finally:
        if firefox is not None:
            await _stop(firefox)
        else:
            log.close()
        shutil.rmtree(root, ignore_errors=True)


# --- waits, as harness.py's for Chromium ------------------------------------------------


async def describe(tab: FirefoxTab) -> str:
    """What the page says about itself (harness.DESCRIBE), and what it logged last."""
    try:
        info: Any = await tab.evaluate(DESCRIBE, timeout=5)
    except (ScriptError, BiDiError, FirefoxError) as exc:
        info = {"describe-failed": str(exc)}
    if errors := tab.errors():
        info["pageErrors"] = errors[-5:]
    if console := [f"{e.get('level')}: {e.get('text')}" for e in tab.log()]:
        info["console"] = console[-8:]
    return json.dumps(info, indent=1, default=str)


async def wait_until(
    tab: FirefoxTab, function: str, what: str, timeout: float, arg: Any = None
) -> Any:
    """Wait until the JS `function` returns truthy (evaluated every 100 ms; a throw or a slow
    answer counts as not yet, as while the page loads); on timeout fail with `what` and the
    page's state."""
    deadline = time.monotonic() + timeout
    last_error = ""
    for _ in range(int(timeout / POLL) + 2):
        left = deadline - time.monotonic()
        try:
            value = await tab.evaluate(function, arg, timeout=max(left, 2.0))
        except (ScriptError, BiDiError, FirefoxError) as exc:
            value, last_error = None, str(exc)
        if value:
            return value
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(min(POLL, max(deadline - time.monotonic(), 0)))
    threw = f" (it last threw: {last_error})" if last_error else ""
    raise AssertionError(
        f"timed out after {timeout:.1f} s waiting for {what} in Firefox{threw};"
        f" the page {tab.url} says:\n{await describe(tab)}"
    )


async def wait_state(tab: FirefoxTab, state: str, timeout: float, *, joined: bool = False) -> None:
    """Wait for body[data-state] to be `state` (after the client has joined, if `joined`)."""
    await wait_until(
        tab,
        "([state, joined]) => document.body.dataset.state === state"
        " && (!joined || (window.netra && 'joined' in window.netra.marks))",
        f"state {state!r}" + (" after joining" if joined else ""),
        timeout,
        arg=[state, joined],
    )


async def wait_video_size(tab: FirefoxTab, width: int, height: int, timeout: float) -> None:
    await wait_until(
        tab,
        "([w, h]) => { const v = document.querySelector('[data-role=remote-video]');"
        " return v && v.videoWidth === w && v.videoHeight === h && !v.paused; }",
        f"the remote video to play at {width}x{height}",
        timeout,
        arg=[width, height],
    )


async def wait_viewer_count(tab: FirefoxTab, count: int, timeout: float) -> None:
    await wait_until(
        tab,
        "(n) => document.querySelector('[data-role=viewer-count]').textContent === String(n)",
        f"viewer count {count}",
        timeout,
        arg=count,
    )


# Frames the remote <video>'s stream has decoded and the <video> has presented. Measured in
# Firefox 153: getVideoPlaybackQuality().totalVideoFrames stays 0 for a MediaStream source (it
# counts only what its own media pipeline decodes), so `decoded` is the inbound RTP stream's
# framesDecoded (getStats) and `rendered` the requestVideoFrameCallback count of ui.js.
FRAME_COUNTS = """async () => {
  let decoded = 0;
  const pc = window.netra.client.pc;
  if (pc) {
    for (const s of (await pc.getStats()).values()) {
      if (s.type === 'inbound-rtp' && s.kind === 'video') decoded += s.framesDecoded || 0;
    }
  }
  return {decoded, rendered: window.netra.frames.count};
}"""


async def assert_frames_advance(
    tab: FirefoxTab, what: str, frames: int = 5, timeout: float = 3.0
) -> None:
    """Sample decoded and presented frame counts, then again until both have grown by
    `frames`: a picture that moves, not one late frame."""
    first = await tab.evaluate(FRAME_COUNTS)
    await wait_until(
        tab,
        "async ([first, frames]) => { const now = await (" + FRAME_COUNTS + ")();"
        " return now.decoded >= first.decoded + frames"
        " && now.rendered >= first.rendered + frames && now; }",
        f"{what}: {frames} more frames decoded and presented than {first}",
        timeout,
        arg=[first, frames],
    )
