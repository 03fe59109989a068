"""Streams end when the streamer goes, start again when one comes back, and one room has one
streamer; the streamer is told how many watch."""

from __future__ import annotations

from .conftest import Peers
from .peers import Viewer, token


async def watching(peers: Peers, room_id: str, count: int) -> list[Viewer]:
    viewers = []
    for _ in range(count):
        viewer = await peers.viewer(room_id)
        await viewer.join()
        viewers.append(viewer)
    for viewer in viewers:
        await viewer.watch(video=10, audio=10)
    return viewers


async def assert_stream_ended(viewers: list[Viewer], reason: str) -> None:
    for viewer in viewers:
        ended = await viewer.signaling.next_message("stream-ended")
        assert ended.get("reason") == reason, ended
        # "viewers' peer connections are closed"
        await viewer.reception.wait_closed_by_server()


async def assert_plays_again(viewers: list[Viewer], width: int, height: int) -> None:
    for viewer in viewers:
        await viewer.signaling.next_message("stream-started", timeout=10)
    for viewer in viewers:
        reception = await viewer.watch(video=10, audio=10)
        assert {(f.width, f.height) for f in reception.video} == {(width, height)}
        assert len(viewer.receptions) == 2


async def test_a_streamer_who_leaves_ends_the_stream_and_plays_again_when_it_rejoins(
    peers: Peers,
) -> None:
    publisher = await peers.publisher("comeback")
    await publisher.join_and_publish()
    viewers = await watching(peers, "comeback", 2)

    await publisher.leave()
    await assert_stream_ended(viewers, "streamer-left")
    ended = await publisher.signaling.next_message("stream-ended")  # "viewers and the streamer"
    assert ended["reason"] == "streamer-left"

    # The socket stays open after `leave` and may join again.
    publisher.width, publisher.height = 160, 120
    await publisher.join_and_publish()
    await assert_plays_again(viewers, 160, 120)


async def test_a_streamer_whose_peer_connection_closes_carries_the_stream_on_when_it_offers(
    peers: Peers,
) -> None:
    publisher = await peers.publisher("failing")
    await publisher.join_and_publish()
    viewers = await watching(peers, "failing", 1)

    await publisher.stop_media()  # the media goes; the socket stays
    stalled = await viewers[0].signaling.next_message("stream-stalled")
    assert stalled["reason"] == "streamer-reconnecting", stalled

    # Still joined as the streamer: it publishes again on the same socket, and the viewer's
    # peer connection plays the new one's media.
    await publisher.publish()
    await publisher.wait_connected()
    await viewers[0].signaling.next_message("stream-resumed", timeout=10)
    await viewers[0].reception.wait_more_frames(video=10, audio=10)
    assert len(viewers[0].receptions) == 1
    assert not viewers[0].signaling.of_type("stream-ended"), viewers[0].signaling.describe()


async def test_a_second_streamer_is_refused_and_the_first_keeps_streaming(peers: Peers) -> None:
    first = await peers.publisher("one-streamer")
    await first.join_and_publish()
    (viewer,) = await watching(peers, "one-streamer", 1)

    second = await peers.publisher("one-streamer")
    await second.signaling.send(
        {"type": "join", "roomId": "one-streamer", "role": "streamer",
         "token": token("one-streamer", publish=True)}
    )  # fmt: skip
    error = await second.signaling.next_message("error")
    assert error["code"] == "streamer-exists", error
    assert error.get("ref") == "join", error

    # Errors never close the door.
    await second.signaling.send({"type": "ping", "id": "still-there"})
    assert (await second.signaling.next_message("pong"))["id"] == "still-there"

    await viewer.reception.wait_more_frames(video=30, audio=30)
    assert not viewer.signaling.of_type("stream-ended"), viewer.signaling.describe()
    assert not first.signaling.of_type("stream-ended"), first.signaling.describe()
    assert viewer.reception.state == "connected"
    assert len(viewer.receptions) == 1


async def test_the_streamer_is_told_the_viewer_count_as_viewers_join_and_leave(
    peers: Peers,
) -> None:
    publisher = await peers.publisher("counted")
    joined = await publisher.join()
    assert joined["viewers"] == 0, joined
    counts = publisher.signaling

    async def next_count() -> int:
        return int((await counts.next_message("viewers"))["count"])

    assert await next_count() == 0  # "after joined"

    first = await peers.viewer("counted")
    first_joined = await first.join()
    assert await next_count() == 1
    assert first_joined["viewers"] == 1, first_joined

    second = await peers.viewer("counted")
    await second.join()
    assert await next_count() == 2
    assert (await first.signaling.next_message("viewers"))["count"] == 1  # its own join
    assert (await first.signaling.next_message("viewers"))["count"] == 2  # everyone in the room

    await first.signaling.send({"type": "leave"})
    assert await next_count() == 1

    await second.signaling.close()
    assert await next_count() == 0

    # A viewer of another room does not count here.
    elsewhere = await peers.viewer("not-counted")
    await elsewhere.join()
    await elsewhere.signaling.next_message("viewers")
    await publisher.signaling.send({"type": "ping", "id": 1})
    await publisher.signaling.next_message("pong")
    assert [m["count"] for m in counts.of_type("viewers")] == [0, 1, 2, 1, 0]
