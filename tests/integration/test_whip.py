"""WHIP ingest (RFC 9725) at /whip/{room}: what an encoder gets back, how its session is
patched and ended, and every refusal, with real aiortc publishers over HTTP."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from netra.auth import mint
from netra.config import IceServer
from netra.http.resource import RESOURCES

from .conftest import Peers, Server
from .peers import TEST_SECRET, token
from .whip_clients import (
    SDP,
    SDPFRAG,
    HttpClients,
    WhipPublisher,
    assert_problem,
    candidates_of,
    header_items,
    ice_credentials,
    media_sections,
    offer_sdp,
    sdpfrag,
)

DIRECTIONS = ("a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive")


@pytest.fixture
async def clients(peers: Peers) -> AsyncIterator[HttpClients]:
    async with HttpClients(peers.server.url) as made:
        yield made


def session_id(publisher: WhipPublisher) -> str:
    assert publisher.location is not None
    return publisher.location.rsplit("/", 1)[1]


# --- the 201 ------------------------------------------------------------------------------------


async def test_an_offer_is_answered_201_with_a_recvonly_answer_a_session_path_and_a_strong_etag(
    clients: HttpClients,
) -> None:
    publisher = clients.publisher("answered")

    reply = await publisher.start()

    assert reply.status == 201, reply.describe()
    assert reply.headers["Content-Type"].startswith(SDP), reply.describe()
    directions = [line for line in reply.text.splitlines() if line in DIRECTIONS]
    assert directions == ["a=recvonly", "a=recvonly"], reply.describe()
    candidates = candidates_of(reply.text)
    assert candidates, f"no candidate in the answer: {reply.describe()}"
    assert " 127.0.0.1 " in candidates[0] and candidates[0].endswith("typ host"), candidates
    # An absolute path, no query: the id is the capability, never a token in the URL.
    location = reply.headers["Location"]
    assert re.fullmatch(r"/whip/answered/[A-Za-z0-9_-]+", location), location
    assert len(session_id(publisher)) * 6 >= 128, f"{location}: under 128 random bits"
    assert re.fullmatch(r'"[^"]+"', reply.headers["ETag"]), reply.headers["ETag"]  # not W/
    assert reply.headers["Access-Control-Allow-Origin"] == "*"
    assert {"location", "etag", "link"} <= header_items(reply, "Access-Control-Expose-Headers")
    await publisher.wait_connected()


async def test_two_sessions_get_different_ids(clients: HttpClients) -> None:
    first = await clients.publishing("one")
    second = await clients.publishing("two")

    assert session_id(first) != session_id(second)


TURN = "turn:turn.invalid:3478"


async def test_the_201_links_every_configured_stun_and_turn_server(clients: HttpClients) -> None:
    # .invalid names (RFC 6761) fail to resolve at once, so gathering does not wait for them.
    server = await clients.serve(
        ice_servers=[
            IceServer(urls=("stun:stun.invalid:3478",)),
            IceServer(
                urls=(f"{TURN}?transport=udp", f"{TURN}?transport=tcp"),
                username="alice",
                credential="s3cret",
            ),
        ]
    )

    publisher = server.publisher("linked")

    reply = await publisher.start()

    links = reply.links("ice-server")
    assert [link.url for link in links] == [
        "stun:stun.invalid:3478",
        f"{TURN}?transport=udp",
        f"{TURN}?transport=tcp",
    ], reply.headers.getall("Link", [])
    assert links[0].params == {"rel": "ice-server"}
    turn = {"rel": "ice-server", "username": "alice", "credential": "s3cret",
            "credential-type": "password"}  # fmt: skip
    assert links[1].params == links[2].params == turn
    await publisher.wait_connected()


# --- media --------------------------------------------------------------------------------------


async def test_a_whip_stream_plays_to_a_websocket_viewer_and_a_whep_player_at_once(
    peers: Peers, clients: HttpClients
) -> None:
    await clients.publishing("mixed")
    viewer = await peers.viewer("mixed")
    await viewer.join()

    reception = await viewer.watch(video=10, audio=10)
    player = await clients.playing("mixed")

    for played in (reception, player.reception):
        assert {(f.width, f.height) for f in played.video} == {(320, 240)}
    room = await clients.room("mixed")
    assert room is not None
    vias = sorted((p["role"], p["via"]) for p in room["participants"])
    assert vias == [("streamer", "whip"), ("viewer", "whep"), ("viewer", "ws")], room
    assert room["live"] and room["viewers"] == 2, room


async def test_a_publisher_that_trickles_its_candidates_connects_and_plays(
    clients: HttpClients,
) -> None:
    publisher = clients.publisher("trickled", candidates="trickle")

    await publisher.start()  # POST with no candidate, then PATCH them, each answered 204

    assert not candidates_of(await publisher.offer_as_sent())
    await publisher.wait_connected()
    await clients.playing("trickled")


async def test_a_publisher_that_sends_no_candidates_at_all_connects_through_its_checks(
    clients: HttpClients,
) -> None:
    """OBS 30.2+ and FFmpeg: no candidate in the offer, `a=end-of-candidates`, no PATCH. The
    server can only learn the publisher's address from its checks (a peer-reflexive
    candidate). Needs aioice not to give up at once when it has no candidate pair."""
    publisher = clients.publisher("silent", candidates="none")

    await publisher.start()

    offer = await publisher.offer_as_sent()
    assert not candidates_of(offer) and "a=end-of-candidates" in offer
    await publisher.wait_connected()
    await clients.playing("silent")


# --- PATCH: trickle ICE -------------------------------------------------------------------------


async def test_a_trickle_patch_is_answered_204_with_no_body_and_no_etag(
    clients: HttpClients,
) -> None:
    publisher = clients.publisher("patched", candidates="trickle")
    await publisher.post()

    reply = await publisher.patch(publisher.fragment(), headers={"If-Match": publisher.etag or ""})

    assert reply.status == 204, reply.describe()
    assert reply.text == "" and "ETag" not in reply.headers, reply.describe()
    await publisher.wait_connected()


async def test_a_candidate_patched_under_the_second_mid_reaches_the_bundled_transport(
    server: Server, clients: HttpClients
) -> None:
    """aiortc drops a candidate tagged with a bundled section's mid; the server must hand it
    to the transport the bundle shares (here the publisher's checks would hide its loss, so
    the server's own ICE transport is asked)."""
    publisher = clients.publisher("second-mid", candidates="trickle")
    await publisher.post()
    offer = await publisher.make_offer()
    second = media_sections(offer)[1]

    fragment = sdpfrag(*ice_credentials(offer), second, candidates_of(offer))
    reply = await publisher.patch(fragment, headers={"If-Match": publisher.etag or ""})

    assert reply.status == 204, reply.describe()
    resource = server.app[RESOURCES].find("whip", "second-mid", session_id(publisher))
    assert resource.agent.peer is not None
    transport = resource.agent.peer.pc.getTransceivers()[0].receiver.transport.transport
    remote = [(c.type, c.port) for c in transport.getRemoteCandidates()]
    own_port = int(candidates_of(offer)[0].split()[5])
    assert ("host", own_port) in remote, f"the server knows {remote}, not port {own_port}"
    await publisher.wait_connected()


def if_match_cases(etag: str) -> dict[str, dict[str, str]]:
    return {
        "no If-Match": {},
        "If-Match: <etag>": {"If-Match": etag},
        "If-Match: *": {"If-Match": "*"},
        "ETag: <etag> in its place": {"ETag": etag},
        "a stale If-Match": {"If-Match": '"0123456789abcdef"'},
    }


async def patch_statuses(publisher: WhipPublisher) -> dict[str, int]:
    """What each way of naming the session's ETag gets, one PATCH each."""
    assert publisher.etag is not None
    statuses = {}
    for case, headers in if_match_cases(publisher.etag).items():
        reply = await publisher.patch(publisher.fragment(), headers=headers)
        statuses[case] = reply.status
    return statuses


async def test_by_default_a_patch_may_omit_if_match_but_never_send_a_stale_one(
    clients: HttpClients,
) -> None:
    publisher = await clients.publishing("lenient")

    statuses = await patch_statuses(publisher)

    assert statuses == {"no If-Match": 204, "If-Match: <etag>": 204, "If-Match: *": 204,
                        "ETag: <etag> in its place": 204, "a stale If-Match": 412}  # fmt: skip


async def test_a_strict_server_wants_if_match_with_the_etag_on_every_patch(
    clients: HttpClients,
) -> None:
    strict = await clients.serve(whip_strict=True)
    publisher = await strict.publishing("strict")

    statuses = await patch_statuses(publisher)

    assert statuses == {"no If-Match": 428, "If-Match: <etag>": 204, "If-Match: *": 204,
                        "ETag: <etag> in its place": 428, "a stale If-Match": 412}  # fmt: skip


async def test_an_ice_restart_is_refused_with_422_saying_it_is_not_supported(
    clients: HttpClients,
) -> None:
    publisher = await clients.publishing("restart")

    reply = await publisher.patch(publisher.fragment(ice_restart=True), headers={"If-Match": "*"})

    assert_problem(reply, 422, "ICE restart is not supported")
    await publisher.wait_connected()  # the old ICE session carries on


async def test_a_patch_that_is_not_an_sdp_fragment_is_refused_with_415(
    clients: HttpClients,
) -> None:
    publisher = await clients.publishing("fragment-type")

    reply = await publisher.patch(publisher.fragment(), content_type=SDP)

    assert_problem(reply, 415, SDPFRAG)


# --- DELETE, GET, OPTIONS -----------------------------------------------------------------------


async def test_delete_ends_the_stream_as_a_streamer_leaving_does_and_the_session_is_gone(
    peers: Peers, clients: HttpClients
) -> None:
    publisher = await clients.publishing("deleted")
    viewer = await peers.viewer("deleted")
    await viewer.join()
    await viewer.watch(video=5, audio=5)

    reply = await publisher.delete()

    assert reply.status == 200, reply.describe()
    ended = await viewer.signaling.next_message("stream-ended")
    assert ended["reason"] == "streamer-left", ended
    await viewer.reception.wait_closed_by_server()
    assert_problem(await publisher.delete(), 404, "no WHIP session")
    assert_problem(await publisher.patch(publisher.fragment()), 404, "no WHIP session")


async def test_a_client_that_closes_its_peer_connection_before_its_delete_still_gets_200(
    peers: Peers, clients: HttpClients
) -> None:
    """whip-whep's WHIPClient.stop() closes first: by its DELETE the server has seen the
    connection close and ended the session itself."""
    publisher = await clients.publishing("closed-first")
    viewer = await peers.viewer("closed-first")
    await viewer.join()
    await viewer.watch(video=5, audio=5)

    await publisher.pc.close()
    ended = await viewer.signaling.next_message("stream-ended")

    assert ended["reason"] == "streamer-failed", ended
    reply = await publisher.delete()
    assert reply.status == 200, reply.describe()
    assert_problem(await publisher.patch(publisher.fragment()), 404, "no WHIP session")


async def test_get_on_a_session_is_answered_2xx(clients: HttpClients) -> None:
    publisher = await clients.publishing("got")

    reply = await publisher.get()

    assert 200 <= reply.status < 300, reply.describe()


async def test_options_on_the_endpoint_answers_a_cors_preflight_and_names_what_to_post(
    clients: HttpClients,
) -> None:
    reply = await clients.request(
        "OPTIONS",
        "/whip/preflight",
        headers={"Origin": "https://encoder.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization, content-type"},
    )  # fmt: skip

    assert reply.status == 200, reply.describe()
    assert reply.headers.get("Accept-Post") == SDP
    assert reply.headers.get("Access-Control-Allow-Origin") == "*"
    assert {"post", "patch", "delete"} <= header_items(reply, "Access-Control-Allow-Methods")
    allowed = header_items(reply, "Access-Control-Allow-Headers")
    assert {"authorization", "if-match", "content-type"} <= allowed
    assert {"location", "etag", "link"} <= header_items(reply, "Access-Control-Expose-Headers")


# --- refusals -----------------------------------------------------------------------------------


async def vp9_offer() -> str:
    """Video in VP9 alone. aiortc has no VP9, so this is its VP8-only offer, renamed."""
    offer = await offer_sdp(("video", "sendonly"), video_codecs=["video/VP8"])
    return offer.replace("VP8/90000", "VP9/90000")


UNUSABLE_OFFERS: dict[str, tuple[Callable[[], Awaitable[str]], list[str]]] = {
    "a recvonly offer": (
        lambda: offer_sdp(("audio", "recvonly"), ("video", "recvonly")),
        ["sendonly"],
    ),
    "two video tracks": (
        lambda: offer_sdp(("video", "sendonly"), ("video", "sendonly")),
        ["one audio and/or one video"],
    ),
    "video in VP9 only": (vp9_offer, ["VP9", "VP8"]),
    # aiortc could receive PCMU, but Netra forwards only what its forwarder knows.
    "audio in PCMU only": (
        lambda: offer_sdp(("audio", "sendonly"), audio_codecs=["audio/PCMU"]),
        ["PCMU", "opus"],
    ),
}


@pytest.mark.parametrize("case", UNUSABLE_OFFERS)
async def test_an_offer_the_server_cannot_take_is_refused_with_422_saying_why(
    clients: HttpClients, case: str
) -> None:
    make_offer, words = UNUSABLE_OFFERS[case]
    offer = await make_offer()

    reply = await clients.request(
        "POST", "/whip/unusable", body=offer, content_type=SDP, token=token(publish=True)
    )

    assert_problem(reply, 422, *words)


MALFORMED_POSTS = {
    "a text/plain body": ("text/plain", "v=0\r\n", 415, ["application/sdp"]),
    "a body that is not SDP": (SDP, "<html>hello</html>", 400, ["v=0"]),
}


@pytest.mark.parametrize("case", MALFORMED_POSTS)
async def test_a_post_that_is_not_an_sdp_offer_is_refused(clients: HttpClients, case: str) -> None:
    content_type, body, status, words = MALFORMED_POSTS[case]

    reply = await clients.request(
        "POST", "/whip/malformed", body=body, content_type=content_type, token=token(publish=True)
    )

    assert_problem(reply, status, *words)


OTHER_SECRET = "another-secret-" + "y" * 40
REFUSED_TOKENS: dict[str, tuple[str | None, int, list[str]]] = {
    "no token": (None, 401, ["no token"]),
    "an expired token": (
        mint(TEST_SECRET, room="*", publish=True, ttl=60, now=time.time() - 3600),
        401,
        ["expired"],
    ),
    "a token signed with another secret": (
        mint(OTHER_SECRET, room="*", publish=True),
        401,
        ["signature"],
    ),
    "a malformed token": ("not-a.jwt", 401, ["malformed"]),
    "a token for another room": (token("elsewhere", publish=True), 403, ["elsewhere"]),
    "a subscribe-only token": (token("guarded", subscribe=True), 403, ["publish"]),
}


@pytest.mark.parametrize("case", REFUSED_TOKENS)
async def test_a_post_without_a_publish_token_for_the_room_is_refused(
    clients: HttpClients, case: str
) -> None:
    bearer, status, words = REFUSED_TOKENS[case]
    publisher = clients.publisher("guarded", token=bearer)

    reply = await publisher.post()

    assert_problem(reply, status, *words)
    if status == 401:
        assert reply.headers.get("WWW-Authenticate", "").startswith("Bearer"), reply.headers


@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
async def test_an_unknown_session_is_404(clients: HttpClients, method: str) -> None:
    reply = await clients.request(
        method, "/whip/nobody/" + "A" * 32, body="a=end-of-candidates\r\n", content_type=SDPFRAG
    )

    assert_problem(reply, 404, "no WHIP session")


async def test_a_room_with_a_websocket_streamer_refuses_a_whip_publisher_with_409(
    peers: Peers, clients: HttpClients
) -> None:
    streamer = await peers.publisher("occupied")
    await streamer.join_and_publish()

    reply = await clients.publisher("occupied").post()

    assert_problem(reply, 409, "already has a streamer")


async def test_a_room_with_a_whip_session_refuses_a_second_one_with_409(
    clients: HttpClients,
) -> None:
    await clients.publishing("occupied")

    reply = await clients.publisher("occupied").post()

    assert_problem(reply, 409, "already has a streamer")


async def test_a_server_at_its_session_limit_answers_503_with_retry_after(
    clients: HttpClients,
) -> None:
    full = await clients.serve(max_sessions=1)
    await full.publishing("first")

    reply = await full.publisher("second").post()

    assert_problem(reply, 503, "limit")
    assert int(reply.headers["Retry-After"]) >= 1, reply.headers


async def test_too_many_requests_are_answered_429_with_retry_after(clients: HttpClients) -> None:
    slow = await clients.serve(http_rate=0.1, http_burst=1)
    await slow.request("POST", "/whip/busy", body="v=0\r\n", content_type="text/plain")

    reply = await slow.publisher("busy").post()

    assert_problem(reply, 429, "slow down")
    assert int(reply.headers["Retry-After"]) >= 1, reply.headers
