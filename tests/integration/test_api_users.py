"""Users over the HTTP API (issue 13): an admin adds users, makes an API token (shown once) that then
authenticates, removes users; the last admin is kept unless force; each change is audited, as with
`swf users`."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.api_client import Api
from tests.conftest import ROOT, free_port, wait_for_port


def test_users_are_added_given_tokens_and_removed_over_the_api(start_engine) -> None:
    engine = start_engine()
    api = Api(engine.http_port)
    assert api.checked_call("GET", "/api/v1/users", "/api/v1/users", 200) == []
    added = api.checked_call("POST", "/api/v1/users", "/api/v1/users", 200,
                             json.dumps({"name": "alice", "role": "admin", "password": "correct horse"}).encode())
    assert (added["name"], added["role"]) == ("alice", "admin")
    again = api.checked_call("POST", "/api/v1/users", "/api/v1/users", 409,
                             json.dumps({"name": "alice", "role": "viewer", "password": "correct horse"}).encode())
    assert again["error"] == "user 'alice' exists already"
    short = api.call("POST", "/api/v1/users", json.dumps({"name": "bob", "role": "viewer", "password": "short"}).encode())
    assert (short[0], short[1]["field"]) == (400, "body.password")
    token = api.checked_call("POST", "/api/v1/users/{name}/tokens", "/api/v1/users/alice/tokens", 200)
    assert token["name"] == "alice" and len(token["token"]) >= 32
    refused = api.call("POST", "/api/v1/users/alice/tokens", headers={"Idempotency-Key": "k1"})
    assert (refused[0], refused[1]["field"]) == (400, "header.Idempotency-Key")

    # once the engine has re-read its users (http.auth_refresh_seconds), only credentials are let in
    deadline = time.monotonic() + 10
    while api.call("GET", "/api/v1/users")[0] != 401:
        assert time.monotonic() < deadline, "the added user was not picked up"
        time.sleep(0.2)
    admin = Api(engine.http_port, headers={"Authorization": f"Bearer {token['token']}"})
    admin.checked_call("POST", "/api/v1/users", "/api/v1/users", 200,
                       json.dumps({"name": "bob", "role": "operator", "password": "battery staple"}).encode())
    listed = admin.checked_call("GET", "/api/v1/users", "/api/v1/users", 200)
    assert [(u["name"], u["role"], u["tokens"]) for u in listed] == [("alice", "admin", 1), ("bob", "operator", 0)]
    last = admin.checked_call("DELETE", "/api/v1/users/{name}", "/api/v1/users/alice", 409)
    assert "last admin" in last["error"]
    removed = admin.checked_call("DELETE", "/api/v1/users/{name}", "/api/v1/users/bob", 200)
    assert (removed["name"], removed["users_left"]) == ("bob", 1)
    admin.checked_call("DELETE", "/api/v1/users/{name}", "/api/v1/users/bob", 404)
    admin.checked_call("POST", "/api/v1/users/{name}/tokens", "/api/v1/users/bob/tokens", 404)
    audit = admin.get("/api/v1/audit")[1]["items"]
    assert [(a["actor"], a["action"], a["subject"]) for a in audit] == [
        ("alice", "user.remove", "bob"), ("alice", "user.add", "bob"), ("local", "user.token", "alice"),
        ("local", "user.add", "alice")]
    assert "token" not in json.dumps(audit[2]["after"]).replace("token_id", "")
    gone = admin.checked_call("DELETE", "/api/v1/users/{name}", "/api/v1/users/alice?force=true", 200)
    assert gone["users_left"] == 0


def test_a_password_is_hashed_off_the_writer_thread(tmp_path: Path) -> None:
    """While POST /users hashes its password (held here until the test says go), other writes are answered:
    the hash runs before the write transaction, not in it on the engine's one writer thread."""
    port, started, go = free_port(), tmp_path / "hashing", tmp_path / "go"
    process = subprocess.Popen([sys.executable, "-m", "tests.slow_hash_server", str(port),
                                f"sqlite:///{tmp_path / 'api.sqlite'}", str(started), str(go)], cwd=ROOT)
    try:
        wait_for_port(port, process)
        api = Api(port)
        added: list[tuple[int, dict]] = []
        adding = threading.Thread(target=lambda: added.append(api.call(
            "POST", "/api/v1/users", json.dumps({"name": "carol", "role": "viewer", "password": "long enough"}).encode(),
            {"content-type": "application/json"})[:2]))
        adding.start()
        deadline = time.monotonic() + 10
        while not started.exists():
            assert time.monotonic() < deadline, "the password hash did not begin"
            time.sleep(0.02)
        began = time.monotonic()
        status, answer, _ = api.call("POST", "/api/v1/outbox/1/resend")     # a write, on the writer thread
        waited = time.monotonic() - began
        assert (status, answer) == (404, {"error": "no outbox message 1"})
        assert waited < 3, f"a write waited {waited:.1f} s for another request's password hash"
        go.touch()
        adding.join(15)
        assert [(status, body["name"]) for status, body in added] == [(200, "carol")]
        assert [user["name"] for user in api.get("/api/v1/users")[1]] == ["carol"]
    finally:
        go.touch()
        process.terminate()
        process.wait(10)
