"""Rules files (YAML) through the rules loader, as a file in the routes folder or a set posted to the
API's check / dry-run would be read, then the rules in force applied to orders and ADTs (routing,
``set``/``map``, schedule, mapping).

Declared for bad input: ``ExceptionGroup`` of ``YamlProblem`` (each with its file:line); applying rules
that loaded may only end in a ``Rejection``."""
from __future__ import annotations

import random
from pathlib import Path

from engine.config import Config
from engine.domain.model import Rejection
from engine.hl7.profiles import load_profiles
from engine.rules.ruleset import load_ruleset_texts
from engine.workflow.ingest import Ingestor, Received
from engine.yamlfile import YamlProblem

from . import hl7

NAME = "rules"
ROOT = Path(__file__).resolve().parents[3]
MESSAGES = [hl7.seeds()[index] for index in (0, 2, 3, 6)]

PATHS = ("MSH-3", "MSH-4.1", "PID-3.4", "OBR-4.1", "OBR-24", "IPC-5.1", "IPC-9", "ORC-1", "PV1-3[2].1", "ZDS-1",
         "MSH-10", "PID-0", "XYZ-999999999", "OBR-4[0]", "message", "version", "modality", "PID-3.1.1.1")
VALUES = ("CT", "[CT, MR]", "{not: null}", "null", "'re:^C.*'", "'re:(a+)+$'", "'re:['", "'*'", "'CT*'", "true",
          "12", "[]", "{}", "{not: [CT]}", "{not: {not: CT}}", "ORM^O01", "'\\x00'", "\"\\u202e\"", "*anchor",
          "&anchor [a, b]", "!!binary aGVsbG8=", "!!python/object:os.system x", "9" * 400, "'" + "x" * 5000 + "'")
ACTIONS = ("schedule: {station_ae: CT1_AE, modality: CT}", "schedule: {station_ae: " + "A" * 40 + "}",
           "schedule: {modality: 'ct!'}", "set: {OBR-24: MR}", "set: {MSH-10: X}", "set: {PID-5.1: 'A|B^C'}",
           "map: {OBR-24: {CT: MR, NMR: MR}}", "map: {OBR-24: 12}", "reject: {code: AE, reason: no}",
           "reject: {code: AA}", "drop: not wanted", "mode: filler", "mode: bogus", "profile: ihe-v251-omi",
           "profile: missing", "outbound: [nowhere]", "continue: true", "continue: maybe", "when: 5")


def refused(exc: BaseException) -> bool:
    if isinstance(exc, ExceptionGroup):
        return all(isinstance(problem, YamlProblem) for problem in exc.exceptions)
    return isinstance(exc, YamlProblem)


def _rule(rng: random.Random) -> str:
    lines = [f"  - name: rule {rng.randrange(100)}", "    when:"]
    for _ in range(rng.randint(0, 3)):
        lines.append(f"      {rng.choice(PATHS)}: {rng.choice(VALUES)}")
    for _ in range(rng.randint(0, 2)):
        lines.append(f"    {rng.choice(ACTIONS)}")
    return "\n".join(lines)


def seeds() -> list[bytes]:
    texts = [(ROOT / "routes" / name).read_text() for name in ("10-senders.yaml", "20-rooms.yaml")]
    texts += ["rules:\n  - name: all CT\n    when: {modality: CT}\n    schedule: {station_ae: CT1_AE}\n",
              "rules:\n  - name: laughs\n    when:\n      MSH-3: &a [x, x, x, x, x, x, x, x]\n"
              "      MSH-4: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n      MSH-5: [*b, *b, *b, *b, *b, *b, *b, *b]\n",
              "rules:\n  - &r {name: base, when: {OBR-24: CT}}\n  - {<<: *r, name: merged}\n",
              "rules: [" * 50 + "]" * 50, "rules:\n  - name: x\n    when: {MSH-3: 're:(a|aa)+$'}\n", "", "---\n...\n"]
    return [text.encode("utf-8") for text in texts]


def mutate(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    text = data.decode("utf-8", "replace")
    lines = text.split("\n")
    choice = rng.random()
    if choice < 0.35:
        if not text.strip().startswith("rules"):
            lines = ["rules:"]
        lines.insert(rng.randint(1, len(lines)), _rule(rng))
    elif choice < 0.6 and lines:
        index = rng.randrange(len(lines))
        head, _, _tail = lines[index].partition(":")
        lines[index] = f"{head}: {rng.choice(VALUES + ACTIONS)}"
    elif choice < 0.75 and lines:
        index = rng.randrange(len(lines))
        action = rng.random()
        if action < 0.4:
            lines.insert(index, lines[index])
        elif action < 0.7:
            del lines[index]
        else:
            lines[index] = " " * rng.choice((0, 1, 2, 3, 4, 6, 8)) + lines[index].lstrip()
    else:
        position = rng.randrange(len(text) + 1)
        return (text[:position] + rng.choice("{}[]:-&*!|>'\"#%@`,?\t\x00\u00e9\n") + text[position:]).encode("utf-8")
    return "\n".join(lines).encode("utf-8")


class Target:
    def __init__(self, workdir: Path):
        self.config = Config(data_dir=str(workdir))
        self.profiles = load_profiles(ROOT / "profiles")

    def run(self, data: bytes) -> None:
        rules = load_ruleset_texts({"fuzz.yaml": data.decode("utf-8", "replace")}, set(self.profiles))
        ingestor = Ingestor(self.config, self.profiles, lambda: rules)
        for message in MESSAGES:
            prepared = ingestor.prepare(Received(message, "fuzz"))
            if prepared.mapping_error is not None and not isinstance(prepared.mapping_error, Rejection):
                raise prepared.mapping_error

    def close(self) -> None:
        pass
