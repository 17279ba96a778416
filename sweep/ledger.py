"""The sweep folder and its ledger: which expected trials are done, errored or missing.

Layout of results/runs/<sweep>/:
  sweep.json              grid, fidelity, expected trial ids (written before any trial runs)
  trials/<trial_id>/      config.json, row.json, model.tflite (lands whole, via rename)
  results.parquet, .csv   the table, rebuilt from trials/ after every finished trial
The trial folders are the source of truth, so a killed sweep resumes from them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from results import table
from teacher.errors import FrillError

MAX_ATTEMPTS = 2    # an errored trial is retried once on the next run


class SweepError(FrillError):
    pass


def sweep_dir(name: str) -> Path:
    return table.runs_root() / name


def read_rows(sdir: Path) -> dict[str, dict]:
    """trial_id -> row.json as written (raw: attempts and timestamps exactly as stored)."""
    return {r["trial_id"]: r for r in
            (json.loads(p.read_text()) for p in sorted((sdir / "trials").glob("*/row.json")))}


def read_meta(sdir: Path) -> dict:
    if not (sdir / "sweep.json").exists():
        known = sorted(p.parent.name for p in table.runs_root().glob("*/sweep.json"))
        raise SweepError(f"no sweep at {sdir} (no sweep.json); known sweeps: {known or 'none'}")
    return table.sweep_info(sdir)


@dataclass(frozen=True)
class Ledger:
    expected: list[str]
    done: list[str]          # status OK
    errored: list[str]       # status ERROR
    missing: list[str]       # no row yet
    retry: list[str]         # errored with an attempt left

    @property
    def pending(self) -> list[str]:
        return self.missing + self.retry

    def line(self) -> str:
        return (f"expected {len(self.expected)}, done {len(self.done)}, "
                f"errored {len(self.errored)}, missing {len(self.missing)}")


def ledger(sdir: Path) -> Ledger:
    expected = table.expected_ids(read_meta(sdir))
    rows = read_rows(sdir)
    status = {t: rows[t]["status"] for t in expected if t in rows}
    errored = [t for t, s in status.items() if s != "OK"]
    return Ledger(expected=expected,
                  done=[t for t, s in status.items() if s == "OK"],
                  errored=errored,
                  missing=[t for t in expected if t not in rows],
                  retry=[t for t in errored if int(rows[t].get("attempt", 1)) < MAX_ATTEMPTS])
