"""The web console at ``/`` and ``/console/...``: server-rendered pages (Jinja2, autoescaped) for the people
who run the engine.  Every page's database read runs on the thread pool, every action on the writer thread
with its audit row; a viewer sees, an operator acts, anybody else gets the login page or a 403 page.

Login and logout are ``/auth/login`` and ``/auth/logout`` (static/console.js posts the forms there); the
session's CSRF token is in every action form and checked before anything is written."""
from __future__ import annotations

import json
import logging
import mimetypes
import uuid
from importlib import resources
from typing import Any, Callable
from urllib.parse import quote, urlencode

from jinja2 import Environment, PackageLoader, select_autoescape
from twisted.internet import threads
from twisted.python.failure import Failure
from twisted.web import resource, server

from ... import reactor_bridge
from ...domain.model import Rejection
from ...domain.principal import Principal
from ...store.database import Store, StoreUnavailable
from ..api.context import EngineContext
from ..api.declaration import ApiError, BadRequest
from ..auth import Authorizer, Identity
from ..login import client_of
from . import pages
from .rules import MAX_HOURS, RulesContext

log = logging.getLogger(__name__)

STATIC = {name: resources.files(__package__).joinpath("static", name).read_bytes()
          for name in ("console.css", "console.js")}
NAVIGATION = (("dashboard", "Dashboard"), ("worklist", "Worklist"), ("messages", "Messages"), ("queues", "Queues"),
              ("rules", "Rules"), ("audit", "Audit"), ("cluster", "Cluster"))


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def _query(request: Any) -> dict[str, str]:
    return {_text(key): _text(values[0]).strip() for key, values in (request.args or {}).items() if values}


