"""Modality Performed Procedure Step SCP (RAD-6 / RAD-7): N-CREATE / N-SET -> workflow -> DIMSE status.

The handlers only translate: the dataset becomes plain values plus its encoded form (Part 10, Explicit
VR Little Endian), ``engine.workflow.mpps`` does the work in one store transaction, and the answer is
sent after the commit.  Statuses follow SWF.md 6:

* 0x0000 success (an N-CREATE without Affected SOP Instance UID gets one made here and returned);
* 0x0111 duplicate, 0x0120 missing attribute / 0x0121 missing value (with Attribute Identifier List),
  0x0106 invalid value, 0x0105 attribute N-SET must not change, 0x0112 no such instance,
  0x0110 + Error ID 0xA710 for an N-SET after COMPLETED / DISCONTINUED, 0x0110 undecodable dataset,
  0x0117 malformed instance UID, 0x0118 other SOP class, 0x0124 calling AE lacks ``mpps``,
  0x0213 database unavailable (the modality retries).
"""
from __future__ import annotations

import logging
from io import BytesIO
from typing import Any, Callable

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid
from pynetdicom import build_context, evt
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import ModalityPerformedProcedureStep

from ...store.database import DuplicateKey, StoreError
from ...store.performed_steps import decode_dataset
from ...workflow import mpps
from ...workflow.mpps import CreateRequest, MppsRefused, Refusal, UpdateRequest
from ..ae import DicomContext, ForegroundService, element_text, status_dataset
from ..wire.pynetdicom_private import allow_attribute_identifier_list_in_n_create_rsp

log = logging.getLogger(__name__)

MPPS_SOP_CLASS = str(ModalityPerformedProcedureStep)
WRITE_TIMEOUT = 30.0         # answer 0x0213 rather than let the modality's DIMSE timeout expire
ERROR_ID_NOT_UPDATABLE = 0xA710
# Sequence nesting an MPPS data set may have (real ones: Performed Series > Referenced Image, code sequences:
# 3).  Why a limit: the data set is re-encoded with pydicom, whose writer appends the whole traceback to the
# error message at each level when an element deep inside fails, so a failure 50 levels down built
# gigabytes of text for minutes (found by make fuzz).
MAX_SEQUENCE_DEPTH = 8
STATUS_OF = {
    Refusal.DUPLICATE: 0x0111,
    Refusal.NO_SUCH_INSTANCE: 0x0112,
    Refusal.NOT_UPDATABLE: 0x0110,
    Refusal.NOT_ALLOWED: 0x0105,
    Refusal.MISSING_ATTRIBUTE: 0x0120,
    Refusal.MISSING_VALUE: 0x0121,
    Refusal.INVALID_VALUE: 0x0106,
}


allow_attribute_identifier_list_in_n_create_rsp()   # N-CREATE-RSP may carry an Attribute Identifier List


# -- dataset <-> plain values ------------------------------------------------------------------------
def _text(element: Any) -> str:
    """Text of a value; binary values (OB, OW, UN ...) have none here."""
    return "" if isinstance(element.value, (bytes, bytearray)) else element_text(element)


def plain_values(dataset: Dataset) -> dict[str, Any]:
    """Keyword -> text (multi-values joined by backslash), sequences as lists of dicts.  Present with
    zero length stays present (``""`` / ``[]``); private and unknown tags are kept only in the encoded form."""
    values: dict[str, Any] = {}
    for element in dataset:
        keyword = element.keyword
        if not keyword:
            continue
        if element.VR == "SQ":
            values[keyword] = [plain_values(item) for item in element.value or []]
        else:
            values[keyword] = _text(element)
    return values


