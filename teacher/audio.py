"""Audio constants shared by every stage, and small audio helpers.

One crop is exactly long enough for one 96-frame log-mel patch of the student
frontend: a 25 ms window plus 95 hops of 10 ms at 16 kHz = 15,600 samples.
"""
from __future__ import annotations

from math import gcd
from pathlib import Path

import numpy as np

from teacher.errors import AudioError

SAMPLE_RATE = 16_000
WINDOW_SAMPLES = 400          # 25 ms
HOP_SAMPLES = 160             # 10 ms
PATCH_FRAMES = 96             # 0.96 s of frames
MEL_BINS = 64
CROP_SAMPLES = WINDOW_SAMPLES + (PATCH_FRAMES - 1) * HOP_SAMPLES  # 15,600 = 0.975 s

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


def resample(audio: np.ndarray, rate: int) -> np.ndarray:
    """Resample float audio from `rate` to SAMPLE_RATE (polyphase: exact ratio, no drift)."""
    if rate == SAMPLE_RATE:
        return audio.astype(np.float32, copy=False)
    from scipy.signal import resample_poly  # scipy is slow to import; only when needed

    g = gcd(int(rate), SAMPLE_RATE)
    return resample_poly(audio, SAMPLE_RATE // g, int(rate) // g).astype(np.float32)


def load_audio(path: str | Path) -> np.ndarray:
    """Read a wav/flac/ogg file as float32 [n] at 16 kHz mono (channels averaged)."""
    import soundfile as sf

    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types for corrupt/missing files
        reason = str(exc).split("': ", 1)[-1] if str(exc).startswith("Error opening") else exc
        raise AudioError(f"cannot read audio file {path}: {reason}") from None
    if data.size == 0:
        raise AudioError(f"audio file {path} has no samples")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    out = resample(mono, int(rate))
    if not np.all(np.isfinite(out)):
        raise AudioError(f"audio file {path} contains NaN or infinite samples")
    return out


def clip_to_crops(audio: np.ndarray) -> np.ndarray:
    """Cut a clip into non-overlapping crops float32 [P, CROP_SAMPLES]; the tail is dropped."""
    n = len(audio) // CROP_SAMPLES
    if n < 1:
        raise AudioError(
            f"clip of {len(audio)} samples is shorter than one crop ({CROP_SAMPLES} samples)")
    return np.asarray(audio[: n * CROP_SAMPLES], np.float32).reshape(n, CROP_SAMPLES)


def trim_silence(audio: np.ndarray, floor_db: float = -40.0,
                 frame: int = HOP_SAMPLES) -> np.ndarray:
    """Drop leading/trailing frames quieter than `floor_db` below the loudest frame.

    Synthetic speech starts and ends with digital silence; crops of it would teach
    the student nothing.
    """
    n = len(audio) // frame
    if n == 0:
        return audio
    rms = np.sqrt(np.mean(audio[: n * frame].reshape(n, frame) ** 2, axis=1) + 1e-20)
    loud = np.flatnonzero(20 * np.log10(rms / rms.max()) > floor_db)
    return audio[loud[0] * frame: (loud[-1] + 1) * frame]
