"""Janus 1.1.2's VideoRoom as a target, for a side-by-side with Netra on loopback.

Janus is the Debian package (`apt-get install janus`); nothing is installed from here. Each
start writes a lean config folder into a temporary directory: only the VideoRoom plugin and
the WebSocket transport on 127.0.0.1, no HTTP, no admin API, no STUN/TURN, no event handlers
or loggers, and one room for one publisher. See ../shared/notes/janus.md for why each setting.

Janus's ICE code skips every interface flagged IFF_LOOPBACK before it consults
`ice_enforce_list`, so on loopback it would offer no candidate at all. A tiny LD_PRELOAD shim,
compiled with gcc at start, clears that flag in what getifaddrs() returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription

from .target import (
    NEGOTIATION_TIMEOUT,
    Session,
    TargetUnavailable,
    close_socket,
    free_port,
    pinned,
    stop_process,
    wait_for_port,
)

ROOM = 1234
KEEPALIVE_INTERVAL = 15.0  # Janus drops a session after session_timeout (60 s) of silence
CLOSE_TIMEOUT = 2.0  # closing must not hang on a server that is already going away
VIDEOROOM = "janus.plugin.videoroom"
PROTOCOL = "janus-protocol"

Json = dict[str, Any]

_SHIM_SOURCE = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <stddef.h>

/* Janus ignores loopback interfaces outright; present lo as an ordinary one. */
int getifaddrs(struct ifaddrs **ifap) {
    static int (*real_getifaddrs)(struct ifaddrs **);
    if (!real_getifaddrs)
        real_getifaddrs = (int (*)(struct ifaddrs **))dlsym(RTLD_NEXT, "getifaddrs");
    int rc = real_getifaddrs(ifap);
    if (rc == 0)
        for (struct ifaddrs *i = *ifap; i != NULL; i = i->ifa_next)
            i->ifa_flags &= ~IFF_LOOPBACK;
    return rc;
}
"""


def _janus_binary() -> str:
    found = shutil.which("janus")
    if found is None and os.access("/usr/bin/janus", os.X_OK):
        found = "/usr/bin/janus"  # PATH may lack /usr/bin in a stripped environment
    if found is None:
        raise TargetUnavailable(
            "janus is not installed: run `apt-get install janus` (Debian 12 gives 1.1.2)"
        )
    return found


def _module(kind: str, name: str) -> Path:
    """The packaged plugin or transport `name`, wherever this distribution puts it."""
    patterns = [f"/usr/lib/*/janus/{kind}/{name}", f"/usr/lib/janus/{kind}/{name}",
                f"/usr/local/lib/janus/{kind}/{name}"]  # fmt: skip
    for pattern in patterns:
        if matches := sorted(glob.glob(pattern)):
            return Path(matches[0])
    raise TargetUnavailable(f"janus is installed but its {name} was not found in {patterns}")


def _cfg(value: object) -> str:
    # libconfig strings use C escapes; JSON's are a compatible subset for these values.
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, str) else str(value)


def _section(name: str, settings: dict[str, object]) -> str:
    lines = "".join(f"\t{key} = {_cfg(value)}\n" for key, value in settings.items())
    return f"{name}: {{\n{lines}}}\n"


