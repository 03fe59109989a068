"""A cluster on one machine, for its tests and benchmarks: an origin and edges, each a
`netra serve` in a network namespace of its own with its own address (and, if asked, an equal
CPU quota), Redis in another, and an impaired link (delay and loss, each way) between the
origin and each edge. The clients (bots, browsers) run in the calling namespace, the LAN's
router, and reach every node directly.

A `RoamingViewer` is a viewer bot that joins another node when its own goes away, as the pages
do behind a load balancer. A `ClusterTarget` is the whole cluster as one server to `netra
bench`: it publishes on the origin and spreads the viewers over every node.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import aioice.ice
from aiortc import RTCPeerConnection

from netra.bench.bot import ViewerBot
from netra.bench.netns import ROUTER, ImpairedLink, Lan, Namespace
from netra.bench.publisher import SendLog
from netra.bench.redis_server import RedisServer
from netra.bench.target import NetraSession, NetraTarget, Session
from netra.media import aiortc_private

REDIS_PORT = 6379
NODE_PORT = 8080
KEYFRAME_SECONDS = 10.0  # a roaming viewer that has none by then has not come back
HEARTBEAT = 4.0  # the bots' WebSocket pings: a node cut off is noticed within 6 s


@dataclass(frozen=True)
class ClusterOptions:
    edges: int = 2
    delay_ms: float = 10.0  # one way on each origin-edge link: 20 ms round trip
    loss: float = 0.01  # each way on each origin-edge link
    cores: float | None = None  # each node's CPU quota
    room: str = "bench"
    relay_linger: float = 30.0
    relay_copies: int | None = None  # --relay-copies of each node; None: the server's default


class Cluster:
    def __init__(self, workdir: Path, options: ClusterOptions) -> None:
        self.options = options
        self.nodes: list[NetraTarget] = []
        self.hosts: list[Namespace] = []
        self.links: list[ImpairedLink] = []
        self.redis: RedisServer | None = None
        self._workdir = workdir
        self._lan = Lan()
        self._host_addresses = aioice.ice.get_host_addresses

    @property
    def origin(self) -> NetraTarget:
        return self.nodes[0]

    @property
    def edges(self) -> list[NetraTarget]:
        return self.nodes[1:]

    async def start(self, cpu: int | None = None) -> None:
        """Start every part; `cpu` pins the nodes to that CPU (their quotas share it)."""
        options = self.options
        self._lan.start()
        # This process's peers are on the LAN; aioice would never offer its address itself
        # on a machine that has another, and must not offer the machine's.
        aiortc_private.offer_host_addresses([ROUTER])
        redis_host = await self._lan.add("redis")
        hosts = [await self._lan.add("origin")]
        hosts += [await self._lan.add(f"edge{i}") for i in range(1, options.edges + 1)]
        for edge in hosts[1:]:
            link = ImpairedLink(hosts[0], edge, options.delay_ms, options.loss)
            self.links.append(link)
            await link.start()
        self.redis = RedisServer(
            self._workdir, REDIS_PORT, redis_host.address, tuple(redis_host.command())
        )
        await self.redis.start()
        secret = secrets.token_urlsafe(48)  # the nodes of one cluster share it
        for host in hosts:
            self.nodes.append(self._node(host, secret))
            self.hosts.append(host)
        await asyncio.gather(*(node.start(cpu) for node in self.nodes))

    def _node(self, host: Namespace, secret: str) -> NetraTarget:
        assert self.redis is not None
        args: tuple[str, ...] = (
            "--redis", self.redis.url, "--node-id", host.name,
            "--relay-linger", str(self.options.relay_linger),
        )  # fmt: skip
        if self.options.relay_copies is not None:  # so that an older checkout runs too
            args += ("--relay-copies", str(self.options.relay_copies))
        return NetraTarget(
            self.options.room,
            args=args,
            secret=secret,
            cores=self.options.cores,
            host=host.address,
            wrap=tuple(host.command()),
            port=NODE_PORT,
            heartbeat=HEARTBEAT,
        )

    def kill(self, node: NetraTarget) -> None:
        """`kill -9` one node's process (ours, by its PID)."""
        os.kill(node.pid, signal.SIGKILL)

    def cut(self, node: NetraTarget) -> None:
        """Unplug one node from the LAN (its clients' side; its link to the origin stays)."""
        self._lan.cut(self.hosts[self.nodes.index(node)])

    async def close(self) -> None:
        for node in self.nodes:
            await node.stop()
        for link in self.links:
            await link.close()
        if self.redis is not None:
            self.redis.stop()
        self._lan.close()
        aioice.ice.get_host_addresses = self._host_addresses


