"""TFLite export: float matches Keras, QAT is full-integer and smaller, low-rank drops W.

Small students only (tiny, alpha 0.25, a few training steps); one slow test converts FRILL.
"""
from __future__ import annotations

import numpy as np
import pytest
import tf_keras as keras
from ai_edge_litert.interpreter import Interpreter

from students.config import StudentConfig
from students.export import check_export, export_tflite
from students.tflite import TFLiteEmbedder, op_types as tflite_op_types
from students.model import Student, build_student, projection_weights, recalibrate_batchnorm
from teacher.audio import CROP_SAMPLES, MEL_BINS, PATCH_FRAMES

TINY = dict(depth="tiny", alpha=0.25)
WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    """Log-mel-like patches with a learnable target: a latent z sets the band profile."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(160, 8)).astype(np.float32)
    profile = z @ rng.normal(size=(8, MEL_BINS)).astype(np.float32)
    x = -3 + profile[:, None, :] + rng.normal(0, 1, (160, PATCH_FRAMES, MEL_BINS))
    y = np.tanh(z @ rng.normal(size=(8, 32)))
    return x.astype(np.float32), y.astype(np.float32)


def _trained(cfg: StudentConfig, data, steps: int) -> Student:
    """A student after `steps` Adam steps (batch 16) on the first 128 patches."""
    x, y = data
    keras.utils.set_random_seed(0)
    student = build_student(cfg, y.shape[1])
    student.train_model.compile(keras.optimizers.Adam(2e-3), "mse")
    ds = (x[:128], y[:128])
    epochs = max(1, steps // 8)
    student.train_model.fit(*ds, batch_size=16, epochs=epochs, verbose=0,
                            callbacks=student.callbacks(epochs * 8))
    recalibrate_batchnorm(student, x[:128])
    return student


def _weighted_op_dtypes(path) -> set[str]:
    ops = tflite_op_types(path)
    return set().union(*(ops[name] for name in WEIGHTED_OPS if name in ops))


def test_float_export_matches_keras(tmp_path, data):
    x, _ = data
    student = _trained(StudentConfig(**TINY), data, 24)
    result = export_tflite(student, tmp_path / "float.tflite", representative=None)
    assert result.path.stat().st_size == result.tflite_bytes > 0 and result.seconds > 0
    assert [p.name for p in tmp_path.iterdir()] == ["float.tflite"]   # no temp file left behind
    assert _weighted_op_dtypes(result.path) == {"float32"}
    assert check_export(student, result.path, x[128:]) >= 0.99
    interp = Interpreter(model_path=str(result.path))
    assert list(interp.get_input_details()[0]["shape_signature"]) == [-1, PATCH_FRAMES, MEL_BINS]


def test_qat_export_is_full_int8_and_3p5x_smaller(tmp_path, data):
    x, _ = data
    student = _trained(StudentConfig(**TINY, qat=True), data, 96)
    result = export_tflite(student, tmp_path / "qat.tflite", representative=x[:64])
    interp = Interpreter(model_path=str(result.path))
    assert interp.get_input_details()[0]["dtype"] == np.int8
    assert interp.get_output_details()[0]["dtype"] == np.int8
    ops = tflite_op_types(result.path)
    assert all(name in ops for name in WEIGHTED_OPS)
    assert _weighted_op_dtypes(result.path) <= {"int8", "int32"}   # int32 = biases
    assert not [name for name, types in ops.items() if "float32" in types], ops
    assert "HARD_SWISH" not in ops   # split form: int8 ADD/MUL that XNNPACK delegates
    assert check_export(student, result.path, x[128:]) >= 0.95
    twin = export_tflite(build_student(StudentConfig(**TINY), 32), tmp_path / "twin.tflite", None)
    assert twin.tflite_bytes / result.tflite_bytes >= 3.5


def test_qat_export_needs_representative_inputs(tmp_path):
    student = build_student(StudentConfig(**TINY, qat=True), 8)
    with pytest.raises(ValueError, match="representative"):
        export_tflite(student, tmp_path / "x.tflite", representative=None)
    assert not (tmp_path / "x.tflite").exists()


def _largest_tensor(path) -> int:
    interp = Interpreter(model_path=str(path))
    return max(int(np.prod(t["shape"])) for t in interp.get_tensor_details())


def test_lowrank_export_has_only_the_factors(tmp_path, data):
    x, _ = data
    student = _trained(StudentConfig(**TINY, compression="lowrank"), data, 24)
    result = export_tflite(student, tmp_path / "lowrank.tflite", None)
    in_dim, out_dim, rank = 512, 2048, 100   # tiny alpha 0.25: 512 features -> 2048
    assert _largest_tensor(result.path) < in_dim * out_dim   # W (512 x 2048) is not in the file
    shapes = {tuple(t["shape"]) for t in Interpreter(model_path=str(result.path))
              .get_tensor_details()}
    assert (rank, in_dim) in shapes and (out_dim, rank) in shapes   # B, C as FC weights
    assert check_export(student, result.path, x[128:]) >= 0.99
    full = export_tflite(build_student(StudentConfig(**TINY), 32), tmp_path / "full.tflite", None)
    saved_floats = in_dim * out_dim - rank * (in_dim + out_dim)
    assert result.tflite_bytes < full.tflite_bytes - 0.99 * 4 * saved_floats


@pytest.mark.slow  # one more student trained and converted; make test-all
def test_qat_lowrank_export(tmp_path, data):
    x, _ = data
    student = _trained(StudentConfig(**TINY, compression="lowrank", qat=True), data, 96)
    result = export_tflite(student, tmp_path / "qat_lowrank.tflite", representative=x[:64])
    assert _weighted_op_dtypes(result.path) <= {"int8", "int32"}
    assert _largest_tensor(result.path) < 512 * 2048
    assert check_export(student, result.path, x[128:]) >= 0.95


@pytest.mark.slow  # one more student trained and converted; make test-all
def test_unfinished_handoff_is_finished_at_export(tmp_path, data):
    x, _ = data
    student = build_student(StudentConfig(**TINY, compression="lowrank", bottleneck=64, rank=8), 32)
    with pytest.warns(UserWarning, match="handoff"):
        result = export_tflite(student, tmp_path / "early.tflite", None)
    blend = keras.Model(student.train_model.input,
                        student.train_model.get_layer("bottleneck").output)
    np.testing.assert_allclose(student.embed_model(x[:2]).numpy(), blend(x[:2]).numpy(),
                               rtol=1e-4, atol=1e-6)
    assert result.tflite_bytes > 0


@pytest.mark.slow  # one more student trained and converted; make test-all
def test_frontend_export_takes_waveforms(tmp_path):
    rng = np.random.default_rng(5)
    crops = rng.normal(0, 0.1, (8, CROP_SAMPLES)).astype(np.float32)
    student = build_student(StudentConfig(**TINY, frontend=True, bottleneck=64), 8)
    recalibrate_batchnorm(student, crops)
    result = export_tflite(student, tmp_path / "fe.tflite", None)
    interp = Interpreter(model_path=str(result.path))
    assert list(interp.get_input_details()[0]["shape_signature"]) == [-1, CROP_SAMPLES]
    assert {"RFFT2D", "LOG"} <= set(tflite_op_types(result.path))
    assert TFLiteEmbedder(result.path)(crops[:2]).shape == (2, 64)
    assert check_export(student, result.path, crops) >= 0.99


def test_projection_weights_are_numpy():
    student = build_student(StudentConfig(**TINY, bottleneck=64), 12)
    w, b = projection_weights(student)
    assert isinstance(w, np.ndarray) and w.shape == (64, 12) and b.shape == (12,)


@pytest.mark.slow
def test_frill_size(tmp_path, data):
    """FRILL (small, alpha 2.0, global, bottleneck 2048): 38.5 MiB float32; rank 100 >= 30% off."""
    x, _ = data
    frill = build_student(StudentConfig(), 256)
    recalibrate_batchnorm(frill, x[:32])
    result = export_tflite(frill, tmp_path / "frill.tflite", None)
    assert abs(result.tflite_bytes / 2**20 - 38.5) <= 38.5 * 0.03
    assert check_export(frill, result.path, x[128:136]) >= 0.99
    lowrank = build_student(StudentConfig(compression="lowrank"), 256)
    with pytest.warns(UserWarning, match="handoff"):   # untrained: the export finishes it
        small = export_tflite(lowrank, tmp_path / "frill_lowrank.tflite", None)
    assert small.tflite_bytes <= 0.7 * result.tflite_bytes
