"""Errors raised by the measurement and evaluation stages (one-line, actionable messages)."""
from __future__ import annotations

from results.errors import FrillError


class MeasureError(FrillError):
    """Size, MAC or latency measurement of a converted model failed."""


class EvalError(FrillError):
    """Quality evaluation could not produce a meaningful number (bad task, bad outputs)."""
