"""Where each worklist value of a scheduled step came from (``swf explain``, the API's explain operation).

Nothing records provenance at ingest (the hot path stays as it is).  Instead the journaled messages that
changed the step's order and patient are run again, oldest first, through the same parse, rules and
profile as at ingest (``Ingestor.prepare``), this time noting for each attribute the HL7 field it was
read from (and the profile line that says so), the rule that set it, the profile table that translated
it, or that nothing gave it (a generated identifier, a default).  The values so re-derived are compared
with the stored step: a difference (an operator's reschedule, rules changed since) is flagged, never
hidden.  This explains with the rules and profiles in force now; where the rules that match a message
now are not the ones the journal recorded at ingest, the explanation says so.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from pydicom.datadict import tag_for_keyword

from ..config import Config
from ..hl7 import convert, extract
from ..hl7.mapping import Profile, Source, StepContext
from ..hl7.message import Message, decode_bytes, field_path
from ..rules.ruleset import Rule, RuleSet
from ..store import explain as stored
from .ingest import Ingestor, Received
from .orders import ACTIONS

if TYPE_CHECKING:
    from ..store.database import Store, Transaction

# What an origin's ``kind`` may be (the HTTP API's enum).
ORIGIN_KINDS = ("hl7", "rule", "profile", "generated", "default", "derived", "operator")
START_KEYWORDS = ("ScheduledProcedureStepStartDate", "ScheduledProcedureStepStartTime")


@dataclass(frozen=True)
class Origin:
    kind: str                       # one of ORIGIN_KINDS
    where: str                      # "OBR-24 (message MSG1, journal #3) via profile 'x' profiles/x.yaml:52"


@dataclass(frozen=True)
class ExplainedAttribute:
    """One worklist attribute: the value served, where it came from, and the re-derived value if it differs."""

    keyword: str
    tag: str                        # "(0008,0050)"
    level: str                      # patient | procedure | step (inside the SPS sequence)
    value: Any
    origin: Origin
    differs: bool = False
    rederived: Any = None           # what the messages give now, when ``differs``


@dataclass(frozen=True)
class Explanation:
    accession_number: str
    sps_id: str
    other_sps_ids: tuple[str, ...]
    messages: tuple[str, ...]       # the journaled messages re-run, oldest first
    attributes: tuple[ExplainedAttribute, ...]
    notes: tuple[str, ...]          # rules changed since, messages no longer mapped, the basis of it all

    def to_json(self) -> dict[str, Any]:
        return {
            "accession_number": self.accession_number, "sps_id": self.sps_id,
            "other_sps_ids": list(self.other_sps_ids), "messages": list(self.messages), "notes": list(self.notes),
            "attributes": [{"keyword": a.keyword, "tag": a.tag, "level": a.level, "value": a.value,
                            "from": {"kind": a.origin.kind, "where": a.origin.where}, "differs": a.differs,
                            **({"rederived": a.rederived} if a.differs else {})} for a in self.attributes],
        }


@dataclass
class _Derived:
    value: Any
    origin: Origin


@dataclass
class _Levels:
    """What the messages so far give the step, per level, as the workflow stores it."""

    patient: dict[str, _Derived] = field(default_factory=dict)
    procedure: dict[str, _Derived] = field(default_factory=dict)
    step: dict[str, _Derived] = field(default_factory=dict)


def tag_text(keyword: str) -> str:
    tag = tag_for_keyword(keyword)
    return "" if tag is None else f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


class _MessageReader:
    """One journaled message run again: its parse before and after the rules, its decision and profile."""

    def __init__(self, ingestor: Ingestor, rules: RuleSet, journaled: stored.JournaledMessage):
        self.journaled = journaled
        self.label = f"message {journaled.control_id}, journal #{journaled.id}"
        self.rules = rules
        self.prepared = ingestor.prepare(Received(journaled.raw))
        self.message = self.prepared.message
        self.decision = self.prepared.decision
        self.profile: Profile | None = None
        self.original = self.message
        if self.message is not None and self.decision is not None and self.prepared.mapped is not None:
            self.profile = ingestor.mapping_profile(self.message, self.decision)
            text, codec = decode_bytes(journaled.raw, ingestor.config.hl7.default_charset)
            self.original = Message(text, codec)   # as received, before the rules' set/map
        self.matched = [rule for rule in rules.rules if self.decision and rule.name in self.decision.rules]

    def problem(self) -> str:
        """Why this message gives no values now ("" when it does)."""
        prepared = self.prepared
        if prepared.parse_error or prepared.header_error:
            return "no longer readable"
        if self.decision and self.decision.reject:
            return f"now rejected by rule '{self.decision.reject_rule}'"
        if self.decision and self.decision.drop:
            return "now dropped by the rules"
        if prepared.mapping_error is not None:
            return f"no longer mapped: {getattr(prepared.mapping_error, 'reason', prepared.mapping_error)}"
        return ""

    def origin(self, rule_where: str, source: Source) -> Origin:
        """An attribute read from a field: the field, or the rule whose set/map changed that field."""
        assert self.message is not None and self.profile is not None
        via = f" via profile '{self.profile.name}' {rule_where}" if rule_where else ""
        if source is None:
            return Origin("hl7", f"({self.label}){via}")
        index, fp = source
        sequence = self.message.segment_indexes(fp.segment).index(index) + 1
        location = f"{fp.segment}({sequence})-{str(fp).partition('-')[2]}" if sequence > 1 else str(fp)
        original = self.original
        assert original is not None
        was = original.value_in(index, fp).strip() if index < len(original.segments) else ""
        if was != self.message.value_in(index, fp).strip():
            for rule in self.matched:
                for key, paths in (("set", rule.set_fields), ("map", rule.map_fields)):
                    if any(_same_field(path, fp) for path in paths):
                        return Origin("rule", f"rule '{rule.name}' {rule.file}:{rule.line_of(key)} ({key} {location}, "
                                              f"sent {was!r}; {self.label})")
        return Origin("hl7", f"{location} ({self.label}){via}")

    def rules_changed(self) -> str:
        """A note when the rules matching this message now are not those recorded at ingest."""
        now = self.decision.rule_names if self.decision else ""
        if now == self.journaled.rule:
            return ""
        return (f"journal #{self.journaled.id} matched rules [{self.journaled.rule or 'none'}] at ingest; "
                f"the rules in force now match [{now or 'none'}]: the rules changed since")


def _same_field(path: str, fp: Any) -> bool:
    other = field_path(path)
    return (other.segment, other.field) == (fp.segment, fp.field) and (
        not other.component or other.component == fp.component)


def _attributes(reader: _MessageReader, read: Callable[[dict[str, Source]], dict[str, Any]],
                section: str) -> dict[str, _Derived]:
    assert reader.profile is not None
    sources: dict[str, Source] = {}
    values = read(sources)
    return {keyword: _Derived(value, reader.origin(reader.profile.where.get(f"{section}.{keyword}", ""),
                                                   sources.get(keyword)))
            for keyword, value in values.items()}


def _step_context(reader: _MessageReader, step: stored.StoredStep) -> StepContext | None:
    """The step context of the message that maps to the stored step: same SPS ID, else same accession
    (identifiers the engine generated), else the message's only step."""
    assert reader.message is not None and reader.profile is not None
    contexts = [context for group in reader.profile.groups(reader.message)
                for context in reader.profile.step_contexts(reader.message, group)]
    keyed = []
    for context in contexts:
        action = ACTIONS.get((context.value(reader.profile.order_control).upper(),
                              context.value(reader.profile.order_status).upper()))
        if action not in ("create", "create_started", "update"):
            continue   # a cancel, discontinue or completion changes the status only
        step_values = reader.profile.step_attributes(context)
        request_values = reader.profile.request_attributes(context)
        keyed.append((context, step_values.get("ScheduledProcedureStepID", ""),
                      request_values.get("AccessionNumber", "")))
    for context, sps_id, accession in keyed:
        if sps_id and sps_id == step.sps_id:
            return context
    for context, sps_id, accession in keyed:
        if not sps_id and accession == step.accession_number:
            return context
    unnamed = [context for context, sps_id, accession in keyed if not sps_id and not accession]
    return unnamed[0] if len(contexts) == 1 and unnamed else None


