#!/usr/bin/env python3
"""Benchmark peer: the ceiling of a Twisted MLLP listener.  Frames are cut at <FS><CR>, the ACK is made
from the MSH segment by splitting on '|' (no HL7 parsing, nothing stored).

    mllp_raw.py --port N [--host 127.0.0.1]
"""
from __future__ import annotations

import argparse
import sys
import time

from twisted.internet import protocol, reactor

VT, FS_CR, CR = b"\x0b", b"\x1c\r", b"\r"


def ack_for(message: bytes) -> bytes:
    header = message.split(CR, 1)[0].split(b"|")
    get = lambda i: header[i] if len(header) > i else b""  # noqa: E731
    control_id = get(9)
    return b"".join([
        b"MSH|^~\\&|", get(4), b"|", get(5), b"|", get(2), b"|", get(3), b"|",
        time.strftime("%Y%m%d%H%M%S").encode(), b"||ACK|R", control_id, b"|P|", get(11) or b"2.5.1", CR,
        b"MSA|AA|", control_id, CR])


class RawMLLP(protocol.Protocol):
    def connectionMade(self) -> None:
        self.pending = b""
        self.transport.setTcpNoDelay(True)

    def dataReceived(self, data: bytes) -> None:
        self.pending += data
        out = []
        while True:
            end = self.pending.find(FS_CR)
            if end < 0:
                break
            frame, self.pending = self.pending[:end], self.pending[end + 2:]
            start = frame.find(VT)
            out.append(VT + ack_for(frame[start + 1:] if start >= 0 else frame) + FS_CR)
        if out:
            self.transport.write(b"".join(out))


class RawFactory(protocol.ServerFactory):
    protocol = RawMLLP


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    reactor.listenTCP(args.port, RawFactory(), interface=args.host)
    print(f"raw Twisted MLLP server on {args.host}:{args.port}", file=sys.stderr, flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
