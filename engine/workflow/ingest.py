"""Receiving one HL7 message: journal, duplicate check, rules, apply, ACK, all in one transaction.

``Ingestor.prepare`` does what needs no database (parse, header check, routing, mapping) on the
caller's thread; ``Ingestor.apply`` runs on the store's writer thread inside the batch transaction (see
``store/database.py``).  The journal row is written first, the message's effects run in their own
savepoint (rolled back if the message is rejected), and the ACK is stored with the journal row; the
MLLP adapter sends it only after the batch has committed.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable

from ..config import Config
from ..domain.model import DomainEvent, OrderRequest, PatientData, PatientIdentity, Problem, Rejection
from ..hl7 import ack as ack_builder
from ..hl7 import extract
from ..hl7.ack import HL7Error, Identity
from ..hl7.mapping import Profile
from ..hl7.message import HL7ParseError, Message, decode_bytes, field_path, normalise_segments
from ..hl7.profiles import select_profile
from ..domain.decision import Decision
from ..domain.senders import SenderDirectory
from ..rules.ruleset import RuleSet
from ..store import journal, queues
from ..store.database import Transaction
from ..store.timestamps import now_iso
from . import orders, registration

log = logging.getLogger(__name__)

SUPPORTED_MESSAGES = {"ADT", "ORM", "OMI", "OMG"}
ORDER_TRIGGERS = {"ORM": {"O01"}, "OMI": {"O23"}, "OMG": {"O19"}}


@dataclass
class Received:
    raw: bytes
    peer: str = ""
    received_at: str = field(default_factory=now_iso)   # local time with offset, ms precision
    presented: tuple[str, ...] | None = None   # MLLP: the names of the client certificate (() for none); None
                                               # when not from a connection (API, explain): mllp.senders not checked


@dataclass
class IngestResult:
    control_id: str
    ack_code: str             # AA/AE/AR (the original-mode meaning even when CA/CE/CR was sent)
    ack: bytes | None         # bytes to send back; None when the sender asked for no accept ACK
    status: str               # applied, dropped, rejected, failed, duplicate
    reason: str = ""
    journal_id: int = 0
    events: list[DomainEvent] = field(default_factory=list)
    message_code: str = ""


@dataclass
class Mapped:
    """What a message asks for, read with its profile: the patient and, for orders, the order requests."""
    patient: PatientData
    prior: PatientIdentity | None = None                         # ADT merges: the identity merged away
    requests: list[OrderRequest] = field(default_factory=list)


@dataclass
class Prepared:
    """A received message after the work that needs no database (``Ingestor.prepare``).

    Built off the writer thread, so that parsing, routing and mapping overlap the writer's SQL and disk
    flush (SQLite releases the GIL there).  Outcomes that must be journaled first are kept, not raised."""
    received: Received
    digest: str
    message: Message | None = None
    parse_error: HL7ParseError | None = None
    header_error: HL7Error | None = None
    sender_error: HL7Error | None = None                         # MSH-3/4 not covered by the client certificate
    decision: Decision | None = None
    mapped: Mapped | None = None
    mapping_error: Exception | None = None                       # raised again where the effects are applied


def _rejection_error(rejection: Rejection) -> HL7Error:
    """The ERR entry for a refused request: its location (``ORC-7.4``, ``OBR-4``, ``PID``) taken apart."""
    try:
        fp = field_path(rejection.location)
    except ValueError:  # a whole segment, or no location at all
        return HL7Error(int(rejection.problem), rejection.reason, rejection.location, rejection.sequence)
    return HL7Error(int(rejection.problem), rejection.reason, fp.segment, rejection.sequence, fp.field,
                    fp.component, fp.repetition)


def payload_hash(raw: bytes) -> str:
    text = normalise_segments(raw.strip(b"\x0b\x1c\r\n").decode("latin-1"))
    return hashlib.sha256(text.encode("latin-1")).hexdigest()


class Ingestor:
    """Holds what processing needs (config, profiles, current rules) and processes one message."""

    def __init__(self, config: Config, profiles: dict[str, Profile], rules: Callable[[], RuleSet]):
        self.config = config
        self.profiles = profiles
        self.rules = rules
        self.identity = Identity(config.hl7.application, config.hl7.facility, config.hl7.default_version)
        self.senders = SenderDirectory.from_config(config.mllp.senders)

    def __call__(self, txn: Transaction, received: Received) -> IngestResult:
        return self.apply(txn, self.prepare(received))

    def prepare(self, received: Received) -> Prepared:
        """Parse, check the header, route and map: everything before the database is needed."""
        prepared = Prepared(received, payload_hash(received.raw))
        try:
            text, codec = decode_bytes(received.raw, self.config.hl7.default_charset)
            message = prepared.message = Message(text, codec)
        except HL7ParseError as exc:
            prepared.parse_error = exc
            return prepared
        if received.presented is not None:
            refusal = self.senders.refusal(message.get("MSH-3.1"), message.get("MSH-4.1"), received.presented)
            if refusal is not None:
                prepared.sender_error = HL7Error(207, refusal, "MSH", 1, 3)
                return prepared
        prepared.header_error = self._check_header(message)
        if prepared.header_error is not None:
            return prepared
        decision = prepared.decision = self.rules().evaluate(message, lambda name: self._modality(message, name))
        if decision.reject or decision.drop:
            return prepared
        try:
            prepared.mapped = self._map(message, decision)
        except Exception as exc:  # noqa: BLE001 - a Rejection (or a bug) is answered after journaling
            prepared.mapping_error = exc
        return prepared

    def apply(self, txn: Transaction, prepared: Prepared) -> IngestResult:
        """Journal, check for a duplicate, apply the effects and store the ACK, in the writer's transaction."""
        hl7 = self.config.hl7
        received, digest, message = prepared.received, prepared.digest, prepared.message
        if message is None:
            exc = prepared.parse_error
            assert exc is not None
            journal_id = journal.insert(txn, received_at=received.received_at, peer=received.peer,
                                        sending_application="", sending_facility="", control_id="",
                                        message_code="", hl7_version="", payload_hash=digest, raw=received.raw)
            return self._finish(txn, journal_id, None, "AR", [HL7Error(100, exc.reason, exc.segment, 1, exc.field)],
                                "rejected", "")
        application, facility = message.get("MSH-3.1"), message.get("MSH-4.1")
        control_id = message.control_id
        journal_id = journal.insert(txn, received_at=received.received_at, peer=received.peer,
                                    sending_application=application, sending_facility=facility,
                                    control_id=control_id, message_code=message.message_code,
                                    hl7_version=message.version, payload_hash=digest, raw=received.raw)
        for refused in (prepared.sender_error, prepared.header_error):
            if refused is not None:
                return self._finish(txn, journal_id, message, "AR", [refused], "rejected", "")
        window_start = (datetime.now().astimezone() - timedelta(days=hl7.duplicate_window_days)).isoformat()
        earlier = journal.claim(txn, application, facility, control_id, journal_id, received.received_at,
                                window_start)
        if earlier is not None:
            if earlier.payload_hash == digest:
                log.info("duplicate message %s from %s/%s: original ACK resent", control_id, application, facility)
                journal.finish(txn, journal_id, "duplicate", earlier.ack_code, earlier.ack,
                               f"duplicate of journal #{earlier.id}", "")
                return IngestResult(control_id, earlier.ack_code, earlier.ack, "duplicate",
                                    f"duplicate of journal #{earlier.id}", journal_id,
                                    message_code=message.message_code)
            return self._finish(txn, journal_id, message, "AE",
                                [HL7Error(207, "control ID reused with different content", "MSH", 1, 10)],
                                "rejected", "")
        decision = prepared.decision
        assert decision is not None
        if decision.reject:
            reason = f'rejected by rule "{decision.reject_rule}": {decision.reject["reason"]}'
            return self._finish(txn, journal_id, message, decision.reject["code"], [HL7Error(207, reason)],
                                "rejected", decision.rule_names)
        if decision.drop:
            return self._finish(txn, journal_id, message, "AA", [], "dropped", decision.rule_names, decision.drop)
        try:
            with txn.savepoint():
                if prepared.mapping_error is not None:
                    raise prepared.mapping_error
                assert prepared.mapped is not None
                events = self._apply(txn, message, decision, prepared.mapped, journal_id)
        except Rejection as rejection:
            code = "AR" if rejection.hard else "AE"
            return self._finish(txn, journal_id, message, code, [_rejection_error(rejection)], "rejected",
                                decision.rule_names)
        except Exception as exc:  # noqa: BLE001 - an engine bug must not lose the message or the connection
            log.exception("message %s could not be applied; kept in journal #%d", control_id, journal_id)
            journal.release(txn, application, facility, control_id, journal_id)
            return self._finish(txn, journal_id, message, "AR",
                                [HL7Error(207, f"internal error: {type(exc).__name__}: {exc}")], "failed",
                                decision.rule_names)
        result = self._finish(txn, journal_id, message, "AA", [], "applied", decision.rule_names)
        result.events = events
        return result

    def oversized(self, txn: Transaction, received: Received, limit: int) -> IngestResult:
        """A frame over the size limit: AR, with the sender's MSH when its head holds a readable one, else
        with the engine's own (as for any frame without a readable MSH), so the sender stops resending."""
        head_text, codec = decode_bytes(received.raw, self.config.hl7.default_charset)
        reason = f"message too large (over {limit} bytes); only its head is journaled"
        try:
            message: Message | None = Message(head_text.replace("\n", "\r").split("\r")[0], codec)
        except HL7ParseError as exc:
            message, reason = None, f"{reason}; no readable MSH: {exc.reason}"
        journal_id = journal.insert(txn, received_at=received.received_at, peer=received.peer,
                                    sending_application=message.get("MSH-3.1") if message else "",
                                    sending_facility=message.get("MSH-4.1") if message else "",
                                    control_id=message.control_id if message else "",
                                    message_code=message.message_code if message else "",
                                    hl7_version=message.version if message else "",
                                    payload_hash=payload_hash(received.raw), raw=received.raw)
        return self._finish(txn, journal_id, message, "AR", [HL7Error(207, reason)], "rejected", "")

    # -- steps ----------------------------------------------------------------------------------
    def _check_header(self, message: Message) -> HL7Error | None:
        hl7 = self.config.hl7
        if not message.control_id:
            return HL7Error(101, "MSH-10 Message Control ID is empty", "MSH", 1, 10)
        if not message.message_type:
            return HL7Error(101, "MSH-9 Message Type is empty", "MSH", 1, 9)
        if message.version not in hl7.accepted_versions:
            return HL7Error(203, f"HL7 version {message.version or '(empty)'} not supported", "MSH", 1, 12)
        processing_id = message.get("MSH-11.1")
        if processing_id and processing_id not in hl7.accepted_processing_ids:
            return HL7Error(202, f"processing ID {processing_id} not accepted", "MSH", 1, 11)
        if message.message_type not in SUPPORTED_MESSAGES:
            return HL7Error(200, f"message type {message.message_type} not supported", "MSH", 1, 9)
        trigger = message.trigger_event
        if message.message_type == "ADT":
            if trigger not in registration.SUPPORTED_TRIGGERS:
                return HL7Error(201, f"ADT trigger {trigger or '(empty)'} not supported", "MSH", 1, 9)
        elif trigger and trigger not in ORDER_TRIGGERS[message.message_type]:
            return HL7Error(201, f"{message.message_type} trigger {trigger} not supported", "MSH", 1, 9)
        return None

    def mapping_profile(self, message: Message, decision: Decision) -> Profile:
        """The profile that maps this message under this decision (a rule's ``profile:``, else the type's)."""
        code = message.message_code if message.trigger_event else {
            "ORM": "ORM^O01", "OMI": "OMI^O23", "OMG": "OMG^O19"}.get(message.message_type, message.message_code)
        profile = select_profile(self.profiles, code, decision.profile)
        if profile is None:
            profile = select_profile(self.profiles, "ORM^O01")
        if profile is None:
            raise Rejection(Problem.REFUSED, f"no mapping profile for {code}", "MSH-9", hard=True)
        return profile

    def profile_of(self, message: Message) -> Profile | None:
        """The profile that maps ``message`` under the rules in force now (the journal's field names);
        None when none would.  The rules' ``set``/``map`` actions change ``message``: give a fresh parse."""
        try:
            return self.mapping_profile(message, self.rules().evaluate(message, lambda name: self._modality(message, name)))
        except Rejection:
            return None

    def _modality(self, message: Message, profile_name: str) -> str:
        """The first step's modality read with that profile (else the message type's): the rules'
        ``modality`` condition in their whole-message pass."""
        try:
            return self.mapping_profile(message, Decision(profile=profile_name)).first_step_modality(message)
        except Rejection:
            return ""

    def _map(self, message: Message, decision: Decision) -> Mapped:
        hl7 = self.config.hl7
        profile = self.mapping_profile(message, decision)
        patient = extract.patient_data(message, profile, hl7.primary_issuer)
        if message.message_type == "ADT":
            prior = None
            if message.trigger_event in registration.MERGE:
                priors = extract.patient_identities(message, "MRG-1", hl7.primary_issuer)
                prior = priors[0] if priors else None
            return Mapped(patient, prior)
        rules = self.rules()
        requests = extract.order_requests(
            message, profile, decision,
            lambda context: rules.schedule_for(message, context.value, lambda: profile.step_modality(context)))
        return Mapped(patient, requests=requests)

    def _apply(self, txn: Transaction, message: Message, decision: Decision, mapped: Mapped,
               journal_id: int) -> list[DomainEvent]:
        hl7 = self.config.hl7
        patient = mapped.patient
        if message.message_type == "ADT":
            events = registration.register(txn, message.trigger_event, patient, mapped.prior, journal_id,
                                           hl7.strict_merged_ids)
            for event in events:
                queues.record_event(txn, event.kind, event.subject, event.detail, journal_ref=journal_id,
                                    destinations=decision.outbound)
            return events
        patient_ref = registration.upsert_patient(txn, patient, journal_id, hl7.strict_merged_ids,
                                                  cause=message.message_code)
        ctx = orders.OrderContext(patient_ref=patient_ref, sending_application=message.get("MSH-3.1"),
                                  mode=decision.mode or self.config.orders.default_mode,
                                  visit_number=patient.visit_number, journal_ref=journal_id,
                                  config=self.config.orders, outbound=tuple(decision.outbound))
        events: list[DomainEvent] = []
        for request in mapped.requests:
            events.extend(orders.apply_order(txn, request, ctx))
        for event in events:
            queues.record_event(txn, event.kind, event.subject, event.detail, event.order_ref, journal_id,
                                decision.outbound)
            log.info("%s accession %s (message %s)", event.kind, event.subject, message.control_id)
        return events

    def _finish(self, txn: Transaction, journal_id: int, message: Message | None, code: str,
                errors: list[HL7Error], status: str, rule: str, reason: str = "") -> IngestResult:
        reason = reason or "; ".join(e.text for e in errors)
        wanted = ack_builder.accept_ack_wanted(message, code)
        sent_code = ack_builder.ENHANCED_CODES[code] if wanted is not None else code
        ack_bytes: bytes | None = None
        if wanted is not False:
            text = ack_builder.build_ack(message, sent_code, errors, self.identity)
            codec = message.codec if message is not None else "ascii"
            ack_bytes = text.encode(codec, errors="replace")
        if message is not None and message.get("MSH-16") not in ("", "NE"):
            log.warning("message %s asks for an application ACK (MSH-16=%s); no return destination is configured",
                        message.control_id, message.get("MSH-16"))
        journal.finish(txn, journal_id, status, code, ack_bytes, reason, rule)
        control_id = message.control_id if message is not None else ""
        if status != "applied":
            log.info("message %s %s: %s %s", control_id or "(no MSH)", status, code, reason)
        return IngestResult(control_id, code, ack_bytes, status, reason, journal_id,
                            message_code=message.message_code if message is not None else "")
