"""Teachers behind one small interface, and `get_teacher(spec)`.

A teacher maps 16 kHz crops [N, CROP_SAMPLES] to targets [N, output_dim]. Two
kinds exist: the offline Resemblyzer speaker encoder (weights shipped in the
`resemblyzer` wheel, rebuilt in tf-keras) and any TF-Hub handle or local
SavedModel (TRILL by default for 'trill'). Specs may name an output key as
`spec#key`, e.g. `trill#embedding`.
"""
from __future__ import annotations

import importlib.util
import os
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


def split_spec(spec: str) -> tuple[str, str | None]:
    """'trill#embedding' -> ('trill', 'embedding'); a bare spec has no key."""
    base, sep, key = spec.partition("#")
    return base, (key or None) if sep else None


def is_url(handle: str) -> bool:
    return handle.startswith(("http://", "https://"))


def resolve_spec(spec: str) -> tuple[str, str | None]:
    """Map a spec to (handle, output key) without loading anything; unknown names fail here."""
    base, key = split_spec(spec.strip())
    if base == "resemblyzer":
        if key:
            raise TeacherError("the resemblyzer teacher has a single output; drop '#" + key + "'")
        return base, None
    if base == "trill":
        return TRILL_HANDLE, key or TRILL_KEY
    if is_url(base) or os.path.isdir(base):
        return base, key
    if os.path.exists(base):
        raise TeacherError(f"teacher path {base} is not a SavedModel directory")
    raise TeacherError(f"unknown teacher '{spec}': use one of {', '.join(NAMED_TEACHERS)}, "
                       "a TF-Hub URL, or a local SavedModel directory (PATH#output_key)")


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


def get_teacher(spec: str) -> Teacher:
    """Load the teacher a spec names ('resemblyzer', 'trill', URL or SavedModel dir [#key])."""
    handle, key = resolve_spec(spec)
    if handle == "resemblyzer":
        from teacher.resemblyzer import ResemblyzerTeacher

        return ResemblyzerTeacher()
    from teacher.hub import HubTeacher

    name = "trill" if split_spec(spec.strip())[0] == "trill" else spec.strip()
    return HubTeacher(handle, key, name=name)

