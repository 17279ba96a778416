"""frill-sweep results: the table schema, load(), atomic writes, Pareto frontier, plots, report.

    import results
    df = results.load("frill144")                      # a sweep name, folder or table file
    results.frontier(df, "probe_acc_mean", "latency_ms_p50")
    results.best_under(df, max_latency_ms=2.0)

Plots and the report live in results.plots and results.report (they import matplotlib).
Never imports TensorFlow or Ray: a notebook loads results in a second. Names load on first
use (PEP 562), so `from results.errors import FrillError` in the other packages costs no pandas.
"""
from __future__ import annotations

import importlib

_NAMES = {
    "pareto": ("best_under", "frontier", "pareto_mask"),
    "schema": ("BYTES_PER_MB", "COLUMNS", "SCHEMA_VERSION", "ResultsError", "SchemaError", "problems",
               "quality_columns", "validate"),
    "table": ("write_table",),
    "folder": ("Ledger", "ledger", "load", "rebuild", "runs_root", "sweep_info"),
    "errors": ("FrillError",),
    "files": ("atomic_write",),
}
_HOME = {name: mod for mod, names in _NAMES.items() for name in names}

__all__ = sorted(_HOME)


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module 'results' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"results.{_HOME[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))
