"""Journal reasons name each field once and quote rule names (issue 10 item 12), as `swf journal` shows them."""
from __future__ import annotations

from tests.conftest import run_swf
from tests.hl7_fields import ADT_V251, ORM_V231, build, with_value
from tests.integration.test_bad_values import journal
from tests.integration.test_mllp import END, START, connect, read_acks

EXPECTED = {
    # the reason starts with its field: said once, not "MRG-1: MRG-1 ..."
    "NOMRG": ("AE", "MRG-1 Prior Patient Identifier List is empty"),
    # a reason that does not name its field gets it in front
    "CAUNKNOWN": ("AE", "ORC-2: Unknown order P-CAUNKNOWN for ORC-1=CA"),
    # rule names in quotes: they are free text and may contain any words
    "TRAINING": ("AR", 'rejected by rule "test messages are not accepted on the production listener": '
                       "processing ID T (training) is not accepted here"),
    "PERSON": ("AR", "MSH-9: ADT trigger A31 not supported"),
}


def test_journal_reasons_say_each_field_once_and_quote_rule_names(start_engine) -> None:
    engine = start_engine()
    merge = build(ADT_V251, "NOMRG").replace("ADT^A04^ADT_A01", "ADT^A40^ADT_A39")
    cancel = with_value(with_value(build(ORM_V231, "CAUNKNOWN"), "ORC-1", "CA"), "ORC-5", "")
    training = with_value(build(ORM_V231, "TRAINING"), "MSH-11", "T")
    person = build(ADT_V251, "PERSON").replace("ADT^A04^ADT_A01", "ADT^A31^ADT_A05")
    with connect(engine) as sock:
        sock.sendall(b"".join(START + text.encode() + END for text in (merge, cancel, training, person)))
        read_acks(sock, 4)
    rows = journal(engine)
    assert {cid: (code, reason) for cid, (_, code, reason) in rows.items()} == EXPECTED
    listing = run_swf("journal", "--data-dir", str(engine.data_dir)).stdout
    for cid, (_, reason) in EXPECTED.items():
        line = next(line for line in listing.splitlines() if f" {cid} " in line)
        assert line.rstrip().endswith(reason[:80]), line
