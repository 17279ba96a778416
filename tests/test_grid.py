"""Grid files: the 144 grid, validation of bad files, stable derived ids, the CLI."""
import subprocess
import sys

import pytest

from students.config import StudentConfig, TrainConfig
from sweep import grid
from sweep.config import TrialConfig


def test_frill144_has_144_unique_trials_spanning_every_axis():
    trials = grid.load("frill144").trials()
    assert len(trials) == 144
    assert len({t.trial_id for t in trials}) == 144
    s = [t.student for t in trials]
    assert {x.depth for x in s} == {"tiny", "small", "large"}
    assert {x.alpha for x in s} == {0.25, 0.5, 0.75, 1.0, 1.5, 2.0}
    assert {x.pooling for x in s} == {"global", "flatten"}
    assert {x.compression for x in s} == {"none", "lowrank"}
    assert {x.qat for x in s} == {False, True}
    assert any(x == StudentConfig(bottleneck=2048) for x in s)  # FRILL itself is in the grid


def test_ids_are_stable_derived_and_ignore_threads():
    a = TrialConfig(StudentConfig(), TrainConfig(threads=1))
    b = TrialConfig(StudentConfig(), TrainConfig(threads=4))
    c = TrialConfig(StudentConfig(alpha=1.0), TrainConfig())
    assert a.trial_id == b.trial_id != c.trial_id
    assert TrialConfig.from_dict(a.as_dict()) == a


def test_fidelity_changes_training_and_ids():
    smoke = grid.load("smoke")
    s, l = smoke.trials("smoke"), smoke.trials("local")
    assert s[0].train.steps < l[0].train.steps
    assert s[0].trial_id != l[0].trial_id


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
])
def test_bad_grid_files_get_one_clear_error(tmp_path, text, message):
    path = tmp_path / "g.yaml"
    path.write_text(text)
    with pytest.raises(grid.GridError) as e:
        grid.load(path)
    assert message in str(e.value)
    assert str(path) in str(e.value)


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
    assert ids == [t.trial_id for t in grid.load("frill144").trials()]
