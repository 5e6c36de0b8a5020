"""What of the running engine the API's operations use besides the store: its configuration, the HL7
path that entered orders take, and the rules and profiles in force."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from ...config import Config
    from ...hl7.mapping import Profile
    from ...hl7.message import Message
    from ...rules.ruleset import RuleSet
    from ...store.database import Transaction
    from ...workflow.ingest import IngestResult, Received


@dataclass(frozen=True)
class EngineContext:
    config: "Config"
    ingest: "Callable[[Transaction, Received], IngestResult]"   # the MLLP listener's path, in a given transaction
    rules: "Callable[[], RuleSet]"                              # the rules in force now
    profiles: "dict[str, Profile]"
    profile_of: "Callable[[Message], Profile | None] | None" = None   # which profile maps a message now
