"""Users over the HTTP API (issue 13): an admin adds users, makes an API token (shown once) that then
authenticates, removes users; the last admin is kept unless force; each change is audited, as with
`swf users`."""
from __future__ import annotations

import json
import time

from tests.api_client import Api


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
