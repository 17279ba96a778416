"""FIXTURE (synthetic numbers, not measurements): a sweep folder shaped like the driver's output.

results/ tests and the notebook test use it where a real sweep (the session's smoke_sweep)
would be too slow or too small (32 or 144 rows, errored and missing trials).
`make_fixture_sweep(dir)` writes <dir>/sweep.json and <dir>/trials/<trial_id>/row.json whose
rows follow the results contract (results/schema.py). The numbers come from a made-up
cost/quality model that only has to look plausible (bigger students are slower, larger and
better).
"""
from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import numpy as np

SMALL_AXES = {"depth": ["tiny", "small"], "alpha": [1.0, 2.0], "pooling": ["global", "flatten"],
              "compression": ["none", "lowrank"], "qat": [False, True]}
FULL_AXES = {"depth": ["tiny", "small", "large"], "alpha": [0.25, 0.5, 0.75, 1.0, 1.5, 2.0],
             "pooling": ["global", "flatten"], "compression": ["none", "lowrank"], "qat": [False, True]}
SHARED = {"bottleneck": 2048, "rank": 100, "frontend": False, "steps": 200, "batch_size": 32,
          "learning_rate": 1e-3, "lr_schedule": "constant", "seed": 0, "init": "scratch",
          "teacher": "resemblyzer", "corpus": "builtin", "n_crops": 320}

# made-up: conv params at alpha 1, last-point channels, MACs per patch at alpha 1
_DEPTH = {"tiny": (0.9e6, 512, 40e6), "small": (1.5e6, 1024, 60e6), "large": (3.0e6, 1280, 220e6)}
TEACHER_MS, TEACHER_ACC, LOGMEL_ACC, TEACHER_BYTES = 11.0, 0.77, 0.625, 6_488_456


def trial_id(config: dict) -> str:
    return hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]


def _row(cfg: dict, sweep: str, fidelity: str, rng: np.random.Generator, started: str) -> dict:
    conv, last, macs0 = _DEPTH[cfg["depth"]]
    a = cfg["alpha"]
    pooled = last * max(a, 1.0) * (6 if cfg["pooling"] == "flatten" else 1)
    head = (pooled + 2048) * 100 if cfg["compression"] == "lowrank" else pooled * 2048
    params = int(conv * a * a + head)
    macs = int(macs0 * a * a + head)
    nbytes = int(params * (1.05 if cfg["qat"] else 4.0) + 60_000)
    lat = (0.1 + macs / 150e6) * (1.35 if cfg["qat"] else 1.0) * rng.uniform(0.95, 1.05)
    q = 0.60 + 0.17 * (1 - np.exp(-(params / 2.5e6) ** 0.6)) - 0.01 * cfg["qat"] \
        - 0.008 * (cfg["compression"] == "lowrank") + rng.normal(0, 0.006)
    lang = min(0.99, q + 0.1 + rng.normal(0, 0.01))
    secs = {"seconds_build": 1.5, "seconds_train": 20 * a, "seconds_export": 10.0, "seconds_measure": 2.0,
            "seconds_evaluate": 4.0}
    return {**cfg, "status": "OK", "error_class": "", "error_message": "",
            "tflite_bytes": nbytes, "params": params, "macs_per_patch": macs,
            "latency_ms_p50": lat, "latency_ms_p90": lat * 1.1, "latency_threads": 1, "latency_runs": 50,
            "runtime": "fixture (synthetic)", "teacher_latency_ms_p50": TEACHER_MS,
            "speedup_vs_teacher": TEACHER_MS / lat,
            "distill_mse_heldout": 0.02 / q, "distill_cosine_heldout": q + 0.15,
            "probe_acc_language": lang, "probe_acc_rate": 2 * q - lang, "probe_acc_mean": q,
            "teacher_probe_acc_mean": TEACHER_ACC, "logmel_probe_acc_mean": LOGMEL_ACC,
            "quality_retained": q / TEACHER_ACC, "export_cosine": 0.999 if not cfg["qat"] else 0.97,
            "keras_distill_mse_heldout": 0.019 / q, **secs, "seconds_total": sum(secs.values()),
            "train_steps_per_second": cfg["steps"] / secs["seconds_train"],
            "git_commit": "fixture", "tensorflow_version": "2.21.0", "litert_version": "2.3.0",
            "host": "fixture-host", "started_at": started, "ended_at": started}


