"""Two nodes of a cluster on one Redis: a stream published on one plays on the other.

Both nodes run in this process (as the `server` fixture's does), each with its own port and
node name, sharing a real redis-server; their viewers and streamers are real aiortc peers.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiortc.rtp import is_rtcp
from redis import asyncio as aioredis

from netra.app import create_app
from netra.bench.redis_server import RedisServer
from netra.bench.target import free_port
from netra.cluster import redis_directory
from netra.config import Config
from netra.media import aiortc_private
from netra.media.redundancy import WINDOW_PACKETS
from netra.services import SERVICES

from .conftest import Peers, Server
from .peers import TEST_SECRET, Publisher, Signaling, Viewer, token, wait_for
from .whip_clients import WhipPublisher, request


@dataclass
class Node:
    name: str
    server: Server
    peers: Peers
    runner: web.AppRunner

    def room(self, room_id: str) -> Any:
        return self.server.app[SERVICES].context.rooms.get(room_id)

    @property
    def directory(self) -> Any:
        return self.server.app[SERVICES].context.directory

    async def stop_listening(self) -> None:
        """No new connection reaches it (a probe of it fails), as if it were killed."""
        for site in list(self.runner.sites):
            await site.stop()

    def stop_ticking(self) -> None:
        """Its claims are renewed no more, as if it were killed (or stalled). The flag as well
        as the cancel: Python 3.11's wait_for can swallow a cancellation."""
        self.directory._closing = True
        self.directory._ticker.cancel()

    def tick_again(self) -> None:
        self.directory._closing = False
        self.directory._ticker = asyncio.create_task(self.directory._tick_forever())


async def stopped_ticking(cluster: Cluster, node: Node) -> bool:
    """Whether Redis holds the node's tick for stale (redis_directory.STALE_MS)."""
    client = aioredis.from_url(cluster.redis.url)
    try:
        left = await client.pttl(f"{redis_directory.PREFIX}node:{node.directory.node.id}")
    finally:
        await client.aclose()
    return bool(left < redis_directory.NODE_TTL_MS - redis_directory.STALE_MS)


@dataclass
class Cluster:
    redis: RedisServer
    nodes: list[Node]


@pytest.fixture
async def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    marker = request.node.get_closest_marker("server_config")
    redis = RedisServer(tmp_path)
    await redis.start()
    runners: list[web.AppRunner] = []
    nodes = []
    try:
        for name in ("origin", "edge"):
            port = free_port()
            config = Config(
                host="127.0.0.1",
                port=port,
                candidate_addresses=("127.0.0.1",),
                auth_secret=TEST_SECRET,
                redis=redis.url,
                node_id=name,
                **(marker.kwargs if marker else {}),
            )
            app = create_app(config)
            runner = web.AppRunner(app)
            await runner.setup()
            runners.append(runner)
            await web.TCPSite(runner, "127.0.0.1", port).start()
            server = Server(url=f"http://127.0.0.1:{port}", app=app)
            nodes.append(Node(name, server, Peers(server), runner))
        yield Cluster(redis, nodes)
    finally:
        for node in nodes:
            await node.peers.close()
        for runner in reversed(runners):
            await runner.cleanup()
        redis.stop()


async def streaming_to_the_edge(cluster: Cluster) -> tuple[Publisher, Viewer]:
    """A stream published on the origin, and a viewer of it on the edge, playing."""
    origin, edge = cluster.nodes
    publisher = await origin.peers.publisher("show")
    await publisher.join_and_publish()
    viewer = await edge.peers.viewer("show")
    await viewer.join()
    await viewer.watch(video=5, audio=5)
    return publisher, viewer


async def watching_on_the_edge(cluster: Cluster) -> Viewer:
    return (await streaming_to_the_edge(cluster))[1]


async def second_streamer_refused(node: Node) -> dict[str, Any]:
    """A second streamer joins the room on `node`: the error it is refused with."""
    client = await node.peers.signaling()
    await client.send({"type": "join", "roomId": "show", "role": "streamer",
                       "token": token("show", publish=True)})  # fmt: skip
    return await client.next_message("error")


