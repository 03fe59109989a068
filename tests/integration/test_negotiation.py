"""Negotiation at its edges: trickled candidates, a connection that never completes, and
viewer feedback that must not turn into a flood towards the streamer or the network."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.rtp import RTCP_PSFB_PLI, RTCP_RTPFB_NACK, RtcpPsfbPacket, RtcpRtpfbPacket

from netra.app import create_app
from netra.config import Config
from netra.media.forwarder import seq_newer
from netra.media.publication import KEYFRAME_REQUEST_INTERVAL

from .conftest import Peers, Server
from .peers import (
    TEST_SECRET,
    Publisher,
    Reception,
    Signaling,
    Viewer,
    peer_configuration,
    token,
)
from .test_feedback import watching


def split_candidates(sdp: str) -> tuple[str, list[str]]:
    """The SDP without its a=candidate lines, and those candidates."""
    lines = sdp.split("\r\n")
    candidates = [line[2:] for line in lines if line.startswith("a=candidate:")]
    rest = [
        line
        for line in lines
        if not line.startswith("a=candidate:") and line != "a=end-of-candidates"
    ]
    return "\r\n".join(rest), candidates


async def test_a_viewer_that_trickles_its_candidates_connects_and_plays(peers: Peers) -> None:
    publisher = await peers.publisher("trickle")
    await publisher.join_and_publish()
    viewer = await peers.viewer("trickle")
    await viewer.join()
    offer = await viewer.signaling.next_message("offer")
    pc = RTCPeerConnection(peer_configuration())
    reception = Reception(pc, offer["sdp"])
    viewer.receptions.append(reception)  # closed by the fixture
    await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    reception.attach_taps()
    answer, candidates = split_candidates(pc.localDescription.sdp)
    assert candidates, "the viewer gathered no candidate to trickle"

    await viewer.signaling.send({"type": "answer", "sdp": answer})
    for candidate in candidates:
        await viewer.signaling.send(
            {"type": "candidate", "candidate": {"candidate": candidate, "sdpMid": "0"}}
        )
    await viewer.signaling.send({"type": "candidate", "candidate": None})

    await reception.wait_frames(10, 10, timeout=10)
    assert not viewer.signaling.of_type("error"), viewer.signaling.describe()


@pytest.fixture
async def impatient_server() -> AsyncIterator[Server]:
    """A server that gives a peer connection one second to connect."""
    config = Config(
        host="127.0.0.1",
        port=0,
        candidate_addresses=("127.0.0.1",),
        connect_timeout=1.0,
        auth_secret=TEST_SECRET,
    )
    app = create_app(config)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        yield Server(url=f"http://{host}:{port}", app=app)
    finally:
        await runner.cleanup()


async def test_a_streamer_whose_connection_never_completes_is_told_the_stream_failed(
    impatient_server: Server,
) -> None:
    signaling = await Signaling.connect(impatient_server.url)
    pc = RTCPeerConnection(peer_configuration())
    try:
        await signaling.send(
            {"type": "join", "roomId": "stuck", "role": "streamer", "token": token(publish=True)}
        )
        await signaling.next_message("joined")
        pc.addTransceiver("video", direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        # No candidate ever reaches the server, so ICE cannot complete.
        offer, _ = split_candidates(pc.localDescription.sdp)
        await signaling.send({"type": "offer", "sdp": offer})
        await signaling.next_message("answer")

        ended = await signaling.next_message("stream-ended", timeout=5)

        assert ended["reason"] == "streamer-failed"
        # It may offer again on the same connection.
        await signaling.send({"type": "offer", "sdp": offer})
        await signaling.next_message("answer")
    finally:
        await pc.close()
        await signaling.close()


class PliCounter:
    """Times at which a publisher's video sender receives a PLI, and a wait for the next."""

    def __init__(self, publisher_pc: RTCPeerConnection) -> None:
        self.times: list[float] = []
        self._arrived = asyncio.Event()
        sender = next(t.sender for t in publisher_pc.getTransceivers() if t.kind == "video")
        original = sender._handle_rtcp_packet

        async def handle(packet: Any) -> None:
            if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_PLI:
                self.times.append(asyncio.get_running_loop().time())
                self._arrived.set()
            await original(packet)

        sender._handle_rtcp_packet = handle  # type: ignore[method-assign]

    async def wait_quiet(self, quiet: float, timeout: float) -> None:
        """Until no PLI has arrived for `quiet` seconds: whatever the server still held back
        has been sent."""
        async with asyncio.timeout(timeout):
            while True:
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), quiet)
                except TimeoutError:
                    return


