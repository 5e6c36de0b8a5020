"""One typed configuration object, built from defaults < config file (YAML) < command-line flags."""
from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from .yamlfile import LineDict, LineList, YamlProblem, line_of, load_yaml


DEFAULT_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM"   # TLS 1.2 suites; TLS 1.3 uses OpenSSL's own


@dataclass
class TlsConfig:
    """TLS of one listener or outbound link: PEM files, re-read on SIGHUP or when they change (README Security).

    ``tls: off`` in the YAML sets ``off``: the site says in so many words that this listener is plain,
    which a listener on a non-loopback address needs to start without TLS.
    """
    cert: str = ""                       # our certificate chain (PEM); empty: no TLS here
    key: str = ""                        # its private key (PEM)
    ca: str = ""                         # CAs (PEM bundle) whose certificates peers must present
    require_client_cert: bool = False    # listener: refuse peers that present no certificate from `ca`
    verify_hostname: bool = True         # outbound: the server's certificate must name the host dialled
    min_version: str = "1.2"             # lowest protocol accepted: 1.2 or 1.3
    ciphers: str = DEFAULT_CIPHERS       # TLS 1.2 cipher suites (OpenSSL syntax)
    off: bool = False                    # set by `tls: off`

    @property
    def enabled(self) -> bool:
        return bool(self.cert) and not self.off


@dataclass
class MllpConfig:
    host: str = "127.0.0.1"
    port: int = 2575
    max_message_bytes: int = 1024 * 1024
    idle_timeout: float = 300.0              # a connection silent this long is closed (any byte restarts it)
    frame_timeout: float = 30.0              # a frame must end this long after its start block (0 = no limit)
    max_connections: int = 256               # open connections in total; more are refused at once
    max_connections_per_peer: int = 32       # open connections from one IP address
    max_buffered_bytes: int = 64 * 1024 * 1024  # bytes held for frames in progress, all connections together
    max_unanswered_bytes: int = 4 * 1024 * 1024  # whole messages waiting for the store; past it reading pauses
    tls_port: int = 0                        # MLLP over TLS on this port (12575 by convention; 0 = none)
    tls: TlsConfig = field(default_factory=TlsConfig)
    senders: dict = field(default_factory=dict)  # MSH-3: {certificate: CN or SAN, facility: MSH-4} (domain/senders.py)


@dataclass
class DicomConfig:
    host: str = "127.0.0.1"
    port: int = 11112
    ae_title: str = "SWF_ENGINE"
    allow_any_ae: bool = False               # admit unknown calling AE titles (testing, small sites)
    allow_any_ae_on_network: bool = False    # ...also when dicom.host is not loopback (else refused at start)
    aes: dict = field(default_factory=dict)  # known AEs: TITLE: {host, port, permissions, stations, charset}
    acse_timeout: float = 30.0
    dimse_timeout: float = 30.0
    network_timeout: float = 60.0            # also the idle time after which an association is aborted
    max_pdu_bytes: int = 262144              # the largest PDU we accept (0 = no limit)
    max_associations: int = 128              # associations at once, all peers together
    max_associations_per_peer: int = 16      # connections at once from one address, associated or not
    association_request_timeout: float = 5.0  # a connection without a whole A-ASSOCIATE-RQ by then is closed
    direct_storage: bool = True              # storage-only associations bypass pynetdicom (dicom/wire/direct_storage.py)
    storage_dir: str = ""                    # received instances; default <data_dir>/dicom
    duplicate_policy: str = "ignore"         # ignore | overwrite: a second copy of a stored SOP Instance UID
    accept_uid_leading_zeros: bool = False   # store UIDs like 1.2.03 (PS3.5 forbids them; some old modalities send them)
    max_instance_bytes: int = 2 << 30        # a larger C-STORE data set (inflated, if deflated) gets 0xA700
    worklist_charset: str = "ISO_IR 192"     # response repertoire when the AE entry does not name one
    worklist_max_answers: int = 0            # MWL C-FIND: past this many items 0xA700 ends the answer (0 = no limit)
    query_max_answers: int = 0               # Q/R C-FIND: the same per query, at every level (0 = no limit)
    commitment_grace_seconds: float = 30.0   # wait for in-flight C-STOREs before failing a reference
    commitment_retry_seconds: float = 30.0   # first retry of an undeliverable N-EVENT-REPORT (doubles)
    commitment_max_retry_seconds: float = 1800.0
    commitment_give_up_hours: float = 24.0
    commitment_same_association_wait: float = 5.0  # report on the open N-ACTION association if ready within (s; 0 = never)
    forward_store_to: list = field(default_factory=list)   # known AEs that get a copy of every received instance
    forward_mpps_to: list = field(default_factory=list)    # known AEs that get every MPPS N-CREATE / N-SET
    forward_retry_seconds: float = 30.0                     # first retry of a failed forward (doubles)
    forward_max_retry_seconds: float = 1800.0
    forward_give_up_hours: float = 24.0
    # Instance Availability Notification (RAD-49, issue 16): known AEs that get an IAN N-CREATE per study per
    # stable point, through the forwarding queue (its retry settings apply)
    notify_availability_to: list = field(default_factory=list)
    tls_port: int = 0                        # DICOM over TLS on this port (2762 by convention; 0 = none)
    tls: TlsConfig = field(default_factory=TlsConfig)


