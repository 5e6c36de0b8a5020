"""Hot reload of ``routes/``: a broken edit is refused with file:line:reason, the last good rules stay.

The folder is fingerprinted by file name and content hash (not modification time: two same-size edits in
one timestamp tick, or a copy that keeps the old mtime, must not be missed).  The profiles are not
reloaded: a rule may only name a profile the engine loaded at start.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from ..yamlfile import YamlProblem
from .ruleset import RuleSet, load_ruleset, rule_files

log = logging.getLogger(__name__)


def problems_of(group: BaseException) -> list[YamlProblem]:
    if isinstance(group, ExceptionGroup):
        return [p for p in group.exceptions if isinstance(p, YamlProblem)]
    if isinstance(group, YamlProblem):
        return [group]
    return []


def load_checked(directory: Path | str, profile_names: set[str]) -> RuleSet:
    """Load the rules and check them against the known profiles; problems raised as ExceptionGroup."""
    return load_ruleset(directory, profile_names)


class RulesHolder:
    """The rules in force; ``reload_if_changed`` is called periodically by the engine."""

    def __init__(self, directory: Path | str, profile_names: set[str]):
        self.directory = Path(directory)
        self.profile_names = profile_names
        self._fingerprint = self._scan()
        self.current = load_checked(self.directory, profile_names)
        self.last_problems: list[YamlProblem] = []
        self.reloads = 0                  # edits put in force since start (for /metrics)
        self.refusals = 0                 # edits refused, the last good rules kept

    def __call__(self) -> RuleSet:
        return self.current

    def _scan(self) -> tuple[tuple[str, str], ...]:
        entries = []
        for path in rule_files(self.directory):
            try:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError:
                digest = "unreadable"
            entries.append((path.name, digest))
        return tuple(entries)

    def reload_if_changed(self) -> bool:
        """Reload when a file changed, was added or removed; returns True when new rules are in force.

        A refused edit is not retried until the folder changes again; its problems stay in
        ``last_problems`` (and in the log) and the previous rules stay in force.
        """
        fingerprint = self._scan()
        if fingerprint == self._fingerprint:
            return False
        self._fingerprint = fingerprint
        try:
            ruleset = load_checked(self.directory, self.profile_names)
        except Exception as group:  # noqa: BLE001 - every problem is reported, the old rules stay
            self.last_problems = problems_of(group) or [YamlProblem(str(self.directory), 0, str(group))]
            for problem in self.last_problems:
                log.error("rules refused: %s", problem)
            log.error("keeping the last good rules (%d rules)", len(self.current.rules))
            self.refusals += 1
            return False
        self.current = ruleset
        self.last_problems = []
        self.reloads += 1
        log.info("rules reloaded from %s: %d rules in %d files", self.directory, len(ruleset.rules), len(ruleset.files))
        return True
