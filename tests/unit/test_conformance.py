"""docs/conformance.md is generated from the engine's tables (engine/conformance): regenerated here, it must
match the committed file, and it lists what the engine's AE really registers."""
from __future__ import annotations

from pathlib import Path

from engine.config import Config
from engine.conformance import build, render_markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "conformance.md"


def test_committed_conformance_statement_is_current() -> None:
    assert DOC.read_text(encoding="utf-8") == render_markdown(build(Config())), \
        "docs/conformance.md is stale: run `swf conformance --out docs/conformance.md`"


def test_statement_lists_the_scp_sop_classes_of_the_running_services() -> None:
    statement = build(Config())
    listed = {row.sop_class for row in statement.scp_contexts}
    for uid in ("1.2.840.10008.1.1", "1.2.840.10008.5.1.4.31", "1.2.840.10008.3.1.2.3.3", "1.2.840.10008.1.20.1",
                "1.2.840.10008.5.1.4.1.2.2.1", "1.2.840.10008.5.1.4.1.1.2"):
        assert uid in listed
    assert "1.2.840.10008.5.1.4.33" not in listed   # IAN: the engine is its SCU only, in a section of its own
    assert "1.2.840.10008.5.1.4.33: SCU, N-CREATE" in statement.sections["Instance Availability Notification (SCU)"][0]
