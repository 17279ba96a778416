"""Plots of a results table: quality vs latency / size with the frontier, and per-axis effects.

Figures are built with matplotlib's object API (Figure(), no pyplot): no global backend or
figure registry, so this works headless (Agg for PNG, the SVG backend for SVG) and in notebooks.
Rows that are not OK or lack the plotted values are skipped silently; the report counts them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from results.pareto import check_cost, check_quality, eligible, frontier
from results.schema import BYTES_PER_MB

DEPTH_COLORS = {"tiny": "#1b9e77", "small": "#d95f02", "large": "#7570b3"}
MARKERS = {(False, "none"): ("o", "float"), (False, "lowrank"): ("s", "float, low-rank"),
           (True, "none"): ("^", "QAT int8"), (True, "lowrank"): ("D", "QAT int8, low-rank")}
FRILL = {"depth": "small", "alpha": 2.0, "pooling": "global", "compression": "none", "qat": False}
GRID_AXES = ("depth", "alpha", "pooling", "compression", "qat")
# cost column -> (axis label, scale from the column's unit, teacher's column for the same cost)
COSTS = {"latency_ms_p50": ("latency per 0.96 s patch, p50 (ms)", 1.0, "teacher_latency_ms_p50"),
         "latency_ms_p90": ("latency per 0.96 s patch, p90 (ms)", 1.0, None),
         "tflite_bytes": ("TFLite size (MiB)", 1.0 / BYTES_PER_MB, "teacher_tflite_bytes")}


def _num(s: pd.Series) -> np.ndarray:
    return pd.to_numeric(s, errors="coerce").astype("float64").to_numpy()


def _first(df: pd.DataFrame, col: str) -> float | None:
    """The sweep-wide value of a per-sweep column (teacher figures), median over OK rows."""
    if col not in df.columns:
        return None
    vals = _num(df.loc[eligible(df, []), col])
    vals = vals[np.isfinite(vals)]
    return float(np.median(vals)) if len(vals) else None


def _log_if_wide(ax, values: np.ndarray, axis: str = "x") -> None:
    """Log scale when values span more than 10x; ticks at 1-2-5 written as plain numbers."""
    v = values[np.isfinite(values) & (values > 0)]
    if len(v) and v.max() / v.min() > 10:
        target = ax.xaxis if axis == "x" else ax.yaxis
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
        target.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        target.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        target.set_minor_formatter(NullFormatter())


def is_frill(df: pd.DataFrame) -> pd.Series:
    """Rows with FRILL's own configuration (any bottleneck/frontend)."""
    m = pd.Series(True, index=df.index)
    for k, v in FRILL.items():
        m &= (df[k] == v).fillna(False).astype(bool)
    return m


def reference_lines(df: pd.DataFrame, quality: str) -> tuple[float | None, float | None]:
    """(teacher, log-mel floor) for a quality column: probe columns have teacher_<col> and
    logmel_<col> baselines when the table carries them; the teacher retains all of itself."""
    if quality == "quality_retained":
        return 1.0, None
    if quality.startswith("probe_acc_") and not quality.endswith(("_ci_lo", "_ci_hi")):
        return _first(df, f"teacher_{quality}"), _first(df, f"logmel_{quality}")
    return None, None


