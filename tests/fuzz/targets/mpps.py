"""MPPS N-CREATE attribute lists and N-SET modification lists: decoded as pynetdicom decodes them,
turned into the plain request (and its Part 10 copy), and applied by the MPPS workflow on a real SQLite
store holding scheduled orders: an N-CREATE with the input, then an N-SET with the same input on it.

Declared for bad input: ``MppsRefused`` (its DIMSE status), ``NestedTooDeep`` (0x0110), and exceptions raised while pydicom decodes
or encodes a received value (the service answers those 0x0110)."""
from __future__ import annotations

import itertools
import random
from io import BytesIO
from pathlib import Path

from pynetdicom.dsutils import decode

from engine.dicom.services.mpps import NestedTooDeep, create_request, update_request
from engine.workflow import mpps
from engine.workflow.mpps import MppsRefused

from .. import datasets
from ..wire_doubles import stocked_context

NAME = "mpps"
KEYWORDS = mpps.REQUIRED_AT_CREATE + mpps.TYPE2_AT_CREATE + mpps.TYPE2_IN_SSA_ITEM + mpps.REQUIRED_IN_SERIES_ITEM + (
    "SpecificCharacterSet", "PerformedProcedureTypeDescription", "PerformedProtocolCodeSequence",
    "PerformedProcedureStepDiscontinuationReasonCodeSequence", "CodeValue", "CodingSchemeDesignator",
    "ReferencedImageSequence", "ReferencedSOPInstanceUID", "StudyInstanceUID")


def refused(exc: BaseException) -> bool:
    return isinstance(exc, (MppsRefused, NestedTooDeep)) or datasets.raised_while_decoding(exc)


def seeds() -> list[bytes]:
    key = datasets.keyword_element
    ssa = datasets.sequence(0x00400270, key("AccessionNumber", b"A1") + key("RequestedProcedureID", b"RP1")
                            + key("ScheduledProcedureStepID", b"S1") + key("StudyInstanceUID", b"1.2.3.1"))
    series = datasets.sequence(0x00400340, key("ProtocolName", b"HEAD") + key("SeriesInstanceUID", b"1.2.3.1.1")
                               + datasets.sequence(0x00081140, key("ReferencedSOPInstanceUID", b"1.2.3.1.1.1")))
    create = (key("Modality", b"CT") + key("PatientID", b"PAT1") + key("PatientName", b"DOE^JANE") + ssa
              + key("PerformedStationAETitle", b"MODALITY") + key("PerformedProcedureStepStartDate", b"20250304")
              + key("PerformedProcedureStepStartTime", b"100000") + key("PerformedProcedureStepID", b"PPS1")
              + key("PerformedProcedureStepStatus", b"IN PROGRESS"))
    final = (key("PerformedProcedureStepEndDate", b"20250304") + key("PerformedProcedureStepEndTime", b"103000")
             + key("PerformedProcedureStepStatus", b"COMPLETED") + series)
    return [create, create.replace(b"IN PROGRESS", b"COMPLETED"), final, final.replace(b"COMPLETED", b"DISCONTINUED"),
            create.replace(b"A1", b"A9"), key("SpecificCharacterSet", b"ISO_IR 192") + create, b""]


def mutate(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    return datasets.mutate(rng, data, corpus, KEYWORDS)


class Target:
    def __init__(self, workdir: Path):
        self.context = stocked_context(workdir)
        self.numbers = itertools.count(1)

    def run(self, data: bytes) -> None:
        uid = f"2.25.{next(self.numbers)}"
        created = create_request(decode(BytesIO(data), True, True), uid, "MODALITY")
        try:
            self.context.store.write(lambda txn: mpps.create(txn, created))
        except MppsRefused:
            created = create_request(decode(BytesIO(seeds()[0]), True, True), uid, "MODALITY")
            self.context.store.write(lambda txn: mpps.create(txn, created))
        update = update_request(decode(BytesIO(data), True, True), uid, "MODALITY")
        self.context.store.write(lambda txn: mpps.update(txn, update))

    def close(self) -> None:
        self.context.store.close()
