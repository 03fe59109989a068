"""The synthetic publisher: an aiortc peer that loops the pre-encoded clip at its own pace.

aiortc negotiates, connects and keys SRTP; the packets are built and sent here (serialize,
protect, sendto), so the publisher costs little and knows exactly when each one left. That
send log lets a viewer bot compute the latency the server adds. A PLI or FIR makes it jump to
the next keyframe of the loop, as an encoder would make one.
"""

from __future__ import annotations

import asyncio
import random
import time
from array import array
from collections import deque
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from aiortc.rtcrtpparameters import RTCRtpParameters
from aiortc.rtp import (
    RTCP_PSFB_PLI,
    HeaderExtensions,
    HeaderExtensionsMap,
    RtcpPsfbPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
    RtpPacket,
)

from netra.bench.clip import AUDIO_CLOCK, AUDIO_FRAME_SAMPLES, VIDEO_CLOCK, Clip
from netra.bench.target import Session, Target
from netra.media import aiortc_private

RTCP_PSFB_FIR = 4
NTP_EPOCH = 2_208_988_800  # seconds from 1900 to 1970
PACING_RATE = 2.5 * 2_500_000  # bit/s: WebRTC paces at 2.5x its target bitrate


class SendLog:
    """When each sequence number of one SSRC left, and how long it was (the last 65536)."""

    __slots__ = ("sent_at", "sizes", "newest_cell")

    def __init__(self) -> None:
        self.sent_at = array("d", bytes(8 * 65536))
        self.sizes = array("H", bytes(2 * 65536))
        self.newest_cell = array("q", [-1])  # an array, so the bots' native counter reads it

    @property
    def newest(self) -> int:
        return self.newest_cell[0]

    def put(self, seq: int, size: int, at: float) -> None:
        self.sent_at[seq] = at
        self.sizes[seq] = size
        self.newest_cell[0] = seq


class _Stream:
    """One outgoing track: its negotiated wire format and counters."""

    def __init__(self, kind: str, sender: RTCRtpSender, transceiver: Any) -> None:
        self.kind = kind
        self.ssrc = aiortc_private.sender_ssrc(sender)
        self.send = aiortc_private.DirectSend(sender.transport)
        codec = aiortc_private.negotiated_codecs(transceiver)[0]
        self.payload_type = int(codec.payloadType)
        self.mid = str(transceiver.mid)
        self.extensions = HeaderExtensionsMap()
        self.extensions.configure(
            RTCRtpParameters(
                headerExtensions=aiortc_private.negotiated_header_extensions(transceiver)
            )
        )
        self.seq = random.getrandbits(16)
        self.timestamp_base = random.getrandbits(32)
        self.packets = 0
        self.octets = 0
        self.last_rtp_timestamp = self.timestamp_base
        self.log = SendLog()

    def send_packet(self, payload: bytes, marker: bool, timestamp: int) -> None:
        packet = RtpPacket(
            payload_type=self.payload_type,
            marker=marker,
            sequence_number=self.seq,
            timestamp=timestamp,
            ssrc=self.ssrc,
            payload=payload,
        )
        packet.extensions = HeaderExtensions(mid=self.mid)
        data = packet.serialize(self.extensions)
        if self.send.rtp(data) == aiortc_private.SENT:
            self.log.put(self.seq, len(data), time.perf_counter())
            self.packets += 1
            self.octets += len(payload)
        self.last_rtp_timestamp = timestamp
        self.seq = (self.seq + 1) & 0xFFFF

    def send_sender_report(self, now: float, rtp_timestamp: int) -> None:
        ntp = int((now + NTP_EPOCH) * (1 << 32))
        report = RtcpSrPacket(
            ssrc=self.ssrc,
            sender_info=RtcpSenderInfo(
                ntp_timestamp=ntp,
                rtp_timestamp=rtp_timestamp,
                packet_count=self.packets & 0xFFFFFFFF,
                octet_count=self.octets & 0xFFFFFFFF,
            ),
        )
        self.send.rtcp(bytes(report))


