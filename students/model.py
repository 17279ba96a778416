"""build_student(cfg, teacher_dim) -> Student: the one generator of every student in the grid.

    input [B, 96, 64] log-mel (or [B, CROP_SAMPLES] waveform with cfg.frontend)
      -> MobileNetV3 tiny|small|large at width alpha (students/mobilenet.py, paper-era head)
      -> global average pooling | flatten                      = 'features'
      -> Dense(bottleneck) = the embedding ('bottleneck'); low-rank: a blend of Dense(W) and
         Dense(r) -> Dense(out) that hands over to the factors ('bottleneck_c' = the embedding)
      -> Dense(teacher_dim), training only                     = 'projection'
QAT students come back quantize-applied (students/qat.py) and train as they are.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from dataclasses import dataclass

import numpy as np
import tf_keras as keras
from tf_keras import layers

from students import compression
from students.compression import find_layer, weight
from students.config import StudentConfig
from students.frontend import LogMel
from students.mobilenet import AddChannel, FlattenStatic, mobilenet_v3
from students.qat import annotate, quantize
from teacher.audio import CROP_SAMPLES, MEL_BINS, PATCH_FRAMES

FEATURES, EMBEDDING, PROJECTION = "features", "bottleneck", "projection"


@dataclass
class Student:
    """Two views of one set of weights.

    train_model: input -> [B, teacher_dim] projection (compile + fit this, with callbacks()).
    embed_model: input -> [B, E] embedding: the graph that export_tflite converts and whose
                 weights are the student's size. For low-rank students it is the factored
                 path x @ B @ C (no W); it equals what the projection sees once the handoff
                 has finished (blend = 0), which callbacks() ensures by the end of fit and
                 export_tflite enforces.
    """

    cfg: StudentConfig
    teacher_dim: int
    train_model: keras.Model
    embed_model: keras.Model
    warm: bool = False      # started from a trained float twin (its projection predicts targets)

    def callbacks(self, total_steps: int, start_step: int = 0) -> list[keras.callbacks.Callback]:
        """Training callbacks the trainer must pass to fit (the low-rank handoff); start_step:
        where a resumed run starts."""
        if total_steps < 1:
            raise ValueError(f"total_steps={total_steps} must be >= 1")
        if self.cfg.compression == "lowrank":
            return [compression.LowRankHandoff(self.train_model, total_steps, start_step)]
        return []


def input_shape(cfg: StudentConfig) -> tuple[int, ...]:
    """Per-example input shape: waveform with the frontend inside, else a log-mel patch."""
    return (CROP_SAMPLES,) if cfg.frontend else (PATCH_FRAMES, MEL_BINS)


def build_student(cfg: StudentConfig, teacher_dim: int,
                  init: dict[str, list[np.ndarray]] | None = None) -> Student:
    """init: trained weights of the float twin by layer name (see float_weights); every layer
    the twin has starts from them (a low-rank bottleneck's full W from the twin's)."""
    if isinstance(teacher_dim, bool) or not isinstance(teacher_dim, (int, np.integer)) \
            or teacher_dim < 1:
        raise ValueError(f"teacher_dim={teacher_dim!r} must be a positive int")
    a = annotate if cfg.qat else (lambda layer: layer)
    inputs = keras.Input(input_shape(cfg), name="waveform" if cfg.frontend else "log_mel")
    x = a(LogMel(name="frontend"))(inputs) if cfg.frontend else inputs
    x = a(AddChannel(name="add_channel"))(x)
    x = mobilenet_v3(x, cfg.depth, cfg.alpha, annotate=annotate if cfg.qat else None)
    if cfg.pooling == "global":
        x = a(layers.GlobalAveragePooling2D(name=FEATURES))(x)
    else:
        x = a(FlattenStatic(name=FEATURES))(x)
    if cfg.bottleneck == 0:
        embedding = x
    elif cfg.compression == "lowrank":
        embedding, _ = compression.lowrank_bottleneck(x, cfg.bottleneck, cfg.rank, a)
    else:
        embedding = a(layers.Dense(cfg.bottleneck, name=EMBEDDING))(x)
    # Never annotated: the projection is training-only (see students.qat.quantize).
    outputs = layers.Dense(teacher_dim, name=PROJECTION)(embedding)
    model = keras.Model(inputs, outputs, name=_model_name(cfg))
    if init is not None:
        _load_float_weights(model, init)   # before quantize_apply, which keeps the weights
    if cfg.qat:
        model = quantize(model)

    if cfg.bottleneck == 0:
        embed_name = FEATURES
    elif cfg.compression == "lowrank":
        embed_name = compression.FACTOR_C
    else:
        embed_name = EMBEDDING
    embed = keras.Model(model.input, find_layer(model, embed_name).output,
                        name=model.name + "_embed")
    return Student(cfg, int(teacher_dim), model, embed, warm=init is not None)


def float_weights(student: Student) -> dict[str, list[np.ndarray]]:
    """A float student's trained weights by layer name, for warm-starting its twins."""
    if student.cfg.qat or student.cfg.compression != "none":
        raise ValueError("only a float student without compression is a float twin")
    return {layer.name: [np.asarray(w) for w in layer.get_weights()]
            for layer in student.train_model.layers if layer.weights}


