"""RAD-8 / RAD-9: file and index a received instance, link it to its order, apply the duplicate policy.

``InstanceStorage.store`` is the whole sequence for one C-STORE (the Storage SCP calls it once, on the
pynetdicom path and on the direct path alike, and maps the ``StoreOutcome`` to a DIMSE status): write
the file to a temporary name, index it in one store transaction (``index_instance``, SQL in
``store/instances.py``), rename the file into place, and only then return.  Nothing is reported stored
that is not indexed and on disk (fsync is left to storage commitment, ``store/files.py``).  With
``duplicate_policy: ignore`` (default) the file is written while the index transaction commits (the
commit's disk flush is the largest cost of an instance) and renamed after the commit; with
``overwrite`` the file is written first and the transaction renames it over the old copy, so the index
and the file always change together.  Concurrent associations share commits (group commit); their
file writes run in parallel in their threads.

Linking (SWF.md RAD-8), first rule that finds a requested procedure wins:
1. the instance's Study Instance UID is a requested procedure's;
2. an item of the Request Attributes Sequence (0040,0275) names it: RP ID + SPS ID, else RP ID (with
   the item's or the instance's accession number when there is one; a Study Instance UID in the item
   is tried first);
3. the Accession Number names exactly one requested procedure.

An instance whose SOP Instance UID or Series Instance UID was withdrawn (``hide_instances``: MPPS
discontinued with 110514, *incorrect worklist entry selected*) is stored hidden and Q/R never offers it.
"""
from __future__ import annotations

import errno
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from ..domain.matching_keys import normalise_name
from ..store import instances as indexed
from ..store import json_columns, queues, timestamps
from ..store.database import Store, Transaction
from ..store.files import FileStore, PendingFile, encode_file_meta
from ..store.incoming import IncomingDataSet
from ..rules.stations import NO_STATIONS, StationPolicies
from . import images_without_mpps, reconciliation, study_stability

log = logging.getLogger(__name__)

IGNORE, OVERWRITE = "ignore", "overwrite"
DUPLICATE_POLICIES = (IGNORE, OVERWRITE)
STORED, REPLACED, IGNORED = "stored", "replaced", "ignored"
SERIES_STORED = "series.stored"     # domain event: the first instance of a series was stored
DISK_FULL, NOT_WRITTEN, NOT_INDEXED = "disk full", "not written", "not indexed"   # why an instance is refused
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)

# Attributes kept as index columns; everything else the header reader returns goes to ``attributes``.
_COLUMN_KEYWORDS = frozenset({
    "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "PatientID", "AccessionNumber",
    "Modality", "StudyDate", "SeriesNumber", "InstanceNumber", "StudyID", "SpecificCharacterSet",
    "RequestAttributesSequence", "ReferencedSeriesSequence",
})


@dataclass
class ReceivedInstance:
    """One received instance as the index needs it (built by the Storage SCP from the data set header)."""

    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    transfer_syntax_uid: str
    path: str                           # below storage_dir
    size_bytes: int
    received_from: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)      # keyword -> value (header attributes)
    request_attributes: list[dict[str, str]] = field(default_factory=list)
    referenced_series: list[str] = field(default_factory=list)

    @classmethod
    def from_header(cls, header: dict[str, Any], *, transfer_syntax_uid: str, path: str, size_bytes: int,
                    received_from: str = "") -> "ReceivedInstance":
        return cls(
            sop_class_uid=str(header.get("SOPClassUID") or ""),
            sop_instance_uid=str(header.get("SOPInstanceUID") or ""),
            study_instance_uid=str(header.get("StudyInstanceUID") or ""),
            series_instance_uid=str(header.get("SeriesInstanceUID") or ""),
            transfer_syntax_uid=transfer_syntax_uid, path=path, size_bytes=size_bytes,
            received_from=received_from,
            attributes={k: v for k, v in header.items() if v not in (None, "", [])},
            request_attributes=[{k: str(v) for k, v in item.items() if v} for item in
                                header.get("RequestAttributesSequence") or []],
            referenced_series=[str(item["SeriesInstanceUID"]) for item in header.get("ReferencedSeriesSequence") or []
                               if item.get("SeriesInstanceUID")],
        )

    def text(self, keyword: str) -> str:
        value = self.attributes.get(keyword)
        return "" if value is None else str(value).strip()


