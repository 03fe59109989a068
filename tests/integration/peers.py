"""Test clients that speak Netra's signaling protocol (docs/protocol.md) with real aiortc peers.

- Signaling: one WebSocket; keeps every message seen and waits for the next one of a type.
- Publisher: joins as `streamer`, offers a test pattern and a tone, applies the answer.
- Viewer: joins as `viewer`, answers each server offer with a new peer connection (a
  Reception) that decodes both tracks and taps the RTP/RTCP it receives.

Every wait is bounded and fails with what did arrive. Everything is closed by `close()`, which
is idempotent; the fixtures in conftest.py call it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
from aiortc import (
    RTCConfiguration,
    RTCDtlsTransport,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import AnyRtcpPacket

from netra.auth import mint

from .probe import PayloadType, RtpRecord, RtpTap, SendTap, WireRecord, payload_types
from .tracks import (
    AudioSample,
    TestPatternTrack,
    ToneTrack,
    VideoSample,
    measure_audio,
    measure_video,
)

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_TIMEOUT = 5.0
# The in-process test server checks tokens against this secret (conftest.py).
TEST_SECRET = "test-secret-" + "x" * 40


def token(room: str = "*", **grants: bool) -> str:
    """A token of the test server's; `token(publish=True)` lets its holder publish anywhere."""
    return mint(TEST_SECRET, room=room, **grants)


class WaitTimeout(AssertionError):
    """A bounded wait ran out; the message says what was awaited and what was seen."""


