"""Reading and writing the results table: load(), write_table(), rebuild(), ledger().

A sweep folder (results/runs/<sweep>/) holds sweep.json, trials/<trial_id>/row.json and the
table results.parquet + results.csv. The trial folders are the truth; the table is a cache of
them that the sweep driver rewrites atomically, so load() can always fall back to the folders.
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from results.schema import (ResultsError, SchemaError, check_required, check_version, coerce,
                            upgrade, validate)

TABLE_FILES = ("results.parquet", "results.csv")  # parquet first: it keeps dtypes exactly


def runs_root() -> Path:
    """Where sweeps live: env FRILL_RESULTS, default <repo>/results/runs."""
    return Path(os.environ.get("FRILL_RESULTS") or Path(__file__).resolve().parent / "runs")


def resolve(name_or_path: str | os.PathLike) -> Path:
    """A sweep name (folder under runs_root()) or an existing path; ResultsError otherwise."""
    s = os.fspath(name_or_path)
    root = runs_root()
    is_name = bool(s) and "/" not in s and os.sep not in s and s not in (".", "..")
    if is_name and (root / s).is_dir():
        return root / s
    path = Path(s).expanduser()
    if path.exists():
        return path
    if not is_name or path.suffix in (".parquet", ".csv", ".json"):
        raise ResultsError(f"no such file or folder: {s}")
    names = sorted(d.name for d in root.iterdir() if is_sweep_dir(d)) if root.is_dir() else []
    found = f"sweeps there: {', '.join(names[:12])}" if names else "no sweeps there yet"
    raise ResultsError(f"no sweep named {s!r} under {root} ({found}; set FRILL_RESULTS to look elsewhere)")


def is_sweep_dir(folder: Path) -> bool:
    return folder.is_dir() and any((folder / n).exists() for n in ("sweep.json", "trials", *TABLE_FILES))


def trials_dir(folder: Path) -> Path | None:
    """The folder holding trial folders: <sweep>/trials, or folder itself if it holds */row.json."""
    if (folder / "trials").is_dir():
        return folder / "trials"
    return folder if any(folder.glob("*/row.json")) else None


def _row_files(folder: Path) -> list[Path]:
    tdir = trials_dir(folder)
    return sorted(tdir.glob("*/row.json")) if tdir else []


def read_table(path: Path) -> pd.DataFrame:
    """One results.parquet/.csv file, schema-checked and coerced (tables carry every column).

    Rows come back sorted by trial_id, from a table or from trial folders alike.
    """
    if path.suffix == ".parquet":
        df = pd.read_parquet(path)
    elif path.suffix == ".csv":
        # Only '' means missing: a host called 'NA' stays a host.
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    else:
        raise ResultsError(f"{path} is not a results table (.parquet or .csv)")
    df = upgrade(df)
    check_version(df, str(path))
    check_required(df, str(path), table=True)
    return _sorted(coerce(df))


def read_rows(files: list[Path], source: str) -> pd.DataFrame:
    """Rows from trial folders' row.json files, schema-checked and coerced."""
    rows = []
    for f in files:
        try:
            rows.append(json.loads(f.read_text()))
        except (OSError, json.JSONDecodeError) as e:
            # A running sweep may be mid-write on a trial that is not atomic; skip it, say so.
            warnings.warn(f"skipping unreadable {f}: {e}", stacklevel=3)
    if not rows:
        raise ResultsError(f"no readable row.json in the trial folders of {source}")
    df = pd.DataFrame.from_records(rows)
    df = upgrade(df)
    check_version(df, f"trial rows in {source}")
    check_required(df, f"trial rows in {source}", table=False)
    return _sorted(coerce(df))


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    # One order whatever the source (table or folders), so the two compare equal.
    return df.sort_values("trial_id", kind="stable").reset_index(drop=True)


