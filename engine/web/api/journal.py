"""The journal of received HL7 messages: search, and one message with its raw text, fields and ACK."""
from __future__ import annotations

from typing import Any

from ...hl7.field_names import field_name
from ...hl7.message import HL7ParseError, parse
from ...store import listings
from ...store.database import Transaction
from .common import CURSOR, ID, LIMIT, hl7_text, page_json, text_parameter
from .declaration import Call, NotFound, Operation
from .schema import INTEGER, STRING, array, nullable, obj, page, record_json, record_schema

JOURNAL_STATUSES = ("processing", "applied", "dropped", "rejected", "failed", "duplicate")
_RECEIVED = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}(:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?)?)?$"
_FILTERS = {   # query parameter: (JournalFilter field, description)
    "control_id": ("control_id", "MSH-10, the message control ID"),
    "accession": ("accession_number", "messages recorded in the history of the order with this accession number"),
    "patient_id": ("patient_id", "messages recorded in the history of this patient or of one of its orders"),
    "sending_application": ("sending_application", "MSH-3"),
    "sending_facility": ("sending_facility", "MSH-4"),
    "message_type": ("message_code", "MSH-9 as journaled, e.g. ORM^O01"),
    "reason": ("reason", "text anywhere in the recorded reason (case as written)"),
}
SEGMENT_FIELD = obj({"segment": STRING, "index": INTEGER, "field": INTEGER, "name": STRING, "value": STRING})


def search_journal(txn: Transaction, call: Call) -> dict[str, Any]:
    params = call.params
    filters = listings.JournalFilter(
        status=params["status"], received_from=params["received_from"], received_to=params["received_to"],
        **{field: params[name] for name, (field, _) in _FILTERS.items()})
    return page_json(listings.journal_page(txn, filters, params["limit"], params["cursor"]))


def segment_table(raw: bytes, version: str) -> list[dict[str, Any]]:
    """Every non-empty field of every segment, with the standard's field name; [] when unreadable."""
    try:
        message = parse(raw, "latin-1")
    except HL7ParseError:
        return []
    table = []
    for index, fields in enumerate(message.segments):
        segment = fields[0]
        for number, value in enumerate(fields[1:], start=1):
            if value:
                table.append({"segment": segment, "index": index, "field": number,
                              "name": field_name(segment, number, version), "value": value})
    return table


def show_entry(txn: Transaction, call: Call) -> dict[str, Any]:
    entry = listings.journal_record(txn, call.params["id"])
    if entry is None:
        raise NotFound(f"no journal entry {call.params['id']}")
    return {**record_json(entry, omit=("raw", "ack")), "raw": hl7_text(entry.raw), "ack": hl7_text(entry.ack),
            "fields": segment_table(entry.raw, entry.hl7_version)}


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
        "its segment/field table with the standard's field names, and the ACK sent.", "viewer",
        record_schema(listings.JournalRecord, omit=("raw", "ack"), extra={
            "raw": STRING, "ack": nullable(STRING), "fields": array(SEGMENT_FIELD)}),
        show_entry, parameters=(ID,), errors=(404,)),
]
