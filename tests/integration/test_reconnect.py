"""Nothing drops: sessions survive their socket, a stream survives its streamer's new peer
connection, and a stream whose media stops says so (docs/protocol.md, "Reconnecting")."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import aiohttp
import pytest

from .conftest import Peers
from .peers import Publisher, Reception, Signaling, Viewer, token
from .test_stream_lifecycle import watching


def video_packets(reception: Reception) -> list[tuple[int, int]]:
    """(sequence number, timestamp) of the video RTP received, in arrival order."""
    ssrc = reception.media_ssrc("video")
    return [(r.sequence_number, r.timestamp) for r in reception.tap.rtp if r.ssrc == ssrc]


def unwrap(values: list[int], bits: int) -> list[int]:
    """Serial numbers (RFC 1982) as plain integers, relative to the first."""
    if not values:
        return []
    span, half = 1 << bits, 1 << (bits - 1)
    out = [values[0]]
    for value in values[1:]:
        step = (value - out[-1]) % span
        out.append(out[-1] + (step - span if step >= half else step))
    return out


async def live(peers: Peers, room: str, viewers: int = 1) -> tuple[Publisher, list[Viewer]]:
    publisher = await peers.publisher(room)
    await publisher.join_and_publish()
    return publisher, await watching(peers, room, viewers)


def told(viewer: Viewer, *types: str) -> list[dict[str, object]]:
    return [m for m in viewer.signaling.messages if m.get("type") in types]


async def test_a_streamer_whose_socket_drops_keeps_its_viewers_playing_and_resumes(
    peers: Peers,
) -> None:
    publisher, (viewer,) = await live(peers, "wifi-handover")
    first_joined = publisher.signaling.of_type("joined")[-1]

    await publisher.drop_signaling()
    # Media keeps flowing while signaling is down, and nobody is told anything.
    await viewer.reception.wait_more_frames(video=20, audio=20)
    resumed = await publisher.resume()

    assert resumed["resumed"] is True, resumed
    assert resumed["clientId"] == first_joined["clientId"]
    assert resumed["resumeKey"] != first_joined["resumeKey"]
    assert resumed["live"] is True
    assert (await publisher.signaling.next_message("viewers"))["count"] == 1
    await viewer.reception.wait_more_frames(video=10, audio=10)
    assert told(viewer, "stream-ended", "stream-stalled", "offer")[1:] == [], told(
        viewer, "stream-ended", "stream-stalled", "offer"
    )
    assert len(viewer.receptions) == 1 and publisher.pc is not None
    assert publisher.pc.connectionState == "connected"


@pytest.mark.server_config(grace_period=1.0)
async def test_a_streamer_that_does_not_come_back_ends_the_stream_after_the_grace_period(
    peers: Peers,
) -> None:
    publisher, viewers = await live(peers, "gone", 2)

    dropped = time.monotonic()
    await publisher.drop_signaling()
    for viewer in viewers:
        ended = await viewer.signaling.next_message("stream-ended", timeout=5)
        assert ended["reason"] == "streamer-disconnected", ended
        await viewer.reception.wait_closed_by_server()
    waited = time.monotonic() - dropped
    assert 0.9 <= waited < 4, f"stream ended {waited:.2f} s after the drop, grace period 1 s"
    await publisher.wait_closed_by_server()  # the server freed everything of that client

    returning = await peers.publisher("gone", width=160, height=120)
    joined = await returning.join()
    assert joined["live"] is False and joined["resumed"] is False, joined
    await returning.publish()
    await returning.wait_connected()
    for viewer in viewers:
        await viewer.signaling.next_message("stream-started", timeout=10)
        reception = await viewer.watch(video=10, audio=10)
        assert {(f.width, f.height) for f in reception.video} == {(160, 120)}


async def test_a_viewer_resumes_mid_stream_and_gets_what_was_queued_in_order(
    peers: Peers,
) -> None:
    publisher, (viewer,) = await live(peers, "queued")
    before = viewer.signaling.of_type("joined")[-1]
    old_socket = viewer.signaling
    frames = len(viewer.reception.video)

    await old_socket.close(leave=False)
    second = await peers.viewer("queued")
    await second.join()  # the parked viewer's count changes: queued
    publisher.pause_media()  # its stream stalls: queued
    await second.signaling.next_message("stream-stalled", timeout=5)
    publisher.pause_media(False)
    await second.signaling.next_message("stream-resumed", timeout=5)
    resumed = await viewer.resume()

    assert resumed["resumed"] is True and resumed["clientId"] == before["clientId"], resumed
    assert viewer.signaling is not old_socket
    await viewer.signaling.next_message("stream-resumed")
    queued = [m["type"] for m in viewer.signaling.messages]
    assert queued[:4] == ["joined", "viewers", "stream-stalled", "stream-resumed"], queued
    assert viewer.signaling.messages[1]["count"] == 2
    final = await viewer.signaling.next_message("viewers")
    assert final["count"] == 2, final
    # The viewer's media never stopped for its signaling: the same peer connection plays on.
    await viewer.reception.wait_more_frames(video=10, audio=10)
    assert len(viewer.receptions) == 1 and len(viewer.reception.video) > frames + 10


async def test_a_streamer_republishing_under_live_viewers_carries_the_stream_on(
    peers: Peers,
) -> None:
    publisher, viewers = await live(peers, "republish", 2)
    for viewer in viewers:
        await viewer.reception.wait_more_frames(video=10)

    publisher.colour = (200, 40, 40)
    await publisher.publish()  # a new peer connection on the same session, same codecs
    await publisher.wait_connected()

    for viewer in viewers:
        stalled = await viewer.signaling.next_message("stream-stalled", timeout=5)
        assert stalled["reason"] == "streamer-reconnecting", stalled
        await viewer.signaling.next_message("stream-resumed", timeout=10)
        reception = viewer.reception
        await reception.changes.wait_until(
            lambda r=reception: any(f.background[0] > 150 for f in r.video),  # type: ignore[misc]
            10,
            lambda r=reception: f"a frame from the new connection; {r.describe()}",  # type: ignore[misc]
        )
        # Carried on, not renegotiated: one peer connection, never told the stream ended.
        assert len(viewer.receptions) == 1
        assert not viewer.signaling.of_type("stream-ended"), viewer.signaling.describe()
        assert len(viewer.signaling.of_type("offer")) == 1
        packets = video_packets(reception)
        seqs = unwrap([seq for seq, _ in packets], 16)
        assert sorted(set(seqs)) == list(range(min(seqs), max(seqs) + 1)), "a sequence gap"
        in_order = sorted(zip(seqs, unwrap([ts for _, ts in packets], 32), strict=True))
        stamps = [ts for _, ts in in_order]
        assert stamps == sorted(stamps), "timestamps went backwards across the new connection"


async def test_a_publisher_whose_media_stops_stalls_the_stream_until_it_comes_back(
    peers: Peers,
) -> None:
    publisher, (viewer,) = await live(peers, "stalling")

    publisher.pause_media()
    paused = time.monotonic()
    stalled = await viewer.signaling.next_message("stream-stalled", timeout=5)
    noticed = time.monotonic() - paused
    assert stalled["reason"] == "no-media", stalled
    assert noticed <= 2.0, f"the stall was told {noticed:.2f} s after the media stopped"

    publisher.pause_media(False)
    await viewer.signaling.next_message("stream-resumed", timeout=5)
    await viewer.reception.wait_more_frames(video=10, audio=10)
    assert len(viewer.receptions) == 1 and not viewer.signaling.of_type("stream-ended")


async def test_a_publisher_that_vanishes_ends_the_stream_within_ten_seconds(
    peers: Peers,
) -> None:
    publisher, (viewer,) = await live(peers, "vanishing")

    publisher.go_silent()
    silent = time.monotonic()
    stalled = await viewer.signaling.next_message("stream-stalled", timeout=5)
    assert stalled["reason"] == "no-media", stalled
    ended = await viewer.signaling.next_message("stream-ended", timeout=12)
    took = time.monotonic() - silent
    assert ended["reason"] == "streamer-vanished", ended
    assert took <= 10.0, f"the stream ended {took:.1f} s after the publisher's last packet"
    await viewer.reception.wait_closed_by_server()


async def attached(server_url: str, client_id: str) -> bool | None:
    """Whether /api/rooms shows this client attached to its session (None: not there)."""
    async with aiohttp.ClientSession() as http:
        admin = {"Authorization": f"Bearer {token(admin=True)}"}
        async with http.get(server_url + "/api/rooms", headers=admin) as response:
            rooms = (await response.json())["rooms"]
    for room in rooms:
        for participant in room["participants"]:
            if participant["id"] == client_id:
                return bool(participant["attached"])
    return None


@pytest.mark.server_config(heartbeat=0.4)
async def test_a_half_open_client_is_noticed_by_the_heartbeat_and_can_resume(
    peers: Peers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="netra")
    url = peers.server.url
    healthy = await peers.viewer("half-open")
    await healthy.join()
    async with aiohttp.ClientSession() as http:
        # A socket that is open but answers nothing: no pong, nothing read.
        mute = await http.ws_connect(url + "/ws", autoping=False)
        await mute.send_json({"type": "join", "roomId": "half-open", "role": "viewer"})
        joined = json.loads((await mute.receive(timeout=5)).data)
        opened = time.monotonic()
        deadline = opened + 3
        while await attached(url, joined["clientId"]) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        noticed = time.monotonic() - opened
        assert await attached(url, joined["clientId"]) is False, "still attached after 3 s"
        assert noticed <= 1.5 * 0.4 + 0.5, f"noticed after {noticed:.2f} s, heartbeat 0.4 s"
        assert "no pong" in caplog.text
        await mute.close()
    assert await attached(url, healthy.signaling.of_type("joined")[-1]["clientId"]) is True

    back = await Signaling.connect(url)
    await back.send({"type": "join", "roomId": "half-open", "role": "viewer",
                     "resumeKey": joined["resumeKey"]})  # fmt: skip
    resumed = await back.next_message("joined")
    assert resumed["resumed"] is True and resumed["clientId"] == joined["clientId"], resumed
    await back.close()