class SyntheticPublisher:
    def __init__(self, clip: Clip) -> None:
        self.clip = clip
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.video: _Stream | None = None
        self.audio: _Stream | None = None
        self.keyframe_requests: list[float] = []  # perf_counter() of each PLI/FIR received
        self.frames_sent = 0  # video frames (marker bits) sent
        self._jump_to_keyframe = False
        self._session: Session | None = None
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()

    async def start(self, target: Target, timeout: float = 20.0) -> None:
        pc = self.pc

        @pc.on("connectionstatechange")
        def _state() -> None:
            if pc.connectionState == "connected":
                self._connected.set()

        senders = {}
        for kind, track in (("video", VideoStreamTrack()), ("audio", AudioStreamTrack())):
            transceiver = pc.addTransceiver(track, direction="sendonly")
            if kind == "video":
                caps = RTCRtpSender.getCapabilities("video").codecs
                transceiver.setCodecPreferences([c for c in caps if c.mimeType == "video/VP8"])
            senders[kind] = transceiver
            # aiortc must not encode the placeholder tracks: this class sends instead.
            aiortc_private.silence_sender(transceiver.sender, self._on_rtcp)
        self._session = await target.publish(pc)
        await asyncio.wait_for(self._connected.wait(), timeout)
        self.video = _Stream("video", senders["video"].sender, senders["video"])
        self.audio = _Stream("audio", senders["audio"].sender, senders["audio"])
        self._task = asyncio.create_task(self._run(), name="synthetic-publisher")

    def _on_rtcp(self, packet: Any) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            self.keyframe_requests.append(time.perf_counter())
            self._jump_to_keyframe = True

    def _next_frame(self, index: int) -> int:
        if not self._jump_to_keyframe:
            return index
        self._jump_to_keyframe = False
        video = self.clip.video
        for step in range(len(video)):
            candidate = (index + step) % len(video)
            if video[candidate].keyframe:
                return candidate
        return index

    async def _run(self) -> None:
        assert self.video is not None and self.audio is not None
        video, audio, clip = self.video, self.audio, self.clip
        loop = asyncio.get_running_loop()
        start = loop.time()
        video_period = 1 / clip.fps
        audio_period = AUDIO_FRAME_SAMPLES / AUDIO_CLOCK
        video_ticks = VIDEO_CLOCK // clip.fps
        video_count = audio_count = 0
        frame_index = 0
        next_report = start
        # Paced like a browser's sender: a frame's packets leave spread out at PACING_RATE,
        # not in one burst (a burst would charge the server's queueing to "added latency").
        paced: deque[tuple[float, bytes, bool, int]] = deque()
        while True:
            next_video = start + video_count * video_period
            next_audio = start + audio_count * audio_period
            next_paced = paced[0][0] if paced else float("inf")
            now = loop.time()
            wait = min(next_video, next_audio, next_paced) - now
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            while paced and paced[0][0] <= now:
                _, payload, marker, ts = paced.popleft()
                video.send_packet(payload, marker, ts)
                if marker:
                    self.frames_sent += 1
            if next_video <= now:
                frame_index = self._next_frame(frame_index)
                frame = clip.video[frame_index]
                ts = (video.timestamp_base + video_count * video_ticks) & 0xFFFFFFFF
                last = len(frame.payloads) - 1
                at = max(now, paced[-1][0] if paced else now)
                for i, payload in enumerate(frame.payloads):
                    paced.append((at, payload, i == last, ts))
                    at += len(payload) * 8 / PACING_RATE
                video_count += 1
                frame_index = (frame_index + 1) % len(clip.video)
            if next_audio <= now:
                payload = clip.audio[audio_count % len(clip.audio)]
                ts = (audio.timestamp_base + audio_count * AUDIO_FRAME_SAMPLES) & 0xFFFFFFFF
                audio.send_packet(payload, False, ts)
                audio_count += 1
            if now >= next_report:
                wall = time.time()
                video.send_sender_report(wall, video.last_rtp_timestamp)
                audio.send_sender_report(wall, audio.last_rtp_timestamp)
                next_report = now + 1.0

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for stream in (self.video, self.audio):
            if stream is not None:
                stream.send.close()
        if self._session is not None:
            await self._session.close()
        await self.pc.close()
