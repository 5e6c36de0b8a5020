"""What the routing rules decided for one message: a plain record, so that the HL7 mapping
(engine/hl7/extract.py) and the workflow read it without depending on how rules are loaded and matched."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Decision:
    """What the matching rules decided for one message."""

    rules: list[str] = field(default_factory=list)
    rule_places: list[str] = field(default_factory=list)   # file:line of each rule in ``rules``
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
