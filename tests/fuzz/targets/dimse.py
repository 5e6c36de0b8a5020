"""The PDUs after an A-ASSOCIATE-AC on the direct storage path: P-DATA-TF items, PDVs, command sets,
C-STORE and C-ECHO, reassembled and answered by ``DirectStorage`` through the real Storage SCP (checks,
file, index on a real SQLite store).  The socket is scripted: its reads are the input.

Declared for bad input: none escapes; the association loop answers every protocol error with an
A-ABORT.  Checked: a C-STORE answered Success names a valid UID, and every file lies under storage_dir."""
from __future__ import annotations

import random
import struct
from pathlib import Path

from engine.dicom.services.storage import StorageService
from engine.dicom.wire import upper_layer as ul
from engine.dicom.wire.direct_storage import C_STORE_RSP, STATUS, COMMAND_FIELD, AFFECTED_SOP_INSTANCE, \
    DirectStorage, parse_command
from engine.domain.uid import uid_problem

from .. import dicom_bytes as db
from .. import mutate as bytewise
from ..wire_doubles import ScriptedSocket, storage_context

NAME = "dimse"


class WrongAnswer(AssertionError):
    """A C-STORE was answered Success for an instance the engine must refuse, or a file left the store."""


def refused(exc: BaseException) -> bool:
    return False


def seeds() -> list[bytes]:
    echo = db.p_data(db.pdv(3, 0x03, db.command(0x0030, 7, db.VERIFICATION, data_set=False)))
    command = db.command(0x0001, 2, sop_instance="1.2.3.1.1.2")
    split = db.p_data(db.pdv(1, 0x01, command[:20]), db.pdv(1, 0x03, command[20:]))
    data = db.ct_data_set(instance="1.2.3.1.1.2")
    return [
        db.c_store() + db.RELEASE_RQ,
        echo + db.RELEASE_RQ,
        split + db.p_data(db.pdv(1, 0x00, data[:40])) + db.p_data(db.pdv(1, 0x02, data[40:])) + db.RELEASE_RQ,
        db.c_store("1.2.3.1.1.3", 5, message_id=3) + db.ABORT,
        db.pdu(0x04, struct.pack(">IBB", 1, 1, 3)),                   # dicom-rs #260: PDV item length < 2
        db.pdu(0x04, struct.pack(">I", 0) + b"\x01\x03"),
        db.c_store("../../../etc/passwd"),                             # UIDs with ../ in the command
        db.c_store(data=db.ct_data_set(study="../..", series="..", instance="1.2.3.1.1.1")),
        db.c_store("1." + "2" * 70),
        struct.pack(">BxI", 0x04, 0xFFFFFFF0) + b"\x00" * 10,          # a 4 GB P-DATA-TF
        db.associate_rq(), b"GET / HTTP/1.1\r\n\r\n",
    ]


def _pdu_offsets(data: bytes) -> list[tuple[int, int]]:
    """(offset, kind) of each PDU header and of each PDV length inside P-DATA-TF PDUs (kind 0)."""
    found, offset = [], 0
    while offset + 6 <= len(data) and len(found) < 200:
        kind, length = struct.unpack_from(">BxI", data, offset)
        found.append((offset, kind))
        if kind == 0x04:
            inner = offset + 6
            while inner + 6 <= min(len(data), offset + 6 + length):
                found.append((inner, 0))
                inner += 4 + struct.unpack_from(">I", data, inner)[0]
        offset += 6 + length
    return found


def mutate(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    places = _pdu_offsets(data)
    choice = rng.random()
    if places and choice < 0.45:
        offset, kind = rng.choice(places)
        return bytewise.put_length(rng, data, offset if kind == 0 else offset + 2, 4)
    if places and choice < 0.6:                                        # a PDV's context ID or control header
        pdvs = [offset for offset, kind in places if kind == 0]
        if pdvs:
            offset = rng.choice(pdvs) + 4 + rng.randrange(2)
            buffer = bytearray(data)
            if offset < len(buffer):
                buffer[offset] = rng.choice((0, 1, 2, 3, 4, 5, 7, 0xFF))
            return bytes(buffer)
    if choice < 0.8:                                                   # another message inserted
        other = rng.choice(seeds() if rng.random() < 0.5 else corpus)
        cut = rng.choice([offset for offset, _ in places] or [0])
        return data[:cut] + other + data[cut:]
    return bytewise.flip(rng, data)


class Target:
    def __init__(self, workdir: Path):
        self.context = storage_context(workdir)
        self.storage = StorageService(self.context)
        supported = {db.CT_IMAGE: [db.EXPLICIT_LE, db.IMPLICIT_LE, db.DEFLATED], db.VERIFICATION: [db.IMPLICIT_LE]}
        self.direct = DirectStorage(self.context, self.storage, supported, "1.2.3.4", "FUZZ")
        self.request = ul.parse_associate_rq(db.associate_rq(contexts=(
            (1, db.CT_IMAGE, (db.IMPLICIT_LE,)), (3, db.VERIFICATION, (db.IMPLICIT_LE,)),
            (5, db.CT_IMAGE, (db.EXPLICIT_LE,)), (7, db.CT_IMAGE, (db.DEFLATED,)))))
        self.results = self.direct._negotiate(self.request)
        self.root = Path(self.context.config.storage_dir).resolve()

    def run(self, data: bytes) -> None:
        sock = ScriptedSocket(data)
        self.direct._associate(sock, ("127.0.0.1", 1), self.request, self.results)   # type: ignore[arg-type]
        self._check_answers(bytes(sock.sent))

    def _check_answers(self, sent: bytes) -> None:
        offset = 0
        while offset + 6 <= len(sent):
            kind, length = struct.unpack_from(">BxI", sent, offset)
            body = sent[offset + 6: offset + 6 + length]
            offset += 6 + length
            if kind != ul.P_DATA_TF:
                continue
            for _context, _control, fragment in ul.pdvs(bytearray(body)):
                command = parse_command(bytes(fragment))
                if struct.unpack("<H", command[COMMAND_FIELD])[0] != C_STORE_RSP:
                    continue
                uid = command.get(AFFECTED_SOP_INSTANCE, b"").decode("ascii", "replace").rstrip("\0 ")
                if struct.unpack("<H", command[STATUS])[0] == 0 and uid_problem(uid):
                    raise WrongAnswer(f"C-STORE of {uid!r} answered Success")
        for path in self.root.rglob("*"):
            if not path.resolve().is_relative_to(self.root):
                raise WrongAnswer(f"{path} lies outside storage_dir")

    def close(self) -> None:
        self.context.store.close()
