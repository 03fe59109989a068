"""A viewer plays what the streamer publishes: moving video at its size, and its tone."""

from __future__ import annotations

import statistics

from .conftest import Peers
from .tracks import BAR_STEP

BLUE = (30, 90, 200)


def assert_colour_near(actual: tuple[int, int, int], expected: tuple[int, int, int]) -> None:
    assert all(abs(a - e) <= 25 for a, e in zip(actual, expected, strict=True)), (
        f"background {actual}, published {expected}"
    )


async def test_viewer_sees_moving_video_at_the_publishers_resolution_and_hears_audio(
    peers: Peers,
) -> None:
    publisher = await peers.publisher("playback", width=320, height=240, colour=BLUE)
    await publisher.join_and_publish()
    viewer = await peers.viewer("playback")
    joined = await viewer.join()
    assert joined["live"] is True, joined
    await viewer.signaling.next_message("stream-started")

    reception = await viewer.watch(video=45, audio=50)

    frames = reception.video
    assert {(f.width, f.height) for f in frames} == {(320, 240)}
    counters = [f.counter for f in frames]
    assert all(b > a for a, b in zip(counters, counters[1:], strict=False)), (
        f"frame numbers do not increase: {counters}"
    )
    # The bar moves BAR_STEP px a frame, so nearly every frame puts it somewhere new.
    assert len({f.bar_x // BAR_STEP for f in frames}) >= len(frames) // 2
    assert_colour_near(frames[-1].background, BLUE)

    sounds = reception.audio[5:]  # past Opus's first frames
    assert {s.sample_rate for s in sounds} == {48000}
    assert statistics.median(s.rms for s in sounds) > 0.05, [s.rms for s in sounds]


async def test_a_viewer_who_joins_before_the_streamer_waits_then_plays_when_it_publishes(
    peers: Peers,
) -> None:
    viewer = await peers.viewer("early")
    joined = await viewer.join()
    assert (joined["roomId"], joined["role"], joined["live"]) == ("early", "viewer", False)
    assert isinstance(joined["clientId"], str) and joined["clientId"]
    assert isinstance(joined["iceServers"], list)
    assert (await viewer.signaling.next_message("viewers"))["count"] == 1

    publisher = await peers.publisher("early")
    streamer_joined = await publisher.join()
    assert streamer_joined["live"] is False, streamer_joined
    await publisher.publish()
    await publisher.wait_connected()

    await viewer.signaling.next_message("stream-started", timeout=10)
    reception = await viewer.watch(video=20, audio=20)

    types = [m["type"] for m in viewer.signaling.messages]
    assert types.index("stream-started") < types.index("offer"), types
    assert {(f.width, f.height) for f in reception.video} == {(320, 240)}


async def test_an_h264_stream_is_offered_to_viewers_as_h264_and_plays(peers: Peers) -> None:
    publisher = await peers.publisher("h264", width=320, height=240, video_codec="video/H264")
    await publisher.join_and_publish()
    viewer = await peers.viewer("h264")
    await viewer.join()

    reception = await viewer.watch(video=20, audio=10)

    # Exactly the publisher's codec is offered: one video codec, no VP8 to fall back on.
    video_codecs = {
        line.split()[1].split("/")[0]
        for line in reception.offer_sdp.splitlines()
        if line.startswith("a=rtpmap:") and "/90000" in line
    }
    assert video_codecs == {"H264"}, reception.offer_sdp
    assert {(f.width, f.height) for f in reception.video} == {(320, 240)}
