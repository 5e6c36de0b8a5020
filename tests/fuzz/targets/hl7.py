"""HL7 v2 messages through the engine's path before the database: the field reader, header checks, the
rules, the profile mapping, and the ACK built for every outcome (which must itself parse as HL7).

Declared for bad input: nothing escapes ``Ingestor.prepare`` (it keeps parse and header errors), and a
mapping may only fail with a ``Rejection``; anything else, or an ACK that does not parse, is a crash."""
from __future__ import annotations

import random
from pathlib import Path

from engine.config import Config
from engine.domain.model import Rejection
from engine.hl7 import ack as ack_builder
from engine.hl7.ack import HL7Error
from engine.hl7.message import FieldPath, Message
from engine.hl7.profiles import load_profiles
from engine.rules.ruleset import load_ruleset
from engine.workflow.ingest import Ingestor, Received, _rejection_error

from .. import mutate as bytewise

NAME = "hl7"
ROOT = Path(__file__).resolve().parents[3]
READ_SEGMENTS = ("MSH", "EVN", "PID", "PV1", "ORC", "OBR", "TQ1", "IPC", "ZDS", "MRG", "NTE", "OBX")


class AckUnreadable(AssertionError):
    """The ACK built for an input does not parse back as an HL7 message with its MSA."""


def refused(exc: BaseException) -> bool:
    return False        # prepare() declares nothing: every outcome is answered with an ACK


def _orm(version: str = "2.3.1", control: str = "ORD1", extra: str = "") -> str:
    return "\r".join((
        f"MSH|^~\\&|RIS|GENHOSP|SWF_ENGINE|RADIOLOGY|20250304083000||ORM^O01|{control}|P|{version}{extra}",
        "PID|1||PAT1^^^GENHOSP^MR~ALT9^^^OTHER^PI||DOE^JANE^Q^^DR||19800101|F|||1 MAIN ST^^TOWN^^12345",
        "PV1|1|O|CT^1^1||||1234^WELBY^MARCUS|||||||||||V0001",
        "ORC|NW|P1^HIS|F1^RIS||SC||1^once^^20250304100000^^R||20250304083000|||1234^WELBY^MARCUS",
        "OBR|1|P1^HIS|F1^RIS|CT1^CT head^99RAD|||20250304090000||||||||||||A1|RP1|S1||||CT|||1^once^^20250304100000^^R",
        "ZDS|1.2.840.10008.9.1^100^Application^DICOM",
    ))


def seeds() -> list[bytes]:
    texts = [
        _orm(),
        _orm("2.5.1", "ORD2", "||||AL|NE||UNICODE UTF-8").replace("DOE^JANE", "MÜLLER^JÖRG"),
        "\r".join((
            "MSH|^~\\&|RIS|GENHOSP|SWF_ENGINE|RADIOLOGY|20250304083000||OMI^O23^OMI_O23|OMI1|P|2.5.1",
            "PID|1||PAT2^^^GENHOSP^MR||ROE^RICHARD",
            "ORC|NW|P2^HIS|F2^RIS||SC",
            "TQ1|1||||||20250304100000|20250304103000|R^Routine^HL70078",
            "OBR|1|P2^HIS|F2^RIS|MR1^MR brain^99RAD",
            "IPC|A2^GENHOSP|RP2|2.25.1234567890|SP2|MR^MR^DCM|MRBR^Brain^99RAD|MR1|MRROOM^MR room^99LOC|MR1_AE",
        )),
        "MSH|^~\\&|HIS|GENHOSP|SWF_ENGINE|RADIOLOGY|20250304083000||ADT^A01|ADT1|P|2.3.1\rEVN|A01\r"
        "PID|1||PAT3^^^GENHOSP^MR||SMITH^ANNA||19700202|F\rPV1|1|I|W1^2^3",
        "MSH|^~\\&|HIS|GENHOSP|SWF_ENGINE|RADIOLOGY|20250304083000||ADT^A40^ADT_A39|ADT2|P|2.5.1\rEVN|A40\r"
        "PID|1||PAT4^^^GENHOSP^MR||SMITH^ANNA\rMRG|PAT3^^^GENHOSP^MR",
        _orm(control="ORD3").replace("ORC|NW", "ORC|CA"),
        _orm(control="ORD4").replace("ORC|NW", "ORC|XO").replace("CT head", "CT head\\T\\neck \\X0D\\ \\H\\x\\N\\"),
        "MSH|^|||||||^A|||2.2\r^AA",                         # nHapi #196: a one-character MSH-2
        "MSH|^~\\&|||||||ORM^O01|\rPID",                   # empty control ID and version
    ]
    return [text.encode("utf-8") for text in texts]