def _schedule_origins(reader: _MessageReader, context: StepContext) -> dict[str, _Derived]:
    """The station, name, location and modality the rules' ``schedule`` gave this step."""
    assert reader.message is not None and reader.profile is not None
    profile = reader.profile
    derived: dict[str, _Derived] = {}
    for rule in reader.rules.step_rules(reader.message, context.value, lambda: profile.step_modality(context)):
        for key, keyword in extract.SCHEDULE_TO_KEYWORD.items():
            if rule.schedule.get(key):
                derived[keyword] = _Derived(rule.schedule[key], _rule_origin(rule, key, reader.label))
    return derived


def _rule_origin(rule: Rule, key: str, label: str) -> Origin:
    return Origin("rule", f"rule '{rule.name}' {rule.where} (schedule.{key}; {label})")


def _modality_origin(reader: _MessageReader, context: StepContext, mapped: _Derived) -> _Derived:
    """A modality the profile's ``modality_map`` translated is the profile's doing, not the sender's."""
    assert reader.profile is not None
    sent = reader.profile.step_modality(context)
    if not sent or sent == mapped.value:
        return mapped
    where = reader.profile.where.get(f"modality_map.{sent}", "")
    return _Derived(mapped.value, Origin("profile", f"profile '{reader.profile.name}' modality_map {sent} -> "
                                                    f"{mapped.value} {where} (sent {mapped.origin.where})"))


