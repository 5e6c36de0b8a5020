"""Resending a journaled message to a destination (issue 13): the message as received, relabelled for
the link (engine/outbound/resend.py says what is kept and what changes), queued in the durable outbox
behind the destination's pending messages, delivered and retried like every outbox message, and
audited as ``journal.resend`` in the same transaction.  The API, the console and ``swf journal
--resend-to`` all call ``resend_journal_message``."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Mapping

from ..domain.model import Problem, Rejection
from ..hl7.ack import Identity, hl7_timestamp, new_control_id
from ..outbound.destinations import Destination
from ..outbound.resend import NotResendable, relabelled
from ..store import audit, journal_effects, listings
from ..store.database import Transaction
from ..store.timestamps import now_iso

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resent:
    journal_id: int
    outbox_id: int
    destination: str
    control_id: str                # the copy's MSH-10
    original_control_id: str


class UnknownDestination(ValueError):
    """The destination is not one of the rules' ``destinations:`` (or is switched off)."""


def resend_journal_message(txn: Transaction, journal_id: int, destination_name: str,
                           destinations: Mapping[str, Destination], identity: Identity, *, actor: str,
                           client: str) -> Resent:
    """Queue a copy of journal entry ``journal_id`` for ``destination_name``; ``Rejection`` UNKNOWN_KEY
    without such an entry, REFUSED when its bytes have no MSH; ``UnknownDestination`` naming the known ones."""
    destination = destinations.get(destination_name)
    if destination is None:
        known = ", ".join(sorted(destinations)) or "none are configured"
        raise UnknownDestination(f"no destination {destination_name!r} in the rules (known: {known})")
    if not destination.enabled:
        raise UnknownDestination(f"destination {destination_name!r} is off: {destination.off_reason}")
    entry = listings.journal_record(txn, journal_id)
    if entry is None:
        raise Rejection(Problem.UNKNOWN_KEY, f"no journal entry {journal_id}")
    control_id = new_control_id()
    try:
        message = relabelled(entry.raw, sending=(identity.application, identity.facility),
                             receiving=(destination.receiving_application, destination.receiving_facility),
                             control_id=control_id, timestamp=hl7_timestamp())
    except NotResendable as problem:
        raise Rejection(Problem.REFUSED, f"journal entry {journal_id} cannot be resent: {problem}") from None
    effects = journal_effects.journal_effects(txn, journal_id)
    accession = next((number for change in effects.orders for number in change.accession_numbers), "")
    outbox_id = journal_effects.enqueue_resent(txn, destination=destination.name, at=now_iso(), journal_ref=journal_id,
                                               control_id=control_id, accession_number=accession, message=message)
    audit.record_action(txn, actor=actor, client=client, action="journal.resend", subject=str(journal_id),
                        before=None, after={"destination": destination.name, "outbox_id": outbox_id,
                                            "control_id": control_id, "original_control_id": entry.control_id})
    log.info("journal entry %d (%s %s) resent to %s as %s (outbox #%d) by %s from %s", journal_id,
             entry.message_code, entry.control_id, destination.name, control_id, outbox_id, actor, client)
    return Resent(journal_id, outbox_id, destination.name, control_id, entry.control_id)
