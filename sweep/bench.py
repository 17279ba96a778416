"""make bench: sweep efficiency and student speed-ups, as ratios measured in one run.

Writes results/bench/latest.json, appends its figures with the commit and the machine to
results/bench/history.jsonl (both committed), and prints a table. Every figure says how it
was measured.
    python -m sweep.bench            # the real bench
    python -m sweep.bench --tiny     # the same code on a 2-trial smoke sweep (tests)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from results.files import atomic_write

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "results" / "bench" / "latest.json"


def _median(xs) -> float:
    xs = [float(x) for x in xs]
    return statistics.median(xs) if xs else float("nan")


def _describe(row: dict) -> dict:
    keys = ("trial_id", "depth", "alpha", "pooling", "compression", "qat", "probe_acc_mean",
            "quality_retained")
    return {k: row[k] for k in keys}


def _alternate(paths: dict[str, Path], rounds: int, runs: int) -> dict[str, float]:
    """Median over rounds of each model's p50, the models timed in turn, so drift hits all."""
    from students.measure import latency
    p50 = {k: [] for k in paths}
    for _ in range(rounds):
        for k, p in paths.items():
            p50[k].append(latency(p, threads=1, runs=runs).p50_ms)
    return {k: _median(v) for k, v in p50.items()}


def _wall_seconds(rows: list[dict]) -> float:
    """First trial start to last trial end."""
    ts = lambda k: [datetime.fromisoformat(str(r[k])).timestamp() for r in rows if r.get(k)]  # noqa: E731
    return max(ts("ended_at")) - min(ts("started_at"))


SHARD_GRID = """\
name: {name}
shared: {{fidelity: {fidelity}, depth: tiny, alpha: {alpha}, pooling: global, bottleneck: {bottleneck},
         n_crops: {n_crops}, shard_size: {shard_size}, seed: {seed}, n_heldout: {n_heldout},
         n_eval_clips: {n_eval_clips}}}
axes: {{qat: [false]}}
"""


def _trial_peak_rss(grid: Path, work: Path) -> tuple[float, dict]:
    """`python -m sweep trial` in its own process: (its peak RSS in MiB, its row). GNU time
    reports it: a child forked from this (large) process would inherit its RSS high-water mark."""
    cmd = ["/usr/bin/time", "-f", "%M", "-o", str(work / "rss.txt"),
           sys.executable, "-m", "sweep", "trial", "--grid", str(grid), "--index", "0", "--json"]
    with open(work / "trial.err", "w") as err:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"bench trial {grid} failed: {(work / 'trial.err').read_text()[-500:]}")
    return int((work / "rss.txt").read_text().split()[-1]) / 1024, json.loads(p.stdout)   # KiB


