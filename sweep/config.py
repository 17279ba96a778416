"""The two frozen configs: SweepConfig (what every trial of a sweep shares) and TrialConfig
(one student and its training). A trial's id is derived from both, never parsed."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

from students.config import StudentConfig, TrainConfig
from teacher.builtin import DEFAULT_N_EVAL_CLIPS, HELDOUT_CROPS

# Fidelity presets: how hard each trial trains, and how big the distillation set is. The
# evaluation set (probe clips, held-out crops) is NOT part of a preset: it stays the same
# across fidelities so their numbers compare.
#   smoke: seconds per trial, for tests and CI.
#   local: the whole 144 grid on a 2-core machine (see results/README.md for its time).
#   paper: FRILL's recipe for a cluster (Adam 1e-4, batch 512, 50k steps), defined as samples
#          seen (steps = samples / batch_size), on every crop of the user's corpus, streamed
#          from shards; a corpus that would be passed over more than max_passes times is
#          refused before anything runs (the built-in corpus synthesises just enough).
FIDELITIES: dict[str, dict] = {
    "smoke": dict(steps=20, finetune_steps=10, batch_size=16, learning_rate=1e-3,
                  lr_schedule="constant", init="float_twin", n_crops=320, latency_runs=50,
                  checkpoint_every=0, shard_size=0),
    "local": dict(steps=64, finetune_steps=16, batch_size=32, learning_rate=1e-3,
                  lr_schedule="constant", init="float_twin", n_crops=12000, latency_runs=50,
                  checkpoint_every=0, shard_size=0),
    "paper": dict(samples=50_000 * 512, batch_size=512, learning_rate=1e-4,
                  lr_schedule="constant", init="scratch", n_crops=0, max_passes=10,
                  latency_runs=200, checkpoint_every=1000, shard_size=4096),
}
# The rank check's long runs (make rankcheck): 4x the steps on the same data and eval set.
FIDELITIES.update({f"{k}4x": {**FIDELITIES[k], "steps": 4 * FIDELITIES[k]["steps"],
                              "finetune_steps": 4 * FIDELITIES[k]["finetune_steps"]}
                   for k in ("smoke", "local")})
INITS = ("scratch", "float_twin")


def _positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name}={value!r} must be a positive integer")


@dataclass(frozen=True)
class SweepConfig:
    """Teacher, corpus, distillation set, evaluation set and latency settings of a sweep."""

    teacher: str = "resemblyzer"
    corpus: str = "builtin"
    fidelity: str = "local"
    # Training crops in the distillation set; 0: every crop the corpus gives (streamed only).
    n_crops: int = FIDELITIES["local"]["n_crops"]
    n_heldout: int = HELDOUT_CROPS                   # held-out crops (built-in corpus)
    n_eval_clips: int = DEFAULT_N_EVAL_CLIPS         # labelled probe clips, train + test
    data_seed: int = 0                               # the corpus draw
    latency_threads: int = 1
    latency_runs: int = 50
    # Training steps between a trial's checkpoints (weights, optimizer state), from which a
    # trial that lost its worker resumes; 0 = none. Resuming gives the same row, so it is
    # not part of the trial id.
    checkpoint_every: int = 0
    # 0: trials get the training crops in memory, fully shuffled each pass. > 0: the set is
    # written once as TFRecord shards of this many crops, which trials stream (bounded memory,
    # a 4096-example shuffle buffer: another data order, so part of the trial id).
    shard_size: int = 0
    # > 0: refuse a set the longest trial would pass over more than this many times (a check,
    # so not part of the trial id).
    max_passes: int = 0

    def __post_init__(self):
        if self.fidelity not in FIDELITIES:
            raise ValueError(f"fidelity={self.fidelity!r} is not valid; choose one of {list(FIDELITIES)}")
        for name in ("n_heldout", "n_eval_clips", "latency_threads", "latency_runs"):
            _positive_int(name, getattr(self, name))
        for name in ("n_crops", "data_seed", "checkpoint_every", "shard_size", "max_passes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name}={value!r} must be an integer >= 0")
        if self.n_crops == 0 and not self.shard_size:
            raise ValueError("n_crops 0 (every crop of the corpus) needs shard_size > 0: a whole "
                             "corpus is streamed from shards, not held in memory")
        if self.n_eval_clips < 4:
            raise ValueError(f"n_eval_clips={self.n_eval_clips} must be >= 4 (train and test clips)")
        if not self.teacher or not self.corpus:
            raise ValueError("teacher and corpus must be non-empty strings")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TrialConfig:
    """One student and its training. init: 'scratch', or 'float_twin' = start from the trained
    weights of the same architecture without QAT and compression (fine-tuning, the documented
    QAT practice); a student that is its own float twin always trains from scratch."""

    student: StudentConfig
    train: TrainConfig              # the float twin's training; a warm start reuses its settings
    init: str = "scratch"
    finetune_steps: int = 10        # steps of a warm start (init float_twin, not its own twin)

    def __post_init__(self):
        if self.init not in INITS:
            raise ValueError(f"init={self.init!r} is not valid; choose one of {list(INITS)}")
        _positive_int("finetune_steps", self.finetune_steps)

    @property
    def run_train(self) -> TrainConfig:
        """The training this trial itself runs."""
        return dataclasses.replace(self.train, steps=self.finetune_steps) if self.warm_start else self.train

    @property
    def samples_seen(self) -> int:
        """Training examples this trial's own run sees."""
        return self.run_train.steps * self.run_train.batch_size

    @property
    def warm_start(self) -> bool:
        return self.init == "float_twin" and self.twin_student != self.student

    @property
    def twin_student(self) -> StudentConfig:
        return dataclasses.replace(self.student, qat=False, compression="none")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrialConfig":
        d = dict(d)
        return cls(student=StudentConfig(**d.pop("student")), train=TrainConfig(**d.pop("train")), **d)

    def trial_id(self, sweep: SweepConfig) -> str:
        """Stable 12-hex id of everything that changes the result (not thread counts, not
        checkpointing, not the max_passes check)."""
        d = self.as_dict()
        d["train"].pop("threads")
        if not self.warm_start:   # a float twin trains the same way under either init
            d["init"], d["finetune_steps"] = "scratch", 0
        d["sweep"] = {k: v for k, v in sweep.as_dict().items()
                      if k not in ("latency_threads", "checkpoint_every", "max_passes")}
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
        return hashlib.sha1(blob.encode()).hexdigest()[:12]

    def twin(self) -> "TrialConfig":
        """The float twin's trial (same training) whose weights a warm start loads."""
        return TrialConfig(student=self.twin_student, train=self.train)

    def flat(self, sweep: SweepConfig) -> dict:
        """Config columns of the results row."""
        d = self.student.as_dict() | self.run_train.as_dict()
        d.pop("threads")
        return dict(trial_id=self.trial_id(sweep), **d,
                    init="float_twin" if self.warm_start else "scratch",
                    init_from=self.twin().trial_id(sweep) if self.warm_start else "",
                    teacher=sweep.teacher, corpus=sweep.corpus, fidelity=sweep.fidelity,
                    n_crops=sweep.n_crops)

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
