"""measure.py on tiny TFLite files built here (float and full-int8), with hand-computed MACs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from students import measure
from students.errors import MeasureError
from teacher.audio import CROP_SAMPLES

# Conv net on a [96, 64] patch; MACs by hand (stride-2 'same' conv -> 48 x 32):
CONV_MACS = (48 * 32 * 8 * 3 * 3 * 1      # Conv2D 3x3, 1 -> 8
             + 48 * 32 * 8 * 3 * 3        # DepthwiseConv2D 3x3 on 8 channels
             + 48 * 32 * 16 * 1 * 1 * 8   # Conv2D 1x1, 8 -> 16
             + 16 * 12)                   # Dense 16 -> 12 after global pooling
# Dense on every frame (96 rows), a Gram matrix (BATCH_MATMUL), then two Dense heads:
MATMUL_MACS = 96 * 64 * 8 + 64 * 64 * 96 + 768 * 4 + 4096 * 4


def conv_model(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    x = inp = keras.Input((96, 64))
    x = keras.layers.Reshape((96, 64, 1))(x)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(16, 1, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(12)(x))


def matmul_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    inp = keras.Input((96, 64))
    frames = keras.layers.Flatten()(keras.layers.Dense(8)(inp))
    gram = keras.layers.Flatten()(keras.layers.Lambda(lambda t: tf.matmul(t, t, transpose_a=True))(inp))
    return keras.Model(inp, keras.layers.Concatenate()([keras.layers.Dense(4)(frames),
                                                       keras.layers.Dense(4)(gram)]))


def to_tflite(model: keras.Model, path: Path, int8: bool = False) -> Path:
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:  # full integer: int8 weights, activations and input/output tensors
        rng = np.random.default_rng(1)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([rng.standard_normal((1, 96, 64)).astype(np.float32)]
                                               for _ in range(32))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = conv.inference_output_type = tf.int8
    path.write_bytes(conv.convert())
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("tflite")
    m = conv_model()
    return dict(float=to_tflite(m, d / "float.tflite"), int8=to_tflite(m, d / "int8.tflite", int8=True))


def test_macs_match_hand_count(files, tmp_path):
    assert measure.count_macs(files["float"]) == CONV_MACS
    assert measure.count_macs(files["int8"]) == CONV_MACS  # same graph, quantised
    assert measure.count_macs(to_tflite(matmul_model(), tmp_path / "mm.tflite")) == MATMUL_MACS


def test_size_and_params(files):
    assert measure.tflite_bytes(files["float"]) == files["float"].stat().st_size
    assert measure.count_params(conv_model()) == conv_model().count_params()


def test_params_ignore_quantizer_state():
    import tensorflow_model_optimization as tfmot
    m = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(3)])
    assert measure.count_params(tfmot.quantization.keras.quantize_model(m)) == 8 * 4 + 4 + 4 * 3 + 3


@pytest.mark.parametrize("kind", ["float", "int8"])
def test_latency(files, kind):
    lat = measure.latency(files[kind], threads=1, warmup=2, runs=50)
    assert 0 < lat.p50_ms <= lat.p90_ms
    assert (lat.runs, lat.threads) == (50, 1)
    assert lat.runtime.startswith("litert ")


def test_bad_files_raise(tmp_path):
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"this is not a flatbuffer" * 10)
    for fn in (measure.latency, measure.count_macs):
        with pytest.raises(MeasureError, match="junk.tflite"):
            fn(junk)
        with pytest.raises(MeasureError, match="not found"):
            fn(tmp_path / "missing.tflite")
    with pytest.raises(MeasureError):
        measure.tflite_bytes(tmp_path / "missing.tflite")


class FakeTeacher:
    """The part of the Teacher protocol that teacher_latency uses: name + concrete_function()."""

    def __init__(self, name: str, convertible: bool = True) -> None:
        self.name = name
        w = tf.Variable(tf.random.stateless_normal((400, 8), seed=(1, 2)))

        @tf.function(input_signature=[tf.TensorSpec([1, CROP_SAMPLES], tf.float32)])
        def embed1(x):
            y = tf.reduce_mean(tf.matmul(tf.signal.frame(x, 400, 160), w), axis=1)
            if not convertible:  # MatrixDeterminant is Flex-only; pip LiteRT cannot run Flex ops
                y += tf.reshape(tf.linalg.det(tf.reshape(x[:, :16], [1, 4, 4])), [1, 1])
            return y

        self._fn = embed1

    def concrete_function(self):
        return self._fn.get_concrete_function()


def test_teacher_latency_tflite_and_cached(tmp_path, monkeypatch):
    lat, how, path = measure.teacher_latency(FakeTeacher("fake/teacher"), runs=50, warmup=2, cache_dir=tmp_path)
    assert path.parent == tmp_path and path.suffix == ".tflite" and path.stat().st_size > 0
    assert how == "tflite" and lat.runtime.startswith("litert ") and 0 < lat.p50_ms <= lat.p90_ms
    # Named by results.files.slug, the rule the cache folders use: the spec's last path part.
    assert [p.name for p in tmp_path.iterdir()] == ["teacher-teacher.tflite"]
    monkeypatch.setattr(measure, "_convert_teacher", lambda *a: pytest.fail("converted twice"))
    assert measure.teacher_latency(FakeTeacher("fake/teacher"), runs=5, warmup=1, cache_dir=tmp_path)[1] == "tflite"


def test_teacher_latency_falls_back_to_tf_function(tmp_path):
    lat, how, _ = measure.teacher_latency(FakeTeacher("flex", convertible=False), runs=50, warmup=2,
                                       cache_dir=tmp_path)
    assert how == "tf-function" and lat.runtime.startswith("tensorflow ") and lat.runs == 50
    assert "MatrixDeterminant" in (tmp_path / "teacher-flex.tflite.failed").read_text()
