"""The Ray Tune driver: one trial per grid configuration, resumable, fault-isolated.

Resume works from our own ledger (the trial folders), not from Tune's experiment state:
a SIGKILLed driver can leave Tune's state behind the trial folders, and `Tuner.restore`
would retry errored trials without bound. Each `run` therefore launches exactly the trials
the ledger says are pending (missing, or errored with an attempt left).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import ray
from ray import tune

from results.table import expected_ids as table_expected
from sweep import ledger as L
from sweep.config import TrialConfig
from sweep.context import SweepContext, prepare
from sweep.grid import Grid
from sweep.trial import run_trial, write_json


def _trainable(config: dict, ctx: SweepContext) -> None:
    config = config["job"]
    cfg = TrialConfig.from_dict(config["trial"])
    out = Path(tempfile.mkdtemp(prefix=f"trial-{cfg.trial_id}-"))
    row = run_trial(cfg, ctx, out, sweep=config["sweep"], attempt=config["attempt"])
    row["ray_node_id"] = ray.get_runtime_context().get_node_id()
    write_json(out / "row.json", row)
    # The folder travels to the driver through Tune's storage (shared storage_path on a
    # cluster); the driver renames it into the sweep's trials/ folder.
    tune.report({"ok": int(row["status"] == "OK"), "seconds_total": row["seconds_total"]},
                checkpoint=tune.Checkpoint.from_directory(str(out)))
    shutil.rmtree(out, ignore_errors=True)


@ray.remote(num_cpus=1)
def _embed_part(spec: str, crops: np.ndarray) -> tuple[np.ndarray, int]:
    from teacher.teachers import get_teacher
    teacher = get_teacher(spec)
    return teacher.embed(crops), teacher.calls


def _embed_on_cluster(spec: str, crops: np.ndarray) -> tuple[np.ndarray, int]:
    """Teacher targets as one Ray task per CPU of the cluster, each on a slice of the crops."""
    n = max(1, min(len(crops), int(ray.cluster_resources().get("CPU", 1))))
    parts = ray.get([_embed_part.remote(spec, p) for p in np.array_split(crops, n)])
    return np.concatenate([y for y, _ in parts]), sum(c for _, c in parts)


def _fmt(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{m}m{s:02d}s"


class Recorder(tune.Callback):
    """Driver side: lands each trial folder atomically, rebuilds the table, prints progress."""

    def __init__(self, sdir: Path, total: int, already: int, log=print):
        self.sdir, self.total, self.log = sdir, total, log
        self.done = already
        self.errors = 0
        self.ran = 0
        self.t0 = time.monotonic()
        self.last_line = 0.0

    def _land(self, trial, fill) -> None:
        """fill(tmp) writes a trial folder; it then replaces trials/<id> in one rename."""
        tid = TrialConfig.from_dict(trial.config["job"]["trial"]).trial_id
        dest = self.sdir / "trials" / tid
        tmp = dest.with_name(f".{tid}.landing")
        shutil.rmtree(tmp, ignore_errors=True)
        fill(tmp)
        if dest.exists():
            shutil.rmtree(dest)   # an errored attempt being replaced by its retry
        os.replace(tmp, dest)
        row = json.loads((dest / "row.json").read_text())
        self.errors += row["status"] != "OK"
        self.done += 1
        self.ran += 1
        _write_table(self.sdir)
        self.progress(force=True)

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        self._land(trial, lambda tmp: checkpoint.to_directory(str(tmp)))

    def on_trial_error(self, iteration, trials, trial, **info):
        # The trial process died without reporting (segfault, OOM kill, lost node).
        job = trial.config["job"]
        cfg = TrialConfig.from_dict(job["trial"])
        err = getattr(trial, "error_file", None)
        msg = Path(err).read_text().strip().splitlines()[-1] if err and Path(err).exists() else "trial process failed"
        row = dict(cfg.flat(), sweep=job["sweep"], attempt=job["attempt"], status="ERROR",
                   error_class="TrialCrashed", error_message=msg[:500])

        def fill(tmp: Path) -> None:
            tmp.mkdir(parents=True)
            write_json(tmp / "row.json", row)
        self._land(trial, fill)

    def on_step_end(self, iteration, trials, **info):
        self.progress()

    def progress(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_line < 30:
            return
        self.last_line = now
        elapsed = now - self.t0
        left = self.total - self.done
        eta = f"ETA {_fmt(elapsed / self.ran * left)}" if self.ran else "ETA ?"
        self.log(f"[{self.sdir.name}] {self.done}/{self.total} done, {self.errors} errors, "
                 f"elapsed {_fmt(elapsed)}, {eta}", flush=True)


def _write_table(sdir: Path) -> None:
    import results
    results.write_table(results.rebuild(sdir), sdir)


def start_sweep(grid: Grid, name: str, fidelity: str, command: str,
                indices: list[int] | None = None) -> tuple[Path, list[TrialConfig]]:
    """Create or reopen the sweep folder; refuse a name that holds a different grid."""
    trials = grid.trials(fidelity)
    if indices is not None:
        trials = [trials[i] for i in indices]
    sdir = L.sweep_dir(name)
    ids = [t.trial_id for t in trials]
    meta_path = sdir / "sweep.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if table_expected(meta) != ids:
            raise L.SweepError(f"sweep {name!r} at {sdir} holds a different grid or fidelity "
                               f"({meta['grid']}, {meta['fidelity']}); choose another --name")
    else:
        sdir.mkdir(parents=True, exist_ok=True)
        write_json(meta_path, dict(
            name=name, grid=grid.name, grid_path=str(grid.path), fidelity=fidelity,
            expected_trial_ids=ids, trials={t.trial_id: t.describe() for t in trials},
            started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), command=command))
    return sdir, trials


def run_sweep(grid: Grid, name: str, fidelity: str, *, cpus_per_trial: int = 1,
              memory_gb: float = 2.0, storage: str | None = None, indices: list[int] | None = None,
              log=print) -> L.Ledger:
    command = f"python -m sweep run --grid {grid.path} --name {name} --fidelity {fidelity}"
    sdir, trials = start_sweep(grid, name, fidelity, command, indices)
    before = L.ledger(sdir)
    by_id = {t.trial_id: t for t in trials}
    rows = L.read_rows(sdir)
    pending = [by_id[t] for t in before.pending]
    log(f"[{name}] {before.line()}; running {len(pending)}")
    if pending:
        _tune(pending, rows, sdir, name, cpus_per_trial, memory_gb, storage, len(trials),
              len(trials) - len(pending), log)
    _write_table(sdir)
    after = L.ledger(sdir)
    log(f"[{name}] {after.line()}")
    try:
        from results import report
        paths = report.write_report(sdir)
        log(f"[{name}] report: {paths.get('html')}")
    except Exception as e:  # noqa: BLE001 - a report failure must not hide the sweep's result
        log(f"[{name}] report not written: {e}")
    if after.missing:
        log(f"[{name}] {len(after.missing)} trials did not finish; resume with: {command}")
    return after


def _tune(pending, rows, sdir, name, cpus, memory_gb, storage, total, already, log) -> None:
    first = pending[0]
    address = os.environ.get("RAY_ADDRESS")
    ray.init(address=address or None, include_dashboard=False, logging_level="ERROR",
             log_to_driver=False, ignore_reinit_error=True)
    try:
        # On a cluster the teacher targets are built in parallel on every node; on one
        # machine a second TF process per core would cost more than it saves.
        nodes = sum(n["Alive"] for n in ray.nodes())
        if nodes > 1:
            log(f"[{name}] {nodes} Ray nodes: teacher targets not yet cached are computed "
                "as Ray tasks across them")
        ctx = prepare(first, log=log, embed=_embed_on_cluster if nodes > 1 else None)
        slots = max(1, int(ray.cluster_resources().get("CPU", 1) // cpus))
        configs = [dict(trial=replace(t, train=replace(t.train, threads=cpus)).as_dict(), sweep=name,
                        attempt=int(rows.get(t.trial_id, {}).get("attempt", 0)) + 1) for t in pending]
        storage = storage or os.environ.get("FRILL_STORAGE") or str((sdir / "tune").resolve())
        trainable = tune.with_resources(tune.with_parameters(_trainable, ctx=ctx),
                                        {"cpu": cpus, "memory": int(memory_gb * 2**30)})
        # Tune's default console output (experiment banner, tables) would bury our progress
        # line; its legacy reporter at verbose=0 prints nothing.
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        tuner = tune.Tuner(
            trainable,
            param_space={"job": tune.grid_search(configs)},
            # A fresh process per trial (~4 s of TF start): reused actors grew by ~50 MB a
            # trial (tf.data copies, allocator) until Ray's OOM killer struck at 10 GB.
            tune_config=tune.TuneConfig(num_samples=1, max_concurrent_trials=slots, reuse_actors=False),
            run_config=tune.RunConfig(
                name=f"{name}-{int(time.time())}", storage_path=storage, verbose=0,
                failure_config=tune.FailureConfig(max_failures=0),
                callbacks=[Recorder(sdir, total, already, log)]))
        log(f"[{name}] {len(pending)} trials on Ray ({slots} at a time, {cpus} CPU each), storage {storage}")
        try:
            tuner.fit()
        except Exception as e:  # noqa: BLE001 - e.g. Tune cannot handle an OOM-killed worker
            # The landed trial folders are the ledger: report, and let the caller say resume.
            msg = (str(e).strip().splitlines() or [""])[0][:300]
            log(f"[{name}] Ray Tune stopped early ({type(e).__name__}: {msg})")
    finally:
        ray.shutdown()
