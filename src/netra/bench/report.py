"""What a ladder prints while it runs, and the files it leaves: JSON and a PNG chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TextIO

from netra.bench.ladder import LadderResult, Step

_COLUMNS = (
    ("viewers", 7), ("cpu", 6), ("rss MB", 7), ("loss", 7), ("worst", 7), ("Mb/s/v", 7),
    ("µs/pkt-v", 8), ("conn p50/95", 12), ("key p50/95", 12), ("k-c p50/95", 11),
    ("lat p50/99", 11), ("PLI", 4), ("load", 5), ("impaired", 8), ("srv lag", 9),
    ("load lag", 9), ("calib", 6), ("",  0),
)  # fmt: skip


def header() -> str:
    return " ".join(name.rjust(width) for name, width in _COLUMNS).rstrip()


def _pair(values: tuple[float | None, float | None]) -> str:
    return "/".join("-" if v is None else f"{v:.0f}" for v in values)


def _pair_fine(values: tuple[float | None, float | None]) -> str:
    return "/".join("-" if v is None else f"{v:.1f}" for v in values)


def _loop_lag(lag: object) -> str:
    if not isinstance(lag, dict) or lag.get("p99_ms") is None:
        return "-"
    return f"{lag['p99_ms']:.0f}/{lag['max_ms']:.0f}"


def row(step: Step) -> str:
    cells = (
        str(step.viewers),
        f"{step.cpu:.0%}",
        f"{step.rss_mb:.0f}",
        f"{step.loss:.2%}",
        f"{step.worst_loss:.2%}",
        f"{step.mbps_per_viewer:.2f}",
        "-" if step.us_per_packet_viewer is None else f"{step.us_per_packet_viewer:.1f}",
        _pair(step.connect_ms),
        _pair(step.first_keyframe_ms),
        _pair(step.keyframe_after_connect_ms),
        _pair_fine(step.latency_ms),
        str(step.keyframe_requests),
        f"{step.load_cpu:.0%}",
        "-" if step.impaired_loss is None else f"{step.impaired_loss:.1%}",
        _loop_lag(step.server.get("loop_lag")),
        _loop_lag(step.load_lag_ms),
        f"{step.calibration_ms:.0f}",
        "ok" if step.passed else f"STOP: {step.why}",
    )
    return " ".join(c.rjust(w) for c, (_, w) in zip(cells, _COLUMNS, strict=True)).rstrip()


def summary(result: LadderResult, out: TextIO) -> None:
    marginal = result.marginal_us
    rss = result.rss_per_viewer_mb
    print(
        f"{result.target}: {result.most_viewers} viewers passed; "
        f"marginal {'-' if marginal is None else f'{marginal:.2f}'} µs per packet-viewer; "
        f"{'-' if rss is None else f'{rss:.3f}'} MB RSS per viewer; "
        f"at most {result.max_keyframe_requests_per_second} keyframe requests in any second; "
        f"calibration {result.calibration_ms:.0f} ms"
        + ("" if result.drift is None else f", {result.drift:.2f}x that at the end"),
        file=out,
    )


def write_json(path: Path, payload: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


def write_chart(path: Path, results: list[LadderResult], title: str) -> None:
    """CPU, loss and added latency against viewers, one line per ladder run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    colours = {"netra": "tab:blue", "janus": "tab:orange"}
    for run, result in enumerate(results):
        steps = result.steps
        xs = [s.viewers for s in steps]
        colour = colours.get(result.target, None)
        label = f"{result.target} #{run + 1}"
        axes[0].plot(xs, [s.cpu * 100 for s in steps], marker="o", color=colour, label=label)
        axes[1].plot(xs, [s.loss * 100 for s in steps], marker="o", color=colour, label=label)
        axes[2].plot(
            xs,
            [s.latency_ms[1] for s in steps],
            marker="o",
            color=colour,
            label=f"{label} p99",
        )
    axes[0].axhline(90, color="grey", linestyle="--", linewidth=1)
    axes[1].axhline(1, color="grey", linestyle="--", linewidth=1)
    for axis, name in zip(
        axes, ("server CPU, % of one core", "loss, %", "added latency p99, ms"), strict=True
    ):
        axis.set_xlabel("viewers")
        axis.set_title(name)
        axis.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
