"""A distillation set larger than memory: the training crops are planned, then written as
shards, each by its own job (crops, teacher targets, log-mel features), resumably; the paper
preset is sized in samples seen, and a corpus too small for it is refused before anything runs."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from students.data import target_scaling
from sweep import context
from sweep.config import SweepConfig
from teacher import builtin, cache
from teacher.audio import SAMPLE_RATE
from teacher.errors import CorpusError

needs_espeak = pytest.mark.skipif(builtin.shutil.which("espeak-ng") is None,
                                  reason="espeak-ng not installed (apt-get install espeak-ng)")


@needs_espeak
def test_a_streamed_builtin_set_is_written_shard_by_shard_and_resumes(tmp_path):
    dset, _ = cache.build_or_load("builtin", "resemblyzer", seed=0, n_eval_clips=8, n_heldout=6,
                                  cache_dir=tmp_path, stream=True)
    assert dset.heldout.all() and len(dset.crops) == 6     # only the held-out crops in memory
    ran = []

    def run(jobs):
        ran.extend(j[2] for j in jobs)
        for job in jobs:
            context.build_shard(*job)

    shards = context._stream(dset, 16, 40, run, log=lambda *a: None)
    assert ran == [0, 1, 2] and len(shards) == 40 and len(shards.manifest["files"]) == 3
    x = np.stack([a.numpy() for a, _ in shards.records()])
    y = np.stack([b.numpy() for _, b in shards.records()])
    assert x.shape == (40, 96, 64) and y.shape == (40, 256)
    mean, scale = shards.scaling()             # from the shards' sums, as if from all targets
    want_mean, want_scale = target_scaling(y)
    assert np.allclose(mean, want_mean, atol=1e-6) and scale == pytest.approx(want_scale, rel=1e-5)
    # A shard holds the teacher's targets and the log-mel of its own crops, drawn from texts
    # the held-out crops and probe clips do not use.
    plan = json.loads((shards.folder / context.PLAN_JSON).read_text())
    crops, sources, _ = cache.stream_crops(dset.path, 1, plan[1])
    np.testing.assert_allclose(context._logmel(crops), x[16:32], atol=1e-5)
    np.testing.assert_allclose(cache.teacher_targets(dset.path, crops)[0], y[16:32], atol=1e-5)
    used = {builtin.text_of(s) for name in ("sources.json", "eval/sources.json")
            for s in json.loads((dset.path / name).read_text())}
    assert not {builtin.text_of(s) for s in sources} & used
    # Stopped after two shards: only the missing one is written again.
    (shards.folder / "shard-00001.json").unlink()
    (shards.folder / "shards.json").unlink()
    ran.clear()
    again = context._stream(dset, 16, 40, run, log=lambda *a: None)
    assert ran == [1] and len(again) == 40
    np.testing.assert_allclose(np.stack([b.numpy() for _, b in again.records()]), y, atol=1e-5)


def test_the_training_size_comes_from_the_corpus_and_max_passes(tmp_path):
    # Built-in: synthesised to what max_passes needs. A user corpus: every crop it has, and
    # refused, in one line, when the trials would pass over it more than max_passes times.
    sc = SweepConfig(n_crops=0, shard_size=8, max_passes=4)
    assert context.training_size(sc, samples_seen=1000) == 250
    with pytest.raises(ValueError, match="n_crops 0 .* needs shard_size > 0"):
        SweepConfig(n_crops=0)
    root = tmp_path / "speech"
    root.mkdir()
    for i in range(10):
        sf.write(root / f"{i}.wav", np.random.default_rng(i).normal(0, 0.1, 3 * SAMPLE_RATE), SAMPLE_RATE)
    user = SweepConfig(corpus=str(root), n_crops=0, shard_size=8, max_passes=4)
    n = context.training_size(user, samples_seen=40)
    assert n == 3 * 9                    # 3 crops per file; one file of 10 is held out
    with pytest.raises(CorpusError, match=r"too small .* 1,000 samples, 37 passes over its 27 "
                                          r"training crops \(max_passes 4\); .* at least 250 crops") as e:
        context.training_size(user, samples_seen=1000)
    assert "\n" not in str(e.value)


def test_paper_fidelity_on_a_small_corpus_is_refused_before_anything_runs(tmp_path):
    root = tmp_path / "speech"
    root.mkdir()
    for i in range(4):
        sf.write(root / f"{i}.wav", np.random.default_rng(i).normal(0, 0.1, 2 * SAMPLE_RATE), SAMPLE_RATE)
    grid = tmp_path / "g.yaml"
    grid.write_text(f"name: g\nshared: {{corpus: {root}, depth: tiny}}\naxes: {{alpha: [1.0]}}\n")
    cache_dir = tmp_path / "cache"
    p = subprocess.run([sys.executable, "-m", "sweep", "trial", "--grid", str(grid), "--index", "0",
                        "--fidelity", "paper"],
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "FRILL_CACHE": str(cache_dir),
                            "FRILL_RESULTS": str(tmp_path / "runs")})
    assert p.returncode != 0
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert "is too small for fidelity paper" in lines[0] and "25,600,000 samples" in lines[0]
    assert not cache_dir.exists()        # no set, no shard, no teacher pass
