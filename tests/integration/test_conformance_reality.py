"""The conformance statement against a running engine: every SOP class / transfer syntax pair it lists as SCP
is accepted by an association proposing it (one context per pair, at most 128 per association), and SOP
classes and transfer syntaxes it does not list are rejected."""
from __future__ import annotations

import json

from pynetdicom import AE, _globals, sop_class

from tests.conftest import run_swf

MAX_CONTEXTS = 127    # 128 per association, one kept for the control below
CONTROL = ("1.2.840.10008.1.1", "1.2.840.10008.1.2")   # Verification, Implicit VR LE: listed, so the association
                                                       # is established even when every other pair is rejected
PRIVATE_SOP_CLASS = "1.2.826.0.1.3680043.9.9999.1.1"
PRIVATE_SYNTAX = "1.2.826.0.1.3680043.9.9999.2.1"


def _results(port: int, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], bool]:
    """(SOP class, transfer syntax) -> accepted, proposing each pair as its own presentation context."""
    results = {}
    for start in range(0, len(pairs), MAX_CONTEXTS):
        group = pairs[start:start + MAX_CONTEXTS]
        ae = AE(ae_title="CONFORM")
        ae.acse_timeout = ae.network_timeout = 5
        for uid, syntax in (CONTROL, *group):
            ae.add_requested_context(uid, syntax)
        assoc = ae.associate("127.0.0.1", port, ae_title="SWF_ENGINE")
        assert assoc.is_established, f"association {start // MAX_CONTEXTS + 1} not established (control refused?)"
        accepted = {(str(cx.abstract_syntax), str(cx.transfer_syntax[0])) for cx in assoc.accepted_contexts}
        assoc.release()
        results.update({pair: pair in accepted for pair in group if pair != CONTROL})
    return results


def test_listed_pairs_are_accepted_and_others_rejected(start_engine) -> None:
    engine = start_engine()
    answer = run_swf("conformance", "--format", "json")
    assert answer.returncode == 0, answer.stderr
    statement = json.loads(answer.stdout)
    listed = [(row["sop_class"], syntax) for row in statement["scp_contexts"] for syntax in row["transfer_syntaxes"]]
    assert len(listed) > 1000
    refused = [pair for pair, ok in _results(engine.dicom_port, listed).items() if not ok]
    assert not refused, f"{len(refused)} listed pair(s) rejected, e.g. {refused[:5]}"

    scp = {row["sop_class"]: row["transfer_syntaxes"] for row in statement["scp_contexts"]}
    unlisted = [(uid, "1.2.840.10008.1.2") for uid in sorted({str(u) for u in vars(sop_class).values()
                                                              if isinstance(u, str) and u.startswith("1.2.840")})
                if uid not in scp][:60]
    unlisted.append((PRIVATE_SOP_CLASS, "1.2.840.10008.1.2"))
    unlisted += [(uid, syntax) for uid in ("1.2.840.10008.5.1.4.31", "1.2.840.10008.3.1.2.3.3", "1.2.840.10008.1.1")
                 for syntax in _globals.ALL_TRANSFER_SYNTAXES if syntax not in scp[uid]][:60]
    unlisted.append(("1.2.840.10008.5.1.4.1.1.2", PRIVATE_SYNTAX))
    unlisted.append(("1.2.840.10008.1.1", PRIVATE_SYNTAX))   # a non-storage association: pynetdicom path
    accepted = [pair for pair, ok in _results(engine.dicom_port, unlisted).items() if ok]
    assert not accepted, f"pairs not in the statement accepted: {accepted[:5]}"
