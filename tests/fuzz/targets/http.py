"""HTTP requests, as bytes, through twisted.web's parser, the engine's bounded site and the API (routing,
authentication, parameter and JSON body validation, Idempotency-Key, the handlers) and the login pages,
in-process: the connection is a StringTransport, and the store calls that the reactor's threads would run
are run at once on a real SQLite store (``reactor_bridge`` replaced here, not in the engine).

Declared for bad input: none escapes twisted; a crash is an exception out of the site, an answer that is
not HTTP, or a 500 (the API's "internal error")."""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Callable

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from engine import reactor_bridge
from engine.config import Config
from engine.hl7.profiles import load_profiles
from engine.rules.watcher import RulesHolder
from engine.store.database import Store
from engine.web.api import build_api, operations
from engine.web.api.context import EngineContext
from engine.web.auth import Authorizer
from engine.web.login import AuthPages
from engine.web.root import Root
from engine.web.site import BoundedSite
from engine.workflow.ingest import Ingestor

from . import hl7

NAME = "http"
ROOT = Path(__file__).resolve().parents[3]
PATH_VALUES = ("A1", "A2", "1", "0", "-1", "99999999999999999999", "%00", "%2e%2e%2f", "..%2F..", "%ff", "x" * 300,
               "1.2.3.1", "admin", "%E2%80%AE", "")
QUERY = ("", "?limit=1", "?limit=-1", "?limit=abc", "?limit=100000000000", "?status=failed", "?status=%00",
         "?since=2025-13-40", "?since=2025-03-04", "?cursor=zz", "?cursor=", "?a=1&a=2&a=3", "?" + "x=1&" * 200,
         "?accession=A*", "?patient_id=%ff")
HEADERS = ("Content-Type: application/json", "Content-Type: text/plain", "Content-Length: 5", "Content-Length: -1",
           "Content-Length: 99999999999999", "Transfer-Encoding: chunked", "Authorization: Bearer x",
           "Authorization: Bearer " + "A" * 500, "Authorization: Basic Zm9vOmJhcg==", "Idempotency-Key: k1",
           "Idempotency-Key: " + "k" * 300, "X-CSRF-Token: x", "Cookie: swf_session=abc", "Cookie: =;;;",
           "Host: \xff", "X-Forwarded-For: 10.0.0.1", "Expect: 100-continue", "Connection: close")


class _Transport(StringTransport):
    """A StringTransport that behaves as a TCP transport does where twisted.web relies on it: a producer may
    be unregistered twice, and pausing or resuming after loseConnection is allowed."""

    def unregisterProducer(self) -> None:
        self.producer = None

    def _checkState(self) -> None:
        pass


class BadAnswer(AssertionError):
    """The site answered something that is not an HTTP response, or a 500."""


def refused(exc: BaseException) -> bool:
    return False


def _request(method: str, path: str, headers: list[str], body: bytes) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost", *headers]
    if body and not any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + body


def _bodies() -> list[Any]:
    order = hl7.seeds()[0].decode()
    return [{"hl7": order}, {"accession": "A1", "reason": "fuzz"}, {"start": "2025-03-04T10:00:00"},
            {"fuzz.yaml": "rules:\n  - name: x\n    when: {MSH-3: RIS}\n"}, {"candidate": {"a.yaml": "rules: []"}},
            {"name": "u1", "role": "viewer", "password": "secret-secret"}, {"name": "admin", "password": "x"}, [], {},
            None, 1e308, "x", {"a": [[[[[[[[[[]]]]]]]]]]}]


