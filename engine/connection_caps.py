"""The two connection caps the MLLP and HTTP listeners share: at most ``max_connections`` open in total
and ``max_connections_per_peer`` from one host (the DICOM listener has its own, dicom/admission.py).

A listener's factory asks ``refusal`` before it builds a protocol and reports each connection ``opened``
and ``closed``; the refusal reason names the cap's configuration key, for the log line and the security
event (engine/refusal_log.py).
"""
from __future__ import annotations


class ConnectionCounts:
    """The open connections of one listener, in total and per host, against its caps."""

    def __init__(self, section: str, max_connections: int, max_connections_per_peer: int):
        self.section = section                     # "mllp" / "http": the configuration section of the caps
        self.max_connections = max_connections
        self.max_connections_per_peer = max_connections_per_peer
        self.total = 0
        self.by_host: dict[str, int] = {}

    def refusal(self, host: str) -> str | None:
        """Why a new connection from ``host`` is refused; None when it is within both caps."""
        label = self.section.upper()
        if self.total >= self.max_connections:
            return (f"{self.total} {label} connections open ({self.section}.max_connections): new connection from"
                    f" {host} refused")
        if self.by_host.get(host, 0) >= self.max_connections_per_peer:
            return (f"{self.by_host[host]} {label} connections open from {host}"
                    f" ({self.section}.max_connections_per_peer): new connection refused")
        return None

    def opened(self, host: str) -> None:
        self.total += 1
        self.by_host[host] = self.by_host.get(host, 0) + 1

    def closed(self, host: str) -> None:
        self.total -= 1
        left = self.by_host.get(host, 0) - 1
        if left > 0:
            self.by_host[host] = left
        else:
            self.by_host.pop(host, None)
