"""A viewer-side tap on the RTP and RTCP a peer connection receives, and the parsing it needs.

The tap wraps, on the instance, two layers:
- RTCDtlsTransport._handle_rtp_data/_handle_rtcp_data see every packet after SRTP and before
  aiortc routes it: RTP (also RTX) and sender reports as they arrived.
- RTCIceTransport._recv sees every datagram before SRTP. SRTP leaves the RTP header in clear
  (RFC 3711 §3.1), so this "wire" view sees packets that SRTP then discards, such as a
  retransmission of a packet already received (libsrtp's replay check), and it can drop
  datagrams on purpose to simulate loss.
Only header fields and the first payload bytes are kept.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiortc import RTCDtlsTransport
from aiortc.rtp import RtcpPacket, RtcpSrPacket, RtpPacket, is_rtcp
from aiortc.sdp import SessionDescription

# Seconds between the NTP epoch (1900) and the Unix epoch (1970).
NTP_UNIX_OFFSET = 2208988800
PAYLOAD_HEAD = 32


@dataclass(frozen=True)
class PayloadType:
    kind: str  # "audio" | "video"
    codec: str  # lower-case name: "vp8", "opus", "rtx", ...
    clock_rate: int
    apt: int | None = None  # for RTX: the payload type it repairs


def payload_types(sdp: str) -> dict[int, PayloadType]:
    """Payload type → what it carries, from a session description."""
    types: dict[int, PayloadType] = {}
    for media in SessionDescription.parse(sdp).media:
        for codec in media.rtp.codecs:
            if codec.payloadType is None:
                continue
            apt = codec.parameters.get("apt")
            types[codec.payloadType] = PayloadType(
                kind=media.kind,
                codec=codec.mimeType.split("/")[1].lower(),
                clock_rate=codec.clockRate,
                apt=apt if isinstance(apt, int) else None,
            )
    return types


@dataclass(frozen=True)
class RtpRecord:
    arrival: float  # time.time()
    ssrc: int
    payload_type: int
    sequence_number: int
    timestamp: int
    marker: bool
    payload: bytes  # the first PAYLOAD_HEAD bytes

    @property
    def rtx_original_sequence_number(self) -> int:
        """For an RTX packet (RFC 4588 §4): the sequence number it repairs."""
        return int(struct.unpack("!H", self.payload[:2])[0])


@dataclass(frozen=True)
class SenderReport:
    arrival: float
    ssrc: int
    ntp_timestamp: int  # 64-bit NTP
    rtp_timestamp: int

    @property
    def ntp_seconds(self) -> float:
        """Seconds since the Unix epoch."""
        return (
            (self.ntp_timestamp >> 32) + (self.ntp_timestamp & 0xFFFFFFFF) / 2**32 - NTP_UNIX_OFFSET
        )


@dataclass(frozen=True)
class WireRecord:
    """The clear header of one SRTP packet as it came off the wire."""

    arrival: float
    ssrc: int
    payload_type: int
    sequence_number: int
    timestamp: int


def parse_wire(data: bytes) -> WireRecord | None:
    """The header of an SRTP (not SRTCP) datagram, or None for anything else."""
    if len(data) < 12 or not 127 < data[0] < 192 or 192 <= data[1] <= 223:
        return None
    sequence_number, timestamp, ssrc = struct.unpack_from("!HII", data, 2)
    return WireRecord(
        arrival=time.time(),
        ssrc=ssrc,
        payload_type=data[1] & 0x7F,
        sequence_number=sequence_number,
        timestamp=timestamp,
    )


class RtpTap:
    """Records what one DTLS transport receives; calls `on_change` after each packet."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        self.wire: list[WireRecord] = []
        # Set to simulate loss: datagrams whose header it accepts are discarded before SRTP.
        self.drop: Callable[[WireRecord], bool] | None = None
        self.dropped: list[WireRecord] = []
        self.rtp: list[RtpRecord] = []
        self.sender_reports: list[SenderReport] = []
        self.rtcp_packets = 0
        self._on_change = on_change
        self._transports: list[RTCDtlsTransport] = []

    def attach(self, transport: RTCDtlsTransport) -> None:
        if any(t is transport for t in self._transports):
            return
        self._transports.append(transport)
        handle_rtp: Callable[[bytes, int], Awaitable[None]] = transport._handle_rtp_data
        handle_rtcp: Callable[[bytes], Awaitable[None]] = transport._handle_rtcp_data

        async def tapped_rtp(data: bytes, arrival_time_ms: int) -> None:
            self._record_rtp(data)
            await handle_rtp(data, arrival_time_ms)

        async def tapped_rtcp(data: bytes) -> None:
            self._record_rtcp(data)
            await handle_rtcp(data)

        transport._handle_rtp_data = tapped_rtp  # type: ignore[method-assign]
        transport._handle_rtcp_data = tapped_rtcp  # type: ignore[method-assign]

        ice = transport.transport
        recv: Callable[[], Awaitable[bytes]] = ice._recv

        async def tapped_recv() -> bytes:
            while True:
                data = await recv()
                record = parse_wire(data)
                if record is None:
                    return data
                if self.drop is not None and self.drop(record):
                    self.dropped.append(record)
                    self._on_change()
                    continue
                self.wire.append(record)
                self._on_change()
                return data

        ice._recv = tapped_recv

    def _record_rtp(self, data: bytes) -> None:
        arrival = time.time()
        try:
            packet = RtpPacket.parse(data)
        except ValueError:
            return
        self.rtp.append(
            RtpRecord(
                arrival=arrival,
                ssrc=packet.ssrc,
                payload_type=packet.payload_type,
                sequence_number=packet.sequence_number,
                timestamp=packet.timestamp,
                marker=bool(packet.marker),
                payload=bytes(packet.payload[:PAYLOAD_HEAD]),
            )
        )
        self._on_change()

    def _record_rtcp(self, data: bytes) -> None:
        arrival = time.time()
        try:
            packets = RtcpPacket.parse(data)
        except ValueError:
            return
        for packet in packets:
            self.rtcp_packets += 1
            if isinstance(packet, RtcpSrPacket):
                self.sender_reports.append(
                    SenderReport(
                        arrival=arrival,
                        ssrc=packet.ssrc,
                        ntp_timestamp=packet.sender_info.ntp_timestamp,
                        rtp_timestamp=packet.sender_info.rtp_timestamp,
                    )
                )
        self._on_change()