def _load_float_weights(model: keras.Model, init: dict[str, list[np.ndarray]]) -> None:
    renamed = {compression.FULL: EMBEDDING}   # the twin's bottleneck is the full W here
    loaded = 0
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)    # a QAT annotation wraps the float layer
        if isinstance(inner, compression.LowRankBlend):
            continue   # shares the name 'bottleneck' with the twin's Dense; starts at alpha 1
        weights = init.get(renamed.get(inner.name, inner.name))
        if weights is None or not inner.weights:
            continue
        if [w.shape for w in weights] != [tuple(v.shape) for v in inner.weights]:
            raise ValueError(f"float twin's layer {inner.name!r} has other shapes; "
                             "is it the same architecture?")
        inner.set_weights(weights)
        loaded += 1
    if loaded < len(init) - 1:   # every twin layer but at most the bottleneck W must map
        raise ValueError(f"only {loaded} of the float twin's {len(init)} layers fit this student")


def _model_name(cfg: StudentConfig) -> str:
    """Derived from the config, never parsed back."""
    name = f"mnv3_{cfg.depth}_a{cfg.alpha:g}_{cfg.pooling}_b{cfg.bottleneck}"
    if cfg.compression == "lowrank":
        name += f"_lr{cfg.rank}"
    if cfg.qat:
        name += "_qat"
    if cfg.frontend:
        name += "_fe"
    return name.replace(".", "p")


def projection_weights(student: Student) -> tuple[np.ndarray, np.ndarray]:
    """(W [E, teacher_dim], b [teacher_dim]) of the training-only projection, as numpy."""
    layer = find_layer(student.train_model, PROJECTION)
    return weight(layer, "kernel").numpy(), weight(layer, "bias").numpy()


def recalibrate_batchnorm(student: Student, inputs: np.ndarray, batch_size: int = 64) -> None:
    """Set every BatchNormalization's moving statistics to the average over `inputs`.

    A student trained for tens to hundreds of steps still carries part of BN's initial (0, 1)
    statistics (0.99**64 = 53%, 0.99**200 = 13%), so the exported, inference-mode graph computes a slightly
    different function from the one trained, and QAT ranges learnt on training-mode
    activations fit it less well. One pass over a few hundred training inputs removes that
    lag. Runs the model in training mode (no weight update; QAT ranges move by at most 1%
    per batch towards the current activations).
    """
    inputs = np.asarray(inputs, np.float32)
    bns = [m for m in student.train_model.submodules
           if isinstance(m, layers.BatchNormalization)]
    momenta = [bn.momentum for bn in bns]
    try:
        for k, start in enumerate(range(0, len(inputs), batch_size)):
            for bn in bns:   # k/(k+1): the running value becomes the mean over batches so far
                bn.momentum = k / (k + 1)
            student.train_model(inputs[start:start + batch_size], training=True)
    finally:
        for bn, momentum in zip(bns, momenta):
            bn.momentum = momentum
