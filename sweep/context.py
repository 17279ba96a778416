"""What every trial of a sweep shares, prepared once from its SweepConfig: the distillation
set, its log-mel features, the evaluation tasks and their features, and the baselines.

Built in the driver (or by `python -m sweep trial`) and handed to each trial, so the teacher
never runs inside a trial and no trial recomputes a feature.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from results.files import atomic_write
from students.data import (SHARDS_JSON, InMemory, Shards, TrainData, shard_name, target_stats,
                           write_manifest, write_shard)
from sweep.config import SweepConfig
from teacher.audio import CROP_SAMPLES, MEL_BINS, PATCH_FRAMES, SAMPLE_RATE
from teacher import cache
from teacher.cache import DistillSet, EvalTask
from teacher.errors import CacheError, CorpusError


@dataclass(frozen=True)
class SweepContext:
    sweep: SweepConfig
    dset: DistillSet | None      # None in what trial workers receive when the set is sharded
    features: np.ndarray | None  # float32 [N, 96, 64] log-mel of dset.crops (read-only map); ditto
    shards: Shards | None        # the training crops as TFRecord shards (sweep.shard_size > 0)
    heldout: tuple[np.ndarray, np.ndarray]   # log-mel features and targets of the held-out crops
    tasks: tuple[EvalTask, ...]
    eval_inputs: dict            # task name -> (log-mel of its clips' crops, crops per clip)
    baselines: dict              # teacher/log-mel probe accuracies, R2 reference, teacher latency

    def training(self, frontend: bool) -> tuple[TrainData, np.ndarray, np.ndarray]:
        """(training data, held-out inputs, held-out targets) for a student; a frontend
        student's inputs are waveforms."""
        x_ho, y_ho = self.heldout
        if self.shards is not None:
            if frontend:
                raise ValueError("a frontend student trains on waveforms, but the shards hold "
                                 "log-mel features: set shard_size 0 for it")
            return self.shards, x_ho, y_ho
        held = np.asarray(self.dset.heldout, bool)
        inputs = self.dset.crops if frontend else self.features
        if frontend:
            x_ho = np.asarray(inputs[held])
        return InMemory(inputs[~held], self.dset.targets[~held]), x_ho, y_ho

    @property
    def n_train(self) -> int:
        """Training crops: the shards', or the in-memory set's."""
        return len(self.shards) if self.shards is not None else int((~np.asarray(self.dset.heldout, bool)).sum())

    def for_trials(self) -> "SweepContext":
        """What the driver ships to each trial worker: no set arrays when the set is sharded,
        so the set never passes through Ray's object store."""
        return replace(self, dset=None, features=None) if self.shards is not None else self


def training_size(sweep: SweepConfig, samples_seen: int) -> int:
    """How many training crops the set gets: n_crops, or (0) every crop the corpus gives; the
    built-in corpus, which has no size of its own, then synthesises what max_passes needs.
    With max_passes, a corpus too small for the trials' samples seen is refused here, before
    anything is built."""
    if sweep.n_crops and not sweep.max_passes:
        return sweep.n_crops
    from teacher.corpus import training_crops
    available = training_crops(sweep.corpus, sweep.data_seed)   # None: synthesised on demand
    need = math.ceil(samples_seen / sweep.max_passes) if sweep.max_passes else 0
    n = sweep.n_crops or available or need
    if not n:
        raise CorpusError("n_crops 0 means every crop of the corpus, but the built-in corpus "
                          "synthesises what it is asked for: set n_crops, or max_passes")
    n = min(n, available or n)
    if need > n:
        hours = need * CROP_SAMPLES / SAMPLE_RATE / 3600
        raise CorpusError(
            f"corpus {sweep.corpus!r} is too small for fidelity {sweep.fidelity}: its trials see "
            f"up to {samples_seen:,} samples, {samples_seen / n:,.0f} passes over its {n:,} "
            f"training crops (max_passes {sweep.max_passes}); give a corpus of at least "
            f"{need:,} crops (~{hours:,.0f} h of audio), or fewer steps in the grid's shared settings")
    return n


