"""The results table as files: results.parquet + results.csv, read and written schema-checked.

Which rows a sweep has, and where its files live, is results/folder.py's job; this module only
turns rows into a typed table and a table into files and back.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from results.files import atomic_write
from results.schema import ResultsError, check_required, check_version, coerce, upgrade, validate

TABLE_FILES = ("results.parquet", "results.csv")  # parquet first: it keeps dtypes exactly


def read_table(path: Path) -> pd.DataFrame:
    """One results.parquet/.csv file, schema-checked and coerced (tables carry every column).

    Rows come back sorted by trial_id, from a table or from trial folders alike. A file that
    cannot be parsed is one ResultsError naming it and how to rebuild it.
    """
    path = Path(path)
    try:
        if path.suffix == ".parquet":
            df = pd.read_parquet(path)
        elif path.suffix == ".csv":
            # Only '' means missing: a host called 'NA' stays a host.
            df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
        else:
            raise ResultsError(f"{path} is not a results table (.parquet or .csv)")
    except ResultsError:
        raise
    except Exception as e:  # noqa: BLE001 - pyarrow/pandas raise many types for a damaged file
        raise ResultsError(f"{path} is damaged ({type(e).__name__}: {' '.join(str(e).split())[:200]}); "
                           f"rebuild it from the trial folders: python -m results rebuild {path.parent}") from None
    df = upgrade(df)
    check_version(df, str(path))
    check_required(df, str(path), table=True)
    return _sorted(coerce(df))


def frame(rows: list[dict], source: str) -> pd.DataFrame:
    """Rows (dicts, as in row.json) as a schema-checked, typed table."""
    if not rows:
        raise ResultsError(f"no rows in {source}")
    df = pd.DataFrame.from_records(rows)
    df = upgrade(df)
    check_version(df, f"trial rows in {source}")
    check_required(df, f"trial rows in {source}", table=False)
    return _sorted(coerce(df))


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    # One order whatever the source (table or folders), so the two compare equal.
    return df.sort_values("trial_id", kind="stable").reset_index(drop=True)


def write_table(df: pd.DataFrame, sweep_dir: str | os.PathLike) -> Path:
    """Validate and write results.parquet + results.csv, each atomically (results.files).

    Readers never see a half-written table, even while the sweep driver updates it after
    every landing. Returns the parquet path. Raises SchemaError if df does not match the schema.
    """
    sweep_dir = Path(sweep_dir)
    df = validate(coerce(df)).reset_index(drop=True)
    csv = df.copy()
    for name in csv.columns:
        if isinstance(csv[name].dtype, pd.DatetimeTZDtype):  # ISO-8601 with 'T', as in row.json
            csv[name] = csv[name].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    for name, write in (("results.parquet", lambda p: df.to_parquet(p, index=False)),
                        ("results.csv", lambda p: csv.to_csv(p, index=False))):
        atomic_write(sweep_dir / name, write)
    return sweep_dir / "results.parquet"
