"""The HR review page's requests: login, the queue, one case with its photo, decisions, the decided list, the login
audit. :class:`ReviewApp` turns a parsed request into a :class:`Response` (no sockets); :class:`ReviewServer` is the
standard library's threading HTTP server around it. Every response carries ``Cache-Control: no-store`` and a strict
content security policy; pages other than the login need a session cookie, and every POST its form's CSRF token.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kiosk_central.settings import CentralConfig, WebConfig
from kiosk_central.store import DecisionRefused, Ledger, ReviewCase
from kiosk_central.web import auth, pages
from kiosk_contract.errors import KioskError
from kiosk_contract.nip import NipError, parse_nip

log = logging.getLogger(__name__)

SESSION_COOKIE = "kiosk_session"
LOGIN_COOKIE = "kiosk_login"  # the login form's CSRF token (double submit: cookie and form field must match)
MAX_FORM_BYTES = 16 * 1024
MAX_REASON_CHARS = 500
SECURITY_HEADERS = (
    ("Cache-Control", "no-store"),
    ("Pragma", "no-cache"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Content-Security-Policy", "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
)


@dataclass
class Response:
    """What the server sends back."""

    status: int
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Request:
    """A parsed request: method, path, query, form fields, cookies and the client's address."""

    method: str
    path: str
    query: Mapping[str, str]
    form: Mapping[str, str]
    cookies: Mapping[str, str]
    remote: str


def redirect(location: str, *headers: tuple[str, str]) -> Response:
    return Response(HTTPStatus.SEE_OTHER, headers=[("Location", location), *headers])


def html(status: int, text: str, *headers: tuple[str, str]) -> Response:
    return Response(status, text.encode("utf-8"), headers=list(headers))


