"""The built-in corpus: number words spoken by espeak-ng, fully determined by a seed.

Each utterance is a language + voice variant (`en+m3`), a random pitch (-p) and
speaking rate (-s), and a random digit string that espeak reads as number
words in that language (so no text corpus is needed), then a random gain and a
little white noise. Voice variants and texts are split into four disjoint
parts, so every comparison generalises to unseen voices and texts:

    distill      most variants: the student's training crops
    heldout      distillation crops held out for distillation quality
    probe_train  labelled clips to fit the probes (language; speaking-rate tercile)
    probe_test   labelled clips to score them
"""
from __future__ import annotations

import io
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from teacher.audio import CROP_SAMPLES, clip_to_crops, resample, trim_silence
from teacher.errors import CorpusError

VERSION = 2  # bump when synthesis changes: it is part of the cache key
LANGUAGES = ("en", "de", "fr", "es", "it", "pt", "pl", "ru", "nl", "tr")
# espeak-ng voice variants (voices/!v); duplicates that render identically were dropped.
VARIANTS = (
    "m1 m2 m3 m4 m5 m6 m7 m8 f1 f2 f3 f4 f5 klatt klatt2 klatt3 klatt4 klatt5 adam Alex Andy "
    "Annie antonio aunty belinda benjamin boris david ed edward Gene grandma grandpa gustave "
    "Henrique Hugo iven iven2 iven3 iven4 john linda Lee Marco Mario marcelo max Michael michel "
    "miguel Mike norbert pablo paul pedro quincy rob robert shelby steph steph2 steph3 travis "
    "victor zac Jacky Denis Diogo Andrea Alicia anika").split()
PARTS = ("distill", "heldout", "probe_train", "probe_test")
# Probe parts get many voices: with few, probe accuracy hinges on which voices landed where.
VARIANT_SHARE = {"distill": 0.5, "heldout": 0.08, "probe_train": 0.22, "probe_test": 0.2}
PITCH = (25, 75)            # espeak -p, 0..99 (default 50)
RATE = (110, 260)           # espeak -s words per minute (default 175)
RATE_TERCILES = ("slow", "medium", "fast")
GAIN_DB = (-12.0, 0.0)      # level is a nuisance the embedding should not hinge on
NOISE_DBFS = (-70.0, -50.0)
DISTILL_GROUPS = (2, 4)     # number groups per utterance: ~1.5-4 s, 1-3 crops
EVAL_GROUPS = (2, 4)        # eval clips: several patches each, so clip means are stable
HELDOUT_FRACTION = 0.1     # of a user corpus's files (teacher/corpus.py)
HELDOUT_CROPS = 400        # built-in held-out crops: a fixed set, whatever n_crops is
DEFAULT_N_CROPS = 2400
DEFAULT_N_EVAL_CLIPS = 1000
WORKERS = 2                 # espeak runs in subprocesses; the machines have 2 cores


@dataclass(frozen=True)
class Utterance:
    part: str
    language: str
    variant: str
    text: str
    pitch: int
    rate: int
    gain_db: float
    noise_dbfs: float
    noise_seed: int

    @property
    def voice(self) -> str:
        return f"{self.language}+{self.variant}"

    @property
    def rate_label(self) -> str:
        edges = np.linspace(*RATE, len(RATE_TERCILES) + 1)[1:-1]
        return RATE_TERCILES[int(np.searchsorted(edges, self.rate, side="right"))]

    def source(self) -> str:
        return f"{self.part}|{self.voice}|{self.text}"


def text_of(source: str) -> str:
    """The text of an Utterance.source() string."""
    return source.split("|", 2)[2]


def espeak_binary() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise CorpusError("espeak-ng not found (the built-in corpus needs it): "
                          "apt-get install espeak-ng, or pass --corpus PATH to your own audio")
    return path


def split_variants(seed: int) -> dict[str, tuple[str, ...]]:
    """Seeded, disjoint variant sets per part (every part gets at least two)."""
    order = [VARIANTS[i] for i in np.random.default_rng([seed, 1]).permutation(len(VARIANTS))]
    sizes = {p: max(2, round(VARIANT_SHARE[p] * len(order))) for p in PARTS[1:]}
    sizes["distill"] = len(order) - sum(sizes.values())
    out, start = {}, 0
    for part in PARTS:
        out[part] = tuple(order[start:start + sizes[part]])
        start += sizes[part]
    return out


