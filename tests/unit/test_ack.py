"""Unit tests of the ACK builder (engine/hl7/ack.py) against SWF.md sections 8.3, 8.5 and the section 9 examples."""
from __future__ import annotations

import re

import hl7   # the test extra's independent HL7 parser: installed with the suite, never skipped
import pytest

from engine.hl7 import ack
from engine.hl7.ack import ENHANCED_CODES, HL7Error, Identity, accept_ack_wanted, build_ack, new_control_id
from engine.hl7.message import Delimiters, Message


@pytest.fixture
def frozen(monkeypatch):
    """MSH-7 of the ACK fixed so that whole ACKs can be compared literally."""
    monkeypatch.setattr(ack, "hl7_timestamp", lambda: "20250304083001")


def message(msh: str, *segments: str, codec: str = "utf-8") -> Message:
    return Message("\r".join([msh, *segments]), codec)


def segments(text: str) -> list[str]:
    assert text.endswith("\r") and "\n" not in text
    return text[:-1].split("\r")


def read(text: str) -> Message:
    return Message(text)


OMI_AA = ("MSH|^~\\&|RIS|GENHOSP|SWF_ENGINE|RADIOLOGY|20250304083000||OMI^O23^OMI_O23|RIS0000456|P|2.5.1||||||"
          "UNICODE UTF-8")
OMI_AE = "MSH|^~\\&|RIS|GENHOSP|SWF_ENGINE|RADIOLOGY|20250304083100||OMI^O23^OMI_O23|RIS0000458|P|2.5.1"
ORM_CA = "MSH|^~\\&|RIS|GENHOSP|SWF_ENGINE|RADIOLOGY|20250304083100||ORM^O01|RIS0000459|P|2.3.1"
ADT = "MSH|^~\\&|HIS|GENHOSP|SWF_ENGINE|RADIOLOGY|20250304081502||ADT^A04^ADT_A01|HIS0000123|P|{v}"


# -- SWF.md section 9 literal examples ----------------------------------------------------------------
def test_swf_example_aa_v251(frozen):
    text = build_ack(message(OMI_AA, "PID|1||PAT4711"), "AA", control_id="ENG0000001")
    assert text == ("MSH|^~\\&|SWF_ENGINE|RADIOLOGY|RIS|GENHOSP|20250304083001||ACK^O23^ACK|ENG0000001|P|2.5.1||||||"
                    "UNICODE UTF-8\r"
                    "MSA|AA|RIS0000456\r")


def test_swf_example_ae_v251_err_layout(frozen):
    error = HL7Error(101, "OBR-4 Universal Service ID is empty", "OBR", 1, 4, 1)
    text = build_ack(message(OMI_AE), "AE", [error], control_id="ENG0000002")
    assert text.replace("20250304083001", "20250304083102") == (
        "MSH|^~\\&|SWF_ENGINE|RADIOLOGY|RIS|GENHOSP|20250304083102||ACK^O23^ACK|ENG0000002|P|2.5.1\r"
        "MSA|AE|RIS0000458\r"
        "ERR||OBR^1^4^1^1|101^Required field missing^HL70357|E||||OBR-4 Universal Service ID is empty\r")


def test_swf_example_ae_v231_err_layout(frozen):
    error = HL7Error(204, "Unknown order PLC-99999 for ORC-1=CA", "ORC", 1, 2)
    lines = segments(build_ack(message(ORM_CA), "AE", [error], control_id="ENG0000003"))
    # SWF.md 9 prints MSH-9 as ACK^O01, but 8.3 (and HL7 2.3.1's three-component MSH-9) say ACK^O01^ACK.
    assert lines[0] == "MSH|^~\\&|SWF_ENGINE|RADIOLOGY|RIS|GENHOSP|20250304083001||ACK^O01^ACK|ENG0000003|P|2.3.1"
    assert lines[1] == "MSA|AE|RIS0000459|Unknown order PLC-99999 for ORC-1=CA"
    assert lines[2] == "ERR|ORC^1^2^204&Unknown key identifier&HL70357"
    assert len(lines) == 3


# -- MSH of the ACK ----------------------------------------------------------------------------------
def test_sender_and_receiver_are_swapped():
    a = read(build_ack(message(ADT.format(v="2.5.1")), "AA"))
    assert (a.get("MSH-3"), a.get("MSH-4")) == ("SWF_ENGINE", "RADIOLOGY")
    assert (a.get("MSH-5"), a.get("MSH-6")) == ("HIS", "GENHOSP")


