"""``Sweep.plot()``: the mean best total of each configuration against the images it spent."""

from __future__ import annotations

from typing import Any


def plot(summary: Any, ax: Any = None) -> Any:
    """One point per configuration, with its confidence interval; returns the matplotlib Axes."""
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("Sweep.plot() needs matplotlib: pip install matplotlib") from None
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    for _, row in summary.iterrows():
        low, high = row["mean"] - row["ci_low"], row["ci_high"] - row["mean"]
        errors = [[low], [high]] if low == low and high == high else None  # NaN != NaN: no interval to draw
        ax.errorbar([row["images"]], [row["mean"]], yerr=errors, fmt="o" if row["baseline"] is None else "s",
                    capsize=4, label=row["config"])
    ax.set_xlabel("images per job (mean)")
    ax.set_ylabel("best total score (mean, 95% CI)")
    ax.set_title("score against images spent")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return ax


__all__ = ["plot"]
