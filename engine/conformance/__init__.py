"""The DICOM Conformance Statement (PS3.2 layout) and HL7 summary, built from the engine's own tables:
the presentation contexts come from the AE the engine builds (dicom/ae.py ``build_server``), matching keys
from the store's query tables, HL7 versions and triggers from the config and the ingest tables.  Never
hand-kept: ``swf conformance --out docs/conformance.md`` regenerates it and a test fails when it is stale."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pydicom.uid import UID

from ..config import Config


@dataclass(frozen=True)
class ContextRow:
    sop_class: str
    name: str
    role: str                              # the engine's role: SCP
    transfer_syntaxes: tuple[str, ...]     # in preference order
    role_selection: bool                   # SCP/SCU role selection accepted (C-GET sub-operations)


@dataclass(frozen=True)
class ScuRow:
    """One outbound use of the engine's AE (dicom/scu_contexts.py SCU_USES)."""
    use: str
    sop_classes: tuple[str, ...]           # empty: the storage SOP class of each instance sent
    operations: tuple[str, ...]
    role: str                              # the engine's role: SCU, or SCP by role selection
    transfer_syntaxes: tuple[str, ...]     # the proposal in preference order; empty: per instance
    per_instance: str                      # how an instance's syntaxes follow from its stored one
    association: str
    retries: str


@dataclass
class Statement:
    ae_title: str
    implementation_class_uid: str
    implementation_version_name: str
    max_associations: int
    max_pdu_bytes: int
    scp_contexts: list[ContextRow] = field(default_factory=list)
    scu_contexts: list[ScuRow] = field(default_factory=list)
    sections: dict[str, list[str]] = field(default_factory=dict)   # section title -> lines (markdown)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _name(uid: str) -> str:
    return UID(uid).name if UID(uid).name != uid else uid


def build(config: Config) -> Statement:
    """Build the statement for this configuration (the committed docs use the defaults)."""
    from ..dicom.ae import DicomContext, build_server
    from ..dicom.directory import AEDirectory
    from pynetdicom import evt

    server = build_server(DicomContext(config, None, AEDirectory.from_config(config.dicom.aes,  # type: ignore[arg-type]
                                                                             config.dicom.allow_any_ae)))
    ae = server.ae
    statement = Statement(config.dicom.ae_title, str(ae.implementation_class_uid), str(ae.implementation_version_name),
                          ae.maximum_associations, ae.maximum_pdu_size)
    for context in ae.supported_contexts:
        uid = str(context.abstract_syntax)
        statement.scp_contexts.append(ContextRow(uid, _name(uid), "SCP", tuple(str(ts) for ts in context.transfer_syntax),
                                                 bool(context.scp_role and context.scu_role)))
    statement.scu_contexts = _scu_rows(config)
    bound = {event for event, _handler in server.handlers}
    statement.sections = _sections(config, server, bound, evt)
    return statement


def _retries(config: Config, keys: tuple[str, ...]) -> str:
    if not keys:
        return "none"
    first, longest, give_up = (getattr(config.dicom, key) for key in keys)
    return (f"first after {first:g} s, doubling up to {longest:g} s, parked as dead after {give_up:g} h "
            f"(dicom.{', dicom.'.join(keys)})")


def _scu_rows(config: Config) -> list[ScuRow]:
    from ..dicom.scu_contexts import SCU_USES

    return [ScuRow(use.use, use.sop_classes, use.operations, use.engine_role, tuple(use.syntaxes_for()) if not
                   use.per_instance else (), use.per_instance, use.association, _retries(config, use.retry_keys))
            for use in SCU_USES]


