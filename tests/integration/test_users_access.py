"""Users, roles and fail closed (issue 13) against a real engine over HTTP on 127.0.0.1, with ``swf users``
run as a separate process: login and its cookie, wrong credentials, throttling, session expiry, CSRF,
API tokens (and their end when the user is removed), role checks, the audit rows of every change, and the
HTTP listener that will not serve another address than loopback while no user exists."""
from __future__ import annotations

import http.client
import json
import shlex
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from engine.store import audit
from engine.store.database import Store
from tests.conftest import ROOT, free_port

PASSWORD = "correct horse battery"


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: dict

    @property
    def cookie(self) -> str:
        """The swf_session cookie's value from Set-Cookie."""
        set_cookie = self.headers.get("set-cookie", "")
        return set_cookie.split(";")[0].partition("=")[2]


def call(port: int, method: str, path: str, *, json_body: object = None, form: dict | None = None,
         cookie: str | None = None, headers: dict | None = None, source: str = "127.0.0.1") -> Response:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15, source_address=(source, 0))
    sent = dict(headers or {})
    body: bytes | None = None
    if json_body is not None:
        body, sent["Content-Type"] = json.dumps(json_body).encode(), "application/json"
    elif form is not None:
        body, sent["Content-Type"] = urllib.parse.urlencode(form).encode(), "application/x-www-form-urlencoded"
    if cookie is not None:
        sent["Cookie"] = f"swf_session={cookie}"
    try:
        connection.request(method, path, body=body, headers=sent)
        answer = connection.getresponse()
        raw = answer.read()
        return Response(answer.status, answer.headers, json.loads(raw) if raw else {})
    finally:
        connection.close()


def login(port: int, name: str, password: str = PASSWORD, **kwargs: object) -> Response:
    return call(port, "POST", "/auth/login", json_body={"name": name, "password": password}, **kwargs)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def swf(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=ROOT, input=stdin, capture_output=True,
                          text=True, timeout=60)


def add_user(data_dir: Path, name: str, role: str) -> None:
    done = swf("users", "add", name, "--role", role, "--password-stdin", "--data-dir", str(data_dir),
               stdin=PASSWORD + "\n")
    assert done.returncode == 0, done.stderr


def token_of(data_dir: Path, name: str) -> str:
    done = swf("users", "token", name, "--data-dir", str(data_dir))
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def audit_rows(data_dir: Path) -> list[audit.AuditEntry]:
    store = Store(f"sqlite:///{data_dir / 'swf.sqlite'}")
    try:
        return list(reversed(store.read(lambda txn: audit.audit_entries(txn, limit=100))))
    finally:
        store.close()


def config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "engine.yaml"
    path.write_text(text)
    return str(path)