async def comes_back_on_the_edge(cluster: Cluster, viewer: Viewer) -> None:
    """The streamer publishes through the edge, and the edge's viewer plays it."""
    _, edge = cluster.nodes
    comeback = await edge.peers.publisher("show", colour=(200, 40, 40))
    await comeback.join_and_publish()
    await viewer.signaling.next_message("stream-started", timeout=5)
    await viewer.watch(video=5, audio=5)
    assert edge.room("show").streamer.via == "ws"


async def test_a_stream_published_on_one_node_plays_to_a_viewer_of_another(
    cluster: Cluster,
) -> None:
    origin, edge = cluster.nodes
    publisher = await origin.peers.publisher("show", width=320, height=240)
    await publisher.join_and_publish()
    viewer = await edge.peers.viewer("show")
    await viewer.join()
    await viewer.signaling.next_message("stream-started", timeout=5)
    reception = await viewer.watch(video=10, audio=10)
    assert {(f.width, f.height) for f in reception.video} == {(320, 240)}
    # The edge pulls as a relay: the origin's room counts no viewer, the edge's counts one.
    assert origin.room("show").audience == 0
    assert [p.via for p in origin.room("show").viewers.values()] == ["relay"]
    assert edge.room("show").audience == 1
    assert edge.room("show").streamer.via == "relay"
    # The streamer is told of the edge's viewer: the count is the cluster's.
    while (await publisher.signaling.next_message("viewers"))["count"] != 1:
        pass


async def test_a_second_streamer_on_another_node_is_told_the_room_has_one(
    cluster: Cluster,
) -> None:
    origin, edge = cluster.nodes
    await (await origin.peers.publisher("show")).join_and_publish()
    error = await second_streamer_refused(edge)
    assert error["code"] == "streamer-exists", error
    assert "origin" in error["message"]


async def test_when_the_origins_streamer_leaves_edge_viewers_hear_the_end_and_play_again_from_a_new_origin(  # noqa: E501
    cluster: Cluster,
) -> None:
    publisher, viewer = await streaming_to_the_edge(cluster)
    await publisher.leave()
    ended = await viewer.signaling.next_message("stream-ended", timeout=5)
    assert ended["reason"] in ("streamer-left", "origin-lost"), ended
    # The streamer comes back through the other node: that node is the origin now.
    await comes_back_on_the_edge(cluster, viewer)


async def test_a_streamer_publishes_again_on_another_node_once_its_origin_stopped(
    cluster: Cluster,
) -> None:
    origin, _ = cluster.nodes
    streamer, viewer = await streaming_to_the_edge(cluster)

    # As a kill -9: its claim would hold the room until it expires (5 s); the edge finds the
    # node neither answers nor ticks, and takes the claim.
    await origin.stop_listening()
    origin.stop_ticking()
    await wait_for(lambda: stopped_ticking(cluster, origin), "the origin's tick gone stale")
    await comes_back_on_the_edge(cluster, viewer)

    # It was only stalled: ticking again it finds the claim gone and ends its stream, and its
    # streamer's next offer is refused: one origin.
    origin.tick_again()
    ended = await streamer.signaling.next_message("stream-ended", timeout=5)
    assert ended["reason"] == "origin-moved", ended
    await streamer.signaling.send({"type": "offer", "sdp": streamer.pc.localDescription.sdp})
    assert (await streamer.signaling.next_message("error"))["code"] == "streamer-exists"


async def test_an_origin_that_ticks_keeps_its_room_though_a_probe_of_it_fails(
    cluster: Cluster,
) -> None:
    origin, edge = cluster.nodes
    await (await origin.peers.publisher("show")).join_and_publish()
    await origin.stop_listening()  # cut off from the edge, or too slow to answer, but alive
    assert (await second_streamer_refused(edge))["code"] == "streamer-exists"
    assert origin.room("show").live


@pytest.mark.server_config(relay_linger=0.3)
async def test_a_pull_ends_once_its_last_viewer_has_been_gone_for_the_linger(
    cluster: Cluster,
) -> None:
    origin, edge = cluster.nodes
    viewer = await watching_on_the_edge(cluster)
    await viewer.close()
    await wait_for(lambda: not origin.room("show").viewers, "the origin to lose its relay")
    assert edge.room("show") is None


