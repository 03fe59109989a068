"""Rooms are apart: each viewer gets its own room's stream and count."""

from __future__ import annotations

import aiohttp

from netra.services import SERVICES

from .conftest import Peers, Server
from .peers import token, wait_for
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


async def test_a_viewer_who_leaves_or_drops_has_its_server_state_freed(
    server: Server, peers: Peers
) -> None:
    publisher = await peers.publisher("freed")
    await publisher.join_and_publish()
    leaving, dropping = await peers.viewer("freed"), await peers.viewer("freed")
    for viewer in (leaving, dropping):
        await viewer.join()
        await viewer.watch(video=5, audio=5)
    room = server.app[SERVICES].context.rooms.get("freed")
    assert room is not None

    def subscriptions() -> list[int]:
        return [len(p.snapshot()["subscriptions"]) for p in room.publications]

    assert subscriptions() == [2, 2]
    await leaving.signaling.send({"type": "leave"})
    await leaving.reception.wait_closed_by_server()
    await wait_for(lambda: subscriptions() == [1, 1], "the leaver's subscriptions detached")
    assert len(room.viewers) == 1

    await dropping.signaling.close()  # no leave: the socket just goes
    await dropping.reception.wait_closed_by_server()
    await wait_for(lambda: subscriptions() == [0, 0], "the dropped viewer's subscriptions")
    assert room.viewers == {}
    assert room.live  # the stream itself goes on


async def test_the_rooms_api_shows_what_is_live_where(server: Server, peers: Peers) -> None:
    publisher = await peers.publisher("on-air")
    await publisher.join_and_publish()
    viewer = await peers.viewer("on-air")
    await viewer.join()
    await viewer.watch(video=5, audio=5)
    async with aiohttp.ClientSession() as http:
        admin = {"Authorization": f"Bearer {token(admin=True)}"}
        async with http.get(server.url + "/api/rooms", headers=admin) as response:
            assert response.status == 200
            body = await response.json()
    rooms = body["rooms"]
    # The event loop's lateness over the last seconds: measured while the stream ran.
    assert body["loop_lag"]["max_ms"] is not None and body["loop_lag"]["max_ms"] >= 0
    (room,) = rooms
    assert room["id"] == "on-air" and room["live"] is True and room["viewers"] == 1
    kinds = {p["kind"]: p for p in room["publications"]}
    assert set(kinds) == {"audio", "video"}
    assert kinds["video"]["packets"] > 0
    (subscription,) = kinds["video"]["subscriptions"]
    assert subscription["packets"] > 0 and subscription["send_failures"] == 0
    # Each participant with its client id, its way in and its connection's state.
    viewer_id = viewer.signaling.of_type("joined")[-1]["clientId"]
    by_id = {p["id"]: p for p in room["participants"]}
    assert by_id[viewer_id] == {"id": viewer_id, "role": "viewer", "via": "ws",
                                "identity": None, "peer": "connected", "attached": True}
    streamer_id = publisher.signaling.of_type("joined")[-1]["clientId"]
    assert by_id[streamer_id]["peer"] == "connected" and by_id[streamer_id]["role"] == "streamer"


async def test_the_rooms_api_needs_a_token_with_the_admin_grant(server: Server) -> None:
    refusals = {
        None: 401,
        "not-a-jwt": 401,
        token(publish=True, subscribe=True): 403,
    }
    async with aiohttp.ClientSession() as http:
        for credential, status in refusals.items():
            headers = {"Authorization": f"Bearer {credential}"} if credential else {}
            async with http.get(server.url + "/api/rooms", headers=headers) as response:
                body = await response.json(content_type=None)
                assert response.status == status, (credential, body)
                assert "admin" in body["detail"] or status == 401, body
