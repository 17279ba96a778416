"""The sweep folder, owned here alone: sweep.json, trial folders, landing, rows, the ledger, the table.

    results/runs/<sweep>/
      sweep.json              name, grid, fidelity, expected trial ids, the run command, and the
                              sha256 of all that; written once the driver's checks have passed
      .lock                   flock'd by the one driver running the sweep (the OS drops it when
                              that process dies, so a killed driver never blocks the next one)
      trials/<trial_id>/      config.json, row.json, model.tflite[, error.txt], landed.json
                              (sha256 of each file); arrives whole, by one rename
      trials/.landing-*       a landing in progress: never read, cleared by the next driver
      results.parquet, .csv   the table, a cache of the rows: one row upserted per landing

The trial folders are the truth: a killed sweep resumes from them and the table can always be
rebuilt from them. Every file read back is verified (JSON, shape, recorded checksum); a damaged
one raises a one-line error naming the file and the fix, never a traceback or fewer rows.
Lives in results/ (pandas only, no TF or Ray) so notebooks and the driver share it.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, Mapping

import pandas as pd

from results.files import atomic_write, sha256_file
from results.schema import ResultsError
from results.table import TABLE_FILES, frame, read_table, write_table

MAX_ATTEMPTS = 2        # an errored trial is retried once on the next run
LANDED = "landed.json"  # written into a trial folder just before it lands
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")


class FolderError(ResultsError):
    """A sweep folder that cannot be used as it is (damaged file, bad name, busy)."""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------- where sweeps live

def runs_root() -> Path:
    """Where sweeps live: env FRILL_RESULTS, default <repo>/results/runs."""
    return Path(os.environ.get("FRILL_RESULTS") or Path(__file__).resolve().parent / "runs")


def check_name(name: str) -> str:
    """A sweep name is one folder under runs_root(): no '/', '..' or leading '.'."""
    if not NAME_RE.match(name or ""):
        raise FolderError(f"bad sweep name {name!r}: use letters, digits, '.', '_' and '-' "
                          "(at most 80, starting with a letter or digit); it names a folder under "
                          f"{runs_root()}")
    return name


def sweep_dir(name: str) -> Path:
    return runs_root() / check_name(name)


def is_sweep_dir(folder: Path) -> bool:
    return folder.is_dir() and any((folder / n).exists() for n in ("sweep.json", "trials", *TABLE_FILES))


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


def trials_dir(folder: Path) -> Path | None:
    """The folder holding trial folders: <sweep>/trials, or folder itself if it holds */row.json."""
    if (folder / "trials").is_dir():
        return folder / "trials"
    return folder if _trial_folders(folder) else None


def _trial_folders(tdir: Path) -> list[Path]:
    # Hidden names are landings in progress (pathlib's '*' matches them too).
    return sorted(p.parent for p in tdir.glob("*/row.json") if not p.parent.name.startswith("."))


# ---------------------------------------------------------------- sweep.json

def _digest(info: Mapping) -> str:
    body = {k: v for k, v in info.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def write_info(sdir: Path, info: dict) -> dict:
    """Write sweep.json with the sha256 of its content (checked on every read)."""
    info = {**info, "sha256": _digest(info)}
    atomic_write(sdir / "sweep.json", json.dumps(info, indent=1, default=str))
    return info


def read_info(sdir: Path) -> dict:
    """sweep.json, verified; FolderError naming the file and the fix when absent or damaged."""
    f = sdir / "sweep.json"
    if not f.is_file():
        known = sorted(p.parent.name for p in runs_root().glob("*/sweep.json"))
        raise FolderError(f"no sweep at {sdir} (no sweep.json); known sweeps: {', '.join(known) or 'none'}")
    fix = ("delete it and rerun the sweep's `python -m sweep run` command: it is written again "
           "and the landed trials are kept")
    try:
        info = json.loads(f.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FolderError(f"{f} is damaged (not readable JSON: {e}); {fix}") from None
    ids = info.get("expected_trial_ids") if isinstance(info, dict) else None
    if not (isinstance(ids, list) and all(isinstance(i, str) for i in ids) and len(set(ids)) == len(ids)
            and all(isinstance(info.get(k), str) for k in ("name", "grid", "fidelity"))):
        raise FolderError(f"{f} is damaged (needs name, grid, fidelity and a list of unique "
                          f"expected_trial_ids); {fix}")
    if "sha256" in info and info["sha256"] != _digest(info):
        raise FolderError(f"{f} is damaged (its content does not match its recorded sha256); {fix}")
    return info


def sweep_info(sweep_dir: str | os.PathLike) -> dict:
    """sweep.json of a folder, verified; {} when absent (a bare folder of trials has none)."""
    return read_info(Path(sweep_dir)) if (Path(sweep_dir) / "sweep.json").exists() else {}


def expected_ids(info: Mapping) -> list[str] | None:
    ids = info.get("expected_trial_ids")
    return None if ids is None else [str(i) for i in ids]


def rerun_hint(sdir: Path) -> str:
    try:
        return read_info(sdir).get("command") or "the sweep's `python -m sweep run` command"
    except FolderError:
        return "the sweep's `python -m sweep run` command"


# ---------------------------------------------------------------- rows and trial folders

def new_row(flat: Mapping, *, sweep: str, attempt: int, **fields) -> dict:
    """The one row builder: a trial's config columns and identity, status ERROR until the trial
    sets OK. Trial rows, and the crash rows the driver writes for a process that died, start here."""
    return {**flat, "sweep": sweep, "attempt": attempt, "status": "ERROR", "error_class": "",
            "error_message": "", **fields}


def write_row(trial_dir: Path, row: Mapping) -> None:
    atomic_write(Path(trial_dir) / "row.json", json.dumps(dict(row), indent=1, default=str))


def read_row(trial_dir: Path) -> dict:
    """row.json of a trial folder, verified against landed.json when the driver landed it."""
    f = trial_dir / "row.json"
    fix = (f"delete the folder {trial_dir} and rerun {rerun_hint(_sweep_of(trial_dir))} "
           "to redo that trial")
    try:
        data = f.read_bytes()
        row = json.loads(data)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FolderError(f"{f} is damaged (not readable JSON: {e}); {fix}") from None
    if not (isinstance(row, dict) and isinstance(row.get("trial_id"), str)
            and row.get("status") in ("OK", "ERROR")):
        raise FolderError(f"{f} is damaged (not a row: needs trial_id and status OK/ERROR); {fix}")
    landed = trial_dir / LANDED
    if landed.exists():
        try:
            want = json.loads(landed.read_text())["sha256"]["row.json"]
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
            raise FolderError(f"{landed} is damaged ({type(e).__name__}: {e}); {fix}") from None
        if hashlib.sha256(data).hexdigest() != want:
            raise FolderError(f"{f} is damaged (does not match the sha256 recorded when it landed); {fix}")
    if trial_dir.parent.name == "trials" and row["trial_id"] != trial_dir.name:
        raise FolderError(f"{f} is damaged (holds trial {row['trial_id']}, not {trial_dir.name}); {fix}")
    return row


def _sweep_of(trial_dir: Path) -> Path:
    return trial_dir.parent.parent if trial_dir.parent.name == "trials" else trial_dir.parent


def read_rows(folder: str | os.PathLike) -> dict[str, dict]:
    """trial_id -> row as written (raw), for every trial folder of a sweep; verified."""
    tdir = trials_dir(Path(folder))
    return {} if tdir is None else {r["trial_id"]: r for r in map(read_row, _trial_folders(tdir))}


def land(sdir: Path, trial_id: str, fill: Callable[[Path], None]) -> dict:
    """fill(folder) writes a trial folder (row.json at least); it lands as trials/<trial_id> in one
    rename, with landed.json recording each file's sha256. Returns the row.

    A replaced folder (an errored attempt being retried) is first moved aside, so a kill at any
    point leaves either the old folder, the new one, or a hidden leftover that recover() resolves:
    an interrupted landing is redone, never counted as done.
    """
    tdir = sdir / "trials"
    tdir.mkdir(parents=True, exist_ok=True)
    staged = tdir / f".landing-{trial_id}-{os.getpid()}"
    shutil.rmtree(staged, ignore_errors=True)
    fill(staged)
    row = json.loads((staged / "row.json").read_text())
    sums = {p.relative_to(staged).as_posix(): sha256_file(p) for p in sorted(staged.rglob("*")) if p.is_file()}
    atomic_write(staged / LANDED, json.dumps({"trial_id": trial_id, "landed_at": now(), "sha256": sums}, indent=1))
    dest, old = tdir / trial_id, tdir / f".replaced-{trial_id}"
    if dest.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dest, old)
    os.replace(staged, dest)
    shutil.rmtree(old, ignore_errors=True)
    return row


def recover(sdir: Path) -> list[str]:
    """Resolve what killed landings left (call with the driver lock held); returns what was done."""
    done = []
    tdir = sdir / "trials"
    for p in sorted(tdir.glob(".landing-*")) if tdir.is_dir() else []:
        shutil.rmtree(p, ignore_errors=True)          # never renamed into place: redo the trial
        done.append(f"removed the interrupted landing {p.name}")
    for p in sorted(tdir.glob(".replaced-*")) if tdir.is_dir() else []:
        dest = tdir / p.name[len(".replaced-"):]
        if dest.exists():
            shutil.rmtree(p, ignore_errors=True)      # the new folder landed; drop the old one
        else:
            os.replace(p, dest)                       # killed between the renames: keep the old
            done.append(f"restored {dest.name} (its replacement had not landed)")
    return done


# ---------------------------------------------------------------- the ledger

@dataclass(frozen=True)
class Ledger:
    """Expected trials (sweep.json) against the rows found. expected is None without sweep.json."""

    expected: list[str] | None
    done: list[str]          # status OK
    errored: list[str]       # status ERROR
    missing: list[str]       # expected, no row yet
    unexpected: list[str]    # rows whose id the sweep does not expect (e.g. an older grid)
    retry: list[str]         # errored with an attempt left

    @property
    def pending(self) -> list[str]:
        return self.missing + self.retry

    def counts(self) -> dict[str, int | None]:
        return {"expected": None if self.expected is None else len(self.expected), "done": len(self.done),
                "errored": len(self.errored), "missing": len(self.missing), "unexpected": len(self.unexpected)}

    def line(self) -> str:
        return ", ".join(f"{k} {'?' if v is None else v}" for k, v in self.counts().items()
                         if k != "unexpected" or v)


def ledger(rows: pd.DataFrame | Mapping[str, Mapping], info: Mapping) -> Ledger:
    """expected = done + errored + missing when sweep.json lists the expected ids.

    rows: a results DataFrame (results.load) or trial_id -> row (read_rows)."""
    if isinstance(rows, pd.DataFrame):
        recs = rows.to_dict("records")
        rows = {str(r["trial_id"]): r for r in recs}
    exp = expected_ids(info)
    counted = [t for t in rows if exp is None or t in set(exp)]
    errored = sorted(t for t in counted if rows[t]["status"] == "ERROR")

    def attempt(t: str) -> int:
        a = rows[t].get("attempt")
        return 1 if a is None or pd.isna(a) else int(a)
    return Ledger(expected=exp,
                  done=sorted(t for t in counted if rows[t]["status"] == "OK"),
                  errored=errored,
                  missing=[] if exp is None else [t for t in exp if t not in rows],
                  unexpected=sorted(t for t in rows if t not in counted),
                  retry=[t for t in errored if attempt(t) < MAX_ATTEMPTS])


# ---------------------------------------------------------------- one driver at a time

@contextlib.contextmanager
def driver_lock(sdir: Path) -> Iterator[None]:
    """Hold the sweep folder for one driver. flock, not a pid file: the OS releases it when the
    holder dies, so a killed driver never blocks the next one (local file systems; NFS needs
    its lock daemon)."""
    sdir.mkdir(parents=True, exist_ok=True)
    f = open(sdir / ".lock", "a+")
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise FolderError(f"sweep {sdir.name} is already being run ({holder}); one driver per sweep "
                              f"folder: wait for it (python -m sweep status --name {sdir.name}) "
                              "or choose another --name") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()} since {now()}\n")
        f.flush()
        yield
    finally:
        f.close()   # closing drops the flock


# ---------------------------------------------------------------- the table

def update_table(sdir: Path, row: Mapping) -> str:
    """Upsert one landed row into results.parquet/.csv (not a rebuild). A missing or unreadable
    table is rebuilt from the trial folders instead; returns 'updated' or why it rebuilt."""
    parquet = sdir / "results.parquet"
    try:
        df = read_table(parquet) if parquet.is_file() else None
        why = "no table yet"
    except ResultsError as e:
        df, why = None, f"the table was unreadable: {e}"
    if df is None:
        rebuild(sdir)
        return f"rebuilt the table from the trial folders ({why})"
    new = frame([dict(row)], str(sdir))
    kept = df[df["trial_id"] != row["trial_id"]]
    write_table(pd.concat([kept.astype(object), new.astype(object)], ignore_index=True), sdir)
    return "updated"


def rebuild(sweep: str | os.PathLike) -> pd.DataFrame:
    """Rebuild the table from the sweep's trial folders, write it (atomically), return it."""
    sdir = resolve(sweep)
    rows = read_rows(sdir)
    if not rows:
        raise ResultsError(f"no trial folders with row.json in {sdir}")
    df = frame(list(rows.values()), str(sdir))
    write_table(df, sdir)
    df.attrs.update(source=str(sdir), sweep_dir=str(sdir))
    return df


