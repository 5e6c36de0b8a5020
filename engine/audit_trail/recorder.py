"""What the adapters call to audit: ``AuditTrail``.

Recording never waits and never raises into the clinical path: a message is built (a few XML elements)
and handed to the store's writer (``submit``, not waited for), which queues it with the next batch; the
rows the engine writes anyway (domain events, operator actions) are audited by ``audit_changes``, a
before-commit hook, in the very transaction that writes them.  Without a repository configured the trail
is off: nothing is built or queued.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..config import AuditConfig
from ..security_events import SecurityEvent
from ..store import audit_queue
from ..store.audit_queue import ActionFacts
from ..store.database import Store, Transaction
from ..store.timestamps import now_iso
from . import changes, codes, events
from .events import PatientRef, StudyRef
from .message import AuditEvent, AuditSource, Participant, to_xml

log = logging.getLogger("swf.audit")

# SecurityEvent.kind -> the Security Alert's event type (the rest: node authentication with a peer, else
# security configuration)
ALERT_TYPES = {"login-failed": codes.USE_OF_RESTRICTED_FUNCTION, "allow-any-ae": codes.USE_OF_RESTRICTED_FUNCTION,
               "rules-reloaded": codes.SOFTWARE_CONFIGURATION, "rules-refused": codes.SOFTWARE_CONFIGURATION,
               "certificates-reloaded": codes.SECURITY_CONFIGURATION}
ALERT_SUCCESS = {"rules-reloaded", "certificates-reloaded"}   # changes made, not attacks refused


@dataclass
class _Tally:
    """Instances of one study received from one sender, until the sender goes quiet."""

    patient: str
    first: float
    last: float
    sop_classes: Counter = field(default_factory=Counter)


class AuditTrail:
    def __init__(self, config: AuditConfig, store: Store | None, ae_title: str = "SWF_ENGINE"):
        self.config = config
        self.store = store
        self.enabled = bool(config.repository) and store is not None
        self.hostname = socket.gethostname()
        self.engine = Participant(config.app_name, False, alternative_user_id=str(os.getpid()),
                                  user_name=ae_title, network_access_point=self.hostname)
        self.source = AuditSource(config.source_id or ae_title, config.enterprise_site)
        self._tallies: dict[tuple[str, str, str], _Tally] = {}
        self._lock = threading.Lock()

    @classmethod
    def off(cls) -> "AuditTrail":
        return cls(AuditConfig(), None)

    # -- queueing ----------------------------------------------------------------------------------
    def record(self, event: AuditEvent) -> None:
        """Queue ``event`` with the writer's next batch (any thread; never waits, never raises)."""
        if not self.enabled:
            return
        try:
            xml = to_xml(event, self.source)
            self.store.submit(lambda txn: audit_queue.enqueue(txn, event.event_id.meaning, xml)).add_done_callback(
                _log_lost(event))
        except Exception:  # noqa: BLE001 - auditing must not break what it audits
            log.exception("audit message %s could not be queued", event.event_id.meaning)

    def record_in(self, txn: Transaction, event: AuditEvent) -> None:
        """Queue ``event`` in ``txn``: it commits with the change it records, or not at all."""
        audit_queue.enqueue(txn, event.event_id.meaning, to_xml(event, self.source))

    def audit_changes(self, txn: Transaction) -> None:
        """Before-commit hook: the domain events and operator actions written since the last one."""
        event_cursor = audit_queue.cursor(txn, audit_queue.EVENTS)
        action_cursor = audit_queue.cursor(txn, audit_queue.OPERATOR_ACTIONS)
        facts = audit_queue.events_after(txn, event_cursor)
        actions = audit_queue.actions_after(txn, action_cursor)
        if not facts and not actions:
            return
        by_subject = {action.subject: action for action in actions if action.action.startswith("order.")}
        for fact in facts:
            built = changes.event_audit(self.engine, fact, by_subject.get)
            if built is not None:
                self.record_in(txn, built)
        for action in actions:
            built = changes.action_audit(self.engine, action, lambda found: self._export(txn, found))
            if built is not None:
                self.record_in(txn, built)
        if facts:
            audit_queue.advance(txn, audit_queue.EVENTS, facts[-1].id)
        if actions:
            audit_queue.advance(txn, audit_queue.OPERATOR_ACTIONS, actions[-1].id)

    def _export(self, txn: Transaction, action: ActionFacts) -> AuditEvent | None:
        requestor = Participant(action.actor, True, network_access_point="" if action.client == "cli" else
                                changes.host_of(action.client))
        if action.action.startswith("outbox."):
            destination, accession, patient_id, issuer, studies = audit_queue.outbox_subject(txn, action.subject)
            refs = tuple(StudyRef(uid, (number,) if number else ()) for uid, number in studies)
            return events.export(self.engine, requestor, Participant(destination or "-", False), action.at,
                                 PatientRef(patient_id, issuer), refs,
                                 f"outbox message {action.subject} ({accession}) resent to {destination}")
        destination, sop_class, study, patient_id = audit_queue.forward_subject(txn, action.subject)
        refs = (StudyRef(study, sop_classes=((sop_class, 1),) if sop_class else ()),) if study else ()
        return events.export(self.engine, requestor, Participant(destination or "-", False), action.at,
                             PatientRef(patient_id), refs, f"DICOM forward {action.subject} resent to {destination}")

    # -- what the adapters tell -------------------------------------------------------------------
    def application(self, started: bool) -> None:
        if self.enabled:
            launcher = _login_name()
            self.record(events.application_activity(self.engine, now_iso(), started, launcher))

    def security_event(self, event: SecurityEvent) -> None:
        """The sink of the engine's SecurityEvents: a Security Alert (and a failed User Authentication
        for a failed login)."""
        if not self.enabled:
            return
        when = now_iso()
        peer = changes.host_of(event.peer)
        if event.kind == "login-failed":
            self.record(events.user_authentication(self.engine, when, event.subject, peer, True, False, event.detail))
        type_code = ALERT_TYPES.get(event.kind, codes.NODE_AUTHENTICATION if peer else codes.SECURITY_CONFIGURATION)
        performer = Participant(event.subject or peer or "-", True, network_access_point=peer) \
            if (event.subject or peer) else None
        subject = (events.node_object(peer) if peer else
                   events.resource_object(event.subject) if event.subject else events.resource_object(event.kind))
        self.record(events.security_alert(self.engine, when, type_code, f"{event.kind}: {event.detail}",
                                          codes.SUCCESS if event.kind in ALERT_SUCCESS else codes.MINOR_FAILURE,
                                          performer, subject))

    def query(self, calling: str, address: str, sop_class: str, identifier: bytes, transfer_syntax: str,
              outcome: str = codes.SUCCESS, detail: str = "") -> None:
        if self.enabled:
            self.record(events.query(self.engine, Participant(calling, True, network_access_point=address), now_iso(),
                                     sop_class, identifier, transfer_syntax, outcome, detail))

    def instance_received(self, calling: str, address: str, study: str, patient: str, sop_class: str) -> None:
        """Counted per sender and study; one Instances Transferred message once the sender is quiet."""
        if not self.enabled:
            return
        now = time.monotonic()
        with self._lock:
            tally = self._tallies.get((calling, address, study))
            if tally is None:
                tally = self._tallies[(calling, address, study)] = _Tally(patient, now, now)
            tally.last = now
            tally.sop_classes[sop_class] += 1

    def flush_transfers(self, everything: bool = False) -> None:
        """Audit the tallies whose sender has been quiet ``transfer_quiet_seconds`` (or open too long)."""
        quiet = self.config.transfer_quiet_seconds
        now = time.monotonic()
        with self._lock:
            done = [key for key, tally in self._tallies.items()
                    if everything or now - tally.last >= quiet or now - tally.first >= 30 * quiet]
            finished = [(key, self._tallies.pop(key)) for key in done]
        for (calling, address, study), tally in finished:
            count = sum(tally.sop_classes.values())
            self.record(events.instances_transferred(
                Participant(calling, True, network_access_point=address), self.engine, now_iso(), "C",
                PatientRef(tally.patient), (StudyRef(study, sop_classes=tuple(sorted(tally.sop_classes.items()))),),
                detail=f"{count} instance(s) stored from {calling}"))

    def retrieval(self, mover: Participant, destination: Participant, items: list[Any], began: bool,
                  detail: str = "") -> None:
        """A C-MOVE / C-GET: Begin Transferring before the first instance, Instances Transferred after the
        last; one message per patient (items carry study_instance_uid, patient_id, sop_class_uid)."""
        if not self.enabled or not items:
            return
        by_patient: dict[str, dict[str, Counter]] = {}
        for item in items:
            by_patient.setdefault(item.patient_id, {}).setdefault(item.study_instance_uid, Counter())[item.sop_class_uid] += 1
        when = now_iso()
        others = () if mover.user_id == destination.user_id else (mover,)
        for patient, studies in by_patient.items():
            refs = tuple(StudyRef(uid, sop_classes=tuple(sorted(classes.items()))) for uid, classes in studies.items())
            if began:
                self.record(events.begin_transferring(self.engine, destination, when, PatientRef(patient), refs, others))
            else:
                self.record(events.instances_transferred(self.engine, destination, when, "R", PatientRef(patient),
                                                         refs, detail=detail, others=others))


def _log_lost(event: AuditEvent) -> Any:
    def done(future: Any) -> None:
        if future.exception() is not None:
            log.error("audit message %s not queued: %s", event.event_id.meaning, future.exception())
    return done


def _login_name() -> str:
    try:
        import getpass

        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"
