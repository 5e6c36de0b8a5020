"""Outbound destinations (``destinations:`` in routes/*.yaml): where messages go and how they are retried."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import TlsConfig
from ..domain.retry import RetryPolicy
from ..tls.contexts import TlsSettingProblem, client_creator
from ..tls.files import TlsFileProblem, load_material
from ..yamlfile import YamlProblem, environment_names, line_of

# What a destination receives, by role (SWF.md 4.3 and 4.4).
SENDS = {
    "status": frozenset({"mpps.in_progress", "mpps.completed", "mpps.discontinued", "commitment.succeeded",
                         "order.cancelled_by_operator", "order.changed_by_operator",
                         "order.aged_out"}),
    "procedure": frozenset({"order.scheduled", "order.changed", "order.cancelled", "order.discontinued",
                            "order.cancelled_by_operator", "order.changed_by_operator",
                            "patient.updated", "patient.merged", "order.aged_out"}),
    "availability": frozenset({"study.available"}),   # a study's instances stored and stable (issue 16)
}
AVAILABILITY_MESSAGES = ("ORU", "ORM", "OMG")   # ORU^R01 with OBX counts, or an order status message ...
AVAILABILITY_STATUSES = ("A", "CM")             # ... whose ORC-5 says A (some results) or CM
KEYS = {"address", "sends", "profile", "receiving_application", "receiving_facility", "ack_timeout",
        "max_ae_retries", "retry_seconds", "max_retry_seconds", "give_up_hours", "notify_commitment",
        "emit_partial", "tls", "availability_message", "availability_status", "notify_aged_out"}
TLS_KEYS = {"ca", "cert", "key", "verify_hostname", "min_version", "ciphers"}


@dataclass(frozen=True)
class Destination:
    name: str
    host: str
    port: int
    sends: str = "status"
    profile: str = "ihe-v231-orm"
    receiving_application: str = ""
    receiving_facility: str = ""
    ack_timeout: float = 30.0
    max_ae_retries: int = 3
    retry_seconds: float = 5.0
    max_retry_seconds: float = 600.0
    give_up_hours: float = 24.0
    notify_commitment: bool = False   # storage commitment success -> SC/CM status (else no message)
    emit_partial: bool = False        # a completed step while the order stays IP -> SC/IP
    notify_aged_out: bool = True      # a step aged out of the worklist (age_out) -> SC/DC, or DC/CA (else nothing)
    address_written: str = ""         # the address as the rules write it, e.g. ${SWF_RIS_ADDRESS}
    tls: TlsConfig | None = None      # MLLP over TLS to this destination (``tls: {ca, cert, key, verify_hostname}``)
    availability_message: str = "ORU"  # sends: availability -> ORU^R01, ORM^O01 or OMG^O19
    availability_status: str = "CM"   # ORC-5 of the ORM / OMG availability message

    @property
    def enabled(self) -> bool:
        return bool(self.host and self.port)

    @property
    def off_reason(self) -> str:
        """Why the destination is off ("" when on), naming the environment variable its address comes from."""
        if self.enabled:
            return ""
        names = environment_names(self.address_written)
        if not names:
            return "its address is empty"
        return (f"its address {self.address_written} is empty: set the environment variable "
                f"{' or '.join(names)} to host:port")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}" if self.enabled else ""

    def wants(self, kind: str) -> bool:
        return kind in SENDS[self.sends]

    @property
    def retry_policy(self) -> RetryPolicy:
        """retry_seconds doubling per attempt up to max_retry_seconds, dead after give_up_hours."""
        return RetryPolicy(self.retry_seconds, self.max_retry_seconds, self.give_up_hours)


def parse_destination(name: str, spec: Any, file: str, line: int) -> Destination:
    """One ``destinations:`` entry; raises YamlProblem naming the file and line of the fault."""
    if not isinstance(spec, dict):
        raise YamlProblem(file, line, f"destination {name!r} must be a mapping with at least 'address'")
    unknown = set(spec) - KEYS
    if unknown:
        raise YamlProblem(file, line_of(spec, sorted(unknown)[0], line),
                          f"unknown destination key(s) {sorted(unknown)}; allowed: {', '.join(sorted(KEYS))}")
    address = str(spec.get("address") or "").strip()
    written = getattr(spec.get("address"), "written", "")  # ${NAME} before expansion (yamlfile.ExpandedText)
    host, port = "", 0
    if address:
        host, _, port_text = address.rpartition(":")
        if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise YamlProblem(file, line_of(spec, "address", line), f"address must be host:port, not {address!r}")
        port = int(port_text)
    sends = str(spec.get("sends", "status"))
    if sends not in SENDS:
        raise YamlProblem(file, line_of(spec, "sends", line), f"sends must be one of {sorted(SENDS)}, not {sends!r}")
    values: dict[str, Any] = {}
    for key, kind in (("ack_timeout", float), ("retry_seconds", float), ("max_retry_seconds", float),
                      ("give_up_hours", float), ("max_ae_retries", int)):
        if key in spec:
            try:
                values[key] = kind(spec[key])
            except (TypeError, ValueError):
                raise YamlProblem(file, line_of(spec, key, line), f"{key} must be a number, not {spec[key]!r}") from None
            if values[key] < 0:
                raise YamlProblem(file, line_of(spec, key, line), f"{key} must not be negative")
    for key in ("notify_commitment", "emit_partial", "notify_aged_out"):
        if key in spec:
            if not isinstance(spec[key], bool):
                raise YamlProblem(file, line_of(spec, key, line), f"{key} must be true or false")
            values[key] = spec[key]
    for key, allowed in (("availability_message", AVAILABILITY_MESSAGES), ("availability_status", AVAILABILITY_STATUSES)):
        if key in spec:
            if str(spec[key]) not in allowed:
                raise YamlProblem(file, line_of(spec, key, line), f"{key} must be one of {', '.join(allowed)},"
                                                                  f" not {spec[key]!r}")
            values[key] = str(spec[key])
    if "tls" in spec:
        values["tls"] = parse_tls(name, spec["tls"], file, line_of(spec, "tls", line))
    return Destination(name=name, host=host, port=port, sends=sends, profile=str(spec.get("profile", "ihe-v231-orm")),
                       receiving_application=str(spec.get("receiving_application", "")),
                       receiving_facility=str(spec.get("receiving_facility", "")), address_written=written,
                       **values)


def parse_tls(name: str, spec: Any, file: str, line: int) -> TlsConfig:
    """A destination's ``tls:`` mapping; its files are read and checked now, so that ``swf rules check`` and a
    rules reload refuse a missing or broken certificate (the last good rules then stay in force)."""
    if not isinstance(spec, dict):
        raise YamlProblem(file, line, f"destination {name!r}: tls must be a mapping of {', '.join(sorted(TLS_KEYS))}")
    unknown = set(spec) - TLS_KEYS
    if unknown:
        raise YamlProblem(file, line_of(spec, sorted(unknown)[0], line),
                          f"destination {name!r}: unknown tls key(s) {sorted(unknown)}; "
                          f"allowed: {', '.join(sorted(TLS_KEYS))}")
    if "verify_hostname" in spec and not isinstance(spec["verify_hostname"], bool):
        raise YamlProblem(file, line_of(spec, "verify_hostname", line), "tls.verify_hostname must be true or false")
    config = TlsConfig(**{key: str(value) for key, value in spec.items() if key != "verify_hostname"},
                       verify_hostname=spec.get("verify_hostname", True))
    try:
        client_creator(config, load_material(config), "localhost")
    except (TlsFileProblem, TlsSettingProblem, ValueError) as exc:
        raise YamlProblem(file, line, f"destination {name!r}: tls: {exc}") from None
    return config
