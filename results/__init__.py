"""frill-sweep results: the table schema, load(), atomic writes, Pareto frontier, plots, report.

    import results
    df = results.load("frill144")                      # a sweep name, folder or table file
    results.frontier(df, "probe_acc_mean", "latency_ms_p50")
    results.best_under(df, max_latency_ms=2.0)

Plots and the report live in results.plots and results.report (they import matplotlib).
Never imports TensorFlow or Ray: a notebook loads results in a second.
"""
from results.pareto import best_under, frontier, pareto_mask
from results.schema import (BYTES_PER_MB, COLUMNS, SCHEMA_VERSION, ResultsError, SchemaError, problems,
                            quality_columns, validate)
from results.table import Ledger, ledger, load, rebuild, runs_root, sweep_info, write_table

__all__ = ["load", "write_table", "rebuild", "validate", "problems", "ledger", "Ledger", "sweep_info",
           "runs_root", "pareto_mask", "frontier", "best_under", "quality_columns", "COLUMNS",
           "SCHEMA_VERSION", "BYTES_PER_MB", "ResultsError", "SchemaError"]
