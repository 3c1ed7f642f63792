"""The HR review page (kiosk_central.web) through a real HTTP server on loopback, on SQLite and the real PostgreSQL:
login required, wrong passwords and the lock-out, CSRF, accepting and rejecting with the audit, two reviewers
deciding one case at once, the recap counting an accepted case, the photo only behind a login and never cached; and
one end-to-end run in headless Chromium driven over the WebDriver protocol (chromedriver, standard library only).

The ledger gets three review cases from a signed kiosk through the real ingest, each with a generated evidence photo
(no faces): Lin's typed NIP at 07:35 WITA on Monday 2 February 2026 (masuk), an unknown face closest to Alex at 07:40
on the 3rd, and Alex's typed NIP stamped before the kiosk's clock synced, re-dated from its boot's anchor to 16:10.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from central_support import ALEX, CENTRAL_KEY, LIN, RULES, Device, database, registry_entry, wita, write_key
from PIL import Image, ImageDraw

from kiosk_central import recap as recaps
from kiosk_central.cli import load_all, main
from kiosk_central.ingest import Ingestor
from kiosk_central.settings import CentralConfig, RulesConfig, WebConfig, load_central_config
from kiosk_central.store import DecisionRefused, Ledger
from kiosk_central.web import auth
from kiosk_central.web.app import ReviewApp, ReviewServer
from kiosk_contract import schema
from kiosk_contract.errors import ConfigError

PASSWORD = "kata-sandi-uji-1234"
NOW = 1_770_300_000.0  # 2026-02-05, the page's clock (sessions, lock-out)
REPO = Path(__file__).resolve().parents[2]


def synthetic_jpeg(label: str) -> bytes:
    """A generated evidence photo (shapes and a label, no face)."""
    image = Image.new("RGB", (320, 240), (40, 90, 140))
    draw = ImageDraw.Draw(image)
    draw.ellipse((110, 50, 210, 170), fill=(200, 170, 140))
    draw.rectangle((0, 200, 320, 240), fill=(20, 20, 20))
    draw.text((10, 210), f"SINTETIS {label}", fill=(255, 255, 255))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80)
    return out.getvalue()


@pytest.fixture(scope="module")
def password_hash() -> str:
    return auth.hash_password(PASSWORD)


@dataclass
class Site:
    """A ledger with three review cases, the review page serving it, and the page's clock."""

    url: str
    config: Path
    ledger: Ledger
    server: ReviewServer
    cases: dict[str, int]
    photos: dict[str, bytes]
    now: list[float] = field(default_factory=lambda: [NOW])

    def client(self) -> Client:
        return Client(self.server.server_address[1])


@pytest.fixture(params=["sqlite", "postgresql"])
def site(request: pytest.FixtureRequest, tmp_path: Path, password_hash: str) -> Iterator[Site]:
    with database(request.param, tmp_path) as url, Ledger(url) as ledger:
        yield from _site(url, ledger, tmp_path, password_hash, WebConfig(cookie_secure=False, page_size=2))


