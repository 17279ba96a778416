"""The sweep folder (results/folder.py) on small real folders: every file read back is verified,
damage is one line naming the file and the fix, landings are whole or redone, one driver at a time.
No Ray and no TF here; the driver's end-to-end faults are in test_sweep.py."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import results
from results import folder
from results.folder import FolderError
from tests.conftest_results import make_fixture_sweep

REPO = Path(__file__).resolve().parent.parent


def _cli(*args, runs: Path, mod: str = "sweep"):
    return subprocess.run([sys.executable, "-m", mod, *args], capture_output=True, text=True,
                          env={**os.environ, "FRILL_RESULTS": str(runs)}, timeout=300, cwd=REPO)


def _one_line_error(p, *patterns):
    assert p.returncode == 2, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in p.stderr, p.stderr
    for pat in patterns:
        assert pat in lines[0], (pat, lines[0])
    return lines[0]


@pytest.fixture
def landed(runs_dir):
    """A sweep folder as the driver leaves it: sweep.json with its sha256, three landed trials."""
    sdir = runs_dir / "fx"
    src = make_fixture_sweep(runs_dir / "src", "fx", n_errors=1, n_missing=29)
    info = json.loads((src / "sweep.json").read_text())
    info["command"] = "python -m sweep run --grid g.yaml --name fx --fidelity smoke"
    folder.write_info(sdir, info)
    for d in sorted((src / "trials").iterdir()):
        row = json.loads((d / "row.json").read_text())
        folder.land(sdir, d.name, lambda tmp, row=row: (tmp.mkdir(), folder.write_row(tmp, row),
                                                        (tmp / "model.tflite").write_bytes(b"TFL3" * 8)))
    return sdir


def _trial(sdir: Path, i: int = 0) -> Path:
    return sorted(p for p in (sdir / "trials").iterdir() if not p.name.startswith("."))[i]


def test_landed_folder_records_checksums_and_reads_back(landed):
    rows = folder.read_rows(landed)
    assert len(rows) == 3
    t = _trial(landed)
    sums = json.loads((t / "landed.json").read_text())["sha256"]
    assert set(sums) == {"row.json", "model.tflite"}
    info = folder.read_info(landed)
    assert len(info["sha256"]) == 64 and len(info["expected_trial_ids"]) == 32
    book = folder.ledger(rows, info)
    assert (len(book.done), len(book.errored), len(book.missing)) == (2, 1, 29)
    assert book.retry == book.errored      # attempt 1 errored: one retry left
    assert book.line() == "expected 32, done 2, errored 1, missing 29"


@pytest.mark.parametrize("damage", ["truncated", "edited", "not_a_row", "other_trial", "landed_json"])
def test_damaged_row_is_one_line_naming_file_and_fix(landed, damage):
    t = _trial(landed, 1)
    f = t / "row.json"
    row = json.loads(f.read_text())
    if damage == "truncated":
        f.write_text(f.read_text()[:50])
    elif damage == "edited":                 # valid JSON, but not what landed
        f.write_text(json.dumps({**row, "probe_acc_mean": 0.99}))
    elif damage == "not_a_row":
        (t / "landed.json").unlink()
        f.write_text("[1, 2]")
    elif damage == "other_trial":
        (t / "landed.json").unlink()
        f.write_text(json.dumps({**row, "trial_id": "0123456789ab"}))
    else:
        (t / "landed.json").write_text("{")
    with pytest.raises(FolderError) as e:
        folder.read_rows(landed)
    msg = str(e.value)
    assert "damaged" in msg and f"delete the folder {t}" in msg and "python -m sweep run --grid g.yaml" in msg
    assert "\n" not in msg
    # The CLIs say the same in one line, exit 2: status, and load() behind report.
    _one_line_error(_cli("status", "--name", "fx", runs=landed.parent), str(t), "damaged")
    os.utime(f, (time.time() + 60,) * 2)
    with pytest.raises(results.ResultsError, match="damaged"):
        results.load(landed)


@pytest.mark.parametrize("damage", ["truncated", "edited", "no_ids", "duplicate_ids"])
def test_damaged_sweep_json_is_one_line_with_the_fix(landed, damage):
    f = landed / "sweep.json"
    info = json.loads(f.read_text())
    unsummed = {k: v for k, v in info.items() if k != "sha256"}   # shape checks, no checksum
    f.write_text({"truncated": f.read_text()[:30],
                  "edited": json.dumps({**info, "fidelity": "paper"}),
                  "no_ids": json.dumps({k: v for k, v in unsummed.items() if k != "expected_trial_ids"}),
                  "duplicate_ids": json.dumps({**unsummed, "expected_trial_ids": ["a", "a"]})}[damage])
    line = _one_line_error(_cli("status", "--name", "fx", runs=landed.parent), str(f), "damaged",
                           "delete it and rerun")
    assert "JSONDecodeError" not in line
    with pytest.raises(results.ResultsError, match="sweep.json is damaged"):
        results.load(landed)


def test_interrupted_landings_are_redone_never_counted(landed):
    tdir = landed / "trials"
    t = _trial(landed)
    row = json.loads((t / "row.json").read_text())
    # Killed mid-landing: a staged folder that never got its rename.
    staged = tdir / f".landing-{t.name}-999"
    staged.mkdir()
    (staged / "row.json").write_text(json.dumps({**row, "status": "OK"}))
    # Killed between moving an errored attempt aside and renaming its retry into place.
    err = next(d for d in tdir.iterdir() if json.loads((d / "row.json").read_text())["status"] == "ERROR")
    os.replace(err, tdir / f".replaced-{err.name}")
    assert len(folder.read_rows(landed)) == 2            # neither counts as landed
    notes = folder.recover(landed)
    assert any("interrupted landing" in n for n in notes) and any("restored" in n for n in notes)
    assert not list(tdir.glob(".*")) and len(folder.read_rows(landed)) == 3


def test_retry_replaces_the_errored_attempt_whole(landed):
    rows = folder.read_rows(landed)
    tid = next(t for t, r in rows.items() if r["status"] == "ERROR")
    ok = next(r for r in rows.values() if r["status"] == "OK")
    retry = {**ok, "trial_id": tid, "attempt": 2}
    folder.land(landed, tid, lambda tmp: (tmp.mkdir(), folder.write_row(tmp, retry)))
    after = folder.read_rows(landed)
    assert after[tid]["status"] == "OK" and after[tid]["attempt"] == 2
    assert not (landed / "trials" / tid / "model.tflite").exists()   # the old folder is gone
    assert not list((landed / "trials").glob(".*"))


def test_table_is_upserted_one_row_at_a_time(landed):
    folder.rebuild(landed)
    rows = folder.read_rows(landed)
    tid = next(t for t, r in rows.items() if r["status"] == "ERROR")
    ok = next(r for r in rows.values() if r["status"] == "OK")
    assert folder.update_table(landed, {**ok, "trial_id": tid, "attempt": 2}) == "updated"
    df = pd.read_parquet(landed / "results.parquet")
    assert len(df) == 3 and (df["status"] == "OK").all() and df.set_index("trial_id").attempt[tid] == 2
    assert results.schema.problems(results.load(landed / "results.parquet")) == []
    # A damaged table is rebuilt from the trial folders (the truth), and says so.
    (landed / "results.parquet").write_bytes(b"PAR1garbage")
    note = folder.update_table(landed, ok)
    assert note.startswith("rebuilt the table") and "damaged" in note
    assert len(pd.read_parquet(landed / "results.parquet")) == 3


def test_damaged_table_without_trial_folders_names_the_rebuild(tmp_path):
    d = make_fixture_sweep(tmp_path / "s", write_table=True)
    (d / "results.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(results.ResultsError, match=r"results.parquet is damaged.*python -m results rebuild"):
        results.load(d / "results.parquet")
    (d / "results.csv").write_bytes(b"\xff\xfe\x00garbage,\n\x00")
    with pytest.raises(results.ResultsError):
        results.load(d / "results.csv")


@pytest.mark.parametrize("name", ["../../x", "a/b", ".hidden", "", "x" * 81, "sp ace", "..", "-rf"])
def test_bad_sweep_names_are_refused_before_anything_is_written(runs_dir, name):
    with pytest.raises(FolderError, match="bad sweep name"):
        folder.sweep_dir(name)
    assert not runs_dir.exists() and not (runs_dir.parent.parent / "x").exists()


def test_cli_run_with_a_bad_name_writes_nothing(runs_dir, tmp_path):
    p = _cli("run", "--grid", "smoke", "--name", "../../escape", runs=runs_dir)
    _one_line_error(p, "bad sweep name")
    assert not (runs_dir.parent / "escape").exists() and not runs_dir.exists()


def test_one_driver_per_sweep_folder_and_a_dead_one_blocks_nothing(runs_dir):
    sdir = runs_dir / "busy"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from results import folder\n"
         "with folder.driver_lock(Path(sys.argv[1])):\n print('held', flush=True); time.sleep(600)", str(sdir)],
        stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FolderError, match=rf"sweep busy is already being run \(pid {holder.pid} "):
            with folder.driver_lock(sdir):
                pass
        # The CLI refuses before it starts Ray or writes anything.
        p = _cli("run", "--grid", "smoke", "--name", "busy", runs=runs_dir)
        _one_line_error(p, "already being run", f"pid {holder.pid}")
        assert not (sdir / "sweep.json").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with folder.driver_lock(sdir):     # the OS dropped the dead holder's lock
        assert f"pid {os.getpid()}" in (sdir / ".lock").read_text()


def test_reference_run_still_loads_144_rows():
    df = results.load(REPO / "results" / "reference")
    assert len(df) == 144 and df.trial_id.is_unique
    info = folder.sweep_info(REPO / "results" / "reference")
    assert folder.ledger(df, info).counts()["missing"] == 0


def test_cli_damaged_row_in_results_rebuild_is_one_line(landed):
    t = _trial(landed)
    (t / "row.json").write_text("{")
    _one_line_error(_cli("rebuild", str(landed), runs=landed.parent, mod="results"), "damaged", str(t))
