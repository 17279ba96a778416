"""TrialConfig: everything one trial needs, frozen; its id is derived from it."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

from students.config import StudentConfig, TrainConfig

# Fidelity presets: how hard each trial trains, and how big the distillation set is.
#   smoke: seconds per trial, for tests and CI.
#   local: the whole 144 grid on a 2-core laptop in under an hour (short training: the
#          40 steps take about half of a trial; build, conversion and probes the rest).
#   paper: FRILL's recipe for a cluster (TRILL layer19 targets, Adam 1e-4, batch 512).
FIDELITIES: dict[str, dict] = {
    "smoke": dict(steps=20, batch_size=16, learning_rate=1e-3, n_crops=320, n_eval_clips=120, latency_runs=50),
    "local": dict(steps=40, batch_size=32, learning_rate=1e-3, n_crops=2400, n_eval_clips=1000, latency_runs=50),
    "paper": dict(steps=50_000, batch_size=512, learning_rate=1e-4, n_crops=2400, n_eval_clips=1000,
                  latency_runs=200),
}


@dataclass(frozen=True)
class TrialConfig:
    student: StudentConfig
    train: TrainConfig
    teacher: str = "resemblyzer"
    corpus: str = "builtin"
    fidelity: str = "local"
    n_crops: int = 2400
    latency_threads: int = 1
    latency_runs: int = 50

    def __post_init__(self):
        if self.fidelity not in FIDELITIES:
            raise ValueError(f"fidelity={self.fidelity!r} is not valid; choose one of {list(FIDELITIES)}")
        for name in ("n_crops", "latency_threads", "latency_runs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name}={value!r} must be a positive integer")
        if not self.teacher or not self.corpus:
            raise ValueError("teacher and corpus must be non-empty strings")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrialConfig":
        d = dict(d)
        return cls(student=StudentConfig(**d.pop("student")), train=TrainConfig(**d.pop("train")), **d)

    @property
    def trial_id(self) -> str:
        """Stable 12-hex id of everything that changes the result (not thread counts)."""
        d = self.as_dict()
        d["train"].pop("threads")
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
        return hashlib.sha1(blob.encode()).hexdigest()[:12]

    def flat(self) -> dict:
        """Config columns of the results row."""
        d = self.student.as_dict() | self.train.as_dict()
        d.pop("threads")
        return dict(trial_id=self.trial_id, **d, teacher=self.teacher, corpus=self.corpus,
                    fidelity=self.fidelity)

    def describe(self) -> str:
        s = self.student
        parts = [s.depth, f"a{s.alpha:g}", s.pooling, f"b{s.bottleneck}"]
        if s.compression == "lowrank":
            parts.append(f"lowrank{s.rank}")
        if s.qat:
            parts.append("qat")
        if s.frontend:
            parts.append("frontend")
        return "-".join(parts)
