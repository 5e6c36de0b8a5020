"""The rules set as an engineer reads it: each rule with its file:line, conditions and actions (``swf rules
list``, the API's rules listing), and the check of a rules folder or of posted rules files.

Plain functions and frozen records, so the command line and the HTTP API serve the same answers.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

from ..yamlfile import YamlProblem
from .ruleset import Rule, RuleSet, load_ruleset, load_ruleset_texts
from .watcher import problems_of


@dataclass(frozen=True)
class RuleDescription:
    """One rule in evaluation order."""

    position: int                     # 1 = evaluated first
    name: str
    where: str                        # file:line of the rule's "- name:" entry
    conditions: tuple[str, ...]       # "MSH-3: [RIS, RIS_*]"; () = every message
    actions: tuple[str, ...]          # "mode: broker", "schedule: station_ae=CT1_AE ...", "continue"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RulesCheck:
    """The outcome of checking a rules set: its problems (file:line: reason), or its size when it loads."""

    problems: tuple[YamlProblem, ...]
    rules: int = 0
    files: int = 0
    destinations: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "rules": self.rules, "files": self.files, "destinations": self.destinations,
                "problems": [{"file": p.file, "line": p.line, "reason": p.reason} for p in self.problems]}


def rule_actions(rule: Rule) -> tuple[str, ...]:
    """What a rule does, one action per item, in the order routes/README.md lists the keys."""
    actions = [f"mode: {rule.mode}"] if rule.mode else []
    actions += [f"profile: {rule.profile}"] if rule.profile else []
    if rule.schedule:
        actions.append("schedule: " + " ".join(f"{key}={value}" for key, value in rule.schedule.items()))
    actions += [f"set: {path}={value!r}" for path, value in rule.set_fields.items()]
    actions += [f"map: {path} " + ", ".join(f"{source}->{target}" for source, target in table.items())
                for path, table in rule.map_fields.items()]
    if rule.reject:
        actions.append(f"reject: {rule.reject['code']} {rule.reject['reason']}")
    actions += [f"drop: {rule.drop}"] if rule.drop else []
    actions += [f"outbound: {', '.join(rule.outbound)}"] if rule.outbound else []
    actions += ["continue"] if rule.keep_going else []
    return tuple(actions) or ("stop (no action: the rules after it do not apply)",)


def describe_rules(ruleset: RuleSet) -> list[RuleDescription]:
    return [RuleDescription(position, rule.name, rule.where, tuple(rule.condition_texts), rule_actions(rule))
            for position, rule in enumerate(ruleset.rules, 1)]


def load_rules(source: Path | str | Mapping[str, str], profile_names: set[str] | None = None) -> RuleSet:
    """A rules folder, or posted rules files ``{file name: YAML text}``; problems raised as ExceptionGroup."""
    if isinstance(source, Mapping):
        return load_ruleset_texts(source, profile_names)
    return load_ruleset(source, profile_names)


def check_rules(source: Path | str | Mapping[str, str], profile_names: set[str] | None = None) -> RulesCheck:
    """Every problem of a rules set (not just the first), as the engine's loader finds them."""
    try:
        ruleset = load_rules(source, profile_names)
    except Exception as group:  # noqa: BLE001 - every problem is reported
        origin = "posted rules" if isinstance(source, Mapping) else str(source)
        return RulesCheck(tuple(problems_of(group) or [YamlProblem(origin, 0, str(group))]))
    return RulesCheck((), len(ruleset.rules), len(ruleset.files), len(ruleset.destinations))
