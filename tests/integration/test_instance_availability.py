"""DICOM Instance Availability Notification (RAD-49, issue 16) against the real engine: an order over MLLP,
an MPPS and a study from pynetdicom modalities, and pynetdicom IAN SCPs (dicom.notify_availability_to)
that receive one N-CREATE per study per stable point, checked against PS3.4 Annex R / PS3.3 C.4.23."""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import InstanceAvailabilityNotification

from engine.config import load_config
from engine.yamlfile import YamlProblem
from tests.conftest import free_port, run_swf
from tests.integration.test_commitment import Modality as CommitmentPeer
from tests.integration.test_commitment import store_instances, wait_for
from tests.integration.test_mpps import ACCESSION, STUDY, Modality, final, in_progress, replay_order
from tests.integration.test_study_stability import availability_routes
from tests.mllp_receiver import Receiver

IAN = str(InstanceAvailabilityNotification)
MPPS_CLASS = "1.2.840.10008.3.1.2.3.3"
AVAILABILITY = {"ONLINE", "NEARLINE", "OFFLINE", "UNAVAILABLE"}   # PS3.3 C.4.23.1.1


@dataclass
class Notice:
    sop_class_uid: str              # Affected SOP Class UID of the N-CREATE
    sop_instance_uid: str           # Affected SOP Instance UID (the SCU assigns it)
    calling_ae: str
    dataset: Dataset
    at: float                       # time.monotonic() when it arrived

    def availability(self) -> dict[str, tuple[str, str]]:
        """SOP Instance UID -> (Series Instance UID, Instance Availability)."""
        return {str(ref.ReferencedSOPInstanceUID): (str(series.SeriesInstanceUID), str(ref.InstanceAvailability))
                for series in self.dataset.ReferencedSeriesSequence for ref in series.ReferencedSOPSequence}


class IanReceiver:
    """An IAN SCP (pynetdicom) on its own port; started when the test says, to play a receiver that is down."""

    def __init__(self, title: str):
        self.title, self.port = title, free_port()
        self.notices: list[Notice] = []
        self.lock = threading.Lock()
        self.server: Any = None

    def start(self) -> None:
        ae = AE(ae_title=self.title)
        ae.add_supported_context(InstanceAvailabilityNotification)
        self.server = ae.start_server(("127.0.0.1", self.port), block=False,
                                      evt_handlers=[(evt.EVT_N_CREATE, self._created)])

    def _created(self, event: Any) -> tuple[int, Dataset]:
        request = event.request
        with self.lock:
            self.notices.append(Notice(str(request.AffectedSOPClassUID), str(request.AffectedSOPInstanceUID),
                                       event.assoc.requestor.ae_title, event.attribute_list, time.monotonic()))
        return 0x0000, event.attribute_list

    def wait_for(self, count: int, timeout: float) -> list[Notice]:
        return wait_for(lambda: len(self.notices) >= count and list(self.notices), timeout,
                        f"{count} IAN(s) at {self.title} (got {len(self.notices)})")

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()


def annex_r_problems(notice: Notice) -> list[str]:
    """What breaks PS3.4 R.3 / PS3.3 C.4.23 in a received IAN N-CREATE (empty when nothing)."""
    problems = []
    ds = notice.dataset
    if notice.sop_class_uid != IAN or not notice.sop_instance_uid:
        problems.append(f"affected SOP class/instance {notice.sop_class_uid}/{notice.sop_instance_uid!r}")
    if "ReferencedPerformedProcedureStepSequence" not in ds or len(ds.ReferencedPerformedProcedureStepSequence) > 1:
        problems.append("Referenced Performed Procedure Step Sequence: Type 2, zero or one item")
    for step in ds.get("ReferencedPerformedProcedureStepSequence", []):
        if step.get("ReferencedSOPClassUID") != MPPS_CLASS or not step.get("ReferencedSOPInstanceUID"):
            problems.append("a PPS item without the MPPS SOP class / instance")
    if not ds.get("StudyInstanceUID"):
        problems.append("no Study Instance UID")
    if not ds.get("ReferencedSeriesSequence"):
        problems.append("Referenced Series Sequence: one or more items")
    for series in ds.get("ReferencedSeriesSequence", []):
        if not series.get("SeriesInstanceUID") or not series.get("ReferencedSOPSequence"):
            problems.append("a series item without its UID or Referenced SOP Sequence")
        for ref in series.get("ReferencedSOPSequence", []):
            if not ref.get("ReferencedSOPClassUID") or not ref.get("ReferencedSOPInstanceUID"):
                problems.append("a reference without SOP class / instance")
            if ref.get("InstanceAvailability") not in AVAILABILITY or not ref.get("RetrieveAETitle"):
                problems.append(f"availability {ref.get('InstanceAvailability')!r} / AE {ref.get('RetrieveAETitle')!r}")
    if "SOPInstanceUID" in ds or "SOPClassUID" in ds:
        problems.append("SOP Class / Instance UID belong in the command set")
    return problems


