"""Audio corpora -> distillation crops (+ held-out flags) and labelled evaluation tasks.

Three kinds, chosen by the spec string:
  'builtin'   espeak-ng number words in 10 languages (teacher/builtin.py)
  a folder    every .wav/.flac/.ogg below it; files in >= 2 subfolders are
              labelled by their subfolder (one evaluation task named after the folder)
  a .csv      manifest rows `path[,label]`, paths relative to the manifest
              (one evaluation task named after the manifest when labels exist)

User corpora are split by file: ~30% of each label's files are probe-test
clips and never distilled on; ~10% of the remaining files give the held-out
crops. Unreadable files and clips shorter than one crop are skipped and counted.
"""
from __future__ import annotations

import csv
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from teacher import builtin
from teacher.audio import AUDIO_SUFFIXES, CROP_SAMPLES, SAMPLE_RATE, clip_to_crops, load_audio
from teacher.errors import AudioError, CorpusError

log = logging.getLogger("teacher")
PROBE_TEST_FRACTION = 0.3
HELDOUT_FRACTION = builtin.HELDOUT_FRACTION


@dataclass(frozen=True)
class EvalTask:
    name: str                 # 'language', 'rate', or the user's task name
    clips: list[np.ndarray]   # 16 kHz float32 audio, each >= CROP_SAMPLES
    labels: np.ndarray        # str [n_clips]
    is_test: np.ndarray       # bool [n_clips]; train/test share no text and no voice variant


@dataclass(frozen=True)
class Corpus:
    crops: np.ndarray         # float32 [N, CROP_SAMPLES]
    heldout: np.ndarray       # bool [N]
    sources: list[str]        # per crop: file, or part|voice|text for the built-in corpus
    tasks: list[EvalTask]
    info: dict = field(default_factory=dict)  # JSON-able counts and settings for the manifest


@dataclass(frozen=True)
class _Entry:
    path: Path
    rel: str
    label: str | None


_Items = list[tuple[_Entry, np.ndarray]]  # decoded files: (entry, 16 kHz audio)


def _kind(spec: str) -> str:
    if spec == "builtin":
        return "builtin"
    path = Path(spec)
    if path.is_dir():
        return "folder"
    if path.is_file() and path.suffix.lower() == ".csv":
        return "manifest"
    if path.is_file():
        raise CorpusError(f"corpus {spec} is a single file: give a folder of "
                          f"{'/'.join(AUDIO_SUFFIXES)} files or a CSV manifest (path[,label])")
    raise CorpusError(f"corpus {spec} does not exist: give 'builtin', a folder of "
                      f"{'/'.join(AUDIO_SUFFIXES)} files, or a CSV manifest (path[,label])")


def _folder_entries(root: Path) -> list[_Entry]:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise CorpusError(f"corpus folder {root} has no audio files "
                          f"({'/'.join(AUDIO_SUFFIXES)}): add some, or use --corpus builtin")
    rels = [p.relative_to(root).as_posix() for p in files]
    tops = {r.split("/")[0] for r in rels}
    labelled = all("/" in r for r in rels) and len(tops) >= 2  # class-per-subfolder layout
    return [_Entry(p, r, r.split("/")[0] if labelled else None) for p, r in zip(files, rels)]


def _manifest_entries(path: Path) -> list[_Entry]:
    try:
        rows = [r for r in csv.reader(path.read_text().splitlines())
                if r and r[0].strip() and not r[0].lstrip().startswith("#")]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CorpusError(f"cannot read manifest {path}: {exc}") from None
    first = rows[0][0].strip() if rows else ""
    if first.lower() == "path" or (Path(first).suffix.lower() not in AUDIO_SUFFIXES
                                   and not (path.parent / first).exists()):
        rows = rows[1:]  # a header ('path,label', 'file,class', ...): not an audio file
    if not rows:
        raise CorpusError(f"manifest {path} lists no audio files: one 'path[,label]' per line")
    out = []
    for row in rows:
        rel = row[0].strip()
        label = row[1].strip() if len(row) > 1 and row[1].strip() else None
        out.append(_Entry((path.parent / rel).resolve(), rel, label))
    return out


def _entries(spec: str) -> list[_Entry]:
    return _folder_entries(Path(spec)) if _kind(spec) == "folder" else _manifest_entries(Path(spec))


def _file_stamp(path: Path) -> list:
    try:
        st = path.stat()
        return [st.st_size, st.st_mtime_ns]
    except OSError:
        return [-1, -1]


