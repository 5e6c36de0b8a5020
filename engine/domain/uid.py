"""DICOM UID syntax (PS3.5 9.1): what a UID received from a peer must look like before it is used.

A UID names files, index rows and query conditions; one that is not a UID (``..``, ``/abs``, 200
characters, non-ASCII bytes) is refused where it enters instead of being carried along.

A component with a leading zero (``1.2.03``) breaks PS3.5 too, but older modalities do send such UIDs
and they are harmless as names and keys: refusing them would lose those studies, so they are accepted.
"""
from __future__ import annotations

import re

MAX_LENGTH = 64
# components of digits separated by single dots (leading zeros tolerated, see above)
_UID = re.compile(r"[0-9]+(?:\.[0-9]+)*")


def uid_problem(value: str) -> str:
    """Why ``value`` is not a valid UID ('' when it is one)."""
    if not value:
        return "empty UID"
    if len(value) > MAX_LENGTH:
        return f"UID of {len(value)} characters (at most {MAX_LENGTH})"
    if not _UID.fullmatch(value):
        return f"malformed UID {value[:MAX_LENGTH]!r}"
    return ""


def is_valid_uid(value: str) -> bool:
    return not uid_problem(value)
