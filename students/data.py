"""What a trial trains on: the distillation set in memory, or TFRecord shards streamed by tf.data.

Both give distill() the same two things: the target scaling (mean, scale) and a repeating,
seeded stream of batches. Shards hold log-mel features and teacher targets of the training
crops, so a set larger than memory trains in bounded memory: a trial holds one shuffle buffer
and a few open files, whatever the set's size.

TensorFlow is imported inside the methods: these objects travel to Ray workers, which must
unpickle them before TensorFlow starts (sweep/quiet.py pins its threads first).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from results.errors import FrillError
from results.files import atomic_write
from students.config import TrainConfig

SHARDS_JSON = "shards.json"
SHUFFLE_BUFFER = 4096     # examples (~100 MB of 96x64 float32 patches)
INTERLEAVE = 4            # shards read at once


class ShardError(FrillError):
    """A shard folder that is incomplete or damaged; the message says what to do."""


def target_scaling(targets: np.ndarray) -> tuple[np.ndarray, float]:
    """(per-dimension mean, one global scale) that map the targets to zero mean, unit std.

    Teacher embeddings are small (unit-norm 256-d: entries ~0.06) and mostly their mean, so a
    freshly initialised student spends a short run shrinking its outputs towards the mean.
    One global scale keeps the MSE objective itself unchanged (up to a constant factor).
    """
    targets = np.asarray(targets, np.float64)
    mean = targets.mean(axis=0)
    scale = float((targets - mean).std())
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError("teacher targets are constant; nothing to distil")
    return mean.astype(np.float32), scale


@dataclass(frozen=True)
class InMemory:
    """Training inputs and targets as arrays: one full shuffle per pass."""
    inputs: np.ndarray
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.inputs)

    def scaling(self) -> tuple[np.ndarray, float]:
        return target_scaling(self.targets)

    def head(self, n: int) -> np.ndarray:
        return np.asarray(self.inputs[:n])

    def batches(self, cfg: TrainConfig, mean: np.ndarray, scale: float):
        import tensorflow as tf
        ds = tf.data.Dataset.from_tensor_slices((self.inputs, (self.targets - mean) / scale))
        ds = ds.shuffle(len(self.inputs), seed=cfg.seed, reshuffle_each_iteration=True).repeat()
        return ds.batch(cfg.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


@dataclass(frozen=True)
class Shards:
    """A folder of TFRecord shards (see write_shard) and their shards.json."""
    folder: Path
    manifest: dict

    @classmethod
    def open(cls, folder: Path) -> "Shards":
        folder = Path(folder)
        try:
            manifest = json.loads((folder / SHARDS_JSON).read_text())
        except (OSError, ValueError) as e:
            raise ShardError(f"{folder} holds no complete shard set ({e}); "
                             "run the sweep again to write it") from None
        missing = [f for f in manifest["files"] if not (folder / f).is_file()]
        if missing:
            raise ShardError(f"{folder}: shard {missing[0]} is missing; delete {SHARDS_JSON} "
                             "there and run the sweep again to rewrite it")
        return cls(folder, manifest)

    def __len__(self) -> int:
        return int(self.manifest["n"])

    def scaling(self) -> tuple[np.ndarray, float]:
        return np.asarray(self.manifest["target_mean"], np.float32), float(self.manifest["target_scale"])

    def records(self, files=None, cycle: int = 1):
        """The (input, target) examples in shard order; or from `files`, `cycle` at a time."""
        import tensorflow as tf
        files = files if files is not None else self._files()
        x_shape, y_dim = self.manifest["input_shape"], self.manifest["target_dim"]

        def parse(record):
            f = tf.io.parse_single_example(record, {"x": tf.io.FixedLenFeature([], tf.string),
                                                    "y": tf.io.FixedLenFeature([], tf.string)})
            return (tf.reshape(tf.io.decode_raw(f["x"], tf.float32), x_shape),
                    tf.reshape(tf.io.decode_raw(f["y"], tf.float32), [y_dim]))
        return files.interleave(tf.data.TFRecordDataset, cycle_length=cycle,
                                deterministic=True).map(parse, deterministic=True)

    def _files(self):
        import tensorflow as tf
        return tf.data.Dataset.from_tensor_slices([str(self.folder / f) for f in self.manifest["files"]])

    def head(self, n: int) -> np.ndarray:
        return np.stack([x.numpy() for x, _ in self.records().take(n)])

    def batches(self, cfg: TrainConfig, mean: np.ndarray, scale: float):
        import tensorflow as tf
        # Shard order reshuffled each pass, then a bounded shuffle buffer across shards.
        files = self._files().shuffle(len(self.manifest["files"]), seed=cfg.seed,
                                      reshuffle_each_iteration=True).repeat()
        ds = self.records(files, cycle=INTERLEAVE).map(lambda x, y: (x, (y - mean) / scale))
        ds = ds.shuffle(min(SHUFFLE_BUFFER, len(self)), seed=cfg.seed, reshuffle_each_iteration=True)
        return ds.batch(cfg.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


TrainData = InMemory | Shards


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.tfrecord"


def write_shard(path: Path, inputs: np.ndarray, targets: np.ndarray) -> None:
    """One shard, atomically: a reader never sees a part-written file, and a build that was
    stopped resumes at the first shard that is missing."""
    import tensorflow as tf
    inputs, targets = np.asarray(inputs, np.float32), np.asarray(targets, np.float32)

    def write(tmp: Path) -> None:
        with tf.io.TFRecordWriter(str(tmp)) as w:
            for x, y in zip(inputs, targets):
                feature = {k: tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.tobytes()]))
                           for k, v in (("x", x), ("y", y))}
                w.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    atomic_write(path, write)


def target_stats(targets: np.ndarray) -> dict:
    """What the target scaling needs of one shard: count, per-dimension sum and sum of squares."""
    y = np.asarray(targets, np.float64)
    return {"n": len(y), "sum": y.sum(axis=0).tolist(), "sumsq": (y ** 2).sum(axis=0).tolist()}


def write_manifest(folder: Path, stats: list[dict], input_shape: tuple) -> Shards:
    """shards.json, last: its presence marks the shard set complete. stats: target_stats of
    each shard, in order; the scaling they give equals target_scaling of all targets."""
    n = sum(s["n"] for s in stats)
    mean = np.sum([s["sum"] for s in stats], axis=0) / n
    var = np.sum([s["sumsq"] for s in stats], axis=0) / n - mean ** 2
    scale = float(np.sqrt(max(var.mean(), 0.0)))
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError("teacher targets are constant; nothing to distil")
    atomic_write(Path(folder) / SHARDS_JSON, json.dumps(dict(
        n=n, files=[shard_name(i) for i in range(len(stats))], input_shape=list(input_shape),
        target_dim=len(mean), target_mean=mean.astype(np.float32).tolist(), target_scale=scale),
        indent=1))
    return Shards.open(folder)
