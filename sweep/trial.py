"""One trial: build -> distill -> export -> measure -> evaluate, composed; no Ray here.

`run_trial` never raises for a failing trial: it returns (and writes) an ERROR row naming the
stage and the error, so one bad configuration cannot take a sweep down.
"""
from __future__ import annotations

import contextlib
import json
import math
import socket
import subprocess
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from results.errors import first_line
from results.files import atomic_write
from results.folder import new_row, write_row
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
    atomic_write(path, json.dumps(obj, indent=1, default=str))


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a - b) ** 2))


def _predict(student, x: np.ndarray) -> np.ndarray:
    # One eager call: `predict` would trace a new function each time (~1-3 s per call).
    return student.train_model(x, training=False).numpy()


def run_trial(cfg: TrialConfig, ctx: SweepContext, out_dir: Path, *, sweep: str,
              attempt: int = 1, init: dict | None = None, keep_weights: bool = False,
              row_fields: dict | None = None, reraise: bool = False, progress=None,
              resume: Path | None = None) -> dict:
    """Run one trial; write out_dir/{config.json, model.tflite, row.json}; return the row.

    init: the float twin's trained weights (float_weights.npz of its trial folder) when
    cfg.warm_start. keep_weights: also write float_weights.npz (for this student's twins).
    row_fields: more columns for the row (the driver's ray_node_id), so it is written once.
    reraise: let a failure propagate after error.txt is written (for a post-mortem debugger).
    progress: called with {step, train_loss, steps_per_second} every 10 training steps, and
    with (those, a checkpoint folder) every sweep.checkpoint_every steps (students.train.Progress).
    resume: a checkpoint folder from an earlier, interrupted run of this trial."""
    entered = time.perf_counter()   # setup = imports (TF start in a fresh process) + provenance
    import tf_keras as keras

    from students import evaluate, export, measure
    from students.model import build_student, float_weights, projection_weights, recalibrate_batchnorm
    from students.train import distill, seed_everything, set_threads, train_device

    sc, s = ctx.sweep, cfg.student
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "config.json", dict(trial_id=cfg.trial_id(sc), sweep=sweep,
                                             config=cfg.as_dict(), sweep_config=sc.as_dict()))
    row = new_row(cfg.flat(sc), sweep=sweep, attempt=attempt, started_at=_now(), resumed_from_step=0,
                  **provenance(),
                  **(row_fields or {}))
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
        if cfg.warm_start and init is None:
            raise ValueError(f"init float_twin: no weights given for the float twin "
                             f"{row['init_from']}; run it first")
        set_threads(cfg.run_train.threads)
        row["train_device"] = train_device()
        b = ctx.baselines
        with timed("build"):
            train, x_ho, y_ho = ctx.training(s.frontend)
            row["n_crops"] = len(train)   # what the set gave (n_crops 0: the whole corpus)
            x_calib = train.head(256)   # BN recalibration and the int8 converter's calibration
            seed_everything(cfg.train.seed)   # before the build: initialisers draw from it
            student = build_student(s, teacher_dim=y_ho.shape[1],
                                    init=init if cfg.warm_start else None)
            row["keras_distill_mse_heldout_untrained"] = _mse(_predict(student, x_ho), y_ho)
        with timed("train"):
            tr = distill(student, train, cfg.run_train, report=progress,
                         checkpoint_every=sc.checkpoint_every, resume=resume)
            # Short runs leave BN's running statistics near their initial values.
            recalibrate_batchnorm(student, x_calib, batch_size=256)
            row.update(train_steps_per_second=tr.steps_per_second, train_loss_mean=tr.loss_mean,
                       resumed_from_step=tr.resumed_from_step)
            row["keras_distill_mse_heldout"] = _mse(_predict(student, x_ho), y_ho)
            if keep_weights:
                np.savez(out_dir / "float_weights.npz", **_flatten(float_weights(student)))
        with timed("export"):
            ex = export.export_tflite(student, out_dir / "model.tflite", representative=x_calib[:128])
            row["export_cosine"] = export.check_export(student, ex.path, x_ho[:64])
            row["tflite_conversion_seconds"] = ex.seconds
        with timed("measure"):
            lat = measure.latency(ex.path, threads=sc.latency_threads, runs=sc.latency_runs)
            row.update(tflite_bytes=measure.tflite_bytes(ex.path),
                       params=measure.count_params(student.embed_model),
                       macs_per_patch=measure.count_macs(ex.path),
                       latency_ms_p50=lat.p50_ms, latency_ms_p90=lat.p90_ms,
                       latency_threads=lat.threads, latency_runs=lat.runs, runtime=lat.runtime,
                       teacher_latency_ms_p50=b["teacher_latency_ms_p50"],
                       teacher_latency_ms_p90=b["teacher_latency_ms_p90"],
                       teacher_tflite_bytes=b.get("teacher_tflite_bytes"),
                       speedup_vs_teacher=b["teacher_latency_ms_p50"] / lat.p50_ms)
        with timed("evaluate"):
            embedder = evaluate.TFLiteEmbedder(ex.path)
            mse, cos = evaluate.distill_quality(embedder, projection_weights(student), x_ho, y_ho)
            row.update(distill_mse_heldout=mse, distill_cosine_heldout=cos,
                       distill_r2_heldout=1 - mse / b["heldout_mse_of_train_mean"])
            row.update(evaluate.probe_columns(embedder, ctx.tasks, inputs=None if s.frontend
                                              else ctx.eval_inputs))
            row.update({k: v for k, v in b.items()
                        if k.startswith(("teacher_probe_acc_mean", "logmel_probe_acc_mean"))},
                       quality_retained=row["probe_acc_mean"] / b["teacher_probe_acc_mean"])
        bad = sorted(k for k, v in row.items() if isinstance(v, float) and not math.isfinite(v))
        if bad:
            raise FloatingPointError(f"non-finite metrics: {bad}")
        row["status"] = "OK"
    except Exception as e:  # noqa: BLE001 - any failure becomes this trial's ERROR row
        row.update(error_class=type(e).__name__, error_message=f"{stage}: {first_line(e, 500)}")
        (out_dir / "error.txt").write_text(traceback.format_exc())
        if reraise:
            raise
    finally:
        keras.backend.clear_session()
    row.update(seconds, seconds_total=time.perf_counter() - entered, ended_at=_now())
    write_row(out_dir, row)
    return row


def _flatten(weights: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
    return {f"{name}:{i}": w for name, ws in weights.items() for i, w in enumerate(ws)}


def load_float_weights(path: Path) -> dict[str, list[np.ndarray]]:
    """float_weights.npz of a trial folder -> layer name -> weights in order."""
    out: dict[str, list[np.ndarray]] = {}
    with np.load(path) as z:
        for key in sorted(z.files, key=lambda k: (k.rpartition(":")[0], int(k.rpartition(":")[2]))):
            out.setdefault(key.rpartition(":")[0], []).append(z[key])
    return out