def encode_dataset(dataset: Dataset, sop_instance_uid: str) -> bytes:
    """A Part 10 file in memory (Explicit VR Little Endian): ``dcmdump`` reads it as it is."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MPPS_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    copy = Dataset(dataset)
    copy.file_meta = meta
    buffer = BytesIO()
    dcmwrite(buffer, copy, implicit_vr=False, little_endian=True, enforce_file_format=True)
    return buffer.getvalue()


class NestedTooDeep(ValueError):
    """A received MPPS data set whose sequences nest deeper than ``MAX_SEQUENCE_DEPTH`` (0x0110)."""


def check_nesting(dataset: Dataset, depth: int = 0) -> None:
    """Raise NestedTooDeep when sequences (private ones too) nest deeper than ``MAX_SEQUENCE_DEPTH``."""
    for element in dataset:
        if element.VR != "SQ":
            continue
        if depth >= MAX_SEQUENCE_DEPTH:
            raise NestedTooDeep(f"sequences nested deeper than {MAX_SEQUENCE_DEPTH} levels")
        for item in element.value or []:
            check_nesting(item, depth + 1)


def create_request(dataset: Dataset | None, sop_instance_uid: str, calling_ae_title: str) -> CreateRequest:
    """The plain N-CREATE request; raises when the dataset cannot be decoded or encoded (0x0110)."""
    dataset = dataset if dataset is not None else Dataset()
    check_nesting(dataset)
    attributes = plain_values(dataset)   # decodes every element: a broken one raises here
    return CreateRequest(sop_instance_uid, calling_ae_title, attributes, encode_dataset(dataset, sop_instance_uid))


def update_request(modification: Dataset | None, sop_instance_uid: str, calling_ae_title: str) -> UpdateRequest:
    """The plain N-SET request; ``apply`` merges the Modification List into the stored dataset (each
    attribute replaced whole, a zero-length one emptied, as PS3.7 10.1.3 says)."""
    modification = modification if modification is not None else Dataset()
    check_nesting(modification)
    modifications = plain_values(modification)

    def apply(stored: bytes) -> tuple[bytes, dict[str, Any]]:
        dataset = decode_dataset(stored)
        plain_values(dataset)          # decodes every stored value with the stored character set first
        charset = dataset.get("SpecificCharacterSet")
        for element in modification:
            dataset[element.tag] = element
        if "SpecificCharacterSet" in modification and modification.SpecificCharacterSet != charset:
            dataset.SpecificCharacterSet = "ISO_IR 192"   # values are Unicode by now; UTF-8 holds them all
        return encode_dataset(dataset, sop_instance_uid), plain_values(dataset)

    return UpdateRequest(sop_instance_uid, calling_ae_title, modifications, apply)


# -- statuses ------------------------------------------------------------------------------------------
def _status(code: int, comment: str = "", keywords: tuple[str, ...] = (), error_id: int | None = None) -> Dataset:
    status = status_dataset(code, comment)
    if error_id is not None:
        status.ErrorID = error_id
    tags = [tag_for_keyword(k) for k in keywords if tag_for_keyword(k) is not None]
    if tags:
        status.AttributeIdentifierList = tags
    return status


class MppsService(ForegroundService):
    name = "mpps"

    def __init__(self, context: DicomContext):
        self.context = context

    def contexts(self) -> list[PresentationContext]:
        return [build_context(ModalityPerformedProcedureStep)]

    def handlers(self) -> list[tuple]:
        # DIMSE-N requests: plain (event, handler) pairs; ae.py's SOP class dispatcher reads the
        # Affected SOP Class UID, which an N-SET request does not carry (it has the Requested one).
        return [(evt.EVT_N_CREATE, self.on_n_create), (evt.EVT_N_SET, self.on_n_set)]

    # -- shared -------------------------------------------------------------------------------------
    def _refused_early(self, event: Any, operation: str, sop_class: Any, uid: str) -> Dataset | None:
        calling = event.assoc.requestor.ae_title.strip()
        if str(sop_class) != MPPS_SOP_CLASS:
            return _status(0x0118, f"{operation} only for MPPS {MPPS_SOP_CLASS}")
        if not self.context.directory.allows(calling, "mpps"):
            log.warning("MPPS %s %s from %s refused: no 'mpps' permission", operation, uid or "(no UID)", calling)
            return _status(0x0124, f"AE {calling} may not send MPPS")
        if uid and not UID(uid).is_valid:
            return _status(0x0117, f"malformed SOP Instance UID {uid[:40]}")
        return None

    def _run(self, work: Callable[[Any], Any], operation: str, uid: str, calling: str) -> tuple[Any, Dataset | None]:
        """Run the workflow; (result, None) on success, else (None, the failure status)."""
        try:
            return self.context.store.write(work, timeout=WRITE_TIMEOUT), None
        except MppsRefused as refused:
            log.info("MPPS %s %s from %s refused (%s): %s", operation, uid, calling, refused.refusal.value,
                     refused.comment)
            error_id = ERROR_ID_NOT_UPDATABLE if refused.refusal is Refusal.NOT_UPDATABLE else None
            return None, _status(STATUS_OF[refused.refusal], refused.comment, refused.keywords, error_id)
        except Exception as exc:  # noqa: BLE001 - every other failure still gets a DIMSE answer
            if operation == "N-CREATE" and isinstance(exc, DuplicateKey):   # a race the workflow's check lost
                return None, _status(0x0111, f"Performed Procedure Step {uid} already exists")
            if isinstance(exc, (StoreError, TimeoutError)):   # unavailable, commit failed, no commit in time
                log.error("MPPS %s %s from %s: database unavailable: %s", operation, uid, calling, exc)
                return None, _status(0x0213, "database unavailable; retry later")
            log.exception("MPPS %s %s from %s failed", operation, uid, calling)
            return None, _status(0x0110, f"processing failure: {exc}")

    # -- N-CREATE -----------------------------------------------------------------------------------
    def on_n_create(self, event: Any) -> tuple[Any, Dataset | None]:
        calling = event.assoc.requestor.ae_title.strip()
        given = event.request.AffectedSOPInstanceUID
        uid = str(given) if given else ""
        refused = self._refused_early(event, "N-CREATE", event.request.AffectedSOPClassUID, uid)
        if refused is not None:
            return refused, None
        if not uid:
            uid = generate_uid(prefix=None)   # 2.25.<UUID>; returned in the response (SWF.md 6.1)
            log.info("MPPS N-CREATE from %s without Affected SOP Instance UID: assigned %s", calling, uid)
        try:
            request = create_request(event.attribute_list, uid, calling)
        except Exception as exc:  # noqa: BLE001 - whatever pydicom raises on a broken dataset
            log.warning("MPPS N-CREATE %s from %s: dataset cannot be decoded: %s", uid, calling, exc)
            return _status(0x0110, f"dataset cannot be decoded: {exc}"), None
        result, failure = self._run(lambda txn: mpps.create(txn, request), "N-CREATE", uid, calling)
        if failure is not None:
            return failure, None
        log.info("MPPS %s IN PROGRESS from %s: %s", uid, calling,
                 "unscheduled" if result.unscheduled else ", ".join(result.linked))
        self.context.metrics.mpps_accepted("IN PROGRESS")
        if given:
            return 0x0000, None
        reply = Dataset()
        reply.AffectedSOPInstanceUID = uid    # pynetdicom moves it into the N-CREATE-RSP command set
        return 0x0000, reply

    # -- N-SET --------------------------------------------------------------------------------------
    def on_n_set(self, event: Any) -> tuple[Any, Dataset | None]:
        calling = event.assoc.requestor.ae_title.strip()
        uid = str(event.request.RequestedSOPInstanceUID or "")
        refused = self._refused_early(event, "N-SET", event.request.RequestedSOPClassUID, uid)
        if refused is not None:
            return refused, None
        try:
            request = update_request(event.modification_list, uid, calling)
        except Exception as exc:  # noqa: BLE001
            log.warning("MPPS N-SET %s from %s: modification list cannot be decoded: %s", uid, calling, exc)
            return _status(0x0110, f"dataset cannot be decoded: {exc}"), None
        result, failure = self._run(lambda txn: mpps.update(txn, request), "N-SET", uid, calling)
        if failure is not None:
            return failure, None
        log.info("MPPS %s %s from %s: %s", uid, result.status, calling,
                 "unscheduled" if result.unscheduled else ", ".join(result.linked))
        self.context.metrics.mpps_accepted(result.status)
        return 0x0000, None


def create(context: DicomContext) -> MppsService:
    return MppsService(context)
