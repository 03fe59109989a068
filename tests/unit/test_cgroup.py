"""The benchmark's CPU quota holds a busy process to its share of a core."""

from __future__ import annotations

import subprocess
import sys
import time

from netra.bench import procstat
from netra.bench.cgroup import CpuQuota


def test_a_process_in_a_quarter_core_quota_gets_about_a_quarter_of_a_core() -> None:
    quota = CpuQuota("netra-test", 0.25)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        quota.add(busy.pid)
        before, start = procstat.cpu_seconds(busy.pid), time.monotonic()
        time.sleep(2.0)  # the quota is a rate: it is measured over time, not waited on
        share = (procstat.cpu_seconds(busy.pid) - before) / (time.monotonic() - start)
    finally:
        busy.kill()
        busy.wait()
        quota.close()
    assert 0.1 < share < 0.35, share
    assert not quota.path.exists()