def _sections(config: Config, server: Any, bound: set, evt: Any) -> dict[str, list[str]]:
    from ..dicom.services.worklist import STEP_MATCH_KEYS, TOP_MATCH_KEYS
    from ..store.worklist_query import START_DATE, START_TIME, STEP_KEYS, TOP_LEVEL_KEYS, CODE_KEYS
    from ..store.qr_query import LEVELS, MATCH_KEYS, UNIQUE_KEY
    from ..workflow.availability import RETURN_KEYS
    from ..workflow import mpps, storage, commitment
    from ..dicom.services.mpps import STATUS_OF
    from ..workflow.ingest import ORDER_TRIGGERS, SUPPORTED_MESSAGES
    from ..workflow.registration import CREATE_OR_UPDATE, MERGE
    from ..hl7.message import HL7_CHARSET_CODECS
    from ..hl7.profiles import load_profiles
    from ..outbound.destinations import SENDS
    from ..audit_trail import codes

    dicom = config.dicom
    extended = [event.name for event in (evt.EVT_SOP_EXTENDED, evt.EVT_SOP_COMMON, evt.EVT_ASYNC_OPS,
                                         evt.EVT_USER_ID) if event in bound]
    sections: dict[str, list[str]] = {}
    sections["Services (application data flow)"] = [f"- {service.name}" for service in server.services]
    sections["Extended negotiation"] = [
        f"- answered: {', '.join(extended)}" if extended else
        "- no SOP Class (Common) Extended Negotiation, asynchronous operations window or user identity "
        "negotiation is answered: relational queries are not supported (hierarchical matching only)."]
    kinds = {**{k: v[1] for k, v in TOP_LEVEL_KEYS.items()}, **{f"ScheduledProcedureStepSequence>{k}": v[1]
                                                                for k, v in STEP_KEYS.items()}}
    kinds[f"ScheduledProcedureStepSequence>{START_DATE}"] = "date (range, combined with time)"
    kinds[f"ScheduledProcedureStepSequence>{START_TIME}"] = "time (range, combined with date)"
    for key in CODE_KEYS:
        kinds[f"RequestedProcedureCodeSequence>{key}"] = "text"
    sections["Modality Worklist: matching keys"] = [f"| {key} | {kind} |" for key, kind in kinds.items()]
    sections["Modality Worklist: return keys"] = [
        "- every key of the request comes back (value or zero length); items lacking a requested Type 1 "
        "value are not offered; keys given a value but not matched get Pending 0xFF01.",
        f"- response character set: dicom.worklist_charset ({dicom.worklist_charset}) or the AE's charset.",
        f"- answer limit: {_limit(dicom.worklist_max_answers)} (dicom.worklist_max_answers)"]
    sections["Query/Retrieve"] = [f"- models and levels: " + "; ".join(
        f"{model} root: {', '.join(levels)}" for model, levels in LEVELS.items()),
        "- unique keys: " + ", ".join(f"{level} {key}" for level, key in UNIQUE_KEY.items())] + [
        f"| {key} | {level} | {kind} |" for key, (level, _column, kind) in MATCH_KEYS.items()] + [
        f"- return keys at {level}: {', '.join(keys)}" for level, keys in RETURN_KEYS.items()] + [
        f"- C-FIND answer limit: {_limit(dicom.query_max_answers)} (dicom.query_max_answers)"]
    sections["MPPS"] = [f"- required at N-CREATE: {', '.join(mpps.REQUIRED_AT_CREATE)}",
                        f"- Type 2 at N-CREATE: {', '.join(mpps.TYPE2_AT_CREATE)}",
                        f"- not settable by N-SET: {', '.join(mpps.NOT_SETTABLE)}",
                        f"- required when final: {', '.join(mpps.REQUIRED_WHEN_FINAL)}",
                        f"- statuses: {', '.join(mpps.PPS_STATUSES)}",
                        "- refusals: " + ", ".join(f"{refusal.value} 0x{code:04X}" for refusal, code in STATUS_OF.items())]
    sections["Storage"] = [f"- duplicate policy: {dicom.duplicate_policy} (one of {', '.join(storage.DUPLICATE_POLICIES)})",
                           f"- largest instance: {dicom.max_instance_bytes} bytes; stored as received, no transcoding"]
    sections["Storage Commitment"] = [
        "- push model; the report goes on the N-ACTION association when ready within "
        f"dicom.commitment_same_association_wait ({dicom.commitment_same_association_wait} s), else on a new "
        "association with SCP/SCU role selection (engine SCP)",
        "- failure reasons: " + ", ".join(f"0x{code:04X} {text}" for code, text in commitment.FAILURE_REASONS.items())]
    from ..workflow import instance_availability as ian
    from pynetdicom import DEFAULT_TRANSFER_SYNTAXES
    sections["Instance Availability Notification (SCU)"] = [
        f"- {_name(ian.INSTANCE_AVAILABILITY_NOTIFICATION)} {ian.INSTANCE_AVAILABILITY_NOTIFICATION}: SCU, N-CREATE; "
        f"transfer syntaxes proposed: {' '.join(DEFAULT_TRANSFER_SYNTAXES)}",
        f"- receivers: dicom.notify_availability_to ({', '.join(dicom.notify_availability_to) or 'none'}), in order "
        "per receiver, retried and parked dead by the forwarding rules (dicom.forward_*)",
        f"- one per study per stable point (studies.quiet_seconds {config.studies.quiet_seconds:g} s without a new "
        "instance, or a storage commitment of its instances that succeeded), and one when an MPPS discontinued "
        "with 110514 withdraws instances of a study after its stable point",
        f"- every stored instance of the study, Instance Availability {ian.ONLINE} or {ian.UNAVAILABLE} (withdrawn "
        f"by 110514), Retrieve AE Title {dicom.ae_title}; Referenced Performed Procedure Step Sequence: the "
        "study's newest MPPS, or empty"]
    sections["Security"] = [
        f"- DICOM TLS port: {dicom.tls_port or 'none'}; TLS min version {dicom.tls.min_version}, ciphers {dicom.tls.ciphers}",
        f"- ATNA audit: {config.audit.repository or 'off'}; events: " + ", ".join(
            f"{code.code} {code.meaning}" for code in vars(codes).values()
            if isinstance(code, codes.Code) and code.system == "DCM" and "110100" <= code.code <= "110119")]
    profiles = load_profiles(config.profiles_dir)
    sections["HL7"] = [
        f"- versions accepted: {', '.join(config.hl7.accepted_versions)}; processing IDs: "
        f"{', '.join(config.hl7.accepted_processing_ids)}",
        "- orders: " + ", ".join(f"{kind}^{t}" for kind, triggers in sorted(ORDER_TRIGGERS.items()) for t in sorted(triggers)),
        f"- ADT create/update: {', '.join(sorted(CREATE_OR_UPDATE))}; merge: {', '.join(sorted(MERGE))}",
        f"- message types: {', '.join(sorted(SUPPORTED_MESSAGES))}",
        "- ACK: original mode AA/AE/AR; enhanced mode (MSH-15 AL/NE/ER/SU) CA/CE/CR",
        f"- MSH-18 character sets: {', '.join(HL7_CHARSET_CODECS)}",
        "- outbound: " + "; ".join(f"{sends}: {', '.join(sorted(kinds_))}" for sends, kinds_ in SENDS.items())] + [
        f"- profile {name} ({', '.join(profile.messages)}): " + ", ".join(
            f"{rule.keyword}<-{'/'.join(rule.paths)}" for rule in (*profile.patient, *profile.request, *profile.step))
        for name, profile in sorted(profiles.items())]
    return sections


