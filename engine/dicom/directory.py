"""The known AEs (config ``dicom.aes``): who may connect, what each may do, where to reach it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PERMISSIONS = frozenset({"echo", "worklist", "mpps", "store", "commit", "query", "retrieve"})


class DirectoryError(ValueError):
    """A known-AE entry in the config is not usable."""


@dataclass(frozen=True)
class PeerTls:
    """How the engine reaches a known AE over TLS (its entry's ``tls: true`` or ``tls: {ca, cert, key,
    verify_hostname}``): empty files fall back to ``dicom.tls`` (``dicom/tls.py``)."""
    ca: str = ""                   # CAs the AE's server certificate must chain to
    cert: str = ""                 # our client certificate towards this AE (default: dicom.tls.cert)
    key: str = ""
    verify_hostname: bool | None = None   # the AE's certificate must name its host (None: dicom.tls.verify_hostname)


def _peer_tls(title: str, value: Any) -> PeerTls | None:
    if value is None or value is False:
        return None
    if value is True:
        return PeerTls()
    if not isinstance(value, dict) or set(value) - {"ca", "cert", "key", "verify_hostname"}:
        raise DirectoryError(f"dicom.aes.{title}.tls: expected true, false or a mapping with ca, cert, key, "
                             "verify_hostname")
    return PeerTls(str(value.get("ca", "")), str(value.get("cert", "")), str(value.get("key", "")),
                   None if value.get("verify_hostname") is None else bool(value["verify_hostname"]))


@dataclass(frozen=True)
class KnownAE:
    title: str
    host: str = ""
    port: int = 0
    permissions: frozenset[str] = PERMISSIONS
    stations: tuple[str, ...] = ()   # worklist restricted to these station AE titles (empty: all)
    charset: str = ""                # worklist response repertoire, e.g. ISO_IR 100
    tls: PeerTls | None = None       # associations the engine opens to it use TLS
    certificate: str = ""            # the subject CN or SAN its TLS certificate must carry (dicom/binding.py)

    @property
    def reachable(self) -> bool:
        return bool(self.host and self.port)


@dataclass
class AEDirectory:
    entries: dict[str, KnownAE] = field(default_factory=dict)
    allow_any: bool = False

    @classmethod
    def from_config(cls, aes: dict[str, Any], allow_any: bool) -> "AEDirectory":
        entries = {}
        for title, spec in (aes or {}).items():
            title = str(title)
            if not 0 < len(title) <= 16:
                raise DirectoryError(f"dicom.aes: AE title {title!r} must be 1 to 16 characters")
            spec = spec or {}
            if not isinstance(spec, dict):
                raise DirectoryError(f"dicom.aes.{title}: expected a mapping with host, port, permissions")
            unknown = set(spec) - {"host", "port", "permissions", "stations", "charset", "tls", "certificate"}
            if unknown:
                raise DirectoryError(f"dicom.aes.{title}: unknown key(s) {sorted(unknown)}")
            permissions = frozenset(spec.get("permissions") or PERMISSIONS)
            if permissions - PERMISSIONS:
                raise DirectoryError(f"dicom.aes.{title}: unknown permission(s) {sorted(permissions - PERMISSIONS)};"
                                     f" known: {', '.join(sorted(PERMISSIONS))}")
            entries[title] = KnownAE(title, str(spec.get("host", "")), int(spec.get("port", 0)), permissions,
                                     tuple(str(s) for s in spec.get("stations") or ()), str(spec.get("charset", "")),
                                     _peer_tls(title, spec.get("tls")), str(spec.get("certificate") or ""))
        return cls(entries, allow_any)

    def get(self, title: str) -> KnownAE | None:
        return self.entries.get(title.strip())

    def allows(self, title: str, permission: str) -> bool:
        """Whether ``title`` may use a service; unknown AEs only get in when allow_any is set."""
        entry = self.get(title)
        if entry is None:
            return self.allow_any
        return permission in entry.permissions