def _shard_memory(tiny: bool, work: Path) -> tuple[dict, dict]:
    """One student trained on a set and on one 10x larger, streamed from shards and in memory:
    each trial's peak RSS, and its R2 (in memory with 3 seeds, for the noise)."""
    from sweep.context import prepare
    from sweep.grid import load as load_grid
    small, large = (32, 320) if tiny else (1200, 12000)
    base = dict(fidelity="smoke" if tiny else "local", alpha=0.25 if tiny else 1.0,
                bottleneck=64 if tiny else 2048, n_heldout=64 if tiny else 400,
                n_eval_clips=120 if tiny else 1000)
    runs = [("shards", small, 0), ("shards", large, 0), ("memory", small, 0), ("memory", large, 0),
            ("memory", large, 1), ("memory", large, 2)]
    rss, r2, prepared = {}, {}, set()
    for mode, n, seed in runs:
        path = work / f"{mode}-{n}-s{seed}.yaml"
        path.write_text(SHARD_GRID.format(name="shardbench", n_crops=n, seed=seed,
                                          shard_size=256 if mode == "shards" else 0, **base))
        sweep = load_grid(path).sweep   # the seed is the trial's: seeds share one sweep's set
        if sweep not in prepared:       # set, features, shards: built before the timed trial
            prepare(sweep, log=lambda *a, **k: None)
            prepared.add(sweep)
        peak, row = _trial_peak_rss(path, work)
        rss[f"{mode}_{n}_seed{seed}"] = round(peak, 1)
        r2[f"{mode}_{n}_seed{seed}"] = round(row["distill_r2_heldout"], 4)
    memory_r2 = [r2[f"memory_{large}_seed{s}"] for s in range(3)]
    figures = {
        "shard_stream_peak_rss_ratio_10x": round(rss[f"shards_{large}_seed0"] / rss[f"shards_{small}_seed0"], 3),
        "in_memory_peak_rss_ratio_10x": round(rss[f"memory_{large}_seed0"] / rss[f"memory_{small}_seed0"], 3),
        "shard_vs_memory_distill_r2": {"shards": r2[f"shards_{large}_seed0"], "memory_seeds_0_1_2": memory_r2},
    }
    details = {"peak_rss_mib": rss, "distill_r2_heldout": r2, "crops": {"set": small, "set_10x": large},
               "student": f"tiny a{base['alpha']:g} global b{base['bottleneck']}, {base['fidelity']} fidelity"}
    return figures, details