def load(name_or_path: str | os.PathLike) -> pd.DataFrame:
    """The results table of a sweep, one typed row per trial (errored trials included).

    name_or_path: a sweep name under runs_root(), a sweep folder, a results.parquet/.csv file,
    or a folder of trial folders. On a running sweep it returns the rows so far: trial folders
    win over the table when they have more rows or a newer row.json (a resumed trial).
    df.attrs['source'] names what was read; df.attrs['sweep_dir'] the sweep folder, if any.
    """
    path = resolve(name_or_path)
    sdir = path.parent if path.is_file() else path
    if path.is_file():
        df, source = read_table(path), path
    else:
        table = next((path / n for n in TABLE_FILES if (path / n).is_file()), None)
        tdir = trials_dir(path)
        folders = _trial_folders(tdir) if tdir else []
        if table is None and not folders:
            raise ResultsError(f"no results in {path}: no results.parquet/.csv and no trial folders with row.json")
        df, source = (read_table(table), table) if table is not None else (None, None)
        newest = max(((f / "row.json").stat().st_mtime for f in folders), default=0.0)
        if df is None or len(folders) > len(df) or (
                folders and len(folders) == len(df) and newest > table.stat().st_mtime):
            df, source = frame(list(read_rows(path).values()), str(path)), tdir
    if (sdir / "sweep.json").exists():
        read_info(sdir)   # verified even when only the table is read
    df.attrs.update(source=str(source), sweep_dir=str(sdir))
    return df