async def test_the_rooms_api_names_each_nodes_pulls(cluster: Cluster) -> None:
    origin, edge = cluster.nodes
    await watching_on_the_edge(cluster)
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {token(admin=True)}"}
        async with http.get(f"{edge.server.url}/api/rooms", headers=headers) as reply:
            edge_view = (await reply.json())["cluster"]
        async with http.get(f"{origin.server.url}/api/rooms", headers=headers) as reply:
            origin_view = (await reply.json())["cluster"]
    assert edge_view["pulls"] == {"show": "origin"}
    assert origin_view["origin_of"] == ["show"]
    assert edge_view["reachable"] and origin_view["reachable"]


async def test_a_whip_sessions_trickle_and_delete_reach_its_node_from_any_node(
    cluster: Cluster,
) -> None:
    origin, edge = cluster.nodes
    async with aiohttp.ClientSession() as http:
        publisher = WhipPublisher(
            http, origin.server.url, "show", token=token("show", publish=True), candidates="trickle"
        )
        try:
            await publisher.start()  # its POST and its trickle PATCH go to the origin
            assert publisher.location is not None and publisher.location.endswith("~origin")
            elsewhere = edge.server.url + publisher.location
            # The same session through the other node: forwarded to its own.
            reply = await request(
                http, "PATCH", elsewhere, body=publisher.fragment(end_of_candidates=True),
                content_type="application/trickle-ice-sdpfrag",
            )  # fmt: skip
            assert reply.status == 204, reply.describe()
            await publisher.wait_connected()
            assert (await request(http, "GET", elsewhere)).status == 204
            assert (await request(http, "DELETE", elsewhere)).status == 200
            publisher.deleted = True
            await wait_for(lambda: origin.room("show") is None, "the origin to close the session")
            gone = await request(http, "GET", edge.server.url + "/whip/show/x~nowhere")
            assert gone.status == 404, gone.describe()
        finally:
            await publisher.close()


async def test_a_streamer_whose_socket_comes_back_to_another_node_gets_its_session_back(
    cluster: Cluster,
) -> None:
    origin, edge = cluster.nodes
    publisher = await origin.peers.publisher("show")
    first = await publisher.join()
    await publisher.publish()
    viewer = await edge.peers.viewer("show")
    await viewer.join()
    await viewer.watch(video=5, audio=5)

    # A balancer without stickiness sends the reconnect to the edge: it pipes it home.
    resumed = await publisher.resume(edge.server.url)
    assert resumed["resumed"] is True, resumed
    assert resumed["clientId"] == first["clientId"] and resumed["node"] == "origin", resumed
    assert resumed["resumeKey"].endswith("~origin")
    await viewer.reception.wait_more_frames(video=10, audio=10)
    assert viewer.signaling.of_type("stream-ended") == []
    # What the client says goes home through the pipe: its leave ends the stream.
    await publisher.leave()
    ended = await viewer.signaling.next_message("stream-ended", timeout=5)
    assert ended["reason"] in ("streamer-left", "origin-lost"), ended


async def test_a_viewer_whose_socket_comes_back_to_another_node_keeps_playing(
    cluster: Cluster,
) -> None:
    origin, edge = cluster.nodes
    viewer = await watching_on_the_edge(cluster)
    first = viewer.signaling.of_type("joined")[0]

    resumed = await viewer.resume(origin.server.url)
    assert resumed["resumed"] is True and resumed["node"] == "edge", resumed
    assert resumed["clientId"] == first["clientId"]
    assert (await viewer.signaling.next_message("viewers"))["count"] == 1
    await viewer.reception.wait_more_frames(video=10, audio=10)
    assert len(viewer.receptions) == 1 and viewer.signaling.of_type("offer") == []
    # Counted once, at home: the pipe is not a second viewer.
    assert edge.room("show").audience == 1 and origin.room("show").audience == 0


async def test_a_piped_socket_closes_as_its_home_closes_it(cluster: Cluster) -> None:
    origin, edge = cluster.nodes
    viewer = await watching_on_the_edge(cluster)
    await viewer.resume(origin.server.url)
    piped = viewer.signaling

    # The client comes back once more, straight to its home: the pipe is `replaced`.
    key = piped.of_type("joined")[-1]["resumeKey"]
    direct = await Signaling.connect(edge.server.url)
    try:
        await direct.send({"type": "join", "roomId": "show", "role": "viewer", "resumeKey": key})
        assert (await direct.next_message("joined"))["resumed"] is True
        assert (await piped.next_message("error"))["code"] == "replaced"
        assert await piped.wait_closed() == 4001
    finally:
        await direct.close(leave=False)
        await piped.close(leave=False)


