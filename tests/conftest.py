import os
from pathlib import Path

import pytest

# One cache for the whole test session (the distillation set is built once), kept apart
# from the user's cache and results.
_ROOT = Path(os.environ.get("FRILL_TEST_ROOT", Path(__file__).resolve().parent.parent / ".cache" / "tests"))
os.environ.setdefault("FRILL_CACHE", str(_ROOT / "cache"))


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    """A private results/runs folder for tests that run sweeps."""
    d = tmp_path / "runs"
    monkeypatch.setenv("FRILL_RESULTS", str(d))
    return d


@pytest.fixture(scope="session")
def smoke_sweep(tmp_path_factory):
    """The smoke grid run once through Ray Tune (`python -m sweep run --grid smoke`): a real
    sweep folder shared by the sweep and notebook tests. Returns (runs_dir, exit code, output)."""
    import subprocess
    import sys
    runs = tmp_path_factory.mktemp("smoke") / "runs"
    p = subprocess.run([sys.executable, "-m", "sweep", "run", "--grid", "smoke"],
                       env={**os.environ, "FRILL_RESULTS": str(runs)},
                       capture_output=True, text=True, timeout=900)
    return runs, p.returncode, p.stdout + p.stderr
