"""`netra serve --workers 2 --redis URL`: two worker processes on one port, one cluster.

The server runs as a real subprocess (a supervisor and its two workers) against a real
redis-server; the clients are this process's aiortc peers. Which worker takes a connection is
the kernel's choice (SO_REUSEPORT), and `joined` says which node it was.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from netra.bench.redis_server import RedisServer
from netra.bench.target import cluster_nodes, free_port

from .peers import TEST_SECRET, Publisher, Signaling, Viewer, token

START_SECONDS = 20.0
ATTEMPTS = 24  # connections tried to reach each worker: all on one has odds 2^-23


class Workers:
    def __init__(self, redis_url: str, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log_path = log
        self._redis_url = redis_url
        self.process: subprocess.Popen[bytes] | None = None
        self.node_pids: dict[str, int] = {}  # node name → its worker's PID

    async def start(self) -> None:
        command = [
            sys.executable, "-m", "netra", "serve", "--workers", "2",
            "--redis", self._redis_url, "--node-id", "test",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--candidate-address", "127.0.0.1",
        ]  # fmt: skip
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "NETRA_AUTH_SECRET": TEST_SECRET}
        with open(self._log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        await self.wait_nodes({"test-0", "test-1"})

    def children(self) -> list[int]:
        """The supervisor's children: the workers (and multiprocessing's resource tracker)."""
        assert self.process is not None
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in path.read_text().split()]

    async def wait_nodes(self, nodes: set[str]) -> None:
        """Until every worker answers, each registered in the cluster."""
        assert self.process is not None and self.process.poll() is None, self.log()
        self.node_pids = await cluster_nodes(self.url, token(admin=True), len(nodes), START_SECONDS)
        assert set(self.node_pids) == nodes, self.log()

    def log(self) -> str:
        return self._log_path.read_text()[-3000:]

    def stop(self) -> int | None:
        """SIGTERM to the supervisor (by its PID), which stops its workers."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            for pid in self.children():
                os.kill(pid, signal.SIGKILL)
            self.process.kill()
            self.process.wait()
            raise


@pytest.fixture
async def workers(tmp_path: Path, loopback_candidates: None) -> AsyncIterator[Workers]:
    redis = RedisServer(tmp_path)
    await redis.start()
    started = Workers(redis.url, tmp_path / "netra.log")
    try:
        await started.start()
        yield started
    finally:
        started.stop()
        redis.stop()


async def connect_on(workers: Workers, node: str) -> Signaling:
    """A viewer connection that the kernel gave to `node`'s worker."""
    for _ in range(ATTEMPTS):
        signaling = await Signaling.connect(workers.url)
        await signaling.send({"type": "join", "roomId": "show", "role": "viewer"})
        joined = await signaling.next_message("joined")
        if joined["node"] == node:
            return signaling
        await signaling.close()
    raise AssertionError(f"no connection reached {node} in {ATTEMPTS} tries")


class Stream:
    """A stream published to one worker (the origin); the other worker is the edge."""

    def __init__(self, workers: Workers) -> None:
        self.workers = workers
        self.clients: list[Publisher | Viewer] = []
        self.origin = self.edge = ""

    async def publish(self) -> None:
        publisher = Publisher(await Signaling.connect(self.workers.url), "show")
        self.clients.append(publisher)
        self.origin = (await publisher.join())["node"]
        await publisher.publish()
        await publisher.wait_connected()
        self.edge = ({"test-0", "test-1"} - {self.origin}).pop()

    async def viewer_on(self, node: str) -> Viewer:
        viewer = Viewer(await connect_on(self.workers, node), "show")
        self.clients.append(viewer)
        return viewer

    async def close(self) -> None:
        for client in reversed(self.clients):
            await client.close()


@pytest.fixture
async def stream(workers: Workers) -> AsyncIterator[Stream]:
    made = Stream(workers)
    try:
        await made.publish()
        yield made
    finally:
        await made.close()


async def test_a_stream_published_to_one_worker_plays_to_viewers_of_both(stream: Stream) -> None:
    for node in (stream.origin, stream.edge):
        viewer = await stream.viewer_on(node)
        reception = await viewer.watch(video=10, audio=10)
        assert {(f.width, f.height) for f in reception.video} == {(320, 240)}, node


async def test_a_killed_worker_is_started_again_and_its_viewers_play_again_on_rejoining(
    workers: Workers, stream: Stream
) -> None:
    edge = stream.edge
    viewer = await stream.viewer_on(edge)
    await viewer.watch(video=5, audio=5)
    # kill -9 the edge worker: the one whose node name is not the publisher's.
    edge_pid = workers.node_pids[edge]
    assert edge_pid in workers.children()
    os.kill(edge_pid, signal.SIGKILL)
    await viewer.signaling.wait_closed(timeout=5)
    await viewer.signaling.close(leave=False)
    # The viewer comes back on a new connection (as the pages do) and plays within 5 s.
    started = asyncio.get_running_loop().time()
    viewer.signaling = await Signaling.connect(workers.url)
    await viewer.join()
    await viewer.watch(video=5, audio=5, timeout=5)
    assert asyncio.get_running_loop().time() - started < 5.0
    # The supervisor starts the killed worker again.
    await workers.wait_nodes({"test-0", "test-1"})
    assert workers.node_pids[edge] != edge_pid
    assert edge_pid not in workers.children()


async def test_sigterm_stops_the_supervisor_and_every_worker(workers: Workers) -> None:
    workers_pids = set(workers.node_pids.values())
    helpers = set(workers.children()) - workers_pids  # multiprocessing's resource tracker
    exits = {pid: exited(pid) for pid in workers_pids | helpers}
    assert workers.stop() == 0, workers.log()
    for pid, exit in exits.items():
        await asyncio.wait_for(exit, 2.0 if pid in helpers else 0.1)


async def exited(pid: int) -> None:
    """Returns when `pid` exits (its pidfd turns readable); at once if it is gone already."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.add_reader(fd, lambda: done.done() or done.set_result(None))
    try:
        await done
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def test_when_the_origin_worker_is_killed_the_other_workers_viewers_are_told_in_2_s(
    workers: Workers, stream: Stream
) -> None:
    viewer = await stream.viewer_on(stream.edge)
    await viewer.watch(video=5, audio=5)
    os.kill(workers.node_pids[stream.origin], signal.SIGKILL)
    killed = asyncio.get_running_loop().time()
    stalled = await viewer.signaling.next_message("stream-stalled", timeout=3)
    assert stalled["reason"] == "no-media", stalled
    assert asyncio.get_running_loop().time() - killed < 2.0
    # Once the dead origin's claim expires (5 s), the edge ends the stream.
    await viewer.signaling.next_message("stream-ended", timeout=8)
