"""Study stability (issue 16): a study is *stable* once no new instance arrived for its quiet time, or
once a storage commitment of its instances succeeded, whichever comes first.

``note_arrival`` runs in the C-STORE's index transaction for each new instance; ``handle_due_studies``
is the once-per-cluster periodic job (engine/cluster.py ``every``) that finds studies quiet long enough
and hands each, once per stable point, to ``on_study_stable`` — the single place reacting to a stable
point.  The handled mark and the reactions commit together, so a restart does not redo a stable point;
a new instance after it makes the study pending again and a later scan gives it a new stable point.

A storage commitment that succeeds for every reference is the modality saying "that is all": each study of
its references that is pending reaches its stable point then (``on_commitment``), and the quiet-time scan
finds it handled, so the notices go out once, not again when the quiet time passes.  A study with no new
instance since its last stable point gets nothing from a commitment (it was announced with these instances).
"""
from __future__ import annotations

import logging
import time

from ..store import instances as indexed
from ..store import json_columns, queues
from ..store import study_stability as stability
from ..rules.stations import NO_STATIONS, StationPolicies
from ..store.database import Transaction
from . import images_without_mpps

log = logging.getLogger(__name__)

STUDY_AVAILABLE = "study.available"   # domain event: a study's instances are stored and stable
QUIET_TIME = "quiet time"             # reason of a stable point found by the scan
COMMITTED = "storage commitment"      # reason of a stable point reached by a successful commitment
STUDY_WITHDRAWN = "study.withdrawn"   # domain event: instances of an announced study withdrawn (MPPS 110514)
WITHDRAWN = "withdrawn (110514)"


def note_arrival(txn: Transaction, study_instance_uid: str, quiet_seconds: float) -> bool:
    """A new instance of the study was indexed; True when it is the study's first."""
    return stability.record_arrival(txn, study_instance_uid, time.time(), quiet_seconds)


def on_study_stable(txn: Transaction, study_instance_uid: str, reason: str,
                    stations: StationPolicies = NO_STATIONS) -> None:
    """React to one stable point of a study: the ``study.available`` event for the HL7 availability
    destinations of its order (engine/outbound/dispatch.py makes the outbox rows before the commit);
    steps on ``drop_on_study_arrival`` stations leave the worklist (images_without_mpps.py)."""
    series, instances = stability.counts(txn, study_instance_uid)
    procedure_ref = stability.linked_procedure_ref(txn, study_instance_uid)
    procedure = indexed.linked_procedure(txn, procedure_ref) if procedure_ref is not None else None
    accession = procedure.accession_number if procedure else ""
    detail = json_columns.dumps({"study_instance_uid": study_instance_uid, "accession_number": accession,
                                 "series": series, "instances": instances, "reason": reason})
    queues.record_event(txn, STUDY_AVAILABLE, accession or study_instance_uid, detail,
                        procedure.order_ref if procedure else None)
    log.info("study %s (accession %s) stable (%s): %d series, %d instance(s)", study_instance_uid,
             accession or "-", reason, series, instances)
    if procedure_ref is not None:
        images_without_mpps.on_study_stable(txn, procedure_ref, study_instance_uid, instances, stations)


def on_commitment(txn: Transaction, study_instance_uids: list[str]) -> int:
    """A storage commitment succeeded for instances of these studies: each pending one is stable now; how many."""
    handled = 0
    for study_instance_uid in study_instance_uids:
        if stability.mark_committed(txn, study_instance_uid):
            on_study_stable(txn, study_instance_uid, COMMITTED)
            handled += 1
    return handled


def on_withdrawal(txn: Transaction, study_instance_uids: list[str]) -> None:
    """Stored instances of these studies were withdrawn from Q/R (MPPS discontinued 110514).  A study already
    announced, with no stable point to come, gets a ``study.withdrawn`` event (a new Instance Availability
    Notification lists them UNAVAILABLE); a pending one says so at its stable point."""
    for study_instance_uid in study_instance_uids:
        if stability.announced(txn, study_instance_uid):
            queues.record_event(txn, STUDY_WITHDRAWN, study_instance_uid, json_columns.dumps(
                {"study_instance_uid": study_instance_uid, "reason": WITHDRAWN}))
            log.info("study %s: instances withdrawn after its stable point (%s)", study_instance_uid, WITHDRAWN)


def handle_due_studies(txn: Transaction, limit: int = 100, stations: StationPolicies = NO_STATIONS) -> int:
    """Handle the studies whose quiet time has passed (at most ``limit`` per run); how many."""
    handled = 0
    for study in stability.due(txn, time.time(), limit):
        if stability.mark_stable(txn, study):
            on_study_stable(txn, study.study_instance_uid, QUIET_TIME, stations)
            handled += 1
    return handled
