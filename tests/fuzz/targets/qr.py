"""Study Root and Patient Root C-FIND identifiers: decoded as pynetdicom decodes them, read into the
level and keys, matched against a real SQLite store holding a stored instance, and each match's response
built and encoded.

Declared for bad input: ``QueryError`` (0xA900), and exceptions raised while pydicom decodes a received
value (the service answers those 0xC000)."""
from __future__ import annotations

import random
from io import BytesIO
from pathlib import Path

from pydicom.uid import ImplicitVRLittleEndian
from pynetdicom.dsutils import decode, encode

from engine.dicom.services.query import build_response, request_from_identifier
from engine.store.matching import QueryError
from engine.store.qr_query import PATIENT_ROOT, STUDY_ROOT
from engine.workflow import availability

from .. import datasets
from ..wire_doubles import stocked_context

NAME = "qr"
KEYWORDS = ("QueryRetrieveLevel", "PatientID", "PatientName", "StudyInstanceUID", "SeriesInstanceUID",
            "SOPInstanceUID", "AccessionNumber", "StudyDate", "StudyTime", "ModalitiesInStudy", "Modality",
            "NumberOfStudyRelatedInstances", "NumberOfSeriesRelatedInstances", "SeriesNumber", "InstanceNumber",
            "SOPClassUID", "StudyID", "ReferringPhysicianName", "SpecificCharacterSet", "SOPClassesInStudy",
            "PatientBirthDate", "RetrieveAETitle", "InstanceAvailability")


def refused(exc: BaseException) -> bool:
    return isinstance(exc, QueryError) or datasets.raised_while_decoding(exc)


def seeds() -> list[bytes]:
    key = datasets.keyword_element
    return [b"\x00" + key("QueryRetrieveLevel", b"STUDY") + key("StudyInstanceUID", b""),
            b"\x00" + key("PatientName", b"DOE*") + key("QueryRetrieveLevel", b"STUDY") + key("ModalitiesInStudy", b"CT"),
            b"\x00" + key("QueryRetrieveLevel", b"SERIES") + key("StudyInstanceUID", b"1.2.3.1"),
            b"\x00" + key("QueryRetrieveLevel", b"IMAGE") + key("StudyInstanceUID", b"1.2.3.1")
            + key("SeriesInstanceUID", b"1.2.3.1.1") + key("SOPInstanceUID", b""),
            b"\x01" + key("PatientID", b"PAT1") + key("QueryRetrieveLevel", b"PATIENT"),
            b"\x00" + key("StudyDate", b"20250101-") + key("QueryRetrieveLevel", b"STUDY")
            + key("StudyInstanceUID", b"1.2.3.1\\../..\\" + b"9" * 70)]


def mutate(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    head = data[:1] or b"\x00"
    return head + datasets.mutate(rng, data[1:], [c[1:] for c in corpus], KEYWORDS)


class Target:
    def __init__(self, workdir: Path):
        self.context = stocked_context(workdir)

    def run(self, data: bytes) -> None:
        model = PATIENT_ROOT if data[:1] == b"\x01" else STUDY_ROOT
        identifier = decode(BytesIO(data[1:]), True, True)
        request = request_from_identifier(identifier, model)
        matches = self.context.store.read(lambda txn: availability.find(txn, request))
        for match in matches:
            encode(build_response(match, identifier, request, "SWF_ENGINE"), True, True)

    def close(self) -> None:
        self.context.store.close()
