"""The Ray Tune driver, end to end on real (tiny) trials: rows, resume after SIGKILL,
fault isolation, and a real two-node Ray cluster."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from results import folder

TINY = """\
name: {name}
shared: {{fidelity: smoke, depth: tiny, bottleneck: 64, rank: 16, n_heldout: 64, n_eval_clips: 120}}
axes:
{axes}
"""


def _grid(tmp_path, name, axes, shared: str = "") -> Path:
    """A tiny grid; shared: more shared settings, e.g. 'shard_size: 100'."""
    p = tmp_path / f"{name}.yaml"
    p.write_text(TINY.format(name=name, axes=axes).replace("fidelity: smoke,", f"fidelity: smoke, {shared},"
                                                           if shared else "fidelity: smoke,"))
    return p


def _run(grid: Path, runs: Path, *extra, env=None, **kw):
    env = {**os.environ, "FRILL_RESULTS": str(runs), **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "sweep", "run", "--grid", str(grid), *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def _rows(sdir: Path) -> dict:
    return folder.read_rows(sdir)


def test_smoke_grid_through_tune_gives_one_complete_row_per_trial(smoke_sweep):
    import results
    runs_dir, code, out = smoke_sweep
    assert code == 0, out
    sdir = runs_dir / "smoke"
    led = folder.ledger(folder.read_rows(sdir), folder.read_info(sdir))
    assert len(led.expected) == 4 and len(led.done) == 4, out
    df = results.load(str(sdir))
    assert sorted(df.trial_id) == sorted(led.expected)
    assert (df.status == "OK").all()
    for col in ("tflite_bytes", "latency_ms_p50", "probe_acc_mean", "distill_mse_heldout"):
        assert df[col].notna().all() and (df[col] > 0).all(), col
    for tid in led.expected:
        assert (sdir / "trials" / tid / "model.tflite").stat().st_size == int(df.set_index("trial_id").tflite_bytes[tid])
    assert "4/4 done, 0 running" in out           # the live progress line
    assert "trial logs (stdout, stderr, tracebacks): /tmp/ray/session_latest/logs" in out
    # QAT and low-rank students fine-tune their float twin's landed weights.
    twin = df[(df.compression == "none") & ~df.qat].trial_id.item()
    warm = df[df.init == "float_twin"]
    assert len(warm) == 3 and (warm.init_from == twin).all() and (warm.steps == 10).all()
    assert (sdir / "trials" / twin / "float_weights.npz").exists()
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
    # A learning rate of 1e12 really diverges: the trial must end as an ERROR row. The set is
    # sharded (written by Ray tasks, streamed by the trials), which the smoke grid does not do.
    g = _grid(tmp_path, "faulty", "  alpha: [0.25]\n  learning_rate: [0.001, 1.0e+12]",
              shared="shard_size: 100")
    p = _run(g, runs_dir)
    out, _ = p.communicate(timeout=900)
    assert p.returncode == 0, out
    rows = list(_rows(runs_dir / "faulty").values())
    assert sorted(r["status"] for r in rows) == ["ERROR", "OK"], out
    (manifest,) = Path(os.environ["FRILL_CACHE"]).glob("*/shards-100-n320/shards.json")
    assert len(json.loads(manifest.read_text())["files"]) == 4     # 320 training crops
    assert json.loads(manifest.read_text())["n"] == 320
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
        g = _grid(tmp_path, "cluster", "  alpha: [0.25, 0.5]")
        cache_dir = tmp_path / "cache"   # empty: the teacher targets are built on the cluster
        p = _run(g, runs_dir, env={"RAY_ADDRESS": cluster.address, "FRILL_CACHE": str(cache_dir),
                                   "FRILL_STORAGE": str(tmp_path / "shared")})
        out, _ = p.communicate(timeout=900)
        assert p.returncode == 0, out
        rows = _rows(runs_dir / "cluster")
        assert len(rows) == 2 and all(r["status"] == "OK" for r in rows.values()), out
        assert len({r["ray_node_id"] for r in rows.values()}) == 2   # one trial per node
        assert "2 Ray nodes: teacher targets" in out and ", built, teacher calls 384)" in out, out
    finally:
        cluster.shutdown()
    # The targets built in two Ray tasks are the teacher's, in crop order.
    from teacher.cache import load_distill_set
    from teacher.teachers import get_teacher
    (set_dir,) = [d for d in cache_dir.iterdir() if (d / "manifest.json").exists()]
    dset = load_distill_set(set_dir)
    assert dset.manifest["teacher_calls"] == len(dset.crops) == 320 + 64
    np.testing.assert_allclose(dset.targets, get_teacher("resemblyzer").embed(dset.crops), atol=1e-5)


def _raylet_running(cluster_nodes, process_title: str):
    """The cluster_utils node whose raylet is an ancestor of the process with this title."""
    from ray._private import ray_constants
    raylets = {n.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid: n for n in cluster_nodes}
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or not (proc / "cmdline").read_bytes().startswith(process_title.encode()):
                continue
            pid = int(proc.name)
            while pid > 1:
                if pid in raylets:
                    return raylets[pid]
                status = (Path("/proc") / str(pid) / "status").read_text()
                pid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
        except (OSError, StopIteration):
            continue
    return None


@pytest.mark.slow
def test_a_trial_whose_node_dies_resumes_on_the_other_node_from_its_checkpoint(tmp_path, runs_dir):
    """Two worker nodes; the one training the only trial is removed once the trial has
    checkpointed. Tune restarts the trial on the other node from that checkpoint (not step 0),
    and it lands exactly once."""
    from ray.cluster_utils import Cluster
    g = tmp_path / "preempt.yaml"
    g.write_text(TINY.format(name="preempt", axes="  alpha: [0.25]").replace(
        "fidelity: smoke,", "fidelity: smoke, steps: 600, checkpoint_every: 25,"))
    storage = tmp_path / "shared"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    try:
        p = _run(g, runs_dir, env={"RAY_ADDRESS": cluster.address, "FRILL_STORAGE": str(storage)})
        deadline = time.monotonic() + 600
        while not list(storage.glob("*/*/checkpoint_*/train_state.json")):
            assert p.poll() is None and time.monotonic() < deadline, p.communicate()[0]
            time.sleep(0.1)
        victim = _raylet_running(workers, "ray::ImplicitFunc")
        assert victim is not None
        cluster.remove_node(victim, allow_graceful=False)
        out, _ = p.communicate(timeout=900)
    finally:
        cluster.shutdown()
    assert p.returncode == 0, out
    (row,) = _rows(runs_dir / "preempt").values()
    assert row["status"] == "OK" and row["attempt"] == 1, out
    assert row["ray_node_id"] != victim.node_id
    assert 0 < row["resumed_from_step"] < 600 and row["resumed_from_step"] % 25 == 0, row["resumed_from_step"]
    assert "lost its worker; Tune restarts it from its last checkpoint" in out
    assert "expected 1, done 1, errored 0, missing 0" in out, out


# ---------------------------------------------------------------- the driver's bad inputs and faults

def _cli(*args, runs: Path, env=None):
    return subprocess.run([sys.executable, "-m", "sweep", *args], capture_output=True, text=True,
                          env={**os.environ, "FRILL_RESULTS": str(runs), **(env or {})}, timeout=600)


def _one_line_error(p, *patterns):
    assert p.returncode == 2, p.stdout + p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in p.stderr, p.stderr
    for pat in patterns:
        assert pat in lines[0], (pat, lines[0])


@pytest.mark.parametrize("flags, says", [
    (["--cpus-per-trial", "0"], "--cpus-per-trial must be a whole number >= 1"),
    (["--cpus-per-trial", "-3"], "--cpus-per-trial must be a whole number >= 1"),
    (["--memory-gb", "-1"], "--memory-gb must be a number > 0"),
    (["--memory-gb", "nan"], "--memory-gb must be a number > 0"),
    (["--memory-gb", "inf"], "--memory-gb must be a number > 0"),
    (["--storage", "relative/dir"], "must be an absolute path"),
    (["--storage", "/proc/1/nope"], "is not a writable folder"),
    (["--gpus-per-trial", "-1"], "--gpus-per-trial must be 0, a fraction of one GPU"),
    (["--gpus-per-trial", "1.5"], "--gpus-per-trial must be 0, a fraction of one GPU"),
])
def test_bad_flags_are_one_line_and_leave_nothing_behind(runs_dir, tmp_path, flags, says):
    g = _grid(tmp_path, "flags", "  alpha: [0.25]")
    _one_line_error(_cli("run", "--grid", str(g), *flags, runs=runs_dir), says)
    assert not runs_dir.exists()    # no sweep.json: the corrected command is not refused


@pytest.mark.parametrize("flags, says", [
    (["--cpus-per-trial", "512"], "is more than the largest node of this machine offers"),
    (["--memory-gb", "100000"], "is more than the largest node of this machine offers"),
    (["--gpus-per-trial", "1"], "is more than the largest node of this machine offers (0 GPUs)"),
])
def test_flags_beyond_the_machine_are_refused_before_sweep_json(runs_dir, tmp_path, flags, says):
    """These once waited forever ('ETA ?'), and their sweep.json then refused the fixed command."""
    g = _grid(tmp_path, "big", "  alpha: [0.25]")
    _one_line_error(_cli("run", "--grid", str(g), *flags, runs=runs_dir), says, "use --")
    assert not (runs_dir / "big").exists()
    from sweep.driver import start_sweep
    from sweep.grid import load
    start_sweep(load(str(g)), "big")                # the corrected command is not refused


def test_a_name_holding_another_grid_is_refused(runs_dir, tmp_path):
    from results import folder
    folder.write_info(runs_dir / "taken", {"name": "taken", "grid": "other", "fidelity": "smoke",
                                           "expected_trial_ids": ["0123456789ab"]})
    g = _grid(tmp_path, "mine", "  alpha: [0.25]")
    _one_line_error(_cli("run", "--grid", str(g), "--name", "taken", runs=runs_dir),
                    "holds a different grid", "choose another --name")


def test_damaged_row_stops_run_before_ray_with_one_line(runs_dir, tmp_path):
    from results import folder
    g = _grid(tmp_path, "dmg", "  alpha: [0.25]")
    from sweep.grid import load
    grid = load(str(g))
    (t,), (tid,) = grid.trials, grid.ids
    sdir = runs_dir / "dmg"
    folder.write_info(sdir, {"name": "dmg", "grid": "dmg", "fidelity": "smoke",
                             "expected_trial_ids": [tid], "command": "python -m sweep run ..."})
    folder.land(sdir, tid, lambda tmp: (tmp.mkdir(), folder.write_row(
        tmp, folder.new_row(t.flat(grid.sweep), sweep="dmg", attempt=1, error_class="X"))))
    (sdir / "trials" / tid / "row.json").write_text('{"trial_id": ')
    _one_line_error(_cli("run", "--grid", str(g), runs=runs_dir), "row.json is damaged",
                    f"delete the folder {sdir / 'trials' / tid}")


def test_ctrl_c_before_the_first_trial_lands_prints_ledger_and_resume(tmp_path, runs_dir):
    g = _grid(tmp_path, "intr", "  alpha: [0.25, 0.5]")
    p = _run(g, runs_dir)
    first = ""
    while "; running" not in first:       # '[intr] expected 2, done 0, ...; running 2'
        line = p.stdout.readline()
        assert line, first
        first += line
    p.send_signal(signal.SIGINT)
    out = first + p.communicate(timeout=300)[0]
    assert p.returncode in (1, 130), out
    assert "Traceback" not in out, out
    assert "resume with: python -m sweep run --grid" in out, out
    assert "expected 2" in out
    rows = _rows(runs_dir / "intr")
    assert all(r["error_class"] != "TrialCrashed" for r in rows.values()), rows  # stopped, not crashed


def test_local_ray_listens_on_loopback_only(tmp_path):
    # Only this Ray's processes (the driver's descendants): other sweeps may share the machine.
    code = ("from sweep import driver\nimport os, ray, subprocess, shutil\n"
            "print('where', driver._start_ray())\n"
            "print('node', ray.nodes()[0]['NodeManagerAddress'])\n"
            "print('gcs', ray.get_runtime_context().gcs_address)\n"
            "kids = {}\n"
            "for d in os.listdir('/proc'):\n"
            "    try:\n"
            "        kids.setdefault(int(open(f'/proc/{d}/stat').read().rsplit(')', 1)[1].split()[1]), []).append(int(d))\n"
            "    except (OSError, ValueError, IndexError):\n"
            "        pass\n"
            "mine, todo = set(), [os.getpid()]\n"
            "while todo:\n"
            "    p = todo.pop(); mine.add(p); todo += kids.get(p, [])\n"
            "if shutil.which('ss'):\n"
            "    for line in subprocess.run(['ss', '-ltnpH'], capture_output=True, text=True).stdout.splitlines():\n"
            "        if any(f'pid={p},' in line for p in mine):\n"
            "            print('listen', line.split()[3], line.split()[-1])\n"
            "ray.shutdown()\n")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "where this machine" in p.stdout and "node 127.0.0.1" in p.stdout, p.stdout
    assert "gcs 127.0.0.1:" in p.stdout, p.stdout
    listening = [line.split()[1:] for line in p.stdout.splitlines() if line.startswith("listen ")]
    assert all(addr.startswith(("127.0.0.1:", "[::ffff:127.0.0.1]:")) for addr, _ in listening), listening
    if listening:   # ss is there: the GCS and the raylet were seen
        assert {"gcs_server", "raylet"} <= {n for _, who in listening for n in ("gcs_server", "raylet") if n in who}


QUALITY = ("distill_r2_heldout", "distill_mse_heldout", "distill_cosine_heldout", "probe_acc_mean",
           "probe_acc_language", "probe_acc_rate", "probe_acc_mean_ci_lo", "probe_acc_mean_ci_hi",
           "keras_distill_mse_heldout", "export_cosine", "tflite_bytes")


def test_a_trial_gives_the_same_row_alone_and_inside_a_sweep(smoke_sweep, tmp_path):
    """`python -m sweep trial` (alone, in-process) reproduces the sweep's rows (two trials at a
    time, in Ray workers) to 1e-6: the float twin, and a QAT + low-rank student warm-started
    from it."""
    runs_dir, code, out = smoke_sweep
    assert code == 0, out
    swept = _rows(runs_dir / "smoke")
    p = subprocess.run([sys.executable, "-m", "sweep", "trial", "--grid", "smoke", "--index", "3",
                        "--json"], env={**os.environ, "FRILL_RESULTS": str(tmp_path / "runs")},
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-2000:]
    warm = json.loads(p.stdout)
    twin = json.loads((tmp_path / "runs" / "debug" / "trials" / warm["init_from"] / "row.json").read_text())
    for alone in (twin, warm):
        inside = swept[alone["trial_id"]]
        for col in QUALITY:
            assert alone[col] == pytest.approx(inside[col], abs=1e-6), col


def test_a_corpus_no_trial_could_score_is_refused_before_anything_is_written(tmp_path, runs_dir):
    """Unlabelled audio (one subfolder: no labels) would fail every trial at its last stage;
    it is one line at the start instead, and the sweep folder is not created."""
    import soundfile as sf
    audio = tmp_path / "audio" / "only"
    audio.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(8):
        sf.write(audio / f"{i}.wav", (0.1 * rng.standard_normal(32000)).astype(np.float32), 16000)
    g = tmp_path / "unlabelled.yaml"
    g.write_text(TINY.format(name="unlabelled", axes="  alpha: [0.25]").replace(
        "fidelity: smoke,", f"fidelity: smoke, corpus: {tmp_path / 'audio'}, n_crops: 12,"))
    p = _cli("run", "--grid", str(g), runs=runs_dir, env={"FRILL_CACHE": str(tmp_path / "cache")})
    _one_line_error(p, "has no labelled evaluation task")
    assert not (runs_dir / "unlabelled").exists()


def test_gpus_per_trial_reaches_tunes_resource_request():
    """Tested on CPU: the request Tune schedules by carries the GPU share (Ray then hands the
    trial its CUDA_VISIBLE_DEVICES); without GPUs the request has none."""
    from ray import tune

    from sweep.driver import _trainable, trial_resources
    with_gpu = tune.with_resources(_trainable, trial_resources(1, 0.5, 2.0))._resources
    assert with_gpu.required_resources == {"CPU": 1.0, "GPU": 0.5, "memory": 2.0 * 2**30}
    without = tune.with_resources(_trainable, trial_resources(2, 0, 1.0))._resources
    assert "GPU" not in without.required_resources and without.required_resources["CPU"] == 2.0


def test_rows_record_the_device_they_trained_on(smoke_sweep):
    runs_dir, code, out = smoke_sweep
    assert code == 0, out
    rows = _rows(runs_dir / "smoke").values()
    assert {r["train_device"] for r in rows} == {"CPU"}   # this machine has no GPU


def test_tune_sees_the_training_curve_and_the_full_row(smoke_sweep):
    """Tune's own results (what its dataframe, TensorBoard, MLflow or W&B loggers read) hold a
    loss every 10 steps and, at the end, the row's probe accuracies, size and latency."""
    runs_dir, code, out = smoke_sweep
    assert code == 0, out
    rows = _rows(runs_dir / "smoke")
    results_files = sorted((runs_dir / "smoke" / "tune").glob("*/*/result.json"))
    assert len(results_files) == len(rows) == 4
    for f in results_files:
        reports = [json.loads(line) for line in f.read_text().splitlines()]
        curve = [r for r in reports if "train_loss" in r]
        final = reports[-1]
        row = rows[final["config"]["job"]["trial_id"]]
        assert [r["step"] for r in curve] == list(range(10, row["steps"] + 1, 10))
        for col in ("probe_acc_mean", "probe_acc_language", "distill_r2_heldout", "tflite_bytes",
                    "latency_ms_p50"):
            assert final[col] == pytest.approx(row[col]), col
