"""Distillation: regress the student's projection onto cached teacher targets (MSE, Adam)."""
from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras as keras

from students.compression import find_layer, weight
from students.config import TrainConfig
from students.data import TrainData
from students.model import PROJECTION
from results.errors import FrillError, first_line
from results.files import atomic_write


class TrainingDiverged(FrillError):
    """The loss became NaN or infinite; lower the learning rate."""


@dataclass(frozen=True)
class TrainResult:
    steps: int
    seconds: float
    steps_per_second: float
    loss_mean: float        # mean training MSE over all steps, in the targets' own units
    resumed_from_step: int = 0


def seed_everything(seed: int) -> None:
    """Same config + seed -> same weights and row, in any process: Python, numpy and TF seeds
    (weight initialisers included, so call this before building the student) and
    deterministic TF kernels."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def train_device() -> str:
    """Where training runs: the first visible GPU's name, else 'CPU'."""
    gpus = tf.config.list_logical_devices("GPU")
    return f"GPU ({gpus[0].name})" if gpus else "CPU"


def set_threads(threads: int) -> None:
    """Pin TF's pools to the trial's CPUs (Ray does not). Only possible before TF starts."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # TF's pools are already running in this process: keep the first setting


class _StopOnNonFinite(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            raise TrainingDiverged(f"loss became {loss} at step {batch}; lower learning_rate")


class Progress(keras.callbacks.Callback):
    """Calls report({'step', 'train_loss', 'steps_per_second'}) every `every` steps and at the
    last one (e.g. to Ray Tune, for its dashboards and loggers). The loss is Keras' running mean
    over the steps so far, in the scaled targets' units. Every `checkpoint_every` steps (0 =
    never; not at the last) it also saves the training state to a fresh folder and passes it:
    report(metrics, folder); the folder is deleted once report returns (Tune has copied it)."""

    def __init__(self, report, total_steps: int, every: int = 10, start: "Resume | None" = None,
                 checkpoint_every: int = 0):
        super().__init__()
        self.report, self.total, self.every = report, total_steps, max(1, every)
        self.checkpoint_every = checkpoint_every
        self.start = start or Resume(0, 0.0)
        self.step, self.t0 = self.start.step, time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        loss = float((logs or {}).get("loss", float("nan")))
        metrics = {"step": self.step, "train_loss": loss,
                   "steps_per_second": (self.step - self.start.step) / (time.perf_counter() - self.t0)}
        if self.checkpoint_every and self.step % self.checkpoint_every == 0 and self.step < self.total:
            loss_sum = self.start.loss_sum + loss * (self.step - self.start.step)
            with tempfile.TemporaryDirectory(prefix="train-state-") as folder:
                save_state(self.model, Path(folder), Resume(self.step, loss_sum))
                self.report(metrics, Path(folder))
        elif self.step % self.every == 0 or self.step == self.total:
            self.report(metrics)


@dataclass(frozen=True)
class Resume:
    """Where a checkpoint left training: steps done, and the sum of their training losses
    (scaled targets' units), so the resumed run's loss_mean covers every step."""
    step: int
    loss_sum: float


STATE, STATE_JSON = "train_state", "train_state.json"   # inside a checkpoint folder


def _state(model) -> tf.train.Checkpoint:
    return tf.train.Checkpoint(model=model, optimizer=model.optimizer)


def save_state(model, folder: Path, at: Resume) -> None:
    """Weights (BN statistics, QAT ranges and the low-rank blend included) and optimizer
    state (Adam's moments, its step count) after `at.step` steps."""
    _state(model).write(str(folder / STATE))
    atomic_write(folder / STATE_JSON, json.dumps(dataclasses.asdict(at)))


def read_resume(folder: Path) -> Resume:
    """The step and loss sum a checkpoint folder holds; FrillError if it is not one."""
    try:
        return Resume(**json.loads((Path(folder) / STATE_JSON).read_text()))
    except (OSError, ValueError, TypeError) as e:
        raise FrillError(f"{folder} is not a training checkpoint ({first_line(e)})") from None


def learning_rate(cfg: TrainConfig):
    """A float, or cosine decay to 0 after a linear warm-up over the first 10% of steps."""
    if cfg.lr_schedule == "constant":
        return cfg.learning_rate
    warmup = max(1, cfg.steps // 10)
    return keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(1, cfg.steps - warmup), warmup_target=cfg.learning_rate,
        warmup_steps=warmup)


def distill(student, data: TrainData, cfg: TrainConfig, callbacks: tuple = (), report=None,
            checkpoint_every: int = 0, resume: Path | None = None) -> TrainResult:
    """Train student.train_model for cfg.steps on data (students.data: arrays or shards).

    Trains on scaled targets (see target_scaling), then folds the scaling into the
    projection, so the trained model predicts the teacher's targets themselves.
    callbacks: extra Keras callbacks (e.g. a learning-curve recorder).
    report, checkpoint_every: progress and checkpoints, see Progress.
    resume: a checkpoint folder to continue from; with the same student, data and config the
    result equals an uninterrupted run (same data order: the skipped batches are drawn).
    """
    if len(data) < cfg.batch_size:
        raise ValueError(f"{len(data)} training crops is fewer than batch_size={cfg.batch_size}")
    mean, scale = data.scaling()
    model = student.train_model
    projection = find_layer(model, PROJECTION)
    kernel, bias = weight(projection, "kernel"), weight(projection, "bias")
    if student.warm:   # a twin's projection predicts the targets: map it into scaled space
        kernel.assign(kernel / scale)
        bias.assign((bias - mean) / scale)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate(cfg)), loss="mse")
    # Create Adam's slots now: otherwise the first step creates them inside the traced train
    # function, which tf.function then traces a second time (~3 s per trial, half the fixed
    # cost of a 40-step run).
    model.optimizer.build(model.trainable_variables)
    at = Resume(0, 0.0)
    if resume is not None:   # replaces every weight, the scaled projection included
        at = read_resume(resume)
        if not 0 < at.step < cfg.steps:
            raise FrillError(f"checkpoint {resume} is at step {at.step}, outside 1..{cfg.steps - 1}")
        _state(model).read(str(Path(resume) / STATE)).assert_existing_objects_matched()
    if report is not None:
        callbacks = (*callbacks, Progress(report, cfg.steps, start=at, checkpoint_every=checkpoint_every))
    start = time.perf_counter()
    history = model.fit(data.batches(cfg, mean, scale).skip(at.step),
                        steps_per_epoch=cfg.steps - at.step, epochs=1, verbose=0,
                        callbacks=[*student.callbacks(cfg.steps, at.step), _StopOnNonFinite(),
                                   *callbacks])
    seconds = time.perf_counter() - start
    kernel.assign(kernel * scale)
    bias.assign(bias * scale + mean)
    ran = cfg.steps - at.step
    loss_sum = at.loss_sum + float(history.history["loss"][-1]) * ran
    return TrainResult(steps=cfg.steps, seconds=seconds, steps_per_second=ran / seconds,
                       loss_mean=loss_sum / cfg.steps * scale ** 2, resumed_from_step=at.step)
