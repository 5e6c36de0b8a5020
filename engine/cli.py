"""The ``swf`` command: serve, replay, rules check and validate; the operator's views of the data
(orders, patients, journal, mpps, commitments, outbox, forwards) and order changes (cancel, reschedule).

Each command is declared once (``COMMANDS``: name, help texts, arguments, the function that runs it)
and each listing's columns once (``Column``: heading, width, value); the views read their records from
engine/store/reports.py.
"""
from __future__ import annotations

import argparse
import functools
import getpass
import logging
import os
import re
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from .commandline import Argument, Column, Command, add_commands, arg, print_table
from .config import Config, load_config
from .domain.credentials import USER_NAME_PATTERN
from .domain.principal import ROLES
from .yamlfile import YamlProblem

if TYPE_CHECKING:
    from .store.database import Store
    from .store.reports import OrderDetail

EPILOG = "Settings: defaults < --config FILE < flags.  Docs: README.md, routes/README.md, profiles/README.md."


DATA_OPTIONS = (
    arg("--config", metavar="FILE", help="engine config file (YAML); see README 'Configuration'"),
    arg("--data-dir", metavar="DIR", help="data folder holding the SQLite database (default ./var)"),
    arg("--database-url", metavar="URL",
        help="sqlite:///PATH (default <data-dir>/swf.sqlite) or postgresql://user@host/db"),
)


def resolve_config(args: argparse.Namespace) -> Config:
    config = load_config(getattr(args, "config", None))
    if getattr(args, "data_dir", None):
        config.data_dir = args.data_dir
    if getattr(args, "database_url", None):
        config.database_url = args.database_url
    overrides = {
        "routes": ("routes_dir",), "profiles": ("profiles_dir",), "log_level": ("log_level",),
        "mllp_port": ("mllp", "port"), "dicom_port": ("dicom", "port"), "http_port": ("http", "port"),
        "ae_title": ("dicom", "ae_title"), "max_message_bytes": ("mllp", "max_message_bytes"),
        "idle_timeout": ("mllp", "idle_timeout"), "allow_any_ae": ("dicom", "allow_any_ae"),
    }
    for flag, target in overrides.items():
        value = getattr(args, flag, None)
        if value is None:
            continue
        holder: Any = config
        for name in target[:-1]:
            holder = getattr(holder, name)
        setattr(holder, target[-1], value)
    if getattr(args, "host", None):
        config.mllp.host = config.dicom.host = config.http.host = args.host
    return config


def _print_problems(problems: list[Any]) -> None:
    for problem in problems:
        print(problem, file=sys.stderr)


def cmd_serve(args: argparse.Namespace) -> int:
    from twisted.internet import reactor
    from twisted.internet.error import ReactorNotRunning

    from .app import Engine
    from .rules.watcher import problems_of

    config = resolve_config(args)
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if config.log_level != "DEBUG":  # pynetdicom logs every DIMSE message at INFO; ours name what matters
        logging.getLogger("pynetdicom").setLevel(logging.WARNING)
        from .dicom.wire.pynetdicom_private import silence_message_logs

        silence_message_logs()   # its per-PDU log formatting costs ~5% of a C-FIND even when nothing is logged
    try:
        engine = Engine(config)
    except Exception as exc:  # noqa: BLE001 - refuse to start with a readable list of problems
        problems = problems_of(exc)
        _print_problems(problems or [f"cannot start: {exc}"])
        return 2
    try:
        engine.start()
    except Exception as exc:  # noqa: BLE001 - a taken port is the common case
        print(f"cannot start: {exc}", file=sys.stderr)
        engine.stop()         # what did start (store writer, DICOM listener) must not keep the process alive
        engine.store.close()
        return 2
    reactor.addSystemEventTrigger("before", "shutdown", engine.stop)

    def stop_once() -> None:   # a second SIGTERM (a supervisor's, then its process group's) while stopping
        try:
            reactor.stop()
        except ReactorNotRunning:
            pass

    def install_signals() -> None:   # after reactor.run() installed Twisted's own, which stop twice
        signal.signal(signal.SIGTERM, lambda *_: reactor.callFromThread(stop_once))
        signal.signal(signal.SIGINT, lambda *_: reactor.callFromThread(stop_once))
    signal.signal(signal.SIGHUP, lambda *_: reactor.callFromThread(engine.reload_tls))   # certificates renewed
    reactor.callWhenRunning(install_signals)
    reactor.run()
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .replay import read_messages, replay

    host, _, port = args.to.rpartition(":")
    if not host or not port.isdigit():
        print(f"--to must be HOST:PORT, not {args.to!r}", file=sys.stderr)
        return 2
    messages: list[bytes] = []
    for path in args.files:
        try:
            messages.extend(read_messages(path))
        except OSError as exc:
            print(f"cannot read {path}: {exc}", file=sys.stderr)
            return 2
    bar = tqdm(total=len(messages), unit="msg", disable=args.no_progress, file=sys.stderr, desc="replay")
    try:
        result = replay(messages, host, int(port), args.timeout, on_answer=lambda: bar.update(1))
    finally:
        bar.close()
    print(f"sent {result.sent}: AA {result.count('AA') + result.count('CA')}, AE {result.count('AE') + result.count('CE')}, "
          f"AR {result.count('AR') + result.count('CR')}, no answer {len(result.no_answer)}")
    for control_id, code, reason in result.not_accepted:
        print(f"  {code} {control_id}: {reason}")
    for control_id, why in result.no_answer:
        print(f"  no answer {control_id}: {why}")
    if result.not_connected:
        print(f"could not connect: {result.not_connected}; {result.unsent} of {len(messages)} message(s) not sent")
    return 0 if result.ok else 1


def cmd_rules_check(args: argparse.Namespace) -> int:
    from .hl7.profiles import load_profiles
    from .rules.ruleset import load_ruleset
    from .rules.watcher import load_checked, problems_of

    problems: list[Any] = []
    profile_names: set[str] | None = None
    try:
        profile_names = set(load_profiles(args.profiles))
    except Exception as exc:  # noqa: BLE001
        problems.extend(problems_of(exc) or [f"{args.profiles}: {exc}"])
    try:
        # With broken profiles, rules are checked on their own: no cascade of "unknown profile" lines.
        ruleset = load_ruleset(args.directory) if profile_names is None else load_checked(args.directory, profile_names)
    except Exception as exc:  # noqa: BLE001
        problems.extend(problems_of(exc) or [f"{args.directory}: {exc}"])
    if problems:
        _print_problems(problems)
        print(f"{len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"ok: {len(ruleset.rules)} rules in {len(ruleset.files)} files, {len(ruleset.destinations)} destinations, "
          f"{len(profile_names or ())} profiles")
    return 0


RULE_COLUMNS = (
    Column("#", 4, lambda rule: rule.position, right=True),
    Column("  WHERE", 28, lambda rule: f"  {rule.where}"[-27:]),
    Column("NAME", 44, lambda rule: rule.name[:43]),
    Column("WHEN -> ACTIONS", None, lambda rule: f"{'; '.join(rule.conditions) or 'every message'} -> "
           f"{'; '.join(rule.actions)}"),
)


