"""The student frontend: 64-bin log-mel patches from 16 kHz audio, built from tf.signal.

FRILL's frontend: 25 ms Hann window, 10 ms hop, 512-point FFT, magnitude spectrum,
64 mel bins over 125-7500 Hz, log(mel + 0.001). One crop of CROP_SAMPLES samples gives
exactly PATCH_FRAMES frames (no padding), so the same graph serves the feature cache
(`features`) and the waveform-input TFLite variant (`LogMel` inside the model).
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np
import tensorflow as tf
import tf_keras as keras

from teacher.audio import (CROP_SAMPLES, HOP_SAMPLES, MEL_BINS, PATCH_FRAMES, SAMPLE_RATE,
                           WINDOW_SAMPLES)

FFT_LENGTH = 512
LOWER_HZ = 125.0
UPPER_HZ = 7500.0
LOG_OFFSET = 0.001
LOG_FLOOR = 1e-12   # keeps log() finite on digital silence, as the reference frontend does

# Built once: the mel matrix is a constant of the graph (it folds into the TFLite file).
_MEL_MATRIX = tf.signal.linear_to_mel_weight_matrix(
    num_mel_bins=MEL_BINS, num_spectrogram_bins=FFT_LENGTH // 2 + 1,
    sample_rate=SAMPLE_RATE, lower_edge_hertz=LOWER_HZ, upper_edge_hertz=UPPER_HZ)


def log_mel(waveform: tf.Tensor) -> tf.Tensor:
    """[B, CROP_SAMPLES] float32 audio -> [B, PATCH_FRAMES, MEL_BINS] log-mel (TFLite-safe)."""
    waveform = tf.convert_to_tensor(waveform, tf.float32)
    # pad_end=False: a crop is sized so the frames tile it exactly (96 frames, no padding).
    stft = tf.signal.stft(waveform, frame_length=WINDOW_SAMPLES, frame_step=HOP_SAMPLES,
                          fft_length=FFT_LENGTH, window_fn=tf.signal.hann_window)
    mel = tf.matmul(tf.abs(stft), _MEL_MATRIX)
    return tf.math.log(tf.maximum(mel, LOG_FLOOR) + LOG_OFFSET)


@tf.function(input_signature=[tf.TensorSpec([None, CROP_SAMPLES], tf.float32)],
             reduce_retracing=True)
def _log_mel_fn(waveform: tf.Tensor) -> tf.Tensor:
    return log_mel(waveform)


def features(crops: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """float32 crops [N, CROP_SAMPLES] -> float32 log-mel patches [N, 96, 64]."""
    crops = np.asarray(crops, dtype=np.float32)
    if crops.ndim != 2 or crops.shape[1] != CROP_SAMPLES:
        raise ValueError(f"crops must have shape [N, {CROP_SAMPLES}], got {list(crops.shape)}")
    out = np.empty((len(crops), PATCH_FRAMES, MEL_BINS), np.float32)
    for start in range(0, len(crops), batch_size):
        out[start:start + batch_size] = _log_mel_fn(crops[start:start + batch_size]).numpy()
    return out


class LogMel(keras.layers.Layer):
    """The frontend as a Keras layer (not a Lambda), so models with it clone and serialise."""

    def call(self, waveform: tf.Tensor) -> tf.Tensor:
        return log_mel(waveform)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape([input_shape[0], PATCH_FRAMES, MEL_BINS])
