"""Unit tests of the fast HL7 reader (engine/hl7/message.py): delimiters, paths, escapes, charsets, set()."""
from __future__ import annotations

import random

import pytest

from engine.hl7.message import (
    Delimiters,
    FieldPath,
    HL7ParseError,
    Message,
    decode_bytes,
    escape,
    field_path,
    normalise_segments,
    parse,
)

# SWF.md section 9, RAD-1 v2.5.1 (the patient's day).
ADT = "\r".join([
    "MSH|^~\\&|HIS|GENHOSP|SWF_ENGINE|RADIOLOGY|20250304081502||ADT^A04^ADT_A01|HIS0000123|P|2.5.1||||||UNICODE UTF-8",
    "EVN|A04|20250304081500",
    "PID|1||PAT4711^^^GENHOSP&2.999.1.1&ISO^MR~OLD-77^^^OTHERHOSP^PI||MÜLLER^ANNA^MARIA^^DR.||19780214|F"
    "|||HAUPTSTR. 5^^KÖLN^^50667^DEU|||||||ACCT-9001^^^GENHOSP&2.999.1.1&ISO^AN",
    "PV1|1|O|RAD^WAIT^^GENHOSP|||||2345^GREY^MEREDITH^^^DR|||||||||||V20250304-17^^^GENHOSP&2.999.1.1&ISO^VN",
])

# The same content with every delimiter changed: field #, component $, repetition %, escape !, subcomponent @.
CUSTOM = "\r".join([
    "MSH#$%!@#HIS#GENHOSP#SWF_ENGINE#RADIOLOGY#20250304081502##ADT$A04$ADT_A01#HIS0000124#P#2.5.1",
    "PID#1##PAT4711$$$GENHOSP@2.999.1.1@ISO$MR%OLD-77$$$OTHERHOSP$PI##O!F!BRIEN$ANNA!S!MARIA##19780214#F",
    "NTE#1##caret ^ pipe | tilde ~ amp & backslash \\ are plain text here",
])


def message(*segments: str, codec: str = "utf-8") -> Message:
    return Message("\r".join(segments), codec)


MSH = "MSH|^~\\&|S|F|R|RF|20250304||ADT^A01|C1|P|2.5.1"


# -- MSH-1 / MSH-2 and MSH numbering -----------------------------------------------------------------
def test_standard_delimiters_are_read_from_msh():
    m = Message(ADT)
    assert m.delimiters == Delimiters("|", "^", "~", "\\", "&")
    assert m.delimiters.encoding_characters == "^~\\&"


def test_msh_field_numbering_counts_the_field_separator_as_msh_1():
    m = Message(ADT)
    assert m.get("MSH-1") == "|"
    assert m.get("MSH-2") == "^~\\&"
    assert m.get("MSH-3") == "HIS"
    assert m.get("MSH-4") == "GENHOSP"
    assert m.get("MSH-5") == "SWF_ENGINE"
    assert m.get("MSH-6") == "RADIOLOGY"
    assert m.get("MSH-7") == "20250304081502"
    assert m.get("MSH-8") == ""
    assert m.get("MSH-9") == "ADT^A04^ADT_A01"
    assert m.get("MSH-9.1") == "ADT"
    assert m.get("MSH-9.2") == "A04"
    assert m.get("MSH-9.3") == "ADT_A01"
    assert m.get("MSH-10") == "HIS0000123"
    assert m.get("MSH-11") == "P"
    assert m.get("MSH-12") == "2.5.1"
    assert m.get("MSH-18") == "UNICODE UTF-8"
    assert m.raw_field(0, 1) == "|" and m.raw_field(0, 10) == "HIS0000123"


def test_header_shortcuts():
    m = Message(ADT)
    assert (m.control_id, m.version, m.message_type, m.trigger_event) == ("HIS0000123", "2.5.1", "ADT", "A04")
    assert m.message_code == "ADT^A04"
    assert message("MSH|^~\\&|||||||ACK|C9|P|2.3").message_code == "ACK"


