"""The Ray Tune driver: one trial per grid configuration, resumable, fault-isolated.

Resume works from our own ledger (the trial folders, results/folder.py), not from Tune's
experiment state: a SIGKILLed driver can leave Tune's state behind the trial folders, and
`Tuner.restore` would retry errored trials without bound. Each `run` therefore launches exactly
the trials the ledger says are pending (missing, or errored with an attempt left).

Order of a run: check the flags, take the sweep folder's lock, start Ray and check the flags
against what it offers, and only then write sweep.json; so a refused command leaves nothing
behind and the corrected one is not refused. Ctrl-C at any point ends with the ledger and the
resume command.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import socket
import tempfile
import time
from dataclasses import replace
from pathlib import Path

# A local sweep binds Ray to 127.0.0.1: Ray maps 127.0.0.1 to the machine's network address
# (and its servers listen on every interface) unless this is off. Read when ray is imported.
if not os.environ.get("RAY_ADDRESS"):
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import numpy as np
import ray
from ray import tune

from results import folder
from results.errors import FrillError, first_line
from results.files import atomic_write
from results.folder import Ledger
from sweep import SweepError, quiet
from students.config import DEPTHS
from sweep.config import SweepConfig, TrialConfig
from sweep.context import SweepContext, prepare, training_size
from sweep.grid import Grid
from sweep.trial import load_float_weights, run_trial

LOCALHOST = "127.0.0.1"
RAY_LOGS = "/tmp/ray/session_latest/logs"   # Ray's own default place for its workers' logs
MAX_RESTARTS = 2   # Tune's restarts of a trial whose worker died, within one run


def _trainable(config: dict, ctx: SweepContext, inits: dict[str, ray.ObjectRef]) -> None:
    job = config["job"]
    cfg = TrialConfig.from_dict(job["trial"])
    # Before TF's context starts: pins its pools to the trial's CPUs (Ray does not) and
    # silences its start-up lines in the worker log.
    quiet.start_tensorflow(threads=cfg.run_train.threads)
    from students.train import STATE_JSON   # imports TF: only after the line above
    out = Path(tempfile.mkdtemp(prefix=f"trial-{job['trial_id']}-"))
    # Restarted by Tune after its worker died: continue from the last training checkpoint.
    last = tune.get_checkpoint()
    with last.as_directory() if last else contextlib.nullcontext() as resume:
        if resume and not (Path(resume) / STATE_JSON).exists():
            resume = None   # the finished trial's own folder: nothing to continue
        init = inits.get(job["init_from"])
        row = run_trial(cfg, ctx, out, sweep=job["sweep"], attempt=job["attempt"],
                        init=None if init is None else ray.get(init), keep_weights=job["keep_weights"],
                        row_fields={"ray_node_id": ray.get_runtime_context().get_node_id()},
                        progress=_report, resume=resume and Path(resume))
    # The full row's numbers go to Tune too (its dataframe, TensorBoard/MLflow/W&B callbacks).
    # The folder travels to the driver through Tune's storage (shared storage_path on a
    # cluster); the driver lands it in the sweep's trials/ folder.
    metrics = {k: v for k, v in row.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    tune.report({**metrics, "ok": int(row["status"] == "OK")},
                checkpoint=tune.Checkpoint.from_directory(str(out)))
    shutil.rmtree(out, ignore_errors=True)


def _report(metrics: dict, checkpoint: Path | None = None) -> None:
    """Training progress to Tune; a training checkpoint goes to Tune's storage with it."""
    tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(checkpoint)) if checkpoint else None)


@ray.remote(num_cpus=1)
def _embed_part(spec: str, crops: np.ndarray) -> tuple[np.ndarray, int]:
    from teacher.teachers import get_teacher
    teacher = get_teacher(spec)
    return teacher.embed(crops), teacher.calls


def _get_tasks(refs: list) -> list:
    """ray.get of the sweep's set-up tasks; one of our errors in a task (e.g. no espeak-ng on
    a worker) is raised as itself, so the driver prints its one line, not Ray's traceback."""
    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as e:
        if isinstance(e.cause, FrillError):
            raise e.cause from None
        raise


def _embed_on_cluster(spec: str, crops: np.ndarray) -> tuple[np.ndarray, int]:
    """Teacher targets as one Ray task per CPU of the cluster, each on a slice of the crops."""
    n = max(1, min(len(crops), int(ray.cluster_resources().get("CPU", 1))))
    parts = _get_tasks([_embed_part.remote(spec, p) for p in np.array_split(crops, n)])
    return np.concatenate([y for y, _ in parts]), sum(c for _, c in parts)