def engine_config(tmp_path: Path, receivers: list[IanReceiver], *extra: str, aes: str = "") -> Path:
    config = tmp_path / "engine.yaml"
    config.write_text(
        "studies: {quiet_seconds: 1.5, scan_seconds: 0.2}\ncluster: {heartbeat_seconds: 0.3}\n"
        "dicom:\n  forward_retry_seconds: 0.3\n  forward_max_retry_seconds: 0.5\n"
        f"  notify_availability_to: [{', '.join(r.title for r in receivers)}]\n"
        + "".join(f"  {line}\n" for line in extra)
        + "  aes:\n" + "".join(f"    {r.title}: {{host: 127.0.0.1, port: {r.port}}}\n" for r in receivers) + aes)
    return config


def ian_forwards(engine: Any, destination: str) -> list[dict]:
    """The engine's ``ian`` forwards to ``destination``."""
    return engine.read_rows("SELECT * FROM dicom_forwards WHERE kind = 'ian' AND destination = ? ORDER BY id",
                            (destination,))


def test_one_notice_per_stable_point_to_a_receiver_down_then_up_and_110514_makes_unavailable(
        start_engine, tmp_path: Path) -> None:
    pacs, late = IanReceiver("PACS_IAN"), IanReceiver("LATE_IAN")
    pacs.start()                                        # LATE_IAN is down until the first notice has waited
    engine = start_engine("--config", str(engine_config(tmp_path, [pacs, late])))
    modality = Modality(engine.dicom_port)
    try:
        replay_order(engine, tmp_path)
        mpps_uid = "2.25.4471"
        assert modality.create(in_progress(), mpps_uid)[0].Status == 0x0000
        first_series = store_instances(engine, 3, study=STUDY)
        [notice] = pacs.wait_for(1, timeout=8)
        assert annex_r_problems(notice) == [] and notice.calling_ae == "SWF_ENGINE"
        ds = notice.dataset
        assert ds.StudyInstanceUID == STUDY
        assert [s.ReferencedSOPInstanceUID for s in ds.ReferencedPerformedProcedureStepSequence] == [mpps_uid]
        assert len(ds.ReferencedSeriesSequence) == 1
        references = ds.ReferencedSeriesSequence[0].ReferencedSOPSequence
        assert [(r.ReferencedSOPClassUID, r.ReferencedSOPInstanceUID) for r in references] == first_series
        assert {(r.InstanceAvailability, r.RetrieveAETitle) for r in references} == {("ONLINE", "SWF_ENGINE")}

        # The receiver that is down: its notice waits, retried, and arrives once it listens.
        [waiting] = wait_for(lambda: [row for row in ian_forwards(engine, "LATE_IAN") if row["attempts"] >= 2], 5,
                             "the IAN to LATE_IAN retried")
        assert waiting["status"] == "pending" and waiting["sop_instance_uid"] == notice.sop_instance_uid
        assert "not established" in waiting["last_error"]
        late.start()
        [late_notice] = late.wait_for(1, timeout=5)
        assert late_notice.sop_instance_uid == notice.sop_instance_uid and late_notice.availability() == \
            notice.availability()
        time.sleep(0.6)                                       # three stability scans
        assert len(pacs.notices) == 1 and len(late.notices) == 1   # one stable point, one notice each

        # 110514 after the stable point: the receivers hear that those instances are UNAVAILABLE.
        series_uid = str(ds.ReferencedSeriesSequence[0].SeriesInstanceUID)
        discontinued = final("DISCONTINUED", reason="110514")
        discontinued.PerformedSeriesSequence[0].SeriesInstanceUID = series_uid
        assert modality.set(discontinued, mpps_uid)[0].Status == 0x0000
        withdrawn = pacs.wait_for(2, timeout=5)[1]
        assert annex_r_problems(withdrawn) == [] and withdrawn.sop_instance_uid != notice.sop_instance_uid
        assert set(withdrawn.availability().values()) == {(series_uid, "UNAVAILABLE")}
        late.wait_for(2, timeout=5)

        # A late instance: a new stable point, whose notice keeps the withdrawn ones UNAVAILABLE.
        [(_, added)] = store_instances(engine, 1, study=STUDY)
        third = pacs.wait_for(3, timeout=8)[2]
        availability = third.availability()
        assert len(availability) == 4 and availability[added][1] == "ONLINE"
        assert [value for uid, (_, value) in availability.items() if uid != added] == ["UNAVAILABLE"] * 3
        assert len(third.dataset.ReferencedSeriesSequence) == 2
        time.sleep(0.3)
        assert [row["status"] for row in ian_forwards(engine, "PACS_IAN")] == ["delivered"] * 3
    finally:
        modality.close()
        pacs.stop(), late.stop()


