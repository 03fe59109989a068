"""WHEP playback at /whep/{room}: a player's offer is answered with the live stream, or told
to come back; its session reports the stream's news as server-sent events."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from .conftest import Peers
from .peers import token
from .whip_clients import SDP, SSE_REL, HttpClients, assert_problem, candidates_of

EVENTS = ["active", "inactive", "viewercount"]


@pytest.fixture
async def clients(peers: Peers) -> AsyncIterator[HttpClients]:
    async with HttpClients(peers.server.url) as made:
        yield made


async def waiting_viewer(peers: Peers, room: str) -> None:
    viewer = await peers.viewer(room)
    await viewer.join()


async def nobody(peers: Peers, room: str) -> None:
    pass


@pytest.mark.parametrize("before", [waiting_viewer, nobody], ids=["a viewer waits", "nobody"])
async def test_a_room_that_is_not_live_answers_409_with_retry_after(
    peers: Peers, clients: HttpClients, before: Callable[[Peers, str], Awaitable[None]]
) -> None:
    await before(peers, "quiet")

    reply = await clients.player("quiet").post()

    assert_problem(reply, 409, "not live")
    assert int(reply.headers["Retry-After"]) >= 1, reply.headers


async def test_an_offer_is_answered_201_with_a_sendonly_answer_a_session_path_and_events(
    clients: HttpClients,
) -> None:
    await clients.publishing("watched")
    player = clients.player("watched")

    reply = await player.start()

    assert reply.status == 201, reply.describe()
    assert reply.headers["Content-Type"].startswith(SDP), reply.describe()
    directions = [line for line in reply.text.splitlines() if line.startswith("a=send")]
    assert directions == ["a=sendonly", "a=sendonly"], reply.describe()
    assert candidates_of(reply.text), f"no candidate in the answer: {reply.describe()}"
    assert re.fullmatch(r"/whep/watched/[A-Za-z0-9_-]{22,}", reply.headers["Location"])
    assert re.fullmatch(r'"[^"]+"', reply.headers["ETag"]), reply.headers["ETag"]
    [events] = reply.links(SSE_REL)
    assert events.url == f"{reply.headers['Location']}/events", events
    assert set(events.params["events"].split(",")) == set(EVENTS), events
    await player.wait_frames()


@pytest.mark.parametrize("candidates", ["offer", "trickle"])
async def test_a_player_decodes_the_stream_whether_or_not_it_trickles(
    clients: HttpClients, candidates: str
) -> None:
    await clients.publishing("played", width=160, height=120)

    player = await clients.playing("played", candidates=candidates)

    assert {(f.width, f.height) for f in player.reception.video} == {(160, 120)}
    assert max(a.rms for a in player.reception.audio) > 0.1, "the tone is silent"


async def test_a_server_whose_viewers_need_a_token_wants_one_that_grants_subscribe(
    clients: HttpClients,
) -> None:
    guarded = await clients.serve(viewers_need_token=True)
    await guarded.publishing("members")

    anonymous = await guarded.player("members").post()
    publisher_only = await guarded.player("members", token=token("members", publish=True)).post()
    member = await guarded.playing("members", token=token("members", subscribe=True))

    assert_problem(anonymous, 401, "no token")
    assert_problem(publisher_only, 403, "subscribe")
    assert member.reply is not None and member.reply.status == 201


async def test_events_say_active_then_each_viewer_count_then_inactive_when_the_stream_ends(
    peers: Peers, clients: HttpClients
) -> None:
    publisher = await clients.publishing("news")
    player = await clients.playing("news")

    events = await player.open_events(EVENTS)

    assert events.response.headers["Content-Type"].startswith("text/event-stream")
    await events.next("active")
    await events.next("viewercount", lambda data: data["viewercount"] == 1)
    await waiting_viewer(peers, "news")
    await events.next("viewercount", lambda data: data["viewercount"] == 2)
    await publisher.delete()
    await events.next("inactive")
    await events.wait_ended()  # the session ends with the stream


async def test_asking_for_an_unknown_event_is_400_naming_it(clients: HttpClients) -> None:
    await clients.publishing("picky")
    player = await clients.playing("picky")

    reply = await player.ask_for_events(["active", "layers"])

    assert_problem(reply, 400, "layers")


async def test_delete_ends_the_session_and_the_room_counts_one_viewer_fewer(
    clients: HttpClients,
) -> None:
    await clients.publishing("leaving")
    staying = await clients.playing("leaving")
    leaving = await clients.playing("leaving")
    before = await clients.room("leaving")

    reply = await leaving.delete()

    assert reply.status == 200, reply.describe()
    after = await clients.room("leaving")
    assert before is not None and after is not None
    assert (before["viewers"], after["viewers"]) == (2, 1), (before, after)
    await staying.reception.wait_more_frames(video=5)
    assert_problem(await leaving.delete(), 404, "no WHEP session")


async def test_a_player_that_cannot_receive_the_streams_codec_is_told_which_it_is(
    clients: HttpClients,
) -> None:
    await clients.publishing("vp8", video_codec="video/VP8")

    reply = await clients.player("vp8", video_codecs=["video/H264"]).post()

    assert_problem(reply, 422, "VP8")
