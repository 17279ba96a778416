"""Size, compute and latency of one converted student, measured on the .tflite file itself.

Everything here reads the converted file (not the Keras model) except `count_params`, so the
numbers describe what would ship. Latency uses the LiteRT interpreter with its default XNNPACK
delegate, one 0.96 s patch per invoke, like FRILL's per-patch phone figures.
"""
from __future__ import annotations

import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from results.files import atomic_write, slug
from students.errors import MeasureError
from students.tflite import load_interpreter, ops_details, reason

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p90_ms: float
    runs: int
    threads: int       # interpreter threads; for 'tf-function' timings, TF's intra-op setting (0 = TF default)
    runtime: str       # 'litert <version>' or 'tensorflow <version>'


def _litert_version() -> str:
    import ai_edge_litert
    return getattr(ai_edge_litert, "__version__", "unknown")


def tflite_bytes(path: str | os.PathLike) -> int:
    try:
        return Path(path).stat().st_size
    except OSError as e:
        raise MeasureError(f"cannot stat TFLite file {path}: {e.strerror}") from None


def count_params(keras_model: Any) -> int:
    """Weights of the model, shared variables counted once, tfmot quantizer state excluded.

    QAT models carry per-layer min/max ranges and an optimizer step; they are not parameters of
    the network, and counting them would make a QAT student look bigger than its float twin.
    """
    quant_state = re.compile(r"(^|/)(optimizer_step|[\w]*_(min|max))(:\d+)?$")
    seen: set[int] = set()
    total = 0
    for w in keras_model.weights:
        if id(w) in seen or quant_state.search(w.name):
            continue
        seen.add(id(w))
        total += int(np.prod(w.shape))
    return total


def _batch1(interp) -> int:
    """Resize every input to batch 1 and allocate; return the batch actually used."""
    batch = 1
    for d in interp.get_input_details():
        shape = list(d["shape"])
        if shape and shape[0] != 1:
            try:
                interp.resize_tensor_input(d["index"], [1, *shape[1:]], strict=False)
            except Exception:  # noqa: BLE001 - a fixed-batch model: measure it at its batch
                batch = int(shape[0])
    interp.allocate_tensors()
    return batch


def _random_inputs(interp, rng: np.random.Generator) -> None:
    for d in interp.get_input_details():
        dt = np.dtype(d["dtype"])
        if np.issubdtype(dt, np.integer):
            info = np.iinfo(dt)
            x = rng.integers(info.min, int(info.max) + 1, size=d["shape"], dtype=np.int64).astype(dt)
        elif dt == np.bool_:
            x = rng.integers(0, 2, size=d["shape"]).astype(bool)
        else:
            x = rng.standard_normal(d["shape"]).astype(dt)
        interp.set_tensor(d["index"], x)


