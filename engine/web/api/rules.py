"""Rules and the explanation of worklist values: the running rules with file:line, the check of posted
rules files, the dry-run of a candidate rules set against the journal (or posted messages), and
``explain`` of one scheduled step — the plain functions ``swf rules`` and ``swf explain`` call."""
from __future__ import annotations

from typing import Any, Callable

from ...replay import split_messages
from ...rules.describe import RuleDescription, check_rules, describe_rules, load_rules
from ...store import explain as stored
from ...store.database import Transaction
from ...workflow.dry_run import DIFFERENCE_LIMIT, MessageDiff, ReplayMessage, RulesProbe, compare, journal_time
from ...workflow.dry_run import JournalReplay
from ...workflow.explain import explain
from .common import ACCESSION
from .context import EngineContext
from .declaration import BadRequest, Call, NotFound, Operation, Parameter
from .schema import BOOLEAN, INTEGER, STRING, array, obj, record_json, record_schema

MAX_RULES_FILES = 100
RULES_FILES = {"type": "object", "description": "rules files: {file name: YAML text}",
               "propertyNames": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}\.ya?ml$"},
               "additionalProperties": {"type": "string", "maxLength": 262144}, "maxProperties": MAX_RULES_FILES,
               "examples": [{"20-rooms.yaml": "rules:\n  - name: CT orders to CT room 2\n    when:\n      modality: CT\n"
                                              "    schedule: {station_ae: CT2_AE}\n"}]}
PROBLEM = obj({"file": STRING, "line": INTEGER, "reason": STRING})
CHECK = obj({"ok": BOOLEAN, "rules": INTEGER, "files": INTEGER, "destinations": INTEGER, "problems": array(PROBLEM)})
_WHEN = {"type": "string", "description": "ISO date or date-time, local time unless it has an offset",
         "pattern": r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])(T([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?"
                    r"([+-][0-9]{2}:[0-9]{2}|Z)?)?$"}
DRY_RUN_BODY = obj({"candidate": RULES_FILES, "since": _WHEN, "until": _WHEN,
                    "messages": {"type": "string", "maxLength": 1048576,
                                 "description": "HL7 messages to route instead of the journal's (blank lines "
                                                "between messages)"},
                    "limit": {**INTEGER, "minimum": 1, "maximum": 10000}},
                   optional=("since", "until", "messages", "limit"))
DRY_RUN = obj({"messages": INTEGER, "changed": INTEGER, "unchanged": INTEGER,
               "by_kind": {"type": "object", "additionalProperties": INTEGER}, "skipped_duplicates": INTEGER,
               "limit": INTEGER, "truncated": BOOLEAN, "differences": array(record_schema(MessageDiff))})
EXPLAINED = obj({"keyword": STRING, "tag": STRING, "level": STRING, "value": {},
                 "from": obj({"kind": STRING, "where": STRING}), "differs": BOOLEAN, "rederived": {}},
                optional=("rederived",))
EXPLANATION = obj({"accession_number": STRING, "sps_id": STRING, "other_sps_ids": array(STRING),
                   "messages": array(STRING), "notes": array(STRING), "attributes": array(EXPLAINED)})


class _Within:
    """A read transaction as the ``store.read`` the plain functions take: their reads join the request's."""

    def __init__(self, txn: Transaction):
        self.txn = txn

    def read(self, work: Callable[[Transaction], Any]) -> Any:
        return work(self.txn)


def _engine(call: Call) -> EngineContext:
    assert call.engine is not None, "the rules operations need the running engine"
    return call.engine


def list_rules(_txn: Transaction, call: Call) -> list[dict[str, Any]]:
    return [record_json(rule) for rule in describe_rules(_engine(call).rules())]


def check_posted(_txn: Transaction, call: Call) -> dict[str, Any]:
    return check_rules(call.body, set(_engine(call).profiles)).to_json()


def dry_run(txn: Transaction, call: Call) -> dict[str, Any]:
    engine, body = _engine(call), call.body
    checked = check_rules(body["candidate"], set(engine.profiles))
    if not checked.ok:
        first = checked.problems[0]
        raise BadRequest(f"body.candidate: {first.file}:{first.line}: {first.reason} ({len(checked.problems)} "
                         "problem(s); POST /api/v1/rules/check lists them)", field="body.candidate")
    candidate = load_rules(body["candidate"], set(engine.profiles))
    if "messages" in body and ("since" in body or "until" in body):
        raise BadRequest("messages are routed as posted: since/until select journal messages", field="body.messages")
    if "messages" in body:
        messages: Any = [ReplayMessage(raw) for raw in split_messages(body["messages"].encode("utf-8"))]
    else:
        try:
            since, until = journal_time(body.get("since", "")), journal_time(body.get("until", ""))
        except ValueError as exc:
            raise BadRequest(f"body.since/until: not an ISO date or date-time: {exc}", field="body.since") from None
        messages = JournalReplay(_Within(txn), since, until)   # type: ignore[arg-type]
    report = compare(messages, RulesProbe(engine.config, engine.profiles, engine.rules()),
                     RulesProbe(engine.config, engine.profiles, candidate), body.get("limit", DIFFERENCE_LIMIT))
    return report.to_json()


def explain_order(txn: Transaction, call: Call) -> dict[str, Any]:
    engine, accession, sps_id = _engine(call), call.params["accession"], call.params["sps_id"]
    step = stored.stored_step(txn, accession, sps_id)
    if step is None:
        raise NotFound(f"no scheduled step with accession number {accession!r}"
                       + (f" and SPS ID {sps_id!r}" if sps_id else ""))
    explanation = explain(step, stored.step_messages(txn, step), stored.operator_changes(txn, step), engine.config,
                          engine.profiles, engine.rules())
    return explanation.to_json()


OPERATIONS = [
    Operation("GET", "/rules", "listRules", "The running rules in evaluation order, each with its file:line, "
              "conditions and actions (what `swf rules list` prints).", "admin", array(record_schema(RuleDescription)),
              list_rules),
    Operation("POST", "/rules/check", "checkRules", "Check posted rules files ({file name: YAML text}) as the "
              "engine's loader would, against the profiles in force: every problem with file, line and reason.",
              "admin", CHECK, check_posted, body=RULES_FILES),
    Operation("POST", "/rules/dry-run", "dryRunRules", "Route the journal's messages received from since up to "
              "until (or the posted messages) by the running and the candidate rules; nothing is applied. Lists "
              "the messages whose decision differs (reject, drop, mode, profile, station, destinations).", "admin",
              DRY_RUN, dry_run, body=DRY_RUN_BODY),
    Operation("GET", "/orders/{accession}/explain", "explainOrder", "Every worklist attribute of a scheduled step "
              "with its value and where it came from (HL7 field, rule file:line, profile file:line, generated, "
              "default): what `swf explain` prints.", "viewer", EXPLANATION, explain_order,
              parameters=(ACCESSION,
                          Parameter("sps_id", "query", {**STRING, "minLength": 1, "maxLength": 64},
                                    "the step (default: the accession's first)")),
              errors=(404,)),
]