def prepare(sweep: SweepConfig, log=print, embed: cache.TargetFn | None = None,
            run_shard_jobs=None, n_crops: int | None = None) -> SweepContext:
    """embed: how teacher targets are computed if an in-memory set must be built (default:
    here). run_shard_jobs: runs a list of ShardJobs with build_shard (default: here, in turn).
    n_crops: the set's training size, from training_size() with the trials' samples seen
    (callers that know their trials check it before anything else runs); default: unchecked."""
    n_crops = training_size(sweep, samples_seen=0) if n_crops is None else n_crops
    stream = sweep.shard_size > 0
    dset, reused = cache.build_or_load(sweep.corpus, sweep.teacher, seed=sweep.data_seed,
                                       n_crops=n_crops, n_eval_clips=sweep.n_eval_clips,
                                       n_heldout=sweep.n_heldout, embed=embed, stream=stream)
    log(f"distillation set: {dset.path} ({len(dset.crops)} crops{' held out' if stream else ''}, "
        f"teacher {sweep.teacher}, {'reused' if reused else 'built'}, "
        f"teacher calls {dset.manifest.get('teacher_calls')})")
    tasks = tuple(cache.load_eval_tasks(dset))
    _check_usable(sweep, dset, tasks)
    held = np.asarray(dset.heldout, bool)
    features = _cached(Path(dset.path) / "features.npy", lambda: _logmel(dset.crops))
    shards = None
    if stream:   # the set holds only held-out crops; the training crops are the shards
        shards = _stream(dset, sweep.shard_size, n_crops,
                         run_shard_jobs or (lambda jobs: [build_shard(*j) for j in jobs]), log)
        train_mean = shards.scaling()[0]
    else:
        train_mean = np.asarray(dset.targets[~held], np.float64).mean(axis=0)
    heldout = (np.asarray(features[held]), np.asarray(dset.targets[held]))
    eval_inputs, by_clips = {}, {}
    from students.evaluate import clip_inputs, mse_of_mean
    for task in tasks:   # tasks labelling the same clips share one feature array
        key = tuple(id(c) for c in task.clips)
        if key not in by_clips:
            crops, counts = clip_inputs(task.clips)
            x = _cached(Path(dset.path) / "eval" / f"features-{task.name}.npy", lambda: _logmel(crops))
            by_clips[key] = (x, counts)
        eval_inputs[task.name] = by_clips[key]
    # The R2 reference depends on the training crops (a streamed set's shards), so it is
    # computed here rather than cached with the other baselines.
    baselines = {**_baselines(dset, tasks, sweep, log),
                 "heldout_mse_of_train_mean": mse_of_mean(train_mean, heldout[1])}
    return SweepContext(sweep=sweep, dset=dset, features=features, shards=shards, heldout=heldout,
                        tasks=tasks, eval_inputs=eval_inputs, baselines=baselines)


PLAN_JSON = "plan.json"
ShardJob = tuple[str, str, int, dict]   # (set folder, shard folder, shard index, its plan)


def _stats_path(folder: Path, index: int) -> Path:
    return folder / shard_name(index).replace(".tfrecord", ".json")


def _stream(dset: DistillSet, size: int, n_crops: int, run_jobs, log) -> Shards:
    """The training crops as shards beside the set, written once. The plan (which crops go in
    which shard) is fixed first; each shard is then produced and written by its own job, only
    those not yet written (a stopped build resumes), shards.json last."""
    folder = Path(dset.path) / f"shards-{size}-n{n_crops}"
    if (folder / SHARDS_JSON).exists():
        return Shards.open(folder)
    folder.mkdir(exist_ok=True)
    if not (folder / PLAN_JSON).exists():
        atomic_write(folder / PLAN_JSON, json.dumps(cache.plan_stream(dset, n_crops, size)))
    plan = json.loads((folder / PLAN_JSON).read_text())
    n_shards = len(plan)
    jobs = [(str(dset.path), str(folder), i, shard) for i, shard in enumerate(plan)
            if not _stats_path(folder, i).exists()]
    if jobs:
        log(f"shards: writing {len(jobs)} of {n_shards} to {folder} (corpus, teacher and "
            "log-mel, one job per shard)")
        run_jobs(jobs)
    stats = [json.loads(_stats_path(folder, i).read_text()) for i in range(n_shards)]
    return write_manifest(folder, stats, (PATCH_FRAMES, MEL_BINS))


