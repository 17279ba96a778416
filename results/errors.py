"""The project's error base class, and the one-line reason of an exception. Standard library only.

Every package's errors derive from FrillError; the CLIs catch it and print `error: <message>`
(one line) with a non-zero exit, so a user's own mistake never shows a traceback.
It lives here because results/ is the bottom layer: teacher/, students/ and sweep/ may all
import it, and importing it loads neither TF nor Ray.
"""
from __future__ import annotations


class FrillError(Exception):
    """Base class: a one-line, user-facing message (newlines are flattened)."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-empty line of an exception's message (at most `limit` chars), or its
    class name when the message is empty."""
    line = next((s for s in str(exc).splitlines() if s.strip()), "")
    return line.strip()[:limit] or type(exc).__name__
