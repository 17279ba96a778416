"""Teachers behind one small interface, and `get_teacher(spec)`.

A teacher maps 16 kHz crops [N, CROP_SAMPLES] to targets [N, output_dim]. Two
kinds exist: the offline Resemblyzer speaker encoder (weights shipped in the
`resemblyzer` wheel, rebuilt in tf-keras) and any TF-Hub handle or local
SavedModel (TRILL by default for 'trill'). Specs may name an output key as
`spec#key`, e.g. `trill#embedding`.
"""
from __future__ import annotations

import os

# Re-exported: callers name teachers through this module.
from teacher.base import (NAMED_TEACHERS, RESEMBLYZER_REBUILD, TRILL_HANDLE, TRILL_KEY,  # noqa: F401
                          Teacher, is_url, resemblyzer_weights_path)
from teacher.errors import TeacherError


def split_spec(spec: str) -> tuple[str, str | None]:
    """'trill#embedding' -> ('trill', 'embedding'); a bare spec has no key."""
    base, sep, key = spec.partition("#")
    return base, (key or None) if sep else None


def resolve_spec(spec: str) -> tuple[str, str | None]:
    """Map a spec to (handle, output key) without loading anything; unknown names fail here."""
    base, key = split_spec(spec.strip())
    if base == "resemblyzer":
        if key:
            raise TeacherError("the resemblyzer teacher has a single output; drop '#" + key + "'")
        return base, None
    if base == "trill":
        return TRILL_HANDLE, key or TRILL_KEY
    if is_url(base) or os.path.isdir(base):
        return base, key
    if os.path.exists(base):
        raise TeacherError(f"teacher path {base} is not a SavedModel directory")
    raise TeacherError(f"unknown teacher '{spec}': use one of {', '.join(NAMED_TEACHERS)}, "
                       "a TF-Hub URL, or a local SavedModel directory (PATH#output_key)")


def get_teacher(spec: str) -> Teacher:
    """Load the teacher a spec names ('resemblyzer', 'trill', URL or SavedModel dir [#key])."""
    handle, key = resolve_spec(spec)
    if handle == "resemblyzer":
        from teacher.resemblyzer import ResemblyzerTeacher

        return ResemblyzerTeacher()
    from teacher.hub import HubTeacher

    name = "trill" if split_spec(spec.strip())[0] == "trill" else spec.strip()
    return HubTeacher(handle, key, name=name)