async def test_a_key_whose_node_is_gone_joins_afresh(cluster: Cluster) -> None:
    origin, _ = cluster.nodes
    client = await origin.peers.signaling()
    await client.send({"type": "join", "roomId": "show", "role": "viewer",
                       "resumeKey": "abcdefghijklmnopqrstuvwx~vanished"})  # fmt: skip
    joined = await client.next_message("joined")
    assert joined["resumed"] is False and joined["resumeError"] == "expired", joined
    assert joined["node"] == "origin"


def lose_on_the_way_into(room: Any, every: int, kind: str | None = None) -> None:
    """Drop every `every`-th RTP datagram (of `kind`'s SSRC, if given) that reaches the peer
    connection feeding the room's publications, before SRTP, as a lossy link would."""
    publication = room.publications[0]
    connection = publication._receiver.transport.transport._connection
    ssrcs = {p.media_ssrc for p in room.publications if kind is None or p.kind == kind}
    receive = getattr(connection, aiortc_private._DIRECT)
    counted = itertools.count(1)

    def lossy(data: bytes) -> bool:
        ssrc = int.from_bytes(data[8:12], "big")
        if not is_rtcp(data) and ssrc in ssrcs and next(counted) % every == 0:
            return True  # taken, and gone
        return bool(receive(data))

    setattr(connection, aiortc_private._DIRECT, lossy)


def origin_subscriptions(node: Node) -> list[Any]:
    return [
        subscription
        for publication in node.room("show").publications
        for group in publication._groups.values()
        for subscription in group.subscriptions
    ]


async def test_a_pull_whose_link_loses_packets_gets_two_copies_of_each(cluster: Cluster) -> None:
    origin, edge = cluster.nodes
    viewer = await watching_on_the_edge(cluster)
    pulls = origin_subscriptions(origin)
    assert [int(s.viewer.state.copies) for s in pulls] == [1, 1]  # the default: as needed

    lose_on_the_way_into(edge.room("show"), every=25)  # 4 % between the nodes
    await wait_for(
        lambda: all(int(s.viewer.state.copies) == 2 for s in pulls),
        "the origin sends both of the pull's tracks twice",
        timeout=15,
    )
    await viewer.reception.wait_more_frames(video=30, audio=30)


async def test_a_pull_keeps_one_copy_when_the_packets_were_lost_before_the_origin(
    cluster: Cluster,
) -> None:
    origin, edge = cluster.nodes
    viewer = await watching_on_the_edge(cluster)
    pulls = origin_subscriptions(origin)
    video = next(s for s in pulls if s.kind == "video")
    sent = sum(int(s.viewer.state.packets) for s in pulls)

    # The streamer's link loses 4 % of the video: the edge misses those packets too, and asks
    # the origin, which is waiting for them itself (or sends them late, as they are repaired).
    lose_on_the_way_into(origin.room("show"), every=25, kind="video")
    await wait_for(
        lambda: video.stats["nacks"] >= 5
        and sum(int(s.viewer.state.packets) for s in pulls) - sent > 3 * WINDOW_PACKETS,
        "the edge NACKed the streamer's losses over three windows",
        timeout=30,
    )
    assert [(int(s.viewer.state.copies), s.redundancy.switches) for s in pulls] == [(1, 0)] * 2
    await viewer.reception.wait_more_frames(video=30, audio=30)


@pytest.mark.server_config(relay_copies=2)
async def test_a_pull_sent_in_two_copies_plays_each_packet_once_at_the_edge(
    cluster: Cluster,
) -> None:
    origin, edge = cluster.nodes
    viewer = await watching_on_the_edge(cluster)
    reception = viewer.reception
    await reception.wait_more_frames(video=45, audio=65)
    # The origin sends its pull every datagram twice; the edge passes each packet on once.
    wire = [(r.ssrc, r.sequence_number) for r in reception.tap.wire]
    assert len(wire) > 100
    assert len(set(wire)) == len(wire), "the edge forwarded a second copy"
    # The origin's only subscribers are the pull's two tracks.
    subscriptions = origin_subscriptions(origin)
    assert len(subscriptions) == 2
    assert all(int(s.viewer.state.copies) == 2 for s in subscriptions)
    assert all(int(s.viewer.state.packets) > 0 for s in subscriptions)