def build_shard(set_path: str, folder: str, index: int, shard: dict) -> None:
    """One shard of a streamed set (its entry of plan.json): its crops (decoded or synthesised
    here), their teacher targets and log-mel features. The shard file, then its stats file:
    the stats file marks the shard done."""
    folder = Path(folder)
    crops, _, skipped = cache.stream_crops(set_path, index, shard)
    targets, calls = cache.teacher_targets(set_path, crops)
    write_shard(folder / shard_name(index), _logmel(crops), targets)
    atomic_write(_stats_path(folder, index), json.dumps(
        {**target_stats(targets), "teacher_calls": calls, "skipped_files": skipped}))


def _check_usable(sweep: SweepConfig, dset: DistillSet, tasks) -> None:
    """What would otherwise fail at the last stage of every trial fails here, in one line."""
    from students.evaluate import check_task
    if not tasks:
        raise CorpusError(f"corpus {sweep.corpus!r} has no labelled evaluation task, so no student "
                          "can be scored: label its files (one subfolder per label, or a label "
                          "column in the manifest)")
    for task in tasks:
        check_task(task)   # EvalError: e.g. one label only, or a label missing from a split
    held = np.asarray(dset.heldout, bool)
    if (held.all() and not sweep.shard_size) or not held.any():
        raise CorpusError(f"distillation set {dset.path} needs both training and held-out crops "
                          f"(has {int((~held).sum())} and {int(held.sum())}); give the corpus more files")


def _logmel(crops: np.ndarray) -> np.ndarray:
    from students.frontend import features
    out = []
    for start in range(0, len(crops), 2048):   # bounded memory for large sets
        out.append(features(np.asarray(crops[start:start + 2048], np.float32)))
    return np.concatenate(out).astype(np.float32)


def _cached(path: Path, compute) -> np.ndarray:
    """An array computed once per distillation set and kept beside it (read-only map)."""
    if not path.exists():
        array = compute()

        def save(tmp: Path) -> None:   # np.save(str) would add '.npy' to the temp name
            with open(tmp, "wb") as f:
                np.save(f, array)
        atomic_write(path, save)
    try:
        return np.load(path, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise CacheError(f"{path} is damaged ({e}); delete it: it is computed again") from None


def _baselines(dset: DistillSet, tasks, sweep: SweepConfig, log) -> dict:
    """Teacher and log-mel probe accuracies (with intervals) on the same splits, and the
    teacher's latency and TFLite size; cached beside the set."""
    from students import evaluate, measure
    path = Path(dset.path) / f"baselines-{evaluate.PROBE_VERSION}.json"
    if path.exists():
        try:
            return json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            log(f"baselines: {path} is damaged; measuring them again")   # a cache: redo it
    from teacher.teachers import get_teacher

    t = get_teacher(sweep.teacher)
    out: dict = {}
    for who, fn in (("teacher", t.embed), ("logmel", evaluate.logmel_embed)):
        out.update(evaluate.probe_columns(fn, list(tasks), prefix=f"{who}_"))
    lat, how, tflite = measure.teacher_latency(t, runs=sweep.latency_runs, cache_dir=Path(dset.path))
    out.update(teacher_latency_ms_p50=lat.p50_ms, teacher_latency_ms_p90=lat.p90_ms,
               teacher_latency_how=how, teacher_tflite_file=tflite and tflite.name,
               teacher_tflite_bytes=tflite and tflite.stat().st_size)
    atomic_write(path, json.dumps(out, indent=1))   # the cache folder is shared by sweeps
    log("baselines: " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                  for k, v in out.items()))
    return out