def _load_rules_or_say(directory: str, profile_names: set[str]) -> Any:
    """The rules of a folder, checked against the profiles; None after printing each file:line: reason."""
    from .rules.watcher import load_checked, problems_of

    try:
        return load_checked(directory, profile_names)
    except Exception as exc:  # noqa: BLE001 - every problem is shown
        problems = problems_of(exc) or [f"{directory}: {exc}"]
        _print_problems(problems)
        print(f"{len(problems)} problem(s) in {directory}", file=sys.stderr)
        return None


def _profile_names_or_say(directory: str) -> dict[str, Any] | None:
    from .hl7.profiles import load_profiles
    from .rules.watcher import problems_of

    try:
        return load_profiles(directory)
    except Exception as exc:  # noqa: BLE001
        _print_problems(problems_of(exc) or [f"{directory}: {exc}"])
        return None


def cmd_rules_list(args: argparse.Namespace) -> int:
    import json

    from .rules.describe import describe_rules

    profiles = _profile_names_or_say(args.profiles)
    ruleset = None if profiles is None else _load_rules_or_say(args.directory, set(profiles))
    if ruleset is None:
        return 1
    rules = describe_rules(ruleset)
    if args.json:
        print(json.dumps([rule.to_json() for rule in rules], indent=2))
        return 0
    print_table(RULE_COLUMNS, rules, f"no rules in {args.directory}: every message is processed with the defaults")
    return 0


def _diff_columns(today_width: int) -> tuple[Column, ...]:
    return (
        Column("JOURNAL", 8, lambda diff: diff.journal_id or "-"),
        Column("CONTROL ID", 21, lambda diff: diff.control_id[:20] or "-"),
        Column("TYPE", 9, lambda diff: diff.message_code[:8] or "-"),
        Column("CHANGE", 17, lambda diff: ",".join(diff.kinds)[:16]),
        Column("TODAY", today_width, lambda diff: diff.today.summary()),
        Column("CANDIDATE", None, lambda diff: diff.candidate.summary()),
    )


def cmd_rules_dry_run(args: argparse.Namespace) -> int:
    import json

    from tqdm import tqdm

    from .replay import read_messages
    from .workflow.dry_run import JournalReplay, ReplayMessage, RulesProbe, compare, journal_time

    config = resolve_config(args)
    profiles = _profile_names_or_say(config.profiles_dir)
    if profiles is None:
        return 1
    running = _load_rules_or_say(config.routes_dir, set(profiles))
    candidate = _load_rules_or_say(args.candidate, set(profiles))
    if running is None or candidate is None:
        return 1
    if args.messages and (args.since or args.until):
        print("--messages routes the file's messages: --since/--until select journal messages", file=sys.stderr)
        return 2
    store = None
    if args.messages:
        try:
            messages: Any = [ReplayMessage(raw) for raw in read_messages(args.messages)]
        except OSError as exc:
            print(f"cannot read {args.messages}: {exc}", file=sys.stderr)
            return 2
        total = len(messages)
    else:
        try:
            since, until = journal_time(args.since or ""), journal_time(args.until or "")
        except ValueError as exc:
            print(f"--since/--until must be ISO dates or date-times (2026-12-07, 2026-12-07T08:00): {exc}",
                  file=sys.stderr)
            return 2
        store = _open_store(args)
        if store is None:
            return 2
        messages = JournalReplay(store, since, until)
        total = messages.total
    try:
        if not total:
            print("no message in that range" if not args.messages else f"no message in {args.messages}")
            return 0
        bar = tqdm(total=total, unit="msg", disable=args.no_progress or args.json, file=sys.stderr,
                   desc="dry-run", delay=1)
        try:
            report = compare(messages, RulesProbe(config, profiles, running), RulesProbe(config, profiles, candidate),
                             args.limit, lambda: bar.update(1))
        finally:
            bar.close()
    finally:
        if store is not None:
            store.close()
    if args.json:
        print(json.dumps({"running": config.routes_dir, "candidate": args.candidate, "since": args.since or "",
                          "until": args.until or "", **report.to_json()}, indent=2))
        return 0
    width = max((len(diff.today.summary()) for diff in report.differences), default=5) + 2
    print_table(_diff_columns(width), report.differences,
                f"no change: the {report.messages} message(s) are decided the same by {args.candidate}")
    kinds = ", ".join(f"{kind} {count}" for kind, count in report.by_kind.items())
    print(f"{report.messages} message(s) read, {report.changed} changed" + (f" ({kinds})" if kinds else "")
          + f", {report.messages - report.changed} unchanged"
          + (f"; {report.skipped} duplicate(s) skipped" if report.skipped else ""))
    if report.truncated:
        print(f"showing the first {len(report.differences)} of {report.changed} changed messages (--limit)")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from .hl7.validate import validate
    from .replay import read_messages

    failed = total = 0
    for path in args.files:
        for raw in read_messages(path):
            total += 1
            report = validate(raw)
            label = f"{path}: {report.message_code or '?'} {report.control_id or '(no MSH-10)'} v{report.version or '?'}"
            if report.problems:
                failed += 1
                for problem in report.problems:
                    print(f"{label}: {problem}")
            else:
                print(f"{label}: ok")
    print(f"{total} message(s), {failed} with problems")
    return 1 if failed else 0




def cmd_conformance(args: argparse.Namespace) -> int:
    import json

    from .conformance import build, render_markdown

    statement = build(resolve_config(args))
    text = render_markdown(statement) if args.format == "md" else json.dumps(statement.to_json(), indent=2) + "\n"
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def _open_store(args: argparse.Namespace) -> "Store | None":
    from .store.database import Store

    config = resolve_config(args)
    if config.database.startswith("sqlite:///") and not Path(config.database[len("sqlite:///"):]).exists():
        print(f"no database at {config.database} (use --data-dir or --config)", file=sys.stderr)
        return None
    return Store(config.database)


def _reading(view: Callable[[argparse.Namespace, "Store"], int]) -> Callable[[argparse.Namespace], int]:
    """A command that reads the database: exit 2 when there is none, else the view's exit status."""
    @functools.wraps(view)
    def run(args: argparse.Namespace) -> int:
        store = _open_store(args)
        if store is None:
            return 2
        try:
            return view(args, store)
        finally:
            store.close()
    return run


def _found(store: "Store", read: Callable[[Any], Any], missing: str) -> Any:
    """What a detail view shows (a record, or the records of a key), or nothing after saying so on stderr."""
    found = store.read(read)
    if not found:
        print(missing, file=sys.stderr)
    return found


def _with_status(nothing: str, status: str | None) -> str:
    return nothing + (f" with status {status}" if status else " yet")


ORDER_COLUMNS = (
    Column("ACCESSION", 18, lambda order: ",".join(order.accessions)[:17]),
    Column("STATUS", 7, lambda order: order.status),
    Column("MOD", 6, lambda order: ",".join(order.modalities)[:5]),
    Column("STATION", 16, lambda order: ",".join(  # the marker first
        (("no station",) if order.steps_without_station else ()) + order.stations)[:15]),
    Column("PATIENT", 28, lambda order: f"{order.patient_id} {order.patient_name}"[:27]),
    Column("PLACER", 14, lambda order: order.placer_order_number[:13]),
    Column("UPDATED", None, lambda order: order.updated_at[:19]),
)


