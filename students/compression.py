"""Low-rank compression of the bottleneck: FRILL's compression op, as four Keras layers.

During training the bottleneck output is the blend
    blend * (x @ W + b_W) + (1 - blend) * ((x @ B) @ C + b_C)
with W: in x out, B: in x r, C: r x out. `LowRankHandoff` steps blend from 1 to 0 over the
first HANDOFF_FRACTION of training; before each step it resets B, C (and b_C) from the
truncated SVD of W, so the factors take over from the best rank-r approximation of what the
full layer has learned (the reference's handoff). After the last step blend is 0 and B, C
train alone. The factored path is its own subgraph (Dense(r, no bias) -> Dense(out)): the
student's embed_model ends there, so W never reaches the TFLite file. Each of the four is a
plain Dense (or a one-variable blend), so QAT needs nothing special for them.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np
import tensorflow as tf
import tf_keras as keras
from threadpoolctl import threadpool_limits
from tf_keras import layers

FULL, FACTOR_B, FACTOR_C, BLEND = ("bottleneck_full", "bottleneck_b", "bottleneck_c",
                                   "bottleneck")
HANDOFF_FRACTION = 0.6   # blend reaches 0 at 60% of training; the factors train alone after
HANDOFF_UPDATES = 20     # number of blend decrements (each preceded by an SVD reset)


@keras.utils.register_keras_serializable("frill")
class LowRankBlend(layers.Layer):
    """blend * full + (1 - blend) * factored, blend a non-trainable scalar set by the callback."""

    def build(self, input_shape):
        self.blend = self.add_weight(name="blend", shape=(), initializer="ones",
                                     trainable=False)
        # Explicit super(): Keras may autograph-convert build(), and converted code loses
        # the implicit __class__ cell that bare super() needs.
        super(LowRankBlend, self).build(input_shape)

    def call(self, inputs):
        full, factored = inputs
        return self.blend * full + (1.0 - self.blend) * factored

    def compute_output_shape(self, input_shape):
        return input_shape[0]


def lowrank_bottleneck(x: tf.Tensor, units: int, rank: int,
                       annotate=lambda layer: layer) -> tuple[tf.Tensor, tf.Tensor]:
    """Returns (blended output used in training, factored output that is exported).

    annotate: wraps each layer (tfmot annotation for QAT students).
    """
    full = annotate(layers.Dense(units, name=FULL))(x)
    factored = annotate(layers.Dense(rank, use_bias=False, name=FACTOR_B))(x)
    factored = annotate(layers.Dense(units, name=FACTOR_C))(factored)
    return annotate(LowRankBlend(name=BLEND))([full, factored]), factored


def truncated_svd(w: np.ndarray, rank: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """B [in, rank], C [rank, out] with B @ C the best rank-`rank` approximation of w.

    Randomised range finder (Halko et al.) with power iterations: the bottleneck kernel can
    be 12288 x 2048 (flatten pooling), where a full SVD at every reset would dominate training.
    The singular values are split evenly (sqrt) between the factors, as the reference does.
    BLAS runs single-threaded here: next to TF's busy thread pools, OpenBLAS' own threads
    made this 5x slower on 2 cores (0.85 s vs 0.16 s for 512 x 2048).
    """
    w = np.asarray(w, np.float32)
    with threadpool_limits(1, user_api="blas"):
        if min(w.shape) <= 4 * rank:
            u, s, vt = np.linalg.svd(w, full_matrices=False)
        else:
            rng = np.random.default_rng(seed)
            omega = rng.standard_normal((w.shape[1], rank + 10)).astype(np.float32)
            q, _ = np.linalg.qr(w @ omega)
            for _ in range(4):
                q, _ = np.linalg.qr(w.T @ q)
                q, _ = np.linalg.qr(w @ q)
            u_small, s, vt = np.linalg.svd(q.T @ w, full_matrices=False)
            u = q @ u_small
    root = np.sqrt(s[:rank])
    return u[:, :rank] * root, root[:, None] * vt[:rank]


def weight(layer: keras.layers.Layer, attr: str) -> tf.Variable:
    """A layer's float variable by attribute name ('kernel', 'bias', 'blend').

    Works for tfmot QuantizeWrappers too, whose inner layer's `kernel` attribute is replaced
    by the fake-quantised tensor after the first call; the variable stays in `weights`.
    """
    for var in layer.weights:
        if not var.name.startswith("quant_") and var.name.rsplit("/", 1)[-1] == f"{attr}:0":
            return var
    raise ValueError(f"layer {layer.name!r} has no variable {attr!r}")


class _Bottleneck:
    """The four low-rank layers' variables, found by name in a float or quantized model."""

    def __init__(self, model: keras.Model):
        full, b, c, mix = (find_layer(model, n) for n in (FULL, FACTOR_B, FACTOR_C, BLEND))
        self.w, self.w_bias = weight(full, "kernel"), weight(full, "bias")
        self.b, self.c, self.c_bias = weight(b, "kernel"), weight(c, "kernel"), weight(c, "bias")
        self.blend = weight(mix, "blend")

    def reset_factors(self) -> None:
        """B, C <- truncated SVD of W; C's bias <- W's bias (the handoff keeps the layer's map)."""
        factor_b, factor_c = truncated_svd(self.w.numpy(), self.b.shape[-1])
        self.b.assign(factor_b)
        self.c.assign(factor_c)
        self.c_bias.assign(self.w_bias.numpy())


