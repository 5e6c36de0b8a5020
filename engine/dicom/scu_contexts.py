"""What the engine proposes when it acts as the requestor (the SCU side): one row per outbound use, the SOP
classes, DIMSE operations, the engine's role and the transfer syntaxes in preference order.  The code that
opens these associations builds its presentation contexts from these rows, and the conformance statement
(engine/conformance) lists them, so the document cannot drift from the wire.  A new outbound use (an IAN
N-CREATE, say) is one more row in ``SCU_USES``, used by its sender.
"""
from __future__ import annotations

from dataclasses import dataclass

from pynetdicom import build_role
from pynetdicom import DEFAULT_TRANSFER_SYNTAXES
from pynetdicom.pdu_primitives import SCP_SCU_RoleSelectionNegotiation
from pynetdicom.sop_class import ModalityPerformedProcedureStep, StorageCommitmentPushModel

EXPLICIT_LE, IMPLICIT_LE = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"
UNCOMPRESSED = (EXPLICIT_LE, IMPLICIT_LE)
# pynetdicom's default proposal: Implicit VR LE, Explicit VR LE, Deflated Explicit VR LE, Explicit VR BE
STANDARD = tuple(str(uid) for uid in DEFAULT_TRANSFER_SYNTAXES)
# per_instance rules: how the transfer syntaxes of an instance's context follow from its stored syntax
AS_STORED = "as stored"
AS_STORED_OR_UNCOMPRESSED = "as stored; an uncompressed one also in the other uncompressed syntax"


@dataclass(frozen=True)
class ScuUse:
    use: str                                  # what the association is for
    sop_classes: tuple[str, ...]              # empty: the storage SOP class of each instance sent
    operations: tuple[str, ...]               # the DIMSE requests the engine sends
    association: str                          # who is called, when, on which association
    transfer_syntaxes: tuple[str, ...] = ()   # the proposal in preference order, when not per instance
    per_instance: str = ""                    # AS_STORED or AS_STORED_OR_UNCOMPRESSED: one context per stored syntax
    scp_role: bool = False                    # the engine takes the SCP role by SCP/SCU role selection
    opens_association: bool = True            # False: sent on the peer's own association (C-GET)
    max_contexts: int = 128                   # presentation contexts proposed at most per association
    retry_keys: tuple[str, ...] = ()          # dicom.* keys of its retry policy: first delay, longest, give up

    @property
    def engine_role(self) -> str:
        return "SCP (SCP/SCU role selection)" if self.scp_role else "SCU"

    def syntaxes_for(self, stored: str = "") -> list[str]:
        """The transfer syntaxes of one context, in preference order (``stored``: the instance's syntax)."""
        if self.per_instance == AS_STORED_OR_UNCOMPRESSED and stored in UNCOMPRESSED:
            return [stored, *(syntax for syntax in UNCOMPRESSED if syntax != stored)]
        if self.per_instance:
            return [stored]
        return list(self.transfer_syntaxes)

    def role_selection(self) -> list[SCP_SCU_RoleSelectionNegotiation]:
        """The SCP/SCU role selection items of the A-ASSOCIATE-RQ (none when the engine is the SCU)."""
        return [build_role(uid, scu_role=False, scp_role=True) for uid in self.sop_classes] if self.scp_role else []


FORWARD_STORE = ScuUse(
    "forwarding received instances (dicom.forward_store_to)", (), ("C-STORE",),
    "the engine calls each destination (host/port in dicom.aes) when its queue has rows, one association per "
    "round, in order", per_instance=AS_STORED, max_contexts=120,
    retry_keys=("forward_retry_seconds", "forward_max_retry_seconds", "forward_give_up_hours"))
FORWARD_MPPS = ScuUse(
    "forwarding MPPS (dicom.forward_mpps_to)", (str(ModalityPerformedProcedureStep),), ("N-CREATE", "N-SET"),
    "on the forwarding association of the destination, in the order received", transfer_syntaxes=STANDARD,
    max_contexts=120, retry_keys=FORWARD_STORE.retry_keys)
MOVE_SUB_OPERATIONS = ScuUse(
    "C-MOVE sub-operations", (), ("C-STORE",),
    "the engine calls the Move Destination (host/port in dicom.aes) once per C-MOVE; a failed sub-operation is "
    "counted in the C-MOVE response, not retried", per_instance=AS_STORED_OR_UNCOMPRESSED)
GET_SUB_OPERATIONS = ScuUse(
    "C-GET sub-operations", (), ("C-STORE",),
    "on the C-GET requestor's association, in the storage contexts it proposed with the SCP role (nothing is "
    "proposed by the engine)", per_instance=AS_STORED_OR_UNCOMPRESSED, opens_association=False)
COMMITMENT_REPORT = ScuUse(
    "storage commitment reports", (str(StorageCommitmentPushModel),), ("N-EVENT-REPORT",),
    "on the N-ACTION association when ready within dicom.commitment_same_association_wait, else the engine calls "
    "the requester (host/port in dicom.aes), one association per requester and round", transfer_syntaxes=STANDARD,
    scp_role=True,
    retry_keys=("commitment_retry_seconds", "commitment_max_retry_seconds", "commitment_give_up_hours"))

SCU_USES = (FORWARD_STORE, FORWARD_MPPS, MOVE_SUB_OPERATIONS, GET_SUB_OPERATIONS, COMMITMENT_REPORT)
