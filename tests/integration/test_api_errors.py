"""Bad requests to /api/v1 get clear JSON answers (issue 13): 400 naming the field path, 404 for an
unknown id or path, 405 naming the allowed methods, 413 from the headers before the body is read, and
a 500 without any detail when the engine fails (the traceback goes to the log with the request path)."""
from __future__ import annotations

import socket
import sqlite3
import time

from tests.api_client import Api
from tests.conftest import ROOT, run_swf
from tests.integration.test_http_limits import answer, request


def test_bad_parameters_and_bodies_are_400_naming_the_field(start_engine) -> None:
    api = Api(start_engine().http_port)
    cases = {
        "/api/v1/orders?limit=ten": ("query.limit", "query parameter 'limit': 'ten' is not an integer"),
        "/api/v1/orders?limit=0": ("query.limit", "query parameter 'limit': 0 is less than the minimum of 1"),
        "/api/v1/orders?limit=501": ("query.limit", "query parameter 'limit': 501 is greater than the maximum of 500"),
        "/api/v1/orders?status=DONE": ("query.status", "query parameter 'status': 'DONE' is not one of "
                                                       "['SC', 'CM', 'DC', 'CA', 'IP']"),
        "/api/v1/orders?scheduled_from=2025-03-04": ("query.scheduled_from", None),
        "/api/v1/orders?colour=red": ("query.colour", None),
        "/api/v1/orders?limit=1&limit=2": ("query.limit", "query parameter 'limit' given 2 times"),
        "/api/v1/journal?received_to=yesterday": ("query.received_to", None),
        "/api/v1/journal/abc": ("path.id", "path parameter 'id': 'abc' is not an integer"),
        "/api/v1/outbox?cursor=-1": ("query.cursor", None),
        "/api/v1/outbox?cursor=9223372036854775808": ("query.cursor", None),   # past a 64-bit row id
    }
    for path, (field, message) in cases.items():
        status, body = api.get(path)
        assert status == 400 and body["field"] == field, (path, status, body)
        assert message is None or body["error"] == message, (path, body)
        api.validate("GET", path.split("?")[0].replace("/abc", "/{id}"), 400, body)
    status, body = api.get("/api/v1/journal/9223372036854775808")
    assert (status, body["field"]) == (400, "path.id"), body
    bodies = {
        b'{"reason": ': ("body", "body: not valid JSON: Expecting value: line 1 column 12 (char 11)"),
        b'{"reason": 5}': ("body.reason", "body.reason: 5 is not of type 'string'"),
        b'["resend"]': ("body", "body: ['resend'] is not of type 'object'"),
        b'{"reason": "x", "force": true}': ("body", None),
        b'\xff\xfe': ("body", None),
    }
    for body, (field, message) in bodies.items():
        status, answer_body, _ = api.call("POST", "/api/v1/outbox/1/resend", body)
        assert status == 400 and answer_body["field"] == field, (body, answer_body)
        assert message is None or answer_body["error"] == message, answer_body
        api.validate("POST", "/api/v1/outbox/{id}/resend", 400, answer_body)


def test_unknown_paths_ids_and_methods(start_engine) -> None:
    api = Api(start_engine().http_port)
    for path in ("/api/v1/nothing", "/api/v1/orders/A/B", "/api/v2/orders", "/api", "/api/v1", "/consoles"):
        status, body = api.get(path)
        assert status == 404 and "error" in body, (path, body)
    assert api.get("/api/v1/nothing")[1]["error"] == (
        "no API operation at /api/v1/nothing; the operations are listed in /api/v1/openapi.json")
    status, body = api.get("/api/v1/orders/%C3%89T%C3%89")
    assert (status, body["error"]) == (404, "no order with accession or order number 'ÉTÉ'")
    status, body, headers = api.call("PUT", "/api/v1/orders")   # (POST creates an order since the orders' writes)
    assert (status, body["allowed"], headers["allow"]) == (405, ["GET", "POST"], "GET, POST")
    status, body, headers = api.call("DELETE", "/api/v1/outbox/1/resend")
    assert (status, headers["allow"]) == (405, "POST")


def test_api_bodies_over_the_limit_are_refused_from_the_headers(start_engine) -> None:
    engine = start_engine()
    for length in (10**12, 1024 * 1024 + 1):
        with request(engine.http_port, f"POST /api/v1/outbox/1/resend HTTP/1.1\r\nHost: e\r\n"
                                       f"Content-Length: {length}\r\n\r\n") as sock:
            head, seconds = answer(sock)
            assert head.startswith(b"HTTP/1.1 413 ") and seconds < 1, (length, head, seconds)
    assert "over http.api_max_body_bytes (1048576): answered 413" in engine.log()
    # up to the limit the body is read and checked: too long a reason is the body's fault, not its size
    body = b'{"reason": "' + b"x" * (1024 * 1024 - 14) + b'"}'
    status, answer_body, _ = Api(engine.http_port).call("POST", "/api/v1/outbox/1/resend", body)
    assert len(body) == 1024 * 1024 and status == 400 and answer_body["field"] == "body.reason", answer_body
    # the pages outside /api keep their own, smaller limit
    with request(engine.http_port, "POST /health HTTP/1.1\r\nHost: e\r\nContent-Length: 65537\r\n\r\n") as sock:
        assert answer(sock)[0].startswith(b"HTTP/1.1 413 ")


def test_an_engine_failure_is_a_bare_500_and_a_logged_traceback(start_engine) -> None:
    engine = start_engine()
    assert run_swf("replay", str(ROOT / "samples" / "day-v231.hl7"), "--to", engine.address,
                   "--no-progress").returncode == 0
    with sqlite3.connect(engine.data_dir / "swf.sqlite", timeout=10) as db:   # a damaged row
        db.execute("UPDATE patients SET attributes = '{not json' WHERE patient_id = 'PAT20003'")
    api = Api(engine.http_port)
    status, body = api.get("/api/v1/orders?limit=500")
    assert (status, body) == (500, {"error": "internal error; the engine's log names it with this request's path"})
    deadline = time.monotonic() + 5
    while "Traceback" not in engine.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "API GET /api/v1/orders failed" in engine.log() and "JSONDecodeError" in engine.log()
    assert api.get("/api/v1/journal")[0] == 200        # the engine goes on
    with socket.create_connection(("127.0.0.1", engine.http_port), timeout=5) as sock:
        sock.sendall(b"GET /api/v1/orders HTTP/1.0\r\n\r\n")
        assert b"Traceback" not in sock.recv(65536)
