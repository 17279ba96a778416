"""The distillation set: corpus crops + teacher targets, computed once per key and cached.

Layout of one set (a folder under the cache dir, named <corpus>-<teacher>-s<seed>-<key>):
    crops.npy      float32 [N, CROP_SAMPLES]
    targets.npy    float32 [N, D] teacher outputs
    heldout.npy    bool [N]
    sources.json   per-crop origin (file, or part|voice|text)
    identity.json  everything the key was derived from
    eval/          audio.npy (clips concatenated), offsets.npy, tasks.json, sources.json
    stream.json    a streamed user corpus's training files, [path, crops] (see corpus.py)
    manifest.json  written last, with "complete": true
A streamed set (stream=True) holds only its held-out crops; its training crops are written
as shards by sweep/context.py, shard by shard.
A set is built in a hidden temp folder and renamed into place, so an interrupted
build is never taken for a complete one.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Callable
from pathlib import Path

import numpy as np

from results.files import sha256_file, slug
from teacher.audio import CROP_SAMPLES, SAMPLE_RATE
from teacher.builtin import DEFAULT_N_CROPS, DEFAULT_N_EVAL_CLIPS, HELDOUT_CROPS
from teacher import builtin
from teacher.corpus import (Corpus, EvalTask, check_corpus, corpus_identity, load_corpus,
                            plan_shards, shard_crops)
from teacher.errors import CacheError, CorpusError, FrillError, TeacherError
from teacher.teachers import (RESEMBLYZER_REBUILD, Teacher, get_teacher,
                              resemblyzer_weights_path, resolve_spec, split_spec)

log = logging.getLogger("teacher")
CACHE_VERSION = 2
REPO_ROOT = Path(__file__).resolve().parents[1]
MANIFEST = "manifest.json"
__all__ = ["DistillSet", "EvalTask", "build_or_load", "load_eval_tasks", "load_distill_set",
           "cache_root", "cache_key", "plan_stream", "stream_crops", "teacher_targets"]


@dataclass(frozen=True)
class DistillSet:
    path: Path
    key: str
    crops: np.ndarray     # float32 [N, CROP_SAMPLES] (read-only memory map)
    targets: np.ndarray   # float32 [N, D] teacher outputs
    heldout: np.ndarray   # bool [N]; held-out crops (texts/voices or files disjoint from the rest)
    manifest: dict        # teacher, output_dim, corpus, n_crops, teacher_calls, build_seconds...


def cache_root(cache_dir: str | Path | None = None) -> Path:
    return Path(cache_dir or os.environ.get("FRILL_CACHE") or REPO_ROOT / ".cache" / "frill-sweep")


def _stamp(path: Path, root: Path) -> list:
    st = path.stat()
    return [path.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns]


def teacher_identity(spec: str) -> dict:
    """What determines the targets: the handle + key, and for local files their stamps."""
    handle, key = resolve_spec(spec)
    ident: dict = {"handle": handle, "key": key}
    if handle == "resemblyzer":
        weights = resemblyzer_weights_path().stat().st_size
        ident.update(rebuild=RESEMBLYZER_REBUILD, weights_bytes=weights)
    elif Path(handle).is_dir():
        root = Path(handle).resolve()
        ident.update(handle=str(root), files=[_stamp(p, root) for p in sorted(root.rglob("*"))
                                              if p.is_file()])
    return ident


def cache_key(corpus: str, teacher: str, seed: int, n_crops: int,
              n_eval_clips: int, n_heldout: int = HELDOUT_CROPS,
              stream: bool = False) -> tuple[str, dict]:
    identity = {"version": CACHE_VERSION, "corpus": corpus_identity(corpus),
                "teacher": teacher_identity(teacher), "seed": seed, "n_crops": n_crops,
                "n_eval_clips": n_eval_clips, "n_heldout": n_heldout,
                "crop": {"sample_rate": SAMPLE_RATE, "crop_samples": CROP_SAMPLES}}
    if stream:   # only then, so the keys of in-memory sets stay as they were
        identity.update(stream=True, n_crops=0)
    blob = json.dumps(identity, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16], identity


def _set_dir(root: Path, corpus: str, teacher: str, seed: int, key: str) -> Path:
    teacher_name = "trill" if split_spec(teacher)[0] == "trill" else slug(split_spec(teacher)[0])
    return root / f"{slug(corpus, 'corpus')}-{teacher_name}-s{seed}-{key}"


def _is_complete(path: Path) -> bool:
    try:
        return json.loads((path / MANIFEST).read_text()).get("complete") is True
    except (OSError, ValueError):
        return False


def load_distill_set(path: str | Path) -> DistillSet:
    """Open a complete set (arrays are read-only memory maps: cheap in every trial process)."""
    path = Path(path)
    if not _is_complete(path):
        raise CacheError(f"{path} is not a complete distillation set: rebuild it with "
                         "python -m teacher cache")
    manifest = json.loads((path / MANIFEST).read_text())
    fix = f"delete {path} and rerun: the set is built again"
    for name, digest in manifest.get("sha256", {}).items():
        try:
            ok = sha256_file(path / name) == digest
        except OSError as exc:
            raise CacheError(f"distillation set {path} is damaged ({name}: {exc}); {fix}") from None
        if not ok:
            raise CacheError(f"distillation set {path} is damaged ({name} does not match the "
                             f"checksum recorded when it was built); {fix}")
    try:
        arrays = {n: np.load(path / f"{n}.npy", mmap_mode="r")
                  for n in ("crops", "targets", "heldout")}
    except (OSError, ValueError) as exc:
        raise CacheError(f"distillation set {path} is damaged ({exc}); {fix}") from None
    return DistillSet(path, manifest["key"], arrays["crops"], arrays["targets"],
                      arrays["heldout"], manifest)


def load_eval_tasks(dset: DistillSet) -> list[EvalTask]:
    """The labelled evaluation tasks stored beside the set (empty for unlabelled corpora)."""
    ev = dset.path / "eval"
    if not (ev / "tasks.json").is_file():
        return []
    audio = np.load(ev / "audio.npy", mmap_mode="r")
    offsets = np.load(ev / "offsets.npy")
    clips = [audio[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
    return [EvalTask(t["name"], [clips[i] for i in t["clips"]], np.array(t["labels"], dtype=str),
                     np.array(t["is_test"], bool))
            for t in json.loads((ev / "tasks.json").read_text())]


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=1, default=str))


def _write_eval(folder: Path, tasks: list[EvalTask], sources: list[str]) -> None:
    """Clips are stored once even when several tasks label the same clips."""
    folder.mkdir()
    unique: dict[int, int] = {}
    clips: list[np.ndarray] = []
    specs = []
    for t in tasks:
        idx = []
        for clip in t.clips:
            if id(clip) not in unique:
                unique[id(clip)] = len(clips)
                clips.append(clip)
            idx.append(unique[id(clip)])
        specs.append({"name": t.name, "clips": idx, "labels": t.labels.tolist(),
                      "is_test": t.is_test.tolist()})
    lengths = [len(c) for c in clips]
    np.save(folder / "audio.npy", np.concatenate(clips) if clips else np.zeros(0, np.float32))
    np.save(folder / "offsets.npy", np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))
    _write_json(folder / "tasks.json", specs)
    _write_json(folder / "sources.json", sources)


# (teacher spec, crops) -> (targets, teacher forward passes counted in crops). The sweep
# passes one that spreads the crops over a Ray cluster's nodes.
TargetFn = Callable[[str, np.ndarray], tuple[np.ndarray, int]]


def _embed(teacher: Teacher, spec: str, crops: np.ndarray,
           embed: TargetFn | None) -> tuple[np.ndarray, int, float]:
    t0, start_calls = time.perf_counter(), teacher.calls
    if embed is None:
        targets = teacher.embed(crops)
        calls = teacher.calls - start_calls
    else:
        targets, calls = embed(spec, crops)
    seconds = time.perf_counter() - t0
    targets = np.asarray(targets, np.float32)
    if targets.shape[0] != len(crops):
        raise TeacherError(f"teacher {teacher.name} gave {targets.shape[0]} targets for {len(crops)} crops")
    if not np.all(np.isfinite(targets)):
        raise TeacherError(f"teacher {teacher.name} gave non-finite outputs for "
                           f"{int((~np.isfinite(targets)).any(1).sum())} crops")
    log.info("teacher %s: %d calls for %d crops in %.1f s (%.0f crops/s)", teacher.name, calls,
             len(crops), seconds, len(crops) / max(seconds, 1e-9))
    return targets, calls, seconds


def _write_set(tmp: Path, corpus: Corpus, targets: np.ndarray, manifest: dict,
               identity: dict) -> None:
    tmp.mkdir(parents=True)
    np.save(tmp / "crops.npy", corpus.crops.astype(np.float32, copy=False))
    np.save(tmp / "targets.npy", targets.astype(np.float32, copy=False))
    np.save(tmp / "heldout.npy", corpus.heldout.astype(bool))
    _write_json(tmp / "sources.json", corpus.sources)
    _write_json(tmp / "identity.json", identity)
    if corpus.stream:
        _write_json(tmp / "stream.json", corpus.stream)
    _write_eval(tmp / "eval", corpus.tasks, list(corpus.info.get("eval_sources", [])))
    # Checksums of what trials read back, verified on every load: a damaged or overwritten
    # array is found, not silently reused.
    manifest = {**manifest, "sha256": {p.relative_to(tmp).as_posix(): sha256_file(p)
                                       for p in sorted(tmp.rglob("*")) if p.is_file()}}
    _write_json(tmp / MANIFEST, manifest)  # last: its presence marks the set complete


def _tmp_dir(final: Path) -> Path:
    owner = f"{socket.gethostname()}.{os.getpid()}"  # lets a later build spot dead builders
    return final.parent / f".tmp-{final.name}.{owner}.{uuid.uuid4().hex[:8]}"


def _remove_stale_tmp(final: Path) -> None:
    """Delete temp folders of this set left by dead builders on this host (interrupted builds)."""
    host = socket.gethostname()
    for tmp in final.parent.glob(f".tmp-{final.name}.*"):
        owner, _, pid = tmp.name[len(f".tmp-{final.name}."):].rpartition(".")[0].rpartition(".")
        if owner != host or not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            pass  # alive but not ours: leave it


def _publish(tmp: Path, final: Path) -> bool:
    """Rename the finished temp folder into place; False if a concurrent build won the race."""
    if final.exists() and not _is_complete(final):
        shutil.rmtree(final)  # an incomplete set (e.g. a partial copy) is never reused
    try:
        os.rename(tmp, final)
        return True
    except OSError:
        if _is_complete(final):
            shutil.rmtree(tmp, ignore_errors=True)
            return False
        raise


def _manifest(key: str, corpus: str, teacher: str, seed: int, model: Teacher, data: Corpus,
              targets: np.ndarray, calls: int, seconds: dict[str, float]) -> dict:
    info = {k: v for k, v in data.info.items() if k != "eval_sources"}
    return {
        "complete": True, "version": CACHE_VERSION, "key": key, "corpus": corpus,
        "corpus_kind": info.get("kind"), "teacher": model.name, "teacher_spec": teacher,
        "output_dim": int(targets.shape[1]), "sample_rate": SAMPLE_RATE,
        "crop_samples": CROP_SAMPLES, "seed": seed,
        "n_crops": int((~data.heldout).sum()), "n_heldout": int(data.heldout.sum()),
        "eval_tasks": [t.name for t in data.tasks],
        "n_eval_clips": int(max((len(t.clips) for t in data.tasks), default=0)),
        "teacher_calls": calls, "teacher_seconds": round(seconds["teacher"], 3),
        "teacher_crops_per_second": round(len(data.crops) / max(seconds["teacher"], 1e-9), 1),
        "corpus_seconds": round(seconds["corpus"], 3), "build_seconds": round(seconds["build"], 3),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "corpus_info": info}


def _build(corpus: str, teacher: str, seed: int, n_crops: int, n_eval_clips: int,
           n_heldout: int, key: str, identity: dict, final: Path, embed: TargetFn | None,
           stream: bool) -> bool:
    t0 = time.perf_counter()
    check_corpus(corpus)
    model = get_teacher(teacher)  # before synthesis: a bad or unreachable teacher fails fast
    t_corpus = time.perf_counter()
    data = load_corpus(corpus, seed=seed, n_crops=n_crops, n_eval_clips=n_eval_clips,
                       n_heldout=n_heldout, stream=stream)
    corpus_seconds = time.perf_counter() - t_corpus
    targets, calls, teacher_seconds = _embed(model, teacher, data.crops, embed)
    seconds = {"corpus": corpus_seconds, "teacher": teacher_seconds,
               "build": time.perf_counter() - t0}
    manifest = _manifest(key, corpus, teacher, seed, model, data, targets, calls, seconds)
    manifest["stream"] = stream
    tmp = _tmp_dir(final)
    try:
        _write_set(tmp, data, targets, manifest, identity)
        return _publish(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already when published


def build_or_load(corpus: str = "builtin", teacher: str = "resemblyzer", *, seed: int = 0,
                  n_crops: int | None = None, cache_dir: str | Path | None = None,
                  n_eval_clips: int | None = None, n_heldout: int = HELDOUT_CROPS,
                  embed: TargetFn | None = None, stream: bool = False) -> tuple[DistillSet, bool]:
    """Return the distillation set for these settings and whether it was reused from the cache.

    embed: how to compute the teacher targets when building (default: in this process).
    stream: build only the held-out crops and evaluation clips (n_crops is then ignored).
    """
    # Resolve defaults before keying, so None and an explicit 2400 share one set.
    n_crops = DEFAULT_N_CROPS if n_crops is None else n_crops
    n_eval_clips = DEFAULT_N_EVAL_CLIPS if n_eval_clips is None else n_eval_clips
    if (n_crops < 2 and not stream) or n_eval_clips < 4:
        raise CorpusError(f"need --n-crops >= 2 (got {n_crops}) and n_eval_clips >= 4 "
                          f"(got {n_eval_clips}): one crop to train on and one held out")
    key, identity = cache_key(corpus, teacher, seed, n_crops, n_eval_clips, n_heldout, stream)
    root = cache_root(cache_dir)
    final = _set_dir(root, corpus, teacher, seed, key)
    if _is_complete(final):
        log.info("reusing distillation set %s", final)
        return load_distill_set(final), True
    try:
        root.mkdir(parents=True, exist_ok=True)
        _remove_stale_tmp(final)
        log.info("building distillation set %s (corpus %s, teacher %s)", final, corpus, teacher)
        built = _build(corpus, teacher, seed, n_crops, n_eval_clips, n_heldout, key, identity,
                       final, embed, stream)
    except FrillError:
        raise
    except OSError as exc:
        raise CacheError(f"cannot write the distillation set under {root}: {exc}; free some "
                         "space or pass --cache-dir") from None
    return load_distill_set(final), not built


def plan_stream(dset: DistillSet, n_crops: int, shard_size: int) -> list[dict]:
    """A streamed set's training crops, cut into shards (see corpus.plan_shards)."""
    stream = dset.path / "stream.json"
    return plan_shards(json.loads(stream.read_text()) if stream.exists() else [], n_crops, shard_size)


def stream_crops(set_path: str | Path, index: int, shard: dict) -> tuple[np.ndarray, list[str], int]:
    """(crops, their sources, files skipped) of one planned shard of a streamed set. Built-in shards draw
    texts unused by the set's held-out crops and probe clips, so those stay unseen."""
    path = Path(set_path)
    manifest = json.loads((path / MANIFEST).read_text())
    texts: set[str] = set()
    if manifest["corpus_kind"] == "builtin":
        for name in ("sources.json", "eval/sources.json"):
            texts |= {builtin.text_of(s) for s in json.loads((path / name).read_text())}
    return shard_crops(manifest["seed"], index, shard, texts)


@functools.lru_cache(maxsize=2)   # a process that writes many shards loads its teacher once
def _loaded_teacher(spec: str) -> Teacher:
    return get_teacher(spec)


def teacher_targets(set_path: str | Path, crops: np.ndarray) -> tuple[np.ndarray, int]:
    """(targets, teacher calls) of more crops for a set, from the set's own teacher."""
    spec = json.loads((Path(set_path) / MANIFEST).read_text())["teacher_spec"]
    targets, calls, _ = _embed(_loaded_teacher(spec), spec, crops, None)
    return targets, calls
