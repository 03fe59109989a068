"""The forwarding decisions, as pure functions on a small per-subscription state.

A Subscription asks, for every packet of its Publication: drop it, or send it with which
sequence number (the timestamp follows from a fixed offset)? It asks again, for a viewer's
NACK: which upstream packet is this? No I/O here, so every rule is unit-tested without a
network (LiveKit's forwarder is the model: the forwarder decides, the down-track does).

Sequence numbers: a viewer's stream starts at a random sequence number at its first start
point (a keyframe for video, any packet for audio); after that the offset to upstream stays
fixed, so upstream gaps stay gaps and a NACK maps straight back to the packet the publisher
sent. Timestamps: a random offset for the life of the subscription, so the publisher's
NTP-to-RTP mapping (its sender reports) carries over by adding the same offset.
"""

from __future__ import annotations

from dataclasses import dataclass

SEQ_MASK = 0xFFFF
TS_MASK = 0xFFFFFFFF
# Packets further behind the newest than this are too old to forward or retransmit: it keeps
# "before our start" well defined across sequence-number wrap-around.
WINDOW = 0x4000


def seq_newer(a: int, b: int) -> bool:
    """True if sequence number `a` comes after `b` (RFC 3550 modular arithmetic)."""
    return a != b and ((a - b) & SEQ_MASK) < 0x8000


@dataclass(slots=True)
class TrackRewrite:
    """How one Publication's packets become one viewer's stream."""

    ssrc: int
    payload_type: int
    ts_offset: int
    next_out_seq: int
    started: bool = False
    seq_offset: int = 0
    oldest_in_seq: int = 0  # packets before this are not ours to forward
    newest_in_seq: int = 0


def rewrite(state: TrackRewrite, in_seq: int, can_start: bool) -> int:
    """Decide one packet: this viewer's sequence number for it, or -1 to drop it.
    `can_start`: the packet may begin a stream (keyframe start for video; always for audio).
    An int, not a tuple: this runs once per packet per viewer, and a tuple per call would
    feed the cyclic garbage collector, whose full passes stall the whole fan-out."""
    if state.started:
        ahead = (in_seq - state.newest_in_seq) & SEQ_MASK
        if 0 < ahead < 0x8000:
            state.newest_in_seq = in_seq
            if ((in_seq - state.oldest_in_seq) & SEQ_MASK) > WINDOW:
                state.oldest_in_seq = (in_seq - WINDOW) & SEQ_MASK
        elif seq_newer(state.oldest_in_seq, in_seq):
            return -1  # from before this viewer's start: it cannot decode it
    elif not can_start:
        return -1
    else:
        state.started = True
        state.seq_offset = (state.next_out_seq - in_seq) & SEQ_MASK
        state.oldest_in_seq = in_seq
        state.newest_in_seq = in_seq
    return (in_seq + state.seq_offset) & SEQ_MASK


def resync(state: TrackRewrite) -> None:
    """Stop until the next start point (a keyframe), then go on with the next sequence number
    as if nothing was skipped: for a viewer that lost more than retransmission can repair."""
    if not state.started:
        return
    state.next_out_seq = (state.newest_in_seq + state.seq_offset + 1) & SEQ_MASK
    state.started = False


def upstream_seq(state: TrackRewrite, out_seq: int) -> int | None:
    """The publisher's sequence number for a viewer's NACKed `out_seq`, or None when it is
    not a packet this viewer was sent under the current mapping."""
    if not state.started:
        return None
    in_seq = (out_seq - state.seq_offset) & SEQ_MASK
    if seq_newer(in_seq, state.newest_in_seq) or seq_newer(state.oldest_in_seq, in_seq):
        return None
    return in_seq


def viewer_rtp_timestamp(state: TrackRewrite, publisher_ts: int) -> int:
    """A publisher RTP timestamp (e.g. from its sender report) in the viewer's timeline."""
    return (publisher_ts + state.ts_offset) & TS_MASK


@dataclass(slots=True)
class RetransmitBudget:
    """A token bucket for one subscription's NACK answers: a viewer's NACK may list thousands
    of sequence numbers in one small packet, and every answer costs a full packet out."""

    rate: float = 300.0  # per second: about one stream's worth of 720p packets
    burst: float = 150.0
    tokens: float = 150.0
    updated: float = 0.0


def take_retransmit(budget: RetransmitBudget, now: float) -> bool:
    budget.tokens = min(budget.burst, budget.tokens + (now - budget.updated) * budget.rate)
    budget.updated = now
    if budget.tokens < 1.0:
        return False
    budget.tokens -= 1.0
    return True
