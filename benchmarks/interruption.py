"""What a viewer misses when its streamer's connection hiccups.

Starts `netra serve` (a subprocess, loopback only), publishes a 30 fps aiortc test stream
over Netra's WebSocket protocol, and has an aiortc viewer count the frames it decodes. Then,
for each scenario, the longest gap between decoded frames around the event and the frames
missed in it (gap × fps − 1, never below 0):

- `baseline`: nothing happens (the gap a healthy stream shows on this machine);
- `ws-drop`: the streamer's WebSocket drops for `--drop` seconds (2) and it resumes with its
  key; its peer connection stays up;
- `new-peer`: the streamer publishes again on a new peer connection (same codecs), as a page
  does when its peer connection fails: viewers carry on from the new one's first keyframe.

Run inside a private network namespace:
    unshare -n sh -c 'ip link set lo up; .venv/bin/python benchmarks/interruption.py --json'
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.contrib.media import MediaBlackhole
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError

from netra.auth import mint
from netra.media import aiortc_private

FPS = 30
ROOM = "interruption"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Client:
    """One signaling WebSocket: messages in a list, waited for by type."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.messages: list[dict[str, Any]] = []
        self._arrived = asyncio.Event()
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        self._http = aiohttp.ClientSession()
        try:
            self._ws = await self._http.ws_connect(self.url + "/ws")
        except BaseException:
            await self._http.close()
            raise
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._ws is not None
        async for frame in self._ws:
            self.messages.append(json.loads(frame.data))
            self._arrived.set()

    async def send(self, message: dict[str, Any]) -> None:
        assert self._ws is not None
        await self._ws.send_str(json.dumps(message))

    async def next(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                for message in self.messages:
                    if message.get("type") == kind:
                        self.messages.remove(message)
                        return message
                self._arrived.clear()
                await self._arrived.wait()

    async def drop(self) -> None:
        """Close the socket without `leave`: the server keeps the session."""
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._http is not None:
            await self._http.close()


async def publish(client: Client) -> RTCPeerConnection:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(AudioStreamTrack())
    pc.addTrack(VideoStreamTrack())
    await pc.setLocalDescription(await pc.createOffer())
    await client.send({"type": "offer", "sdp": pc.localDescription.sdp})
    await client.send({"type": "candidate", "candidate": None})
    answer = await client.next("answer")
    await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
    return pc


class Watcher:
    """An aiortc viewer that records when each video frame was decoded."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.frames: list[float] = []
        self.pc: RTCPeerConnection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._audio = MediaBlackhole()

    async def start(self) -> None:
        offer = await self.client.next("offer")
        pc = self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))

        @pc.on("track")
        def on_track(track: Any) -> None:
            if track.kind == "video":
                self._tasks.append(asyncio.create_task(self._count(track)))
            else:
                self._audio.addTrack(track)

        await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        await self.client.send({"type": "answer", "sdp": pc.localDescription.sdp})
        await self.client.send({"type": "candidate", "candidate": None})
        await self._audio.start()

    async def _count(self, track: Any) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                self.frames.append(time.monotonic())

    async def frames_after(self, count: int, timeout: float = 15.0) -> None:
        target = len(self.frames) + count
        async with asyncio.timeout(timeout):
            while len(self.frames) < target:
                await asyncio.sleep(0.02)

    def gap(self, start: float, end: float) -> float:
        """The longest time without a decoded frame within [start, end]."""
        times = [start] + [t for t in self.frames if start <= t <= end] + [end]
        return max(b - a for a, b in zip(times, times[1:], strict=False))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self._audio.stop()
        if self.pc is not None:
            await self.pc.close()


async def scenario(name: str, watcher: Watcher, event: Any, settle: float) -> dict[str, Any]:
    await watcher.frames_after(FPS)  # a second of normal play first
    start = time.monotonic()
    await event()
    await watcher.frames_after(FPS, timeout=20)  # a second of play after it
    end = time.monotonic() + settle
    await asyncio.sleep(settle)
    gap = watcher.gap(start, end)
    return {
        "scenario": name,
        "longest_gap_ms": round(gap * 1000, 1),
        "frames_missed": max(0, round(gap * FPS) - 1),
    }


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    secret = secrets.token_urlsafe(32)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "netra", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--candidate-address", "127.0.0.1", "--auth-secret", secret],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    aiortc_private.offer_host_addresses(["127.0.0.1"])
    url = f"http://127.0.0.1:{port}"
    streamer, viewer = Client(url), Client(url)
    watcher = Watcher(viewer)
    pcs: list[RTCPeerConnection] = []
    results = []
    try:
        async with asyncio.timeout(30):  # the server's start-up
            while True:
                try:
                    await streamer.connect()
                    break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
        token = mint(secret, room=ROOM, publish=True)
        await streamer.send({"type": "join", "roomId": ROOM, "role": "streamer", "token": token})
        joined = await streamer.next("joined")
        pcs.append(await publish(streamer))
        await viewer.connect()
        await viewer.send({"type": "join", "roomId": ROOM, "role": "viewer"})
        await watcher.start()

        async def nothing() -> None:
            pass

        async def ws_drop() -> None:
            nonlocal streamer, joined
            await streamer.drop()
            await asyncio.sleep(args.drop)  # the network is gone this long: the scenario
            streamer = Client(url)
            await streamer.connect()
            await streamer.send({"type": "join", "roomId": ROOM, "role": "streamer",
                                 "token": token, "resumeKey": joined["resumeKey"]})  # fmt: skip
            joined = await streamer.next("joined")
            assert joined["resumed"], joined

        async def new_peer() -> None:
            old = pcs[-1]
            pcs.append(await publish(streamer))
            await old.close()

        for name, event in (("baseline", nothing), ("ws-drop", ws_drop), ("new-peer", new_peer)):
            results.append(await scenario(name, watcher, event, settle=0.5))
        if args.metrics is not None:  # the live room, as Prometheus would scrape it now
            async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as reply:
                args.metrics.write_text(await reply.text())
    finally:
        await watcher.close()
        for pc in pcs:
            await pc.close()
        await streamer.drop()
        await viewer.drop()
        server.terminate()
        server.wait(10)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--drop", type=float, default=2.0, help="seconds the socket is down")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    parser.add_argument("--metrics", type=Path, help="save the server's /metrics here at the end")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    if args.json:
        print(json.dumps({"load_average": os.getloadavg(), "results": results}))
        return
    print(f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'scenario':<10} {'longest gap':>12} {'frames missed':>14}")
    for r in results:
        print(f"{r['scenario']:<10} {r['longest_gap_ms']:>10} ms {r['frames_missed']:>14}")


if __name__ == "__main__":
    main()
