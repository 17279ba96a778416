"""The sweep report: one self-contained HTML page (plots embedded) and its markdown twin.

    python -m results report frill144            # writes results/runs/frill144/report.{html,md}

Sections: provenance, ledger (expected vs done/errored/missing), teacher and FRILL reference,
frontier tables, plots, best student per latency and size budget, errors.
"""
from __future__ import annotations

import base64
import datetime as dt
import html
import os
import platform
from importlib import metadata
from pathlib import Path

import pandas as pd

from results.pareto import best_under, check_quality, frontier, pareto_mask
from results.plots import is_frill, plot_all
from results.schema import BYTES_PER_MB
from results.files import atomic_write
from results.folder import Ledger, ledger, load, resolve, sweep_info

LATENCY_BUDGETS_MS = (1.0, 2.0, 5.0, 10.0)
SIZE_BUDGETS_MB = (1.0, 2.0, 5.0, 10.0, 20.0, 40.0)
CONFIG_COLS = ["trial_id", "depth", "alpha", "pooling", "bottleneck", "compression", "qat"]
CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%;border:1px solid #eee}
code{background:#f5f5f5;padding:0 3px}.note{color:#555}"""


def _fmt(v) -> str:
    if v is None or v is pd.NA or (isinstance(v, float) and v != v) or (v is pd.NaT):
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, pd.Timestamp):
        return v.strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(v)


def _view(df: pd.DataFrame, quality: str) -> pd.DataFrame:
    """The columns a reader needs to compare trials, size in MiB, formatted as text."""
    cols = CONFIG_COLS + [c for c in ("latency_ms_p50", "speedup_vs_teacher") if c in df] + [quality] \
        + [c for c in ("quality_retained",) if c in df and c != quality]
    out = df[[c for c in dict.fromkeys(cols) if c in df]].copy()
    if "tflite_bytes" in df:
        out.insert(out.columns.get_loc("latency_ms_p50") if "latency_ms_p50" in out else len(out.columns),
                   "size_mib", pd.to_numeric(df["tflite_bytes"]).astype("float64") / BYTES_PER_MB)
    return out.astype(object).map(_fmt)


class _Doc:
    """Builds the HTML page and the markdown twin from the same calls."""

    def __init__(self, title: str):
        self.html = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                     f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
        self.md = [f"# {title}", ""]

    def h(self, text: str) -> None:
        self.html.append(f"<h2>{html.escape(text)}</h2>")
        self.md += [f"## {text}", ""]

    def p(self, text: str) -> None:
        self.html.append(f"<p class='note'>{html.escape(text)}</p>")
        self.md += [text, ""]

    def table(self, df: pd.DataFrame) -> None:
        if df.empty:
            return self.p("(none)")
        self.html.append(df.to_html(index=False, escape=True, border=0))
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


def _budget_table(df: pd.DataFrame, quality: str, budgets, key: str, unit: str) -> pd.DataFrame:
    rows = []
    for b in budgets:
        best = best_under(df, quality=quality, **{key: b})
        head = {"budget": f"≤ {b:g} {unit}"}
        if best is None:
            rows.append(head | {"trial_id": "none fits"})
        else:
            rows.append(head | _view(best.to_frame().T, quality).iloc[0].to_dict())
    return pd.DataFrame(rows).fillna("")


