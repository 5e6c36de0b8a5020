"""Test messages with one field replaced by a raw value (delimiters and escapes as written), for the
bad-value tests: ``with_value(ORM, "ORC-7.4", "20261201106000")``.  Standard delimiters only."""
from __future__ import annotations

from engine.hl7.message import FieldPath

ORM_V231 = "\r".join([
    "MSH|^~\\&|RIS|GENHOSP|SWF_ENGINE|RADIOLOGY|20261201100000||ORM^O01|{cid}|P|2.3.1",
    "PID|1||PAT-{cid}^^^GENHOSP^MR||DOE^JANE||19800101|F",
    "OBX|1|NM|29463-7^Body weight^LN||72|kg",
    "ORC|NW|P-{cid}^HIS|F-{cid}^RIS||SC",
    "OBR|1|P-{cid}^HIS|F-{cid}^RIS|CT1^CT head^99RAD||||||||||||||A-{cid}|RP-{cid}|S-{cid}||||CT",
]) + "\r"

# Two steps of one requested procedure: each OBR has its own SPS ID (OBR-20) and its own start (OBR-27.4).
ORM_V231_TWO_STEPS = ORM_V231 + (
    "OBR|2|P-{cid}^HIS|F-{cid}^RIS|CT1^CT head^99RAD||||||||||||||A-{cid}|RP-{cid}|S2-{cid}||||CT\r")

OMI_V251 = "\r".join([
    "MSH|^~\\&|RIS|GENHOSP|SWF_ENGINE|RADIOLOGY|20261201100000||OMI^O23^OMI_O23|{cid}|P|2.5.1",
    "PID|1||PAT-{cid}^^^GENHOSP^MR||DOE^JANE||19800101|F",
    "ORC|NW|P-{cid}^HIS|F-{cid}^RIS||SC",
    "TQ1|1||||||20261201110000||R",
    "OBR|1|P-{cid}^HIS|F-{cid}^RIS|CT1^CT head^99RAD||||||||||||||||||CT",
    "IPC|A-{cid}|RP-{cid}|2.25.{number}|S-{cid}|CT",
]) + "\r"

ADT_V251 = "\r".join([
    "MSH|^~\\&|HIS|GENHOSP|SWF_ENGINE|RADIOLOGY|20261201100000||ADT^A04^ADT_A01|{cid}|P|2.5.1",
    "EVN||20261201100000",
    "PID|1||PAT-{cid}^^^GENHOSP^MR||DOE^JANE||19800101|F",
    "PV1|1|O",
]) + "\r"


def build(template: str, cid: str) -> str:
    """The template with its control ID (and the numbers derived from it) filled in."""
    return template.format(cid=cid, number=int.from_bytes(cid.encode(), "big"))


def with_value(message: str, path: str, raw: str, occurrence: int = 1) -> str:
    """``message`` with ``raw`` at ``path`` (first repetition) in the ``occurrence``-th such segment."""
    fp = FieldPath.parse(path)
    assert fp.repetition == 1 and not fp.subcomponent, "only fields and components of the first repetition"
    segments = message.split("\r")
    seen = 0
    for index, segment in enumerate(segments):
        if segment[:3] != fp.segment:
            continue
        seen += 1
        if seen != occurrence:
            continue
        fields = segment.split("|")
        position = fp.field - 1 if fp.segment == "MSH" else fp.field  # MSH-1 is the separator itself
        fields.extend([""] * (position + 1 - len(fields)))
        if fp.component:
            components = fields[position].split("~")[0].split("^")
            components.extend([""] * (fp.component - len(components)))
            components[fp.component - 1] = raw
            fields[position] = "^".join(components)
        else:
            fields[position] = raw
        segments[index] = "|".join(fields)
        return "\r".join(segments)
    raise KeyError(f"no {fp.segment} number {occurrence} in the message")
