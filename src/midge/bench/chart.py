"""The runner's chart: every ratio Midge / other, turned so that above 1 means Midge
is better (needs matplotlib, the `bench` extra)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

REFERENCE = "midge"


def chart(summary: dict[str, Any], brokers: list[str], path: Path) -> bool:
    """A PNG of every ratio, turned so that > 1 means Midge is better; False without matplotlib."""
    try:
        import matplotlib  # noqa: PLC0415 - optional (extra "bench")

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
        from matplotlib.ticker import FuncFormatter  # noqa: PLC0415
    except ImportError:
        return False
    others = [b for b in brokers if b != REFERENCE]
    labels: list[str] = []
    series: dict[str, list[float]] = {other: [] for other in others}
    for name, entry in summary.items():
        for metric in entry["metrics"].values():
            labels.append(f"{name}: {metric['label']}")
            for other in others:
                ratio = metric["ratios"].get(other)
                if ratio is None or ratio <= 0:
                    series[other].append(math.nan)
                else:
                    series[other].append(ratio if metric["higher_is_better"] else 1 / ratio)
    if not labels:
        return False
    height = 0.8 / max(1, len(others))
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(labels) + 1.8))
    positions = list(range(len(labels)))
    for number, other in enumerate(others):
        values = series[other]
        offsets = [p + (number - (len(others) - 1) / 2) * height for p in positions]
        colors = ["#2a9d8f" if v >= 1 else "#e76f51" for v in values]
        ax.barh(offsets, values, height=height, color=colors, label=f"vs {other}")
        for y, v in zip(offsets, values, strict=True):
            if not math.isnan(v):
                ax.text(v, y, f" {v:.2f}", va="center", fontsize=8)
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_xscale("log")
    plain = FuncFormatter(lambda value, _position: f"{value:g}")
    ax.xaxis.set_major_formatter(plain)
    # Label only the 2s and 5s between decades: all of them overlap at small ratios.
    sparse = FuncFormatter(
        lambda value, _position: f"{value:g}" if f"{value:.0e}"[0] in "25" else ""
    )
    ax.xaxis.set_minor_formatter(sparse)
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_yticks(positions)
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("Midge relative to the other broker (> 1: Midge better; log scale)")
    ax.set_title("midge bench: medians, " + ", ".join(f"midge vs {o}" for o in others))
    if len(others) > 1:
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
