"""The cluster's directory in a real redis-server: who is each room's origin."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from redis import asyncio as aioredis

from netra.bench.redis_server import RedisServer
from netra.cluster import redis_directory
from netra.cluster.directory import Node
from netra.cluster.redis_directory import RedisDirectory

from .peers import wait_for


def stop_ticking(directory: RedisDirectory) -> None:
    """What a killed node does: no more ticks, and nothing released. The flag as well as the
    cancel: Python 3.11's wait_for can swallow a cancellation (RedisDirectory.close)."""
    assert directory._ticker is not None
    directory._closing = True
    directory._ticker.cancel()


@pytest.fixture
async def redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    server = RedisServer(tmp_path)
    await server.start()
    yield server
    server.stop()


class Ears:
    """A node's side of the directory: the viewers it has, and what it was told."""

    def __init__(self) -> None:
        self.viewers: dict[str, int] = {}
        self.remote: dict[str, int] = {}
        self.lost_rooms: list[str] = []

    def audiences(self) -> dict[str, int]:
        return dict(self.viewers)

    def remote_audiences(self, counts: dict[str, int]) -> None:
        self.remote = counts

    def lost(self, room: str) -> None:
        self.lost_rooms.append(room)


class Nodes:
    """Directories of several nodes on one Redis, all closed at the end."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.made: list[RedisDirectory] = []
        self.ears: dict[str, Ears] = {}
        self.lost: dict[str, list[str]] = {}

    async def node(self, name: str) -> RedisDirectory:
        directory = RedisDirectory(Node(name, f"http://{name}.test:8080"), self.url)
        ears = self.ears[name] = Ears()
        self.lost[name] = ears.lost_rooms
        await directory.start(ears)
        self.made.append(directory)
        return directory

    async def close(self) -> None:
        await asyncio.gather(*(d.close() for d in self.made))


@pytest.fixture
async def nodes(redis: RedisServer) -> AsyncIterator[Nodes]:
    made = Nodes(redis.url)
    yield made
    await made.close()


async def test_the_first_node_to_claim_a_room_is_its_origin_for_every_node(nodes: Nodes) -> None:
    a, b = await nodes.node("a"), await nodes.node("b")
    assert (await a.claim("show")).node.id == "a"
    refused = await b.claim("show")
    assert refused.node == a.node
    assert (await b.origins(["show", "other"])) == {"show": refused}


async def test_of_100_streamers_racing_for_one_room_on_four_nodes_exactly_one_wins(
    nodes: Nodes,
) -> None:
    four = [await nodes.node(f"n{i}") for i in range(4)]
    results = await asyncio.gather(*(four[i % 4].claim("race") for i in range(100)))
    winners = {origin.node.id for origin in results}
    assert len(winners) == 1, winners
    assert {origin.epoch for origin in results} == {1}


async def test_a_released_room_can_be_claimed_by_another_node_with_a_new_epoch(
    nodes: Nodes,
) -> None:
    a, b = await nodes.node("a"), await nodes.node("b")
    first = await a.claim("show")
    await a.release("show")
    second = await b.claim("show")
    assert (second.node.id, second.epoch) == ("b", first.epoch + 1)


async def test_a_claim_is_taken_from_a_node_found_not_answering_once_it_has_stopped_ticking(
    redis: RedisServer, nodes: Nodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_directory, "TICK_SECONDS", 0.1)
    monkeypatch.setattr(redis_directory, "STALE_MS", 300)
    a, b, c = await nodes.node("a"), await nodes.node("b"), await nodes.node("c")
    first = await a.claim("show")
    assert (await b.claim("show", replacing="c")).node.id == "a"  # c holds nothing
    assert (await b.claim("show", replacing="a")).node.id == "a"  # a ticks: alive to Redis

    stop_ticking(a)
    await wait_for(lambda: a_is_stale(redis.url, "a"), "a's tick to go stale", timeout=2.0)
    # Of two nodes that found a gone, one takes the room; the other is told it has an origin.
    taken, late = await asyncio.gather(
        b.claim("show", replacing="a"), c.claim("show", replacing="a")
    )
    assert (taken.node.id, taken.epoch) == ("b", first.epoch + 1)
    assert late == taken
    assert b.holds("show") and not c.holds("show")


async def a_is_stale(url: str, node: str) -> bool:
    client = aioredis.from_url(url)
    try:
        left = await client.pttl(f"{redis_directory.PREFIX}node:{node}")
    finally:
        await client.aclose()
    return bool(left < redis_directory.NODE_TTL_MS - redis_directory.STALE_MS)


async def test_a_claim_left_by_this_nodes_previous_process_is_replaced(
    redis: RedisServer, nodes: Nodes
) -> None:
    """A worker restarted under its id, on another port: edges must pull from the new one."""
    before = await nodes.node("w1")
    first = await before.claim("show")
    stop_ticking(before)
    after = RedisDirectory(Node("w1", "http://w1.test:9090"), redis.url)
    try:
        await after.start(Ears())
        again = await after.claim("show")
        assert (again.node.relay_url, again.epoch) == ("http://w1.test:9090", first.epoch + 1)
        assert (await after.claim("show")) == again  # its own claim now: kept
    finally:
        await after.close()


async def test_a_claim_outlives_its_ttl_while_its_node_ticks(
    nodes: Nodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_directory, "CLAIM_TTL_MS", 300)
    monkeypatch.setattr(redis_directory, "TICK_SECONDS", 0.1)
    a, b = await nodes.node("a"), await nodes.node("b")
    await a.claim("show")
    ticked = a.ticks
    # Nine renewals, 0.9 s: three TTLs, which only the renewals can have kept it through.
    await wait_for(lambda: a.ticks >= ticked + 9, "nine ticks of a's", timeout=5.0)
    assert (await b.claim("show")).node.id == "a"


async def test_a_dead_nodes_claim_expires_and_another_node_takes_the_room(
    nodes: Nodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_directory, "CLAIM_TTL_MS", 300)
    a, b = await nodes.node("a"), await nodes.node("b")
    await a.claim("show")
    stop_ticking(a)  # the node stops renewing, as a killed process does
    async def b_is_origin() -> bool:
        return (await b.claim("show")).node.id == "b"

    await wait_for(b_is_origin, "the dead node's claim to expire", timeout=3.0)
    assert (await b.claim("show")).epoch == 2


async def a_holds_the_room(
    nodes: Nodes, monkeypatch: pytest.MonkeyPatch
) -> tuple[RedisDirectory, RedisDirectory]:
    """Nodes a and b ticking every 0.2 s, a the origin of "show"."""
    monkeypatch.setattr(redis_directory, "TICK_SECONDS", 0.2)
    a, b = await nodes.node("a"), await nodes.node("b")
    await a.claim("show")
    return a, b


async def test_after_a_redis_restart_each_node_reasserts_its_claims_within_a_tick(
    redis: RedisServer, nodes: Nodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = await a_holds_the_room(nodes, monkeypatch)
    redis.stop()
    with pytest.raises(Exception) as refused:
        await b.claim("show")
    assert getattr(refused.value, "code", None) == "directory-unavailable"
    await redis.start()  # empty: nothing was persisted
    async def claimed() -> bool:
        return "show" in await b.origins(["show"])

    await wait_for(claimed, "the claim to be re-asserted", timeout=2.0)
    assert (await b.claim("show")).node.id == "a"
    assert nodes.lost["a"] == []


async def test_a_node_that_finds_its_room_taken_after_an_outage_is_told_it_lost_it(
    redis: RedisServer, nodes: Nodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = await a_holds_the_room(nodes, monkeypatch)
    redis.stop()
    await redis.start()
    # b gets in before a's next tick: b's streamer is the one Redis knows.
    if (await b.claim("show")).node.id != "b":
        pytest.fail("a re-asserted before b could claim; the tick is too fast for this test")
    async def told() -> bool:
        return nodes.lost["a"] == ["show"]

    await wait_for(told, "a to be told it lost the room", timeout=2.0)


async def test_at_rest_a_node_makes_one_redis_operation_per_second(nodes: Nodes) -> None:
    a = await nodes.node("a")
    await a.claim("show")
    operations, ticked = a.operations, a.ticks
    start = asyncio.get_running_loop().time()
    await wait_for(lambda: a.ticks == ticked + 3, "three ticks", timeout=5.0)
    elapsed = asyncio.get_running_loop().time() - start
    assert a.operations - operations == 3  # one operation a tick, nothing else at rest
    assert 2.0 <= elapsed < 3.5, elapsed  # and a tick a second


async def test_each_node_hears_the_other_nodes_viewers_of_its_rooms_and_not_a_dead_nodes(
    nodes: Nodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_directory, "TICK_SECONDS", 0.1)
    monkeypatch.setattr(redis_directory, "AUDIENCE_FRESH_MS", 500)
    await nodes.node("a")
    await nodes.node("b")
    c = await nodes.node("c")
    nodes.ears["a"].viewers = {"show": 0}  # the origin: its streamer, no viewer
    nodes.ears["b"].viewers = {"show": 3}
    nodes.ears["c"].viewers = {"show": 2, "other": 1}

    def hears(name: str, count: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return nodes.ears[name].remote == {"show": count}

        return check

    await wait_for(hears("a", 5), "a to hear 5", timeout=2.0)
    await wait_for(hears("b", 2), "b to hear 2", timeout=2.0)
    stop_ticking(c)  # c dies: its counts go stale
    await wait_for(hears("a", 3), "a to hear only b's", timeout=2.0)
    nodes.ears["b"].viewers = {}  # b's room closed: its count goes at its next tick
    await wait_for(hears("a", 0), "a to hear none", timeout=2.0)
