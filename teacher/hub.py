"""TF-Hub / SavedModel teacher (TRILL by default).

Called like TRILL v3: `module(samples=[B, N] float32, sample_rate=16000)` returning
a dict of outputs; a module that takes one positional tensor also works. Outputs
[B, D] are used as they are; [B, T, D] (frames per 0.96 s) are averaged over T.
"""
from __future__ import annotations

import hashlib
import os
import socket
import tempfile
import threading
from urllib.parse import urlparse

import numpy as np

import teacher  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TF loads)
import tensorflow as tf

from results.errors import first_line
from teacher.audio import CROP_SAMPLES, SAMPLE_RATE
from teacher.errors import TeacherError
from teacher.base import OFFLINE_HINT, TRILL_KEY, BatchedTeacher, is_url

REACH_TIMEOUT_S = 5.0


def _hub_cached(handle: str) -> bool:
    """True when tensorflow_hub already holds this URL in its cache (then no network needed)."""
    root = os.environ.get("TFHUB_CACHE_DIR") or os.path.join(tempfile.gettempdir(), "tfhub_modules")
    path = os.path.join(root, hashlib.sha1(handle.encode("utf8")).hexdigest())
    return os.path.isdir(path) and bool(os.listdir(path))


def check_reachable(url: str, timeout: float = REACH_TIMEOUT_S) -> None:
    """Fail within `timeout` s if the URL's host cannot be connected to.

    hub.load has no timeout of its own and DNS lookups ignore socket timeouts, so
    the probe runs in a daemon thread that we simply stop waiting for.
    """
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    errors: list[str] = []

    def probe() -> None:
        try:
            socket.create_connection((parsed.hostname or "", port), timeout=timeout).close()
        except OSError as exc:
            errors.append(str(exc) or type(exc).__name__)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive() or errors:
        reason = errors[0] if errors else f"no answer in {timeout:g} s"
        raise TeacherError(f"cannot reach {url} ({reason}); {OFFLINE_HINT}")


def _load(handle: str):
    import tensorflow_hub as hub  # only hub teachers need it

    if is_url(handle) and not _hub_cached(handle):
        check_reachable(handle)
    try:
        return hub.load(handle)
    except Exception as exc:  # hub/TF raise many types; the user needs one line
        first = first_line(exc)
        raise TeacherError(f"cannot load SavedModel {handle}: {first}") from None


class HubTeacher(BatchedTeacher):
    """Any TF-Hub handle or SavedModel directory; `key` picks a dict output."""

    sample_rate = SAMPLE_RATE

    def __init__(self, handle: str, key: str | None = None, name: str | None = None,
                 batch_size: int = 32) -> None:
        super().__init__()
        self.handle, self.batch_size = handle, batch_size
        self.name = name or handle
        self.module = _load(handle)
        self.key = key
        probe = self._call_checked(tf.zeros([1, CROP_SAMPLES], tf.float32))
        self.output_dim = int(probe.shape[-1])
        self._fn = tf.function(self._call, input_signature=[
            tf.TensorSpec([None, CROP_SAMPLES], tf.float32)])

    def _raw_call(self, x: tf.Tensor):
        try:
            return self.module(samples=x, sample_rate=SAMPLE_RATE)
        except (TypeError, ValueError):
            if not callable(self.module):
                raise
            return self.module(x)

    def _select(self, out) -> tf.Tensor:
        if isinstance(out, dict):
            keys = sorted(out)
            key = self.key or (TRILL_KEY if TRILL_KEY in out or len(keys) != 1 else keys[0])
            if key not in out:
                raise TeacherError(f"SavedModel {self.handle} has no output '{key}'; available "
                                   f"keys: {', '.join(keys)} (pick one with SPEC#KEY)")
            out = out[key]
        elif self.key:
            raise TeacherError(f"SavedModel {self.handle} returns a single tensor, not a dict: "
                               f"drop '#{self.key}'")
        out = tf.convert_to_tensor(out)
        return tf.reduce_mean(out, axis=1) if out.shape.rank == 3 else out

    def _call(self, x: tf.Tensor) -> tf.Tensor:
        return tf.cast(self._select(self._raw_call(x)), tf.float32)

    def _call_checked(self, x: tf.Tensor) -> tf.Tensor:
        """First call: turn signature/shape problems into one-line TeacherErrors."""
        try:
            y = self._call(x)
        except TeacherError:
            raise
        except Exception as exc:
            first = first_line(exc)
            raise TeacherError(f"SavedModel {self.handle} cannot embed a [1, {CROP_SAMPLES}] "
                               f"crop as module(samples=, sample_rate=): {first}") from None
        if y.shape.rank != 2 or y.shape[0] != 1:
            raise TeacherError(f"SavedModel {self.handle} output has shape {y.shape}; "
                               "expected [batch, dim] or [batch, frames, dim]")
        return y

    def _embed_batch(self, batch: np.ndarray) -> np.ndarray:
        return self._fn(tf.constant(batch)).numpy()

    def concrete_function(self):
        return tf.function(self._call).get_concrete_function(
            tf.TensorSpec([1, CROP_SAMPLES], tf.float32))
