"""The audit message XML (PS3.15 A.5.1 element order, coded values, base64 query) and its syslog framing
(RFC 5424 header with MSGID IHE+RFC-3881, RFC 5425 octet count in bytes, not characters)."""
from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET

from engine.audit_trail import events
from engine.audit_trail.events import PatientRef, StudyRef
from engine.audit_trail.message import AuditSource, Participant, to_xml
from engine.audit_trail.syslog import octet_counted, syslog_message

ENGINE = Participant("swf-engine", False, alternative_user_id="4242", network_access_point="ris-gw.example")
SOURCE = AuditSource("SWF_ENGINE", "RIVERSIDE")
WHEN = "2026-12-07T15:00:00.123+01:00"


def test_query_message_in_schema_order_with_the_dataset_base64() -> None:
    event = events.query(ENGINE, Participant("CT1_AE", True, network_access_point="10.1.2.3"), WHEN,
                         "1.2.840.10008.5.1.4.31", b"\x08\x00\x50\x00\x00\x00", "1.2.840.10008.1.2.1")
    root = ET.fromstring(to_xml(event, SOURCE))
    assert [child.tag for child in root] == ["EventIdentification", "ActiveParticipant", "ActiveParticipant",
                                             "AuditSourceIdentification", "ParticipantObjectIdentification"]
    assert root.find("EventIdentification").attrib == {"EventActionCode": "E", "EventDateTime": WHEN,
                                                       "EventOutcomeIndicator": "0"}
    assert root.find("EventIdentification/EventID").attrib == {"csd-code": "110112", "codeSystemName": "DCM",
                                                               "originalText": "Query"}
    requestor, engine = root.findall("ActiveParticipant")
    assert (requestor.get("UserIsRequestor"), requestor.get("NetworkAccessPointTypeCode")) == ("true", "2")
    assert (engine.get("NetworkAccessPointID"), engine.get("NetworkAccessPointTypeCode")) == ("ris-gw.example", "1")
    assert requestor.find("RoleIDCode").get("csd-code") == "110153"
    query = root.find("ParticipantObjectIdentification")
    assert [child.tag for child in query] == ["ParticipantObjectIDTypeCode", "ParticipantObjectQuery",
                                              "ParticipantObjectDetail"]
    assert base64.b64decode(query.findtext("ParticipantObjectQuery")) == b"\x08\x00\x50\x00\x00\x00"
    assert root.find("AuditSourceIdentification").attrib == {"AuditSourceID": "SWF_ENGINE",
                                                             "AuditEnterpriseSiteID": "RIVERSIDE"}


def test_study_and_patient_objects() -> None:
    event = events.instances_transferred(Participant("CT1_AE", True), ENGINE, WHEN, "C",
                                         PatientRef("PAT1", "RIVERSIDE"),
                                         (StudyRef("2.25.1", ("ACC1",), ("2.25.9",), (("1.2.840.10008.5.1.4.1.1.2", 3),)),))
    root = ET.fromstring(to_xml(event, SOURCE))
    study, patient = root.findall("ParticipantObjectIdentification")
    description = study.find("ParticipantObjectDescription")
    assert [child.tag for child in description] == ["MPPS", "Accession", "SOPClass"]
    assert description.find("SOPClass").attrib == {"UID": "1.2.840.10008.5.1.4.1.1.2", "NumberOfInstances": "3"}
    assert (patient.get("ParticipantObjectID"), patient.find("ParticipantObjectIDTypeCode").get("csd-code")) == (
        "PAT1^^^RIVERSIDE", "2")


def test_syslog_header_and_octet_count_in_bytes() -> None:
    xml = to_xml(events.application_activity(ENGINE, WHEN, True, "root"), SOURCE).replace(b"4242", "Ü".encode())
    message = syslog_message(xml, WHEN, "host name", "swf engine", "12")
    header = re.match(rb"<85>1 (\S+) (\S+) (\S+) (\S+) IHE\+RFC-3881 - <\?xml", message)
    assert header and header.groups() == (WHEN.encode(), b"hostname", b"swfengine", b"12")
    framed = octet_counted(message)
    count, _, rest = framed.partition(b" ")
    assert int(count) == len(rest) == len(message) and len(message) > len(message.decode("utf-8"))
