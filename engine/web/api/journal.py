"""The journal of received HL7 messages: search; one message with its raw text, its fields named by
its profile (else the standard), the ACK sent and what it changed; and resend one to a destination."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...domain.model import Problem, Rejection
from ...hl7.ack import Identity
from ...hl7.field_names import name_of
from ...hl7.message import HL7ParseError, parse
from ...store import journal_effects, listings
from ...store.database import Transaction
from ...workflow.journal_resend import UnknownDestination, resend_journal_message
from .common import CURSOR, ID, LIMIT, hl7_text, page_json, text_parameter
from .context import EngineContext
from .declaration import BadRequest, Call, Conflict, NotFound, Operation
from .schema import INTEGER, STRING, array, nullable, obj, page, record_json, record_schema

if TYPE_CHECKING:
    from ...hl7.mapping import Profile

JOURNAL_STATUSES = ("processing", "applied", "dropped", "rejected", "failed", "duplicate")
_RECEIVED = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}(:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?)?)?$"
_FILTERS = {   # query parameter: (JournalFilter field, description)
    "control_id": ("control_id", "MSH-10, the message control ID"),
    "accession": ("accession_number", "messages recorded in the history of the order with this accession number"),
    "patient_id": ("patient_id", "messages recorded in the history of this patient or of one of its orders"),
    "sending_application": ("sending_application", "MSH-3"),
    "sending_facility": ("sending_facility", "MSH-4"),
    "message_type": ("message_code", "MSH-9 as journaled, e.g. ORM^O01"),
    "reason": ("reason", "text anywhere in the recorded reason (case as written); one page reads at most "
                         "200,000 journal rows, so it may hold fewer items than limit, even none, and still a "
                         "next_cursor to search older ones"),
}
SEGMENT_FIELD = obj({"segment": STRING, "index": INTEGER, "field": INTEGER, "name": STRING,
                     "name_source": {"type": "string", "enum": ["profile", "standard", "none"]},
                     "where": STRING, "value": STRING})
RESEND_BODY = obj({"destination": {"type": "string", "minLength": 1, "maxLength": 64,
                                   "description": "a destination of the rules in force (routes/ destinations:)"}})
RESENT = obj({"journal_id": INTEGER, "outbox_id": INTEGER, "destination": STRING, "control_id": STRING,
              "original_control_id": STRING})


def search_journal(txn: Transaction, call: Call) -> dict[str, Any]:
    params = call.params
    filters = listings.JournalFilter(
        status=params["status"], received_from=params["received_from"], received_to=params["received_to"],
        **{field: params[name] for name, (field, _) in _FILTERS.items()})
    return page_json(listings.journal_page(txn, filters, params["limit"], params["cursor"]))


def message_profile(raw: bytes, engine: EngineContext | None) -> "Profile | None":
    """The profile that maps the message under the rules in force now (None: unreadable, or no engine)."""
    if engine is None or engine.profile_of is None:
        return None
    try:
        return engine.profile_of(parse(raw, "latin-1"))
    except HL7ParseError:
        return None


def segment_table(raw: bytes, version: str, profile: "Profile | None" = None) -> list[dict[str, Any]]:
    """Every non-empty field of every segment, named by the profile, else by the standard; [] when
    unreadable."""
    try:
        message = parse(raw, "latin-1")
    except HL7ParseError:
        return []
    table = []
    for index, fields in enumerate(message.segments):
        segment = fields[0]
        for number, value in enumerate(fields[1:], start=1):
            if value:
                named = name_of(segment, number, version, profile)
                table.append({"segment": segment, "index": index, "field": number, "name": named.name,
                              "name_source": named.source, "where": named.where, "value": value})
    return table


def show_entry(txn: Transaction, call: Call) -> dict[str, Any]:
    entry = listings.journal_record(txn, call.params["id"])
    if entry is None:
        raise NotFound(f"no journal entry {call.params['id']}")
    profile = message_profile(entry.raw, call.engine)
    return {**record_json(entry, omit=("raw", "ack")), "raw": hl7_text(entry.raw), "ack": hl7_text(entry.ack),
            "profile": profile.name if profile else None,
            "fields": segment_table(entry.raw, entry.hl7_version, profile),
            "changes": record_json(journal_effects.journal_effects(txn, entry.id))}


def resend_entry(txn: Transaction, call: Call) -> dict[str, Any]:
    engine = call.engine
    assert engine is not None, "a resend needs the running engine's destinations"
    hl7 = engine.config.hl7
    try:
        resent = resend_journal_message(
            txn, call.params["id"], call.body["destination"], engine.rules().destinations,
            Identity(hl7.application, hl7.facility, hl7.default_version), actor=call.principal.name,
            client=call.client)
    except UnknownDestination as problem:
        raise BadRequest(f"body.destination: {problem}", field="body.destination") from None
    except Rejection as refusal:
        if refusal.problem == Problem.UNKNOWN_KEY:
            raise NotFound(refusal.reason) from None
        raise Conflict(refusal.reason) from None
    return record_json(resent)


OPERATIONS = [
    Operation(
        "GET", "/journal", "searchJournal", "Received HL7 messages, newest first, narrowed by every filter given.",
        "viewer", page(record_schema(listings.JournalSearchEntry)), search_journal,
        parameters=(
            *(text_parameter(name, description) for name, (_, description) in _FILTERS.items()),
            text_parameter("status", "what became of the message", enum=JOURNAL_STATUSES),
            text_parameter("received_from", "received at or after this ISO date or date-time (engine local time)",
                           pattern=_RECEIVED),
            text_parameter("received_to", "received up to this ISO date or date-time (that day, hour, minute ... "
                           "included)", pattern=_RECEIVED),
            LIMIT, CURSOR)),
    Operation(
        "GET", "/journal/{id}", "getJournalEntry", "One received message: the raw text (segments separated by CR), "
        "its segment/field table (each field named by the profile that maps the message under the rules in force "
        "now when the profile reads it, else by the HL7 standard: name_source says which), the ACK sent, and what "
        "it changed: the order and patient history rows it wrote, the events it recorded and the outbox messages "
        "they queued (and the copies of it resent).", "viewer",
        record_schema(listings.JournalRecord, omit=("raw", "ack"), extra={
            "raw": STRING, "ack": nullable(STRING), "profile": nullable(STRING), "fields": array(SEGMENT_FIELD),
            "changes": record_schema(journal_effects.JournalEffects)}),
        show_entry, parameters=(ID,), errors=(404,)),
    Operation(
        "POST", "/journal/{id}/resend", "resendJournalEntry",
        "Send a received message again, to a destination of the rules: the message as received, every segment "
        "unchanged, under a new MSH-3/4 (the engine), MSH-5/6 (the destination's receiving application and "
        "facility), MSH-7 and a new MSH-10 control ID; queued in the outbox behind the destination's pending "
        "messages (kind journal.resend) and delivered and retried like them. 400 naming body.destination when "
        "it is not a configured (and switched on) destination; recorded in the audit trail as journal.resend.",
        "operator", RESENT, resend_entry, parameters=(ID,), body=RESEND_BODY, writes=True, errors=(404, 409)),
]