def quality_vs_cost(df: pd.DataFrame, cost: str = "latency_ms_p50", quality: str = "probe_acc_mean") -> Figure:
    """Scatter of trials (colour = depth, marker = QAT/compression), frontier as a step line,
    the teacher and FRILL's configuration labelled. quality: any quality column, e.g.
    "probe_acc_mean", "probe_acc_language" or "distill_r2_heldout"; its `_ci_lo`/`_ci_hi`
    columns, when present, are drawn as error bars."""
    check_quality(df, quality)
    check_cost(df, cost)
    label, scale, teacher_cost_col = COSTS.get(cost, (cost, 1.0, None))
    fig = Figure(figsize=(9.5, 5.6), layout="constrained")
    ax = fig.add_subplot()
    ok = df[eligible(df, (quality, cost))]
    x, y = _num(ok[cost]) * scale, _num(ok[quality])
    sweep = str(df["sweep"].dropna().iloc[0]) if "sweep" in df and df["sweep"].notna().any() else "sweep"
    ax.set_title(f"{sweep}: {quality} vs {label.split(' (')[0]} ({len(ok)} trials)")
    ax.set_xlabel(label)
    ax.set_ylabel(quality)
    ax.grid(True, which="major", alpha=0.3)
    if ok.empty:
        ax.text(0.5, 0.5, "no OK trials with these columns", ha="center", va="center", transform=ax.transAxes)
        return fig

    lo_col, hi_col = f"{quality}_ci_lo", f"{quality}_ci_hi"
    if lo_col in ok and hi_col in ok:  # 95% bootstrap intervals, behind the points
        lo, hi = _num(ok[lo_col]), _num(ok[hi_col])
        has = np.isfinite(lo) & np.isfinite(hi)
        if has.any():
            ax.errorbar(x[has], y[has], yerr=np.vstack([y[has] - lo[has], hi[has] - y[has]]).clip(0),
                        fmt="none", ecolor="0.6", elinewidth=0.8, capsize=0, alpha=0.6, zorder=2)
    for (depth, qat, comp), g in ok.groupby(["depth", "qat", "compression"], sort=False, dropna=False):
        marker = MARKERS.get((bool(qat), comp), ("X", ""))[0]
        ax.scatter(_num(g[cost]) * scale, _num(g[quality]), c=DEPTH_COLORS.get(depth, "0.5"), marker=marker,
                   s=38, alpha=0.85, edgecolors="white", linewidths=0.5, zorder=3)

    front = frontier(df, quality, cost)
    fx, fy = _num(front[cost]) * scale, _num(front[quality])
    ax.step(fx, fy, where="post", color="black", lw=1.3, zorder=2)
    ax.scatter(fx, fy, s=110, facecolors="none", edgecolors="black", linewidths=1.0, zorder=4)

    xs = list(x)
    tq, floor = reference_lines(df, quality)
    tx = _first(df, teacher_cost_col) if teacher_cost_col else None
    teacher_name = str(ok["teacher"].dropna().iloc[0]) if ok["teacher"].notna().any() else "teacher"
    if tq is not None:
        ax.axhline(tq, color="0.35", ls="--", lw=1, zorder=1)
        ax.annotate(f"teacher ({teacher_name})", (0.005, tq), xycoords=("axes fraction", "data"),
                    xytext=(2, 3), textcoords="offset points", fontsize=8, color="0.3")
        if tx is not None:
            tx *= scale
            xs.append(tx)
            ax.scatter([tx], [tq], marker="*", s=260, c="gold", edgecolors="black", zorder=5, gid="teacher")
            unit = "ms" if cost.startswith("latency") else "MiB"
            # Above the star: the y-limits keep headroom there, students crowd just below it.
            ax.annotate(f"teacher {tx:.3g} {unit}", (tx, tq), xytext=(8, 10), textcoords="offset points",
                        ha="right", va="bottom", fontsize=9)  # right-aligned: the star is often rightmost
    if floor is not None:
        ax.axhline(floor, color="0.55", ls=":", lw=1, zorder=1)
        ax.annotate("log-mel floor", (0.005, floor), xycoords=("axes fraction", "data"), xytext=(2, 3),
                    textcoords="offset points", fontsize=8, color="0.4")

    frill = ok[is_frill(ok)]
    if not frill.empty:
        # Marked in place and explained in the legend: a callout box inside the axes covered points.
        best = frill.loc[frill[quality].astype(float).idxmax()]
        ax.scatter([float(best[cost]) * scale], [float(best[quality])], s=170, marker="s", facecolors="none",
                   edgecolors="crimson", linewidths=1.6, zorder=5)

    _log_if_wide(ax, np.asarray(xs))
    refs = [v for v in (tq, floor) if v is not None]
    span = np.r_[y, refs]
    if lo_col in ok and hi_col in ok:  # whole error bars in view
        span = np.r_[span, _num(ok[lo_col]), _num(ok[hi_col])]
    lo, hi = float(np.nanmin(span)), float(np.nanmax(span))  # both lines in view
    pad = 0.08 * (hi - lo or 1.0)
    ax.set_ylim(lo - pad, hi + 2 * pad)  # headroom for the labels above the points

    depths = [d for d in DEPTH_COLORS if d in set(ok["depth"])]
    combos = [k for k in MARKERS if ((ok["qat"] == k[0]) & (ok["compression"] == k[1])).any()]
    handles = [Line2D([], [], ls="", marker="o", color=DEPTH_COLORS[d], label=d) for d in depths]
    handles += [Line2D([], [], ls="", marker=MARKERS[k][0], color="0.3", label=MARKERS[k][1]) for k in combos]
    handles += [Line2D([], [], color="black", lw=1.3, marker="o", mfc="none", label="Pareto frontier")]
    if tq is not None:
        handles += [Line2D([], [], ls="--", color="0.35", lw=1, label="teacher quality")]
    if floor is not None:
        handles += [Line2D([], [], ls=":", color="0.55", lw=1, label="log-mel floor")]
    if tq is not None and tx is not None:
        handles += [Line2D([], [], ls="", marker="*", ms=13, mfc="gold", mec="black", label="teacher")]
    if not frill.empty:
        handles += [Line2D([], [], ls="", marker="s", ms=11, mfc="none", mec="crimson", mew=1.6,
                           label="FRILL config\n(small, alpha 2, global,\nfloat, no compression)")]
    # Outside the axes so it never covers a point.
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=9,
              title="depth / export", title_fontsize=9, alignment="left")
    return fig