def _limit(most: int) -> str:
    return (f"the first {most} matches, then 0xA700 (Refused: Out of Resources) with an Error Comment naming the "
            "limit and the match count" if most else "none (every match is answered)")


def render_markdown(statement: Statement) -> str:
    """The statement as markdown, PS3.2 order: overview, networking, SOP specific, security, HL7."""
    lines = ["# DICOM Conformance Statement", "",
             "Generated by `swf conformance --out docs/conformance.md` from the engine's own tables; do not edit.", "",
             "## Contents", ""] + [f"- {title}" for title in ["AE specification", "Presentation contexts (SCP)",
                                                                "Presentation contexts (SCU)", *statement.sections]] + [
             "", "## AE specification", "",
             f"- AE title: {statement.ae_title}", f"- implementation class UID: {statement.implementation_class_uid}",
             f"- implementation version name: {statement.implementation_version_name}",
             f"- maximum associations: {statement.max_associations}",
             f"- maximum PDU size received: {statement.max_pdu_bytes}", "",
             "## Presentation contexts (SCP)", "", "| SOP class | UID | role | transfer syntaxes (preference order) | role selection |",
             "|---|---|---|---|---|"]
    for row in statement.scp_contexts:
        lines.append(f"| {row.name} | {row.sop_class} | {row.role} | {' '.join(row.transfer_syntaxes)} | "
                     f"{'yes' if row.role_selection else 'no'} |")
    lines += _scu_markdown(statement)
    for title, body in statement.sections.items():
        lines += ["", f"## {title}", ""] + body
    return "\n".join(lines) + "\n"


DIMSE_REQUESTS = ("C-ECHO", "C-STORE", "C-FIND", "C-MOVE", "C-GET", "N-EVENT-REPORT", "N-GET", "N-SET", "N-ACTION",
                  "N-CREATE", "N-DELETE")


def _scu_markdown(statement: Statement) -> list[str]:
    """The SCU side: what the engine proposes when it is the requestor, and how it associates."""
    lines = ["", "## Presentation contexts (SCU)", "",
             f"The engine calls as {statement.ae_title} (dicom.ae_title), towards known AEs only (dicom.aes: host, "
             "port, and TLS when the entry asks for it).", "",
             "| use | SOP classes | DIMSE | engine role | transfer syntaxes proposed (preference order) | association "
             "| retries |", "|---|---|---|---|---|---|---|"]
    for row in statement.scu_contexts:
        classes = ", ".join(f"{_name(uid)} {uid}" for uid in row.sop_classes) or "the stored SOP class of each instance"
        syntaxes = " ".join(row.transfer_syntaxes) or f"one context per SOP class and stored syntax: {row.per_instance}"
        lines.append(f"| {row.use} | {classes} | {', '.join(row.operations)} | {row.role} | {syntaxes} | "
                     f"{row.association} | {row.retries} |")
    used = {operation for row in statement.scu_contexts for operation in row.operations}
    lines += ["", f"- never sent as SCU: {', '.join(r for r in DIMSE_REQUESTS if r not in used)}"]
    return lines
