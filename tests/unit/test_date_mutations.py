"""Mutation test of every date/time field the shipped profiles read (issue 11 item 10): each invalid value is
answered AE with ERR 102 at that field and a journal reason naming it, never "internal error".

The fields come from the profiles themselves (every ``date``/``time``/``ts`` rule, plus MSH-7, the start of
an order without one), so a field added to a profile is mutated too.  Fields no profile reads are mutated
as well: they must not matter.  The wire tests are in tests/integration/test_bad_values.py."""
from __future__ import annotations

import itertools

import pytest

from engine.hl7.message import Message
from engine.hl7.profiles import load_profiles
from tests.conftest import ROOT, Pipeline
from tests.hl7_fields import ADT_V251, OMI_V251, ORM_V231, ORM_V231_TWO_STEPS, build, with_value

INVALID = [
    "20261201106000",        # minute 60
    "20261201240000",        # hour 24
    "20261301",              # month 13
    "20261232",              # day 32
    "20250229",              # leap day in a year that has none
    "00000101",              # year 0
    "2026120A",              # a letter
    "2026-12-01",            # ISO punctuation
    "202612011000001",       # 15 digits: too long, odd
    "2026120110000000",      # 16 digits: too long
    "20261201100000.5X",     # fraction with a letter
    "20261201.5",            # fraction without seconds
    "20261201100000+2500",   # offset hour 25
    "20261201100000-0060",   # offset minute 60
    "99991231235959-1200",   # past year 9999 in the local zone
    "26",                    # too short
    "\\S\\\\S\\",           # escaped component separators
]
EMPTY = ["^^^", "&&", '""']  # empty components and the explicit null: no value, not an error

TEMPLATES = {"ORM^O01": (ORM_V231, "ihe-v231-orm"), "OMI^O23": (OMI_V251, "ihe-v251-omi"),
             "ADT^A04": (ADT_V251, "ihe-v231-orm")}
NOT_READ = {"ADT^A04": ["EVN-2", "EVN-6", "PV1-44", "PV1-45", "PID-29"],
            "ORM^O01": ["OBR-6", "OBR-7", "ORC-15", "OBR-36"], "OMI^O23": ["TQ1-8", "OBR-7", "ORC-15"]}
_ids = itertools.count(1)


def date_fields(code: str) -> list[str]:
    """Every path a date/time rule of the message's profile reads (ADT: the patient part only)."""
    profile = load_profiles(ROOT / "profiles")[TEMPLATES[code][1]]
    rules = profile.patient if code.startswith("ADT") else profile.patient + profile.request + profile.step
    paths = [path for rule in rules if rule.kind in ("date", "time", "ts") for path in rule.paths]
    return (["MSH-7"] if not code.startswith("ADT") else []) + list(dict.fromkeys(paths))


def mutated(code: str, path: str, value: str, template: str | None = None, occurrence: int = 1) -> bytes:
    base = build(template or TEMPLATES[code][0], f"MUT{next(_ids):05d}")
    return with_value(base, path, value, occurrence).encode()


def err_at(ack: bytes) -> tuple[str, str, str, str]:
    """(segment, sequence, field, HL7 0357 code) of the ACK's first ERR, in either ERR layout."""
    err = Message(ack.decode("latin-1"))
    if err.get("ERR-2.1"):  # v2.5+: ERR-2 location, ERR-3 code
        return err.get("ERR-2.1"), err.get("ERR-2.2"), err.get("ERR-2.3"), err.get("ERR-3.1")
    return err.get("ERR-1.1"), err.get("ERR-1.2"), err.get("ERR-1.3"), err.get("ERR-1.4.1")


CASES = [(code, path) for code in TEMPLATES for path in date_fields(code)]


def test_the_shipped_profiles_read_these_date_fields() -> None:
    # The list the mutations below run over; a profile change shows here.
    assert {code: date_fields(code) for code in TEMPLATES} == {
        "ORM^O01": ["MSH-7", "PID-7", "ORC-9", "ORC-7.4", "OBR-27.4"],
        "OMI^O23": ["MSH-7", "PID-7", "ORC-9", "TQ1-7"],
        "ADT^A04": ["PID-7"]}


@pytest.mark.parametrize("code,path", CASES)
def test_each_invalid_value_is_ae_102_at_the_field(pipeline: Pipeline, code: str, path: str) -> None:
    segment, _, rest = path.partition("-")
    for value in INVALID:
        result = pipeline.send(mutated(code, path, value))
        assert (result.ack_code, result.status) == ("AE", "rejected"), (value, result.reason)
        assert err_at(result.ack) == (segment, "1", rest.split(".")[0], "102"), value
        assert result.reason.startswith(f"{path} "), (value, result.reason)
        assert "internal error" not in result.reason


def test_the_second_step_segment_is_named_with_its_sequence(pipeline: Pipeline) -> None:
    for value in INVALID:
        result = pipeline.send(mutated("ORM^O01", "OBR-27.4", value, ORM_V231_TWO_STEPS, occurrence=2))
        assert result.ack_code == "AE" and err_at(result.ack) == ("OBR", "2", "27", "102"), value
        assert result.reason.startswith("OBR(2)-27.4 "), result.reason


@pytest.mark.parametrize("code,path", CASES)
def test_empty_components_are_no_value(pipeline: Pipeline, code: str, path: str) -> None:
    for value in EMPTY:
        result = pipeline.send(mutated(code, path, value))
        assert (result.ack_code, result.status) == ("AA", "applied"), (value, result.reason)


@pytest.mark.parametrize("code", list(NOT_READ))
def test_date_fields_no_profile_reads_do_not_matter(pipeline: Pipeline, code: str) -> None:
    for path, value in itertools.product(NOT_READ[code], INVALID[:5] + EMPTY):
        result = pipeline.send(mutated(code, path, value))
        assert (result.ack_code, result.status) == ("AA", "applied"), (path, value, result.reason)
