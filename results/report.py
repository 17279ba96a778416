"""The sweep report: one self-contained HTML page (plots embedded) and its markdown twin.

    python -m results report frill144            # writes results/runs/frill144/report.{html,md}

It leads with a summary a reader can act on (what was swept, at which fidelity and with which
caveats; the probe tasks and their chance levels; the teacher and the log-mel floor and how
many students beat each; one recommended student per budget), then the evidence: frontier
tables, plots, the FRILL configuration, provenance, ledger and errors.

Columns added after the first schema (`distill_r2_heldout`, bootstrap intervals
`<quality>_ci_lo/_ci_hi`, per-task baselines `teacher_probe_acc_<task>`/`logmel_probe_acc_<task>`,
`teacher_tflite_bytes`) are used when present; older tables simply lack those lines.
Sweep-level figures missing from the rows are read from <sweep>/baselines.json when it exists.
"""
from __future__ import annotations

import base64
import datetime as dt
import html
import json
import math
import os
import platform
import re
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from results.pareto import best_under, check_quality, eligible, frontier, pareto_mask
from results.plots import is_frill, plot_all
from results.files import atomic_write
from results.folder import Ledger, ledger, load, resolve, sweep_info
from results.schema import BYTES_PER_MB, ResultsError

CONFIG_COLS = ["trial_id", "depth", "alpha", "pooling", "bottleneck", "compression", "qat"]
# Probe tasks of the built-in corpus (teacher/builtin.py): what they ask, and how many balanced
# classes, so chance = 1 / classes. A user's own task is named without a chance level.
KNOWN_TASKS = {"language": ("language ID over 10 languages", 10),
               "rate": ("speaking-rate terciles (slow / medium / fast)", 3)}
CI_SUFFIXES = ("_ci_lo", "_ci_hi")
SHORT = {"trial_id": "trial", "compression": "compr.", "qat": "QAT", "bottleneck": "bneck", "size_mib": "MiB",
         "latency_ms_p50": "ms p50", "speedup_vs_teacher": "x teacher speed", "probe_acc_mean": "mean acc",
         "distill_r2_heldout": "R²", "quality_retained": "retained", "on_latency_frontier": "on frontier"}
HEADINGS = ("Columns: MiB = TFLite file size (2^20 bytes); ms p50 = median latency per 0.96 s patch; "
            "x teacher speed = teacher latency / student latency; mean acc = probe_acc_mean, "
            "<task> acc = probe_acc_<task>; [lo, hi] = 95% bootstrap interval; R² = distill_r2_heldout.")