class ReviewApp:
    """The review page over a ledger; ``clock`` (epoch seconds) drives session expiry and the login lock-out."""

    def __init__(self, ledger: Ledger, cfg: WebConfig, clock: Callable[[], float] = time.time) -> None:
        self.ledger = ledger
        self.cfg = cfg
        self.clock = clock

    # ------------------------------------------------------------------ dispatch

    def handle(self, request: Request) -> Response:
        """Route one request; a page that needs a login redirects to /login without one."""
        if request.path == "/login":
            return self.login_form(request) if request.method == "GET" else self.login(request)
        found = self.ledger.session(auth.token_digest(request.cookies.get(SESSION_COOKIE, "")), self.now_ms())
        if found is None:
            return redirect("/login")
        reviewer, csrf = found
        viewer = pages.Viewer(reviewer.name, reviewer.role, csrf)
        if request.method == "POST" and request.form.get("csrf") != csrf:
            return html(HTTPStatus.FORBIDDEN, pages.error_page("Ditolak", "The form has expired or did not come from "
                                                               "this page (CSRF check): reload it.", viewer))
        parts = request.path.strip("/").split("/")
        if request.method == "GET":
            if request.path in ("/", ""):
                return redirect("/queue")
            if request.path == "/queue":
                return self.queue(request, viewer)
            if request.path == "/decided":
                return self.decided(request, viewer)
            if request.path == "/audit":
                return self.audit(viewer)
            if len(parts) == 2 and parts[0] == "case" and parts[1].isdigit():
                return self.case(int(parts[1]), viewer)
            if len(parts) == 3 and parts[0] == "case" and parts[1].isdigit() and parts[2] == "photo":
                return self.photo(int(parts[1]))
        elif request.method == "POST":
            if request.path == "/logout":
                return self.logout(request, viewer)
            if len(parts) == 3 and parts[0] == "case" and parts[1].isdigit() and parts[2] == "decide":
                return self.decide(int(parts[1]), request, viewer)
        return html(HTTPStatus.NOT_FOUND, pages.error_page("Tidak ditemukan", "No such page.", viewer))

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # ------------------------------------------------------------------ login and logout

    def login_form(self, request: Request, problem: str = "", status: int = HTTPStatus.OK) -> Response:
        token = request.cookies.get(LOGIN_COOKIE) or auth.new_token()
        return html(status, pages.login_page(token, problem), ("Set-Cookie", self.cookie(LOGIN_COOKIE, token, 3600)))

    def login(self, request: Request) -> Response:
        """Check the form token, the lock-out and the password; audit the attempt; open a session."""
        given = request.form.get("csrf", "")
        if not given or given != request.cookies.get(LOGIN_COOKIE):
            return self.login_form(request, "The login form has expired (CSRF check): try again.",
                                   HTTPStatus.FORBIDDEN)
        name = request.form.get("user", "").strip().lower()
        password = request.form.get("password", "")
        now = self.now_ms()
        window_ms = int(self.cfg.lockout_min * 60_000)
        with self.ledger.transaction():
            failures = self.ledger.failed_logins(name, now - window_ms)
            if len(failures) >= self.cfg.max_failed_logins:
                self.ledger.note_login(name, request.remote, "locked", now)
                until = datetime.fromtimestamp((failures[-self.cfg.max_failed_logins] + window_ms) / 1000, UTC)
                return self.login_form(request, f"Too many failed logins for this name: locked until "
                                       f"{until:%H:%M} UTC.", HTTPStatus.TOO_MANY_REQUESTS)
        reviewer = self.ledger.reviewer(name)
        if reviewer is None:
            auth.spend_check_time(password)
            outcome = "unknown_user"
        elif not auth.check_password(password, reviewer.password_hash):
            outcome = "bad_password"
        else:
            outcome = "disabled" if reviewer.disabled else "ok"
        with self.ledger.transaction():
            self.ledger.note_login(name, request.remote, outcome, now)
            if outcome == "ok":
                token = auth.new_token()
                lifetime_s = int(self.cfg.session_hours * 3600)
                self.ledger.open_session(auth.token_digest(token), name, auth.new_token(), request.remote, now,
                                         now + lifetime_s * 1000)
        if outcome != "ok":
            log.warning("review page: login of %r from %s refused (%s)", name, request.remote, outcome)
            return self.login_form(request, "Wrong user name or password.", HTTPStatus.UNAUTHORIZED)
        log.info("review page: %s logged in from %s", name, request.remote)
        return redirect("/queue", ("Set-Cookie", self.cookie(SESSION_COOKIE, token, lifetime_s)),
                        ("Set-Cookie", self.cookie(LOGIN_COOKIE, "", 0)))

    def logout(self, request: Request, viewer: pages.Viewer) -> Response:
        with self.ledger.transaction():
            self.ledger.close_session(auth.token_digest(request.cookies.get(SESSION_COOKIE, "")))
            self.ledger.note_login(viewer.name, request.remote, "logout", self.now_ms())
        return redirect("/login", ("Set-Cookie", self.cookie(SESSION_COOKIE, "", 0)))

    def cookie(self, name: str, value: str, max_age_s: int) -> str:
        secure = "; Secure" if self.cfg.cookie_secure else ""
        return f"{name}={value}; Path=/; Max-Age={max_age_s}; HttpOnly; SameSite=Strict{secure}"

    # ------------------------------------------------------------------ pages

    def queue(self, request: Request, viewer: pages.Viewer) -> Response:
        zones = self.ledger.office_zones()
        filters = {k: request.query[k] for k in ("office", "reason", "date") if request.query.get(k)}
        windows = None
        problem = ""
        if "date" in filters:
            try:
                day = date.fromisoformat(filters["date"])
            except ValueError:
                problem = f"date {filters.pop('date')!r}: use YYYY-MM-DD, like 2026-02-03"
            else:
                windows = [(office, *day_window(day, zone)) for office, zone in zones.items()]
        page = page_number(request.query)
        cases, total = self.ledger.review_cases(
            decided=False, office=filters.get("office"), reason=filters.get("reason"), windows=windows,
            limit=self.cfg.page_size, offset=(page - 1) * self.cfg.page_size,
        )
        lines = [self.case_line(c, zones) for c in cases]
        return html(HTTPStatus.OK, pages.queue_page(viewer, lines, total, page, self.cfg.page_size, list(zones),
                                                    filters, problem))

    def decided(self, request: Request, viewer: pages.Viewer) -> Response:
        zones = self.ledger.office_zones()
        page = page_number(request.query)
        cases, total = self.ledger.review_cases(decided=True, limit=self.cfg.page_size,
                                                offset=(page - 1) * self.cfg.page_size)
        lines = [self.case_line(c, zones) for c in cases]
        return html(HTTPStatus.OK, pages.decided_page(viewer, lines, total, page, self.cfg.page_size))

    def audit(self, viewer: pages.Viewer) -> Response:
        if viewer.role != "admin":
            return html(HTTPStatus.FORBIDDEN, pages.error_page("Ditolak", "Only an admin sees the login audit.",
                                                               viewer))
        return html(HTTPStatus.OK, pages.audit_page(viewer, self.ledger.login_audit(500)))

    def case(self, case_id: int, viewer: pages.Viewer, problem: str = "", form: dict[str, str] | None = None,
             status: int = HTTPStatus.OK) -> Response:
        case = self.ledger.review_case(case_id)
        if case is None:
            return html(HTTPStatus.NOT_FOUND, pages.error_page("Tidak ditemukan", f"No review case {case_id}.",
                                                               viewer))
        return html(status, pages.case_page(viewer, self.case_view(case), problem, form))

    def photo(self, case_id: int) -> Response:
        case = self.ledger.review_case(case_id)
        jpeg = None if case is None else self.ledger.evidence(case.device_id, case.event_id)
        if jpeg is None:
            return Response(HTTPStatus.NOT_FOUND, b"no evidence photo for this case\n", "text/plain; charset=utf-8")
        return Response(HTTPStatus.OK, jpeg, "image/jpeg")

    def decide(self, case_id: int, request: Request, viewer: pages.Viewer) -> Response:
        """Accept or reject a case from its form; the form comes back with the problem when something is wrong."""
        form = dict(request.form)
        decision = form.get("decision")
        reason = form.get("reason", "").strip()
        nip = form.get("nip", "").strip()
        kind = form.get("kind", "")
        problem = ""
        if decision not in ("accept", "reject"):
            problem = "decision must be accept or reject"
        elif not reason:
            problem = "reason: write why the case is accepted or rejected (required)"
        elif len(reason) > MAX_REASON_CHARS:
            problem = f"reason: at most {MAX_REASON_CHARS} characters"
        elif decision == "accept":
            try:
                nip = parse_nip(nip, "nip")
            except NipError as exc:
                problem = f"{exc} (a NIP of the roster)"
            else:
                if kind not in pages.KINDS:
                    problem = "kind: choose masuk or pulang"
        if problem:
            return self.case(case_id, viewer, problem, form, HTTPStatus.BAD_REQUEST)
        try:
            self.ledger.decide_review(case_id, viewer.name, decision == "accept", reason,
                                      nip if decision == "accept" else None, kind if decision == "accept" else None)
        except DecisionRefused as exc:
            status = {"missing": HTTPStatus.NOT_FOUND, "decided": HTTPStatus.CONFLICT}.get(exc.why,
                                                                                          HTTPStatus.BAD_REQUEST)
            return self.case(case_id, viewer, str(exc), form, status)
        log.info("review page: %s %sed case %d", viewer.name, decision, case_id)
        return redirect(f"/case/{case_id}")

    # ------------------------------------------------------------------ what a case shows

    def case_line(self, case: ReviewCase, zones: Mapping[str, str]) -> pages.CaseLine:
        event = json.loads(case.payload)
        local, _ = times(case, zones.get(case.office or "", event.get("tz", "UTC")))
        person = (event.get("person") or {}).get("nip")
        best = (event.get("decision") or {}).get("best_nip")
        return pages.CaseLine(case, local, " / ".join(n for n in (person, best) if n) or "-")

    def case_view(self, case: ReviewCase) -> pages.CaseView:
        event = json.loads(case.payload)
        zone = self.ledger.office_zones().get(case.office or "", event.get("tz", "UTC"))
        local, utc = times(case, zone)
        if case.time_source == "device":
            note = "jam perangkat (sudah tersinkron)"
        elif case.time_source == "anchor":
            note = f"diperbaiki dari jangkar waktu (jam perangkat mencatat {event.get('time_utc')})"
        else:
            note = "belum diketahui: menunggu jangkar waktu perangkat (tidak dihitung sampai tiba)"
        decision = event.get("decision") or {}
        typed = (event.get("person") or {}).get("nip")
        best = decision.get("best_nip")
        people = []
        for label, nip in (("NIP diketik / diklaim", typed), ("NIP terdekat (pengenal wajah)", best)):
            if nip:
                found = self.ledger.employee(nip)
                people.append((label, nip, f"{found[0]} ({found[1]})" if found else "tidak ada di daftar pegawai"))
        scores = [(label, str(decision[key])) for key, label in (
            ("method", "Metode"), ("distance", "Jarak wajah"), ("margin", "Selisih ke kandidat kedua"),
            ("frames", "Jumlah bingkai"),
        ) if decision.get(key) is not None]
        liveness = decision.get("liveness")
        if isinstance(liveness, dict):
            scores += [(f"Liveness: {key}", str(value)) for key, value in sorted(liveness.items())]
        return pages.CaseView(
            case=case, local_time=local, utc_time=utc, time_note=note, people=people, scores=scores,
            event_kind=event.get("kind"),
            has_photo=self.ledger.evidence(case.device_id, case.event_id) is not None,
            proposed_nip=case.resolved_nip or typed or best or "",
            history=self.ledger.review_history(case.id),
        )


