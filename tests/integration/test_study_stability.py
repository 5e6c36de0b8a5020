"""Study stability (issue 16) against the real engine: an order over MLLP, a study stored by a pynetdicom
SCU, and HL7 availability destinations (stand-in receivers) told once the study has been quiet."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from engine.hl7.validate import validate
from tests.conftest import ROOT
from tests.integration.test_commitment import store_instances, wait_for
from tests.integration.test_mpps import ACCESSION, STUDY, replay_order
from tests.integration.test_outbound import outbox
from tests.mllp_receiver import Receiver

DESTINATIONS = """
  avail:
    address: ${SWF_AVAIL_ADDRESS}
    sends: availability
    profile: ihe-v231-orm
    receiving_application: RIS
  refusing:
    address: ${SWF_REFUSING_ADDRESS}
    sends: availability
    availability_message: ORM
    availability_status: A
    retry_seconds: 0.2
    max_retry_seconds: 0.2
    max_ae_retries: 1
"""


def availability_routes(tmp_path: Path) -> Path:
    routes = tmp_path / "routes"
    shutil.copytree(ROOT / "routes", routes)
    path = routes / "05-destinations.yaml"
    path.write_text(path.read_text() + DESTINATIONS)
    senders = routes / "10-senders.yaml"
    senders.write_text(senders.read_text().replace("outbound: [ris, archive]\n    continue: true\n\n  - name: HIS",
                                                   "outbound: [ris, archive, avail, refusing]\n    continue: true\n\n"
                                                   "  - name: HIS", 1))
    return routes


def test_a_quiet_study_is_announced_once_and_an_ae_destination_is_parked(start_engine, tmp_path: Path) -> None:
    avail, refusing = Receiver(), Receiver(answer=lambda message: "AE")
    config = tmp_path / "engine.yaml"
    config.write_text("studies: {quiet_seconds: 1, scan_seconds: 0.2}\ncluster: {heartbeat_seconds: 0.3}\n")
    engine = start_engine("--config", str(config), routes=availability_routes(tmp_path),
                          env={"SWF_AVAIL_ADDRESS": avail.address, "SWF_REFUSING_ADDRESS": refusing.address})
    replay_order(engine, tmp_path)
    store_instances(engine, 3, study=STUDY)
    [notice] = avail.wait_for(1, timeout=8)
    assert notice.message_code == "ORU^R01"
    obx = {notice.get("OBX-3.1", index): notice.get("OBX-5", index) for index in notice.segment_indexes("OBX")}
    assert obx == {"StudyInstanceUID": STUDY, "AccessionNumber": ACCESSION, "NumberOfStudyRelatedSeries": "1",
                   "NumberOfStudyRelatedInstances": "3"}
    assert notice.get("OBR-18") == ACCESSION and validate(avail.raw[0]).problems == []
    dead = wait_for(lambda: "study.available" in outbox(engine, "--dead") and outbox(engine, "--dead"), 8,
                    "the refused notice parked dead")
    assert "AE" in dead and len(refusing.attempts) == 2          # first try + max_ae_retries (1)
    time.sleep(1.5)
    assert len(avail.messages) == 1                               # one stable point, handled once
    store_instances(engine, 1, study=STUDY)                       # a late instance: a new stable point
    second = avail.wait_for(2, timeout=8)[1]
    counts = {second.get("OBX-3.1", index): second.get("OBX-5", index) for index in second.segment_indexes("OBX")}
    assert counts["NumberOfStudyRelatedInstances"] == "4" and counts["NumberOfStudyRelatedSeries"] == "2"
    avail.close(), refusing.close()
