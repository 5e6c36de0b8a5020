"""The pynetdicom private-API guard (engine/dicom/wire/pynetdicom_private.py) against the installed pynetdicom.

When a pynetdicom upgrade drops, renames or reshapes an internal the engine relies on, the first test fails
naming it and the installed version; the others keep the declared list honest (every internal the module
touches is declared, no other engine module touches one) and show the guard does report a change.
"""
from __future__ import annotations

import ast
import logging
import socket
from pathlib import Path

import pynetdicom
import pytest
from pynetdicom import AE, sop_class
from pynetdicom.association import Association
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dul import DULServiceProvider
from pynetdicom.sop_class import Verification
from pynetdicom.transport import AssociationSocket

from engine.dicom.ae import DicomServer, start_server
from engine.dicom.wire import pynetdicom_private as private

ENGINE = Path(private.__file__).resolve().parents[2]
MODULE = Path(private.__file__).resolve()
# Declared attributes too common to hunt for in other modules (sockets, our own AssociateRQ.contexts ...).
COMMON_NAMES = {"socket", "contexts", "message", "recv", "data_set", "__dict__", "Event", "AttributeIdentifierList",
                "STATUS_OPTIONAL_KEYWORDS", "maximum_pdu_size", "send", "_send"}   # AE.maximum_pdu_size is public


def test_the_installed_pynetdicom_has_everything_the_engine_relies_on() -> None:
    assert private.report_changes() == ""


def _reactor_without_checkpoint(self: Association) -> None:
    """A reactor that no longer waits at the checkpoint."""


def _send_with_a_new_signature(self: AssociationSocket, bytestream: bytes, flags: int) -> None:
    """AssociationSocket.send taking another argument."""


@pytest.mark.parametrize(("owner", "attribute", "replacement", "named"), [
    (sop_class, "_STORAGE_CLASSES", None, "sop_class._STORAGE_CLASSES"),
    (DULServiceProvider, "peek_next_pdu", None, "DULServiceProvider.peek_next_pdu"),
    (DIMSEServiceProvider, "send_msg", None, "DIMSEServiceProvider.send_msg"),
    (AssociationSocket, "send", _send_with_a_new_signature, "AssociationSocket.send"),
    (Association, "_run_reactor", _reactor_without_checkpoint, "Association._reactor_checkpoint"),
])
def test_a_changed_internal_is_named_with_the_installed_version(monkeypatch: pytest.MonkeyPatch, owner: object,
                                                                attribute: str, replacement: object,
                                                                named: str) -> None:
    if replacement is None:
        monkeypatch.delattr(owner, attribute)
    else:
        monkeypatch.setattr(owner, attribute, replacement)
    report = private.report_changes()
    assert named in report and f"pynetdicom {pynetdicom.__version__}" in report
    assert private.changed() == [r.what for r in private.RELIED_ON if r.what.startswith(named)]


def test_the_engine_logs_an_error_naming_the_change_when_its_dicom_listener_starts(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    gone = private.Reliance("Association.reactor_of_the_future (a new internal)",
                            lambda p: p.association.reactor_of_the_future)
    monkeypatch.setattr(private, "RELIED_ON", (*private.RELIED_ON, gone))
    ae = AE(ae_title="GUARD")
    ae.add_supported_context(Verification)
    server = DicomServer(ae, [])
    with caplog.at_level(logging.ERROR, logger="engine.dicom.ae"):
        start_server(server, "127.0.0.1", 0)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5):
            pass                                    # the listener runs all the same
    finally:
        server.stop()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("Association.reactor_of_the_future" in e and pynetdicom.__version__ in e for e in errors), errors


# -- the declared list is the whole truth ----------------------------------------------------------------
def _attributes_touched(tree: ast.AST) -> set[str]:
    """Attribute names read or written (``x.name``, ``getattr(x, "name")`` and the like)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in {"getattr", "setattr", "hasattr", "delattr"} and len(node.args) > 1
              and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)):
            names.add(node.args[1].value)
    return names


def _pynetdicom_attribute_names() -> set[str]:
    """Every attribute name of the pynetdicom objects and modules the module works with."""
    probe = private.Probe()
    try:
        objects = [probe.association, probe.dul, probe.dimse, probe.message, probe.association_socket,
                   probe.listener, probe.entity, private.RequestHandler, private.AssociationServer,
                   private._config, private._globals, private.sop_class, private.dimse_messages,
                   private.dimse_primitives, private.dimse_primitives.N_CREATE, private.dimse_primitives.N_GET]
        return {name for obj in objects for name in dir(obj) if not name.startswith("__")} - set(dir(object))
    finally:
        probe.close()


def _declared() -> set[str]:
    return {name for reliance in private.RELIED_ON for name in reliance.attributes}


def test_every_pynetdicom_attribute_the_module_touches_is_declared() -> None:
    touched = _attributes_touched(ast.parse(MODULE.read_text()))
    undeclared = (touched & _pynetdicom_attribute_names()) - _declared() - set(private.PUBLIC_API)
    assert not undeclared, f"add these to RELIED_ON (or PUBLIC_API, if documented) in {MODULE.name}: {undeclared}"


def internals_touched(source: str) -> list[str]:
    """What a module outside pynetdicom_private.py takes of pynetdicom's internals."""
    tree = ast.parse(source)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pynetdicom"):
            found += [f"import {node.module}.{alias.name}" for alias in node.names
                      if alias.name.startswith("_") or "._" in f".{node.module}"]
        elif isinstance(node, ast.Import):
            found += [f"import {alias.name}" for alias in node.names if alias.name.startswith("pynetdicom._")]
    private_names = {"dul", "dimse"} | (_declared() - COMMON_NAMES)
    found += sorted(f".{name}" for name in _attributes_touched(tree) & private_names)
    return found


def test_the_scan_sees_internals() -> None:
    assert internals_touched("from pynetdicom._globals import ALL_TRANSFER_SYNTAXES\n"
                             "from pynetdicom.sop_class import _STORAGE_CLASSES\n"
                             "sock = assoc.dul.socket\n"
                             "getattr(assoc, '_reactor_checkpoint')\n"
                             "server.finish_request = serve\n") == [
        "import pynetdicom._globals.ALL_TRANSFER_SYNTAXES", "import pynetdicom.sop_class._STORAGE_CLASSES",
        "._reactor_checkpoint", ".dul", ".finish_request"]
    assert internals_touched("from pynetdicom import AE, evt\nassoc.requestor.ae_title\nrequest.contexts\n") == []


def test_no_other_engine_module_touches_pynetdicom_internals() -> None:
    touching = {}
    for path in sorted(ENGINE.rglob("*.py")):
        if path.resolve() == MODULE:
            continue
        found = internals_touched(path.read_text())
        if found:
            touching[str(path.relative_to(ENGINE.parent))] = found
    assert not touching, f"go through engine/dicom/wire/pynetdicom_private.py instead: {touching}"