def times(case: ReviewCase, zone_name: str) -> tuple[str, str]:
    """(local time with its zone, UTC time) of a case's believed instant; '-' while it is unknown."""
    if case.time_ms is None:
        return "-", "-"
    instant = datetime.fromtimestamp(case.time_ms / 1000, UTC)
    try:
        local = instant.astimezone(zoneinfo.ZoneInfo(zone_name))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        local = instant
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()}", f"{instant:%Y-%m-%d %H:%M:%S} UTC"


def day_window(day: date, zone_name: str) -> tuple[int, int]:
    """[start, end) in epoch ms of a local date in a zone."""
    zone = zoneinfo.ZoneInfo(zone_name)
    start = datetime.combine(day, clock_time(0), zone)
    end = datetime.combine(day + timedelta(days=1), clock_time(0), zone)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def page_number(query: Mapping[str, str]) -> int:
    value = query.get("page", "1")
    return max(1, int(value)) if value.isdigit() and len(value) < 7 else 1


# ---------------------------------------------------------------------------------------------------- HTTP


class _Handler(BaseHTTPRequestHandler):
    """Parses a request for :class:`ReviewApp` and writes its response with the security headers."""

    server: ReviewServer
    server_version = "kiosk-central-review"
    sys_version = ""

    def do_GET(self) -> None:
        self._serve("GET", {})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_FORM_BYTES:
            self._send(Response(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, b"form too large\n", "text/plain"))
            return
        body = self.rfile.read(length).decode("utf-8", errors="replace")
        self._serve("POST", {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()})

    def _serve(self, method: str, form: dict[str, str]) -> None:
        url = urlsplit(self.path)
        cookies: dict[str, str] = {}
        with contextlib.suppress(CookieError):
            cookies = {k: m.value for k, m in SimpleCookie(self.headers.get("Cookie", "")).items()}
        request = Request(method, url.path, {k: v[0] for k, v in parse_qs(url.query).items()}, form, cookies,
                          self.client_address[0])
        try:
            response = self.server.app.handle(request)
        except Exception:  # the database went away, or a bug: log it, answer 500, keep serving
            log.exception("review page: %s %s failed", method, url.path)
            response = Response(HTTPStatus.INTERNAL_SERVER_ERROR, b"the review page failed; see the server's log\n",
                                "text/plain; charset=utf-8")
        self._send(response)

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in (*SECURITY_HEADERS, *response.headers):
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("review page: %s %s", self.address_string(), format % args)


class ReviewServer(ThreadingHTTPServer):
    """The review page on ``(host, port)`` (port 0: a free one, see ``server_address``)."""

    daemon_threads = True

    def __init__(self, app: ReviewApp, host: str, port: int) -> None:
        self.app = app
        try:
            super().__init__((host, port), _Handler)
        except OSError as exc:
            raise KioskError(f"cannot listen on {host}:{port} ({exc.strerror or exc}): choose another web.host or "
                             "web.port in central.toml") from exc

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> ReviewServer:
        """Serve on a background thread named ``review-web``."""
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1}, name="review-web",
                         daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def serve_web(cfg: CentralConfig, stop: threading.Event) -> int:
    """`kiosk-central web`: serve the review page until ``stop`` is set."""
    with Ledger(cfg.database.url) as ledger:
        server = ReviewServer(ReviewApp(ledger, cfg.web), cfg.web.host, cfg.web.port).start()
        log.info("review page: listening on %s (put TLS in front of it)", server.url)
        try:
            stop.wait()
        finally:
            server.stop()
    return 0