def corpus_identity(spec: str) -> dict:
    """Cheap fingerprint for the cache key: kind + path + file names, sizes and mtimes."""
    kind = _kind(spec)
    if kind == "builtin":
        return builtin.identity()
    path = Path(spec).resolve()
    ident = {"kind": kind, "path": str(path),
             "files": [[e.rel, e.label, *_file_stamp(e.path)] for e in _entries(spec)]}
    if kind == "manifest":
        ident["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return ident


def _decode(entries: list[_Entry], spec: str) -> tuple[_Items, dict]:
    """Read every file; skip (and count) unreadable ones and clips shorter than a crop."""
    good, bad, short = [], [], 0
    for e in entries:
        if not e.path.is_file():   # libsndfile would only say 'System error.'
            bad.append(f"{e.rel}: no such file (paths are relative to the manifest's folder)")
            continue
        try:
            audio = load_audio(e.path)
        except AudioError as exc:
            bad.append(f"{e.rel}: {str(exc).rpartition(': ')[2]}")
            continue
        if len(audio) < CROP_SAMPLES:
            short += 1
        else:
            good.append((e, audio))
    crop_s = CROP_SAMPLES / SAMPLE_RATE
    if not good:
        why = [f"{len(bad)} unreadable (e.g. {bad[0]})"] if bad else []
        why += [f"{short} shorter than one crop ({crop_s:.3f} s)"] if short else []
        raise CorpusError(f"no usable audio in {spec}: {', '.join(why)}; give clips of at least "
                          f"{crop_s:.3f} s in {'/'.join(AUDIO_SUFFIXES)}")
    if bad:
        log.warning("skipped %d unreadable audio file(s), e.g. %s", len(bad), bad[0])
    if short:
        log.warning("skipped %d clip(s) shorter than one crop (%.3f s)", short, crop_s)
    return good, {"files_used": len(good), "skipped_unreadable": len(bad), "skipped_short": short}


def _pick(rng: np.random.Generator, n: int, fraction: float) -> np.ndarray:
    """Boolean mask choosing ~fraction of n items: at least 1 and at most n-1 when n >= 2."""
    k = 0 if n < 2 else min(n - 1, max(1, round(fraction * n)))
    mask = np.zeros(n, bool)
    mask[rng.permutation(n)[:k]] = True
    return mask


def _split_files(items: _Items, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per file: is it a probe-test clip (stratified by label), is it held out from training."""
    rng = np.random.default_rng([seed, 3])
    labels = [e.label for e, _ in items]
    test = np.zeros(len(items), bool)
    if len({lb for lb in labels if lb is not None}) >= 2:
        for lb in sorted({lb for lb in labels if lb is not None}):
            idx = np.flatnonzero([x == lb for x in labels])
            test[idx[_pick(rng, len(idx), PROBE_TEST_FRACTION)]] = True
    distill = np.flatnonzero(~test)
    held = np.zeros(len(items), bool)
    held[distill[_pick(rng, len(distill), HELDOUT_FRACTION)]] = True
    return test, held


def _subsample(n: int, limit: int, rng: np.random.Generator) -> np.ndarray:
    return np.arange(n) if n <= limit else np.sort(rng.permutation(n)[:limit])


def _keep_crops(held: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of at most `limit` crops, keeping the held-out share (and at least one of each)."""
    if len(held) <= limit:
        return np.arange(len(held))
    n_held = min(limit - 1, max(1, round(limit * held.mean())))
    pick = [rng.permutation(np.flatnonzero(held))[:n_held],
            rng.permutation(np.flatnonzero(~held))[:limit - n_held]]
    return np.sort(np.concatenate(pick))


def _user_crops(items: _Items, test: np.ndarray, held: np.ndarray, seed: int, n_crops: int
                ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    crops, flags, sources = [], [], []
    for (e, audio), is_test, is_held in zip(items, test, held):
        if is_test:
            continue
        c = clip_to_crops(audio)
        crops.append(c)
        sources += [e.rel] * len(c)
        flags.append(np.full(len(c), is_held))
    all_crops, all_flags = np.concatenate(crops), np.concatenate(flags)
    if not all_flags.any() and len(all_flags) >= 2:  # one distillation file: hold out its tail
        all_flags[-max(1, round(HELDOUT_FRACTION * len(all_flags))):] = True
    if len(all_crops) < 2 or all_flags.all() or not all_flags.any():
        raise CorpusError("the corpus gives fewer than 2 usable crops (one to train on, one held "
                          f"out): add audio of at least {2 * CROP_SAMPLES / SAMPLE_RATE:.2f} s")
    keep = _keep_crops(all_flags, n_crops, np.random.default_rng([seed, 4]))
    return all_crops[keep], all_flags[keep], [sources[i] for i in keep]


def _user_task(name: str, items: _Items, test: np.ndarray, seed: int, n_eval_clips: int
               ) -> list[EvalTask]:
    idx = np.flatnonzero([e.label is not None for e, _ in items])
    if len({items[i][0].label for i in idx}) < 2:
        return []
    idx = idx[_subsample(len(idx), n_eval_clips, np.random.default_rng([seed, 5]))]
    return [EvalTask(name, [items[i][1] for i in idx],
                     np.array([items[i][0].label for i in idx], dtype=str), test[idx].copy())]


def user_corpus(spec: str, *, seed: int, n_crops: int | None, n_eval_clips: int | None) -> Corpus:
    items, info = _decode(_entries(spec), spec)
    test, held = _split_files(items, seed)
    crops, heldout, sources = _user_crops(items, test, held, seed,
                                          n_crops or builtin.DEFAULT_N_CROPS)
    tasks = _user_task(Path(spec).stem or "labels", items, test, seed,
                       n_eval_clips or builtin.DEFAULT_N_EVAL_CLIPS)
    info.update(kind=_kind(spec), probe_test_files=int(test.sum()), heldout_files=int(held.sum()))
    return Corpus(crops, heldout, sources, tasks, info)


def builtin_corpus(*, seed: int, n_crops: int | None, n_eval_clips: int | None,
                   n_heldout: int | None = None) -> Corpus:
    n = n_crops or builtin.DEFAULT_N_CROPS
    n_eval = n_eval_clips or builtin.DEFAULT_N_EVAL_CLIPS
    if n < 2 or n_eval < 4:
        raise CorpusError("the built-in corpus needs --n-crops >= 2 and >= 4 evaluation clips")
    planner = builtin.Planner(seed)
    # Evaluation parts are drawn first, from the same seeded stream: the probe clips and the
    # held-out crops are then the same whatever the distillation-set size, so numbers
    # compare across set sizes and fidelities.
    tr_clips, tr_utts = builtin.eval_clips(planner, "probe_train", n_eval // 2)
    te_clips, te_utts = builtin.eval_clips(planner, "probe_test", n_eval - n_eval // 2)
    held, held_src = builtin.distill_crops(planner, "heldout", n_heldout or builtin.HELDOUT_CROPS)
    train, train_src = builtin.distill_crops(planner, "distill", n)
    clips, utts = tr_clips + te_clips, tr_utts + te_utts
    is_test = np.arange(len(clips)) >= len(tr_clips)
    tasks = [EvalTask("language", clips, np.array([u.language for u in utts], dtype=str), is_test),
             EvalTask("rate", clips, np.array([u.rate_label for u in utts], dtype=str), is_test)]
    info = {"kind": "builtin", "espeak": builtin.espeak_version(),
            "variants": {k: list(v) for k, v in planner.variants.items()},
            "eval_sources": [u.source() for u in utts]}
    return Corpus(np.concatenate([train, held]), np.arange(n + len(held)) >= n,
                  train_src + held_src, tasks, info)


def check_corpus(spec: str) -> None:
    """Cheap prerequisites, checked before a teacher is loaded (so errors come fast)."""
    if _kind(spec) == "builtin":
        builtin.espeak_binary()


def load_corpus(spec: str, *, seed: int = 0, n_crops: int | None = None,
                n_eval_clips: int | None = None, n_heldout: int | None = None) -> Corpus:
    """Build the corpus a spec names ('builtin', a folder, or a CSV manifest).

    n_heldout: held-out crops of the built-in corpus (a user corpus holds out files)."""
    if n_crops is not None and n_crops < 2:
        raise CorpusError(f"n_crops must be at least 2 (got {n_crops})")
    if _kind(spec) == "builtin":
        return builtin_corpus(seed=seed, n_crops=n_crops, n_eval_clips=n_eval_clips,
                              n_heldout=n_heldout)
    return user_corpus(spec, seed=seed, n_crops=n_crops, n_eval_clips=n_eval_clips)
