"""A real Audit Record Repository for the ATNA tests: Debian's rsyslogd with its TLS listener (imtcp with
the gtls stream driver, RFC 5425) and a UDP listener (imudp, RFC 5426) on loopback, writing every message
it splits off the wire as one JSON line (MSGID, APP-NAME, PRI and the whole MSG, newlines kept)."""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable

from tests.conftest import free_port
from tests.pki import CertificateAuthority

CONFIG = """\
global(workDirectory="{folder}" maxMessageSize="256k" parser.escapeControlCharactersOnReceive="off"
       defaultNetstreamDriver="gtls" defaultNetstreamDriverCAFile="{ca}"
       defaultNetstreamDriverCertFile="{cert}" defaultNetstreamDriverKeyFile="{key}")
module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
input(type="imtcp" port="{tls_port}" address="127.0.0.1")
module(load="imudp")
input(type="imudp" port="{udp_port}" address="127.0.0.1")
template(name="whole" type="list") {{
  constant(value="{{\\"msgid\\":\\"") property(name="msgid" format="json")
  constant(value="\\",\\"app\\":\\"") property(name="app-name" format="json")
  constant(value="\\",\\"pri\\":\\"") property(name="pri")
  constant(value="\\",\\"msg\\":\\"") property(name="msg" format="json")
  constant(value="\\"}}\\n")
}}
*.* action(type="omfile" file="{out}" template="whole")
"""


class AuditRepository:
    """``start()``/``stop()`` rsyslogd; ``messages()`` what it wrote; ``audits()`` those parsed as XML."""

    def __init__(self, folder: Path, tls_port: int | None = None):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.authority = CertificateAuthority(folder / "pki")
        self.server = self.authority.issue("repository", "localhost")
        self.tls_port = tls_port or free_port()
        self.udp_port = free_port()
        self.out = folder / "received.jsonl"
        self.pidfile = folder / "rsyslogd.pid"
        self.config = folder / "rsyslog.conf"
        self.config.write_text(CONFIG.format(folder=folder, ca=self.authority.ca, cert=self.server.cert,
                                             key=self.server.key, tls_port=self.tls_port, udp_port=self.udp_port,
                                             out=self.out))
        self.process: subprocess.Popen | None = None

    @property
    def tls_url(self) -> str:
        return f"tls://127.0.0.1:{self.tls_port}"

    def start(self) -> None:
        self.pidfile.unlink(missing_ok=True)
        self.process = subprocess.Popen(["rsyslogd", "-n", "-f", str(self.config), "-i", str(self.pidfile)],
                                        stdout=open(self.folder / "rsyslogd.log", "ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"rsyslogd exited: {(self.folder / 'rsyslogd.log').read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.tls_port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("rsyslogd does not listen")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def messages(self) -> list[dict]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text(encoding="utf-8").splitlines() if line.strip()]

    def audits(self, app: str | None = None) -> list[ET.Element]:
        """Every message with the IHE MSGID (from ``app`` when given), parsed as an AuditMessage."""
        return [ET.fromstring(m["msg"].encode("utf-8")) for m in self.messages()
                if m["msgid"] == "IHE+RFC-3881" and (app is None or m["app"] == app)]

    def wait_for(self, predicate: Callable[[list[ET.Element]], bool], app: str | None = None,
                 timeout: float = 15) -> list[ET.Element]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.audits(app)
            if predicate(found) or time.monotonic() > deadline:
                return found
            time.sleep(0.1)


def event_name(audit: ET.Element) -> str:
    return audit.find("EventIdentification/EventID").get("originalText")


def of_event(audits: list[ET.Element], name: str) -> list[ET.Element]:
    return [audit for audit in audits if event_name(audit) == name]
