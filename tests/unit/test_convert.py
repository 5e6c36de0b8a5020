"""Unit tests of the HL7 -> DICOM value conversions (engine/hl7/convert.py, SWF.md section 3.3)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from engine.domain.matching_keys import normalise_name, sortable_datetime
from engine.hl7.convert import (
    ConversionError,
    code_item,
    number,
    parse_ts,
    priority,
    sex,
    xcn_to_pn,
    xpn_to_pn,
)

UTC = timezone.utc
CET = timezone(timedelta(hours=1))


# -- XPN / XCN -> PN -------------------------------------------------------------------------------------
@pytest.mark.parametrize("xpn, pn", [
    ("MÜLLER^ANNA^MARIA^^DR.", "MÜLLER^ANNA^MARIA^DR."),     # SWF.md 3.3.1 example
    ("MÜLLER^ANNA", "MÜLLER^ANNA"),
    ("MÜLLER", "MÜLLER"),
    ("SMITH^JOHN^^JR^MR^PHD", "SMITH^JOHN^^MR^JR PHD"),      # suffix + degree joined in the PN suffix
    ("SMITH^JOHN^^^^MD", "SMITH^JOHN^^^MD"),                 # degree alone becomes the suffix
    ("SMITH^JOHN^^III", "SMITH^JOHN^^^III"),
    ("SMITH^^^^^^L", "SMITH"),                               # XPN-7 name type is not part of the PN
    ("^ANNA", "^ANNA"),
    ("", ""),
])
def test_xpn_to_pn(xpn, pn):
    assert xpn_to_pn(xpn.split("^")) == pn


def test_xpn_to_pn_takes_components_as_given():
    # message.components() hands over the first subcomponent of XPN-1 (FN.1 surname).
    assert xpn_to_pn(["VAN DER BERG", "JAN"]) == "VAN DER BERG^JAN"
    assert xpn_to_pn([]) == ""


@pytest.mark.parametrize("xcn, pn", [
    ("2345^GREY^MEREDITH^^^DR", "GREY^MEREDITH^^DR"),        # SWF.md 9 referring physician
    ("2345^GREY^MEREDITH", "GREY^MEREDITH"),
    ("77^HOUSE^GREGORY^M^JR^DR^MD", "HOUSE^GREGORY^M^DR^JR MD"),
    ("77^HOUSE^^^^^MD", "HOUSE^^^^MD"),
    ("77", ""),                                              # the ID alone is no name
    ("", ""),
])
def test_xcn_to_pn(xcn, pn):
    assert xcn_to_pn(xcn.split("^")) == pn


# -- normalise_name --------------------------------------------------------------------------------------
@pytest.mark.parametrize("pn, normalised", [
    ("MÜLLER^ANNA^MARIA^DR.", "MULLER^ANNA^MARIA^DR."),
    ("Müller^Anna", "MULLER^ANNA"),
    ("müller^anna^^", "MULLER^ANNA"),                         # trailing empty components dropped
    ("Dvořák^Antonín", "DVORAK^ANTONIN"),
    ("Ñúñez^José", "NUNEZ^JOSE"),
    ("Łukasiewicz^Jan", "LUKASIEWICZ^JAN"),                   # stroke letters do not decompose in NFKD
    ("Ørsted^Hans", "ORSTED^HANS"),
    ("Đoković^Novak", "DOKOVIC^NOVAK"),
    ("Straße", "STRASSE"),
    ("Yamada^Tarou=山田^太郎=やまだ^たろう", "YAMADA^TAROU"),     # only the alphabetic group
    ("=山田^太郎", ""),
    ("", ""),
])
def test_normalise_name(pn, normalised):
    assert normalise_name(pn) == normalised


def test_normalise_name_matches_across_spellings():
    assert normalise_name("MÜLLER^ANNA") == normalise_name("müller^anna") == normalise_name("Mu\u0308ller^Anna")


# -- parse_ts ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, expected", [
    ("20250304", ("20250304", "")),
    ("  20250304  ", ("20250304", "")),
    ("2025030410", ("20250304", "10")),
    ("202503041015", ("20250304", "1015")),
    ("20250304101530", ("20250304", "101530")),
    ("20250304101530.1", ("20250304", "101530.1")),
    ("20250304101530.1234", ("20250304", "101530.1234")),
    ("20250304101530.123456", ("20250304", "101530.123456")),
    ("20250304101530.12345678", ("20250304", "101530.123456")),   # DICOM TM holds 6 fraction digits
    ("20240229", ("20240229", "")),                               # leap day
    ("19000101000000", ("19000101", "000000")),
    ("20251231235959", ("20251231", "235959")),
    ("", ("", "")),
    ("   ", ("", "")),
])
def test_parse_ts_without_offset(value, expected):
    assert parse_ts(value, UTC) == expected


@pytest.mark.parametrize("value, zone, expected", [
    ("20250304100000+0100", UTC, ("20250304", "090000")),
    ("20250304100000-0500", UTC, ("20250304", "150000")),
    ("20250304100000+0100", CET, ("20250304", "100000")),          # already local: unchanged
    ("20250304100000+0000", CET, ("20250304", "110000")),
    ("20250304233000-0200", UTC, ("20250305", "013000")),          # crosses midnight
    ("20250301003000+0100", UTC, ("20250228", "233000")),          # back into February
    ("202503041015+0100", UTC, ("20250304", "0915")),              # minute precision kept
    ("2025030410+0100", UTC, ("20250304", "09")),                  # hour precision kept
    ("2025030410+0530", UTC, ("20250304", "0430")),                # ... but a half-hour offset keeps its minutes
    ("20250304101530.25+0100", UTC, ("20250304", "091530.25")),    # fraction kept
    ("20250304+0100", UTC, ("20250304", "")),                      # date only: no conversion, zero-length time
    ("20250304100000+1400", UTC, ("20250303", "200000")),
    ("20250304100000-1200", UTC, ("20250304", "220000")),
])
def test_parse_ts_offsets_are_converted_to_the_local_zone(value, zone, expected):
    assert parse_ts(value, zone) == expected


def test_parse_ts_uses_the_system_zone_by_default():
    local = datetime(2025, 3, 4, 10, 0, tzinfo=UTC).astimezone()
    assert parse_ts("20250304100000+0000") == (local.strftime("%Y%m%d"), local.strftime("%H%M%S"))
    assert parse_ts("20250304100000") == ("20250304", "100000")     # no offset: taken as local, not converted


def test_parse_ts_partial_dates_keep_their_precision():
    # SWF.md 3.3.4: date = first 8 characters; YYYY / YYYYMM are valid HL7 precisions.
    assert parse_ts("1978", UTC) == ("1978", "")
    assert parse_ts("197802", UTC) == ("197802", "")


@pytest.mark.parametrize("value", [
    "20250230",             # 30 February
    "20250229",             # not a leap year
    "20250431",             # 31 April
    "20251301",             # month 13
    "20250001",             # month 0
    "20250300",             # day 0
    "2025030424",           # hour 24
    "202503041060",         # minute 60
    "20250304101561",       # second 61
    "2025030",              # odd lengths
    "202503041",
    "20250304101",
    "2025030410153",
    "202",                  # too short
    "20",
    "2025030410153000",     # too long
    "2025030410153000000",
    "2025-03-04",           # not HL7
    "20250304T101530",
    "2025030410:15",
    "abcd",
    "２０２５０３０４",      # full-width digits
    "202503041015.5",       # fraction needs seconds
    "20250304.5",
    "20250304101530.",
    "20250304101530.ab",
    "20250304101530+01",    # malformed offsets
    "20250304101530+01000",
    "20250304101530+ab00",
    "20250304101530+2400",  # offset out of range
    "20250304101530+0160",
    "20250304101530+9999",
    "20250304101530++0100",
    "20250304+01",
    "+0100",
    "00010101000000+0100",  # conversion leaves the datetime range (used to raise OverflowError)
    "99991231233000-0100",
])
def test_parse_ts_invalid_values_raise_conversion_error(value):
    with pytest.raises(ConversionError):
        parse_ts(value, UTC)


def test_conversion_error_is_a_value_error():
    assert issubclass(ConversionError, ValueError)


# -- sortable_datetime ---------------------------------------------------------------------------------
def test_sortable_datetime_format():
    assert sortable_datetime("20250304", "") == "20250304000000.000000"
    assert sortable_datetime("20250304", "10") == "20250304100000.000000"
    assert sortable_datetime("20250304", "1015") == "20250304101500.000000"
    assert sortable_datetime("20250304", "101530.25") == "20250304101530.250000"
    assert sortable_datetime("20250304", "101530.1234567") == "20250304101530.123456"
    assert sortable_datetime("", "1015") == ""


def test_sortable_datetime_string_order_is_time_order():
    values = ["20250304101530.5", "20250304", "2025030410", "202503041015", "20250304101530", "20250303235959",
              "20250304101530.25", "20250305", "2025030409", "20241231235959.9999", "20250304000000"]
    keys = {v: sortable_datetime(*parse_ts(v, UTC)) for v in values}
    by_key = sorted(values, key=keys.__getitem__)
    by_time = sorted(values, key=lambda v: datetime.strptime(
        (v.split(".")[0] + "000000")[:14], "%Y%m%d%H%M%S").timestamp() + float("0." + (v.split(".") + ["0"])[1]))
    assert by_key == by_time
    assert len(set(keys.values())) == len(values) - 1   # 20250304 and its 00:00:00 are the same instant


# -- sex / priority ------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, expected", [
    ("F", "F"), ("M", "M"), ("O", "O"), ("A", "O"), ("N", "O"), ("U", ""), ("X", ""), ("", ""),
    ("f", "F"), (" m ", "M"), ("FEMALE", ""),
])
def test_sex(value, expected):
    assert sex(value) == expected


@pytest.mark.parametrize("value, expected", [
    ("S", "STAT"), ("A", "HIGH"), ("P", "HIGH"), ("C", "HIGH"), ("R", "ROUTINE"), ("T", "MEDIUM"),
    ("", ""), ("X", ""), ("PRN", ""), ("s", "STAT"), (" R ", "ROUTINE"),
])
def test_priority(value, expected):
    assert priority(value) == expected


# -- code_item -----------------------------------------------------------------------------------------
SCHEMES = {"L": "99RAD", "99LOCAL": "99RAD"}


def test_code_item():
    assert code_item("CTCHESTC", "99RAD", "CT chest with contrast", {}) == {
        "CodeValue": "CTCHESTC", "CodingSchemeDesignator": "99RAD", "CodeMeaning": "CT chest with contrast"}


@pytest.mark.parametrize("scheme, designator", [("L", "99RAD"), ("99LOCAL", "99RAD"), ("DCM", "DCM"),
                                                ("LN", "LN")])
def test_code_item_maps_the_coding_scheme(scheme, designator):
    assert code_item("X1", scheme, "Meaning", SCHEMES)["CodingSchemeDesignator"] == designator


@pytest.mark.parametrize("value, scheme, meaning", [
    ("", "99RAD", "Meaning"), ("X1", "", "Meaning"), ("X1", "99RAD", ""), ("", "", ""),
])
def test_code_item_needs_value_scheme_and_meaning(value, scheme, meaning):
    assert code_item(value, scheme, meaning, SCHEMES) is None


def test_code_item_long_values_and_meanings():
    sixteen, seventeen = "A" * 16, "B" * 17
    assert code_item(sixteen, "99RAD", "M", {}) == {"CodeValue": sixteen, "CodingSchemeDesignator": "99RAD",
                                                    "CodeMeaning": "M"}
    item = code_item(seventeen, "99RAD", "M", {})
    assert item["LongCodeValue"] == seventeen and "CodeValue" not in item
    assert code_item("X", "99RAD", "m" * 70, {})["CodeMeaning"] == "m" * 64


@pytest.mark.parametrize("value", ["72", "-1.5", "+3", ".5", "1.", " 72.5 "])
def test_hl7_numbers(value: str) -> None:
    assert number(value) == value.strip()


@pytest.mark.parametrize("value", ["", "n/a", "nan", "inf", "1e5", "1,5", "--1", "."])
def test_what_is_no_hl7_number(value: str) -> None:
    with pytest.raises(ConversionError, match="not an HL7 number"):
        number(value)


@pytest.mark.parametrize("component,bad", [("DOE^SMITH", "^"), ("A=B", "="), ("A\\B", "\\"), ("A\r\nB", "\r")])
def test_a_name_component_holding_a_pn_delimiter_or_control_character_is_refused(component: str, bad: str) -> None:
    with pytest.raises(ConversionError) as caught:
        xpn_to_pn([component, "JANE"])
    assert str(caught.value) == f"name component {component!r} holds {bad!r}, which a DICOM name cannot"
    with pytest.raises(ConversionError):
        xcn_to_pn(["123", component])


def test_iso_2022_escapes_stay_in_names() -> None:
    assert xpn_to_pn(["\x1b$B;3ED\x1b(B", "JANE"]) == "\x1b$B;3ED\x1b(B^JANE"


def test_a_coding_system_longer_than_a_dicom_sh_is_refused() -> None:
    with pytest.raises(ConversionError, match="longer than 16"):
        code_item("CT1", "A_CODING_SYSTEM_OF_30_LETTERS", "CT head", {})