def test_custom_delimiters_msh():
    m = Message(CUSTOM)
    assert m.delimiters == Delimiters("#", "$", "%", "!", "@")
    assert m.get("MSH-1") == "#"
    assert m.get("MSH-2") == "$%!@"
    assert m.get("MSH-3") == "HIS"
    assert m.get("MSH-9.1") == "ADT"
    assert m.get("MSH-9.2") == "A04"
    assert m.get("MSH-10") == "HIS0000124"
    assert m.version == "2.5.1"


def test_custom_delimiters_paths_and_escapes():
    m = Message(CUSTOM)
    assert m.get("PID-3.1") == "PAT4711"
    assert m.get("PID-3.4.1") == "GENHOSP"
    assert m.get("PID-3.4.2") == "2.999.1.1"
    assert m.get("PID-3[2].1") == "OLD-77"
    assert m.get("PID-3[2].4") == "OTHERHOSP"
    assert m.get("PID-5.1") == "O#BRIEN"        # !F! = this message's field separator '#'
    assert m.get("PID-7") == "19780214"
    assert m.get("PID-8") == "F"


def test_custom_delimiters_escape_decodes_to_the_message_own_delimiters():
    m = Message(CUSTOM)
    assert m.get("PID-5.2") == "ANNA$MARIA"
    # Standard delimiter characters are plain text under custom delimiters.
    assert m.get("NTE-3") == "caret ^ pipe | tilde ~ amp & backslash \\ are plain text here"


# -- paths: fields, components, subcomponents, repetitions -------------------------------------------
@pytest.mark.parametrize("path, expected", [
    ("PID-3", "PAT4711^^^GENHOSP&2.999.1.1&ISO^MR"),   # whole field = first repetition
    ("PID-3.1", "PAT4711"),
    ("PID-3.4", "GENHOSP"),                              # component without subcomponent: first subcomponent
    ("PID-3.4.1", "GENHOSP"),
    ("PID-3.4.2", "2.999.1.1"),
    ("PID-3.4.3", "ISO"),
    ("PID-3.4.4", ""),                                   # past the last subcomponent
    ("PID-3.5", "MR"),
    ("PID-3.9", ""),                                     # past the last component
    ("PID-3[1].1", "PAT4711"),
    ("PID-3[2]", "OLD-77^^^OTHERHOSP^PI"),
    ("PID-3[2].1", "OLD-77"),
    ("PID-3[2].4.1", "OTHERHOSP"),
    ("PID-3[2].5", "PI"),
    ("PID-3[3]", ""),                                    # past the last repetition
    ("PID-3[3].1", ""),
    ("PID-5", "MÜLLER^ANNA^MARIA^^DR."),
    ("PID-5.1", "MÜLLER"),
    ("PID-5.4", ""),
    ("PID-5.5", "DR."),
    ("PID-7", "19780214"),
    ("PID-8", "F"),
    ("PID-11.3", "KÖLN"),
    ("PID-18.4.3", "ISO"),
    ("PID-40", ""),                                      # past the last field
    ("PV1-8.2", "GREY"),
    ("PV1-19.1", "V20250304-17"),
    ("EVN-1", "A04"),
    ("OBR-4", ""),                                       # segment not in the message
    ("ZDS-1.1", ""),
])
def test_get_paths(path, expected):
    assert Message(ADT).get(path) == expected


def test_get_accepts_a_parsed_field_path():
    assert Message(ADT).get(FieldPath("PID", 3, 2, 4, 1)) == "OTHERHOSP"


def test_get_reads_a_given_segment_occurrence():
    m = message(MSH, "OBR|1|P1", "NTE|1||first", "OBR|2|P2", "NTE|1||second")
    obr = m.segment_indexes("OBR")
    assert obr == [1, 3]
    assert m.get("OBR-2") == "P1"                # first occurrence by default
    assert m.get("OBR-2", obr[1]) == "P2"
    assert m.get("NTE-3", m.segment_indexes("NTE")[1]) == "second"
    assert m.segment_names() == ["MSH", "OBR", "NTE", "OBR", "NTE"]
    assert m.has_segment("NTE") and not m.has_segment("PID")
    assert m.segment_indexes("PID") == []