def station_label(station_ae_title: str, default_station: str) -> str:
    """A step's station as ``swf orders ACCESSION`` shows it: a step without one is marked, never blank."""
    if station_ae_title:
        return station_ae_title
    return f"no station (offered as {default_station})" if default_station else "no station"


@_reading
def cmd_orders(args: argparse.Namespace, store: "Store") -> int:
    from .store import reports

    config = resolve_config(args)
    if not args.accession:
        print_table(ORDER_COLUMNS, store.read(lambda txn: reports.order_list(txn, args.limit)), "no orders yet")
        return 0
    order = _found(store, lambda txn: reports.order_detail(txn, args.accession),
                   f"no order with accession or order number {args.accession!r}")
    if not order:
        return 1
    print(f"order placer {order.placer_order_number or '-'}  filler {order.filler_order_number or '-'}  "
          f"status {order.status}  mode {order.deployment_mode}  from {order.sending_application}")
    print(f"patient {order.patient_id}^{order.issuer}  {order.patient_name}")
    for line in _order_destinations(config, order):
        print(line)
    for procedure in order.procedures:
        print(f"requested procedure {procedure.requested_procedure_id}  accession {procedure.accession_number}  "
              f"study {procedure.study_instance_uid}")
    for step in order.steps:
        station = station_label(step.station_ae_title, config.orders.default_station_ae)
        print(f"  SPS {step.sps_id:<16} {step.status:<12} {step.modality:<4} {station:<16} {step.start_datetime[:14]}")
    print("history:")
    for entry in order.history:
        message = f"  [{entry.message_code} {entry.control_id} {entry.ack_code}]" if entry.journal_ref else ""
        print(f"  {entry.at[:23]}  {entry.kind:<20} {entry.detail}{message}")
    return 0


def _order_destinations(config: Config, order: "OrderDetail") -> list[str]:
    """Where an order's status / procedure messages go, or why nowhere: a RIS whose MSH-3 the sender rules
    do not expect, or an address left empty, means no status ever arrives, and nothing else says so."""
    from .rules.ruleset import load_ruleset

    names = order.outbound
    if not names:
        return [f"reports to: none: no rule named a destination for this order (sent by MSH-3 "
                f"{order.sending_application!r}); the 'outbound:' of the sender rules in {config.routes_dir} "
                "decides"]
    try:
        destinations = load_ruleset(config.routes_dir).destinations
    except Exception:  # noqa: BLE001 - the rules' own problems are `swf rules check`'s to show
        return [f"reports to: {', '.join(names)} (the rules in {config.routes_dir} do not load here: "
                f"swf rules check {config.routes_dir})"]
    lines: list[str] = []
    for name in names:
        destination = destinations.get(name)
        if destination is None:
            state = f"not defined in {config.routes_dir} (any more)"
        elif destination.enabled:
            state = f"{destination.sends} messages to {destination.address}"
        else:
            state = f"off: {destination.off_reason}"
        sent = ", ".join(f"{count} {status}" for status, count in sorted(order.outbox.get(name, {}).items()))
        lines.append(f"  {name:<12} {state}; outbox: {sent or 'no messages'}")
    on = [name for name in names if name in destinations and destinations[name].enabled]
    if len(on) == len(names):
        return [f"reports to: {', '.join(on)}", *lines]
    return [f"reports to: {', '.join(on)}" if on else "reports to: none: no destination the rules named is on", *lines,
            "  (addresses as the rules read with this shell's environment; the engine's start-up log shows its own)"]


@_reading
def cmd_patients(args: argparse.Namespace, store: "Store") -> int:
    from .store import reports

    details = _found(store, lambda txn: reports.patient_detail(txn, args.patient_id, args.issuer),
                     f"no patient {args.patient_id!r}")
    if not details:
        return 1
    for detail in details:
        patient, attributes = detail.patient, detail.attributes
        print(f"patient {patient.patient_id}^{patient.issuer}  {attributes.get('PatientName', '')}  "
              f"born {attributes.get('PatientBirthDate', '-')}  sex {attributes.get('PatientSex', '-')}")
        if detail.merged_into:
            print(f"  MERGED into {detail.merged_into.patient_id}^{detail.merged_into.issuer}")
        for identifier in detail.identifiers:
            print(f"  identifier {identifier.patient_id}^{identifier.issuer} {identifier.identifier_type}"
                  f" ({identifier.source})")
        for merged in detail.merged_from:
            print(f"  merged ID {merged.patient_id}^{merged.issuer}")
        for visit in detail.visits:
            print(f"  visit {visit.visit_number} class {visit.patient_class} {visit.status} {visit.location}")
        print(f"  orders: {detail.orders}")
        for entry in detail.history:
            print(f"  {entry.at[:23]}  {entry.kind:<16} {entry.detail}")
    return 0


JOURNAL_COLUMNS = (   # printed with one space between columns
    Column("ID", 8, lambda entry: f"#{entry.id}"),
    Column("RECEIVED", 24, lambda entry: entry.received_at[:23]),
    Column("MESSAGE", 8, lambda entry: entry.message_code),
    Column("CONTROL ID", 22, lambda entry: entry.control_id),
    Column("STATUS", 9, lambda entry: entry.status),
    Column("ACK", 3, lambda entry: entry.ack_code),
    Column("REASON", None, lambda entry: entry.reason[:80]),
)


@_reading
def cmd_journal(args: argparse.Namespace, store: "Store") -> int:
    from .hl7.message import decode_bytes
    from .store import journal_effects, reports

    if args.entry is None:
        print_table(JOURNAL_COLUMNS, store.read(lambda txn: reports.journal_list(txn, args.status, args.limit)),
                    _with_status("no journal entries", args.status), separator=" ")
        return 0
    if args.resend_to:
        return _resend_journal_entry(args, store)
    entry = _found(store, lambda txn: reports.journal_entry(txn, args.entry),
                   f"no journal entry {args.entry}")
    if not entry:
        return 1
    print(f"#{entry.id} {entry.received_at} from {entry.peer} {entry.message_code} "
          f"{entry.control_id}: {entry.status} {entry.ack_code} {entry.reason}")
    charset = resolve_config(args).hl7.default_charset
    for label, data in (("", entry.raw), ("-- ACK:", entry.ack)):
        if data:
            text, _codec = decode_bytes(data, charset)  # as MSH-18 says
            print(label + "\n" + text.replace("\r", "\n") if label else text.replace("\r", "\n"))
    _print_journal_effects(store.read(lambda txn: journal_effects.journal_effects(txn, entry.id)))
    return 0