class LowRankHandoff(keras.callbacks.Callback):
    """Steps blend 1 -> 0 over the first HANDOFF_FRACTION of `total_steps`, resetting B, C first."""

    def __init__(self, model: keras.Model, total_steps: int, start_step: int = 0):
        super().__init__()
        self._vars = _Bottleneck(model)
        end = max(1, int(HANDOFF_FRACTION * total_steps))
        self._updates = min(HANDOFF_UPDATES, end)
        # Steps (1-based, counted over the whole training) after which an update happens.
        self._update_steps = {round(end * (k + 1) / self._updates) for k in range(self._updates)}
        # A resumed run (start_step > 0) continues the schedule; its factors come restored.
        self._step = start_step
        self._done = sum(s <= start_step for s in self._update_steps)

    def on_train_begin(self, logs=None):
        # Factors start from the SVD of the initial W, so the blend never jumps.
        if self._step == 0 and float(self._vars.blend.numpy()) > 0.0:
            self._vars.reset_factors()

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        if self._step in self._update_steps and self._done < self._updates:
            self._done += 1
            self._vars.reset_factors()
            self._vars.blend.assign(max(0.0, 1.0 - self._done / self._updates))


def finish_handoff(model: keras.Model) -> float:
    """Make the factored path the model's output (blend = 0); returns the blend it had.

    If training stopped before the handoff ended, the factors take the truncated SVD of the
    current blended kernel, the closest rank-r layer to what the model computes now.
    """
    v = _Bottleneck(model)
    blend = float(v.blend.numpy())
    if blend > 0.0:
        kernel = blend * v.w.numpy() + (1 - blend) * (v.b.numpy() @ v.c.numpy())
        bias = blend * v.w_bias.numpy() + (1 - blend) * v.c_bias.numpy()
        factor_b, factor_c = truncated_svd(kernel, v.b.shape[-1])
        v.b.assign(factor_b)
        v.c.assign(factor_c)
        v.c_bias.assign(bias)
        v.blend.assign(0.0)
    return blend


def find_layer(model: keras.Model, name: str) -> keras.layers.Layer:
    """A layer by its float name, also inside a quantize-applied model ('quant_' prefix)."""
    for candidate in (name, "quant_" + name):
        try:
            return model.get_layer(candidate)
        except ValueError:
            continue
    raise ValueError(f"model {model.name!r} has no layer {name!r}")
