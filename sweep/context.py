"""What every trial of a sweep shares: the distillation set, eval tasks and teacher baselines.

Built once per sweep (and cached beside the distillation set), then handed to each trial,
so the teacher never runs inside a trial.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from results.files import atomic_write
from sweep.config import FIDELITIES, TrialConfig
from teacher import cache
from teacher.cache import DistillSet, EvalTask


@dataclass(frozen=True)
class SweepContext:
    dset: DistillSet
    tasks: tuple[EvalTask, ...]
    baselines: dict     # teacher/log-mel probe accuracies and teacher latency (see _baselines)


def prepare(trial: TrialConfig, log=print, embed: cache.EmbedFn | None = None) -> SweepContext:
    """The context for every trial sharing this trial's teacher, corpus and fidelity.

    embed: how teacher targets are computed if the set must be built (default: here).
    """
    teacher, latency_runs = trial.teacher, trial.latency_runs
    dset, reused = cache.build_or_load(trial.corpus, teacher, n_crops=trial.n_crops,
                                       n_eval_clips=FIDELITIES[trial.fidelity]["n_eval_clips"],
                                       embed=embed)
    log(f"distillation set: {dset.path} ({len(dset.crops)} crops, teacher {teacher}, "
        f"{'reused' if reused else 'built'}, teacher calls {dset.manifest.get('teacher_calls')})")
    tasks = tuple(cache.load_eval_tasks(dset))
    return SweepContext(dset=dset, tasks=tasks,
                        baselines=_baselines(dset, tasks, teacher, latency_runs, log))


def _baselines(dset: DistillSet, tasks, teacher_spec: str, latency_runs: int, log) -> dict:
    """Teacher and log-mel probe accuracy on the same splits, and teacher latency; cached."""
    from students import evaluate, measure
    path = Path(dset.path) / f"baselines-{evaluate.PROBE_VERSION}.json"
    if path.exists():
        try:
            return json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            log(f"baselines: {path} is damaged; measuring them again")   # a cache: redo it
    from teacher.teachers import get_teacher

    t = get_teacher(teacher_spec)
    out: dict = {}
    for who, fn in (("teacher", t.embed), ("logmel", evaluate.logmel_embed)):
        accs = evaluate.probe_accuracies(fn, list(tasks))
        out.update({f"{who}_probe_acc_{name}": a for name, a in accs.items()})
        out[f"{who}_probe_acc_mean"] = float(np.mean(list(accs.values())))
    lat, how = measure.teacher_latency(t, runs=latency_runs, cache_dir=Path(dset.path))
    out.update(teacher_latency_ms_p50=lat.p50_ms, teacher_latency_ms_p90=lat.p90_ms,
               teacher_latency_how=how)
    atomic_write(path, json.dumps(out, indent=1))   # the cache folder is shared by sweeps
    log("baselines: " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                  for k, v in out.items()))
    return out
