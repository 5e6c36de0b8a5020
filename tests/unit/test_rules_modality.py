"""The rules' ``modality`` condition reads where the message's profile reads the Modality (in-process ingest,
real SQLite file); the worklist SQL offers station-less steps under orders.default_station_ae."""
from __future__ import annotations

import textwrap
from pathlib import Path

from engine.store.worklist_query import build_worklist_query
from tests.conftest import hl7

ROOMS = """
rules:
  - name: the site RIS uses its variant profile
    when: {MSH-3.1: SITE_RIS}
    profile: example-accession-in-orc3
    continue: true
  - name: mammography is not taken here
    when: {modality: MG}
    reject: "no mammography"
  - name: CT room
    when: {modality: CT}
    schedule: {station_ae: CT1_AE}
"""


def routes(tmp_path: Path) -> Path:
    folder = tmp_path / "routes"
    folder.mkdir()
    (folder / "20-rooms.yaml").write_text(textwrap.dedent(ROOMS).lstrip("\n"))
    return folder


def orm(app: str, control_id: str, obr21: str, obr24: str) -> bytes:
    obr = ["OBR"] + [""] * 24   # obr[n] is OBR-n
    obr[1:5] = ["1", "PLC-" + control_id, "FIL-" + control_id, "CTCHEST^CT chest^99RAD"]
    obr[18], obr[21], obr[24] = "ACC-" + control_id, obr21, obr24
    return hl7(f"MSH|^~\\&|{app}|GENHOSP|SWF|RAD|20250304083000||ORM^O01|{control_id}|P|2.3.1",
               "PID|1||PAT1^^^GENHOSP^MR||DOE^JOHN||19700101|M",
               f"ORC|NW|PLC-{control_id}|FIL-{control_id}||SC||1^once^^20250304100000^^R",
               "|".join(obr))


def stations(pipeline, control_id: str) -> list[str]:
    return [row["station_ae_title"] for row in pipeline.read(
        "SELECT s.station_ae_title FROM scheduled_steps s JOIN requested_procedures r"
        " ON r.id = s.requested_procedure_ref JOIN orders o ON o.id = r.order_ref"
        " WHERE o.placer_order_number = ?", ("PLC-" + control_id,))]


def test_modality_follows_the_profile_a_rule_chose(make_pipeline, tmp_path) -> None:
    pipeline = make_pipeline(routes(tmp_path))
    # the variant reads the modality from OBR-21.1 first: OBR-24 (MR) is not looked at
    assert pipeline.send(orm("SITE_RIS", "V1", "CT", "MR")).ack_code == "AA"
    assert stations(pipeline, "V1") == ["CT1_AE"]
    # the base v2.3.1 profile reads OBR-24 only: OBR-21 (CT) is not the modality there
    assert pipeline.send(orm("RIS", "B1", "CT", "US")).ack_code == "AA"
    assert stations(pipeline, "B1") == [""]


def test_modality_in_the_whole_message_pass_decides_reject(make_pipeline, tmp_path) -> None:
    pipeline = make_pipeline(routes(tmp_path))
    result = pipeline.send(orm("RIS", "M1", "", "MG"))
    assert result.ack_code == "AE" and "no mammography" in result.reason
    assert pipeline.send(orm("SITE_RIS", "M2", "MG", "CT")).ack_code == "AE"   # variant: OBR-21.1 = MG


def test_default_station_matches_where_its_title_would() -> None:
    exact = build_worklist_query({}, {"ScheduledStationAETitle": "MG1_AE"}, default_station="MG1_AE")
    assert "s.station_ae_title = ? OR s.station_ae_title = ''" in exact.sql
    other = build_worklist_query({}, {"ScheduledStationAETitle": "CT1_AE"}, default_station="MG1_AE")
    assert "s.station_ae_title = ''" not in other.sql
    pattern = build_worklist_query({}, {"ScheduledStationAETitle": "MG?_AE"}, default_station="MG1_AE")
    assert "OR s.station_ae_title = ''" in pattern.sql
    restricted = build_worklist_query({}, {}, station_restriction=("MG1_AE",), default_station="MG1_AE")
    assert restricted.params[-2:] == ["MG1_AE", ""]
    assert build_worklist_query({}, {}, station_restriction=("CT1_AE",), default_station="MG1_AE").params[-1] \
        == "CT1_AE"
