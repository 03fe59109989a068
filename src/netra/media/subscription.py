"""Subscription: one viewer's copy of one Publication.

It owns the viewer-side rewrite state, sends through the viewer's DTLS transport, and answers
the viewer's RTCP itself: NACK from the group's packet history, PLI/FIR passed up to the
Publication (rate-limited there), receiver reports kept as stats. It also sends the viewer a
sender report for every one the publisher sends, carrying the publisher's own NTP-to-RTP
mapping, so that audio and video stay in sync through the server.
"""

from __future__ import annotations

import asyncio
import random
import struct
import time
from typing import Any

from aiortc import RTCRtpSender, RTCRtpTransceiver
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
    unpack_remb_fci,
)

from netra.media import aiortc_private
from netra.media.forwarder import (
    RetransmitBudget,
    TrackRewrite,
    rewrite,
    take_retransmit,
    upstream_seq,
    viewer_rtp_timestamp,
)
from netra.media.forwarder import resync as forwarder_resync
from netra.media.publication import Group, Publication

RTCP_PSFB_FIR = 4
# A video viewer that has had no keyframe this long asks again: Chromium sends keyframes only
# on request, and a viewer that never got one sends no PLI of its own.
KEYFRAME_RETRY_SECONDS = 1.0


class Subscription:
    def __init__(self, publication: Publication, transceiver: RTCRtpTransceiver) -> None:
        self.publication = publication
        self.kind = publication.kind
        sender: RTCRtpSender = transceiver.sender
        self.ssrc = aiortc_private.sender_ssrc(sender)
        self._transceiver = transceiver
        self._rewrite: TrackRewrite | None = None
        self._group: Group | None = None
        self._send: aiortc_private.DirectSend | None = None
        self._sr_sent_at: dict[int, float] = {}
        self._budget = RetransmitBudget()
        self._keyframe_retry: asyncio.TimerHandle | None = None
        self.closed = False
        # Counted on every packet, so kept as plain attributes rather than in `stats`.
        self.packets = 0
        self.octets = 0
        self.dropped = 0
        self.send_failures = 0
        self.stats: dict[str, Any] = {
            "resyncs": 0,
            "retransmitted": 0,
            "retransmits_refused": 0,
            "nacks": 0,
            "keyframe_requests": 0,
            "fraction_lost": 0,
            "packets_lost": 0,
            "rtt_ms": None,
            "remb_bps": None,
        }
        aiortc_private.silence_sender(sender, self._on_rtcp)

    # Known once the offer is created (the transceiver's codecs and extensions are set then).
    @property
    def payload_type(self) -> int:
        return int(aiortc_private.negotiated_codecs(self._transceiver)[0].payloadType)

    @property
    def header_extensions(self) -> list[Any]:
        return aiortc_private.negotiated_header_extensions(self._transceiver)

    @property
    def mid(self) -> str:
        return str(self._transceiver.mid)

    @property
    def group_key(self) -> tuple[Any, ...]:
        return (
            self.payload_type,
            self.mid,
            tuple((e.id, e.uri) for e in self.header_extensions),
        )

    def activate(self) -> None:
        """The viewer is connected: start forwarding (video waits for a keyframe, which
        attaching requests)."""
        if self.closed or self._group is not None or self.publication.closed:
            return
        self._send = aiortc_private.DirectSend(self._transceiver.sender.transport)
        self._rewrite = TrackRewrite(
            ssrc=self.ssrc,
            payload_type=self.payload_type,
            ts_offset=random.getrandbits(32),
            next_out_seq=random.getrandbits(16),
        )
        self._group = self.publication.attach(self)
        if self.kind == "video":
            self._schedule_keyframe_retry()

    def _schedule_keyframe_retry(self) -> None:
        loop = asyncio.get_running_loop()
        self._keyframe_retry = loop.call_later(KEYFRAME_RETRY_SECONDS, self._retry_keyframe)

    def _retry_keyframe(self) -> None:
        if self.closed or self._rewrite is None or self._rewrite.started:
            self._keyframe_retry = None
            return
        self.publication.request_keyframe()
        self._schedule_keyframe_retry()

    # --- the hot path --------------------------------------------------------------------

    def forward(self, template: bytes, seq: int, ts: int, can_start: bool) -> None:
        state, send = self._rewrite, self._send
        if state is None or send is None:
            return
        was_started = state.started
        out_seq = rewrite(state, seq, can_start)
        if out_seq < 0:
            self.dropped += 1
            return
        try:
            sent = send.rtp_rewritten(
                template, out_seq, (ts + state.ts_offset) & 0xFFFFFFFF, self.ssrc
            )
        except Exception:  # a broken transport must not stop the fan-out loop
            sent = False
        if not sent:
            self.send_failures += 1
            return
        self.packets += 1
        self.octets += len(template) - 12
        if not was_started and self.publication.sender_report is not None:
            # Give the viewer the A/V mapping at once instead of at the next upstream SR.
            self.send_sender_report(*self.publication.sender_report)

    def resync(self) -> None:
        """Stop sending video this viewer cannot decode after unrepairable loss, and resume
        it at the next keyframe (replayed at once when the publication has a fresh one)."""
        state = self._rewrite
        if self.kind != "video" or state is None or not state.started or self.closed:
            return
        forwarder_resync(state)
        self.stats["resyncs"] += 1
        self.publication.start_viewer(self)

    def source_changed(self) -> None:
        """The publication now comes from the streamer's new connection: video waits for its
        first keyframe, numbered on from what this viewer was last sent (not a resync: no
        keyframe is asked for here, nothing was lost)."""
        state = self._rewrite
        if self.kind == "video" and state is not None and not self.closed:
            forwarder_resync(state)

    # --- RTCP ----------------------------------------------------------------------------

    def send_sender_report(self, ntp_timestamp: int, rtp_timestamp: int) -> None:
        state = self._rewrite
        if state is None or not state.started or self._send is None:
            return
        report = RtcpSrPacket(
            ssrc=self.ssrc,
            sender_info=RtcpSenderInfo(
                ntp_timestamp=ntp_timestamp,
                rtp_timestamp=viewer_rtp_timestamp(state, rtp_timestamp),
                packet_count=self.packets & 0xFFFFFFFF,
                octet_count=self.octets & 0xFFFFFFFF,
            ),
        )
        try:
            if self._send.rtcp(bytes(report)):
                lsr = (ntp_timestamp >> 16) & 0xFFFFFFFF
                self._sr_sent_at[lsr] = time.monotonic()
                while len(self._sr_sent_at) > 8:
                    del self._sr_sent_at[next(iter(self._sr_sent_at))]
        except Exception:
            self.send_failures += 1

    def _on_rtcp(self, packet: Any) -> None:
        if self.closed:
            return
        if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            self.stats["nacks"] += 1
            now = time.monotonic()
            for out_seq in dict.fromkeys(packet.lost):  # unique, in the viewer's order
                self._retransmit(out_seq, now)
        elif isinstance(packet, RtcpPsfbPacket):
            if packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
                self.stats["keyframe_requests"] += 1
                self.publication.request_keyframe()
            elif packet.fmt == RTCP_PSFB_APP:
                try:
                    self.stats["remb_bps"] = unpack_remb_fci(packet.fci)[0]
                except (ValueError, struct.error):
                    pass
        elif isinstance(packet, RtcpRrPacket | RtcpSrPacket):
            for report in packet.reports:
                if report.ssrc == self.ssrc:
                    self._on_receiver_report(report)

    def _on_receiver_report(self, report: Any) -> None:
        self.stats["fraction_lost"] = report.fraction_lost
        self.stats["packets_lost"] = report.packets_lost
        sent_at = self._sr_sent_at.get(report.lsr)
        if report.lsr and sent_at is not None:
            rtt = time.monotonic() - sent_at - report.dlsr / 65536
            self.stats["rtt_ms"] = round(max(rtt, 0.0) * 1000, 2)

    def _retransmit(self, out_seq: int, now: float) -> None:
        state = self._rewrite
        if state is None or self._group is None or self._send is None:
            return
        in_seq = upstream_seq(state, out_seq)
        if in_seq is None:
            return  # not ours under the current mapping (e.g. from before a resync)
        template = self._group.history.get(in_seq)
        if template is None:
            self.resync()  # too old to repair: a picture that decodes beats a broken one
            return
        if not take_retransmit(self._budget, now):
            self.stats["retransmits_refused"] += 1
            self.resync()
            return
        ts = int.from_bytes(template[4:8], "big")
        try:
            sent = self._send.rtp_rewritten(
                template, out_seq, viewer_rtp_timestamp(state, ts), self.ssrc
            )
        except Exception:
            sent = False
        if sent:
            self.stats["retransmitted"] += 1
        else:
            self.send_failures += 1

    # --- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._keyframe_retry is not None:
            self._keyframe_retry.cancel()
            self._keyframe_retry = None
        self.publication.detach(self)
        self._group = None
        if self._send is not None:
            self._send.close()
            self._send = None

    def snapshot(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "ssrc": self.ssrc,
            "packets": self.packets,
            "octets": self.octets,
            "dropped": self.dropped,
            "send_failures": self.send_failures,
            **self.stats,
        }
