"""Resemblyzer's GE2E speaker encoder rebuilt in tf-keras, with its shipped weights.

PyTorch original (resemblyzer 0.1.4, Apache-2.0): waveform -> librosa power
mel (40 Slaney bands, n_fft 400, hop 160, centred, zero-padded) -> LSTM 3x256
-> last hidden state -> Linear 256 -> ReLU -> L2 norm. Before the mel we apply
resemblyzer's `normalize_volume(-30 dBFS, increase_only=True)` per crop, as its
`preprocess_wav` does (its VAD silence trimming is not applied: crops are 1 s).

The frontend is plain TF (pad, conv1d with a windowed-DFT kernel, matmul), so
the whole teacher converts to TFLite with builtin ops only.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

import teacher  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TF loads)
import tensorflow as tf
import tf_keras as keras

from teacher.audio import CROP_SAMPLES, HOP_SAMPLES, SAMPLE_RATE, WINDOW_SAMPLES
from teacher.errors import TeacherError
from teacher.base import BatchedTeacher, resemblyzer_weights_path
from teacher.torchfile import load_legacy_checkpoint

N_MELS = 40
N_FFT = WINDOW_SAMPLES  # librosa n_fft = win_length = 25 ms
HIDDEN = 256
LAYERS = 3
TARGET_DBFS = -30.0


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney mel scale (librosa htk=False): linear below 1 kHz, log above."""
    f = np.asarray(f, np.float64)
    mel = 3.0 * f / 200.0
    log_part = 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log_part, mel)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, np.float64)
    return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), 200.0 * m / 3.0)


def slaney_mel_filters(sr: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS,
                       fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """librosa.filters.mel defaults (Slaney scale and area norm): float32 [n_mels, n_fft//2+1]."""
    fmax = sr / 2.0 if fmax is None else fmax
    fft_freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]
    return weights.astype(np.float32)


def _dft_kernel() -> np.ndarray:
    """Periodic-Hann-windowed real DFT as a conv1d kernel [N_FFT, 1, 2*(N_FFT//2+1)]."""
    n = np.arange(N_FFT)
    k = np.arange(N_FFT // 2 + 1)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / N_FFT)
    angle = 2 * np.pi * np.outer(n, k) / N_FFT
    kernel = np.concatenate([window[:, None] * np.cos(angle), -window[:, None] * np.sin(angle)], 1)
    return kernel[:, None, :].astype(np.float32)


class PowerMel(keras.layers.Layer):
    """Waveform [B, N] -> volume-normalised power mel [B, 1 + N // 160, 40] (librosa-equal)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.kernel = tf.constant(_dft_kernel())
        self.mel = tf.constant(slaney_mel_filters().T)  # [201, 40]

    def call(self, wav: tf.Tensor) -> tf.Tensor:
        # normalize_volume(increase_only): lift quiet crops to -30 dBFS, never attenuate.
        rms = tf.sqrt(tf.reduce_mean(tf.square(wav), axis=1, keepdims=True))
        target = 10.0 ** (TARGET_DBFS / 20.0)
        wav = wav * tf.maximum(1.0, target / tf.maximum(rms, 1e-9))
        # librosa center=True: zero-pad half a window each side, so frames = 1 + N // hop.
        padded = tf.pad(wav, [[0, 0], [N_FFT // 2, N_FFT // 2]])[:, :, None]
        spec = tf.nn.conv1d(padded, self.kernel, stride=HOP_SAMPLES, padding="VALID")
        re, im = tf.split(spec, 2, axis=-1)
        return tf.matmul(tf.square(re) + tf.square(im), self.mel)


class L2Normalize(keras.layers.Layer):
    def call(self, x: tf.Tensor) -> tf.Tensor:
        return tf.math.l2_normalize(x, axis=-1, epsilon=1e-12)


def load_resemblyzer_state(path: Path | None = None) -> dict[str, np.ndarray]:
    state = load_legacy_checkpoint(path or resemblyzer_weights_path())
    try:
        return dict(state["model_state"])
    except (KeyError, TypeError):
        raise TeacherError(f"{path} has no 'model_state': not a resemblyzer checkpoint") from None


def build_encoder_head(state: dict[str, np.ndarray]) -> keras.Model:
    """Power mel [B, T, 40] -> 256-d L2-normalised embedding, weights from the torch state."""
    mel = keras.Input((None, N_MELS), name="mel")
    x = mel
    for layer in range(LAYERS):
        lstm = keras.layers.LSTM(HIDDEN, return_sequences=layer < LAYERS - 1, name=f"lstm{layer}")
        x = lstm(x)
        # PyTorch packs gates (i, f, g, o) in rows; Keras packs (i, f, c, o) in columns:
        # same order (g is Keras' c), so a transpose suffices. Keras has one bias: b_ih + b_hh.
        lstm.set_weights([state[f"lstm.weight_ih_l{layer}"].T, state[f"lstm.weight_hh_l{layer}"].T,
                          state[f"lstm.bias_ih_l{layer}"] + state[f"lstm.bias_hh_l{layer}"]])
    dense = keras.layers.Dense(HIDDEN, activation="relu", name="linear")
    x = dense(x)
    dense.set_weights([state["linear.weight"].T, state["linear.bias"]])
    return keras.Model(mel, L2Normalize(name="l2norm")(x), name="resemblyzer_head")


def build_voice_encoder(state: dict[str, np.ndarray]) -> keras.Model:
    """Waveform [B, N] at 16 kHz -> 256-d embedding (the full teacher)."""
    wav = keras.Input((None,), name="waveform")
    head = build_encoder_head(state)
    return keras.Model(wav, head(PowerMel(name="power_mel")(wav)), name="resemblyzer")


class ResemblyzerTeacher(BatchedTeacher):
    """Offline teacher: 256-d GE2E speaker embedding per crop."""

    name = "resemblyzer"
    sample_rate = SAMPLE_RATE
    output_dim = HIDDEN

    def __init__(self, weights: Path | None = None, batch_size: int = 64) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.model = build_voice_encoder(load_resemblyzer_state(weights))
        self._fn = tf.function(lambda x: self.model(x, training=False),
                               input_signature=[tf.TensorSpec([None, CROP_SAMPLES], tf.float32)])

    def _embed_batch(self, batch: np.ndarray) -> np.ndarray:
        return self._fn(tf.constant(batch)).numpy()

    def concrete_function(self):
        fn = tf.function(lambda x: self.model(x, training=False))
        return fn.get_concrete_function(tf.TensorSpec([1, CROP_SAMPLES], tf.float32))


__all__ = ["ResemblyzerTeacher", "build_voice_encoder", "build_encoder_head", "PowerMel",
           "slaney_mel_filters", "load_resemblyzer_state", "resemblyzer_weights_path"]