def run(tiny: bool, out: Path, sweep_dir: Path | None = None) -> dict:
    """The real bench reads the last full sweep (sweep_dir, default results/runs/frill144);
    --tiny runs a 2-trial smoke sweep itself, to test the same code."""
    from sweep import quiet
    quiet.start_tensorflow()
    work = Path(tempfile.mkdtemp(prefix="frill-bench-"))
    from students.config import StudentConfig
    from students.export import export_tflite
    from students.model import build_student
    from students.frontend import features
    from results import folder
    from sweep import driver
    from sweep.grid import load as load_grid
    from sweep.config import SweepConfig
    from sweep.context import prepare

    os.environ["FRILL_RESULTS"] = str(work / "runs")      # the bench's own trials
    if tiny:
        os.environ["FRILL_CACHE"] = str(work / "cache")   # fresh: the teacher runs in this run
        grid = load_grid("smoke")
        frill = StudentConfig(depth="tiny", alpha=0.25, bottleneck=64)
        driver.run_sweep(grid, "bench", indices=[0, 1])
        sdir = folder.sweep_dir("bench")
        sc, grid_name = grid.sweep, grid.name
    else:
        sdir = sweep_dir or REPO / "results" / "runs" / "frill144"
        if not (sdir / "sweep.json").exists():
            raise SystemExit(f"error: no full sweep at {sdir}; run make sweep first (the bench reads it)")
        info = folder.read_info(sdir)   # its own settings: the grid file may have moved since
        sc, grid_name = SweepConfig(**info["sweep_config"]), info["grid"]
        frill = StudentConfig()   # FRILL: small, alpha 2.0, global pooling, bottleneck 2048
    fidelity = sc.fidelity
    cpus = os.cpu_count() or 1
    rows = list(folder.read_rows(sdir).values())
    ok = [r for r in rows if r["status"] == "OK"]
    busy = sum(r["seconds_total"] for r in rows)
    wall = _wall_seconds(rows)
    stages = ("setup", "build", "train", "export", "measure", "evaluate")
    overhead = [(r["seconds_total"] - r["seconds_train"]) / r["seconds_total"] for r in ok]

    ctx = prepare(sc, log=lambda *a, **k: None)
    m = ctx.dset.manifest
    teacher_file = ctx.baselines.get("teacher_tflite_file")   # None: the teacher did not convert

    # FRILL and its QAT twin, exported untrained: latency and size do not depend on weights.
    x = features(ctx.dset.crops[:128])
    conv_s, paths = {}, {}
    if teacher_file:
        paths["teacher"] = Path(ctx.dset.path) / teacher_file
    for tag, cfg in (("float", frill), ("int8", StudentConfig(**{**frill.as_dict(), "qat": True}))):
        st = build_student(cfg, teacher_dim=ctx.dset.targets.shape[1])
        ex = export_tflite(st, work / f"frill-{tag}.tflite", representative=x)
        paths[f"frill_{tag}"], conv_s[tag] = ex.path, ex.seconds
    # The fastest student whose probe accuracy is within 5% of the teacher's; when none is
    # that close (short local training), the best one says how far off.
    near = [r for r in ok if r["quality_retained"] >= 0.95]
    fastest = min(near, key=lambda r: r["latency_ms_p50"]) if near else None
    if fastest:
        paths["fastest"] = sdir / "trials" / fastest["trial_id"] / "model.tflite"
    best = max(ok, key=lambda r: r["probe_acc_mean"], default=None)
    if best:
        paths["best"] = sdir / "trials" / best["trial_id"] / "model.tflite"
    lat = _alternate(paths, rounds=3 if tiny else 5, runs=20 if tiny else 50)
    size = {k: p.stat().st_size for k, p in paths.items()}

    by_depth: dict[str, list] = {}
    for r in ok:
        by_depth.setdefault(r["depth"], []).append(r["tflite_conversion_seconds"])
    ratio = lambda a, b: round(a / b, 3) if a and b else None  # noqa: E731
    figures = {
        "sweep_core_utilisation": round(busy / (wall * cpus), 3),
        "trial_overhead_share": round(_median(overhead), 3),
        "trial_stage_seconds_median": {s: round(_median(r.get(f"seconds_{s}", 0) for r in ok), 2) for s in stages},
        "teacher_calls_per_crop": round(m["teacher_calls"] / len(ctx.dset.crops), 3),
        "frill_vs_teacher_latency_ratio": ratio(lat.get("teacher"), lat["frill_float"]),
        "fastest_within_5pct_vs_teacher_latency_ratio": ratio(lat.get("teacher"), lat.get("fastest")),
        "int8_vs_float_latency_ratio": ratio(lat["frill_int8"], lat["frill_float"]),
        "int8_vs_float_size_ratio": ratio(size["frill_int8"], size["frill_float"]),
        "tflite_conversion_seconds": {d: round(_median(v), 2) for d, v in sorted(by_depth.items())},
        "distill_r2_heldout_median": round(_median(r["distill_r2_heldout"] for r in ok), 3),
        "frill_distill_r2_heldout": next((round(r["distill_r2_heldout"], 3) for r in ok
                                          if StudentConfig(**{k: r[k] for k in frill.as_dict()}) == frill), None),
        "sweep_minutes": round(wall / 60, 2),
    }
    shard_figures, shard_details = _shard_memory(tiny, work)
    figures.update(shard_figures)
    details = {
        "latency_ms_p50": {k: round(v, 3) for k, v in lat.items()},
        "tflite_bytes": size,
        "frill_conversion_seconds": {k: round(v, 1) for k, v in conv_s.items()},
        "fastest_within_5pct": fastest and _describe(fastest),
        "best_quality_student": best and {**_describe(best),
                                          "teacher_vs_student_latency_ratio": ratio(lat.get("teacher"), lat.get("best"))},
        "sweep": {"folder": str(sdir.relative_to(REPO)) if sdir.is_relative_to(REPO) else str(sdir),
                  "grid": grid_name, "fidelity": fidelity, "trials": len(rows), "ok": len(ok),
                  "wall_seconds": round(wall, 1), "sum_trial_seconds": round(busy, 1), "cpus": cpus},
        "shards": shard_details,
        "teacher": {"name": sc.teacher, "calls": m["teacher_calls"],
                    "distinct_crops": len(ctx.dset.crops),
                    "latency_how": ctx.baselines.get("teacher_latency_how")},
    }
    how = {
        "sweep_core_utilisation": "sum of trial wall times / (sweep wall time x CPUs); the sweep's wall time is its first trial's start to its last trial's end",
        "trial_overhead_share": "median over OK trials of (seconds_total - seconds_train) / seconds_total",
        "teacher_calls_per_crop": "teacher forward passes recorded when the sweep's distillation set was built / its distinct crops; trials never call the teacher",
        "frill_vs_teacher_latency_ratio": "teacher TFLite p50 / FRILL-config TFLite p50, LiteRT 1 thread, batch 1, timed alternately (median of rounds)",
        "int8_vs_float_latency_ratio": "FRILL QAT twin (full int8) p50 / FRILL float32 p50, same alternating run",
        "int8_vs_float_size_ratio": "int8 TFLite bytes / float32 TFLite bytes",
        "tflite_conversion_seconds": "median per depth of the sweep's export-stage conversion time",
        "distill_r2_heldout_median": "median over the sweep's OK trials of distill_r2_heldout (TFLite embedding, held-out crops)",
        "frill_distill_r2_heldout": "distill_r2_heldout of FRILL's configuration (float) in the sweep",
        "sweep_minutes": "the sweep's wall time: last ended_at - first started_at (trials only: not Ray's start or the set's build)",
        "shard_stream_peak_rss_ratio_10x": "peak RSS of `python -m sweep trial` (one student, shards of 256 crops streamed by tf.data) on a set 10x larger / on the smaller set; target <= 1.2",
        "in_memory_peak_rss_ratio_10x": "the same ratio for the same trial with the set in memory (shard_size 0)",
        "shard_vs_memory_distill_r2": "distill_r2_heldout of that student on the larger set, streamed (seed 0) and in memory (seeds 0, 1, 2: the seed-to-seed noise)",
    }
    doc = {"figures": figures, "details": details, "how": how, "tiny": tiny,
           "machine": {"cpus": cpus, "platform": platform.platform(), "python": platform.python_version()},
           "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    atomic_write(out, json.dumps(doc, indent=1, default=str))
    return doc


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine() -> dict:
    """What the figures depend on: host, CPU model and count, OS, Python."""
    cpu = ""
    try:
        cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "")
    except OSError:
        pass
    return {"host": platform.node(), "cpu": cpu or platform.processor(), "cpus": os.cpu_count() or 1,
            "platform": platform.platform(), "python": platform.python_version()}


