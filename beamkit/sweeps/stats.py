"""Summary statistics of a sweep: per configuration, the mean best total with a bootstrap
confidence interval, and win rates against each baseline, paired by prompt and seed."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 9999


def bootstrap_ci(values: Any, confidence: float = CONFIDENCE, seed: int = 0) -> tuple[float, float]:
    """A BCa bootstrap interval of the mean (scipy.stats.bootstrap); NaNs for fewer than two
    values, the value itself when all values are equal (there is nothing to resample)."""
    from scipy.stats import bootstrap

    data = np.asarray(values, dtype=float)
    data = data[~np.isnan(data)]
    if len(data) < 2:
        return (math.nan, math.nan)
    if np.all(data == data[0]):
        return (float(data[0]), float(data[0]))
    with warnings.catch_warnings():
        # BCa warns on near-degenerate samples; its interval is still the best estimate there is.
        warnings.simplefilter("ignore")
        res = bootstrap((data,), np.mean, confidence_level=confidence, n_resamples=RESAMPLES,
                        method="BCa", rng=np.random.default_rng(seed))
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if math.isnan(low) or math.isnan(high):  # BCa can fail on tiny samples; the percentile interval cannot
        res = bootstrap((data,), np.mean, confidence_level=confidence, n_resamples=RESAMPLES,
                        method="percentile", rng=np.random.default_rng(seed))
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return (low, high)


def win_rate(df: Any, config: str, other: str) -> tuple[float, int]:
    """Share of (prompt, seed) pairs where ``config`` scored above ``other`` (a tie counts a half), and the pair count."""
    scored = df[df["best_total"].notna()]
    mine = scored[scored["config"] == config].set_index(["prompt_index", "seed"])["best_total"]
    theirs = scored[scored["config"] == other].set_index(["prompt_index", "seed"])["best_total"]
    pairs = mine.to_frame("a").join(theirs.to_frame("b"), how="inner")
    if pairs.empty:
        return (math.nan, 0)
    wins = float((pairs["a"] > pairs["b"]).sum() + 0.5 * (pairs["a"] == pairs["b"]).sum())
    return (wins / len(pairs), len(pairs))


def summary(df: Any, confidence: float = CONFIDENCE) -> Any:
    """One row per configuration (baselines included), in the sweep's order.

    ``win_vs_K`` is the configuration's win rate against baseline ``K`` derived from the same
    configuration (for a baseline: from the configuration it was derived from).
    """
    import pandas as pd

    kinds = [k for k in dict.fromkeys(df["baseline"].dropna())]
    out = []
    for config in dict.fromkeys(df["config"]):
        part = df[df["config"] == config]
        scores = part["best_total"].astype(float)
        low, high = bootstrap_ci(scores, confidence)
        reference = part["reference"].iloc[0]
        row: dict[str, Any] = {
            "config": config,
            "baseline": part["baseline"].iloc[0],
            "reference": reference,
            "rows": len(part),
            "completed": int((part["status"] == "completed").sum()),
            "failed": int(part["status"].isin(["error", "cancelled"]).sum()),
            "mean": float(scores.mean()) if scores.notna().any() else math.nan,
            "ci_low": low,
            "ci_high": high,
            "alignment": float(part["alignment"].astype(float).mean()),
            "aesthetic": float(part["aesthetic"].astype(float).mean()),
            "budget": int(part["budget"].iloc[0]),
            "images": float(part["images"].astype(float).mean()),
            "cost": float(part["cost"].astype(float).sum()),
        }
        for kind in kinds:
            rival = df[(df["baseline"] == kind) & (df["reference"] == reference)]["config"]
            if rival.empty or rival.iloc[0] == config:
                row[f"win_vs_{kind}"] = math.nan
            else:
                row[f"win_vs_{kind}"] = win_rate(df, config, rival.iloc[0])[0]
        out.append(row)
    return pd.DataFrame(out)


def format_table(summary_df: Any) -> str:
    """The summary as a plain-text table, for the CLI."""
    cols = ["config", "completed", "failed", "mean", "ci_low", "ci_high", "images"]
    cols += [c for c in summary_df.columns if c.startswith("win_vs_")]
    shown = summary_df[cols].copy()
    return str(shown.to_string(index=False, float_format=lambda x: f"{x:.2f}", na_rep="-"))


__all__ = ["bootstrap_ci", "format_table", "summary", "win_rate"]
