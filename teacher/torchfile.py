"""Read a legacy (non-zip) PyTorch checkpoint into numpy, without torch.

The legacy format is a stream of pickles: magic number, protocol version,
sys_info, then the main object whose tensors point at storages through
persistent ids, then the list of storage keys, then each storage as an int64
element count followed by its raw little-endian bytes.

Pickles can run arbitrary code, so the unpickler here only admits the handful
of globals a state dict needs and refuses everything else with an error.
"""
from __future__ import annotations

import collections
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from teacher.errors import TeacherError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE_DTYPES = {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2",
    "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2",
    "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?",
}


@dataclass(frozen=True)
class _StorageType:
    name: str

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(_STORAGE_DTYPES[self.name])


@dataclass
class _Storage:
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = field(default=None, repr=False)


@dataclass(frozen=True)
class _TensorRef:
    """A tensor whose storage bytes come after the main pickle; resolved afterwards."""
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def to_numpy(self) -> np.ndarray:
        data = self.storage.data
        assert data is not None  # every storage is read before resolving
        extent = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride) if n > 0)
        if any(n == 0 for n in self.size):
            return np.zeros(self.size, data.dtype)
        if self.offset < 0 or extent >= len(data):
            raise TeacherError("corrupt checkpoint: a tensor reaches past the end of its storage")
        strides = tuple(s * data.itemsize for s in self.stride)
        view = np.lib.stride_tricks.as_strided(data[self.offset:], self.size, strides)
        return np.array(view)  # copy: detach from the shared storage buffer


def _rebuild_tensor(storage: _Storage, offset: int, size: tuple, stride: tuple,
                    requires_grad: bool = False, hooks: Any = None, metadata: Any = None
                    ) -> _TensorRef:
    return _TensorRef(storage, int(offset), tuple(size), tuple(stride))


def _rebuild_parameter(data: _TensorRef, requires_grad: bool = False, hooks: Any = None
                       ) -> _TensorRef:
    return data  # a Parameter is just its tensor for our purposes


class _StateDictUnpickler(pickle.Unpickler):
    """Admits only OrderedDict, tensor rebuilding and storage types."""

    _ALLOWED = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    }

    def __init__(self, file: BinaryIO, source: str, storages: dict[str, _Storage]) -> None:
        super().__init__(file)
        self.source = source
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise TeacherError(f"refusing to load {module}.{name} from {self.source}: "
                           "only state-dict contents (tensors, dicts) are allowed")

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and pid[5] is None):
            raise TeacherError(f"unsupported storage reference in {self.source}: {pid!r:.80}")
        _, stype, key, _location, numel, _ = pid
        storage = self.storages.setdefault(str(key), _Storage(stype.dtype, int(numel)))
        return storage


def _read_storages(f: BinaryIO, keys: list[str], storages: dict[str, _Storage], source: str
                   ) -> None:
    for key in keys:
        st = storages.get(key)
        header = f.read(8)
        if st is None or len(header) != 8:
            raise TeacherError(f"corrupt checkpoint {source}: storage {key} missing")
        numel = int(np.frombuffer(header, "<i8")[0])
        raw = f.read(numel * st.dtype.itemsize)
        if numel != st.numel or len(raw) != numel * st.dtype.itemsize:
            raise TeacherError(f"corrupt checkpoint {source}: storage {key} is truncated")
        st.data = np.frombuffer(raw, st.dtype)


def _resolve(obj: Any) -> Any:
    if isinstance(obj, _TensorRef):
        return obj.to_numpy()
    if isinstance(obj, dict):
        return type(obj)((k, _resolve(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_resolve(v) for v in obj)
    return obj


def load_legacy_checkpoint(path: str | Path) -> Any:
    """Load a legacy torch.save file; tensors come back as numpy arrays."""
    source = str(path)
    storages: dict[str, _Storage] = {}
    try:
        with open(path, "rb") as f:
            def load() -> Any:
                return _StateDictUnpickler(f, source, storages).load()

            if load() != LEGACY_MAGIC:
                raise TeacherError(f"{source} is not a legacy (non-zip) PyTorch checkpoint")
            load(), load()  # protocol version, sys_info: nothing we need
            result = load()
            keys = load()
            _read_storages(f, [str(k) for k in keys], storages, source)
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise TeacherError(f"cannot read checkpoint {source}: {exc}") from None
    return _resolve(result)
