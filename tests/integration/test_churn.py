"""Viewer churn gives everything back: a hundred viewers come and go, and the server holds no
more descriptors, tasks or peer connections than before they came.

Each cycle is a viewer's whole life: join, answer the server's offer with a real aiortc peer
connection, wait for the first RTP packet of the stream, leave, close. RSS is not asserted
here (it is noisy, and the test process holds both ends): benchmarks/churn.py measures it on
a `netra serve` of its own (docs/benchmarks.md, "Memory: churn, soak and the garbage
collector").
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from netra.media import aiortc_private
from netra.services import SERVICES

from .conftest import Peers, Server
from .peers import Signaling, WaitTimeout, peer_configuration

ROOM = "churn"
CYCLES = 100
CONCURRENCY = 4
WARMUP = CONCURRENCY  # cycles before the baseline: what the first viewers make once
CYCLE_TIMEOUT = 15.0
CHURN_TIMEOUT = 75.0  # the whole churn: ~30 s here on a busy machine
SETTLE_TIMEOUT = 10.0  # for the server to finish closing what the last viewers left
STEADY = 0.5  # seconds between two readings that must agree


@dataclass(frozen=True)
class Holdings:
    """What this process holds that churn must give back: server and clients share it."""

    descriptors: int
    tasks: int
    peer_connections: int  # RTCPeerConnection objects still reachable, open or not
    open_peer_connections: int
    viewers: int  # in the room, as the server counts them


def holdings(server: Server) -> Holdings:
    # A full collection first: garbage is the collector's business (and the benchmark's),
    # what this test looks for is what is still referenced.
    gc.collect()
    pcs = [o for o in gc.get_objects() if isinstance(o, RTCPeerConnection)]
    room = server.app[SERVICES].context.rooms.get(ROOM)
    return Holdings(
        descriptors=len(os.listdir("/proc/self/fd")),
        tasks=len(asyncio.all_tasks()),
        peer_connections=len(pcs),
        open_peer_connections=sum(1 for pc in pcs if pc.connectionState != "closed"),
        viewers=0 if room is None else len(room.viewers),
    )


async def settled(
    server: Server, done: Callable[[Holdings], bool], timeout: float, what: str
) -> Holdings:
    """Poll the holdings until `done` says so of two readings in a row, STEADY apart (closing
    ends tasks and sockets a moment after the peers: a reading in between would count them);
    fail with the last reading."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    previous, seen = None, holdings(server)
    while not (done(seen) and seen == previous):
        if loop.time() > deadline:
            raise AssertionError(f"not {what} within {timeout:g} s: {seen}")
        await asyncio.sleep(STEADY)
        previous, seen = seen, holdings(server)
    return seen


async def view_once(url: str) -> None:
    """One viewer's life, from join to first packet to leave."""
    signaling = await Signaling.connect(url)
    pc = RTCPeerConnection(peer_configuration())
    media = asyncio.Event()
    connected = asyncio.Event()

    @pc.on("connectionstatechange")
    def _state() -> None:
        if pc.connectionState in ("connected", "failed", "closed"):
            connected.set()

    try:
        await signaling.send({"type": "join", "roomId": ROOM, "role": "viewer"})
        await signaling.next_message("joined", CYCLE_TIMEOUT)
        offer = await signaling.next_message("offer", CYCLE_TIMEOUT)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        # The first SRTP datagram is enough: counted before aiortc would decrypt and decode.
        dtls = pc.getTransceivers()[0].receiver.transport
        aiortc_private.tap_datagrams(dtls, lambda _: media.set())
        await signaling.send({"type": "answer", "sdp": pc.localDescription.sdp})
        await signaling.send({"type": "candidate", "candidate": None})
        try:
            async with asyncio.timeout(CYCLE_TIMEOUT):
                await media.wait()
                await connected.wait()
        except TimeoutError:
            raise WaitTimeout(
                f"no media within {CYCLE_TIMEOUT:g} s (peer {pc.connectionState}); "
                f"{signaling.describe()}"
            ) from None
        assert pc.connectionState == "connected", pc.connectionState
        await signaling.send({"type": "leave"})
    finally:
        await pc.close()
        await signaling.close()


async def churn(url: str, cycles: int) -> None:
    """`cycles` viewer lives, CONCURRENCY at a time; the first failure stops the others."""
    remaining = cycles

    async def one_after_another() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await view_once(url)

    async with asyncio.timeout(CHURN_TIMEOUT), asyncio.TaskGroup() as group:
        for _ in range(CONCURRENCY):
            group.create_task(one_after_another())


# One address joins a hundred times here, where real viewers come from many.
@pytest.mark.server_config(join_rate=1_000_000)
async def test_a_hundred_viewers_come_and_go_and_the_server_holds_no_more_than_before(
    server: Server, peers: Peers
) -> None:
    publisher = await peers.publisher(ROOM)
    await publisher.join_and_publish()
    await churn(server.url, WARMUP)
    # The warm-up viewers gone, the publisher's two ends are all the peers left.
    baseline = await settled(
        server,
        lambda h: h.viewers == 0 and h.peer_connections == h.open_peer_connections == 2,
        SETTLE_TIMEOUT,
        "rid of the warm-up viewers",
    )

    await churn(server.url, CYCLES)

    def back(h: Holdings) -> bool:
        return (
            h.descriptors <= baseline.descriptors
            and h.tasks <= baseline.tasks
            and (h.peer_connections, h.open_peer_connections, h.viewers) == (2, 2, 0)
        )

    await settled(server, back, SETTLE_TIMEOUT, f"back to {baseline}")
    assert publisher.pc is not None and publisher.pc.connectionState == "connected"
