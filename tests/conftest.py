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
