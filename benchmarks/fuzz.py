"""Fuzzing a real `netra serve` with 100,000 inputs: WebSocket frames, WHIP and WHEP requests.

    unshare -n sh -c 'ip link set lo up; .venv/bin/python benchmarks/fuzz.py \
        [--count 100000] [--kinds ws,whip,whep] [--concurrency 8] [--seed 0] \
        [--time-limit 1800] [--json FILE] [--keep FILE]'
    unshare -n sh -c 'ip link set lo up; .venv/bin/python benchmarks/fuzz.py --replay FILE'

The inputs and the checks are tests/integration/test_fuzz.py's: its hypothesis strategies make
the scripts (frames on a client's sockets; a POST of a mutated offer and what follows it), and
its players send them and hold every answer to docs/protocol.md and docs/whip-whep.md. Here
hypothesis only generates, in a child process (it would otherwise take most of this one's
core), into a queue that `--concurrency` players drain on the event loop, and a finding does
not stop the run: each is counted by what is wrong, and the first few of each are kept whole.
An input is one WebSocket frame or one HTTP request; `--count` is split evenly over `--kinds`,
which run one after the other.

What runs, all on 127.0.0.1 (loopback ICE candidates only, no STUN):
- the server: `python -m netra serve` in a subprocess, with the test's settings (rate limits
  raised so that inputs reach the parsers, a 1 s grace period, a 5 s connect timeout), its log
  as JSON lines (`--log-level`, WARNING by default) in `--log`;
- in this process: a publisher of a live room that fuzzed WHEP players and viewers watch, and
  the bystander, a publisher and a viewer in a room of their own (real aiortc peers).

Reported, as text and with `--json FILE` as JSON:
- what escaped: ERROR and CRITICAL lines of the server's log (with the exception's last line),
  stderr lines that are not log lines (a traceback printed outside logging), and every broken
  promise the players saw (5xx statuses, `internal-error`, closes the protocol does not have,
  codes not in the documents, 2xx for inputs that are never valid, no answer);
- the server afterwards: whether it still runs, /api/rooms (admin token), the rooms still open
  once parked sessions and unconnected peers have had time to end, its RSS and open file
  descriptors at the start and at the end;
- the bystander room: the longest pause in its viewer's RTP, the packets it received, and any
  message either of its clients did not ask for.

The scripts behind the examples of each finding are pickled to `--keep`; `--replay` plays
them again, one at a time, against a fresh server, and says what each finds now (a finding
that needs concurrent load may then find nothing).

Bounded: `--time-limit` stops the fuzzing (the report says so), each script is bounded by the
test's timeout, and every wait at start and end has a deadline. Exit status 0 if nothing was
found, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import pickle
import queue as queue_module
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

import aiohttp
from hypothesis import HealthCheck, Phase, given, seed, settings

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.peers import TEST_SECRET, Publisher, Signaling, token  # noqa: E402
from tests.integration.test_fuzz import (  # noqa: E402
    BYSTANDER_ROOM,
    FUZZ_SERVER,
    LIVE_ROOM,
    SCRIPT_TIMEOUT,
    Bystander,
    HttpPlayer,
    Outcome,
    Samples,
    WsPlayer,
    http_scripts,
    make_samples,
    ws_scripts,
)

from netra.media import aiortc_private  # noqa: E402 - the repository root is on the path now

KINDS = ("ws", "whip", "whep")
CHUNK = 300  # examples per hypothesis run; each run has its own seed
EXAMPLES_KEPT = 3  # whole findings kept per kind of finding
STARTUP_TIMEOUT = 30.0
SETTLE_SECONDS = 8.0  # past the grace period (1 s) and the connect timeout (5 s)

# The server's log as JSON lines (netra.observability.log.JsonFormatter).
LEVELS_THAT_ESCAPED = ("ERROR", "CRITICAL")


# --- the server ---------------------------------------------------------------------------------


def server_flags() -> list[str]:
    """The test's fuzzed server settings, as `netra serve` flags."""
    flags = []
    for name, value in FUZZ_SERVER.items():
        flags += [f"--{name.replace('_', '-')}", str(value)]
    return flags


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """`python -m netra serve` on loopback, started and stopped by this script only."""

    def __init__(self, log_path: Path, log_level: str) -> None:
        self.log_path = log_path
        self.log_level = log_level
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.exit_code: int | None = None

    async def start(self, http: aiohttp.ClientSession) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "netra", "serve", "--host", "127.0.0.1",
            "--port", str(self.port), "--candidate-address", "127.0.0.1",
            "--log-format", "json", "--log-level", self.log_level, *server_flags(),
        ]  # fmt: skip
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "NETRA_AUTH_SECRET": TEST_SECRET}
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"netra serve exited with {self.process.returncode}; see log")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(self.url + "/", timeout=aiohttp.ClientTimeout(1)) as reply:
                    if reply.status == 200:
                        return
            await asyncio.sleep(0.1)  # polling a port that is not open yet, until the deadline
        self.stop()
        raise RuntimeError(f"netra serve did not answer within {STARTUP_TIMEOUT:g} s")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def usage(self) -> dict[str, float | None]:
        """RSS (kB), open file descriptors and CPU seconds so far, from /proc."""
        if not self.running:
            return {"rss_kb": None, "fds": None, "cpu_s": None}
        assert self.process is not None
        proc = Path(f"/proc/{self.process.pid}")
        rss = next(
            int(line.split()[1])
            for line in (proc / "status").read_text().splitlines()
            if line.startswith("VmRSS:")
        )
        # utime and stime, fields 14 and 15 of /proc/PID/stat (after the command's parentheses)
        fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return {"rss_kb": rss, "fds": len(os.listdir(proc / "fd")), "cpu_s": round(cpu, 1)}

    def stop(self) -> int | None:
        """Terminate exactly the process this object started; its exit code."""
        process, self.process = self.process, None
        if process is None:
            return self.exit_code
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        self.exit_code = process.returncode
        return self.exit_code

    def escaped(self) -> tuple[Counter[str], list[str], list[str]]:
        """From the log: lines by level; the ERROR/CRITICAL ones; lines that are no log line."""
        levels: Counter[str] = Counter()
        errors, strays = [], []
        for raw in self.log_path.read_text(errors="replace").splitlines():
            try:
                line = json.loads(raw)
            except ValueError:
                strays.append(raw)
                continue
            if not isinstance(line, dict):
                strays.append(raw)
                continue
            level = str(line.get("level"))
            levels[level] += 1
            if level in LEVELS_THAT_ESCAPED:
                exception = str(line.get("exception", "")).strip().splitlines()
                errors.append(
                    f"{line.get('time')} {line.get('logger')}: {line.get('message')}"
                    + (f" [{exception[-1]}]" if exception else "")
                )
        return levels, errors, strays