def seeds() -> list[bytes]:
    found = [_request("GET", "/api/v1/openapi.json", [], b""), _request("GET", "/health", [], b""),
             b"A-ASSOCIATE-RQ\x01\x00\x00\x00\x00\xff", b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 600 + b"\r\n",
             b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n"]
    for operation in operations():
        path = "/api/v1" + operation.path.replace("{", "").replace("}", "")
        for body in _bodies()[:3] if operation.body is not None else [None]:
            data = b"" if body is None else json.dumps(body).encode()
            found.append(_request(operation.method, path, ["Content-Type: application/json"], data))
    found.append(_request("POST", "/auth/login", ["Content-Type: application/json"], b'{"name":"a","password":"b"}'))
    return found


def mutate(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("utf-8", "surrogateescape").split("\r\n")
    choice = rng.random()
    if choice < 0.3 and lines:                                           # the path or its query
        parts = lines[0].split(" ")
        if len(parts) == 3:
            segments = parts[1].split("?")[0].split("/")
            if len(segments) > 3 and rng.random() < 0.6:
                segments[rng.randrange(3, len(segments))] = rng.choice(PATH_VALUES)
            parts[1] = "/".join(segments) + rng.choice(QUERY)
            if rng.random() < 0.1:
                parts[0] = rng.choice(("GET", "POST", "PATCH", "DELETE", "PUT", "OPTIONS", "HEAD", "TRACE", "G\x00T"))
            lines[0] = " ".join(parts)
    elif choice < 0.5:                                                   # a header added or dropped
        if rng.random() < 0.7 or len(lines) < 3:
            lines.insert(rng.randint(1, len(lines)), rng.choice(HEADERS))
        else:
            del lines[rng.randrange(1, len(lines))]
    elif choice < 0.8:                                                   # the JSON body
        value: Any = rng.choice(_bodies())
        if isinstance(value, dict) and value and rng.random() < 0.6:
            key = rng.choice(list(value))
            value = dict(value)
            value[key] = rng.choice((None, 0, -1, 2 ** 70, "", "x" * 100000, [], {}, True, "\u0000", "\ud800"[:0]))
        body = json.dumps(value).encode() if rng.random() < 0.9 else json.dumps(value)[:rng.randint(0, 20)].encode()
        lines = [line for line in lines if not line.lower().startswith("content-length")]
        lines.append(f"Content-Length: {len(body)}")
    else:
        return rng.choice(corpus)[:rng.randint(0, 200)] + data
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + body


def _at_once(call: Callable[..., Any]) -> Callable[..., defer.Deferred]:
    def run(store: Store, work: Callable[..., Any]) -> defer.Deferred:
        return defer.maybeDeferred(call, store, work)
    return run


class Target:
    def __init__(self, workdir: Path):
        reactor_bridge.write = _at_once(lambda store, work: store.write(work))     # type: ignore[assignment]
        reactor_bridge.read = _at_once(lambda store, work: store.read(work))       # type: ignore[assignment]
        config = Config(data_dir=str(workdir), routes_dir=str(ROOT / "routes"), profiles_dir=str(ROOT / "profiles"))
        self.store = Store(config.database)
        self.store.start()
        profiles = load_profiles(ROOT / "profiles")
        rules = RulesHolder(config.routes_dir, set(profiles))
        ingestor = Ingestor(config, profiles, rules)
        authorizer = Authorizer(self.store, config)
        authorizer.load()
        root = Root()
        root.putChild(b"auth", AuthPages(self.store, authorizer, 1.0, False))
        root.putChild(b"api", build_api(self.store, authorizer, EngineContext(config, ingestor, rules, profiles)))
        self.site = BoundedSite(root, config.http.max_body_bytes, config.http.idle_timeout,
                                config.http.api_max_body_bytes)

    def run(self, data: bytes) -> None:
        channel = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = _Transport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        channel.makeConnection(transport)
        try:
            for start in range(0, len(data), 4096):
                if transport.disconnecting:          # a closing TCP transport delivers nothing more
                    break
                channel.dataReceived(data[start:start + 4096])
        finally:
            channel.connectionLost(None)
        answer = transport.value()
        if answer and not answer.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")):
            raise BadAnswer(f"not an HTTP answer: {answer[:80]!r}")
        for response in answer.replace(b"HTTP/1.0 ", b"HTTP/1.1 ").split(b"HTTP/1.1 ")[1:]:
            if response.startswith(b"500"):
                raise BadAnswer(f"500: {response[:300]!r}")

    def close(self) -> None:
        self.store.close()
