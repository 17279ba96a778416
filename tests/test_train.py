"""Distillation: scaled-target training is folded back into the teacher's units."""
from __future__ import annotations

import numpy as np
import pytest

from students.config import StudentConfig, TrainConfig
from students.model import build_student, projection_weights
from students.data import InMemory, target_scaling
from students.train import distill
from teacher.audio import MEL_BINS, PATCH_FRAMES


def test_target_scaling_centres_and_uses_one_scale():
    y = np.random.default_rng(0).normal(3.0, [0.1, 0.2, 0.4], size=(400, 3)).astype(np.float32)
    mean, scale = target_scaling(y)
    z = (y - mean) / scale
    assert np.allclose(z.mean(axis=0), 0, atol=1e-5)
    assert z.std() == pytest.approx(1.0, rel=1e-4)
    # One global scale keeps the dimensions' relative weights in the MSE.
    assert z.std(axis=0) == pytest.approx(y.std(axis=0) / scale, rel=1e-4)
    with pytest.raises(ValueError, match="constant"):
        target_scaling(np.ones((10, 3)))


def test_distill_predicts_in_the_targets_units():
    """Teacher-like targets: tiny, offset and mostly their mean. After training on scaled
    targets, the model's own output (and the folded projection) is back in target units."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(128, 4)).astype(np.float32)
    x = (z @ rng.normal(size=(4, MEL_BINS)))[:, None, :] + rng.normal(0, 1, (128, PATCH_FRAMES, MEL_BINS))
    y = 0.5 + 0.01 * np.tanh(z @ rng.normal(size=(4, 16)))
    x, y = x.astype(np.float32), y.astype(np.float32)
    student = build_student(StudentConfig(depth="tiny", alpha=0.25, bottleneck=64), 16)
    result = distill(student, InMemory(x, y), TrainConfig(steps=6, batch_size=16))
    pred = student.train_model.predict(x, verbose=0)
    # Unfolded, a fresh student's outputs would sit near 0 with unit-scale spread.
    assert np.abs(pred.mean(axis=0) - y.mean(axis=0)).max() < 0.05
    assert result.loss_mean < 0.01     # reported in the targets' units (their variance ~1e-5)
    w, b = projection_weights(student)
    assert np.abs(b - y.mean(axis=0)).max() < 0.05
    assert w.shape == (64, 16)


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path):
    """Checkpoints every 4 steps of 12 (weights, Adam's state, BN statistics, the low-rank
    handoff); a fresh student resumed from step 8 ends with the same weights and loss_mean."""
    import shutil

    from students.train import read_resume, seed_everything
    rng = np.random.default_rng(1)
    x = rng.normal(size=(96, PATCH_FRAMES, MEL_BINS)).astype(np.float32)
    y = (0.3 + 0.01 * rng.normal(size=(96, 8))).astype(np.float32)
    cfg = TrainConfig(steps=12, batch_size=16, seed=3)
    student_cfg = StudentConfig(depth="tiny", alpha=0.25, bottleneck=32, compression="lowrank", rank=4)
    saved, reports = [], []

    def report(metrics, folder=None):
        reports.append(metrics["step"])
        if folder is not None:
            saved.append(shutil.copytree(folder, tmp_path / f"step{metrics['step']}"))

    seed_everything(3)
    whole = build_student(student_cfg, 8)
    full = distill(whole, InMemory(x, y), cfg, report=report, checkpoint_every=4)
    assert [read_resume(p).step for p in saved] == [4, 8]      # none at the last step
    assert reports == [4, 8, 10, 12]                           # checkpoints carry a report too
    seed_everything(3)
    resumed = build_student(student_cfg, 8)
    part = distill(resumed, InMemory(x, y), cfg, resume=saved[1])
    assert part.resumed_from_step == 8 and full.resumed_from_step == 0
    assert part.loss_mean == pytest.approx(full.loss_mean, rel=1e-5)
    for a, b in zip(whole.train_model.weights, resumed.train_model.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6, err_msg=a.name)


def test_shards_stream_every_training_example_and_resume_in_order(tmp_path):
    """Shards written from arrays give back exactly those examples; the stream is shuffled and
    seeded (same order twice), and skipping k batches (a resumed run) continues the same
    sequence."""
    from students.data import (Shards, shard_name, target_scaling, target_stats,
                               write_manifest, write_shard)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3, 2)).astype(np.float32)
    y = (rng.normal(size=(50, 4)) * [1, 2, 3, 4] + 5).astype(np.float32)
    stats = []
    for i, start in enumerate(range(0, 50, 16)):
        write_shard(tmp_path / shard_name(i), x[start:start + 16], y[start:start + 16])
        stats.append(target_stats(y[start:start + 16]))
    shards = write_manifest(tmp_path, stats, (3, 2))
    assert len(Shards.open(tmp_path)) == 50
    back = list(shards.records())
    np.testing.assert_array_equal(np.stack([a.numpy() for a, _ in back]), x)   # shard order
    np.testing.assert_array_equal(np.stack([b.numpy() for _, b in back]), y)
    mean, scale = shards.scaling()      # from per-shard sums: the same as from all targets
    want_mean, want_scale = target_scaling(y)
    assert mean == pytest.approx(want_mean, abs=1e-5) and scale == pytest.approx(want_scale, rel=1e-5)
    cfg = TrainConfig(steps=10, batch_size=10, seed=5)
    seq = [bx.numpy() for bx, _ in shards.batches(cfg, mean, scale).take(10)]
    again = [bx.numpy() for bx, _ in shards.batches(cfg, mean, scale).take(10)]
    np.testing.assert_array_equal(np.stack(seq), np.stack(again))
    known = {row.tobytes() for row in x}
    assert all(row.tobytes() in known for row in np.concatenate(seq))
    assert not np.array_equal(np.concatenate(seq[:5]), x)                  # shuffled
    skipped = [bx.numpy() for bx, _ in shards.batches(cfg, mean, scale).skip(7).take(3)]
    np.testing.assert_array_equal(np.stack(skipped), np.stack(seq[7:]))
    (tmp_path / shard_name(2)).unlink()
    with pytest.raises(Exception, match="shard-00002.tfrecord is missing"):
        Shards.open(tmp_path)
