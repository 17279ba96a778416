"""make rankcheck: does the cheap local run rank students as longer training would?

Runs a fixed 12-student slice of frill144 twice through Ray Tune, at local fidelity and at
`local4x` (4x the training steps, same data and evaluation set), and reports Spearman's rank
correlation of probe_acc_mean and of distill_r2_heldout between the two runs.
Writes results/rankcheck/latest.json and results/rankcheck/rankcheck.png.
    python -m sweep.rankcheck            # ~40 min on 2 cores
    python -m sweep.rankcheck --smoke    # the same code path at smoke fidelity (tests)
"""
from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

from results.errors import FrillError
from results.files import atomic_write

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "results" / "rankcheck"
# Four float students over depth, width and pooling, each with its QAT twin and its
# QAT + low-rank twin (both warm-started from it): every axis of the grid appears.
SLICE = [dict(depth=d, alpha=a, pooling=p, compression=c, qat=q)
         for d, a, p in (("tiny", 0.5, "global"), ("small", 2.0, "global"),
                         ("large", 1.0, "global"), ("small", 1.0, "flatten"))
         for c, q in (("none", False), ("none", True), ("lowrank", True))]
METRICS = ("probe_acc_mean", "distill_r2_heldout")


def slice_indices(grid) -> list[int]:
    keys = list(SLICE[0])
    where = {tuple(getattr(t.student, k) for k in keys): i for i, t in enumerate(grid.trials)}
    return [where[tuple(s[k] for k in keys)] for s in SLICE]


def compare(short, long) -> dict:
    """Spearman rank correlations (and the rows) of two runs of the same students."""
    from scipy.stats import spearmanr
    ok = [t for t in short if t in long and short[t]["status"] == long[t]["status"] == "OK"]
    out: dict = {"students_compared": len(ok)}
    for m in METRICS:
        rho = spearmanr([short[t][m] for t in ok], [long[t][m] for t in ok]).statistic
        out[f"spearman_{m}"] = round(float(rho), 3)
    return out


def _plot(rows: list[dict], figures: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4))
    for ax, m in zip(axes, METRICS):
        for r in rows:
            ax.scatter(r[f"{m}_local"], r[f"{m}_4x"], c="C1" if r["qat"] else "C0",
                       marker="s" if r["compression"] == "lowrank" else "o")
            ax.annotate(f"{r['depth'][0]}{r['alpha']:g}{r['pooling'][0]}", (r[f"{m}_local"], r[f"{m}_4x"]),
                        fontsize=7, xytext=(3, 2), textcoords="offset points")
        lo = min(min(r[f"{m}_local"], r[f"{m}_4x"]) for r in rows)
        hi = max(max(r[f"{m}_local"], r[f"{m}_4x"]) for r in rows)
        ax.plot([lo, hi], [lo, hi], color="0.7", lw=1, zorder=0)
        ax.set(xlabel=f"{m}, local fidelity", ylabel=f"{m}, 4x the training steps",
               title=f"Spearman {figures[f'spearman_{m}']:.2f} over {figures['students_compared']} students")
    fig.suptitle("Does the local run rank students as 4x training does? "
                 "(blue float, orange QAT; square = low-rank; label depth/width/pooling)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _slice_rows(g, indices: list[int], log=print) -> dict[str, dict]:
    """The slice's rows at g's fidelity: from the full sweep of that grid and fidelity when it
    holds all of them (same config, same ids: same rows), else from a run of the slice alone."""
    from results import folder
    from sweep import driver
    ids = [g.ids[i] for i in indices]
    full = folder.sweep_dir(g.default_name)
    rows = folder.read_rows(full) if (full / "sweep.json").exists() else {}
    if all(rows.get(t, {}).get("status") == "OK" for t in ids):
        log(f"rank check: the {g.sweep.fidelity} rows come from {full}")
    else:
        name = f"rankcheck-{g.sweep.fidelity}"
        driver.run_sweep(g, name, indices=indices)
        rows = folder.read_rows(folder.sweep_dir(name))
    return {g.trials[i].describe(): rows.get(t, {"status": "missing"}) for i, t in zip(indices, ids)}


def run(smoke: bool, out: Path) -> dict:
    from sweep import grid as G
    base = "smoke" if smoke else "local"
    runs = {}
    for tag, fidelity in (("local", base), ("4x", f"{base}4x")):
        g = G.load("frill144", fidelity)
        runs[tag] = _slice_rows(g, [0, 1] if smoke else slice_indices(g))
    figures = compare(runs["local"], runs["4x"])
    keep = ("depth", "alpha", "pooling", "compression", "qat")
    rows = [{**{k: runs["local"][d][k] for k in keep}, "student": d,
             **{f"{m}_{tag}": runs[tag][d][m] for m in METRICS for tag in runs},
             "steps_local": runs["local"][d]["steps"], "steps_4x": runs["4x"][d]["steps"]}
            for d in runs["local"] if runs["local"][d]["status"] == runs["4x"][d]["status"] == "OK"]
    doc = {"figures": figures, "rows": rows, "smoke": smoke,
           "how": "the same students, data, evaluation set and seeds; only steps (and a warm "
                  "start's fine-tuning steps) are 4x. Spearman over the students OK in both runs",
           "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "latest.json", json.dumps(doc, indent=1, default=str))
    if len(rows) >= 2:
        _plot(rows, figures, out / "rankcheck.png")
    return doc


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sweep.rankcheck", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="two smoke-fidelity students (tests)")
    ap.add_argument("--out", type=Path, default=None, help=f"output folder (default {OUT})")
    a = ap.parse_args(argv)
    try:
        doc = run(a.smoke, a.out or OUT)
    except FrillError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for k, v in doc["figures"].items():
        print(f"{k:32s} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
