"""Viewer churn against a real `netra serve`: does the server give back what viewers took?

    unshare -n sh -c 'ip link set lo up; .venv/bin/python benchmarks/churn.py \
        [--cycles 1000] [--concurrency 8] [--gc netra|netra-closed|legacy|python[,...]] \
        [--lean-receivers] [--pin] [--json F] [--chart F]'

What runs (everything on 127.0.0.1, loopback ICE candidates only, no STUN):
- the server: `netra serve` in a subprocess, started through this script's `serve` command,
  which is netra.cli's `serve` with two additions for measuring (module docstring of
  `serve_probe` below): the GC policy named by `--gc`, so that the old and the new policy run
  the same code, and one read-only route, GET /_probe, for what the server does not export
  (its asyncio tasks, the Peer and RTCPeerConnection objects it still holds, GC counters);
- one streamer: netra bench's synthetic publisher (720p30 VP8 at 2.5 Mbit/s + Opus, about 300
  RTP packets a second; netra/bench/publisher.py);
- `--concurrency` viewer loops that together run `--cycles` cycles. One cycle is a viewer's
  whole life over Netra's WebSocket protocol: join as viewer, answer the server's offer with
  a real aiortc peer connection, wait until at least one RTP packet of the stream arrives,
  send `leave`, close the peer connection and the socket.

What it records, once a second (`--interval`): the server's RSS (/proc/PID/status) and open
file descriptors (/proc/PID/fd), its asyncio tasks and Peer/RTCPeerConnection objects
(/_probe), viewers in the room and the event loop's lag (/api/rooms, admin token), and the
garbage collector's counters (full collections, their pauses).

Baseline, and what "back to baseline" means here:
- Baseline: after `--warmup` cycles (default 5 x concurrency) have run and left, the room has
  no viewer, and the server has been left alone for `--quiet` seconds (default 15, longer
  than netra.memory needs to sweep after the last departure). It is taken after warm-up, not
  at start, because the first viewers make things that stay for the server's life (aiortc's
  codec tables, OpenSSL contexts, the allocator's arenas, aiohttp's caches); what must not
  grow is what churn adds on top. Every policy gets the same warm-up and the same wait.
- End: the same reading, taken the same way: once the last cycle has left and the room is
  empty, after the same `--quiet` seconds. No collection is forced by the benchmark: what
  memory comes back is what the server's own policy gives back.
- Pass: RSS within 10 MB of the baseline; descriptors, asyncio tasks, Peer objects and open
  peer connections equal to the baseline. (RTCPeerConnection objects not yet freed, garbage
  included, are reported but not judged: they are what the policy leaves to collect.) When
  the end reading misses, the script keeps reading for up to `--settle` seconds and reports
  whether, and when, the server got there.

Prints a table as it goes and a verdict; `--json` writes every sample, `--chart` a PNG of RSS
(and descriptors, peer connections) against cycles. Several policies (`--gc legacy,netra`)
run one after the other, each on a fresh server, and share one chart.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import secrets
import subprocess
import sys
import time
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from netra.auth import mint
from netra.bench import procstat
from netra.bench.target import NetraSession, free_port, pinned, stop_process, wait_for_port
from netra.media import aiortc_private

ROOM = "churn"
RSS_SLACK_MB = 10.0
POLICIES = ("netra", "netra-closed", "legacy", "python")


# --- the server, and what it says about itself ------------------------------------------------


def serve_probe(policy: str, serve_args: list[str], lean_receivers: bool = False) -> None:
    """`netra serve` as netra.cli runs it, plus what this benchmark measures with.

    - `policy` picks the garbage-collector policy: "netra" is netra.memory as it stands,
      its FULL_COLLECTIONS started as app.py is asked to (without a count of closed peers);
      "netra-closed" the same, told how many Peers have closed (counted here, from
      Peer.close); "legacy" is the policy issue 9 replaced (gc.freeze() after start-up,
      thresholds 700/10/100); "python" is CPython's defaults, nothing frozen. netra.memory's
      pause recorder is installed with every policy, so that they are timed the same way.
    - GET /_probe answers with the number of asyncio tasks, of Netra Peer and aiortc
      RTCPeerConnection objects not yet freed (counted with weak references, so objects that
      are garbage but not yet collected count too), of peer connections not closed, and the
      GC counters (netra.memory.snapshot()).
    - `lean_receivers` is an experiment, not Netra: a viewer's sendonly transceivers still get
      an RTCRtpReceiver, and aiortc gives a video one a RemoteBitrateEstimator holding 1,000
      RateBucket objects, never used. Dropping it after the offer shows what a full
      collection would cost without them.
    """
    import aiortc
    from aiohttp import web

    import netra.app
    from netra import memory
    from netra.cli import main
    from netra.media import peer as peer_module

    pcs: weakref.WeakSet[Any] = weakref.WeakSet()
    peers: weakref.WeakSet[Any] = weakref.WeakSet()
    _count_instances(aiortc.RTCPeerConnection, pcs)
    _count_instances(peer_module.Peer, peers)

    async def probe(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "tasks": len(asyncio.all_tasks()),
                "peers_alive": len(peers),
                "pcs_alive": len(pcs),
                "pcs_open": sum(1 for pc in list(pcs) if pc.connectionState != "closed"),
                "gc": memory.snapshot(),
                "gc_recent_full_ms": [round(v, 2) for v in memory.PAUSES.recent_full_ms],
                "gc_recent_full_cpu_ms": [round(v, 2) for v in memory.PAUSES.recent_full_cpu_ms],
            }
        )

    async def collect(request: web.Request) -> web.Response:
        """A full collection now, timed: what one costs with this many objects."""
        objects = len(gc.get_objects())
        started, started_cpu = time.perf_counter(), time.thread_time()
        collected = gc.collect()
        ms = (time.perf_counter() - started) * 1000
        cpu_ms = (time.thread_time() - started_cpu) * 1000
        return web.json_response(
            {
                "ms": round(ms, 2),
                "cpu_ms": round(cpu_ms, 2),
                "objects": objects,
                "collected": collected,
            }
        )

    async def trim(request: web.Request) -> web.Response:
        """glibc's malloc_trim(0): what RSS the C heap would give back to the system."""
        import ctypes

        before = procstat.rss_bytes(os.getpid())
        started = time.perf_counter()
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        ms = (time.perf_counter() - started) * 1000
        after = procstat.rss_bytes(os.getpid())
        return web.json_response(
            {"ms": round(ms, 2), "rss_before_mb": before / 2**20, "rss_after_mb": after / 2**20}
        )

    async def garbage(request: web.Request) -> web.Response:
        """A full collection that keeps what it found: which types the cycles were made of."""
        from collections import Counter

        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            gc.collect()
            kinds = Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.garbage)
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
        return web.json_response({"objects": sum(kinds.values()), "top": kinds.most_common(40)})

    create_app = netra.app.create_app

    closed = 0  # Peer.close() calls that closed a peer ("netra-closed")
    close = peer_module.Peer.close

    async def counted_close(self: Any) -> None:
        nonlocal closed
        closed += 0 if self.closed else 1
        await close(self)

    peer_module.Peer.close = counted_close  # type: ignore[method-assign]

    async def start_collections(app: web.Application) -> None:
        # Idempotent: once app.py starts it too, its own call is the one that counts.
        if policy == "netra-closed":
            memory.FULL_COLLECTIONS.start(closed=lambda: closed)
        else:
            memory.FULL_COLLECTIONS.start()

    async def stop_collections(app: web.Application) -> None:
        memory.FULL_COLLECTIONS.stop()

    def create_probed_app(*args: Any, **kwargs: Any) -> web.Application:
        app = create_app(*args, **kwargs)
        if policy.startswith("netra"):
            app.on_startup.append(start_collections)
            app.on_cleanup.append(stop_collections)
        else:  # the policies compared with it have no scheduler, even once app.py starts it
            memory.FULL_COLLECTIONS.start = lambda closed=None: None  # type: ignore[method-assign]
        app.router.add_get("/_probe", probe)
        app.router.add_post("/_probe/collect", collect)
        app.router.add_post("/_probe/garbage", garbage)
        app.router.add_post("/_probe/trim", trim)
        return app

    def legacy() -> None:
        gc.freeze()
        gc.set_threshold(700, 10, 100)
        memory.PAUSES.install()

    def python_defaults() -> None:
        gc.set_threshold(700, 10, 10)
        memory.PAUSES.install()

    if lean_receivers:
        offer = peer_module.Peer.offer

        async def lean_offer(self: Any, publications: Any) -> str:
            sdp: str = await offer(self, publications)
            for transceiver in self.pc.getTransceivers():
                if transceiver.direction == "sendonly":
                    transceiver.receiver._RTCRtpReceiver__remote_bitrate_estimator = None
            return sdp

        peer_module.Peer.offer = lean_offer  # type: ignore[method-assign]

    configure = {
        "netra": memory.configure_gc,
        "netra-closed": memory.configure_gc,
        "legacy": legacy,
        "python": python_defaults,
    }
    netra.app.create_app = create_probed_app  # type: ignore[assignment]
    netra.app.configure_gc = configure[policy]  # type: ignore[attr-defined]
    main(["serve", *serve_args])