def test_repetitions_components_subcomponents():
    m = Message(ADT)
    reps = m.repetitions("PID-3")
    assert reps == ["PAT4711^^^GENHOSP&2.999.1.1&ISO^MR", "OLD-77^^^OTHERHOSP^PI"]
    assert m.components(reps[0]) == ["PAT4711", "", "", "GENHOSP", "MR"]
    assert m.subcomponents("GENHOSP&2.999.1.1&ISO") == ["GENHOSP", "2.999.1.1", "ISO"]
    assert m.repetitions("PID-4") == []
    assert m.repetitions("OBR-4") == []


def test_components_and_subcomponents_are_unescaped():
    m = message(MSH, "PID|1||A\\T\\B^X\\S\\Y&sub||O\\F\\NEIL")
    assert m.components(m.repetitions("PID-3")[0]) == ["A&B", "X^Y"]
    assert m.subcomponents("X\\S\\Y&s\\E\\b") == ["X^Y", "s\\b"]


# -- escape sequences --------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, decoded", [
    ("A\\F\\B", "A|B"),
    ("A\\S\\B", "A^B"),
    ("A\\T\\B", "A&B"),
    ("A\\R\\B", "A~B"),
    ("A\\E\\B", "A\\B"),
    ("line1\\.br\\line2", "line1\r\nline2"),
    ("\\X41\\", "A"),
    ("\\X414243\\", "ABC"),
    ("\\XC3BC\\", "ü"),                      # UTF-8 bytes of ü in a UTF-8 message
    ("a\\H\\bold\\N\\b", "aboldb"),          # highlighting on/off: formatting only
    ("\\F\\\\S\\\\T\\\\R\\\\E\\", "|^&~\\"),  # adjacent escapes
    ("\\Zcustom\\", "\\Zcustom\\"),          # unknown escape kept verbatim
    ("\\.sp\\", "\\.sp\\"),                  # formatting command we do not interpret: kept
    ("C:\\temp\\file", "C:\\temp\\file"),   # looks like an escape, is none: kept
    ("trailing\\", "trailing\\"),           # unterminated: kept
    ("\\X4\\", "\\X4\\"),                    # odd number of hex digits: kept
    ("\\XZZ\\", "\\XZZ\\"),                  # not hex: kept
    ("\\X\\", "\\X\\"),                      # no digits: kept
    ("no escapes", "no escapes"),
])
def test_unescape(raw, decoded):
    m = message(MSH, f"NTE|1||{raw}")
    assert m.get("NTE-3") == decoded
    assert m.unescape(raw) == decoded


def test_hex_escape_decodes_in_the_message_charset():
    assert message(MSH, codec="latin-1").unescape("\\XFC\\") == "ü"
    assert message(MSH, codec="iso8859-5").unescape("\\XC8\\") == "Ш"
    assert message(MSH, codec="utf-8").unescape("\\XD0A8\\") == "Ш"
    # Bytes that are not valid in the charset are kept verbatim, not guessed.
    assert message(MSH, codec="ascii").unescape("\\XFC\\") == "\\XFC\\"
    assert message(MSH, codec="utf-8").unescape("\\XFC\\") == "\\XFC\\"


def test_hex_escape_uses_the_codec_chosen_from_msh18():
    raw = (MSH + "||||||8859/5\rNTE|1||\\XC8\\").encode("ascii")
    assert parse(raw, "latin-1").get("NTE-3") == "Ш"


def test_escape_sequences_in_a_component_do_not_split_it():
    m = message(MSH, "OBX|1|TX|||a\\S\\b^c\\T\\d&e")
    assert m.get("OBX-5.1") == "a^b"
    assert m.get("OBX-5.2") == "c&d"
    assert m.get("OBX-5.2.2") == "e"