async def wait_for(
    condition: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = 5.0
) -> None:
    """For server state that has no event to wait on (a room in this process, a key in
    Redis): ask every 20 ms until `condition()` holds; fail naming `what` after `timeout` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        held = condition()
        if not isinstance(held, bool):
            held = await held
        if held:
            return
        if loop.time() > deadline:
            raise WaitTimeout(f"not within {timeout:g} s: {what}")
        await asyncio.sleep(0.02)


class Changes:
    """A pulse that wakes every waiter when something was recorded."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait_until(
        self, predicate: Callable[[], T | None], timeout: float, what: str | Callable[[], str]
    ) -> T:
        """Wait until `predicate()` is truthy and return it; raise WaitTimeout describing
        `what` when `timeout` seconds pass first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = predicate()
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                described = what() if callable(what) else what
                raise WaitTimeout(f"no {described} within {timeout:g} s")
            event = self._event
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)


def peer_configuration() -> RTCConfiguration:
    # No STUN: aiortc would otherwise query a public server for every peer.
    return RTCConfiguration(iceServers=[])


# --- signaling ------------------------------------------------------------------------------


async def stop_reader(reader: asyncio.Task[None], grace: float = 2.0) -> None:
    """Let a reader task end by itself once its connection is closed; cancel it after
    `grace` seconds."""
    try:
        await asyncio.wait_for(asyncio.shield(reader), grace)
    except TimeoutError:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


class Signaling:
    """One client WebSocket to the server's /ws."""

    def __init__(
        self, url: str, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse
    ) -> None:
        self.url = url
        self._session = session
        self._ws = ws
        self.messages: list[dict[str, Any]] = []
        self._taken: set[int] = set()
        self.changes = Changes()
        self.closed = False
        self.close_code: int | None = None
        self._reader = asyncio.create_task(self._read(), name="signaling-reader")

    @classmethod
    async def connect(cls, url: str) -> Signaling:
        session = aiohttp.ClientSession()
        try:
            ws = await session.ws_connect(
                url + "/ws", timeout=aiohttp.ClientWSTimeout(ws_close=2.0)
            )
        except BaseException:
            await session.close()
            raise
        return cls(url, session, ws)

    async def _read(self) -> None:
        try:
            async for frame in self._ws:
                if frame.type == aiohttp.WSMsgType.TEXT:
                    self.messages.append(json.loads(frame.data))
                else:
                    self.messages.append({"type": f"<non-text frame {frame.type.name}>"})
                self.changes.notify()
        finally:
            self.closed = True
            self.close_code = self._ws.close_code
            self.changes.notify()

    async def send(self, message: dict[str, Any]) -> None:
        await self._ws.send_str(json.dumps(message))

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("type") == type_]

    def describe(self) -> str:
        seen = [m if m.get("type") == "error" else m.get("type") for m in self.messages]
        state = f"closed with code {self.close_code}" if self.closed else "open"
        return f"seen {seen} (socket {state})"

    async def next_message(self, type_: str, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        """The first message of this type not returned before; waits for one if needed."""

        def find() -> dict[str, Any] | None:
            for index, message in enumerate(self.messages):
                if index not in self._taken and message.get("type") == type_:
                    self._taken.add(index)
                    return message
            if self.closed:
                raise WaitTimeout(f"socket closed before a {type_!r} message; {self.describe()}")
            return None

        return await self.changes.wait_until(
            find, timeout, lambda: f"{type_!r} message; {self.describe()}"
        )

    async def wait_closed(self, timeout: float = DEFAULT_TIMEOUT) -> int | None:
        await self.changes.wait_until(
            lambda: self.closed, timeout, lambda: f"close of the socket; {self.describe()}"
        )
        return self.close_code

    async def reconnect(
        self, join: dict[str, Any], url: str | None = None
    ) -> tuple[Signaling, dict[str, Any]]:
        """A new socket for this client (to `url`, another node of a cluster, if given), which
        sends `join` with the resume key of this one's last `joined`; this socket is closed
        without a `leave` if still open. The new socket's `joined`, and the new socket."""
        key = self.of_type("joined")[-1]["resumeKey"]
        await self.close(leave=False)
        fresh = await Signaling.connect(url or self.url)
        await fresh.send({**join, "resumeKey": key})
        return fresh, await fresh.next_message("joined")

    async def close(self, *, leave: bool = True) -> None:
        """Close the socket (code 1000) and the session; idempotent. With `leave`, a joined
        client says it is done first, as a well-behaved client does; without, the server
        keeps its session for the grace period as for any socket that drops."""
        if leave and not self._ws.closed and self.of_type("joined"):
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.send({"type": "leave"})
        await self._ws.close()
        await stop_reader(self._reader)
        await self._session.close()


# --- streamer -------------------------------------------------------------------------------


class Publisher:
    """A streamer: a test pattern of `width`x`height` in `colour`, and a tone."""

    def __init__(
        self,
        signaling: Signaling,
        room_id: str,
        *,
        width: int = 320,
        height: int = 240,
        colour: tuple[int, int, int] = (30, 90, 200),
        video_codec: str = "video/VP8",
    ) -> None:
        self.signaling = signaling
        self.video_codec = video_codec
        self.room_id = room_id
        self.width = width
        self.height = height
        self.colour = colour
        self.pc: RTCPeerConnection | None = None
        self.pcs: list[RTCPeerConnection] = []
        self.video: TestPatternTrack | None = None
        self.audio: ToneTrack | None = None
        self.sent = SendTap()  # what the current peer connection sent
        self.payload_types: dict[int, PayloadType] = {}

    def _join_message(self) -> dict[str, Any]:
        return {"type": "join", "roomId": self.room_id, "role": "streamer",
                "token": token(self.room_id, publish=True)}  # fmt: skip

    async def join(self, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        await self.signaling.send(self._join_message())
        return await self.signaling.next_message("joined", timeout)

    async def resume(self, url: str | None = None) -> dict[str, Any]:
        """Come back on a new socket with the resume key (to `url`, another node of a
        cluster, if given); the peer connection stays."""
        self.signaling, joined = await self.signaling.reconnect(self._join_message(), url)
        return joined

    async def publish(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Offer both tracks, send end-of-candidates, apply the answer."""
        await self.stop_media()
        pc = RTCPeerConnection(peer_configuration())
        self.pc = pc
        self.pcs.append(pc)
        self.video = TestPatternTrack(self.width, self.height, self.colour)
        self.audio = ToneTrack()
        pc.addTrack(self.audio)
        video_sender = pc.addTrack(self.video)
        transceiver = next(t for t in pc.getTransceivers() if t.sender is video_sender)
        transceiver.setCodecPreferences(
            [
                c
                for c in RTCRtpSender.getCapabilities("video").codecs
                if c.mimeType.lower() == self.video_codec.lower()
            ]
        )
        await pc.setLocalDescription(await pc.createOffer())
        await self.signaling.send({"type": "offer", "sdp": pc.localDescription.sdp})
        # aiortc puts all its candidates in the SDP and never trickles.
        await self.signaling.send({"type": "candidate", "candidate": None})
        answer = await self.signaling.next_message("answer", timeout)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
        # After the answer: BUNDLE has replaced the second transport by then. Media starts
        # only once DTLS connects, later.
        self.sent = SendTap()
        for transceiver in pc.getTransceivers():
            if transceiver.sender.transport is not None:
                self.sent.attach(transceiver.sender.transport)
        self.payload_types = payload_types(pc.localDescription.sdp)

    async def wait_connected(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        pc = self.pc
        assert pc is not None, "publish() first"
        await wait_connected(pc, timeout, "publisher")

    async def join_and_publish(self, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        joined = await self.join(timeout)
        await self.publish(timeout)
        await self.wait_connected(timeout)
        return joined

    async def leave(self) -> None:
        await self.signaling.send({"type": "leave"})
        await self.stop_media()

    async def stop_media(self) -> None:
        for track in (self.video, self.audio):
            if track is not None:
                track.stop()
        if self.pc is not None:
            await self.pc.close()
        self.pc = None

    def pause_media(self, paused: bool = True) -> None:
        """Stop (or restart) the tracks' frames while the peer connection stays up: no RTP,
        RTCP goes on, as from a publisher whose camera was unplugged."""
        for track in (self.video, self.audio):
            if track is not None:
                (track.flowing.clear if paused else track.flowing.set)()

    def go_silent(self) -> None:
        """Send nothing more at all (RTP, RTCP, DTLS), as a publisher whose process was
        killed or whose network vanished: its ICE transport swallows every datagram."""
        assert self.pc is not None, "publish() first"

        async def swallow(data: bytes) -> None:
            pass

        for transceiver in self.pc.getTransceivers():
            if transceiver.sender.transport is not None:
                transceiver.sender.transport.transport._send = swallow  # type: ignore[method-assign]

    async def wait_closed_by_server(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """The server closed its end of our peer connection (DTLS close_notify), so aiortc
        closed ours."""
        pc = self.pc
        assert pc is not None, "publish() first"
        await wait_pc_state(pc, "closed", timeout, "publisher")

    async def drop_signaling(self) -> None:
        """Close only the WebSocket, without a `leave`, as a lost network would; the peer
        connection stays up."""
        await self.signaling.close(leave=False)

    async def close(self) -> None:
        await self.stop_media()
        for pc in self.pcs:
            await pc.close()
        await self.signaling.close()


async def wait_connected(pc: RTCPeerConnection, timeout: float, who: str) -> None:
    await wait_pc_state(pc, "connected", timeout, who)


async def wait_pc_state(pc: RTCPeerConnection, state: str, timeout: float, who: str) -> None:
    """Wait for `pc.connectionState == state`; a peer that fails or closes first fails fast."""
    changes = Changes()
    pc.on("connectionstatechange", changes.notify)
    try:

        def reached() -> bool:
            if pc.connectionState == state:
                return True
            if pc.connectionState in ("failed", "closed"):
                raise WaitTimeout(f"{who} peer connection went {pc.connectionState}, not {state}")
            return False

        await changes.wait_until(
            reached, timeout, lambda: f"{state} {who} peer (it is {pc.connectionState})"
        )
    finally:
        pc.remove_listener("connectionstatechange", changes.notify)


# --- viewer ---------------------------------------------------------------------------------


class Reception:
    """One viewer peer connection: what it decoded and the packets it received."""

    def __init__(self, pc: RTCPeerConnection, offer_sdp: str) -> None:
        self.pc = pc
        self.offer_sdp = offer_sdp
        self.changes = Changes()
        self.payload_types: dict[int, PayloadType] = payload_types(offer_sdp)
        self.video: list[VideoSample] = []
        self.audio: list[AudioSample] = []
        self.tap = RtpTap(self.changes.notify)
        self.tracks: list[MediaStreamTrack] = []
        self.consumers: list[asyncio.Task[None]] = []
        self.consumer_errors: list[BaseException] = []
        pc.on("track", self._on_track)
        pc.on("connectionstatechange", self.changes.notify)

    def _on_track(self, track: MediaStreamTrack) -> None:
        # Always consume every received track, or aiortc's queue grows without bound.
        self.tracks.append(track)
        self.consumers.append(
            asyncio.create_task(self._consume(track), name=f"consume-{track.kind}")
        )

    async def _consume(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                if track.kind == "video":
                    self.video.append(measure_video(frame))  # type: ignore[arg-type]
                else:
                    self.audio.append(measure_audio(frame))  # type: ignore[arg-type]
                self.changes.notify()
        except MediaStreamError:
            pass  # the track ended: the peer connection closed
        except Exception as exc:  # noqa: BLE001 - reported by the test, not lost in a task
            self.consumer_errors.append(exc)
            self.changes.notify()

    def attach_taps(self) -> None:
        seen: list[RTCDtlsTransport] = []
        for transceiver in self.pc.getTransceivers():
            transport = transceiver.receiver.transport
            if transport is not None and not any(t is transport for t in seen):
                seen.append(transport)
                self.tap.attach(transport)

    @property
    def state(self) -> str:
        return self.pc.connectionState

    def describe(self) -> str:
        return (
            f"peer {self.pc.connectionState}, {len(self.video)} video frames, "
            f"{len(self.audio)} audio frames, {len(self.tap.rtp)} RTP packets, "
            f"{len(self.tap.sender_reports)} SRs, consumer errors {self.consumer_errors}"
        )

    async def wait_frames(
        self, video: int = 0, audio: int = 0, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        """Wait until at least `video` video and `audio` audio frames were decoded."""
        await self.changes.wait_until(
            lambda: len(self.video) >= video and len(self.audio) >= audio,
            timeout,
            lambda: f"{video} video and {audio} audio frames; {self.describe()}",
        )

    async def wait_more_frames(
        self, video: int = 0, audio: int = 0, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        """Wait for this many frames beyond those decoded so far."""
        await self.wait_frames(len(self.video) + video, len(self.audio) + audio, timeout)

    async def wait_connected(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        await wait_connected(self.pc, timeout, "viewer")

    async def wait_closed_by_server(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """The server closed its end: the DTLS close reaches us and aiortc closes the peer."""
        await self.changes.wait_until(
            lambda: self.pc.connectionState == "closed",
            timeout,
            lambda: f"end of the reception; {self.describe()}",
        )

    async def wait_rtp(
        self,
        predicate: Callable[[RtpRecord], bool],
        timeout: float,
        what: str,
        start: int = 0,
    ) -> RtpRecord:
        """The first packet after SRTP, from index `start` on, that satisfies `predicate`."""
        return await self._wait_record(lambda: self.tap.rtp, predicate, timeout, what, start)

    async def wait_wire(
        self,
        predicate: Callable[[WireRecord], bool],
        timeout: float,
        what: str,
        start: int = 0,
    ) -> WireRecord:
        """The first packet header before SRTP, from index `start` on, that satisfies it."""
        return await self._wait_record(lambda: self.tap.wire, predicate, timeout, what, start)

    async def _wait_record(
        self,
        records: Callable[[], list[R]],
        predicate: Callable[[R], bool],
        timeout: float,
        what: str,
        start: int,
    ) -> R:
        scanned = start

        def find() -> R | None:
            nonlocal scanned
            seen = records()
            while scanned < len(seen):
                record = seen[scanned]
                scanned += 1
                if predicate(record):
                    return record
            return None

        return await self.changes.wait_until(find, timeout, lambda: f"{what}; {self.describe()}")

    def kind_of(self, record: RtpRecord) -> PayloadType | None:
        return self.payload_types.get(record.payload_type)

    def media_ssrc(self, kind: str) -> int:
        """The SSRC the server sends this kind of media with (not RTX), from received RTP."""
        for record in self.tap.rtp:
            pt = self.kind_of(record)
            if pt is not None and pt.kind == kind and pt.codec != "rtx":
                return record.ssrc
        raise AssertionError(f"no {kind} RTP received yet; {self.describe()}")

    def rtcp_ssrc(self) -> int:
        """An SSRC of ours to put in the sender field of RTCP feedback."""
        return int(self.pc.getTransceivers()[0].sender._ssrc)

    async def send_rtcp(self, packet: AnyRtcpPacket) -> None:
        transport = self.pc.getTransceivers()[0].receiver.transport
        await transport._send_rtp(bytes(packet))

    async def close(self) -> None:
        await self.pc.close()
        for track in self.tracks:
            track.stop()
        if self.consumers:
            _, pending = await asyncio.wait(self.consumers, timeout=2.0)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task


class Viewer:
    """A viewer: answers each server offer with a fresh Reception."""

    def __init__(self, signaling: Signaling, room_id: str) -> None:
        self.signaling = signaling
        self.room_id = room_id
        self.receptions: list[Reception] = []

    @property
    def reception(self) -> Reception:
        assert self.receptions, "no offer accepted yet"
        return self.receptions[-1]

    async def join(self, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        await self.signaling.send({"type": "join", "roomId": self.room_id, "role": "viewer"})
        return await self.signaling.next_message("joined", timeout)

    async def resume(self, url: str | None = None) -> dict[str, Any]:
        """Come back on a new socket with the resume key (to `url`, another node of a
        cluster, if given); the peer connection stays."""
        self.signaling, joined = await self.signaling.reconnect(
            {"type": "join", "roomId": self.room_id, "role": "viewer"}, url
        )
        return joined

    async def accept_offer(self, timeout: float = DEFAULT_TIMEOUT) -> Reception:
        """Wait for the server's next offer and answer it with a new peer connection."""
        offer = await self.signaling.next_message("offer", timeout)
        if self.receptions:
            await self.receptions[-1].close()
        pc = RTCPeerConnection(peer_configuration())
        reception = Reception(pc, offer["sdp"])
        self.receptions.append(reception)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        reception.attach_taps()
        await self.signaling.send({"type": "answer", "sdp": pc.localDescription.sdp})
        await self.signaling.send({"type": "candidate", "candidate": None})
        return reception

    async def watch(self, video: int = 10, audio: int = 10, timeout: float = 10.0) -> Reception:
        """Accept the next offer and wait until it plays."""
        reception = await self.accept_offer(timeout)
        await reception.wait_frames(video, audio, timeout)
        return reception

    async def close(self) -> None:
        for reception in self.receptions:
            await reception.close()
        await self.signaling.close()
