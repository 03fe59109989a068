"""What a user sees when signaling or media fails under a live stream, and how the pages come
back by themselves (docs/protocol.md, "Reconnecting"). Each page's /ws runs through a
SignalingTap (harness.py), which records every message and can drop a socket without the
server noticing, the way a dead Wi-Fi does."""

from __future__ import annotations

import re

import pytest

from .harness import (
    Message,
    NetraServer,
    Pages,
    SignalingTap,
    Tab,
    TappedSocket,
    assert_frames_advance,
    eventually,
    go_live,
    holds,
    new_room,
    states_seen,
    tapped_tab,
    wait_state,
    wait_video_size,
)

pytestmark = pytest.mark.browser


async def assert_never_in_error(tab: Tab) -> None:
    seen = await states_seen(tab)
    assert not [s for s in seen if s.startswith("error:")], seen


def refusals(tap: SignalingTap, code: str) -> int:
    return sum(len(s.errors(code)) for s in tap.sockets)


async def test_a_streamer_whose_socket_dies_unnoticed_resumes_at_once_and_viewers_play_on(
    netra: NetraServer, pages: Pages
) -> None:
    room = new_room()
    tap = SignalingTap()
    streamer = await tapped_tab(pages, pages.streamer_path(room), tap)
    await go_live(streamer)
    viewer_tap = SignalingTap()
    viewer = await tapped_tab(pages, f"/watch/{room}", viewer_tap)
    await wait_video_size(viewer, 1280, 720, timeout=10)

    # The streamer's network dies; the server still holds its socket (it answers pings).
    old = tap.sockets[0]
    joined = old.received("joined")[0]
    await tap.drop(old, server_notices=False)
    await wait_state(streamer, "reconnecting", timeout=5)

    # The re-join carries the key, so the server hands the session over at once (the old
    # socket gets `replaced`) instead of refusing a second streamer until its heartbeat
    # gives up; the page keeps its peer connection, and its viewers their stream.
    await wait_state(streamer, "live", timeout=10)
    rejoin = tap.sockets[-1].sent("join")
    assert [m.get("resumeKey") for m in rejoin] == [joined["resumeKey"]], rejoin
    resumed = tap.sockets[-1].received("joined")
    assert [(m.get("resumed"), m["clientId"]) for m in resumed] == [(True, joined["clientId"])]
    assert old.errors("replaced"), old.down[-3:]
    assert refusals(tap, "streamer-exists") == 0
    assert len(old.sent("offer")) == 1 and not tap.sockets[-1].sent("offer")
    await assert_never_in_error(streamer)

    await assert_frames_advance([viewer], "viewer")
    assert sum(len(s.received("offer")) for s in viewer_tap.sockets) == 1
    seen = await states_seen(viewer)
    assert not [s for s in seen if s.startswith(("ended:", "error:"))], seen


# The old session outlives its socket for the grace period; 2 s keeps the test short.
@pytest.mark.netra_args("--grace-period", "2")
async def test_a_reconnecting_streamer_refused_as_a_second_streamer_keeps_retrying(
    netra: NetraServer, pages: Pages
) -> None:
    """A server that does not know the key (say, it restarted meanwhile) refuses the re-join
    with streamer-exists while the old session holds the room; the page keeps retrying."""

    def unknown_key(_: TappedSocket, message: Message) -> Message:
        if message["type"] == "join" and "resumeKey" in message:
            return {**message, "resumeKey": "a-key-this-server-never-gave"}
        return message

    room = new_room()
    tap = SignalingTap(up=unknown_key)
    streamer = await tapped_tab(pages, pages.streamer_path(room), tap)
    await go_live(streamer)

    old = tap.sockets[0]
    await tap.drop(old, server_notices=False)
    await eventually(
        lambda: refusals(tap, "streamer-exists") >= 2, "two refused re-joins", timeout=10
    )
    await wait_state(streamer, "reconnecting", timeout=1)
    assert await streamer.page.evaluate("document.body.dataset.reason") == "streamer-exists"
    # With back-off (the second retry waits 0.25-0.5 s): the attempts are not a tight loop.
    opened = [s.opened_at for s in tap.sockets[1:]]
    gaps = [later - earlier for earlier, later in zip(opened, opened[1:], strict=False)]
    assert gaps and min(gaps) > 0.2, gaps

    # The server notices the old socket is dead; once the old session's grace period is
    # over, an attempt goes live.
    await tap.forget(old)
    await wait_state(streamer, "live", timeout=15)
    await assert_never_in_error(streamer)


