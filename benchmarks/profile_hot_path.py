"""Where the server's time goes with N viewers: a py-spy profile of `netra serve`.

    .venv/bin/python benchmarks/profile_hot_path.py [--viewers 100] [--seconds 15]

Starts `netra serve` pinned to CPU 0 (this process on CPU 1), the synthetic publisher of
`netra bench`, and `--viewers` viewer bots joined 25 at a time; lets them settle, then runs
`py-spy record --format raw --nonblocking` on the server at 200 Hz. Prints the share of busy
samples per function (self time) and per part of the path, and writes the raw profile and a
JSON summary to bench-output/. Needs `make install-bench` (py-spy) and root or ptrace rights.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from netra.bench.bot import ViewerBot
from netra.bench.clip import load_clip
from netra.bench.counter import Counter, available
from netra.bench.publisher import SyntheticPublisher
from netra.bench.target import NetraTarget
from netra.media import aiortc_private

# Which part of the path a leaf function belongs to, by (file fragment, function fragment).
PARTS: tuple[tuple[str, str, str], ...] = (
    ("native fan-out (C: patch, SRTP protect, sendto)", "netra/media/fanout.py", "send"),
    ("native fan-out (C: patch, SRTP protect, sendto)", "netra/media/fanout.py", "forward"),
    ("SRTP protect (libsrtp)", "pylibsrtp", ""),
    ("per-viewer Python (rewrite, patch, counters)", "netra/media", ""),
    ("receive path (aiortc/aioice)", "aiortc/", ""),
    ("receive path (aiortc/aioice)", "aioice/", ""),
    ("event loop (uvloop run)", "aiohttp/web.py", ""),
)


def _part(frame: str, sendto_line: int, protect_line: int) -> str:
    # A frame reads "function (path:line)". On the Python path (--fanout python) the sendto
    # and srtp_protect lines of SrtpRoute tell the kernel and libsrtp apart.
    if "aiortc_private.py" in frame and ("rtp_rewritten" in frame or "_send" in frame):
        line = int(frame.rsplit(":", 1)[1].rstrip(")"))
        if line == sendto_line:
            return "UDP sendto (kernel)"
        if line == protect_line:
            return "SRTP protect (libsrtp)"
        return "per-viewer Python (rewrite, patch, counters)"
    for name, path, function in PARTS:
        if path in frame and (not function or function in frame):
            return name
    return "other"


def _source_lines() -> tuple[int, int]:
    """The line numbers of SrtpRoute's sendto and srtp_protect calls (the Python path)."""
    import inspect

    lines, first = inspect.getsourcelines(aiortc_private.SrtpRoute._send)
    sendto = next(first + i for i, text in enumerate(lines) if "sendto(datagram" in text)
    lines, first = inspect.getsourcelines(aiortc_private.SrtpRoute.rtp_rewritten)
    protect = next(first + i for i, text in enumerate(lines) if "srtp_protect(" in text)
    return sendto, protect


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--viewers", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--fanout", choices=("auto", "native", "python"), default="auto")
    parser.add_argument("--out", type=Path, default=Path("bench-output"))
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        sys.exit("py-spy is missing: make install-bench")
    aiortc_private.offer_host_addresses(["127.0.0.1"])
    os.sched_setaffinity(0, {1})
    target = NetraTarget(fanout=args.fanout)
    await target.start(0)
    publisher = SyntheticPublisher(load_clip())
    bots: list[ViewerBot] = []
    counter: Counter | None = None
    raw = args.out / f"profile-{args.viewers}-{args.fanout}.txt"
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        await publisher.start(target)
        assert publisher.video is not None
        counter = Counter(publisher.video.log, capacity=args.viewers) if available() else None
        while len(bots) < args.viewers:
            step = [
                ViewerBot(len(bots) + i, publisher.video.log, counter=counter)
                for i in range(min(25, args.viewers - len(bots)))
            ]
            bots.extend(step)
            await asyncio.gather(*(b.start(target) for b in step))
        await asyncio.sleep(3)
        cpu_before = time.perf_counter(), _cpu(target.pid)
        record = await asyncio.create_subprocess_exec(
            py_spy, "record", "--pid", str(target.pid), "--duration", str(int(args.seconds)),
            "--rate", "200", "--format", "raw", "--nonblocking", "--output", str(raw),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        await asyncio.wait_for(record.wait(), args.seconds + 30)
        cpu = (_cpu(target.pid) - cpu_before[1]) / (time.perf_counter() - cpu_before[0])
    finally:
        for b in bots:
            await b.close()
        if counter is not None:
            await counter.close()
        await publisher.close()
        await target.stop()
    sendto_line, protect_line = _source_lines()
    leaves: collections.Counter[str] = collections.Counter()
    parts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        leaf = stack.split(";")[-1]
        leaves[leaf] += int(count)
        parts[_part(leaf, sendto_line, protect_line)] += int(count)
        total += int(count)
    print(f"netra serve with {args.viewers} viewers: {cpu:.0%} of a core; {total} busy samples")
    print("\nshare of busy samples by part of the path")
    for name, count in parts.most_common():
        print(f"{100 * count / total:6.1f} %  {name}")
    print("\ntop functions (self time)")
    for leaf, count in leaves.most_common(15):
        print(f"{100 * count / total:6.1f} %  {leaf}")
    summary = {
        "viewers": args.viewers,
        "fanout": args.fanout,
        "server_cpu": round(cpu, 3),
        "samples": total,
        "parts": {k: round(v / total, 4) for k, v in parts.most_common()},
        "top": {k: round(v / total, 4) for k, v in leaves.most_common(25)},
    }
    path = args.out / f"profile-{args.viewers}-{args.fanout}.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nwrote {raw} and {path}")


def _cpu(pid: int) -> float:
    from netra.bench.procstat import cpu_seconds

    return cpu_seconds(pid)


if __name__ == "__main__":
    asyncio.run(main())