# -- segment separators -------------------------------------------------------------------------------
@pytest.mark.parametrize("separator", ["\r", "\n", "\r\n"])
def test_segment_separators(separator):
    m = Message(ADT.replace("\r", separator) + separator)
    assert m.segment_names() == ["MSH", "EVN", "PID", "PV1"]
    assert m.get("MSH-18") == "UNICODE UTF-8"    # no stray CR/LF left in the last MSH field
    assert m.get("PV1-19.1") == "V20250304-17"


def test_mixed_separators_blank_lines_and_mllp_frame_bytes():
    text = "\x0b" + MSH + "\r\n\r\nPID|1||X\n\nPV1|1|O\r\r" + "\x1c\r"
    m = Message(text)
    assert m.segment_names() == ["MSH", "PID", "PV1"]
    assert m.get("PID-3") == "X"
    assert m.get("PV1-2") == "O"
    assert "\n" not in m.text and not m.text.endswith("\r")


def test_normalise_segments():
    assert normalise_segments("A\r\nB\nC\rD\r\n") == "A\rB\rC\rD"
    assert normalise_segments("A\n\n   \nB") == "A\rB"


# -- MSH-18 charsets -----------------------------------------------------------------------------------
def _bytes(charset_field: str, name: str, encoding: str) -> bytes:
    head = "MSH|^~\\&|S|F|R|RF|20250304||ADT^A01|C1|P|2.5.1" + (f"||||||{charset_field}" if charset_field else "")
    return (head + f"\rPID|1||P1||{name}").encode(encoding)


def test_absent_msh18_uses_the_default_charset():
    raw = _bytes("", "MÜLLER^ANNA", "latin-1")
    text, codec = decode_bytes(raw, "latin-1")
    assert codec == "latin-1"
    assert parse(raw, "latin-1").get("PID-5.1") == "MÜLLER"
    # A UTF-8 partner default reads UTF-8 bytes.
    assert parse(_bytes("", "MÜLLER", "utf-8"), "utf-8").get("PID-5.1") == "MÜLLER"


def test_ascii_msh18_uses_the_partner_default():
    raw = _bytes("ASCII", "MÜLLER", "latin-1")
    assert decode_bytes(raw, "latin-1")[1] == "latin-1"
    assert parse(raw, "latin-1").get("PID-5.1") == "MÜLLER"


def test_unknown_msh18_label_uses_the_default():
    assert decode_bytes(_bytes("KLINGON", "MÜLLER", "latin-1"), "latin-1")[1] == "latin-1"


@pytest.mark.parametrize("label, name, encoding, codec", [
    ("8859/1", "MÜLLER", "latin-1", "latin-1"),
    ("UNICODE UTF-8", "MÜLLER", "utf-8", "utf-8"),
    ("UNICODE", "MÜLLER", "utf-8", "utf-8"),
    ("8859/5", "ИВАНОВ", "iso8859-5", "iso8859-5"),
    ("8859/7", "ΠΑΠΑΔΟΠΟΥΛΟΣ", "iso8859-7", "iso8859-7"),
    ("8859/2", "DVOŘÁK", "iso8859-2", "iso8859-2"),
    ("unicode utf-8", "MÜLLER", "utf-8", "utf-8"),   # labels are matched case-insensitively
])
def test_msh18_selects_the_codec(label, name, encoding, codec):
    raw = _bytes(label, name, encoding)
    # The default must not matter when MSH-18 is given (ascii would fail on every one of them).
    text, used = decode_bytes(raw, "ascii")
    assert used == codec
    assert parse(raw, "ascii").get("PID-5.1") == name


def test_msh18_first_repetition_and_component_is_the_label():
    raw = ("MSH|^~\\&|S|F|R|RF|20250304||ADT^A01|C1|P|2.5.1||||||8859/5~ISO IR87\rPID|1||P1||ИВАНОВ").encode("iso8859-5")
    assert decode_bytes(raw, "latin-1")[1] == "iso8859-5"


