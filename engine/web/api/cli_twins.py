"""Which API operations do what each ``swf`` command does, and why the few without a twin have none
("every CLI action has its API operation and vice versa"; tests/unit/test_cli_api_parity.py holds the
CLI's COMMANDS and the API's operations to this table both ways)."""
from __future__ import annotations

# swf command (group and action joined by a space) -> the API operations that do what it does
TWINS: dict[str, tuple[str, ...]] = {
    "rules check": ("checkRules",),
    "rules list": ("listRules",),
    "rules dry-run": ("dryRunRules",),
    "orders": ("listOrders", "getOrder"),
    "patients": ("searchPatients", "getPatient"),
    "outbox": ("listOutbox", "getOutboxMessage", "resendOutboxMessage", "discardOutboxMessage"),
    "forwards": ("listForwards", "getForward"),
    "cancel": ("cancelOrder",),
    "reschedule": ("rescheduleOrder",),
    "explain": ("explainOrder",),
    "journal": ("searchJournal", "getJournalEntry", "resendJournalEntry"),
    "commitments": ("listCommitments", "getCommitment"),
    "users add": ("addUser",),
    "users token": ("addUserToken",),
    "users list": ("listUsers",),
    "users remove": ("removeUser",),
    "mpps": ("listMpps", "getMpps"),
    "link": ("linkMpps",),
    "cluster": ("getCluster",),
    "conformance": ("getConformance",),
}

# swf commands with no API twin, and why
CLI_ONLY: dict[str, str] = {
    "serve": "runs the engine that serves the API",
    "replay": "an MLLP client: sends files of messages to a listener's socket (POST /orders enters one order)",
    "validate": "strict hl7apy validation of local files, 10-40 ms a message; a development tool, not an "
                "operation on the engine",
}

# API operations with no swf command, and why
API_ONLY: dict[str, str] = {
    "getOpenApi": "the API's own description",
    "createOrder": "on the command line an order is an HL7 file sent with swf replay (the API builds that message)",
    "editOrder": "on the command line a change is an XO message sent with swf replay",
    "resendForward": "not yet on the command line (swf forwards lists only)",
    "discardForward": "not yet on the command line (swf forwards lists only)",
    "listAudit": "not yet on the command line (the console and the API show the audit trail)",
    "listStudies": "not yet on the command line (swf orders ACCESSION shows an order's series)",
    "getStudy": "not yet on the command line (swf orders ACCESSION shows an order's series)",
}
