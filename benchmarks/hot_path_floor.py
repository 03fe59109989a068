"""The floor of per-packet-viewer forwarding on this machine, now: each step timed alone.

    taskset -c 0 .venv/bin/python benchmarks/hot_path_floor.py [--packets 50000]

Times, per 1.2 kB packet, on one core: Netra's `forwarder.rewrite`; SRTP protect with
pylibsrtp (AEAD_AES_256_GCM, what aiortc negotiates); a UDP `sendto` on loopback with the
socket's own method and through uvloop's transport; and the sum Netra pays. The VM's speed
drifts, so quote these next to the ladder they explain (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import time

import uvloop
from pylibsrtp import Policy, Session

from netra.bench.procstat import calibration_ms
from netra.media.forwarder import TrackRewrite, rewrite

PACKET = bytes([0x80, 96, 0, 0]) + bytes(8) + os.urandom(1188)


def _timed(count: int, step: object) -> float:
    assert callable(step)
    start = time.process_time()
    for i in range(count):
        step(i)
    return (time.process_time() - start) / count * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--packets", type=int, default=50_000)
    count = parser.parse_args().packets
    loop = asyncio.get_running_loop()
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 64 << 20)
    address = receiver.getsockname()
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.setblocking(False)
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    policy = Policy(
        key=os.urandom(44),
        ssrc_type=Policy.SSRC_ANY_OUTBOUND,
        srtp_profile=Policy.SRTP_PROFILE_AEAD_AES_256_GCM,
    )
    session = Session(policy=policy)
    state = TrackRewrite(ssrc=1, payload_type=96, ts_offset=5, next_out_seq=9)
    rewrite(state, 0, True)

    def drain() -> None:
        try:
            while True:
                receiver.recv(2048, socket.MSG_DONTWAIT)
        except BlockingIOError:
            pass

    def protect(i: int) -> None:
        packet = bytearray(PACKET)
        packet[2], packet[3] = (i >> 8) & 0xFF, i & 0xFF
        session.protect(bytes(packet))

    def socket_sendto(i: int) -> None:
        sender.sendto(PACKET, address)
        if i % 1000 == 0:
            drain()

    def transport_sendto(i: int) -> None:
        transport.sendto(PACKET, address)
        if i % 1000 == 0:
            drain()

    results = {
        "calibration_ms": round(calibration_ms(), 1),
        "rewrite_us": _timed(count, lambda i: rewrite(state, (i + 1) & 0xFFFF, False)),
        "srtp_protect_us": _timed(count, protect),
        "socket_sendto_us": _timed(count, socket_sendto),
        "uvloop_transport_sendto_us": _timed(count, transport_sendto),
    }
    results["floor_us"] = results["srtp_protect_us"] + results["socket_sendto_us"]
    for name, value in results.items():
        print(f"{name:28s} {value:8.2f}")
    print(json.dumps({k: round(v, 2) for k, v in results.items()}))
    transport.close()


if __name__ == "__main__":
    uvloop.run(main())
