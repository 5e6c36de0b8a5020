"""Benchmark 4, the loop: order in -> worklist item out, MPPS in -> status to the RIS out.

The engine runs with SWF_RIS_ADDRESS pointing at a RIS stand-in (``RisReceiver`` below: a small MLLP
server that ACKs AA and notes when it ACKed which status for which accession), so the shipped routes/
send the procedure status there.  For each of N orders, one after the other:

1. ORM^O01 NW (CT, broker mode, MSH-3 RIS) over one open MLLP connection; the ACK must be AA;
2. C-FIND by accession on one open association (pynetdicom, calling AE CT1_AE), repeated at once until
   the item is there: *order -> worklist visible* = from before the ORM was sent to the first C-FIND
   response that holds the item;
3. MPPS N-CREATE IN PROGRESS, then wait until the RIS has ACKed the IP status;
4. MPPS N-SET COMPLETED: *MPPS COMPLETED -> status ACKed* = from before the N-SET was sent until the RIS
   stand-in has sent its ACK for the CM status of that accession.

Every status message must carry the order's accession (OBR-18) and the expected ORC-5 (IP, then CM).
"""
from __future__ import annotations

import socket
import socketserver
import threading
import time

import gen
from common import ENGINE_AET, HOST, BenchFailure, Context, Section, Stats, fmt_ms, md_table, start_engine

TITLE = "The loop: ORM accepted -> worklist item visible, MPPS COMPLETED -> status ORM ACKed by the RIS"


