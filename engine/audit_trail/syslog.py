"""The syslog wire format of an audit message (IHE ITI TF-2 3.20.6): RFC 5424 with MSGID ``IHE+RFC-3881``
and the AuditMessage XML as MSG, octet-counted over TLS (RFC 5425 / RFC 6587) or one per UDP datagram
(RFC 5426)."""
from __future__ import annotations

MSGID = "IHE+RFC-3881"
PRIORITY = 10 * 8 + 5          # facility 10 (security/authorization), severity 5 (notice): <85>


def _field(value: str, limit: int) -> str:
    """A header field: printable US-ASCII without spaces, at most ``limit`` characters, '-' when empty."""
    cleaned = "".join(c for c in value if 33 <= ord(c) <= 126)[:limit]
    return cleaned or "-"


def syslog_message(xml: bytes, timestamp: str, hostname: str, app_name: str, proc_id: str) -> bytes:
    """One RFC 5424 SYSLOG-MSG: header, no structured data, the XML as MSG (UTF-8, as its declaration says)."""
    header = (f"<{PRIORITY}>1 {_field(timestamp, 64)} {_field(hostname, 255)} {_field(app_name, 48)} "
              f"{_field(proc_id, 128)} {MSGID} - ")
    return header.encode("ascii") + xml


def octet_counted(message: bytes) -> bytes:
    """RFC 5425 framing: MSG-LEN SP SYSLOG-MSG."""
    return b"%d %s" % (len(message), message)