def _axis_order(values: pd.Series, axis: str) -> list:
    vals = list(pd.unique(values.dropna()))
    known = {"depth": list(DEPTH_COLORS), "pooling": ["global", "flatten"], "compression": ["none", "lowrank"]}
    if axis in known:  # FRILL's choice first, then the alternatives
        return [v for v in known[axis] if v in vals] + sorted(v for v in vals if v not in known[axis])
    return sorted(vals)


def axis_effects(df: pd.DataFrame, quality: str = "probe_acc_mean", cost: str = "latency_ms_p50") -> Figure:
    """For each grid axis: quality (top row) and cost (bottom row) grouped by the axis value,
    as a box per value with the trials drawn over it (coloured by depth)."""
    check_quality(df, quality)
    check_cost(df, cost)
    label, scale, _ = COSTS.get(cost, (cost, 1.0, None))
    ok = df[eligible(df, (quality, cost))]
    axes_present = [a for a in GRID_AXES if a in df.columns]
    fig = Figure(figsize=(2.6 * len(axes_present) + 0.6, 6.4), layout="constrained")
    grid = fig.subplots(2, len(axes_present), sharey="row", squeeze=False)
    rng = np.random.default_rng(0)  # fixed jitter: the same table gives the same picture
    for j, axis in enumerate(axes_present):
        order = _axis_order(ok[axis], axis)
        for i, (col, sc) in enumerate(((quality, 1.0), (cost, scale))):
            ax = grid[i, j]
            groups = [_num(ok.loc[ok[axis] == v, col]) * sc for v in order]
            if any(len(g) for g in groups):
                ax.boxplot([g for g in groups], positions=range(len(order)), widths=0.55, showfliers=False,
                           medianprops={"color": "black"}, boxprops={"color": "0.4"}, whiskerprops={"color": "0.4"},
                           capprops={"color": "0.4"})
            for k, v in enumerate(order):
                g = ok[ok[axis] == v]
                colors = [DEPTH_COLORS.get(d, "0.5") for d in g["depth"]]
                ax.scatter(k + rng.uniform(-0.18, 0.18, len(g)), _num(g[col]) * sc, c=colors, s=12, alpha=0.75,
                           zorder=3, linewidths=0)
            ax.set_xticks(range(len(order)), [f"{v:g}" if isinstance(v, float) else str(v) for v in order])
            ax.grid(True, axis="y", alpha=0.3)
            if i == 0:
                ax.set_title(axis)
            if j == 0:
                ax.set_ylabel(quality if i == 0 else label)
    if len(ok):
        _log_if_wide(grid[1, 0], _num(ok[cost]) * scale, axis="y")
    handles = [Line2D([], [], ls="", marker="o", color=c, label=d) for d, c in DEPTH_COLORS.items()
               if d in set(ok["depth"])]
    fig.legend(handles=handles, loc="outside upper right", ncols=len(handles), frameon=False, fontsize=9,
               title="points coloured by depth", title_fontsize=9)
    fig.suptitle(f"Grid axes: {quality} and {label.split(' (')[0]} by axis value ({len(ok)} trials)")
    return fig


def save(fig: Figure, out_dir: str | Path, stem: str, dpi: int = 130) -> dict[str, Path]:
    """Write <stem>.png and <stem>.svg; returns {'png': path, 'svg': path}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {ext: out_dir / f"{stem}.{ext}" for ext in ("png", "svg")}
    for ext, p in paths.items():
        fig.savefig(p, dpi=dpi, format=ext)
    return paths


def plot_all(df: pd.DataFrame, out_dir: str | Path, quality: str = "probe_acc_mean") -> dict[str, dict[str, Path]]:
    """The report's figures as PNG + SVG: quality_vs_latency, quality_vs_size, axis_effects."""
    figs = {"quality_vs_latency": quality_vs_cost(df, "latency_ms_p50", quality),
            "quality_vs_size": quality_vs_cost(df, "tflite_bytes", quality),
            "axis_effects": axis_effects(df, quality)}
    return {stem: save(fig, out_dir, stem) for stem, fig in figs.items()}
