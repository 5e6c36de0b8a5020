"""Named counters (accession numbers, filler numbers, RP/SPS IDs, Study Instance UIDs: SWF.md 3.4).

A counter advances in the transaction that uses its value, so a rolled-back message hands out nothing
and a replayed one (answered from the journal) never draws again.  (The DICOM forward watermarks share
the table; their SQL is in queues.py.)
"""
from __future__ import annotations

from .database import Transaction


def next_value(txn: Transaction, name: str) -> int:
    """The counter's next value (1 for a new counter)."""
    row = txn.row("SELECT value FROM counters WHERE name = ?", (name,))
    value = (row[0] if row else 0) + 1
    if row:
        txn.execute("UPDATE counters SET value = ? WHERE name = ?", (value, name))
    else:
        txn.execute("INSERT INTO counters (name, value) VALUES (?, ?)", (name, value))
    return value
