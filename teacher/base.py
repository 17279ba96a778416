"""What every teacher is: the Teacher protocol, shared batching, and the names specs resolve to.

hub.py and resemblyzer.py build on this module; teachers.py picks one of them for a spec.
Keeping the base here, apart from the picker, is what keeps the imports one-way.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from teacher.audio import CROP_SAMPLES
from teacher.errors import TeacherError

TRILL_HANDLE = "https://tfhub.dev/google/nonsemantic-speech-benchmark/trill/3"
TRILL_KEY = "layer19"
RESEMBLYZER_REBUILD = 1  # bump when the tf-keras rebuild's outputs change (cache key)
NAMED_TEACHERS = ("resemblyzer", "trill")
OFFLINE_HINT = ("offline alternatives: --teacher resemblyzer, or a local SavedModel "
                "directory (optionally PATH#output_key)")


@runtime_checkable
class Teacher(Protocol):
    name: str
    sample_rate: int
    output_dim: int
    calls: int  # crops embedded so far: lets the cache prove the teacher ran once per crop

    def embed(self, crops: np.ndarray) -> np.ndarray: ...

    def concrete_function(self): ...  # tf ConcreteFunction [1, CROP_SAMPLES] -> [1, output_dim]


def check_crops(crops: np.ndarray) -> np.ndarray:
    """Validate a crop batch: float32 [N, CROP_SAMPLES]."""
    crops = np.asarray(crops)
    if crops.ndim != 2 or crops.shape[1] != CROP_SAMPLES:
        raise TeacherError(f"teacher input must be [N, {CROP_SAMPLES}] crops, got {crops.shape}")
    return crops.astype(np.float32, copy=False)


class BatchedTeacher:
    """Shared batching and call counting; subclasses provide `_embed_batch`."""

    name: str = "teacher"
    sample_rate: int = 16_000
    output_dim: int = 0
    batch_size: int = 64

    def __init__(self) -> None:
        self.calls = 0

    def _embed_batch(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def embed(self, crops: np.ndarray) -> np.ndarray:
        crops = check_crops(crops)
        out = np.zeros((len(crops), self.output_dim), np.float32)
        for start in range(0, len(crops), self.batch_size):
            batch = crops[start:start + self.batch_size]
            out[start:start + len(batch)] = self._embed_batch(batch)
            self.calls += len(batch)
        return out


def is_url(handle: str) -> bool:
    return handle.startswith(("http://", "https://"))


def resemblyzer_weights_path() -> Path:
    """Locate resemblyzer/pretrained.pt without importing resemblyzer (it imports torch)."""
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or spec.origin is None:
        raise TeacherError("resemblyzer weights not found: "
                           "pip install --no-deps resemblyzer==0.1.4")
    path = Path(spec.origin).parent / "pretrained.pt"
    if not path.is_file():
        raise TeacherError(f"{path} is missing: reinstall with pip install --no-deps "
                           "--force-reinstall resemblyzer==0.1.4")
    return path
