"""The HR web (kiosk_central.hr on Django) through the real server (`kiosk-central web`: gunicorn on a free loopback
port), on SQLite and the real PostgreSQL: login required, wrong passwords and the lock-out, CSRF, accepting and
rejecting with the audit, two reviewers deciding one case at once, the two-person rule, office scopes and cases about
oneself, the evidence beside the enrolled reference photo (never cached), recaps, the `user` commands; and one
end-to-end run in headless Chromium driven over the WebDriver protocol (chromedriver, standard library only).

The ledger gets three review cases from a signed kiosk through the real ingest, each with a generated evidence photo
(no faces): Lin's typed NIP at 07:35 WITA on Monday 2 February 2026 (masuk), an unknown face closest to Alex at 07:40
on the 3rd, and Alex's typed NIP stamped before the kiosk's clock synced, re-dated from its boot's anchor to 16:10.
Reviewers: siti and budi (bkpsdm), dewi (disdik, Obama's office), admin (every office).
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
from dataclasses import dataclass
from datetime import date, timedelta
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from central_support import ALEX, CENTRAL_KEY, LIN, OBAMA, RULES, Device, database, registry_entry, wita, write_key
from PIL import Image, ImageDraw

from kiosk_central import recap as recaps
from kiosk_central import reports
from kiosk_central.cli import load_all, main
from kiosk_central.ingest import Ingestor
from kiosk_central.settings import CentralConfig, RulesConfig, load_central_config
from kiosk_central.store import DecisionRefused, Ledger
from kiosk_contract import schema
from kiosk_contract.errors import ConfigError

PASSWORD = "kata-sandi-uji-1234"
SECRET = "uji-rahasia-situs-" + "x" * 40
REPO = Path(__file__).resolve().parents[2]
_hash: list[str] = []


def synthetic_jpeg(label: str, size: tuple[int, int] = (320, 240)) -> bytes:
    """A generated photo (shapes and a label, no face)."""
    image = Image.new("RGB", size, (40, 90, 140))
    draw = ImageDraw.Draw(image)
    draw.ellipse((110, 50, 210, 170), fill=(200, 170, 140))
    draw.rectangle((0, 200, 320, 240), fill=(20, 20, 20))
    draw.text((10, 210), f"SINTETIS {label}", fill=(255, 255, 255))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80)
    return out.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def use_django(config: Path) -> None:
    """Django in this process on the site's database (HR tables migrated), for fixtures and checks."""
    from kiosk_central.hr.server import prepare

    prepare(load_central_config(config))


def add_user(name: str, role: str = "reviewer", nip: str = "", offices: tuple[str, ...] = ("bkpsdm",)) -> None:
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import User

    from kiosk_central.hr.models import ReviewerProfile

    if not _hash:
        _hash.append(make_password(PASSWORD))
    user = User.objects.create(username=name, password=_hash[0], is_staff=role == "admin",
                               is_superuser=role == "admin")
    ReviewerProfile.objects.create(user=user, nip=nip, offices=",".join(offices))


@dataclass
class Server:
    """`kiosk-central web` running as its own process; its log (stderr) in a file."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def web_server(config: Path, *extra: str) -> Iterator[Server]:
    """Start `kiosk-central web --config CONFIG` on a free port and wait until it answers."""
    port = free_port()
    text = config.read_text()
    config.write_text(re.sub(r"(?m)^port = .*\n", "", text).replace("[web]\n", f"[web]\nport = {port}\n"))
    log = config.with_name(f"web-{port}.log")
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "kiosk_central", "web", "--config", str(config),
                                    "--workers", "3", *extra], stdout=out, stderr=out, cwd=config.parent)
    server = Server(process, port, log)
    try:
        for _ in range(600):
            with contextlib.suppress(OSError):
                Client(port).get("/login/")
                break
            if process.poll() is not None:
                raise AssertionError(f"kiosk-central web exited: {server.log_text()}")
            time.sleep(0.05)
        yield server
    finally:
        server.stop()


@dataclass
class Site:
    """A ledger with three review cases, reviewers, reference photos, and the HR web serving it."""

    url: str
    config: Path
    ledger: Ledger
    server: Server
    cases: dict[str, int]
    photos: dict[str, bytes]
    references: dict[str, bytes]

    def client(self) -> Client:
        return Client(self.server.port)


def write_config(tmp_path: Path, url: str, extra: str = "") -> Path:
    (tmp_path / "secret.key").write_text(SECRET + "\n")
    (tmp_path / "secret.key").chmod(0o600)
    config = tmp_path / "central.toml"
    config.write_text(f'[database]\nurl = "{url}"\n[web]\ncookie_secure = false\nsecret_key_file = "secret.key"\n'
                      f"page_size = 2\n{extra}")
    return config


@pytest.fixture(params=["sqlite", "postgresql"])
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    with database(request.param, tmp_path) as url, Ledger(url) as ledger:
        yield from make_site(url, ledger, tmp_path)


@pytest.fixture
def sqlite_site(tmp_path: Path) -> Iterator[Site]:
    with database("sqlite", tmp_path) as url, Ledger(url) as ledger:
        yield from make_site(url, ledger, tmp_path)


def make_site(url: str, ledger: Ledger, tmp_path: Path) -> Iterator[Site]:
    key, public = write_key(tmp_path / "keys", "kiosk-1")
    (tmp_path / "rules.toml").write_text(RULES)
    (tmp_path / "employees.csv").write_text(f"nip,name,unit\n{ALEX},Alex Lacamoire,bkpsdm\n{LIN},Lin & Co,bkpsdm\n"
                                            f"{OBAMA},Barack Obama,disdik\n")
    config = write_config(tmp_path, url)
    cfg = CentralConfig(rules=RulesConfig(file=tmp_path / "rules.toml", employees=tmp_path / "employees.csv"),
                        devices=(registry_entry("kiosk-1", "bkpsdm", public),))
    registry = load_all(ledger, cfg)[0]
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
    use_django(config)
    add_user("siti")
    add_user("budi")
    add_user("dewi", offices=("disdik",))
    add_user("admin", role="admin", offices=())
    folder = tmp_path / "enrolment"
    folder.mkdir()
    references = {"lin": synthetic_jpeg("referensi lin", (200, 240)), "alex": synthetic_jpeg("referensi alex")}
    (folder / f"{LIN}.jpg").write_bytes(references["lin"])
    (folder / f"{ALEX}.jpg").write_bytes(references["alex"])
    (folder / "catatan.txt").write_text("not a photo")
    assert main(["manage", "--config", str(config), "import_reference_photos", str(folder)]) == 0
    from django.db import connections

    try:
        with web_server(config) as server:
            yield Site(url, config, ledger, server, cases, photos, references)
    finally:
        connections.close_all()


@dataclass
class Reply:
    status: int
    headers: Message
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def form_token(self) -> str:
        found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', self.text)
        assert found, self.text
        return found.group(1)


class Client:
    """One browser's worth of HTTP: a cookie jar, and redirects returned rather than followed."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, form: dict[str, str] | None = None,
                headers: dict[str, str] | None = None) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        sent = dict(headers or {})
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form)
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body, sent)
        response = conn.getresponse()
        reply = Reply(response.status, response.headers, response.read())
        conn.close()
        for cookie in reply.headers.get_all("Set-Cookie") or []:
            name, _, rest = cookie.partition("=")
            value = rest.split(";")[0]
            if "Max-Age=0" in cookie or "01 Jan 1970" in cookie:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return reply

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post(self, path: str, form: dict[str, str]) -> Reply:
        return self.request("POST", path, form)

    def login(self, user: str, password: str = PASSWORD) -> Reply:
        token = self.get("/login/").form_token()
        return self.post("/login/", {"csrfmiddlewaretoken": token, "username": user, "password": password})

    def decide(self, case_id: int, **form: str) -> Reply:
        token = self.get(f"/case/{case_id}/").form_token()
        return self.post(f"/case/{case_id}/decide/", {"csrfmiddlewaretoken": token, **form})

    def second(self, case_id: int, choice: str, reason: str = "") -> Reply:
        page = self.get(f"/case/{case_id}/")
        found = re.search(r'name="proposal" value="(\d+)"', page.text)
        assert found, page.text
        return self.post(f"/case/{case_id}/second/", {"csrfmiddlewaretoken": page.form_token(), "choice": choice,
                                                      "proposal": found.group(1), "reason": reason})


