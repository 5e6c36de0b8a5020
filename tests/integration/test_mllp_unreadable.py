"""Frames whose MSH cannot be read still get an ACK the sender can read (issue 11 items 6 and 7): AR with
the engine's own MSH and the standard delimiters, and the connection stays usable (SWF.md 8.2, 8.3)."""
from __future__ import annotations

from tests.hostile import END, START, AckProbe, mllp_connect, msa, orm, read_frame


def assert_readable_ar(ack: bytes) -> None:
    """An AR in the engine's own MSH: standard delimiters, CR only between segments, no framing bytes."""
    assert ack.startswith(b"MSH|^~\\&|SWF_ENGINE|RADIOLOGY||"), ack[:60]
    assert not any(byte in ack for byte in (b"\x0b", b"\x1c", b"\n")), ack
    segments = ack.rstrip(b"\r").split(b"\r")
    assert [segment[:4] for segment in segments[:2]] == [b"MSH|", b"MSA|"], segments
    assert msa(ack)[1:3] == ["AR", ""]


def test_oversized_frame_without_msh_gets_ar_and_the_connection_goes_on(start_engine) -> None:
    engine = start_engine()
    with AckProbe(engine.mllp_port) as probe, mllp_connect(engine.mllp_port) as sock:
        sock.sendall(START + b"B" * (2 * 1024 * 1024) + END)
        ack = read_frame(sock)
        assert_readable_ar(ack)
        assert b"too large" in ack
        sock.sendall(START + orm("AFTERBIG") + END)
        assert msa(read_frame(sock))[1:3] == ["AA", "AFTERBIG"]
    probe.assert_all_acked_within(1.0, at_least=1)
    rejected = engine.swf("journal", "--data-dir", str(engine.data_dir), "--status", "rejected").stdout
    assert "too large" in rejected


UNUSABLE_SEPARATORS = {"CR": b"\r", "LF": b"\n", "1C": b"\x1c", "letter": b"A", "digit": b"5"}
UNUSABLE_ENCODINGS = {"CR": b"^~\\\r", "LF": b"^\n\\&", "1C": b"^~\x1c&", "letter": b"^~\\x"}


def test_msh_with_unusable_delimiters_gets_ar_with_standard_delimiters(start_engine) -> None:
    """Each variant on one connection, each followed by a good ORM: the connection stays in step."""
    engine = start_engine()
    variants = {f"field separator {name}": orm("ODD").replace(b"|", char) for name, char in UNUSABLE_SEPARATORS.items()}
    variants.update({f"encoding characters {name}": orm("ODD").replace(b"^~\\&", chars, 1)
                     for name, chars in UNUSABLE_ENCODINGS.items()})
    with mllp_connect(engine.mllp_port) as sock:
        for number, (name, message) in enumerate(variants.items()):
            sock.sendall(START + message + END)
            ack = read_frame(sock)
            try:
                assert_readable_ar(ack)
                assert b"delimiters unusable" in ack
            except AssertionError as exc:
                raise AssertionError(f"{name}: {exc}") from None
            sock.sendall(START + orm(f"AFTER{number}") + END)
            assert msa(read_frame(sock))[1:3] == ["AA", f"AFTER{number}"], name
