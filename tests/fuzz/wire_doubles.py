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
