"""The sweep folder and its ledger: which expected trials are done, errored or missing.

Layout of results/runs/<sweep>/:
  sweep.json              grid, fidelity, expected trial ids (written before any trial runs)
  trials/<trial_id>/      config.json, row.json, model.tflite (appears whole, via rename)
  results.parquet, .csv   the table, rebuilt from trials/ after every finished trial
The trial folders are the source of truth, so a killed sweep resumes from them.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from teacher.errors import FrillError

DEFAULT_RUNS = Path(__file__).resolve().parent.parent / "results" / "runs"
MAX_ATTEMPTS = 2    # an errored trial is retried once on the next run


class SweepError(FrillError):
    pass


def runs_root() -> Path:
    return Path(os.environ.get("FRILL_RESULTS", DEFAULT_RUNS))


def sweep_dir(name: str) -> Path:
    return runs_root() / name


def read_rows(sdir: Path) -> dict[str, dict]:
    rows = {}
    for p in sorted((sdir / "trials").glob("*/row.json")):
        row = json.loads(p.read_text())
        rows[row["trial_id"]] = row
    return rows


@dataclass(frozen=True)
class Ledger:
    expected: list[str]
    done: list[str]          # status OK
    errored: list[str]       # status ERROR
    missing: list[str]       # no row yet
    retry: list[str]         # errored with attempts left

    @property
    def pending(self) -> list[str]:
        return self.missing + self.retry

    def line(self) -> str:
        return (f"expected {len(self.expected)}, done {len(self.done)}, "
                f"errored {len(self.errored)}, missing {len(self.missing)}")


def ledger(sdir: Path) -> Ledger:
    meta = read_meta(sdir)
    rows = read_rows(sdir)
    expected = meta["expected"]
    done = [t for t in expected if rows.get(t, {}).get("status") == "OK"]
    errored = [t for t in expected if t in rows and rows[t].get("status") != "OK"]
    missing = [t for t in expected if t not in rows]
    retry = [t for t in errored if int(rows[t].get("attempt", 1)) < MAX_ATTEMPTS]
    return Ledger(expected, done, errored, missing, retry)


def read_meta(sdir: Path) -> dict:
    path = sdir / "sweep.json"
    if not path.exists():
        known = sorted(p.parent.name for p in runs_root().glob("*/sweep.json"))
        raise SweepError(f"no sweep at {sdir} (no sweep.json); known sweeps: {known or 'none'}")
    return json.loads(path.read_text())
