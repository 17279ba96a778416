"""Student family: every grid configuration builds and runs; frontend, blocks, low-rank handoff.

No TFLite conversion here (tests/test_export.py). The 144 builds take ~9 min on 2 shared
cores: ~1 s per float student, 5-9 s per QAT one (tfmot's quantize_apply clones the model
three times; that is most of it). The default suite builds 25 of them (see _marks).
"""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
import yaml

from students import compression
from students.config import StudentConfig
from students.frontend import features, log_mel
from students.mobilenet import ARCHITECTURES, make_divisible
from students.model import build_student, projection_weights
from teacher.audio import CROP_SAMPLES, MEL_BINS, PATCH_FRAMES

GRID = Path(__file__).resolve().parent.parent / "sweep" / "grids" / "frill144.yaml"
TEACHER_DIM = 256


def _grid_configs() -> list[StudentConfig]:
    spec = yaml.safe_load(GRID.read_text())
    shared = {k: v for k, v in spec["shared"].items() if k in ("bottleneck", "rank")}
    names = list(spec["axes"])
    return [StudentConfig(**shared, **dict(zip(names, values)))
            for values in itertools.product(*spec["axes"].values())]


CONFIGS = _grid_configs()


def test_grid_has_144_configs():
    assert len(CONFIGS) == 144 and len(set(CONFIGS)) == 144


def _marks(c: StudentConfig):
    # tfmot's quantize_apply takes 3-9 s per build here, a float build ~1 s. The default suite
    # builds every depth x pooling x compression at the narrowest and widest alpha (the widths
    # between take the same code path; make_divisible and the head's alpha scaling have their
    # own tests below) and one QAT student; `make test-all` builds all 144.
    # One QAT build (tiny): test_export and the handoff tests below build QAT students too.
    first_qat = c.depth == "tiny" and c.alpha == 0.25 and c.pooling == "global" and c.compression == "lowrank"
    if c.qat:
        return [] if first_qat else [pytest.mark.slow]
    return [] if c.alpha in (0.25, 2.0) else [pytest.mark.slow]


@pytest.mark.parametrize("cfg", [pytest.param(c, marks=_marks(c)) for c in CONFIGS], ids=lambda c: (
    f"{c.depth}-a{c.alpha:g}-{c.pooling}-{c.compression}-{'qat' if c.qat else 'float'}"))
def test_every_grid_student_builds_and_runs(cfg: StudentConfig):
    keras.backend.clear_session()   # keeps graph state (and time per build) flat over 144 builds
    student = build_student(cfg, TEACHER_DIM)
    x = np.random.default_rng(0).normal(-3, 2, (2, PATCH_FRAMES, MEL_BINS)).astype(np.float32)
    out = student.train_model(x, training=False).numpy()
    emb = student.embed_model(x, training=False).numpy()
    assert out.shape == (2, TEACHER_DIM) and np.isfinite(out).all()
    assert emb.shape == (2, cfg.bottleneck) and np.isfinite(emb).all()
    w, b = projection_weights(student)
    assert w.shape == (cfg.bottleneck, TEACHER_DIM) and b.shape == (TEACHER_DIM,)
    if cfg.compression == "lowrank":   # the embedding graph holds only the factors
        assert not [v.name for v in student.embed_model.weights
                    if v.name.startswith((compression.FULL + "/", f"quant_{compression.FULL}/"))]
    if cfg.qat:   # quantize-applied: fake-quant wrappers, projection left float
        kinds = {type(layer).__name__ for layer in student.train_model.layers}
        assert "QuantizeWrapperV2" in kinds
        assert type(student.train_model.get_layer("projection")) is keras.layers.Dense


def test_block_counts_and_head_channels():
    assert [len(ARCHITECTURES[d][0]) for d in ("tiny", "small", "large")] == [9, 11, 15]
    assert [ARCHITECTURES[d][1] for d in ("tiny", "small", "large")] == [512, 1024, 1280]
    # Keras' rounding: nearest multiple of 8, never more than 10% down.
    assert [make_divisible(v) for v in (4, 12, 20, 24 * 0.75, 96 * 1.5, 1024 * 2.0)] == \
        [8, 16, 24, 24, 144, 2048]


