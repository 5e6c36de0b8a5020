"""DICOM UID syntax (PS3.5 9.1): what a UID received from a peer must look like before it is used.

A UID names files, index rows and query conditions; one that is not a UID (``..``, ``/abs``, 200
characters, non-ASCII bytes) is refused where it enters instead of being carried along.

A component with a leading zero (``1.2.03``) breaks PS3.5 too and is refused by default; some older
modalities send such UIDs, and a site that must take their images says so (``dicom.accept_uid_leading_zeros``),
as they are harmless as names and keys.  Query keys tolerate them always: a query only reads, and must find
what such a site stored.
"""
from __future__ import annotations

import re

MAX_LENGTH = 64
# components of digits separated by single dots
_UID = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_LEADING_ZERO = re.compile(r"(?:^|\.)0[0-9]")


def uid_problem(value: str, leading_zeros: bool = False) -> str:
    """Why ``value`` is not a valid UID ('' when it is one); ``leading_zeros`` tolerates ``1.2.03``."""
    if not value:
        return "empty UID"
    if len(value) > MAX_LENGTH:
        return f"UID of {len(value)} characters (at most {MAX_LENGTH})"
    if not _UID.fullmatch(value):
        return f"malformed UID {value[:MAX_LENGTH]!r}"
    if not leading_zeros and _LEADING_ZERO.search(value):
        return f"UID {value!r} has a component with a leading zero (PS3.5 9.1)"
    return ""


def is_valid_uid(value: str) -> bool:
    return not uid_problem(value)