def _apply_message(levels: _Levels, reader: _MessageReader, step: stored.StoredStep) -> None:
    """What this message gives the step, merged as the workflow merges it (patient and procedure
    attributes updated key by key, a step's attributes replaced but for a start it leaves out)."""
    assert reader.message is not None and reader.profile is not None
    profile, message = reader.profile, reader.message
    if message.has_segment("PID"):
        levels.patient.update(_attributes(reader, lambda s: profile.patient_attributes(message, s), "patient"))
        pid = reader.origin("", (message.segment_indexes("PID")[0], field_path("PID-3.1")))
        levels.patient["PatientID"] = _Derived(step.patient_id, pid)
        levels.patient["IssuerOfPatientID"] = _Derived(
            step.issuer, Origin(pid.kind, pid.where.replace("PID-3.1", "PID-3.4", 1)))
    context = _step_context(reader, step)
    if context is None:
        return
    levels.procedure.update(_attributes(reader, lambda s: profile.request_attributes(context, s), "request"))
    new_step = _attributes(reader, lambda s: profile.step_attributes(context, s), "step")
    if "Modality" in new_step:
        new_step["Modality"] = _modality_origin(reader, context, new_step["Modality"])
    new_step.update(_schedule_origins(reader, context))
    start = new_step.pop("ScheduledProcedureStepStartDateTime", None)
    if start is not None:
        date, _, time = str(start.value).partition("T")
        new_step[START_KEYWORDS[0]] = _Derived(date, start.origin)
        new_step[START_KEYWORDS[1]] = _Derived(time, start.origin)
    elif not any(keyword in levels.step for keyword in START_KEYWORDS):
        default = Origin("default", f"MSH-7 message time: the message gives no start ({reader.label})")
        date, time = convert.parse_ts(message.get("MSH-7.1"))
        new_step[START_KEYWORDS[0]], new_step[START_KEYWORDS[1]] = _Derived(date, default), _Derived(time, default)
    else:
        new_step.update({keyword: levels.step[keyword] for keyword in START_KEYWORDS if keyword in levels.step})
    levels.step = new_step


