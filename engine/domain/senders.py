"""Which HL7 senders (MSH-3, optionally MSH-4) a TLS client certificate may speak for (``mllp.senders``).

``mllp.senders: {RIS: {certificate: ris.hospital.example, facility: RADIOLOGY}}`` says that messages
whose MSH-3 is RIS (and MSH-4 RADIOLOGY, when ``facility`` is given) come with a certificate naming
ris.hospital.example (its subject CN or a DNS/IP subject alternative name).  With senders declared:

* a connection that presented a certificate may send only for the senders bound to one of its names;
* a message naming a sender bound to a certificate is refused from a connection without one;
* other messages on connections without a certificate are not concerned (the plain port's senders).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

KEYS = {"certificate", "facility"}


class SendersProblem(ValueError):
    """An ``mllp.senders`` entry that cannot be read."""


@dataclass(frozen=True)
class Sender:
    application: str      # MSH-3.1
    certificate: str      # a name the certificate must carry
    facility: str = ""    # MSH-4.1 when it must match too

    def covers(self, application: str, facility: str) -> bool:
        return application == self.application and (not self.facility or facility == self.facility)


class SenderDirectory:
    """The declared senders; ``refusal`` says why a message may not come from a connection, or None."""

    def __init__(self, senders: tuple[Sender, ...] = ()):
        self.senders = senders

    @classmethod
    def from_config(cls, entries: dict[str, Any]) -> "SenderDirectory":
        senders: list[Sender] = []
        for application, spec in entries.items():
            if not isinstance(spec, dict) or not str(spec.get("certificate") or "").strip():
                raise SendersProblem(f"mllp.senders.{application} must be a mapping with certificate: NAME "
                                     "(the subject CN or subject alternative name its certificate carries)")
            unknown = set(spec) - KEYS
            if unknown:
                raise SendersProblem(f"mllp.senders.{application}: unknown key(s) {sorted(unknown)}; "
                                     f"allowed: {', '.join(sorted(KEYS))}")
            senders.append(Sender(str(application), str(spec["certificate"]).strip(), str(spec.get("facility") or "")))
        return cls(tuple(senders))

    def refusal(self, application: str, facility: str, presented: tuple[str, ...]) -> str | None:
        if not self.senders:
            return None
        sender = f"MSH-3 {application!r}" + (f" / MSH-4 {facility!r}" if facility else "")
        if presented:
            names = {name.lower() for name in presented}
            if any(s.certificate.lower() in names and s.covers(application, facility) for s in self.senders):
                return None
            bound = sorted({s.application for s in self.senders if s.certificate.lower() in names})
            return (f"{sender} is not a sender of the certificate presented ({presented[0]}); "
                    + (f"it may send as {', '.join(bound)}" if bound else "no sender is bound to it") + " (mllp.senders)")
        claimed = [s for s in self.senders if s.application == application]   # whatever its MSH-4
        if claimed:
            return (f"{sender} is bound to certificate {claimed[0].certificate} (mllp.senders) and this connection "
                    "presented no certificate")
        return None
