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

from netra.media import aiortc_private, fanout
from netra.media.aiortc_private import SENT
from netra.media.fanout import EVENT_BLOCKED, EVENT_FAILED, EVENT_STARTED, Viewer, ViewerState
from netra.media.forwarder import (
    RetransmitBudget,
    take_retransmit,
    upstream_seq,
    viewer_rtp_timestamp,
)
from netra.media.forwarder import resync as forwarder_resync
from netra.media.publication import Group, Publication
from netra.media.redundancy import FirstNacks, Redundancy

RTCP_PSFB_FIR = 4
COUNTS = ("packets", "octets", "dropped", "send_failures", "blocked")
# A video viewer that has had no keyframe this long asks again: Chromium sends keyframes only
# on request, and a viewer that never got one sends no PLI of its own.
KEYFRAME_RETRY_SECONDS = 1.0
# NACKs for packets this node's own socket dropped come within a round trip of the drop.
BLOCKED_EXCUSE_SECONDS = 1.0


class Subscription:
    def __init__(
        self,
        publication: Publication,
        transceiver: RTCRtpTransceiver,
        redundancy: Redundancy,
    ) -> None:
        self.publication = publication
        self.redundancy = redundancy  # its peer's, shared by its tracks
        self.kind = publication.kind
        sender: RTCRtpSender = transceiver.sender
        self.ssrc = aiortc_private.sender_ssrc(sender)
        self._transceiver = transceiver
        self.viewer: Viewer | None = None  # from activation to close
        self._counts: dict[str, int] = {}  # what the viewer counted, kept after close
        self._group: Group | None = None
        self._send: aiortc_private.DirectSend | None = None
        self._sr_sent_at: dict[int, float] = {}
        self._budget = RetransmitBudget()
        self._observed = (0, 0)  # packets sent and sends blocked when redundancy last heard
        self._blocked_at = float("-inf")  # when a blocked send was last seen
        self._nacked = FirstNacks()
        self._keyframe_retry: asyncio.TimerHandle | None = None
        self.closed = False
        self.stats: dict[str, Any] = {
            "resyncs": 0,
            "retransmitted": 0,
            "retransmits_refused": 0,
            "retransmits_awaited": 0,
            "nacks": 0,
            "keyframe_requests": 0,
            "rtcp": 0,  # RTCP packets from the viewer about this track
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
        state = ViewerState(
            ssrc=self.ssrc,
            payload_type=self.payload_type,
            ts_offset=random.getrandbits(32),
            next_out_seq=random.getrandbits(16),
            copies=self.redundancy.copies,
        )
        route = self._send.live_route() if fanout.native() else None
        self.viewer = fanout.viewer(self._send, route, state)
        self._group = self.publication.attach(self)
        if self.kind == "video":
            self._schedule_keyframe_retry()

    def _schedule_keyframe_retry(self) -> None:
        loop = asyncio.get_running_loop()
        self._keyframe_retry = loop.call_later(KEYFRAME_RETRY_SECONDS, self._retry_keyframe)

    def _retry_keyframe(self) -> None:
        if self.closed or self.viewer is None or self.viewer.state.started:
            self._keyframe_retry = None
            return
        self.publication.request_keyframe()
        self._schedule_keyframe_retry()

    # --- the hot path --------------------------------------------------------------------

    def forward(self, template: bytes, seq: int, ts: int, can_start: bool) -> None:
        """One packet to this viewer alone; a Group sends to all its native viewers at once."""
        viewer = self.viewer
        if viewer is not None:
            events = viewer.forward(template, seq, ts, can_start)
            if events:
                self.on_events(events)

    def on_events(self, events: int) -> None:
        """What the fan-out step left to Python for this viewer (counted there already)."""
        if events & EVENT_BLOCKED:
            self._hold_until_keyframe()
        elif events & EVENT_STARTED and not events & EVENT_FAILED:
            self._on_started()

    def _on_started(self) -> None:
        if self.publication.sender_report is not None:
            # Give the viewer the A/V mapping at once instead of at the next upstream SR.
            self.send_sender_report(*self.publication.sender_report)

    def _hold_until_keyframe(self) -> None:
        """A packet could not be sent because the viewer's socket buffer is full: the picture
        is broken, so video stops until the next keyframe rather than queue without bound.
        No replay here: it would meet the same full buffer."""
        if self.kind != "video" or self.viewer is None or not self.viewer.state.started:
            return
        forwarder_resync(self.viewer.state)
        self.stats["resyncs"] += 1
        self.publication.request_keyframe()

    def resync(self) -> None:
        """Stop sending video this viewer cannot decode after unrepairable loss, and resume
        it at the next keyframe (replayed at once when the publication has a fresh one)."""
        if self.kind != "video" or self.viewer is None or not self.viewer.state.started:
            return
        forwarder_resync(self.viewer.state)
        self.stats["resyncs"] += 1
        self.publication.start_viewer(self)

    def source_changed(self) -> None:
        """The publication now comes from the streamer's new connection: video waits for its
        first keyframe, numbered on from what this viewer was last sent (not a resync: no
        keyframe is asked for here, nothing was lost)."""
        if self.kind == "video" and self.viewer is not None:
            forwarder_resync(self.viewer.state)

    # --- RTCP ----------------------------------------------------------------------------

    def send_sender_report(self, ntp_timestamp: int, rtp_timestamp: int) -> None:
        if self.viewer is None or not self.viewer.state.started or self._send is None:
            return
        state = self.viewer.state
        report = RtcpSrPacket(
            ssrc=self.ssrc,
            sender_info=RtcpSenderInfo(
                ntp_timestamp=ntp_timestamp,
                rtp_timestamp=viewer_rtp_timestamp(state, rtp_timestamp),
                packet_count=state.packets & 0xFFFFFFFF,
                octet_count=state.octets & 0xFFFFFFFF,
            ),
        )
        if self._send.rtcp(bytes(report)) == SENT:
            lsr = (ntp_timestamp >> 16) & 0xFFFFFFFF
            self._sr_sent_at[lsr] = time.monotonic()
            while len(self._sr_sent_at) > 8:
                del self._sr_sent_at[next(iter(self._sr_sent_at))]

    def _on_rtcp(self, packet: Any) -> None:
        if self.closed:
            return
        self.stats["rtcp"] += 1
        lost = 0  # on the way to this viewer
        if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            self.stats["nacks"] += 1
            now = time.monotonic()
            counting = self.redundancy.adaptive
            for out_seq in dict.fromkeys(packet.lost):  # unique, in the viewer's order
                in_seq = self._retransmit(out_seq, now)
                # Not what the streamer's path lost: that was never sent, or sent late.
                if (
                    counting
                    and self._nacked.first(out_seq, now)
                    and in_seq is not None
                    and not self.publication.arrived_late(in_seq)
                ):
                    lost += 1
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
        if self.redundancy.adaptive:
            self._observe_loss(lost)

    def _observe_loss(self, lost: int) -> None:
        """Tell the pull's redundancy what was sent and lost since the last RTCP (a NACK or
        the receiver report that comes about once a second), and follow its answer."""
        if self.viewer is None:
            return
        state, now = self.viewer.state, time.monotonic()
        packets, blocked = int(state.packets), int(state.blocked)
        if blocked != self._observed[1]:
            self._blocked_at = now
        if now - self._blocked_at < BLOCKED_EXCUSE_SECONDS:
            lost = 0  # this node's own socket dropped packets: the NACKs are not the link's
        sent = packets - self._observed[0]
        self._observed = (packets, blocked)
        copies = self.redundancy.observe(sent, lost, now)
        if state.copies != copies:
            state.copies = copies

    def _on_receiver_report(self, report: Any) -> None:
        self.stats["fraction_lost"] = report.fraction_lost
        self.stats["packets_lost"] = report.packets_lost
        sent_at = self._sr_sent_at.get(report.lsr)
        if report.lsr and sent_at is not None:
            rtt = time.monotonic() - sent_at - report.dlsr / 65536
            self.stats["rtt_ms"] = round(max(rtt, 0.0) * 1000, 2)

    def _retransmit(self, out_seq: int, now: float) -> int | None:
        """Answer a NACK; returns the packet's upstream number if it had been sent."""
        if self.viewer is None or self._group is None or self._send is None:
            return None
        state = self.viewer.state
        in_seq = upstream_seq(state, out_seq)
        if in_seq is None:
            return None  # not ours under the current mapping (e.g. from before a resync)
        history = self._group.history
        template = history.get(in_seq)
        if template is None:
            if history.awaited(in_seq, self.publication.newest_seq):
                self.stats["retransmits_awaited"] += 1  # forwarded when it arrives
                return None
            self.resync()  # too old to repair: a picture that decodes beats a broken one
            return None
        if not take_retransmit(self._budget, now):
            self.stats["retransmits_refused"] += 1
            self.resync()
            return in_seq
        ts = int.from_bytes(template[4:8], "big")
        result = self._send.rtp_rewritten(
            template, out_seq, viewer_rtp_timestamp(state, ts), self.ssrc
        )
        if result == SENT:
            self.stats["retransmitted"] += 1
        else:
            state.send_failures += 1
        return in_seq

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
        if self.viewer is not None:
            # Detached above: no fan-out call holds its struct any more.
            self._counts = self.snapshot_counts()
            self.viewer.close()
            self.viewer = None

    def snapshot(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "ssrc": self.ssrc,
            "fanout": "native" if isinstance(self.viewer, fanout.NativeViewer) else "python",
            "copies": int(self.viewer.state.copies) if self.viewer else self.redundancy.copies,
            "copies_raised": self.redundancy.switches,
            **self.snapshot_counts(),
            **self.stats,
        }

    def snapshot_counts(self) -> dict[str, int]:
        if self.viewer is None:
            return dict.fromkeys(COUNTS, 0) | self._counts
        state = self.viewer.state
        return {name: int(getattr(state, name)) for name in COUNTS}