def _generated(keyword: str, config: Config, step: stored.StoredStep) -> Origin:
    """An identifier no message named: the one the engine generated (SWF.md 3.4)."""
    orders = config.orders
    where = {
        "AccessionNumber": f"generated accession (orders.accession_prefix {orders.accession_prefix!r} + yyMMdd + "
                           "daily sequence)",
        "RequestedProcedureID": f"generated from the accession number ({step.accession_number}-<n>)",
        "StudyInstanceUID": (f"generated Study Instance UID (orders.uid_root {orders.uid_root!r})" if orders.uid_root
                             else "generated Study Instance UID (2.25 + UUID: orders.uid_root is empty)"),
        "ScheduledProcedureStepID": f"generated from the requested procedure ID ({step.requested_procedure_id}-<n>)",
        "FillerOrderNumberImagingServiceRequest": f"generated filler order number (orders.filler_prefix "
                                                  f"{orders.filler_prefix!r}, filler mode)",
    }
    return Origin("generated", where.get(keyword, "generated by the engine"))


def _served(step: stored.StoredStep, default_station: str) -> list[tuple[str, str, Any]]:
    """(level, keyword, value) of the worklist item as engine/workflow/worklist.py assembles it."""
    patient = {**step.patient_attributes, "PatientID": step.patient_id, "IssuerOfPatientID": step.issuer}
    procedure = {**step.procedure_attributes, "AccessionNumber": step.accession_number,
                 "RequestedProcedureID": step.requested_procedure_id, "StudyInstanceUID": step.study_instance_uid,
                 "PlacerOrderNumberImagingServiceRequest": step.placer_order_number,
                 "FillerOrderNumberImagingServiceRequest": step.filler_order_number}
    for keyword in procedure:
        patient.pop(keyword, None)
    sps = {**step.step_attributes, "ScheduledProcedureStepID": step.sps_id,
           "ScheduledProcedureStepStatus": step.status,
           "ScheduledStationAETitle": step.station_ae_title or default_station,
           "ScheduledStationName": step.station_name, "ScheduledProcedureStepLocation": step.location,
           "Modality": step.modality}
    return [(level, keyword, value) for level, values in (("patient", patient), ("procedure", procedure),
                                                          ("step", sps))
            for keyword, value in values.items() if value not in ("", None, [])]


IDENTIFIERS = ("AccessionNumber", "RequestedProcedureID", "StudyInstanceUID", "ScheduledProcedureStepID",
               "FillerOrderNumberImagingServiceRequest")
LEVEL_ORDER = {"patient": 0, "procedure": 1, "step": 2}


def explain(step: stored.StoredStep, messages: list[stored.JournaledMessage],
            operator_changes: list[stored.OperatorChange], config: Config, profiles: dict[str, Profile],
            rules: RuleSet) -> Explanation:
    """The explanation of a stored step from the messages that made it (pure: no SQL, no sockets)."""
    ingestor = Ingestor(config, profiles, lambda: rules)
    levels = _Levels()
    notes = [f"explained with the rules in {config.routes_dir} and the profiles in {config.profiles_dir} as they "
             "are now, by running the journaled messages again"]
    labels = []
    for journaled in messages:
        reader = _MessageReader(ingestor, rules, journaled)
        labels.append(f"journal #{journaled.id} {journaled.received_at[:23]} {journaled.message_code} "
                      f"{journaled.control_id}")
        problem = reader.problem()
        if problem:
            notes.append(f"journal #{journaled.id} ({journaled.control_id}) {problem}: its values are not explained")
            continue
        changed = reader.rules_changed()
        if changed:
            notes.append(changed)
        _apply_message(levels, reader, step)
    operator = [change for change in operator_changes if change.detail.startswith(f"SPS {step.sps_id} by the operator")]
    derived = {"patient": levels.patient, "procedure": levels.procedure, "step": levels.step}
    explained = [_explain_one(keyword, value, level, derived[level], step, config, operator)
                 for level, keyword, value in _served(step, config.orders.default_station_ae)]
    explained.sort(key=lambda a: (LEVEL_ORDER[a.level], a.tag or "~", a.keyword))
    if operator:
        notes.append("operator changes: " + "; ".join(f"{c.at[:19]} {c.kind}: {c.detail}" for c in operator))
    return Explanation(step.accession_number, step.sps_id, step.other_sps_ids, tuple(labels), tuple(explained),
                       tuple(notes))


