"""results/: load, schema, atomic writes, Pareto frontier, plots, report, CLI.

Sweeps here are the FIXTURE from tests/conftest_results.py (synthetic rows shaped like the
driver's output), 32 expected trials: 29 OK, 2 ERROR, 1 missing.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import results
from results import schema
from results.pareto import best_under, frontier, pareto_mask
from tests.conftest_results import make_fixture_sweep

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def sweep(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("FRILL_RESULTS", str(tmp_path / "runs"))
    return make_fixture_sweep(tmp_path / "runs" / "fx", write_table=True)


def _cli(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "results", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=120)


def _row(path: Path) -> dict:
    return json.loads(path.read_text())


# ---------------------------------------------------------------- import hygiene

def test_importing_results_pulls_in_no_tensorflow_or_ray():
    code = ("import sys, results, results.plots, results.report, results.__main__\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'ray', 'tf_keras', 'keras'))\n"
            "print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


# ---------------------------------------------------------------- load

def test_load_by_name_folder_files_and_trial_folders(sweep):
    by_name = results.load("fx")
    assert len(by_name) == 31 and by_name.attrs["source"].endswith("results.parquet")
    assert results.problems(by_name) == []
    for src in (sweep, sweep / "results.parquet", sweep / "results.csv", sweep / "trials", str(sweep)):
        df = results.load(src)
        pd.testing.assert_frame_equal(df.reset_index(drop=True), by_name, check_like=False)
    assert (by_name["status"] == "ERROR").sum() == 2
    err = by_name[by_name["status"] == "ERROR"]
    assert err["latency_ms_p50"].isna().all() and err["tflite_bytes"].isna().all()
    assert (by_name.loc[by_name["status"] == "OK", "error_message"] == "").all()


def test_load_dtypes_follow_the_schema(sweep):
    df = results.load(sweep)
    for c in schema.COLUMNS:
        assert str(df[c.name].dtype) == str(pd.Series([], dtype=c.dtype).dtype), c.name
    assert df["probe_acc_language"].dtype == "float64"
    assert df["tflite_bytes"].dtype == "Int64" and df["qat"].dtype == "boolean"
    assert isinstance(df["started_at"].dtype, pd.DatetimeTZDtype)


def test_dtype_coercion_from_strings(tmp_path):
    """Row values as text (as a hand-edited row or CSV gives them) come back typed; 'False' is False."""
    ok = _row(next((make_fixture_sweep(tmp_path / "a") / "trials").glob("*/row.json")))
    ok.update(qat="False", frontend="true", alpha="2", tflite_bytes="1234", params=5.0, macs_per_patch=2.5,
              latency_ms_p50="0.75", started_at="2025-02-03T04:05:06Z", seed="0")
    d = tmp_path / "b" / "trials" / ok["trial_id"]
    d.mkdir(parents=True)
    (d / "row.json").write_text(json.dumps(ok))
    df = results.load(tmp_path / "b")
    r = df.iloc[0]
    assert (r["qat"], r["frontend"]) == (False, True)
    assert r["alpha"] == 2.0 and r["tflite_bytes"] == 1234 and r["params"] == 5
    assert pd.isna(r["macs_per_patch"])  # 2.5 in an int column is not silently truncated
    assert r["latency_ms_p50"] == 0.75 and r["started_at"] == pd.Timestamp("2025-02-03T04:05:06Z")
    assert r["schema_version"] == schema.SCHEMA_VERSION  # filled when row.json lacks it


def test_running_sweep_prefers_trial_folders_with_more_rows(sweep):
    assert len(results.load(sweep)) == 31
    # A trial finishes after the table was written: folders have more rows than the table.
    missing = json.loads((sweep / "sweep.json").read_text())["expected_trial_ids"][-1]
    row = _row(next((sweep / "trials").glob("*/row.json"))) | {"trial_id": missing}
    (sweep / "trials" / missing).mkdir()
    (sweep / "trials" / missing / "row.json").write_text(json.dumps(row))
    # ... and another is still landing (a hidden folder until its rename): not a row yet.
    (sweep / "trials" / ".landing-abcdefabcdef-1").mkdir()
    (sweep / "trials" / ".landing-abcdefabcdef-1" / "row.json").write_text('{"trial_id": "abc')
    df = results.load(sweep)
    assert len(df) == 32 and missing in set(df["trial_id"])
    assert df.attrs["source"].endswith("trials")


def test_damaged_row_json_is_one_line_naming_it_never_fewer_rows(sweep):
    f = sorted((sweep / "trials").glob("*/row.json"))[3]
    f.write_text(f.read_text()[:40])
    os.utime(f, (f.stat().st_mtime + 5,) * 2)     # newer than the table: load reads the folders
    with pytest.raises(results.ResultsError, match=f"{f} is damaged.*delete the folder {f.parent}") as e:
        results.load(sweep)
    assert "\n" not in str(e.value)


def test_newer_row_json_wins_over_the_table(sweep):
    f = next(p for p in (sweep / "trials").glob("*/row.json") if _row(p)["status"] == "ERROR")
    row = _row(next(p for p in (sweep / "trials").glob("*/row.json") if _row(p)["status"] == "OK"))
    row["trial_id"] = _row(f)["trial_id"]
    f.write_text(json.dumps(row))  # the errored trial was resumed and is OK now
    t = (sweep / "results.parquet").stat().st_mtime
    os.utime(f, (t + 5, t + 5))
    df = results.load(sweep)
    assert (df["status"] == "ERROR").sum() == 1


def test_rebuild_and_atomic_write(tmp_path):
    d = make_fixture_sweep(tmp_path / "s")
    df = results.rebuild(d)
    assert len(df) == 31 and (d / "results.parquet").is_file() and (d / "results.csv").is_file()
    assert not list(d.glob(".*.tmp")), "temp files must be renamed away"
    pd.testing.assert_frame_equal(results.load(d / "results.csv"), results.load(d / "results.parquet"))
    bad = df.assign(status=df["status"].replace({"ERROR": "FAILED"}))
    with pytest.raises(results.SchemaError, match="status must be OK or ERROR"):
        results.write_table(bad, tmp_path / "t")
    with pytest.raises(results.SchemaError, match="not in the schema.*latency_ms"):
        results.write_table(df.assign(latency_ms=1.0), tmp_path / "t")
    assert not (tmp_path / "t" / "results.parquet").exists()


def test_older_schema_table_is_one_clear_error(sweep):
    old = pd.read_parquet(sweep / "results.parquet").drop(columns=["latency_ms_p50", "quality_retained"])
    old.to_parquet(sweep / "old.parquet")
    with pytest.raises(results.SchemaError, match="older results schema.*latency_ms_p50") as e:
        results.load(sweep / "old.parquet")
    assert "\n" not in str(e.value)
    pd.read_parquet(sweep / "results.parquet").assign(schema_version=0).to_csv(sweep / "v0.csv", index=False)
    with pytest.raises(results.SchemaError, match="schema_version 0"):
        results.load(sweep / "v0.csv")
    f = next((sweep / "trials").glob("*/row.json"))
    f.write_text(json.dumps(_row(f) | {"schema_version": 0}))
    with pytest.raises(results.SchemaError, match="schema_version 0"):
        results.rebuild(sweep)


def test_bad_names_and_paths(sweep, tmp_path):
    with pytest.raises(results.ResultsError, match="no sweep named 'nope'.*fx"):
        results.load("nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(results.ResultsError, match="no results in"):
        results.load(tmp_path / "empty")
    with pytest.raises(results.ResultsError, match="no such file"):
        results.load(tmp_path / "x" / "results.parquet")


def test_ledger_counts(sweep):
    book = results.ledger(results.load(sweep), results.sweep_info(sweep))
    assert book.counts() == {"expected": 32, "done": 29, "errored": 2, "missing": 1, "unexpected": 0}


def test_readme_documents_every_column():
    text = (REPO / "results" / "README.md").read_text()
    block = text.split("<!-- columns:start -->\n")[1].split("\n<!-- columns:end -->")[0]
    assert block == schema.markdown_table(), "README column table is stale: paste `python -m results schema`"
    for c in schema.COLUMNS:
        assert f"| `{c.name}` |" in block
    assert "`probe_acc_<task>`" in block


# ---------------------------------------------------------------- pareto

def _hand_table() -> pd.DataFrame:
    """Hand-checked: a, b, c (tie with b) and e are on the latency frontier; d, f dominated by b;
    g errored, h and i have NaN, so never on it."""
    rows = [("a", "OK", 0.90, 5.0, 40), ("b", "OK", 0.80, 2.0, 30), ("c", "OK", 0.80, 2.0, 20),
            ("d", "OK", 0.70, 3.0, 1), ("e", "OK", 0.60, 1.0, 50), ("f", "OK", 0.80, 4.0, 30),
            ("g", "ERROR", 0.99, 0.5, 1), ("h", "OK", math.nan, 0.5, 1), ("i", "OK", 0.95, math.nan, 1)]
    df = pd.DataFrame(rows, columns=["trial_id", "status", "probe_acc_mean", "latency_ms_p50", "mib"])
    df["tflite_bytes"] = df.pop("mib") * results.BYTES_PER_MB
    df["trial_id"] = [f"{ch * 12}" if ch in "abcdef" else f"{ord(ch):012x}" for ch in df["trial_id"]]
    return schema.coerce(df).set_index(pd.Index(list("abcdefghi")))


def test_pareto_mask_hand_checked():
    df = _hand_table()
    assert list(df.index[pareto_mask(df)]) == ["a", "b", "c", "e"]
    # With size as a second cost, d (smallest) and c (smaller than b) join; b is dominated by c.
    both = pareto_mask(df, costs=("latency_ms_p50", "tflite_bytes"))
    assert list(df.index[both]) == ["a", "c", "d", "e"]
    assert list(frontier(df, cost="latency_ms_p50").index) == ["e", "b", "c", "a"]
    assert not pareto_mask(df.iloc[0:0]).any()
    assert not pareto_mask(df[df["status"] == "ERROR"]).any()


def test_best_under():
    df = _hand_table()
    assert best_under(df).name == "a"
    assert best_under(df, max_latency_ms=2.0).name == "c"  # ties b on quality and latency; smaller
    assert best_under(df, max_latency_ms=0.9) is None
    assert best_under(df, max_mb=25).name == "c"
    assert best_under(df, max_latency_ms=4.0, max_mb=10).name == "d"


def test_unknown_quality_column_names_the_available_ones(sweep):
    df = results.load(sweep)
    with pytest.raises(results.ResultsError, match="unknown quality column 'acc'.*probe_acc_mean.*probe_acc_language"):
        pareto_mask(df, quality="acc")
    with pytest.raises(results.ResultsError, match="available quality columns"):
        best_under(df, quality="acc")


# ---------------------------------------------------------------- plots and report

def test_cli_report_writes_page_markdown_and_plots_into_the_sweep_folder(sweep, tmp_path):
    """One report, written by the CLI (as `make report` does), checked whole: the page, its
    markdown twin and the plot files."""
    from results import plots

    out = _cli("report", "fx")
    assert out.returncode == 0, out.stderr
    html, md = (sweep / "report.html").read_text(), (sweep / "report.md").read_text()
    assert "data:image/png;base64," in html and "<img" in html and "src='plots/" not in html
    ledger_md = "| expected | done | errored | missing | unexpected |\n|---|---|---|---|---|\n| 32 | 29 | 2 | 1 | 0 |"
    assert ledger_md in md
    for text in (html, md):
        assert "ConverterError" in text and "Frontier: probe_acc_mean vs latency" in text
        assert "≤ 2 ms" in text and "≤ 10 MiB" in text and "fixture" in text
    assert "](plots/quality_vs_latency.png)" in md
    for stem in ("quality_vs_latency", "quality_vs_size", "axis_effects"):
        png, svg = sweep / "plots" / f"{stem}.png", sweep / "plots" / f"{stem}.svg"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
        assert b"<svg" in svg.read_bytes()[:2000]
    # Nothing plottable (all errored) still gives a figure, not an exception.
    df = results.load(sweep)
    plots.save(plots.quality_vs_cost(df[df["status"] == "ERROR"]), tmp_path, "empty")
    assert (tmp_path / "empty.png").stat().st_size > 0


@pytest.mark.parametrize("case", ["no_sweep", "no_table", "older_schema", "unknown_quality",
                                  "damaged_table", "damaged_sweep_json"])
def test_cli_errors_are_one_line_exit_2(sweep, tmp_path, case):
    (tmp_path / "empty").mkdir()
    pd.read_parquet(sweep / "results.parquet").drop(columns=["params"]).to_parquet(tmp_path / "old.parquet")
    args = {"no_sweep": ["report", "nope"], "no_table": ["report", str(tmp_path / "empty")],
            "older_schema": ["report", str(tmp_path / "old.parquet")],
            "unknown_quality": ["report", "fx", "--quality", "acc"],
            "damaged_table": ["report", str(tmp_path / "bad.parquet")],
            "damaged_sweep_json": ["report", "fx"]}[case]
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    if case == "damaged_sweep_json":
        (sweep / "sweep.json").write_text('{"name": "fx", "expected_trial_ids": [')
    out = _cli(*args)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in out.stderr, out.stderr
    assert not (tmp_path / "report.html").exists()


# ---------------------------------------------------------------- the report's summary and layout

@pytest.fixture(scope="module")
def newer(tmp_path_factory) -> Path:
    """FIXTURE sweep (the 144-trial grid) whose rows carry the newer columns (R², bootstrap
    intervals, per-task baselines, teacher size) that older tables such as results/reference lack."""
    return make_fixture_sweep(tmp_path_factory.mktemp("newer") / "nx", newer_columns=True, full=True)


@pytest.fixture(scope="module")
def newer_report(newer) -> dict:
    """Its report, written once for the tests that read it (plots are most of a report's time)."""
    from results.report import write_report

    return write_report(newer, newer.parent / "rep")


def test_summary_names_tasks_chance_teacher_floor_and_counts(newer, newer_report):
    md = newer_report["md"].read_text()
    summary = md.split("## Summary")[1].split("## Recommended students")[0]
    df = results.load(newer)
    ok = df[df["status"] == "OK"]
    assert "language (language ID over 10 languages, chance 0.10)" in summary
    assert "chance 0.33" in summary and "fidelity smoke" in summary and "Caveat:" in summary
    assert "the teacher loses to the floor (0.574 vs 0.694)" in summary
    n_floor = int((ok["probe_acc_mean"] > ok["logmel_probe_acc_mean"]).sum())
    n_teacher = int((ok["probe_acc_mean"] > ok["teacher_probe_acc_mean"]).sum())
    assert 0 < n_floor < len(ok)
    assert f"({n_teacher} of {len(ok)} students beat it)" in summary
    assert f"({n_floor} of {len(ok)} beat it;" in summary
    assert "held-out R²" in summary and "Bootstrap 95% intervals" in summary
    # Intervals reach the tables, and the report names neighbours whose gap is inside them.
    front = md.split("## Frontier: probe_acc_mean vs latency")[1].split("## Frontier")[0]
    assert "[0." in front and "R²" in front
    assert "Within each other's 95% interval" in front
    assert "| teacher size (MiB, TFLite) | 6.188 |" in md
    # Budget rows: each a different student.
    rec = md.split("## Recommended students")[1].split("## Frontier")[0]
    for part in rec.split("### Per size budget"):
        ids = [ln.split(" | ")[1] for ln in part.splitlines() if ln.startswith("| ≤")]
        assert len(ids) >= 2 and len(set(ids)) == len(ids), part


def test_indistinct_neighbours_hand_checked():
    from results.report import indistinct_neighbours

    front = pd.DataFrame({"trial_id": ["a", "b", "c", "d"], "probe_acc_mean": [0.50, 0.52, 0.60, 0.61],
                          "probe_acc_mean_ci_lo": [0.46, 0.49, 0.57, 0.60], "probe_acc_mean_ci_hi": [0.54, 0.55, 0.63, 0.62]})
    # a~b: 0.52 in [0.46, 0.54]; b, c apart; c~d: 0.61 in [0.57, 0.63] (though 0.60 is outside d's).
    assert indistinct_neighbours(front, "probe_acc_mean") == [("a", "b"), ("c", "d")]
    assert indistinct_neighbours(front.drop(columns=["probe_acc_mean_ci_lo"]), "probe_acc_mean") == []


def test_budget_rows_are_distinct_students_on_the_reference_run():
    from results.report import budget_ladder, recommendations

    df = results.load(REPO / "tests" / "data" / "reference-v1")
    # The old fixed budgets all picked one student: every student of this run is under 2 ms.
    fixed = recommendations(df, "probe_acc_mean", "max_latency_ms", (1.0, 2.0, 5.0, 10.0))
    assert len(fixed) == 1
    ok = df[df["status"] == "OK"]
    best = ok.loc[ok["probe_acc_mean"].idxmax()]
    ladder = budget_ladder(ok["latency_ms_p50"], best["latency_ms_p50"])
    assert ladder[0] >= ok["latency_ms_p50"].min() and ladder[-1] >= best["latency_ms_p50"] > ladder[-2]
    picks = recommendations(df, "probe_acc_mean", "max_latency_ms", ladder)
    ids = [r["trial_id"] for _, r in picks]
    assert len(ids) == len(set(ids)) >= 3 and ids[-1] == best["trial_id"]
    quality = [r["probe_acc_mean"] for _, r in picks]
    assert quality == sorted(quality)  # a looser budget never recommends a worse student
    assert budget_ladder(pd.Series([0.12, 3.0]), 3.0) == [0.2, 0.5, 1.0, 2.0, 5.0]


def test_report_tables_sit_in_their_own_scroll_box(newer_report):
    from results.report import CSS

    page = newer_report["html"].read_text()
    assert ".scroll{overflow-x:auto" in CSS and "max-width:1100px" in CSS
    assert page.count("<table") == page.count("<div class='scroll'><table") > 5
    assert "<h3>FRILL&#x27;s configuration in this sweep</h3>" in page


def _has_teacher_star(ax) -> bool:
    return any(c.get_gid() == "teacher" for c in ax.collections)


def test_plots_take_r2_and_draw_intervals_and_teacher_size(newer, sweep):
    from matplotlib.container import ErrorbarContainer

    from results import plots

    df = results.load(newer)
    fig = plots.quality_vs_cost(df, "tflite_bytes", quality="probe_acc_mean")
    ax = fig.axes[0]
    assert any(isinstance(c, ErrorbarContainer) for c in ax.containers)
    assert _has_teacher_star(ax)          # teacher_tflite_bytes places the teacher on the size plot
    assert not [t for t in ax.texts if "FRILL" in t.get_text()]   # explained in the legend instead
    r2 = plots.quality_vs_cost(df, "latency_ms_p50", quality="distill_r2_heldout").axes[0]
    assert r2.get_ylabel() == "distill_r2_heldout" and not r2.containers
    old = plots.quality_vs_cost(results.load(sweep), "tflite_bytes").axes[0]   # an older table
    assert not old.containers and not _has_teacher_star(old)


def test_baselines_json_fills_sweep_figures_the_rows_lack(tmp_path):
    from results.report import summary, with_baselines

    d = tmp_path / "ref"
    d.mkdir()
    for f in ("results.csv", "sweep.json"):   # schema-1 rows: no per-task baselines of their own
        (d / f).write_bytes((REPO / "tests" / "data" / "reference-v1" / f).read_bytes())
    (d / "baselines.json").write_text(json.dumps({
        "teacher_probe_acc_language": 0.4, "logmel_probe_acc_language": 0.6, "teacher_probe_acc_rate": 0.76,
        "logmel_probe_acc_rate": 0.508, "teacher_probe_acc_mean": 0.0, "teacher_tflite_bytes": 6488456,
        "teacher_latency_how": "tflite"}))
    df = with_baselines(results.load(d), d)
    assert (df["teacher_tflite_bytes"] == 6488456).all() and df.attrs["baselines"].endswith("baselines.json")
    info = results.sweep_info(d)
    text = "\n".join(summary(df, info, "probe_acc_mean", results.ledger(df, info)))
    assert "language: the teacher loses to the floor (0.400 vs 0.600)" in text
    assert "teacher 0.580 (0 of 144 students beat it)" in text    # the rows' own value wins
    assert "No student beats the floor" in text
    # The committed reference run carries its sweep's baselines: its report says all this.
    md = (REPO / "results" / "reference" / "report.md").read_text()
    assert "language: the teacher loses to the floor (0.584 vs 0.662)" in md
    assert "| teacher size (MiB, TFLite) | 6.188 |" in md


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_report_has_no_clipped_table_in_chromium_at_1280px(newer_report, tmp_path):
    from tests import browser

    # The committed reference report (regenerated with this code) and the widest table shape
    # (every newer column present).
    for page in (REPO / "results" / "reference" / "report.html", newer_report["html"]):
        lay = browser.layout(page)
        assert len(lay["tables"]) >= 8 and lay["viewport_px"] == browser.WIDTH
        assert browser.clipped(lay) == [], page
    # The check itself catches overflow: the page without scroll boxes and width cap does.
    wide = newer_report["html"].read_text().replace("max-width:1100px", "").replace(".scroll{overflow-x:auto", ".x{")
    wide = wide.replace("<td>", "<td>" + "w" * 60, 1)
    (tmp_path / "wide.html").write_text(wide)
    assert browser.clipped(browser.layout(tmp_path / "wide.html"))


def test_a_schema_1_table_is_upgraded_on_load():
    """The first reference run (schema 1, kept in tests/data): load() brings it up to date,
    filling what v1 implied (every student from scratch, constant lr, 2400 crops, no resumes)
    and leaving unmeasured columns empty; the result is a valid current table."""
    df = results.load(REPO / "tests" / "data" / "reference-v1")
    assert len(df) == 144 and (df.schema_version == schema.SCHEMA_VERSION).all()
    assert set(df.init) == {"scratch"} and set(df.lr_schedule) == {"constant"}
    assert set(df.n_crops) == {2400} and df.distill_r2_heldout.isna().all()
    assert schema.problems(df) == []
    assert set(df.resumed_from_step) == {0}
    current = df.assign(schema_version=schema.SCHEMA_VERSION)
    assert schema.upgrade(current).equals(current)    # a current table is left as it is
