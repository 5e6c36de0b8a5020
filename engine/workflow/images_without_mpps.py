"""Modalities without MPPS (issue 16): the images of a step's study move it as an MPPS would.

Many CR/DX rooms and older scanners never send MPPS.  The station policies of routes/ (``stations:``,
engine/rules/stations.py) say, per Scheduled Station AE Title and/or modality, what their images do:

* ``start_on_first_image``: the first new instance linked to the step's requested procedure (Study
  Instance UID, else accession; storage.link_procedure) starts it, in the C-STORE's index transaction;
* ``complete_on_images``: every new linked instance pushes the step's due time to its arrival + the
  station's quiet time (its own due time, so it may differ from ``studies.quiet_seconds``); the scan
  (``complete_due_steps``, once per cluster every ``studies.scan_seconds``) completes the steps due;
* ``drop_on_study_arrival``: at the study's stable point (study_stability.on_study_stable) the open step
  leaves the worklist; its status stays, so the RIS is not told (nothing about the procedure changed).

Starting and completing go through ``mpps.apply_to_steps``, the function an MPPS IN PROGRESS / COMPLETED
uses: the same step moves and the same ``mpps.in_progress`` / ``mpps.completed`` events, so the RIS gets
IP / CM through the outbox exactly as for an MPPS.  A later MPPS for such a step is linked to it and, the
step being final (or already STARTED), only appended to its history: no second IP or CM.
"""
from __future__ import annotations

import logging
import time

from ..domain.status import StepEvent, StepStatus
from ..rules.stations import StationPolicies, StationPolicy
from ..store import image_steps
from ..store import orders as order_store
from ..store.database import Transaction
from ..store.image_steps import ImageStep
from . import mpps

log = logging.getLogger(__name__)

STARTED_ON_IMAGES = "STARTED ON IMAGES"        # history kinds
COMPLETED_ON_IMAGES = "COMPLETED ON IMAGES"
OFF_WORKLIST = "OFF WORKLIST"


def _policy(stations: StationPolicies, step: ImageStep) -> StationPolicy | None:
    return stations.policy_for(step.step.station_ae_title, step.modality)


def on_instance_linked(txn: Transaction, procedure_ref: int, study_instance_uid: str,
                       stations: StationPolicies) -> None:
    """A new instance was indexed and linked to the requested procedure: start and/or push the completion of
    its steps whose station policy says so (in the C-STORE's index transaction)."""
    if not stations.entries:
        return
    now = time.time()
    for step in image_steps.steps_of_procedure(txn, procedure_ref):
        policy = _policy(stations, step)
        status = StepStatus(step.step.status)
        if policy is None or status.is_final:
            continue
        if policy.start_on_first_image and status.is_open:
            mpps.apply_to_steps(txn, [step.step], StepEvent.START, mpps.IN_PROGRESS, "mpps.in_progress",
                                f"first image of study {study_instance_uid}", step.step.station_ae_title,
                                f"; started on the first image ({policy.where})", STARTED_ON_IMAGES)
        if policy.complete_quiet_seconds is not None:
            image_steps.push_completion(txn, step.step.step_ref, study_instance_uid, policy.complete_quiet_seconds,
                                        policy.complete_quiet_text, now)


def complete_due_steps(txn: Transaction, limit: int = 100) -> int:
    """Complete the steps whose images stayed quiet for their station's quiet time; how many."""
    completed = 0
    for due in image_steps.due_completions(txn, time.time(), limit):
        image_steps.drop_completion(txn, due.step_ref)
        step = image_steps.step(txn, due.step_ref)
        if step is None or StepStatus(step.step.status).is_final:
            continue   # completed meanwhile by an MPPS, cancelled or discontinued: nothing to do
        instances = image_steps.linked_instances(txn, due.step_ref)
        note = f"; completed on images (quiet {due.quiet_text}, {instances} instances)"
        mpps.apply_to_steps(txn, [step.step], StepEvent.COMPLETE, mpps.COMPLETED, "mpps.completed",
                            f"images of study {due.study_instance_uid}", step.step.station_ae_title, note,
                            COMPLETED_ON_IMAGES)
        completed += 1
    return completed


def on_study_stable(txn: Transaction, procedure_ref: int, study_instance_uid: str, instances: int,
                    stations: StationPolicies) -> None:
    """The study linked to the requested procedure is stable: its open steps on stations with
    ``drop_on_study_arrival`` leave the worklist (history says why; the RIS is not told)."""
    if not stations.entries:
        return
    for step in image_steps.steps_of_procedure(txn, procedure_ref):
        policy = _policy(stations, step)
        if policy is None or not policy.drop_on_study_arrival or step.off_worklist:
            continue
        if not StepStatus(step.step.status).is_open:
            continue   # started or final: the worklist does not offer it anyway
        reason = f"study {study_instance_uid} arrived and is stable ({instances} instances)"
        image_steps.take_off_worklist(txn, step.step.step_ref, reason)
        order_store.add_history(txn, step.step.order_ref, OFF_WORKLIST,
                                f"accession {step.step.accession_number} SPS {step.step.sps_id} left the worklist:"
                                f" {reason}; drop_on_study_arrival ({policy.where}); step stays"
                                f" {step.step.status}, the RIS is not told", None)
        order_store.touch(txn, step.step.order_ref)
        log.info("accession %s SPS %s off the worklist: %s", step.step.accession_number, step.step.sps_id, reason)