def test_sender_components_are_kept_as_received():
    msh = "MSH|^~\\&|HIS^1.2.3^ISO|GEN^2.9^ISO|ENG^4.5^ISO|RAD^6.7^ISO|2025||ADT^A04|C1|P|2.5.1"
    lines = segments(build_ack(message(msh), "AA"))
    assert lines[0].startswith("MSH|^~\\&|ENG^4.5^ISO|RAD^6.7^ISO|HIS^1.2.3^ISO|GEN^2.9^ISO|")


@pytest.mark.parametrize("msh5, msh6, expected", [
    ("", "", ("OUR_APP", "OUR_FAC")),
    ("SWF_X", "", ("SWF_X", "OUR_FAC")),
    ("", "RAD_X", ("OUR_APP", "RAD_X")),
])
def test_empty_receiver_fields_fall_back_to_the_configured_identity(msh5, msh6, expected):
    msh = f"MSH|^~\\&|HIS|GENHOSP|{msh5}|{msh6}|2025||ADT^A04|C1|P|2.5.1"
    a = read(build_ack(message(msh), "AA", identity=Identity("OUR_APP", "OUR_FAC")))
    assert (a.get("MSH-3"), a.get("MSH-4")) == expected
    assert (a.get("MSH-5"), a.get("MSH-6")) == ("HIS", "GENHOSP")


@pytest.mark.parametrize("version, expected", [
    ("2.3", "ACK^A04"),
    ("2.3.1", "ACK^A04^ACK"),
    ("2.4", "ACK^A04^ACK"),
    ("2.5", "ACK^A04^ACK"),
    ("2.5.1", "ACK^A04^ACK"),
    ("2.6", "ACK^A04^ACK"),
])
def test_msh9_by_version(version, expected):
    a = read(build_ack(message(ADT.format(v=version)), "AA"))
    assert a.get("MSH-9") == expected
    assert a.get("MSH-12") == version


def test_msh9_without_trigger_event():
    a = read(build_ack(message("MSH|^~\\&|S|F|R|RF|2025||ORM|C1|P|2.5.1"), "AR", [HL7Error(201, "no trigger")]))
    assert a.get("MSH-9") == "ACK"


def test_msh7_is_a_timestamp_of_now():
    a = read(build_ack(message(ADT.format(v="2.5.1")), "AA"))
    assert re.fullmatch(r"\d{14}", a.get("MSH-7"))
    assert a.get("MSH-7") != "20250304081502"


