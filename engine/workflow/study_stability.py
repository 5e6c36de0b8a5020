"""Study stability (issue 16): a study is *stable* once no new instance arrived for its quiet time.

``note_arrival`` runs in the C-STORE's index transaction for each new instance; ``handle_due_studies``
is the once-per-cluster periodic job (engine/cluster.py ``every``) that finds studies quiet long enough
and hands each, once per stable point, to ``on_study_stable`` — the single place reacting to a stable
point.  The handled mark and the reactions commit together, so a restart does not redo a stable point;
a new instance after it makes the study pending again and a later scan gives it a new stable point.
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


def handle_due_studies(txn: Transaction, limit: int = 100, stations: StationPolicies = NO_STATIONS) -> int:
    """Handle the studies whose quiet time has passed (at most ``limit`` per run); how many."""
    handled = 0
    for study in stability.due(txn, time.time(), limit):
        if stability.mark_stable(txn, study):
            on_study_stable(txn, study.study_instance_uid, QUIET_TIME, stations)
            handled += 1
    return handled