def _newer_columns(row: dict, rng: np.random.Generator) -> dict:
    """Columns added after schema 1 (FIXTURE numbers): held-out R², 95% bootstrap intervals
    per task and for the mean (half-width ~0.04, as with 500 test clips), per-task baselines."""
    out = {"distill_r2_heldout": round(row["distill_cosine_heldout"] - 0.55, 4)}
    for q in ("probe_acc_language", "probe_acc_rate", "probe_acc_mean"):
        half = 0.04 if q != "probe_acc_mean" else 0.03
        out[f"{q}_ci_lo"], out[f"{q}_ci_hi"] = row[q] - half * rng.uniform(0.8, 1.2), row[q] + half
    out.update(teacher_probe_acc_language=0.574, logmel_probe_acc_language=0.694,
               teacher_probe_acc_rate=0.966, logmel_probe_acc_rate=0.556, teacher_tflite_bytes=TEACHER_BYTES)
    return out


def make_fixture_sweep(folder: str | Path, name: str | None = None, *, full: bool = False,
                       n_errors: int = 2, n_missing: int = 1, write_table: bool = False, seed: int = 0,
                       newer_columns: bool = False) -> Path:
    """Write a FIXTURE sweep folder (synthetic rows); returns it.

    Small grid: 32 trials incl. FRILL's configuration; full=True: the 144-trial grid.
    The first n_errors trials are ERROR rows, the last n_missing have no folder (still expected).
    write_table=True also writes results.parquet/.csv through results.write_table.
    newer_columns=True adds the columns of _newer_columns to OK rows (trial folders only: the
    schema of this branch does not know them, so write_table would refuse them).
    """
    folder = Path(folder)
    name = name or folder.name
    axes = FULL_AXES if full else SMALL_AXES
    fidelity = "smoke"
    rng = np.random.default_rng(seed)
    configs = [{**SHARED, **dict(zip(axes, values)), "sweep": name, "fidelity": fidelity}
               for values in itertools.product(*axes.values())]
    ids = [trial_id({k: v for k, v in c.items() if k != "sweep"}) for c in configs]
    (folder / "trials").mkdir(parents=True, exist_ok=True)
    (folder / "sweep.json").write_text(json.dumps({
        "name": name, "grid": "fixture-full" if full else "fixture-small", "fidelity": fidelity,
        "started_at": "2025-01-01T00:00:00Z", "expected_trial_ids": ids, "fixture": True}, indent=1))
    rows = []
    for i, (cfg, tid) in enumerate(zip(configs, ids)):
        if i >= len(configs) - n_missing:
            continue
        started = f"2025-01-01T00:{i // 60:02d}:{i % 60:02d}Z"
        if i < n_errors:
            row = {**cfg, "status": "ERROR", "error_class": "ConverterError",
                   "error_message": f"fixture: TFLite conversion failed for trial {i}",
                   "started_at": started, "ended_at": started, "host": "fixture-host"}
        else:
            row = _row(cfg, name, fidelity, rng, started)
            if newer_columns:
                row |= _newer_columns(row, rng)
        row["trial_id"] = tid
        (folder / "trials" / tid).mkdir(exist_ok=True)
        (folder / "trials" / tid / "row.json").write_text(json.dumps(row))
        rows.append(row)
    if write_table:
        import pandas as pd

        from results import write_table as write

        write(pd.DataFrame.from_records(rows), folder)
    return folder
