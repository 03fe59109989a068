"""A server under test: how to start it, stop it, and negotiate with it.

The load tool knows nothing about a server's signaling; each Target does its own (Netra's
WebSocket protocol here, Janus's JSON API in janus.py) and hands back a Session to close.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription

from netra.auth import mint
from netra.bench.cgroup import CpuQuota

READY_TIMEOUT = 20.0
NEGOTIATION_TIMEOUT = 20.0


class TargetUnavailable(RuntimeError):
    """The server cannot run here; the message says what is missing."""


class Session(Protocol):
    async def close(self) -> None: ...


class Target(Protocol):
    name: str

    @property
    def pid(self) -> int:
        """The server's process id."""
        ...

    @property
    def pids(self) -> list[int]:
        """The processes that serve (a supervisor's workers), for CPU and RSS from /proc."""
        ...

    async def start(self, cpu: int | None) -> None:
        """Start the server (pinned to `cpu` when given) and wait until it accepts clients."""
        ...

    async def stop(self) -> None: ...

    async def diagnostics(self) -> dict[str, object]:
        """What the server says about itself now (Netra: its event-loop lag), or {}."""
        ...

    async def publish(self, pc: RTCPeerConnection) -> Session:
        """Offer `pc` (its sendonly transceivers already added) as the room's publisher and
        apply the server's answer."""
        ...

    async def subscribe(
        self, pc: RTCPeerConnection, prepared: Callable[[], None]
    ) -> tuple[Session, float]:
        """Join as a viewer: apply the server's offer, create and set the answer, call
        `prepared()` (the bot installs its packet tap there), send the answer. Returns the
        session and the time.perf_counter() at which the answer was sent."""
        ...


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(command: list[str], cpu: int | None) -> list[str]:
    return command if cpu is None else ["taskset", "-c", str(cpu), *command]


async def wait_for_port(
    port: int, process: subprocess.Popen[bytes], what: str, host: str = "127.0.0.1"
) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise TargetUnavailable(f"{what} exited with code {process.returncode} at start")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection(host, port)
            writer.close()
            return
        await asyncio.sleep(0.05)
    raise TargetUnavailable(f"{what} did not listen on {host}:{port} in {READY_TIMEOUT:g} s")


async def close_socket(
    http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse, reader: asyncio.Task[None]
) -> None:
    """Close a signaling WebSocket, its reader task and its HTTP session; never raises on a
    socket that is already dead."""
    with contextlib.suppress(Exception):
        await ws.close()
    reader.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reader
    await http.close()


