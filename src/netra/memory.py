"""The garbage-collector policy of a running server (issue 9 chooses and measures it)."""

from __future__ import annotations

import gc


def configure_gc() -> None:
    # Full garbage collections scan every live object and stall the fan-out for 100-300 ms
    # with a few hundred viewers (docs/benchmarks.md): leave what start-up made out of them,
    # and run them a tenth as often. The forwarding path allocates no tracked objects.
    gc.freeze()
    gc.set_threshold(700, 10, 100)