# --- generating and playing -------------------------------------------------------------------


@dataclass
class KindReport:
    """One kind of input: how much was played, what came back, what was wrong."""

    kind: str
    budget: int
    inputs: int = 0
    scripts: int = 0
    seconds: float = 0.0
    seen: Counter[str] = field(default_factory=Counter)
    found: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    harness_errors: list[str] = field(default_factory=list)
    stopped_early: bool = False  # by --time-limit
    # The scripts of the examples, whole, for --keep and --replay (not in the JSON).
    scripts_kept: dict[str, list[Any]] = field(default_factory=dict)

    def add(self, outcome: Outcome, script: object) -> None:
        self.inputs += outcome.inputs
        self.scripts += 1
        self.seen.update(outcome.seen)
        for what, evidence in outcome.findings:
            self.note(what, f"{evidence}\n    script: {script!r}"[:4000], script)

    def note(self, what: str, evidence: str, script: object) -> None:
        self.found[what] += 1
        kept = self.examples.setdefault(what, [])
        if len(kept) < EXAMPLES_KEPT:
            kept.append(evidence)
            self.scripts_kept.setdefault(what, []).append(script)

    def to_json(self) -> dict[str, Any]:
        rate = self.inputs / self.seconds if self.seconds else 0.0
        return {
            "kind": self.kind, "budget": self.budget, "inputs": self.inputs,
            "scripts": self.scripts, "seconds": round(self.seconds, 1),
            "inputs_per_second": round(rate, 1), "seen": dict(self.seen.most_common()),
            "found": dict(self.found.most_common()), "examples": self.examples,
            "harness_errors": self.harness_errors, "stopped_early": self.stopped_early,
        }  # fmt: skip


