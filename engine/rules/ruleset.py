"""The routing rules language (``routes/*.yaml``): loading with file:line problems, and evaluation.

A rule has a ``name``, a ``when`` (conditions on the message type and any field path) and actions.
Rules are evaluated in order (files by name, rules in file order); the first match wins unless the
rule says ``continue: true``, in which case its actions are kept and evaluation goes on.
routes/README.md documents the language for users.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..hl7.message import FieldPath, Message, field_path
from ..yamlfile import LineDict, LineList, YamlProblem, line_of, load_yaml

RULE_KEYS = {"name", "when", "mode", "profile", "schedule", "set", "map", "reject", "drop", "outbound", "continue"}
SCHEDULE_KEYS = {"station_ae", "station_name", "location", "modality", "start"}
MODES = {"broker", "filler"}
SPECIAL_CONDITIONS = {"message", "version"}


Matcher = Callable[[str], bool]


def compile_matcher(spec: Any, file: str, line: int) -> Matcher:
    """Exact text, glob (``*``/``?``), ``re:`` regular expression, ``{not: ...}`` or a list (any of)."""
    if isinstance(spec, list):
        matchers = [compile_matcher(item, file, line) for item in spec]
        return lambda value: any(m(value) for m in matchers)
    if isinstance(spec, dict):
        if set(spec) != {"not"}:
            raise YamlProblem(file, line, f"a condition mapping may only hold 'not', got {sorted(spec)}")
        inner = compile_matcher(spec["not"], file, line)
        return lambda value: not inner(value)
    if spec is None:
        return lambda value: value == ""
    if isinstance(spec, bool):
        raise YamlProblem(file, line, "a condition value must be text, a list or {not: ...}, not true/false")
    text = str(spec)
    if text.startswith("re:"):
        try:
            pattern = re.compile(text[3:])
        except re.error as exc:
            raise YamlProblem(file, line, f"bad regular expression {text[3:]!r}: {exc}") from None
        return lambda value: pattern.search(value) is not None
    if "*" in text or "?" in text:
        pattern = re.compile(fnmatch.translate(text))
        return lambda value: pattern.match(value) is not None
    return lambda value: value == text


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

    def matches(self, message: Message) -> bool:
        for key, matcher in self.conditions:
            if key == "message":
                value = message.message_code
            elif key == "version":
                value = message.version
            else:
                value = message.get(key)
            if not matcher(value):
                return False
        return True

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class Decision:
    """What the matching rules decided for one message."""

    rules: list[str] = field(default_factory=list)
    mode: str = ""
    profile: str = ""
    schedule: dict[str, str] = field(default_factory=dict)
    reject: dict[str, str] = field(default_factory=dict)
    reject_rule: str = ""
    drop: str = ""
    outbound: list[str] = field(default_factory=list)

    @property
    def rule_names(self) -> str:
        return ", ".join(self.rules)


@dataclass
class RuleSet:
    rules: list[Rule]
    destinations: dict[str, Any]
    files: list[str]

    def evaluate(self, message: Message) -> Decision:
        """Apply ``set``/``map`` actions to ``message`` in place and return the decision."""
        decision = Decision()
        for rule in self.rules:
            if not rule.matches(message):
                continue
            decision.rules.append(rule.name)
            for path, value in rule.set_fields.items():
                message.set(path, value)
            for path, table in rule.map_fields.items():
                current = message.get(path)
                if current in table:
                    message.set(path, table[current])
            decision.mode = rule.mode or decision.mode
            decision.profile = rule.profile or decision.profile
            decision.schedule.update(rule.schedule)
            decision.outbound.extend(d for d in rule.outbound if d not in decision.outbound)
            if rule.reject:
                decision.reject = rule.reject
                decision.reject_rule = rule.name
                break
            if rule.drop:
                decision.drop = rule.drop
                break
            if not rule.keep_going:
                break
        return decision


def _text(value: Any, file: str, line: int, what: str) -> str:
    if isinstance(value, (dict, list)) or value is None:
        raise YamlProblem(file, line, f"{what} must be a text value")
    return str(value)


def _parse_rule(raw: Any, file: str, line: int, problems: list[YamlProblem]) -> Rule | None:
    if not isinstance(raw, LineDict):
        problems.append(YamlProblem(file, line, "a rule must be a mapping with at least 'name' and 'when'"))
        return None
    start = len(problems)
    for key in raw:
        if key not in RULE_KEYS:
            problems.append(YamlProblem(file, line_of(raw, key),
                                        f"unknown rule key {key!r}; allowed: {', '.join(sorted(RULE_KEYS))}"))
    name = raw.get("name")
    if not name:
        problems.append(YamlProblem(file, raw.line, "rule has no 'name'"))
    rule = Rule(name=str(name or "?"), file=file, line=raw.line, conditions=[])
    when = raw.get("when", {})
    if when is None:
        when = {}
    if not isinstance(when, dict):
        problems.append(YamlProblem(file, line_of(raw, "when"), "'when' must be a mapping of conditions"))
        when = {}
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
    try:
        if "mode" in raw:
            rule.mode = _text(raw["mode"], file, line_of(raw, "mode"), "mode")
            if rule.mode not in MODES:
                problems.append(YamlProblem(file, line_of(raw, "mode"), f"mode must be broker or filler, not {rule.mode!r}"))
        if "profile" in raw:
            rule.profile = _text(raw["profile"], file, line_of(raw, "profile"), "profile")
        schedule = raw.get("schedule") or {}
        if not isinstance(schedule, dict):
            problems.append(YamlProblem(file, line_of(raw, "schedule"), "'schedule' must be a mapping"))
            schedule = {}
        for key, value in schedule.items():
            if key not in SCHEDULE_KEYS:
                problems.append(YamlProblem(file, line_of(schedule, key),
                                            f"unknown schedule key {key!r}; allowed: {', '.join(sorted(SCHEDULE_KEYS))}"))
            rule.schedule[str(key)] = _text(value, file, line_of(schedule, key), f"schedule.{key}")
        station = rule.schedule.get("station_ae", "")
        if len(station) > 16:
            problems.append(YamlProblem(file, line_of(schedule, "station_ae"), "station_ae longer than 16 characters"))
        for key, target in (("set", rule.set_fields), ("map", rule.map_fields)):
            block = raw.get(key) or {}
            if not isinstance(block, dict):
                problems.append(YamlProblem(file, line_of(raw, key), f"'{key}' must be a mapping of field paths"))
                continue
            for path, value in block.items():
                try:
                    field_path(str(path))
                except ValueError as exc:
                    problems.append(YamlProblem(file, line_of(block, path), str(exc)))
                    continue
                if key == "map":
                    if not isinstance(value, dict):
                        problems.append(YamlProblem(file, line_of(block, path), "a map entry must be {from: to, ...}"))
                        continue
                    target[str(path)] = {str(k): str(v) for k, v in value.items()}
                else:
                    target[str(path)] = "" if value is None else _text(value, file, line_of(block, path), f"set.{path}")
        if "reject" in raw:
            reject = raw["reject"]
            if isinstance(reject, str):
                reject = {"code": "AE", "reason": reject}
            if not isinstance(reject, dict) or not reject.get("reason"):
                problems.append(YamlProblem(file, line_of(raw, "reject"), "reject needs a reason: {code: AE|AR, reason: ...}"))
            else:
                code = str(reject.get("code", "AE"))
                if code not in ("AE", "AR"):
                    problems.append(YamlProblem(file, line_of(raw, "reject"), f"reject code must be AE or AR, not {code!r}"))
                rule.reject = {"code": code, "reason": str(reject["reason"])}
        if "drop" in raw:
            drop = raw["drop"]
            rule.drop = (f"dropped by rule {rule.name}" if drop is True else "" if drop is False else str(drop))
        if "outbound" in raw:
            outbound = raw["outbound"]
            outbound = [outbound] if isinstance(outbound, str) else outbound
            if not isinstance(outbound, list):
                problems.append(YamlProblem(file, line_of(raw, "outbound"), "outbound must be a destination name or a list"))
            else:
                rule.outbound = [str(d) for d in outbound]
        if "continue" in raw:
            if not isinstance(raw["continue"], bool):
                problems.append(YamlProblem(file, line_of(raw, "continue"), "continue must be true or false"))
            rule.keep_going = bool(raw["continue"])
    except YamlProblem as problem:
        problems.append(problem)
    if rule.reject and rule.drop:
        problems.append(YamlProblem(file, raw.line, "a rule cannot both reject and drop"))
    return rule if len(problems) == start else None


def load_ruleset(directory: Path | str) -> RuleSet:
    """Load every ``*.yaml`` of ``directory``; all problems are raised together (ExceptionGroup)."""
    directory = Path(directory)
    problems: list[YamlProblem] = []
    rules: list[Rule] = []
    destinations: dict[str, Any] = {}
    destination_lines: dict[str, tuple[str, int]] = {}
    files = sorted(str(p) for p in directory.glob("*.yaml")) + sorted(str(p) for p in directory.glob("*.yml"))
    if not directory.is_dir():
        raise ExceptionGroup("rules folder missing", [YamlProblem(str(directory), 0, "rules folder does not exist")])
    for file in files:
        try:
            data = load_yaml(file)
        except YamlProblem as problem:
            problems.append(problem)
            continue
        if data is None:
            continue
        if not isinstance(data, LineDict):
            problems.append(YamlProblem(file, 1, "a rules file must be a mapping with 'rules:' and/or 'destinations:'"))
            continue
        for key in data:
            if key not in ("rules", "destinations"):
                problems.append(YamlProblem(file, line_of(data, key), f"unknown top-level key {key!r}; use 'rules' or 'destinations'"))
        block = data.get("destinations") or {}
        if not isinstance(block, dict):
            problems.append(YamlProblem(file, line_of(data, "destinations"), "'destinations' must be a mapping"))
            block = {}
        for name, spec in block.items():
            if name in destinations:
                other = destination_lines[name]
                problems.append(YamlProblem(file, line_of(block, name), f"destination {name!r} already defined at {other[0]}:{other[1]}"))
            destinations[str(name)] = spec
            destination_lines[str(name)] = (file, line_of(block, name))
        entries = data.get("rules") or []
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
                problems.append(YamlProblem(rule.file, rule.line, f"rule {rule.name!r} names unknown destination {name!r}"))
    if problems:
        raise ExceptionGroup(f"{len(problems)} problem(s) in {directory}", problems)
    return RuleSet(rules, destinations, files)


def check_profiles(ruleset: RuleSet, profile_names: set[str]) -> list[YamlProblem]:
    """Rules that name a profile that does not exist."""
    return [YamlProblem(rule.file, rule.line, f"rule {rule.name!r} names unknown profile {rule.profile!r}")
            for rule in ruleset.rules if rule.profile and rule.profile not in profile_names]