TASK_RE = re.compile(r"^probe_acc_(?!mean$)([A-Za-z0-9_]+?)$")
# Long tables scroll inside their own box, so the page itself never scrolls sideways.
CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
.scroll{overflow-x:auto;max-width:100%;margin:.5em 0 1.5em}
table{border-collapse:collapse;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:right;white-space:nowrap}
th{white-space:normal;vertical-align:bottom}
td.wrap{white-space:normal;overflow-wrap:anywhere;text-align:left;min-width:16em}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%;border:1px solid #eee}
code{background:#f5f5f5;padding:0 3px}.note{color:#555}.summary li{margin:.3em 0}
.summary{background:#f8f9fb;border:1px solid #dde;padding:.3em 1.2em;border-radius:4px}"""
# One short caveat per fidelity: how far its numbers can be trusted.
FIDELITY_CAVEATS = {
    "smoke": "Smoke fidelity checks that the pipeline runs: {steps} training steps on {n} crops; its "
             "quality numbers mean nothing.",
    "local": "Local fidelity trains each student for only {steps} steps on {n} crops: students are "
             "far from converged (results/curves: on the built-in corpus, tiny alpha 1.0 goes from a "
             "probe mean of 0.30 at 40 steps to 0.44 at 320), so compare students with each other, not with the paper's figures, and re-check "
             "a chosen student with longer training.",
    "paper": "Paper fidelity: FRILL's training recipe ({steps} steps).",
}


def _fmt(v) -> str:
    if v is None or v is pd.NA or (isinstance(v, float) and v != v) or (v is pd.NaT):
        return "—"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.4g}"
    if isinstance(v, pd.Timestamp):
        return v.strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(v)


def _num(df: pd.DataFrame, col: str) -> pd.Series:
    return pd.to_numeric(df[col], errors="coerce").astype("float64")


def tasks(df: pd.DataFrame) -> list[str]:
    """Probe task names: probe_acc_<task> columns, not the mean and not interval bounds."""
    out = []
    for c in df.columns:
        m = TASK_RE.match(str(c))
        if m and not str(c).endswith(CI_SUFFIXES) and not str(c).startswith("probe_acc_mean_"):
            out.append(m.group(1))
    return sorted(out)


def has_ci(df: pd.DataFrame, quality: str) -> bool:
    return all(f"{quality}{s}" in df.columns and _num(df, f"{quality}{s}").notna().any() for s in CI_SUFFIXES)


def _fmt3(v) -> str:
    """Accuracies and R² to 3 decimals: with ~500 test clips the third is already noise."""
    return "—" if v is None or pd.isna(v) else f"{float(v):.3f}"


def _with_ci(df: pd.DataFrame, quality: str) -> pd.Series:
    """'0.361 [0.330, 0.390]' when intervals exist (one column keeps tables narrow)."""
    q = _num(df, quality)
    if not has_ci(df, quality):
        return q.map(_fmt3)
    lo, hi = _num(df, f"{quality}_ci_lo"), _num(df, f"{quality}_ci_hi")
    return pd.Series([f"{_fmt3(a)} [{_fmt3(b)}, {_fmt3(c)}]" if b == b and c == c else _fmt3(a)
                      for a, b, c in zip(q, lo, hi)], index=df.index)


def _varying(df: pd.DataFrame, cols) -> list[str]:
    """Config columns that take more than one value in the sweep (the fixed ones are stated once)."""
    return [c for c in cols if c in df and (c == "trial_id" or df[c].astype(str).nunique(dropna=False) > 1)]


def _view(rows: pd.DataFrame, quality: str, sweep: pd.DataFrame) -> pd.DataFrame:
    """The columns a reader needs to compare trials, as text: varying config, size (MiB),
    latency, speed-up, quality (with its interval when present), then other quality figures."""
    out = pd.DataFrame(index=rows.index)
    for c in _varying(sweep, CONFIG_COLS):
        out[c] = rows[c].astype(object).map(_fmt)
    if "tflite_bytes" in rows:
        out["size_mib"] = (_num(rows, "tflite_bytes") / BYTES_PER_MB).map(_fmt)
    for c in ("latency_ms_p50", "speedup_vs_teacher"):
        if c in rows:
            out[c] = _num(rows, c).map(_fmt)
    out[quality] = _with_ci(rows, quality)
    extra = ["probe_acc_mean"] + [f"probe_acc_{t}" for t in tasks(sweep)] + ["distill_r2_heldout"]
    for c in extra:
        if c != quality and c in rows and _num(sweep, c).notna().any():
            out[c] = _num(rows, c).map(_fmt3)
    return out.rename(columns=short_names).reset_index(drop=True)


def short_names(col: str) -> str:
    """Table headings short enough that a frontier table fits a 1,100 px page (HEADINGS says what they mean)."""
    if col in SHORT:
        return SHORT[col]
    m = TASK_RE.match(col)
    return f"{m.group(1)} acc" if m and not col.endswith(CI_SUFFIXES) else col


class _Doc:
    """Builds the HTML page and the markdown twin from the same calls."""

    def __init__(self, title: str):
        self.html = [f"<!doctype html><html><head><meta charset='utf-8'>"
                     f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
                     f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
                     f"<h1>{html.escape(title)}</h1>"]
        self.md = [f"# {title}", ""]

    def h(self, text: str, level: int = 2) -> None:
        self.html.append(f"<h{level}>{html.escape(text)}</h{level}>")
        self.md += [f"{'#' * level} {text}", ""]

    def p(self, text: str) -> None:
        self.html.append(f"<p class='note'>{html.escape(text)}</p>")
        self.md += [text, ""]

    def ul(self, items: list[str], cls: str = "") -> None:
        attr = f" class='{cls}'" if cls else ""
        self.html.append(f"<ul{attr}>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>")
        self.md += [f"- {i}" for i in items] + [""]

    def table(self, df: pd.DataFrame, wrap: tuple[str, ...] = ()) -> None:
        """A table in its own horizontal scroll box; `wrap` columns may break lines (long text)."""
        if df.empty:
            return self.p("(none)")
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
        body = []
        for row in df.itertuples(index=False):
            cells = [f"<td{' class=wrap' if c in wrap else ''}>{html.escape(str(v))}</td>"
                     for c, v in zip(df.columns, row)]
            body.append("<tr>" + "".join(cells) + "</tr>")
        self.html.append(f"<div class='scroll'><table><thead><tr>{head}</tr></thead>"
                         f"<tbody>{''.join(body)}</tbody></table></div>")
        cell = lambda v: str(v).replace("|", "\\|").replace("\n", " ")  # noqa: E731
        self.md += ["| " + " | ".join(map(cell, df.columns)) + " |", "|" + "---|" * len(df.columns)]
        self.md += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
        self.md.append("")

    def image(self, caption: str, png: Path, rel: str) -> None:
        data = base64.b64encode(png.read_bytes()).decode()
        self.html.append(f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        self.md += [f"![{caption}]({rel})", ""]


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "—"


def _distinct(df: pd.DataFrame, col: str) -> str:
    if col not in df:
        return "—"
    vals = sorted({_fmt(v) for v in df[col].dropna()})
    return ", ".join(vals) if vals else "—"


def _median(df: pd.DataFrame, col: str) -> float | None:
    if col not in df:
        return None
    v = _num(df, col).dropna()
    return float(v.median()) if len(v) else None


# ---------------------------------------------------------------- sweep-level figures

def with_baselines(df: pd.DataFrame, sweep_dir: Path | None) -> pd.DataFrame:
    """df with sweep-level figures (teacher/log-mel probes per task, teacher size) filled in from
    <sweep>/baselines.json where the rows lack them; the rows' own values always win."""
    f = Path(sweep_dir) / "baselines.json" if sweep_dir else None
    if f is None or not f.is_file():
        return df
    try:
        base = json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise ResultsError(f"{f} is not valid JSON: {e}") from None
    df = df.copy()
    ok = (df["status"] == "OK").fillna(False)
    for k, v in base.items():
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        if k not in df.columns:
            df[k] = np.nan
        if not pd.to_numeric(df[k], errors="coerce").notna().any():
            df[k] = pd.to_numeric(df[k], errors="coerce").astype("float64").where(~ok, float(v))
    df.attrs["baselines"] = str(f)
    return df


def reference_figures(df: pd.DataFrame, quality: str) -> dict[str, float | None]:
    """Teacher and log-mel floor for `quality` (a probe column), None where the table has none."""
    ok = df[eligible(df, [])]
    return {"teacher": _median(ok, f"teacher_{quality}") if quality.startswith("probe_acc_") else None,
            "floor": _median(ok, f"logmel_{quality}") if quality.startswith("probe_acc_") else None}


def budget_ladder(costs: pd.Series, top: float) -> list[float]:
    """1-2-5 budgets from the fastest (smallest) student up to the first one that admits `top`
    (the best student's cost): every budget on it can pick a different student."""
    v = costs[np.isfinite(costs) & (costs > 0)]
    if v.empty or not math.isfinite(top):
        return []
    lo = float(v.min())
    out, e = [], math.floor(math.log10(lo)) - 1
    while True:
        for m in (1, 2, 5):
            b = round(m * 10.0 ** e, 10)
            if b >= lo:
                out.append(b)
                if b >= top:
                    return out
        e += 1


def recommendations(df: pd.DataFrame, quality: str, key: str, budgets) -> list[tuple[float, pd.Series]]:
    """(budget, best student) for each budget, tightest first; a budget whose pick repeats the
    previous one's is dropped, so every row names a distinct student."""
    picks, seen = [], set()
    for b in sorted(budgets):
        best = best_under(df, quality=quality, **{key: b})
        if best is not None and best["trial_id"] not in seen:
            seen.add(best["trial_id"])
            picks.append((b, best))
    return picks


def _default_budgets(df: pd.DataFrame, quality: str, cost: str, scale: float) -> list[float]:
    ok = df[eligible(df, (quality, "latency_ms_p50", "tflite_bytes"))]
    if ok.empty:
        return []
    best = ok.loc[_num(ok, quality).idxmax()]
    return budget_ladder(_num(ok, cost) * scale, float(best[cost]) * scale)


def indistinct_neighbours(front: pd.DataFrame, quality: str) -> list[tuple[str, str]]:
    """Frontier neighbours (cheapest first) whose difference in `quality` is not a finding: one's
    estimate lies inside the other's 95% interval. [] when the table has no intervals."""
    if not has_ci(front, quality) or len(front) < 2:
        return []
    q, lo, hi = (_num(front, c).to_numpy() for c in (quality, f"{quality}_ci_lo", f"{quality}_ci_hi"))
    ids = front["trial_id"].astype(str).to_numpy()
    return [(ids[i], ids[i + 1]) for i in range(len(front) - 1)
            if lo[i + 1] <= q[i] <= hi[i + 1] or lo[i] <= q[i + 1] <= hi[i]]


def _student(r: pd.Series, quality: str) -> str:
    parts = [str(r.get("depth")), f"alpha {_fmt(r.get('alpha'))}", str(r.get("pooling"))]
    if r.get("compression") not in (None, "none"):
        parts.append(str(r["compression"]))
    parts.append("QAT int8" if bool(r.get("qat")) else "float")
    q = _fmt3(r.get(quality))
    if f"{quality}_ci_lo" in r and pd.notna(r.get(f"{quality}_ci_lo")):
        q += f" [{_fmt3(r[f'{quality}_ci_lo'])}, {_fmt3(r[f'{quality}_ci_hi'])}]"
    return (f"{r['trial_id']} ({', '.join(parts)}): {quality} {q}, {_fmt(float(r['latency_ms_p50']))} ms, "
            f"{_fmt(float(r['tflite_bytes']) / BYTES_PER_MB)} MiB")


def summary(df: pd.DataFrame, info: dict, quality: str, book: Ledger) -> list[str]:
    """The report's opening bullets: each one a fact a reader can act on."""
    ok = df[eligible(df, [])]
    n_ok = len(ok)
    fid = info.get("fidelity") or _distinct(df, "fidelity")
    fixed = [f"{c} {_distinct(df, c)}" for c in ("bottleneck", "frontend") if c in df and c not in _varying(df, [c])]
    axes = [c for c in ("depth", "alpha", "pooling", "compression", "qat") if c in _varying(df, [c])]
    steps, batch = _distinct(ok, "steps"), _distinct(ok, "batch_size")
    # Newer rows and sweep.json carry the set size; older tables only imply it by fidelity.
    n_crops = (_distinct(ok, "n_crops") if "n_crops" in ok and ok["n_crops"].notna().any()
               else info.get("n_crops") or info.get("sweep_config", {}).get("n_crops"))
    n_all = len(book.expected) if book.expected is not None else len(df)
    out = [f"Swept {n_all} students ({book.counts()['done']} OK, {len(book.errored)} errored, "
           f"{len(book.missing)} missing) over {', '.join(axes) or 'one configuration'}"
           + (f" ({', '.join(fixed)} fixed)" if fixed else "")
           + f", distilled from teacher {_distinct(df, 'teacher')} on corpus {_distinct(df, 'corpus')}; "
           f"fidelity {fid}: {steps} steps, batch {batch}, learning rate {_distinct(ok, 'learning_rate')}."]
    caveat = FIDELITY_CAVEATS.get(fid, "")
    if caveat:
        n = n_crops or {"smoke": 320, "local": 2400, "paper": 2400}.get(fid, "?")
        out.append("Caveat: " + caveat.format(steps=steps, n=n) + " Latency is measured on this "
                   f"machine's CPU ({_distinct(ok, 'runtime')}, {_distinct(ok, 'latency_threads')} thread(s), "
                   "one 0.96 s patch), not on a phone: use it to rank students.")
    names = tasks(df)
    if names:
        desc = []
        for t in names:
            what, k = KNOWN_TASKS.get(t, (None, None))
            desc.append(f"{t} ({what}, chance {1 / k:.2f})" if what and _distinct(df, "corpus") == "builtin"
                        else f"{t} (a task of this corpus; chance level not recorded)")
        out.append(f"Quality is linear-probe accuracy on held-out clips, {len(names)} task(s): "
                    + "; ".join(desc) + ". probe_acc_mean is their mean.")
    ref = reference_figures(df, "probe_acc_mean")
    if ref["teacher"] is not None or ref["floor"] is not None:
        acc = _num(ok, "probe_acc_mean")
        parts = []
        if ref["teacher"] is not None:
            parts.append(f"teacher {_fmt3(ref['teacher'])} ({int((acc > ref['teacher']).sum())} of {n_ok} "
                         "students beat it)")
        if ref["floor"] is not None:
            s = f"log-mel floor {_fmt3(ref['floor'])} ({int((acc > ref['floor']).sum())} of {n_ok} beat it"
            if has_ci(ok, "probe_acc_mean"):
                s += f"; {int((_num(ok, 'probe_acc_mean_ci_lo') > ref['floor']).sum())} with the floor below their 95% interval"
            parts.append(s + ")")
        best = acc.max() if n_ok else float("nan")
        out.append(f"probe_acc_mean: {'; '.join(parts)}; best student {_fmt3(best)}. The floor is a linear "
                   "probe on log-mel mean and std per patch: a student below it has learned less than "
                   "band statistics carry.")
        if ref["floor"] is not None and n_ok and not (acc > ref["floor"]).any():
            out.append("No student beats the floor: at this fidelity the ranking says which students learn "
                       "fastest, not which embed best; train the recommended ones longer before choosing.")
    for t in names:
        r = reference_figures(df, f"probe_acc_{t}")
        if r["teacher"] is None or r["floor"] is None:
            continue
        acc = _num(ok, f"probe_acc_{t}")
        verb = "loses to" if r["teacher"] < r["floor"] else "beats"
        out.append(f"{t}: the teacher {verb} the floor ({_fmt3(r['teacher'])} vs {_fmt3(r['floor'])}); "
                   f"{int((acc > r['floor']).sum())} of {n_ok} students beat the floor, "
                   f"{int((acc > r['teacher']).sum())} the teacher; best student {_fmt3(acc.max())}.")
    if names and not any(f"teacher_probe_acc_{t}" in df for t in names):
        out.append("Per-task teacher and floor figures are not in this table (only their means).")
    if "distill_r2_heldout" in df and _num(ok, "distill_r2_heldout").notna().any():
        r2 = _num(ok, "distill_r2_heldout")
        out.append(f"Distillation: held-out R² of the students' projection vs the teacher targets "
                   f"median {_fmt3(r2.median())}, best {_fmt3(r2.max())} (1 = the teacher reproduced, "
                   "0 = no better than predicting the mean target).")
    if n_ok and {"latency_ms_p50", "tflite_bytes"} <= set(df.columns):
        elig = df[eligible(df, (quality, "latency_ms_p50", "tflite_bytes"))]
        if len(elig):
            out.append(f"Best {quality}: {_student(elig.loc[_num(elig, quality).idxmax()], quality)}. "
                       "Recommended students per latency and size budget: see 'Recommended students'.")
    if has_ci(df, quality):
        pairs = indistinct_neighbours(frontier(df, quality, "latency_ms_p50"), quality)
        out.append(f"Bootstrap 95% intervals: {len(pairs)} pair(s) of latency-frontier neighbours lie within "
                   "each other's interval; their order is not a finding (listed under the frontier table)."
                   if pairs else "Bootstrap 95% intervals: every pair of latency-frontier neighbours is "
                   "separated by more than its interval.")
    return out


# ---------------------------------------------------------------- the page

def _budget_table(df, quality, picks, unit, sweep) -> pd.DataFrame:
    rows = []
    for b, best in picks:
        view = _view(best.to_frame().T, quality, sweep).iloc[0].to_dict()
        rows.append({"budget": f"≤ {b:g} {unit}"} | view)
    return pd.DataFrame(rows)


def write_report(name_or_path: str | os.PathLike, out_dir: str | os.PathLike | None = None,
                 quality: str = "probe_acc_mean", latency_budgets_ms=None, size_budgets_mb=None) -> dict[str, Path]:
    """Write report.html, report.md and plots/ to out_dir (default: the sweep folder).

    Budgets default to a 1-2-5 ladder over the measured range (see budget_ladder)."""
    df = load(name_or_path)
    check_quality(df, quality)  # before any file is written: a bad column is one clear error
    src = resolve(name_or_path)
    sweep_dir = src.parent if src.is_file() else src
    if src.is_dir() and not (src / "sweep.json").exists() and (src.parent / "sweep.json").exists():
        sweep_dir = src.parent  # given <sweep>/trials
    df = with_baselines(df, sweep_dir)
    info = sweep_info(sweep_dir)
    out = Path(out_dir) if out_dir is not None else sweep_dir
    out.mkdir(parents=True, exist_ok=True)
    figs = plot_all(df, out / "plots", quality)
    book: Ledger = ledger(df, info)
    ok = df[df["status"] == "OK"]
    name = info.get("name") or _distinct(df, "sweep")
    if latency_budgets_ms is None:
        latency_budgets_ms = _default_budgets(df, quality, "latency_ms_p50", 1.0)
    if size_budgets_mb is None:
        size_budgets_mb = _default_budgets(df, quality, "tflite_bytes", 1.0 / BYTES_PER_MB)

    doc = _Doc(f"frill-sweep report: {name}")
    doc.h("Summary")
    doc.ul(summary(df, info, quality, book), cls="summary")

    doc.h("Recommended students")
    doc.p(f"Highest {quality} among OK trials within each budget. Budgets run 1-2-5 from the cheapest "
          "student to the best one; a budget that would pick the same student as a tighter one is left "
          "out, so each row is a different student. " + HEADINGS)
    doc.h("Per latency budget (p50 per 0.96 s patch)", 3)
    doc.table(_budget_table(df, quality, recommendations(df, quality, "max_latency_ms", latency_budgets_ms),
                            "ms", df))
    doc.h("Per size budget (TFLite file)", 3)
    doc.table(_budget_table(df, quality, recommendations(df, quality, "max_mb", size_budgets_mb), "MiB", df))

    for cost, title in (("latency_ms_p50", "latency"), ("tflite_bytes", "size")):
        doc.h(f"Frontier: {quality} vs {title}")
        front = frontier(df, quality, cost)
        doc.p("Trials no other trial beats on both quality and cost, cheapest first"
              + (" (quality with its 95% bootstrap interval)." if has_ci(df, quality) else "."))
        doc.table(_view(front, quality, df))
        pairs = indistinct_neighbours(front, quality)
        if pairs:
            doc.p("Within each other's 95% interval (the step between them is not a finding): "
                  + "; ".join(f"{a} ~ {b}" for a, b in pairs) + ".")

    doc.h("Teacher, log-mel floor and FRILL's configuration")
    teacher_bytes = _median(ok, "teacher_tflite_bytes")
    ref = {"teacher": _distinct(df, "teacher"),
           "teacher latency p50 (ms)": _fmt(_median(ok, "teacher_latency_ms_p50")),
           "teacher size (MiB, TFLite)": _fmt(teacher_bytes / BYTES_PER_MB if teacher_bytes else None)}
    for q in ["probe_acc_mean"] + [f"probe_acc_{t}" for t in tasks(df)]:
        r = reference_figures(df, q)
        if r["teacher"] is not None or r["floor"] is not None:
            ref[f"teacher {q}"], ref[f"log-mel floor {q}"] = _fmt(r["teacher"]), _fmt(r["floor"])
    if df.attrs.get("baselines"):
        ref["sweep-level figures from"] = os.path.relpath(df.attrs["baselines"], out)
    doc.table(pd.DataFrame({"": list(ref), "value": list(ref.values())}))
    doc.h("FRILL's configuration in this sweep", 3)
    frill = df[is_frill(df)]
    if frill.empty:
        doc.p("FRILL's configuration (small, alpha 2.0, global pooling, no compression, float) is not in this sweep.")
    else:
        doc.p("Small, alpha 2.0, global pooling, no compression, float32: the student the paper picked.")
        on = pareto_mask(df, quality, ("latency_ms_p50",))[frill.index]
        view = _view(frill, quality, df).assign(**{"status": frill["status"].astype(str).values,
                                                   "on frontier": on.map({True: "yes", False: "no"}).values})
        doc.table(view)

    doc.h("Plots")
    captions = {"quality_vs_latency": f"{quality} vs latency (frontier as a step line)",
                "quality_vs_size": f"{quality} vs TFLite size", "axis_effects": "effect of each grid axis"}
    for stem, paths in figs.items():
        doc.image(captions[stem], paths["png"], os.path.relpath(paths["png"], out))

    doc.h("Provenance")
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    prov = {
        "sweep": name, "grid": info.get("grid", "—"),
        "fidelity": info.get("fidelity") or _distinct(df, "fidelity"),
        "teacher": _distinct(df, "teacher"), "corpus": _distinct(df, "corpus"),
        "git commit": _distinct(df, "git_commit"), "tensorflow": _distinct(df, "tensorflow_version"),
        "litert": _distinct(df, "litert_version"), "latency runtime": _distinct(df, "runtime"),
        "latency threads": _distinct(df, "latency_threads"), "host": _distinct(df, "host"),
        "sweep started": _fmt(info.get("started_at")),
        "first trial started": _fmt(df["started_at"].min()), "last trial ended": _fmt(df["ended_at"].max()),
        "table read from": df.attrs.get("source", "—"),
        "report written": f"{now} on {platform.node()} (python {platform.python_version()}, "
                          f"pandas {_version('pandas')}, matplotlib {_version('matplotlib')})",
    }
    doc.table(pd.DataFrame({"": list(prov), "value": list(prov.values())}), wrap=("value",))

    doc.h("Ledger")
    counts = book.counts()
    doc.table(pd.DataFrame([{k: _fmt(v) for k, v in counts.items()}]))
    if book.expected is None:
        doc.p("No sweep.json with expected_trial_ids: expected and missing are unknown.")
    if book.missing:
        doc.p(f"Missing trial ids: {', '.join(book.missing[:30])}" + (" …" if len(book.missing) > 30 else ""))
    if book.unexpected:
        doc.p(f"Rows not expected by sweep.json (left out of done/errored): {', '.join(book.unexpected[:30])}")

    doc.h(f"Errors ({len(book.errored)} errored trials)")
    err = df[df["status"] == "ERROR"]
    cols = [c for c in CONFIG_COLS + ["error_class", "error_message"] if c in err]
    doc.table(err[cols].astype(object).map(_fmt).assign(
        error_message=lambda d: d["error_message"].str.slice(0, 300)) if not err.empty else err,
        wrap=("error_message",))

    doc.html.append("</body></html>")
    paths = {"html": out / "report.html", "md": out / "report.md"}
    atomic_write(paths["html"], "\n".join(doc.html))
    atomic_write(paths["md"], "\n".join(doc.md))
    return paths