def test_msh18_with_custom_delimiters():
    # Repetition separator '%' here; the label is the first repetition, not the whole field.
    raw = ("MSH#$%!@#S#F#R#RF#20250304##ADT$A01#C1#P#2.5.1######8859/5%ISO IR87\rPID#1##P1##ИВАНОВ"
           ).encode("iso8859-5")
    m = parse(raw, "latin-1")
    assert m.codec == "iso8859-5"
    assert m.get("PID-5.1") == "ИВАНОВ"


def test_msh18_is_read_behind_an_mllp_start_byte():
    raw = b"\x0b" + _bytes("8859/5", "ИВАНОВ", "iso8859-5") + b"\x1c\r"
    m = parse(raw, "latin-1")
    assert m.codec == "iso8859-5"
    assert m.get("PID-5.1") == "ИВАНОВ"


def test_wrong_bytes_do_not_crash():
    # Declared UTF-8, sent Latin-1: read as Latin-1 rather than failing.
    raw = _bytes("UNICODE UTF-8", "MÜLLER", "latin-1")
    m = parse(raw, "latin-1")
    assert m.codec == "latin-1"
    assert m.get("PID-5.1") == "MÜLLER"
    # No MSH-18, default ascii, high bytes: Latin-1 fallback.
    assert parse(_bytes("", "MÜLLER", "latin-1"), "ascii").get("PID-5.1") == "MÜLLER"
    # A byte undefined in ISO 8859-3 (0xA5) is replaced, the rest of the message stays readable.
    raw = _bytes("8859/3", "AB", "ascii").replace(b"AB", b"A\xa5B")
    m = parse(raw, "latin-1")
    assert m.get("PID-5.1") == "A\ufffdB"
    assert m.control_id == "C1"
    # Garbage in a multi-byte charset.
    m = parse(_bytes("GB 18030-2000", "X", "ascii").replace(b"||X", b"||\xff\xff"), "latin-1")
    assert m.control_id == "C1"


def test_parse_default_charset_is_ascii_with_latin1_fallback():
    assert parse(_bytes("", "MÜLLER", "latin-1")).codec == "latin-1"
    assert parse(_bytes("", "MILLER", "ascii")).codec == "ascii"


# -- broken MSH ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, field", [
    ("", 0),
    ("PID|1||X", 0),                         # no MSH
    ("EVN|A04\rMSH|^~\\&|S", 0),             # MSH not first
    ("msh|^~\\&|S", 0),                      # segment names are upper case
    ("MSH", 2),                              # too short
    ("MSH|^~\\", 2),                         # too short: subcomponent separator missing
    ("MSHA^~\\&|S", 2),                      # alphanumeric field separator
    ("MSH1^~\\&|S", 2),
    ("MSH|^~\\A|S", 2),                      # alphanumeric encoding character
    ("MSH|a~\\&|S", 2),
    ("MSH|^^\\&|S", 2),                      # component == repetition
    ("MSH|^~\\||S", 2),                      # field separator reused as subcomponent separator
    ("MSH|^~|S|F", 2),                       # MSH-2 with only two characters
])
def test_broken_msh_raises(text, field):
    with pytest.raises(HL7ParseError) as info:
        Message(text)
    assert info.value.segment == "MSH"
    assert info.value.field == field
    assert info.value.reason
    assert isinstance(info.value, ValueError)


def test_broken_msh_from_bytes_raises():
    with pytest.raises(HL7ParseError):
        parse(b"\x00\x01garbage")
    with pytest.raises(HL7ParseError):
        parse(b"")


def test_minimal_msh_is_readable():
    m = Message("MSH|^~\\&")
    assert m.get("MSH-2") == "^~\\&"
    assert m.control_id == "" and m.version == ""


# -- Message.set --------------------------------------------------------------------------------------
def test_set_whole_field():
    m = Message(ADT)
    m.set("PV1-2", "I")
    assert m.get("PV1-2") == "I"
    assert m.get("PV1-3.1") == "RAD"          # neighbours untouched
    m.set("PID-40", "far")                    # beyond the last field: extended
    assert m.get("PID-40") == "far"
    assert m.get("PID-39") == ""


