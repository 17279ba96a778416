"""The cached distillation set and the `python -m teacher` CLI."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import teacher  # noqa: F401  (Keras 2 before TF loads)
import tensorflow as tf

from teacher import builtin, cache
from teacher.audio import CROP_SAMPLES, SAMPLE_RATE
from teacher.cache import build_or_load, load_distill_set, load_eval_tasks
from teacher.errors import CacheError, CorpusError

needs_espeak = pytest.mark.skipif(builtin.shutil.which("espeak-ng") is None,
                                  reason="espeak-ng not installed (apt-get install espeak-ng)")
SMALL = {"seed": 0, "n_crops": 11, "n_eval_clips": 8, "n_heldout": 1}
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    if builtin.shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    root = tmp_path_factory.mktemp("cache")
    dset, reused = build_or_load("builtin", "resemblyzer", cache_dir=root, **SMALL)
    return root, dset, reused


@needs_espeak
def test_first_build_runs_teacher_once_per_crop(built):
    _, dset, reused = built
    assert not reused
    m = dset.manifest
    assert m["complete"] and m["teacher"] == "resemblyzer" and m["output_dim"] == 256
    assert m["n_crops"] == 11 and m["n_heldout"] == 1 and m["teacher_calls"] == 12
    assert m["build_seconds"] > 0
    assert dset.crops.shape == (12, CROP_SAMPLES) and dset.targets.shape == (12, 256)
    assert dset.heldout.dtype == bool and dset.heldout.sum() == 1
    assert np.allclose(np.linalg.norm(dset.targets, axis=1), 1, atol=1e-5)
    assert dset.path.name.startswith("builtin-resemblyzer-s0-") and dset.key in dset.path.name


@needs_espeak
def test_eval_tasks_round_trip(built):
    _, dset, _ = built
    tasks = load_eval_tasks(dset)
    assert [t.name for t in tasks] == ["language", "rate"]
    for t in tasks:
        assert len(t.clips) == len(t.labels) == len(t.is_test) == 8 and t.is_test.sum() == 4
        assert all(c.dtype == np.float32 and len(c) >= CROP_SAMPLES for c in t.clips)
    again = cache.load_corpus("builtin", seed=0, n_crops=11, n_eval_clips=8, n_heldout=1)
    assert all(np.array_equal(a, b) for a, b in zip(tasks[0].clips, again.tasks[0].clips))
    assert np.array_equal(tasks[1].labels, again.tasks[1].labels)


@needs_espeak
def test_second_request_reuses_without_teacher(built, monkeypatch):
    root, first, _ = built

    def no_teacher(spec):
        raise AssertionError("the teacher must not run for a cached set")

    monkeypatch.setattr(cache, "get_teacher", no_teacher)
    dset, reused = build_or_load("builtin", "resemblyzer", cache_dir=root, **SMALL)
    assert reused and dset.path == first.path
    assert dset.manifest["teacher_calls"] == 12
    assert np.array_equal(dset.targets, first.targets) and np.array_equal(dset.crops, first.crops)


@needs_espeak
def test_interrupted_build_is_not_taken_as_complete(built, tmp_path):
    src_root, first, _ = built
    root = tmp_path / "cache"
    final = root / first.path.name
    final.mkdir(parents=True)
    np.save(final / "crops.npy", np.zeros((3, CROP_SAMPLES), np.float32))  # no manifest: partial
    dead = root / f".tmp-{final.name}.{socket.gethostname()}.{2 ** 22 + 12345}.abcd1234"
    dead.mkdir()
    (dead / "crops.npy").write_bytes(b"partial")
    with pytest.raises(CacheError, match="not a complete distillation set"):
        load_distill_set(final)
    dset, reused = build_or_load("builtin", "resemblyzer", cache_dir=root, **SMALL)
    assert not reused and dset.manifest["teacher_calls"] == 12 and len(dset.crops) == 12
    assert not dead.exists(), "a dead builder's temp folder is cleaned up"
    assert [p.name for p in root.iterdir()] == [final.name]
    np.testing.assert_allclose(dset.targets, first.targets, atol=1e-6)  # deterministic rebuild


@needs_espeak
@pytest.mark.parametrize("victim", ["targets.npy", "heldout.npy", "eval/audio.npy", "eval/tasks.json"])
def test_a_damaged_or_overwritten_cache_file_is_found_not_reused(built, tmp_path, victim):
    """Every file of a set is checked against the checksum recorded when it was built: an array
    overwritten with other values of the same size is one CacheError naming it and the fix."""
    import shutil
    _, first, _ = built
    copy = tmp_path / first.path.name
    shutil.copytree(first.path, copy)
    f = copy / victim
    data = bytearray(f.read_bytes())
    data[-1] ^= 0x01                     # same size, one bit different
    f.write_bytes(bytes(data))
    with pytest.raises(CacheError, match=f"{victim} does not match the checksum.*delete"):
        load_distill_set(copy)
    assert load_distill_set(first.path).key == first.key   # the intact set still loads


def test_key_depends_on_settings_and_folder_contents(tmp_path):
    sf.write(tmp_path / "a.wav", np.zeros(2 * CROP_SAMPLES, np.float32), SAMPLE_RATE)
    key = cache.cache_key(str(tmp_path), "resemblyzer", 0, 2400, 1000)[0]
    assert cache.cache_key(str(tmp_path), "resemblyzer", 1, 2400, 1000)[0] != key
    assert cache.cache_key(str(tmp_path), "trill", 0, 2400, 1000)[0] != key
    assert cache.cache_key(str(tmp_path), "resemblyzer", 0, 100, 1000)[0] != key
    sf.write(tmp_path / "b.wav", np.zeros(2 * CROP_SAMPLES, np.float32), SAMPLE_RATE)
    assert cache.cache_key(str(tmp_path), "resemblyzer", 0, 2400, 1000)[0] != key


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "teacher", "cache", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def _main(capfd, *args: str) -> subprocess.CompletedProcess:
    """`python -m teacher cache ARGS` in this process: the error paths, without a TF start each
    (test_cli_builds_then_reuses runs the real process)."""
    from teacher.__main__ import main
    capfd.readouterr()
    code = main(["cache", *args])
    out, err = capfd.readouterr()
    return subprocess.CompletedProcess(["python", "-m", "teacher", "cache", *args], code, out, err)


def _assert_one_line_error(proc: subprocess.CompletedProcess, pattern: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    assert re.search(pattern, lines[0]), lines[0]


def _bad_folder(tmp_path: Path, kind: str) -> str:
    folder = tmp_path / kind
    if kind != "missing":
        folder.mkdir()
    if kind == "corrupt":
        (folder / "x.wav").write_bytes(b"RIFF????WAVEjunk")
    if kind == "short":
        sf.write(folder / "s.wav", np.zeros(CROP_SAMPLES // 2, np.float32), SAMPLE_RATE)
    return str(folder)


@pytest.mark.parametrize("kind, pattern", [
    ("missing", "does not exist"), ("empty", "has no audio files"),
    ("corrupt", "no usable audio.*1 unreadable"), ("short", "1 shorter than one crop"),
])
def test_cli_bad_corpus(tmp_path, capfd, kind, pattern):
    proc = _main(capfd, "--corpus", _bad_folder(tmp_path, kind), "--cache-dir", str(tmp_path / "c"))
    _assert_one_line_error(proc, pattern)
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())


def test_too_few_crops_fails_before_any_work(tmp_path):
    with pytest.raises(CorpusError, match="need --n-crops >= 2"):
        build_or_load("builtin", "resemblyzer", n_crops=1, cache_dir=tmp_path)
    assert not any(tmp_path.iterdir())


def test_cli_unknown_teacher(tmp_path, capfd):
    proc = _main(capfd, "--teacher", "wav2vec", "--cache-dir", str(tmp_path))
    _assert_one_line_error(proc, "unknown teacher 'wav2vec'")


def test_cli_unreachable_hub_names_offline_alternatives(tmp_path, capfd):
    proc = _main(capfd, "--teacher", "trill", "--n-crops", "4", "--cache-dir", str(tmp_path))
    _assert_one_line_error(proc, "cannot reach https://tfhub.dev.*resemblyzer.*SavedModel")
    assert not list(tmp_path.iterdir())


class OneKey(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec(None, tf.float32), tf.TensorSpec([], tf.int32)])
    def __call__(self, samples, sample_rate):
        return {"emb": tf.reduce_mean(tf.reshape(samples, [-1, tf.shape(samples)[-1]]), -1, True)}


def test_cli_savedmodel_without_key(tmp_path, capfd):
    tf.saved_model.save(OneKey(), str(tmp_path / "sm"))
    proc = _main(capfd, "--teacher", f"{tmp_path / 'sm'}#layer19", "--n-crops", "4",
                "--cache-dir", str(tmp_path / "c"))
    _assert_one_line_error(proc, "no output 'layer19'; available keys: emb")


def test_cli_without_espeak(tmp_path, capfd, monkeypatch):
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))
    proc = _main(capfd, "--n-crops", "4", "--cache-dir", str(tmp_path / "c"))
    _assert_one_line_error(proc, "espeak-ng not found.*apt-get install espeak-ng")


def test_cli_builds_then_reuses(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "audio").mkdir()
    for i in range(3):
        sf.write(tmp_path / "audio" / f"{i}.wav", 0.1 * rng.standard_normal(2 * CROP_SAMPLES),
                 SAMPLE_RATE)
    (tmp_path / "audio" / "broken.flac").write_bytes(b"fLaC broken")
    args = ("--corpus", str(tmp_path / "audio"), "--cache-dir", str(tmp_path / "c"))
    first, second = _cli(*args), _cli(*args)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert "reused: no" in first.stdout and "reused: yes" in second.stdout
    for out in (first.stdout, second.stdout):
        assert "crops: 4 training + 2 held out" in out and "teacher_calls: 6" in out
        assert "output_dim: 256" in out and "skipped: 1 unreadable" in out
    assert "warning: skipped 1 unreadable audio file(s)" in first.stderr
    assert "Traceback" not in first.stderr + second.stderr
