"""Everything that reads a converted .tflite file: loading, the int8 mapping, a batched runner,
and the op listing. Runtime: ai_edge_litert, never tf.lite.Interpreter (deprecated).

measure.py (size, MACs, latency), evaluate.py (quality) and export.py (the export check) all
run the file through here, so an int8 student is fed and read the same way everywhere.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from results.errors import first_line
from students.errors import EvalError, MeasureError


def reason(e: BaseException) -> str:
    """'Class: first line' for one-line errors about a TFLite file. Converter errors bury the
    cause after a file path as 'error: ...'; that part is taken when present."""
    m = re.search(r"error: ([^\n]+)", str(e))
    return f"{type(e).__name__}: {m.group(1).strip()[:200] if m else first_line(e, 200)}"


def load_interpreter(path: str | os.PathLike, **kwargs: Any):
    """A LiteRT Interpreter for a file (kwargs: num_threads, experimental_op_resolver_type, ...);
    MeasureError with one line when the file is absent or not a TFLite model."""
    from ai_edge_litert.interpreter import Interpreter
    p = Path(path)
    if not p.is_file():
        raise MeasureError(f"TFLite file not found: {p}")
    try:
        return Interpreter(model_path=str(p), **kwargs)
    except Exception as e:  # noqa: BLE001 - LiteRT raises ValueError/RuntimeError for bad files
        raise MeasureError(f"cannot load {p.name} as a TFLite model ({reason(e)})") from None


def quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    """Float values -> the tensor's dtype; integer tensors use the file's (scale, zero_point)."""
    dt = np.dtype(detail["dtype"])
    if not np.issubdtype(dt, np.integer):
        return x.astype(dt)
    scale, zero = detail["quantization"]
    if scale == 0:
        raise EvalError(f"integer input tensor {detail['name']!r} has no quantisation scale")
    info = np.iinfo(dt)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dt)


def dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    """A tensor's values as float32 (integer outputs mapped back with its scale, zero_point)."""
    scale, zero = detail["quantization"]
    if np.issubdtype(y.dtype, np.integer) and scale:
        return ((y.astype(np.float32) - zero) * scale).astype(np.float32)
    return y.astype(np.float32)


def op_types(path: str | os.PathLike) -> dict[str, set[str]]:
    """op name -> dtype names of all input and output tensors of every op of that kind.

    Weights count as inputs, so an int8 CONV_2D reports {'int8', 'int32'} (int32 = its bias).
    """
    interp = load_interpreter(path)
    dtypes = {t["index"]: np.dtype(t["dtype"]).name for t in interp.get_tensor_details()}
    ops: dict[str, set[str]] = {}
    for op in ops_details(interp):
        tensors = [i for i in (*op["inputs"], *op["outputs"]) if i >= 0]  # -1: absent optional
        ops.setdefault(op["op_name"], set()).update(dtypes[i] for i in tensors if i in dtypes)
    return ops


def ops_details(interp) -> list[dict]:
    # Private in LiteRT, but the only op-level view it offers (no public equivalent in 2.x).
    return interp._get_ops_details()


class TFLiteEmbedder:
    """Callable: inputs [N, *model input shape] (log-mel [N,96,64] or crops [N,15600], as the
    model's input says) -> float32 embeddings [N, E]. Quantised int8 inputs/outputs are mapped
    with the file's (scale, zero_point). Runs `batch_size` items per invoke, padding the last."""

    def __init__(self, path: str | os.PathLike, batch_size: int = 64, threads: int = 1) -> None:
        self.path = Path(path)
        self.threads = threads
        self._setup(batch_size)

    def _setup(self, batch: int) -> None:
        try:
            interp = load_interpreter(self.path, num_threads=self.threads)
        except MeasureError as e:
            raise EvalError(str(e)) from None
        ins = interp.get_input_details()
        if len(ins) != 1:
            raise EvalError(f"{self.path.name}: expected one input tensor, found {len(ins)}")
        self.input_shape = tuple(int(s) for s in ins[0]["shape"][1:])
        try:
            interp.resize_tensor_input(ins[0]["index"], [batch, *self.input_shape], strict=False)
        except Exception:  # noqa: BLE001 - a fixed-batch model: go one item per invoke
            if batch > 1:
                return self._setup(1)
        interp.allocate_tensors()
        self._interp, self._in, self._out = interp, interp.get_input_details()[0], interp.get_output_details()[0]
        self.batch_size = int(self._in["shape"][0])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        if x.shape[1:] != self.input_shape:
            if x.ndim < 2 or int(np.prod(x.shape[1:])) != int(np.prod(self.input_shape)):
                raise EvalError(f"{self.path.name}: input items of shape {x.shape[1:]} do not fit "
                                f"the model input {self.input_shape}")
            x = x.reshape(len(x), *self.input_shape)  # e.g. [N,96,64] into [N,96,64,1]
        chunks = []
        for start in range(0, len(x), self.batch_size):
            try:
                chunks.append(self._run(x[start:start + self.batch_size]))
            except EvalError:
                raise
            except Exception as e:  # noqa: BLE001
                if self.batch_size > 1:  # batch > 1 allocated, but the graph will not run it
                    self._setup(1)
                    return self(x)
                raise EvalError(f"{self.path.name}: inference failed ({reason(e)})") from None
        if not chunks:
            return np.zeros((0, int(np.prod(self._out["shape"][1:]))), np.float32)
        out = np.concatenate(chunks)
        if not np.all(np.isfinite(out)):
            raise EvalError(f"{self.path.name}: produced non-finite embeddings")
        return out

    def _run(self, x: np.ndarray) -> np.ndarray:
        n = len(x)
        if n < self.batch_size:  # the interpreter was allocated once for a full batch
            x = np.concatenate([x, np.zeros((self.batch_size - n, *x.shape[1:]), x.dtype)])
        self._interp.set_tensor(self._in["index"], quantize(x, self._in))
        self._interp.invoke()
        y = self._interp.get_tensor(self._out["index"])
        if y.shape[0] != self.batch_size:
            raise RuntimeError(f"output batch {y.shape[0]} != input batch {self.batch_size}")
        return dequantize(y, self._out)[:n].reshape(n, -1)