def history_path(out: Path) -> Path:
    """results/bench/history.jsonl beside latest.json; <name>.history.jsonl beside any other output."""
    return out.with_name("history.jsonl") if out.resolve() == OUT.resolve() else out.with_suffix(".history.jsonl")


def append_history(doc: dict, path: Path) -> dict:
    """Append one line (the figures, with the commit and the machine) to the bench history.

    The history is committed with latest.json, so a regression shows as a diff between lines."""
    entry = {"written_at": doc["written_at"], "commit": _git("rev-parse", "--short=12", "HEAD") or "unknown",
             "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
             "machine": {**machine(), **doc.get("machine", {})}, "tiny": doc["tiny"],
             "sweep": doc["details"]["sweep"], "figures": doc["figures"]}
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:   # one short append: no partial line in practice
        f.write(json.dumps(entry, default=str) + "\n")
    return entry


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sweep.bench", description=__doc__)
    ap.add_argument("--tiny", action="store_true", help="a 2-trial smoke sweep run here (for tests)")
    ap.add_argument("--sweep", type=Path, default=None, help="the full sweep's folder (default results/runs/frill144)")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    out = a.out or (OUT.with_name("tiny.json") if a.tiny else OUT)
    doc = run(a.tiny, out, a.sweep)
    for k, v in doc["figures"].items():
        print(f"{k:48s} {json.dumps(v)}")
    hist = history_path(out)
    append_history(doc, hist)
    print(f"written: {out}; appended to {hist}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