def _site(url: str, ledger: Ledger, tmp_path: Path, password_hash: str, web: WebConfig) -> Iterator[Site]:
    key, public = write_key(tmp_path / "keys", "kiosk-1")
    (tmp_path / "rules.toml").write_text(RULES)
    (tmp_path / "employees.csv").write_text(f"nip,name,unit\n{ALEX},Alex Lacamoire,bkpsdm\n{LIN},Lin & Co,bkpsdm\n")
    config = tmp_path / "central.toml"
    config.write_text(f'[database]\nurl = "{url}"\n[web]\ncookie_secure = false\n')
    cfg = CentralConfig(rules=RulesConfig(file=tmp_path / "rules.toml", employees=tmp_path / "employees.csv"),
                        devices=(registry_entry("kiosk-1", "bkpsdm", public),))
    registry = load_all(ledger, cfg)
    device = Device("kiosk-1", key)
    photos = {name: synthetic_jpeg(name) for name in ("lin", "unknown", "alex")}
    face = {"method": "face", "best_nip": ALEX, "distance": "0.6312", "margin": "0.0121", "frames": 5,
            "liveness": None}
    bodies = {
        "lin": schema.build_review(device.stamp(wita("2026-02-02", "07:35")), reason="manual_entry", nip=LIN,
                                   kind="masuk", decision=schema.manual_decision(), evidence=photos["lin"]),
        "unknown": schema.build_review(device.stamp(wita("2026-02-03", "07:40")), reason="unknown_face",
                                       decision=face, evidence=photos["unknown"]),
        "alex": schema.build_review(device.stamp(wita("2026-01-01", "00:00"), synced=False, mono_ns=100 * 10**9),
                                    reason="manual_entry", nip=ALEX, kind="pulang", decision=schema.manual_decision(),
                                    evidence=photos["alex"]),
    }
    anchor = schema.build_time_anchor(device.stamp(wita("2026-02-03", "16:11"), mono_ns=160 * 10**9))
    messages = []
    for name, body in bodies.items():
        topic, wire, event = device.seal(body)
        messages += [(topic, wire), device.evidence(event, photos[name])]
    messages.append(device.seal(anchor)[:2])
    Ingestor(ledger, registry, signing_key=CENTRAL_KEY).handle_batch(messages)
    cases = {name: int(ledger.one("SELECT id FROM review_queue WHERE event_id = ?",  # type: ignore[index]
                                  (body["event_id"],))[0]) for name, body in bodies.items()}
    with ledger.transaction():
        for name, role in (("siti", "reviewer"), ("budi", "reviewer"), ("admin", "admin")):
            ledger.add_reviewer(name, role, password_hash, "test")
    now = [NOW]
    server = ReviewServer(ReviewApp(ledger, web, clock=lambda: now[0]), "127.0.0.1", 0).start()
    try:
        yield Site(url, config, ledger, server, cases, photos, now)
    finally:
        server.stop()


@dataclass
class Reply:
    status: int
    headers: Message
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def form_token(self) -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', self.text)
        assert found, self.text
        return found.group(1)