def _last_point_channels(cfg: StudentConfig) -> int:
    student = build_student(cfg, 8)
    return student.train_model.get_layer("head/last_point").filters


def test_head_last_point_scales_only_above_alpha_one():
    assert _last_point_channels(StudentConfig(depth="tiny", alpha=0.5, bottleneck=0)) == 512
    assert _last_point_channels(StudentConfig(depth="tiny", alpha=1.5, bottleneck=0)) == 768


def test_frill_configuration_has_paper_parameter_count():
    # FRILL: small, alpha 2.0, global pooling, bottleneck 2048 -> 10.12 M parameters (with BN).
    student = build_student(StudentConfig(), TEACHER_DIM)
    assert 10.05e6 < student.embed_model.count_params() < 10.2e6


def test_bottleneck_zero_embeds_pooled_features():
    student = build_student(StudentConfig(depth="tiny", alpha=0.25, bottleneck=0), 16)
    assert student.embed_model.output_shape == (None, 512)
    w, _ = projection_weights(student)
    assert w.shape == (512, 16)


def test_flatten_pooling_keeps_the_3x2_map():
    student = build_student(StudentConfig(depth="tiny", alpha=0.25, pooling="flatten",
                                          bottleneck=0), 16)
    assert student.embed_model.output_shape == (None, 3 * 2 * 512)


def test_waveform_input_with_frontend():
    student = build_student(StudentConfig(depth="tiny", alpha=0.25, frontend=True), 16)
    crops = np.random.default_rng(1).normal(0, 0.1, (2, CROP_SAMPLES)).astype(np.float32)
    assert student.train_model.input_shape == (None, CROP_SAMPLES)
    assert student.train_model(crops).shape == (2, 16)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_teacher_dim_is_rejected(bad):
    with pytest.raises(ValueError, match="teacher_dim"):
        build_student(StudentConfig(depth="tiny", alpha=0.25), bad)


def test_features_shape_and_graph_agree():
    rng = np.random.default_rng(2)
    crops = rng.normal(0, 0.1, (3, CROP_SAMPLES)).astype(np.float32)
    f = features(crops, batch_size=2)
    assert f.shape == (3, PATCH_FRAMES, MEL_BINS) and f.dtype == np.float32
    np.testing.assert_allclose(f, log_mel(tf.constant(crops)).numpy(), atol=1e-5)
    silent = features(np.zeros((1, CROP_SAMPLES), np.float32))
    np.testing.assert_allclose(silent, np.log(0.001), atol=1e-4)   # log(mel + 0.001) floor
    # A 1 kHz tone puts its energy in the mel bins around 1 kHz, not at the edges.
    tone = np.sin(2 * np.pi * 1000 * np.arange(CROP_SAMPLES) / 16000).astype(np.float32)
    profile = features(tone[None])[0].mean(0)
    assert 15 < int(np.argmax(profile)) < 30


def test_features_rejects_wrong_crop_length():
    with pytest.raises(ValueError, match="15600"):
        features(np.zeros((2, 16000), np.float32))


def test_truncated_svd_is_the_best_rank_r_approximation():
    rng = np.random.default_rng(3)
    spectrum = np.diag(np.linspace(3, 0.01, 300))
    w = rng.normal(size=(600, 300)) @ spectrum @ rng.normal(size=(300, 300))
    b, c = compression.truncated_svd(w.astype(np.float32), 20)
    assert b.shape == (600, 20) and c.shape == (20, 300)
    s = np.linalg.svd(w, compute_uv=False)
    best = np.sqrt(np.sum(s[20:] ** 2))
    assert np.linalg.norm(w - b @ c) < 1.01 * best


