"""Query/Retrieve SCP (RAD-11 and retrieval for viewers): Study Root and Patient Root C-FIND, C-MOVE, C-GET.

Handlers only translate: identifier -> ``QueryRequest`` -> ``workflow/availability.py`` (matching in SQL)
-> response datasets; retrievals read the stored Part 10 files and send them as they are, with the index's
corrections applied over them (engine/workflow/reconciliation.py); the stored transfer syntax is proposed;
uncompressed ones may also go as another uncompressed syntax, never recompressed or decompressed.

* C-FIND: every requested key comes back (stored value or zero-length); Query/Retrieve Level, Retrieve
  AE Title, Instance Availability (ONLINE), the unique keys and the Number of Study/Series Related
  Instances of the level are always returned (SWF.md RAD-11).  0xA900 for an unusable identifier.
* C-MOVE: the Move Destination must be a known AE with host and port (``dicom.aes``), else 0xA801.
* C-GET: the instances go back over the requestor's association, on the storage contexts it proposed
  with the SCP role (the Storage service accepts role selection).
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any, Iterator

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pynetdicom import build_context, evt
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from ...audit_trail.message import Participant
from ...store.files import FileStore
from ...workflow import availability
from ...workflow.availability import PATIENT_ROOT, STUDY_ROOT, QueryError, QueryRequest
from ..ae import DicomContext, ForegroundService, element_text, set_no_delay, status_dataset
from ..answer_limit import OUT_OF_RESOURCES, checked_limit, limit_reached
from ..auditing import audit_query, requestor
from ..identifier import identifier_of
from ..scu_contexts import MOVE_SUB_OPERATIONS, UNCOMPRESSED
from ..tls import TlsSetupError, tls_args

log = logging.getLogger(__name__)

FIND_MODELS = {str(PatientRootQueryRetrieveInformationModelFind): PATIENT_ROOT,
               str(StudyRootQueryRetrieveInformationModelFind): STUDY_ROOT}
MOVE_MODELS = {str(PatientRootQueryRetrieveInformationModelMove): PATIENT_ROOT,
               str(StudyRootQueryRetrieveInformationModelMove): STUDY_ROOT}
GET_MODELS = {str(PatientRootQueryRetrieveInformationModelGet): PATIENT_ROOT,
              str(StudyRootQueryRetrieveInformationModelGet): STUDY_ROOT}

PENDING, PENDING_WARNING, SUCCESS, CANCEL = 0xFF00, 0xFF01, 0x0000, 0xFE00
NOT_AUTHORISED = 0x0124
IDENTIFIER_DOES_NOT_MATCH = 0xA900
UNABLE_TO_PROCESS = 0xC000
NOT_MATCHED = {"QueryRetrieveLevel", "SpecificCharacterSet"}
_LEVEL_COUNT = {"STUDY": "NumberOfStudyRelatedInstances", "SERIES": "NumberOfSeriesRelatedInstances"}


def request_from_identifier(identifier: Dataset, model: str) -> QueryRequest:
    """The Query/Retrieve Level and the keys (text) of an identifier; sequences are never matched."""
    level = str(identifier.get("QueryRetrieveLevel", "") or "").strip().upper()
    if not level:
        raise QueryError("Query/Retrieve Level (0008,0052) missing")
    keys: dict[str, str] = {}
    for element in identifier:
        keyword = element.keyword
        if not keyword or keyword in NOT_MATCHED or element.VR == "SQ":
            continue
        keys[keyword] = element_text(element).strip()
    return QueryRequest(level, keys, model)


def _is_ascii(value: Any) -> bool:
    return not isinstance(value, str) or value.isascii()


def build_response(match: availability.Match, identifier: Dataset, request: QueryRequest, ae_title: str) -> Dataset:
    """Every key of the identifier (value or zero-length) plus the keys the engine always returns."""
    response = Dataset()
    values = match.attributes
    for element in identifier:
        keyword = element.keyword
        if keyword in ("SpecificCharacterSet", "QueryRetrieveLevel"):
            continue
        if element.VR == "SQ":
            response.add_new(element.tag, "SQ", Sequence())
            continue
        value = values.get(keyword) if keyword else None
        try:
            response.add_new(element.tag, element.VR, value if value not in ("", None) else None)
        except (ValueError, TypeError, KeyError):   # an odd VR in the request: the key comes back empty
            response.add_new(element.tag, element.VR if element.VR in ("UN", "OB") else "UN", None)
    always: dict[str, Any] = OrderedDict()
    always["QueryRetrieveLevel"] = request.level
    always["RetrieveAETitle"] = ae_title
    always["InstanceAvailability"] = availability.INSTANCE_AVAILABILITY
    levels = availability.LEVELS[request.model]
    for level in levels[:levels.index(request.level) + 1]:
        unique = availability.UNIQUE_KEY[level]
        always[unique] = values.get(unique, "")
    if request.level in _LEVEL_COUNT:
        always[_LEVEL_COUNT[request.level]] = values.get(_LEVEL_COUNT[request.level], 0)
    for keyword, value in always.items():
        if keyword not in response:
            setattr(response, keyword, value)
    if not all(_is_ascii(element.value) for element in response if element.VR != "SQ"):
        response.SpecificCharacterSet = "ISO_IR 192"
    return response


def apply_corrections(dataset: Dataset, corrections: dict[str, Any]) -> Dataset:
    """The stored data set as a retrieve sends it: the index's corrections (the surviving patient after an
    ADT A08 / A40, the order's accession after ``swf link``) over the file's values.  A non-ASCII value
    makes the whole data set UTF-8 (ISO_IR 192)."""
    if not corrections:
        return dataset
    if not all(_is_ascii(value) for value in corrections.values()):
        dataset.decode()
        dataset.SpecificCharacterSet = "ISO_IR 192"
    for keyword, value in corrections.items():
        setattr(dataset, keyword, value)
    return dataset


def _contexts_for(items: list[availability.RetrieveItem]) -> list[PresentationContext]:
    """One context per SOP class and stored transfer syntax (uncompressed ones also offer the other
    uncompressed syntaxes), at most 128."""
    wanted: "OrderedDict[tuple[str, str], list[str]]" = OrderedDict()
    for item in items:
        syntax = item.transfer_syntax_uid
        key = (item.sop_class_uid, "uncompressed" if syntax in UNCOMPRESSED else syntax)
        if key not in wanted:
            wanted[key] = MOVE_SUB_OPERATIONS.syntaxes_for(syntax)
    contexts = [build_context(sop_class, syntaxes) for (sop_class, _), syntaxes in wanted.items()]
    most = MOVE_SUB_OPERATIONS.max_contexts
    if len(contexts) > most:
        log.warning("retrieve needs %d presentation contexts; only the first %d are proposed", len(contexts), most)
    return contexts[:most]


class QueryRetrieveService(ForegroundService):
    name = "query/retrieve"

    def __init__(self, context: DicomContext):
        self.context = context
        self.files = FileStore(context.config.storage_dir)
        self.max_answers = checked_limit("query_max_answers", context.config.dicom.query_max_answers)

    def contexts(self) -> list[PresentationContext]:
        return [build_context(uid) for uid in (*FIND_MODELS, *MOVE_MODELS, *GET_MODELS)]

    def handlers(self) -> list[tuple]:
        return [(evt.EVT_C_FIND, self.on_find, list(FIND_MODELS)),
                (evt.EVT_C_MOVE, self.on_move, list(MOVE_MODELS)),
                (evt.EVT_C_GET, self.on_get, list(GET_MODELS))]

    # -- C-FIND -------------------------------------------------------------------------------------
    def on_find(self, event: Any) -> Iterator[tuple[Any, Dataset | None]]:
        calling = event.assoc.requestor.ae_title.strip()
        if not self.context.directory.allows(calling, "query"):
            log.warning("Q/R C-FIND from %s refused: not authorised (permission 'query')", calling)
            yield status_dataset(NOT_AUTHORISED, f"{calling} may not query"), None
            return
        model = FIND_MODELS[str(event.request.AffectedSOPClassUID)]
        try:
            identifier = identifier_of(event)
            request = request_from_identifier(identifier, model)
            matches = self.context.store.read(lambda txn: availability.find(txn, request))
        except QueryError as exc:
            log.warning("Q/R C-FIND from %s: %s", calling, exc)
            audit_query(self.context.audit, event, IDENTIFIER_DOES_NOT_MATCH, str(exc))
            yield status_dataset(IDENTIFIER_DOES_NOT_MATCH, str(exc)), None
            return
        except Exception as exc:  # noqa: BLE001 - undecodable identifier or database trouble
            log.exception("Q/R C-FIND from %s failed", calling)
            audit_query(self.context.audit, event, UNABLE_TO_PROCESS, str(exc))
            yield status_dataset(UNABLE_TO_PROCESS, f"unable to process: {exc}"), None
            return
        unmatched = availability.unmatched_keys(request)
        log.info("Q/R C-FIND from %s at %s level: %d match(es)%s", calling, request.level, len(matches),
                 f" (not matched on: {', '.join(unmatched)})" if unmatched else "")
        pending = PENDING_WARNING if unmatched else PENDING
        limited = 0 < self.max_answers < len(matches)
        audit_query(self.context.audit, event, OUT_OF_RESOURCES if limited else SUCCESS,
                    f"{len(matches)} match(es) at {request.level} level" +
                    (f", the first {self.max_answers} answered" if limited else ""))
        for match in matches[:self.max_answers] if limited else matches:
            if event.is_cancelled:
                yield CANCEL, None
                return
            yield pending, build_response(match, identifier, request, self.context.ae_title)
        if limited:
            yield limit_reached(f"Q/R C-FIND at {request.level} level", calling, self.max_answers, len(matches)), None
        else:
            yield SUCCESS, None

    # -- retrieval ----------------------------------------------------------------------------------
    def _items(self, event: Any, model: str) -> list[availability.RetrieveItem]:
        request = request_from_identifier(identifier_of(event), model)
        return self.context.store.read(lambda txn: availability.retrieve(txn, request))

    def _datasets(self, event: Any, items: list[availability.RetrieveItem]) -> Iterator[tuple[int, Any]]:
        for item in items:
            if event.is_cancelled:
                yield CANCEL, None
                return
            try:
                dataset = apply_corrections(dcmread(self.files.absolute(item.path)), item.corrections)
            except Exception as exc:  # noqa: BLE001 - a lost or unreadable file fails this sub-operation
                log.error("retrieve: cannot read %s (%s): %s", item.sop_instance_uid, item.path, exc)
                dataset = Dataset()   # sending it fails, so it counts as a failed sub-operation
                dataset.SOPInstanceUID = item.sop_instance_uid
            yield PENDING, dataset

    def on_move(self, event: Any) -> Iterator[Any]:
        calling = event.assoc.requestor.ae_title.strip()
        destination_title = str(event.move_destination or "").strip()
        if not self.context.directory.allows(calling, "retrieve"):
            # pynetdicom needs the destination first; ending here answers 0xC514 (unable to process)
            log.warning("Q/R C-MOVE from %s refused: not authorised (permission 'retrieve')", calling)
            return
        destination = self.context.directory.get(destination_title)
        if destination is None or not destination.reachable:
            log.warning("Q/R C-MOVE from %s: move destination %r unknown (no host/port in dicom.aes)", calling,
                        destination_title)
            yield None, None
            return
        try:
            secure = tls_args(destination, self.context.config.dicom.tls)
        except TlsSetupError as exc:
            log.error("Q/R C-MOVE from %s: TLS towards move destination %s: %s", calling, destination_title, exc)
            yield None, None
            return
        model = MOVE_MODELS[str(event.request.AffectedSOPClassUID)]
        try:
            items = self._items(event, model)
        except Exception as exc:  # noqa: BLE001 - reported as a failure after the destination
            log.warning("Q/R C-MOVE from %s to %s: %s", calling, destination_title, exc)
            yield destination.host, destination.port, {"tls_args": secure}
            yield 1
            code = IDENTIFIER_DOES_NOT_MATCH if isinstance(exc, QueryError) else UNABLE_TO_PROCESS
            yield status_dataset(code, str(exc)), None
            return
        log.info("Q/R C-MOVE from %s: %d instance(s) to %s (%s:%d)", calling, len(items), destination_title,
                 destination.host, destination.port)
        yield destination.host, destination.port, {
            "contexts": _contexts_for(items), "max_pdu": self.context.config.dicom.max_pdu_bytes, "tls_args": secure,
            "evt_handlers": [(evt.EVT_CONN_OPEN, lambda opened: set_no_delay(opened.assoc))]}
        yield len(items)
        mover = requestor(event.assoc)
        target = Participant(destination_title, False, network_access_point=destination.host)
        self.context.audit.retrieval(mover, target, items, began=True)
        yield from self._datasets(event, items)
        self.context.audit.retrieval(mover, target, items, began=False,
                                     detail=f"C-MOVE by {calling}: {len(items)} instance(s) to {destination_title}")

    def on_get(self, event: Any) -> Iterator[Any]:
        calling = event.assoc.requestor.ae_title.strip()
        if not self.context.directory.allows(calling, "retrieve"):
            log.warning("Q/R C-GET from %s refused: not authorised (permission 'retrieve')", calling)
            yield 1
            yield status_dataset(NOT_AUTHORISED, f"{calling} may not retrieve"), None
            return
        model = GET_MODELS[str(event.request.AffectedSOPClassUID)]
        try:
            items = self._items(event, model)
        except Exception as exc:  # noqa: BLE001
            log.warning("Q/R C-GET from %s: %s", calling, exc)
            yield 1
            code = IDENTIFIER_DOES_NOT_MATCH if isinstance(exc, QueryError) else UNABLE_TO_PROCESS
            yield status_dataset(code, str(exc)), None
            return
        log.info("Q/R C-GET from %s: %d instance(s)", calling, len(items))
        yield len(items)
        getter = requestor(event.assoc)
        self.context.audit.retrieval(getter, getter, items, began=True)
        yield from self._datasets(event, items)
        self.context.audit.retrieval(getter, getter, items, began=False,
                                     detail=f"C-GET by {calling}: {len(items)} instance(s)")


def create(context: DicomContext) -> QueryRetrieveService:
    return QueryRetrieveService(context)
