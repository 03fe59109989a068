"""The load tool's native receive thread counts what the Python bot would count.

Datagrams with clear RTP headers go over loopback to a socket handed to the counter, and the
same datagrams go through bot.py's Python path; both must agree on packets, frames, late
packets, the sequence gaps to NACK, and, for video, the latency against the send log.
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from netra.bench import counter as counter_module
from netra.bench.bot import Inbound, ViewerBot
from netra.bench.counter import Counter, NativeInbound
from netra.bench.publisher import SendLog

AUDIO_PT, VIDEO_PT = 111, 96


def rtp(seq: int, ssrc: int, payload_type: int, size: int, marker: bool = False) -> bytes:
    header = bytes([0x80, payload_type | (0x80 if marker else 0)]) + seq.to_bytes(2, "big")
    return header + bytes(4) + ssrc.to_bytes(4, "big") + bytes(size - 12)


class Protocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: Any = None
        self.received: list[tuple[bytes, Any]] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.append((data, addr))


async def until(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def test_the_native_counter_is_built_here() -> None:
    assert counter_module.available(), "netra.bench._counter is missing: reinstall with gcc"


@dataclass
class Rig:
    """A counter over one send log, a bot socket it can adopt, and a sender to that socket."""

    log: SendLog
    counter: Counter
    transport: Any
    protocol: Protocol
    sender: socket.socket

    def send(self, data: bytes) -> None:
        self.sender.sendto(data, self.transport.get_extra_info("sockname"))

    def bot(self, index: int, native: bool = True) -> ViewerBot:
        """A bot that records the gaps it would NACK instead of sending NACKs."""
        bot = ViewerBot(index, self.log, counter=self.counter if native else None)
        bot.video_payload_types = {VIDEO_PT}
        bot.gaps = []  # type: ignore[attr-defined]
        bot.nack_gap = lambda *gap: bot.gaps.append(gap)  # type: ignore[attr-defined, method-assign]
        return bot


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    log = SendLog()
    counter = Counter(log, capacity=4)
    transport, protocol = await asyncio.get_running_loop().create_datagram_endpoint(
        Protocol, local_addr=("127.0.0.1", 0)
    )
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.1", 0))
    yield Rig(log, counter, transport, protocol, sender)
    await counter.close()
    transport.close()
    sender.close()


async def test_the_thread_counts_as_the_python_bot_does_and_hands_back_what_is_not_rtp(
    rig: Rig,
) -> None:
    native_bot, python_bot = rig.bot(0), rig.bot(1, native=False)
    try:
        ssrc = 0xA0D10
        first = [rtp(s, ssrc, AUDIO_PT, 100) for s in range(65530, 65536)]
        for data in first:  # counted in Python until the hand-over
            native_bot._on_rtp(data)
        assert rig.counter.adopt(native_bot, rig.protocol, native_bot.streams)
        assert isinstance(native_bot.streams[ssrc], NativeInbound)
        # Across the wrap, with a gap of 3, a duplicate and a late one, markers every 4th.
        seqs = [0, 1, 2, 6, 7, 7, 3, 8, 9, 10]
        rest = [rtp(s, ssrc, AUDIO_PT, 100 + s, marker=s % 4 == 0) for s in seqs]
        for data in rest:
            rig.send(data)
        stun = b"\x00\x01" + bytes(18)  # not RTP: aioice's
        rig.send(stun)
        for data in first + rest:
            python_bot._on_rtp(data)
        native, python = native_bot.streams[ssrc], python_bot.streams[ssrc]
        await until(lambda: native.packets == python.packets, "the thread to count them all")
        await until(lambda: rig.protocol.received != [], "the STUN datagram to come back")
        assert rig.protocol.received[0] == (stun, rig.sender.getsockname())
        gaps = native_bot.gaps, python_bot.gaps  # type: ignore[attr-defined]
        await until(lambda: gaps[0] == gaps[1], f"the same NACKs: {gaps}")
        assert gaps[0] == [(ssrc, 5, 3)]
        for field in ("packets", "frames", "late", "expected", "highest_ext"):
            assert getattr(native, field) == getattr(python, field), field
        assert native.late == 2
    finally:
        await native_bot.close()
        await python_bot.close()


async def test_video_latency_is_measured_against_the_publishers_send_log(rig: Rig) -> None:
    bot = rig.bot(0)
    try:
        ssrc = 0xB1DE0
        bot.streams[ssrc] = Inbound(ssrc, 999, video=True)
        assert rig.counter.adopt(bot, rig.protocol, bot.streams)
        # The server numbers the viewer's stream 3000 ahead of the publisher's and adds 20
        # bytes (tag, extensions): the bot finds its place by the sizes of 32 in a row. Sizes
        # as irregular as a real encoder's: an arithmetic pattern (200 + 37u mod 900) repeats
        # shifted by one byte every 73 packets, which the search may lock onto when the
        # counter's thread runs behind the sender.
        sizes = random.Random(7)
        for upstream in range(1000, 1100):
            size = sizes.randrange(200, 1100)
            rig.log.put(upstream, size, time.perf_counter())
            rig.send(rtp(upstream + 3000, ssrc, VIDEO_PT, size + 20))
        stream = bot.streams[ssrc]
        await until(lambda: stream.packets == 100, "100 video packets")
        samples = stream.latency_samples()
        assert 50 <= len(samples) <= 100 - 32 + 1  # after the 32 that locate it
        assert all(0 <= s < 0.5 for s in samples), samples
        stream.clear_latencies()
        assert stream.latency_samples() == []
    finally:
        await bot.close()
