"""Plain twisted.web Resource routing vs Klein for a small JSON GET (the choice behind engine/web/api/).

Each server runs in its own process on one reactor (no second event loop), with a route table of the
same shape as the API's (a dozen paths, one with a path parameter); the client is a few threads, each a
keep-alive HTTP/1.1 connection sending GET /api/v1/orders/A123 in a loop for a fixed time.  Servers
alternate over the rounds; the median requests per second of each is printed.

    .venv/bin/python bench/api_framework.py [--seconds 5] [--rounds 3] [--clients 4]

Klein is not a dependency of the engine (twisted.web was chosen): `.venv/bin/pip install klein` first.
"""
from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import threading
import time

BODY = {"accession_number": "A123", "status": "SC", "steps": [{"sps_id": "S1", "modality": "CT"}]}
PATHS = ["orders", "journal", "outbox", "forwards", "audit", "patients", "mpps", "commitments", "studies",
         "rules", "metrics"]


def serve_twisted_web(port: int) -> None:
    from twisted.internet import reactor
    from twisted.web import resource, server

    class Api(resource.Resource):
        isLeaf = True

        def render_GET(self, request: server.Request) -> bytes:
            parts = request.path.decode().strip("/").split("/")
            request.setHeader(b"content-type", b"application/json")
            if len(parts) == 4 and parts[:3] == ["api", "v1", "orders"]:
                return json.dumps({**BODY, "accession_number": parts[3]}).encode()
            if len(parts) == 3 and parts[2] in PATHS:
                return json.dumps([]).encode()
            request.setResponseCode(404)
            return b'{"error": "not found"}'

    reactor.listenTCP(port, server.Site(Api()), interface="127.0.0.1")
    reactor.run()


def serve_klein(port: int) -> None:
    from klein import Klein
    from twisted.internet import reactor
    from twisted.web import server

    app = Klein()
    for name in PATHS:
        app.route(f"/api/v1/{name}", endpoint=name)(lambda request: json.dumps([]))

    @app.route("/api/v1/orders/<accession>")
    def order(request: server.Request, accession: str) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({**BODY, "accession_number": accession}).encode()

    reactor.listenTCP(port, server.Site(app.resource()), interface="127.0.0.1")
    reactor.run()


def load(port: int, seconds: float, clients: int) -> float:
    """Requests per second answered 200 by ``clients`` keep-alive connections for ``seconds``."""
    counts = [0] * clients
    deadline = time.monotonic() + seconds

    def client(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while time.monotonic() < deadline:
            connection.request("GET", "/api/v1/orders/A123")
            response = connection.getresponse()
            body = response.read()
            if response.status != 200 or b"A123" not in body:
                raise RuntimeError(f"bad answer {response.status} {body[:80]!r}")
            counts[index] += 1
        connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / seconds


def wait_until_up(port: int) -> None:
    for _ in range(200):
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", "/api/v1/orders/UP")
            connection.getresponse().read()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", choices=["twisted.web", "klein"])
    parser.add_argument("--port", type=int, default=18931)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    if args.serve:
        (serve_twisted_web if args.serve == "twisted.web" else serve_klein)(args.port)
        return 0
    figures: dict[str, list[float]] = {"twisted.web": [], "klein": []}
    for _ in range(args.rounds):
        for name in figures:
            server = subprocess.Popen([sys.executable, __file__, "--serve", name, "--port", str(args.port)])
            try:
                wait_until_up(args.port)
                figures[name].append(load(args.port, args.seconds, args.clients))
            finally:
                server.terminate()
                server.wait(10)
    for name, values in figures.items():
        print(f"{name:<12} median {statistics.median(values):7.0f} req/s  (runs: "
              f"{', '.join(f'{v:.0f}' for v in values)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