def state(site: Site, name: str) -> tuple[Any, ...]:
    row = site.ledger.one("SELECT state, resolved_nip, resolved_kind, decided_by, decision_reason FROM review_queue "
                          "WHERE id = ?", (site.cases[name],))
    assert row is not None
    return row


def login_outcomes(name: str) -> list[str]:
    from kiosk_central.hr.models import LoginAudit

    return list(LoginAudit.objects.filter(user_name=name).order_by("id").values_list("outcome", flat=True))


def case_links(reply: Reply) -> list[int]:
    return [int(i) for i in re.findall(r'<a href="/case/(\d+)/">', reply.text)]


# ---------------------------------------------------------------------------------------------------- tests


def test_every_page_and_the_photos_need_a_login(site: Site) -> None:
    anonymous = site.client()
    lin = site.cases["lin"]
    for path in ("/queue/", "/decided/", "/audit/", "/recap/", f"/case/{lin}/", f"/case/{lin}/photo/",
                 f"/case/{lin}/reference/typed/"):
        reply = anonymous.get(path)
        assert (reply.status, reply.headers["Location"]) == (302, f"/login/?next={path}"), path
        assert reply.headers["Cache-Control"] == "no-store"
        assert site.photos["lin"] not in reply.body and site.references["lin"] not in reply.body
    assert anonymous.get("/").headers["Location"] == "/login/"
    reply = anonymous.post(f"/case/{lin}/decide/", {"decision": "accept", "reason": "x", "nip": LIN, "kind": "masuk"})
    assert reply.status == 403  # no CSRF token, no session
    assert state(site, "lin")[0] == "open"
    login = anonymous.get("/login/")
    assert login.status == 200 and login.headers["Cache-Control"] == "no-store"
    assert "default-src 'none'" in login.headers["Content-Security-Policy"]
    assert login.headers["X-Frame-Options"] == "DENY" and "<script" not in login.text
    assert 'lang="id"' in login.text and "Kata sandi" in login.text
    reply = anonymous.login("siti")
    assert (reply.status, reply.headers["Location"]) == (302, "/queue/")
    session = next(c for c in reply.headers.get_all("Set-Cookie") if c.startswith("sessionid="))
    assert "HttpOnly" in session and "SameSite=Strict" in session and "Secure" not in session  # cookie_secure = false


def test_login_wrong_password_lockout_and_audit(site: Site) -> None:
    browser = site.client()
    reply = browser.login("siti", "wrong-password")
    assert reply.status == 401 and "Nama pengguna atau kata sandi salah" in reply.text
    assert "sessionid" not in browser.cookies
    assert browser.login("nobody").status == 401  # the same answer for a name that does not exist
    for _ in range(4):
        browser.login("siti", "still-wrong")
    reply = browser.login("siti")  # the right password, but five checks within 15 minutes lock the name
    assert reply.status == 429 and "dikunci sampai" in reply.text
    assert browser.login("budi").status == 302  # other names are not locked
    from django.utils import timezone

    from kiosk_central.hr.models import LoginAudit, LoginThrottle

    LoginThrottle.objects.update(window_start=timezone.now() - timedelta(minutes=15, seconds=1))  # time passes
    reply = site.client().login("siti")
    assert (reply.status, reply.headers["Location"]) == (302, "/queue/")
    assert login_outcomes("siti") == ["bad_password"] * 5 + ["locked", "ok"]
    unknown = LoginAudit.objects.filter(user_name="").values_list("outcome", flat=True)
    assert list(unknown) == ["unknown_user"]
    admin = site.client()
    admin.login("admin")
    page = admin.get("/audit/")
    assert page.status == 200 and page.text.count("bad_password") == 5 and "unknown_user" in page.text
    assert "nobody" not in page.text  # an unknown name is shown as its hash only
    assert browser.get("/audit/").status == 403  # budi is a reviewer, not an admin


