"""A rules dry-run: recorded (or posted) messages routed by the running rules and by a candidate rules set,
nothing applied, and the messages whose decision would change — the diff to review before editing routes/.

Both sides run the ingest's own database-free step (``Ingestor.prepare``: parse, header check, rules, mapping
with the per-step ``schedule``), so the dry-run decides exactly as the listener would; neither the journal nor
anything else is written.  The journal is read in pages (engine/store/journal_replay.py) and only the
differences are kept, at most ``limit`` of them (the counts cover every message), so a million-row journal
runs in bounded memory.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Callable, Iterable, Iterator

from ..config import Config
from ..hl7.mapping import Profile
from ..hl7.message import Message
from ..rules.ruleset import RuleSet
from ..store import journal_replay
from ..store.database import Store
from .ingest import Ingestor, Prepared, Received

log = logging.getLogger(__name__)

DIFFERENCE_LIMIT = 1000        # differences kept by default; every message is counted
PAGE_SIZE = 500                # journal rows read per read transaction
# Kinds of change, in the order a reviewer reads them.
KINDS = ("reject", "drop", "refusal", "mode", "profile", "station", "outbound", "rules")


@dataclass(frozen=True)
class ReplayMessage:
    """One message to route: as journaled (``journal_id`` > 0) or posted (``journal_id`` 0)."""

    raw: bytes
    journal_id: int = 0
    received_at: str = ""
    peer: str = ""
    recorded_status: str = ""   # what the engine did with it when it came in (applied, rejected ...)


@dataclass(frozen=True)
class StepRoute:
    """Where one scheduled step of an order would go."""

    accession_number: str
    sps_id: str
    station_ae: str
    station_name: str
    location: str
    modality: str

    def __str__(self) -> str:
        place = "/".join(part for part in (self.station_name, self.location) if part)
        return f"{self.modality or '?'}@{self.station_ae or 'no station'}" + (f"({place})" if place else "")


@dataclass(frozen=True)
class RoutedDecision:
    """What one rules set decides for a message; ``outcome`` is accepted, rejected, dropped or refused
    (unreadable, a header the engine refuses before any rule, or an order the mapping refuses)."""

    outcome: str
    rules: tuple[str, ...] = ()
    places: tuple[str, ...] = ()    # file:line of each rule in ``rules``
    mode: str = ""                  # accepted orders: the rule's mode, else orders.default_mode
    profile: str = ""               # the profile a rule named ("" = the message type's)
    reject: str = ""                # "AR: reason"
    drop: str = ""
    outbound: tuple[str, ...] = ()  # accepted messages only
    steps: tuple[StepRoute, ...] = ()
    problem: str = ""               # why it is refused

    def summary(self) -> str:
        """One cell of the diff table: the outcome and what sets it apart."""
        if self.outcome == "rejected":
            return f"rejected {self.reject}"
        if self.outcome == "dropped":
            return f"dropped: {self.drop}"
        if self.outcome == "refused":
            return f"refused: {self.problem}"
        parts = [self.mode] if self.mode else []
        parts += [f"profile {self.profile}"] if self.profile else []
        parts += [" ".join(str(step) for step in self.steps)] if self.steps else []
        parts.append(f"-> {','.join(self.outbound) or 'none'}")
        return " ".join(parts)


def differences(today: RoutedDecision, candidate: RoutedDecision) -> tuple[str, ...]:
    """The kinds of change between two decisions (KINDS order); () when they are the same.

    Rules are compared by name, not by file:line: a rule moved down by an edit above it decides the same.
    """
    changed = {
        "reject": today.reject != candidate.reject,
        "drop": today.drop != candidate.drop,
        "refusal": today.problem != candidate.problem,
        "mode": today.mode != candidate.mode,
        "profile": today.profile != candidate.profile,
        "station": today.steps != candidate.steps,
        "outbound": today.outbound != candidate.outbound,
        "rules": today.rules != candidate.rules,
    }
    return tuple(kind for kind in KINDS if changed[kind])


@dataclass(frozen=True)
class MessageDiff:
    """A message whose decision would change under the candidate rules."""

    journal_id: int
    received_at: str
    control_id: str
    message_code: str
    recorded_status: str
    today: RoutedDecision
    candidate: RoutedDecision
    kinds: tuple[str, ...]


@dataclass(frozen=True)
class DryRunReport:
    """The differences (at most ``limit``) and the counts over every message read."""

    messages: int                     # routed by both rules sets
    changed: int                      # of them, with another decision under the candidate
    by_kind: dict[str, int]           # messages per kind of change (one message may have several)
    skipped: int                      # duplicates, which the engine answers without routing
    differences: tuple[MessageDiff, ...]
    limit: int

    @property
    def truncated(self) -> bool:
        """Whether more messages changed than ``differences`` holds."""
        return self.changed > len(self.differences)

    def to_json(self) -> dict[str, Any]:
        return {"messages": self.messages, "changed": self.changed, "unchanged": self.messages - self.changed,
                "by_kind": dict(self.by_kind), "skipped_duplicates": self.skipped, "limit": self.limit,
                "truncated": self.truncated, "differences": [asdict(diff) for diff in self.differences]}


class RulesProbe:
    """One rules set's decisions, made by the ingest's own database-free step."""

    def __init__(self, config: Config, profiles: dict[str, Profile], rules: RuleSet):
        self.ingestor = Ingestor(config, profiles, lambda: rules)
        self.default_mode = config.orders.default_mode

    def route(self, message: ReplayMessage) -> tuple[RoutedDecision, Message | None]:
        """The decision, and the message as parsed (None when unreadable)."""
        try:
            prepared = self.ingestor.prepare(Received(message.raw, message.peer, message.received_at))
        except Exception as exc:  # noqa: BLE001 - one message the engine would answer AR does not stop the run
            log.exception("dry-run: journal #%d could not be routed", message.journal_id)
            return RoutedDecision("refused", problem=f"internal error: {type(exc).__name__}: {exc}"), None
        return self.decide(prepared), prepared.message

    def decide(self, prepared: Prepared) -> RoutedDecision:
        message = prepared.message
        if message is None:
            assert prepared.parse_error is not None
            return RoutedDecision("refused", problem=prepared.parse_error.reason)
        if prepared.header_error is not None:
            return RoutedDecision("refused", problem=prepared.header_error.reason)
        decision = prepared.decision
        assert decision is not None
        matched: dict[str, Any] = {"rules": tuple(decision.rules), "places": tuple(decision.rule_places),
                                   "profile": decision.profile}
        # A message that is not taken has no mode, steps or destinations: nothing of it is applied or sent.
        if decision.reject:
            return RoutedDecision("rejected", reject=f"{decision.reject['code']}: {decision.reject['reason']}",
                                  **matched)
        if decision.drop:
            return RoutedDecision("dropped", drop=decision.drop, **matched)
        if prepared.mapping_error is not None:
            error = prepared.mapping_error
            return RoutedDecision("refused", problem=getattr(error, "reason", "") or f"{type(error).__name__}: "
                                  f"{error}", **matched)
        assert prepared.mapped is not None
        matched["outbound"] = tuple(decision.outbound)
        matched["mode"] = "" if message.message_type == "ADT" else decision.mode or self.default_mode
        steps = tuple(StepRoute(procedure.accession_number, step.sps_id,
                                str(step.attributes.get("ScheduledStationAETitle", "")),
                                str(step.attributes.get("ScheduledStationName", "")),
                                str(step.attributes.get("ScheduledProcedureStepLocation", "")),
                                str(step.attributes.get("Modality", "")))
                      for request in prepared.mapped.requests for procedure in request.procedures
                      for step in procedure.steps)
        return RoutedDecision("accepted", steps=steps, **matched)


def compare(messages: Iterable[ReplayMessage], today: RulesProbe, candidate: RulesProbe,
            limit: int = DIFFERENCE_LIMIT, on_message: Callable[[], None] | None = None) -> DryRunReport:
    """Route every message with both rules sets; keep the first ``limit`` differences, count them all."""
    read = changed = skipped = 0
    by_kind: Counter[str] = Counter()
    kept: list[MessageDiff] = []
    for message in messages:
        if on_message is not None:
            on_message()
        if message.recorded_status == "duplicate":
            skipped += 1
            continue
        read += 1
        (before, parsed), (after, _) = today.route(message), candidate.route(message)
        kinds = differences(before, after)
        if not kinds:
            continue
        changed += 1
        by_kind.update(kinds)
        if len(kept) < limit:
            kept.append(MessageDiff(message.journal_id, message.received_at,
                                    parsed.control_id if parsed is not None else "",
                                    parsed.message_code if parsed is not None else "",
                                    message.recorded_status, before, after, kinds))
    return DryRunReport(read, changed, {kind: by_kind[kind] for kind in KINDS if by_kind[kind]}, skipped,
                        tuple(kept), limit)


def journal_time(text: str) -> str:
    """An ISO date or date-time (local time unless it names its offset) as the journal writes
    ``received_at``, so that the range compares as text; "" stays "" (no bound). ValueError when not ISO."""
    if not text:
        return ""
    return datetime.fromisoformat(text).astimezone().isoformat(timespec="milliseconds")


@dataclass
class JournalReplay:
    """The journal's messages of a time range, read page by page (each page its own read transaction)."""

    store: Store
    since: str = ""
    until: str = ""
    page_size: int = PAGE_SIZE
    span: journal_replay.JournalRange | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.span = self.store.read(lambda txn: journal_replay.journal_range(txn, self.since, self.until))

    @property
    def total(self) -> int:
        return self.span.messages if self.span else 0

    def __iter__(self) -> Iterator[ReplayMessage]:
        span, after = self.span, 0
        if span is None:
            return
        while True:
            page = self.store.read(lambda txn: journal_replay.journal_page(txn, span, self.since, self.until,
                                                                           after, self.page_size))
            for row in page:
                yield ReplayMessage(row.raw, row.id, row.received_at, row.peer, row.status)
            if len(page) < self.page_size:
                return
            after = page[-1].id


def dry_run(store: Store, config: Config, profiles: dict[str, Profile], running: RuleSet, candidate: RuleSet,
            since: str = "", until: str = "", limit: int = DIFFERENCE_LIMIT,
            on_message: Callable[[], None] | None = None) -> DryRunReport:
    """The journal's messages received from ``since`` up to ``until`` (ISO; "" = no bound) under the running
    and the candidate rules: what would change. Reads only."""
    replay = JournalReplay(store, journal_time(since), journal_time(until))
    return compare(replay, RulesProbe(config, profiles, running), RulesProbe(config, profiles, candidate), limit,
                   on_message)
