"""Who may talk to the engine's AE, checked with DCMTK echoscu/findscu (real peers), and a malformed
request answered with a failure status while the engine keeps serving."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import ModalityWorklistInformationFind

DCMTK = {**os.environ, "TCP_NODELAY": "1"}


def echo(engine, calling: str = "ECHOSCU", called: str = "SWF_ENGINE") -> subprocess.CompletedProcess:
    return subprocess.run(["echoscu", "-v", "-aet", calling, "-aec", called, "127.0.0.1", str(engine.dicom_port)],
                          capture_output=True, text=True, env=DCMTK, timeout=30)


def test_echo_with_any_ae_allowed(start_engine) -> None:
    engine = start_engine()
    result = echo(engine)
    assert result.returncode == 0, result.stderr
    assert "Received Echo Response (Success)" in result.stdout + result.stderr


def test_unknown_calling_ae_and_wrong_called_ae_are_rejected(start_engine, tmp_path: Path) -> None:
    config = tmp_path / "engine.yaml"
    config.write_text("dicom:\n  aes:\n    CT1_AE: {host: 127.0.0.1, port: 104}\n")
    engine = start_engine("--config", str(config), allow_any_ae=False)
    known = echo(engine, "CT1_AE")
    assert known.returncode == 0, known.stderr
    unknown = echo(engine, "INTRUDER")
    assert unknown.returncode != 0
    assert "Calling AE Title Not Recognized" in unknown.stdout + unknown.stderr
    wrong_called = echo(engine, "CT1_AE", "SOMEONE_ELSE")
    assert wrong_called.returncode != 0
    assert "Called AE Title Not Recognized" in wrong_called.stdout + wrong_called.stderr
    assert echo(engine, "CT1_AE").returncode == 0  # still serving


@pytest.mark.filterwarnings("ignore:Invalid value for VR DA")  # the malformed date, on purpose
def test_malformed_worklist_query_gets_a_failure_and_the_engine_keeps_serving(start_engine) -> None:
    engine = start_engine()
    ae = AE(ae_title="PROBE")
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = ae.associate("127.0.0.1", engine.dicom_port, ae_title="SWF_ENGINE")
    assert assoc.is_established
    query = Dataset()
    query.PatientName = ""
    step = Dataset()
    step.ScheduledProcedureStepStartDate = "2025-03-04"  # not a DICOM date
    query.ScheduledProcedureStepSequence = [step]
    statuses = [int(status.Status) for status, _ in assoc.send_c_find(query, ModalityWorklistInformationFind)]
    assoc.release()
    assert statuses == [0xA900]
    assert echo(engine).returncode == 0
