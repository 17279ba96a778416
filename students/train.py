"""Distillation: regress the student's projection onto cached teacher targets (MSE, Adam)."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
import tf_keras as keras

from students.compression import find_layer, weight
from students.config import TrainConfig
from students.model import PROJECTION
from results.errors import FrillError


class TrainingDiverged(FrillError):
    """The loss became NaN or infinite; lower the learning rate."""


@dataclass(frozen=True)
class TrainResult:
    steps: int
    seconds: float
    steps_per_second: float
    loss_mean: float        # mean training MSE over all steps, in the targets' own units


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
    over the steps so far, in the scaled targets' units."""

    def __init__(self, report, total_steps: int, every: int = 10):
        super().__init__()
        self.report, self.total, self.every = report, total_steps, max(1, every)
        self.step, self.t0 = 0, time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step % self.every == 0 or self.step == self.total:
            self.report({"step": self.step, "train_loss": float((logs or {}).get("loss", float("nan"))),
                         "steps_per_second": self.step / (time.perf_counter() - self.t0)})


def dataset(inputs: np.ndarray, targets: np.ndarray, cfg: TrainConfig) -> tf.data.Dataset:
    """In-memory pipeline: features are computed once per trial, never re-read per step."""
    ds = tf.data.Dataset.from_tensor_slices((inputs, targets))
    ds = ds.shuffle(len(inputs), seed=cfg.seed, reshuffle_each_iteration=True).repeat()
    return ds.batch(cfg.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def target_scaling(targets: np.ndarray) -> tuple[np.ndarray, float]:
    """(per-dimension mean, one global scale) that map the targets to zero mean, unit std.

    Teacher embeddings are small (unit-norm 256-d: entries ~0.06) and mostly their mean, so a
    freshly initialised student spends a short run shrinking its outputs towards the mean.
    One global scale keeps the MSE objective itself unchanged (up to a constant factor).
    """
    targets = np.asarray(targets, np.float64)
    mean = targets.mean(axis=0)
    scale = float((targets - mean).std())
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError("teacher targets are constant; nothing to distil")
    return mean.astype(np.float32), scale


def learning_rate(cfg: TrainConfig):
    """A float, or cosine decay to 0 after a linear warm-up over the first 10% of steps."""
    if cfg.lr_schedule == "constant":
        return cfg.learning_rate
    warmup = max(1, cfg.steps // 10)
    return keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(1, cfg.steps - warmup), warmup_target=cfg.learning_rate,
        warmup_steps=warmup)


def distill(student, inputs: np.ndarray, targets: np.ndarray, cfg: TrainConfig,
            callbacks: tuple = ()) -> TrainResult:
    """Train student.train_model for cfg.steps on (inputs, targets).

    Trains on scaled targets (see target_scaling), then folds the scaling into the
    projection, so the trained model predicts the teacher's targets themselves.
    callbacks: extra Keras callbacks (e.g. a learning-curve recorder).
    """
    if len(inputs) < cfg.batch_size:
        raise ValueError(f"{len(inputs)} training crops is fewer than batch_size={cfg.batch_size}")
    mean, scale = target_scaling(targets)
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
    start = time.perf_counter()
    history = model.fit(dataset(inputs, (targets - mean) / scale, cfg), steps_per_epoch=cfg.steps,
                        epochs=1, verbose=0,
                        callbacks=[*student.callbacks(cfg.steps), _StopOnNonFinite(), *callbacks])
    seconds = time.perf_counter() - start
    kernel.assign(kernel * scale)
    bias.assign(bias * scale + mean)
    return TrainResult(steps=cfg.steps, seconds=seconds, steps_per_second=cfg.steps / seconds,
                       loss_mean=float(history.history["loss"][-1]) * scale ** 2)