def write_report(name_or_path: str | os.PathLike, out_dir: str | os.PathLike | None = None,
                 quality: str = "probe_acc_mean", latency_budgets_ms=LATENCY_BUDGETS_MS,
                 size_budgets_mb=SIZE_BUDGETS_MB) -> dict[str, Path]:
    """Write report.html, report.md and plots/ to out_dir (default: the sweep folder)."""
    df = load(name_or_path)
    check_quality(df, quality)  # before any file is written: a bad column is one clear error
    src = resolve(name_or_path)
    sweep_dir = src.parent if src.is_file() else src
    if src.is_dir() and not (src / "sweep.json").exists() and (src.parent / "sweep.json").exists():
        sweep_dir = src.parent  # given <sweep>/trials
    info = sweep_info(sweep_dir)
    out = Path(out_dir) if out_dir is not None else sweep_dir
    out.mkdir(parents=True, exist_ok=True)
    figs = plot_all(df, out / "plots", quality)
    book: Ledger = ledger(df, info)
    ok = df[df["status"] == "OK"]
    name = info.get("name") or _distinct(df, "sweep")

    doc = _Doc(f"frill-sweep report: {name}")
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
    doc.table(pd.DataFrame({"": list(prov), "value": list(prov.values())}))

    doc.h("Ledger")
    counts = book.counts()
    doc.table(pd.DataFrame([{k: _fmt(v) for k, v in counts.items()}]))
    if book.expected is None:
        doc.p("No sweep.json with expected_trial_ids: expected and missing are unknown.")
    if book.missing:
        doc.p(f"Missing trial ids: {', '.join(book.missing[:30])}" + (" …" if len(book.missing) > 30 else ""))
    if book.unexpected:
        doc.p(f"Rows not expected by sweep.json (left out of done/errored): {', '.join(book.unexpected[:30])}")

    doc.h("Teacher and FRILL's configuration")
    ref = {"teacher latency p50 (ms)": _fmt(_median(ok, "teacher_latency_ms_p50")),
           f"teacher {quality}": _fmt(_median(ok, "teacher_probe_acc_mean")) if quality == "probe_acc_mean" else "—",
           "teacher size (MiB)": _fmt(_median(ok, "teacher_tflite_bytes") / BYTES_PER_MB
                                      if _median(ok, "teacher_tflite_bytes") is not None else None),
           "log-mel floor probe_acc_mean": _fmt(_median(ok, "logmel_probe_acc_mean"))}
    doc.table(pd.DataFrame({"": list(ref), "value": list(ref.values())}))
    frill = df[is_frill(df)]
    if frill.empty:
        doc.p("FRILL's configuration (small, alpha 2.0, global pooling, no compression, float) is not in this sweep.")
    else:
        on = pareto_mask(df, quality, ("latency_ms_p50",))[frill.index]
        view = _view(frill, quality).assign(status=frill["status"].values,
                                            on_latency_frontier=on.map({True: "yes", False: "no"}).values)
        doc.table(view)

    for cost, title in (("latency_ms_p50", "latency"), ("tflite_bytes", "size")):
        doc.h(f"Frontier: {quality} vs {title}")
        doc.p("Trials no other trial beats on both quality and cost, cheapest first.")
        doc.table(_view(frontier(df, quality, cost), quality))

    doc.h("Plots")
    captions = {"quality_vs_latency": f"{quality} vs latency (frontier as a step line)",
                "quality_vs_size": f"{quality} vs TFLite size", "axis_effects": "effect of each grid axis"}
    for stem, paths in figs.items():
        doc.image(captions[stem], paths["png"], os.path.relpath(paths["png"], out))

    doc.h("Best student per budget")
    doc.p(f"Highest {quality} among OK trials within the budget (MiB = 2^20 bytes).")
    doc.table(_budget_table(df, quality, latency_budgets_ms, "max_latency_ms", "ms"))
    doc.table(_budget_table(df, quality, size_budgets_mb, "max_mb", "MiB"))

    doc.h(f"Errors ({len(book.errored)} errored trials)")
    err = df[df["status"] == "ERROR"]
    cols = [c for c in CONFIG_COLS + ["error_class", "error_message"] if c in err]
    doc.table(err[cols].astype(object).map(_fmt).assign(
        error_message=lambda d: d["error_message"].str.slice(0, 300)) if not err.empty else err)

    doc.html.append("</body></html>")
    paths = {"html": out / "report.html", "md": out / "report.md"}
    atomic_write(paths["html"], "\n".join(doc.html))
    atomic_write(paths["md"], "\n".join(doc.md))
    return paths


def _median(df: pd.DataFrame, col: str) -> float | None:
    if col not in df:
        return None
    v = pd.to_numeric(df[col], errors="coerce").dropna()
    return float(v.median()) if len(v) else None
