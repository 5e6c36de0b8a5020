"""The DICOM listener's TLS context (dicom/tls.py): rebuilt on SIGHUP even when the files' stamps do not
show it, kept when the new files do not load; the TLS settings checked."""
from __future__ import annotations

import os
import signal
import ssl
from pathlib import Path

import pytest

from engine.config import TlsConfig
from engine.dicom.tls import ReloadingServerContext, TlsSetupError, reload_on_sighup, server_context
from tests.pki import CertificateAuthority


def served_serial(context: ssl.SSLContext, ca: Path) -> int:
    """The serial number of the certificate ``context`` presents, over a real in-memory handshake."""
    client = ssl.create_default_context(cafile=str(ca))
    server_in, server_out, client_in, client_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    server = context.wrap_bio(server_in, server_out, server_side=True)
    peer = client.wrap_bio(client_in, client_out, server_hostname="localhost")
    for _ in range(10):
        for side in (peer, server):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
        server_in.write(client_out.read())
        client_in.write(server_out.read())
    return int(peer.getpeercert()["serialNumber"], 16)


def test_sighup_reloads_and_a_broken_file_keeps_the_previous_context(tmp_path: Path) -> None:
    authority = CertificateAuthority(tmp_path)
    issued = authority.issue("engine", "SWF_ENGINE")
    tls = TlsConfig(cert=str(issued.cert), key=str(issued.key))
    holder = ReloadingServerContext(tls, check_seconds=3600)     # file changes alone would not be seen now
    first = holder.current()
    serial = served_serial(first, authority.ca)
    authority.issue("engine", "SWF_ENGINE")                      # new files, not looked at for an hour
    assert holder.current() is first
    previous = signal.getsignal(signal.SIGHUP)
    heard = []
    signal.signal(signal.SIGHUP, lambda *_: heard.append(True))   # another listener's handler: still called
    try:
        reload_on_sighup(holder)
        os.kill(os.getpid(), signal.SIGHUP)
        second = holder.current()
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert heard == [True] and second is not first and holder.reloads == 1
    assert served_serial(second, authority.ca) != serial
    Path(issued.key).write_text("not a key\n")
    holder.reload()
    assert holder.current() is second                            # the new files do not load: the old stays


@pytest.mark.parametrize(("settings", "problem"), [
    ({"min_version": "1.1"}, "min_version '1.1'"),
    ({"ciphers": "NO-SUCH-SUITE"}, "ciphers 'NO-SUCH-SUITE'"),
    ({"require_client_cert": True}, "require_client_cert needs a ca"),
    ({"key": "/nonexistent.key"}, "/nonexistent.key"),
])
def test_unusable_settings_are_named(tmp_path: Path, settings: dict, problem: str) -> None:
    issued = CertificateAuthority(tmp_path).issue("engine", "SWF_ENGINE")
    tls = TlsConfig(cert=str(issued.cert), key=str(issued.key))
    for key, value in settings.items():
        setattr(tls, key, value)
    with pytest.raises(TlsSetupError, match=problem.replace(".", r"\.")):
        server_context(tls)
