"""A packet lost before it reached this node (on the streamer's path, or on the hop from a
cluster's origin) is repaired by this node's own NACK and arrives late: it is sent on to the
viewers then, and a viewer's NACK for it meanwhile waits instead of resyncing the viewer."""

from __future__ import annotations

from netra.media.publication import HISTORY_SIZE, PacketHistory, Publication

from .test_fast_start import (
    DELTA_START,
    KEYFRAME_START,
    VP8,
    Clock,
    FakeReceiver,
    FakeSubscription,
    send,
)
from .test_fast_start import clock as clock  # noqa: F401 (a fixture)


def test_a_packet_not_received_yet_is_awaited_and_one_gone_from_the_history_is_not() -> None:
    history = PacketHistory()
    for seq in (100, 101, 102, 104):
        history.put(seq, b"packet %d" % seq)

    assert history.get(103) is None and history.awaited(103, newest=104)
    assert not history.awaited(102, newest=104)  # here: answer it
    for seq in range(105, 105 + HISTORY_SIZE):
        history.put(seq & 0xFFFF, b"")
    newest = 104 + HISTORY_SIZE
    assert not history.awaited(103, newest)  # too old to come now: the viewer resyncs


async def test_a_late_packet_reaches_viewers_and_a_joiner_without_moving_the_newest(
    clock: Clock,
) -> None:
    publication = Publication("video", VP8, FakeReceiver())  # type: ignore[arg-type]
    viewer = FakeSubscription()
    publication.attach(viewer)  # type: ignore[arg-type]
    send(publication, 10, KEYFRAME_START)
    for seq in (11, 13, 14):
        send(publication, seq, DELTA_START)
    send(publication, 12, DELTA_START)  # the repair of a loss upstream

    assert [seq for seq, _ in viewer.received] == [10, 11, 13, 14, 12]
    # A pull's NACK for it is no sign of loss between the nodes (netra.media.redundancy).
    assert publication.arrived_late(12)
    assert not any(publication.arrived_late(seq) for seq in (10, 11, 13, 14))
    clock.now += 0.1
    joiner = FakeSubscription()
    publication.attach(joiner)  # type: ignore[arg-type]
    # The replay runs from the keyframe to the newest packet, 14, with the late one in place.
    assert [seq for seq, _ in joiner.received] == [10, 11, 12, 13, 14]
    publication.close()
