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

A streamed corpus (`stream=True`, for sharded sets) holds only its evaluation parts in
memory. Its training crops are planned first, without decoding any audio: for a user corpus,
its training files and their crop counts, read from the file headers. Then each shard's crops
are produced on their own by `shard_crops`, so no one process holds them all.
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
    # A streamed user corpus: its training files, [path, crops], in a seeded order.
    stream: list = field(default_factory=list)


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


def _split_files(labels: list[str | None], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per file: is it a probe-test clip (stratified by label), is it held out from training."""
    rng = np.random.default_rng([seed, 3])
    test = np.zeros(len(labels), bool)
    if len({lb for lb in labels if lb is not None}) >= 2:
        for lb in sorted({lb for lb in labels if lb is not None}):
            idx = np.flatnonzero([x == lb for x in labels])
            test[idx[_pick(rng, len(idx), PROBE_TEST_FRACTION)]] = True
    distill = np.flatnonzero(~test)
    held = np.zeros(len(labels), bool)
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


def _user_task(name: str, entries: list[_Entry], audio, test: np.ndarray, seed: int,
               n_eval_clips: int) -> list[EvalTask]:
    """audio(i): the i-th file's samples (only the chosen clips are read)."""
    idx = np.flatnonzero([e.label is not None for e in entries])
    if len({entries[i].label for i in idx}) < 2:
        return []
    idx = idx[_subsample(len(idx), n_eval_clips, np.random.default_rng([seed, 5]))]
    return [EvalTask(name, [audio(i) for i in idx],
                     np.array([entries[i].label for i in idx], dtype=str), test[idx].copy())]


def user_corpus(spec: str, *, seed: int, n_crops: int | None, n_eval_clips: int | None) -> Corpus:
    items, info = _decode(_entries(spec), spec)
    test, held = _split_files([e.label for e, _ in items], seed)
    crops, heldout, sources = _user_crops(items, test, held, seed,
                                          n_crops or builtin.DEFAULT_N_CROPS)
    tasks = _user_task(Path(spec).stem or "labels", [e for e, _ in items], lambda i: items[i][1],
                       test, seed, n_eval_clips or builtin.DEFAULT_N_EVAL_CLIPS)
    info.update(kind=_kind(spec), probe_test_files=int(test.sum()), heldout_files=int(held.sum()))
    return Corpus(crops, heldout, sources, tasks, info)


def _scan(spec: str) -> tuple[list[tuple[_Entry, int]], dict]:
    """Every usable file and its length in crops, from its header alone (no decoding)."""
    import soundfile as sf
    out, bad, short = [], 0, 0
    for e in _entries(spec):
        try:
            info = sf.info(str(e.path))
        except Exception:  # noqa: BLE001 - soundfile raises several types for a bad file
            bad += 1
            continue
        crops = info.frames * SAMPLE_RATE // max(info.samplerate, 1) // CROP_SAMPLES
        if crops < 1:
            short += 1
        else:
            out.append((e, int(crops)))
    if not out:
        raise CorpusError(f"no usable audio in {spec}: {bad} unreadable, {short} shorter than one "
                          f"crop; give clips of at least {CROP_SAMPLES / SAMPLE_RATE:.3f} s")
    return out, {"files_used": len(out), "skipped_unreadable": bad, "skipped_short": short}


def _scan_split(spec: str, seed: int):
    files, info = _scan(spec)
    test, held = _split_files([e.label for e, _ in files], seed)
    return files, info, test, held


def training_crops(spec: str, seed: int) -> int | None:
    """How many training crops a user corpus gives, from file headers; None for the built-in
    corpus, which synthesises as many as asked for."""
    if _kind(spec) == "builtin":
        return None
    files, _, test, held = _scan_split(spec, seed)
    return sum(k for (_, k), t, h in zip(files, test, held) if not (t or h))


def _decode_one(path: Path) -> np.ndarray:
    try:
        return load_audio(path)
    except AudioError as exc:
        raise CorpusError(f"{exc}: the file's header reads, but its audio does not; fix or "
                          "remove it") from None


def streamed_user_corpus(spec: str, *, seed: int, n_eval_clips: int | None,
                         n_heldout: int) -> Corpus:
    """The evaluation parts of a user corpus (held-out crops: at most n_heldout, from the
    held-out files in a seeded order; probe clips) and its training files, undecoded."""
    files, info, test, held = _scan_split(spec, seed)
    crops, sources = [], []
    for i in np.random.default_rng([seed, 4]).permutation(np.flatnonzero(held)):
        if len(crops) >= n_heldout:
            break
        c = clip_to_crops(_decode_one(files[i][0].path))[:n_heldout - len(crops)]
        crops += list(c)
        sources += [files[i][0].rel] * len(c)
    if not crops:
        raise CorpusError(f"corpus {spec} has no held-out crops: give it at least 2 files that "
                          "are not probe-test clips")
    train = [i for i in np.random.default_rng([seed, 6]).permutation(len(files))
             if not (test[i] or held[i])]
    if not train:
        raise CorpusError(f"corpus {spec} has no training files left after the probe-test and "
                          "held-out files: give it more files")
    entries = [e for e, _ in files]
    tasks = _user_task(Path(spec).stem or "labels", entries, lambda i: _decode_one(entries[i].path),
                       test, seed, n_eval_clips or builtin.DEFAULT_N_EVAL_CLIPS)
    info.update(kind=_kind(spec), probe_test_files=int(test.sum()), heldout_files=int(held.sum()),
                training_files=len(train))
    return Corpus(np.stack(crops), np.ones(len(crops), bool), sources, tasks, info,
                  stream=[[str(files[i][0].path), files[i][1]] for i in train])


def plan_shards(stream: list, n_crops: int, shard_size: int) -> list[dict]:
    """The first n_crops training crops cut into shards of shard_size: per shard its crop count
    and, for a user corpus (stream: its training files), [file, first crop, crops] parts."""
    if not stream:   # built-in: each shard synthesises its own crops
        return [{"n": min(shard_size, n_crops - start)} for start in range(0, n_crops, shard_size)]
    shards, files, n, total = [], [], 0, 0
    for path, k in stream:
        k, first = min(k, n_crops - total), 0
        while k > 0:
            take = min(k, shard_size - n)
            files.append([path, first, take])
            n, k, first, total = n + take, k - take, first + take, total + take
            if n == shard_size:
                shards.append({"n": n, "files": files})
                files, n = [], 0
        if total >= n_crops:
            break
    if n:
        shards.append({"n": n, "files": files})
    return shards


def shard_crops(seed: int, index: int, shard: dict, exclude_texts: set[str]
                ) -> tuple[np.ndarray, list[str], int]:
    """(crops, their sources, files skipped) of one planned shard. A file that fails to decode
    now is skipped and counted (its header read when the shards were planned)."""
    if "files" not in shard:
        planner = builtin.Planner(seed, stream=(6, index), texts=exclude_texts)
        crops, sources = builtin.distill_crops(planner, "distill", shard["n"])
        return crops, sources, 0
    crops, sources, skipped = [], [], 0
    for path, first, k in shard["files"]:
        try:
            c = clip_to_crops(load_audio(path))[first:first + k]
        except AudioError:
            skipped += 1
            continue
        crops += list(c)
        sources += [path] * len(c)
    if not crops:
        raise CorpusError(f"shard {index}: none of its {len(shard['files'])} files could be read")
    return np.stack(crops), sources, skipped


def builtin_corpus(*, seed: int, n_crops: int | None, n_eval_clips: int | None,
                   n_heldout: int | None = None, stream: bool = False) -> Corpus:
    """stream: the evaluation parts only (shard_crops synthesises the training crops)."""
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
    train, train_src = (np.zeros((0, CROP_SAMPLES), np.float32), []) if stream else \
        builtin.distill_crops(planner, "distill", n)
    clips, utts = tr_clips + te_clips, tr_utts + te_utts
    is_test = np.arange(len(clips)) >= len(tr_clips)
    tasks = [EvalTask("language", clips, np.array([u.language for u in utts], dtype=str), is_test),
             EvalTask("rate", clips, np.array([u.rate_label for u in utts], dtype=str), is_test)]
    info = {"kind": "builtin", "espeak": builtin.espeak_version(),
            "variants": {k: list(v) for k, v in planner.variants.items()},
            "eval_sources": [u.source() for u in utts]}
    return Corpus(np.concatenate([train, held]), np.arange(len(train) + len(held)) >= len(train),
                  train_src + held_src, tasks, info)


def check_corpus(spec: str) -> None:
    """Cheap prerequisites, checked before a teacher is loaded (so errors come fast)."""
    if _kind(spec) == "builtin":
        builtin.espeak_binary()


def load_corpus(spec: str, *, seed: int = 0, n_crops: int | None = None,
                n_eval_clips: int | None = None, n_heldout: int | None = None,
                stream: bool = False) -> Corpus:
    """Build the corpus a spec names ('builtin', a folder, or a CSV manifest).

    n_heldout: held-out crops of the built-in corpus (a user corpus holds out files; streamed,
    at most n_heldout crops of them). stream: no training crops (see the module's text)."""
    if n_crops is not None and n_crops < 2 and not stream:
        raise CorpusError(f"n_crops must be at least 2 (got {n_crops})")
    if _kind(spec) == "builtin":
        return builtin_corpus(seed=seed, n_crops=n_crops, n_eval_clips=n_eval_clips,
                              n_heldout=n_heldout, stream=stream)
    if stream:
        return streamed_user_corpus(spec, seed=seed, n_eval_clips=n_eval_clips,
                                    n_heldout=n_heldout or builtin.HELDOUT_CROPS)
    return user_corpus(spec, seed=seed, n_crops=n_crops, n_eval_clips=n_eval_clips)
