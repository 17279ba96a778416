"""Pareto frontier over trials: maximise one quality column, minimise one or more costs.

A trial is on the frontier when no other eligible trial is at least as good on quality and
every cost and strictly better on one. Exact ties (same quality and costs) are all kept.
Eligible = status OK and finite values in the quality and cost columns; others are never on it.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from results.schema import BYTES_PER_MB, ResultsError, cost_columns, quality_columns


def _numeric(df: pd.DataFrame, name: str) -> np.ndarray:
    return pd.to_numeric(df[name], errors="coerce").astype("float64").to_numpy()


def check_quality(df: pd.DataFrame, quality: str) -> None:
    if quality not in df.columns:
        avail = ", ".join(quality_columns(df)) or "none"
        raise ResultsError(f"unknown quality column {quality!r}; available quality columns: {avail}")


def check_cost(df: pd.DataFrame, cost: str) -> None:
    if cost not in df.columns:
        avail = ", ".join(cost_columns(df)) or "none"
        raise ResultsError(f"unknown cost column {cost!r}; available cost columns: {avail}")


def eligible(df: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """Rows that can be compared: status OK and every given column finite."""
    ok = (df["status"] == "OK").fillna(False).to_numpy(bool) if "status" in df.columns else np.ones(len(df), bool)
    for name in columns:
        ok = ok & np.isfinite(_numeric(df, name))
    return ok


def pareto_mask(df: pd.DataFrame, quality: str = "probe_acc_mean",
                costs: str | Sequence[str] = ("latency_ms_p50",)) -> pd.Series:
    """Boolean Series (df's index): True for trials on the quality-vs-costs frontier."""
    costs = (costs,) if isinstance(costs, str) else tuple(costs)
    check_quality(df, quality)
    for c in costs:
        check_cost(df, c)
    ok = eligible(df, (quality, *costs))
    q = _numeric(df, quality)[ok]
    c = np.column_stack([_numeric(df, k)[ok] for k in costs]) if costs else np.zeros((int(ok.sum()), 0))
    # [i, j]: does trial j dominate trial i?  O(n^2) is nothing for a few hundred trials.
    no_worse = (q[None, :] >= q[:, None]) & (c[None, :, :] <= c[:, None, :]).all(-1)
    better = (q[None, :] > q[:, None]) | (c[None, :, :] < c[:, None, :]).any(-1)
    dominated = (no_worse & better).any(axis=1)
    mask = np.zeros(len(df), bool)
    mask[np.flatnonzero(ok)[~dominated]] = True
    return pd.Series(mask, index=df.index, name="pareto")


def frontier(df: pd.DataFrame, quality: str = "probe_acc_mean", cost: str = "latency_ms_p50") -> pd.DataFrame:
    """Frontier trials, cheapest first (so quality rises down the table)."""
    on = df[pareto_mask(df, quality, (cost,))]
    return on.sort_values([cost, quality, "trial_id"], ascending=[True, False, True], kind="stable")


def best_under(df: pd.DataFrame, max_latency_ms: float | None = None, max_mb: float | None = None,
               quality: str = "probe_acc_mean") -> pd.Series | None:
    """Highest-quality OK trial within the budgets (MB = 2**20 bytes), or None if none fits.

    Only trials with measured latency and size count (a half-measured row is no recommendation).
    Ties on quality go to the faster, then smaller trial, then the lower trial_id.
    """
    check_quality(df, quality)
    ok = eligible(df, (quality, "latency_ms_p50", "tflite_bytes"))
    if max_latency_ms is not None:
        ok = ok & (_numeric(df, "latency_ms_p50") <= max_latency_ms)
    if max_mb is not None:
        ok = ok & (_numeric(df, "tflite_bytes") / BYTES_PER_MB <= max_mb)
    if not ok.any():
        return None
    fits = df[ok].assign(_q=_numeric(df, quality)[ok], _l=_numeric(df, "latency_ms_p50")[ok],
                         _b=_numeric(df, "tflite_bytes")[ok])
    best = fits.sort_values(["_q", "_l", "_b", "trial_id"], ascending=[False, True, True, True],
                            na_position="last", kind="stable").iloc[0]
    return best.drop(["_q", "_l", "_b"])
