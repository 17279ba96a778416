"""Grid files: the 144 grid, validation of bad files, stable derived ids, the CLI."""
import dataclasses
import subprocess
import sys

import pytest

from students.config import StudentConfig, TrainConfig
from sweep import grid
from sweep.config import SweepConfig, TrialConfig


def test_frill144_has_144_unique_trials_spanning_every_axis():
    g = grid.load("frill144")
    assert len(g.trials) == 144
    assert len(set(g.ids)) == 144
    s = [t.student for t in g.trials]
    assert {x.depth for x in s} == {"tiny", "small", "large"}
    assert {x.alpha for x in s} == {0.25, 0.5, 0.75, 1.0, 1.5, 2.0}
    assert {x.pooling for x in s} == {"global", "flatten"}
    assert {x.compression for x in s} == {"none", "lowrank"}
    assert {x.qat for x in s} == {False, True}
    assert any(x == StudentConfig(bottleneck=2048) for x in s)  # FRILL itself is in the grid


def test_frill144_warm_starts_every_qat_and_lowrank_student_from_its_float_twin():
    g = grid.load("frill144")
    ids = set(g.ids)
    warm = [t for t in g.trials if t.warm_start]
    assert len(warm) == 108 and all(t.twin().trial_id(g.sweep) in ids for t in warm)
    assert all(t.run_train.steps == t.finetune_steps < t.train.steps for t in warm)
    cold = [t for t in g.trials if not t.warm_start]
    assert len(cold) == 36 and all(not t.student.qat and t.student.compression == "none" for t in cold)


def test_ids_are_stable_derived_and_ignore_threads():
    sc = SweepConfig()
    a = TrialConfig(StudentConfig(), TrainConfig(threads=1))
    b = TrialConfig(StudentConfig(), TrainConfig(threads=4))
    c = TrialConfig(StudentConfig(alpha=1.0), TrainConfig())
    assert a.trial_id(sc) == b.trial_id(sc) != c.trial_id(sc)
    assert a.trial_id(sc) == a.trial_id(SweepConfig(latency_threads=2))  # timing only
    assert a.trial_id(sc) == a.trial_id(SweepConfig(checkpoint_every=5))  # resuming is exact
    assert a.trial_id(sc) != a.trial_id(SweepConfig(shard_size=256))      # another data order
    assert a.trial_id(sc) != a.trial_id(SweepConfig(n_crops=100))   # the data changes the result
    # A float student trains the same under either init, so it keeps one id.
    assert TrialConfig(StudentConfig(), TrainConfig(), init="float_twin").trial_id(sc) == a.trial_id(sc)
    assert TrialConfig.from_dict(a.as_dict()) == a


def test_fidelity_changes_training_and_ids_but_not_the_eval_set():
    smoke, local = grid.load("frill144", "smoke"), grid.load("frill144", "local")
    assert smoke.trials[0].train.steps < local.trials[0].train.steps
    assert smoke.ids[0] != local.ids[0]
    assert smoke.sweep.n_crops < local.sweep.n_crops
    for key in ("n_eval_clips", "n_heldout", "data_seed"):
        assert getattr(smoke.sweep, key) == getattr(local.sweep, key)


@pytest.mark.parametrize("text, message", [
    ("name: x\naxes: {depth: [tiny]}\nbogus: 1\n", "unknown key(s) ['bogus']"),
    ("name: x\naxes: {colour: [red]}\n", "unknown key(s) ['colour'] in axes"),
    ("name: x\naxes: {depth: []}\n", "axis 'depth' must be a non-empty list"),
    ("name: x\naxes: {}\n", "'axes' must be a non-empty mapping"),
    ("name: x\naxes: {depth: [tiny, huge]}\n", "depth='huge' is not valid"),
    ("name: x\naxes: {alpha: [one]}\n", "alpha='one' must be a finite number"),
    ("name: x\naxes: {depth: [tiny, tiny]}\n", "duplicate trial"),
    ("name: x\nshared: {fidelity: fast}\naxes: {depth: [tiny]}\n", "fidelity 'fast' is not valid"),
    ("name: x\naxes: {depth: [tiny]\n", "not valid YAML"),
    ("name: x\nshared: {bottleneck: 0}\naxes: {compression: [lowrank]}\n", "needs a bottleneck"),
    ("name: x\nshared: {n_eval_clips: 2}\naxes: {depth: [tiny]}\n", "n_eval_clips=2 must be >= 4"),
    ("name: x\naxes: {qat: [true]}\n", "needs each student's float twin"),
    ("name: x\nshared: {init: warm}\naxes: {depth: [tiny]}\n", "init='warm' is not valid"),
    ("name: x\nshared: {shard_size: 64}\naxes: {frontend: [true]}\n", "set shard_size: 0"),
    ("name: x\nshared: {checkpoint_every: -1}\naxes: {depth: [tiny]}\n", "checkpoint_every=-1 must be"),
])
def test_bad_grid_files_get_one_clear_error(tmp_path, text, message):
    path = tmp_path / "g.yaml"
    path.write_text(text)
    with pytest.raises(grid.GridError) as e:
        grid.load(path)
    assert message in str(e.value)
    assert str(path) in str(e.value)


def test_a_grid_may_train_every_student_from_scratch(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text("name: x\nshared: {init: scratch}\naxes: {qat: [true]}\n")
    (t,) = grid.load(path).trials
    assert not t.warm_start and t.run_train.steps == t.train.steps


def test_cli_bad_grid_is_one_line_without_traceback(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text("name: x\naxes: {depth: [tiny, huge]}\n")
    p = subprocess.run([sys.executable, "-m", "sweep", "list", "--grid", str(path)],
                       capture_output=True, text=True)
    assert p.returncode == 2
    assert p.stderr.startswith("error: ") and len(p.stderr.strip().splitlines()) == 1
    assert "Traceback" not in p.stderr


def test_cli_list_prints_one_line_per_trial():
    p = subprocess.run([sys.executable, "-m", "sweep", "list", "--grid", "frill144"],
                       capture_output=True, text=True, check=True)
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 144
    ids = [line.split()[1] for line in lines]
    assert ids == grid.load("frill144").ids


def test_the_paper_preset_is_defined_as_samples_seen(tmp_path):
    g = grid.load("frill144", fidelity="paper")
    assert {(t.train.steps, t.train.batch_size) for t in g.trials} == {(50_000, 512)}
    assert (g.sweep.n_crops, g.sweep.shard_size, g.sweep.max_passes) == (0, 4096, 10)
    half = tmp_path / "half.yaml"    # a smaller batch: more steps, the same samples seen
    half.write_text("name: half\nshared: {fidelity: paper, batch_size: 256}\naxes: {alpha: [1.0]}\n")
    (t,) = grid.load(half).trials
    assert t.train.steps == 100_000 and t.samples_seen == 25_600_000
    # max_passes is a check, not a setting of the result: it leaves the trial id alone.
    assert t.trial_id(g.sweep) == t.trial_id(dataclasses.replace(g.sweep, max_passes=3))
