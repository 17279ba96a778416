"""TFLite export of a student's embedding graph, and checks on the converted file.

Non-QAT students export float32. QAT students export full-integer: int8 weights and
activations, int8 input and output tensors (the with-frontend variant keeps float32 waveform
input and float frontend ops; see students/README.md). The converted file is read
through students/tflite.py.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from students import compression
from results.files import atomic_write
from students.model import Student, input_shape, projection_weights
from students.tflite import TFLiteEmbedder

__all__ = ["ExportResult", "export_tflite", "check_export", "projection_weights"]

REPRESENTATIVE_MAX = 200   # calibration examples used by the converter (more adds time only)


@dataclass(frozen=True)
class ExportResult:
    path: Path
    tflite_bytes: int
    seconds: float


def export_tflite(student: Student, path: str | Path,
                  representative: np.ndarray | None) -> ExportResult:
    """Convert student.embed_model to `path` (atomically: tmp file + rename).

    representative: model inputs ([N, 96, 64] log-mel, or [N, CROP_SAMPLES] waveforms with
    the frontend) used to calibrate int8 ranges; required for QAT students, unused otherwise.
    A low-rank student whose handoff is unfinished (blend > 0) is finished first (warning).
    """
    start = time.perf_counter()
    path = Path(path)
    cfg = student.cfg
    if cfg.compression == "lowrank":
        blend = compression.finish_handoff(student.train_model)
        if blend > 0:
            warnings.warn(f"low-rank handoff was unfinished (blend={blend:.3g}); exported the "
                          "rank-r SVD of the blended kernel", stacklevel=2)
    # Freeze one traced inference function. `from_keras_model` always serialises a Keras
    # SavedModel first (whatever experimental_lower_to_saved_model says), and tracing every
    # layer for it took 80% of a QAT student's conversion time; for concrete functions the
    # flag does skip that save.
    model = student.embed_model
    spec = tf.TensorSpec([None, *input_shape(cfg)], tf.float32)
    concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)
    converter.experimental_lower_to_saved_model = False
    if cfg.qat:
        if representative is None or len(representative) == 0:
            raise ValueError("a QAT student needs representative inputs to export int8")
        examples = _check_inputs(student, representative)[:REPRESENTATIVE_MAX]
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if cfg.frontend:
            # The STFT (RFFT2D, COMPLEX_ABS) has no int8 kernel, so the frontend stays float:
            # float waveform in, int8 from the fake-quantised log-mel on. No calibration set
            # here: with one the converter also quantises what it can of the frontend (LOG,
            # GATHER, PAD), which cost 0.14 cosine in a test; the QAT ranges cover the rest.
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        else:
            converter.representative_dataset = lambda: ([e[None]] for e in examples)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    flatbuffer = converter.convert()
    atomic_write(path, flatbuffer)
    return ExportResult(path, len(flatbuffer), time.perf_counter() - start)


def _check_inputs(student: Student, inputs: np.ndarray) -> np.ndarray:
    inputs = np.asarray(inputs, np.float32)
    expected = input_shape(student.cfg)
    if inputs.shape[1:] != expected:
        raise ValueError(f"inputs must have shape [N, {', '.join(map(str, expected))}], "
                         f"got {list(inputs.shape)}")
    return inputs


def check_export(student: Student, path: str | Path, inputs: np.ndarray) -> float:
    """Mean cosine similarity between Keras embed_model and the TFLite file on `inputs`."""
    inputs = _check_inputs(student, inputs)
    keras_out = student.embed_model(inputs, training=False).numpy().reshape(len(inputs), -1)
    lite_out = TFLiteEmbedder(path)(inputs).reshape(len(inputs), -1)
    num = np.sum(keras_out * lite_out, axis=1)
    den = np.linalg.norm(keras_out, axis=1) * np.linalg.norm(lite_out, axis=1)
    return float(np.mean(num / np.maximum(den, 1e-12)))
