"""The load tool's native receive path (counter.c): viewer bots count off the event loop.

A bot counts in Python (bot.py) until it has its first keyframe; then its ICE socket is handed
to a thread in C that drains every adopted socket with recvmmsg and counts from the clear RTP
header, so that one core drives hundreds more viewers than Python's ~9 us per packet allows.
aiortc keeps ICE, DTLS and RTCP: what is not RTP comes back here and goes to aioice as before,
and the gaps the thread found are NACKed from Python, as a browser would.

It needs the standard asyncio loop (uvloop's datagram transports cannot pause reading).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import TYPE_CHECKING, Any

from netra.bench.publisher import SendLog

if TYPE_CHECKING:
    from netra.bench.bot import Stream, ViewerBot

try:
    from netra.bench._counter import ffi, lib
except ImportError:  # not built here
    ffi = lib = None

POLL_SECONDS = 0.01  # how often STUN/RTCP and NACKs cross back to Python
STREAM_SLOTS = 4  # counter.c's STREAMS
PENDING_BATCH = 256
EVENT_BATCH = 1024


def available() -> bool:
    return lib is not None


class NativeInbound:
    """A bot's view of one SSRC that the thread counts; bot.py's Inbound, read from C."""

    __slots__ = ("_counter", "_stream", "keyframe_at", "report_expected", "report_received")

    def __init__(self, counter: Counter, stream: Any, keyframe_at: float | None) -> None:
        self._counter = counter  # the C memory `stream` points into lives as long as it
        self._stream = stream
        self.keyframe_at = keyframe_at
        self.report_expected = self.report_received = 0

    ssrc = property(lambda self: int(self._stream.ssrc))
    video = property(lambda self: bool(self._stream.video))
    packets = property(lambda self: int(self._stream.packets))
    octets = property(lambda self: int(self._stream.octets))
    frames = property(lambda self: int(self._stream.frames))
    late = property(lambda self: int(self._stream.late))
    highest_ext = property(lambda self: int(self._stream.highest_ext))

    @property
    def expected(self) -> int:
        return int(self._stream.highest_ext) - int(self._stream.first_ext) + 1

    def latency_samples(self) -> list[float]:
        count = min(int(self._stream.latency_count), len(self._stream.latencies))
        return list(ffi.unpack(self._stream.latencies, count))

    def clear_latencies(self) -> None:
        self._stream.latency_count = 0


class Counter:
    """One receive thread for every adopted bot of a run."""

    def __init__(self, log: SendLog, capacity: int = 2048) -> None:
        self._log_buffers = (
            ffi.from_buffer("double[]", log.sent_at),
            ffi.from_buffer("uint16_t[]", log.sizes),
            ffi.from_buffer("int64_t[]", log.newest_cell),
        )
        counter = lib.bench_counter_new(capacity, *self._log_buffers)
        if counter == ffi.NULL:
            raise MemoryError("bench counter")
        self._counter = counter
        self._capacity = capacity
        self._bots: list[ViewerBot | None] = []
        self._protocols: list[Any] = []
        self._pending = ffi.new("struct bench_pending[]", PENDING_BATCH)
        self._events = ffi.new("struct bench_event[]", EVENT_BATCH)
        self._thread = threading.Thread(
            target=lib.bench_run, args=(counter,), name="bench-counter", daemon=True
        )
        self._thread.start()
        self._poller: asyncio.Task[None] | None = asyncio.create_task(
            self._poll_forever(), name="bench-counter-poll"
        )

    def adopt(self, bot: ViewerBot, protocol: Any, streams: dict[int, Stream]) -> bool:
        """Take over counting for `bot`, whose ICE socket belongs to `protocol`, and replace
        its `streams` with views of the thread's counters; False (and the bot counts on in
        Python) if this loop cannot pause the socket or the table is full."""
        transport: Any = getattr(protocol, "transport", None)
        sock = None if transport is None else transport.get_extra_info("socket")
        slot = len(self._bots)
        if sock is None or not hasattr(transport, "pause_reading") or slot >= self._capacity:
            return False
        inbounds = [s for s in streams.values() if not isinstance(s, NativeInbound)]
        inbounds = inbounds[:STREAM_SLOTS]
        state = lib.bench_socket(self._counter, slot)
        state.fd = sock.fileno()
        types = sorted(bot.video_payload_types)[:8]
        for index, payload_type in enumerate(types):
            state.video_types[index] = payload_type
        state.video_type_count = len(types)
        for index, inbound in enumerate(inbounds):
            stream = state.streams[index]
            stream.used = 1
            stream.ssrc = inbound.ssrc
            stream.video = inbound.video
            stream.highest = inbound.highest
            stream.first_ext = inbound.first_ext
            stream.highest_ext = inbound.highest_ext
            stream.packets = inbound.packets
            stream.octets = inbound.octets
            stream.frames = inbound.frames
            stream.late = inbound.late
            stream.offset = -1 if inbound.offset is None else inbound.offset
            stream.size_delta = inbound.size_delta

        transport.pause_reading()
        if lib.bench_watch(self._counter, slot) != 0:
            transport.resume_reading()
            return False
        self._bots.append(bot)
        self._protocols.append(protocol)
        for index, inbound in enumerate(inbounds):
            streams[inbound.ssrc] = NativeInbound(self, state.streams[index], inbound.keyframe_at)
        return True

    def release(self, bot: ViewerBot) -> None:
        """Stop watching `bot`'s socket (before it closes); its counters stay readable."""
        if bot in self._bots:
            slot = self._bots.index(bot)
            lib.bench_unwatch(self._counter, slot)
            self._bots[slot] = None

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            self.poll()

    def poll(self) -> None:
        """Give aiortc what is not RTP, and NACK the gaps found since the last poll."""
        while True:
            taken = lib.bench_take_pending(self._counter, self._pending, PENDING_BATCH)
            for index in range(taken):
                item = self._pending[index]
                protocol = self._protocols[item.slot]
                if self._bots[item.slot] is None:
                    continue
                address = _address(bytes(ffi.buffer(item.address, item.address_len)))
                protocol.datagram_received(bytes(ffi.buffer(item.data, item.size)), address)
            if taken < PENDING_BATCH:
                break
        while True:
            taken = lib.bench_take_events(self._counter, self._events, EVENT_BATCH)
            for index in range(taken):
                event = self._events[index]
                bot = self._bots[event.slot]
                if bot is None:
                    continue
                if event.kind == lib.BENCH_GAP:
                    bot.nack_gap(event.ssrc, event.seq, event.count)
                else:
                    stream = lib.bench_socket(self._counter, event.slot).streams[event.stream]
                    bot.streams[event.ssrc] = NativeInbound(self, stream, None)
            if taken < EVENT_BATCH:
                break

    @property
    def dropped_pending(self) -> int:
        return int(lib.bench_dropped_pending(self._counter))

    async def close(self) -> None:
        """Stop the thread; the counters stay readable until this object is collected."""
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None
        lib.bench_stop(self._counter)
        await asyncio.to_thread(self._thread.join, 2.0)
        for slot, bot in enumerate(self._bots):
            if bot is not None:
                lib.bench_unwatch(self._counter, slot)
                self._bots[slot] = None

    def __del__(self) -> None:
        thread = getattr(self, "_thread", None)
        if thread is not None and not thread.is_alive():
            lib.bench_counter_free(self._counter)


def _address(raw: bytes) -> tuple[str, int] | None:
    """A struct sockaddr_in or sockaddr_in6 as Python's (host, port)."""
    if len(raw) < 8:
        return None
    family = int.from_bytes(raw[0:2], "little")
    port = int.from_bytes(raw[2:4], "big")
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[4:8]), port
    if family == socket.AF_INET6 and len(raw) >= 24:
        return socket.inet_ntop(socket.AF_INET6, raw[8:24]), port
    return None
