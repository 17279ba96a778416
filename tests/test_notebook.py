"""The exploration notebook runs headless, top to bottom, without a cell error.

Runs against a real smoke sweep (the session's `smoke_sweep` fixture: two tiny students trained,
converted and measured through Ray Tune).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "explore_results.ipynb"
KERNEL = "frill-sweep-test"


@pytest.fixture
def kernel_env(tmp_path, monkeypatch):
    """A kernelspec that runs *this* interpreter (the .venv), found before any user-level one."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": KERNEL, "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    return tmp_path


def test_notebook_executes(kernel_env, monkeypatch, smoke_sweep):
    runs, code, out = smoke_sweep
    assert code == 0, out
    monkeypatch.setenv("FRILL_RESULTS", str(runs))
    monkeypatch.setenv("FRILL_SWEEP", "smoke")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, kernel_name=KERNEL, timeout=180,
                   resources={"metadata": {"path": str(kernel_env)}}).execute()  # raises on any cell error
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3, "the three plots should render inline"
    text = "".join(o.get("text", "") for o in outputs)
    assert "2 trials read from" in text