@dataclass
class HttpConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 65536              # a request body over this is answered 413 from its headers
    api_max_body_bytes: int = 1024 * 1024    # the same for the JSON bodies of /api/v1 requests
    idle_timeout: float = 60.0               # an HTTP connection silent this long is closed
    request_timeout: float = 30.0            # a request must arrive whole this long after its first byte (0 = no limit)
    max_connections: int = 256               # open HTTP connections in total; more are refused at once
    max_connections_per_peer: int = 128      # open HTTP connections from one IP address (a TLS proxy in front is one)
    health_max_age: float = 5.0              # /health database figures older than this are re-read in the background (s)
    session_hours: float = 12.0              # a console session (login cookie) ends this long after the login
    secure_cookies: bool = False             # mark the session cookie Secure (a TLS proxy in front); always with http.tls
    auth_refresh_seconds: float = 2.0        # users, tokens and sessions are re-read this often (picks up `swf users`)
    tls: TlsConfig = field(default_factory=TlsConfig)   # with a cert, the HTTP port serves HTTPS only


@dataclass
class Hl7Config:
    application: str = "SWF_ENGINE"          # our MSH-3 in ACKs when the sender left MSH-5 empty
    facility: str = "RADIOLOGY"
    default_version: str = "2.5.1"           # ACK version when the received MSH cannot be read
    default_charset: str = "latin-1"         # decode messages without MSH-18 (many RIS send Latin-1)
    accepted_versions: list[str] = field(default_factory=lambda: ["2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6"])
    accepted_processing_ids: list[str] = field(default_factory=lambda: ["P", "D", "T"])
    primary_issuer: str = ""                 # PID-3 repetition with this assigning authority is the patient ID
    strict_merged_ids: bool = False          # AE 204 for messages naming a merged (prior) patient ID
    duplicate_window_days: float = 30.0      # a resent (MSH-3, MSH-4, MSH-10) within this window is a duplicate


@dataclass
class OrdersConfig:
    default_mode: str = "broker"             # broker (RIS sends identifiers) or filler (engine assigns them)
    nw_for_existing: str = "update"          # update | reject: a NW for an order that already exists
    uid_root: str = ""                       # Study Instance UIDs: <root>.<n>, or 2.25.<uuid> when empty
    accession_prefix: str = "A"              # accession = prefix + yyMMdd + 5-digit daily sequence
    filler_prefix: str = "F"
    default_station_ae: str = ""             # MWL offers steps no rule gave a station under this AE title (empty: not offered)


@dataclass
class AuditConfig:
    """The ATNA audit trail (README Security): off until a repository is named."""
    repository: str = ""                     # tls://host:6514 (RFC 5425) or udp://host:514 (RFC 5426); empty: off
    ca: str = ""                             # CAs (PEM) the repository's certificate must come from (tls)
    cert: str = ""                           # our client certificate (PEM), for a repository that asks for one
    key: str = ""                            # its private key (PEM)
    verify_hostname: bool = True             # the repository's certificate must name its host
    app_name: str = "swf-engine"             # syslog APP-NAME, and the engine's UserID in the messages
    source_id: str = ""                      # AuditSourceID; default: the DICOM AE title
    enterprise_site: str = ""                # AuditEnterpriseSiteID
    retry_max_seconds: float = 30.0          # reconnect backoff (doubles from 0.5 s up to this)
    transfer_quiet_seconds: float = 2.0      # C-STOREs of one study from one sender: one message once quiet this long


@dataclass
class ClusterConfig:
    """Several engines on one PostgreSQL database (engine/cluster.py); on SQLite one instance."""
    instance: str = ""                       # this instance's name; default: host name + ":" + MLLP port
    lease_seconds: float = 30.0              # a dead instance's queues and jobs are taken over after this long
    heartbeat_seconds: float = 5.0           # heartbeat and leader lease renewal (at most lease_seconds / 3)