def test_a_post_without_the_form_token_is_refused(site: Site) -> None:
    browser = site.client()
    browser.login("siti")
    case = site.cases["lin"]
    form = {"decision": "accept", "reason": "dicek", "nip": LIN, "kind": "masuk"}
    assert browser.post(f"/case/{case}/decide/", form).status == 403
    assert browser.post(f"/case/{case}/decide/", {**form, "csrfmiddlewaretoken": "forged" * 6}).status == 403
    assert state(site, "lin")[0] == "open"
    stranger = site.client()
    stranger.get("/login/")
    reply = stranger.post("/login/", {"username": "siti", "password": PASSWORD})  # no login form token
    assert reply.status == 403 and "sessionid" not in stranger.cookies


def test_the_case_page_shows_time_people_scores_and_both_photos(site: Site) -> None:
    browser = site.client()
    browser.login("siti")
    page = browser.get(f"/case/{site.cases['unknown']}/").text
    assert "2026-02-03 07:40:00 WITA" in page and "2026-02-02 23:40:00 UTC" in page
    assert f"{ALEX} — Alex Lacamoire (bkpsdm)" in page and "0.6312" in page and "0.0121" in page
    assert f'value="{ALEX}"' in page  # accept is prefilled with the best match
    assert '<option value="">(pilih)</option><option value="masuk">' in page  # no punch kind: HR chooses
    assert f'src="/case/{site.cases["unknown"]}/reference/best/"' in page  # Alex's enrolled photo beside it
    page = browser.get(f"/case/{site.cases['alex']}/").text
    assert "2026-02-03 16:10:00 WITA" in page and "diperbaiki dari jangkar waktu" in page
    assert '<option value="pulang" selected>' in page
    page = browser.get(f"/case/{site.cases['lin']}/").text
    assert "Lin &amp; Co" in page and "Lin & Co" not in page
    assert 'id="evidence"' in page and 'id="reference-typed"' in page
    spoof = json.loads(site.ledger.review_case(site.cases["unknown"]).payload)  # type: ignore[union-attr]
    spoof.update(event_id="019ad2a4-8c20-7d31-b1d3-7e2f5a4b3c62", seq=99, reason="suspected_spoof", kind="masuk",
                 person={"nip": ALEX}, evidence=None)
    spoof["decision"]["liveness"] = {"level": "challenge", "result": "spoof", "method": "none", "score": "0.0287",
                                     "blinks": 0, "challenge": "turn_left+blink", "extra_ms": 8000,
                                     "moving_surroundings": 41}
    with site.ledger.transaction():  # stored the way the ingest stores a spoof case (events.md's example)
        site.ledger.insert_event(spoof, json.dumps(spoof), 1_770_300_000_000, "device", True)
        site.ledger.enqueue_review("kiosk-1", spoof["event_id"], "suspected_spoof")
    case = site.ledger.one("SELECT id FROM review_queue WHERE event_id = ?", (spoof["event_id"],))
    page = browser.get(f"/case/{case[0]}/").text  # type: ignore[index]
    assert "Dugaan pemalsuan wajah" in page and "Liveness: result</dt><dd>spoof" in page
    assert "Liveness: score</dt><dd>0.0287" in page and "Foto bukti tidak tersedia" in page
    for path, body in ((f"/case/{site.cases['lin']}/photo/", site.photos["lin"]),
                       (f"/case/{site.cases['lin']}/reference/typed/", site.references["lin"])):
        photo = browser.get(path)
        assert (photo.status, photo.headers["Content-Type"], photo.body) == (200, "image/jpeg", body), path
        assert photo.headers["Cache-Control"] == "no-store"
    assert browser.get(f"/case/{site.cases['lin']}/reference/best/").status == 404  # Lin's case has no best NIP
    assert browser.get("/case/999999/").status == 404


def test_accepting_makes_the_attendance_the_recap_counts_with_the_audit(site: Site) -> None:
    def lin_on_the_2nd() -> recaps.DayLine:
        recap = recaps.build_recap(site.ledger, "bkpsdm", date(2026, 2, 2), date(2026, 2, 2), today=date(2026, 2, 28))
        return next(d for d in recap.days if d.nip == LIN)

    assert lin_on_the_2nd().status == "pending"  # an open case is waiting for HR, not an absence
    browser = site.client()
    browser.login("siti")
    case = site.cases["lin"]
    assert browser.decide(case, decision="accept", nip=LIN, kind="masuk", reason="   ").status == 400  # no reason
    assert browser.decide(case, decision="accept", nip=ALEX[:-1] + "9", kind="masuk",
                          reason="dicek").status == 400  # not in the roster
    assert state(site, "lin")[0] == "open"
    reply = browser.decide(case, decision="accept", nip=LIN, kind="masuk", reason="Dikenali dari foto oleh atasan")
    assert (reply.status, reply.headers["Location"]) == (302, f"/case/{case}/")
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
    page = browser.get(f"/case/{case}/").text
    assert "Diputus oleh siti" in page and 'id="accept"' not in page and "Jejak audit" in page


def move(site: Site, nip: str, assignments: list[tuple[str, str, str | None]]) -> None:
    """Replace a person's office assignments (office, valid_from, valid_to) in the ledger."""
    with site.ledger.transaction():
        site.ledger.execute("DELETE FROM employee_assignments WHERE nip = ?", (nip,))
        for office, start, end in assignments:
            site.ledger.execute("INSERT INTO employee_assignments (nip, office, valid_from, valid_to, entered_by, "
                                "entered_at) VALUES (?, ?, ?, ?, 'test', '2026-03-01T00:00:00Z')",
                                (nip, office, start, end))
        site.ledger.execute("UPDATE employees SET office = ? WHERE nip = ?", (assignments[-1][0], nip))


