"""The file store: received instances as DICOM Part 10 files under ``storage_dir``.

Layout: ``<storage_dir>/<Study Instance UID>/<Series Instance UID>/<SOP Instance UID>.dcm``; the index
(``instances.path``) keeps the part below ``storage_dir``.  A UID that is not a plain UID (digits and
dots, at most 64 characters) is replaced by a name derived from its hash, so no received value can
lead outside the store.

Writing is two steps so that no half-written file is ever visible under its final name:
``write_pending`` writes preamble + file meta + the data set bytes *as received* (nothing is decoded or
re-encoded) into a temporary file beside the final one; ``PendingFile.place`` renames it into place
(atomic, also when it replaces an older copy).  The Storage SCP places the file in the same store
transaction that indexes it, after the index rows are written.

Durability: the write is not fsynced (that would cost a disk flush per instance).  ``ensure_durable``
fsyncs a file and the directories on its path; storage commitment calls it before it reports an
instance as committed.
"""
from __future__ import annotations

import hashlib
import itertools
import os
import re
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

from .incoming import IncomingDataSet

# Our Implementation Class UID (a 2.25 UUID-derived UID, fixed) and version name for the file meta.
IMPLEMENTATION_CLASS_UID = "2.25.133286497412474066520254406437133717249"
IMPLEMENTATION_VERSION_NAME = "SWF_ENGINE_01"
PREAMBLE = b"\x00" * 128 + b"DICM"

_PLAIN_UID = re.compile(r"^[0-9][0-9.]{0,63}$")
_counter = itertools.count()


def _element(group: int, element: int, vr: bytes, value: bytes) -> bytes:
    if vr in (b"OB",):
        return struct.pack("<HH2s2xL", group, element, vr, len(value)) + value
    return struct.pack("<HH2sH", group, element, vr, len(value)) + value


def _ui(value: str) -> bytes:
    raw = value.encode("ascii")
    return raw + b"\x00" if len(raw) % 2 else raw


def _padded(value: str) -> bytes:
    raw = value.encode("ascii", "replace")
    return raw + b" " if len(raw) % 2 else raw


def encode_file_meta(sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str,
                     source_ae_title: str = "") -> bytes:
    """Preamble, ``DICM`` and the File Meta Information group (explicit VR little endian, PS3.10 7.1)."""
    body = b"".join((
        _element(0x0002, 0x0001, b"OB", b"\x00\x01"),
        _element(0x0002, 0x0002, b"UI", _ui(sop_class_uid)),
        _element(0x0002, 0x0003, b"UI", _ui(sop_instance_uid)),
        _element(0x0002, 0x0010, b"UI", _ui(transfer_syntax_uid)),
        _element(0x0002, 0x0012, b"UI", _ui(IMPLEMENTATION_CLASS_UID)),
        _element(0x0002, 0x0013, b"SH", _padded(IMPLEMENTATION_VERSION_NAME)),
        _element(0x0002, 0x0016, b"AE", _padded(source_ae_title.strip())) if source_ae_title.strip() else b"",
    ))
    return PREAMBLE + _element(0x0002, 0x0000, b"UL", struct.pack("<L", len(body))) + body


def path_component(uid: str) -> str:
    """A UID as a file or directory name; anything but a plain UID becomes ``x`` + a hash of it."""
    uid = uid.strip().rstrip("\x00")
    if _PLAIN_UID.match(uid) and ".." not in uid:
        return uid
    return "x" + hashlib.sha256(uid.encode("utf-8", "surrogateescape")).hexdigest()[:40]


@dataclass
class PendingFile:
    """A fully written temporary file waiting to be renamed to its final name."""

    temp: Path
    final: Path
    relative: str
    size_bytes: int

    def place(self) -> None:
        """Rename into place (atomic; replaces an existing file of that name)."""
        os.replace(self.temp, self.final)

    def discard(self) -> None:
        try:
            os.unlink(self.temp)
        except FileNotFoundError:
            pass


class FileStore:
    def __init__(self, root: Path | str):
        self.root = Path(root)
        self._known_directories: set[str] = set()
        self._lock = threading.Lock()

    def relative_path(self, study_instance_uid: str, series_instance_uid: str, sop_instance_uid: str) -> str:
        return (f"{path_component(study_instance_uid)}/{path_component(series_instance_uid)}/"
                f"{path_component(sop_instance_uid)}.dcm")

    def absolute(self, relative: str) -> Path:
        path = Path(relative)
        return path if path.is_absolute() else self.root / path

    def _directory(self, directory: Path) -> None:
        key = str(directory)
        if key not in self._known_directories:
            directory.mkdir(parents=True, exist_ok=True)
            with self._lock:
                self._known_directories.add(key)

    def write_pending(self, relative: str, file_meta: bytes,
                      dataset: bytes | memoryview | IncomingDataSet) -> PendingFile:
        """Write ``file_meta`` + ``dataset`` to a temporary file next to ``relative``'s final place.

        Raises OSError (ENOSPC when the disk is full); nothing is left behind then."""
        final = self.root / relative
        directory = final.parent
        self._directory(directory)
        temp = directory / f".{final.name}.{os.getpid()}.{next(_counter)}.tmp"
        try:
            handle = open(temp, "xb")
        except FileNotFoundError:   # the directory went away under us (cleaned up by hand): once more
            self._known_directories.discard(str(directory))
            self._directory(directory)
            handle = open(temp, "xb")
        try:
            with handle:
                handle.write(file_meta)
                if isinstance(dataset, IncomingDataSet):
                    dataset.copy_to(handle)
                else:
                    handle.write(dataset)
        except BaseException:
            try:
                os.unlink(temp)
            except OSError:
                pass
            raise
        size = dataset.size if isinstance(dataset, IncomingDataSet) else len(dataset)
        return PendingFile(temp, final, relative, len(file_meta) + size)

    def ensure_durable(self, relative: str) -> None:
        ensure_durable(self.absolute(relative), self.root)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_durable(path: Path | str, root: Path | str | None = None) -> None:
    """fsync the file, then its directory and every directory above it up to ``root`` (so that freshly
    created study and series directories survive a power loss too).  Raises OSError."""
    path = Path(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    directory = path.parent
    _fsync_directory(directory)
    if root is not None:
        root = Path(root)
        while directory != root and root in directory.parents:
            directory = directory.parent
            _fsync_directory(directory)


def read_part10(path: Path | str) -> tuple[str, bytes]:
    """(transfer syntax UID, data set bytes) of a Part 10 file written by ``write_pending``."""
    with open(path, "rb") as handle:
        data = handle.read()
    if data[128:132] != b"DICM":
        raise ValueError(f"{path}: not a DICOM Part 10 file")
    group_length = struct.unpack_from("<L", data, 140)[0]
    meta_end = 144 + group_length
    transfer_syntax = ""
    pos = 144
    while pos < meta_end:
        group, element, vr = struct.unpack_from("<HH2s", data, pos)
        if vr in (b"OB", b"OW", b"UN", b"SQ", b"UT", b"UC", b"UR"):
            length = struct.unpack_from("<L", data, pos + 8)[0]
            start = pos + 12
        else:
            length = struct.unpack_from("<H", data, pos + 6)[0]
            start = pos + 8
        if (group, element) == (0x0002, 0x0010):
            transfer_syntax = data[start:start + length].decode("ascii").strip("\x00 ")
        pos = start + length
    return transfer_syntax, data[meta_end:]
