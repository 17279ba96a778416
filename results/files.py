"""File helpers every package shares: the atomic write, checksums, file-name slugs, and fd 2
on /dev/null for native libraries' start-up lines.

Standard library only (like results/errors.py), so teacher/, students/ and sweep/ can import it
without loading pandas, TF or Ray.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Callable


def atomic_write(path: str | os.PathLike, data: bytes | str | Callable[[Path], object]) -> Path:
    """Write a file whole or not at all: a temp file beside it, then os.replace.

    data: bytes, text (UTF-8), or a function that writes the given temp path (parquet, csv).
    The temp name carries the pid and a random part, so processes sharing a folder (sweeps
    sharing a cache) never write into each other's temp file. Returns the path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        elif isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            data(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def slug(text: str, default: str = "x") -> str:
    """A file-name-safe short name: the last path part, other than [alnum . _] -> '_', 40 chars."""
    name = Path(text.rstrip("/")).name or default
    return "".join(c if c.isalnum() or c in "._" else "_" for c in name)[:40]


@contextlib.contextmanager
def native_stderr_to_devnull() -> Iterator[None]:
    """fd 2 on /dev/null for the block; Python's sys.stderr still writes to the real stream."""
    sys.stderr.flush()
    saved = os.dup(2)
    py_stderr = sys.stderr
    sys.stderr = os.fdopen(os.dup(saved), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        sys.stderr.close()
        sys.stderr = py_stderr
