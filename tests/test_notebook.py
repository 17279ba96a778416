"""The exploration notebook runs headless, top to bottom, on a fresh clone.

A fresh clone has no sweep of its own: the notebook must open the committed reference run
(results/reference) by itself, with paths resolved from the repository root although Jupyter
runs it in notebooks/, using only what `make setup` installs (nbclient, ipykernel and the
venv's `python3` kernel).
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

import results
from results import explore

REPO = Path(__file__).resolve().parents[1]


def fresh_clone(dest: Path) -> Path:
    """What `git clone` of this working tree gives: tracked and new files, nothing git ignores
    (no results/runs, .cache or .venv). Copied from the tree so uncommitted edits are tested too."""
    files = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for f in filter(None, files):
        src = REPO / f
        if src.is_file() and not src.is_symlink():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f)
    return dest


def test_notebook_opens_the_reference_run_on_a_fresh_clone(tmp_path, monkeypatch):
    clone = fresh_clone(tmp_path / "clone")
    assert not (clone / "results" / "runs").exists() and (clone / "results" / "reference" / "results.csv").is_file()
    for var in ("FRILL_RESULTS", "FRILL_SWEEP", "JUPYTER_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PYTHONPATH", str(clone))       # the clone's code, not this tree's
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(clone / "notebooks" / "explore_results.ipynb", as_version=4)
    # "python3" is the kernel make setup installs into the venv; Jupyter runs in notebooks/.
    NotebookClient(nb, kernel_name="python3", timeout=300,
                   resources={"metadata": {"path": str(clone / "notebooks")}}).execute()  # raises on a cell error
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3, "the three plots should render inline"
    text = "".join(o.get("text", "") for o in outputs)
    assert f"144 trials read from {clone / 'results' / 'reference' / 'results.csv'}" in text


def test_pick_resolves_relative_paths_from_the_repo_root(tmp_path, monkeypatch):
    monkeypatch.setenv("FRILL_RESULTS", str(tmp_path / "runs"))
    monkeypatch.chdir(REPO / "notebooks")               # where Jupyter runs the notebook
    assert explore.repo_root() == REPO
    assert explore.pick("results/reference") == REPO / "results" / "reference"
    assert explore.pick(None) == REPO / "results" / "reference"   # no frill144 sweep here
    (tmp_path / "runs" / "frill144").mkdir(parents=True)
    assert explore.pick("") == "frill144" and explore.pick("mysweep") == "mysweep"
    assert explore.pick(str(tmp_path)) == tmp_path
    monkeypatch.chdir(tmp_path)                         # outside any checkout: this package's repo
    assert explore.repo_root() == REPO
    assert len(explore.open_sweep("results/reference")) == 144
    with pytest.raises(results.ResultsError, match="no sweep named 'nope'"):
        explore.open_sweep("nope")