def _count_instances(cls: type, alive: weakref.WeakSet[Any]) -> None:
    original = cls.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        alive.add(self)

    cls.__init__ = __init__  # type: ignore[misc]


class Server:
    """`netra serve` (through `serve_probe`) in a subprocess on 127.0.0.1."""

    def __init__(
        self,
        policy: str,
        cpu: int | None = None,
        log: Path | None = None,
        room: str = ROOM,
        lean_receivers: bool = False,
        secret: str | None = None,
        log_level: str = "WARNING",
    ) -> None:
        self.log_level = log_level
        self.policy = policy
        self.lean_receivers = lean_receivers
        self.room = room
        self.cpu = cpu
        self.port = 0  # set by start(), or by whoever reaches a server started elsewhere
        self.secret = secret or secrets.token_urlsafe(48)
        self._log = log
        self._process: subprocess.Popen[bytes] | None = None
        self._http: aiohttp.ClientSession | None = None
        self._admin = mint(self.secret, room="*", admin=True, ttl=24 * 3600)

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.port = free_port()
        command = [
            sys.executable, str(Path(__file__).resolve()), "serve", "--gc", self.policy,
            *(["--lean-receivers"] if self.lean_receivers else []), "--",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--candidate-address", "127.0.0.1", "--log-level", self.log_level,
            # One address joins a thousand times here, where real viewers come from many.
            "--join-rate", "1000000", "--max-connections-per-address", "100000",
            "--message-rate", "1000",
        ]  # fmt: skip
        env = {**os.environ, "NETRA_ICE_SERVERS": "", "NETRA_AUTH_SECRET": self.secret}
        stderr = None if self._log is None else self._log.open("ab")
        self._process = subprocess.Popen(pinned(command, self.cpu), env=env, stderr=stderr)
        if stderr is not None:
            stderr.close()
        await wait_for_port(self.port, self._process, "netra serve")
        self._http = aiohttp.ClientSession()

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
        stop_process(self._process)
        self._process = None

    async def _get(self, path: str) -> dict[str, Any]:
        assert self._http is not None
        async with self._http.get(
            self.url + path,
            headers={"Authorization": f"Bearer {self._admin}"},
            timeout=aiohttp.ClientTimeout(total=10),
        ) as response:
            response.raise_for_status()
            result: dict[str, Any] = await response.json()
            return result

    async def rooms(self) -> dict[str, Any]:
        return await self._get("/api/rooms")

    async def room_state(self) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """This server's room as /api/rooms lists it (None when closed), and its loop lag."""
        rooms = await self.rooms()
        room = next((r for r in rooms.get("rooms", []) if r.get("id") == self.room), None)
        return room, rooms.get("loop_lag", {})

    async def probe(self) -> dict[str, Any]:
        return await self._get("/_probe")

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def rss_mb(self) -> float:
        return procstat.rss_bytes(self.pid) / 2**20

    # netra.bench's Target protocol, for its SyntheticPublisher
    name = "netra"

    async def publish(self, pc: RTCPeerConnection) -> NetraSession:
        signaling = await NetraSession.connect(self.url)
        try:
            token = mint(self.secret, room=self.room, publish=True, ttl=24 * 3600)
            await signaling.send(
                {"type": "join", "roomId": self.room, "role": "streamer", "token": token}
            )
            await signaling.next("joined")
            await pc.setLocalDescription(await pc.createOffer())
            await signaling.send({"type": "offer", "sdp": pc.localDescription.sdp})
            await signaling.send({"type": "candidate", "candidate": None})
            answer = await signaling.next("answer")
            await pc.setRemoteDescription(RTCSessionDescription(str(answer["sdp"]), "answer"))
        except BaseException:
            await signaling.close()
            raise
        return signaling

    async def subscribe(
        self, pc: RTCPeerConnection, prepared: Callable[[], None]
    ) -> tuple[NetraSession, float]:
        """Join as a viewer and answer the server's offer (netra bench's ViewerBot calls it)."""
        signaling = await NetraSession.connect(self.url)
        try:
            await signaling.send({"type": "join", "roomId": self.room, "role": "viewer"})
            await signaling.next("joined")
            offer = await signaling.next("offer")
            await pc.setRemoteDescription(RTCSessionDescription(str(offer["sdp"]), "offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            prepared()
            await signaling.send({"type": "answer", "sdp": pc.localDescription.sdp})
            answered_at = time.perf_counter()
            await signaling.send({"type": "candidate", "candidate": None})
        except BaseException:
            await signaling.close()
            raise
        return signaling, answered_at

    async def collect(self) -> dict[str, Any]:
        """Have the server run a full collection now and say how long it took."""
        assert self._http is not None
        async with self._http.post(self.url + "/_probe/collect") as response:
            result: dict[str, Any] = await response.json()
            return result


# --- one viewer's life ---------------------------------------------------------------------


async def view_once(url: str, timeout: float, room: str = ROOM) -> float:
    """Join, answer the offer, wait for the first RTP packet, leave and close. Returns the
    seconds from join to that packet."""
    started = time.perf_counter()
    signaling = await NetraSession.connect(url)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        async with asyncio.timeout(timeout):
            await signaling.send({"type": "join", "roomId": room, "role": "viewer"})
            await signaling.next("joined")
            offer = await signaling.next("offer")
            await pc.setRemoteDescription(RTCSessionDescription(str(offer["sdp"]), "offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            connected = asyncio.Event()

            @pc.on("connectionstatechange")
            def _state() -> None:
                if pc.connectionState in ("connected", "failed", "closed"):
                    connected.set()

            media = asyncio.Event()
            # Count, do not decode: the tap takes SRTP datagrams before aiortc sees them.
            dtls = pc.getTransceivers()[0].receiver.transport
            aiortc_private.tap_datagrams(dtls, lambda _: media.set())
            await signaling.send({"type": "answer", "sdp": pc.localDescription.sdp})
            await signaling.send({"type": "candidate", "candidate": None})
            await media.wait()
            await connected.wait()  # closing mid-handshake would leave aiortc's task failing
            if pc.connectionState != "connected":
                raise RuntimeError(f"viewer peer connection {pc.connectionState}")
            arrived = time.perf_counter() - started
            await signaling.send({"type": "leave"})
            return arrived
    finally:
        await pc.close()
        await signaling.close()


# --- the run -------------------------------------------------------------------------------


@dataclass
class Sample:
    t: float  # seconds since the churn started (negative: warm-up)
    cycles: int  # cycles completed
    rss_mb: float
    fds: int
    viewers: int | None  # in the room, from /api/rooms
    tasks: int | None
    peers_alive: int | None
    pcs_alive: int | None
    pcs_open: int | None
    loop_lag_max_ms: float | None
    loop_lag_p99_ms: float | None
    full_collections: int | None
    full_pause_max_ms: float | None
    full_pause_total_ms: float | None
    loadavg: tuple[float, float, float] = field(default_factory=os.getloadavg)


@dataclass
class Run:
    policy: str
    options: dict[str, Any]
    baseline: Sample | None = None
    end: Sample | None = None
    settled: Sample | None = None  # the first reading after `end` that passed, if `end` missed
    settled_after_s: float | None = None
    samples: list[Sample] = field(default_factory=list)
    cycles_done: int = 0
    failures: list[str] = field(default_factory=list)
    first_packet_s: list[float] = field(default_factory=list)
    full_pauses_ms: list[float] = field(default_factory=list)  # wall time, during the run
    full_pauses_cpu_ms: list[float] = field(default_factory=list)  # CPU time of the same
    verdict: dict[str, Any] = field(default_factory=dict)


async def read(server: Server, t: float, cycles: int) -> Sample:
    # One after the other: a request handled meanwhile would be counted as a task.
    probe = await server.probe()
    room, lag = await server.room_state()
    stats = probe.get("gc", {})
    return Sample(
        t=round(t, 2),
        cycles=cycles,
        rss_mb=round(server.rss_mb(), 1),
        fds=server.fds(),
        viewers=None if room is None else int(room["viewers"]),
        tasks=probe.get("tasks"),
        peers_alive=probe.get("peers_alive"),
        pcs_alive=probe.get("pcs_alive"),
        pcs_open=probe.get("pcs_open"),
        loop_lag_max_ms=lag.get("max_ms"),
        loop_lag_p99_ms=lag.get("p99_ms"),
        full_collections=_at(stats.get("collections"), 2),
        full_pause_max_ms=_at(stats.get("pause_ms_max"), 2),
        full_pause_total_ms=_at(stats.get("pause_ms_total"), 2),
    )


def _at(values: Any, index: int) -> Any:
    return values[index] if isinstance(values, list) and len(values) > index else None


async def wait_room_empty(server: Server, timeout: float) -> None:
    """Bounded: until the room lists no viewer (the server has handled every leave)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        room, _ = await server.room_state()
        if room is not None and room["viewers"] == 0:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"viewers still in the room {timeout:g} s after the last one left")


def verdict(baseline: Sample, end: Sample) -> dict[str, Any]:
    checks = {
        "rss_mb": (end.rss_mb - baseline.rss_mb, abs(end.rss_mb - baseline.rss_mb) <= RSS_SLACK_MB),
        "fds": (end.fds - baseline.fds, end.fds == baseline.fds),
        "tasks": (_diff(end.tasks, baseline.tasks), end.tasks == baseline.tasks),
        "peers_alive": (
            _diff(end.peers_alive, baseline.peers_alive),
            end.peers_alive == baseline.peers_alive,
        ),
        "pcs_open": (_diff(end.pcs_open, baseline.pcs_open), end.pcs_open == baseline.pcs_open),
    }
    return {
        "passed": all(ok for _, ok in checks.values()),
        "delta": {k: (round(v, 1) if isinstance(v, float) else v) for k, (v, _) in checks.items()},
        "ok": {k: ok for k, (_, ok) in checks.items()},
    }


def _diff(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else a - b


HEADER = (
    f"{'t s':>6} {'cycles':>6} {'RSS MB':>7} {'fds':>5} {'view':>4} {'tasks':>5} {'Peers':>5} "
    f"{'PCs':>5} {'open':>4} {'lag p99/max':>11} {'full GC':>7} {'max ms':>6} {'load':>5}"
)


def row(s: Sample) -> str:
    def n(v: Any) -> str:
        return "-" if v is None else str(v)

    def f(v: Any) -> str:
        return "-" if v is None else f"{v:.0f}"

    return (
        f"{s.t:>6.0f} {s.cycles:>6} {s.rss_mb:>7.1f} {s.fds:>5} {n(s.viewers):>4} "
        f"{n(s.tasks):>5} {n(s.peers_alive):>5} {n(s.pcs_alive):>5} {n(s.pcs_open):>4} "
        f"{f(s.loop_lag_p99_ms) + '/' + f(s.loop_lag_max_ms):>11} {n(s.full_collections):>7} "
        f"{f(s.full_pause_max_ms):>6} {s.loadavg[0]:>5.2f}"
    )


async def churn(
    server: Server,
    run: Run,
    cycles: int,
    concurrency: int,
    cycle_timeout: float,
    deadline: float,
    on_cycle: Callable[[], None],
) -> None:
    """`cycles` viewer lives over `concurrency` loops; bounded by count and by `deadline`."""
    remaining = cycles

    async def loop() -> None:
        nonlocal remaining
        while remaining > 0 and time.monotonic() < deadline:
            remaining -= 1
            try:
                run.first_packet_s.append(await view_once(server.url, cycle_timeout, server.room))
            except Exception as exc:  # counted and reported; the churn goes on
                run.failures.append(f"{type(exc).__name__}: {exc}"[:200])
            on_cycle()

    await asyncio.gather(*(loop() for _ in range(concurrency)))


async def run_policy(policy: str, args: argparse.Namespace) -> Run:
    from netra.bench.clip import load_clip
    from netra.bench.publisher import SyntheticPublisher

    run = Run(policy=policy, options={k: str(v) for k, v in vars(args).items()})
    server = Server(
        policy, cpu=0 if args.pin else None, log=args.server_log, lean_receivers=args.lean_receivers
    )
    await server.start()
    publisher = SyntheticPublisher(load_clip())
    sampler: asyncio.Task[None] | None = None
    started = time.monotonic()
    try:
        await publisher.start(server)  # type: ignore[arg-type]  # duck-typed Target
        print(f"\n== {policy}: server pid {server.pid}, publisher live", flush=True)
        deadline = started + args.time_limit
        done = 0

        def count() -> None:
            nonlocal done
            done += 1

        # Warm-up: whatever the first viewers make once and keep, then the baseline.
        await churn(server, run, args.warmup, args.concurrency, args.cycle_timeout, deadline, count)
        await wait_room_empty(server, 30)
        await asyncio.sleep(args.quiet)  # the same quiet time before baseline and end
        run.baseline = await read(server, 0.0, 0)
        print(HEADER)
        print(row(run.baseline), " baseline", flush=True)
        run.failures.clear()
        run.first_packet_s.clear()
        done = 0
        t0 = time.monotonic()

        async def sample() -> None:
            next_print = 0.0
            while True:
                await asyncio.sleep(args.interval)
                s = await read(server, time.monotonic() - t0, done)
                run.samples.append(s)
                if s.t >= next_print:
                    print(row(s), flush=True)
                    next_print = s.t + args.print_every

        sampler = asyncio.create_task(sample(), name="churn-sampler")
        await churn(server, run, args.cycles, args.concurrency, args.cycle_timeout, deadline, count)
        run.cycles_done = done
        await wait_room_empty(server, 30)
        await asyncio.sleep(args.quiet)
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        run.end = await read(server, time.monotonic() - t0, done)
        print(row(run.end), " end", flush=True)
        run.verdict = verdict(run.baseline, run.end)
        if not run.verdict["passed"]:
            # Did it get there later? Bounded by --settle; reported, not counted as a pass.
            settle_deadline = time.monotonic() + args.settle
            while time.monotonic() < settle_deadline:
                await asyncio.sleep(1.0)
                s = await read(server, time.monotonic() - t0, done)
                if verdict(run.baseline, s)["passed"]:
                    run.settled = s
                    run.settled_after_s = round(s.t - run.end.t, 1)
                    break
        probe = await server.probe()
        during = probe["gc"]["collections"][2] - (run.baseline.full_collections or 0)
        for name, pauses in (
            ("gc_recent_full_ms", run.full_pauses_ms),
            ("gc_recent_full_cpu_ms", run.full_pauses_cpu_ms),
        ):
            recent = probe.get(name, [])
            pauses.extend(recent[len(recent) - min(len(recent), during) :])
    finally:
        if sampler is not None:
            sampler.cancel()
        await publisher.close()
        await server.stop()
    return run


def summarise(run: Run) -> None:
    b, e, v = run.baseline, run.end, run.verdict
    assert b is not None and e is not None
    rss = [s.rss_mb for s in run.samples]
    lags = [s.loop_lag_max_ms for s in run.samples if s.loop_lag_max_ms is not None]
    pauses = sorted(run.full_pauses_ms)
    cpu = sorted(run.full_pauses_cpu_ms)
    first = sorted(run.first_packet_s)
    print(
        f"{run.policy}: {run.cycles_done} cycles, {len(run.failures)} failed; "
        f"RSS baseline {b.rss_mb:.1f} MB, peak {max(rss, default=b.rss_mb):.1f}, "
        f"end {e.rss_mb:.1f} ({e.rss_mb - b.rss_mb:+.1f}); "
        f"fds {b.fds}->{e.fds}, tasks {b.tasks}->{e.tasks}, Peers {b.peers_alive}->"
        f"{e.peers_alive}, PCs alive {b.pcs_alive}->{e.pcs_alive}, open {b.pcs_open}->"
        f"{e.pcs_open}"
    )
    if pauses:
        full = (e.full_collections or 0) - (b.full_collections or 0)
        print(
            f"  full collections during the run: {full}, pause p50/p99/max "
            f"{_pct(pauses, 0.5):.1f}/{_pct(pauses, 0.99):.1f}/{pauses[-1]:.1f} ms, "
            f"of CPU {_pct(cpu, 0.5):.1f}/{_pct(cpu, 0.99):.1f}/{cpu[-1]:.1f} ms"
        )
    if lags:
        print(f"  server loop lag, worst 10 s max seen: {max(lags):.0f} ms")
    if first:
        print(f"  join to first packet p50/p95: {_pct(first, 0.5):.2f}/{_pct(first, 0.95):.2f} s")
    print(f"  verdict: {'PASS' if v['passed'] else 'FAIL'} {v['delta']}")
    if run.settled is not None:
        print(f"  (reached the baseline {run.settled_after_s} s after the end reading)")
    for failure in run.failures[:5]:
        print(f"  failure: {failure}")


def _pct(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def new_chart() -> tuple[Any, Any]:
    """A figure of three panels side by side, drawn without a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(1, 3, figsize=(15, 4.5))


def save_chart(
    path: Path, figure: Any, axes: Any, titles: tuple[str, ...], xlabel: str, title: str
) -> None:
    import matplotlib.pyplot as plt

    for axis, panel in zip(axes, titles, strict=True):
        axis.set_xlabel(xlabel)
        axis.set_title(panel)
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def chart(path: Path, runs: list[Run]) -> None:
    figure, axes = new_chart()
    for run in runs:
        assert run.baseline is not None
        xs = [s.cycles for s in run.samples]
        axes[0].plot(xs, [s.rss_mb for s in run.samples], label=run.policy)
        axes[0].axhline(run.baseline.rss_mb, linestyle=":", linewidth=1)
        axes[1].plot(xs, [s.pcs_alive for s in run.samples], label=f"{run.policy} PCs alive")
        axes[1].plot(xs, [s.fds for s in run.samples], linestyle="--", label=f"{run.policy} fds")
        axes[2].plot(xs, [s.loop_lag_max_ms for s in run.samples], label=run.policy)
    titles = ("server RSS, MB", "RTCPeerConnections not freed; fds", "server loop lag, max ms")
    save_chart(path, figure, axes, titles, "cycles", "viewer churn: join, first packet, leave")


async def main(args: argparse.Namespace) -> int:
    aiortc_private.offer_host_addresses(["127.0.0.1"])  # loopback only, never the LAN
    if args.pin:
        os.sched_setaffinity(0, {1})
    print(f"load average at start: {os.getloadavg()}", flush=True)
    runs = []
    for policy in args.gc.split(","):
        run = await run_policy(policy, args)
        summarise(run)
        runs.append(run)
    print(f"load average at end: {os.getloadavg()}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(r) for r in runs], indent=1) + "\n")
        print(f"wrote {args.json}")
    if args.chart:
        chart(args.chart, runs)
        print(f"wrote {args.chart}")
    return 0 if all(r.verdict.get("passed") for r in runs) else 1


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cycles", type=int, default=1000, help="viewer lives to run")
    parser.add_argument("--concurrency", type=int, default=8, help="viewers at once")
    parser.add_argument("--warmup", type=int, default=None, help="cycles before the baseline")
    parser.add_argument(
        "--gc", default="netra", help=f"server GC policy, or a comma list: {', '.join(POLICIES)}"
    )
    parser.add_argument("--quiet", type=float, default=15.0, help="seconds before each reading")
    parser.add_argument("--settle", type=float, default=60.0, help="seconds to wait on a miss")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between samples")
    parser.add_argument("--print-every", type=float, default=10.0, help="seconds between rows")
    parser.add_argument("--cycle-timeout", type=float, default=30.0, help="seconds per cycle")
    parser.add_argument("--time-limit", type=float, default=1800.0, help="seconds per policy")
    parser.add_argument("--pin", action="store_true", help="server on CPU 0, this on CPU 1")
    parser.add_argument(
        "--lean-receivers",
        action="store_true",
        help="experiment: the server drops its viewers' unused bitrate estimators",
    )
    parser.add_argument("--server-log", type=Path, help="append the server's stderr here")
    parser.add_argument("--json", type=Path, help="write every sample here")
    parser.add_argument("--chart", type=Path, help="write a PNG chart here")
    args = parser.parse_args(argv)
    if args.warmup is None:
        args.warmup = 5 * args.concurrency
    for policy in args.gc.split(","):
        if policy not in POLICIES:
            parser.error(f"--gc: {policy!r} is not one of {', '.join(POLICIES)}")
    return args


def serve_main(argv: list[str]) -> None:
    """`churn.py serve --gc POLICY [--lean-receivers] -- <netra serve flags>`."""
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="churn.py serve")
    parser.add_argument("--gc", choices=POLICIES, required=True)
    parser.add_argument("--lean-receivers", action="store_true")
    args = parser.parse_args(argv[:split])
    serve_probe(args.gc, argv[split + 1 :], args.lean_receivers)


def run_async(make: Callable[[], Any]) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(make())
    return uvloop.run(make())


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve_main(sys.argv[2:])
    else:
        options = parse(sys.argv[1:])
        sys.exit(run_async(lambda: main(options)))
