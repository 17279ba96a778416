"""Which sweep a notebook opens, and from where: paths resolve from the repository root.

    from results import explore
    df = explore.open_sweep()        # FRILL_SWEEP, else frill144 if it has run, else results/reference

Jupyter runs a notebook with notebooks/ as its working directory, so a relative path such as
`results/runs/x` would not resolve there; and a fresh clone has no sweep of its own, only the
committed reference run.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from results.folder import load, runs_root

DEFAULT_SWEEP = "frill144"


def repo_root(start: Path | None = None) -> Path:
    """The checkout around `start` (default: the working directory), else the one holding this package."""
    here = Path(start or Path.cwd()).resolve()
    for p in (here, *here.parents):
        if (p / "pyproject.toml").is_file() and (p / "results" / "reference").is_dir():
            return p
    return Path(__file__).resolve().parent.parent


def reference(root: Path | None = None) -> Path:
    return (root or repo_root()) / "results" / "reference"


def pick(name: str | None = None, root: Path | None = None) -> Path | str:
    """A sweep name under runs_root(), or a path (relative ones from the repository root).

    name None or '': the default sweep if it has run here, else the committed reference run.
    """
    root = root or repo_root()
    if not name:
        return DEFAULT_SWEEP if (runs_root() / DEFAULT_SWEEP).is_dir() else reference(root)
    if "/" in name or os.sep in name or name in (".", ".."):
        p = Path(name).expanduser()
        return p if p.is_absolute() else root / p
    return name


def open_sweep(name: str | None = None) -> pd.DataFrame:
    """load() of pick(name if given, else env FRILL_SWEEP)."""
    return load(pick(name if name is not None else os.environ.get("FRILL_SWEEP")))
