"""The results table schema: every column, its dtype, unit and how it was measured.

One source of truth: `load()` coerces dtypes from it, `validate()` checks against it, and the
column table in results/README.md is `markdown_table()` pasted verbatim (a test keeps them equal).
Bump SCHEMA_VERSION whenever a column is added, renamed, retyped or re-measured differently.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from results.errors import FrillError

SCHEMA_VERSION = 3
BYTES_PER_MB = 2**20  # the paper's "MB" is binary (FRILL's 38.5 MB = 38.5 MiB)

# dtype kinds -> pandas dtypes. Nullable ints/bools: errored rows have no measurements.
DTYPES = {"str": "str", "int": "Int64", "float": "float64", "bool": "boolean", "time": "datetime64[us, UTC]"}


class ResultsError(FrillError):
    """Bad input to results/ (unknown sweep, no table, bad column); the message is one line."""


class SchemaError(ResultsError):
    """A table or row set that does not match this schema (usually an older one)."""


@dataclass(frozen=True)
class Column:
    name: str
    kind: str          # key of DTYPES
    unit: str
    how: str           # how it was measured / where it comes from
    group: str
    need: str = "ok"   # 'all': every row has it; 'ok': rows with status OK have it; 'optional'
    role: str = ""     # 'quality' (higher is better) | 'cost' (lower is better) | ''

    @property
    def dtype(self) -> str:
        return DTYPES[self.kind]


def _cols(group: str, need: str, *specs: tuple) -> list[Column]:
    return [Column(*spec[:4], group=group, need=need, role=spec[4] if len(spec) > 4 else "") for spec in specs]


COLUMNS: tuple[Column, ...] = tuple(
    _cols("identity", "all",
          ("trial_id", "str", "", "12 hex chars, stable hash of the trial config; the trial's folder name"),
          ("sweep", "str", "", "sweep name (its folder under results/runs/)"),
          ("depth", "str", "", "MobileNetV3 stack: tiny (9 blocks), small (11) or large"),
          ("alpha", "float", "x", "width multiplier"),
          ("pooling", "str", "", "global (average) or flatten"),
          ("bottleneck", "int", "units", "embedding size (Dense after pooling); 0 = pooled features are the embedding"),
          ("compression", "str", "", "none or lowrank (bottleneck kernel factorised at `rank`)"),
          ("rank", "int", "", "low-rank factor size; used only when compression is lowrank"),
          ("qat", "bool", "", "quantisation-aware training, exported as full-int8 TFLite"),
          ("frontend", "bool", "", "log-mel frontend inside the model (waveform input)"),
          ("steps", "int", "steps", "distillation training steps"),
          ("batch_size", "int", "crops", "distillation batch size"),
          ("learning_rate", "float", "", "distillation learning rate (peak, with a schedule)"),
          ("lr_schedule", "str", "", "constant, or cosine (linear warm-up over 10% of steps, cosine decay to 0)"),
          ("seed", "int", "", "training seed (weight init, data order); same config + seed = same row"),
          ("init", "str", "",
           "scratch, or float_twin: fine-tuned for `steps` from the trained weights of the same "
           "student without QAT and compression (its trial is init_from)"),
          ("teacher", "str", "", "teacher spec (resemblyzer, trill, a SavedModel path)"),
          ("corpus", "str", "", "distillation corpus (builtin or a path)"),
          ("n_crops", "int", "crops", "training crops the student trained on: the distillation set's, or its shards' (held-out and probe clips are fixed apart from it)"),
          ("fidelity", "str", "", "smoke, local or paper (sets steps, set size, latency runs)"))
    + _cols("status", "all",
            ("status", "str", "", "OK or ERROR; errored trials keep their row"),
            ("error_class", "str", "", "exception class name; '' when OK"),
            ("error_message", "str", "", "one-line exception message; '' when OK"))
    + _cols("status", "optional",
            ("schema_version", "int", "",
             "version of this schema the row was written with "
             "(filled in when a row.json lacks it)"),
            ("attempt", "int", "", "1 for the first run of this trial, 2 for its retry after an error"),
            ("ray_node_id", "str", "", "Ray node that ran the trial (empty for `python -m sweep trial`)"),
            ("init_from", "str", "", "trial_id of the float twin a float_twin trial started from; '' otherwise"),
            ("train_device", "str", "", "where training ran: CPU, or GPU (its TF device name)"),
            ("resumed_from_step", "int", "steps",
             "training step of the checkpoint this trial resumed from after Tune restarted it "
             "(a lost worker or node); 0 = trained in one go"))
    + _cols("size", "ok",
            ("tflite_bytes", "int", "bytes", "file size of the exported model.tflite", "cost"),
            ("params", "int", "count",
             "parameters of the embedding model (Keras; "
             "excludes the training-only projection)", "cost"),
            ("macs_per_patch", "int", "MACs",
             "multiply-accumulates for one 96x64 patch, summed over the conv, "
             "depthwise and fully-connected ops of the .tflite", "cost"))
    + _cols("size", "optional",
            ("teacher_tflite_bytes", "int", "bytes",
             "teacher's TFLite file size when the teacher "
             "converts; empty otherwise"))
    + _cols("latency", "ok",
            ("latency_ms_p50", "float", "ms",
             "median wall time of one invoke (one patch) with the LiteRT "
             "interpreter after warm-up, `latency_threads` threads", "cost"),
            ("latency_ms_p90", "float", "ms", "90th percentile of the same timings", "cost"),
            ("latency_threads", "int", "threads", "interpreter threads used for timing"),
            ("latency_runs", "int", "runs", "timed invokes (after warm-up)"),
            ("runtime", "str", "", "what timed it (interpreter, version, delegate)"),
            ("teacher_latency_ms_p50", "float", "ms",
             "teacher's median time per patch on the same machine (its TFLite "
             "conversion if it converts, else the TF function)"),
            ("teacher_latency_ms_p90", "float", "ms", "90th percentile of the teacher's timings"),
            ("speedup_vs_teacher", "float", "x", "teacher_latency_ms_p50 / latency_ms_p50"))
    + _cols("quality", "ok",
            ("distill_r2_heldout", "float", "",
             "1 - distill_mse_heldout / MSE of predicting the training-mean target on the same "
             "held-out crops: the share of the teacher's variance the shipped student explains",
             "quality"),
            ("distill_mse_heldout", "float", "",
             "MSE between the TFLite embedding projected to teacher "
             "space and the teacher target, held-out crops"),
            ("distill_cosine_heldout", "float", "", "mean cosine of the same pairs", "quality"),
            ("probe_acc_mean", "float", "fraction", "mean of the probe_acc_<task> columns", "quality"),
            ("probe_acc_mean_ci_lo", "float", "fraction",
             "2.5th percentile of probe_acc_mean over 2000 bootstrap resamples of the test clips "
             "(tasks on the same clips resampled together)"),
            ("probe_acc_mean_ci_hi", "float", "fraction", "97.5th percentile of the same"),
            ("teacher_probe_acc_mean", "float", "fraction", "the same probes on the teacher's embedding (reference)"),
            ("teacher_probe_acc_mean_ci_lo", "float", "fraction", "its bootstrap interval, as for probe_acc_mean"),
            ("teacher_probe_acc_mean_ci_hi", "float", "fraction", "its bootstrap interval, as for probe_acc_mean"),
            ("logmel_probe_acc_mean", "float", "fraction", "the same probes on log-mel mean+std per patch (floor)"),
            ("logmel_probe_acc_mean_ci_lo", "float", "fraction", "its bootstrap interval, as for probe_acc_mean"),
            ("logmel_probe_acc_mean_ci_hi", "float", "fraction", "its bootstrap interval, as for probe_acc_mean"),
            ("quality_retained", "float", "fraction", "probe_acc_mean / teacher_probe_acc_mean", "quality"),
            ("export_cosine", "float", "",
             "mean cosine between Keras and TFLite embeddings on "
             "the same inputs (conversion check)"),
            ("keras_distill_mse_heldout", "float", "",
             "distill_mse_heldout of the Keras model before "
             "export; the gap is conversion loss"),
            ("keras_distill_mse_heldout_untrained", "float", "",
             "the same MSE for the freshly built student before training (the baseline that "
             "training must beat)"),
            ("train_loss_mean", "float", "", "mean training MSE over all steps (Keras' running mean), in the targets' units"))
    + _cols("timing", "ok",
            ("seconds_setup", "float", "s", "imports (TF start in a fresh worker process) and provenance"),
            ("seconds_build", "float", "s", "log-mel features for the distillation set, building the student"),
            ("seconds_train", "float", "s", "distillation training"),
            ("seconds_export", "float", "s", "TFLite conversion and the Keras-vs-TFLite check"),
            ("tflite_conversion_seconds", "float", "s", "the TFLite converter call alone"),
            ("seconds_measure", "float", "s", "size, MACs and latency measurement"),
            ("seconds_evaluate", "float", "s", "distillation metrics and probes on the TFLite model"),
            ("seconds_total", "float", "s", "whole trial, wall clock (setup through evaluate)"),
            ("train_steps_per_second", "float", "steps/s", "steps / seconds_train"))
    + _cols("provenance", "ok",
            ("git_commit", "str", "", "commit of the code that ran the trial (short hash; 'unknown' outside a git checkout)"),
            ("tensorflow_version", "str", "", "tensorflow.__version__"),
            ("litert_version", "str", "", "ai-edge-litert version"),
            ("host", "str", "", "machine name (socket.gethostname())"),
            ("started_at", "time", "UTC", "trial start, ISO-8601 in row.json"),
            ("ended_at", "time", "UTC", "trial end, ISO-8601 in row.json"))
)

BY_NAME: dict[str, Column] = {c.name: c for c in COLUMNS}
assert len(BY_NAME) == len(COLUMNS), "duplicate column in COLUMNS"

# Dynamic columns: one probe accuracy per evaluation task (e.g. probe_acc_language), and its
# bootstrap interval (probe_acc_language_ci_lo, _ci_hi).
PROBE_PREFIX = "probe_acc_"
PROBE_RE = re.compile(r"^probe_acc_(?!mean(_ci_lo|_ci_hi)?$)(?![A-Za-z0-9_]*_ci_(lo|hi)$)[A-Za-z0-9_]+$")
PROBE_CI_RE = re.compile(r"^probe_acc_(?!mean_)[A-Za-z0-9_]+_ci_(lo|hi)$")
PROBE_COLUMN = Column("probe_acc_<task>", "float", "fraction",
                      "linear probe accuracy on the task's test clips (clip = mean TFLite embedding over its patches; "
                      "StandardScaler + LogisticRegression fit on train clips)", "quality", "ok", "quality")
PROBE_CI_COLUMN = Column("probe_acc_<task>_ci_lo, _ci_hi", "float", "fraction",
                         "95% bootstrap interval of probe_acc_<task> (2000 resamples of the test clips)",
                         "quality", "ok")


def column(name: str) -> Column | None:
    """The schema entry for a column name (probe columns included), or None if unknown."""
    if name in BY_NAME:
        return BY_NAME[name]
    if PROBE_RE.match(name):
        return PROBE_COLUMN
    return PROBE_CI_COLUMN if PROBE_CI_RE.match(name) else None


def probe_columns(df: pd.DataFrame) -> list[str]:
    return sorted(c for c in df.columns if PROBE_RE.match(str(c)))


def probe_ci_columns(df: pd.DataFrame) -> list[str]:
    return sorted(c for c in df.columns if PROBE_CI_RE.match(str(c)))


def quality_columns(df: pd.DataFrame) -> list[str]:
    """Columns of df where higher is better (frontier candidates), fixed ones first."""
    fixed = [c.name for c in COLUMNS if c.role == "quality" and c.name in df.columns]
    return fixed + probe_columns(df)


def cost_columns(df: pd.DataFrame) -> list[str]:
    return [c.name for c in COLUMNS if c.role == "cost" and c.name in df.columns]


# ---------------------------------------------------------------- coercion

_TRUE = {"true", "1", "yes", "t", "y"}
_FALSE = {"false", "0", "no", "f", "n"}


def _to_bool(v):
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
        return pd.NA
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    s = str(v).strip().lower()
    # Parsing 'False' with bool() is True; that bug is why this is explicit.
    return True if s in _TRUE else False if s in _FALSE else pd.NA


def coerce_series(s: pd.Series, kind: str) -> pd.Series:
    if kind == "str":
        return s.astype("str")
    if kind == "float":
        return pd.to_numeric(s, errors="coerce").astype("float64")
    if kind == "int":
        num = pd.to_numeric(s, errors="coerce").astype("float64")
        # A float that is not whole (e.g. 3.5 in an int column) becomes NA, never truncated.
        num = num.where(num == np.round(num))
        return num.astype("Int64")
    if kind == "bool":
        return s.map(_to_bool).astype("boolean") if s.dtype != "boolean" else s
    if kind == "time":
        return pd.to_datetime(s, utc=True, format="ISO8601", errors="coerce").astype(DTYPES["time"])
    raise KeyError(kind)


def coerce(df: pd.DataFrame) -> pd.DataFrame:
    """Known columns to their schema dtype; absent schema columns added as empty; schema order first."""
    out = {}
    for c in COLUMNS:
        if c.name in df.columns:
            out[c.name] = coerce_series(df[c.name], c.kind)
        else:
            out[c.name] = coerce_series(pd.Series([None] * len(df), index=df.index, dtype=object), c.kind)
    for name in probe_columns(df) + probe_ci_columns(df):
        out[name] = coerce_series(df[name], "float")
    rest = [c for c in df.columns if c not in out]  # unknown columns are kept as they are
    for name in rest:
        out[name] = df[name]
    res = pd.DataFrame(out, index=df.index)
    # Contract: '' (not missing) when a trial is OK; CSV reads '' back as missing.
    for name in ("error_class", "error_message"):
        res[name] = res[name].fillna("")
    res["schema_version"] = res["schema_version"].fillna(SCHEMA_VERSION)
    return res


# ---------------------------------------------------------------- older tables

def _from_v1(df: pd.DataFrame) -> pd.DataFrame:
    """v1 -> v2. v1 trained every student from scratch at a constant learning rate, on 2400
    crops (320 at smoke fidelity); its probes had no intervals and R2 was not measured, so
    those columns stay empty."""
    df = df.copy()
    fidelity = df["fidelity"].astype(str) if "fidelity" in df.columns else pd.Series("local", index=df.index)
    for name, value in (("lr_schedule", "constant"), ("init", "scratch"), ("init_from", "")):
        if name not in df.columns:
            df[name] = value
    if "n_crops" not in df.columns:
        df["n_crops"] = fidelity.map({"smoke": 320}).fillna(2400).astype(int)
    for c in COLUMNS:
        if c.name not in df.columns:
            df[c.name] = None
    df["schema_version"] = 2
    return df


def _from_v2(df: pd.DataFrame) -> pd.DataFrame:
    """v2 -> v3: v2 trials never resumed from a checkpoint."""
    df = df.copy()
    df["resumed_from_step"] = 0
    df["schema_version"] = 3
    return df


UPGRADES = {1: _from_v1, 2: _from_v2}   # version -> function giving the next version's table


def upgrade(df: pd.DataFrame) -> pd.DataFrame:
    """A table or row set of an older schema version brought to this one, where a tested
    upgrade exists (rows without a version are taken as current)."""
    if "schema_version" not in df.columns:
        return df
    versions = pd.to_numeric(df["schema_version"], errors="coerce")
    while versions.notna().any() and int(versions.min()) in UPGRADES:
        v = int(versions.min())
        old = versions == v
        df = pd.concat([df[~old], UPGRADES[v](df[old])]).loc[df.index]
        versions = pd.to_numeric(df["schema_version"], errors="coerce")
    return df


# ---------------------------------------------------------------- checks

def check_version(df: pd.DataFrame, source: str) -> None:
    """One clear error for a table from an older schema (version mismatch or missing columns)."""
    hint = "rebuild it from the trial folders (python -m results rebuild SWEEP_DIR) or re-run the sweep"
    if "schema_version" in df.columns:
        versions = sorted({int(v) for v in pd.to_numeric(df["schema_version"], errors="coerce").dropna()})
        other = [v for v in versions if v != SCHEMA_VERSION]
        if other:
            raise SchemaError(f"{source} was written with results schema_version {other[0]}, "
                              f"this code reads version {SCHEMA_VERSION}; {hint}")


def check_required(df: pd.DataFrame, source: str, *, table: bool) -> None:
    """Tables written by write_table carry every column; row sets need the 'all' columns."""
    need = [c.name for c in COLUMNS if table or c.need == "all"]
    missing = [n for n in need if n not in df.columns]
    if missing:
        shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
        raise SchemaError(f"{source} is from an older results schema (missing columns: {shown}); "
                          "rebuild it from the trial folders (python -m results rebuild SWEEP_DIR) or re-run the sweep")


def problems(df: pd.DataFrame) -> list[str]:
    """Everything that does not match the schema; [] when the table is valid."""
    out = []
    for c in COLUMNS:
        if c.name not in df.columns:
            out.append(f"missing column {c.name}")
        elif str(df[c.name].dtype) != str(pd.Series([], dtype=c.dtype).dtype):
            out.append(f"column {c.name} has dtype {df[c.name].dtype}, schema says {c.dtype}")
    for name in probe_columns(df) + probe_ci_columns(df):
        if df[name].dtype != "float64":
            out.append(f"column {name} has dtype {df[name].dtype}, schema says float64")
    unknown = [n for n in df.columns if column(str(n)) is None]
    if unknown:
        out.append(f"columns not in the schema (add them to results/schema.py): {', '.join(map(str, unknown))}")
    if "status" in df.columns:
        bad = sorted(set(df["status"].dropna()) - {"OK", "ERROR"})
        if bad or df["status"].isna().any():
            out.append(f"status must be OK or ERROR, found {bad or 'missing values'}")
    if "trial_id" in df.columns:
        ids = df["trial_id"]
        if ids.isna().any() or not ids.astype(str).str.fullmatch(r"[0-9a-f]{12}").all():
            out.append("trial_id must be 12 lowercase hex characters")
        dup = sorted(ids[ids.duplicated()].astype(str).unique())
        if dup:
            out.append(f"duplicate trial_id: {', '.join(dup[:5])}")
    if "schema_version" in df.columns and (df["schema_version"] != SCHEMA_VERSION).any():
        out.append(f"schema_version must be {SCHEMA_VERSION}")
    return out


def validate(df: pd.DataFrame) -> pd.DataFrame:
    """Raise SchemaError (one line, listing what is wrong) unless df matches the schema; returns df."""
    found = problems(df)
    if found:
        raise SchemaError("results table does not match the schema: " + "; ".join(found))
    return df


# ---------------------------------------------------------------- docs

def markdown_table() -> str:
    """The README's column table (pasted verbatim between the columns markers)."""
    lines = ["| column | dtype | unit | present | how it was measured |", "|---|---|---|---|---|"]
    need = {"all": "every row", "ok": "OK rows", "optional": "optional"}
    at = COLUMNS.index(BY_NAME["probe_acc_mean"])  # per-task probes listed just before their mean
    for c in COLUMNS[:at] + (PROBE_COLUMN, PROBE_CI_COLUMN) + COLUMNS[at:]:
        lines.append(f"| `{c.name}` | {c.dtype} | {c.unit} | {need[c.need]} | {c.how.replace('|', '/')} |")
    return "\n".join(lines)
