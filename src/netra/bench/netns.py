"""Network namespaces made on the spot: a machine of several hosts, each with its own address.

The calling process must already be in a network namespace of its own with nothing but `lo`
(`unshare -n`, as the test suite runs), so that nothing here can touch the machine's real
network; it becomes the router. A `Lan` is a bridge in it, 10.11.0.254/24, to which each
`Namespace` is joined by a veth pair; clients in the calling namespace reach every host on it.
An `ImpairedLink` carries the traffic between two hosts through `netra.bench.link` (delay and
loss in user space, as this kernel has no netem) instead of the bridge. Needs root.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

SUBNET = "10.11.0"
ROUTER = f"{SUBNET}.254"
START_SECONDS = 5.0
# Whatever the harness starts dies with the process that started it, even killed: nothing of
# a crashed test keeps a namespace (or a port, or a CPU) alive.
WITH_US = ("setpriv", "--pdeathsig", "KILL")


class NetnsUnavailable(RuntimeError):
    """The harness cannot run here; the message says why."""


def ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, stdout=subprocess.DEVNULL)


def require_private_namespace() -> None:
    # /proc/self/net is this process's namespace; /sys/class/net may be another's.
    lines = Path("/proc/self/net/dev").read_text().splitlines()[2:]
    interfaces = sorted(line.split(":")[0].strip() for line in lines)
    if interfaces != ["lo"]:
        raise NetnsUnavailable(
            f"this network namespace has {interfaces}: run in a private one with only lo "
            "(`unshare -n`), so that the harness never touches the machine's network"
        )
    if os.geteuid() != 0:
        raise NetnsUnavailable("network namespaces, veth pairs and TUN devices need root")


class Namespace:
    """A network namespace held open by a `sleep` of ours; `command()` runs a program in it."""

    def __init__(self, name: str, address: str) -> None:
        self.name = name
        self.address = address
        self.lan_port = ""  # its veth's end on the bridge, once on a Lan
        self._holder: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._holder is not None
        return self._holder.pid

    async def start(self) -> None:
        ours = os.readlink("/proc/self/ns/net")
        self._holder = subprocess.Popen([*WITH_US, "unshare", "--net", "sleep", "infinity"])
        deadline = asyncio.get_running_loop().time() + START_SECONDS
        # unshare(2) happens just after the fork: wait until the holder is in its own.
        while os.readlink(f"/proc/{self.pid}/ns/net") == ours:
            if asyncio.get_running_loop().time() > deadline or self._holder.poll() is not None:
                raise NetnsUnavailable(f"`unshare --net` did not make {self.name}'s namespace")
            await asyncio.sleep(0.01)
        self.run("ip", "link", "set", "lo", "up")

    def command(self, *argv: str) -> list[str]:
        # nsenter enters a network namespace without forking: the PID is the program's.
        return [*WITH_US, "nsenter", f"--net=/proc/{self.pid}/ns/net", *argv]

    def run(self, *argv: str) -> None:
        subprocess.run(self.command(*argv), check=True, stdout=subprocess.DEVNULL)

    def close(self) -> None:
        """End the holder (by its PID); the namespace and its devices go with the last
        process in it."""
        if self._holder is not None and self._holder.poll() is None:
            self._holder.kill()
            self._holder.wait(5)
        self._holder = None


class Lan:
    """A bridge in this namespace, with each host on it by a veth pair."""

    BRIDGE = "netra-lan"

    def __init__(self) -> None:
        self.hosts: list[Namespace] = []

    def start(self) -> None:
        require_private_namespace()
        ip("link", "add", self.BRIDGE, "type", "bridge")
        ip("addr", "add", f"{ROUTER}/24", "dev", self.BRIDGE)
        ip("link", "set", self.BRIDGE, "up")

    async def add(self, name: str) -> Namespace:
        host = Namespace(name, f"{SUBNET}.{len(self.hosts) + 1}")
        await host.start()
        self.hosts.append(host)
        port = host.lan_port = f"lan{len(self.hosts)}"
        ip("link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", str(host.pid))
        ip("link", "set", port, "master", self.BRIDGE, "up")
        host.run("ip", "addr", "add", f"{host.address}/24", "dev", "eth0")
        host.run("ip", "link", "set", "eth0", "up")
        host.run("ip", "route", "add", "default", "via", ROUTER)
        return host

    def cut(self, host: Namespace) -> None:
        """Unplug the host from the bridge: its packets to and from the LAN vanish."""
        ip("link", "set", host.lan_port, "down")

    def close(self) -> None:
        for host in self.hosts:
            # Deleting our end deletes the pair now; a namespace's own devices go only later,
            # when the kernel gets round to tearing it down.
            subprocess.run(["ip", "link", "del", host.lan_port], stderr=subprocess.DEVNULL)
            host.close()
        self.hosts = []
        subprocess.run(["ip", "link", "del", self.BRIDGE], stderr=subprocess.DEVNULL)


class ImpairedLink:
    """The traffic between hosts `a` and `b` goes through a `netra.bench.link` process (delay
    and loss, each way) instead of the bridge: a host route on each side sends the other's
    address into a TUN device whose other end is that process."""

    def __init__(self, a: Namespace, b: Namespace, delay_ms: float, loss: float) -> None:
        self.a, self.b = a, b
        self.delay_ms, self.loss = delay_ms, loss
        self.stats: dict[str, dict[str, int]] = {}
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        tun_a, tun_b = f"to-{self.b.name}"[:15], f"to-{self.a.name}"[:15]
        self._process = await asyncio.create_subprocess_exec(
            *WITH_US, sys.executable, "-m", "netra.bench.link", tun_a, tun_b,
            "--delay-ms", str(self.delay_ms), "--loss", str(self.loss),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert self._process.stdout is not None
        line = await asyncio.wait_for(self._process.stdout.readline(), START_SECONDS)
        if line.strip() != b"ready":
            raise NetnsUnavailable(f"the link process did not start: {line!r}")
        # The process keeps its file descriptors while its devices move into the hosts.
        for tun, host, other in ((tun_a, self.a, self.b), (tun_b, self.b, self.a)):
            ip("link", "set", tun, "netns", str(host.pid))
            host.run("ip", "link", "set", tun, "up")
            host.run("ip", "route", "add", f"{other.address}/32", "dev", tun, "src", host.address)

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    async def counts(self) -> dict[str, dict[str, int]]:
        """What the link carried and dropped so far, each way: {"a_to_b": {...}, "b_to_a"}."""
        assert self._process is not None and self._process.stdout is not None
        self._process.send_signal(signal.SIGUSR1)
        line = await asyncio.wait_for(self._process.stdout.readline(), START_SECONDS)
        self.stats = json.loads(line)
        return self.stats

    async def close(self) -> None:
        """End the link process (by its PID) and keep what it says it carried."""
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        assert process.stdout is not None
        try:
            out = await asyncio.wait_for(process.stdout.read(), START_SECONDS)
            self.stats = json.loads(out.decode().strip().splitlines()[-1])
        except (TimeoutError, ValueError, IndexError):
            process.kill()
        await process.wait()
