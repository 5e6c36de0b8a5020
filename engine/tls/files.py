"""The PEM files of one ``TlsConfig``, read and checked before anything serves with them.

A certificate that does not parse, has expired, or whose key is not its key is refused here with a
sentence naming the file, so that a bad replacement never reaches a listener (the reloading holder keeps
the previous material).  The DICOM TLS side may use ``load_material`` for the same checks before it
builds its ``ssl.SSLContext`` from the same paths.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from ..config import TlsConfig

FileStamp = tuple[int, int, int] | None   # (mtime_ns, size, inode), None when the file is missing


class TlsFileProblem(ValueError):
    """A TLS file that cannot serve: missing, unreadable, not PEM, expired, or a key that does not match."""


@dataclass(frozen=True)
class TlsMaterial:
    """What the files held when read: our chain and key (may be absent on a client), the trusted CAs."""

    chain: tuple[x509.Certificate, ...]
    key: PrivateKeyTypes | None
    authorities: tuple[x509.Certificate, ...]
    stamps: tuple[FileStamp, ...]

    @property
    def certificate(self) -> x509.Certificate | None:
        return self.chain[0] if self.chain else None

    def describe(self) -> str:
        """``serial 1a2b..., CN=..., valid until ...`` for the log lines."""
        leaf = self.certificate
        if leaf is None:
            return "no certificate of our own"
        return (f"serial {leaf.serial_number:x}, {leaf.subject.rfc4514_string()}, "
                f"valid until {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")


def paths_of(config: TlsConfig) -> tuple[str, ...]:
    return (config.cert, config.key, config.ca)


def stamps_of(config: TlsConfig) -> tuple[FileStamp, ...]:
    """Cheap signature of the files (no reading): a change of any means they are read again."""
    stamps: list[FileStamp] = []
    for path in paths_of(config):
        try:
            status = os.stat(path) if path else None
        except OSError:
            status = None
        stamps.append((status.st_mtime_ns, status.st_size, status.st_ino) if status is not None else None)
    return tuple(stamps)


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise TlsFileProblem(f"{what} {path}: {exc.strerror or exc}") from None


def _certificates(path: str, what: str) -> tuple[x509.Certificate, ...]:
    try:
        found = tuple(x509.load_pem_x509_certificates(_read(path, what)))
    except ValueError as exc:
        raise TlsFileProblem(f"{what} {path} holds no readable PEM certificate ({exc})") from None
    return found


def load_material(config: TlsConfig, now: datetime.datetime | None = None) -> TlsMaterial:
    """Read and check ``cert``, ``key`` and ``ca``; raise ``TlsFileProblem`` saying which file and why."""
    stamps = stamps_of(config)
    now = now or datetime.datetime.now(datetime.timezone.utc)
    chain: tuple[x509.Certificate, ...] = ()
    key: PrivateKeyTypes | None = None
    if config.cert or config.key:
        if not (config.cert and config.key):
            raise TlsFileProblem(f"a certificate needs its key and a key its certificate (cert {config.cert!r}, "
                                 f"key {config.key!r})")
        chain = _certificates(config.cert, "certificate")
        leaf = chain[0]
        if leaf.not_valid_after_utc < now:
            raise TlsFileProblem(f"certificate {config.cert} (serial {leaf.serial_number:x}) expired on "
                                 f"{leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
        try:
            key = serialization.load_pem_private_key(_read(config.key, "key"), password=None)
        except (ValueError, TypeError) as exc:
            raise TlsFileProblem(f"key {config.key} is not an unencrypted PEM private key ({exc})") from None
        if key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) \
                != leaf.public_key().public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo):
            raise TlsFileProblem(f"key {config.key} is not the key of certificate {config.cert} "
                                 f"(serial {leaf.serial_number:x})")
    authorities = _certificates(config.ca, "CA bundle") if config.ca else ()
    return TlsMaterial(chain, key, authorities, stamps)