def count_macs(tflite_path: str | os.PathLike) -> int:
    """Multiply-accumulates per input patch of CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED and
    BATCH_MATMUL ops, from tensor shapes in the converted file.

    Runs the plain builtin graph once (no XNNPACK, which would fold ops into one DELEGATE node)
    because models with a dynamic batch only know their intermediate shapes after an invoke.
    Other ops (elementwise, pooling, RFFT of the in-model frontend) are not counted, nor are
    ops inside control-flow subgraphs (LiteRT only lists the main graph's ops).
    """
    from ai_edge_litert.interpreter import OpResolverType
    interp = load_interpreter(tflite_path,
                   experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    try:
        batch = _batch1(interp)
        _random_inputs(interp, np.random.default_rng(0))
        interp.invoke()
        shapes = {t["index"]: tuple(int(s) for s in t["shape"]) for t in interp.get_tensor_details()}
        ops = ops_details(interp)
    except MeasureError:
        raise
    except Exception as e:  # noqa: BLE001
        raise MeasureError(f"cannot run {Path(tflite_path).name} to read op shapes ({reason(e)})") from None

    hidden = sorted({op["op_name"] for op in ops} & {"WHILE", "IF", "CALL_ONCE"})
    if hidden:  # e.g. an LSTM teacher lowered to WHILE loops; students are plain conv nets
        log.warning("%s: ops inside %s subgraphs are not counted in MACs", Path(tflite_path).name, hidden)
    total = 0
    for op in ops:
        name = op["op_name"]
        if name not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL"):
            continue
        ins = [shapes[i] if i >= 0 else None for i in op["inputs"]]
        out = shapes[op["outputs"][0]]
        n_out = int(np.prod(out))
        if name == "CONV_2D":           # filter [out_c, kh, kw, in_c / groups]
            _, kh, kw, cin = ins[1]
            total += n_out * kh * kw * cin
        elif name == "DEPTHWISE_CONV_2D":  # filter [1, kh, kw, out_c]
            _, kh, kw, _ = ins[1]
            total += n_out * kh * kw
        elif name == "FULLY_CONNECTED":   # weights [out, in]; n_out = rows * out
            total += n_out * ins[1][1]
        else:                              # out [..., M, N]; lhs [..., M, K] or [..., K, M] (adj_x)
            lhs = ins[0]
            k = lhs[-1] if lhs[-2] == out[-2] else lhs[-2]
            total += n_out * k
    return total // batch


def latency(tflite_path: str | os.PathLike, threads: int = 1, warmup: int = 10,
            runs: int = 50) -> Latency:
    """Per-patch latency: batch 1, random input of the model's input dtype, default delegates."""
    if threads < 1 or runs < 1 or warmup < 0:
        raise ValueError(f"need threads >= 1, runs >= 1, warmup >= 0; got {threads}, {runs}, {warmup}")
    name = Path(tflite_path).name
    interp = load_interpreter(tflite_path, num_threads=threads)
    try:
        batch = _batch1(interp)
        _random_inputs(interp, np.random.default_rng(0))
        return _time_calls(interp.invoke, warmup, runs, threads, f"litert {_litert_version()}", batch)
    except MeasureError:
        raise
    except Exception as e:  # noqa: BLE001
        raise MeasureError(f"latency of {name} failed ({reason(e)})") from None


def _time_calls(call: Callable[[], Any], warmup: int, runs: int, threads: int, runtime: str,
                batch: int = 1) -> Latency:
    for _ in range(warmup):
        call()
    times = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter()
        call()
        times[i] = time.perf_counter() - t0
    times *= 1000.0 / batch
    p50, p90 = (float(v) for v in np.percentile(times, [50, 90]))
    if not (np.isfinite(p50) and np.isfinite(p90) and p50 > 0):
        raise MeasureError(f"latency timing gave p50={p50}, p90={p90} ms")
    return Latency(p50_ms=p50, p90_ms=p90, runs=runs, threads=threads, runtime=runtime)


def _convert_teacher(teacher: Any, dest: Path) -> None:
    """Builtin ops only: the pip LiteRT runtime has no Flex delegate, so a SELECT_TF_OPS file
    would convert and then fail to run (checked with TF 2.21 / ai-edge-litert 2.3)."""
    import tensorflow as tf
    fn = teacher.concrete_function()
    trackable = teacher if isinstance(teacher, tf.Module) else None
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn], trackable)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    data = conv.convert()
    atomic_write(dest, data)   # concurrent sweeps never see half a file


def _time_tf_function(teacher: Any, warmup: int, runs: int) -> Latency:
    import tensorflow as tf

    from teacher.audio import CROP_SAMPLES
    fn = teacher.concrete_function()
    x = tf.constant(np.random.default_rng(0).standard_normal((1, CROP_SAMPLES)).astype(np.float32) * 0.1)
    _, kwargs = fn.structured_input_signature
    # SavedModel signatures take keyword inputs; plain tf.functions take positional ones.
    call_fn = (lambda: fn(**{next(iter(kwargs)): x})) if kwargs else (lambda: fn(x))

    def call() -> None:
        for t in tf.nest.flatten(call_fn()):  # .numpy() forces the work to finish
            t.numpy()

    threads = tf.config.threading.get_intra_op_parallelism_threads()
    return _time_calls(call, warmup, runs, threads, f"tensorflow {tf.__version__}")


def teacher_latency(teacher: Any, threads: int = 1, runs: int = 50, warmup: int = 10,
                    cache_dir: str | os.PathLike | None = None) -> tuple[Latency, str, Path | None]:
    """Teacher per-patch latency, how it was taken: 'tflite' (converted, same runtime as the
    students) or 'tf-function' (conversion or LiteRT failed; timed in TensorFlow, whose thread
    pool is process-wide, so `threads` is not enforced there), and its TFLite file (None when
    it did not convert; kept only with cache_dir).

    With cache_dir, the converted file (or a '.failed' note) is kept there, so a sweep converts
    its teacher once.
    """
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(cache_dir) if cache_dir is not None else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        path = root / f"teacher-{slug(str(getattr(teacher, 'name', 'teacher')), 'teacher')}.tflite"
        failed = path.with_name(path.name + ".failed")
        if not path.exists() and not failed.exists():
            try:
                _convert_teacher(teacher, path)
            except Exception as e:  # noqa: BLE001 - any conversion failure -> time TF instead
                failed.write_text(reason(e) + "\n")
        if path.exists() and not failed.exists():
            try:
                return (latency(path, threads=threads, warmup=warmup, runs=runs), "tflite",
                        path if cache_dir is not None else None)
            except MeasureError as e:
                failed.write_text(f"{e}\n")
        log.warning("teacher %s: timing the TF function (%s)", getattr(teacher, "name", "?"),
                    failed.read_text().strip())
        try:
            return _time_tf_function(teacher, warmup, runs), "tf-function", None
        except MeasureError:
            raise
        except Exception as e:  # noqa: BLE001
            raise MeasureError(f"teacher latency failed ({reason(e)})") from None
