"""Forwarding to a downstream archive / PPS receiver (a pynetdicom SCP here): received instances as stored,
MPPS N-CREATE then N-SET in order, and retried while the downstream AE is down."""
from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import ModalityPerformedProcedureStep

from tests.conftest import free_port, run_swf
from tests.integration.test_swf_day import STUDY, mpps, write_images

DCMTK = {**os.environ, "TCP_NODELAY": "1"}


class Downstream:
    """A downstream AE: Storage SCP and MPPS SCP, recording what it gets."""

    def __init__(self, port: int):
        self.stored: list[str] = []
        self.mpps: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        ae = AE(ae_title="ARCHIVE")
        ae.supported_contexts = AllStoragePresentationContexts
        ae.add_supported_context(ModalityPerformedProcedureStep)
        self.server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[
            (evt.EVT_C_STORE, self._store), (evt.EVT_N_CREATE, self._create), (evt.EVT_N_SET, self._set)])

    def _store(self, event: Any) -> int:
        with self.lock:
            self.stored.append(str(event.dataset.SOPInstanceUID))
        return 0x0000

    def _create(self, event: Any) -> tuple[int, Dataset]:
        with self.lock:
            self.mpps.append(("N-CREATE", str(event.attribute_list.PerformedProcedureStepStatus)))
        return 0x0000, event.attribute_list

    def _set(self, event: Any) -> tuple[int, Dataset]:
        with self.lock:
            self.mpps.append(("N-SET", str(event.modification_list.PerformedProcedureStepStatus)))
        return 0x0000, event.modification_list

    def wait(self, stored: int, mpps_count: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.stored) >= stored and len(self.mpps) >= mpps_count:
                    return
            time.sleep(0.1)
        raise AssertionError(f"downstream got {len(self.stored)} instances and {self.mpps}")

    def close(self) -> None:
        self.server.shutdown()


def test_instances_and_mpps_are_forwarded_in_order_and_retried(start_engine, tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "engine.yaml"
    config.write_text(f"dicom:\n  forward_store_to: [ARCHIVE]\n  forward_mpps_to: [ARCHIVE]\n"
                      f"  forward_retry_seconds: 0.3\n  forward_max_retry_seconds: 1\n"
                      f"  aes:\n    ARCHIVE: {{host: 127.0.0.1, port: {port}}}\n")
    engine = start_engine("--config", str(config))
    order = tmp_path / "order.hl7"
    order.write_text(
        "MSH|^~\\&|RIS|GENHOSP|SWF_ENGINE|RADIOLOGY|20250304083000||ORM^O01|F1|P|2.3.1\n"
        "PID|1||PAT4711^^^GENHOSP^MR||MULLER^ANNA\n"
        "ORC|NW|PLC-88812^HIS|FIL-55120^RIS||SC||1^once^^20250304100000^^R\n"
        "OBR|1|PLC-88812^HIS|FIL-55120^RIS|CTCHESTC^CT chest^99RAD||||||||||||||ACC25030417|RP-0417-1|SPS-0417-1"
        "||||CT\n"
        f"ZDS|{STUDY}^RIS^Application^DICOM\n")
    assert run_swf("replay", str(order), "--to", engine.address).returncode == 0
    # The downstream archive is down while the modality works: everything waits in the queue.
    uid = generate_uid(prefix="2.25.")
    assert mpps(engine, uid, "IN PROGRESS") == 0x0000
    references = write_images(tmp_path / "images", 2)
    stored = subprocess.run(["storescu", "-aet", "CT1_AE", "-aec", "SWF_ENGINE", "+sd", "127.0.0.1",
                             str(engine.dicom_port), str(tmp_path / "images")], capture_output=True, text=True,
                            env=DCMTK, timeout=60)
    assert stored.returncode == 0, stored.stderr
    assert mpps(engine, uid, "COMPLETED") == 0x0000
    time.sleep(1)
    downstream = Downstream(port)
    try:
        downstream.wait(stored=2, mpps_count=2)
        assert sorted(downstream.stored) == sorted(sop for _, sop in references)
        assert downstream.mpps == [("N-CREATE", "IN PROGRESS"), ("N-SET", "COMPLETED")]
        assert "retry" in engine.log()
        time.sleep(0.5)
        listing = run_swf("forwards", "--all", "--data-dir", str(engine.data_dir)).stdout
        assert listing.count("delivered") == 4 and "pending" not in listing
    finally:
        downstream.close()
