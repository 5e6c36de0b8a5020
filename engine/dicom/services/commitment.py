"""Storage Commitment Push Model SCP (RAD-10, SWF.md section 7): the N-ACTION side.

N-ACTION in: checked, persisted, answered at once (0x0000 = "request received", not "committed").  The
result goes back as an N-EVENT-REPORT from the sender (engine/dicom/services/commitment_reports.py), which
this service starts and stops, tells of each N-ACTION's association (the report may go on it while it is
open) and wakes once the request is committed.
"""
from __future__ import annotations

import logging
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom import build_context, evt
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import StorageCommitmentPushModel

from ...store.commitments import CommitmentReference
from ...workflow import commitment as workflow
from ...workflow.commitment import CommitmentRequest
from ..ae import DicomContext, status_dataset
from .commitment_reports import ReportSender

log = logging.getLogger(__name__)

# N-ACTION statuses (SWF.md 7.1)
SUCCESS = 0x0000
PROCESSING_FAILURE = 0x0110
NO_SUCH_SOP_INSTANCE = 0x0112
INVALID_ARGUMENT_VALUE = 0x0115
NO_SUCH_SOP_CLASS = 0x0118
NO_SUCH_ACTION = 0x0123
NOT_AUTHORISED = 0x0124
RESOURCE_LIMITATION = 0x0213

MAX_REFERENCES = 100_000


class InvalidRequest(ValueError):
    """The N-ACTION's Action Information cannot be used (0x0115)."""


def _valid_uid(value: Any) -> bool:
    text = str(value or "")
    return bool(text) and UID(text).is_valid


def parse_action_information(dataset: Dataset) -> tuple[str, list[CommitmentReference]]:
    """Transaction UID and references of an N-ACTION, or InvalidRequest naming what is wrong."""
    transaction_uid = str(dataset.get("TransactionUID", "") or "").strip()
    if not transaction_uid:
        raise InvalidRequest("no Transaction UID (0008,1195)")
    if not _valid_uid(transaction_uid):
        raise InvalidRequest(f"malformed Transaction UID {transaction_uid[:40]!r}")
    items = dataset.get("ReferencedSOPSequence")
    if not items:
        raise InvalidRequest("no or empty Referenced SOP Sequence (0008,1199)")
    if len(items) > MAX_REFERENCES:
        raise InvalidRequest(f"more than {MAX_REFERENCES} references")
    references = []
    for number, item in enumerate(items, 1):
        sop_class_uid = str(item.get("ReferencedSOPClassUID", "") or "").strip()
        sop_instance_uid = str(item.get("ReferencedSOPInstanceUID", "") or "").strip()
        if not _valid_uid(sop_class_uid) or not _valid_uid(sop_instance_uid):
            raise InvalidRequest(f"Referenced SOP Sequence item {number}: missing or malformed SOP class/instance UID")
        references.append(CommitmentReference(sop_class_uid, sop_instance_uid))
    return transaction_uid, references


class CommitmentService:
    name = "storage commitment"

    def __init__(self, context: DicomContext):
        self.context = context
        self.sender = ReportSender(context)

    def contexts(self) -> list[PresentationContext]:
        return [build_context(StorageCommitmentPushModel)]

    def handlers(self) -> list[tuple]:
        return [(evt.EVT_N_ACTION, self.on_action)]

    def start(self) -> None:
        self.sender.start()

    def stop(self) -> None:
        self.sender.stop()

    def on_action(self, event: Any) -> tuple[Dataset, Dataset | None]:
        request = event.request
        calling = str(event.assoc.requestor.ae_title).strip()
        if not self.context.directory.allows(calling, "commit"):
            log.warning("storage commitment N-ACTION from %s refused: not authorised (permission 'commit')", calling)
            return status_dataset(NOT_AUTHORISED, f"{calling} may not request storage commitment"), None
        if str(request.RequestedSOPClassUID) != workflow.STORAGE_COMMITMENT_PUSH_MODEL:
            return status_dataset(NO_SUCH_SOP_CLASS), None
        if str(request.RequestedSOPInstanceUID) != workflow.WELL_KNOWN_INSTANCE:
            return status_dataset(NO_SUCH_SOP_INSTANCE, f"use the well-known instance {workflow.WELL_KNOWN_INSTANCE}"), None
        if request.ActionTypeID != 1:
            return status_dataset(NO_SUCH_ACTION, f"Action Type ID {request.ActionTypeID}: only 1 is defined"), None
        try:
            transaction_uid, references = parse_action_information(event.action_information)
        except InvalidRequest as exc:
            log.warning("storage commitment N-ACTION from %s refused: %s", calling, exc)
            return status_dataset(INVALID_ARGUMENT_VALUE, str(exc)), None
        except Exception as exc:  # noqa: BLE001 - undecodable Action Information
            log.warning("storage commitment N-ACTION from %s: cannot decode the request: %s", calling, exc)
            return status_dataset(INVALID_ARGUMENT_VALUE, "cannot decode the Action Information"), None
        requestor = event.assoc.requestor
        commitment_request = CommitmentRequest(transaction_uid, calling, references,
                                               peer=f"{requestor.address}:{requestor.port}",
                                               received_by=self.context.cluster.name)
        # Known before the request is committed: the sender may evaluate it the moment it is.
        key = (calling, transaction_uid)
        waiting = self.sender.expect_report(event.assoc, event.context.context_id, key)
        try:
            receipt = self.context.store.write(lambda txn: workflow.receive_request(txn, commitment_request))
        except Exception:  # noqa: BLE001 - not persisted: the modality must not take it as received
            self.sender.forget(key, waiting)
            log.exception("storage commitment transaction %s from %s: cannot persist the request",
                          transaction_uid, calling)
            return status_dataset(PROCESSING_FAILURE, "cannot persist the request"), None
        log.info("storage commitment transaction %s from %s: %d reference(s) received (commitment #%d%s)",
                 transaction_uid, calling, len(references), receipt.commitment_id,
                 ", duplicate of an active transaction: every item fails with 0x0131" if receipt.duplicate else "")
        self.sender.wake()
        return status_dataset(SUCCESS), None


def create(context: DicomContext) -> CommitmentService:
    return CommitmentService(context)