def test_msh10_is_new_and_unique():
    received = message(ADT.format(v="2.5.1"))
    ids = [read(build_ack(received, "AA")).get("MSH-10") for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert "HIS0000123" not in ids
    assert all(0 < len(i) <= 20 for i in ids)   # MSH-10 is ST(20)
    assert read(build_ack(received, "AA", control_id="FIXED1")).get("MSH-10") == "FIXED1"


def test_new_control_id_format():
    first, second = new_control_id(), new_control_id()
    assert first != second
    assert re.fullmatch(r"E\d{19}", first)


@pytest.mark.parametrize("msh11", ["P", "D", "T", "P^T"])
def test_msh11_as_received(msh11):
    msh = f"MSH|^~\\&|S|F|R|RF|2025||ADT^A04|C1|{msh11}|2.5.1"
    lines = segments(build_ack(message(msh), "AA"))
    assert lines[0].split("|")[10] == msh11


def test_msh11_defaults_to_p_when_empty():
    a = read(build_ack(message("MSH|^~\\&|S|F|R|RF|2025||ADT^A04|C1||2.5.1"), "AA"))
    assert a.get("MSH-11") == "P"


def test_msh12_as_received_with_components():
    a = read(build_ack(message("MSH|^~\\&|S|F|R|RF|2025||ADT^A04|C1|P|2.5.1^DEU"), "AA"))
    assert a.get("MSH-12") == "2.5.1^DEU"
    assert a.get("MSH-9") == "ACK^A04^ACK"


def test_msh12_empty_uses_the_default_version():
    a = read(build_ack(message("MSH|^~\\&|S|F|R|RF|2025||ADT^A04|C1|P"), "AR", [HL7Error(203, "no version")],
                       identity=Identity(default_version="2.4")))
    assert a.get("MSH-12") == "2.4"


@pytest.mark.parametrize("charset", ["UNICODE UTF-8", "8859/1", "8859/5~ISO IR87"])
def test_msh18_echoed(charset):
    text = build_ack(message(ADT.format(v="2.5.1") + f"||||||{charset}"), "AA")
    assert segments(text)[0].endswith(f"|2.5.1||||||{charset}")
    assert read(text).get("MSH-18") == charset.split("~")[0]


def test_msh18_omitted_when_none_received_and_the_ack_is_ascii():
    text = build_ack(message(ADT.format(v="2.5.1")), "AE", [HL7Error(101, "PID-5 empty", "PID", 1, 5)])
    assert segments(text)[0].endswith("|P|2.5.1")
    assert read(text).get("MSH-18") == ""


@pytest.mark.parametrize("codec, label", [("latin-1", "8859/1"), ("utf-8", "UNICODE UTF-8"),
                                          ("iso8859-5", "8859/5")])
def test_msh18_added_when_the_ack_is_not_ascii(codec, label):
    # SWF.md 8.3: MSH-18 is omitted only if the ACK is pure ASCII *and* the sender sent none.
    received = message(ADT.format(v="2.5.1"), codec=codec)
    reason = "Patient MÜLLER unknown" if codec != "iso8859-5" else "Пациент неизвестен"
    text = build_ack(received, "AE", [HL7Error(204, reason, "PID", 1, 3)])
    assert read(text).get("MSH-18") == label
    text.encode(codec)   # the ACK can be written in the message charset


# -- MSA -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("code", ["AA", "AE", "AR", "CA", "CE", "CR"])
def test_msa1_is_the_code_and_msa2_the_received_control_id(code):
    errors = [] if code in ("AA", "CA") else [HL7Error(207, "problem")]
    a = read(build_ack(message(ADT.format(v="2.5.1")), code, errors))
    assert a.get("MSA-1") == code
    assert a.get("MSA-2") == "HIS0000123"


def test_msa2_keeps_escaped_control_id():
    msh = "MSH|^~\\&|S|F|R|RF|2025||ADT^A04|C\\T\\1|P|2.5.1"
    lines = segments(build_ack(message(msh), "AA"))
    assert lines[1] == "MSA|AA|C\\T\\1"
    assert read("\r".join(lines)).get("MSA-2") == "C&1"


def test_msa2_empty_when_the_received_message_had_no_control_id():
    lines = segments(build_ack(message("MSH|^~\\&|S|F|R|RF|2025||ADT^A04||P|2.5.1"), "AR",
                               [HL7Error(101, "MSH-10 Message Control ID is empty", "MSH", 1, 10)]))
    assert lines[1] == "MSA|AR|"


@pytest.mark.parametrize("version, with_text", [("2.3", True), ("2.3.1", True), ("2.4", True), ("2.5", False),
                                                ("2.5.1", False), ("2.6", False)])
def test_msa3_only_for_versions_before_25(version, with_text):
    a = read(build_ack(message(ADT.format(v=version)), "AE", [HL7Error(101, "PID-5 empty", "PID", 1, 5)]))
    assert a.get("MSA-3") == ("PID-5 empty" if with_text else "")
    assert read(build_ack(message(ADT.format(v=version)), "AA")).get("MSA-3") == ""


# -- ERR -----------------------------------------------------------------------------------------------
def test_err_v25_fields():
    a = read(build_ack(message(ADT.format(v="2.5.1")), "AE",
                       [HL7Error(103, "PID-8 value X not in table 0001", "PID", 1, 8)]))
    assert a.get("ERR-1") == ""
    assert a.get("ERR-2") == "PID^1^8"
    assert a.get("ERR-3") == "103^Table value not found^HL70357"
    assert a.get("ERR-4") == "E"
    assert a.get("ERR-8") == "PID-8 value X not in table 0001"


def test_err_v25_several_errors_and_no_location():
    text = build_ack(message(ADT.format(v="2.5")), "AR",
                     [HL7Error(207, "internal error: boom"), HL7Error(100, "MSH", "MSH", 1, 0)])
    lines = segments(text)
    assert lines[2] == "ERR|||207^Application internal error^HL70357|E||||internal error: boom"
    assert lines[3] == "ERR||MSH^1|100^Segment sequence error^HL70357|E||||MSH"
    assert len(lines) == 4


def test_err_unknown_code_text():
    a = read(build_ack(message(ADT.format(v="2.5.1")), "AE", [HL7Error(999, "odd")]))
    assert a.get("ERR-3") == "999^Application error^HL70357"


def test_err_v231_without_location_puts_the_code_in_eld4():
    lines = segments(build_ack(message(ADT.format(v="2.3.1")), "AE", [HL7Error(207, "rejected by rule X")]))
    assert lines[1] == "MSA|AE|HIS0000123|rejected by rule X"
    assert lines[2] == "ERR|^^^207&Application internal error&HL70357"
    err = read("\r".join(lines))
    assert err.get("ERR-1.4.1") == "207"
    assert err.get("ERR-1.1") == ""


def test_err_v231_several_errors_repeat_err1_in_one_segment():
    # v2.3.1 ACK is MSH MSA [ERR]: one ERR segment, ERR-1 repeated.
    errors = [HL7Error(101, "PID-3 empty", "PID", 1, 3), HL7Error(101, "PID-5 empty", "PID", 1, 5)]
    lines = segments(build_ack(message(ADT.format(v="2.3.1")), "AE", errors))
    assert len(lines) == 3
    assert lines[2] == ("ERR|PID^1^3^101&Required field missing&HL70357~"
                        "PID^1^5^101&Required field missing&HL70357")
    a = read("\r".join(lines))
    assert a.get("ERR-1[2].3") == "5"
    assert a.get("MSA-3") == "PID-3 empty"   # the first reason


def test_err_v24_uses_the_v231_layout():
    lines = segments(build_ack(message(ADT.format(v="2.4")), "AE", [HL7Error(102, "PID-7 bad date", "PID", 1, 7)]))
    assert lines[2] == "ERR|PID^1^7^102&Data type error&HL70357"


def test_no_err_segment_on_success():
    assert len(segments(build_ack(message(ADT.format(v="2.3.1")), "AA"))) == 2
    assert len(segments(build_ack(message(ADT.format(v="2.5.1")), "AA"))) == 2


def test_hl7_error_location():
    assert HL7Error(101, "x").location == "message"
    assert HL7Error(101, "x", "PID").location == "PID"
    assert HL7Error(101, "x", "PID", 1, 5).location == "PID-5"
    assert HL7Error(101, "x", "OBR", 1, 4, 1).location == "OBR-4.1"


# -- delimiters ------------------------------------------------------------------------------------------
REASON = "bad | pipe ^ caret & amp ~ tilde \\ backslash"


def test_delimiters_in_reason_texts_are_escaped_v231():
    lines = segments(build_ack(message(ADT.format(v="2.3.1")), "AE", [HL7Error(207, REASON)]))
    assert lines[1] == "MSA|AE|HIS0000123|bad \\F\\ pipe \\S\\ caret \\T\\ amp \\R\\ tilde \\E\\ backslash"
    assert read("\r".join(lines)).get("MSA-3") == REASON


def test_delimiters_in_reason_texts_are_escaped_v25():
    lines = segments(build_ack(message(ADT.format(v="2.5.1")), "AE", [HL7Error(207, REASON + "\nline 2")]))
    assert len(lines) == 3                            # the line break did not start a new segment
    a = read("\r".join(lines))
    assert a.get("ERR-8") == REASON + "\r\nline 2"
    assert a.get("ERR-4") == "E"


CUSTOM = "MSH#$%!@#HIS#GENHOSP#SWF_ENGINE#RADIOLOGY#20250304081502##ADT$A04$ADT_A01#HIS!T!0001#P#{v}"


def test_custom_delimiters_are_used_in_the_ack_v25(frozen):
    text = build_ack(message(CUSTOM.format(v="2.5.1")), "AE", [HL7Error(101, "a#b$c", "PID", 1, 5, 1)],
                     control_id="ENG1")
    assert segments(text) == [
        "MSH#$%!@#SWF_ENGINE#RADIOLOGY#HIS#GENHOSP#20250304083001##ACK$A04$ACK#ENG1#P#2.5.1",
        "MSA#AE#HIS!T!0001",
        "ERR##PID$1$5$1$1#101$Required field missing$HL70357#E####a!F!b!S!c",
    ]
    a = read(text)
    assert a.delimiters == Delimiters("#", "$", "%", "!", "@")
    assert a.get("MSA-2") == "HIS@0001"
    assert a.get("ERR-8") == "a#b$c"


def test_custom_delimiters_are_used_in_the_ack_v231(frozen):
    errors = [HL7Error(101, "x#y", "PID", 1, 3), HL7Error(207, "z")]
    lines = segments(build_ack(message(CUSTOM.format(v="2.3.1")), "AE", errors, control_id="ENG2"))
    assert lines[1] == "MSA#AE#HIS!T!0001#x!F!y"
    assert lines[2] == "ERR#PID$1$3$101@Required field missing@HL70357%$$$207@Application internal error@HL70357"


def test_ack_parses_with_an_independent_hl7_parser():
    text = build_ack(message(CUSTOM.format(v="2.5.1")), "AE", [HL7Error(101, "a#b", "PID", 1, 5)])
    parsed = hl7.parse(text)
    assert str(parsed.segment("MSA")[1]) == "AE"
    assert str(parsed.segment("MSH")[9][0][1]) == "A04"
    assert parsed.unescape(str(parsed.segment("ERR")[8])) == "a#b"


# -- unreadable MSH --------------------------------------------------------------------------------------
def test_unreadable_msh_ack(frozen):
    text = build_ack(None, "AR", [HL7Error(100, "message does not start with an MSH segment", "MSH", 1, 0)],
                     identity=Identity("ENG", "RAD", "2.5.1"), control_id="ENG9")
    assert segments(text) == [
        "MSH|^~\\&|ENG|RAD|||20250304083001||ACK|ENG9|P|2.5.1",
        "MSA|AR|",
        "ERR||MSH^1|100^Segment sequence error^HL70357|E||||message does not start with an MSH segment",
    ]


def test_unreadable_msh_ack_with_an_old_default_version():
    lines = segments(build_ack(None, "AR", [HL7Error(100, "MSH-1/MSH-2 delimiters unusable", "MSH", 1, 2)],
                               identity=Identity(default_version="2.3.1")))
    assert lines[0].startswith("MSH|^~\\&|SWF_ENGINE|RADIOLOGY|||")
    assert lines[0].endswith("||ACK|" + lines[0].split("|")[9] + "|P|2.3.1")
    assert lines[1] == "MSA|AR||MSH-1/MSH-2 delimiters unusable"
    assert lines[2] == "ERR|MSH^1^2^100&Segment sequence error&HL70357"


# -- enhanced mode ---------------------------------------------------------------------------------------
def enhanced(msh15: str, msh16: str = "") -> Message:
    return message(f"MSH|^~\\&|S|F|R|RF|2025||ADT^A04|C1|P|2.5.1|||{msh15}|{msh16}")


def test_original_mode_when_msh15_and_msh16_are_empty():
    assert accept_ack_wanted(enhanced(""), "AA") is None
    assert accept_ack_wanted(enhanced("", ""), "AE") is None
    assert accept_ack_wanted(message(ADT.format(v="2.5.1")), "AR") is None
    assert accept_ack_wanted(None, "AR") is None


@pytest.mark.parametrize("mode, code, wanted", [
    ("AL", "AA", True), ("AL", "AE", True), ("AL", "AR", True),
    ("NE", "AA", False), ("NE", "AE", False), ("NE", "AR", False),
    ("ER", "AA", False), ("ER", "AE", True), ("ER", "AR", True),
    ("SU", "AA", True), ("SU", "AE", False), ("SU", "AR", False),
    ("al", "AA", True), ("ne", "AA", False),                 # case-insensitive
    ("ER", "CA", False), ("SU", "CA", True), ("ER", "CE", True),   # enhanced codes accepted too
])
def test_accept_ack_wanted(mode, code, wanted):
    assert accept_ack_wanted(enhanced(mode, "AL"), code) is wanted
    assert accept_ack_wanted(enhanced(mode), code) is wanted


def test_accept_ack_when_only_msh16_is_valued():
    assert accept_ack_wanted(enhanced("", "AL"), "AA") is True
    assert accept_ack_wanted(enhanced("", "NE"), "AE") is True


def test_enhanced_codes():
    assert ENHANCED_CODES == {"AA": "CA", "AE": "CE", "AR": "CR"}


def test_enhanced_accept_ack_content():
    a = read(build_ack(enhanced("AL", "NE"), ENHANCED_CODES["AE"], [HL7Error(101, "PID-3 empty", "PID", 1, 3)]))
    assert a.get("MSA-1") == "CE"
    assert a.get("MSA-2") == "C1"
    assert a.get("ERR-3.1") == "101"
