"""Make tests/data/resemblyzer_reference.npz with the original PyTorch VoiceEncoder.

The test (tests/test_teacher_models.py) compares our tf-keras rebuild with these
outputs and needs no torch. Regenerate (takes a few seconds) in a separate venv:

    python3 -m venv /tmp/torchenv
    /tmp/torchenv/bin/pip install torch==2.13.0 numpy librosa
    /tmp/torchenv/bin/pip install --no-deps resemblyzer==0.1.4
    /tmp/torchenv/bin/python tests/data/make_resemblyzer_reference.py

Contents (all float32):
  wavs [3, CROP_SAMPLES]  seeded synthetic 16 kHz crops (quiet noise, a harmonic
                          sweep with vibrato, loud AM noise: below and above -30 dBFS)
  wav_mels [3, 98, 40]    resemblyzer's mel of normalize_volume(wav, -30, increase_only)
                          (librosa power mel, the exact reference frontend)
  wav_embeds [3, 256]     VoiceEncoder(wav_mels): the full waveform -> embedding path
  mels [2, 120, 40]       seeded random non-negative mel inputs (LSTM path only)
  mel_embeds [2, 256]     VoiceEncoder(mels)
  mel_basis [40, 201]     librosa.filters.mel(sr=16000, n_fft=400, n_mels=40)
"""
from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from teacher.audio import CROP_SAMPLES, SAMPLE_RATE  # noqa: E402  (numpy-only module)

# resemblyzer imports webrtcvad at module level for its VAD, which we never call.
sys.modules.setdefault("webrtcvad", types.ModuleType("webrtcvad"))
import librosa  # noqa: E402
import torch  # noqa: E402
from resemblyzer import VoiceEncoder  # noqa: E402
from resemblyzer.audio import normalize_volume, wav_to_mel_spectrogram  # noqa: E402


def synthetic_wavs(rng: np.random.Generator) -> np.ndarray:
    t = np.arange(CROP_SAMPLES) / SAMPLE_RATE
    quiet = 0.003 * rng.standard_normal(CROP_SAMPLES)                      # far below -30 dBFS
    f0 = 120 + 60 * t + 5 * np.sin(2 * np.pi * 5 * t)                      # rising pitch, vibrato
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)                      # syllable-rate AM
    sweep = envelope * sum(0.3 / k * np.sin(k * phase) for k in range(1, 12))
    loud = 0.5 * rng.standard_normal(CROP_SAMPLES) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)) ** 2
    return np.stack([quiet, sweep, loud]).astype(np.float32)


def main() -> None:
    rng = np.random.default_rng(20240521)
    torch.manual_seed(0)
    encoder = VoiceEncoder(device="cpu", verbose=False).eval()
    wavs = synthetic_wavs(rng)
    wav_mels = np.stack([wav_to_mel_spectrogram(normalize_volume(w, -30, increase_only=True)
                                                .astype(np.float32)) for w in wavs])
    mels = np.exp(rng.normal(-2.0, 2.0, (2, 120, 40))).astype(np.float32)
    with torch.no_grad():
        wav_embeds = encoder(torch.from_numpy(wav_mels)).numpy()
        mel_embeds = encoder(torch.from_numpy(mels)).numpy()
    out = Path(__file__).with_name("resemblyzer_reference.npz")
    np.savez_compressed(out, wavs=wavs, wav_mels=wav_mels, wav_embeds=wav_embeds, mels=mels,
                        mel_embeds=mel_embeds,
                        mel_basis=librosa.filters.mel(sr=SAMPLE_RATE, n_fft=400, n_mels=40))
    print(f"wrote {out} ({out.stat().st_size} bytes); librosa {librosa.__version__}, "
          f"torch {torch.__version__}")


if __name__ == "__main__":
    main()
