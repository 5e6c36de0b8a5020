"""RAD-10: the N-EVENT-REPORT on the open N-ACTION association needs no address (SWF.md 7.4).

A requester admitted by --allow-any-ae, or listed in dicom.aes by AE title only (no host/port), cannot be
reached on a new association, but it can on the association it keeps open after its N-ACTION.  Only when that
association is gone is the report parked as dead, with the reason.  Real engine process, real associations.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from pydicom.uid import generate_uid

from tests.conftest import EngineProcess
from tests.integration.test_commitment import (CT, ENGINE_AE, Modality, commitment_rows,
                                               request_keeping_the_association, wait_for)


def engine_configured(start_engine: Callable[..., EngineProcess], tmp_path: Path, aes: str = "",
                      allow_any_ae: bool = True, **settings: float) -> EngineProcess:
    lines = ["dicom:\n"]
    if aes:
        lines.append("  aes:\n" + aes)
    lines += [f"  {key}: {value}\n" for key, value in settings.items()]
    config = tmp_path / "engine.yaml"
    config.write_text("".join(lines))
    return start_engine("--config", str(config), allow_any_ae=allow_any_ae)


def assert_report_on_the_association(engine: EngineProcess, title: str, keep: float) -> None:
    transaction_uid, missing = generate_uid(), generate_uid()
    status, received = request_keeping_the_association(engine, Modality(title, 0), transaction_uid,
                                                       [(CT, missing)], keep=keep)
    assert status == 0x0000
    assert len(received) == 1, f"no N-EVENT-REPORT came on {title}'s N-ACTION association"
    event = received[0]
    assert event.request.EventTypeID == 2 and event.assoc.acceptor.ae_title == ENGINE_AE
    info = event.event_information
    assert info.TransactionUID == transaction_uid
    assert [(i.ReferencedSOPInstanceUID, i.FailureReason) for i in info.FailedSOPSequence] == [(missing, 0x0112)]
    row = wait_for(lambda: [r for r in commitment_rows(engine, transaction_uid) if r["status"] != "reporting"], 5,
                   "the report closed")[0]
    assert (row["status"], row["last_error"]) == ("delivered", "")


def test_a_requester_admitted_by_allow_any_ae_gets_the_report_on_its_open_association(start_engine,
                                                                                      tmp_path) -> None:
    # The result is ready after the 1.5 s grace period, past the 0.5 s same-association wait: without an
    # address the open association is the only way, so it is still used.
    engine = engine_configured(start_engine, tmp_path, commitment_grace_seconds=1.5,
                               commitment_same_association_wait=0.5)
    assert_report_on_the_association(engine, "STRANGER", keep=8)


def test_a_known_ae_without_host_and_port_gets_the_report_on_its_open_association(start_engine, tmp_path) -> None:
    engine = engine_configured(start_engine, tmp_path, "    TITLEONLY: {permissions: [echo, store, commit]}\n",
                               allow_any_ae=False, commitment_grace_seconds=0)
    assert_report_on_the_association(engine, "TITLEONLY", keep=8)


def test_without_address_and_with_the_association_closed_the_report_is_parked_with_the_reason(start_engine,
                                                                                              tmp_path) -> None:
    engine = engine_configured(start_engine, tmp_path, "    TITLEONLY: {permissions: [echo, store, commit]}\n",
                               allow_any_ae=False, commitment_grace_seconds=1)
    transaction_uid = generate_uid()
    # released at once; the result (a missing instance) is ready after the grace period, with nowhere to go
    status, received = request_keeping_the_association(engine, Modality("TITLEONLY", 0), transaction_uid,
                                                       [(CT, generate_uid())], keep=0)
    assert status == 0x0000 and received == []
    row = wait_for(lambda: [r for r in commitment_rows(engine, transaction_uid) if r["status"] == "dead"], 10,
                   "status dead")[0]
    assert "requester TITLEONLY has no host/port in the known-AE list" in row["last_error"]
    assert "N-ACTION association" in row["last_error"]
    assert "report to TITLEONLY given up" in engine.log()
