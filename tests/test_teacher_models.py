"""Teachers: the restricted torch-file reader, the Resemblyzer rebuild vs PyTorch, SavedModels."""
from __future__ import annotations

import os
import pickle
import time
from pathlib import Path

import numpy as np
import pytest

import teacher  # noqa: F401  (Keras 2 before TF loads)
import tensorflow as tf

from teacher.audio import CROP_SAMPLES
from teacher.errors import TeacherError
from teacher.resemblyzer import (PowerMel, build_encoder_head, load_resemblyzer_state,
                                 slaney_mel_filters)
from teacher.teachers import TRILL_HANDLE, Teacher, get_teacher, resolve_spec
from teacher.torchfile import LEGACY_MAGIC, load_legacy_checkpoint

REFERENCE = Path(__file__).parent / "data" / "resemblyzer_reference.npz"


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    return dict(np.load(REFERENCE))


@pytest.fixture(scope="module")
def resemblyzer() -> Teacher:
    return get_teacher("resemblyzer")


def test_checkpoint_reader_gives_state_dict():
    state = load_resemblyzer_state()
    assert state["lstm.weight_ih_l0"].shape == (1024, 40)
    assert state["lstm.weight_hh_l2"].shape == (1024, 256)
    assert state["linear.weight"].shape == (256, 256)
    assert all(v.dtype == np.float32 for v in state.values())


def test_checkpoint_reader_refuses_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return os.system, ("echo pwned",)

    path = tmp_path / "evil.pt"
    parts = (LEGACY_MAGIC, 1001, {}, Evil())  # the legacy layout, with code in the main pickle
    path.write_bytes(b"".join(pickle.dumps(x, protocol=2) for x in parts))
    with pytest.raises(TeacherError, match=r"refusing to load (os|posix)\.system"):
        load_legacy_checkpoint(path)
    (tmp_path / "zip.pt").write_bytes(b"PK\x03\x04 a zip checkpoint")
    with pytest.raises(TeacherError, match="cannot read checkpoint|not a legacy"):
        load_legacy_checkpoint(tmp_path / "zip.pt")


def test_mel_filterbank_matches_librosa(reference):
    np.testing.assert_allclose(slaney_mel_filters(), reference["mel_basis"], atol=1e-7)


def test_lstm_head_matches_pytorch(reference):
    head = build_encoder_head(load_resemblyzer_state())
    assert head.count_params() == 1_420_544  # 1.42 M (Keras keeps one LSTM bias, torch two)
    np.testing.assert_allclose(head(reference["mels"]).numpy(), reference["mel_embeds"], atol=1e-4)


def test_waveform_to_embedding_matches_pytorch(reference, resemblyzer):
    """Full path: our TF mel (+ volume normalisation) vs librosa's mel fed to torch."""
    mel = PowerMel()(tf.constant(reference["wavs"])).numpy()
    scale = reference["wav_mels"].max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(mel / scale, reference["wav_mels"] / scale, atol=1e-5)
    got = resemblyzer.embed(reference["wavs"])
    np.testing.assert_allclose(got, reference["wav_embeds"], atol=1e-4)


def test_resemblyzer_interface(resemblyzer):
    assert isinstance(resemblyzer, Teacher)
    assert resemblyzer.name == "resemblyzer"
    assert (resemblyzer.sample_rate, resemblyzer.output_dim) == (16000, 256)
    before = resemblyzer.calls
    crops = np.random.default_rng(0).standard_normal((70, CROP_SAMPLES)).astype(np.float32) * 0.05
    out = resemblyzer.embed(crops)  # > one internal batch
    assert out.shape == (70, 256) and resemblyzer.calls == before + 70
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    fn = resemblyzer.concrete_function()
    np.testing.assert_allclose(fn(tf.constant(crops[:1])).numpy(), out[:1], atol=1e-5)
    with pytest.raises(TeacherError, match="crops"):
        resemblyzer.embed(np.zeros((2, 100), np.float32))


class FakeTrill(tf.Module):
    """TRILL v3's calling convention: module(samples=[N] or [B, N], sample_rate) -> dict."""

    def __init__(self) -> None:
        super().__init__()
        self.w = tf.Variable(tf.random.stateless_normal([400, 24], seed=[1, 2]))

    @tf.function(input_signature=[tf.TensorSpec(None, tf.float32), tf.TensorSpec([], tf.int32)])
    def __call__(self, samples, sample_rate):
        x = tf.reshape(samples, [-1, tf.shape(samples)[-1]])
        frames = tf.signal.frame(x, 15360, 15360)[..., :15200]       # [B, T, 15200] per 0.96 s
        shape = tf.concat([tf.shape(frames)[:2], [38, 400]], 0)
        pooled = tf.reduce_mean(tf.reshape(frames, shape), 2)
        layer19 = tf.nn.relu(pooled @ self.w)                         # [B, T, 24]
        return {"layer19": layer19, "embedding": layer19[..., :8]}


@pytest.fixture(scope="module")
def fake_trill(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("hub") / "fake_trill"
    tf.saved_model.save(FakeTrill(), str(path))
    return str(path)


def test_savedmodel_teacher(fake_trill):
    t = get_teacher(fake_trill)
    assert t.output_dim == 24 and t.name == fake_trill and t.calls == 0
    crops = np.random.default_rng(1).standard_normal((40, CROP_SAMPLES)).astype(np.float32)
    out = t.embed(crops)
    assert out.shape == (40, 24) and t.calls == 40
    direct = FakeTrill()(tf.constant(crops[:3]), 16000)["layer19"].numpy()[:, 0]
    np.testing.assert_allclose(out[:3], direct, rtol=1e-5)
    single = t.concrete_function()(tf.constant(crops[:1])).numpy()
    np.testing.assert_allclose(single, out[:1], rtol=1e-5)
    assert get_teacher(fake_trill + "#embedding").output_dim == 8


def test_savedmodel_missing_key_lists_available(fake_trill):
    with pytest.raises(TeacherError, match="no output 'layer7'.*keys: embedding, layer19"):
        get_teacher(fake_trill + "#layer7")


@pytest.mark.parametrize("spec", ["trill", TRILL_HANDLE + "#embedding",
                                  "http://127.0.0.1:9/closed-port-model"])
def test_unreachable_hub_fails_fast_naming_offline_options(spec):
    start = time.perf_counter()
    with pytest.raises(TeacherError, match="cannot reach .*resemblyzer.*SavedModel"):
        get_teacher(spec)
    assert time.perf_counter() - start < 10


def test_spec_resolution(tmp_path):
    assert resolve_spec("trill") == (TRILL_HANDLE, "layer19")
    assert resolve_spec("trill#embedding")[1] == "embedding"
    assert resolve_spec(f"{tmp_path}#out") == (str(tmp_path), "out")
    with pytest.raises(TeacherError, match="unknown teacher 'resnet'.*resemblyzer, trill"):
        resolve_spec("resnet")
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(TeacherError, match="not a SavedModel directory"):
        resolve_spec(str(tmp_path / "f.txt"))