async def test_a_page_replaced_by_a_newer_connection_of_its_client_stops_for_good(
    netra: NetraServer, pages: Pages
) -> None:
    """A second page carrying the first one's resume key (as a duplicated tab could) takes
    over: the first page says so, turns its camera off and does not fight back."""
    room = new_room()
    first_tap = SignalingTap()
    first = await tapped_tab(pages, pages.streamer_path(room), first_tap)
    await go_live(first)
    key = first_tap.sockets[0].received("joined")[0]["resumeKey"]

    def borrow_key(_: TappedSocket, message: Message) -> Message:
        return {**message, "resumeKey": key} if message["type"] == "join" else message

    second = await tapped_tab(pages, pages.streamer_path(room), SignalingTap(up=borrow_key))
    await wait_state(first, "error", timeout=10)
    assert await first.page.evaluate("document.body.dataset.reason") == "replaced"
    error = await first.page.text_content("[data-role=error]")
    assert error and re.search(r"replaced: .*another connection", error), error
    assert await first.page.evaluate(
        "document.querySelector('[data-role=local-video]').srcObject === null"
    ), "the replaced page still holds the camera"
    assert await first.page.is_enabled("[data-action=go-live]")

    await go_live(second)
    # No reconnect from the replaced page: it would take the room back from the new one.
    await holds(lambda: len(first_tap.sockets) == 1, "the replaced page staying offline", 3.0)
    assert await first.page.evaluate("document.body.dataset.state") == "error"
    assert await second.page.evaluate("document.body.dataset.state") == "live"


async def test_a_refused_offer_does_not_keep_the_streamer_offline_after_a_later_drop(
    netra: NetraServer, pages: Pages
) -> None:
    broken = {"offers": 0}

    def break_first_offer(_: TappedSocket, message: Message) -> Message:
        if message["type"] == "offer" and broken["offers"] == 0:
            broken["offers"] += 1
            return {**message, "sdp": "v=0\r\nthis is not an offer\r\n"}
        return message

    room = new_room()
    tap = SignalingTap(up=break_first_offer)
    streamer = await tapped_tab(pages, pages.streamer_path(room), tap)
    await wait_state(streamer, "waiting", timeout=10, joined=True)
    await streamer.page.click("[data-action=go-live]")
    await wait_state(streamer, "error", timeout=10)
    error = await streamer.page.text_content("[data-role=error]")
    assert error and error.startswith("negotiation-failed"), error

    # An error about one offer is not a reason to stay offline: after a drop the page
    # reconnects, publishes the same camera again and is live.
    await tap.drop(tap.sockets[0], server_notices=True)
    await wait_state(streamer, "reconnecting", timeout=5)
    await wait_state(streamer, "live", timeout=15)
    assert len(tap.sockets) == 2


def _without_candidates(sdp: str) -> str:
    return "".join(line for line in sdp.splitlines(True) if not line.startswith("a=candidate"))


@pytest.mark.netra_args("--connect-timeout", "3")
async def test_a_streamer_whose_peer_never_connects_publishes_again_and_goes_live(
    netra: NetraServer, pages: Pages
) -> None:
    """ICE cannot connect the first time: no candidate reaches either side. The server waits
    for the client's checks (encoders that send no candidates connect that way) until its
    connect timeout, then says stream-ended(streamer-failed). The page publishes again by
    itself."""
    first = {"failing": True}

    def hide_page_candidates(_: TappedSocket, message: Message) -> Message | None:
        if not first["failing"]:
            return message
        if message["type"] == "offer":
            return {**message, "sdp": _without_candidates(message["sdp"])}
        if message["type"] == "candidate" and message.get("candidate"):
            return None  # swallowed; end-of-candidates still goes
        return message

    def hide_server_candidates(_: TappedSocket, message: Message) -> Message:
        if message["type"] == "answer" and first["failing"]:
            return {**message, "sdp": _without_candidates(message["sdp"])}
        if message["type"] == "stream-ended":
            first["failing"] = False  # the second attempt may connect
        return message

    room = new_room()
    tap = SignalingTap(up=hide_page_candidates, down=hide_server_candidates)
    streamer = await tapped_tab(pages, pages.streamer_path(room), tap)
    await wait_state(streamer, "waiting", timeout=10, joined=True)
    await streamer.page.click("[data-action=go-live]")

    await wait_state(streamer, "reconnecting", timeout=15)
    ended = tap.sockets[0].received("stream-ended")
    assert [m["reason"] for m in ended] == ["streamer-failed"], ended
    await wait_state(streamer, "live", timeout=15)
    # On the same socket: a second offer, no new join.
    assert len(tap.sockets) == 1
    assert len(tap.sockets[0].sent("offer")) == 2
    await assert_never_in_error(streamer)
    viewer = await pages.open(f"/watch/{room}")
    await wait_video_size(viewer, 1280, 720, timeout=10)