def test_lowrank_handoff_ends_with_factors_only():
    cfg = StudentConfig(depth="tiny", alpha=0.25, bottleneck=64, compression="lowrank", rank=8)
    student = build_student(cfg, 16)
    rng = np.random.default_rng(4)
    x = rng.normal(-3, 2, (32, PATCH_FRAMES, MEL_BINS)).astype(np.float32)
    y = rng.normal(size=(32, 16)).astype(np.float32)
    blends: list[float] = []
    layer = student.train_model.get_layer(compression.BLEND)

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            blends.append(float(layer.blend.numpy()))

    steps = 20
    student.train_model.compile(keras.optimizers.Adam(1e-3), "mse")
    student.train_model.fit(x, y, batch_size=8, epochs=5, verbose=0,
                            callbacks=[*student.callbacks(steps), Record()])
    assert blends[0] < 1.0 and blends == sorted(blends, reverse=True)
    first_zero = blends.index(0.0)
    assert first_zero == int(compression.HANDOFF_FRACTION * steps) - 1   # then factors train alone
    # Once the blend is 0, the embedding graph (x @ B @ C) is exactly what the projection sees.
    full = keras.Model(student.train_model.input, layer.output)
    np.testing.assert_allclose(student.embed_model(x[:4]).numpy(), full(x[:4]).numpy(), atol=1e-5)


def test_qat_lowrank_handoff_reaches_wrapped_variables():
    cfg = StudentConfig(depth="tiny", alpha=0.25, bottleneck=64, compression="lowrank", rank=8,
                        qat=True)
    student = build_student(cfg, 16)
    (handoff,) = student.callbacks(4)
    handoff.on_train_begin()
    v = compression._Bottleneck(student.train_model)
    b, c = compression.truncated_svd(v.w.numpy(), 8)
    np.testing.assert_allclose(v.b.numpy() @ v.c.numpy(), b @ c, atol=1e-4)
    assert compression.finish_handoff(student.train_model) == 1.0
    assert float(v.blend.numpy()) == 0.0



@pytest.mark.parametrize("compression_, qat", [("none", True), ("lowrank", False), ("lowrank", True)])
def test_warm_start_from_the_float_twin_loads_its_weights(compression_, qat):
    """A QAT or low-rank student built from its float twin's weights starts from them: every
    twin layer's variables (the bottleneck Dense into the low-rank full W), and for a float
    low-rank student the twin's very function (alpha starts at 1: the full W path)."""
    from students.compression import FULL, find_layer, weight
    from students.model import EMBEDDING, PROJECTION, float_weights
    twin_cfg = StudentConfig(depth="tiny", alpha=0.25, bottleneck=64)
    twin = build_student(twin_cfg, 16)
    rng = np.random.default_rng(5)
    for layer in twin.train_model.layers:   # move the twin away from a fresh initialisation
        layer.set_weights([w * rng.uniform(0.8, 1.2, w.shape).astype(w.dtype) for w in layer.get_weights()])
    cfg = StudentConfig(**{**twin_cfg.as_dict(), "compression": compression_, "rank": 63, "qat": qat})
    warm = build_student(cfg, 16, init=float_weights(twin))
    assert warm.warm and not twin.warm
    pairs = [("stem", "stem"), (PROJECTION, PROJECTION),
             (FULL if compression_ == "lowrank" else EMBEDDING, EMBEDDING)]
    for mine, theirs in pairs:
        np.testing.assert_array_equal(weight(find_layer(warm.train_model, mine), "kernel").numpy(),
                                      weight(twin.train_model.get_layer(theirs), "kernel").numpy())
    if not qat:
        x = rng.normal(-3, 2, (8, PATCH_FRAMES, MEL_BINS)).astype(np.float32)
        np.testing.assert_allclose(warm.train_model(x, training=False).numpy(),
                                   twin.train_model(x, training=False).numpy(), rtol=1e-4, atol=1e-5)


def test_only_a_float_student_without_compression_is_a_twin():
    from students.model import float_weights
    with pytest.raises(ValueError, match="float twin"):
        float_weights(build_student(StudentConfig(depth="tiny", alpha=0.25, bottleneck=64, qat=True), 16))