@dataclass(frozen=True)
class Vp8Descriptor:
    """The VP8 RTP payload descriptor (RFC 7741 §4.2) and the first payload header byte."""

    start_of_partition: bool  # S
    partition_id: int  # PID
    picture_id: int | None
    keyframe: bool  # S=1, PID=0 and the VP8 payload header's P bit (RFC 7741 §4.3) is 0


def parse_vp8(payload: bytes) -> Vp8Descriptor:
    if not payload:
        raise ValueError("empty VP8 payload")
    first = payload[0]
    extended = bool(first & 0x80)
    start = bool(first & 0x10)
    partition_id = first & 0x07
    pos = 1
    picture_id = None
    if extended:
        if len(payload) < 2:
            raise ValueError("truncated VP8 descriptor")
        x = payload[1]
        pos = 2
        if x & 0x80:  # I: PictureID present
            if payload[pos] & 0x80:  # M: 15-bit PictureID
                picture_id = int(struct.unpack("!H", payload[pos : pos + 2])[0]) & 0x7FFF
                pos += 2
            else:
                picture_id = payload[pos] & 0x7F
                pos += 1
        if x & 0x40:  # L: TL0PICIDX present
            pos += 1
        if x & 0x30:  # T or K: TID/Y/KEYIDX byte present
            pos += 1
    if pos >= len(payload):
        raise ValueError("VP8 descriptor without payload")
    keyframe = start and partition_id == 0 and (payload[pos] & 0x01) == 0
    return Vp8Descriptor(
        start_of_partition=start,
        partition_id=partition_id,
        picture_id=picture_id,
        keyframe=keyframe,
    )


def rtp_timestamp_delta(later: int, earlier: int) -> int:
    """later - earlier for 32-bit RTP timestamps, across a wrap."""
    delta = (later - earlier) & 0xFFFFFFFF
    return delta - (1 << 32) if delta >= 1 << 31 else delta


def transit_times(
    records: list[RtpRecord],
    reports: list[SenderReport],
    types: dict[int, PayloadType],
) -> dict[str, list[float]]:
    """Per kind: arrival minus capture time of each media packet, in seconds.

    Capture time is what a receiver derives for lip sync (RFC 3550 §6.4.1): the NTP time of the
    newest sender report of the packet's SSRC that arrived before it, plus the RTP timestamp
    distance converted at the codec's clock rate. Packets before their SSRC's first report,
    and RTX packets, are skipped.
    """
    by_ssrc: dict[int, list[SenderReport]] = {}
    for report in reports:
        by_ssrc.setdefault(report.ssrc, []).append(report)
    transit: dict[str, list[float]] = {}
    for record in records:
        pt = types.get(record.payload_type)
        if pt is None or pt.codec == "rtx":
            continue
        earlier = [r for r in by_ssrc.get(record.ssrc, []) if r.arrival <= record.arrival]
        if not earlier:
            continue
        report = earlier[-1]
        capture = (
            report.ntp_seconds
            + rtp_timestamp_delta(record.timestamp, report.rtp_timestamp) / pt.clock_rate
        )
        transit.setdefault(pt.kind, []).append(record.arrival - capture)
    return transit


class SendTap:
    """Records what a peer sends on one DTLS transport (a publisher's RTP and sender
    reports), with send times in `arrival`, so the same analysis applies on both sides."""

    def __init__(self) -> None:
        self.rtp: list[RtpRecord] = []
        self.sender_reports: list[SenderReport] = []
        self._transports: list[RTCDtlsTransport] = []

    def attach(self, transport: RTCDtlsTransport) -> None:
        if any(t is transport for t in self._transports):
            return
        self._transports.append(transport)
        send: Callable[[bytes], Awaitable[None]] = transport._send_rtp

        async def tapped_send(data: bytes) -> None:
            await send(data)
            self._record(data)

        transport._send_rtp = tapped_send  # type: ignore[method-assign]

    def _record(self, data: bytes) -> None:
        now = time.time()
        if is_rtcp(data):
            try:
                packets = RtcpPacket.parse(data)
            except ValueError:
                return
            for packet in packets:
                if isinstance(packet, RtcpSrPacket):
                    info = packet.sender_info
                    self.sender_reports.append(
                        SenderReport(now, packet.ssrc, info.ntp_timestamp, info.rtp_timestamp)
                    )
            return
        sequence_number, timestamp, ssrc = struct.unpack_from("!HII", data, 2)
        self.rtp.append(
            RtpRecord(
                arrival=now,
                ssrc=ssrc,
                payload_type=data[1] & 0x7F,
                sequence_number=sequence_number,
                timestamp=timestamp,
                marker=bool(data[1] & 0x80),
                payload=b"",
            )
        )
