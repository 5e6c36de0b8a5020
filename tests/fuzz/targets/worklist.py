"""Modality Worklist C-FIND identifiers: decoded as pynetdicom decodes them, read into matching keys,
turned into the worklist query, run against a real SQLite store holding orders, and each matching item's
response built and encoded.

Declared for bad input: ``BadIdentifier`` and ``QueryError`` (0xA900), and exceptions raised while
pydicom decodes a received value (the service answers those 0xA900 too)."""
from __future__ import annotations

import random
from io import BytesIO
from pathlib import Path

from pydicom.uid import ImplicitVRLittleEndian, ExplicitVRLittleEndian
from pynetdicom.dsutils import decode

from engine.dicom.services.worklist import BadIdentifier, ResponsePlan, request_from_identifier
from engine.store.matching import QueryError
from engine.store.worklist_query import step_keys, top_level_keys
from engine.workflow.worklist import find_items

from .. import datasets
from ..dicom_bytes import element
from ..wire_doubles import stocked_context

NAME = "worklist"
KEYWORDS = tuple(sorted(top_level_keys() | step_keys())) + ("SpecificCharacterSet", "PatientComments",
                                                             "ScheduledProcedureStepSequence")
CHARSETS = ("ISO_IR 100", "ISO_IR 192", "", "ISO_IR 6", "GB18030")


def refused(exc: BaseException) -> bool:
    return isinstance(exc, (BadIdentifier, QueryError)) or datasets.raised_while_decoding(exc)


def step_item(*pairs: tuple[str, bytes]) -> bytes:
    return b"".join(datasets.keyword_element(keyword, value) for keyword, value in pairs)


def seeds() -> list[bytes]:
    top = (datasets.keyword_element("AccessionNumber", b"") + datasets.keyword_element("PatientName", b"")
           + datasets.keyword_element("PatientID", b""))
    step = step_item(("Modality", b"CT"), ("ScheduledStationAETitle", b""),
                     ("ScheduledProcedureStepStartDate", b"20250304"), ("ScheduledProcedureStepStartTime", b""))
    sps = datasets.sequence(0x00400100, step)
    return [top + sps, datasets.keyword_element("PatientName", b"D*") + sps,
            element(0x0008, 0x0005, b"ISO_IR 100") + datasets.keyword_element("PatientName", "MÜ*".encode("latin-1")),
            top + datasets.sequence(0x00400100, step, step), top + datasets.sequence(0x00400100, step, undefined=True),
            datasets.keyword_element("ScheduledProcedureStepStartDate", b"20250101-20251231") + sps,
            datasets.keyword_element("RequestedProcedureID", b"RP1") + datasets.sequence(0x00321064, step_item(
                ("CodeValue", b"CT1"), ("CodingSchemeDesignator", b"99RAD"))), b""]


def mutate(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    return datasets.mutate(rng, data, corpus, KEYWORDS)


class Target:
    def __init__(self, workdir: Path):
        self.context = stocked_context(workdir)

    def run(self, data: bytes) -> None:
        identifier = decode(BytesIO(data), True, True)
        request, _unsupported = request_from_identifier(identifier)
        plan = ResponsePlan(identifier)
        items = self.context.store.read(lambda txn: find_items(txn, request))
        for number, item in enumerate(items):
            response = plan.response(item, CHARSETS[(len(data) + number) % len(CHARSETS)] or "ISO_IR 100")
            response.encode(ImplicitVRLittleEndian)
            response.encode(ExplicitVRLittleEndian)

    def close(self) -> None:
        self.context.store.close()
