"""The reads of ``swf explain`` (engine/store/explain.py) on both engines: a step found by accession and SPS ID
with its procedure, order and patient; the applied messages of its order's and patient's history, oldest
first (an ADT of the patient included, a rejected message not); the operator's changes."""
from __future__ import annotations

from engine.config import Config
from engine.hl7.profiles import load_profiles
from engine.rules.ruleset import load_ruleset
from engine.store import explain as stored
from engine.store.database import Store
from engine.workflow.ingest import Ingestor, Received
from engine.workflow.orders import operator_change
from tests.store.conftest import ROOT
from tests.unit.test_explain import TWO_STEPS

ADT = ("MSH|^~\\&|RIS|GENHOSP|SWF_ENGINE|RADIOLOGY|20261207083000||ADT^A08|ADT-1|P|2.3.1\r"
       "EVN|A08|20261207083000\rPID|1||PAT1^^^GENHOSP^MR||DOE^JANE MARY||19700101|F\rPV1|1|O\r")
REJECTED = TWO_STEPS.replace("TWO-1", "TWO-9").replace("|P|2.3.1", "|P|9.9")


def test_the_step_its_messages_and_operator_changes(store: Store) -> None:
    ingestor = Ingestor(Config(), load_profiles(ROOT / "profiles"), lambda rules=load_ruleset(ROOT / "routes"): rules)
    for text in (TWO_STEPS, ADT, REJECTED):
        store.write(lambda txn: ingestor(txn, Received(text.encode("latin-1"))))
    store.write(lambda txn: operator_change(txn, "ACC1", None, "MR2_AE", "room 1 broken"))

    first = store.read(lambda txn: stored.stored_step(txn, "ACC1", None))
    assert (first.sps_id, first.other_sps_ids, first.station_ae_title) == ("SPS-A", ("SPS-B",), "MR2_AE")
    step = store.read(lambda txn: stored.stored_step(txn, "ACC1", "SPS-B"))
    assert (step.sps_id, step.modality, step.accession_number, step.requested_procedure_id, step.patient_id,
            step.issuer, step.placer_order_number, step.other_sps_ids) == (
        "SPS-B", "MR", "ACC1", "RP1", "PAT1", "GENHOSP", "P1", ("SPS-A",))
    assert step.step_attributes["ScheduledProcedureStepDescription"] == "CT neck"
    assert step.patient_attributes["PatientName"] == "DOE^JANE MARY"
    assert store.read(lambda txn: stored.stored_step(txn, "ACC1", "SPS-X")) is None
    assert store.read(lambda txn: stored.stored_step(txn, "ACC9", None)) is None

    messages = store.read(lambda txn: stored.step_messages(txn, step))
    assert [(m.id, m.control_id, m.message_code) for m in messages] == [(1, "TWO-1", "ORM^O01"), (2, "ADT-1", "ADT^A08")]
    assert messages[0].raw == TWO_STEPS.encode("latin-1") and isinstance(messages[0].raw, bytes)
    assert messages[0].rule == "RIS orders (broker mode), CT orders to CT room 1"
    changes = store.read(lambda txn: stored.operator_changes(txn, step))
    assert [(c.kind, c.detail) for c in changes] == [("SPS rescheduled", "SPS SPS-A by the operator: room 1 broken"),
                                                     ("SPS rescheduled", "SPS SPS-B by the operator: room 1 broken")]