class RoamingViewer:
    """A viewer bot on `nodes[home]` that, when that node's signaling socket closes, joins the
    next node that takes it. `lost_at` and `back_at` (time.perf_counter()) say when it lost
    the stream and when its first keyframe arrived from the new node."""

    def __init__(
        self, index: int, nodes: list[NetraTarget], home: int, video_log: SendLog | None = None
    ) -> None:
        self.index = index
        self.nodes = nodes
        self.node = home
        self.video_log = video_log
        self.bot = ViewerBot(index, video_log)
        self.lost_at: float | None = None
        self.back_at: float | None = None
        self.back = asyncio.Event()  # playing again on another node
        self._roaming: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.bot.start(self.nodes[self.node])
        self._roaming = asyncio.create_task(self._roam(), name=f"roaming-viewer-{self.index}")

    @property
    def recovery_seconds(self) -> float | None:
        if self.lost_at is None or self.back_at is None:
            return None
        return self.back_at - self.lost_at

    async def _roam(self) -> None:
        session = self.bot.session
        assert isinstance(session, NetraSession)
        await session.closed.wait()
        self.lost_at = time.perf_counter()
        await self.bot.close()
        for step in range(1, 4 * len(self.nodes) + 1):
            node = (self.node + step) % len(self.nodes)
            self.bot = ViewerBot(self.index, self.video_log)
            try:
                await self.bot.start(self.nodes[node], timeout=5.0)
            except Exception:
                await self.bot.close()
                await asyncio.sleep(0.1)  # every node refused: they may be taking over
                continue
            self.node = node
            break
        else:
            return
        try:
            await asyncio.wait_for(self.bot.keyframed.wait(), KEYFRAME_SECONDS)
        except TimeoutError:
            return
        self.back_at = self.bot.video.keyframe_at if self.bot.video is not None else None
        self.back.set()

    def tick(self, now: float) -> None:
        self.bot.tick(now)

    async def close(self) -> None:
        if self._roaming is not None:
            self._roaming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._roaming
        await self.bot.close()


class Audience:
    """Roaming viewers that send their receiver reports (and PLIs while they have no
    keyframe) once a second, as browsers do; `async with` joins them all and closes them."""

    def __init__(self, viewers: list[RoamingViewer]) -> None:
        self.viewers = viewers
        self._ticks: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Audience:
        self._ticks = asyncio.create_task(self._tick(), name="audience-ticks")
        try:
            await asyncio.gather(*(viewer.start() for viewer in self.viewers))
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.perf_counter()
            for viewer in self.viewers:
                viewer.tick(now)

    async def close(self) -> None:
        if self._ticks is not None:
            self._ticks.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticks
        await asyncio.gather(*(viewer.close() for viewer in self.viewers))


class ClusterTarget:
    """A cluster of `nodes` (an origin and nodes-1 edges) as one server under test: the
    publisher on the origin, viewer i on node i mod nodes. One node is a cluster of one, in a
    namespace too, so that a comparison differs in the number of nodes alone."""

    def __init__(self, nodes: int, options: ClusterOptions) -> None:
        self.name = f"netra-{nodes}-nodes" if nodes > 1 else "netra-1-node"
        self.workers = nodes  # processes that serve, each under its own quota
        self._options = replace(options, edges=nodes - 1)
        self._cluster: Cluster | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._joined = 0

    @property
    def cluster(self) -> Cluster:
        assert self._cluster is not None
        return self._cluster

    @property
    def pid(self) -> int:
        return self.cluster.origin.pid

    @property
    def pids(self) -> list[int]:
        return [node.pid for node in self.cluster.nodes]

    async def start(self, cpu: int | None) -> None:
        self._workdir = tempfile.TemporaryDirectory(prefix="netra-cluster-")
        self._cluster = Cluster(Path(self._workdir.name), self._options)
        self._joined = 0
        try:
            await self._cluster.start(cpu)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        if self._cluster is not None:
            await self._cluster.close()
            self._cluster = None
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    async def diagnostics(self) -> dict[str, object]:
        return await self.cluster.origin.diagnostics()

    async def publish(self, pc: RTCPeerConnection) -> Session:
        return await self.cluster.origin.publish(pc)

    async def subscribe(
        self, pc: RTCPeerConnection, prepared: Callable[[], None]
    ) -> tuple[Session, float]:
        nodes = self.cluster.nodes
        node = nodes[self._joined % len(nodes)]
        self._joined += 1
        return await node.subscribe(pc, prepared)