FIELD_VALUES = ("", "\"\"", "^", "~", "&", "\\", "\\X0D\\", "\\H\\", "\\Zxx\\", "\\.br\\", "\\F\\\\S\\\\R\\",
                "\\X\\", "\\XZZ\\", "^^^^^^^^", "~~~~", "&&&^&&&", "x" * 300, "9" * 70, "2.25." + "9" * 60,
                "20250230", "2025030410", "99999999999999", "-1", "CT\\MR", "ÄÖÜ€", "\u202e", "\x00", "\t",
                "1.2.840.10008.5.1.4.1.1.2", "../../etc/passwd", "ORM^O01", "ADT^A08", "ADT^A40", "OMG^O19",
                "AL", "NE", "ER", "SU", "ISO IR 100", "UNICODE UTF-8", "GB18030", "ISO IR 87", "ASCII", "BOGUS",
                "2.1", "2.2", "2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.8", "9.9", "NW", "CA", "XO",
                "DC", "SC", "IP", "CM", "S", "A", "R", "T", "P", "D")


def mutate_one(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    text = data.decode("utf-8", "surrogateescape")
    segments = text.split("\r")
    choice = rng.random()
    if choice < 0.55:                                        # one field's value
        index = rng.randrange(len(segments))
        fields = segments[index].split("|")
        position = rng.randrange(len(fields) + 2)
        fields += [""] * (position + 1 - len(fields))
        fields[position] = rng.choice(FIELD_VALUES) if rng.random() < 0.8 else fields[position] * rng.randint(2, 9)
        segments[index] = "|".join(fields)
    elif choice < 0.7:                                       # a segment doubled, dropped or moved
        index = rng.randrange(len(segments))
        action = rng.random()
        if action < 0.4:
            segments.insert(rng.randrange(len(segments) + 1), segments[index])
        elif action < 0.7 and len(segments) > 1:
            del segments[index]
        else:
            segments.insert(rng.randrange(len(segments) + 1), segments.pop(index))
    elif choice < 0.8:                                       # a segment from another input
        other = rng.choice(corpus).decode("utf-8", "surrogateescape").split("\r")
        segments.insert(rng.randrange(len(segments) + 1), rng.choice(other))
    elif choice < 0.88:                                      # delimiters
        head = segments[0]
        if head.startswith("MSH") and len(head) > 8:
            chars = list(head[3:8])
            chars[rng.randrange(5)] = rng.choice("|^~\\&#$!\r\n x\x00")
            segments[0] = "MSH" + "".join(chars) + head[8:]
    elif choice < 0.94:                                      # line endings
        return (rng.choice(("\n", "\r\n", "\r\r", "\n\r")).join(segments)).encode("utf-8", "surrogateescape")
    else:                                                    # charset bytes the declared charset may not hold
        raw = "\r".join(segments).encode("utf-8", "surrogateescape")
        position = rng.randrange(len(raw) + 1)
        return raw[:position] + bytes(rng.randrange(128, 256) for _ in range(rng.randint(1, 4))) + raw[position:]
    return "\r".join(segments).encode("utf-8", "surrogateescape")


def mutate(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    for _ in range(rng.randint(1, 3)):
        data = mutate_one(rng, data, corpus)
    return data


class Target:
    def __init__(self, workdir: Path):
        config = Config(data_dir=str(workdir))
        profiles = load_profiles(ROOT / "profiles")
        rules = load_ruleset(ROOT / "routes", set(profiles))
        self.ingestor = Ingestor(config, profiles, lambda: rules)

    def run(self, data: bytes) -> None:
        prepared = self.ingestor.prepare(Received(data, "fuzz"))
        message = prepared.message
        errors: list[HL7Error] = []
        code = "AA"
        if message is None:
            assert prepared.parse_error is not None
            code, errors = "AR", [HL7Error(100, prepared.parse_error.reason, prepared.parse_error.segment)]
        else:
            _read_fields(message)
            if prepared.header_error is not None:
                code, errors = "AR", [prepared.header_error]
            elif prepared.mapping_error is not None:
                if not isinstance(prepared.mapping_error, Rejection):
                    raise prepared.mapping_error
                code, errors = "AE", [_rejection_error(prepared.mapping_error)]
        wanted = ack_builder.accept_ack_wanted(message, code)
        sent = ack_builder.ENHANCED_CODES[code] if wanted is not None else code
        text = ack_builder.build_ack(message, sent, errors, self.ingestor.identity)
        text.encode(message.codec if message is not None else "ascii", errors="replace")
        try:
            answer = Message(text)
        except Exception as exc:
            raise AckUnreadable(f"ACK {text[:120]!r} does not parse: {exc}") from None
        if answer.get("MSA-1") != sent:
            raise AckUnreadable(f"ACK {text[:120]!r}: MSA-1 is not {sent}")

    def close(self) -> None:
        pass


def _read_fields(message: Message) -> None:
    """Every field reader path a profile or a rule may use, on the segments present."""
    for name in READ_SEGMENTS:
        for index in message.segment_indexes(name)[:3]:
            for number in range(1, min(len(message.segments[index]), 30)):
                message.raw_field(index, number)
                for repetition in message.field_repetitions(index, number)[:3]:
                    for component in message.components(repetition)[:4]:
                        message.subcomponents(component)
                        message.unescape(component)
                for component in (0, 1, 2):
                    message.value_in(index, FieldPath(name, number, 1, component))