def load(name_or_path: str | os.PathLike) -> pd.DataFrame:
    """The results table of a sweep, one typed row per trial (errored trials included).

    name_or_path: a sweep name under runs_root(), a sweep folder, a results.parquet/.csv file,
    or a folder of trial folders. On a running sweep it returns the rows so far: trial folders
    win over the table when they have more rows or a newer row.json (a resumed trial).
    df.attrs['source'] names what was read; df.attrs['sweep_dir'] the sweep folder, if any.
    """
    path = resolve(name_or_path)
    sweep_dir = path.parent if path.is_file() else path
    if path.is_file():
        df = read_table(path)
    else:
        table = next((path / n for n in TABLE_FILES if (path / n).is_file()), None)
        rows = _row_files(path)
        if table is None and not rows:
            raise ResultsError(f"no results in {path}: no results.parquet/.csv and no trial folders with row.json")
        source = table
        if table is not None:
            df = read_table(table)
            newest = max((f.stat().st_mtime for f in rows), default=0.0)
            if len(rows) > len(df) or (rows and len(rows) == len(df) and newest > table.stat().st_mtime):
                df, source = read_rows(rows, str(path)), rows[0].parent.parent
        else:
            df, source = read_rows(rows, str(path)), rows[0].parent.parent
        path = Path(source)
    df.attrs.update(source=str(path), sweep_dir=str(sweep_dir))
    return df


def write_table(df: pd.DataFrame, sweep_dir: str | os.PathLike) -> Path:
    """Validate and write results.parquet + results.csv atomically (temp file + os.replace).

    Readers never see a half-written table, even while the sweep driver rewrites it after
    every trial. Returns the parquet path. Raises SchemaError if df does not match the schema.
    """
    sweep_dir = Path(sweep_dir)
    df = validate(coerce(df)).reset_index(drop=True)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    csv = df.copy()
    for name in csv.columns:
        if isinstance(csv[name].dtype, pd.DatetimeTZDtype):  # ISO-8601 with 'T', as in row.json
            csv[name] = csv[name].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    for name, write in (("results.parquet", lambda p: df.to_parquet(p, index=False)),
                        ("results.csv", lambda p: csv.to_csv(p, index=False))):
        tmp = sweep_dir / f".{name}.{os.getpid()}.tmp"
        try:
            write(tmp)
            os.replace(tmp, sweep_dir / name)
        finally:
            tmp.unlink(missing_ok=True)
    return sweep_dir / "results.parquet"


def rebuild(sweep_dir: str | os.PathLike) -> pd.DataFrame:
    """Rebuild the table from the sweep's trial folders, write it (atomically), return it."""
    sweep_dir = resolve(sweep_dir)
    rows = _row_files(sweep_dir)
    if not rows:
        raise ResultsError(f"no trial folders with row.json in {sweep_dir}")
    df = read_rows(rows, str(sweep_dir))
    write_table(df, sweep_dir)
    df.attrs.update(source=str(sweep_dir), sweep_dir=str(sweep_dir))
    return df


def sweep_info(sweep_dir: str | os.PathLike) -> dict:
    """sweep.json of a sweep folder ({} when absent: a bare folder of trials has none)."""
    f = Path(sweep_dir) / "sweep.json"
    if not f.is_file():
        return {}
    try:
        return json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise ResultsError(f"{f} is not valid JSON: {e}") from None


def expected_ids(info: dict) -> list[str] | None:
    ids = info.get("expected_trial_ids", info.get("trial_ids"))
    return None if ids is None else [str(i) for i in ids]


@dataclass(frozen=True)
class Ledger:
    """Expected trials (sweep.json) against the rows found. expected is None without sweep.json."""

    expected: list[str] | None
    done: list[str]
    errored: list[str]
    missing: list[str]
    unexpected: list[str]   # rows whose id the sweep does not expect (e.g. an older grid)

    def counts(self) -> dict[str, int | None]:
        return {"expected": None if self.expected is None else len(self.expected), "done": len(self.done),
                "errored": len(self.errored), "missing": len(self.missing), "unexpected": len(self.unexpected)}


def ledger(df: pd.DataFrame, info: dict) -> Ledger:
    """expected = done + errored + missing when sweep.json lists the expected ids."""
    ids = df["trial_id"].astype(str)
    exp = expected_ids(info)
    counted = ids.isin(exp) if exp is not None else pd.Series(True, index=df.index)
    seen = set(ids)
    return Ledger(
        expected=exp,
        done=sorted(ids[counted & (df["status"] == "OK")]),
        errored=sorted(ids[counted & (df["status"] == "ERROR")]),
        missing=[] if exp is None else [i for i in exp if i not in seen],
        unexpected=sorted(ids[~counted]),
    )


__all__ = ["load", "write_table", "rebuild", "read_table", "read_rows", "resolve", "runs_root",
           "sweep_info", "ledger", "Ledger", "ResultsError", "SchemaError"]