def wait_for(check, timeout: float, step: float = 0.05) -> float:
    """Seconds until ``check()`` held (fails after ``timeout``)."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, f"not within {timeout} s"
        time.sleep(step)
    return time.monotonic() - started


def test_without_users_every_request_is_the_local_admin(start_engine) -> None:
    engine = start_engine()
    whoami = call(engine.http_port, "GET", "/auth/whoami")
    assert (whoami.status, whoami.body) == (200, {"name": "local", "role": "admin", "via": "local"})
    assert call(engine.http_port, "GET", "/auth/check/admin").status == 200
    assert call(engine.http_port, "GET", "/health").status == 200
    assert login(engine.http_port, "local", "anything").status == 401   # nobody to log in as


def test_login_sets_a_strict_http_only_session_cookie(start_engine, tmp_path) -> None:
    data_dir = tmp_path / "var"
    add_user(data_dir, "alice", "operator")
    engine = start_engine("--config", config(tmp_path, "http: {session_hours: 2}\n"), data_dir=data_dir)
    logged_in = login(engine.http_port, "alice")
    assert logged_in.status == 200, logged_in.body
    assert logged_in.body["name"] == "alice" and logged_in.body["role"] == "operator"
    attributes = [part.strip().lower() for part in logged_in.headers["set-cookie"].split(";")]
    assert attributes[0].startswith("swf_session=") and len(logged_in.cookie) >= 43
    assert {"httponly", "samesite=strict", "path=/", "max-age=7200"} <= set(attributes)
    assert "secure" not in attributes   # no TLS on the listener, http.secure_cookies false
    assert logged_in.headers["cache-control"] == "no-store"
    whoami = call(engine.http_port, "GET", "/auth/whoami", cookie=logged_in.cookie)
    assert whoami.status == 200
    assert (whoami.body["name"], whoami.body["via"], whoami.body["csrf_token"]) == (
        "alice", "session", logged_in.body["csrf_token"])
    by_form = call(engine.http_port, "POST", "/auth/login", form={"name": "alice", "password": PASSWORD})
    assert by_form.status == 200 and by_form.cookie != logged_in.cookie
    assert call(engine.http_port, "GET", "/auth/whoami", cookie="not-a-session").status == 401
    assert [(e.actor, e.client, e.action) for e in audit_rows(data_dir)][-2:] == [
        ("alice", "127.0.0.1", "session.login")] * 2


def test_wrong_credentials_get_one_generic_401_and_a_warning_naming_user_and_client(start_engine, tmp_path) -> None:
    data_dir = tmp_path / "var"
    add_user(data_dir, "alice", "viewer")
    engine = start_engine(data_dir=data_dir)
    wrong_password = login(engine.http_port, "alice", "not the password")
    unknown_user = login(engine.http_port, "mallory", PASSWORD)
    assert (wrong_password.status, wrong_password.body) == (401, {"error": "wrong name or password"})
    assert (unknown_user.status, unknown_user.body) == (401, {"error": "wrong name or password"})
    assert "set-cookie" not in wrong_password.headers
    log = engine.log()
    assert "WARNING engine.web.login: login failed for user 'alice' from 127.0.0.1" in log
    assert "WARNING engine.web.login: login failed for user 'mallory' from 127.0.0.1" in log
    assert "not the password" not in log
    missing = call(engine.http_port, "POST", "/auth/login", json_body={"name": "alice"})
    assert (missing.status, missing.body["field"]) == (400, "password")
    assert call(engine.http_port, "POST", "/auth/login", json_body=["alice"]).status == 400
    assert call(engine.http_port, "GET", "/auth/login").status == 405


def test_repeated_failures_from_one_client_are_throttled(start_engine, tmp_path) -> None:
    data_dir = tmp_path / "var"
    add_user(data_dir, "alice", "viewer")
    engine = start_engine(data_dir=data_dir)
    assert [login(engine.http_port, "alice", f"guess {n}").status for n in range(5)] == [401] * 5
    refused = login(engine.http_port, "alice")   # even the right password, from this client
    assert refused.status == 429 and int(refused.headers["retry-after"]) > 0, refused.body
    assert "too many failed logins" in refused.body["error"]
    assert login(engine.http_port, "alice", source="127.0.0.2").status == 200   # another client is not held


def test_a_session_ends_when_it_expires_and_secure_cookies_marks_it(start_engine, tmp_path) -> None:
    data_dir = tmp_path / "var"
    add_user(data_dir, "alice", "viewer")
    engine = start_engine("--config", config(tmp_path, "http: {session_hours: 0.0005, secure_cookies: true, "
                                          "auth_refresh_seconds: 60}\n"),
                          data_dir=data_dir)   # 1.8 s; no re-read meanwhile: the expiry is checked per request
    started = time.monotonic()
    logged_in = login(engine.http_port, "alice")
    assert logged_in.status == 200
    assert "secure" in [part.strip().lower() for part in logged_in.headers["set-cookie"].split(";")]
    assert call(engine.http_port, "GET", "/auth/whoami", cookie=logged_in.cookie).status == 200
    wait_for(lambda: call(engine.http_port, "GET", "/auth/whoami", cookie=logged_in.cookie).status == 401, 10)
    assert time.monotonic() - started >= 1.8 - 0.1


def test_session_writes_need_the_sessions_csrf_token(start_engine, tmp_path) -> None:
    data_dir = tmp_path / "var"
    add_user(data_dir, "alice", "viewer")
    engine = start_engine(data_dir=data_dir)
    first = login(engine.http_port, "alice")
    second = login(engine.http_port, "alice")
    for headers in ({}, {"X-CSRF-Token": "wrong"}, {"X-CSRF-Token": second.body["csrf_token"]}):
        refused = call(engine.http_port, "POST", "/auth/logout", cookie=first.cookie, headers=headers)
        assert (refused.status, refused.body) == (403, {"error": "CSRF token missing or wrong"}), headers
    by_header = call(engine.http_port, "POST", "/auth/logout", cookie=first.cookie,
                     headers={"X-CSRF-Token": first.body["csrf_token"]})
    assert (by_header.status, by_header.body) == (200, {"logged_out": "alice"})
    assert "max-age=0" in by_header.headers["set-cookie"].lower()
    assert call(engine.http_port, "GET", "/auth/whoami", cookie=first.cookie).status == 401
    by_form = call(engine.http_port, "POST", "/auth/logout", cookie=second.cookie,
                   form={"csrf_token": second.body["csrf_token"]})
    assert by_form.status == 200
    assert call(engine.http_port, "GET", "/auth/whoami", cookie=second.cookie).status == 401
    assert [e.action for e in audit_rows(data_dir)][-4:] == ["session.login", "session.login", "session.logout",
                                                              "session.logout"]


def test_a_token_works_until_its_user_is_removed(start_engine, tmp_path) -> None:
    data_dir = tmp_path / "var"
    add_user(data_dir, "admin", "admin")
    engine = start_engine("--config", config(tmp_path, "http: {auth_refresh_seconds: 0.5}\n"), data_dir=data_dir)
    add_user(data_dir, "bob", "operator")   # while the engine runs: picked up by its next re-read
    token = token_of(data_dir, "bob")
    wait_for(lambda: call(engine.http_port, "GET", "/auth/whoami", headers=bearer(token)).status == 200, 5)
    whoami = call(engine.http_port, "GET", "/auth/whoami", headers=bearer(token))
    assert whoami.body == {"name": "bob", "role": "operator", "via": "token"}
    assert call(engine.http_port, "GET", "/auth/whoami", headers=bearer(token[:-1] + "x")).status == 401
    assert call(engine.http_port, "GET", "/auth/whoami", headers={"Authorization": token}).status == 401
    assert call(engine.http_port, "GET", "/auth/whoami", headers={"Authorization": "Bearer \xff"}).status == 401
    removed = swf("users", "remove", "bob", "--data-dir", str(data_dir))
    assert removed.returncode == 0, removed.stderr
    gone_after = wait_for(lambda: call(engine.http_port, "GET", "/auth/whoami", headers=bearer(token)).status == 401,
                          5)
    print(f"removed user's token refused {gone_after:.2f} s after swf users remove returned")
    assert gone_after < 0.5 + 0.5


def test_roles_cover_the_roles_below_them(start_engine, tmp_path) -> None:
    data_dir = tmp_path / "var"
    for name, role in (("vera", "viewer"), ("otto", "operator"), ("ada", "admin")):
        add_user(data_dir, name, role)
    tokens = {role: token_of(data_dir, name) for name, role in (("vera", "viewer"), ("otto", "operator"),
                                                                ("ada", "admin"))}
    engine = start_engine(data_dir=data_dir)
    allowed = {role: [call(engine.http_port, "GET", f"/auth/check/{needed}", headers=bearer(token)).status
                      for needed in ("viewer", "operator", "admin")] for role, token in tokens.items()}
    assert allowed == {"viewer": [200, 403, 403], "operator": [200, 200, 403], "admin": [200, 200, 200]}
    refused = call(engine.http_port, "GET", "/auth/check/admin", headers=bearer(tokens["operator"]))
    assert refused.body == {"error": "needs role admin", "needed": "admin", "role": "operator"}
    anonymous = call(engine.http_port, "GET", "/auth/check/viewer")
    assert (anonymous.status, anonymous.body) == (401, {"error": "authentication required"})
    assert call(engine.http_port, "GET", "/auth/whoami").status == 401
    assert call(engine.http_port, "GET", "/auth/check/root", headers=bearer(tokens["admin"])).status == 404


def test_swf_users_commands_and_their_audit_rows(tmp_path) -> None:
    data_dir = tmp_path / "var"
    where = ("--data-dir", str(data_dir))
    assert swf("users", "list", *where).returncode == 2   # no database yet: said, as by the other views
    add_user(data_dir, "alice", "admin")   # creates the database
    again = swf("users", "add", "alice", "--role", "viewer", "--password-stdin", *where, stdin=PASSWORD + "\n")
    assert (again.returncode, again.stderr) == (1, "user 'alice' exists already (swf users list)\n")
    bad_role = swf("users", "add", "bob", "--role", "boss", "--password-stdin", *where, stdin=PASSWORD + "\n")
    assert bad_role.returncode == 2 and "invalid choice: 'boss' (choose from 'viewer', 'operator', 'admin')" in \
        bad_role.stderr
    short = swf("users", "add", "bob", "--role", "viewer", "--password-stdin", *where, stdin="short\n")
    assert short.returncode == 2 and "8 characters at least" in short.stderr
    assert swf("users", "add", "bad name", "--role", "viewer", "--password-stdin", *where,
               stdin=PASSWORD + "\n").returncode == 2
    no_terminal = swf("users", "add", "bob", "--role", "viewer", *where)
    assert no_terminal.returncode == 2 and "--password-stdin" in no_terminal.stderr
    token = token_of(data_dir, "alice")
    assert len(token) >= 43 and "\n" not in token
    assert swf("users", "token", "nobody", *where).returncode == 1
    listed = swf("users", "list", *where).stdout.splitlines()
    assert listed[0].split() == ["NAME", "ROLE", "TOKENS", "SESSIONS", "CREATED"]
    assert listed[1].split()[:4] == ["alice", "admin", "1", "0"] and len(listed) == 2
    last_admin = swf("users", "remove", "alice", *where)
    assert last_admin.returncode == 1 and "alice is the last admin" in last_admin.stderr and "--force" in \
        last_admin.stderr
    add_user(data_dir, "bob", "admin")
    assert swf("users", "remove", "alice", *where).returncode == 0
    forced = swf("users", "remove", "bob", "--force", *where)
    assert forced.returncode == 0 and "no user is left" in forced.stdout
    assert swf("users", "remove", "bob", *where).returncode == 1
    nothing = swf("users", "list", *where)
    assert (nothing.returncode, nothing.stdout.split(" (")[0]) == (0, "no users yet")
    rows = audit_rows(data_dir)
    assert [(e.action, e.subject) for e in rows] == [("user.add", "alice"), ("user.token", "alice"),
                                                     ("user.add", "bob"), ("user.remove", "alice"),
                                                     ("user.remove", "bob")]
    assert {(e.actor.startswith("cli:"), e.client) for e in rows} == {(True, "cli")}
    assert rows[0].after == {"role": "admin"} and rows[3].before == {"role": "admin", "tokens": 1}
    with sqlite3.connect(data_dir / "swf.sqlite") as db:
        stored = repr(db.execute("SELECT * FROM operator_audit").fetchall())
    assert PASSWORD not in stored and token not in stored


def test_http_off_loopback_refuses_to_start_without_a_user(tmp_path) -> None:
    data_dir = tmp_path / "var"
    http_port = free_port()
    command = [sys.executable, "-m", "engine.cli", "serve", "--data-dir", str(data_dir), "--config",
               config(tmp_path, "http: {host: 0.0.0.0, tls: off, auth_refresh_seconds: 0.5}\n"), "--mllp-port",
               str(free_port()), "--dicom-port", str(free_port()), "--http-port", str(http_port)]
    refused = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert refused.returncode != 0
    assert f"HTTP listener 0.0.0.0:{http_port} not started: no user exists" in refused.stderr, refused.stderr
    fix = f"swf users add admin --role admin --data-dir {data_dir}"
    assert fix in refused.stderr
    added = swf(*shlex.split(fix)[1:], "--password-stdin", stdin=PASSWORD + "\n")   # the command as printed
    assert added.returncode == 0, added.stderr
    engine = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _listening(http_port), 20)
        assert call(http_port, "GET", "/auth/whoami").status == 401   # no local admin off loopback
        assert login(http_port, "admin").status == 200
        assert swf("users", "remove", "admin", "--force", "--data-dir", str(data_dir)).returncode == 0
        time.sleep(1.0)   # two re-reads: the engine has no user now, and still lets nobody in
        assert call(http_port, "GET", "/auth/whoami").status == 401
        assert engine.poll() is None
    finally:
        engine.terminate()
        engine.wait(10)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def test_a_user_with_an_unknown_role_is_refused_and_does_not_open_the_engine(start_engine, tmp_path) -> None:
    data_dir = tmp_path / "var"
    add_user(data_dir, "eve", "viewer")
    token = token_of(data_dir, "eve")
    with sqlite3.connect(data_dir / "swf.sqlite") as db:   # a hand edit of the database
        db.execute("UPDATE users SET role = 'root' WHERE name = 'eve'")
    engine = start_engine("--config", config(tmp_path, "http: {auth_refresh_seconds: 0.2}\n"), data_dir=data_dir)
    assert call(engine.http_port, "GET", "/auth/whoami").status == 401   # not the local admin
    assert call(engine.http_port, "GET", "/auth/whoami", headers=bearer(token)).status == 401
    time.sleep(0.6)   # re-reads meanwhile
    assert engine.log().count("user 'eve' has the unknown role 'root'") == 1
