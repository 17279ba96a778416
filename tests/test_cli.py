"""`python -m sweep trial` as a user meets it: a quiet console, and a failing trial that says
where its traceback is and, with --pdb (make trial PDB=1), stops in the failing frame."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FAULTY = """\
name: faulty
shared: {fidelity: smoke, depth: tiny, bottleneck: 64, rank: 16, n_heldout: 64, n_eval_clips: 120}
axes:
  alpha: [0.25]
  learning_rate: [1.0e+12]
"""
# What TensorFlow, absl and LiteRT print at start-up and on conversion (as seen before quieting).
NOISE = re.compile(r"absl::InitializeLog|cudart_stub|cuda drivers|cuInit|oneDNN|cpu_feature_guard|XNNPACK"
                   r"|WARNING:absl|trackable_obj|is deprecated|^[IWEF]\d{4} \d\d:\d\d", re.M)


def _trial(*args: str, runs: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sweep", "trial", *args], input=stdin, text=True,
                          capture_output=True, env={**os.environ, "FRILL_RESULTS": str(runs)}, cwd=REPO,
                          timeout=600)


def test_smoke_trial_prints_no_tensorflow_startup_lines(tmp_path):
    p = _trial("--grid", "smoke", "--index", "0", runs=tmp_path / "runs")
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-3000:]
    assert re.search(r"^status +OK$", p.stdout, re.M) and "trial folder:" in p.stdout
    assert NOISE.findall(out) == [], out[:3000]
    assert p.stderr.strip() == "", p.stderr[:3000]   # nothing but our own lines, on stdout


def test_error_row_names_its_error_txt(tmp_path):
    grid = tmp_path / "faulty.yaml"
    grid.write_text(FAULTY)
    p = _trial("--grid", str(grid), "--index", "0", runs=tmp_path / "runs")
    assert p.returncode == 1
    assert re.search(r"^status +ERROR$", p.stdout, re.M)
    m = re.search(r"traceback: (\S+error\.txt)", p.stderr)
    assert m, p.stderr[-2000:]
    assert "TrainingDiverged" in Path(m.group(1)).read_text()
    assert "--pdb" in p.stderr and "PDB=1" in p.stderr
    assert NOISE.findall(p.stdout + p.stderr) == []

    # --pdb: the exception reaches pdb's post-mortem in the frame that raised it.
    p = _trial("--grid", str(grid), "--index", "0", "--pdb", runs=tmp_path / "runs",
               stdin="p type(logs).__name__, batch\nwhere\nq\n")
    assert p.returncode == 1, p.stdout[-2000:] + p.stderr[-2000:]
    assert "(Pdb)" in p.stdout and "students/train.py" in p.stdout, p.stdout[-3000:]
    assert "('dict', " in p.stdout                   # locals of the failing frame are there
    assert "TrainingDiverged" in p.stderr and "post-mortem" in p.stderr
    assert not re.search(r"^status +ERROR$", p.stdout, re.M)   # no ERROR row in place of the debugger


def test_make_trial_pdb_passes_the_flag():
    p = subprocess.run(["make", "-n", "trial", "GRID=smoke", "INDEX=1", "PDB=1"], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    line = [ln for ln in p.stdout.splitlines() if "-m sweep trial" in ln]
    assert line and line[0].endswith("--pdb"), p.stdout
    p = subprocess.run(["make", "-n", "trial", "GRID=smoke"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert "--pdb" not in p.stdout