def test_accepting_needs_the_person_employed_on_the_case_day(site: Site) -> None:
    """Lin left on 1 February, the day before her case; Obama joins bkpsdm on the 4th, the day after the unknown
    face's case; Alex moved to disdik on the 15th but was bkpsdm's on the 3rd (no second reviewer needed)."""
    move(site, LIN, [("bkpsdm", "1970-01-01", "2026-02-01")])
    move(site, OBAMA, [("bkpsdm", "2026-02-04", None)])
    move(site, ALEX, [("bkpsdm", "1970-01-01", "2026-02-14"), ("disdik", "2026-02-15", None)])
    siti, budi = site.client(), site.client()
    siti.login("siti")
    budi.login("budi")
    reply = siti.decide(site.cases["lin"], decision="accept", nip=LIN, kind="masuk", reason="dicek")
    assert reply.status == 400 and "bukan pegawai pada 2026-02-02" in reply.text, reply.text
    assert "belum bergabung atau sudah keluar" in reply.text and state(site, "lin")[0] == "open"
    with pytest.raises(DecisionRefused) as refused:
        site.ledger.decide_review(site.cases["lin"], "siti", True, "langsung", LIN, "masuk")
    assert refused.value.why == "not_employed" and "not employed on 2026-02-02" in str(refused.value)
    unknown = site.cases["unknown"]
    reply = siti.decide(unknown, decision="accept", nip=OBAMA, kind="masuk", reason="Obama")
    assert reply.status == 400 and "bukan pegawai pada 2026-02-03" in reply.text
    from kiosk_central.hr.models import Proposal

    assert not Proposal.objects.filter(case_id=unknown).exists()  # refused before any proposal
    assert siti.decide(site.cases["lin"], decision="reject", reason="Lin sudah keluar").status == 302
    reply = siti.decide(unknown, decision="accept", nip=ALEX, kind="masuk", reason="Alex, masih di bkpsdm")
    assert reply.status == 302 and state(site, "unknown")[:4] == ("accepted", ALEX, "masuk", "siti")
    assert budi.decide(site.cases["alex"], decision="accept", nip=ALEX, kind="pulang", reason="ok").status == 302


def test_a_case_already_decided_is_refused_and_the_decided_list_names_the_reviewer(site: Site) -> None:
    siti, budi = site.client(), site.client()
    siti.login("siti")
    budi.login("budi")
    case = site.cases["unknown"]
    siti_token = siti.get(f"/case/{case}/").form_token()
    budi_token = budi.get(f"/case/{case}/").form_token()  # both have the form open
    reply = siti.post(f"/case/{case}/decide/", {"csrfmiddlewaretoken": siti_token, "decision": "reject",
                                                "reason": "Bukan pegawai kantor ini"})
    assert reply.status == 302
    reply = budi.post(f"/case/{case}/decide/", {"csrfmiddlewaretoken": budi_token, "decision": "accept",
                                                "nip": ALEX, "kind": "masuk", "reason": "Mirip Alex"})
    assert reply.status == 409 and "already decided" in reply.text and "by siti" in reply.text
    assert state(site, "unknown") == ("rejected", None, None, "siti", "Bukan pegawai kantor ini")
    assert site.ledger.rows("SELECT actor, action FROM review_audit WHERE review_id = ?", (case,)) == [
        ("siti", "reject")]
    decided = budi.get("/decided/").text
    assert f"#{case}" in decided and "siti" in decided and "Ditolak" in decided
    assert case not in case_links(budi.get("/queue/"))


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


def test_two_person_rule_for_another_office_or_another_kind(site: Site) -> None:
    siti, budi = site.client(), site.client()
    siti.login("siti")
    budi.login("budi")
    case = site.cases["lin"]
    reply = siti.decide(case, decision="accept", nip=LIN, kind="pulang", reason="Lin pulang, salah tombol")
    assert reply.status == 302 and state(site, "lin")[0] == "open"  # a changed kind waits for a second reviewer
    page = siti.get(f"/case/{case}/").text
    assert "Menunggu reviewer kedua" in page and "jenis presensi diubah dari masuk ke pulang" in page
    assert 'id="approve"' not in page  # not for the one who proposed it
    assert "Menunggu reviewer kedua" in siti.get("/queue/").text
    assert budi.decide(case, decision="reject", reason="tolak saja").status == 409  # no side door while pending
    from kiosk_central.hr.models import Proposal

    proposal = Proposal.objects.get(case_id=case)
    token = siti.get(f"/case/{case}/").form_token()
    reply = siti.post(f"/case/{case}/second/", {"csrfmiddlewaretoken": token, "choice": "approve",
                                                "proposal": str(proposal.id)})
    assert reply.status == 403 and state(site, "lin")[0] == "open"  # the proposer cannot be the second reviewer
    reply = budi.second(case, "approve", "Sudah dicek dengan atasan")
    assert reply.status == 302
    assert state(site, "lin")[:4] == ("accepted", LIN, "pulang", "siti+budi")
    proposal.refresh_from_db()
    assert (proposal.state, proposal.second_by.username) == ("approved", "budi")  # type: ignore[union-attr]
    reason = state(site, "lin")[4]
    assert "diusulkan siti, disetujui budi" in reason and "Sudah dicek dengan atasan" in reason
    page = budi.get(f"/case/{case}/").text
    assert "approved" in page and "Riwayat keputusan" in page
    # Obama is of disdik, the kiosk of bkpsdm: accepting the unknown face as his needs a second reviewer too
    unknown = site.cases["unknown"]
    assert siti.decide(unknown, decision="accept", nip=OBAMA, kind="masuk", reason="tamu dinas").status == 302
    assert "pegawai kantor disdik, kios kantor bkpsdm" in siti.get(f"/case/{unknown}/").text
    assert budi.second(unknown, "refuse", "Bukan Obama").status == 302
    assert state(site, "unknown")[0] == "open"  # refused: the case is open again for a new decision
    assert Proposal.objects.get(case_id=unknown).state == "refused"
    assert budi.decide(unknown, decision="accept", nip=ALEX, kind="masuk", reason="Alex").status == 302
    assert state(site, "unknown")[:4] == ("accepted", ALEX, "masuk", "budi")