def test_set_msh_field_uses_msh_numbering():
    m = Message(ADT)
    m.set("MSH-3", "RIS2")
    assert m.get("MSH-3") == "RIS2"
    assert m.get("MSH-4") == "GENHOSP"
    assert m.get("MSH-2") == "^~\\&"


def test_set_component_and_subcomponent():
    m = Message(ADT)
    m.set("PID-5.2", "JANE")
    assert m.get("PID-5") == "MÜLLER^JANE^MARIA^^DR."
    m.set("PID-3.4.2", "1.2.3")
    assert m.get("PID-3.4.1") == "GENHOSP"
    assert m.get("PID-3.4.2") == "1.2.3"
    assert m.get("PID-3.4.3") == "ISO"
    m.set("PV1-3.6", "BED1")                 # component beyond the last one: padded
    assert m.get("PV1-3") == "RAD^WAIT^^GENHOSP^^BED1"
    m.set("EVN-1.2.3", "x")                  # subcomponent beyond: padded
    assert m.raw_field(m.segment_indexes("EVN")[0], 1) == "A04^&&x"


def test_set_component_to_empty_drops_trailing_components():
    m = Message(ADT)
    m.set("PID-5.5", "")
    assert m.get("PID-5") == "MÜLLER^ANNA^MARIA"


def test_set_repetition():
    m = Message(ADT)
    m.set("PID-3[2].1", "NEW-1")
    assert m.get("PID-3[2].1") == "NEW-1"
    assert m.get("PID-3[2].4") == "OTHERHOSP"
    assert m.get("PID-3[1].1") == "PAT4711"
    m.set("PID-3[4]", "FOURTH")               # beyond the last repetition: empty ones in between
    assert m.repetitions("PID-3")[2:] == ["", "FOURTH"]
    m.set("PID-2[2].1", "X")                  # empty field
    assert m.repetitions("PID-2") == ["", "X"]


def test_set_escapes_delimiters_in_the_value():
    m = Message(ADT)
    value = "O'NEIL | A^B & C ~ D \\ E"
    m.set("PID-5.1", value)
    assert m.get("PID-5.1") == value
    assert m.get("PID-5.2") == "ANNA"         # the value did not spill into other components
    raw = m.raw_field(m.segment_indexes("PID")[0], 5)
    assert raw.startswith("O'NEIL \\F\\ A\\S\\B \\T\\ C \\R\\ D \\E\\ E^ANNA")
    m.set("PV1-2", "x^y")                     # whole-field set: still one value
    assert m.get("PV1-2.1") == "x^y"


def test_set_with_custom_delimiters_uses_the_custom_escape():
    m = Message(CUSTOM)
    m.set("PID-5.1", "A#B$C")
    raw = m.raw_field(m.segment_indexes("PID")[0], 5)
    assert raw.startswith("A!F!B!S!C$ANNA")
    assert m.get("PID-5.1") == "A#B$C"


def test_set_applies_to_every_occurrence_and_ignores_absent_segments():
    m = message(MSH, "OBR|1|P1", "OBR|2|P2")
    m.set("OBR-24", "CT")
    assert [m.get("OBR-24", i) for i in m.segment_indexes("OBR")] == ["CT", "CT"]
    m.set("ZDS-1.1", "1.2.3")
    assert not m.has_segment("ZDS")
    assert m.get("ZDS-1.1") == ""


# -- escape() ----------------------------------------------------------------------------------------
def test_escape_each_delimiter():
    assert escape("a|b^c~d\\e&f") == "a\\F\\b\\S\\c\\R\\d\\E\\e\\T\\f"
    assert escape("plain") == "plain"
    assert escape("") == ""
    assert escape("1\r\n2\n3\r4") == "1\\.br\\2\\.br\\3\\.br\\4"