def _explain_one(keyword: str, value: Any, level: str, derived: dict[str, _Derived], step: stored.StoredStep,
                 config: Config, operator: list[stored.OperatorChange]) -> ExplainedAttribute:
    def explained(origin: Origin, rederived: _Derived | None = None) -> ExplainedAttribute:
        differs = rederived is not None and _normal(rederived.value) != _normal(value)
        return ExplainedAttribute(keyword, tag_text(keyword), level, value, origin, differs,
                                  rederived.value if differs and rederived else None)

    found = derived.get(keyword)
    if keyword == "ScheduledProcedureStepStatus":
        return explained(Origin("derived", "the step's workflow status (order messages, MPPS; SWF.md 4.1)"))
    if keyword == "ScheduledStationAETitle" and not step.station_ae_title:
        return explained(Origin("default", "orders.default_station_ae (the step has no station; applied when the "
                                           "worklist is queried)"), found)
    if keyword in ("IssuerOfPatientIDQualifiersSequence", "OtherPatientIDsSequence"):
        return explained(Origin("derived", "from the PID-3 identifier list (primary issuer first)"))
    if found is None and keyword in IDENTIFIERS:
        return explained(_generated(keyword, config, step))
    changed_by = next((c for c in reversed(operator) if _operator_touches(c, keyword)), None)
    if found is None:
        if changed_by is not None:
            return explained(_operator_origin(changed_by))
        return ExplainedAttribute(keyword, tag_text(keyword), level, value,
                                  Origin("derived", "stored; no journaled message gives it now"), differs=True)
    if changed_by is not None and _normal(found.value) != _normal(value):
        return explained(_operator_origin(changed_by), found)
    return explained(found.origin, found)


def _operator_touches(change: stored.OperatorChange, keyword: str) -> bool:
    return change.kind == "SPS rescheduled" and keyword in (*START_KEYWORDS, "ScheduledStationAETitle")


def _operator_origin(change: stored.OperatorChange) -> Origin:
    return Origin("operator", f"{change.kind} at {change.at[:19]} ({change.detail})")


def _normal(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def value_text(value: Any) -> str:
    """A value as one table cell: code items as value^scheme^meaning, lists joined by ``\\``."""
    if isinstance(value, list):
        return "\\".join(value_text(item) for item in value)
    if isinstance(value, dict):
        if "CodeValue" in value:
            return "^".join(str(value.get(k, "")) for k in ("CodeValue", "CodingSchemeDesignator", "CodeMeaning"))
        return " ".join(f"{k}={value_text(v)}" for k, v in value.items())
    return str(value)


def explain_step(store: "Store", accession_number: str, sps_id: str | None, *, config: Config,
                 profiles: dict[str, Profile], rules: RuleSet) -> Explanation | None:
    """The explanation of the step (the accession's first unless ``sps_id``), or None when there is none.

    The one entry point for the CLI and the HTTP API: one read transaction, then the pure re-derivation."""
    def read(txn: "Transaction") -> tuple[Any, ...] | None:
        step = stored.stored_step(txn, accession_number, sps_id)
        if step is None:
            return None
        return step, stored.step_messages(txn, step), stored.operator_changes(txn, step)

    found = store.read(read)
    if found is None:
        return None
    step, messages, changes = found
    return explain(step, messages, changes, config, profiles, rules)
