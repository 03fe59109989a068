"""The pages on a server of two workers (`netra serve --workers 2 --redis URL`): a viewer page
whose worker is killed comes back by itself, on the other worker, and plays on; the streamer
page on that other worker never notices; a viewer page whose socket drops gets its session back
whichever worker its reconnect reaches."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from netra.bench.redis_server import RedisServer
from netra.bench.target import cluster_nodes

from .harness import (
    OUTPUT,
    NetraServer,
    Pages,
    SignalingTap,
    Tab,
    assert_frames_advance,
    eventually,
    go_live,
    new_room,
    states_seen,
    tapped_tab,
    wait_state,
    wait_video_size,
)

pytestmark = pytest.mark.browser

ATTEMPTS = 12  # viewer pages opened to land one on the other worker: all miss at 2^-12
STOP_SECONDS = 15.0  # the supervisor waits up to 7 s for its workers


@pytest.fixture
async def netra(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[NetraServer]:
    """This module's server: two workers on one port, and the redis-server they share."""
    redis = RedisServer(tmp_path)
    await redis.start()
    server = NetraServer(
        log_path=OUTPUT / "server-workers.log",
        extra_args=("--workers", "2", "--redis", redis.url, "--node-id", "e2e"),
    )
    server.log_path.unlink(missing_ok=True)
    request.node.netra_server = server
    try:
        server.start()
        yield server
    finally:
        if server.process is not None and server.process.poll() is None:
            server.process.terminate()  # by its PID; it stops its workers
            try:
                server.process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                pass  # server.stop() kills it
        server.stop()
        redis.stop()


async def joined_node(tap: SignalingTap) -> str:
    await eventually(lambda: bool(tap.sockets and tap.sockets[-1].received("joined")),
                     "the page to join", timeout=10)  # fmt: skip
    return str(tap.sockets[-1].received("joined")[0]["node"])


async def viewer_on_other_worker(
    pages: Pages, room: str, origin: str
) -> tuple[Tab, SignalingTap, str]:
    """A viewer page whose connection the kernel gave to the worker that is not `origin`."""
    for _ in range(ATTEMPTS):
        tap = SignalingTap()
        viewer = await tapped_tab(pages, f"/watch/{room}", tap)
        node = await joined_node(tap)
        if node != origin:
            return viewer, tap, node
        await viewer.close()
    raise AssertionError(f"no viewer page reached a worker other than {origin}")


async def test_a_viewer_whose_worker_is_killed_plays_again_on_the_other_worker_by_itself(
    netra: NetraServer, pages: Pages
) -> None:
    pids = await cluster_nodes(netra.base_url, netra.token("*", "admin"), 2)
    room = new_room()
    streamer_tap = SignalingTap()
    streamer = await tapped_tab(pages, pages.streamer_path(room), streamer_tap)
    await go_live(streamer)
    origin = await joined_node(streamer_tap)
    viewer, viewer_tap, edge = await viewer_on_other_worker(pages, room, origin)
    await wait_video_size(viewer, 1280, 720, timeout=15)

    os.kill(pids[edge], signal.SIGKILL)
    killed = time.monotonic()
    await wait_state(viewer, "reconnecting", timeout=5)
    await wait_state(viewer, "live", timeout=10)
    await assert_frames_advance([viewer], "viewer")
    back = time.monotonic() - killed
    assert back < 8.0, f"playing again {back:.1f} s after its worker died"
    assert await joined_node(viewer_tap) == origin  # the page's new socket: the live worker
    # The streamer's worker lived on: its page never left "live".
    seen = await states_seen(streamer)
    assert not [s for s in seen if s.startswith(("reconnecting", "ended", "error"))], seen


DROPS = 8  # dropped sockets: every reconnect reaches the session's own worker at 2^-8


async def test_a_viewer_page_whose_socket_drops_resumes_on_whichever_worker_takes_it_back(
    netra: NetraServer, pages: Pages
) -> None:
    """The kernel hands each new connection to either worker: a reconnect that reaches the
    worker not holding the page's session is piped to the one that does."""
    room = new_room()
    streamer = await tapped_tab(pages, pages.streamer_path(room), SignalingTap())
    await go_live(streamer)
    tap = SignalingTap()
    viewer = await tapped_tab(pages, f"/watch/{room}", tap)
    home = await joined_node(tap)
    await wait_video_size(viewer, 1280, 720, timeout=15)

    for _ in range(DROPS):
        sockets = len(tap.sockets)
        await tap.drop(tap.sockets[-1], server_notices=True)
        await eventually(
            lambda n=sockets: len(tap.sockets) > n and bool(tap.sockets[-1].received("joined")),
            "the page to join again",
            timeout=10,
        )
        joined = tap.sockets[-1].received("joined")[0]
        assert joined["resumed"] is True and joined["node"] == home, joined
    # One peer connection all along: no reconnect cost the page a renegotiation.
    assert sum(len(s.received("offer")) for s in tap.sockets) == 1
    await assert_frames_advance([viewer], "viewer")