def _print_journal_effects(effects: Any) -> None:
    """What one message changed, as GET /journal/{id} gives it under "changes"."""
    lines = [*(f"order {change.placer_order_number} ({' '.join(change.accession_numbers)}): {change.kind} "
               f"{change.detail}" for change in effects.orders),
             *(f"patient {change.patient_id}^{change.issuer}: {change.kind} {change.detail}"
               for change in effects.patients),
             *(f"event #{event.id} {event.kind} {event.subject}" for event in effects.events),
             *(f"outbox #{queued.id} to {queued.destination}: {queued.kind} {queued.control_id} {queued.status}"
               for queued in effects.outbox)]
    print("-- changed:\n" + ("\n".join(lines) if lines else "nothing"))


def _resend_journal_entry(args: argparse.Namespace, store: "Store") -> int:
    """``swf journal ID --resend-to NAME``: what POST /journal/{id}/resend does, audited as cli:<user>."""
    from .domain.model import Rejection
    from .hl7.ack import Identity
    from .hl7.profiles import load_profiles
    from .rules.watcher import load_checked, problems_of
    from .workflow.journal_resend import UnknownDestination, resend_journal_message

    if args.entry is None:
        print("--resend-to needs the journal entry's ID", file=sys.stderr)
        return 2
    config = resolve_config(args)
    try:
        rules = load_checked(config.routes_dir, set(load_profiles(config.profiles_dir)))
    except Exception as exc:  # noqa: BLE001 - the same list of problems as swf rules check
        _print_problems(problems_of(exc) or [f"cannot load the rules and profiles: {exc}"])
        return 2
    identity = Identity(config.hl7.application, config.hl7.facility, config.hl7.default_version)
    try:
        resent = store.write(lambda txn: resend_journal_message(
            txn, args.entry, args.resend_to, rules.destinations, identity, actor=cli_actor(), client="cli"))
    except UnknownDestination as problem:
        print(f"not resent: {problem}", file=sys.stderr)
        return 2
    except Rejection as refusal:
        print(f"not resent: {refusal.reason}", file=sys.stderr)
        return 1
    print(f"journal entry {resent.journal_id} ({resent.original_control_id}) queued to {resent.destination} as "
          f"{resent.control_id} (outbox #{resent.outbox_id}); the running engine delivers it")
    return 0


COMMITMENT_COLUMNS = (
    Column("#", 6, lambda request: request.id),
    Column("REQUESTED", 25, lambda request: request.requested_at[:23]),
    Column("FROM", 17, lambda request: request.calling_ae_title[:16]),
    Column("STATUS", 10, lambda request: request.status),
    Column("REFS", 5, lambda request: request.references, right=True),
    Column("FAILED", 7, lambda request: "-" if request.failed is None else request.failed, right=True),
    Column("TRIES", 6, lambda request: request.attempts, right=True),
    Column("  TRANSACTION UID / LAST ERROR", None, lambda request: f"  {request.transaction_uid}"
           + (f"  {request.last_error[:80]}" if request.last_error else "")),
)


@_reading
def cmd_commitments(args: argparse.Namespace, store: "Store") -> int:
    from .store import reports
    from .workflow.commitment import FAILURE_REASONS, summary

    if not args.transaction_uid:
        print_table(COMMITMENT_COLUMNS, store.read(lambda txn: reports.commitment_list(txn, args.status, args.limit)),
                    _with_status("no storage commitment requests", args.status))
        return 0
    requests = _found(store, lambda txn: reports.commitment_detail(txn, args.transaction_uid),
                      f"no storage commitment request with transaction UID {args.transaction_uid!r}")
    if not requests:
        return 1
    for request in requests:
        print(f"commitment #{request.id}  transaction {request.transaction_uid}  from {request.calling_ae_title}"
              f" ({request.peer or '?'})  requested {request.requested_at[:23]}")
        result = request.result
        print(f"status {request.status}  report attempts {request.attempts}"
              + (f"  next attempt {request.next_attempt_at[:23]} UTC" if request.next_attempt_at and
                 request.status in ("pending", "reporting") else "")
              + (f"  result: event type {result['event_type']}, {summary(result)}" if result else "  result: -"))
        if request.last_error:
            print(f"last error: {request.last_error}")
        if request.duplicate_of:
            print(f"duplicate of active commitment #{request.duplicate_of}")
        for reference in request.references:
            outcome = reference.outcome
            text = ("pending" if outcome is None else "committed" if outcome == 0 else
                    f"FAILED 0x{outcome:04X} {FAILURE_REASONS.get(outcome, '')}: {reference.why}")
            accession = f"  accession {reference.accession_number}" if reference.accession_number else ""
            print(f"  {reference.sop_instance_uid}  {reference.sop_class_uid}  {text}{accession}")
    return 0


PERFORMED_STEP_COLUMNS = (
    Column("STATUS", 14, lambda step: step.status),
    Column("KIND", 13, lambda step: "UNSCHEDULED" if step.unscheduled else "scheduled"),
    Column("STATION", 17, lambda step: step.performed_station_ae_title[:16]),
    Column("PPS ID", 17, lambda step: step.pps_id[:16]),
    Column("ACCESSIONS", 19, lambda step: ",".join(step.accessions)[:18] or "-"),
    Column("UPDATED", 21, lambda step: step.updated_at[:19]),
    Column("SOP INSTANCE UID", None, lambda step: step.sop_instance_uid),
)


@_reading
def cmd_mpps(args: argparse.Namespace, store: "Store") -> int:
    from .store import reports

    if not args.uid:
        print_table(PERFORMED_STEP_COLUMNS,
                    store.read(lambda txn: reports.performed_step_list(txn, args.limit, args.unscheduled)),
                    "no unscheduled performed procedure steps" if args.unscheduled else
                    "no performed procedure steps (MPPS) yet")
        return 0
    detail = _found(store, lambda txn: reports.performed_step_detail(txn, args.uid),
                    f"no performed procedure step {args.uid!r}")
    if not detail:
        return 1
    step, summary = detail.step, detail.summary
    print(f"MPPS {step.sop_instance_uid}  {step.status}  {'UNSCHEDULED' if step.unscheduled else 'scheduled'}")
    print(f"PPS ID {step.pps_id or '-'}  station {step.performed_station_ae_title or '-'}  "
          f"from AE {step.calling_ae_title or '-'}  study {step.study_instance_uid or '-'}")
    print(f"patient {summary.patient_id or '-'}  {summary.patient_name}  modality {summary.modality or '-'}  "
          f"start {summary.start or '-'}  end {summary.end or '-'}")
    print(f"series {summary.series}, images {summary.images}"
          + (f"; discontinued: {summary.reason}" if summary.reason else "")
          + (f"; {summary.description}" if summary.description else ""))
    print("linked steps:" if detail.linked_steps else "linked steps: none (unscheduled)")
    for linked in detail.linked_steps:
        print(f"  accession {linked.accession_number:<16} RP {linked.requested_procedure_id:<16} "
              f"SPS {linked.sps_id:<16} {linked.status}")
    print("versions:")
    for version in detail.versions:
        print(f"  {version.at[:23]}  {version.operation:<9} {version.status}")
    if args.dataset:
        print(summary.dataset)
    return 0


def _queue_nothing(status: str | None, what: str) -> str:
    """The line of an empty queue listing: pending rows, dead ones ("dead") or every row (None)."""
    return {None: f"no {what} yet", "dead": f"no {what} given up on"}.get(
        status, f"no {what} waiting (--dead: those given up on, --all: every one)")