@dataclass(frozen=True)
class StoreResult:
    """What ``index_instance`` did with one instance."""

    outcome: str                        # stored | replaced | ignored
    instance_ref: int
    requested_procedure_ref: int | None = None
    hidden: bool = False
    path: str = ""                      # the indexed file (for an ignored duplicate: the first copy's)
    size_bytes: int = 0


def _normalised_date(value: str) -> str:
    return value.replace(".", "").strip()[:8]


def normalised_time(value: str) -> str:
    """TM -> ``HHMMSS.ffffff`` (missing parts are zeros) so that ranges compare as text; '' stays ''."""
    value = value.replace(":", "").strip()
    if not value:
        return ""
    whole, _, fraction = value.partition(".")
    whole = whole[:6].ljust(6, "0")
    return f"{whole}.{fraction[:6].ljust(6, '0')}"


def _entry(instance: ReceivedInstance, procedure_ref: int | None, hidden: bool) -> indexed.InstanceEntry:
    text = instance.text
    return indexed.InstanceEntry(
        sop_instance_uid=instance.sop_instance_uid,
        sop_class_uid=instance.sop_class_uid,
        study_instance_uid=instance.study_instance_uid,
        series_instance_uid=instance.series_instance_uid,
        patient_id=text("PatientID"),
        patient_name_norm=normalise_name(text("PatientName")).rstrip("^"),
        accession_number=text("AccessionNumber"),
        modality=text("Modality"),
        study_date=_normalised_date(text("StudyDate")),
        study_time=normalised_time(text("StudyTime")),
        study_id=text("StudyID"),
        referring_physician_norm=normalise_name(text("ReferringPhysicianName")).rstrip("^"),
        series_number=text("SeriesNumber"),
        instance_number=text("InstanceNumber"),
        transfer_syntax_uid=instance.transfer_syntax_uid,
        size_bytes=instance.size_bytes,
        path=instance.path,
        received_from=instance.received_from,
        attributes={k: v for k, v in instance.attributes.items() if k not in _COLUMN_KEYWORDS},
        requested_procedure_ref=procedure_ref,
        hidden=hidden,
        received_at=timestamps.now_iso(),
        referenced_series=tuple(dict.fromkeys(instance.referenced_series)),
    )


# -- linking to the order ---------------------------------------------------------------------
def _procedure_by_study(txn: Transaction, study_instance_uid: str) -> int | None:
    return indexed.procedure_by_study(txn, study_instance_uid) if study_instance_uid else None


def _procedure_by_request_item(txn: Transaction, item: dict[str, str], accession: str) -> int | None:
    rp_id = item.get("RequestedProcedureID", "").strip()
    sps_id = item.get("ScheduledProcedureStepID", "").strip()
    accession = item.get("AccessionNumber", "").strip() or accession
    found = _procedure_by_study(txn, item.get("StudyInstanceUID", "").strip())
    if found is not None or not rp_id:
        return found
    if sps_id:
        found = indexed.procedure_by_step(txn, rp_id, sps_id, accession)
        if found is not None:
            return found
    return indexed.procedure_by_procedure_id(txn, rp_id, accession)


def _procedure_by_accession(txn: Transaction, accession: str) -> int | None:
    if not accession:
        return None
    found = indexed.procedures_by_accession(txn, accession)
    return found[0] if len(found) == 1 else None


