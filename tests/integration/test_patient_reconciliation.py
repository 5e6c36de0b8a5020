"""IHE PIR (RAD-12) on what the engine stored: a study stored for a temporary patient is merged by ADT A40
into the real patient and the patient's name is corrected by A08, over MLLP; DCMTK findscu (every level,
both models) and movescu (to a pynetdicom Storage SCP) then see the surviving patient; the stored files
stay as received and the patient's history names the reconciled study.  Bad inputs: an A40 whose prior
patient is unknown, an A08 for a patient with no stored study."""
from __future__ import annotations

import socket
from pathlib import Path

from pydicom import dcmread

from tests.conftest import EngineProcess, run_swf
from tests.integration.test_mllp import END, START, connect, msa, read_acks
from tests.integration.test_storage_qr import (CT, StorageSCP, _base, _image, _save, database, dcmtk, findscu,
                                               storescu, write_config)

STUDY = "2.25.99160017716201600177162016001771620"
SERIES = STUDY + ".1"
HEADER = "MSH|^~\\&|HIS|GENHOSP|SWF_ENGINE|RADIOLOGY|20250304083000||ADT^{trigger}|{cid}|P|2.5.1"


def adt(trigger: str, cid: str, pid: str, mrg: str = "") -> bytes:
    segments = [HEADER.format(trigger=trigger, cid=cid), "EVN||20250304083000", pid]
    return "\r".join(segments + ([mrg] if mrg else [])).encode()


def send(engine: EngineProcess, *messages: bytes) -> list[str]:
    """The MSA-1 of each message's ACK, sent on one connection."""
    with connect(engine) as sock:
        sock.sendall(b"".join(START + m + END for m in messages))
        acks = read_acks(sock, len(messages))
    return [msa(ack)[1] for ack in acks]


def temporary_study(folder: Path, count: int, first: int = 1) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for number in range(first, first + count):
        ds = _image(_base(CT, f"{SERIES}.{number}", SERIES, "CT", number), size=8)
        ds.StudyInstanceUID = STUDY
        ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = "TMP4711", "TRAUMA^ONE", "", "O"
        ds.AccessionNumber = ""
        files.append(_save(ds, folder / f"{number}.dcm"))
    return files


def test_a40_and_a08_reach_stored_studies_in_find_and_move(start_engine, tmp_path: Path) -> None:
    destination = StorageSCP()
    try:
        config = write_config(tmp_path, f"dicom: {{aes: {{DEST: {{host: 127.0.0.1, port: {destination.port}}}}}}}\n")
        engine = start_engine("--config", str(config))
        files = temporary_study(tmp_path / "send", 2)
        sent = storescu(engine, *files)
        assert sent.returncode == 0, sent.stdout + sent.stderr

        # bad inputs first: an A08 for a patient without stored studies, an A40 from an unknown prior patient
        assert send(engine, adt("A08^ADT_A01", "HIS0001", "PID|1||NOSTUDY1^^^GENHOSP^MR||NOBODY^NEVER||19700101|M"),
                    adt("A40^ADT_A39", "HIS0002", "PID|1||REAL4711^^^GENHOSP^MR||SMITH^ANNA||19800101|F",
                        "MRG|GHOST999^^^GENHOSP^MR")) == ["AA", "AA"]
        with database(engine) as db:
            assert {r[0] for r in db.execute("SELECT patient_id FROM instances")} == {"TMP4711"}
            assert db.execute("SELECT count(*) FROM patient_history WHERE kind = 'instances reconciled'"
                              ).fetchone()[0] == 0

        # the merge, then the name and birth date corrected
        assert send(engine, adt("A40^ADT_A39", "HIS0003", "PID|1||REAL4711^^^GENHOSP^MR||SMITH^ANNA||19800101|F",
                                "MRG|TMP4711^^^GENHOSP^MR"),
                    adt("A08^ADT_A01", "HIS0004", "PID|1||REAL4711^^^GENHOSP^MR||SMITH^ANNA^MARIE||19800202|F")
                    ) == ["AA", "AA"]
        # an instance the modality sends later under the temporary ID is reconciled as it is indexed
        late = temporary_study(tmp_path / "late", 1, first=3)
        assert storescu(engine, *late).returncode == 0

        # C-FIND: the temporary patient is gone at PATIENT level, the real one holds the study
        assert findscu(engine, tmp_path / "f0", "QueryRetrieveLevel=PATIENT", "PatientID=TMP4711", model="-P") == []
        [patient] = findscu(engine, tmp_path / "f1", "QueryRetrieveLevel=PATIENT", "PatientID=REAL4711",
                            "PatientName", "PatientBirthDate", "NumberOfPatientRelatedStudies", model="-P")
        assert (patient.PatientName, patient.PatientBirthDate) == ("SMITH^ANNA^MARIE", "19800202")
        assert int(patient.NumberOfPatientRelatedStudies) == 1
        assert findscu(engine, tmp_path / "f2", "QueryRetrieveLevel=STUDY", "PatientName=TRAUMA*") == []
        [study] = findscu(engine, tmp_path / "f3", "QueryRetrieveLevel=STUDY", "PatientName=SMITH*", "PatientID",
                          "IssuerOfPatientID", "NumberOfStudyRelatedInstances")
        assert (study.StudyInstanceUID, study.PatientID, study.IssuerOfPatientID) == (STUDY, "REAL4711", "GENHOSP")
        assert int(study.NumberOfStudyRelatedInstances) == 3
        [series] = findscu(engine, tmp_path / "f4", "QueryRetrieveLevel=SERIES", "PatientID=REAL4711",
                           f"StudyInstanceUID={STUDY}", "SeriesInstanceUID", model="-P")
        assert series.SeriesInstanceUID == SERIES
        images = findscu(engine, tmp_path / "f5", "QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={STUDY}",
                         f"SeriesInstanceUID={SERIES}", "SOPInstanceUID", "PatientID", "PatientName")
        assert [(i.PatientID, str(i.PatientName)) for i in images] == [("REAL4711", "SMITH^ANNA^MARIE")] * 3

        # C-MOVE: the files sent carry the surviving patient; the stored files stay as received
        moved = dcmtk("movescu", "-S", "-aet", "VIEWER", "-aec", "SWF_ENGINE", "-aem", "DEST", "127.0.0.1",
                      str(engine.dicom_port), "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={STUDY}")
        assert moved.returncode == 0, moved.stdout + moved.stderr
        received = destination.received
        assert len(received) == 3
        for ds in received.values():
            assert (ds.PatientID, str(ds.PatientName), ds.PatientBirthDate, ds.PatientSex) == (
                "REAL4711", "SMITH^ANNA^MARIE", "19800202", "F")
            assert ds.IssuerOfPatientID == "GENHOSP" and ds.PixelData
        stored = dcmread(engine.data_dir / "dicom" / STUDY / SERIES / f"{SERIES}.1.dcm")
        assert (stored.PatientID, str(stored.PatientName)) == ("TMP4711", "TRAUMA^ONE")

        # the index records the change: patient history, and what each instance carries over its file
        history = run_swf("patients", "REAL4711", "--data-dir", str(engine.data_dir)).stdout
        assert "instances reconciled" in history and f"study {STUDY}" in history and "(stored as TMP4711)" in history
        assert "ADT^A08" in history
        with database(engine) as db:
            rows = db.execute("SELECT patient_id, patient_name_norm, corrections FROM instances").fetchall()
        assert {r["patient_id"] for r in rows} == {"REAL4711"}
        assert all('"PatientBirthDate": "19800202"' in r["corrections"] for r in rows)
    finally:
        destination.close()
