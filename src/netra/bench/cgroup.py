"""A CPU quota for the server under test: a cgroup of its own, so that a machine's cores can be
shared fairly between several server processes (the workers of a cluster, each capped alike)
and the load tool, which runs outside every quota. Needs root; cgroup v2 or v1's `cpu`."""

from __future__ import annotations

import os
from pathlib import Path

V2 = Path("/sys/fs/cgroup")
V1 = Path("/sys/fs/cgroup/cpu")
PERIOD_US = 100_000


class CpuQuota:
    def __init__(self, name: str, cores: float) -> None:
        if cores <= 0:
            raise ValueError(f"a CPU quota must be positive, not {cores}")
        self.cores = cores
        quota = max(1000, round(cores * PERIOD_US))
        self._v2 = (V2 / "cgroup.controllers").exists()
        self._root = V2 if self._v2 else V1
        if not (self._root / "cgroup.procs").exists():
            raise RuntimeError(f"no cgroup v2 or v1 cpu hierarchy at {V2}")
        self.path = self._root / f"{name}-{os.getpid()}"
        self.path.mkdir(exist_ok=True)
        if self._v2:
            (self.path / "cpu.max").write_text(f"{quota} {PERIOD_US}\n")
        else:
            (self.path / "cpu.cfs_period_us").write_text(f"{PERIOD_US}\n")
            (self.path / "cpu.cfs_quota_us").write_text(f"{quota}\n")

    def add(self, pid: int) -> None:
        """Move the process (every thread of it) into the quota."""
        (self.path / "cgroup.procs").write_text(f"{pid}\n")

    def close(self) -> None:
        """Move whatever is left back to the root and remove the group."""
        try:
            left = (self.path / "cgroup.procs").read_text().split()
        except FileNotFoundError:
            return
        for pid in left:
            try:
                (self._root / "cgroup.procs").write_text(f"{pid}\n")
            except OSError:
                pass  # it exited meanwhile
        try:
            self.path.rmdir()
        except OSError:
            pass