OUTBOX_COLUMNS = (
    Column("ID", 7, lambda message: message.id),
    Column("DESTINATION", 12, lambda message: message.destination[:11]),
    Column("STATUS", 10, lambda message: message.status),
    Column("KIND", 22, lambda message: message.kind[:21]),
    Column("ACCESSION", 17, lambda message: message.accession_number[:16]),
    Column("CONTROL ID", 21, lambda message: message.control_id[:20]),
    Column("TRIES", 6, lambda message: message.attempts),
    Column("LAST ERROR", None, lambda message: message.last_error[:60]),
)


@_reading
def cmd_outbox(args: argparse.Namespace, store: "Store") -> int:
    from .store import audit, queues, reports

    if not args.action:
        status = "dead" if args.dead else None if args.all else "pending"
        print_table(OUTBOX_COLUMNS, store.read(lambda txn: reports.outbox_list(txn, status, args.limit)),
                    _queue_nothing(status, "outbox messages"))
        return 0
    if args.message_id is None:
        print(f"outbox {args.action} needs the message ID", file=sys.stderr)
        return 2
    change = queues.resend_outbox if args.action == "resend" else queues.discard_outbox

    def act(txn: Any) -> bool:
        if not change(txn, args.message_id):
            return False
        audit.record_action(txn, actor=cli_actor(), client="cli", action=f"outbox.{args.action}",
                            subject=str(args.message_id), before=None, after=None)
        return True
    if not store.write(act):
        print(f"no outbox message {args.message_id} that can be {args.action}ed", file=sys.stderr)
        return 1
    print(f"outbox message {args.message_id}: {'queued again' if args.action == 'resend' else 'discarded'}")
    return 0


FORWARD_COLUMNS = (
    Column("ID", 7, lambda forward: forward.id),
    Column("DESTINATION", 17, lambda forward: forward.destination[:16]),
    Column("KIND", 7, lambda forward: forward.kind),
    Column("STATUS", 10, lambda forward: forward.status),
    Column("TRIES", 6, lambda forward: forward.attempts),
    Column("SOP INSTANCE UID", 46, lambda forward: forward.sop_instance_uid[:45]),
    Column("LAST ERROR", None, lambda forward: forward.last_error[:60]),
)


@_reading
def cmd_forwards(args: argparse.Namespace, store: "Store") -> int:
    from .store import reports

    status = None if args.all else "dead" if args.dead else "pending"
    print_table(FORWARD_COLUMNS, store.read(lambda txn: reports.forward_list(txn, status, args.limit)),
                _queue_nothing(status, "DICOM forwards"))
    return 0


def _ago(seconds: float) -> str:
    return f"{seconds:.0f} s ago" if seconds >= 0 else f"in {-seconds:.0f} s"


@_reading
def cmd_cluster(args: argparse.Namespace, store: "Store") -> int:
    import time

    from .store import cluster

    view = store.read(lambda txn: cluster.overview(txn, time.time()))
    print_table((Column("INSTANCE", 28, lambda i: i.name[:27]), Column("HOST", 20, lambda i: i.host[:19]),
                 Column("PID", 8, lambda i: i.pid), Column("STARTED", 24, lambda i: i.started_at[:23]),
                 Column("HEARTBEAT", None, lambda i: _ago(view.now - i.heartbeat_at))),
                view.instances, "no instances (no swf serve has run on this database since it has instances)")
    if view.instances:
        print()
        print_table((Column("LEASE", 32, lambda lease: lease.name[:31]),
                     Column("HOLDER", 28, lambda lease: (lease.holder if lease.expires_at > view.now else "-")[:27]),
                     Column("GENERATION", 11, lambda lease: lease.generation),
                     Column("EXPIRES", None, lambda lease: (_ago(view.now - lease.expires_at) if lease.expires_at
                                                             > view.now else f"expired ({lease.holder or 'never held'})"))),
                    view.leases, "no leases taken yet")
    return 0


EXPLAIN_COLUMNS = (
    Column("ATTRIBUTE", 54, lambda a: f"{a.keyword} {a.tag}"[:53]),
    Column("VALUE", 34, lambda a: _cell(a.value)),
    Column("FROM", None, lambda a: f"{a.origin.kind}: {a.origin.where}" + (
        f"  << DIFFERS: the messages give {_cell(a.rederived)!r}" if a.differs else "")),
)


def _cell(value: Any) -> str:
    from .workflow.explain import value_text

    text = value_text(value)
    return text if len(text) <= 33 else text[:30] + "..."