def link_procedure(txn: Transaction, instance: ReceivedInstance) -> int | None:
    """The requested procedure the instance belongs to (SWF.md RAD-8 order of rules), or None."""
    found = _procedure_by_study(txn, instance.study_instance_uid)
    if found is not None:
        return found
    accession = instance.text("AccessionNumber")
    for item in instance.request_attributes:
        found = _procedure_by_request_item(txn, item, accession)
        if found is not None:
            return found
    return _procedure_by_accession(txn, accession)


def link_waiting_instances(txn: Transaction, procedure_ref: int, study_instance_uid: str,
                           accession_number: str = "") -> int:
    """Link instances stored before their order arrived (by Study Instance UID, else by accession);
    for the orders workflow to call when it creates a requested procedure.  Returns how many."""
    return indexed.link_waiting(txn, procedure_ref, study_instance_uid, accession_number)


# -- hiding (MPPS discontinued 110514) -------------------------------------------------------------
def hide_instances(txn: Transaction, sop_instance_uids: list[str] | tuple[str, ...] = (),
                   series_instance_uids: list[str] | tuple[str, ...] = (), reason: str = "110514",
                   performed_step_ref: int | None = None) -> int:
    """Withdraw instances from Q/R: those stored now and those of these UIDs stored later.  Returns how
    many stored instances were hidden now.  For the MPPS workflow (DISCONTINUED, reason 110514)."""
    def distinct(uids: list[str] | tuple[str, ...]) -> list[str]:
        return list(dict.fromkeys(u.strip() for u in uids if u and u.strip()))

    sop_uids, series_uids = distinct(sop_instance_uids), distinct(series_instance_uids)
    hidden = indexed.withdraw(txn, sop_uids, series_uids, reason, performed_step_ref, timestamps.now_iso())
    if hidden:   # receivers told these instances were available hear otherwise (instance availability)
        study_stability.on_withdrawal(txn, indexed.studies_of(txn, sop_uids, series_uids))
    return hidden


# -- the transaction ---------------------------------------------------------------------------
def index_instance(txn: Transaction, instance: ReceivedInstance, duplicate_policy: str = IGNORE,
                   place_file: Callable[[], None] | None = None, quiet_seconds: float = 60.0,
                   stations: StationPolicies = NO_STATIONS) -> StoreResult:
    """Index one received instance; ``place_file`` (rename of the written file into place) runs last,
    only when the instance is (re)indexed, not when a duplicate is ignored.  ``stations``: what images
    do on rooms without MPPS (images_without_mpps.py)."""
    if duplicate_policy not in DUPLICATE_POLICIES:
        raise ValueError(f"duplicate policy {duplicate_policy!r}: use one of {', '.join(DUPLICATE_POLICIES)}")
    existing = indexed.by_sop_instance_uid(txn, instance.sop_instance_uid)
    if existing is not None and duplicate_policy == IGNORE:
        return StoreResult(IGNORED, existing.id, existing.requested_procedure_ref, existing.hidden, existing.path,
                           existing.size_bytes)
    procedure_ref = link_procedure(txn, instance)
    hidden = indexed.is_withdrawn(txn, instance.sop_instance_uid, instance.series_instance_uid)
    entry = _entry(instance, procedure_ref, hidden)
    new_series = False
    if existing is None:
        new_series = not indexed.series_indexed(txn, instance.series_instance_uid)
        instance_ref = indexed.add(txn, entry)
        outcome = STORED
        study_stability.note_arrival(txn, instance.study_instance_uid, quiet_seconds)
        if procedure_ref is not None and not hidden:
            images_without_mpps.on_instance_linked(txn, procedure_ref, instance.study_instance_uid, stations)
    else:
        instance_ref = existing.id
        indexed.replace(txn, instance_ref, entry)
        reconciliation.reapply(txn, instance_ref)
        outcome = REPLACED
    if entry.patient_id:
        reconciliation.reconcile_arrival(txn, entry.patient_id, instance.text("IssuerOfPatientID"))
    if new_series:
        order_ref = None
        accession = entry.accession_number
        if procedure_ref is not None:
            procedure = indexed.linked_procedure(txn, procedure_ref)
            if procedure:
                order_ref, accession = procedure.order_ref, procedure.accession_number
        queues.record_event(txn, SERIES_STORED, accession or instance.study_instance_uid,
                          json_columns.dumps({"study_instance_uid": instance.study_instance_uid,
                                      "series_instance_uid": instance.series_instance_uid,
                                      "modality": entry.modality, "received_from": instance.received_from}),
                          order_ref)
    if place_file is not None:
        place_file()
    return StoreResult(outcome, instance_ref, procedure_ref, hidden, instance.path, instance.size_bytes)