class Client:
    """One browser's worth of HTTP: a cookie jar, and redirects returned rather than followed."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, form: dict[str, str] | None = None) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())} if self.cookies else {}
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body, headers)
        response = conn.getresponse()
        reply = Reply(response.status, response.headers, response.read())
        conn.close()
        for cookie in reply.headers.get_all("Set-Cookie") or []:
            name, _, rest = cookie.partition("=")
            value = rest.split(";")[0]
            if "Max-Age=0" in cookie:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return reply

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post(self, path: str, form: dict[str, str]) -> Reply:
        return self.request("POST", path, form)

    def login(self, user: str, password: str = PASSWORD) -> Reply:
        token = self.get("/login").form_token()
        return self.post("/login", {"csrf": token, "user": user, "password": password})

    def decide(self, case_id: int, **form: str) -> Reply:
        token = self.get(f"/case/{case_id}").form_token()
        return self.post(f"/case/{case_id}/decide", {"csrf": token, **form})


def state(site: Site, name: str) -> tuple[Any, ...]:
    row = site.ledger.one("SELECT state, resolved_nip, resolved_kind, decided_by, decision_reason FROM review_queue "
                          "WHERE id = ?", (site.cases[name],))
    assert row is not None
    return row


def test_every_page_and_the_photo_need_a_login(site: Site) -> None:
    anonymous = site.client()
    for path in ("/", "/queue", "/decided", "/audit", f"/case/{site.cases['lin']}",
                 f"/case/{site.cases['lin']}/photo"):
        reply = anonymous.get(path)
        assert (reply.status, reply.headers["Location"]) == (303, "/login"), path
        assert reply.headers["Cache-Control"] == "no-store"
        assert site.photos["lin"] not in reply.body
    reply = anonymous.post(f"/case/{site.cases['lin']}/decide", {"decision": "accept", "reason": "x", "nip": LIN,
                                                                   "kind": "masuk"})
    assert (reply.status, reply.headers["Location"]) == (303, "/login")
    assert state(site, "lin")[0] == "open"
    login = anonymous.get("/login")
    assert login.status == 200 and login.headers["Cache-Control"] == "no-store"
    assert "default-src 'none'" in login.headers["Content-Security-Policy"]
    cookie = login.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie  # cookie_secure = false


def test_login_wrong_password_lockout_and_audit(site: Site) -> None:
    browser = site.client()
    reply = browser.login("siti", "wrong-password")
    assert reply.status == 401 and "Wrong user name or password" in reply.text
    assert "kiosk_session" not in browser.cookies
    assert browser.login("nobody").status == 401  # the same answer for a name that does not exist
    for _ in range(4):
        browser.login("siti", "still-wrong")
    reply = browser.login("siti")  # the right password, but five failures within 15 minutes lock the name
    assert reply.status == 429 and "locked until" in reply.text
    assert browser.login("budi").status == 303  # other names are not locked
    site.now[0] += 15 * 60 + 1
    reply = site.client().login("siti")
    assert (reply.status, reply.headers["Location"]) == (303, "/queue")
    outcomes = [r[0] for r in site.ledger.rows("SELECT outcome FROM login_audit WHERE user_name = 'siti' ORDER BY id")]
    assert outcomes == ["bad_password"] * 5 + ["locked", "ok"]
    assert site.ledger.rows("SELECT outcome FROM login_audit WHERE user_name = 'nobody'") == [("unknown_user",)]
    admin = site.client()
    admin.login("admin")
    page = admin.get("/audit")
    assert page.status == 200 and page.text.count("bad_password") == 5 and "unknown_user" in page.text
    assert browser.get("/audit").status == 403  # budi is a reviewer, not an admin


def test_a_post_without_the_form_token_is_refused(site: Site) -> None:
    browser = site.client()
    browser.login("siti")
    case = site.cases["lin"]
    form = {"decision": "accept", "reason": "dicek", "nip": LIN, "kind": "masuk"}
    assert browser.post(f"/case/{case}/decide", form).status == 403
    assert browser.post(f"/case/{case}/decide", {**form, "csrf": "forged"}).status == 403
    assert state(site, "lin")[0] == "open"
    stranger = site.client()
    stranger.get("/login")
    reply = stranger.post("/login", {"user": "siti", "password": PASSWORD})  # no login form token
    assert reply.status == 403 and "kiosk_session" not in stranger.cookies


def test_the_case_page_shows_time_people_scores_and_the_photo(site: Site) -> None:
    browser = site.client()
    browser.login("siti")
    page = browser.get(f"/case/{site.cases['unknown']}").text
    assert "2026-02-03 07:40:00 WITA" in page and "2026-02-02 23:40:00 UTC" in page
    assert f"{ALEX} — Alex Lacamoire (bkpsdm)" in page and "0.6312" in page and "0.0121" in page
    assert f'value="{ALEX}"' in page  # accept is prefilled with the best match
    assert '<option value="">(pilih)</option>' in page  # an unknown face has no punch kind: HR chooses
    page = browser.get(f"/case/{site.cases['alex']}").text
    assert "2026-02-03 16:10:00 WITA" in page and "diperbaiki dari jangkar waktu" in page
    assert '<option value="pulang" selected>' in page
    page = browser.get(f"/case/{site.cases['lin']}").text
    assert "Lin &amp; Co" in page and "Lin & Co" not in page
    spoof = json.loads(site.ledger.review_case(site.cases["unknown"]).payload)  # type: ignore[union-attr]
    spoof.update(event_id="019ad2a4-8c20-7d31-b1d3-7e2f5a4b3c62", seq=99, reason="suspected_spoof", kind="masuk",
                 person={"nip": ALEX}, evidence=None)
    spoof["decision"]["liveness"] = {"level": "challenge", "result": "spoof", "method": "none", "score": "0.0287",
                                     "blinks": 0, "challenge": "turn_left+blink", "extra_ms": 8000,
                                     "moving_surroundings": 41}
    with site.ledger.transaction():  # stored the way the ingest stores a spoof case (events.md's example)
        site.ledger.insert_event(spoof, json.dumps(spoof), int(NOW * 1000), "device", True)
        site.ledger.enqueue_review("kiosk-1", spoof["event_id"], "suspected_spoof")
    case = site.ledger.one("SELECT id FROM review_queue WHERE event_id = ?", (spoof["event_id"],))
    page = browser.get(f"/case/{case[0]}").text  # type: ignore[index]
    assert "Dugaan pemalsuan wajah" in page and "Liveness: result</dt><dd>spoof" in page
    assert "Liveness: score</dt><dd>0.0287" in page and "Foto bukti tidak tersedia" in page
    photo = browser.get(f"/case/{site.cases['lin']}/photo")
    assert (photo.status, photo.headers["Content-Type"], photo.body) == (200, "image/jpeg", site.photos["lin"])
    assert photo.headers["Cache-Control"] == "no-store"
    assert browser.get("/case/999999").status == 404


def test_accepting_makes_the_attendance_the_recap_counts_with_the_audit(site: Site) -> None:
    def lin_on_the_2nd() -> recaps.DayLine:
        recap = recaps.build_recap(site.ledger, "bkpsdm", date(2026, 2, 2), date(2026, 2, 2), today=date(2026, 2, 28))
        return next(d for d in recap.days if d.nip == LIN)

    assert lin_on_the_2nd().status == "absent"  # an open case does not count
    browser = site.client()
    browser.login("siti")
    case = site.cases["lin"]
    assert browser.decide(case, decision="accept", nip=LIN, kind="masuk", reason="   ").status == 400  # no reason
    assert browser.decide(case, decision="accept", nip=ALEX[:-1] + "9", kind="masuk",
                          reason="dicek").status == 400  # not in the roster
    assert state(site, "lin")[0] == "open"
    reply = browser.decide(case, decision="accept", nip=LIN, kind="masuk", reason="Dikenali dari foto oleh atasan")
    assert (reply.status, reply.headers["Location"]) == (303, f"/case/{case}")
    assert state(site, "lin") == ("accepted", LIN, "masuk", "siti", "Dikenali dari foto oleh atasan")
    line = lin_on_the_2nd()
    assert (line.status, line.check_in.isoformat(), line.late_band, line.early_band) == (  # type: ignore[union-attr]
        "present", "07:35:00", "TL1", "PSW4")
    audit = site.ledger.rows("SELECT actor, action, reason, before_state, after_state FROM review_audit "
                             "WHERE review_id = ?", (case,))
    assert len(audit) == 1
    actor, action, reason, before, after = audit[0]
    assert (actor, action, reason) == ("siti", "accept", "Dikenali dari foto oleh atasan")
    assert json.loads(before) == {"state": "open", "resolved_nip": None, "resolved_kind": None, "decided_by": None}
    assert json.loads(after) == {"state": "accepted", "resolved_nip": LIN, "resolved_kind": "masuk",
                                 "decided_by": "siti"}
    page = browser.get(f"/case/{case}").text
    assert "Diputus oleh" in page and 'id="accept"' not in page and "Jejak audit" in page


def test_a_case_already_decided_is_refused_and_the_decided_list_names_the_reviewer(site: Site) -> None:
    siti, budi = site.client(), site.client()
    siti.login("siti")
    budi.login("budi")
    case = site.cases["unknown"]
    siti_token = siti.get(f"/case/{case}").form_token()
    budi_token = budi.get(f"/case/{case}").form_token()  # both have the form open
    reply = siti.post(f"/case/{case}/decide", {"csrf": siti_token, "decision": "reject",
                                               "reason": "Bukan pegawai kantor ini"})
    assert reply.status == 303
    reply = budi.post(f"/case/{case}/decide", {"csrf": budi_token, "decision": "accept", "nip": ALEX,
                                               "kind": "masuk", "reason": "Mirip Alex"})
    assert reply.status == 409 and "already decided" in reply.text and "by siti" in reply.text
    assert state(site, "unknown") == ("rejected", None, None, "siti", "Bukan pegawai kantor ini")
    assert site.ledger.rows("SELECT actor, action FROM review_audit WHERE review_id = ?", (case,)) == [
        ("siti", "reject")]
    decided = budi.get("/decided").text
    assert f"#{case}" in decided and "siti" in decided and "Ditolak" in decided
    assert f"#{case}</a>" not in budi.get("/queue").text


def test_two_reviewers_deciding_at_once_on_two_connections_make_one_decision(site: Site) -> None:
    barrier = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def decide(name: str, accept: bool) -> None:
        with Ledger(site.url) as own:  # another connection, like another web worker
            barrier.wait()
            try:
                own.decide_review(site.cases["lin"], name, accept, "at once", LIN if accept else None,
                                  "masuk" if accept else None)
                outcomes[name] = "decided"
            except DecisionRefused as exc:
                outcomes[name] = str(exc)

    threads = [threading.Thread(target=decide, args=(n, a)) for n, a in (("siti", True), ("budi", False))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes.values())[0] == "decided" and "already decided" in sorted(outcomes.values())[1]
    winner = next(n for n, o in outcomes.items() if o == "decided")
    assert state(site, "lin")[3] == winner
    assert site.ledger.rows("SELECT actor FROM review_audit") == [(winner,)]


def test_the_queue_is_oldest_first_filtered_and_paginated(site: Site) -> None:
    browser = site.client()
    browser.login("siti")
    first = browser.get("/queue").text  # page_size = 2
    ids = [int(i) for i in re.findall(r'<a href="/case/(\d+)">', first)]
    assert ids == [site.cases["lin"], site.cases["unknown"]] and "3 kasus menunggu" in first
    assert "halaman 1 dari 2" in first and 'id="next"' in first
    second = browser.get("/queue?page=2").text
    assert [int(i) for i in re.findall(r'<a href="/case/(\d+)">', second)] == [site.cases["alex"]]
    only = browser.get("/queue?reason=unknown_face").text
    assert [int(i) for i in re.findall(r'<a href="/case/(\d+)">', only)] == [site.cases["unknown"]]
    day = browser.get("/queue?date=2026-02-03&office=bkpsdm").text
    assert [int(i) for i in re.findall(r'<a href="/case/(\d+)">', day)] == [site.cases["unknown"], site.cases["alex"]]
    assert "2 kasus menunggu" in browser.get("/queue?date=2026-02-03").text
    assert "Tidak ada kasus" in browser.get("/queue?office=disdik").text
    bad = browser.get("/queue?date=3-2-2026")
    assert bad.status == 200 and "date &#x27;3-2-2026&#x27;: use YYYY-MM-DD" in bad.text


def test_sessions_expire_and_logout_ends_them(site: Site) -> None:
    browser = site.client()
    browser.login("siti")
    assert browser.get("/queue").status == 200
    token = browser.get("/queue").form_token()
    reply = browser.post("/logout", {"csrf": token})
    assert (reply.status, reply.headers["Location"]) == (303, "/login")
    assert site.ledger.one("SELECT COUNT(*) FROM web_sessions WHERE user_name = 'siti'") == (0,)
    assert site.ledger.rows("SELECT outcome FROM login_audit WHERE user_name = 'siti' ORDER BY id") == [
        ("ok",), ("logout",)]
    again = site.client()
    again.login("siti")
    stolen = dict(again.cookies)
    site.now[0] += 8 * 3600 + 1  # session_hours = 8
    later = site.client()
    later.cookies = stolen
    assert later.get("/queue").status == 303


def test_user_commands_read_the_password_from_stdin_never_argv(site: Site, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    config = str(site.config)
    monkeypatch.setattr(sys, "stdin", io.StringIO("pendek\n"))
    assert main(["user", "add", "rina", "--config", config]) == 2
    assert "at least 10 characters" in capsys.readouterr().err and site.ledger.reviewer("rina") is None
    monkeypatch.setattr(sys, "stdin", io.StringIO("sandi-rina-yang-panjang\n"))
    assert main(["user", "add", "rina", "--role", "admin", "--config", config]) == 0
    rina = site.ledger.reviewer("rina")
    assert rina is not None and rina.role == "admin" and rina.password_hash.startswith("scrypt$16384$8$1$")
    assert auth.check_password("sandi-rina-yang-panjang", rina.password_hash)
    monkeypatch.setattr(sys, "stdin", io.StringIO("another-long-one\n"))
    assert main(["user", "add", "rina", "--config", config]) == 2
    assert "exists" in capsys.readouterr().err
    assert auth.check_password("sandi-rina-yang-panjang", site.ledger.reviewer("rina").password_hash)  # type: ignore[union-attr]
    assert main(["user", "add", "Rina Sari", "--config", config]) == 2
    assert "user name 'Rina Sari'" in capsys.readouterr().err
    browser = site.client()
    browser.login("rina", "sandi-rina-yang-panjang")
    assert browser.get("/queue").status == 200
    monkeypatch.setattr(sys, "stdin", io.StringIO("sandi-baru-yang-panjang\n"))
    assert main(["user", "passwd", "rina", "--config", config]) == 0
    assert browser.get("/queue").status == 303  # a new password ends the sessions
    browser.login("rina", "sandi-baru-yang-panjang")
    assert browser.get("/queue").status == 200
    assert main(["user", "disable", "rina", "--config", config]) == 0
    assert browser.get("/queue").status == 303  # disabling ends the sessions ...
    assert site.client().login("rina", "sandi-baru-yang-panjang").status == 401  # ... and refuses the next login
    assert site.ledger.one("SELECT outcome FROM login_audit ORDER BY id DESC LIMIT 1") == ("disabled",)
    capsys.readouterr()
    assert main(["user", "list", "--config", config]) == 0
    assert "rina\tadmin\tdisabled\nsiti\treviewer" in capsys.readouterr().out


def test_the_web_section_of_central_toml(tmp_path: Path) -> None:
    cfg = load_central_config(REPO / "examples" / "central.toml")
    assert (cfg.web.host, cfg.web.port, cfg.web.cookie_secure) == ("127.0.0.1", 8080, True)
    bad = tmp_path / "central.toml"
    bad.write_text('[web]\nport = "http"\nsession_hours = 0\nlockout = 3\n')
    with pytest.raises(ConfigError) as err:
        load_central_config(bad)
    text = str(err.value)
    assert "web.port: must be an integer" in text and "web.session_hours: must be at least" in text
    assert "web.lockout: unknown key" in text


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_web_command_serves_until_sigterm(site: Site) -> None:
    port = free_port()
    site.config.write_text(site.config.read_text() + f"port = {port}\n")
    process = subprocess.Popen([sys.executable, "-m", "kiosk_central", "web", "--config", str(site.config)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    try:
        reply = None
        for _ in range(200):
            with contextlib.suppress(OSError):
                reply = Client(port).get("/queue")
                break
            if process.poll() is not None:
                break
            time.sleep(0.05)
        assert reply is not None, process.communicate(timeout=10)
        assert (reply.status, reply.headers["Location"]) == (303, "/login")
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=10)
        assert process.returncode == 0, err
        assert f"listening on http://127.0.0.1:{port}" in err.decode()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_web_command_names_the_setting_when_the_port_is_taken(site: Site,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        site.config.write_text(site.config.read_text() + f"port = {taken.getsockname()[1]}\n")
        assert main(["web", "--config", str(site.config)]) == 2
    err = capsys.readouterr().err
    assert "cannot listen on 127.0.0.1:" in err and "Address already in use" in err and "web.port" in err


# ---------------------------------------------------------------------------------------------------- browser


class WebDriver:
    """The few WebDriver commands the browser test needs, over HTTP to chromedriver (standard library only)."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.session = ""

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.load(response)["value"]
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"WebDriver {method} {path}: {exc.read().decode()[:500]}") from None

    def start(self, profile: Path) -> None:
        options = {"binary": shutil.which("chromium") or "/usr/bin/chromium",
                   # root in a container: no setuid sandbox; small /dev/shm; no GPU
                   "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                            f"--user-data-dir={profile}", "--window-size=1100,1300"]}
        self.session = self.call("POST", "/session", {"capabilities": {"alwaysMatch": {
            "browserName": "chrome", "goog:chromeOptions": options}}})["sessionId"]

    def go(self, url: str) -> None:
        self.call("POST", f"/session/{self.session}/url", {"url": url})

    def element(self, css: str) -> str:
        found = self.call("POST", f"/session/{self.session}/element", {"using": "css selector", "value": css})
        return str(next(iter(found.values())))

    def type(self, css: str, text: str) -> None:
        self.call("POST", f"/session/{self.session}/element/{self.element(css)}/value", {"text": text})

    def click(self, css: str) -> None:
        self.call("POST", f"/session/{self.session}/element/{self.element(css)}/click", {})

    def run(self, script: str) -> Any:
        return self.call("POST", f"/session/{self.session}/execute/sync", {"script": script, "args": []})

    def wait_for(self, script: str) -> Any:
        """The first truthy result of ``script``, polled for up to 10 s."""
        for _ in range(200):
            result = self.run(script)
            if result:
                return result
            time.sleep(0.05)
        raise AssertionError(f"the page never satisfied: {script}")

    def quit(self) -> None:
        if self.session:
            with contextlib.suppress(AssertionError, OSError):
                self.call("DELETE", f"/session/{self.session}")


@contextlib.contextmanager
def chromium(tmp_path: Path) -> Iterator[WebDriver]:
    """Headless Chromium behind chromedriver on a free loopback port (Debian's chromium and chromium-driver)."""
    driver_binary = shutil.which("chromedriver")
    if driver_binary is None or shutil.which("chromium") is None:
        pytest.fail("chromium and chromedriver are missing: run scripts/bootstrap (it installs Debian's chromium and "
                    "chromium-driver)")
    port = free_port()
    process = subprocess.Popen([driver_binary, f"--port={port}"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    driver = WebDriver(port)
    try:
        for _ in range(200):
            with contextlib.suppress(OSError):
                driver.call("GET", "/status")
                break
            time.sleep(0.05)
        driver.start(tmp_path / "chromium-profile")
        yield driver
    finally:
        driver.quit()
        process.terminate()
        process.wait(timeout=10)


def test_a_reviewer_accepts_a_case_in_headless_chromium(site: Site, tmp_path: Path) -> None:
    base = site.server.url
    with chromium(tmp_path) as browser:
        browser.go(base + "/queue")
        assert browser.run("return location.pathname") == "/login"  # redirected: not logged in
        browser.type("#user", "siti")
        browser.type("#password", PASSWORD)
        browser.click("#login")
        browser.wait_for("return location.pathname === '/queue'")
        browser.click(f'a[href="/case/{site.cases["lin"]}"]')
        browser.wait_for(f"return location.pathname === '/case/{site.cases['lin']}'")
        width = browser.wait_for("const i = document.getElementById('evidence'); "
                                 "return i && i.complete ? i.naturalWidth : 0")
        assert width == 320  # the evidence photo came through the session
        assert browser.run("return document.getElementById('nip').value") == LIN
        assert browser.run("return document.getElementById('kind').value") == "masuk"
        browser.type("#accept-reason", "Dikenali dari foto bukti")
        browser.click("#accept")
        browser.wait_for("return document.body.innerText.includes('Diputus oleh')")
        assert "Diterima" in browser.run("return document.body.innerText")
    assert state(site, "lin") == ("accepted", LIN, "masuk", "siti", "Dikenali dari foto bukti")
    assert site.ledger.rows("SELECT actor, action FROM review_audit") == [("siti", "accept")]


def test_logged_in_pages_are_never_cached_nor_framed(site: Site) -> None:
    browser = site.client()
    browser.login("admin")
    for path in ("/queue", "/decided", "/audit", f"/case/{site.cases['alex']}"):
        reply = browser.get(path)
        assert reply.status == 200 and reply.headers["Cache-Control"] == "no-store", path
        assert reply.headers["X-Frame-Options"] == "DENY" and "<script" not in reply.text

