"""TFLite export of a student's embedding graph, and checks on the converted file.

Non-QAT students export float32. QAT students export full-integer: int8 weights and
activations, int8 input and output tensors (the with-frontend variant keeps float32 waveform
input and float frontend ops; see students/README.md). Runtime: ai_edge_litert, never
tf.lite.Interpreter (deprecated).
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
from ai_edge_litert.interpreter import Interpreter

from students import compression
from students.model import Student, input_shape, projection_weights

__all__ = ["ExportResult", "export_tflite", "tflite_op_types", "check_export",
           "run_tflite", "projection_weights"]

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
    A low-rank student whose handoff is unfinished (alpha > 0) is finished first (warning).
    """
    start = time.perf_counter()
    path = Path(path)
    cfg = student.cfg
    if cfg.compression == "lowrank":
        alpha = compression.finish_handoff(student.train_model)
        if alpha > 0:
            warnings.warn(f"low-rank handoff was unfinished (alpha={alpha:.3g}); exported the "
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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(flatbuffer)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return ExportResult(path, len(flatbuffer), time.perf_counter() - start)


def _check_inputs(student: Student, inputs: np.ndarray) -> np.ndarray:
    inputs = np.asarray(inputs, np.float32)
    expected = input_shape(student.cfg)
    if inputs.shape[1:] != expected:
        raise ValueError(f"inputs must have shape [N, {', '.join(map(str, expected))}], "
                         f"got {list(inputs.shape)}")
    return inputs


def tflite_op_types(path: str | Path) -> dict[str, set[str]]:
    """op name -> dtype names of all input and output tensors of every op of that kind.

    Weights count as inputs, so an int8 CONV_2D reports {'int8', 'int32'} (int32 = its bias).
    """
    interpreter = Interpreter(model_path=str(path))
    dtypes = {t["index"]: np.dtype(t["dtype"]).name for t in interpreter.get_tensor_details()}
    ops: dict[str, set[str]] = {}
    for op in interpreter._get_ops_details():
        tensors = [i for i in (*op["inputs"], *op["outputs"]) if i >= 0]  # -1: absent optional
        ops.setdefault(op["op_name"], set()).update(dtypes[i] for i in tensors if i in dtypes)
    return ops


def run_tflite(path: str | Path, inputs: np.ndarray) -> np.ndarray:
    """Embeddings from a converted file, one example per invoke; handles int8 in/out scaling."""
    interpreter = Interpreter(model_path=str(path))
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(inp["index"], [1, *inputs.shape[1:]])
    interpreter.allocate_tensors()
    results = []
    for example in np.asarray(inputs, np.float32):
        x = example[None]
        if inp["dtype"] != np.float32:
            scale, zero = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(inp["dtype"])
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        y = interpreter.get_tensor(out["index"])
        if out["dtype"] != np.float32:
            scale, zero = out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        results.append(y[0])
    return np.stack(results)


def check_export(student: Student, path: str | Path, inputs: np.ndarray) -> float:
    """Mean cosine similarity between Keras embed_model and the TFLite file on `inputs`."""
    inputs = _check_inputs(student, inputs)
    keras_out = student.embed_model(inputs, training=False).numpy().reshape(len(inputs), -1)
    lite_out = run_tflite(path, inputs).reshape(len(inputs), -1)
    num = np.sum(keras_out * lite_out, axis=1)
    den = np.linalg.norm(keras_out, axis=1) * np.linalg.norm(lite_out, axis=1)
    return float(np.mean(num / np.maximum(den, 1e-12)))
