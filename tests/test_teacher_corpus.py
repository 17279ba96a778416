"""Audio helpers and corpora: built-in (espeak-ng), folder and CSV manifest."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from teacher import builtin
from teacher.audio import CROP_SAMPLES, SAMPLE_RATE, clip_to_crops, load_audio
from teacher.corpus import corpus_identity, load_corpus
from teacher.errors import AudioError, CorpusError

needs_espeak = pytest.mark.skipif(builtin.shutil.which("espeak-ng") is None,
                                  reason="espeak-ng not installed (apt-get install espeak-ng)")


def _tone(seconds: float, rate: int = SAMPLE_RATE, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_load_audio_mixes_stereo_and_resamples(tmp_path):
    left = _tone(2.0, 44_100)
    path = tmp_path / "stereo.flac"
    sf.write(path, np.stack([left, 0.5 * left], 1), 44_100)
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) == 2 * SAMPLE_RATE
    spectrum = np.abs(np.fft.rfft(audio))
    peak_hz = np.fft.rfftfreq(len(audio), 1 / SAMPLE_RATE)[spectrum.argmax()]
    assert peak_hz == pytest.approx(440, abs=1)
    # channels are averaged: (1 + 0.5) / 2 of the left amplitude
    assert np.abs(audio[1000:-1000]).max() == pytest.approx(0.75 * 0.3, rel=0.02)


def test_load_audio_corrupt_file_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really a wav file")
    with pytest.raises(AudioError, match="cannot read audio file .*bad.wav") as info:
        load_audio(bad)
    assert "\n" not in str(info.value)


def test_clip_to_crops():
    crops = clip_to_crops(np.arange(2 * CROP_SAMPLES + 5, dtype=np.float32))
    assert crops.shape == (2, CROP_SAMPLES) and crops[1, 0] == CROP_SAMPLES
    with pytest.raises(AudioError, match="shorter than one crop"):
        clip_to_crops(np.zeros(CROP_SAMPLES - 1))


@pytest.fixture(scope="module")
def small_builtin():
    if builtin.shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    return load_corpus("builtin", seed=3, n_crops=27, n_eval_clips=16, n_heldout=3)


@needs_espeak
def test_builtin_is_deterministic_for_a_seed(small_builtin):
    again = load_corpus("builtin", seed=3, n_crops=27, n_eval_clips=16, n_heldout=3)
    assert np.array_equal(small_builtin.crops, again.crops)
    assert small_builtin.sources == again.sources
    for a, b in zip(small_builtin.tasks, again.tasks):
        assert all(np.array_equal(x, y) for x, y in zip(a.clips, b.clips))
        assert np.array_equal(a.labels, b.labels)
    other = load_corpus("builtin", seed=4, n_crops=4, n_eval_clips=4, n_heldout=1)
    assert not np.array_equal(other.crops, small_builtin.crops[:4])


@needs_espeak
def test_builtin_eval_set_does_not_depend_on_the_set_size(small_builtin):
    """Probe clips and held-out crops are drawn first: a bigger distillation set leaves them be."""
    bigger = load_corpus("builtin", seed=3, n_crops=40, n_eval_clips=16, n_heldout=3)
    assert np.array_equal(bigger.crops[bigger.heldout], small_builtin.crops[small_builtin.heldout])
    for a, b in zip(small_builtin.tasks, bigger.tasks):
        assert all(np.array_equal(x, y) for x, y in zip(a.clips, b.clips))
        assert np.array_equal(a.labels, b.labels) and np.array_equal(a.is_test, b.is_test)


@needs_espeak
def test_builtin_shapes_labels_and_levels(small_builtin):
    c = small_builtin
    assert c.crops.shape == (30, CROP_SAMPLES) and c.crops.dtype == np.float32  # 27 + 3 held out
    assert c.heldout.sum() == 3 and c.heldout[-3:].all()
    assert np.abs(c.crops).max() < 1.0
    assert (np.std(c.crops, axis=1) > 1e-3).all()  # speech, not trimmed-away silence
    names = [t.name for t in c.tasks]
    assert names == ["language", "rate"]
    lang = c.tasks[0]
    assert len(lang.clips) == 16 and lang.is_test.sum() == 8
    assert all(len(x) >= CROP_SAMPLES for x in lang.clips)
    assert set(lang.labels) <= set(builtin.LANGUAGES)
    assert set(c.tasks[1].labels) <= set(builtin.RATE_TERCILES)


def _parts(sources: list[str]) -> dict[str, tuple[set, set]]:
    out: dict[str, tuple[set, set]] = {}
    for s in sources:
        part, voice, text = s.split("|")
        variants, texts = out.setdefault(part, (set(), set()))
        variants.add(voice.split("+")[1])
        texts.add(text)
    return out


@needs_espeak
def test_builtin_parts_share_no_text_and_no_voice_variant(small_builtin):
    c = small_builtin
    parts = _parts(c.sources + c.info["eval_sources"])
    assert set(parts) == {"distill", "heldout", "probe_train", "probe_test"}
    names = sorted(parts)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not parts[a][0] & parts[b][0], f"{a}/{b} share a voice variant"
            assert not parts[a][1] & parts[b][1], f"{a}/{b} share a text"
    # held-out flags are exactly the crops of the held-out part
    assert [s.startswith("heldout|") for s in c.sources] == c.heldout.tolist()
    # the eval split follows the probe parts
    is_test = [s.startswith("probe_test|") for s in c.info["eval_sources"]]
    assert is_test == c.tasks[0].is_test.tolist()


def test_variant_split_is_a_partition_and_languages_suffice():
    split = builtin.split_variants(0)
    flat = [v for part in builtin.PARTS for v in split[part]]
    assert sorted(flat) == sorted(builtin.VARIANTS) and len(set(flat)) == len(flat)
    assert len(split["distill"]) > len(split["probe_train"]) >= 2
    assert len(builtin.LANGUAGES) >= 8
    rates = {builtin.Utterance("p", "en", "m1", "1", 50, r, 0, -60, 0).rate_label
             for r in (builtin.RATE[0], 170, builtin.RATE[1])}
    assert rates == set(builtin.RATE_TERCILES)


def _write_labelled_folder(root, n_per_label: int = 3):
    rng = np.random.default_rng(0)
    for label in ("cats", "dogs"):
        (root / label).mkdir(parents=True)
        for i in range(n_per_label):
            audio = 0.1 * rng.standard_normal(int(2.1 * SAMPLE_RATE)).astype(np.float32)
            sf.write(root / label / f"{i}.wav", audio, SAMPLE_RATE)
    (root / "dogs" / "corrupt.wav").write_bytes(b"\x00" * 100)
    sf.write(root / "dogs" / "short.ogg", _tone(0.5), SAMPLE_RATE)
    sf.write(root / "cats" / "stereo44k.wav", np.stack([_tone(2.1, 44_100)] * 2, 1), 44_100)


def test_folder_corpus_skips_and_splits_by_file(tmp_path):
    _write_labelled_folder(tmp_path / "pets")
    c = load_corpus(str(tmp_path / "pets"), seed=0)
    assert c.info["skipped_unreadable"] == 1 and c.info["skipped_short"] == 1
    assert c.info["files_used"] == 7 and c.info["probe_test_files"] == 2
    (task,) = c.tasks
    assert task.name == "pets" and len(task.clips) == 7
    assert sorted(set(task.labels)) == ["cats", "dogs"]
    assert task.is_test.sum() == 2 and set(task.labels[task.is_test]) == {"cats", "dogs"}
    assert c.crops.shape == (10, CROP_SAMPLES)  # 5 distillation files x 2 crops
    assert 0 < c.heldout.sum() < len(c.heldout)
    held_files = {s for s, h in zip(c.sources, c.heldout) if h}
    assert not held_files & {s for s, h in zip(c.sources, c.heldout) if not h}


def test_manifest_corpus_with_missing_file_and_unlabelled_rows(tmp_path):
    _write_labelled_folder(tmp_path / "pets")
    csv = tmp_path / "list.csv"
    csv.write_text("path,label\npets/cats/0.wav,cat\npets/cats/1.wav,cat\n"
                   "pets/dogs/0.wav,dog\npets/dogs/1.wav,dog\npets/missing.wav,dog\n"
                   "pets/cats/stereo44k.wav\n")
    c = load_corpus(str(csv), seed=0, n_crops=4)
    assert c.info["skipped_unreadable"] == 1 and c.info["files_used"] == 5
    assert c.crops.shape == (4, CROP_SAMPLES)
    assert c.heldout.sum() == 1  # capping crops keeps the held-out share
    (task,) = c.tasks
    assert task.name == "list" and len(task.clips) == 4 and task.is_test.sum() == 2
    ident = corpus_identity(str(csv))
    assert ident["kind"] == "manifest" and len(ident["files"]) == 6


def test_unlabelled_folder_has_no_tasks_and_identity_tracks_files(tmp_path):
    sf.write(tmp_path / "a.wav", _tone(3.5), SAMPLE_RATE)
    c = load_corpus(str(tmp_path), seed=0)
    assert c.tasks == [] and len(c.crops) == 3 and c.heldout.tolist() == [False, False, True]
    before = corpus_identity(str(tmp_path))
    sf.write(tmp_path / "b.flac", _tone(1.5), SAMPLE_RATE)
    assert corpus_identity(str(tmp_path)) != before


@pytest.mark.parametrize("setup, message", [
    (lambda p: None, "does not exist"),
    (lambda p: p.mkdir(), "has no audio files"),
    (lambda p: (p.mkdir(), (p / "x.wav").write_bytes(b"junk")), "no usable audio.*1 unreadable"),
    (lambda p: (p.mkdir(), sf.write(p / "s.wav", _tone(0.3), SAMPLE_RATE)),
     "no usable audio.*1 shorter than one crop"),
])
def test_bad_corpora_give_one_line_errors(tmp_path, setup, message):
    path = tmp_path / "corpus"
    setup(path)
    with pytest.raises(CorpusError, match=message) as info:
        load_corpus(str(path))
    assert "\n" not in str(info.value)


def test_manifest_header_of_any_name_and_missing_files_are_named(tmp_path):
    _write_labelled_folder(tmp_path / "pets")
    csv = tmp_path / "list.csv"
    csv.write_text("file,class\npets/cats/0.wav,cat\npets/cats/1.wav,cat\n"
                   "pets/dogs/0.wav,dog\npets/dogs/1.wav,dog\n")
    c = load_corpus(str(csv), seed=0, n_crops=4)
    assert c.info["files_used"] == 4 and c.info["skipped_unreadable"] == 0   # the header is no file
    gone = tmp_path / "gone.csv"
    gone.write_text("path,label\nnope/a.wav,x\nnope/b.wav,y\n")
    with pytest.raises(CorpusError, match=r"nope/a.wav: no such file \(paths are relative"):
        load_corpus(str(gone), seed=0, n_crops=4)


def test_a_streamed_user_corpus_plans_its_training_crops_from_headers_and_reads_them_per_shard(tmp_path):
    """Streamed, a folder corpus decodes only its held-out and probe clips; its training crops
    are counted from the file headers, cut into shards (a file may straddle two), and each
    shard reads exactly its crops: together, every crop of every training file, once."""
    from teacher.corpus import plan_shards, shard_crops, training_crops
    root = tmp_path / "pets"
    _write_labelled_folder(root, n_per_label=6)
    c = load_corpus(str(root), seed=0, n_heldout=1, stream=True)
    assert c.heldout.all() and len(c.crops) == 1 and c.info["heldout_files"] == 1   # 1 of its 2 crops
    (task,) = c.tasks
    assert len(task.clips) == 13 and task.is_test.sum() == 4
    train = {path for path, _ in c.stream}
    held = set(c.sources)
    assert len(train) == c.info["training_files"] == 13 - 4 - c.info["heldout_files"]
    assert not {str(root / s) for s in held} & train
    n = training_crops(str(root), seed=0)
    assert n == sum(k for _, k in c.stream) == 2 * len(train)   # 2.1 s files: 2 crops each
    plan = plan_shards(c.stream, n, 3)
    assert [s["n"] for s in plan] == [3] * (n // 3) + ([n % 3] if n % 3 else [])
    straddling = [f for f in plan[0]["files"] if f[1] > 0] + [f for f in plan[1]["files"] if f[1] > 0]
    assert straddling, plan[:2]                 # some file is split between shards
    got = np.concatenate([shard_crops(0, i, s, set())[0] for i, s in enumerate(plan)])
    want = np.concatenate([clip_to_crops(load_audio(p)) for p, _ in c.stream])
    np.testing.assert_array_equal(got, want)
    capped = plan_shards(c.stream, 5, 3)       # n_crops caps the crops the shards take
    assert [s["n"] for s in capped] == [3, 2]
