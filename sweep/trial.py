"""One trial: build -> distill -> export -> measure -> evaluate, composed; no Ray here.

`run_trial` never raises for a failing trial: it returns (and writes) an ERROR row naming the
stage and the error, so one bad configuration cannot take a sweep down.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import subprocess
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from sweep.config import TrialConfig
from sweep.context import SweepContext

STAGES = ("build", "train", "export", "measure", "evaluate")
REPO = Path(__file__).resolve().parent.parent


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def provenance() -> dict:
    import ai_edge_litert
    import tensorflow as tf
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"],
                                capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return dict(git_commit=commit or "unknown", tensorflow_version=tf.__version__,
                litert_version=getattr(ai_edge_litert, "__version__", "unknown"),
                host=socket.gethostname())


def write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    os.replace(tmp, path)


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a - b) ** 2))


def _predict(student, x: np.ndarray) -> np.ndarray:
    # One eager call: `predict` would trace a new function each time (~1-3 s per call).
    return student.train_model(x, training=False).numpy()


def run_trial(cfg: TrialConfig, ctx: SweepContext, out_dir: Path, *, sweep: str,
              attempt: int = 1, reraise: bool = False) -> dict:
    """Run one trial; write out_dir/{config.json, model.tflite, row.json}; return the row.

    reraise: let a failure propagate after error.txt is written (for a post-mortem debugger)."""
    entered = time.perf_counter()   # setup = imports (TF start in a fresh process) + provenance
    import tf_keras as keras

    from students import evaluate, export, measure
    from students.frontend import features
    from students.model import build_student, projection_weights, recalibrate_batchnorm
    from students.train import distill, set_threads

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "config.json", dict(trial_id=cfg.trial_id, sweep=sweep, config=cfg.as_dict()))
    row = dict(cfg.flat(), sweep=sweep, attempt=attempt, status="ERROR", error_class="",
               error_message="", started_at=_now(), **provenance())
    seconds = {f"seconds_{s}": 0.0 for s in STAGES}
    seconds["seconds_setup"] = time.perf_counter() - entered
    stage = "setup"

    @contextlib.contextmanager
    def timed(name: str):
        nonlocal stage
        stage, t0 = name, time.perf_counter()
        yield
        seconds[f"seconds_{name}"] += time.perf_counter() - t0

    try:
        set_threads(cfg.train.threads)
        dset, s = ctx.dset, cfg.student
        with timed("build"):
            inputs = dset.crops if s.frontend else features(dset.crops)
            held = np.asarray(dset.heldout, bool)
            x_tr, y_tr, x_ho, y_ho = inputs[~held], dset.targets[~held], inputs[held], dset.targets[held]
            student = build_student(s, teacher_dim=dset.targets.shape[1])
            row["keras_distill_mse_heldout_untrained"] = _mse(_predict(student, x_ho), y_ho)
        with timed("train"):
            tr = distill(student, x_tr, y_tr, cfg.train)
            # Short runs leave BN's running statistics near their initial values.
            recalibrate_batchnorm(student, x_tr[:256], batch_size=256)
            row.update(train_steps_per_second=tr.steps_per_second, train_loss_mean=tr.loss_mean)
            row["keras_distill_mse_heldout"] = _mse(_predict(student, x_ho), y_ho)
        with timed("export"):
            ex = export.export_tflite(student, out_dir / "model.tflite", representative=x_tr[:128])
            row["export_cosine"] = export.check_export(student, ex.path, x_ho[:64])
            row["tflite_conversion_seconds"] = ex.seconds
        with timed("measure"):
            lat = measure.latency(ex.path, threads=cfg.latency_threads, runs=cfg.latency_runs)
            b = ctx.baselines
            row.update(tflite_bytes=measure.tflite_bytes(ex.path),
                       params=measure.count_params(student.embed_model),
                       macs_per_patch=measure.count_macs(ex.path),
                       latency_ms_p50=lat.p50_ms, latency_ms_p90=lat.p90_ms,
                       latency_threads=lat.threads, latency_runs=lat.runs, runtime=lat.runtime,
                       teacher_latency_ms_p50=b["teacher_latency_ms_p50"],
                       teacher_latency_ms_p90=b["teacher_latency_ms_p90"],
                       speedup_vs_teacher=b["teacher_latency_ms_p50"] / lat.p50_ms)
        with timed("evaluate"):
            embedder = evaluate.TFLiteEmbedder(ex.path)
            mse, cos = evaluate.distill_quality(embedder, projection_weights(student), x_ho, y_ho)
            row.update(distill_mse_heldout=mse, distill_cosine_heldout=cos)
            embed_crops = embedder if s.frontend else (lambda crops: embedder(features(crops)))
            accs = evaluate.probe_accuracies(embed_crops, ctx.tasks)
            row.update({f"probe_acc_{name}": a for name, a in accs.items()})
            mean_acc = float(np.mean(list(accs.values())))
            row.update(probe_acc_mean=mean_acc,
                       teacher_probe_acc_mean=b["teacher_probe_acc_mean"],
                       logmel_probe_acc_mean=b["logmel_probe_acc_mean"],
                       quality_retained=mean_acc / b["teacher_probe_acc_mean"])
        bad = sorted(k for k, v in row.items() if isinstance(v, float) and not math.isfinite(v))
        if bad:
            raise FloatingPointError(f"non-finite metrics: {bad}")
        row["status"] = "OK"
    except Exception as e:  # noqa: BLE001 - any failure becomes this trial's ERROR row
        msg = (str(e).strip().splitlines() or [""])[0][:500]
        row.update(error_class=type(e).__name__, error_message=f"{stage}: {msg}")
        (out_dir / "error.txt").write_text(traceback.format_exc())
        if reraise:
            raise
    finally:
        keras.backend.clear_session()
    row.update(seconds, seconds_total=time.perf_counter() - entered, ended_at=_now())
    write_json(out_dir / "row.json", row)
    return row