def stop_process(process: subprocess.Popen[bytes] | None, timeout: float = 5.0) -> None:
    """End the process this tool started (by its own handle), politely first."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


async def cluster_nodes(
    base_url: str, admin_token: str, count: int, timeout: float = 30.0
) -> dict[str, int]:
    """Each node's PID (`/api/rooms` says both), once `count` nodes answer on `base_url`:
    the workers of `netra serve --workers`, among which the kernel picks per connection."""
    seen: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    headers = {"Authorization": f"Bearer {admin_token}", "Connection": "close"}
    async with aiohttp.ClientSession() as http:
        while len(seen) < count:
            if time.monotonic() > deadline:
                raise TargetUnavailable(f"only {sorted(seen)} of {count} nodes answer")
            try:
                async with http.get(f"{base_url}/api/rooms", headers=headers) as response:
                    cluster = (await response.json())["cluster"]
            except aiohttp.ClientError:
                await asyncio.sleep(0.05)  # not listening yet: nothing to wait on but time
                continue
            if cluster.get("reachable", True):  # registered in the cluster's directory
                seen[cluster["node"]] = int(cluster["pid"])
    return seen


class NetraSession:
    """One signaling WebSocket, read all along: aiohttp answers the server's heartbeat pings
    only while someone reads."""

    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._http = http
        self._ws = ws
        self._inbox: asyncio.Queue[dict[str, object] | None] = asyncio.Queue()
        self._left = False
        self.closed = asyncio.Event()  # the server closed the socket, or it broke
        self.first: dict[str, float] = {}  # message type -> perf_counter() of its first
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, url: str, heartbeat: float | None = None) -> NetraSession:
        """A session on `url`'s /ws (an http:// base URL); with `heartbeat`, a socket whose
        server stops answering pings is closed within 1.5 heartbeats, as a page notices."""
        http = aiohttp.ClientSession()
        try:
            ws = await http.ws_connect(url + "/ws", max_msg_size=0, heartbeat=heartbeat)
        except BaseException:
            await http.close()
            raise
        return cls(http, ws)

    async def _read(self) -> None:
        try:
            async for frame in self._ws:
                if frame.type == aiohttp.WSMsgType.TEXT:
                    message = json.loads(frame.data)
                    self.first.setdefault(str(message.get("type")), time.perf_counter())
                    self._inbox.put_nowait(message)
        finally:
            self.closed.set()
            self._inbox.put_nowait(None)

    async def next(self, type_: str) -> dict[str, object]:
        async with asyncio.timeout(NEGOTIATION_TIMEOUT):
            while (message := await self._inbox.get()) is not None:
                if message.get("type") == type_:
                    return message
                if message.get("type") == "error":
                    raise RuntimeError(f"netra refused: {message}")
        raise RuntimeError(f"netra closed the socket before {type_!r}")

    async def send(self, message: dict[str, object]) -> None:
        await self._ws.send_str(json.dumps(message))
        if message.get("type") == "leave":
            self._left = True

    async def close(self) -> None:
        # Say so: a socket closed without `leave` keeps its session for the grace period.
        with contextlib.suppress(Exception):
            if not self._left:
                await self.send({"type": "leave"})
        await close_socket(self._http, self._ws, self._reader)


class NetraTarget:
    """`netra serve` as a subprocess on 127.0.0.1, offering loopback candidates only; or, for
    a cluster harness (netra.bench.cluster), on `host` in another network namespace, started
    through `wrap` (the namespace's nsenter command)."""

    name = "netra"

    def __init__(
        self,
        room: str = "bench",
        fanout: str = "auto",
        *,
        args: tuple[str, ...] = (),
        secret: str | None = None,
        workers: int = 1,
        cores: float | None = None,
        host: str = "127.0.0.1",
        wrap: tuple[str, ...] = (),
        port: int | None = None,
        heartbeat: float | None = None,
        source: Path | None = None,
    ) -> None:
        self.room = room
        self.source = source
        self.heartbeat = heartbeat
        self.host = host
        self._wrap = wrap
        self._port = port
        self.fanout = fanout
        self.port = 0
        self._args = args  # more flags for `netra serve` (a cluster node's)
        # `--workers` (then `args` must give `--redis`), and the CPU quota of each process
        # that serves (netra.bench.cgroup), in cores.
        self.workers = workers
        self.cores = cores
        self._pids: list[int] = []
        self._quotas: list[CpuQuota] = []
        self._process: subprocess.Popen[bytes] | None = None
        # The server under test signs tokens with this; publishing and /api/rooms need one.
        # The nodes of one cluster share it.
        self._secret = secret or secrets.token_urlsafe(48)

    def _token(self, *, publish: bool = False, admin: bool = False) -> str:
        return mint(self._secret, room="*", ttl=24 * 3600, publish=publish, admin=admin)

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pids(self) -> list[int]:
        return self._pids or [self.pid]

    async def start(self, cpu: int | None) -> None:
        self.port = self._port or free_port()
        command = [
            sys.executable, "-m", "netra", "serve",
            "--host", self.host, "--port", str(self.port),
            "--candidate-address", self.host, "--log-level", "WARNING",
            "--fanout", self.fanout, *self._args,
        ]  # fmt: skip
        if self.workers != 1:  # a flag older versions lack
            command += ["--workers", str(self.workers)]
        env = {**os.environ, "NETRA_ICE_SERVERS": "", "NETRA_AUTH_SECRET": self._secret}
        if self.source is not None:  # another checkout's server; this one's load tool
            env["PYTHONPATH"] = str(self.source)
        self._process = subprocess.Popen([*self._wrap, *pinned(command, cpu)], env=env)
        await wait_for_port(self.port, self._process, "netra serve", self.host)
        self._pids = await self._worker_pids() if self.workers != 1 else [self._process.pid]
        if self.cores is not None:
            for index, pid in enumerate(self._pids):
                quota = CpuQuota(f"netra-bench-{self.host}-{self.port}-{index}", self.cores)
                self._quotas.append(quota)
                quota.add(pid)

    async def _worker_pids(self) -> list[int]:
        nodes = await cluster_nodes(self.url, self._token(admin=True), self.workers)
        return sorted(nodes.values())

    async def stop(self) -> None:
        stop_process(self._process, timeout=10.0)  # a supervisor waits on its workers
        self._process = None
        for quota in self._quotas:
            quota.close()
        self._quotas, self._pids = [], []

    async def rooms(self) -> dict[str, Any]:
        """What /api/rooms says (an admin's view: rooms, the cluster, the loop's lag)."""
        async with aiohttp.ClientSession() as http:
            async with http.get(
                f"{self.url}/api/rooms",
                headers={"Authorization": f"Bearer {self._token(admin=True)}"},
            ) as response:
                return dict(await response.json())

    async def subscriptions(self) -> list[dict[str, Any]]:
        """Every subscription this server sends, as /api/rooms lists them."""
        rooms = (await self.rooms())["rooms"]
        return [s for room in rooms for p in room["publications"] for s in p["subscriptions"]]

    async def diagnostics(self) -> dict[str, object]:
        return {"loop_lag": (await self.rooms())["loop_lag"]}

    async def _join(self, role: str) -> NetraSession:
        session = await NetraSession.connect(self.url, self.heartbeat)
        try:
            join: dict[str, object] = {"type": "join", "roomId": self.room, "role": role}
            if role == "streamer":
                join["token"] = self._token(publish=True)
            await session.send(join)
            await session.next("joined")
        except BaseException:
            await session.close()
            raise
        return session

    async def publish(self, pc: RTCPeerConnection) -> Session:
        session = await self._join("streamer")
        try:
            await pc.setLocalDescription(await pc.createOffer())
            await session.send({"type": "offer", "sdp": pc.localDescription.sdp})
            await session.send({"type": "candidate", "candidate": None})
            answer = await session.next("answer")
            await pc.setRemoteDescription(RTCSessionDescription(str(answer["sdp"]), "answer"))
        except BaseException:
            await session.close()
            raise
        return session

    async def subscribe(
        self, pc: RTCPeerConnection, prepared: Callable[[], None]
    ) -> tuple[Session, float]:
        session = await self._join("viewer")
        try:
            offer = await session.next("offer")
            await pc.setRemoteDescription(RTCSessionDescription(str(offer["sdp"]), "offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            prepared()
            await session.send({"type": "answer", "sdp": pc.localDescription.sdp})
            answered_at = time.perf_counter()
            await session.send({"type": "candidate", "candidate": None})
        except BaseException:
            await session.close()
            raise
        return session, answered_at
