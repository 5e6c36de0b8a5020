"""DICOM on any instance (issue 15): two engine processes on one PostgreSQL and one storage directory.
MWL from either; an MPPS N-CREATE on one and its N-SET on the other; C-STORE on one and the storage
commitment N-ACTION on the other (the report reaches the modality); C-MOVE from either of a study stored
through both (DCMTK movescu to a pynetdicom Storage SCP)."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import psycopg
from pydicom.uid import generate_uid

from tests.cluster.conftest import mllp_exchange
from tests.conftest import free_port
from tests.integration.test_commitment import Modality as CommitmentModality, store_instances
from tests.integration.test_mpps import ORDER, STUDY, Modality as MppsModality, final, in_progress, \
    worklist_matches
from tests.integration.test_mllp import msa
from tests.integration.test_storage_qr import StorageSCP

DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}


def cluster_config(tmp_path: Path, modality: CommitmentModality, destination: StorageSCP) -> Path:
    path = tmp_path / "engine.yaml"
    path.write_text(
        "dicom:\n"
        "  aes:\n"
        f"    {modality.title}: {{host: 127.0.0.1, port: {modality.port}}}\n"
        f"    DEST: {{host: 127.0.0.1, port: {destination.port}}}\n"
        "  commitment_grace_seconds: 2\n"
        "  commitment_retry_seconds: 0.3\n"
        "  commitment_max_retry_seconds: 0.6\n")
    return path


def performed_status(database_url: str) -> list[str]:
    with psycopg.connect(database_url) as connection:
        return [row[0] for row in connection.execute("SELECT status FROM performed_steps")]


def test_mwl_mpps_storage_commitment_and_move_across_two_instances(make_instances, database_url, tmp_path) -> None:
    modality = CommitmentModality("MODALITY1", free_port())
    modality.listen()
    destination = StorageSCP()
    try:
        a, b = make_instances(2, extra=("--config", str(cluster_config(tmp_path, modality, destination))))
        assert msa(mllp_exchange(a.mllp_port, ORDER.replace(b"\n", b"\r")))[1] == "AA"
        assert worklist_matches(a) == 1 and worklist_matches(b) == 1      # MWL from either instance

        created = MppsModality(a.dicom_port)                               # N-CREATE on A ...
        status, _ = created.create(in_progress(), "2.25.77001")
        created.close()
        assert status.Status == 0x0000
        completed = MppsModality(b.dicom_port)                             # ... its N-SET on B
        status, _ = completed.set(final(), "2.25.77001")
        completed.close()
        assert status.Status == 0x0000
        assert performed_status(database_url) == ["COMPLETED"]
        assert worklist_matches(a) == 0 and worklist_matches(b) == 0       # the step left both worklists

        series_study = STUDY
        through_a = store_instances(a, 2, study=series_study)             # C-STORE on A and on B
        through_b = store_instances(b, 2, study=series_study)
        uid = generate_uid()
        assert modality.request(b, uid, through_a + through_b) == 0x0000  # commitment asked of B
        report = modality.next_report(30)
        assert report.event_type == 1, report.information                 # all four committed
        committed = {item.ReferencedSOPInstanceUID for item in report.information.ReferencedSOPSequence}
        assert committed == {sop for _, sop in through_a + through_b}
        time.sleep(2)                                                      # and only one instance reported it
        assert modality.reports.empty(), "a second N-EVENT-REPORT for one commitment request"

        for instance in (a, b):                                            # C-MOVE from either
            destination.received.clear()
            moved = subprocess.run(
                ["movescu", "-S", "-aet", "VIEWER", "-aec", "SWF_ENGINE", "-aem", "DEST", "127.0.0.1",
                 str(instance.dicom_port), "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={series_study}"],
                capture_output=True, text=True, timeout=60, env=DCMTK_ENV)
            assert moved.returncode == 0, moved.stdout + moved.stderr
            assert set(destination.received) == committed, instance.name
    finally:
        modality.stop()
        destination.close()