def test_escape_with_custom_delimiters():
    d = Delimiters("#", "$", "%", "!", "@")
    assert escape("a#b$c%d!e@f|^~\\&", d) == "a!F!b!S!c!R!d!E!e!T!f|^~\\&"


DELIMITER_SETS = [Delimiters(), Delimiters("#", "$", "%", "!", "@"), Delimiters("|", "^", "~", "/", "&")]
ALPHABET = "ab Z09|^~\\&#$%!@/.ÜИ\t"


@pytest.mark.parametrize("d", DELIMITER_SETS, ids=["standard", "custom", "slash-escape"])
def test_escape_unescape_round_trip_property(d):
    """Property test (seeded, no hypothesis): unescape(escape(v)) == v for any text without line breaks."""
    msh = f"MSH{d.field}{d.encoding_characters}"
    m = Message(msh)
    rng = random.Random(20250304)
    for _ in range(2000):
        value = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 12)))
        encoded = escape(value, d)
        assert not any(c in encoded for c in (d.field, d.component, d.repetition, d.subcomponent)), encoded
        assert m.unescape(encoded) == value, (value, encoded)
        # and written through set(), read back through get() at every level
        m2 = Message(f"{msh}\rZZZ{d.field}x")
        m2.set("ZZZ-1.2.2", value)
        assert m2.get("ZZZ-1.2.2") == value
        assert m2.get("ZZZ-1.1") == "x"


def test_escape_round_trip_of_line_breaks_gives_crlf():
    m = Message(MSH)
    assert m.unescape(escape("a\nb")) == "a\r\nb"
    assert m.unescape(escape("a\r\nb")) == "a\r\nb"


# -- FieldPath ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("PID-3", FieldPath("PID", 3)),
    ("PID-3.4.1", FieldPath("PID", 3, 1, 4, 1)),
    ("PID-3[2]", FieldPath("PID", 3, 2)),
    ("PID-3[2].1", FieldPath("PID", 3, 2, 1)),
    ("PID-3[2].4.2", FieldPath("PID", 3, 2, 4, 2)),
    ("MSH-9.2", FieldPath("MSH", 9, 1, 2)),
    ("ZDS-1.1", FieldPath("ZDS", 1, 1, 1)),
    (" OBR-44.2 ", FieldPath("OBR", 44, 1, 2)),
])
def test_field_path_parse(text, expected):
    assert FieldPath.parse(text) == expected
    assert str(expected) == text.strip()
    assert FieldPath.parse(str(expected)) == expected


@pytest.mark.parametrize("text", [
    "", "PID", "PID-", "PID3", "pid-3", "PI-3", "PIDX-3", "1ID-3", "PID-x", "PID-3.", "PID-3..1",
    "PID-3.1.2.3", "PID-3[2", "PID-3[]", "PID-3[a]", "PID-3.1[2]", "PID--3", "PID-3.-1",
    "PID-0", "PID-3[0]", "PID-3.0", "PID-3.1.0", "PID-3[0].1",
])
def test_field_path_parse_errors(text):
    with pytest.raises(ValueError, match="not a field path"):
        FieldPath.parse(text)


def test_field_path_cache_returns_the_same_parsed_path():
    assert field_path("PID-3[2].1") is field_path("PID-3[2].1")
    with pytest.raises(ValueError):
        field_path("PID-3[0]")


def test_zero_indexes_are_refused_by_get():
    m = Message(ADT)
    with pytest.raises(ValueError):
        m.get("PID-3[0]")       # used to return the *last* repetition
    with pytest.raises(ValueError):
        m.get("PID-0")          # used to return the segment name


def test_v27_msh2_with_truncation_character():
    m = Message("MSH|^~\\&#|S|F|R|RF|20250304||ADT^A01^ADT_A01|C1|P|2.7\rPID|1||X^^^A&B")
    assert m.delimiters == Delimiters()
    assert m.get("MSH-2") == "^~\\&#"
    assert m.get("MSH-3") == "S"
    assert m.control_id == "C1"
    assert m.get("PID-3.4.2") == "B"
