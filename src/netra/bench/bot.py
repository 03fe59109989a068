"""Viewer bots: real aiortc peers that count what arrives instead of decoding it.

The RTP header of an SRTP packet is in the clear, so a bot reads sequence number, marker bit
and SSRC from the encrypted datagram and never hands media to aiortc; it decrypts only video
packets until its first keyframe. It sends the RTCP a browser would: a receiver report every
second, a NACK for every gap, and a PLI while it has no keyframe. An impaired bot drops
packets on purpose (a path that loses some and stalls), to show it hurts nobody else.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.rtp import (
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
)

from netra.bench.clip import AUDIO_CLOCK, VIDEO_CLOCK
from netra.bench.counter import Counter, NativeInbound
from netra.bench.publisher import NTP_EPOCH, SendLog
from netra.bench.target import Session, Target
from netra.media import aiortc_private
from netra.media.codecs import is_vp8_keyframe_start

ALIGN_PACKETS = 32  # consecutive video packets whose sizes locate the bot in the send log
ALIGN_SEARCH = 4000  # how far back in the send log to look (longer than any latency)
MAX_NACK = 64  # sequence numbers per NACK, as a browser would cap one


class Inbound:
    """One SSRC as this bot receives it."""

    __slots__ = (
        "ssrc", "video", "packets", "octets", "frames", "late", "first_ext", "highest_ext",
        "highest", "keyframe_at", "offset", "size_delta", "align_seqs", "align_sizes",
        "mismatches", "latencies", "report_expected", "report_received",
    )  # fmt: skip

    def __init__(self, ssrc: int, seq: int, video: bool) -> None:
        self.ssrc = ssrc
        self.video = video
        self.packets = self.octets = self.frames = self.late = 0
        self.first_ext = self.highest_ext = seq
        self.highest = seq
        self.keyframe_at: float | None = None
        self.offset: int | None = None  # our seq minus the publisher's, once aligned
        self.size_delta = 0
        self.align_seqs: list[int] = []
        self.align_sizes: list[int] = []
        self.mismatches = 0
        self.latencies: list[float] = []
        self.report_expected = self.report_received = 0

    @property
    def expected(self) -> int:
        return self.highest_ext - self.first_ext + 1

    def latency_samples(self) -> list[float]:
        return self.latencies

    def clear_latencies(self) -> None:
        self.latencies.clear()


Stream = Inbound | NativeInbound


class ViewerBot:
    def __init__(
        self,
        index: int,
        video_log: SendLog | None,
        impaired: bool = False,
        counter: Counter | None = None,
        sync: bool = False,
    ) -> None:
        self.index = index
        # With `sync`, each frame's arrival against its capture time on the sender's clock (its
        # sender reports map RTP time to it), per kind: their difference is the A/V skew a
        # browser's lip sync would have to absorb. Python counting only.
        self.sync: dict[str, list[float]] | None = {"audio": [], "video": []} if sync else None
        self._sender_reports: dict[int, tuple[float, int]] = {}  # ssrc -> (wall, RTP time)
        self.impaired = impaired
        self.video_log = video_log
        self.counter = None if impaired or sync else counter  # these count in Python
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.ssrc = random.getrandbits(32)
        self.streams: dict[int, Stream] = {}
        self.video_payload_types: set[int] = set()
        self.dropped = 0  # by the impairment
        self.nacks_sent = self.plis_sent = 0
        self.offer_at: float | None = None
        self.answered_at: float | None = None
        self.connected_at: float | None = None
        self.failed = False
        self._dtls: Any = None
        self._send: aiortc_private.DirectSend | None = None
        self._session: Session | None = None
        self._connected = asyncio.Event()
        self.keyframed = asyncio.Event()  # video's first keyframe arrived
        self._rng = random.Random(index)
        self._before_keys: list[tuple[bytes, float]] = []

    # --- joining -------------------------------------------------------------------------

    async def start(self, target: Target, timeout: float = 20.0) -> None:
        pc = self.pc

        @pc.on("signalingstatechange")
        def _signaling() -> None:
            if pc.signalingState == "have-remote-offer" and self.offer_at is None:
                self.offer_at = time.perf_counter()

        @pc.on("connectionstatechange")
        def _state() -> None:
            if pc.connectionState == "connected" and self.connected_at is None:
                self.connected_at = time.perf_counter()
                self._connected.set()
            elif pc.connectionState == "failed":
                self.failed = True
                self._connected.set()

        self._session, self.answered_at = await target.subscribe(pc, self._prepare)
        await asyncio.wait_for(self._connected.wait(), timeout)
        if self.failed:
            raise RuntimeError(f"viewer bot {self.index}: connection failed")

    def _prepare(self) -> None:
        transceivers = self.pc.getTransceivers()
        for transceiver in transceivers:
            if transceiver.kind == "video":
                self.video_payload_types.update(
                    int(c.payloadType) for c in aiortc_private.negotiated_codecs(transceiver)
                )
        self._dtls = transceivers[0].receiver.transport
        self._send = aiortc_private.DirectSend(self._dtls)
        if self.sync is not None:
            for transceiver in transceivers:
                aiortc_private.tap_rtcp(transceiver.receiver, self._on_rtcp)
        aiortc_private.tap_datagrams(self._dtls, self._on_rtp)

    # --- per packet ----------------------------------------------------------------------

    def _impairment_drops(self, now: float) -> bool:
        # A path that loses 2 % at random and stalls for 0.4 s out of every 3 s.
        return (now % 3.0) < 0.4 or self._rng.random() < 0.02

    def _on_rtp(self, data: bytes) -> None:
        now = time.perf_counter()
        if self.impaired and self._impairment_drops(now):
            self.dropped += 1
            return
        seq = (data[2] << 8) | data[3]
        ssrc = int.from_bytes(data[8:12], "big")
        stream = self.streams.get(ssrc)
        if stream is None:
            stream = self.streams[ssrc] = Inbound(
                ssrc, seq, (data[1] & 0x7F) in self.video_payload_types
            )
        assert isinstance(stream, Inbound)  # counted here only until handed over
        stream.packets += 1
        stream.octets += len(data)
        if data[1] & 0x80:
            stream.frames += 1
        delta = (seq - stream.highest) & 0xFFFF
        if delta == 0 and stream.packets > 1:
            stream.late += 1  # a duplicate
            return
        if delta >= 0x8000:
            stream.late += 1  # a retransmission of a gap, or reordering
            return
        if delta > 1:
            self._nack(stream, seq, delta - 1)
        stream.highest = seq
        stream.highest_ext += delta
        if self.sync is not None and (data[1] & 0x80 or not stream.video):
            self._time_frame(stream, data)  # a video frame's last packet, or an audio frame
        if stream.video:
            if stream.keyframe_at is None:
                self._look_for_keyframe(stream, data, now)
            if self.video_log is not None:
                self._measure_latency(stream, seq, len(data), now)

    def _on_rtcp(self, packet: Any) -> None:
        if isinstance(packet, RtcpSrPacket):
            ntp = packet.sender_info.ntp_timestamp
            wall = (ntp >> 32) - NTP_EPOCH + (ntp & 0xFFFFFFFF) / (1 << 32)
            self._sender_reports[packet.ssrc] = (wall, packet.sender_info.rtp_timestamp)

    def _time_frame(self, stream: Inbound, data: bytes) -> None:
        report = self._sender_reports.get(stream.ssrc)
        if report is None or self.sync is None:
            return
        wall, rtp = report
        elapsed = ((int.from_bytes(data[4:8], "big") - rtp + 0x80000000) & 0xFFFFFFFF) - 0x80000000
        clock = VIDEO_CLOCK if stream.video else AUDIO_CLOCK
        self.sync["video" if stream.video else "audio"].append(time.time() - wall - elapsed / clock)

    def _look_for_keyframe(self, stream: Inbound, data: bytes, now: float) -> None:
        # This tap runs before aiortc has processed the DTLS flight queued just ahead of the
        # first media packets, so the keys may not exist yet: hold packets until they do.
        pending = self._before_keys
        pending.append((data, now))
        if not aiortc_private.has_srtp_keys(self._dtls):
            del pending[:-256]
            return
        self._before_keys = []
        for held, at in pending:
            if self._is_keyframe_start(held):
                stream.keyframe_at = at
                self.keyframed.set()
                if self.counter is not None:
                    asyncio.get_running_loop().call_soon(self._hand_over)
                return

    def _hand_over(self) -> None:
        """From the first keyframe on, the native counter counts this bot's packets."""
        if self.counter is None or self._dtls is None or self.pc.connectionState == "closed":
            return
        protocol = aiortc_private.nominated_protocol(self._dtls)
        if protocol is None or not self.counter.adopt(self, protocol, self.streams):
            self.counter = None

    def _is_keyframe_start(self, data: bytes) -> bool:
        try:
            packet = aiortc_private.unprotect_rtp(self._dtls, data)
        except Exception:
            return False
        offset = 12 + 4 * (packet[0] & 0x0F)
        if packet[0] & 0x10:  # header extension
            offset += 4 + 4 * int.from_bytes(packet[offset + 2 : offset + 4], "big")
        return is_vp8_keyframe_start(packet[offset:])

    def _measure_latency(self, stream: Inbound, seq: int, size: int, now: float) -> None:
        log = self.video_log
        assert log is not None
        if stream.offset is None:
            self._align(stream, seq, size, log)
            return
        upstream = (seq - stream.offset) & 0xFFFF
        if log.sizes[upstream] + stream.size_delta == size:
            latency = now - log.sent_at[upstream]
            if 0.0 <= latency < 2.0:
                stream.latencies.append(latency)
                return
        stream.mismatches += 1
        if stream.mismatches > 16:  # the server re-based our sequence numbers: align again
            stream.offset = None
            stream.mismatches = 0

    def _align(self, stream: Inbound, seq: int, size: int, log: SendLog) -> None:
        seqs, sizes = stream.align_seqs, stream.align_sizes
        if seqs and (seq - seqs[-1]) & 0xFFFF != 1:
            seqs.clear()
            sizes.clear()
        seqs.append(seq)
        sizes.append(size)
        if len(seqs) < ALIGN_PACKETS or log.newest < 0:
            return
        # The most recent run of the publisher's packets whose size differences match ours;
        # a constant difference remains (SRTP tag, header extensions the server rewrote).
        first = seqs[0]
        for back in range(ALIGN_PACKETS - 1, ALIGN_SEARCH):
            start = (log.newest - back) & 0xFFFF
            delta = sizes[0] - log.sizes[start]
            if all(
                log.sizes[(start + i) & 0xFFFF] + delta == sizes[i] for i in range(ALIGN_PACKETS)
            ):
                stream.offset = (first - start) & 0xFFFF
                stream.size_delta = delta
                break
        seqs.clear()
        sizes.clear()

    # --- feedback ------------------------------------------------------------------------

    def _nack(self, stream: Inbound, seq: int, missing: int) -> None:
        self.nack_gap(stream.ssrc, (seq - 1) & 0xFFFF, missing)

    def nack_gap(self, media_ssrc: int, newest_missing: int, missing: int) -> None:
        """NACK the `missing` packets up to `newest_missing`, at most MAX_NACK of them."""
        if self._send is None:
            return
        first = newest_missing - missing + 1
        lost = [(first + i) & 0xFFFF for i in range(min(missing, MAX_NACK))]
        packet = RtcpRtpfbPacket(RTCP_RTPFB_NACK, self.ssrc, media_ssrc, lost)
        try:
            self._send.rtcp(bytes(packet))
            self.nacks_sent += 1
        except Exception:
            pass

    def tick(self, now: float) -> None:
        """Once a second: receiver reports, and a PLI while video has no keyframe."""
        send = self._send
        if send is None or self.connected_at is None:
            return
        reports = []
        for stream in self.streams.values():
            expected = stream.expected - stream.report_expected
            received = stream.packets - stream.report_received
            stream.report_expected, stream.report_received = stream.expected, stream.packets
            fraction = (
                0 if expected <= 0 else max(0, min(255, (expected - received) * 256 // expected))
            )
            reports.append(
                RtcpReceiverInfo(
                    ssrc=stream.ssrc,
                    fraction_lost=fraction,
                    packets_lost=max(0, stream.expected - stream.packets),
                    highest_sequence=stream.highest_ext & 0xFFFFFFFF,
                    jitter=0,
                    lsr=0,
                    dlsr=0,
                )
            )
        try:
            if reports:
                send.rtcp(bytes(RtcpRrPacket(ssrc=self.ssrc, reports=reports)))
            if now - self.connected_at > 1.0:
                for stream in self.streams.values():
                    if stream.video and stream.keyframe_at is None:
                        pli = RtcpPsfbPacket(
                            fmt=RTCP_PSFB_PLI, ssrc=self.ssrc, media_ssrc=stream.ssrc
                        )
                        send.rtcp(bytes(pli))
                        self.plis_sent += 1
        except Exception:
            pass

    # --- results -------------------------------------------------------------------------

    @property
    def session(self) -> Session | None:
        return self._session

    @property
    def video(self) -> Stream | None:
        return next((s for s in self.streams.values() if s.video), None)

    @property
    def first_keyframe_seconds(self) -> float | None:
        return _between(self.answered_at, self._keyframe_at)

    @property
    def keyframe_after_connect_seconds(self) -> float | None:
        """What the server's fast start controls: connected to first keyframe."""
        return _between(self.connected_at, self._keyframe_at)

    @property
    def connect_seconds(self) -> float | None:
        return _between(self.offer_at, self.connected_at)

    @property
    def _keyframe_at(self) -> float | None:
        video = self.video
        return None if video is None else video.keyframe_at

    async def close(self) -> None:
        if self.counter is not None:
            self.counter.release(self)
        # Let go first: a report sent while the peer connection closes would open a new
        # route (a duplicated socket) that nothing closes.
        send, self._send = self._send, None
        if send is not None:
            send.close()
        if self._session is not None:
            await self._session.close()
        await self.pc.close()


def _between(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else end - start