async def test_a_viewer_pli_storm_reaches_the_streamer_at_most_twice_a_second(
    peers: Peers,
) -> None:
    publisher = await peers.publisher("storm")
    await publisher.join_and_publish()
    viewer = await peers.viewer("storm")
    await viewer.join()
    reception = await viewer.watch(video=20, audio=10)
    assert publisher.pc is not None
    plis = PliCounter(publisher.pc)
    video_ssrc = reception.media_ssrc("video")
    loop = asyncio.get_running_loop()
    start = loop.time()

    for _ in range(40):  # 40 PLIs paced over 2 s: far more than a browser would send
        pli = RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=reception.rtcp_ssrc(), media_ssrc=video_ssrc)
        await reception.send_rtcp(pli)
        await asyncio.sleep(0.05)
    # The requests of the last window are coalesced into one sent when the window ends (or
    # none, if the keyframe last asked for is still on its way): count it in.
    await plis.wait_quiet(KEYFRAME_REQUEST_INTERVAL + 0.2, timeout=5)
    assert plis.times, "no PLI reached the streamer at all"
    elapsed = plis.times[-1] - start
    assert len(plis.times) <= elapsed / 0.5 + 1, f"{len(plis.times)} PLIs in {elapsed:.1f} s"
    gaps = [b - a for a, b in zip(plis.times, plis.times[1:], strict=False)]
    assert all(gap >= 0.45 for gap in gaps), gaps


async def test_a_nack_flood_gets_a_bounded_answer(peers: Peers) -> None:
    reception = await watching(peers, "nack-flood")
    video_ssrc = reception.media_ssrc("video")
    before = len(reception.tap.wire)
    received = {r.sequence_number for r in reception.tap.wire if r.ssrc == video_ssrc}
    newest = max(received)
    rounds = 30
    assert len(received) * rounds > 400, "too few packets to make a flood of"

    # Each NACK asks again for every video packet this viewer has had: the server holds all of
    # them, so only its retransmission budget stands between this and a flood.
    for _ in range(rounds):
        nack = RtcpRtpfbPacket(
            fmt=RTCP_RTPFB_NACK, ssrc=reception.rtcp_ssrc(), media_ssrc=video_ssrc
        )
        nack.lost = sorted(received)
        await reception.send_rtcp(nack)
    # The server answers a NACK at once, so by the time fresh media has flowed for a few
    # packets every retransmission it was going to send has arrived.
    await reception.wait_wire(
        lambda r: r.ssrc == video_ssrc and seq_newer(r.sequence_number, (newest + 5) & 0xFFFF),
        timeout=5,
        what="fresh video after the NACKs",
        start=before,
    )

    wire = reception.tap.wire[before:]
    resent = [r for r in wire if r.ssrc == video_ssrc and r.sequence_number in received]
    assert resent, "the NACKs were not answered at all"
    # The burst (150) plus what the bucket refills while the NACKs arrive.
    assert len(resent) <= 200, f"{len(resent)} retransmissions for {len(received) * rounds} asked"


async def test_a_viewer_whose_connection_never_completes_is_offered_again(
    impatient_server: Server,
) -> None:
    publisher = Publisher(await Signaling.connect(impatient_server.url), "retry")
    viewer = Viewer(await Signaling.connect(impatient_server.url), "retry")
    stuck = RTCPeerConnection(peer_configuration())
    try:
        await publisher.join_and_publish()
        await viewer.join()
        await viewer.signaling.next_message("stream-started")
        offer = await viewer.signaling.next_message("offer")
        await stuck.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
        await stuck.setLocalDescription(await stuck.createAnswer())
        answer = stuck.localDescription.sdp
        await stuck.close()  # gone before a single ICE check: nothing will ever answer
        await viewer.signaling.send({"type": "answer", "sdp": answer})

        # After the server's connect timeout (1 s here) it starts over with a new offer …
        await viewer.signaling.next_message("stream-started", timeout=5)
        reception = await viewer.accept_offer(timeout=5)
        # … which this time connects and plays.
        await reception.wait_frames(5, 5, timeout=10)
    finally:
        await stuck.close()
        await viewer.close()
        await publisher.close()
