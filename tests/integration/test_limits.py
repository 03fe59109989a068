"""Every limit answers with its typed error (WebSocket) or status (HTTP), closes persistent
offenders, and never slows anyone else down."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from .conftest import Peers
from .peers import Signaling
from .whip_clients import HttpClients, assert_problem


@pytest.fixture
async def clients(peers: Peers) -> AsyncIterator[HttpClients]:
    async with HttpClients(peers.server.url) as made:
        yield made


async def join_as_viewer(signaling: Signaling, room: str) -> dict[str, object]:
    await signaling.send({"type": "join", "roomId": room, "role": "viewer"})
    return await signaling.next_message("joined")


async def pong_time(signaling: Signaling, ping_id: str) -> float:
    started = time.monotonic()
    await signaling.send({"type": "ping", "id": ping_id})
    assert (await signaling.next_message("pong"))["id"] == ping_id
    return time.monotonic() - started


@pytest.mark.server_config(max_connections_per_address=2)
async def test_a_socket_past_the_connections_per_address_is_told_and_closed(
    peers: Peers,
) -> None:
    first, second = await peers.signaling(), await peers.signaling()
    third = await peers.signaling()

    error = await third.next_message("error")
    assert error["code"] == "too-many-connections", error
    assert await third.wait_closed() == 1008
    assert await pong_time(first, "a") < 1 and await pong_time(second, "b") < 1
    await second.close()
    # A place came free once the server has seen that close (bounded: 40 tries, 2 s).
    for _ in range(40):
        fourth = await peers.signaling()
        await fourth.send({"type": "ping", "id": "d"})
        reply = await fourth.changes.wait_until(
            lambda f=fourth: f.of_type("pong") or f.of_type("error"),  # type: ignore[misc]
            2,
            lambda f=fourth: f"a pong or an error; {f.describe()}",  # type: ignore[misc]
        )
        if reply[0]["type"] == "pong":
            break
        await fourth.wait_closed()
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the closed socket's place never came free")


@pytest.mark.server_config(message_rate=5)
async def test_a_flooding_client_is_rate_limited_then_closed_and_others_are_not_slowed(
    peers: Peers,
) -> None:
    calm = await peers.signaling()
    flood = await peers.signaling()

    for n in range(40):  # 2 s of allowance in a burst of 10, then 10 refusals close it
        await flood.send({"type": "ping", "id": n})
    assert await flood.wait_closed() == 1008
    codes = [m["code"] for m in flood.of_type("error")]
    assert codes[:9] == ["rate-limited"] * 9 and codes[-1] == "too-many-errors", codes
    assert len(flood.of_type("pong")) == 10, flood.describe()
    assert await pong_time(calm, "still-quick") < 1


@pytest.mark.server_config(join_rate=3)
async def test_joins_past_the_per_address_rate_are_refused_with_too_many_joins(
    peers: Peers,
) -> None:
    signaling = await peers.signaling()
    for _ in range(3):
        await join_as_viewer(signaling, "revolving")
        await signaling.send({"type": "leave"})
    await signaling.send({"type": "join", "roomId": "revolving", "role": "viewer"})
    error = await signaling.next_message("error")
    assert error["code"] == "too-many-joins" and error["ref"] == "join", error
    assert await pong_time(signaling, "open") < 1  # an error never closes the door


@pytest.mark.server_config(max_viewers_per_room=1)
async def test_a_full_room_refuses_viewers_on_every_protocol(
    peers: Peers, clients: HttpClients
) -> None:
    await clients.publishing("packed")
    first = await peers.viewer("packed")
    await first.join()
    late = await peers.signaling()

    await late.send({"type": "join", "roomId": "packed", "role": "viewer"})
    error = await late.next_message("error")
    assert error["code"] == "room-full", error
    reply = await clients.player("packed").post()
    assert_problem(reply, 503, "packed", "limit")
    assert float(reply.headers["Retry-After"]) > 0, reply.headers
    await first.watch(video=5, audio=5)  # the viewer inside plays on


@pytest.mark.server_config(max_rooms=1)
async def test_a_server_at_its_room_limit_refuses_a_new_room_only(peers: Peers) -> None:
    inside, outside, again = [await peers.signaling() for _ in range(3)]
    await join_as_viewer(inside, "first")

    await outside.send({"type": "join", "roomId": "second", "role": "viewer"})
    assert (await outside.next_message("error"))["code"] == "too-many-rooms"
    assert (await join_as_viewer(again, "first"))["viewers"] == 2
