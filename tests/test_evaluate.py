"""evaluate.py: the TFLite embedder (float and int8), distillation metrics, linear probes."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from students import evaluate
from students.errors import EvalError
from teacher.audio import CROP_SAMPLES, SAMPLE_RATE
from tests.test_measure import conv_model, to_tflite

try:
    from teacher.cache import EvalTask
except ImportError:  # the teacher part may not have landed; same fields as the contract
    @dataclass(frozen=True)
    class EvalTask:
        name: str
        clips: list
        labels: np.ndarray
        is_test: np.ndarray


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    d = tmp_path_factory.mktemp("emb")
    m = conv_model(seed=3)
    return m, to_tflite(m, d / "float.tflite"), to_tflite(m, d / "int8.tflite", int8=True)


def _patches(n: int) -> np.ndarray:
    return np.random.default_rng(7).standard_normal((n, 96, 64)).astype(np.float32)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))


def test_float_embedder_matches_keras(twins):
    model, path, _ = twins
    x = _patches(70)  # more than one batch of 64, so the padded last batch is exercised
    emb = evaluate.TFLiteEmbedder(path)
    assert emb.input_shape == (96, 64) and emb.batch_size == 64
    out = emb(x)
    assert out.dtype == np.float32 and out.shape == (70, 12)
    np.testing.assert_allclose(out, model.predict(x, verbose=0), rtol=1e-4, atol=1e-4)


def test_int8_embedder_is_close_but_not_equal(twins):
    model, _, path = twins
    x = _patches(40)
    out, ref = evaluate.TFLiteEmbedder(path)(x), model.predict(x, verbose=0)
    err = np.abs(out - ref).max() / np.abs(ref).max()
    assert err > 1e-3, "int8 output identical to float: quantisation was not applied"
    assert err < 0.15 and _cos(out, ref) > 0.98


def test_distill_quality():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, 5))
    w, b = rng.standard_normal((5, 3)), rng.standard_normal(3)
    mse, cos = evaluate.distill_quality(lambda v: v, (w, b), x, x @ w + b)
    assert mse == pytest.approx(0, abs=1e-12) and cos == pytest.approx(1)
    mse, cos = evaluate.distill_quality(lambda v: v, (w, b), x, x @ w + b + rng.standard_normal((20, 3)))
    assert mse > 0.3 and cos < 1
    with pytest.raises(EvalError, match="do not chain"):
        evaluate.distill_quality(lambda v: v, (w[:4], b), x, x @ w)


def _tone_task(n_per_label: int = 30, shuffle: bool = False) -> EvalTask:
    """Two labels (low vs high tone in noise), 2 crops per clip; a third of each label is test."""
    rng = np.random.default_rng(0)
    t = np.arange(2 * CROP_SAMPLES) / SAMPLE_RATE
    clips, labels = [], []
    for label, hz in (("low", 300.0), ("high", 2000.0)):
        for _ in range(n_per_label):
            f = hz * rng.uniform(0.9, 1.1)
            clips.append((0.3 * np.sin(2 * np.pi * f * t) + 0.3 * rng.standard_normal(len(t))).astype(np.float32))
            labels.append(label)
    labels = np.array(labels)
    is_test = np.tile(np.arange(n_per_label) % 3 == 0, 2)
    if shuffle:
        labels = rng.permutation(labels)
    return EvalTask("tone", clips, labels, is_test)


def test_probe_separable_and_shuffled():
    assert evaluate.probe_accuracy(evaluate.logmel_embed, _tone_task()) > 0.9
    acc = evaluate.probe_accuracy(evaluate.logmel_embed, _tone_task(n_per_label=100, shuffle=True))
    assert 0.3 <= acc <= 0.7  # chance is 0.5; 68 test clips


def test_logmel_embed_shape():
    out = evaluate.logmel_embed(np.zeros((3, CROP_SAMPLES), np.float32))
    assert out.shape == (3, 128) and np.all(np.isfinite(out))


def _never(_: np.ndarray) -> np.ndarray:
    raise AssertionError("validation must happen before embedding")


@pytest.mark.parametrize("labels, is_test, match", [
    (["a"] * 6, [0, 0, 0, 1, 1, 1], "'lang'.*at least two labels"),
    (["a", "a", "a", "b", "b", "b"], [0, 0, 1, 0, 0, 0], "'lang'.*label 'b' has no test clips"),
    (["a", "a", "a", "b", "b", "b"], [0, 0, 1, 0, 1, 1], "'lang'.*label 'b' has 1 train clip"),
    (["a", "a", "a", "b", "b", "b"], [0] * 6, "'lang'.*test split is empty"),
    (["a", "a", "a", "b", "b", "b"], [0, 0, 1, 0, 0, 1], "'lang'.*1 clip.*shorter than one crop.*clip 5"),
])
def test_bad_tasks_raise(labels, is_test, match):
    clips = [np.zeros(CROP_SAMPLES, np.float32)] * (len(labels) - 1) + [np.zeros(100, np.float32)]
    if "shorter" not in match:
        clips[-1] = clips[0]
    task = EvalTask("lang", clips, np.array(labels), np.array(is_test, bool))
    with pytest.raises(EvalError, match=match):
        evaluate.probe_accuracy(_never, task)


def test_bootstrap_intervals_cover_the_accuracy_and_shrink_with_more_clips():
    rng = np.random.default_rng(1)
    small = {"a": rng.random(100) < 0.6, "b": rng.random(100) < 0.4}
    big = {"a": rng.random(2000) < 0.6, "b": rng.random(2000) < 0.4}
    ci = evaluate.bootstrap_intervals(small)
    assert set(ci) == {"a", "b", "mean"}
    for k, h in small.items():
        lo, hi = ci[k]
        assert lo <= h.mean() <= hi and 0.1 < hi - lo < 0.3   # about +/-1.96 sqrt(p(1-p)/100)
    wide, narrow = ci["a"][1] - ci["a"][0], np.subtract(*evaluate.bootstrap_intervals(big)["a"][::-1])
    assert narrow < wide / 3                                    # sqrt(20) narrower
    assert evaluate.bootstrap_intervals(small) == ci            # seeded: the same every time


def test_probe_columns_give_accuracy_mean_and_intervals():
    task = _tone_task()
    cols = evaluate.probe_columns(evaluate.logmel_embed, [task], prefix="logmel_")
    assert set(cols) == {f"logmel_probe_acc_{k}{s}" for k in ("tone", "mean") for s in ("", "_ci_lo", "_ci_hi")}
    assert cols["logmel_probe_acc_mean"] == cols["logmel_probe_acc_tone"] > 0.9
    assert cols["logmel_probe_acc_tone_ci_lo"] <= cols["logmel_probe_acc_tone"] <= cols["logmel_probe_acc_tone_ci_hi"]


def test_prepared_inputs_give_the_same_probe_as_cutting_clips():
    task = _tone_task()
    crops, counts = evaluate.clip_inputs(task.clips)
    assert len(crops) == counts.sum() == 2 * len(task.clips)
    from students.frontend import features

    def on_features(f):   # the log-mel floor, from precomputed features
        return np.concatenate([f.mean(axis=1), f.std(axis=1)], axis=1)
    direct = evaluate.probe_hits(evaluate.logmel_embed, [task])
    prepared = evaluate.probe_hits(on_features, [task], inputs={"tone": (features(crops), counts)})
    assert np.array_equal(direct["tone"], prepared["tone"])


def test_mse_of_mean_is_the_r2_reference():
    train = np.array([[0.0, 2.0], [2.0, 4.0]])          # mean (1, 3)
    held = np.array([[1.0, 3.0], [3.0, 3.0]])
    assert evaluate.mse_of_mean(train.mean(axis=0), held) == pytest.approx((0 + 0 + 4 + 0) / 4)
