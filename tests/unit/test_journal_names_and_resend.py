"""The journal's field names (the message's profile before the standard) and the relabelling of a resent
message (a new MSH-3..7 and MSH-10, every other byte as received)."""
from __future__ import annotations

import pytest

from engine.hl7.field_names import name_of
from engine.hl7.profiles import load_profiles
from engine.outbound.resend import NotResendable, relabelled
from tests.conftest import ROOT

PROFILES = load_profiles(ROOT / "profiles")


def test_a_site_variant_names_the_fields_it_moved_and_the_rest_keep_the_standard_names() -> None:
    default, variant = PROFILES["ihe-v231-orm"], PROFILES["example-accession-in-orc3"]
    assert name_of("OBR", 18, "2.3.1", default).name == "AccessionNumber"
    moved = name_of("ORC", 3, "2.3.1", variant)
    assert "AccessionNumber (ORC-3.1)" in moved.name.split("; ") and moved.source == "profile"
    assert "example-accession-in-orc3.yaml:" in moved.where           # the variant's own line
    assert name_of("OBR", 18, "2.3.1", variant).source == "standard"  # the variant reads it no more
    zds = name_of("ZDS", 1, "2.3.1", default)
    assert (zds.name, zds.source) == ("StudyInstanceUID (ZDS-1.1)", "profile")
    standard = name_of("MSH", 7, "2.3.1", default)
    assert (standard.source, standard.where) == ("standard", "HL7 v2.3.1") and standard.name
    assert name_of("ZZZ", 3, "2.3.1", default) == name_of("ZZZ", 3, "2.3.1", None)
    assert name_of("ZZZ", 3, "2.3.1", None).source == "none"


def test_a_resent_message_gets_a_new_header_and_keeps_every_other_byte() -> None:
    raw = (b"MSH#*~\\&#RIS#GEN#SWF#RAD#20250304083000##ORM*O01#C1#P#2.3.1########8859/1\r"
           b"PID#1##P1\xdc##M\xdcLLER*ANNA\nOBR#1####\r")
    copy = relabelled(raw, sending=("SWF_ENGINE", "RAD#IO"), receiving=("RIS", ""), control_id="E123",
                      timestamp="20261207101500")
    header, *rest = copy.split(b"\r")
    assert header == b"MSH#*~\\&#SWF_ENGINE#RAD\\F\\IO#RIS##20261207101500##ORM*O01#E123#P#2.3.1########8859/1"
    assert rest == [b"PID#1##P1\xdc##M\xdcLLER*ANNA", b"OBR#1####"]
    with pytest.raises(NotResendable):
        relabelled(b"PID|1\r", sending=("A", "B"), receiving=("C", "D"), control_id="E1", timestamp="2026")