def test_offices_and_cases_about_oneself(site: Site) -> None:
    dewi = site.client()
    dewi.login("dewi")  # disdik only: the kiosk is bkpsdm's
    assert case_links(dewi.get("/queue/")) == [] and "0 kasus menunggu" in dewi.get("/queue/").text
    lin = site.cases["lin"]
    for path in (f"/case/{lin}/", f"/case/{lin}/photo/", f"/case/{lin}/reference/typed/"):
        assert dewi.get(path).status == 404, path
    token = dewi.get("/queue/").form_token()
    reply = dewi.post(f"/case/{lin}/decide/", {"csrfmiddlewaretoken": token, "decision": "reject", "reason": "x"})
    assert reply.status == 404 and state(site, "lin")[0] == "open"
    assert dewi.get("/recap/?office=bkpsdm&month=2026-02").status == 404
    from kiosk_central.hr.models import ReviewerProfile

    ReviewerProfile.objects.filter(user__username="siti").update(nip=LIN)
    siti = site.client()
    siti.login("siti")  # Siti is Lin now: Lin's case is not hers to decide
    page = siti.get(f"/case/{lin}/").text
    assert "tentang Anda sendiri" in page and 'id="accept"' not in page
    reply = siti.post(f"/case/{lin}/decide/", {"csrfmiddlewaretoken": siti.get("/queue/").form_token(),
                                               "decision": "accept", "nip": LIN, "kind": "masuk",
                                               "reason": "saya sendiri"})
    assert reply.status == 403 and state(site, "lin")[0] == "open"
    reply = siti.decide(site.cases["unknown"], decision="accept", nip=LIN, kind="masuk", reason="itu saya")
    assert reply.status == 403  # nor may she accept another case as her own attendance
    admin = site.client()
    admin.login("admin")
    assert case_links(admin.get("/queue/")) == [lin, site.cases["unknown"]]  # the admin sees every office


def test_the_queue_is_oldest_first_filtered_and_paginated(site: Site) -> None:
    browser = site.client()
    browser.login("siti")
    first = browser.get("/queue/")  # page_size = 2
    assert case_links(first) == [site.cases["lin"], site.cases["unknown"]] and "3 kasus menunggu" in first.text
    assert "halaman 1 dari 2" in first.text and 'id="next"' in first.text
    assert case_links(browser.get("/queue/?page=2")) == [site.cases["alex"]]
    assert case_links(browser.get("/queue/?reason=unknown_face")) == [site.cases["unknown"]]
    day = browser.get("/queue/?date=2026-02-03&office=bkpsdm")
    assert case_links(day) == [site.cases["unknown"], site.cases["alex"]]
    assert "2 kasus menunggu" in browser.get("/queue/?date=2026-02-03").text
    assert "Tidak ada kasus" in browser.get("/queue/?office=disdik").text
    bad = browser.get("/queue/?date=3-2-2026")
    assert bad.status == 400 and "date &#x27;3-2-2026&#x27;: use YYYY-MM-DD" in bad.text


