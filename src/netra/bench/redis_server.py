"""A real redis-server (Debian's package) on 127.0.0.1, started and stopped by the tests and
the cluster benchmarks; or on `host` in a namespace of the cluster harness, through `wrap`.

`stop()` and `start()` again on the same port simulate an outage: nothing is persisted, so
the server comes back empty, as a restarted cache would.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from netra.bench.target import free_port

REDIS_SERVER = "/usr/bin/redis-server"
START_SECONDS = 5.0


class RedisServer:
    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        host: str = "127.0.0.1",
        wrap: tuple[str, ...] = (),
    ) -> None:
        if not Path(REDIS_SERVER).exists():
            raise RuntimeError(f"{REDIS_SERVER} is missing: `make redis` installs it")
        self.port = port or free_port()
        self.host = host
        self.url = f"redis://{host}:{self.port}/0"
        self._wrap = wrap
        self._workdir = workdir
        self._process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self._process = subprocess.Popen(
            [*self._wrap, REDIS_SERVER, "--bind", self.host, "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", str(self._workdir), "--loglevel", "warning",
             # A harness's Redis is reached from other namespaces, and has no password.
             "--protected-mode", "yes" if self.host == "127.0.0.1" else "no"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = asyncio.get_running_loop().time() + START_SECONDS
        while not await self._answers_ping():
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self._process.returncode}")
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"redis-server did not answer PING in {START_SECONDS} s")
            await asyncio.sleep(0.02)

    async def _answers_ping(self) -> bool:
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        except OSError:
            return False
        try:
            writer.write(b"PING\r\n")
            return (await reader.readline()) == b"+PONG\r\n"
        finally:
            writer.close()

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def stop(self) -> None:
        """Kill the server (by its PID) and wait for it to exit."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(5)
        self._process = None
