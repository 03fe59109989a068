"""Fixtures: a Netra server in this process, and test peers that are always closed.

The server runs on an aiohttp AppRunner bound to 127.0.0.1 on a free port. Creating the app
with candidate_addresses=("127.0.0.1",) makes aioice offer only that host candidate, for the
server's peers and the test peers alike.

At teardown every peer is closed, and the test fails if an asyncio task or a thread that the
test started (server included) is still alive once everything is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import aioice.ice
import pytest
from aiohttp import web

from netra.app import create_app
from netra.config import Config
from netra.media import aiortc_private

from .peers import TEST_SECRET, Publisher, Signaling, Viewer

LEAK_GRACE = 3.0  # seconds for closed peers' tasks and threads to finish


@dataclass
class Server:
    url: str
    app: web.Application


@pytest.fixture
async def server(request: pytest.FixtureRequest) -> AsyncIterator[Server]:
    """`@pytest.mark.server_config(grace_period=1.0, …)` sets Config fields for one test."""
    tasks_before = asyncio.all_tasks()
    threads_before = set(threading.enumerate())
    marker = request.node.get_closest_marker("server_config")
    config = Config(
        host="127.0.0.1",
        port=0,
        candidate_addresses=("127.0.0.1",),
        auth_secret=TEST_SECRET,
        **(marker.kwargs if marker else {}),
    )
    app = create_app(config)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield Server(url=f"http://{host}:{port}", app=app)
    finally:
        await runner.cleanup()
    await _assert_nothing_left(tasks_before, threads_before, "after the server shut down")


@pytest.fixture
def loopback_candidates() -> Iterator[None]:
    """For tests whose server runs in another process (netra bench's target, Janus): this
    process's aiortc peers must offer 127.0.0.1 only. The override is process-wide, so aioice
    is put back for the tests that follow."""
    original = aioice.ice.get_host_addresses
    aiortc_private.offer_host_addresses(["127.0.0.1"])
    try:
        yield
    finally:
        aioice.ice.get_host_addresses = original


@dataclass
class Peers:
    """Makes test clients against one server and remembers them to close them."""

    server: Server
    clients: list[Publisher | Viewer | Signaling] = field(default_factory=list)
    # The longest the event loop was late to wake a 10 ms sleep: timing-sensitive tests
    # report it, since the server and the peers share this loop.
    loop_lag: float = 0.0

    async def watch_loop_lag(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.01)
            self.loop_lag = max(self.loop_lag, loop.time() - before - 0.01)

    async def signaling(self) -> Signaling:
        client = await Signaling.connect(self.server.url)
        self.clients.append(client)
        return client

    async def publisher(self, room_id: str, **pattern: object) -> Publisher:
        client = Publisher(await Signaling.connect(self.server.url), room_id, **pattern)  # type: ignore[arg-type]
        self.clients.append(client)
        return client

    async def viewer(self, room_id: str) -> Viewer:
        client = Viewer(await Signaling.connect(self.server.url), room_id)
        self.clients.append(client)
        return client

    async def close(self) -> None:
        # Viewers first, so the server never sees them lose a stream it is tearing down.
        for client in sorted(self.clients, key=lambda c: not isinstance(c, Viewer)):
            await client.close()


@pytest.fixture
async def peers(server: Server) -> AsyncIterator[Peers]:
    tasks_before = asyncio.all_tasks()
    threads_before = set(threading.enumerate())
    made = Peers(server)
    lag = asyncio.create_task(made.watch_loop_lag(), name="loop-lag")
    try:
        yield made
    finally:
        await made.close()
        lag.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await lag
    # The server's own tasks for these clients must be gone too: closing a socket frees
    # everything of its client (docs/protocol.md, `leave`).
    await _assert_nothing_left(tasks_before, threads_before, "after closing the test peers")


async def _assert_nothing_left(
    tasks_before: set[asyncio.Task[object]], threads_before: set[threading.Thread], when: str
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LEAK_GRACE
    current = asyncio.current_task()
    while True:
        tasks = {t for t in asyncio.all_tasks() - tasks_before if t is not current and not t.done()}
        threads = {
            t
            for t in set(threading.enumerate()) - threads_before
            # the loop's default executor (getaddrinfo): shut down with the loop
            if t.is_alive() and not t.name.startswith("asyncio_")
        }
        if not tasks and not threads:
            return
        if loop.time() > deadline:
            names = sorted(_describe(t) for t in tasks)
            raise AssertionError(
                f"left behind {when}: tasks {names}, threads {sorted(t.name for t in threads)}"
            )
        await asyncio.sleep(0.05)


def _describe(task: asyncio.Task[object]) -> str:
    coro = task.get_coro()
    name = getattr(coro, "__qualname__", repr(coro))
    return f"{task.get_name()}:{name}"
