"""A viewer's RTCP feedback works: a NACK is answered from history, a PLI brings a keyframe."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from aiortc.rtp import RTCP_PSFB_PLI, RTCP_RTPFB_NACK, RtcpPsfbPacket, RtcpRtpfbPacket

from .conftest import Peers, Server
from .peers import Reception, token
from .probe import RtpRecord, WireRecord, parse_vp8


async def watching(peers: Peers, room_id: str) -> Reception:
    publisher = await peers.publisher(room_id)
    await publisher.join_and_publish()
    viewer = await peers.viewer(room_id)
    await viewer.join()
    return await viewer.watch(video=20, audio=10)


def is_vp8(reception: Reception, record: RtpRecord) -> bool:
    pt = reception.kind_of(record)
    return pt is not None and pt.codec == "vp8"


def repairs_of(reception: Reception, video_ssrc: int, seq: int) -> Callable[[RtpRecord], bool]:
    """Whether a packet after SRTP repairs video packet `seq`: the packet again, or RTX."""

    def repairs(record: RtpRecord) -> bool:
        pt = reception.kind_of(record)
        if pt is None:
            return False
        if pt.codec == "rtx":  # RFC 4588 §4: the original sequence number leads the payload
            repaired = reception.payload_types.get(pt.apt if pt.apt is not None else -1)
            return (
                repaired is not None
                and repaired.kind == "video"
                and record.rtx_original_sequence_number == seq
            )
        return record.ssrc == video_ssrc and record.sequence_number == seq

    return repairs


async def nack(reception: Reception, video_ssrc: int, seq: int) -> None:
    packet = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=reception.rtcp_ssrc(), media_ssrc=video_ssrc)
    packet.lost = [seq]
    await reception.send_rtcp(packet)


async def test_a_viewer_nack_is_answered_with_the_same_packet_from_the_servers_history(
    peers: Peers,
) -> None:
    reception = await watching(peers, "nack")
    video_ssrc = reception.media_ssrc("video")
    video = [r for r in reception.tap.rtp if r.ssrc == video_ssrc and is_vp8(reception, r)]
    original = video[-10]  # recent, well inside any history
    target = original.sequence_number
    wire_mark, rtp_mark = len(reception.tap.wire), len(reception.tap.rtp)
    repairs = repairs_of(reception, video_ssrc, target)

    def repeated() -> WireRecord | RtpRecord | None:
        # A plain retransmission of a packet the viewer has is discarded by SRTP's replay
        # check (RFC 3711 §3.3.2), so look for its clear header on the wire; an RTX one is a
        # new packet and passes SRTP.
        for wire in reception.tap.wire[wire_mark:]:
            if wire.ssrc == video_ssrc and wire.sequence_number == target:
                return wire
        return next((r for r in reception.tap.rtp[rtp_mark:] if repairs(r)), None)

    await nack(reception, video_ssrc, target)
    repeat: WireRecord | RtpRecord = await reception.changes.wait_until(
        repeated,
        timeout=1.0,
        what=lambda: f"retransmission of video packet {target}; {reception.describe()}",
    )
    assert repeat.timestamp == original.timestamp, (repeat, original)


async def test_a_video_packet_lost_on_the_way_is_retransmitted_and_reaches_the_viewer(
    peers: Peers,
) -> None:
    reception = await watching(peers, "loss")
    video_ssrc = reception.media_ssrc("video")
    tap = reception.tap
    # Lose the next video packet before SRTP, as the network would.
    tap.drop = lambda wire: wire.ssrc == video_ssrc and not tap.dropped
    await reception.changes.wait_until(lambda: tap.dropped, 2.0, "a video packet to drop")
    lost = tap.dropped[0]

    await nack(reception, video_ssrc, lost.sequence_number)  # aiortc's receiver NACKs it too
    repair = await reception.wait_rtp(
        repairs_of(reception, video_ssrc, lost.sequence_number),
        timeout=1.0,
        what=f"retransmission of lost video packet {lost.sequence_number}",
    )
    assert repair.timestamp == lost.timestamp, (repair, lost)
    await reception.wait_more_frames(video=10)


async def test_a_viewer_pli_brings_a_new_keyframe(peers: Peers) -> None:
    reception = await watching(peers, "pli")
    video_ssrc = reception.media_ssrc("video")

    def keyframe(record: RtpRecord) -> bool:
        return (
            record.ssrc == video_ssrc
            and is_vp8(reception, record)
            and parse_vp8(record.payload).keyframe
        )

    first = await reception.wait_rtp(keyframe, timeout=1.0, what="the first keyframe")
    # Past the server's limit of one upstream PLI per 0.5 s since this viewer joined.
    await reception.changes.wait_until(
        lambda: reception.video and reception.video[-1].arrival > first.arrival + 0.7,
        timeout=3.0,
        what="0.7 s of video after the first keyframe",
    )

    mark = len(reception.tap.rtp)
    unasked = [
        r for r in reception.tap.rtp[:mark] if keyframe(r) and r.timestamp != first.timestamp
    ]
    assert not unasked, f"keyframes before the PLI, so the test cannot tell: {unasked}"
    sent = time.time()
    pli = RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=reception.rtcp_ssrc(), media_ssrc=video_ssrc)
    await reception.send_rtcp(pli)

    fresh = await reception.wait_rtp(
        keyframe, timeout=1.5, what="a keyframe after the PLI", start=mark
    )
    assert fresh.arrival >= sent
    assert fresh.timestamp != first.timestamp
    assert parse_vp8(fresh.payload).picture_id != parse_vp8(first.payload).picture_id


async def test_losses_past_repair_resync_the_viewer_which_is_counted_and_plays_on(
    server: Server, peers: Peers
) -> None:
    reception = await watching(peers, "unrepairable")
    video_ssrc = reception.media_ssrc("video")
    sent = sorted({r.sequence_number for r in reception.tap.rtp if r.ssrc == video_ssrc})

    # More NACKed packets than the retransmission budget allows (150 at once): the rest
    # cannot be repaired in time, so the server resyncs the viewer at the next keyframe.
    for _ in range(1 + 200 // len(sent)):
        packet = RtcpRtpfbPacket(
            fmt=RTCP_RTPFB_NACK, ssrc=reception.rtcp_ssrc(), media_ssrc=video_ssrc
        )
        packet.lost = sent
        await reception.send_rtcp(packet)

    async def video_subscription() -> dict[str, Any]:
        async with aiohttp.ClientSession() as http:
            admin = {"Authorization": f"Bearer {token(admin=True)}"}
            async with http.get(server.url + "/api/rooms", headers=admin) as response:
                (room,) = (await response.json())["rooms"]
        video = next(p for p in room["publications"] if p["kind"] == "video")
        return dict(video["subscriptions"][0])

    deadline = time.monotonic() + 3
    while (counts := await video_subscription())["resyncs"] < 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert counts["resyncs"] >= 1 and counts["retransmits_refused"] > 0, counts
    assert counts["retransmitted"] >= 140, counts  # the budget's worth was repaired
    await reception.wait_more_frames(video=15)  # from the next keyframe on
