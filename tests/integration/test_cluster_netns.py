"""Three machines on this one (netra.bench.cluster): an origin and two edges, each `netra
serve` in a network namespace of its own with its own address, Redis in another, and 10 ms
each way with 1 % loss on each origin-edge link. The viewers are bots that join another node
when theirs goes away, as the pages do behind a load balancer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from netra.bench.clip import load_clip
from netra.bench.cluster import Audience, Cluster, ClusterOptions, RoamingViewer
from netra.bench.publisher import SyntheticPublisher

from .peers import wait_for

PLAYING_PACKETS = 1000  # video packets a viewer receives before it is judged (~7 s of 720p)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    cluster = Cluster(tmp_path, ClusterOptions(edges=2, delay_ms=10.0, loss=0.01))
    try:
        await cluster.start()
        yield cluster
    finally:
        await cluster.close()


@pytest.fixture
async def publisher(cluster: Cluster) -> AsyncIterator[SyntheticPublisher]:
    publisher = SyntheticPublisher(load_clip())
    try:
        await publisher.start(cluster.origin)
        yield publisher
    finally:
        await publisher.close()


def received(viewer: RoamingViewer, packets: int) -> bool:
    video = viewer.bot.video
    return video is not None and video.keyframe_at is not None and video.packets >= packets


async def all_set(events: list[asyncio.Event], timeout: float) -> None:
    await asyncio.wait_for(asyncio.gather(*(event.wait() for event in events)), timeout)


async def test_a_stream_published_on_the_origin_plays_whole_on_both_edges_over_lossy_links(
    cluster: Cluster, publisher: SyntheticPublisher
) -> None:
    viewers = [RoamingViewer(i, cluster.nodes, home=1 + i % 2) for i in range(4)]
    async with Audience(viewers):
        await wait_for(
            lambda: all(received(v, PLAYING_PACKETS) for v in viewers),
            f"every edge viewer received {PLAYING_PACKETS} video packets",
            timeout=30,
        )
        missing = {
            (viewer.index, "video" if s.video else "audio"): s.expected - s.packets
            for viewer in viewers
            for s in viewer.bot.streams.values()
        }
        for link in cluster.links:  # the links did lose the stream's packets on the way
            counts = await link.counts()
            assert counts["a_to_b"]["dropped"] > 0, counts
        # The origin's only subscribers are the two pulls (audio and video each): their NACKs
        # told it the links lose packets, so it sent them two copies of each.
        pulls = await cluster.origin.subscriptions()
        assert len(pulls) == 4 and all(s["copies_raised"] >= 1 for s in pulls), pulls
    # Without repair at each hop a viewer would miss ~1 % of its video (~10 packets, and each
    # loss a resync to the next keyframe) and of its audio (~3.5); an edge NACKs the origin
    # for both, and its viewers get the repaired packets. A gap still being repaired may remain.
    assert all(count <= (3 if kind == "video" else 1) for (_, kind), count in missing.items()), (
        missing
    )
    assert all(viewer.lost_at is None for viewer in viewers)


async def test_the_viewers_of_an_edge_killed_play_again_on_another_node_within_5_s(
    cluster: Cluster, publisher: SyntheticPublisher
) -> None:
    on_first_edge = [RoamingViewer(i, cluster.nodes, home=1) for i in range(3)]
    on_second_edge = RoamingViewer(3, cluster.nodes, home=2)
    async with Audience([*on_first_edge, on_second_edge]):
        await all_set([v.bot.keyframed for v in [*on_first_edge, on_second_edge]], timeout=20)
        cluster.kill(cluster.edges[0])  # kill -9
        await all_set([v.back for v in on_first_edge], timeout=15)
        recovery = [v.recovery_seconds for v in on_first_edge]
        assert all(r is not None and r < 5.0 for r in recovery), recovery
        assert all(v.node != 1 for v in on_first_edge)
        assert on_second_edge.lost_at is None and on_second_edge.node == 2
