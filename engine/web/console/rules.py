"""The console's rules page: the rules in force with file:line, the check of the rules folder as it is on
disk, and the dry-run of a candidate (the folder with one file's text replaced) against the journal's last
hours: what ``swf rules check`` and ``swf rules dry-run`` print, as plain functions for the thread pool."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ...config import Config
from ...hl7.mapping import Profile
from ...rules.describe import check_rules, describe_rules, load_rules
from ...rules.ruleset import rule_files
from ...rules.watcher import RulesHolder
from ...store.database import Store
from ...workflow.dry_run import dry_run

MAX_HOURS = 24 * 7


@dataclass(frozen=True)
class RulesContext:
    """What the rules page reads: the engine's configuration, profiles and the rules in force."""

    store: Store
    config: Config
    profiles: dict[str, Profile]
    holder: RulesHolder

    def file_texts(self) -> dict[str, str]:
        return {path.name: path.read_text(encoding="utf-8", errors="replace")
                for path in rule_files(self.config.routes_dir)}

    def overview(self) -> dict[str, Any]:
        """The rules in force, the folder's check, and its files' texts (the candidate form starts from them)."""
        return {"rules": describe_rules(self.holder.current), "routes_dir": str(self.config.routes_dir),
                "check": check_rules(self.config.routes_dir, set(self.profiles)), "files": self.file_texts()}

    def dry_run(self, file_name: str, text: str, hours: float) -> dict[str, Any]:
        """The candidate's check and, when it loads, its diff against the messages of the last ``hours``."""
        texts = {**self.file_texts(), file_name: text}
        candidate_check = check_rules(texts, set(self.profiles))
        found: dict[str, Any] = {**self.overview(), "candidate_check": candidate_check, "chosen": file_name,
                                 "candidate_text": text, "hours": hours, "report": None}
        if not candidate_check.ok:
            return found
        candidate = load_rules(texts, set(self.profiles))   # the same texts the check just loaded
        since = (datetime.now() - timedelta(hours=hours)).isoformat(timespec="seconds")
        found["report"] = dry_run(self.store, self.config, self.profiles, self.holder.current, candidate, since=since)
        return found
