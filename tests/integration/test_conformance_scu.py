"""The SCU side of the conformance statement against reality, and GET /api/v1/conformance against the CLI.

A pynetdicom peer records every A-ASSOCIATE-RQ the engine sends it — as forwarding destination (instances
and MPPS), C-MOVE destination and storage commitment requester — and the presentation contexts and role
selection proposed must be what the statement the engine serves lists for that use, nothing else.  The API's
answer (md and json) equals ``swf conformance`` run with the same config file."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom._globals import ALL_TRANSFER_SYNTAXES
from pynetdicom.sop_class import (ModalityPerformedProcedureStep, StorageCommitmentPushModel,
                                  StudyRootQueryRetrieveInformationModelMove)

from tests.api_client import Api
from tests.conftest import ROOT, free_port
from tests.integration.test_storage_qr import STUDY, make_files, storescu
from tests.integration.test_swf_day import mpps

MPPS, COMMITMENT = str(ModalityPerformedProcedureStep), str(StorageCommitmentPushModel)
UNCOMPRESSED = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]


class Peer:
    """Storage, MPPS and Storage Commitment (engine as SCP by role selection) on one port, recording each
    association's proposal: [(abstract syntax, transfer syntaxes)], {SOP class: (scu_role, scp_role)}."""

    def __init__(self) -> None:
        self.proposals: list[tuple[list[tuple[str, list[str]]], dict[str, tuple[bool, bool]]]] = []
        self.stored: list[str] = []
        self.events: list[str] = []
        self.lock = threading.Lock()
        ae = AE(ae_title="PEER")
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(ModalityPerformedProcedureStep)
        ae.add_supported_context(StorageCommitmentPushModel, scu_role=False, scp_role=True)
        self.port = free_port()
        self.server = ae.start_server(("127.0.0.1", self.port), block=False, evt_handlers=[
            (evt.EVT_REQUESTED, self._requested), (evt.EVT_C_STORE, self._store),
            (evt.EVT_N_CREATE, lambda event: self._event("N-CREATE", (0x0000, event.attribute_list))),
            (evt.EVT_N_EVENT_REPORT, lambda event: self._event("N-EVENT-REPORT", (0x0000, None)))])

    def _requested(self, event: Any) -> None:
        requestor = event.assoc.requestor
        contexts = [(str(cx.abstract_syntax), [str(ts) for ts in cx.transfer_syntax])
                    for cx in requestor.requested_contexts]
        roles = {str(uid): (bool(item.scu_role), bool(item.scp_role)) for uid, item in requestor.role_selection.items()}
        with self.lock:
            self.proposals.append((contexts, roles))

    def _store(self, event: Any) -> int:
        with self.lock:
            self.stored.append(str(event.request.AffectedSOPInstanceUID))
        return 0x0000

    def _event(self, name: str, answer: Any) -> Any:
        with self.lock:
            self.events.append(name)
        return answer

    def wait(self, check: Any, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if check():
                    return
            time.sleep(0.05)
        raise AssertionError(f"peer got {self.stored}, {self.events}, {len(self.proposals)} association(s)")


def move_study(port: int) -> int:
    ae = AE(ae_title="VIEWER")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    assoc = ae.associate("127.0.0.1", port, ae_title="SWF_ENGINE")
    assert assoc.is_established
    identifier = Dataset()
    identifier.QueryRetrieveLevel, identifier.StudyInstanceUID = "STUDY", STUDY
    try:
        return int(list(assoc.send_c_move(identifier, "ARCHIVE", StudyRootQueryRetrieveInformationModelMove))[-1][0].Status)
    finally:
        assoc.release()


def request_commitment(port: int, references: list[tuple[str, str]]) -> None:
    ae = AE(ae_title="CT1_AE")
    ae.add_requested_context(StorageCommitmentPushModel)
    assoc = ae.associate("127.0.0.1", port, ae_title="SWF_ENGINE")
    assert assoc.is_established
    request = Dataset()
    request.TransactionUID = generate_uid(prefix="2.25.")
    request.ReferencedSOPSequence = []
    for sop_class, sop_instance in references:
        item = Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = sop_class, sop_instance
        request.ReferencedSOPSequence.append(item)
    status, _ = assoc.send_n_action(request, 1, StorageCommitmentPushModel, "1.2.840.10008.1.20.1.1")
    assoc.release()
    assert int(status.Status) == 0x0000


def test_scu_proposals_are_the_statements_and_the_api_answers_as_the_cli(start_engine, tmp_path: Path) -> None:
    peer = Peer()
    config = tmp_path / "engine.yaml"
    config.write_text(f"dicom:\n  forward_store_to: [ARCHIVE]\n  forward_mpps_to: [ARCHIVE]\n"
                      f"  commitment_same_association_wait: 0\n  aes:\n"
                      f"    ARCHIVE: {{host: 127.0.0.1, port: {peer.port}}}\n"
                      f"    CT1_AE: {{host: 127.0.0.1, port: {peer.port}}}\n")
    cli = {form: subprocess.Popen([sys.executable, "-m", "engine.cli", "conformance", "--config", str(config),
                                   "--format", form], cwd=ROOT, stdout=subprocess.PIPE, text=True)
           for form in ("md", "json")}   # while the engine starts
    engine = start_engine("--config", str(config))
    api = Api(engine.http_port)
    try:
        # the API twin: md and json equal the CLI's output for the same config file; a bad format is a 400
        printed = {form: process.communicate(timeout=60)[0] for form, process in cli.items()}
        assert all(process.returncode == 0 for process in cli.values()), printed
        assert api.checked_call("GET", "/api/v1/conformance", "/api/v1/conformance", 200) == {
            "markdown": printed["md"]}
        statement = api.checked_call("GET", "/api/v1/conformance", "/api/v1/conformance?format=json", 200)
        assert statement == json.loads(printed["json"])
        refused = api.checked_call("GET", "/api/v1/conformance", "/api/v1/conformance?format=pdf", 400)
        assert refused["field"] == "query.format"
        uses = {row["use"]: row for row in statement["scu_contexts"]}
        forward, forward_mpps = uses["forwarding received instances (dicom.forward_store_to)"], uses[
            "forwarding MPPS (dicom.forward_mpps_to)"]
        move, report = uses["C-MOVE sub-operations"], uses["storage commitment reports"]
        assert (forward["per_instance"], move["per_instance"]) == (
            "as stored", "as stored; an uncompressed one also in the other uncompressed syntax")

        files = make_files(tmp_path / "send")
        stored = {dcmread(files[name]).SOPInstanceUID: dcmread(files[name]) for name in ("ct1", "jpeg")}
        syntax_of = {str(ds.SOPClassUID): str(ds.file_meta.TransferSyntaxUID) for ds in stored.values()}
        assert storescu(engine, files["ct1"]).returncode == 0
        assert storescu(engine, files["jpeg"], options=("-xy",)).returncode == 0
        assert mpps(engine, generate_uid(prefix="2.25."), "IN PROGRESS") == 0x0000
        peer.wait(lambda: len(peer.stored) == 2 and "N-CREATE" in peer.events)
        time.sleep(0.3)   # the forwarding round ends; no other association comes
        forwarded = list(peer.proposals)
        for contexts, roles in forwarded:   # instances exactly as stored, MPPS in the statement's syntaxes
            assert roles == {}
            for sop_class, syntaxes in contexts:
                expected = forward_mpps["transfer_syntaxes"] if sop_class == MPPS else [syntax_of[sop_class]]
                assert syntaxes == expected, (sop_class, syntaxes)
        assert {sop for contexts, _ in forwarded for sop, _s in contexts} == {*syntax_of, MPPS}

        assert move_study(engine.dicom_port) == 0x0000
        peer.wait(lambda: len(peer.stored) == 4)
        [(contexts, roles)] = peer.proposals[len(forwarded):]
        assert roles == {} and sorted(contexts) == sorted(
            (sop, UNCOMPRESSED if syntax == UNCOMPRESSED[0] else [syntax]) for sop, syntax in syntax_of.items())

        request_commitment(engine.dicom_port, [(str(ds.SOPClassUID), uid) for uid, ds in stored.items()])
        peer.wait(lambda: "N-EVENT-REPORT" in peer.events)
        [(contexts, roles)] = peer.proposals[len(forwarded) + 1:]
        assert contexts == [(COMMITMENT, report["transfer_syntaxes"])]
        assert report["role"] == "SCP (SCP/SCU role selection)" and roles == {COMMITMENT: (False, True)}
    finally:
        peer.server.shutdown()
