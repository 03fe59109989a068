"""Rooms are apart: each viewer gets its own room's stream and count."""

from __future__ import annotations

from .conftest import Peers
from .test_playback import assert_colour_near

BLUE = (30, 90, 200)
ORANGE = (230, 120, 20)


async def test_two_rooms_at_once_each_viewer_gets_only_its_own_rooms_stream(peers: Peers) -> None:
    blue = await peers.publisher("blue-room", width=320, height=240, colour=BLUE)
    orange = await peers.publisher("orange-room", width=160, height=120, colour=ORANGE)
    await blue.join_and_publish()
    await orange.join_and_publish()

    blue_viewer = await peers.viewer("blue-room")
    orange_viewer = await peers.viewer("orange-room")
    await blue_viewer.join()
    await orange_viewer.join()
    blue_seen = await blue_viewer.watch(video=30, audio=20)
    orange_seen = await orange_viewer.watch(video=30, audio=20)

    assert {(f.width, f.height) for f in blue_seen.video} == {(320, 240)}
    assert {(f.width, f.height) for f in orange_seen.video} == {(160, 120)}
    assert_colour_near(blue_seen.video[-1].background, BLUE)
    assert_colour_near(orange_seen.video[-1].background, ORANGE)

    # Each streamer counts only its own viewer.
    for publisher in (blue, orange):
        counts = [m["count"] for m in publisher.signaling.of_type("viewers")]
        assert counts[-1] == 1 and max(counts) == 1, counts