class Console(resource.Resource):
    """Everything the console serves (a leaf: the path is dispatched here)."""

    isLeaf = True

    def __init__(self, store: Store, authorizer: Authorizer, explain: Callable[[str], Any],
                 listeners: Callable[[], dict[str, str | None]], rules: RulesContext,
                 engine: EngineContext | None = None):
        super().__init__()
        self.store = store
        self.engine = engine            # the HL7 path entered orders take, the destinations of a resend
        self.rules = rules
        self.authorizer = authorizer
        self.explain = explain          # accession -> Explanation | None (runs on the thread pool)
        self.listeners = listeners      # the /ready checks: name -> None when up, else what is wrong
        self.templates = Environment(loader=PackageLoader(__package__, "templates"),
                                     autoescape=select_autoescape(default=True))

    # -- dispatch -------------------------------------------------------------------------------------
    def render(self, request: Any) -> bytes | int:
        parts = [_text(part) for part in request.postpath if part]
        if parts[:1] == ["static"] and len(parts) == 2 and parts[1] in STATIC:
            kind = mimetypes.guess_type(parts[1])[0] or "application/octet-stream"
            request.setHeader(b"content-type", kind.encode())
            request.setHeader(b"cache-control", b"max-age=3600")
            return STATIC[parts[1]]
        if parts == ["login"]:
            return self.page(request, None, "login.html", {})
        identity = self.authorizer.identify(request)
        if identity is None:
            request.redirect(b"/console/login")
            return b""
        method = _text(request.method)
        try:
            if method == "POST":
                return self.act(request, identity, parts)
            if method not in ("GET", "HEAD"):
                return self.problem(request, identity, 405, f"{method} not allowed here")
            return self.show(request, identity, parts)
        except Exception:  # noqa: BLE001 - an engine bug: logged, never a stack trace to the browser
            log.exception("console %s /%s from %s failed", method, "/".join(parts), client_of(request))
            return self.problem(request, identity, 500, "internal error (see the engine's log)")

    # -- pages ----------------------------------------------------------------------------------------
    def show(self, request: Any, identity: Identity, parts: list[str]) -> bytes | int:
        query = _query(request)
        name = parts[0] if parts else "dashboard"
        if name == "dashboard" and len(parts) <= 1:
            return self.read_page(request, identity, "dashboard.html", pages.dashboard_page,
                                  extra={"listeners": self.listeners()})
        if name == "worklist" and len(parts) == 1:
            return self.read_page(request, identity, "worklist.html", lambda txn: pages.worklist_page(txn, query),
                                  extra={"query": query, "form_key": uuid.uuid4().hex})
        if name == "orders" and len(parts) == 2:
            return self.order(request, identity, parts[1])
        if name == "messages" and len(parts) == 1:
            return self.read_page(request, identity, "messages.html", lambda txn: pages.messages_page(txn, query),
                                  extra={"query": query})
        if name == "messages" and len(parts) == 2 and parts[1].isdigit():
            return self.read_page(request, identity, "message.html",
                                  lambda txn: pages.message_page(txn, int(parts[1]), self.engine))
        if name == "queues" and len(parts) == 1:
            status = query.get("status") or "dead"
            if status not in ("pending", "dead", "delivered", "discarded", "all"):
                return self.problem(request, identity, 400, f"no queue status {status!r}")
            return self.read_page(request, identity, "queues.html", lambda txn: pages.queues_page(txn, status))
        if name == "rules" and len(parts) == 1:
            threads.deferToThread(self.rules.overview).addCallback(
                self._found, request, identity, "rules.html", {"hours": 24}).addErrback(self._failed, request, identity)
            return server.NOT_DONE_YET
        if name == "audit" and len(parts) == 1:
            return self.read_page(request, identity, "audit.html", pages.audit_page)
        if name == "cluster" and len(parts) == 1:
            return self.read_page(request, identity, "cluster.html",
                                  lambda txn: pages.cluster_page(txn, self.rules.config.cluster))
        return self.problem(request, identity, 404, "no such console page")

    def order(self, request: Any, identity: Identity, accession: str) -> int:
        def read() -> dict[str, Any] | None:
            found = self.store.read(lambda txn: pages.order_page(txn, accession))
            if found is not None:
                found["explanation"] = self.explain(accession)
            return found
        threads.deferToThread(read).addCallback(self._found, request, identity, "order.html", {}).addErrback(
            self._failed, request, identity)
        return server.NOT_DONE_YET

    def read_page(self, request: Any, identity: Identity, template: str, read: Callable[[Any], Any],
                  extra: dict[str, Any] | None = None) -> int:
        reactor_bridge.read(self.store, read).addCallback(
            self._found, request, identity, template, extra or {}).addErrback(self._failed, request, identity)
        return server.NOT_DONE_YET

    def _found(self, found: dict[str, Any] | None, request: Any, identity: Identity, template: str,
               extra: dict[str, Any]) -> None:
        if found is None:
            self._finish(request, self.problem(request, identity, 404, "not found"))
            return
        self._finish(request, self.page(request, identity, template, {**found, **extra}))

    # -- actions --------------------------------------------------------------------------------------
    def act(self, request: Any, identity: Identity, parts: list[str]) -> bytes | int:
        principal = identity.principal
        needed = "admin" if parts == ["rules", "dry-run"] else "operator"
        if not principal.may(needed):
            return self.problem(request, identity, 403, f"this needs the {needed} role; {principal.name} is "
                                                        f"{principal.role}")
        if not self.authorizer.check_csrf(request):
            return self.problem(request, identity, 403, "CSRF token missing or wrong: reload the page")
        form, client = _query(request), client_of(request)
        if needed == "admin":
            return self.dry_run(request, identity, form)
        reason = form.get("reason", "")[:500]
        if parts == ["orders"] or (len(parts) == 3 and parts[0] == "orders" and parts[2] == "edit") or (
                len(parts) == 3 and parts[0] == "messages" and parts[1].isdigit() and parts[2] == "resend"):
            return self.api_form(request, identity, parts, form, client)
        if len(parts) == 3 and parts[0] == "orders" and parts[2] in ("reschedule", "cancel"):
            accession, back = parts[1], f"/console/orders/{quote(parts[1])}"
            if parts[2] == "cancel":
                work = pages.cancel(accession, reason or "cancelled by the operator", principal, client)
            else:
                start, station = form.get("start") or None, form.get("station") or None
                if not start and not station:
                    return self.problem(request, identity, 400, "reschedule needs a new start and/or station")
                if start and (not start.isdigit() or len(start) not in (12, 14)):
                    return self.problem(request, identity, 400,
                                        f"start must be YYYYMMDDHHMM or YYYYMMDDHHMMSS, not {start!r}")
                work = pages.reschedule(accession, start, station, reason or "rescheduled by the operator",
                                        principal, client)
            done = f"order {accession} {parts[2]}{'d' if parts[2].endswith('e') else 'led'}"
        elif (len(parts) == 4 and parts[0] == "queues" and parts[1] in ("outbox", "forwards")
              and parts[3] in ("resend", "discard") and parts[2].isdigit()):
            work = pages.queue_action(parts[1], parts[3], int(parts[2]), principal, client, reason)
            back, done = "/console/queues", f"{parts[1]} {parts[2]}: {parts[3]} done"
        else:
            return self.problem(request, identity, 404, "no such console action")
        log.info("console: %s by %s from %s", done, principal.name, client)
        reactor_bridge.write(self.store, work).addCallback(self._acted, request, back, done).addErrback(
            self._refused, request, identity)
        return server.NOT_DONE_YET

    def api_form(self, request: Any, identity: Identity, parts: list[str], form: dict[str, str],
                 client: str) -> bytes | int:
        """Create order, edit order, resend a message: the API operation's body built from the form, checked
        by the operation's own schema (a 400 names the field), run by its own handler with its audit row."""
        principal = identity.principal
        if parts == ["orders"]:
            operation_id, params, body = "createOrder", {}, pages.create_body(form)
        elif parts[0] == "orders":
            operation_id, params, body = "editOrder", {"accession": parts[1]}, pages.edit_body(form)
        else:
            operation_id, params = "resendJournalEntry", {"id": int(parts[1])}
            body = {"destination": form.get("destination", "")}
        try:
            body = pages.OPERATIONS[operation_id].parse_body(json.dumps(body).encode())
        except BadRequest as problem:
            return self.problem(request, identity, 400, f"{pages.form_label(problem.detail.get('field', ''))}: "
                                                        f"{problem.message}")
        work = pages.api_action(operation_id, params, body, principal, client, self.engine,
                                key=form.get("form_key", "")[:64] if operation_id == "createOrder" else "")

        def back(answer: dict[str, Any]) -> tuple[str, str]:
            if operation_id == "createOrder":
                accession = (answer.get("accession_numbers") or [""])[0]
                return f"/console/orders/{quote(accession)}", f"order {accession} created"
            if operation_id == "editOrder":
                return f"/console/orders/{quote(parts[1])}", f"order {parts[1]} edited"
            return (f"/console/messages/{parts[1]}",
                    f"message #{parts[1]} resent to {answer['destination']} as {answer['control_id']}")
        log.info("console: %s by %s from %s", operation_id, principal.name, client)
        reactor_bridge.write(self.store, work).addCallback(
            lambda answer: self._acted(None, request, *back(answer))).addErrback(self._refused, request, identity)
        return server.NOT_DONE_YET

    def dry_run(self, request: Any, identity: Identity, form: dict[str, str]) -> bytes | int:
        """A candidate rules file against the journal's last hours: reads only, so nothing to audit."""
        file_name, text = form.get("file", ""), _text(request.args.get(b"text", [b""])[0])
        try:
            hours = float(form.get("hours") or 24)
        except ValueError:
            hours = -1.0
        if not 0 < hours <= MAX_HOURS:
            return self.problem(request, identity, 400, f"hours must be a number above 0 and up to {MAX_HOURS}")
        if not file_name:
            return self.problem(request, identity, 400, "name the rules file the text replaces or adds")
        log.info("console: rules dry-run of %s over %g h by %s", file_name, hours, identity.principal.name)
        threads.deferToThread(self.rules.dry_run, file_name, text, hours).addCallback(
            self._found, request, identity, "rules.html", {}).addErrback(self._failed, request, identity)
        return server.NOT_DONE_YET

    def _acted(self, _: object, request: Any, back: str, done: str) -> None:
        if request.channel is None or request.finished:
            return
        request.redirect(f"{back}?{urlencode({'done': done})}".encode())
        request.setResponseCode(303)   # see the page again with GET
        request.finish()

    def _refused(self, failure: Failure, request: Any, identity: Identity) -> None:
        if failure.check(Rejection):
            self._finish(request, self.problem(request, identity, 409, failure.value.reason))
        elif failure.check(ApiError):
            self._finish(request, self.problem(request, identity, failure.value.status, failure.value.message))
        else:
            self._failed(failure, request, identity)

    # -- answers --------------------------------------------------------------------------------------
    def _failed(self, failure: Failure, request: Any, identity: Identity) -> None:
        if failure.check(StoreUnavailable):
            log.warning("console page not served: %s", failure.getErrorMessage())
            self._finish(request, self.problem(request, identity, 503, "the database cannot serve now; try again"))
            return
        log.error("console request from %s failed: %s", client_of(request), failure.getTraceback())
        self._finish(request, self.problem(request, identity, 500, "internal error (see the engine's log)"))

    def page(self, request: Any, identity: Identity | None, template: str, context: dict[str, Any],
             status: int = 200) -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")   # pages carry the CSRF token
        request.setHeader(b"x-frame-options", b"DENY")
        principal: Principal | None = identity.principal if identity else None
        csrf = identity.session.csrf_token if identity and identity.session else ""
        return self.templates.get_template(template).render(
            principal=principal, csrf_token=csrf, navigation=NAVIGATION, done=_query(request).get("done"),
            may_act=bool(principal and principal.may("operator")), **context).encode()

    def problem(self, request: Any, identity: Identity | None, status: int, message: str) -> bytes:
        return self.page(request, identity, "problem.html", {"status": status, "message": message}, status)

    @staticmethod
    def _finish(request: Any, body: bytes) -> None:
        if request.channel is None or request.finished:
            return
        request.write(body)
        request.finish()
