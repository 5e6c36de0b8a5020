"""The routing rules language (``routes/*.yaml``): loading with file:line problems, and evaluation.

A rule has a ``name``, a ``when`` (conditions on the message type and any field path) and actions.
Rules are evaluated in order (files by name, rules in file order); the first match wins unless the
rule says ``continue: true``, in which case its actions are kept and evaluation goes on.  A rule that
rejects or drops always ends the evaluation.  routes/README.md documents the language for users.

Rules files are read with ``text_scalars``: every plain YAML value is text (``0123`` stays ``0123``,
``NO`` stays ``NO``); only ``true``/``false`` and ``null``/``~``/empty are special.

The condition ``modality`` is "this step's modality": the field the message's mapping profile reads the
Modality from (OBR-24 in v2.3.1 ORM, IPC-5.1 else OBR-24 in v2.5.1 OMI), so one room rule serves both.  The
caller (engine/workflow/ingest.py) knows the profile and passes a reader; without one (a rules set used on
its own) ``FALLBACK_MODALITY_PATHS`` are read.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from ..domain.decision import Decision
from ..hl7.message import FieldPath, Message, field_path
from ..outbound.destinations import Destination, parse_destination
from .stations import NO_STATIONS, StationPolicies, StationPolicy, parse_stations
from ..yamlfile import LineDict, LineList, YamlProblem, line_of, load_yaml

RULE_KEYS = {"name", "when", "mode", "profile", "schedule", "set", "map", "reject", "drop", "outbound", "continue"}
# Scheduled Procedure Step attributes a rule may fill (engine/hl7/extract.py SCHEDULE_TO_KEYWORD).
# There is no ``start``: the start date/time comes from the message (profile) or, without one, MSH-7.
SCHEDULE_KEYS = {"station_ae", "station_name", "location", "modality"}
MODES = {"broker", "filler"}
SPECIAL_CONDITIONS = {"message", "version", "modality"}
# ``modality`` without a profile to ask: the fields the shipped profiles read the modality from.
FALLBACK_MODALITY_PATHS = ("IPC-5.1", "OBR-24")
REJECT_KEYS = {"code", "reason"}
REJECT_CODES = {"AE", "AR"}
# set/map may not touch the delimiters (MSH-1/2) nor the control ID the ACK must echo (MSH-10).
PROTECTED_FIELDS = {("MSH", 1), ("MSH", 2), ("MSH", 10)}

_MODALITY = re.compile(r"^[A-Z0-9 _]{1,16}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")

Matcher = Callable[[str], bool]


def rule_files(directory: Path | str) -> list[Path]:
    """The rules files of a folder in evaluation order: ``*.yaml`` and ``*.yml`` sorted by file name.

    Hidden files (editor lock files such as ``.#10-senders.yaml``) are ignored.
    """
    directory = Path(directory)
    files = [p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and not p.name.startswith(".")
             and p.is_file()] if directory.is_dir() else []
    return sorted(files, key=lambda p: p.name)


def _glob(text: str) -> re.Pattern[str]:
    """``*`` any text, ``?`` one character; everything else (``[``, ``.`` ...) is literal."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text), re.DOTALL)


def compile_matcher(spec: Any, file: str, line: int) -> Matcher:
    """Exact text, glob (``*``/``?``), ``re:`` regular expression, ``{not: ...}``, null or a list (any of)."""
    if isinstance(spec, list):
        if not spec:
            raise YamlProblem(file, line, "an empty list never matches; remove the condition or list values")
        matchers = [compile_matcher(item, file, line_of(spec, index, line)) for index, item in enumerate(spec)]
        if all(_is_exact(item) for item in spec):
            texts = frozenset(str(item) for item in spec)   # every rule runs for every message: a set lookup
            return lambda value: value in texts
        return lambda value: any(m(value) for m in matchers)
    if isinstance(spec, dict):
        if set(spec) != {"not"}:
            raise YamlProblem(file, line, f"a condition mapping may only hold 'not', got {sorted(map(str, spec))}")
        inner = compile_matcher(spec["not"], file, line_of(spec, "not", line))
        return lambda value: not inner(value)
    if spec is None:
        return lambda value: value == ""
    if isinstance(spec, bool):
        raise YamlProblem(file, line, "a condition value must be text, a list or {not: ...}, not true/false "
                                      "(quote it: 'true')")
    text = str(spec)
    if text.startswith("re:"):
        try:
            pattern = re.compile(text[3:])
        except re.error as exc:
            raise YamlProblem(file, line, f"bad regular expression {text[3:]!r}: {exc}") from None
        return lambda value: pattern.search(value) is not None
    if "*" in text or "?" in text:
        glob = _glob(text)
        return lambda value: glob.fullmatch(value) is not None
    return lambda value: value == text


def _is_exact(spec: Any) -> bool:
    """A condition value that matches only itself (no glob, regular expression, ``not`` or null)."""
    if isinstance(spec, (list, dict, bool)) or spec is None:
        return False
    text = str(spec)
    return not text.startswith("re:") and "*" not in text and "?" not in text


@dataclass
class Rule:
    name: str
    file: str
    line: int
    conditions: list[tuple[str, Matcher]]
    mode: str = ""
    profile: str = ""
    schedule: dict[str, str] = field(default_factory=dict)
    set_fields: dict[str, str] = field(default_factory=dict)
    map_fields: dict[str, dict[str, str]] = field(default_factory=dict)
    reject: dict[str, str] = field(default_factory=dict)
    drop: str = ""
    outbound: list[str] = field(default_factory=list)
    keep_going: bool = False
    lines: dict[str, int] = field(default_factory=dict)  # line of each rule key, for later checks
    condition_texts: list[str] = field(default_factory=list)  # each condition as written, for listings

    def matches(self, message: Message, lookup: Callable[[str], str] | None = None,
                modality: Callable[[], str] | None = None) -> bool:
        """Whether every condition holds; ``lookup`` reads field paths in a narrower scope (one order step),
        ``modality`` reads the step's modality where its profile says."""
        read = lookup if lookup is not None else message.get
        for key, matcher in self.conditions:
            if key == "message":
                value = message.message_code
            elif key == "version":
                value = message.version
            elif key == "modality":
                value = modality() if modality is not None else next(
                    (text for text in (read(path).strip() for path in FALLBACK_MODALITY_PATHS) if text), "")
            else:
                value = read(key)
            if not matcher(value.strip()):
                return False
        return True

    def line_of(self, key: str) -> int:
        return self.lines.get(key, self.line)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class RuleSet:
    rules: list[Rule]
    destinations: dict[str, Destination]
    files: list[str]
    stations: StationPolicies = NO_STATIONS   # what images do on rooms without MPPS (engine/rules/stations.py)

    def evaluate(self, message: Message, modality: Callable[[str], str] | None = None) -> Decision:
        """Apply ``set``/``map`` actions to ``message`` in place and return the decision.

        Later matching rules (after ``continue: true``) override ``mode``, ``profile`` and each
        ``schedule`` key of earlier ones; ``outbound`` destinations accumulate.  ``modality(profile)`` reads
        the first step's modality with the profile chosen so far ("" = the one for the message type).
        """
        decision = Decision()
        for rule in self.rules:
            if not rule.matches(message, None, (lambda: modality(decision.profile)) if modality else None):
                continue
            decision.rules.append(rule.name)
            decision.rule_places.append(rule.where)
            for path, value in rule.set_fields.items():
                message.set(path, value)
            for path, table in rule.map_fields.items():
                fp = field_path(path)
                for index in message.segment_indexes(fp.segment):
                    current = message.get(fp, index).strip()
                    if current in table:
                        message.set(path, table[current], index)
            decision.mode = rule.mode or decision.mode
            decision.profile = rule.profile or decision.profile
            decision.schedule.update(rule.schedule)
            for name in rule.outbound:
                if name not in decision.outbound:
                    decision.outbound.append(name)
            if rule.reject:
                decision.reject = dict(rule.reject)
                decision.reject_rule = rule.name
                break
            if rule.drop:
                decision.drop = rule.drop
                break
            if not rule.keep_going:
                break
        return decision


    def schedule_for(self, message: Message, lookup: Callable[[str], str],
                     modality: Callable[[], str] | None = None) -> dict[str, str]:
        """The ``schedule`` actions of the rules matching one order step, whose fields ``lookup`` reads and
        whose modality ``modality`` reads (as the message's profile defines).

        A message may hold several orders (one CT, one CR): each is routed by its own OBR/IPC fields.
        ``set``/``map``/``reject``/``drop`` were applied once for the whole message by ``evaluate``.
        """
        schedule: dict[str, str] = {}
        for rule in self.step_rules(message, lookup, modality):
            schedule.update(rule.schedule)
        return schedule

    def step_rules(self, message: Message, lookup: Callable[[str], str],
                   modality: Callable[[], str] | None = None) -> list[Rule]:
        """The rules whose ``schedule`` applies to one order step, in order (later ones win a key): what
        ``schedule_for`` merges, and what ``swf explain`` names."""
        matched: list[Rule] = []
        for rule in self.rules:
            if not rule.matches(message, lookup, modality):
                continue
            matched.append(rule)
            if rule.reject or rule.drop or not rule.keep_going:
                break
        return matched


def _is_text(value: Any) -> bool:
    return isinstance(value, str)


def _parse_when(raw: LineDict, rule: Rule, file: str, problems: list[YamlProblem]) -> None:
    when = raw.get("when")
    if when is None:
        return  # no conditions: the rule matches every message
    if not isinstance(when, dict):
        problems.append(YamlProblem(file, line_of(raw, "when"), "'when' must be a mapping of conditions"))
        return
    for key, spec in when.items():
        key_line = line_of(when, key)
        key = str(key)
        if key not in SPECIAL_CONDITIONS:
            try:
                FieldPath.parse(key)
            except ValueError as exc:
                problems.append(YamlProblem(file, key_line, f"condition {exc}; or use 'message' / 'version'"))
                continue
        try:
            rule.conditions.append((key, compile_matcher(spec, file, key_line)))
        except YamlProblem as problem:
            problems.append(problem)
            continue
        rule.condition_texts.append(f"{key}: {condition_text(spec)}")


def condition_text(spec: Any) -> str:
    """A condition value as an engineer wrote it, on one line (``[MR, NMR]``, ``not null``)."""
    if isinstance(spec, list):
        return "[" + ", ".join(condition_text(item) for item in spec) + "]"
    if isinstance(spec, dict):
        return "not " + condition_text(spec.get("not"))
    return "null" if spec is None else str(spec)


def _parse_schedule(raw: LineDict, rule: Rule, file: str, problems: list[YamlProblem]) -> None:
    schedule = raw["schedule"]
    if not isinstance(schedule, dict):
        problems.append(YamlProblem(file, line_of(raw, "schedule"), "'schedule' must be a mapping"))
        return
    for key, value in schedule.items():
        line = line_of(schedule, key)
        key = str(key)
        if key not in SCHEDULE_KEYS:
            hint = (" (a rule cannot set the start: it comes from the message, ORC-7.4/OBR-27.4/TQ1-7, else MSH-7)"
                    if key == "start" else "")
            problems.append(YamlProblem(file, line, f"unknown schedule key {key!r}; allowed: "
                                                    f"{', '.join(sorted(SCHEDULE_KEYS))}{hint}"))
            continue
        if not _is_text(value) or not value.strip():
            problems.append(YamlProblem(file, line, f"schedule.{key} must be a non-empty text value"))
            continue
        if key == "modality":
            if not _MODALITY.match(value):
                problems.append(YamlProblem(file, line, f"schedule.modality {value!r}: a DICOM modality code is "
                                                        "1-16 upper-case letters, digits, '_' or space (CT, MR ...)"))
                continue
        else:
            limit = 64 if key == "location" else 16
            if len(value) > limit:
                problems.append(YamlProblem(file, line, f"schedule.{key} longer than {limit} characters"))
                continue
            if _CONTROL.search(value):
                problems.append(YamlProblem(file, line, f"schedule.{key} may not hold '\\' or control characters"))
                continue
        rule.schedule[key] = value


def _parse_field_block(raw: LineDict, key: str, rule: Rule, file: str, problems: list[YamlProblem]) -> None:
    block = raw[key]
    if not isinstance(block, dict):
        problems.append(YamlProblem(file, line_of(raw, key), f"'{key}' must be a mapping of field paths"))
        return
    for path, value in block.items():
        line = line_of(block, path)
        path = str(path)
        try:
            fp = FieldPath.parse(path)
        except ValueError as exc:
            problems.append(YamlProblem(file, line, str(exc)))
            continue
        if (fp.segment, fp.field) in PROTECTED_FIELDS:
            problems.append(YamlProblem(file, line, f"{key} may not change {fp.segment}-{fp.field} "
                                                    "(delimiters and the control ID the ACK echoes)"))
            continue
        if key == "set":
            if value is not None and not _is_text(value):
                problems.append(YamlProblem(file, line, f"set.{path} must be a text value (null = empty)"))
                continue
            rule.set_fields[path] = value or ""
            continue
        if not isinstance(value, dict) or not value:
            problems.append(YamlProblem(file, line, "a map entry must be {from: to, ...}"))
            continue
        table: dict[str, str] = {}
        for source, target in value.items():
            if target is not None and not _is_text(target):
                problems.append(YamlProblem(file, line_of(value, source),
                                            f"map.{path}: {source!r} must map to a text value (null = empty)"))
                continue
            table[str(source)] = target or ""
        rule.map_fields[path] = table


def _parse_reject(raw: LineDict, rule: Rule, file: str, problems: list[YamlProblem]) -> None:
    reject = raw["reject"]
    line = line_of(raw, "reject")
    if _is_text(reject):
        reject = {"code": "AE", "reason": reject}
    if not isinstance(reject, dict) or not _is_text(reject.get("reason")) or not reject["reason"].strip():
        problems.append(YamlProblem(file, line, "reject needs a reason: {code: AE|AR, reason: ...} or a text"))
        return
    for key in reject:
        if key not in REJECT_KEYS:
            problems.append(YamlProblem(file, line_of(reject, key, line), f"unknown reject key {key!r}; "
                                                                          "allowed: code, reason"))
    code = reject.get("code", "AE")
    if code not in REJECT_CODES:
        problems.append(YamlProblem(file, line_of(reject, "code", line), f"reject code must be AE or AR, not {code!r}"))
        return
    rule.reject = {"code": code, "reason": reject["reason"]}


def _parse_rule(raw: Any, file: str, line: int, problems: list[YamlProblem]) -> Rule | None:
    """The rule, also when it has problems (they are appended); None when it is not a mapping."""
    if not isinstance(raw, LineDict):
        problems.append(YamlProblem(file, line, "a rule must be a mapping with a 'name', conditions under 'when' "
                                                "and actions"))
        return None
    for key in raw:
        if key not in RULE_KEYS:
            problems.append(YamlProblem(file, line_of(raw, key),
                                        f"unknown rule key {key!r}; allowed: {', '.join(sorted(RULE_KEYS))}"))
    name = raw.get("name")
    if not _is_text(name) or not name.strip():
        problems.append(YamlProblem(file, line_of(raw, "name"), "rule has no 'name' (a text)"))
        name = "?"
    rule = Rule(name=name, file=file, line=raw.line, conditions=[],
                lines={str(key): line_of(raw, key) for key in raw})
    _parse_when(raw, rule, file, problems)
    if "mode" in raw:
        mode = raw["mode"]
        if not _is_text(mode) or mode not in MODES:     # a list or mapping is unhashable: test the type first
            problems.append(YamlProblem(file, line_of(raw, "mode"), f"mode must be broker or filler, not {mode!r}"))
        else:
            rule.mode = mode
    if "profile" in raw:
        profile = raw["profile"]
        if not _is_text(profile) or not profile.strip():
            problems.append(YamlProblem(file, line_of(raw, "profile"), "profile must be a profile name"))
        else:
            rule.profile = profile
    if "schedule" in raw:
        _parse_schedule(raw, rule, file, problems)
    for key in ("set", "map"):
        if key in raw:
            _parse_field_block(raw, key, rule, file, problems)
    if "reject" in raw:
        _parse_reject(raw, rule, file, problems)
    if "drop" in raw:
        drop = raw["drop"]
        if drop is True:
            rule.drop = f'dropped by rule "{rule.name}"'
        elif _is_text(drop) and drop.strip():
            rule.drop = drop
        elif drop is not False:
            problems.append(YamlProblem(file, line_of(raw, "drop"), "drop must be true, false or a reason (text)"))
    if "outbound" in raw:
        outbound = raw["outbound"]
        outbound = [outbound] if _is_text(outbound) else outbound
        if not isinstance(outbound, list) or not all(_is_text(d) and d for d in outbound):
            problems.append(YamlProblem(file, line_of(raw, "outbound"),
                                        "outbound must be a destination name or a list of names"))
        else:
            rule.outbound = list(outbound)
    if "continue" in raw:
        if not isinstance(raw["continue"], bool):
            problems.append(YamlProblem(file, line_of(raw, "continue"), "continue must be true or false"))
        rule.keep_going = raw["continue"] is True
    if "reject" in raw and "drop" in raw and raw["drop"] is not False:
        problems.append(YamlProblem(file, raw.line, "a rule cannot both reject and drop"))
    elif rule.keep_going and ("reject" in raw or rule.drop):
        problems.append(YamlProblem(file, line_of(raw, "continue"),
                                    "a rule that rejects or drops ends the evaluation; 'continue: true' cannot apply"))
    return rule


def load_ruleset(directory: Path | str, profile_names: set[str] | None = None) -> RuleSet:
    """Load every ``*.yaml``/``*.yml`` of ``directory``; all problems are raised together (ExceptionGroup).

    With ``profile_names``, a rule naming another profile is a problem too (reported with the others).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ExceptionGroup("rules folder missing", [YamlProblem(str(directory), 0, "rules folder does not exist")])
    return _load(str(directory), [(str(path), None) for path in rule_files(directory)], profile_names)


def load_ruleset_texts(texts: Mapping[str, str], profile_names: set[str] | None = None,
                       origin: str = "posted rules") -> RuleSet:
    """A rules set posted as ``{file name: YAML text}`` (the API's check and dry-run), read as a folder holding
    those files would be: in file-name order, the same problems with the same file:line."""
    names = sorted(name for name in texts if Path(name).suffix in (".yaml", ".yml") and not name.startswith("."))
    problems = [YamlProblem(name, 0, "not a rules file name (NAME.yaml or NAME.yml, not hidden)")
                for name in sorted(texts) if name not in names]
    if not names and not problems:
        problems.append(YamlProblem(origin, 0, "no rules file"))
    if problems:
        raise ExceptionGroup(f"{len(problems)} problem(s) in {origin}", problems)
    return _load(origin, [(name, texts[name]) for name in names], profile_names)


def _load(origin: str, sources: list[tuple[str, str | None]], profile_names: set[str] | None) -> RuleSet:
    """The rules of the files in order; each source is a file name and its text (None: read the file)."""
    problems: list[YamlProblem] = []
    rules: list[Rule] = []  # every parsed rule: names of destinations and profiles are checked in all of them
    destinations: dict[str, Any] = {}
    destination_lines: dict[str, tuple[str, int]] = {}
    stations: list[StationPolicy] = []
    files = [file for file, _ in sources]
    for file, text in sources:
        try:
            data = load_yaml(file, text, text_scalars=True)
        except YamlProblem as problem:
            problems.append(problem)
            continue
        if data is None:
            continue
        if not isinstance(data, LineDict):
            problems.append(YamlProblem(file, 1, "a rules file must be a mapping with 'rules:', 'destinations:'"
                                                 " and/or 'stations:'"))
            continue
        for key in data:
            if key not in ("rules", "destinations", "stations"):
                problems.append(YamlProblem(file, line_of(data, key), f"unknown top-level key {key!r}; use 'rules', "
                                                                      "'destinations' or 'stations'"))
        stations.extend(parse_stations(data.get("stations"), file, line_of(data, "stations"), compile_matcher,
                                       problems))
        block = data.get("destinations")
        if block is None:
            block = {}
        if not isinstance(block, dict):
            problems.append(YamlProblem(file, line_of(data, "destinations"), "'destinations' must be a mapping"))
            block = {}
        for name, spec in block.items():
            line = line_of(block, name)
            name = str(name)
            if name in destinations:
                other = destination_lines[name]
                problems.append(YamlProblem(file, line, f"destination {name!r} already defined at {other[0]}:{other[1]}"))
                continue
            try:
                destinations[name] = parse_destination(name, spec, file, line)
            except YamlProblem as problem:
                problems.append(problem)
                continue
            destination_lines[name] = (file, line)
        entries = data.get("rules")
        if entries is None:
            continue
        if not isinstance(entries, LineList):
            problems.append(YamlProblem(file, line_of(data, "rules"), "'rules' must be a list"))
            continue
        for index, raw in enumerate(entries):
            rule = _parse_rule(raw, file, entries.line_of(index), problems)
            if rule is not None:
                rules.append(rule)
    for rule in rules:
        for name in rule.outbound:
            if name not in destinations:
                problems.append(YamlProblem(rule.file, rule.line_of("outbound"),
                                            f"rule {rule.name!r} names unknown destination {name!r}"))
    if profile_names is not None:
        problems.extend(check_profiles(RuleSet(rules, destinations, files), profile_names))
    if problems:
        raise ExceptionGroup(f"{len(problems)} problem(s) in {origin}", problems)
    return RuleSet(rules, destinations, files, StationPolicies(tuple(stations)))  # no problem at all: every rule is complete


def check_profiles(ruleset: RuleSet, profile_names: set[str]) -> list[YamlProblem]:
    """Rules that name a profile that does not exist (reported at the rule's ``profile:`` line)."""
    return [YamlProblem(rule.file, rule.line_of("profile"), f"rule {rule.name!r} names unknown profile {rule.profile!r}"
                        + (f"; known: {', '.join(sorted(profile_names))}" if profile_names else ""))
            for rule in ruleset.rules if rule.profile and rule.profile not in profile_names]