def remove_instance(txn: Transaction, instance_ref: int) -> None:
    """Take back an index row whose file could not be written (nothing acknowledged is lost: the
    C-STORE that created it is answered with a failure)."""
    indexed.remove(txn, instance_ref)


# -- the file and the index together -------------------------------------------------------------
@dataclass(frozen=True)
class StoreOutcome:
    """What became of one received instance: indexed and on disk (``result``: stored, replaced or a
    duplicate ignored), or refused (``refusal``: DISK_FULL, NOT_WRITTEN or NOT_INDEXED; ``reason`` in
    words for the peer)."""

    result: StoreResult | None = None
    refusal: str = ""
    reason: str = ""


def write_refused(sop_instance_uid: str, received_from: str, exc: OSError) -> StoreOutcome:
    """The outcome (logged) of an instance whose data could not be written: the file, or the scratch
    file it was received into."""
    if exc.errno in _DISK_FULL:
        log.error("C-STORE %s from %s: disk full (%s)", sop_instance_uid, received_from, exc.strerror)
        return StoreOutcome(refusal=DISK_FULL, reason="out of resources: disk full")
    log.error("C-STORE %s from %s: cannot write the file: %s", sop_instance_uid, received_from, exc)
    return StoreOutcome(refusal=NOT_WRITTEN, reason=f"cannot write: {exc.strerror or exc}")


def _not_indexed(sop_instance_uid: str, received_from: str, exc: Exception) -> StoreOutcome:
    log.error("C-STORE %s from %s: not indexed: %s", sop_instance_uid, received_from, exc)
    return StoreOutcome(refusal=NOT_INDEXED, reason=f"cannot index the instance: {exc}")


def _stored(result: StoreResult, sop_instance_uid: str, received_from: str) -> StoreOutcome:
    if result.outcome == IGNORED:
        log.info("C-STORE %s from %s: already stored, duplicate ignored", sop_instance_uid, received_from)
    elif log.isEnabledFor(logging.DEBUG):
        log.debug("C-STORE %s from %s: %s (%d bytes)%s", sop_instance_uid, received_from, result.outcome,
                  result.size_bytes, f", requested procedure #{result.requested_procedure_ref}"
                  if result.requested_procedure_ref else "")
    return StoreOutcome(result)


