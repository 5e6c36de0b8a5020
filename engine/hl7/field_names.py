"""The standard's names of HL7 v2 fields (PID-5: PATIENT_NAME), from hl7apy's tables of each version.

For the API's segment/field table of a journaled message.  A field the version does not define (a
Z-segment, a field past the end) has no name: "".
"""
from __future__ import annotations

import functools

from hl7apy.core import Field

FALLBACK_VERSION = "2.5.1"


@functools.lru_cache(maxsize=4096)
def field_name(segment: str, number: int, version: str) -> str:
    try:
        return str(Field(f"{segment}_{number}", version=version or FALLBACK_VERSION).long_name or "")
    except Exception:  # noqa: BLE001 - hl7apy raises several kinds for an unknown field or version
        if version != FALLBACK_VERSION:
            return field_name(segment, number, FALLBACK_VERSION)
        return ""
