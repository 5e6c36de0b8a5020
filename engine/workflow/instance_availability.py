"""DICOM Instance Availability Notification (RAD-49, issue 16): the engine as IAN SCU.

Every stable point of a study is one ``study.available`` event (engine/workflow/study_stability.py: its
quiet time passed, or a storage commitment of its instances succeeded).  ``AvailabilityNotifier`` is a
store before-commit hook: each such event committed after its watermark becomes, in the same transaction,
one notice for the study, whose IAN data set (PS3.3 C.4.23, PS3.4 Annex R) is built from the index as it
stands and kept in ``availability_notices``, and one ``dicom_forwards`` row of kind ``ian`` per AE of
``dicom.notify_availability_to``.  The forwarding sender (engine/dicom/services/forwarding.py) delivers
them as N-CREATE in order per AE, retried and parked dead by the forwards' rules.

A notice references every stored instance of the study: ONLINE, or UNAVAILABLE when an MPPS discontinued
with 110514 (wrong worklist entry) withdrew it from Q/R; the Referenced Performed Procedure Step Sequence
holds zero or one item (PS3.3 C.4.23), the study's newest MPPS.  A withdrawal after the study's stable
point (``study.withdrawn``) gets a notice of its own, as the receivers were told those instances were ONLINE.
"""
from __future__ import annotations

import logging
import uuid
from io import BytesIO

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import ExplicitVRLittleEndian

from ..store import availability_notices as notices
from ..store import queues
from ..store.database import Transaction
from ..store.queues import ForwardSource
from ..store.timestamps import now_iso
from .study_stability import STUDY_AVAILABLE, STUDY_WITHDRAWN

log = logging.getLogger(__name__)

INSTANCE_AVAILABILITY_NOTIFICATION = "1.2.840.10008.5.1.4.33"
MPPS_SOP_CLASS = "1.2.840.10008.3.1.2.3.3"
IAN_KIND = "ian"                      # dicom_forwards.kind of a notice (source_ref: availability_notices.id)
ONLINE = "ONLINE"
UNAVAILABLE = "UNAVAILABLE"           # withdrawn by an MPPS discontinued with 110514


def build_notice(study_instance_uid: str, instances: list[notices.StudyInstance], performed_step_uid: str | None,
                 retrieve_ae_title: str) -> Dataset:
    """The IAN attribute list (PS3.4 R.3, PS3.3 C.4.23) for the study's instances, series in arrival order."""
    dataset = Dataset()
    steps = []
    if performed_step_uid:
        step = Dataset()
        step.ReferencedSOPClassUID = MPPS_SOP_CLASS
        step.ReferencedSOPInstanceUID = performed_step_uid
        steps.append(step)
    dataset.ReferencedPerformedProcedureStepSequence = steps       # Type 2: empty without an MPPS
    dataset.StudyInstanceUID = study_instance_uid
    series: dict[str, list[Dataset]] = {}
    for instance in instances:
        item = Dataset()
        item.ReferencedSOPClassUID = instance.sop_class_uid
        item.ReferencedSOPInstanceUID = instance.sop_instance_uid
        item.InstanceAvailability = UNAVAILABLE if instance.hidden else ONLINE
        item.RetrieveAETitle = retrieve_ae_title   # the scope of the availability (C.4.23.1.1)
        series.setdefault(instance.series_instance_uid, []).append(item)
    items = []
    for series_instance_uid, references in series.items():
        item = Dataset()
        item.SeriesInstanceUID = series_instance_uid
        item.ReferencedSOPSequence = references
        items.append(item)
    dataset.ReferencedSeriesSequence = items
    return dataset


def encode_notice(dataset: Dataset, sop_instance_uid: str) -> bytes:
    """The notice as a Part 10 file in memory (Explicit VR Little Endian), as ``dcmdump`` reads it."""
    copy = Dataset(dataset)
    copy.file_meta = FileMetaDataset()
    copy.file_meta.MediaStorageSOPClassUID = INSTANCE_AVAILABILITY_NOTIFICATION
    copy.file_meta.MediaStorageSOPInstanceUID = sop_instance_uid
    copy.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = BytesIO()
    dcmwrite(buffer, copy, implicit_vr=False, little_endian=True, enforce_file_format=True)
    return buffer.getvalue()


def notify_study_available(txn: Transaction, study_instance_uid: str, reason: str, destinations: list[str],
                           retrieve_ae_title: str) -> int | None:
    """Queue one IAN about the study for each destination; the notice id, None when nothing is stored."""
    instances = notices.study_instances(txn, study_instance_uid)
    if not instances:
        log.warning("study %s stable (%s) without stored instances: no availability notice", study_instance_uid,
                    reason)
        return None
    sop_instance_uid = f"2.25.{uuid.uuid4().int}"
    dataset = build_notice(study_instance_uid, instances, notices.performed_step_of_study(txn, study_instance_uid),
                           retrieve_ae_title)
    stamp = now_iso()
    notice_id = notices.add_notice(txn, study_instance_uid=study_instance_uid, sop_instance_uid=sop_instance_uid,
                                   reason=reason, dataset=encode_notice(dataset, sop_instance_uid), at=stamp)
    for destination in destinations:
        queues.enqueue_forward(txn, destination=destination, kind=IAN_KIND,
                               source=ForwardSource(notice_id, sop_instance_uid), at=stamp)
    unavailable = sum(1 for instance in instances if instance.hidden)
    log.info("availability notice %s for study %s (%s): %d series, %d instance(s), %d unavailable; queued to %s",
             sop_instance_uid, study_instance_uid, reason, len(dataset.ReferencedSeriesSequence), len(instances),
             unavailable, ", ".join(destinations))
    return notice_id


class AvailabilityNotifier:
    """Before-commit hook: the ``study.available`` / ``study.withdrawn`` events since its watermark become notices."""

    def __init__(self, destinations: list[str], retrieve_ae_title: str):
        self.destinations = list(destinations)
        self.retrieve_ae_title = retrieve_ae_title

    def start(self, txn: Transaction) -> None:
        """Notify about stable points from now on, not about those recorded before notifying was configured."""
        notices.start_watermark(txn)

    def __call__(self, txn: Transaction) -> None:
        mark = notices.watermark(txn)
        if mark is None:
            return  # start() has not run
        points = notices.stable_points_after(txn, (STUDY_AVAILABLE, STUDY_WITHDRAWN), mark)
        for point in points:
            try:
                with txn.savepoint():
                    notify_study_available(txn, point.study_instance_uid, point.reason, self.destinations,
                                           self.retrieve_ae_title)
            except Exception:  # noqa: BLE001 - one study's broken notice must not hold up the others' for ever
                log.exception("availability notice for study %s (event %d) not built; skipped",
                              point.study_instance_uid, point.event_ref)
        if points:
            notices.advance_watermark(txn, points[-1].event_ref)