class Planner:
    """Draws utterances part by part from one seeded stream; texts never repeat across parts."""

    def __init__(self, seed: int, stream: tuple[int, ...] = (2,), texts: set[str] = frozenset()) -> None:
        """stream: which seeded stream to draw from; texts: texts already used elsewhere (e.g. by
        the evaluation parts, when one shard of training crops is drawn on its own)."""
        self.rng = np.random.default_rng([seed, *stream])
        self.variants = split_variants(seed)
        self.texts: set[str] = set(texts)
        self.count = 0
        self.seed = seed

    def _text(self, groups: tuple[int, int]) -> str:
        while True:  # uniqueness across all parts keeps texts disjoint between parts
            n = int(self.rng.integers(groups[0], groups[1] + 1))
            text = " ".join(str(int(self.rng.integers(0, 10 ** int(self.rng.integers(1, 4)))))
                            for _ in range(n))
            if text not in self.texts:
                self.texts.add(text)
                return text

    def draw(self, part: str, n: int, groups: tuple[int, int]) -> list[Utterance]:
        variants = self.variants[part]
        out = []
        for _ in range(n):
            language = LANGUAGES[self.count % len(LANGUAGES)]  # cycle: balanced language labels
            self.count += 1
            out.append(Utterance(
                part=part, language=language,
                variant=variants[int(self.rng.integers(len(variants)))],
                text=self._text(groups),
                pitch=int(self.rng.integers(PITCH[0], PITCH[1] + 1)),
                rate=int(self.rng.integers(RATE[0], RATE[1] + 1)),
                gain_db=round(float(self.rng.uniform(*GAIN_DB)), 2),
                noise_dbfs=round(float(self.rng.uniform(*NOISE_DBFS)), 2),
                noise_seed=int(self.rng.integers(2 ** 31))))
        return out


def render(utt: Utterance, espeak: str) -> np.ndarray:
    """Speak one utterance: 16 kHz float32, silence trimmed, gain and noise applied."""
    import soundfile as sf

    cmd = [espeak, "-v", utt.voice, "-p", str(utt.pitch), "-s", str(utt.rate), "--stdout", utt.text]
    proc = subprocess.run(cmd, capture_output=True, timeout=60)
    if proc.returncode != 0 or len(proc.stdout) <= 44:
        err = proc.stderr.decode(errors="replace").strip().splitlines() or ["no audio"]
        raise CorpusError(f"espeak-ng failed for voice {utt.voice}: {err[0]}")
    # espeak streams a wav whose header has no length; soundfile reads to the end.
    audio, rate = sf.read(io.BytesIO(proc.stdout), dtype="float32")
    audio = trim_silence(resample(audio, rate))
    audio = audio * np.float32(10 ** (utt.gain_db / 20))
    noise = np.random.default_rng(utt.noise_seed).standard_normal(len(audio))
    return (audio + noise * 10 ** (utt.noise_dbfs / 20)).astype(np.float32)


def synthesize(utts: list[Utterance]) -> list[np.ndarray]:
    espeak = espeak_binary()
    with ThreadPoolExecutor(WORKERS) as pool:  # threads only wait on espeak subprocesses
        return list(pool.map(lambda u: render(u, espeak), utts))


def distill_crops(planner: Planner, part: str, n_crops: int
                  ) -> tuple[np.ndarray, list[str]]:
    """Exactly n_crops crops from fresh utterances of `part` (2-4 number groups, ~1.5-4 s)."""
    crops: list[np.ndarray] = []
    sources: list[str] = []
    while len(crops) < n_crops:
        utts = planner.draw(part, max(4, int(0.6 * (n_crops - len(crops))) + 1), DISTILL_GROUPS)
        for utt, audio in zip(utts, synthesize(utts)):
            if len(audio) >= CROP_SAMPLES:
                for crop in clip_to_crops(audio):
                    crops.append(crop)
                    sources.append(utt.source())
    return np.stack(crops[:n_crops]), sources[:n_crops]


def eval_clips(planner: Planner, part: str, n: int) -> tuple[list[np.ndarray], list[Utterance]]:
    """n labelled clips of `part`, each at least one crop long (2-4 groups, ~1.5-4 s)."""
    clips: list[np.ndarray] = []
    utts: list[Utterance] = []
    while len(clips) < n:
        batch = planner.draw(part, n - len(clips), EVAL_GROUPS)
        for utt, audio in zip(batch, synthesize(batch)):
            if len(audio) >= CROP_SAMPLES and len(clips) < n:
                clips.append(audio)
                utts.append(utt)
    return clips, utts


def espeak_version() -> str:
    """Different espeak-ng releases speak differently, so the version is part of the key."""
    path = shutil.which("espeak-ng")
    if path is None:
        return "missing"
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    return out.split("Data at")[0].strip()


def identity() -> dict:
    """What determines the built-in corpus besides seed and sizes (for the cache key)."""
    # espeak's version is recorded in the manifest, not keyed: a cluster node without
    # espeak-ng must still find and reuse a set built elsewhere.
    return {"kind": "builtin", "version": VERSION, "languages": list(LANGUAGES),
            "variants": list(VARIANTS), "variant_share": VARIANT_SHARE, "pitch": PITCH,
            "rate": RATE, "gain_db": GAIN_DB, "noise_dbfs": NOISE_DBFS,
            "groups": {"distill": DISTILL_GROUPS, "eval": EVAL_GROUPS}}
