"""The API asks its authorizer who calls (issue 13, API13.md): no principal is 401, a role below the
operation's is 403 naming the needed role, a write without a bearer token needs the CSRF check; the
answers validate against the document.  The API runs on a real port with a fixed-principal authorizer."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.api_client import Api
from tests.conftest import ROOT, free_port, wait_for_port


def serve(tmp_path: Path, role: str, csrf_ok: bool) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "tests.api_role_server", str(port),
                                f"sqlite:///{tmp_path / f'{role}.sqlite'}", role, "1" if csrf_ok else "0"], cwd=ROOT)
    wait_for_port(port, process)
    return process, port


def test_roles_and_csrf(tmp_path: Path) -> None:
    servers = {role: serve(tmp_path, role, csrf_ok) for role, csrf_ok in
               (("none", True), ("viewer", True), ("operator", False))}
    try:
        viewer = Api(servers["viewer"][1])
        anonymous, operator = (Api(servers[role][1], viewer.document) for role in ("none", "operator"))
        status, body, headers = anonymous.call("GET", "/api/v1/orders")
        assert (status, body, headers["www-authenticate"]) == (401, {"error": "authentication required"},
                                                               'Bearer realm="swf-engine"')
        viewer.validate("GET", "/api/v1/orders", 401, body)
        assert viewer.checked_call("GET", "/api/v1/orders", "/api/v1/orders", 200) == {"items": [], "next_cursor": None}
        refused = viewer.checked_call("POST", "/api/v1/outbox/{id}/resend", "/api/v1/outbox/1/resend", 403)
        assert refused == {"error": "resendOutboxMessage needs the role operator (yours: viewer)",
                           "needed_role": "operator"}
        status, body, _ = operator.call("POST", "/api/v1/outbox/1/resend")
        assert (status, body) == (403, {"error": "CSRF token missing or wrong"})
        status, body, _ = operator.call("POST", "/api/v1/outbox/1/resend", headers={"Authorization": "Bearer t"})
        assert (status, body) == (404, {"error": "no outbox message 1"})   # a bearer token needs no CSRF token
        status, body, _ = operator.call("POST", "/api/v1/outbox/1/resend", headers={"Authorization": "Basic dDp0"})
        assert (status, body) == (403, {"error": "CSRF token missing or wrong"})   # any other header does
        assert operator.get("/api/v1/audit")[0] == 200
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(10)