class JanusTarget:
    """Janus's VideoRoom (room 1234, one publisher) on a WebSocket on 127.0.0.1.

    Thread model: with `event_loops=1` (the default here) every handle's media runs on one
    shared loop thread, which roughly halved Janus's CPU on one pinned core in the notes'
    measurements; `event_loops=None` keeps Janus's own default of one loop thread per handle.
    Report which one a result was measured with.
    """

    name = "janus"

    def __init__(self, event_loops: int | None = 1) -> None:
        self.event_loops = event_loops
        self.port = 0
        self.log_path: Path | None = None
        self._dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._feed: int | None = None

    @property
    def pid(self) -> int:
        # Janus's own: `taskset -c N janus …` execs janus in place, keeping the pid.
        assert self._process is not None
        return self._process.pid

    @property
    def pids(self) -> list[int]:
        return [self.pid]

    async def start(self, cpu: int | None) -> None:
        janus = _janus_binary()
        plugin = _module("plugins", "libjanus_videoroom.so")
        transport = _module("transports", "libjanus_websockets.so")
        gcc = shutil.which("gcc")
        if gcc is None:
            raise TargetUnavailable(
                "gcc is needed to build the loopback shim for janus: run `apt-get install gcc`"
            )
        self._dir = Path(tempfile.mkdtemp(prefix="netra-janus-"))
        try:
            self.port = free_port()
            self._write_config(plugin, transport)
            shim = await self._build_shim(gcc)
            await self._launch(janus, shim, cpu)
        except BaseException:
            await self.stop()
            raise

    def _write_config(self, plugin: Path, transport: Path) -> None:
        assert self._dir is not None
        conf = self._dir
        # Folders holding only the modules we want: Janus loads every .so in its folders, so
        # this keeps HTTP, MQTT, the other plugins, loggers and event handlers out entirely.
        folders = {kind: conf / kind for kind in ("plugins", "transports", "events", "loggers")}
        for folder in folders.values():
            folder.mkdir()
        (folders["plugins"] / plugin.name).symlink_to(plugin)
        (folders["transports"] / transport.name).symlink_to(transport)
        general: dict[str, object] = {
            "configs_folder": str(conf),  # absolute: Janus expands no variables
            "plugins_folder": str(folders["plugins"]),
            "transports_folder": str(folders["transports"]),
            "events_folder": str(folders["events"]),
            "loggers_folder": str(folders["loggers"]),
            "debug_level": 3,  # warnings and errors, like Netra's --log-level WARNING
            "session_timeout": 60,
        }
        if self.event_loops is not None:
            general["event_loops"] = self.event_loops
        (conf / "janus.jcfg").write_text(
            _section("general", general)
            + _section("media", {"ipv6": False, "rtp_port_range": "20000-40000"})
            + _section(
                "nat",
                {
                    "nice_debug": False,
                    "full_trickle": False,  # Janus puts its candidates in its SDP
                    "ignore_mdns": True,
                    "ice_enforce_list": "lo",
                },
            )
            + _section("plugins", {})
            + _section("transports", {})
            + _section("loggers", {})
            + _section("events", {"broadcast": False})
        )
        (conf / "janus.transport.websockets.jcfg").write_text(
            _section(
                "general",
                {
                    "json": "compact",
                    "ws": True,
                    "ws_port": self.port,
                    "ws_ip": "127.0.0.1",
                    "wss": False,
                },
            )
            + _section("admin", {"admin_ws": False, "admin_wss": False})
        )
        (conf / "janus.plugin.videoroom.jcfg").write_text(
            _section("general", {})
            + _section(
                f"room-{ROOM}",
                {
                    "description": "netra bench",
                    "publishers": 2,
                    # Above the clip's 2.5 Mbit/s: this is the REMB ceiling Janus sends the
                    # publisher, and it must not throttle the stream under test.
                    "bitrate": 4_000_000,
                    "fir_freq": 10,
                    "audiocodec": "opus",
                    "videocodec": "vp8",
                    "record": False,
                },
            )
        )

    async def _build_shim(self, gcc: str) -> Path:
        assert self._dir is not None
        source = self._dir / "loopback_shim.c"
        library = self._dir / "loopback_shim.so"
        source.write_text(_SHIM_SOURCE)
        command = [gcc, "-shared", "-fPIC", "-O2", "-o", str(library), str(source), "-ldl"]
        built = await asyncio.to_thread(subprocess.run, command, capture_output=True, check=False)
        if built.returncode != 0:
            raise TargetUnavailable(
                f"gcc could not build the loopback shim for janus: {built.stderr.decode()}"
            )
        return library

    async def _launch(self, janus: str, shim: Path, cpu: int | None) -> None:
        assert self._dir is not None
        self.log_path = self._dir / "janus.log"
        command = [
            janus, "-F", str(self._dir), "-C", str(self._dir / "janus.jcfg"),
            "-o", "-N", "-L", str(self.log_path),
        ]  # fmt: skip
        preload = " ".join(p for p in (str(shim), os.environ.get("LD_PRELOAD", "")) if p)
        env = {**os.environ, "LD_PRELOAD": preload}
        with open(self._dir / "janus.out", "wb") as output:  # what Janus prints outside its log
            self._process = subprocess.Popen(
                pinned(command, cpu), env=env, stdout=output, stderr=subprocess.STDOUT
            )
        try:
            # Janus opens its transports after loading its plugins: a listening port means ready.
            await wait_for_port(self.port, self._process, "janus")
        except TargetUnavailable as error:
            raise TargetUnavailable(f"{error}; its log ends with:\n{self._log_tail()}") from None

    def _log_tail(self, lines: int = 20) -> str:
        assert self._dir is not None
        text = ""
        for name in ("janus.out", "janus.log"):
            with contextlib.suppress(OSError):
                text += (self._dir / name).read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    async def diagnostics(self) -> dict[str, object]:
        return {}

    async def stop(self) -> None:
        # Janus may take a moment to wind down its sessions; wait for it off the event loop.
        await asyncio.to_thread(stop_process, self._process)
        self._process = None
        self._feed = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    async def publish(self, pc: RTCPeerConnection) -> Session:
        session = await _JanusSession.open(self.port)
        try:
            joined = await session.message({"request": "join", "ptype": "publisher", "room": ROOM})
            feed = int(_plugin_data(joined)["id"])
            await pc.setLocalDescription(await pc.createOffer())
            offer = _jsep("offer", pc.localDescription.sdp)
            configured = await session.message(
                {"request": "configure", "audio": True, "video": True}, jsep=offer
            )
            _plugin_data(configured)  # raises on the VideoRoom's refusal
            answer = configured.get("jsep")
            if not isinstance(answer, dict) or answer.get("type") != "answer":
                raise RuntimeError(f"janus sent no answer to the publisher: {configured}")
            await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
            # The VideoRoom refuses subscribers ("No such feed", 428) until the publisher's
            # PeerConnection is up, so publishing is done only once Janus says so.
            await session.event("webrtcup")
        except BaseException:
            await session.close()
            raise
        self._feed = feed
        return session

    async def subscribe(
        self, pc: RTCPeerConnection, prepared: Callable[[], None]
    ) -> tuple[Session, float]:
        if self._feed is None:
            raise RuntimeError("subscribe before publish: there is no feed to subscribe to")
        session = await _JanusSession.open(self.port)
        try:
            attached = await session.message(
                {"request": "join", "ptype": "subscriber", "room": ROOM,
                 "streams": [{"feed": self._feed}]}
            )  # fmt: skip
            _plugin_data(attached)  # raises on the VideoRoom's refusal (e.g. 428, no such feed)
            offer = attached.get("jsep")
            if not isinstance(offer, dict) or offer.get("type") != "offer":
                raise RuntimeError(f"janus sent no offer to the subscriber: {attached}")
            await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            prepared()
            answer = _jsep("answer", pc.localDescription.sdp)
            pending = await session.send_message({"request": "start"}, jsep=answer)
            answered_at = time.perf_counter()
            started = _plugin_data(await session.reply(pending))
            if started.get("started") != "ok":
                raise RuntimeError(f"janus did not start the subscription: {started}")
        except BaseException:
            await session.close()
            raise
        return session, answered_at


