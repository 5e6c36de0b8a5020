"""The names of HL7 v2 fields in the journal's segment/field table.

A site's mapping profile names the fields it reads: ZDS-1 is StudyInstanceUID under the IHE v2.3.1
profile, ORC-3 is AccessionNumber under a variant whose RIS puts it there.  That name, the DICOM
attributes the profile fills from the field, is preferred; a field no profile path reads keeps the
standard's name from hl7apy's tables of the message's version (PID-5: PATIENT_NAME); a field neither
defines (an unmapped Z-segment, a field past the end) has none.  ``name_source`` says which it is."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hl7apy.core import Field

if TYPE_CHECKING:
    from .mapping import Profile

FALLBACK_VERSION = "2.5.1"


@dataclass(frozen=True)
class FieldName:
    name: str
    source: str            # "profile", "standard" or "none"
    where: str             # the profile's name and file:line, or "HL7 v2.x"


@functools.lru_cache(maxsize=4096)
def field_name(segment: str, number: int, version: str) -> str:
    """The standard's long name of SEG-number in that version (else 2.5.1's); "" when it defines none."""
    try:
        return str(Field(f"{segment}_{number}", version=version or FALLBACK_VERSION).long_name or "")
    except Exception:  # noqa: BLE001 - hl7apy raises several kinds for an unknown field or version
        if version != FALLBACK_VERSION:
            return field_name(segment, number, FALLBACK_VERSION)
        return ""


@functools.lru_cache(maxsize=64)
def profile_field_names(profile: "Profile") -> dict[tuple[str, int], FieldName]:
    """(segment, field) -> the DICOM attributes the profile fills from it, in the profile's order; a path
    that reads one component names it: ``RequestedProcedureDescription (OBR-4.2)``."""
    named: dict[tuple[str, int], list[tuple[str, str]]] = {}
    for rule in (*profile.patient, *profile.request, *profile.step):
        by_field: dict[tuple[str, int], list[str]] = {}
        for path, text in zip(rule.field_paths, rule.paths):
            by_field.setdefault((path.segment, path.field), []).append(text if path.component else "")
        for key, parts in by_field.items():
            shown = [part for part in parts if part]
            label = f"{rule.keyword} ({', '.join(shown)})" if shown and len(shown) == len(parts) else rule.keyword
            named.setdefault(key, []).append((label, rule.where))
    return {key: FieldName("; ".join(label for label, _ in labels), "profile",
                           f"profile {profile.name} {labels[0][1]}".rstrip())
            for key, labels in named.items()}


def name_of(segment: str, number: int, version: str, profile: "Profile | None") -> FieldName:
    """The profile's name of the field when it has one, else the standard's, else none."""
    if profile is not None:
        found = profile_field_names(profile).get((segment, number))
        if found is not None:
            return found
    standard = field_name(segment, number, version)
    if standard:
        return FieldName(standard, "standard", f"HL7 v{version or FALLBACK_VERSION}")
    return FieldName("", "none", "")
