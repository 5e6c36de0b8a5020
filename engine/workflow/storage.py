"""RAD-8 / RAD-9: index a received instance, link it to its order, apply the duplicate policy.

``index_instance`` runs in one store transaction (the Storage SCP submits it and answers the C-STORE
only after the commit).  The file is already written to a temporary name; the transaction renames it
into place once the index rows are written, so the index and the visible file change together.

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

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from ..hl7.convert import normalise_name
from ..store import json_columns, queues, timestamps
from ..store.database import Transaction

log = logging.getLogger(__name__)

IGNORE, OVERWRITE = "ignore", "overwrite"
DUPLICATE_POLICIES = (IGNORE, OVERWRITE)
STORED, REPLACED, IGNORED = "stored", "replaced", "ignored"
SERIES_STORED = "series.stored"     # domain event: the first instance of a series was stored

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


@dataclass
class StoreResult:
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


def _columns(instance: ReceivedInstance) -> dict[str, Any]:
    text = instance.text
    extra = {k: v for k, v in instance.attributes.items() if k not in _COLUMN_KEYWORDS}
    return {
        "sop_class_uid": instance.sop_class_uid,
        "study_instance_uid": instance.study_instance_uid,
        "series_instance_uid": instance.series_instance_uid,
        "patient_id": text("PatientID"),
        "patient_name_norm": normalise_name(text("PatientName")).rstrip("^"),
        "accession_number": text("AccessionNumber"),
        "modality": text("Modality"),
        "study_date": _normalised_date(text("StudyDate")),
        "study_time": normalised_time(text("StudyTime")),
        "study_id": text("StudyID"),
        "referring_physician_norm": normalise_name(text("ReferringPhysicianName")).rstrip("^"),
        "series_number": text("SeriesNumber"),
        "instance_number": text("InstanceNumber"),
        "transfer_syntax_uid": instance.transfer_syntax_uid,
        "size_bytes": instance.size_bytes,
        "path": instance.path,
        "received_from": instance.received_from,
        "attributes": json_columns.dumps(extra),
    }


# -- linking to the order ---------------------------------------------------------------------
def _procedure_by_study(txn: Transaction, study_instance_uid: str) -> int | None:
    if not study_instance_uid:
        return None
    row = txn.one("SELECT id FROM requested_procedures WHERE study_instance_uid = ?", (study_instance_uid,))
    return row["id"] if row else None


def _procedure_by_request_item(txn: Transaction, item: dict[str, str], accession: str) -> int | None:
    rp_id = item.get("RequestedProcedureID", "").strip()
    sps_id = item.get("ScheduledProcedureStepID", "").strip()
    accession = item.get("AccessionNumber", "").strip() or accession
    found = _procedure_by_study(txn, item.get("StudyInstanceUID", "").strip())
    if found is not None or not rp_id:
        return found
    accession_clause, params = (" AND r.accession_number = ?", [accession]) if accession else ("", [])
    if sps_id:
        row = txn.one("SELECT r.id FROM requested_procedures r"
                      " JOIN scheduled_steps s ON s.requested_procedure_ref = r.id"
                      " WHERE r.requested_procedure_id = ? AND s.sps_id = ?" + accession_clause +
                      " ORDER BY r.id DESC LIMIT 1", [rp_id, sps_id, *params])
        if row:
            return row["id"]
    row = txn.one("SELECT r.id FROM requested_procedures r WHERE r.requested_procedure_id = ?" + accession_clause +
                  " ORDER BY r.id DESC LIMIT 1", [rp_id, *params])
    return row["id"] if row else None


def _procedure_by_accession(txn: Transaction, accession: str) -> int | None:
    if not accession:
        return None
    rows = txn.query("SELECT id FROM requested_procedures WHERE accession_number = ? ORDER BY id DESC LIMIT 2",
                     (accession,))
    return rows[0]["id"] if len(rows) == 1 else None


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
    moved = txn.execute("UPDATE instances SET requested_procedure_ref = ? WHERE requested_procedure_ref IS NULL"
                        " AND study_instance_uid = ?", (procedure_ref, study_instance_uid)).rowcount
    if accession_number:
        moved += txn.execute("UPDATE instances SET requested_procedure_ref = ? WHERE requested_procedure_ref IS NULL"
                             " AND accession_number = ?", (procedure_ref, accession_number)).rowcount
    return moved


# -- hiding (MPPS discontinued 110514) -------------------------------------------------------------
def hide_instances(txn: Transaction, sop_instance_uids: list[str] | tuple[str, ...] = (),
                   series_instance_uids: list[str] | tuple[str, ...] = (), reason: str = "110514",
                   performed_step_ref: int | None = None) -> int:
    """Withdraw instances from Q/R: those stored now and those of these UIDs stored later.  Returns how
    many stored instances were hidden now.  For the MPPS workflow (DISCONTINUED, reason 110514)."""
    stamp = timestamps.now_iso()
    hidden = 0
    for column, uids in (("sop_instance_uid", sop_instance_uids), ("series_instance_uid", series_instance_uids)):
        for uid in dict.fromkeys(u.strip() for u in uids if u and u.strip()):
            txn.execute("INSERT INTO hidden_references (uid, reason, performed_step_ref, at) VALUES (?, ?, ?, ?)",
                        (uid, reason, performed_step_ref, stamp))
            hidden += txn.execute(f"UPDATE instances SET hidden = 1 WHERE {column} = ? AND hidden = 0", (uid,)).rowcount
    return hidden


def _is_hidden(txn: Transaction, instance: ReceivedInstance) -> bool:
    return txn.one("SELECT 1 AS hidden FROM hidden_references WHERE uid IN (?, ?) LIMIT 1",
                   (instance.sop_instance_uid, instance.series_instance_uid)) is not None


# -- the transaction ---------------------------------------------------------------------------
def index_instance(txn: Transaction, instance: ReceivedInstance, duplicate_policy: str = IGNORE,
                   place_file: Callable[[], None] | None = None) -> StoreResult:
    """Index one received instance; ``place_file`` (rename of the written file into place) runs last,
    only when the instance is (re)indexed, not when a duplicate is ignored."""
    if duplicate_policy not in DUPLICATE_POLICIES:
        raise ValueError(f"duplicate policy {duplicate_policy!r}: use one of {', '.join(DUPLICATE_POLICIES)}")
    existing = txn.one("SELECT id, requested_procedure_ref, hidden, path, size_bytes FROM instances"
                       " WHERE sop_instance_uid = ?", (instance.sop_instance_uid,))
    if existing is not None and duplicate_policy == IGNORE:
        return StoreResult(IGNORED, existing["id"], existing["requested_procedure_ref"], bool(existing["hidden"]),
                           existing["path"], existing["size_bytes"])
    procedure_ref = link_procedure(txn, instance)
    hidden = _is_hidden(txn, instance)
    columns = _columns(instance)
    columns.update(requested_procedure_ref=procedure_ref, hidden=1 if hidden else 0, received_at=timestamps.now_iso())
    new_series = False
    if existing is None:
        new_series = txn.one("SELECT 1 AS known FROM instances WHERE series_instance_uid = ? LIMIT 1",
                             (instance.series_instance_uid,)) is None
        names = ", ".join(columns)
        instance_ref = txn.insert(f"INSERT INTO instances (sop_instance_uid, {names}) VALUES (?, "
                                  f"{', '.join('?' for _ in columns)})", [instance.sop_instance_uid, *columns.values()])
        outcome = STORED
    else:
        instance_ref = existing["id"]
        assignments = ", ".join(f"{name} = ?" for name in columns)
        txn.execute(f"UPDATE instances SET {assignments} WHERE id = ?", [*columns.values(), instance_ref])
        txn.execute("DELETE FROM instance_references WHERE instance_ref = ?", (instance_ref,))
        outcome = REPLACED
    for series_uid in dict.fromkeys(instance.referenced_series):
        txn.execute("INSERT INTO instance_references (instance_ref, series_instance_uid) VALUES (?, ?)",
                    (instance_ref, series_uid))
    if new_series:
        order_ref = None
        accession = columns["accession_number"]
        if procedure_ref is not None:
            procedure = txn.one("SELECT order_ref, accession_number FROM requested_procedures WHERE id = ?",
                                (procedure_ref,))
            if procedure:
                order_ref, accession = procedure["order_ref"], procedure["accession_number"]
        queues.record_event(txn, SERIES_STORED, accession or instance.study_instance_uid,
                            json_columns.dumps({"study_instance_uid": instance.study_instance_uid,
                                                "series_instance_uid": instance.series_instance_uid,
                                                "modality": columns["modality"],
                                                "received_from": instance.received_from}),
                            order_ref)
    if place_file is not None:
        place_file()
    return StoreResult(outcome, instance_ref, procedure_ref, hidden, instance.path, instance.size_bytes)


def remove_instance(txn: Transaction, instance_ref: int) -> None:
    """Take back an index row whose file could not be written (nothing acknowledged is lost: the
    C-STORE that created it is answered with a failure)."""
    txn.execute("DELETE FROM instance_references WHERE instance_ref = ?", (instance_ref,))
    txn.execute("DELETE FROM instances WHERE id = ?", (instance_ref,))