class RisReceiver:
    """MLLP server: ACKs every message AA and records (accession, ORC-5) -> time of its ACK."""

    def __init__(self) -> None:
        self.acked: dict[tuple[str, str], float] = {}
        self.count = 0
        self.problems: list[str] = []
        self.changed = threading.Condition()
        receiver = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                pending = b""
                while True:
                    chunk = self.request.recv(65536)
                    if not chunk:
                        return
                    pending += chunk
                    while b"\x1c\r" in pending:
                        data, pending = pending.split(b"\x1c\r", 1)
                        receiver.received(self.request, data[data.find(b"\x0b") + 1:])

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def received(self, connection: socket.socket, message: bytes) -> None:
        segments = {s.split(b"|", 1)[0]: s.split(b"|") for s in message.split(b"\r") if s}
        msh, orc, obr = segments.get(b"MSH", []), segments.get(b"ORC", []), segments.get(b"OBR", [])
        control_id = msh[9].decode() if len(msh) > 9 else ""
        ack = (f"MSH|^~\\&|RIS|BENCH|SWF_ENGINE|RADIOLOGY|{time.strftime('%Y%m%d%H%M%S')}||ACK|R{control_id}|P|2.3.1\r"
               f"MSA|AA|{control_id}\r").encode()
        connection.sendall(b"\x0b" + ack + b"\x1c\r")
        at = time.perf_counter()
        accession = obr[18].decode() if len(obr) > 18 else ""
        status = orc[5].decode() if len(orc) > 5 else ""
        with self.changed:
            self.count += 1
            if not accession or status not in ("IP", "CM"):
                self.problems.append(f"unexpected status message: {message[:200]!r}")
            self.acked.setdefault((accession, status), at)
            self.changed.notify_all()

    def wait(self, accession: str, status: str, timeout: float = 15) -> float:
        deadline = time.monotonic() + timeout
        with self.changed:
            while (accession, status) not in self.acked:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BenchFailure(f"the RIS stand-in got no {status} status for {accession} in {timeout} s")
                self.changed.wait(left)
            return self.acked[(accession, status)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Modality:
    """One association for MWL C-FIND and MPPS N-CREATE/N-SET, as a CT scanner holds it."""

    def __init__(self, port: int):
        from pynetdicom import AE
        from pynetdicom.sop_class import ModalityPerformedProcedureStep, ModalityWorklistInformationFind

        self.find_class, self.mpps_class = ModalityWorklistInformationFind, ModalityPerformedProcedureStep
        ae = AE(ae_title="CT1_AE")
        ae.add_requested_context(ModalityWorklistInformationFind)
        ae.add_requested_context(ModalityPerformedProcedureStep)
        self.assoc = ae.associate(HOST, port, ae_title=ENGINE_AET)
        if not self.assoc.is_established:
            raise BenchFailure("the engine refused the modality's association")
        self.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def find(self, accession: str):
        from pydicom.dataset import Dataset

        query = Dataset()
        query.AccessionNumber = accession
        query.PatientName = query.PatientID = query.StudyInstanceUID = query.RequestedProcedureID = ""
        step = Dataset()
        step.ScheduledStationAETitle = step.ScheduledProcedureStepID = step.Modality = ""
        step.ScheduledProcedureStepStartDate = ""
        query.ScheduledProcedureStepSequence = [step]
        found = []
        for status, identifier in self.assoc.send_c_find(query, self.find_class):
            if status is None or status.Status not in (0x0000, 0xFF00, 0xFF01):
                raise BenchFailure(f"C-FIND failed: {status}")
            if identifier is not None and status.Status != 0x0000:
                found.append(identifier)
        return found

    def create(self, uid: str, item) -> None:
        from pydicom.dataset import Dataset

        sps = item.ScheduledProcedureStepSequence[0]
        ref = Dataset()
        ref.StudyInstanceUID, ref.AccessionNumber = item.StudyInstanceUID, item.AccessionNumber
        ref.RequestedProcedureID, ref.ScheduledProcedureStepID = item.RequestedProcedureID, sps.ScheduledProcedureStepID
        ds = Dataset()
        ds.PatientName, ds.PatientID, ds.Modality = item.PatientName, item.PatientID, "CT"
        ds.PerformedProcedureStepID, ds.PerformedStationAETitle = f"PPS{uid[-8:]}", "CT1_AE"
        ds.PerformedProcedureStepStartDate, ds.PerformedProcedureStepStartTime = time.strftime("%Y%m%d"), "100000"
        ds.PerformedProcedureStepStatus = "IN PROGRESS"
        ds.PerformedProcedureStepEndDate = ds.PerformedProcedureStepEndTime = None
        ds.PerformedSeriesSequence = []
        ds.ScheduledStepAttributesSequence = [ref]
        status, _ = self.assoc.send_n_create(ds, self.mpps_class, uid)
        if status is None or status.Status != 0x0000:
            raise BenchFailure(f"N-CREATE {uid}: {status}")

    def complete(self, uid: str, study_uid: str) -> None:
        from pydicom.dataset import Dataset

        ds = Dataset()
        ds.PerformedProcedureStepStatus = "COMPLETED"
        ds.PerformedProcedureStepEndDate, ds.PerformedProcedureStepEndTime = time.strftime("%Y%m%d"), "101500"
        series = Dataset()
        series.SeriesInstanceUID, series.ProtocolName = f"{study_uid}.1", "BENCH"
        series.ReferencedImageSequence = []
        ds.PerformedSeriesSequence = [series]
        status, _ = self.assoc.send_n_set(ds, self.mpps_class, uid)
        if status is None or status.Status != 0x0000:
            raise BenchFailure(f"N-SET {uid}: {status}")

    def close(self) -> None:
        self.assoc.release()


def send_order(sock: socket.socket, message: bytes, control_id: str) -> None:
    sock.sendall(b"\x0b" + message + b"\x1c\r")
    data = b""
    while b"\x1c\r" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise BenchFailure("the engine closed the MLLP connection")
        data += chunk
    if f"MSA|AA|{control_id}".encode() not in data:
        raise BenchFailure(f"order {control_id} not accepted: {data[:300]!r}")


def run(ctx: Context) -> Section:
    section = Section("loop", TITLE)
    count = 200 if ctx.quick else 1000
    ris = RisReceiver()
    engine = start_engine("engine-loop", ctx.fresh_dir("loop") / "engine", ctx.logs,
                          env={"SWF_RIS_ADDRESS": f"{HOST}:{ris.port}"})
    to_ack, to_visible, polls, ip_latency, cm_latency = [], [], [], [], []
    try:
        sock = socket.create_connection((HOST, engine.mllp_port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        modality = Modality(engine.dicom_port)
        try:
            for seq in range(1, count + 1 + 5):   # the first 5 are a warm-up, not counted
                message, control_id, accession = gen.orm_message(seq, "LOOP", modality="CT")
                t0 = time.perf_counter()
                send_order(sock, message, control_id)
                t_ack = time.perf_counter()
                tries = 0
                while True:
                    tries += 1
                    found = modality.find(accession)
                    if found:
                        break
                    if time.perf_counter() - t0 > 15:
                        raise BenchFailure(f"{accession} not on the worklist 15 s after its ACK")
                t_visible = time.perf_counter()
                if len(found) != 1 or str(found[0].AccessionNumber) != accession:
                    raise BenchFailure(f"C-FIND for {accession}: {len(found)} items")
                uid = f"2.25.{int(time.time() * 1e6)}{seq}"
                t_create = time.perf_counter()
                modality.create(uid, found[0])
                t_ip = ris.wait(accession, "IP")
                t_set = time.perf_counter()
                modality.complete(uid, str(found[0].StudyInstanceUID))
                t_cm = ris.wait(accession, "CM")
                if seq > 5:
                    to_ack.append(t_ack - t0)
                    to_visible.append(t_visible - t0)
                    polls.append(tries)
                    ip_latency.append(t_ip - t_create)
                    cm_latency.append(t_cm - t_set)
        finally:
            modality.close()
            sock.close()
        if ris.problems:
            raise BenchFailure("; ".join(ris.problems[:3]))
        time.sleep(0.5)
        if ris.count != 2 * (count + 5):
            raise BenchFailure(f"the RIS stand-in got {ris.count} status messages, expected {2 * (count + 5)}")
    finally:
        engine.stop()
        ris.close()
    rows = []
    for label, values in [("ORM sent -> ACK (AA) received", to_ack),
                          ("ORM sent -> worklist item visible (C-FIND on an open association)", to_visible),
                          ("MPPS N-CREATE IN PROGRESS sent -> IP status ACKed by the RIS", ip_latency),
                          ("MPPS N-SET COMPLETED sent -> CM status ACKed by the RIS", cm_latency)]:
        st = Stats.of(values)
        rows.append([label, st.n, fmt_ms(st.median), fmt_ms(st.p99), fmt_ms(st.max)])
    section.add(f"{count} orders one after the other (plus 5 warm-up orders not counted); C-FIND polls per order "
                f"until visible: max {max(polls)} (1 = visible at the first query after the ACK).", "",
                md_table(["latency", "orders", "p50 ms", "p99 ms", "max ms"], rows), "")
    vis, cm = Stats.of(to_visible), Stats.of(cm_latency)
    section.target("ORM accepted -> worklist visible: p99 < 100 ms", f"p99 {vis.p99 * 1000:.1f} ms (p50 "
                   f"{vis.median * 1000:.1f} ms)", vis.p99 < 0.100)
    section.target("MPPS COMPLETED -> status ORM ACKed by the RIS: p99 < 100 ms",
                   f"p99 {cm.p99 * 1000:.1f} ms (p50 {cm.median * 1000:.1f} ms)", cm.p99 < 0.100)
    return section