@dataclass
class StudiesConfig:
    """Study stability (issue 16, engine/workflow/study_stability.py)."""
    quiet_seconds: float = 60.0              # a study is stable once no new instance arrived for this long
    scan_seconds: float = 5.0                # how often the leader looks for studies that became stable


@dataclass
class AgeOutConfig:
    """Worklist age-out (issue 16, engine/workflow/housekeeping.py): steps never started leave the worklist."""
    days: float = 0.0                        # steps still SCHEDULED this long after their start age out (0 = never)
    mode: str = "discontinue"                # discontinue (step DISCONTINUED) | remove (status kept, gone from the MWL)
    scan_seconds: float = 3600.0             # how often the leader looks for steps to age out


@dataclass
class RetentionConfig:
    """Retention (issue 16, engine/workflow/housekeeping.py): rows older than these ages are purged (0 = kept)."""
    journal_days: float = 0.0                # received HL7 messages (kept at least hl7.duplicate_window_days)
    outbox_days: float = 0.0                 # delivered or discarded outbound messages
    history_days: float = 0.0                # order and patient history
    audit_days: float = 0.0                  # operator actions (operator_audit), once the ATNA recorder has read them
    batch_rows: int = 100                    # rows deleted per write transaction (about 5 ms of the writer's time)
    run_seconds: float = 3600.0              # how often the leader purges


@dataclass
class Config:
    data_dir: str = "var"
    database_url: str = ""                   # default: sqlite:///<data_dir>/swf.sqlite
    routes_dir: str = "routes"
    profiles_dir: str = "profiles"
    log_level: str = "INFO"
    rules_reload_seconds: float = 2.0
    mllp: MllpConfig = field(default_factory=MllpConfig)
    dicom: DicomConfig = field(default_factory=DicomConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    hl7: Hl7Config = field(default_factory=Hl7Config)
    orders: OrdersConfig = field(default_factory=OrdersConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    studies: StudiesConfig = field(default_factory=StudiesConfig)
    age_out: AgeOutConfig = field(default_factory=AgeOutConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{Path(self.data_dir) / 'swf.sqlite'}"

    @property
    def storage_dir(self) -> Path:
        return Path(self.dicom.storage_dir or Path(self.data_dir) / "dicom")


def _apply(target: Any, data: LineDict, file: str, prefix: str = "") -> None:
    known = {f.name: f for f in fields(target)}
    for key, value in data.items():
        line = line_of(data, key)
        if key not in known:
            raise YamlProblem(file, line, f"unknown setting {prefix}{key!r}; known: {', '.join(sorted(known))}")
        current = getattr(target, key)
        if isinstance(current, TlsConfig) and value is False:   # `tls: off` (YAML reads off as false)
            current.off = True
            continue
        if is_dataclass(current):
            if not isinstance(value, dict):
                raise YamlProblem(file, line, f"{prefix}{key} must be a mapping")
            _apply(current, value, file, f"{prefix}{key}.")
            continue
        expected = type(current)
        if expected in (dict, list):
            if not isinstance(value, expected):
                raise YamlProblem(file, line, f"{prefix}{key} must be a {'mapping' if expected is dict else 'list'}")
            setattr(target, key, value)
            continue
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise YamlProblem(file, line, f"{prefix}{key} must be {expected.__name__}, got {value!r}")
        setattr(target, key, value)


def load_config(path: str | None) -> Config:
    """Defaults, then the file (if any).  Flags are applied by the CLI afterwards."""
    config = Config()
    if path:
        data = load_yaml(path)
        if data is not None:
            if not isinstance(data, LineDict):
                raise YamlProblem(path, 1, "the config file must be a mapping")
            _apply(config, data, path)
            _check_availability_receivers(config.dicom, data, path)
    return config


def _check_availability_receivers(dicom: DicomConfig, data: LineDict, file: str) -> None:
    """Each ``dicom.notify_availability_to`` entry must be a known AE (``dicom.aes``) with host and port:
    an IAN to a title nobody can reach would wait in the queue for ever, so the engine refuses to start."""
    section = data.get("dicom")
    listed = section.get("notify_availability_to") if isinstance(section, LineDict) else None
    for index, title in enumerate(dicom.notify_availability_to):
        line = listed.line_of(index) if isinstance(listed, LineList) else 0
        known = dicom.aes.get(title) if isinstance(title, str) else None
        if not isinstance(known, dict) or not known.get("host") or not known.get("port"):
            raise YamlProblem(file, line, f"dicom.notify_availability_to: {title!r} is not a known AE with host and"
                              f" port (dicom.aes: {', '.join(sorted(map(str, dicom.aes))) or 'none'})")
