"""Generated identifiers (SWF.md 3.4): accession number, RP/SPS IDs, filler number, Study Instance UID.

Counters live in the store and advance in the same transaction as the order, so a replayed message
(answered from the journal) never gets new identifiers and a crash never hands one out twice.
"""
from __future__ import annotations

import uuid
from datetime import date

from ..config import OrdersConfig
from ..store import counters
from ..store.database import Transaction

MAX_ID_LENGTH = 16


def accession_number(txn: Transaction, config: OrdersConfig) -> str:
    day = date.today().strftime("%y%m%d")
    sequence = counters.next_value(txn, f"accession:{day}")
    return f"{config.accession_prefix}{day}{sequence:05d}"[:MAX_ID_LENGTH]


def filler_order_number(txn: Transaction, config: OrdersConfig) -> str:
    return f"{config.filler_prefix}{counters.next_value(txn, 'filler'):09d}"


def study_instance_uid(txn: Transaction, config: OrdersConfig) -> str:
    if config.uid_root:
        return f"{config.uid_root.rstrip('.')}.{counters.next_value(txn, 'study_uid')}"
    return f"2.25.{uuid.uuid4().int}"


def derived_id(txn: Transaction, base: str, suffix: str, counter: str) -> str:
    """``<base>-<suffix>`` when it fits in 16 characters, else a sequence number that does."""
    candidate = f"{base}-{suffix}"
    if len(candidate) <= MAX_ID_LENGTH:
        return candidate
    return f"{counter[:2].upper()}{counters.next_value(txn, counter):0{MAX_ID_LENGTH - 2}d}"[-MAX_ID_LENGTH:]