def generate(
    kind: str,
    samples: Samples,
    budget: int,
    base_seed: int,
    scripts: multiprocessing.Queue[Any],
    stop: EventType,
) -> None:
    """In a child process, so that hypothesis has a core of its own: scripts of one kind into
    `scripts` until `budget` inputs are in it or `stop` is set, then None. Each run of CHUNK
    examples has its own seed (the run's and the chunk's number): a run is repeatable, and
    no two chunks repeat each other."""
    strategy = ws_scripts(samples) if kind == "ws" else http_scripts(kind, samples)
    queued = 0

    def done() -> bool:
        return stop.is_set() or queued >= budget

    def put(script: Any) -> None:
        while not stop.is_set():  # waits while the players are behind, until the run stops
            with contextlib.suppress(queue_module.Full):
                scripts.put(script, timeout=1.0)
                return

    number = 0
    while not done():

        @settings(
            max_examples=CHUNK, deadline=None, database=None, phases=(Phase.generate,),
            suppress_health_check=list(HealthCheck), print_blob=False,
        )  # fmt: skip
        @seed(base_seed * 1_000_003 + number)
        @given(script=strategy)
        def feed(script: Any) -> None:
            nonlocal queued
            if done():
                return  # the rest of this chunk is drawn and dropped: at most CHUNK draws
            put(script)
            queued += script.inputs

        feed()
        number += 1
    put(None)


async def play_all(
    queue: asyncio.Queue[Any],
    play: Callable[[Any], Coroutine[Any, Any, Outcome]],
    report: KindReport,
) -> None:
    """One player: scripts from the queue until it yields None."""
    while (script := await queue.get()) is not None:
        try:
            outcome = await asyncio.wait_for(play(script), SCRIPT_TIMEOUT)
        except TimeoutError:
            report.note(f"a script took over {SCRIPT_TIMEOUT:g} s", repr(script)[:4000], script)
            continue
        except Exception as exc:  # noqa: BLE001 - the harness's own failure, reported apart
            if len(report.harness_errors) < EXAMPLES_KEPT:
                report.harness_errors.append(f"{type(exc).__name__}: {exc} in {script!r}"[:4000])
            continue
        report.add(outcome, script)


async def fuzz_kind(
    kind: str,
    samples: Samples,
    play: Callable[[Any], Coroutine[Any, Any, Outcome]],
    report: KindReport,
    args: argparse.Namespace,
    deadline: float,
) -> None:
    context = multiprocessing.get_context("spawn")  # no fork of a process with threads
    scripts: multiprocessing.Queue[Any] = context.Queue(maxsize=4 * args.concurrency)
    stop = context.Event()
    child = context.Process(
        target=generate,
        args=(kind, samples, report.budget, args.seed + KINDS.index(kind), scripts, stop),
        name=f"fuzz-generate-{kind}",
    )
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=args.concurrency)
    started = time.monotonic()
    child.start()
    players = [asyncio.create_task(play_all(queue, play, report)) for _ in range(args.concurrency)]
    progress = asyncio.create_task(show_progress(report, args.quiet))
    try:
        while (script := await next_script(scripts, deadline)) is not None:
            await queue.put(script)
        if time.monotonic() >= deadline:
            report.stopped_early = True
        for _ in players:
            await queue.put(None)
        await asyncio.gather(*players)
    finally:
        stop.set()
        progress.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await progress
        await asyncio.to_thread(child.join, 30)
        if child.is_alive():
            child.kill()  # the child this function started, by its handle
        report.seconds = time.monotonic() - started


async def next_script(scripts: multiprocessing.Queue[Any], deadline: float) -> Any:
    """The generator's next script; None at its end, or at the deadline."""
    while time.monotonic() < deadline:
        try:
            return await asyncio.to_thread(scripts.get, True, 1.0)
        except queue_module.Empty:
            continue
    return None


async def show_progress(report: KindReport, quiet: bool) -> None:
    started = time.monotonic()
    while not quiet:
        await asyncio.sleep(10)
        took = time.monotonic() - started
        print(
            f"  {report.kind}: {report.inputs}/{report.budget} inputs, {report.scripts} scripts,"
            f" {report.inputs / took:.0f}/s, {sum(report.found.values())} findings",
            file=sys.stderr,
            flush=True,
        )


# --- the run ------------------------------------------------------------------------------------


async def admin_rooms(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token(admin=True)}"}
    try:
        async with http.get(url + "/api/rooms", headers=headers) as reply:
            body = await reply.json() if reply.status == 200 else await reply.text()
            return reply.status, body
    except (aiohttp.ClientError, TimeoutError) as exc:
        return 0, repr(exc)


def room_health(rooms: Any) -> dict[str, Any]:
    """What /api/rooms says of each room: live, and how many viewers."""
    if not isinstance(rooms, dict):
        return {}
    health = {}
    for room in rooms.get("rooms", []):
        viewers = room.get("viewers")
        health[room.get("id")] = {
            "live": room.get("live"),
            "viewers": len(viewers) if isinstance(viewers, list | dict) else viewers,
        }
    return health


