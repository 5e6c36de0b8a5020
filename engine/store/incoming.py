"""A data set being received: held in memory while small, in an unnamed scratch file once large.

Why: a C-STORE data set may be hundreds of MB (enhanced multi-frame) or never end (a peer that never
sets the last-fragment bit).  Up to ``IN_MEMORY_BYTES`` it stays in memory (a CT or MR image: no
extra copy); beyond, it goes to a temporary file in the store's directory (``O_TMPFILE`` where the
system has it: nothing is left behind, even after a crash).  Past ``limit`` bytes nothing more is kept,
only counted, so the answer (Out of Resources) can still be given once the peer finishes the data set;
the same when the scratch file cannot be written (disk full): ``failure`` keeps the error.
"""
from __future__ import annotations

import mmap
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

IN_MEMORY_BYTES = 4 << 20
COPY_STEP = 1 << 20


class IncomingDataSet:
    def __init__(self, limit: int, scratch_dir: Path | str):
        self.limit = limit
        self.scratch_dir = scratch_dir
        self.size = 0                       # bytes received, kept or not
        self.failure: OSError | None = None  # the scratch file could not be written
        self._memory = bytearray()
        self._file: BinaryIO | None = None

    @property
    def too_large(self) -> bool:
        return self.size > self.limit

    def write(self, fragment: bytes | memoryview) -> None:
        self.size += len(fragment)
        if self.size > self.limit or self.failure is not None:
            self.close()                    # free what is held; the rest is only counted
            return
        if self._file is None and len(self._memory) + len(fragment) <= IN_MEMORY_BYTES:
            self._memory += fragment
            return
        try:
            if self._file is None:
                self._file = tempfile.TemporaryFile(dir=self.scratch_dir)
                self._file.write(self._memory)
                self._memory = bytearray()
            self._file.write(fragment)
        except OSError as exc:
            self.failure = exc
            self.close()

    @contextmanager
    def view(self) -> Iterator[memoryview]:
        """The whole data set as one buffer (the scratch file mapped: pages are read as touched)."""
        if self._file is None:
            with memoryview(self._memory) as view:
                yield view
            return
        self._file.flush()
        with mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ) as mapped, memoryview(mapped) as view:
            yield view

    def copy_to(self, handle: BinaryIO) -> None:
        """Append the data set to ``handle`` (from the scratch file in steps, not through memory)."""
        if self._file is None:
            handle.write(self._memory)
            return
        self._file.flush()
        source, offset = self._file.fileno(), 0
        while offset < self.size:
            chunk = os.pread(source, min(COPY_STEP, self.size - offset), offset)
            if not chunk:
                raise OSError(f"scratch file ended after {offset} of {self.size} bytes")
            handle.write(chunk)
            offset += len(chunk)

    def close(self) -> None:
        self._memory = bytearray()
        scratch, self._file = self._file, None
        if scratch is not None:
            try:
                scratch.close()
            except OSError:   # buffered bytes that cannot be written: the data set is dropped anyway
                pass
