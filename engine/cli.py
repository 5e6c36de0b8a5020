"""The ``swf`` command: serve, replay, rules check and validate; the operator's views of the data
(orders, patients, journal, mpps, commitments, outbox, forwards) and order changes (cancel, reschedule).

Each command is declared once (``COMMANDS``: name, help texts, arguments, the function that runs it)
and each listing's columns once (``Column``: heading, width, value); the views read their records from
engine/store/reports.py.
"""
from __future__ import annotations

import argparse
import functools
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from .commandline import Argument, Column, Command, add_commands, arg, print_table
from .config import Config, load_config
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

    from .app import Engine
    from .rules.watcher import problems_of

    config = resolve_config(args)
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if config.log_level != "DEBUG":  # pynetdicom logs every DIMSE message at INFO; ours name what matters
        logging.getLogger("pynetdicom").setLevel(logging.WARNING)
        from pynetdicom import _config as pynetdicom_config

        # Its per-message log handlers format every PDU even when nothing is logged (~5% of a C-FIND).
        pynetdicom_config.LOG_HANDLER_LEVEL = "none"
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
    signal.signal(signal.SIGTERM, lambda *_: reactor.callFromThread(reactor.stop))
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
    from .store import reports

    if args.entry is None:
        print_table(JOURNAL_COLUMNS, store.read(lambda txn: reports.journal_list(txn, args.status, args.limit)),
                    _with_status("no journal entries", args.status), separator=" ")
        return 0
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
    from .store import queues, reports

    if not args.action:
        status = "dead" if args.dead else None if args.all else "pending"
        print_table(OUTBOX_COLUMNS, store.read(lambda txn: reports.outbox_list(txn, status, args.limit)),
                    _queue_nothing(status, "outbox messages"))
        return 0
    if args.message_id is None:
        print(f"outbox {args.action} needs the message ID", file=sys.stderr)
        return 2
    change = queues.resend_outbox if args.action == "resend" else queues.discard_outbox
    if not store.write(lambda txn: change(txn, args.message_id)):
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


def _operator_action(args: argparse.Namespace, work: Any, refused: str, done: str) -> int:
    """Run an operator's order change; the running engine reports the recorded event to the destinations."""
    from .domain.model import Rejection

    store = _open_store(args)
    if store is None:
        return 2
    try:
        store.write(work)
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
                            "cancelled")


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
        "rescheduled")


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
                    "0.0.0.0 = all interfaces)"),
                arg("--mllp-port", type=int, metavar="N", help="HL7 MLLP port (default 2575)"),
                arg("--dicom-port", type=int, metavar="N", help="DICOM port (default 11112; -1 = off)"),
                arg("--http-port", type=int, metavar="N", help="HTTP port of /health, /ready and the API /api/v1 (default 8080; -1 = off)"),
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
                    arg("--profiles", default="profiles", metavar="DIR", help="default ./profiles"))),)),
    Command("validate", "check messages of files against the HL7 standard (hl7apy)", cmd_validate,
            description="Strict structural validation of every message of the files with hl7apy (segments, "
            "groups, data types of the message's own HL7 version). Slow (10-40 ms a message) and never used by "
            "the listener, which accepts what it can map. Exit 1 when any message has problems.",
            arguments=(arg("files", nargs="+", type=Path, metavar="FILE"),)),
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
    _data_command("forwards", "DICOM forwarding queue (instances, MPPS) to downstream AEs", cmd_forwards,
                  "Rows of the DICOM forwarding queue: pending by default, --dead for those given up, --all for "
                  "every row.",
                  arg("--dead", action="store_true"),
                  arg("--all", action="store_true"),
                  arg("--limit", type=int, default=100, metavar="N")),
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
    _data_command("journal", "list received messages, or show one with its ACK", cmd_journal,
                  "Every received HL7 message is journaled, rejected ones included.",
                  arg("entry", nargs="?", type=int, metavar="ID", help="show this entry's raw message and ACK"),
                  arg("--status", choices=["applied", "dropped", "rejected", "failed", "duplicate"]),
                  arg("--limit", type=int, default=50, metavar="N")),
    _data_command("commitments", "list storage commitment requests, or show one", cmd_commitments,
                  "Storage commitment (RAD-10) requests: status (pending, reporting, delivered, dead), result and "
                  "report delivery attempts. With TRANSACTION_UID: every request with that UID, each reference's "
                  "outcome.",
                  arg("transaction_uid", nargs="?", metavar="TRANSACTION_UID"),
                  arg("--status", choices=["pending", "reporting", "delivered", "dead"]),
                  arg("--limit", type=int, default=50, metavar="N", help="requests listed (default 50)")),
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