@_reading
def cmd_explain(args: argparse.Namespace, store: "Store") -> int:
    import json

    from .hl7.profiles import load_profiles
    from .rules.watcher import load_checked, problems_of
    from .workflow.explain import explain_step

    config = resolve_config(args)
    try:
        profiles = load_profiles(config.profiles_dir)
        rules = load_checked(config.routes_dir, set(profiles))
    except Exception as exc:  # noqa: BLE001 - the same list of problems as swf rules check
        _print_problems(problems_of(exc) or [f"cannot load the rules and profiles: {exc}"])
        return 2
    explanation = explain_step(store, args.accession, args.step, config=config, profiles=profiles, rules=rules)
    if explanation is None:
        step = f" and SPS ID {args.step!r}" if args.step else ""
        print(f"no scheduled step with accession number {args.accession!r}{step}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(explanation.to_json(), indent=2, ensure_ascii=False, default=str))
        return 0
    others = (f"  (other steps: {', '.join(explanation.other_sps_ids)}; pick one with --step)"
              if explanation.other_sps_ids else "")
    print(f"accession {explanation.accession_number}  SPS {explanation.sps_id}{others}")
    for label in explanation.messages:
        print(f"from {label}")
    print_table(EXPLAIN_COLUMNS, explanation.attributes, "no worklist attributes")
    for note in explanation.notes:
        print(f"note: {note}")
    return 0


def _operator_action(args: argparse.Namespace, work: Any, refused: str, done: str, action: str) -> int:
    """Run an operator's order change, written to the operator audit trail with it; the running engine
    reports the recorded event to the destinations."""
    from .domain.model import Rejection
    from .store import audit

    store = _open_store(args)
    if store is None:
        return 2

    def recorded(txn: Any) -> None:
        work(txn)
        audit.record_action(txn, actor=cli_actor(), client="cli", action=action, subject=args.accession,
                            before=None, after={"reason": args.reason})
    try:
        store.write(recorded)
    except Rejection as refusal:
        print(f"not {refused}: {refusal.reason}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(f"order {args.accession} {done}; the engine reports it to the order's destinations")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    from .workflow.orders import operator_cancel

    return _operator_action(args, lambda txn: operator_cancel(txn, args.accession, args.reason), "cancelled",
                            "cancelled", "order.cancel")


def cmd_reschedule(args: argparse.Namespace) -> int:
    from .workflow.orders import operator_change

    if not args.start and not args.station:
        print("reschedule needs --start and/or --station", file=sys.stderr)
        return 2
    if args.start and (not args.start.isdigit() or len(args.start) not in (12, 14)):
        print(f"--start must be YYYYMMDDHHMM or YYYYMMDDHHMMSS, not {args.start!r}", file=sys.stderr)
        return 2
    return _operator_action(
        args, lambda txn: operator_change(txn, args.accession, args.start, args.station, args.reason), "changed",
        "rescheduled", "order.reschedule")


# -- linking an unscheduled MPPS to its order (issue 16) ----------------------------------------------
def cmd_link(args: argparse.Namespace) -> int:
    """``swf link MPPS_UID ACCESSION``: exit 1 (and why) when refused, 2 without a database."""
    from .store import audit
    from .workflow.mpps_link import LinkRefused, link

    store = _open_store(args)
    if store is None:
        return 2
    operator = args.by or cli_actor()

    def linked(txn: Any) -> Any:
        result = link(txn, args.mpps_uid, args.accession, operator)
        audit.record_action(txn, actor=operator, client="cli", action="mpps.link", subject=args.accession,
                            before=None, after={"mpps": args.mpps_uid, "steps": result.steps})
        return result
    try:
        result = store.write(linked)
    except LinkRefused as refusal:
        print(f"not linked: {refusal.reason}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(f"MPPS {result.mpps_uid} ({result.mpps_status}) linked to accession {result.accession_number} by {operator}:"
          f" {', '.join(result.steps)}; order {', '.join(result.order_statuses.values())};"
          f" {result.instances} stored instance(s) now carry the order's accession")
    return 0


# -- users (issue 13): who may use the HTTP API and console -------------------------------------------
USER_NAME = re.compile(USER_NAME_PATTERN)

USER_COLUMNS = (
    Column("NAME", 22, lambda user: user.name[:21]),
    Column("ROLE", 9, lambda user: user.role),
    Column("TOKENS", 7, lambda user: user.tokens),
    Column("SESSIONS", 9, lambda user: user.sessions),
    Column("CREATED", None, lambda user: user.created_at[:19]),
)


def cli_actor() -> str:
    """The audit trail's actor for a command-line change: ``cli:<os user>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):   # no login name (a container's bare uid)
        return f"cli:uid {os.getuid()}"


def _new_password(args: argparse.Namespace) -> str | None:
    """The password from --password-stdin's first line, or asked twice on the terminal; None after saying
    why it will not do."""
    from .domain.credentials import MIN_PASSWORD_LENGTH

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif not sys.stdin.isatty():
        print("no terminal to ask for the password on: give it on stdin with --password-stdin", file=sys.stderr)
        return None
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("the same again: ") != password:
            print("the two passwords differ; user not added", file=sys.stderr)
            return None
    if len(password) < MIN_PASSWORD_LENGTH:
        print(f"the password must have {MIN_PASSWORD_LENGTH} characters at least; user not added", file=sys.stderr)
        return None
    return password


def cmd_users_add(args: argparse.Namespace) -> int:
    from .domain.credentials import hash_password
    from .store import audit, users
    from .store.database import DuplicateKey, Store, StoreError

    if not USER_NAME.fullmatch(args.name):
        print(f"user name {args.name!r}: 1 to 64 letters, digits and . _ @ -", file=sys.stderr)
        return 2
    password = _new_password(args)
    if password is None:
        return 2
    password_hash = hash_password(password)

    def add(txn: Any) -> bool:
        if users.find_user(txn, args.name) is not None:
            return False
        users.add_user(txn, args.name, args.role, password_hash)
        audit.record_action(txn, actor=cli_actor(), client="cli", action="user.add", subject=args.name,
                            before=None, after={"role": args.role})
        return True

    try:
        store = Store(resolve_config(args).database)   # a first user may come before the engine's first start
    except StoreError as exc:
        print(f"cannot open the database: {exc}", file=sys.stderr)
        return 2
    try:
        added = store.write(add)
    except DuplicateKey:
        added = False
    finally:
        store.close()
    if not added:
        print(f"user {args.name!r} exists already (swf users list)", file=sys.stderr)
        return 1
    print(f"user {args.name} added with role {args.role}: logs in with POST /auth/login; an API token for "
          f"scripts: swf users token {args.name}")
    return 0


@_reading
def cmd_users_token(args: argparse.Namespace, store: "Store") -> int:
    from .domain.credentials import new_secret, secret_hash
    from .store import audit, users

    token = new_secret()

    def add(txn: Any) -> Any:
        user = users.find_user(txn, args.name)
        if user is None:
            return None
        token_id = users.add_token(txn, user, secret_hash(token))
        audit.record_action(txn, actor=cli_actor(), client="cli", action="user.token", subject=args.name,
                            before=None, after={"token_id": token_id})
        return user

    user = store.write(add)
    if user is None:
        print(f"no user {args.name!r} (swf users list)", file=sys.stderr)
        return 1
    print(token)
    print(f"an API token for {user.name} ({user.role}), shown this once (only its hash is kept): send it as "
          "'Authorization: Bearer TOKEN'; it ends with swf users remove", file=sys.stderr)
    return 0


@_reading
def cmd_users_list(args: argparse.Namespace, store: "Store") -> int:
    import time

    from .store import users

    print_table(USER_COLUMNS, store.read(lambda txn: users.user_overviews(txn, time.time())),
                "no users yet (until there is one, the HTTP listener serves loopback only, every request as admin)")
    return 0


@_reading
def cmd_users_remove(args: argparse.Namespace, store: "Store") -> int:
    from .store import audit, users

    def remove(txn: Any) -> str:
        user = users.find_user(txn, args.name)
        if user is None:
            return "missing"
        if user.role == "admin" and users.admin_count(txn) == 1 and not args.force:
            return "last admin"
        tokens = users.remove_user(txn, user)
        audit.record_action(txn, actor=cli_actor(), client="cli", action="user.remove", subject=args.name,
                            before={"role": user.role, "tokens": tokens}, after=None)
        return "removed" if users.user_count(txn) else "removed, none left"

    outcome = store.write(remove)
    if outcome == "missing":
        print(f"no user {args.name!r} (swf users list)", file=sys.stderr)
        return 1
    if outcome == "last admin":
        print(f"not removed: {args.name} is the last admin, and without one nobody can manage users or rules over "
              f"HTTP. Add another admin first (swf users add NAME --role admin), or remove with --force",
              file=sys.stderr)
        return 1
    print(f"user {args.name} removed with its API tokens and sessions (a running engine refuses them within "
          "http.auth_refresh_seconds)")
    if outcome == "removed, none left":
        print("no user is left: the HTTP listener serves loopback only, every request as admin, and refuses to "
              "start on another address")
    return 0


def _data_command(name: str, help: str, run: Callable[[argparse.Namespace], int], description: str | None,
                  *arguments: Argument) -> Command:
    """A command on the engine's database: its own arguments, then the data options."""
    return Command(name, help, run, description, arguments=(*arguments, *DATA_OPTIONS))


COMMANDS = (
    Command("serve", "run the engine", cmd_serve, epilog=EPILOG,
            description="Run the engine: MLLP listener for ADT and orders, DICOM services, and on the HTTP port "
            "GET /health, GET /ready and the JSON API under /api/v1 (its OpenAPI document: "
            "http://127.0.0.1:8080/api/v1/openapi.json on the defaults; README 'HTTP API'). "
            "Listens on 127.0.0.1 unless --host says otherwise.",
            arguments=(
                *DATA_OPTIONS,
                arg("--host", metavar="ADDR", help="interface for every listener (default 127.0.0.1; "
                    "0.0.0.0 = all interfaces; off loopback MLLP and HTTP need TLS or tls: off)"),
                arg("--mllp-port", type=int, metavar="N", help="HL7 MLLP port, plain (default 2575; -1 = off: TLS only, "
                    "mllp.tls_port)"),
                arg("--dicom-port", type=int, metavar="N", help="DICOM port (default 11112; -1 = off)"),
                arg("--http-port", type=int, metavar="N",
                    help="HTTP port: the web console at / (e.g. http://127.0.0.1:8080/), /health, /ready, /metrics, "
                         "login at /auth/login, the API under /api/v1 "
                         "(default 8080; -1 = off)"),
                arg("--ae-title", metavar="TITLE", help="the engine's DICOM AE title (default SWF_ENGINE)"),
                arg("--allow-any-ae", action="store_true", default=None,
                    help="admit any calling AE title (default: only the AEs listed under dicom.aes)"),
                arg("--routes", metavar="DIR", help="routing rules folder (default ./routes)"),
                arg("--profiles", metavar="DIR", help="mapping profiles folder (default ./profiles)"),
                arg("--max-message-bytes", type=int, metavar="N", help="largest MLLP message (default 1 MiB)"),
                arg("--idle-timeout", type=float, metavar="SECONDS", help="close silent MLLP connections "
                    "after this long (default 300)"),
                arg("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="default INFO"))),
    Command("replay", "send the HL7 messages of files over MLLP and tally the ACKs", cmd_replay,
            description="Send every message of the files (text with CR/LF/CRLF segment ends, blank lines between "
            "messages, or MLLP frames), one at a time, waiting for each ACK. Exit status 1 when any message was "
            "not accepted or not answered.",
            arguments=(
                arg("files", nargs="+", type=Path, metavar="FILE"),
                arg("--to", required=True, metavar="HOST:PORT", help="the MLLP listener, e.g. 127.0.0.1:2575"),
                arg("--timeout", type=float, default=30.0, metavar="SECONDS", help="wait for each ACK (default 30)"),
                arg("--no-progress", action="store_true", help="no progress bar"))),
    Command("rules", "routing rules tools", actions=(
        Command("check", "validate rules; prints file:line: reason per problem", cmd_rules_check,
                description="Validate the rules (and the profiles they name). Exit 1 on any problem.",
                arguments=(
                    arg("directory", nargs="?", default="routes", metavar="DIR", help="default ./routes"),
                    arg("--profiles", default="profiles", metavar="DIR", help="default ./profiles"))),
        Command("list", "the rules in evaluation order, each with its file:line", cmd_rules_list,
                description="Every rule of the folder in the order the engine evaluates them: position, "
                "file:line, name, conditions and actions. Exit 1 (with file:line: reason) when the rules do not "
                "load.",
                arguments=(
                    arg("directory", nargs="?", default="routes", metavar="DIR", help="default ./routes"),
                    arg("--profiles", default="profiles", metavar="DIR", help="default ./profiles"),
                    arg("--json", action="store_true", help="a JSON list instead of the table"))),
        Command("dry-run", "route recorded messages by a candidate rules set: what would change", cmd_rules_dry_run,
                description="Route the journal's messages (received from --since up to --until), or the messages "
                "of --messages FILE, by the running rules (--routes) and by the candidate rules, and list the "
                "messages whose decision differs (reject, drop, mode, profile, station, outbound destinations, "
                "matched rules). Nothing is applied, sent or written. A candidate that does not load is refused "
                "with file:line: reason (exit 1).",
                arguments=(
                    arg("--candidate", required=True, metavar="DIR", help="the edited copy of the rules folder"),
                    arg("--since", metavar="ISO", help="first receive time, e.g. 2026-12-07T08:00 (local time "
                        "unless an offset is given; default: the journal's start)"),
                    arg("--until", metavar="ISO", help="receive time to stop before (default: now)"),
                    arg("--messages", type=Path, metavar="FILE", help="route the messages of this file instead of "
                        "the journal (no database needed)"),
                    arg("--limit", type=int, default=1000, metavar="N",
                        help="changed messages listed (default 1000; all are counted)"),
                    arg("--json", action="store_true", help="the report as JSON"),
                    arg("--no-progress", action="store_true", help="no progress bar"),
                    arg("--routes", metavar="DIR", help="the running rules folder (default ./routes)"),
                    arg("--profiles", metavar="DIR", help="mapping profiles folder (default ./profiles)"),
                    *DATA_OPTIONS)),
    )),
    Command("validate", "check messages of files against the HL7 standard (hl7apy)", cmd_validate,
            description="Strict structural validation of every message of the files with hl7apy (segments, "
            "groups, data types of the message's own HL7 version). Slow (10-40 ms a message) and never used by "
            "the listener, which accepts what it can map. Exit 1 when any message has problems.",
            arguments=(arg("files", nargs="+", type=Path, metavar="FILE"),)),
    Command("conformance", "write the DICOM Conformance Statement and HL7 summary", cmd_conformance,
            description="The DICOM Conformance Statement (PS3.2 layout) and the HL7 conformance summary, generated "
            "from the engine's own tables for this configuration (docs/conformance.md holds the defaults').",
            arguments=(arg("--out", metavar="FILE", help="write here (default: stdout)"),
                       arg("--format", choices=["md", "json"], default="md", help="md (default) or json"),
                       arg("--config", metavar="FILE", help="engine config file (YAML)"),
                       arg("--profiles", metavar="DIR", help="mapping profiles folder (default ./profiles)"))),
    _data_command("orders", "list orders, or show one order's full history", cmd_orders,
                  "Without ACCESSION: the latest orders. With ACCESSION (or a placer/filler order number): the "
                  "order, its steps and every message and status change.",
                  arg("accession", nargs="?", metavar="ACCESSION"),
                  arg("--limit", type=int, default=50, metavar="N", help="orders listed (default 50)")),
    _data_command("patients", "show a patient with identifiers, visits and merges", cmd_patients, None,
                  arg("patient_id", metavar="PATIENT_ID"),
                  arg("--issuer", metavar="ISSUER", help="assigning authority (PID-3.4); default: any")),
    _data_command("outbox", "outbound messages: list the queue or dead ones, resend, discard", cmd_outbox,
                  "Without ACTION: the pending messages (--dead: those parked as dead, --all: every message). "
                  "'resend ID' queues a dead or discarded message again; 'discard ID' takes a message out of the "
                  "queue. The running engine picks the change up within a second.",
                  arg("action", nargs="?", choices=["resend", "discard"], metavar="ACTION", help="resend | discard"),
                  arg("message_id", nargs="?", type=int, metavar="ID"),
                  arg("--dead", action="store_true", help="list the messages parked as dead"),
                  arg("--all", action="store_true", help="list every message, delivered ones included"),
                  arg("--limit", type=int, default=100, metavar="N")),
    _data_command("forwards", "DICOM forwarding queue (instances, MPPS, availability notices) to downstream AEs",
                  cmd_forwards,
                  "Rows of the DICOM forwarding queue: pending by default, --dead for those given up, --all for "
                  "every row.",
                  arg("--dead", action="store_true"),
                  arg("--all", action="store_true"),
                  arg("--limit", type=int, default=100, metavar="N")),
    _data_command("cluster", "the engine instances on this database and who holds which lease", cmd_cluster,
                  "Each instance with its last heartbeat, then each lease (a destination's deliverer, the leader "
                  "of the once-per-cluster jobs) with its holder, generation and end."),
    _data_command("cancel", "cancel an order as the engine's operator (reported to its RIS)", cmd_cancel,
                  "Cancel every open step of the order with this accession number; refused when a step has started. "
                  "The cancel is reported to the order's status destinations (ORC-1 OC) and procedure destinations "
                  "(CA).",
                  arg("accession", metavar="ACCESSION"),
                  arg("--reason", default="cancelled by the operator", metavar="TEXT")),
    _data_command("reschedule", "move an order's open steps as the operator (reported)", cmd_reschedule,
                  "Give the open steps of the order a new start and/or station; refused once a step has started. "
                  "Reported to the order's status destinations (ORC-1 XO) and procedure destinations (XO/SC).",
                  arg("accession", metavar="ACCESSION"),
                  arg("--start", metavar="YYYYMMDDHHMM[SS]", help="new start date and time"),
                  arg("--station", metavar="AE_TITLE", help="new scheduled station AE title"),
                  arg("--reason", default="rescheduled by the operator", metavar="TEXT")),
    _data_command("link", "link an unscheduled MPPS and its images to an order (reported to its RIS)", cmd_link,
                  "The order's steps go IN PROGRESS / COMPLETED / DISCONTINUED as the MPPS is, reported to the RIS as "
                  "a scheduled MPPS would have been; the MPPS's stored images take the order's accession (and its "
                  "patient when another) in Q/R answers and retrieves. Exit 1 when the MPPS or accession is unknown, "
                  "the MPPS is linked already or a step of the order has another MPPS.",
                  arg("mpps_uid", metavar="MPPS_UID"), arg("accession", metavar="ACCESSION"),
                  arg("--by", metavar="NAME", help="the operator the history names (default: the OS user)")),
    _data_command("explain", "show where each worklist value of a scheduled step came from", cmd_explain,
                  "Every worklist attribute of the step with its value and its origin: the HL7 field (message "
                  "control ID, journal entry) and the profile line that maps it, the rule (file:line) that set it, "
                  "the profile table that translated it, a generated identifier or a default. Worked out by running "
                  "the step's journaled messages again with the rules and profiles in force now; a value the stored "
                  "step holds otherwise is flagged DIFFERS. Exit 1 when no step has that accession number.",
                  arg("accession", metavar="ACCESSION"),
                  arg("--step", metavar="SPS_ID", help="the step of the accession (default: its first)"),
                  arg("--json", action="store_true", help="print the explanation as JSON (as the HTTP API will)"),
                  arg("--routes", metavar="DIR", help="routing rules folder (default ./routes)"),
                  arg("--profiles", metavar="DIR", help="mapping profiles folder (default ./profiles)")),
    _data_command("journal", "list received messages, or show one with its ACK", cmd_journal,
                  "Every received HL7 message is journaled, rejected ones included.",
                  arg("entry", nargs="?", type=int, metavar="ID",
                      help="show this entry's raw message, ACK and what it changed"),
                  arg("--status", choices=["applied", "dropped", "rejected", "failed", "duplicate"]),
                  arg("--limit", type=int, default=50, metavar="N"),
                  arg("--resend-to", metavar="DESTINATION",
                      help="queue entry ID again for this destination of the rules: the message as received "
                           "under a new MSH-3..7 and control ID (MSH-10), delivered by the running engine's outbox"),
                  arg("--routes", metavar="DIR", help="routing rules folder naming the destinations (default ./routes)"),
                  arg("--profiles", metavar="DIR", help="mapping profiles folder (default ./profiles)")),
    _data_command("commitments", "list storage commitment requests, or show one", cmd_commitments,
                  "Storage commitment (RAD-10) requests: status (pending, reporting, delivered, dead), result and "
                  "report delivery attempts. With TRANSACTION_UID: every request with that UID, each reference's "
                  "outcome.",
                  arg("transaction_uid", nargs="?", metavar="TRANSACTION_UID"),
                  arg("--status", choices=["pending", "reporting", "delivered", "dead"]),
                  arg("--limit", type=int, default=50, metavar="N", help="requests listed (default 50)")),
    Command("users", "who may use the HTTP API and console: add, token, list, remove", actions=(
        _data_command("add", "add a user with a role (asks for the password)", cmd_users_add,
                      "Add a user: viewer (reads), operator (worklist actions, resend/discard) or admin (rules, "
                      "users). The password is asked twice on the terminal, or read from the first line of stdin "
                      "with --password-stdin. Creates the database if there is none yet.",
                      arg("name", metavar="NAME"),
                      arg("--role", required=True, choices=ROLES, help=" | ".join(ROLES)),
                      arg("--password-stdin", action="store_true", help="read the password from stdin (scripts)")),
        _data_command("token", "make an API token for a user (printed once)", cmd_users_token,
                      "Print a new API token for NAME on stdout, once: only its hash is kept. Scripts send it as "
                      "'Authorization: Bearer TOKEN'. It works as long as the user exists.",
                      arg("name", metavar="NAME")),
        _data_command("list", "list the users with their roles, tokens and open sessions", cmd_users_list, None),
        _data_command("remove", "remove a user with its tokens and sessions", cmd_users_remove,
                      "Remove NAME with its API tokens and sessions; a running engine refuses them within "
                      "http.auth_refresh_seconds. The last admin is kept unless --force.",
                      arg("name", metavar="NAME"),
                      arg("--force", action="store_true", help="remove the last admin too")))),
    _data_command("mpps", "list performed procedure steps (MPPS), or show one with its versions", cmd_mpps,
                  "Without UID: the latest MPPS, scheduled or UNSCHEDULED, with status, station and linked "
                  "accessions. With UID (SOP Instance UID or PPS ID): its linked steps, main attributes and every "
                  "version received (N-CREATE, N-SET).",
                  arg("uid", nargs="?", metavar="UID"),
                  arg("--unscheduled", action="store_true", help="only MPPS not linked to any scheduled step"),
                  arg("--dataset", action="store_true", help="with UID: also print the full current dataset"),
                  arg("--limit", type=int, default=50, metavar="N", help="MPPS listed (default 50)")),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="swf", description="HL7 v2 / DICOM engine for the IHE Radiology "
                                     "Scheduled Workflow.", epilog=EPILOG)
    add_commands(parser, COMMANDS, "command", "COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "serve" and hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `swf orders | head` ends quietly, as shell tools do
    try:
        return args.run(args)
    except YamlProblem as problem:
        print(problem, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
