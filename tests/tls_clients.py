"""TLS clients for the tests: ``openssl s_client`` as an MLLP sender, and Python's ssl from a chosen
loopback source address (each refusal case from its own address: the engine raises one security event
per peer host per minute)."""
from __future__ import annotations

import selectors
import socket
import ssl
import subprocess
import time
from pathlib import Path

from tests.pki import Issued

START, END = b"\x0b", b"\x1c\r"


def s_client(port: int, ca: Path, client: Issued | None = None, *options: str, send: bytes = b"",
             until: bytes = END, timeout: float = 10) -> tuple[int | None, bytes, str]:
    """Run ``openssl s_client`` against 127.0.0.1:port, write ``send``, read stdout until ``until`` or EOF.

    Returns (exit code or None if still running when stopped, stdout bytes, stderr text)."""
    command = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(ca), "-verify_return_error",
               "-verify_ip", "127.0.0.1", "-quiet", *options]
    if client is not None:
        command += ["-cert", str(client.cert), "-key", str(client.key)]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdin is not None and process.stdout is not None and process.stderr is not None
    process.stdin.write(send)
    process.stdin.flush()
    output, ended = b"", False
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while until not in output and time.monotonic() < deadline:
            if not selector.select(max(0.0, deadline - time.monotonic())):
                break
            chunk = process.stdout.read1(65536)
            if not chunk:
                ended = True
                break
            output += chunk
    try:
        code: int | None = process.wait(5) if ended else None   # the server closed: s_client exits
    except subprocess.TimeoutExpired:
        code = None
    if code is None:
        process.terminate()
        process.wait(5)
    errors = process.stderr.read().decode(errors="replace")
    process.stdin.close()
    process.stdout.close()
    process.stderr.close()
    return code, output, errors


def client_context(ca: Path, client: Issued | None = None, *, minimum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
                   ) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    context.minimum_version = minimum
    if client is not None:
        context.load_cert_chain(str(client.cert), str(client.key))
    return context


def tls_exchange(port: int, context: ssl.SSLContext, send: bytes, *, source: str = "127.0.0.1",
                 hostname: str = "localhost", timeout: float = 10) -> bytes:
    """Connect from ``source``, send, read until an MLLP end block or EOF; an ssl.SSLError or an EOF
    before any answer tells the server refused (with TLS 1.3 a refused client certificate shows only
    when the client reads)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
    with context.wrap_socket(raw, server_hostname=hostname) as sock:
        sock.sendall(send)
        answer = b""
        while END not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer
