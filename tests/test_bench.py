"""make bench's JSON: every figure present and typed, on a tiny real run (a 2-trial smoke sweep,
and the shard memory runs on the smoke set)."""
import json
import os
import subprocess
import sys

import pytest

FIGURES = {"sweep_core_utilisation": float, "trial_overhead_share": float,
           "teacher_calls_per_crop": float, "frill_vs_teacher_latency_ratio": float,
           "int8_vs_float_latency_ratio": float, "int8_vs_float_size_ratio": float,
           "tflite_conversion_seconds": dict, "trial_stage_seconds_median": dict,
           "sweep_minutes": float, "shard_stream_peak_rss_ratio_10x": float,
           "in_memory_peak_rss_ratio_10x": float, "shard_vs_memory_distill_r2": dict}


@pytest.mark.slow
def test_tiny_bench_writes_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    p = subprocess.run([sys.executable, "-m", "sweep.bench", "--tiny", "--out", str(out)],
                       env={**os.environ}, capture_output=True, text=True, timeout=1200)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    doc = json.loads(out.read_text())
    figs = doc["figures"]
    for name, kind in FIGURES.items():
        assert isinstance(figs[name], kind), (name, figs[name])
    assert 0 < figs["shard_stream_peak_rss_ratio_10x"] and 0 < figs["in_memory_peak_rss_ratio_10x"]
    assert len(figs["shard_vs_memory_distill_r2"]["memory_seeds_0_1_2"]) == 3
    assert 0 < figs["sweep_core_utilisation"] <= 1.05
    assert 0 < figs["trial_overhead_share"] < 1
    assert figs["teacher_calls_per_crop"] == 1.0          # built once, shared by both trials
    assert figs["int8_vs_float_size_ratio"] < 1
    assert set(figs["trial_stage_seconds_median"]) >= {"setup", "build", "train", "export", "measure", "evaluate"}
    for name in ("sweep_core_utilisation", "teacher_calls_per_crop", "frill_vs_teacher_latency_ratio"):
        assert name in doc["how"]
    hist = [json.loads(ln) for ln in (tmp_path / "bench.history.jsonl").read_text().splitlines()]
    assert len(hist) == 1 and hist[0]["figures"] == figs and hist[0]["tiny"] is True


def test_history_appends_figures_with_commit_and_machine(tmp_path):
    from sweep import bench

    doc = json.loads((bench.OUT).read_text())
    hist = bench.history_path(tmp_path / "bench.json")
    assert hist == tmp_path / "bench.history.jsonl"
    assert bench.history_path(bench.OUT) == bench.OUT.with_name("history.jsonl")
    for _ in range(2):
        bench.append_history(doc, hist)
    lines = [json.loads(ln) for ln in hist.read_text().splitlines()]
    assert len(lines) == 2 and lines[0]["figures"] == doc["figures"]
    assert len(lines[1]["commit"]) == 12 and int(lines[1]["commit"], 16) >= 0
    assert {"host", "cpu", "cpus", "platform", "python"} <= set(lines[1]["machine"])
    assert isinstance(lines[1]["dirty"], bool)


def test_committed_history_ends_with_latest():
    from sweep import bench

    hist = bench.OUT.with_name("history.jsonl")
    last = json.loads(hist.read_text().splitlines()[-1])
    latest = json.loads(bench.OUT.read_text())
    assert last["figures"] == latest["figures"] and last["written_at"] == latest["written_at"]
    assert last["commit"] and last["machine"]["cpus"] == latest["machine"]["cpus"]
