"""`netra serve` stopped by SIGTERM or SIGINT, as a service manager or Ctrl-C stops it: every
client is told and disconnected, the process exits 0 within SHUTDOWN_SECONDS, quietly."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from netra.app import RETRY_AFTER_SECONDS, SHUTDOWN_SECONDS

from .peers import TEST_SECRET, Publisher, Signaling, Viewer

NETRA = Path(sys.executable).with_name("netra")
STARTUP_SECONDS = 20.0


@dataclass
class Served:
    process: asyncio.subprocess.Process
    url: str
    stderr: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def netra_serve(tmp_path: Path, *flags: str) -> AsyncIterator[Served]:
    """A `netra serve` process of this test's, ready; killed (by its handle) if it outlives
    the test."""
    port = free_port()
    stderr = tmp_path / "stderr.log"
    with stderr.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            str(NETRA), "serve", "--host", "127.0.0.1", "--port", str(port),
            "--auth-secret", TEST_SECRET, "--candidate-address", "127.0.0.1", *flags,
            stdout=asyncio.subprocess.DEVNULL, stderr=sink,
        )  # fmt: skip
    served = Served(process, f"http://127.0.0.1:{port}", stderr)
    try:
        await wait_ready(served)
        yield served
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def wait_ready(served: Served) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STARTUP_SECONDS
    last = "no answer"
    async with aiohttp.ClientSession() as http:
        while loop.time() < deadline:
            if served.process.returncode is not None:
                raise AssertionError(f"netra serve exited early:\n{served.stderr.read_text()}")
            try:
                async with http.get(served.url + "/readyz") as response:
                    if response.status == 200:
                        return
                    last = f"HTTP {response.status}"
            except aiohttp.ClientConnectionError as exc:
                last = str(exc)
            await asyncio.sleep(0.1)
    raise AssertionError(f"netra serve not ready in {STARTUP_SECONDS} s ({last})")


async def stop_with(served: Served, signum: signal.Signals, clients: list[Signaling]) -> None:
    """Send `signum`; each client must get `server-shutdown`, then a 1001 close, and the
    process must exit 0 within SHUTDOWN_SECONDS."""
    loop = asyncio.get_running_loop()
    sent = loop.time()
    served.process.send_signal(signum)
    for client in clients:
        goodbye = await client.next_message("server-shutdown", SHUTDOWN_SECONDS)
        assert goodbye["retryAfter"] == RETRY_AFTER_SECONDS
        assert await client.wait_closed(SHUTDOWN_SECONDS) == 1001
    try:
        status = await asyncio.wait_for(
            served.process.wait(), sent + SHUTDOWN_SECONDS - loop.time()
        )
    except TimeoutError:
        raise AssertionError(
            f"still running {SHUTDOWN_SECONDS} s after {signum.name}:\n{served.stderr.read_text()}"
        ) from None
    assert status == 0, served.stderr.read_text()


def json_lines(text: str) -> list[dict[str, str]]:
    """One JSON object per line with time, level, logger and message: a traceback that
    Python printed by itself would not parse."""
    lines = []
    for line in text.splitlines():
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"not a JSON log line: {line!r}\n{text}") from None
        assert {"time", "level", "logger", "message"} <= set(lines[-1]), line
    return lines


async def test_sigterm_tells_every_client_closes_their_peer_connections_and_exits_0(
    tmp_path: Path, loopback_candidates: None
) -> None:
    async with netra_serve(tmp_path, "--log-format", "json") as served:
        publisher = Publisher(await Signaling.connect(served.url), "studio")
        viewer = Viewer(await Signaling.connect(served.url), "studio")
        try:
            await publisher.join_and_publish()
            await viewer.join()
            reception = await viewer.watch(video=5, audio=5)

            await stop_with(served, signal.SIGTERM, [publisher.signaling, viewer.signaling])
            # Each side saw the server close its peer connection (DTLS close_notify).
            await reception.wait_closed_by_server()
            await publisher.wait_closed_by_server()
        finally:
            await viewer.close()
            await publisher.close()

    lines = json_lines(served.stderr.read_text())
    assert not [line for line in lines if "exception" in line or line["level"] == "ERROR"]
    assert any(line["message"] == "shutting down on SIGTERM" for line in lines)
    joined = [line for line in lines if line["message"].startswith("joined via ws")]
    assert {(line["room"], line["role"]) for line in joined} == {
        ("studio", "streamer"),
        ("studio", "viewer"),
    }
    assert all(line["client"] for line in joined)
    # Every ICE check would be an aioice INFO line; they are off unless --log-level DEBUG.
    assert not [line for line in lines if line["logger"].startswith("aioice")]


async def test_sigint_does_the_same_and_prints_no_traceback(tmp_path: Path) -> None:
    async with netra_serve(tmp_path) as served:
        client = await Signaling.connect(served.url)
        try:
            await client.send({"type": "join", "roomId": "lobby", "role": "viewer"})
            await client.next_message("joined")
            await stop_with(served, signal.SIGINT, [client])
        finally:
            await client.close()

    log = served.stderr.read_text()
    assert "Traceback" not in log and "KeyboardInterrupt" not in log, log
    assert " ERROR " not in log, log  # e.g. asyncio's "Task was destroyed but it is pending"
    assert "shutting down on SIGINT" in log
    assert " role=viewer joined via ws" in log and "room=lobby client=" in log, log
