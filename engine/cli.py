"""The ``swf`` command: serve, replay, rules check, orders, patients, journal."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from typing import Any, Sequence

from .config import Config, load_config
from .yamlfile import YamlProblem

EPILOG = "Settings: defaults < --config FILE < flags.  Docs: README.md, routes/README.md, profiles/README.md."


def _data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="engine config file (YAML); see README 'Configuration'")
    parser.add_argument("--data-dir", metavar="DIR", help="data folder holding the SQLite database (default ./var)")
    parser.add_argument("--database-url", metavar="URL",
                        help="sqlite:///PATH (default <data-dir>/swf.sqlite) or postgresql://user@host/db")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="swf", description="HL7 v2 / DICOM engine for the IHE Radiology "
                                     "Scheduled Workflow.", epilog=EPILOG)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser("serve", help="run the engine", epilog=EPILOG,
                                description="Run the engine: MLLP listener for ADT and orders, health page. "
                                "Listens on 127.0.0.1 unless --host says otherwise.")
    _data_options(serve)
    serve.add_argument("--host", metavar="ADDR", help="interface for every listener (default 127.0.0.1; "
                       "0.0.0.0 = all interfaces)")
    serve.add_argument("--mllp-port", type=int, metavar="N", help="HL7 MLLP port (default 2575)")
    serve.add_argument("--dicom-port", type=int, metavar="N", help="DICOM port (default 11112; -1 = off)")
    serve.add_argument("--http-port", type=int, metavar="N", help="HTTP health port (default 8080; -1 = off)")
    serve.add_argument("--ae-title", metavar="TITLE", help="the engine's DICOM AE title (default SWF_ENGINE)")
    serve.add_argument("--allow-any-ae", action="store_true", default=None,
                       help="admit any calling AE title (default: only the AEs listed under dicom.aes)")
    serve.add_argument("--routes", metavar="DIR", help="routing rules folder (default ./routes)")
    serve.add_argument("--profiles", metavar="DIR", help="mapping profiles folder (default ./profiles)")
    serve.add_argument("--max-message-bytes", type=int, metavar="N", help="largest MLLP message (default 1 MiB)")
    serve.add_argument("--idle-timeout", type=float, metavar="SECONDS", help="close silent MLLP connections "
                       "after this long (default 300)")
    serve.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="default INFO")

    replay = commands.add_parser("replay", help="send the HL7 messages of files over MLLP and tally the ACKs",
                                 description="Send every message of the files (text with CR/LF/CRLF segment ends, "
                                 "blank lines between messages, or MLLP frames), one at a time, waiting for each "
                                 "ACK. Exit status 1 when any message was not accepted or not answered.")
    replay.add_argument("files", nargs="+", type=Path, metavar="FILE")
    replay.add_argument("--to", required=True, metavar="HOST:PORT", help="the MLLP listener, e.g. 127.0.0.1:2575")
    replay.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS", help="wait for each ACK (default 30)")
    replay.add_argument("--no-progress", action="store_true", help="no progress bar")

    rules = commands.add_parser("rules", help="routing rules tools")
    rules_commands = rules.add_subparsers(dest="rules_command", metavar="ACTION", required=True)
    check = rules_commands.add_parser("check", help="validate rules; prints file:line: reason per problem",
                                      description="Validate the rules (and the profiles they name). Exit 1 on any problem.")
    check.add_argument("directory", nargs="?", default="routes", metavar="DIR", help="default ./routes")
    check.add_argument("--profiles", default="profiles", metavar="DIR", help="default ./profiles")

    validate = commands.add_parser("validate", help="check messages of files against the HL7 standard (hl7apy)",
                                   description="Strict structural validation of every message of the files with "
                                   "hl7apy (segments, groups, data types of the message's own HL7 version). Slow "
                                   "(10-40 ms a message) and never used by the listener, which accepts what it can "
                                   "map. Exit 1 when any message has problems.")
    validate.add_argument("files", nargs="+", type=Path, metavar="FILE")

    orders = commands.add_parser("orders", help="list orders, or show one order's full history",
                                 description="Without ACCESSION: the latest orders. With ACCESSION (or a placer/"
                                 "filler order number): the order, its steps and every message and status change.")
    orders.add_argument("accession", nargs="?", metavar="ACCESSION")
    orders.add_argument("--limit", type=int, default=50, metavar="N", help="orders listed (default 50)")
    _data_options(orders)

    patients = commands.add_parser("patients", help="show a patient with identifiers, visits and merges")
    patients.add_argument("patient_id", metavar="PATIENT_ID")
    patients.add_argument("--issuer", metavar="ISSUER", help="assigning authority (PID-3.4); default: any")
    _data_options(patients)

    outbox = commands.add_parser("outbox", help="outbound messages: list the queue or dead ones, resend, discard",
                                 description="Without ACTION: the pending messages (--dead: those parked as dead, "
                                 "--all: every message). 'resend ID' queues a dead or discarded message again; "
                                 "'discard ID' takes a message out of the queue. The running engine picks the "
                                 "change up within a second.")
    outbox.add_argument("action", nargs="?", choices=["resend", "discard"], metavar="ACTION",
                        help="resend | discard")
    outbox.add_argument("message_id", nargs="?", type=int, metavar="ID")
    outbox.add_argument("--dead", action="store_true", help="list the messages parked as dead")
    outbox.add_argument("--all", action="store_true", help="list every message, delivered ones included")
    outbox.add_argument("--limit", type=int, default=100, metavar="N")
    _data_options(outbox)

    forwards = commands.add_parser("forwards", help="DICOM forwarding queue (instances, MPPS) to downstream AEs",
                                   description="Rows of the DICOM forwarding queue: pending by default, --dead for "
                                   "those given up, --all for every row.")
    forwards.add_argument("--dead", action="store_true")
    forwards.add_argument("--all", action="store_true")
    forwards.add_argument("--limit", type=int, default=100, metavar="N")
    _data_options(forwards)

    cancel = commands.add_parser("cancel", help="cancel an order as the engine's operator (reported to its RIS)",
                                 description="Cancel every open step of the order with this accession number; "
                                 "refused when a step has started. The cancel is reported to the order's status "
                                 "destinations (ORC-1 OC) and procedure destinations (CA).")
    cancel.add_argument("accession", metavar="ACCESSION")
    cancel.add_argument("--reason", default="cancelled by the operator", metavar="TEXT")
    _data_options(cancel)

    reschedule = commands.add_parser("reschedule", help="move an order's open steps as the operator (reported)",
                                     description="Give the open steps of the order a new start and/or station; "
                                     "refused once a step has started. Reported to the order's status destinations "
                                     "(ORC-1 XO) and procedure destinations (XO/SC).")
    reschedule.add_argument("accession", metavar="ACCESSION")
    reschedule.add_argument("--start", metavar="YYYYMMDDHHMM[SS]", help="new start date and time")
    reschedule.add_argument("--station", metavar="AE_TITLE", help="new scheduled station AE title")
    reschedule.add_argument("--reason", default="rescheduled by the operator", metavar="TEXT")
    _data_options(reschedule)

    journal = commands.add_parser("journal", help="list received messages, or show one with its ACK",
                                  description="Every received HL7 message is journaled, rejected ones included.")
    journal.add_argument("entry", nargs="?", type=int, metavar="ID", help="show this entry's raw message and ACK")
    journal.add_argument("--status", choices=["applied", "dropped", "rejected", "failed", "duplicate"])
    journal.add_argument("--limit", type=int, default=50, metavar="N")
    _data_options(journal)

    commitments = commands.add_parser("commitments", help="list storage commitment requests, or show one",
                                      description="Storage commitment (RAD-10) requests: status (pending, "
                                      "reporting, delivered, dead), result and report delivery attempts. With "
                                      "TRANSACTION_UID: every request with that UID, each reference's outcome.")
    commitments.add_argument("transaction_uid", nargs="?", metavar="TRANSACTION_UID")
    commitments.add_argument("--status", choices=["pending", "reporting", "delivered", "dead"])
    commitments.add_argument("--limit", type=int, default=50, metavar="N", help="requests listed (default 50)")
    _data_options(commitments)

    mpps = commands.add_parser("mpps", help="list performed procedure steps (MPPS), or show one with its versions",
                               description="Without UID: the latest MPPS, scheduled or UNSCHEDULED, with status, "
                               "station and linked accessions. With UID (SOP Instance UID or PPS ID): its linked "
                               "steps, main attributes and every version received (N-CREATE, N-SET).")
    mpps.add_argument("uid", nargs="?", metavar="UID")
    mpps.add_argument("--unscheduled", action="store_true", help="only MPPS not linked to any scheduled step")
    mpps.add_argument("--dataset", action="store_true", help="with UID: also print the full current dataset")
    mpps.add_argument("--limit", type=int, default=50, metavar="N", help="MPPS listed (default 50)")
    _data_options(mpps)
    return parser


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


def _open_store(args: argparse.Namespace) -> Any:
    from .store.database import Store

    config = resolve_config(args)
    if config.database.startswith("sqlite:///") and not Path(config.database[len("sqlite:///"):]).exists():
        print(f"no database at {config.database} (use --data-dir or --config)", file=sys.stderr)
        return None
    return Store(config.database)


def cmd_orders(args: argparse.Namespace) -> int:
    from . import reports

    store = _open_store(args)
    if store is None:
        return 2
    default_station = resolve_config(args).orders.default_station_ae
    if not args.accession:
        rows = store.read(lambda txn: reports.order_list(txn, args.limit))
        if not rows:
            print("no orders yet")
            return 0
        print(f"{'ACCESSION':<18}{'STATUS':<7}{'MOD':<6}{'STATION':<16}{'PATIENT':<28}{'PLACER':<14}UPDATED")
        for row in rows:
            stations = (["no station"] if row["steps_without_station"] else []) + row["stations"]  # marker first
            print(f"{','.join(row['accessions'])[:17]:<18}{row['status']:<7}{','.join(row['modalities'])[:5]:<6}"
                  f"{','.join(stations)[:15]:<16}{(row['patient_id'] + ' ' + row['patient_name'])[:27]:<28}"
                  f"{row['placer_order_number'][:13]:<14}{row['updated_at'][:19]}")
        return 0
    detail = store.read(lambda txn: reports.order_detail(txn, args.accession))
    if detail is None:
        print(f"no order with accession or order number {args.accession!r}", file=sys.stderr)
        return 1
    order, patient = detail["order"], detail["patient"]
    name = __import__("json").loads(patient["attributes"]).get("PatientName", "")
    print(f"order placer {order['placer_order_number'] or '-'}  filler {order['filler_order_number'] or '-'}  "
          f"status {detail['status']}  mode {order['deployment_mode']}  from {order['sending_application']}")
    print(f"patient {patient['patient_id']}^{patient['issuer']}  {name}")
    for line in _order_destinations(resolve_config(args), order, detail["outbox"]):
        print(line)
    for procedure in detail["procedures"]:
        print(f"requested procedure {procedure['requested_procedure_id']}  accession {procedure['accession_number']}  "
              f"study {procedure['study_instance_uid']}")
    for step in detail["steps"]:
        station = reports.station_label(step["station_ae_title"], default_station)
        print(f"  SPS {step['sps_id']:<16} {step['status']:<12} {step['modality']:<4} {station:<16} "
              f"{step['start_datetime'][:14]}")
    print("history:")
    for entry in detail["history"]:
        message = f"  [{entry['message_code']} {entry['control_id']} {entry['ack_code']}]" if entry["journal_ref"] else ""
        print(f"  {entry['at'][:23]}  {entry['kind']:<20} {entry['detail']}{message}")
    return 0


def _order_destinations(config: Config, order: dict[str, Any], outbox: dict[str, dict[str, int]]) -> list[str]:
    """Where an order's status / procedure messages go, or why nowhere: a RIS whose MSH-3 the sender rules
    do not expect, or an address left empty, means no status ever arrives, and nothing else says so."""
    from .rules.ruleset import load_ruleset

    names = (order["outbound"] or "").split()
    if not names:
        return [f"reports to: none: no rule named a destination for this order (sent by MSH-3 "
                f"{order['sending_application']!r}); the 'outbound:' of the sender rules in {config.routes_dir} "
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
        sent = ", ".join(f"{count} {status}" for status, count in sorted(outbox.get(name, {}).items()))
        lines.append(f"  {name:<12} {state}; outbox: {sent or 'no messages'}")
    on = [name for name in names if name in destinations and destinations[name].enabled]
    if len(on) == len(names):
        return [f"reports to: {', '.join(on)}", *lines]
    return [f"reports to: {', '.join(on)}" if on else "reports to: none: no destination the rules named is on", *lines,
            "  (addresses as the rules read with this shell's environment; the engine's start-up log shows its own)"]


def cmd_patients(args: argparse.Namespace) -> int:
    from . import reports

    store = _open_store(args)
    if store is None:
        return 2
    details = store.read(lambda txn: reports.patient_detail(txn, args.patient_id, args.issuer))
    if not details:
        print(f"no patient {args.patient_id!r}", file=sys.stderr)
        return 1
    for detail in details:
        patient, attributes = detail["patient"], detail["attributes"]
        print(f"patient {patient['patient_id']}^{patient['issuer']}  {attributes.get('PatientName', '')}  "
              f"born {attributes.get('PatientBirthDate', '-')}  sex {attributes.get('PatientSex', '-')}")
        if detail["merged_into"]:
            survivor = detail["merged_into"]
            print(f"  MERGED into {survivor['patient_id']}^{survivor['issuer']}")
        for identifier in detail["identifiers"]:
            print(f"  identifier {identifier['patient_id']}^{identifier['issuer']} {identifier['identifier_type']}"
                  f" ({identifier['source']})")
        for merged in detail["merged_from"]:
            print(f"  merged ID {merged['patient_id']}^{merged['issuer']}")
        for visit in detail["visits"]:
            print(f"  visit {visit['visit_number']} class {visit['patient_class']} {visit['status']} {visit['location']}")
        print(f"  orders: {len(detail['orders'])}")
        for entry in detail["history"]:
            print(f"  {entry['at'][:23]}  {entry['kind']:<16} {entry['detail']}")
    return 0


def cmd_journal(args: argparse.Namespace) -> int:
    from . import reports
    from .hl7.message import decode_bytes

    store = _open_store(args)
    if store is None:
        return 2
    if args.entry is not None:
        entry = store.read(lambda txn: reports.journal_entry(txn, args.entry))
        if entry is None:
            print(f"no journal entry {args.entry}", file=sys.stderr)
            return 1
        print(f"#{entry['id']} {entry['received_at']} from {entry['peer']} {entry['message_code']} "
              f"{entry['control_id']}: {entry['status']} {entry['ack_code']} {entry['reason']}")
        config = resolve_config(args)
        for label, data in (("", entry["raw"]), ("-- ACK:", entry["ack"])):
            if data:
                text, _codec = decode_bytes(bytes(data), config.hl7.default_charset)  # as MSH-18 says
                print(label + "\n" + text.replace("\r", "\n") if label else text.replace("\r", "\n"))
        return 0
    rows = store.read(lambda txn: reports.journal_list(txn, args.status, args.limit))
    if not rows:
        print("no journal entries" + (f" with status {args.status}" if args.status else " yet"))
        return 0
    print(f"{'ID':<8} {'RECEIVED':<23}  {'MESSAGE':<8} {'CONTROL ID':<22} {'STATUS':<9} {'ACK':<3} REASON")
    for row in rows:
        print(f"#{row['id']:<7} {row['received_at'][:23]}  {row['message_code']:<8} {row['control_id']:<22} "
              f"{row['status']:<9} {row['ack_code']:<3} {row['reason'][:80]}")
    return 0


def cmd_commitments(args: argparse.Namespace) -> int:
    from . import reports
    from .workflow.commitment import FAILURE_REASONS, summary

    store = _open_store(args)
    if store is None:
        return 2
    if not args.transaction_uid:
        rows = store.read(lambda txn: reports.commitment_list(txn, args.status, args.limit))
        if not rows:
            print("no storage commitment requests" + (f" with status {args.status}" if args.status else " yet"))
            return 0
        print(f"{'#':<6}{'REQUESTED':<25}{'FROM':<17}{'STATUS':<10}{'REFS':>5}{'FAILED':>7}{'TRIES':>6}  "
              f"TRANSACTION UID / LAST ERROR")
        for row in rows:
            failed = "-" if row["failed"] is None else str(row["failed"])
            print(f"{row['id']:<6}{row['requested_at'][:23]:<25}{row['calling_ae_title'][:16]:<17}{row['status']:<10}"
                  f"{row['references']:>5}{failed:>7}{row['attempts']:>6}  {row['transaction_uid']}"
                  + (f"  {row['last_error'][:80]}" if row["last_error"] else ""))
        return 0
    rows = store.read(lambda txn: reports.commitment_detail(txn, args.transaction_uid))
    if not rows:
        print(f"no storage commitment request with transaction UID {args.transaction_uid!r}", file=sys.stderr)
        return 1
    for row in rows:
        print(f"commitment #{row['id']}  transaction {row['transaction_uid']}  from {row['calling_ae_title']}"
              f" ({row['request'].get('peer') or '?'})  requested {row['requested_at'][:23]}")
        result = row["result"]
        print(f"status {row['status']}  report attempts {row['attempts']}"
              + (f"  next attempt {row['next_attempt_at'][:23]} UTC" if row["next_attempt_at"] and
                 row["status"] in ("pending", "reporting") else "")
              + (f"  result: event type {result['event_type']}, {summary(result)}" if result else "  result: -"))
        if row["last_error"]:
            print(f"last error: {row['last_error']}")
        if row["request"].get("duplicate_of"):
            print(f"duplicate of active commitment #{row['request']['duplicate_of']}")
        for reference in row["references"]:
            outcome = reference["outcome"]
            text = ("pending" if outcome is None else "committed" if outcome == 0 else
                    f"FAILED 0x{outcome:04X} {FAILURE_REASONS.get(outcome, '')}: {reference['why']}")
            accession = f"  accession {reference['accession_number']}" if reference["accession_number"] else ""
            print(f"  {reference['sop_instance_uid']}  {reference['sop_class_uid']}  {text}{accession}")
    return 0


def cmd_mpps(args: argparse.Namespace) -> int:
    from . import reports

    store = _open_store(args)
    if store is None:
        return 2
    if not args.uid:
        rows = store.read(lambda txn: reports.performed_step_list(txn, args.limit, args.unscheduled))
        if not rows:
            print("no unscheduled performed procedure steps" if args.unscheduled else
                  "no performed procedure steps (MPPS) yet")
            return 0
        print(f"{'STATUS':<14}{'KIND':<13}{'STATION':<17}{'PPS ID':<17}{'ACCESSIONS':<19}{'UPDATED':<21}SOP INSTANCE UID")
        for row in rows:
            kind = "UNSCHEDULED" if row["unscheduled"] else "scheduled"
            print(f"{row['status']:<14}{kind:<13}{row['performed_station_ae_title'][:16]:<17}{row['pps_id'][:16]:<17}"
                  f"{','.join(row['accessions'])[:18] or '-':<19}{row['updated_at'][:19]:<21}{row['sop_instance_uid']}")
        return 0
    detail = store.read(lambda txn: reports.performed_step_detail(txn, args.uid))
    if detail is None:
        print(f"no performed procedure step {args.uid!r}", file=sys.stderr)
        return 1
    step, summary = detail["step"], detail["summary"]
    print(f"MPPS {step['sop_instance_uid']}  {step['status']}  "
          f"{'UNSCHEDULED' if step['unscheduled'] else 'scheduled'}")
    print(f"PPS ID {step['pps_id'] or '-'}  station {step['performed_station_ae_title'] or '-'}  "
          f"from AE {step['calling_ae_title'] or '-'}  study {step['study_instance_uid'] or '-'}")
    print(f"patient {summary['PatientID'] or '-'}  {summary['PatientName']}  modality {summary['Modality'] or '-'}  "
          f"start {summary['Start'] or '-'}  end {summary['End'] or '-'}")
    print(f"series {summary['Series']}, images {summary['Images']}"
          + (f"; discontinued: {summary['Reason']}" if summary["Reason"] else "")
          + (f"; {summary['Description']}" if summary["Description"] else ""))
    print("linked steps:" if detail["steps"] else "linked steps: none (unscheduled)")
    for linked in detail["steps"]:
        print(f"  accession {linked['accession_number']:<16} RP {linked['requested_procedure_id']:<16} "
              f"SPS {linked['sps_id']:<16} {linked['status']}")
    print("versions:")
    for version in detail["versions"]:
        print(f"  {version['at'][:23]}  {version['operation']:<9} {version['status']}")
    if args.dataset:
        print(summary["Dataset"])
    return 0


def cmd_outbox(args: argparse.Namespace) -> int:
    from . import reports

    store = _open_store(args)
    if store is None:
        return 2
    if args.action:
        if args.message_id is None:
            print(f"outbox {args.action} needs the message ID", file=sys.stderr)
            return 2
        from .store import queues

        action = queues.resend_outbox if args.action == "resend" else queues.discard_outbox
        changed = store.write(lambda txn: action(txn, args.message_id))
        if not changed:
            print(f"no outbox message {args.message_id} that can be {args.action}ed", file=sys.stderr)
            return 1
        print(f"outbox message {args.message_id}: {'queued again' if args.action == 'resend' else 'discarded'}")
        return 0
    status = "dead" if args.dead else "all" if args.all else None
    rows = store.read(lambda txn: reports.outbox_list(txn, status, args.limit))
    if not rows:
        print({"dead": "no outbox messages given up on", "all": "no outbox messages yet"}.get(
            status or "", "no outbox messages waiting (--dead: those given up on, --all: every one)"))
        return 0
    print(f"{'ID':<7}{'DESTINATION':<12}{'STATUS':<10}{'KIND':<22}{'ACCESSION':<17}{'CONTROL ID':<21}{'TRIES':<6}LAST ERROR")
    for row in rows:
        print(f"{row['id']:<7}{row['destination'][:11]:<12}{row['status']:<10}{row['kind'][:21]:<22}"
              f"{row['accession_number'][:16]:<17}{row['control_id'][:20]:<21}{row['attempts']:<6}{row['last_error'][:60]}")
    return 0


def cmd_forwards(args: argparse.Namespace) -> int:
    store = _open_store(args)
    if store is None:
        return 2
    where, params = ("", []) if args.all else ("WHERE status = ?", ["dead" if args.dead else "pending"])
    rows = store.read(lambda txn: txn.query(
        "SELECT id, destination, kind, sop_instance_uid, status, attempts, last_error FROM dicom_forwards"
        f" {where} ORDER BY id LIMIT ?", [*params, args.limit]))
    if not rows:
        print("no DICOM forwards yet" if args.all else "no DICOM forwards given up on" if args.dead else
              "no DICOM forwards waiting (--dead: those given up on, --all: every one)")
        return 0
    print(f"{'ID':<7}{'DESTINATION':<17}{'KIND':<7}{'STATUS':<10}{'TRIES':<6}{'SOP INSTANCE UID':<46}LAST ERROR")
    for row in rows:
        print(f"{row['id']:<7}{row['destination'][:16]:<17}{row['kind']:<7}{row['status']:<10}{row['attempts']:<6}"
              f"{row['sop_instance_uid'][:45]:<46}{row['last_error'][:60]}")
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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "serve" and hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `swf orders | head` ends quietly, as shell tools do
    try:
        if args.command == "serve":
            return cmd_serve(args)
        if args.command == "replay":
            return cmd_replay(args)
        if args.command == "rules":
            return cmd_rules_check(args)
        if args.command == "validate":
            return cmd_validate(args)
        if args.command == "commitments":
            return cmd_commitments(args)
        if args.command == "mpps":
            return cmd_mpps(args)
        return {"orders": cmd_orders, "patients": cmd_patients, "journal": cmd_journal, "outbox": cmd_outbox,
                "cancel": cmd_cancel, "reschedule": cmd_reschedule, "forwards": cmd_forwards}[args.command](args)
    except YamlProblem as problem:
        print(problem, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
