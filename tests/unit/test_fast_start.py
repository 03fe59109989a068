"""Fast start: a joining viewer is replayed a fresh group of pictures at once, and a burst of
joiners costs the publisher at most one keyframe request per half second."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiortc import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from netra.media import publication as publication_module
from netra.media.publication import Publication

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
KEYFRAME_START = bytes([0x10, 0x00]) + bytes(20)  # S=1, partition 0; payload P bit 0
DELTA_START = bytes([0x10, 0x01]) + bytes(20)  # P bit 1: an inter frame


class FakeReceiver:
    """What Publication needs of aiortc's RTCRtpReceiver: a tap point and a PLI sender."""

    def __init__(self) -> None:
        self.plis: list[int] = []
        self._sent = asyncio.Event()

    async def _handle_rtcp_packet(self, packet: Any) -> None:
        pass

    async def _send_rtcp_pli(self, media_ssrc: int) -> None:
        self.plis.append(media_ssrc)
        self._sent.set()

    async def wait_plis(self, count: int, timeout: float = 2.0) -> None:
        """Wait until `count` PLIs have gone out (they are sent from a task)."""
        async with asyncio.timeout(timeout):
            while len(self.plis) < count:
                self._sent.clear()
                await self._sent.wait()


class FakeSubscription:
    payload_type = 96
    mid = "0"
    header_extensions: list[Any] = []
    group_key = (96, "0", ())
    viewer = None  # not a native viewer: the group forwards to it one by one

    def __init__(self) -> None:
        self.received: list[tuple[int, bool]] = []  # (upstream seq, may start)

    def forward(self, template: bytes, seq: int, ts: int, can_start: bool) -> None:
        self.received.append((seq, can_start))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(publication_module, "monotonic", clock.monotonic)
    return clock


def send(publication: Publication, seq: int, payload: bytes) -> None:
    packet = RtpPacket(payload_type=96, sequence_number=seq, timestamp=seq * 3000, ssrc=7)
    packet.payload = payload
    publication._feed.packet(packet)


# A keyframe (sequence number 100) and five packets after it: (sequence number, can start).
PICTURE_GROUP = [(100, True)] + [(seq, False) for seq in range(101, 106)]


def send_picture_group(publication: Publication) -> None:
    for seq, keyframe in PICTURE_GROUP:
        send(publication, seq, KEYFRAME_START if keyframe else DELTA_START)


async def test_a_joiner_after_a_fresh_keyframe_is_replayed_it_without_a_new_request(
    clock: Clock,
) -> None:
    receiver = FakeReceiver()
    publication = Publication("video", VP8, receiver)  # type: ignore[arg-type]
    first = FakeSubscription()
    publication.attach(first)  # type: ignore[arg-type]
    send_picture_group(publication)

    clock.now += 0.1
    joiner = FakeSubscription()
    publication.attach(joiner)  # type: ignore[arg-type]

    assert joiner.received == PICTURE_GROUP
    # Nothing asked of the publisher: the stream's first frame was the keyframe.
    assert publication.stats["keyframe_requests"] == 0
    assert publication.stats["catch_ups"] == 1
    publication.close()


async def test_the_first_viewer_of_a_publication_with_no_viewer_yet_is_replayed_its_keyframe(
    clock: Clock,
) -> None:
    """A cold edge: its pull's stream arrives before any viewer there, so no group has kept
    it; the first viewer still starts at once from the keyframe, and asks the publisher (the
    origin) for nothing."""
    receiver = FakeReceiver()
    publication = Publication("video", VP8, receiver)  # type: ignore[arg-type]
    send_picture_group(publication)

    clock.now += 0.1
    first = FakeSubscription()
    publication.attach(first)  # type: ignore[arg-type]

    assert first.received == PICTURE_GROUP
    assert publication.stats["keyframe_requests"] == 0
    publication.close()


async def test_a_joiner_after_a_stale_keyframe_waits_for_one_asked_for_and_a_burst_asks_once(
    clock: Clock,
) -> None:
    receiver = FakeReceiver()
    publication = Publication("video", VP8, receiver)  # type: ignore[arg-type]
    publication.attach(FakeSubscription())  # type: ignore[arg-type]
    send(publication, 100, KEYFRAME_START)
    send(publication, 101, DELTA_START)

    clock.now += 2.0  # the keyframe is too old to replay
    burst = [FakeSubscription() for _ in range(25)]
    for joiner in burst:
        publication.attach(joiner)  # type: ignore[arg-type]
    await receiver.wait_plis(1)

    assert all(joiner.received == [] for joiner in burst)
    assert publication.stats["keyframe_requests"] == 1  # one request for the whole burst
    send(publication, 102, KEYFRAME_START)  # the keyframe asked for reaches them live
    assert all(joiner.received == [(102, True)] for joiner in burst)
    # Nor was a second request held back for later: the limiter's window passes with none.
    with pytest.raises(TimeoutError):
        await receiver.wait_plis(2, timeout=publication_module.KEYFRAME_REQUEST_INTERVAL + 0.2)
    publication.close()
