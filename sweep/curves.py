"""make curves: learning curves (held-out R2 and probe mean against steps) of three students.

Each student trains once, with the sweep's data and training settings, for the longest
budget; at each checkpoint its BatchNorm statistics are recalibrated (as a trial does before
export) and the Keras model is scored: R2 of its projection on the held-out crops, and the
linear probes on its embedding. Keras, not TFLite, so a point costs seconds; the trial's own
TFLite figures differ by the conversion loss (export_cosine >= 0.99 for float students).
Writes results/curves/latest.json and results/curves/curves.png.
    python -m sweep.curves              # ~15 min on 2 cores
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from results.files import atomic_write

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "results" / "curves"
STUDENTS = (dict(depth="tiny", alpha=1.0, pooling="global"),
            dict(depth="small", alpha=2.0, pooling="global"),     # FRILL's configuration
            dict(depth="large", alpha=0.5, pooling="flatten"))
CHECKPOINTS = (10, 20, 40, 80, 160, 320)


def curve(student_kw: dict, ctx, train_cfg, checkpoints) -> list[dict]:
    import tf_keras as keras

    from students import evaluate
    from students.config import StudentConfig
    from students.model import build_student, recalibrate_batchnorm
    from students.train import distill, seed_everything

    train, x_ho, y_ho = ctx.training(frontend=False)
    x_calib = train.head(256)
    mean, scale = train.scaling()
    seed_everything(train_cfg.seed)
    st = build_student(StudentConfig(**student_kw), teacher_dim=y_ho.shape[1])
    points: list[dict] = []

    def embed(z):
        return np.concatenate([st.embed_model(np.asarray(z[i:i + 256]), training=False).numpy()
                               for i in range(0, len(z), 256)])

    class Score(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.step, self.t0, self.paused = 0, time.perf_counter(), 0.0

        def on_train_batch_end(self, batch, logs=None):
            self.step += 1
            if self.step not in checkpoints:
                return
            t = time.perf_counter()
            recalibrate_batchnorm(st, x_calib, batch_size=256)
            # Mid-training the projection predicts scaled targets (see distill).
            pred = st.train_model(x_ho, training=False).numpy() * scale + mean
            r2 = 1 - np.mean((pred - y_ho) ** 2) / ctx.baselines["heldout_mse_of_train_mean"]
            accs = evaluate.probe_accuracies(embed, ctx.tasks, inputs=ctx.eval_inputs)
            points.append(dict(step=self.step, r2_heldout=round(float(r2), 4),
                               probe_acc_mean=round(float(np.mean(list(accs.values()))), 4),
                               **{f"probe_acc_{k}": round(v, 4) for k, v in accs.items()},
                               train_seconds=round(t - self.t0 - self.paused, 1)))
            self.paused += time.perf_counter() - t

    distill(st, train, train_cfg, callbacks=(Score(),))
    keras.backend.clear_session()
    return points


def _plot(doc: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    b = doc["baselines"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.2))
    for i, c in enumerate(doc["curves"]):
        steps = [p["step"] for p in c["points"]]
        ax1.plot(steps, [p["r2_heldout"] for p in c["points"]], "o-", color=f"C{i}", label=c["student"])
        ax2.plot(steps, [p["probe_acc_mean"] for p in c["points"]], "o-", color=f"C{i}", label=c["student"])
    ax2.axhline(b["teacher_probe_acc_mean"], color="k", ls="--", lw=1, label="teacher")
    ax2.axhline(b["logmel_probe_acc_mean"], color="0.5", ls=":", lw=1, label="log-mel floor")
    ax2.axhspan(b["teacher_probe_acc_mean_ci_lo"], b["teacher_probe_acc_mean_ci_hi"], color="k", alpha=0.06)
    ax2.axhspan(b["logmel_probe_acc_mean_ci_lo"], b["logmel_probe_acc_mean_ci_hi"], color="0.5", alpha=0.08)
    for ax, label in ((ax1, "held-out distillation R2"), (ax2, "probe accuracy, mean of tasks")):
        ax.set(xscale="log", xlabel=f"training steps (batch {doc['batch_size']})", ylabel=label)
        ax.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    fig.suptitle(f"Learning curves at the {doc['fidelity']} fidelity's settings "
                 f"({doc['n_crops']} training crops; bands: 95% intervals)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sweep.curves", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args(argv)
    from dataclasses import replace

    from students.train import set_threads
    from sweep import grid as G
    from sweep.context import prepare
    g = G.load("frill144")
    set_threads(1)
    ctx = prepare(g.sweep)
    train = replace(g.trials[0].train, steps=max(CHECKPOINTS))
    curves = []
    for kw in STUDENTS:
        name = f"{kw['depth']} a{kw['alpha']:g} {kw['pooling']}"
        print(f"{name}: {train.steps} steps", flush=True)
        curves.append(dict(student=name, **kw, points=curve(kw, ctx, train, set(CHECKPOINTS))))
    doc = dict(fidelity=g.sweep.fidelity, n_crops=g.sweep.n_crops, batch_size=train.batch_size,
               learning_rate=train.learning_rate, lr_schedule=train.lr_schedule,
               local_steps=g.trials[0].train.steps, curves=curves,
               baselines={k: v for k, v in ctx.baselines.items() if "probe_acc_mean" in k},
               written_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    a.out.mkdir(parents=True, exist_ok=True)
    atomic_write(a.out / "latest.json", json.dumps(doc, indent=1))
    _plot(doc, a.out / "curves.png")
    print(f"written: {a.out / 'latest.json'}, {a.out / 'curves.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