def _jsep(type_: str, sdp: str) -> Json:
    # aiortc puts every candidate in the SDP; `trickle: false` tells Janus not to wait for
    # more. (A trickle "completed" message instead races the plugin's asynchronous handling
    # of the SDP: Janus queues it and warns "got here before the SDP".)
    return {"type": type_, "sdp": sdp, "trickle": False}


def _plugin_data(reply: Json) -> Json:
    data = reply.get("plugindata", {}).get("data", {})
    if not isinstance(data, dict):
        raise RuntimeError(f"janus reply without plugin data: {reply}")
    if "error_code" in data or "error" in data:
        raise RuntimeError(f"the videoroom refused: {data}")
    return data


class _JanusSession:
    """One WebSocket, one Janus session, one VideoRoom handle: one peer.

    A reader task matches replies to requests by transaction (Janus may send the `ack` of a
    plugin request after its `event`) and notes the events that answer no request (webrtcup,
    hangup, media); a keepalive task keeps the session from timing out.
    """

    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._http = http
        self._ws = ws
        self._transactions = (str(n) for n in itertools.count(1))
        self._waiting: dict[str, asyncio.Future[Json]] = {}
        self._seen: set[str] = set()  # `janus` kinds of unsolicited events so far
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read(), name="janus-reader")
        self._keepalive: asyncio.Task[None] | None = None
        self.session_id = 0
        self.handle_id = 0
        self._closed = False

    @classmethod
    async def open(cls, port: int) -> _JanusSession:
        http = aiohttp.ClientSession()
        try:
            async with asyncio.timeout(NEGOTIATION_TIMEOUT):
                ws = await http.ws_connect(
                    f"ws://127.0.0.1:{port}/", protocols=(PROTOCOL,), max_msg_size=0
                )
        except BaseException:
            await http.close()
            raise
        session = cls(http, ws)
        try:
            created = await session.call({"janus": "create"})
            session.session_id = int(created["data"]["id"])
            session._keepalive = asyncio.create_task(session._keep_alive(), name="janus-keepalive")
            attached = await session.call(
                {"janus": "attach", "session_id": session.session_id, "plugin": VIDEOROOM}
            )
            session.handle_id = int(attached["data"]["id"])
        except BaseException:
            await session.close()
            raise
        return session

    async def _read(self) -> None:
        try:
            async for frame in self._ws:
                if frame.type != aiohttp.WSMsgType.TEXT:
                    continue
                reply = json.loads(frame.data)
                # Acks are only receipts; the reply proper (success, error, event) follows
                # or has already come.
                if reply.get("janus") == "ack":
                    continue
                waiter = self._waiting.pop(str(reply.get("transaction")), None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(reply)
                elif waiter is None:
                    self._seen.add(str(reply.get("janus")))
                    self._changed.set()
        finally:
            self._changed.set()
            for waiter in self._waiting.values():
                if not waiter.done():
                    waiter.set_exception(RuntimeError("janus closed the WebSocket"))
            self._waiting.clear()

    async def event(self, kind: str) -> None:
        """Wait (bounded) for an unsolicited event such as `webrtcup`; fail on a hangup."""
        async with asyncio.timeout(NEGOTIATION_TIMEOUT):
            while kind not in self._seen:
                if "hangup" in self._seen:
                    raise RuntimeError(f"janus hung up the PeerConnection before {kind!r}")
                if self._reader.done():
                    raise RuntimeError(f"janus closed the WebSocket before {kind!r}")
                self._changed.clear()
                await self._changed.wait()

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(KEEPALIVE_INTERVAL)
            try:
                await self._send({"janus": "keepalive", "session_id": self.session_id})
            except (ConnectionError, RuntimeError):
                return  # the socket is gone; close() or the reader will notice

    async def _send(self, message: Json) -> str:
        transaction = next(self._transactions)
        await self._ws.send_str(json.dumps({**message, "transaction": transaction}))
        return transaction

    async def send_request(self, message: Json) -> asyncio.Future[Json]:
        """Send `message`; the returned future gets its reply (for reply())."""
        transaction = next(self._transactions)
        waiter: asyncio.Future[Json] = asyncio.get_running_loop().create_future()
        self._waiting[transaction] = waiter
        if self._reader.done():
            waiter.set_exception(RuntimeError("janus closed the WebSocket"))
            return waiter
        try:
            await self._ws.send_str(json.dumps({**message, "transaction": transaction}))
        except BaseException:
            self._waiting.pop(transaction, None)
            raise
        return waiter

    async def reply(self, waiter: asyncio.Future[Json]) -> Json:
        try:
            async with asyncio.timeout(NEGOTIATION_TIMEOUT):
                reply = await waiter
        except TimeoutError:
            # Forget it, so that a late reply or the reader's shutdown finds nobody waiting.
            for transaction, pending in list(self._waiting.items()):
                if pending is waiter:
                    del self._waiting[transaction]
            raise
        if reply.get("janus") == "error":
            raise RuntimeError(f"janus refused: {reply.get('error')}")
        return reply

    async def call(self, message: Json) -> Json:
        return await self.reply(await self.send_request(message))

    async def send_message(self, body: Json, jsep: Json | None = None) -> asyncio.Future[Json]:
        message: Json = {
            "janus": "message", "session_id": self.session_id, "handle_id": self.handle_id,
            "body": body,
        }  # fmt: skip
        if jsep is not None:
            message["jsep"] = jsep
        return await self.send_request(message)

    async def message(self, body: Json, jsep: Json | None = None) -> Json:
        return await self.reply(await self.send_message(body, jsep))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._keepalive is not None:
            self._keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keepalive
        if self.session_id and not self._ws.closed and not self._reader.done():
            # Destroying the session detaches its handle and hangs up its PeerConnection;
            # waiting for the reply means Janus has let go before we drop the socket.
            with contextlib.suppress(Exception):
                waiter = await self.send_request(
                    {"janus": "destroy", "session_id": self.session_id}
                )
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await waiter
        await close_socket(self._http, self._ws, self._reader)
