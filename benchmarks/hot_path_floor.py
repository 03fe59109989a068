"""The per-packet-viewer floor on this machine, and Netra's two fan-out paths against it.

    .venv/bin/python benchmarks/hot_path_floor.py [--viewers 200] [--packets 2000]
        [--rounds 7] [--json FILE]

One 1,200-byte RTP packet at a time goes to V viewers, each with its own sending socket, its
own SRTP session (AEAD_AES_256_GCM, what aiortc negotiates with Chromium) and its own loopback
receiver. A C program (floor.c, built here with gcc) drains every receiver on core 1 with epoll
and recvmmsg, so the receiver cannot be the bottleneck; the sender is pinned to core 0. The
variants run interleaved, round after round:

- kernel: floor.c's own loop of `sendto`, no SRTP and no Python: the kernel's cost per datagram
  (with loopback delivery, which this kernel does in the sender's context);
- native: Netra's native fan-out, one call per packet (patch, srtp_protect, sendto per viewer);
- python: Netra's Python path (PythonViewer.forward per viewer), the reference and fallback.

Cost = the sending process's CPU time per packet-viewer, in microseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pylibsrtp import Policy, Session

from netra.bench.procstat import calibration_ms
from netra.media import fanout
from netra.media.aiortc_private import SrtpRoute
from netra.media.fanout import NativeFanout, NativeViewer, PythonViewer, ViewerState

HERE = Path(__file__).parent
SIZE = 1200  # RTP bytes; 1,216 on the wire after the GCM tag
VARIANTS = ("kernel", "native", "python")


def build(directory: Path) -> Path:
    binary = directory / "floor"
    subprocess.run(
        ["gcc", "-O2", "-Wall", "-o", str(binary), str(HERE / "floor.c")], check=True
    )
    return binary


class Member:
    def __init__(self, viewer: NativeViewer) -> None:
        self.viewer: fanout.Viewer | None = viewer

    def on_events(self, events: int) -> None:
        pass


def routes(ports: list[int]) -> list[SrtpRoute]:
    made = []
    for port in ports:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        session = Session(
            policy=Policy(
                key=os.urandom(44),
                ssrc_type=Policy.SSRC_ANY_OUTBOUND,
                srtp_profile=Policy.SRTP_PROFILE_AEAD_AES_256_GCM,
            )
        )
        made.append(SrtpRoute(sock, ("127.0.0.1", port), session))
    return made


def state(index: int) -> ViewerState:
    return ViewerState(ssrc=index + 1, payload_type=96, ts_offset=index, next_out_seq=index)


def packet(seq: int) -> bytes:
    return bytes([0x80, 96]) + seq.to_bytes(2, "big") + bytes(8) + b"\xab" * (SIZE - 12)


class Runner:
    def __init__(self, binary: Path, ports: list[int], packets: int) -> None:
        self.binary = binary
        self.ports = ports
        self.packets = packets
        self.seq = 0
        fanout.select("native")
        self.group = NativeFanout()
        self.native = []
        for index, route in enumerate(routes(ports)):
            member = Member(NativeViewer(route, state(index)))
            self.group.add(member)
            self.native.append(member)
        self.python = [PythonViewer(r, state(i)) for i, r in enumerate(routes(ports))]

    def kernel(self) -> float:
        rounds = str(self.packets)
        out = subprocess.run(
            ["taskset", "-c", "0", str(self.binary), "send", rounds, str(SIZE + 16)]
            + [str(p) for p in self.ports],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        return float(out[0])

    def _timed(self, send: Any) -> float:
        start = time.process_time()
        for _ in range(self.packets):
            self.seq = (self.seq + 1) & 0xFFFF
            send(packet(self.seq), self.seq)
        spent = time.process_time() - start
        return spent / (self.packets * len(self.ports)) * 1e6

    def native_path(self) -> float:
        group = self.group
        return self._timed(lambda data, seq: group.send(data, seq, seq * 3000, True))

    def python_path(self) -> float:
        viewers = self.python

        def send(data: bytes, seq: int) -> None:
            for viewer in viewers:
                viewer.forward(data, seq, seq * 3000, True)

        return self._timed(send)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--viewers", type=int, default=200)
    parser.add_argument("--packets", type=int, default=2000, help="packets per variant and round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not fanout.available():
        sys.exit("the native fan-out is not built (make install builds it)")
    if len(os.sched_getaffinity(0)) < 2:
        sys.exit("needs two cores: the sender on core 0, the drain on core 1")
    with tempfile.TemporaryDirectory() as directory:
        binary = build(Path(directory))
        drain = subprocess.Popen(
            ["taskset", "-c", "1", str(binary), "drain", str(args.viewers)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert drain.stdout is not None and drain.stdin is not None
            ports = [int(p) for p in drain.stdout.readline().split()]
            os.sched_setaffinity(0, {0})
            runner = Runner(binary, ports, args.packets)
            calibration = calibration_ms()
            results: dict[str, list[float]] = {v: [] for v in VARIANTS}
            for _ in range(args.rounds):
                results["kernel"].append(runner.kernel())
                results["native"].append(runner.native_path())
                results["python"].append(runner.python_path())
            drain.stdin.close()
            received = int(drain.stdout.readline() or 0)
        finally:
            if drain.poll() is None:
                drain.terminate()
            drain.wait(timeout=5)
    sent = args.rounds * args.packets * args.viewers * len(VARIANTS)
    print(f"{args.viewers} viewers, {args.packets} packets x {args.rounds} rounds per variant,"
          f" {SIZE}-byte RTP; calibration loop {calibration:.0f} ms")  # fmt: skip
    print(f"drain received {received:,} of {sent:,} datagrams sent")
    print(f"{'µs per packet-viewer':<22}{'min':>8}{'median':>9}")
    summary = {}
    for variant in VARIANTS:
        values = results[variant]
        summary[variant] = {"min": min(values), "median": statistics.median(values),
                            "all": values}  # fmt: skip
        print(f"{variant:<22}{min(values):>8.2f}{statistics.median(values):>9.2f}")
    if args.json:
        args.json.write_text(json.dumps({
            "viewers": args.viewers, "packets": args.packets, "rounds": args.rounds,
            "calibration_ms": calibration, "received": received, "sent": sent,
            "us_per_packet_viewer": summary,
        }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
