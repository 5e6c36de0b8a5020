"""A minimal pynetdicom Storage SCP: the floor of any receiver built on pynetdicom's association loop.

It accepts every storage SOP class pynetdicom knows, takes each data set from pynetdicom and discards
it (no file, no index), and answers success.  Run with the engine's venv, so it uses the engine's
pynetdicom.  Its throughput against DCMTK storescp in the same run shows how much of the engine's gap
is pynetdicom's own receive path (bench/storage.py).
"""
from __future__ import annotations

import argparse
import socket

from pynetdicom import AE, AllStoragePresentationContexts, _config, evt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--aet", default="BENCHPYNETDICOM")
    args = parser.parse_args()
    _config.LOG_HANDLER_LEVEL = "none"
    ae = AE(ae_title=args.aet)
    ae.supported_contexts = AllStoragePresentationContexts
    ae.maximum_pdu_size = 262144             # as the engine's default (dicom.max_pdu_bytes)

    def on_open(event) -> None:
        event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def on_store(event) -> int:
        event.request.DataSet.getbuffer().release()   # the received bytes, as a handler would take them
        return 0x0000

    ae.start_server(("127.0.0.1", args.port), block=True,
                    evt_handlers=[(evt.EVT_CONN_OPEN, on_open), (evt.EVT_C_STORE, on_store)])


if __name__ == "__main__":
    main()