def test_a_commitment_is_a_stable_point_once_and_a_receiver_never_up_is_parked_dead(
        start_engine, tmp_path: Path) -> None:
    pacs, gone = IanReceiver("PACS_IAN"), IanReceiver("GONE_IAN")   # GONE_IAN never listens
    pacs.start()
    peer = CommitmentPeer("MODALITY1", free_port())
    peer.listen()
    avail, other = Receiver(), Receiver()
    config = engine_config(tmp_path, [pacs, gone], "forward_give_up_hours: 0.0006", "commitment_grace_seconds: 1",
                           aes=f"    MODALITY1: {{host: 127.0.0.1, port: {peer.port}}}\n")
    config.write_text(config.read_text().replace("quiet_seconds: 1.5", "quiet_seconds: 3"))
    engine = start_engine("--config", str(config), routes=availability_routes(tmp_path),
                          env={"SWF_AVAIL_ADDRESS": avail.address, "SWF_REFUSING_ADDRESS": other.address})
    try:
        replay_order(engine, tmp_path)
        stored = store_instances(engine, 2, study=STUDY)
        quiet_from = time.monotonic()
        assert peer.request(engine, "2.25.7001", stored) == 0x0000
        assert peer.next_report(5).event_type == 1
        [notice] = pacs.wait_for(1, timeout=3)
        assert notice.at - quiet_from < 2.5                  # the commitment's stable point, not the quiet time's
        assert annex_r_problems(notice) == []
        assert notice.dataset.ReferencedPerformedProcedureStepSequence == []   # no MPPS: empty (Type 2)
        assert sorted(notice.availability()) == sorted(uid for _, uid in stored)
        [hl7] = avail.wait_for(1, timeout=3)
        counts = {hl7.get("OBX-3.1", index): hl7.get("OBX-5", index) for index in hl7.segment_indexes("OBX")}
        assert counts["AccessionNumber"] == ACCESSION and counts["NumberOfStudyRelatedInstances"] == "2"
        wait_for(lambda: [row for row in ian_forwards(engine, "GONE_IAN") if row["status"] == "dead"], 6,
                 "the IAN to GONE_IAN parked dead")
        dead = run_swf("forwards", "--dead", "--data-dir", str(engine.data_dir)).stdout   # what the operator sees
        assert "GONE_IAN" in dead and "ian" in dead and notice.sop_instance_uid in dead
        assert "association with GONE_IAN" in dead
        assert "parked as dead" in engine.log() and notice.sop_instance_uid in engine.log()
        time.sleep(max(0.0, quiet_from + 3.8 - time.monotonic()))   # the quiet time has passed by now
        assert len(pacs.notices) == 1 and len(avail.messages) == 1   # the commitment was that stable point
        assert "storage commitment" in engine.log()
    finally:
        pacs.stop(), peer.stop(), avail.close(), other.close()


def test_an_availability_receiver_not_in_the_ae_table_is_refused_with_its_line(tmp_path: Path) -> None:
    config = tmp_path / "engine.yaml"
    config.write_text("dicom:\n  aes:\n    PACS_IAN: {host: 127.0.0.1, port: 11113}\n    NO_PORT: {host: 127.0.0.1}\n"
                      "  notify_availability_to:\n    - PACS_IAN\n    - NOBODY\n")
    with pytest.raises(YamlProblem, match=rf"^{re.escape(str(config))}:7: .*'NOBODY' is not a known AE") as refused:
        load_config(str(config))
    assert "PACS_IAN" in str(refused.value)                  # the titles it could have named
    config.write_text(config.read_text().replace("- NOBODY", "- NO_PORT"))
    with pytest.raises(YamlProblem, match=rf":7: .*'NO_PORT' is not a known AE with host and port"):
        load_config(str(config))
    config.write_text(config.read_text().replace("    - NO_PORT\n", ""))
    assert load_config(str(config)).dicom.notify_availability_to == ["PACS_IAN"]
