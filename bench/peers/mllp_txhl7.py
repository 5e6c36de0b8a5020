#!/usr/bin/env python3
"""Benchmark peer: an MLLP server built from txHL7 (Twisted) that parses each message with python-hl7
and answers with python-hl7's ``create_ack`` (AA).  It stores nothing: the ceiling of a plain
parse-and-ACK listener in Python, against which the engine (which also journals durably, maps and
writes the order) is compared.  Runs with the bench venv (bench/.venv), never the engine's.

    mllp_txhl7.py --port N [--host 127.0.0.1]
"""
from __future__ import annotations

import argparse
import sys

from twisted.internet import reactor
from txHL7.mllp import MLLPFactory
from txHL7.receiver import AbstractHL7Receiver, HL7MessageContainer


class AckEverything(AbstractHL7Receiver):
    message_cls = HL7MessageContainer       # python-hl7 parse of every message

    def getCodec(self):
        return "latin-1", "strict"

    def handleMessage(self, container):
        return container.ack("AA")           # python-hl7 create_ack: MSA-2 = the message's MSH-10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    reactor.listenTCP(args.port, MLLPFactory(AckEverything()), interface=args.host)
    print(f"txHL7 + python-hl7 MLLP server on {args.host}:{args.port}", file=sys.stderr, flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
