"""One DICOM audit message (PS3.15 A.5.1) as data, and its XML (``xml.etree``, elements in schema order)."""
from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from .codes import Code


@dataclass(frozen=True)
class Participant:
    """An ActiveParticipant: a user, a process or a remote node."""

    user_id: str
    requestor: bool
    roles: tuple[Code, ...] = ()
    alternative_user_id: str = ""
    user_name: str = ""
    network_access_point: str = ""        # an IP address (type 2) or a host name (type 1)


@dataclass(frozen=True)
class StudyDescription:
    """The ParticipantObjectDescription of a study: accessions, MPPS and SOP classes with instance counts."""

    accessions: tuple[str, ...] = ()
    mpps: tuple[str, ...] = ()
    sop_classes: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class ParticipantObject:
    """A ParticipantObjectIdentification: a patient, a study, a query, a user, a node ..."""

    object_id: str
    id_type: Code
    type_code: str = ""
    role: str = ""
    life_cycle: str = ""
    name: str = ""
    query: bytes = b""                     # the query as sent (base64 in the XML)
    details: tuple[tuple[str, bytes], ...] = ()
    description: StudyDescription | None = None


@dataclass(frozen=True)
class AuditEvent:
    """What one message says; ``when`` is an xsd:dateTime with its offset."""

    event_id: Code
    action: str                            # C R U D E
    when: str
    outcome: str
    participants: tuple[Participant, ...]
    types: tuple[Code, ...] = ()
    outcome_description: str = ""
    objects: tuple[ParticipantObject, ...] = ()


@dataclass(frozen=True)
class AuditSource:
    """AuditSourceIdentification: this engine (type 4, an application server process)."""

    source_id: str
    enterprise_site: str = ""
    type_code: str = "4"


def _coded(parent: ET.Element, tag: str, code: Code) -> None:
    ET.SubElement(parent, tag, {"csd-code": code.code, "codeSystemName": code.system, "originalText": code.meaning})


def _ip_like(address: str) -> bool:
    return address.replace(".", "").isdigit() or ":" in address


def _participant(root: ET.Element, participant: Participant) -> None:
    attributes = {"UserID": participant.user_id, "UserIsRequestor": "true" if participant.requestor else "false"}
    if participant.alternative_user_id:
        attributes["AlternativeUserID"] = participant.alternative_user_id
    if participant.user_name:
        attributes["UserName"] = participant.user_name
    if participant.network_access_point:
        attributes["NetworkAccessPointID"] = participant.network_access_point
        attributes["NetworkAccessPointTypeCode"] = "2" if _ip_like(participant.network_access_point) else "1"
    element = ET.SubElement(root, "ActiveParticipant", attributes)
    for role in participant.roles:
        _coded(element, "RoleIDCode", role)


def _object(root: ET.Element, item: ParticipantObject) -> None:
    attributes = {"ParticipantObjectID": item.object_id}
    for name, value in (("ParticipantObjectTypeCode", item.type_code), ("ParticipantObjectTypeCodeRole", item.role),
                        ("ParticipantObjectDataLifeCycle", item.life_cycle)):
        if value:
            attributes[name] = value
    element = ET.SubElement(root, "ParticipantObjectIdentification", attributes)
    _coded(element, "ParticipantObjectIDTypeCode", item.id_type)
    if item.query:
        ET.SubElement(element, "ParticipantObjectQuery").text = base64.b64encode(item.query).decode("ascii")
    elif item.name:
        ET.SubElement(element, "ParticipantObjectName").text = item.name
    for kind, value in item.details:
        ET.SubElement(element, "ParticipantObjectDetail", {"type": kind, "value": base64.b64encode(value).decode("ascii")})
    if item.description is not None:
        description = ET.SubElement(element, "ParticipantObjectDescription")
        for uid in item.description.mpps:
            ET.SubElement(description, "MPPS", {"UID": uid})
        for number in item.description.accessions:
            ET.SubElement(description, "Accession", {"Number": number})
        for uid, count in item.description.sop_classes:
            ET.SubElement(description, "SOPClass", {"UID": uid, "NumberOfInstances": str(count)})


def to_xml(event: AuditEvent, source: AuditSource) -> bytes:
    """The AuditMessage document, UTF-8 with its XML declaration."""
    root = ET.Element("AuditMessage")
    identification = ET.SubElement(root, "EventIdentification", {
        "EventActionCode": event.action, "EventDateTime": event.when, "EventOutcomeIndicator": event.outcome})
    _coded(identification, "EventID", event.event_id)
    for code in event.types:
        _coded(identification, "EventTypeCode", code)
    if event.outcome_description:
        ET.SubElement(identification, "EventOutcomeDescription").text = event.outcome_description
    for participant in event.participants:
        _participant(root, participant)
    attributes = {"AuditSourceID": source.source_id}
    if source.enterprise_site:
        attributes["AuditEnterpriseSiteID"] = source.enterprise_site
    source_element = ET.SubElement(root, "AuditSourceIdentification", attributes)
    ET.SubElement(source_element, "AuditSourceTypeCode", {"csd-code": source.type_code})
    for item in event.objects:
        _object(root, item)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)
