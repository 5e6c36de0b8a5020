"""What the in-process DICOM targets put where a socket and an engine would be: a socket that reads from
the input and keeps what is sent, and a storage context on a real SQLite store in the work folder."""
from __future__ import annotations

import socket
from pathlib import Path

from engine.config import Config
from engine.dicom.ae import DicomContext
from engine.dicom.directory import AEDirectory
from engine.store.database import Store


class ScriptedSocket:
    """Reads come from ``incoming`` (then end of stream); sends are kept in ``sent``."""

    def __init__(self, incoming: bytes):
        self.incoming = memoryview(incoming)
        self.position = 0
        self.sent = bytearray()

    def recv(self, count: int, flags: int = 0) -> bytes:
        data = bytes(self.incoming[self.position:self.position + count])
        if not flags & socket.MSG_PEEK:
            self.position += len(data)
        return data

    def recv_into(self, buffer: memoryview) -> int:
        data = self.recv(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def sendall(self, data: bytes) -> None:
        self.sent += data

    def settimeout(self, value: float | None) -> None:
        pass

    def setsockopt(self, *args: object) -> None:
        pass

    def shutdown(self, how: int) -> None:
        pass

    def close(self) -> None:
        pass


def storage_context(workdir: Path) -> DicomContext:
    """An engine's DICOM context (AE SWF_ENGINE, any caller may do anything) on a store in ``workdir``."""
    config = Config(data_dir=str(workdir))
    config.dicom.max_instance_bytes = 1 << 20
    store = Store(config.database)
    store.start()
    return DicomContext(config, store, AEDirectory.from_config({}, allow_any=True))


def stocked_context(workdir: Path) -> DicomContext:
    """``storage_context`` with two scheduled orders (through the HL7 path) and one stored CT instance
    of the first, so that queries have something to match and answer."""
    from engine.hl7.profiles import load_profiles
    from engine.rules.ruleset import load_ruleset
    from engine.workflow.ingest import Ingestor, Received

    from .dicom_bytes import ct_data_set
    from engine.dicom.services.storage import StorageService
    from engine.store.incoming import IncomingDataSet

    root = Path(__file__).resolve().parents[2]
    context = storage_context(workdir)
    profiles = load_profiles(root / "profiles")
    rules = load_ruleset(root / "routes", set(profiles))
    ingestor = Ingestor(context.config, profiles, lambda: rules)
    for number, name in ((1, "DOE^JANE"), (2, "MÜLLER^JÖRG")):
        message = (f"MSH|^~\\&|RIS|GENHOSP|SWF_ENGINE|RADIOLOGY|20250304083000||ORM^O01|F{number}|P|2.3.1||||||8859/1\r"
                   f"PID|1||PAT{number}^^^GENHOSP^MR||{name}||19800101|F\r"
                   f"ORC|NW|P{number}^HIS|F{number}^RIS||SC||1^once^^20250304100000^^R\r"
                   f"OBR|1|P{number}^HIS|F{number}^RIS|CT1^CT head^99RAD||||||||||||||A{number}|RP{number}|S{number}||||CT")
        context.store.write(lambda txn: ingestor(txn, Received(message.encode("latin-1"), "fuzz")))
    data = IncomingDataSet(1 << 20, workdir)
    data.write(ct_data_set())
    StorageService(context).receive("MODALITY", "1.2.840.10008.5.1.4.1.1.2", "1.2.3.1.1.1", "1.2.840.10008.1.2", data)
    data.close()
    return context
