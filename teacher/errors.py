"""Errors the teacher package raises on bad input.

Every message is one line that says what is wrong and what to do; CLIs print
`error: <message>` and exit 2, so users never see a traceback for their own
mistakes. The base class is shared by every package (results/errors.py).
"""
from __future__ import annotations

from results.errors import FrillError


class AudioError(FrillError):
    """An audio file cannot be read or is unusable."""


class CorpusError(FrillError):
    """A corpus (folder, manifest, built-in) cannot give any usable crops."""


class TeacherError(FrillError):
    """A teacher spec cannot be resolved, loaded or called."""


class CacheError(FrillError):
    """The distillation cache cannot be built, read or written."""