class InstanceStorage:
    """Files and indexes received instances (the sequence described at the top of this module)."""

    def __init__(self, store: Store, files: FileStore, commit_timeout: float, quiet_seconds: float = 60.0,
                 stations: Callable[[], StationPolicies] = lambda: NO_STATIONS):
        self.store = store
        self.files = files
        self.commit_timeout = commit_timeout
        self.quiet_seconds = quiet_seconds   # a study is stable this long after its last new instance
        self.stations = stations             # the station policies in force (routes/ ``stations:``)

    def store_received(self, header: dict[str, Any], transfer_syntax_uid: str, received_from: str,
                       data: IncomingDataSet, duplicate_policy: str) -> StoreOutcome:
        """File and index one received data set whose header (``dicom/header.py``) was checked against
        its C-STORE request; the outcome once both are done, or why not."""
        uid = header["SOPInstanceUID"]
        relative = self.files.relative_path(header["StudyInstanceUID"], header["SeriesInstanceUID"], uid)
        meta = encode_file_meta(header["SOPClassUID"], uid, transfer_syntax_uid, received_from)
        instance = ReceivedInstance.from_header(header, transfer_syntax_uid=transfer_syntax_uid, path=relative,
                                                size_bytes=len(meta) + data.size, received_from=received_from)
        if duplicate_policy == OVERWRITE:
            return self._store_in_order(instance, meta, data)
        return self._store_overlapped(instance, meta, data)

    def _store_in_order(self, instance: ReceivedInstance, meta: bytes, data: IncomingDataSet) -> StoreOutcome:
        """Write, then index; the transaction renames the file into place (it may replace a copy)."""
        uid, calling = instance.sop_instance_uid, instance.received_from
        try:
            pending = self.files.write_pending(instance.path, meta, data)
        except OSError as exc:
            return write_refused(uid, calling, exc)
        try:
            result = self.store.submit(
                lambda txn: index_instance(txn, instance, OVERWRITE, pending.place, self.quiet_seconds,
                                           self.stations())
            ).result(self.commit_timeout)
        except Exception as exc:  # noqa: BLE001 - not indexed, so not acknowledged
            pending.discard()
            return _not_indexed(uid, calling, exc)
        return _stored(result, uid, calling)

    def _store_overlapped(self, instance: ReceivedInstance, meta: bytes, data: IncomingDataSet) -> StoreOutcome:
        """Duplicate policy ``ignore``: the index transaction (and its commit, the one disk flush per
        instance) runs while this thread writes the file; the file is renamed into place after the
        commit, before the answer.  A file that cannot be written takes its index row back.  A file
        lost after its row committed (crash in between, or deleted) is restored by the next copy."""
        uid, calling = instance.sop_instance_uid, instance.received_from
        stations = self.stations()
        future = self.store.submit(lambda txn: index_instance(txn, instance, IGNORE, None, self.quiet_seconds,
                                                              stations))
        pending: PendingFile | None = None
        write_error: OSError | None = None
        try:
            pending = self.files.write_pending(instance.path, meta, data)
        except OSError as exc:
            write_error = exc
        try:
            result = future.result(self.commit_timeout)
        except Exception as exc:  # noqa: BLE001 - not indexed, so not acknowledged
            if pending is not None:
                pending.discard()
            return _not_indexed(uid, calling, exc)
        if result.outcome == IGNORED:
            if pending is not None and result.path == instance.path and not self._intact(result.path,
                                                                                          result.size_bytes):
                # indexed, but its file is gone or short (lost after the commit): this copy takes its place
                log.warning("C-STORE %s from %s: indexed but its file was missing or short; stored again from"
                            " this copy", uid, calling)
                placing = pending
                try:
                    result = self.store.submit(
                        lambda txn: index_instance(txn, instance, OVERWRITE, placing.place, self.quiet_seconds,
                                                   stations)
                    ).result(self.commit_timeout)
                except Exception as exc:  # noqa: BLE001
                    pending.discard()
                    return _not_indexed(uid, calling, exc)
            elif pending is not None:
                pending.discard()
            return _stored(result, uid, calling)
        if write_error is None and pending is not None:
            try:
                pending.place()
            except OSError as exc:
                pending.discard()
                write_error = exc
        if write_error is not None:
            try:
                self.store.write(lambda txn: remove_instance(txn, result.instance_ref), self.commit_timeout)
            except Exception:  # noqa: BLE001 - the row stays without a file; commitment reports it missing
                log.exception("C-STORE %s: cannot take back the index row of the unwritten file", uid)
            return write_refused(uid, calling, write_error)
        return _stored(result, uid, calling)

    def _intact(self, relative: str, size_bytes: int) -> bool:
        try:
            return self.files.absolute(relative).stat().st_size == size_bytes
        except OSError:
            return False
