"""`netra serve --workers N`: N worker processes under one supervisor, one per core.

Each worker is a whole node of the cluster, with its own node name and its own relay port (where
the other nodes pull its rooms from); all share the HTTP port with SO_REUSEPORT, so the kernel
spreads new connections over them. The supervisor starts the workers, starts again one that
dies, and passes SIGTERM and SIGINT on, waiting for the workers to shut down.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import time
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from urllib.parse import urlsplit

from netra.config import Config, ConfigError

logger = logging.getLogger("netra.workers")

RESTART_DELAY_SECONDS = 1.0
# A worker that dies sooner than this after starting is crashing: wait longer before the next.
CRASH_SECONDS = 5.0
CRASH_DELAY_SECONDS = 5.0
# A worker shuts down within 5 s (app.SHUTDOWN_SECONDS); after this it is killed.
STOP_SECONDS = 7.0


def worker_count(config: Config) -> int:
    return config.workers or os.cpu_count() or 1


def run_workers(config: Config, secret: str) -> None:
    count = worker_count(config)
    if not config.redis:
        raise ConfigError("--workers needs --redis: the workers share rooms through it")
    if config.port == 0:
        raise ConfigError("--workers needs a --port: the workers share one")
    spawn = multiprocessing.get_context("spawn")  # nothing of this process's loop is inherited
    stopping: list[int] = []

    def stop(signum: int, frame: object) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def start(index: int) -> tuple[BaseProcess, float]:
        process = spawn.Process(
            target=_worker, args=(config, secret, index), name=f"netra-worker-{index}"
        )
        process.start()
        logger.info("worker %d started (pid %s)", index, process.pid)
        return process, time.monotonic()

    workers = {index: start(index) for index in range(count)}
    restarts: dict[int, float] = {}  # index → when to start it again
    logger.info("%d workers share port %d", count, config.port)
    while not stopping:
        now = time.monotonic()
        for index, when in list(restarts.items()):
            if now >= when:
                del restarts[index]
                workers[index] = start(index)
        alive = {p.sentinel: i for i, (p, _) in workers.items() if i not in restarts}
        wait(list(alive), timeout=0.5)
        for index, (process, started) in list(workers.items()):
            if index in restarts or process.is_alive() or stopping:
                continue
            quick = time.monotonic() - started < CRASH_SECONDS
            delay = CRASH_DELAY_SECONDS if quick else RESTART_DELAY_SECONDS
            logger.warning(
                "worker %d (pid %s) exited with %s; starting it again in %.0f s",
                index, process.pid, process.exitcode, delay,
            )  # fmt: skip
            restarts[index] = time.monotonic() + delay
    logger.info("stopping %d workers", len(workers))
    for process, _ in workers.values():
        if process.is_alive() and process.pid is not None:
            os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    for process, _ in workers.values():
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            logger.warning("worker pid %s killed: not stopped in %.0f s", process.pid, STOP_SECONDS)
            process.kill()
            process.join()


def _worker(config: Config, secret: str, index: int) -> None:
    from netra.app import run
    from netra.observability.log import configure_logging

    configure_logging(config.log_level, config.log_format)
    relay = socket.create_server((config.host, 0), family=_family(config.host))
    host = urlsplit(config.node_url).hostname or "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    own = config.model_copy(
        update={
            "workers": 1,
            "node_id": f"{config.node_id}-{index}" if config.node_id else None,
            "relay_url": f"http://{host}:{relay.getsockname()[1]}",
        }
    )
    run(own, secret, reuse_port=True, sockets=[relay])


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
