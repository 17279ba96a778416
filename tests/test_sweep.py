"""The Ray Tune driver, end to end on real (tiny) trials: rows, resume after SIGKILL,
fault isolation, and a real two-node Ray cluster."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sweep import ledger

TINY = """\
name: {name}
shared: {{fidelity: smoke, depth: tiny, bottleneck: 64, rank: 16}}
axes:
{axes}
"""


def _grid(tmp_path, name, axes) -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(TINY.format(name=name, axes=axes))
    return p


def _run(grid: Path, runs: Path, *extra, env=None, **kw):
    env = {**os.environ, "FRILL_RESULTS": str(runs), **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "sweep", "run", "--grid", str(grid), *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def _rows(sdir: Path) -> dict:
    return ledger.read_rows(sdir)


def test_smoke_grid_through_tune_gives_one_complete_row_per_trial(smoke_sweep):
    import results
    runs_dir, code, out = smoke_sweep
    assert code == 0, out
    sdir = runs_dir / "smoke"
    led = ledger.ledger(sdir)
    assert len(led.expected) == 2 and len(led.done) == 2, out
    df = results.load(str(sdir))
    assert sorted(df.trial_id) == sorted(led.expected)
    assert (df.status == "OK").all()
    for col in ("tflite_bytes", "latency_ms_p50", "probe_acc_mean", "distill_mse_heldout"):
        assert df[col].notna().all() and (df[col] > 0).all(), col
    for tid in led.expected:
        assert (sdir / "trials" / tid / "model.tflite").stat().st_size == int(df.set_index("trial_id").tflite_bytes[tid])
    assert "2/2 done" in out                      # the live progress line
    # Every documented column is present and typed, and OK rows fill every 'ok' column.
    from results import schema
    assert schema.problems(df) == []
    for c in schema.COLUMNS:
        if c.need in ("all", "ok"):
            assert df[c.name].notna().all(), c.name
    assert {"probe_acc_language", "probe_acc_rate"} <= set(df.columns)
    # Quality is measured on the converted file: the int8 student's TFLite metrics differ
    # from its Keras twin's, and the row holds the TFLite ones.
    q = df[df.qat].iloc[0]
    assert q.distill_mse_heldout != q.keras_distill_mse_heldout
    assert abs(q.distill_mse_heldout - q.keras_distill_mse_heldout) / q.keras_distill_mse_heldout > 1e-4
    assert (sdir / "report.html").exists()        # written when the sweep finishes


def test_failing_trial_becomes_error_row_and_others_finish(tmp_path, runs_dir):
    # A learning rate of 1e12 really diverges: the trial must end as an ERROR row.
    g = _grid(tmp_path, "faulty", "  alpha: [0.25]\n  learning_rate: [0.001, 1.0e+12]")
    p = _run(g, runs_dir)
    out, _ = p.communicate(timeout=900)
    assert p.returncode == 0, out
    rows = list(_rows(runs_dir / "faulty").values())
    assert sorted(r["status"] for r in rows) == ["ERROR", "OK"], out
    bad = next(r for r in rows if r["status"] == "ERROR")
    assert bad["error_class"] == "TrainingDiverged" and bad["error_message"].startswith("train:")
    status = subprocess.run([sys.executable, "-m", "sweep", "status", "--name", "faulty"],
                            env={**os.environ, "FRILL_RESULTS": str(runs_dir)},
                            capture_output=True, text=True)
    assert "expected 2, done 1, errored 1, missing 0" in status.stdout
    # A rerun retries the errored trial once, and only that one.
    p = _run(g, runs_dir)
    out, _ = p.communicate(timeout=900)
    rows2 = _rows(runs_dir / "faulty")
    assert rows2[bad["trial_id"]]["attempt"] == 2
    ok = next(r for r in rows if r["status"] == "OK")
    assert rows2[ok["trial_id"]]["started_at"] == ok["started_at"]
    p = _run(g, runs_dir)                          # no attempts left: nothing runs
    out, _ = p.communicate(timeout=300)
    assert "running 0" in out and _rows(runs_dir / "faulty")[bad["trial_id"]]["attempt"] == 2


@pytest.mark.slow   # ~1/6 of make test: resume-from-ledger without reruns is also checked by the
# failing-trial test above (its reruns); this adds a driver killed mid-run. make test-all runs it.
def test_sigkilled_driver_resumes_without_rerunning_finished_trials(tmp_path, runs_dir):
    g = _grid(tmp_path, "killme", "  alpha: [0.25, 0.5, 0.75]")
    sdir = runs_dir / "killme"
    p = _run(g, runs_dir, start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline and not list((sdir / "trials").glob("*/row.json")):
        time.sleep(0.5)
    os.kill(p.pid, signal.SIGKILL)               # the driver only; Ray must not keep going
    p.communicate()
    before = {t: r["started_at"] for t, r in _rows(sdir).items()}
    assert 1 <= len(before) < 3
    p = _run(g, runs_dir)
    out, _ = p.communicate(timeout=900)
    assert p.returncode == 0, out
    after = _rows(sdir)
    assert len(after) == 3 and all(r["status"] == "OK" for r in after.values())
    for tid, started in before.items():
        assert after[tid]["started_at"] == started   # finished trials were not rerun
    import results
    df = results.load(str(sdir))
    assert len(df) == 3 and df.trial_id.is_unique


@pytest.mark.slow
def test_two_node_ray_cluster_runs_the_smoke_grid(tmp_path, runs_dir):
    from ray.cluster_utils import Cluster
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    try:
        g = _grid(tmp_path, "cluster", "  alpha: [0.25]\n  compression: [none, lowrank]")
        cache_dir = tmp_path / "cache"   # empty: the teacher targets are built on the cluster
        p = _run(g, runs_dir, env={"RAY_ADDRESS": cluster.address, "FRILL_CACHE": str(cache_dir),
                                   "FRILL_STORAGE": str(tmp_path / "shared")})
        out, _ = p.communicate(timeout=900)
        assert p.returncode == 0, out
        rows = _rows(runs_dir / "cluster")
        assert len(rows) == 2 and all(r["status"] == "OK" for r in rows.values()), out
        assert len({r["ray_node_id"] for r in rows.values()}) == 2   # one trial per node
        assert "2 Ray nodes: teacher targets" in out and ", built, teacher calls 320)" in out, out
    finally:
        cluster.shutdown()
    # The targets built in two Ray tasks are the teacher's, in crop order.
    from teacher.cache import load_distill_set
    from teacher.teachers import get_teacher
    (set_dir,) = [d for d in cache_dir.iterdir() if (d / "manifest.json").exists()]
    dset = load_distill_set(set_dir)
    assert dset.manifest["teacher_calls"] == len(dset.crops) == 320
    np.testing.assert_allclose(dset.targets, get_teacher("resemblyzer").embed(dset.crops), atol=1e-5)
