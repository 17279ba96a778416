"""The student and training configs: frozen, validated, the only inputs stages take."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

DEPTHS = ("tiny", "small", "large")
POOLINGS = ("global", "flatten")
COMPRESSIONS = ("none", "lowrank")
LR_SCHEDULES = ("constant", "cosine")


def _choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not valid; choose one of {list(choices)}")


def _positive(name: str, value, kind=(int, float), allow_zero=False) -> None:
    if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value):
        raise ValueError(f"{name}={value!r} must be a finite number")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name}={value!r} must be {'>= 0' if allow_zero else '> 0'}")


@dataclass(frozen=True)
class StudentConfig:
    """One MobileNetV3 student. Defaults are FRILL's own configuration."""

    depth: str = "small"            # tiny | small | large
    alpha: float = 2.0              # width multiplier
    pooling: str = "global"         # global average | flatten
    bottleneck: int = 2048          # embedding size; 0 = no bottleneck layer
    compression: str = "none"       # none | lowrank (factorise the bottleneck kernel)
    rank: int = 100                 # low-rank factor size when compression == lowrank
    qat: bool = False               # quantisation-aware training -> full-int8 TFLite
    frontend: bool = False          # log-mel frontend inside the model (waveform input)

    def __post_init__(self):
        _choice("depth", self.depth, DEPTHS)
        _positive("alpha", self.alpha)
        _choice("pooling", self.pooling, POOLINGS)
        _positive("bottleneck", self.bottleneck, int, allow_zero=True)
        _choice("compression", self.compression, COMPRESSIONS)
        _positive("rank", self.rank, int)
        for flag in ("qat", "frontend"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"{flag}={getattr(self, flag)!r} must be true or false")
        if self.compression == "lowrank":
            if self.bottleneck == 0:
                raise ValueError("compression=lowrank needs a bottleneck (bottleneck > 0)")
            if self.rank >= self.bottleneck:
                raise ValueError(f"rank={self.rank} must be smaller than bottleneck={self.bottleneck}")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TrainConfig:
    """Distillation training: MSE between the student projection and the teacher target."""

    steps: int = 200
    batch_size: int = 32
    learning_rate: float = 1e-3
    lr_schedule: str = "constant"   # constant | cosine (linear warm-up, cosine decay to 0)
    seed: int = 0
    threads: int = 1                # TF intra-op threads (inter-op is 1); match the trial's CPUs

    def __post_init__(self):
        _positive("steps", self.steps, int)
        _positive("batch_size", self.batch_size, int)
        _positive("learning_rate", self.learning_rate)
        _choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _positive("seed", self.seed, int, allow_zero=True)
        _positive("threads", self.threads, int)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)
