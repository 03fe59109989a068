"""Publication: one track from the streamer, and its fan-out to Subscriptions.

A Publication lives as long as the stream, not as long as one publisher connection: when the
streamer reconnects, the Publication adopts the new connection's track (`adopt`) and maps its
sequence numbers and timestamps onto its own, so that subscriptions carry on without a gap.

Per incoming packet the work is: detect a keyframe start once, serialize once per group of
subscriptions that share payload type, MID and header-extension ids, remember that template
for retransmissions, then let each subscription patch its sequence number, timestamp and SSRC
in place and send. Nothing on this path awaits, logs or raises.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from time import monotonic  # one name, so tests can move this module's clock alone
from typing import TYPE_CHECKING, Any

from aiortc import RTCRtpCodecParameters, RTCRtpReceiver
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensions, HeaderExtensionsMap, RtcpSrPacket, RtpPacket

from netra.media import aiortc_private, fanout
from netra.media.codecs import keyframe_detector
from netra.media.forwarder import seq_newer

if TYPE_CHECKING:
    from netra.media.subscription import Subscription


HISTORY_SIZE = 1024  # packets kept per group to answer NACKs (~3 s of 720p video)
# At most one PLI per publisher track per this many seconds: a little over half a second, so
# that delivery jitter never puts three in one second at the publisher (at exactly 0.5 s, the
# ladder saw three in 0.99 s).
KEYFRAME_REQUEST_INTERVAL = 0.55
# Fast start (docs/architecture.md): a joining viewer is sent the current group of pictures
# at once when its keyframe is at most this old, instead of waiting for a PLI that the rate
# limit may hold back; equal to the interval, so no joiner ever waits on the limiter.
CATCH_UP_SECONDS = KEYFRAME_REQUEST_INTERVAL
KEYFRAME_IN_FLIGHT = 0.25  # a keyframe asked for this recently is still on its way
LATE_REMEMBERED = 64  # upstream repairs and reorderings are rare: a few a second at most
CATCH_UP_MAX_PACKETS = 512  # bound on one replay (0.5 s of 720p is ~150 packets)


SEQ_MASK = 0xFFFF
TS_MASK = 0xFFFFFFFF


def abs_send_time(now: float) -> int:
    """24-bit 6.18 fixed-point seconds (webrtc abs-send-time extension)."""
    return int(now * (1 << 18)) & 0xFFFFFF


class PacketHistory:
    """The last HISTORY_SIZE serialized packets of one group, by upstream sequence number."""

    __slots__ = ("_seqs", "_packets")

    def __init__(self) -> None:
        self._seqs = [-1] * HISTORY_SIZE
        self._packets: list[bytes] = [b""] * HISTORY_SIZE

    def put(self, seq: int, packet: bytes) -> None:
        slot = seq % HISTORY_SIZE
        self._seqs[slot] = seq
        self._packets[slot] = packet

    def get(self, seq: int) -> bytes | None:
        slot = seq % HISTORY_SIZE
        return self._packets[slot] if self._seqs[slot] == seq else None

    def awaited(self, seq: int, newest: int | None) -> bool:
        """True for a packet that never arrived here but is recent enough (against `newest`,
        the newest that did) to arrive late: lost upstream (on the streamer's path, or the hop
        from the origin), it comes when this node's own NACK is answered, and is forwarded
        then."""
        if newest is None or ((newest - seq) & SEQ_MASK) >= HISTORY_SIZE:
            return False
        return self._seqs[seq % HISTORY_SIZE] != seq


class Group:
    """Subscriptions whose packets serialize to the same bytes before the per-viewer fields.
    Its native viewers get each packet in one native call; the others one by one."""

    __slots__ = ("payload_type", "mid", "extensions_map", "subscriptions", "history",
                 "_native", "_one_by_one")  # fmt: skip

    def __init__(
        self, payload_type: int, mid: str, extensions: list[RTCRtpHeaderExtensionParameters]
    ) -> None:
        self.payload_type = payload_type
        self.mid = mid
        self.extensions_map = HeaderExtensionsMap()
        self.extensions_map.configure(RTCRtpParameters(headerExtensions=extensions))
        self.subscriptions: list[Subscription] = []
        self.history = PacketHistory()
        self._native = fanout.NativeFanout() if fanout.native() else None
        self._one_by_one: list[Subscription] = []

    def add(self, subscription: Subscription) -> None:
        self.subscriptions.append(subscription)
        if self._native is not None and isinstance(subscription.viewer, fanout.NativeViewer):
            self._native.add(subscription)
        else:
            self._one_by_one.append(subscription)

    def remove(self, subscription: Subscription) -> None:
        self.subscriptions.remove(subscription)
        if subscription in self._one_by_one:
            self._one_by_one.remove(subscription)
        elif self._native is not None:
            self._native.remove(subscription)

    def send(self, template: bytes, seq: int, ts: int, can_start: bool) -> int:
        """Forward one packet to every subscription; returns how many raised (a bug)."""
        errors = 0
        if self._native is not None:
            try:
                self._native.send(template, seq, ts, can_start)
            except Exception:
                errors += 1
        for subscription in self._one_by_one:
            try:  # free unless raised; one broken viewer must not stop the others
                subscription.forward(template, seq, ts, can_start)
            except Exception:
                errors += 1
        return errors

    def serialize(self, packet: RtpPacket, send_time: int) -> bytes:
        out = RtpPacket(
            payload_type=self.payload_type,
            marker=packet.marker,
            sequence_number=packet.sequence_number,
            timestamp=packet.timestamp,
            ssrc=0,  # patched per subscription
            payload=packet.payload,
        )
        out.extensions = HeaderExtensions(
            mid=self.mid, abs_send_time=send_time, audio_level=packet.extensions.audio_level
        )
        data = out.serialize(self.extensions_map)
        self.history.put(packet.sequence_number, data)
        return data


class _Feed:
    """What one publisher connection's track feeds: the Publication it was made for, or the
    one that adopted it, or nothing once another connection took over."""

    __slots__ = ("publication",)

    def __init__(self, publication: Publication) -> None:
        self.publication: Publication | None = publication

    def packet(self, packet: RtpPacket) -> None:
        # Called inside aiortc's receive path: an exception here would close the streamer's
        # transport and end the stream for everyone, so none may leave.
        publication = self.publication
        if publication is None:
            return
        try:
            publication._fan_out(packet)
        except Exception:
            publication.stats["forward_errors"] += 1

    def rtcp(self, packet: Any) -> None:
        if self.publication is not None:
            self.publication._on_rtcp(packet)


class Publication:
    """A track the streamer publishes; viewers subscribe to it."""

    def __init__(self, kind: str, codec: RTCRtpCodecParameters, receiver: RTCRtpReceiver) -> None:
        self.kind = kind
        self.codec = codec
        self._receiver = receiver
        # Upstream → publication numbering: zero until a new connection is adopted.
        self._seq_shift = 0
        self._ts_shift = 0
        self._rebase = False  # the next packet comes from a newly adopted connection
        self._newest_ts = 0
        self._newest_time = 0.0  # wall-clock arrival of the newest packet, while forwarding
        self._is_keyframe_start: Callable[[bytes], bool] | None = keyframe_detector(codec.mimeType)
        self._groups: dict[tuple[Any, ...], Group] = {}
        self.media_ssrc: int | None = None
        # The publisher's latest sender report: (NTP timestamp, RTP timestamp).
        self.sender_report: tuple[int, int] | None = None
        # The latest keyframe start: (upstream sequence number, monotonic arrival time).
        self._keyframe: tuple[int, float] | None = None
        # Video since that keyframe, as it came (bounded): a group made now (the first viewer
        # of a cold edge, or of a new offer shape) starts with it in its history, so that its
        # first viewer gets the fast start too, not a keyframe request.
        self._since_keyframe: list[RtpPacket] = []
        self._newest_seq: int | None = None
        self._late: deque[int] = deque(maxlen=LATE_REMEMBERED)  # sequence numbers, as they came
        self._requested_at = float("-inf")  # monotonic time of the last PLI sent
        self._pending_keyframe_request: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = False
        self.stats = {
            "packets": 0,
            "bytes": 0,
            "keyframes": 0,
            "keyframe_requests": 0,
            "catch_ups": 0,
            "forward_errors": 0,
            "rtcp": 0,
            "adoptions": 0,
        }
        self._feed = _Feed(self)
        aiortc_private.tap_receiver(receiver, self._feed.packet, self._feed.rtcp)

    # --- the hot path --------------------------------------------------------------------

    def _fan_out(self, packet: RtpPacket) -> None:
        if self.closed:
            return
        if self._rebase:
            self._rebase_on(packet)
        self.media_ssrc = packet.ssrc
        self.stats["packets"] += 1
        self.stats["bytes"] += len(packet.payload)
        detector = self._is_keyframe_start
        can_start = True if detector is None else detector(packet.payload)
        seq = packet.sequence_number = (packet.sequence_number + self._seq_shift) & SEQ_MASK
        ts = packet.timestamp = (packet.timestamp + self._ts_shift) & TS_MASK
        # A late packet (an upstream retransmission) is forwarded, but is not the newest.
        newest = self._newest_seq
        if newest is None or seq_newer(seq, newest):
            if can_start and detector is not None:
                self.stats["keyframes"] += 1
                self._keyframe = (seq, monotonic())
                self._since_keyframe.clear()
            self._newest_seq = seq
            self._newest_ts = ts
        else:
            self._late.append(seq)
        if self._keyframe is not None and len(self._since_keyframe) < CATCH_UP_MAX_PACKETS:
            self._since_keyframe.append(packet)
        if not self._groups:
            return
        now = self._newest_time = time.time()
        send_time = abs_send_time(now)
        for group in self._groups.values():
            errors = group.send(group.serialize(packet, send_time), seq, ts, can_start)
            if errors:
                self.stats["forward_errors"] += errors

    def _on_rtcp(self, packet: Any) -> None:
        self.stats["rtcp"] += 1
        if isinstance(packet, RtcpSrPacket) and packet.ssrc == self.media_ssrc and not self._rebase:
            info = packet.sender_info
            rtp_timestamp = (info.rtp_timestamp + self._ts_shift) & TS_MASK
            self.sender_report = (info.ntp_timestamp, rtp_timestamp)
            for group in self._groups.values():
                for subscription in group.subscriptions:
                    subscription.send_sender_report(info.ntp_timestamp, rtp_timestamp)

    # --- a new publisher connection ----------------------------------------------------------

    def adopt(self, other: Publication) -> None:
        """Carry on from `other`, the same track on the streamer's new connection: its packets
        feed this Publication from now on, numbered on from this one's, and the old
        connection's stop counting. Video subscriptions wait for the new connection's next
        keyframe (its pictures do not decode from the old one's)."""
        if self.closed or other is self:
            return
        self._feed.publication = None
        self._feed = other._feed
        self._feed.publication = self
        self._receiver = other._receiver
        other.closed = True
        self._rebase = True
        self._keyframe = None
        self._since_keyframe.clear()
        self.sender_report = None
        self.stats["adoptions"] += 1
        for group in self._groups.values():
            for subscription in group.subscriptions:
                subscription.source_changed()

    def _rebase_on(self, packet: RtpPacket) -> None:
        """Number the new connection's first packet right after the newest one forwarded,
        and its timestamp on by the time that passed, so that decoders see one stream."""
        self._rebase = False
        if self._newest_seq is None:
            return
        self._seq_shift = (self._newest_seq + 1 - packet.sequence_number) & SEQ_MASK
        elapsed = max(0.0, time.time() - self._newest_time) if self._newest_time else 0.0
        ahead = self._newest_ts + round(elapsed * self.codec.clockRate)
        self._ts_shift = (ahead - packet.timestamp) & TS_MASK
        if self.kind == "video":
            loop = asyncio.get_running_loop()
            loop.call_soon(self.request_keyframe)  # media_ssrc is the new one by then

    # --- subscriptions -------------------------------------------------------------------

    def attach(self, subscription: Subscription) -> Group:
        key = subscription.group_key
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = Group(
                subscription.payload_type, subscription.mid, subscription.header_extensions
            )
            send_time = abs_send_time(time.time())
            for packet in self._since_keyframe:
                group.serialize(packet, send_time)
        group.add(subscription)
        if self.kind == "video":
            self.start_viewer(subscription, group)
        return group

    def detach(self, subscription: Subscription) -> None:
        group = self._groups.get(subscription.group_key)
        if group is None or subscription not in group.subscriptions:
            return
        group.remove(subscription)
        if not group.subscriptions:
            del self._groups[subscription.group_key]

    # --- keyframes -----------------------------------------------------------------------

    def start_viewer(self, subscription: Subscription, group: Group | None = None) -> None:
        """Get a video viewer (joining, or resyncing after loss) to a keyframe: replay the
        current group of pictures from the history when its keyframe is fresh, and ask the
        publisher for a new one when it is not fresh enough for the next joiner."""
        group = group or self._groups.get(subscription.group_key)
        replay = None if group is None else self._catch_up(group)
        arrived = float("-inf") if self._keyframe is None else self._keyframe[1]
        if replay is None or monotonic() - arrived > CATCH_UP_SECONDS / 2:
            self.request_keyframe()  # also keeps the replayable GOP short for the next joiner
        if replay is None:
            return
        self.stats["catch_ups"] += 1
        for template in replay:
            seq = int.from_bytes(template[2:4], "big")
            ts = int.from_bytes(template[4:8], "big")
            subscription.forward(template, seq, ts, template is replay[0])

    def _catch_up(self, group: Group) -> list[bytes] | None:
        """The group's packets from the latest keyframe to the newest, if that keyframe is
        fresh and every packet since is in the history; else None."""
        if self._keyframe is None or self._newest_seq is None:
            return None
        start, arrived = self._keyframe
        count = ((self._newest_seq - start) & 0xFFFF) + 1
        if monotonic() - arrived > CATCH_UP_SECONDS or count > CATCH_UP_MAX_PACKETS:
            return None
        replay = []
        for offset in range(count):
            template = group.history.get((start + offset) & 0xFFFF)
            if template is None:
                return None
            replay.append(template)
        return replay

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe, at most once per KEYFRAME_REQUEST_INTERVAL:
        requests inside the interval coalesce into one sent when it ends. A keyframe asked
        for within KEYFRAME_IN_FLIGHT and not arrived yet is on its way: it will reach
        whoever asks now, so nothing more is sent."""
        if self.closed or self.kind != "video" or self._pending_keyframe_request is not None:
            return
        now = monotonic()
        arrived = float("-inf") if self._keyframe is None else self._keyframe[1]
        if arrived < self._requested_at and now - self._requested_at < KEYFRAME_IN_FLIGHT:
            return
        wait = self._requested_at + KEYFRAME_REQUEST_INTERVAL - now
        if wait > 0:
            loop = asyncio.get_running_loop()
            self._pending_keyframe_request = loop.call_later(wait, self._send_keyframe_request)
        else:
            self._send_keyframe_request()

    def _send_keyframe_request(self) -> None:
        self._pending_keyframe_request = None
        if self.closed or self.media_ssrc is None:
            # No packet yet: the publisher's first frame is a keyframe anyway.
            return
        self._requested_at = monotonic()
        self.stats["keyframe_requests"] += 1
        task = asyncio.ensure_future(aiortc_private.send_pli(self._receiver, self.media_ssrc))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        """Idempotent. Subscriptions are closed by their own Peers; here they are let go."""
        if self.closed:
            return
        self.closed = True
        if self._pending_keyframe_request is not None:
            self._pending_keyframe_request.cancel()
            self._pending_keyframe_request = None
        self._groups.clear()

    def arrived_late(self, seq: int) -> bool:
        """Whether a recent packet came after a newer one (repaired or reordered upstream), so
        that viewers got it out of order."""
        return seq in self._late

    @property
    def newest_seq(self) -> int | None:
        """The newest sequence number forwarded (a late packet does not count)."""
        return self._newest_seq

    def snapshot(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "codec": self.codec.mimeType,
            "ssrc": self.media_ssrc,
            "subscriptions": [
                sub.snapshot() for group in self._groups.values() for sub in group.subscriptions
            ],
            **self.stats,
        }