@dataclass
class Target:
    """The server under fuzzing, and what plays against it."""

    server: ServerProcess
    http: aiohttp.ClientSession
    samples: Samples
    bystander: Bystander
    players: dict[str, Callable[[Any], Coroutine[Any, Any, Outcome]]]


@contextlib.asynccontextmanager
async def target(args: argparse.Namespace) -> AsyncIterator[Target]:
    """The server, the live room's publisher and the bystander; all stopped on the way out."""
    # This process's aiortc peers offer loopback only, as the server's do.
    aiortc_private.offer_host_addresses(["127.0.0.1"])
    server = ServerProcess(Path(args.log), args.log_level)
    timeout = aiohttp.ClientTimeout(total=SCRIPT_TIMEOUT)
    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(aiohttp.ClientSession(timeout=timeout))
        stack.callback(server.stop)
        await server.start(http)
        samples = await make_samples()
        live = Publisher(await Signaling.connect(server.url), LIVE_ROOM, width=160, height=120)
        stack.push_async_callback(live.close)
        await live.join_and_publish(timeout=10)
        bystander = await Bystander.start(server.url, BYSTANDER_ROOM)
        stack.push_async_callback(bystander.close)
        players = {
            "ws": WsPlayer(server.url, http, samples.viewer_answers[0]).play,
            "whip": HttpPlayer(server.url, http).play,
            "whep": HttpPlayer(server.url, http).play,
        }
        yield Target(server, http, samples, bystander, players)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"count": args.count, "kinds": args.kinds, "seed": args.seed,
                              "concurrency": args.concurrency, "log": str(args.log)}  # fmt: skip
    async with target(args) as rig:
        server, bystander = rig.server, rig.bystander
        result["server_before"] = server.usage()
        bystander.begin()
        deadline = time.monotonic() + args.time_limit
        reports = []
        for kind in args.kinds:
            report = KindReport(kind, budget=args.count // len(args.kinds))
            reports.append(report)
            if not args.quiet:
                print(f"fuzzing {kind}: {report.budget} inputs", file=sys.stderr, flush=True)
            await fuzz_kind(kind, rig.samples, rig.players[kind], report, args, deadline)
            if not server.running:
                break
        result["kinds_report"] = [r.to_json() for r in reports]
        kept = {r.kind: r.scripts_kept for r in reports if r.scripts_kept}
        if kept and args.keep:
            Path(args.keep).parent.mkdir(parents=True, exist_ok=True)
            Path(args.keep).write_bytes(pickle.dumps(kept))
            result["kept"] = args.keep

        result["bystander"] = {
            "findings": await bystander.findings(),
            "longest_rtp_gap_s": round(bystander.longest_gap, 2),
            "rtp_packets": len(bystander.reception.tap.rtp) - bystander.packets_at_start,
        }
        status, rooms = await admin_rooms(rig.http, server.url)
        result["server_after"] = {"running": server.running, "api_rooms_status": status,
                                  "rooms": room_health(rooms), **server.usage(),
                                  "loop_lag": rooms.get("loop_lag") if isinstance(rooms, dict)
                                  else None}  # fmt: skip
        # Parked sessions and peers that never connected end on their own timers.
        await asyncio.sleep(SETTLE_SECONDS)
        status, rooms = await admin_rooms(rig.http, server.url)
        left = set(room_health(rooms)) - {BYSTANDER_ROOM, LIVE_ROOM}
        result["server_settled"] = {"api_rooms_status": status, "rooms_left": sorted(left),
                                    **server.usage()}  # fmt: skip
    result["server_exit"] = server.stop()
    levels, errors, strays = server.escaped()
    result["server_log"] = {"levels": dict(levels), "errors": errors[:50],
                            "error_count": len(errors), "non_log_lines": strays[:50],
                            "non_log_line_count": len(strays)}  # fmt: skip
    result["ok"] = verdict(result)
    return result


async def replay(args: argparse.Namespace) -> bool:
    """Play the scripts a run kept (--keep), one at a time, each against the same fresh
    server, and print what each found now. True if none found anything."""
    kept: dict[str, dict[str, list[Any]]] = pickle.loads(Path(args.replay).read_bytes())
    clean = True
    async with target(args) as rig:
        for kind, by_finding in kept.items():
            for what, scripts in by_finding.items():
                for script in scripts:
                    logged = len(rig.server.escaped()[1])
                    outcome = await asyncio.wait_for(rig.players[kind](script), SCRIPT_TIMEOUT)
                    found = outcome.describe() + rig.server.escaped()[1][logged:]
                    clean &= not found
                    print(f"{kind}, found before as {what!r}:")
                    print(f"  script: {script!r}"[:3000])
                    for line in found or ["nothing now"]:
                        print(f"  -> {line}"[:1500])
    return clean


def verdict(result: dict[str, Any]) -> bool:
    return (
        all(not r["found"] and not r["harness_errors"] for r in result["kinds_report"])
        and not result["bystander"]["findings"]
        and result["server_after"]["running"]
        and result["server_after"]["api_rooms_status"] == 200
        and not result["server_settled"]["rooms_left"]
        and result["server_log"]["error_count"] == 0
        and result["server_log"]["non_log_line_count"] == 0
    )


def print_report(result: dict[str, Any]) -> None:
    total_inputs = sum(r["inputs"] for r in result["kinds_report"])
    total_seconds = sum(r["seconds"] for r in result["kinds_report"])
    print(f"fuzzed netra serve with {total_inputs} inputs in {total_seconds:.0f} s"
          f" (seed {result['seed']}, {result['concurrency']} at a time)")  # fmt: skip
    for report in result["kinds_report"]:
        print(f"\n{report['kind']}: {report['inputs']} inputs in {report['scripts']} scripts,"
              f" {report['seconds']} s, {report['inputs_per_second']} inputs/s"
              + (" (stopped by --time-limit)" if report["stopped_early"] else ""))  # fmt: skip
        answers = ", ".join(f"{what} x{n}" for what, n in list(report["seen"].items())[:12])
        print(f"  most seen: {answers}")
        for what, n in report["found"].items():
            print(f"  FOUND x{n}: {what}")
            for example in report["examples"][what][:1]:
                print("    " + example.replace("\n", "\n    ")[:1500])
        for error in report["harness_errors"]:
            print(f"  harness: {error[:500]}")
    log = result["server_log"]
    print(f"\nserver log: {log['levels']}; {log['error_count']} ERROR/CRITICAL lines,"
          f" {log['non_log_line_count']} lines that are no log line ({result['log']})")  # fmt: skip
    for line in log["errors"][:10] + log["non_log_lines"][:10]:
        print(f"  {line[:300]}")
    before, after, settled = (result["server_before"], result["server_after"],
                              result["server_settled"])  # fmt: skip
    print(f"server: running {after['running']}, /api/rooms {after['api_rooms_status']},"
          f" rooms {after['rooms']}, loop lag {after['loop_lag']}")  # fmt: skip
    print(f"  CPU {after['cpu_s'] - before['cpu_s']:.0f} s while fuzzed" if after["cpu_s"]
          is not None and before["cpu_s"] is not None else "  CPU unknown")  # fmt: skip
    print(f"  RSS {before['rss_kb']} kB -> {after['rss_kb']} kB -> {settled['rss_kb']} kB"
          f" settled; fds {before['fds']} -> {after['fds']} -> {settled['fds']} settled;"
          f" rooms left after {SETTLE_SECONDS:g} s: {settled['rooms_left'] or 'none'}")  # fmt: skip
    by = result["bystander"]
    print(f"bystander: {by['rtp_packets']} RTP packets, longest gap {by['longest_rtp_gap_s']} s,"
          f" {by['findings'] or 'nothing noticed'}")  # fmt: skip
    print("\nverdict: " + ("nothing escaped" if result["ok"] else "FINDINGS (above)"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--count", type=int, default=100_000, help="inputs in all (frames+requests)"
    )
    parser.add_argument("--kinds", default=",".join(KINDS), help="ws,whip,whep or a subset")
    parser.add_argument("--concurrency", type=int, default=8, help="scripts in flight at once")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis' seed for the run")
    parser.add_argument("--time-limit", type=float, default=1800.0, help="seconds of fuzzing")
    parser.add_argument("--log", default="bench-output/fuzz-server.log", help="server log file")
    parser.add_argument("--log-level", default="WARNING", help="the server's --log-level")
    parser.add_argument("--json", help="also write the report as JSON to this file")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument(
        "--keep",
        default="bench-output/fuzz-findings.pickle",
        help="where the scripts of the findings' examples go, for --replay",
    )
    parser.add_argument("--replay", help="play the scripts a run kept (--keep) and stop")
    args = parser.parse_args()
    if args.replay:
        sys.exit(0 if asyncio.run(replay(args)) else 1)
    args.kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if not args.kinds or set(args.kinds) - set(KINDS):
        parser.error(f"--kinds takes a subset of {','.join(KINDS)}")
    result = asyncio.run(run(args))
    print_report(result)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2, default=str) + "\n")
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