def test_the_recap_pages(site: Site) -> None:
    browser = site.client()
    browser.login("siti")
    page = browser.get("/recap/?office=bkpsdm&month=2026-02")
    assert page.status == 200 and "BKPSDM Kabupaten Contoh" in page.text and "Lin &amp; Co" in page.text
    assert 'id="pending"' in page.text and "Menunggu verifikasi: 3 kasus terbuka" in page.text
    assert "0 presensi yang waktunya belum diketahui" in page.text
    csv_reply = browser.get("/recap/?office=bkpsdm&month=2026-02&format=csv")
    assert csv_reply.headers["Content-Type"].startswith("text/csv") and LIN in csv_reply.text
    assert "attachment" in csv_reply.headers["Content-Disposition"]
    day = browser.get("/recap/?office=bkpsdm&date=2026-02-02")
    assert day.status == 200 and "Tanpa keterangan" in day.text
    assert browser.get("/recap/?office=bkpsdm&month=2026-13").status == 400
    printable = browser.get("/recap/?office=bkpsdm&month=2026-02&format=html")
    assert printable.status == 200 and "<script" not in printable.text
    assert printable.headers["Content-Disposition"] == 'inline; filename="rekap-tpp-bkpsdm-2026-02.html"'
    assert "Mengetahui," in printable.text and "NIP. ....." in printable.text  # no signatories configured: blanks
    for link in ("format=xlsx", "format=csv-id", "format=html", "format=csv"):
        assert f"/recap/?office=bkpsdm&amp;month=2026-02&amp;{link}" in page.text, link
    assert 'value="*"' not in page.text  # every office at once is for admins
    xlsx = browser.get("/recap/?office=bkpsdm&month=2026-02&format=xlsx")
    assert xlsx.status == 200 and xlsx.body[:4] == b"PK\x03\x04" and xlsx.headers["Cache-Control"] == "no-store"
    assert xlsx.headers["Content-Type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert xlsx.headers["Content-Disposition"] == 'attachment; filename="rekap-tpp-bkpsdm-2026-02.xlsx"'
    excel = browser.get("/recap/?office=bkpsdm&date=2026-02-02&format=csv-id")
    assert (excel.status, excel.headers["Content-Type"]) == (200, "text/csv; charset=utf-8")
    assert excel.headers["Content-Disposition"] == 'attachment; filename="lh-bkpsdm-2026-02-02.csv"'
    assert excel.body.startswith(b"\xef\xbb\xbfTanggal;No;NIP;Nama;") and f'"=""{LIN}"""'.encode() in excel.body
    assert excel.headers["Cache-Control"] == "no-store"
    assert browser.get("/recap/?office=*&month=2026-02&format=xlsx").status == 404
    from openpyxl import load_workbook

    admin = site.client()
    admin.login("admin")
    every = admin.get("/recap/?office=*&month=2026-02")
    assert every.status == 200 and 'id="download-xlsx"' in every.text and "Semua kantor" in every.text
    every = admin.get("/recap/?office=*&month=2026-02&format=xlsx")
    assert every.headers["Content-Disposition"] == 'attachment; filename="rekap-tpp-semua-kantor-2026-02.xlsx"'
    assert load_workbook(io.BytesIO(every.body)).sheetnames == ["bkpsdm", "disdik"]  # one sheet per office
    lines = admin.get("/recap/?office=*&date=2026-02-02&format=csv-id").body.decode("utf-8-sig").splitlines()
    assert len(lines) == 4 and lines[0].startswith("Tanggal;No;NIP") and f'"=""{OBAMA}"""' in lines[3]

    from kiosk_central.hr.views import content_disposition  # Django is set up by now (the site fixture)

    assert content_disposition("attachment", "rekap-tpp-bkpsdm-2026-02.xlsx") == (
        'attachment; filename="rekap-tpp-bkpsdm-2026-02.xlsx"')
    odd = content_disposition("attachment", 'lh-dinas "pu"\r\nx;ñ-2026-02-02.csv')
    assert odd == ('attachment; filename="lh-dinas_pu_x_-2026-02-02.csv"; '
                   "filename*=UTF-8''lh-dinas%20%22pu%22%0D%0Ax%3B%C3%B1-2026-02-02.csv")


def test_sessions_expire_and_logout_ends_them(site: Site) -> None:
    browser = site.client()
    browser.login("siti")
    assert browser.get("/queue/").status == 200
    token = browser.get("/queue/").form_token()
    reply = browser.post("/logout/", {"csrfmiddlewaretoken": token})
    assert (reply.status, reply.headers["Location"]) == (302, "/login/")
    assert browser.get("/queue/").status == 302
    assert login_outcomes("siti") == ["ok", "logout"]
    again = site.client()
    again.login("siti")
    assert again.get("/queue/").status == 200
    from django.contrib.sessions.models import Session
    from django.utils import timezone

    Session.objects.update(expire_date=timezone.now() - timedelta(seconds=1))  # session_hours went by
    assert again.get("/queue/").status == 302


def test_user_commands_read_the_password_from_stdin_never_argv(site: Site, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from django.contrib.auth.models import User

    from kiosk_central.hr.models import UserAudit

    config = str(site.config)
    monkeypatch.setattr(sys, "stdin", io.StringIO("pendek\n"))
    assert main(["user", "add", "rina", "--config", config]) == 2
    assert "setidaknya 12 karakter" in capsys.readouterr().err and not User.objects.filter(username="rina").exists()
    monkeypatch.setattr(sys, "stdin", io.StringIO("sandi-rina-yang-panjang\n"))
    assert main(["user", "add", "rina", "--role", "admin", "--nip", ALEX, "--config", config]) == 0
    rina = User.objects.get(username="rina")
    assert rina.is_superuser and rina.password.startswith("argon2$argon2id$") and rina.reviewer.nip == ALEX
    monkeypatch.setattr(sys, "stdin", io.StringIO("another-long-one\n"))
    assert main(["user", "add", "rina", "--config", config]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["user", "add", "Rina Sari", "--config", config]) == 2
    assert "user name 'Rina Sari'" in capsys.readouterr().err
    browser = site.client()
    browser.login("rina", "sandi-rina-yang-panjang")
    assert browser.get("/queue/").status == 200
    monkeypatch.setattr(sys, "stdin", io.StringIO("sandi-baru-yang-panjang\n"))
    assert main(["user", "passwd", "rina", "--config", config]) == 0
    assert browser.get("/queue/").status == 302  # a new password ends the sessions
    browser.login("rina", "sandi-baru-yang-panjang")
    assert browser.get("/queue/").status == 200
    assert main(["user", "disable", "rina", "--config", config]) == 0
    assert browser.get("/queue/").status == 302  # disabling ends the sessions ...
    assert site.client().login("rina", "sandi-baru-yang-panjang").status == 401  # ... and refuses the next login
    assert login_outcomes("rina")[-1] == "disabled"
    assert main(["user", "scope", "siti", "--office", "bkpsdm", "--office", "disdik", "--config", config]) == 0
    capsys.readouterr()
    assert main(["user", "list", "--config", config]) == 0
    out = capsys.readouterr().out
    assert f"rina\tadmin\t{ALEX}\t*\tdisabled\n" in out and "siti\treviewer\t-\tbkpsdm,disdik\n" in out
    actions = list(UserAudit.objects.filter(target__in=["rina", "siti"]).order_by("id")
                   .values_list("action", "target", "via"))
    assert actions == [("add", "rina", "cli"), ("passwd", "rina", "cli"), ("disable", "rina", "cli"),
                       ("scope", "siti", "cli")]


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


def test_the_reports_section_of_central_toml(tmp_path: Path) -> None:
    cfg = load_central_config(REPO / "examples" / "central.toml")
    assert (cfg.reports.regency, cfg.reports.place) == ("Pemerintah Kabupaten Contoh", "Kota Contoh")
    assert cfg.reports.signers_file == REPO / "examples" / "central-signers.csv"
    (tmp_path / "signers.csv").write_text(f"office,role,name,nip\nbkpsdm,kepala,Siti,{ALEX}\n"
                                          "bkpsdm,bupati,X,1\ndisdik,pengelola,Budi,12345\n")
    bad = tmp_path / "central.toml"
    bad.write_text('[reports]\nsigners_file = "signers.csv"\n')
    with pytest.raises(ConfigError) as err:
        load_central_config(bad)
    text = str(err.value)
    assert f"reports.signers_file {tmp_path / 'signers.csv'}" in text
    assert "line 3: role 'bupati' must be kepala (head) or pengelola (staff)" in text
    assert "line 4, nip: '12345' is not a NIP" in text
    bad.write_text('[reports]\nsigners_file = "nowhere.csv"\n')
    with pytest.raises(ConfigError, match=r"(?s)nowhere\.csv.*cannot read the file"):
        load_central_config(bad)


def test_the_web_reports_print_the_configured_regency_and_signers(site: Site) -> None:
    from openpyxl import load_workbook

    folder = site.config.parent
    (folder / "signers.csv").write_text(f"office,role,name,nip\nbkpsdm,kepala,Dr. Siti Aminah,{OBAMA}\n")
    site.config.write_text(site.config.read_text() + '[reports]\nregency = "Pemerintah Kabupaten Contoh"\n'
                           'place = "Kota Contoh"\nsigners_file = "signers.csv"\n')
    with web_server(site.config) as server:
        browser = Client(server.port)
        assert browser.login("siti").status == 302
        printable = browser.get("/recap/?office=bkpsdm&month=2026-02&format=html")
        assert printable.status == 200 and "Pemerintah Kabupaten Contoh" in printable.text
        assert f'<p class="name">Dr. Siti Aminah</p><p>NIP. {OBAMA}</p>' in printable.text
        assert "Kota Contoh, " in printable.text
        assert printable.text.count(f"NIP. {reports.BLANK_NIP}") == 1  # the staff officer: none configured
        xlsx = browser.get("/recap/?office=bkpsdm&date=2026-02-02&format=xlsx")
        assert xlsx.status == 200
        cells = [str(c.value) for row in load_workbook(io.BytesIO(xlsx.body))["bkpsdm"].iter_rows() for c in row
                 if c.value is not None]
        assert "PEMERINTAH KABUPATEN CONTOH" in cells and "Dr. Siti Aminah" in cells  # the letterhead in capitals
        assert f"NIP. {OBAMA}" in cells, cells[-12:]


def test_the_web_command_serves_until_sigterm(sqlite_site: Site) -> None:
    site = sqlite_site
    reply = site.client().get("/queue/")
    assert (reply.status, reply.headers["Location"]) == (302, "/login/?next=/queue/")
    assert site.server.stop() == 0
    assert f"listening on http://127.0.0.1:{site.server.port}" in site.server.log_text()


def test_the_web_command_names_the_setting_when_the_port_is_taken(sqlite_site: Site,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    config = sqlite_site.config
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config.write_text(re.sub(r"(?m)^port = .*$", f"port = {taken.getsockname()[1]}", config.read_text()))
        assert main(["web", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "cannot listen on 127.0.0.1:" in err and "Address already in use" in err and "web.port" in err


# ---------------------------------------------------------------------------------------------------- browser


class WebDriver:
    """The few WebDriver commands the browser test needs, over HTTP to chromedriver (standard library only)."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.session = ""
        self.downloads = Path()

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.load(response)["value"]
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"WebDriver {method} {path}: {exc.read().decode()[:500]}") from None

    def start(self, profile: Path, downloads: Path) -> None:
        options = {"binary": shutil.which("chromium") or "/usr/bin/chromium",
                   # root in a container: no setuid sandbox; small /dev/shm; no GPU
                   "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                            f"--user-data-dir={profile}", "--window-size=1100,1300"],
                   # downloads land in a known folder, unasked (the pages' CSP rules out fetch() from a script)
                   "prefs": {"download.default_directory": str(downloads), "download.prompt_for_download": False,
                             "download.directory_upgrade": True}}
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

    def clear(self, css: str) -> None:
        self.call("POST", f"/session/{self.session}/element/{self.element(css)}/clear", {})

    def run(self, script: str, *args: Any) -> Any:
        return self.call("POST", f"/session/{self.session}/execute/sync", {"script": script, "args": list(args)})

    def text(self, css: str) -> str:
        return str(self.run("const e = document.querySelector(arguments[0]); return e ? e.innerText : ''", css))

    def downloaded(self, name: str) -> bytes:
        """The file the browser saved as ``name`` in its download folder, waited for up to 10 s."""
        path = self.downloads / name
        for _ in range(200):
            if path.exists() and not list(self.downloads.glob("*.crdownload")):
                return path.read_bytes()
            time.sleep(0.05)
        raise AssertionError(f"no download {name}; the folder has {sorted(p.name for p in self.downloads.iterdir())}")

    def wait_for(self, script: str) -> Any:
        """The first truthy result of ``script``, polled for up to 10 s."""
        for _ in range(200):
            result = self.run(script)
            if result:
                return result
            time.sleep(0.05)
        page = self.run("return location.href + ' ' + document.body.innerText")
        raise AssertionError(f"the page never satisfied: {script}; the page: {str(page)[:800]}")

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
        downloads = tmp_path / "downloads"
        downloads.mkdir(exist_ok=True)
        driver.downloads = downloads
        driver.start(tmp_path / "chromium-profile", downloads)
        yield driver
    finally:
        driver.quit()
        process.terminate()
        process.wait(timeout=10)


def browser_login(browser: WebDriver, base: str, name: str) -> None:
    browser.go(base + "/queue/")
    assert browser.run("return location.pathname") == "/login/"  # redirected: not logged in
    browser.type("#user", name)
    browser.type("#password", PASSWORD)
    browser.click("#login")
    browser.wait_for("return location.pathname === '/queue/'")


def browser_logout(browser: WebDriver) -> None:
    browser.click("#logout")
    browser.wait_for("return location.pathname === '/login/'")


def test_two_reviewers_decide_a_case_in_headless_chromium(site: Site, tmp_path: Path) -> None:
    """Siti logs in, opens Lin's case with the evidence and the enrolled photo, proposes it as a check-out (another
    kind than the kiosk's: two-person rule) and logs out; Budi logs in and approves it."""
    base = site.server.url
    case = site.cases["lin"]

    def login(browser: WebDriver, name: str) -> None:
        browser_login(browser, base, name)

    with chromium(tmp_path) as browser:
        login(browser, "siti")
        browser.click(f'a[href="/case/{case}/"]')
        browser.wait_for(f"return location.pathname === '/case/{case}/'")
        width = browser.wait_for("const i = document.getElementById('evidence'); "
                                 "return i && i.complete ? i.naturalWidth : 0")
        assert width == 320  # the evidence photo came through the session
        width = browser.wait_for("const i = document.getElementById('reference-typed'); "
                                 "return i && i.complete ? i.naturalWidth : 0")
        assert width == 200  # and Lin's enrolled reference photo beside it
        assert browser.run("return document.getElementById('nip').value") == LIN
        assert browser.run("return document.getElementById('kind').value") == "masuk"
        browser.run("document.getElementById('kind').value = 'pulang'; return true")
        browser.type("#accept-reason", "Lin pulang, menekan tombol yang salah")
        browser.click("#accept")
        browser.wait_for("return document.body.innerText.includes('Menunggu reviewer kedua')")
        assert browser.run("return document.getElementById('approve')") is None
        browser.click("#logout")
        browser.wait_for("return location.pathname === '/login/'")
        login(browser, "budi")
        browser.go(f"{base}/case/{case}/")
        browser.type("#second-reason", "Dicek dengan atasan")
        browser.click("#approve")
        browser.wait_for("return document.body.innerText.includes('Diputus oleh siti+budi')")
        assert "Diterima" in browser.run("return document.body.innerText")
        browser.click("#logout")
        browser.wait_for("return location.pathname === '/login/'")
    assert state(site, "lin")[:4] == ("accepted", LIN, "pulang", "siti+budi")
    assert site.ledger.rows("SELECT actor, action FROM review_audit") == [("siti+budi", "accept")]
    assert login_outcomes("siti") == ["ok", "logout"] and login_outcomes("budi") == ["ok", "logout"]


def test_roster_import_and_the_recap_download_in_headless_chromium(site: Site, tmp_path: Path) -> None:
    """One browser: the admin uploads a roster with three problems on /roster/ (all listed, nothing applied), then
    the corrected file that moves Alex to disdik from the 15th and applies it; bkpsdm's daily lists before the move
    read as before. Siti then downloads February's xlsx from the recap page and it is read back with openpyxl."""
    from openpyxl import load_workbook

    base = site.server.url
    days = ("2026-02-02", "2026-02-03", "2026-02-13")
    broken = tmp_path / "pegawai-salah.csv"
    broken.write_text(f"NIP;Nama;Unit kerja\n{ALEX};Alex Lacamoire;disdk\n1980 0202 2006;Lin & Co;bkpsdm\n"
                      f"{OBAMA};;disdik\n")
    fixed = tmp_path / "pegawai.csv"
    fixed.write_text(f"NIP;Nama;Unit kerja;TMT\n{ALEX};Alex Lacamoire;DISDIK;15-02-2026\n{LIN};Lin & Co;bkpsdm;\n"
                     f"{OBAMA};Barack Obama;disdik;\n")
    before_rows = site.ledger.rows("SELECT nip, office, valid_from, valid_to FROM employee_assignments ORDER BY nip")

    with chromium(tmp_path) as browser:
        browser_login(browser, base, "admin")

        def day_list(day: str) -> str:
            browser.go(f"{base}/recap/?office=bkpsdm&date={day}")
            return browser.text("#recap-days")

        shown = {day: day_list(day) for day in days}
        assert ALEX in shown["2026-02-02"] and LIN in shown["2026-02-02"]
        assert ALEX in day_list("2026-02-16")

        def preview(path: Path) -> None:
            browser.go(base + "/roster/")
            browser.type("#roster-file", str(path))
            browser.clear("#effective")
            browser.type("#effective", "2026-02-15")
            browser.click("#preview")
            browser.wait_for("return document.getElementById('counts') !== null")

        preview(broken)
        problems = browser.text("#problem-list")
        assert "3 masalah" in browser.text("#problems") and browser.run("return document.getElementById('apply')") \
            is None
        assert "did you mean disdik?" in problems and "1980 0202 2006" in problems  # every problem, with its value
        assert len(browser.run("return [...document.querySelectorAll('#problem-list tr')].slice(1)")) == 3
        assert site.ledger.rows("SELECT nip, office, valid_from, valid_to FROM employee_assignments "
                                "ORDER BY nip") == before_rows  # nothing applied
        preview(fixed)
        assert browser.text("#problems") == "" and "pindah" in browser.text("#changes")
        browser.click("#apply")
        browser.wait_for("return document.getElementById('applied') !== null")
        assert "Diterapkan: 1 perubahan" in browser.text("#applied")
        assert site.ledger.office_on(ALEX, date(2026, 2, 14)) == "bkpsdm"
        assert site.ledger.office_on(ALEX, date(2026, 2, 15)) == "disdik"
        assert {day: day_list(day) for day in days} == shown  # the days before the move read as before
        assert ALEX not in day_list("2026-02-16") and LIN in day_list("2026-02-16")
        browser_logout(browser)

        browser_login(browser, base, "siti")
        browser.go(base + "/recap/")
        browser.type("#month", "2026-02")
        browser.click("#show")
        browser.wait_for("return document.getElementById('download-xlsx') !== null")
        href = browser.run("return document.getElementById('download-xlsx').href")
        assert href == f"{base}/recap/?office=bkpsdm&month=2026-02&format=xlsx"
        browser.click("#download-xlsx")
        body = browser.downloaded("rekap-tpp-bkpsdm-2026-02.xlsx")  # the name from Content-Disposition
        browser.go(f"{base}/recap/?office=disdik&month=2026-02&format=xlsx")
        assert "bukan kantor Anda" in browser.text("main")  # not her office
        assert not (browser.downloads / "rekap-tpp-disdik-2026-02.xlsx").exists()
        browser_logout(browser)

    book = load_workbook(io.BytesIO(body))
    assert book.sheetnames == ["bkpsdm"]
    sheet = book["bkpsdm"]
    rows = [list(r) for r in sheet.iter_rows()]
    header = next(i for i, r in enumerate(rows) if r[1].value == "NIP")
    labels = [c.value for c in rows[header]]
    assert labels[:4] == ["No", "NIP", "Nama", "Unit kerja"] and "Tanggal" in labels and "Hari kerja" in labels
    assert "Terlambat" in labels and "Potongan TPP (%)" in labels
    people = rows[header + 2:]
    total = next(i for i, r in enumerate(people) if r[2].value == "Jumlah")
    nips = [r[1] for r in people[:total]]
    assert sorted(c.value for c in nips) == sorted([ALEX, LIN])  # Alex is still bkpsdm's from the 1st to the 14th
    assert all(isinstance(c.value, str) and c.number_format == "@" for c in nips)
    work_days = labels.index("Hari kerja")
    assert people[total][work_days].value == sum(r[work_days].value for r in people[:total])


def test_logged_in_pages_are_never_cached_nor_framed(site: Site) -> None:
    browser = site.client()
    browser.login("admin")
    for path in ("/queue/", "/decided/", "/audit/", "/recap/", f"/case/{site.cases['alex']}/"):
        reply = browser.get(path)
        assert reply.status == 200 and reply.headers["Cache-Control"] == "no-store", path
        assert reply.headers["X-Frame-Options"] == "DENY" and "<script" not in reply.text
