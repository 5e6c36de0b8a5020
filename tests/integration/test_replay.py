"""``swf replay`` against receivers that are not there, do not answer, or go away: real sockets on 127.0.0.1.

An operator must see at once whether nothing listens ("could not connect") or a receiver took the
messages and did not ACK them ("connected, no ACK within N s"): the two need different fixes.
"""
from __future__ import annotations

import socket
import threading
from pathlib import Path

from tests.conftest import ROOT, free_port, run_swf
from tests.mllp_receiver import Receiver

DAY_V231 = ROOT / "samples" / "day-v231.hl7"


def three_messages(tmp_path: Path) -> Path:
    path = tmp_path / "three.hl7"
    path.write_text("\n\n".join(
        f"MSH|^~\\&|HIS|RIVERSIDE|SWF_ENGINE|RADIOLOGY|20250305071000||ADT^A04|REPLAY{n}|P|2.3.1\n"
        f"PID|1||PAT{n}^^^RIVERSIDE^MR||DOE^JANE" for n in (1, 2, 3)) + "\n")
    return path


def test_nothing_listening_is_said_once_and_nothing_counts_as_sent() -> None:
    port = free_port()   # bound and released: nothing listens there
    done = run_swf("replay", str(DAY_V231), "--to", f"127.0.0.1:{port}", "--no-progress", timeout=30)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert output.count(f"connection refused to 127.0.0.1:{port}") == 1, output
    assert "sent 0: AA 0, AE 0, AR 0, no answer 0" in done.stdout
    assert f"could not connect: connection refused to 127.0.0.1:{port}; 32 of 32 message(s) not sent" in done.stdout
    assert "no answer HIS" not in output and "no answer RIS" not in output


def test_a_receiver_that_never_acks_is_connected_no_ack(tmp_path: Path) -> None:
    silent = Receiver(answer=lambda message: "silent")
    try:
        done = run_swf("replay", str(three_messages(tmp_path)), "--to", silent.address, "--timeout", "0.5",
                       "--no-progress", timeout=30)
    finally:
        silent.close()
    assert done.returncode == 1, done.stdout + done.stderr
    assert "sent 3: AA 0, AE 0, AR 0, no answer 3" in done.stdout
    for n in (1, 2, 3):
        assert f"  no answer REPLAY{n}: connected, no ACK within 0.5 s" in done.stdout
    assert "could not connect" not in done.stdout
    assert silent.attempts == ["REPLAY1", "REPLAY2", "REPLAY3"]


def test_a_receiver_that_goes_away_ends_the_replay_with_one_reason(tmp_path: Path) -> None:
    """ACKs the first message, closes on the second without an ACK, then nothing listens any more."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def read_frame(connection: socket.socket) -> None:
        received = b""
        while not received.endswith(b"\x1c\r"):
            chunk = connection.recv(65536)
            if not chunk:
                return
            received += chunk

    def serve() -> None:
        connection, _ = listener.accept()
        listener.close()
        with connection:
            read_frame(connection)
            connection.sendall(b"\x0bMSH|^~\\&|R|R|H|H|20250305||ACK|A1|P|2.3.1\rMSA|AA|REPLAY1\r\x1c\r")
            read_frame(connection)   # then closed without an ACK

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    done = run_swf("replay", str(three_messages(tmp_path)), "--to", f"127.0.0.1:{port}", "--timeout", "5",
                   "--no-progress", timeout=30)
    server.join(5)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "sent 2: AA 1, AE 0, AR 0, no answer 1" in done.stdout
    assert "  no answer REPLAY2: connected, no ACK: connection closed by the receiver" in done.stdout
    assert f"could not connect: connection refused to 127.0.0.1:{port}; 1 of 3 message(s) not sent" in done.stdout
