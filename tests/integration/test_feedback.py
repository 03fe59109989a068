"""A viewer's RTCP feedback works: a NACK is answered from history, a PLI brings a keyframe."""

from __future__ import annotations

import time

from aiortc.rtp import RTCP_PSFB_PLI, RTCP_RTPFB_NACK, RtcpPsfbPacket, RtcpRtpfbPacket

from .conftest import Peers
from .peers import Reception
from .probe import RtpRecord, parse_vp8


async def watching(peers: Peers, room_id: str) -> Reception:
    publisher = await peers.publisher(room_id)
    await publisher.join_and_publish()
    viewer = await peers.viewer(room_id)
    await viewer.join()
    return await viewer.watch(video=20, audio=10)


def is_vp8(reception: Reception, record: RtpRecord) -> bool:
    pt = reception.kind_of(record)
    return pt is not None and pt.codec == "vp8"


async def test_a_viewer_nack_is_answered_with_the_same_packet_from_the_servers_history(
    peers: Peers,
) -> None:
    reception = await watching(peers, "nack")
    video_ssrc = reception.media_ssrc("video")
    video = [r for r in reception.tap.rtp if r.ssrc == video_ssrc and is_vp8(reception, r)]
    original = video[-10]  # recent, well inside any history
    target = original.sequence_number

    def repairs(record: RtpRecord) -> bool:
        pt = reception.kind_of(record)
        if pt is None:
            return False
        if pt.codec == "rtx":  # RFC 4588: the original sequence number leads the payload
            repaired = reception.payload_types.get(pt.apt or -1)
            return (
                repaired is not None
                and repaired.kind == "video"
                and record.rtx_original_sequence_number == target
            )
        return record.ssrc == video_ssrc and record.sequence_number == target

    mark = len(reception.tap.rtp)
    nack = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=reception.rtcp_ssrc(), media_ssrc=video_ssrc)
    nack.lost = [target]
    await reception.send_rtcp(nack)

    repeat = await reception.wait_rtp(
        repairs, timeout=1.0, what=f"retransmission of video packet {target}", start=mark
    )
    assert repeat.timestamp == original.timestamp, (repeat, original)
    if reception.kind_of(repeat).codec == "rtx":  # type: ignore[union-attr]
        assert repeat.payload[2:] == original.payload[: len(repeat.payload) - 2]
    else:
        assert repeat.payload == original.payload


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
    sent = time.time()
    pli = RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=reception.rtcp_ssrc(), media_ssrc=video_ssrc)
    await reception.send_rtcp(pli)

    fresh = await reception.wait_rtp(
        keyframe, timeout=1.5, what="a keyframe after the PLI", start=mark
    )
    assert fresh.arrival >= sent
    assert fresh.timestamp != first.timestamp
    assert parse_vp8(fresh.payload).picture_id != parse_vp8(first.payload).picture_id
