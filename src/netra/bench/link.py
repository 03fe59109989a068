"""An impaired link in user space: two TUN devices, and every IP packet that enters one leaves
the other after a fixed delay, unless it is dropped at random.

This machine's kernel has no `netem` qdisc (CONFIG_NET_SCH_NETEM is not set), so the cluster
harness (netra.bench.netns) routes the traffic between two network namespaces through this
process instead: each TUN device is moved into its namespace, and a host route sends the other
side's address through it. Constant delay keeps the order, as netem does without jitter.

    python -m netra.bench.link TUN_A TUN_B --delay-ms 10 --loss 0.01

prints `ready` once both devices exist, then a JSON line of what it carried on each SIGUSR1
and on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import random
import signal
import struct
import sys

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
MAX_PACKET = 65536


def open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


class Direction:
    """One way of the link: what it read, dropped and wrote."""

    def __init__(self, source: int, sink: int, delay: float, loss: float, seed: int) -> None:
        self.source, self.sink = source, sink
        self.delay, self.loss = delay, loss
        self.rng = random.Random(seed)
        self.carried = self.dropped = self.unwritable = 0

    def readable(self, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            try:
                packet = os.read(self.source, MAX_PACKET)
            except BlockingIOError:
                return
            except OSError:
                return  # the device went with its namespace
            if self.rng.random() < self.loss:
                self.dropped += 1
                continue
            loop.call_at(loop.time() + self.delay, self.write, packet)

    def write(self, packet: bytes) -> None:
        try:
            os.write(self.sink, packet)
            self.carried += 1
        except OSError:
            self.unwritable += 1  # the far side is down: the packet is lost, as on a wire

    def stats(self) -> dict[str, int]:
        return {"carried": self.carried, "dropped": self.dropped, "unwritable": self.unwritable}


async def run(args: argparse.Namespace) -> None:
    a, b = open_tun(args.tun_a), open_tun(args.tun_b)
    loop = asyncio.get_running_loop()
    delay, loss = args.delay_ms / 1000, args.loss
    forward = Direction(a, b, delay, loss, args.seed)
    backward = Direction(b, a, delay, loss, args.seed + 1)
    loop.add_reader(a, forward.readable, loop)
    loop.add_reader(b, backward.readable, loop)

    def report() -> None:
        stats = {"a_to_b": forward.stats(), "b_to_a": backward.stats()}
        with contextlib.suppress(BrokenPipeError):  # nobody is listening any more
            print(json.dumps(stats), flush=True)

    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, report)
    print("ready", flush=True)
    await stop.wait()
    report()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m netra.bench.link", description=__doc__)
    parser.add_argument("tun_a")
    parser.add_argument("tun_b")
    parser.add_argument("--delay-ms", type=float, default=10.0, help="one way, each direction")
    parser.add_argument("--loss", type=float, default=0.0, help="fraction dropped, each way")
    parser.add_argument("--seed", type=int, default=1)
    asyncio.run(run(parser.parse_args(argv)))
    sys.exit(0)


if __name__ == "__main__":
    main()