@ray.remote(num_cpus=1)
def _shard_task(*job) -> None:
    from sweep.context import build_shard
    quiet.start_tensorflow(threads=1)
    build_shard(*job)


def _shards_as_tasks(jobs: list) -> None:
    """One Ray task per shard (its crops, teacher targets and features); on a cluster the
    set's folder (FRILL_CACHE) and a user corpus must be on storage every node sees."""
    _get_tasks([_shard_task.remote(*job) for job in jobs])


def _fmt(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{m}m{s:02d}s"


class Recorder(tune.Callback):
    """Driver side: lands each trial folder, upserts its row into the table, prints progress."""

    def __init__(self, sdir: Path, sweep_cfg: SweepConfig, total: int, already: int, slots: int,
                 log=print):
        self.sdir, self.sweep_cfg, self.total, self.slots, self.log = sdir, sweep_cfg, total, slots, log
        self.done = already
        self.errors = 0
        self.ran = 0
        self.t0 = time.monotonic()
        self.last_line = 0.0
        self.running: dict[str, float] = {}   # Tune trial id -> when it started

    def on_trial_start(self, iteration, trials, trial, **info):
        self.running[trial.trial_id] = time.monotonic()

    def _land(self, trial, fill) -> None:
        tid = trial.config["job"]["trial_id"]
        self.running.pop(trial.trial_id, None)
        row = folder.land(self.sdir, tid, fill)
        note = folder.update_table(self.sdir, row)
        if note != "updated":
            self.log(f"[{self.sdir.name}] {note}", flush=True)
        self.errors += row["status"] != "OK"
        self.done += 1
        self.ran += 1
        self.progress(force=True)

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        # Only the final report carries 'ok' (and the trial folder); the others are training
        # checkpoints, kept by Tune for a restart.
        if "ok" in (trial.last_result or {}):
            self._land(trial, lambda tmp: checkpoint.to_directory(str(tmp)))

    def on_trial_recover(self, iteration, trials, trial, **info):
        self.log(f"[{self.sdir.name}] trial {trial.config['job']['trial_id']} lost its worker; "
                 "Tune restarts it from its last checkpoint", flush=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        # The trial process died without reporting (segfault, OOM kill, lost node).
        job = trial.config["job"]
        cfg = TrialConfig.from_dict(job["trial"])
        err = getattr(trial, "error_file", None)
        lines = Path(err).read_text().strip().splitlines() if err and Path(err).exists() else []
        row = folder.new_row(cfg.flat(self.sweep_cfg), sweep=job["sweep"], attempt=job["attempt"],
                             error_class="TrialCrashed", ended_at=folder.now(),
                             error_message=(lines[-1] if lines else "trial process failed")[:500])

        def fill(tmp: Path) -> None:
            tmp.mkdir(parents=True)
            folder.write_row(tmp, row)
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
        if self.ran:
            eta = f"ETA {_fmt(elapsed / self.ran * left)}"
        elif self.running:   # nothing landed yet: every trial takes at least as long as the oldest so far
            eta = f"ETA > {_fmt(max(now - t for t in self.running.values()) * math.ceil(left / self.slots))}"
        else:
            eta = "ETA ?"
        self.log(f"[{self.sdir.name}] {self.done}/{self.total} done, {len(self.running)} running, "
                 f"{self.errors} errors, elapsed {_fmt(elapsed)}, {eta}", flush=True)


def trial_resources(cpus: int, gpus: float, memory_gb: float) -> dict:
    """What each trial asks Tune for. Ray gives a trial with GPUs its own CUDA_VISIBLE_DEVICES,
    so TensorFlow in the trial sees (only) the GPUs Ray assigned; fractions share one GPU."""
    out = {"cpu": cpus, "memory": int(memory_gb * 2**30)}
    if gpus:
        out["gpu"] = gpus
    return out


def check_flags(cpus_per_trial: int, memory_gb: float, storage: str | None,
                gpus_per_trial: float = 0) -> None:
    """What can be checked without Ray; nothing is written before this passes."""
    if not isinstance(cpus_per_trial, int) or cpus_per_trial < 1:
        raise SweepError(f"--cpus-per-trial must be a whole number >= 1, got {cpus_per_trial}")
    if not (isinstance(memory_gb, (int, float)) and math.isfinite(memory_gb) and memory_gb > 0):
        raise SweepError(f"--memory-gb must be a number > 0 (GiB per trial), got {memory_gb}")
    if not (isinstance(gpus_per_trial, (int, float)) and math.isfinite(gpus_per_trial)
            and gpus_per_trial >= 0 and (gpus_per_trial <= 1 or float(gpus_per_trial).is_integer())):
        raise SweepError(f"--gpus-per-trial must be 0, a fraction of one GPU, or a whole number, "
                         f"got {gpus_per_trial}")
    if storage and "://" not in storage:
        p = Path(storage).expanduser()
        if not p.is_absolute():
            raise SweepError(f"--storage {storage} must be an absolute path (or a URI), "
                             "shared by every node of the cluster")
        parent = next((q for q in (p, *p.parents) if q.exists()), None)
        if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK):
            raise SweepError(f"--storage {storage}: {parent} is not a writable folder")


def check_resources(cpus_per_trial: int, memory_gb: float, where: str, gpus_per_trial: float = 0) -> None:
    """A trial must fit on one alive node, or Tune would wait for it forever ('ETA ?')."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    cpus = max((n.get("CPU", 0) for n in nodes), default=0)
    mem = max((n.get("memory", 0) for n in nodes), default=0) / 2**30
    if cpus_per_trial > cpus:
        raise SweepError(f"--cpus-per-trial {cpus_per_trial} is more than the largest node of {where} "
                         f"offers ({cpus:g} CPUs): use --cpus-per-trial {max(1, int(cpus))} or fewer")
    gpus = max((n.get("GPU", 0) for n in nodes), default=0)
    if gpus_per_trial > gpus:
        raise SweepError(f"--gpus-per-trial {gpus_per_trial:g} is more than the largest node of {where} "
                         f"offers ({gpus:g} GPUs): use --gpus-per-trial 0 to train on CPUs"
                         + (f", or at most {gpus:g}" if gpus else ""))
    if memory_gb > mem:
        raise SweepError(f"--memory-gb {memory_gb:g} is more than the largest node of {where} offers "
                         f"to Ray ({mem:.1f} GiB): use --memory-gb {max(mem * 0.9, 0.1):.1f} or less")


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Ray retries an unreachable GCS for minutes; a plain TCP connect answers in seconds."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if address == "auto" or not host or not port.isdigit():
        return   # 'auto' and unusual forms: left to Ray
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise SweepError(f"cannot reach the Ray cluster at RAY_ADDRESS={address} ({e.strerror or e}); "
                         "check the address and that its head node runs, or unset RAY_ADDRESS to run "
                         "on this machine") from None


def _start_ray() -> str:
    """Join RAY_ADDRESS's cluster, or start a local Ray bound to 127.0.0.1; returns where."""
    address = os.environ.get("RAY_ADDRESS") or None
    # 'local': a new Ray of our own; None would join any cluster `ray start` left on the machine.
    local = {} if address else {"_node_ip_address": LOCALHOST}
    if address:
        check_reachable(address)
    try:
        # Workers on other nodes get the quiet TF settings through the runtime env.
        ray.init(address=address or "local", include_dashboard=False, logging_level="ERROR",
                 log_to_driver=False, ignore_reinit_error=True,
                 runtime_env={"env_vars": dict(quiet.ENV)}, **local)
    except Exception as e:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError
        where = f"the Ray cluster at RAY_ADDRESS={address}" if address else "a local Ray"
        raise SweepError(f"cannot start or join {where} ({type(e).__name__}: {first_line(e, 200)})"
                         + ("; check RAY_ADDRESS, or unset it to run on this machine" if address else ""))
    return f"the Ray cluster at {address}" if address else "this machine"


def start_sweep(grid: Grid, name: str, indices: list[int] | None = None
                ) -> tuple[Path, list[TrialConfig], str]:
    """The sweep's folder, trials and run command; refuses a name that holds a different grid.
    Reads only: sweep.json is written by run_sweep once every check has passed."""
    sdir = folder.sweep_dir(name)
    trials = list(grid.trials)
    if indices is not None:
        bad = [i for i in indices if not 0 <= i < len(trials)]
        if bad:
            raise SweepError(f"trial indices {bad} are out of range: {grid.name} has {len(trials)} trials")
        trials = [trials[i] for i in indices]
    command = f"python -m sweep run --grid {grid.path} --name {name} --fidelity {grid.sweep.fidelity}"
    if (sdir / "sweep.json").exists():
        info = folder.read_info(sdir)
        if folder.expected_ids(info) != [t.trial_id(grid.sweep) for t in trials]:
            raise SweepError(f"sweep {name!r} at {sdir} holds a different grid or fidelity "
                             f"({info['grid']}, {info['fidelity']}); choose another --name")
    return sdir, trials, command


def run_sweep(grid: Grid, name: str, *, cpus_per_trial: int = 1, gpus_per_trial: float = 0,
              memory_gb: float = 2.0, storage: str | None = None, indices: list[int] | None = None,
              callbacks: tuple = (), log=print) -> Ledger:
    """Run or resume a sweep; returns the ledger after it. KeyboardInterrupt is re-raised after
    the ledger and the resume command are printed. callbacks: more Tune callbacks (an MLflow or
    W&B logger, say), beside the one that lands each trial."""
    check_flags(cpus_per_trial, memory_gb, storage, gpus_per_trial)
    resources = trial_resources(cpus_per_trial, gpus_per_trial, memory_gb)
    sdir, trials, command = start_sweep(grid, name, indices)
    existed = sdir.exists()
    try:
        with folder.driver_lock(sdir):
            try:
                return _run_locked(grid, name, sdir, trials, command, resources, storage,
                                   callbacks, log)
            finally:   # still holding the lock: no other driver's folder is touched
                if not existed and not (sdir / "sweep.json").exists():
                    shutil.rmtree(sdir, ignore_errors=True)   # refused before anything was written
    except KeyboardInterrupt:
        try:
            line = folder.ledger(folder.read_rows(sdir), folder.read_info(sdir)).line()
        except (FrillError, OSError):
            line = "nothing run yet"
        log(f"[{name}] interrupted; {line}; resume with: {command}", flush=True)
        raise


def _run_locked(grid, name, sdir, trials, command, resources, storage, callbacks, log) -> Ledger:
    for note in folder.recover(sdir):
        log(f"[{name}] {note}")
    rows = folder.read_rows(sdir)   # every landed row verified before Ray starts
    if rows and (sdir / "sweep.json").exists():
        info = folder.read_info(sdir)
        done = folder.ledger(rows, info)
        if not done.pending and folder.expected_ids(info) == [t.trial_id(grid.sweep) for t in trials]:
            folder.rebuild(sdir)   # the table may lag a killed driver's last landing
            log(f"[{name}] {done.line()}; running 0: nothing left to run")
            return done
    try:
        # A corpus too small for the trials is refused before Ray starts.
        n_crops = training_size(grid.sweep, max(t.samples_seen for t in trials))
        where = _start_ray()
        check_resources(resources["cpu"], resources["memory"] / 2**30, where, resources.get("gpu", 0))
        ctx = _context(grid.sweep, trials, n_crops, name, log)   # before sweep.json: a refusal writes nothing
        if (sdir / "sweep.json").exists():   # read again under the lock: another driver may have written it
            info = folder.read_info(sdir)
            if folder.expected_ids(info) != [t.trial_id(grid.sweep) for t in trials]:
                raise SweepError(f"sweep {name!r} at {sdir} holds a different grid or fidelity "
                                 f"({info['grid']}, {info['fidelity']}); choose another --name")
        else:
            info = folder.write_info(sdir, dict(
                name=name, grid=grid.name, grid_path=str(grid.path), fidelity=grid.sweep.fidelity,
                sweep_config=grid.sweep.as_dict(),
                expected_trial_ids=[t.trial_id(grid.sweep) for t in trials],
                trials={t.trial_id(grid.sweep): t.describe() for t in trials}, started_at=folder.now(),
                command=command))
        if rows:
            folder.rebuild(sdir)   # once per run: the table may lag a killed driver's last landing
        before = folder.ledger(rows, info)
        by_id = {t.trial_id(grid.sweep): t for t in trials}
        pending = [by_id[t] for t in before.pending]
        log(f"[{name}] {before.line()}; running {len(pending)}")
        if pending:
            _tune(ctx, trials, pending, rows, sdir, name, resources, storage,
                  len(trials) - len(pending), callbacks, log)
    finally:
        ray.shutdown()
    rows = folder.read_rows(sdir)
    after = folder.ledger(rows, info)
    log(f"[{name}] {after.line()}")
    try:
        if rows:
            from results import report
            paths = report.write_report(sdir)
            log(f"[{name}] report: {paths.get('html')}")
    except Exception as e:  # noqa: BLE001 - a report failure must not hide the sweep's result
        log(f"[{name}] report not written: {e}")
    if after.missing:
        log(f"[{name}] {len(after.missing)} trials did not finish; resume with: {command}")
    return after


def _context(sc: SweepConfig, trials, n_crops: int, name: str, log) -> SweepContext:
    """The sweep's shared context, and what would fail every trial at its end, checked first."""
    # On a cluster the teacher targets are built in parallel on every node; on one
    # machine a second TF process per core would cost more than it saves.
    nodes = sum(n["Alive"] for n in ray.nodes())
    if nodes > 1 and sc.shard_size and not os.environ.get("FRILL_CACHE"):
        raise SweepError(f"{nodes} Ray nodes share the distillation set's shards: set FRILL_CACHE "
                         "to a folder every node sees (e.g. FRILL_CACHE=/shared/frill-cache)")
    if nodes > 1:
        log(f"[{name}] {nodes} Ray nodes: teacher targets not yet cached are computed "
            "as Ray tasks across them")
    ctx = prepare(sc, log=log, embed=_embed_on_cluster if nodes > 1 else None,
                  run_shard_jobs=_shards_as_tasks, n_crops=n_crops)
    batch = max(t.train.batch_size for t in trials)
    if ctx.n_train < batch:
        raise SweepError(f"the distillation set has {ctx.n_train} training crops, fewer than one batch "
                         f"({batch}): use a larger corpus or n_crops, or a smaller batch_size")
    return ctx


def _tune(ctx: SweepContext, trials, pending, rows, sdir, name, resources: dict, storage,
          already, callbacks, log) -> None:
    sc, cpus = ctx.sweep, resources["cpu"]
    # Sweep-level figures (per-task teacher and floor, teacher size) beside the rows, for the report.
    atomic_write(sdir / "baselines.json", json.dumps(ctx.baselines, indent=1))
    slots = max(1, int(ray.cluster_resources().get("CPU", 1) // cpus))
    storage = storage or os.environ.get("FRILL_STORAGE") or str((sdir / "tune").resolve())
    twins = {t.twin().trial_id(sc) for t in trials if t.warm_start}
    recorder = Recorder(sdir, sc, len(trials), already, slots, log)
    log(f"[{name}] trial logs (stdout, stderr, tracebacks): {RAY_LOGS} on each node, and each "
        f"trial's error.txt in {sdir / 'trials'}")
    # Tune's default console output (experiment banner, tables) would bury our progress
    # line; its legacy reporter at verbose=0 prints nothing.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Two phases: students that train from scratch, then those warm-started from their float
    # twin's landed weights (a twin that failed fails its warm starts, one line each).
    for phase in ([t for t in pending if not t.warm_start], [t for t in pending if t.warm_start]):
        if not phase:
            continue
        # Longest first (QAT, flatten, deep, wide), so the last trials running are short.
        phase.sort(key=lambda t: (t.student.qat, t.student.pooling == "flatten",
                                  DEPTHS.index(t.student.depth), t.student.alpha), reverse=True)
        need = {t.twin().trial_id(sc) for t in phase if t.warm_start}
        # One object per twin, so the driver holds one twin's weights at a time and each
        # trial fetches only its own (a single dict of all of them went to every worker).
        inits = {tid: ray.put(load_float_weights(p)) for tid in need
                 if (p := sdir / "trials" / tid / "float_weights.npz").exists()}
        configs = [dict(trial=replace(t, train=replace(t.train, threads=cpus)).as_dict(),
                        trial_id=tid, sweep=name,
                        init_from=t.twin().trial_id(sc) if t.warm_start else "",
                        keep_weights=tid in twins,
                        attempt=int(rows.get(tid, {}).get("attempt", 0)) + 1)
                   for t, tid in ((t, t.trial_id(sc)) for t in phase)]
        trainable = tune.with_resources(
            tune.with_parameters(_trainable, ctx=ctx.for_trials(), inits=inits), resources)
        tuner = tune.Tuner(
            trainable,
            param_space={"job": tune.grid_search(configs)},
            # A fresh process per trial (~4 s of TF start): reused actors grew by ~50 MB a
            # trial (tf.data copies, allocator) until Ray's OOM killer struck at 10 GB.
            tune_config=tune.TuneConfig(num_samples=1, max_concurrent_trials=slots,
                                        reuse_actors=False),
            run_config=tune.RunConfig(
                name=f"{name}-{int(time.time())}", storage_path=storage, verbose=0,
                # A worker or node that dies takes its trial down: Tune restarts it from its
                # last checkpoint; after that, the ledger's retry on the next run.
                failure_config=tune.FailureConfig(max_failures=MAX_RESTARTS),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                callbacks=[recorder, *callbacks]))
        gpu = f", {resources['gpu']:g} GPU" if resources.get("gpu") else ""
        log(f"[{name}] {len(phase)} trials on Ray ({slots} at a time, {cpus} CPU{gpu} each), "
            f"storage {storage}")
        try:
            tuner.fit()
        except Exception as e:  # noqa: BLE001 - e.g. Tune cannot handle an OOM-killed worker
            # The landed trial folders are the ledger: report, and let the caller say resume.
            log(f"[{name}] Ray Tune stopped early ({type(e).__name__}: {first_line(e)})")
            return
