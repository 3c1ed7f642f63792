"""The HR web's defences, each against the real server (`kiosk-central web`, gunicorn) on loopback: bodies it must
not read, slow clients, odd parameters, header splitting, CSRF on every POST, a parallel burst of wrong logins, a
password typed as the user name, the scrypt -> Argon2 move and Argon2's cost, password policy, the audit of account
changes, and the SQLite ledger's file mode."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from central_support import database
from test_web import PASSWORD, Client, Site, make_site, web_server

from kiosk_central.cli import main
from kiosk_central.store import Ledger


@pytest.fixture
def sqlite_site(tmp_path: Path) -> Iterator[Site]:
    """test_web's site (three cases, four reviewers, reference photos, the server) on SQLite."""
    with database("sqlite", tmp_path) as url, Ledger(url) as ledger:
        yield from make_site(url, ledger, tmp_path)


def raw(port: int, request: bytes, body_chunks: int = 0, timeout: float = 15) -> bytes:
    """Send ``request`` (and up to ``body_chunks`` MiB of body, ignoring a server that stops reading) and return
    everything the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        chunk = b"a" * (1 << 20)
        for _ in range(body_chunks):
            try:
                s.sendall(chunk)
            except OSError:
                break
        answer = b""
        while True:
            try:
                data = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not data:
                break
            answer += data
        return answer


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def tree_rss_kib(pid: int) -> int:
    """Resident memory of a process and its children (gunicorn's arbiter and workers)."""
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for p in pids:
        found = re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{p}/status").read_text())
        total += int(found.group(1)) if found else 0
    return total


def test_negative_and_huge_content_lengths_are_refused_unread(sqlite_site: Site) -> None:
    site = sqlite_site
    port = site.server.port
    answer = raw(port, b"POST /login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -1\r\n\r\n")
    assert status_of(answer) == 400
    browser = site.client()
    browser.get("/login/")  # a CSRF cookie, so that the form would be read if it were small enough
    cookie = "; ".join(f"{k}={v}" for k, v in browser.cookies.items()).encode()
    before = tree_rss_kib(site.server.process.pid)
    started = time.monotonic()
    answer = raw(port, b"POST /login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: " + cookie + b"\r\n"
                 b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 10000000000\r\n\r\n",
                 body_chunks=64)
    assert status_of(answer) in (400, 413) and time.monotonic() - started < 10
    assert tree_rss_kib(site.server.process.pid) - before < 30 * 1024  # 64 MiB sent, not read into memory
    assert browser.get("/login/").status == 200  # and the server still serves


def test_slow_clients_time_out(sqlite_site: Site) -> None:
    with web_server(sqlite_site.config, "--timeout", "3") as server:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as slow:
            slow.sendall(b"GET /login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the end of the headers
            assert Client(server.port).get("/login/").status == 200  # others are served meanwhile
            try:
                closed = slow.recv(1024)
            except ConnectionResetError:
                closed = b""
        waited = time.monotonic() - started
        assert not closed.startswith(b"HTTP/1.1 200") and 2 < waited < 15, (closed, waited)
        assert Client(server.port).get("/login/").status == 200


def test_odd_parameters_give_400_or_404_never_500(sqlite_site: Site) -> None:
    browser = sqlite_site.client()
    browser.login("admin")
    expected = {
        "/queue/?page=%C2%B2": 400,  # '²' is a digit to str.isdigit, not to int()
        "/queue/?page=0": 400,
        "/queue/?page=99999999999": 400,
        "/decided/?page=-1": 400,
        "/queue/?date=9999-12-31": 400,
        "/queue/?date=2026-02-30": 400,
        "/recap/?office=bkpsdm&date=9999-12-31": 400,
        "/recap/?office=bkpsdm&month=9999-12": 400,
        "/recap/?office=bkpsdm&month=2026-02&format=pdf": 400,
        "/recap/?office=bkpsdm&month=9999-99&format=xlsx": 400,
        "/recap/?office=bkpsdm&month=2026-00&format=csv-id": 400,
        "/recap/?office=bkpsdm&month=%EF%BC%92%EF%BC%90%EF%BC%92%EF%BC%96-02&format=xlsx": 400,  # fullwidth digits
        "/recap/?office=bkpsdm&date=2026-02-30&format=xlsx": 400,
        "/recap/?office=bkpsdm&date=9999-12-31&format=csv-id": 400,
        "/recap/?office=%3Cscript%3Ealert(1)%3C/script%3E&month=2026-02&format=xlsx": 404,
        "/recap/?office=%3Cscript%3E&month=2026-02": 404,
        "/recap/?office=bkpsdm%0D%0AX:1&month=2026-02&format=csv-id": 404,
        "/recap/?office=" + "x" * 3000 + "&month=2026-02&format=xlsx": 404,  # gunicorn takes 4094
        "/recap/?office=*&month=9999-99&format=xlsx": 400,
        "/case/99999999999999999999999999/": 404,
        "/case/9223372036854775808/photo/": 404,
        "/case/0/": 404,
        "/case/abc/": 404,
        f"/case/{sqlite_site.cases['lin']}/reference/nobody/": 404,
    }
    for path, status in expected.items():
        reply = browser.get(path)
        assert reply.status == status, (path, reply.status, reply.text[:300])
        assert reply.headers["Cache-Control"] == "no-store", path
        assert "<script>" not in reply.text and "Content-Disposition" not in reply.headers, path
    assert "gagal" not in sqlite_site.server.log_text() and "Traceback" not in sqlite_site.server.log_text()


def test_recap_downloads_need_a_login_and_the_office(sqlite_site: Site) -> None:
    """The xlsx and CSV downloads: an anonymous request goes to the login, a reviewer gets their own offices only
    (another office's, or every office at once, is a 404 with no file), nothing of it is cached."""
    downloads = [f"/recap/?office={office}&{period}&format={fmt}" for office in ("bkpsdm", "disdik", "*")
                 for period in ("month=2026-02", "date=2026-02-02") for fmt in ("xlsx", "csv-id", "csv", "html")]
    anonymous = sqlite_site.client()
    for path in downloads:
        reply = anonymous.get(path)
        assert reply.status == 302 and reply.headers["Location"].startswith("/login/?next=/recap/"), path
        assert "Content-Disposition" not in reply.headers and reply.headers["Cache-Control"] == "no-store", path
    dewi = sqlite_site.client()
    dewi.login("dewi")  # disdik's reviewer
    for path in downloads:
        reply = dewi.get(path)
        mine = "office=disdik" in path
        assert reply.status == (200 if mine else 404), (path, reply.status)
        assert ("Content-Disposition" in reply.headers) == mine and reply.headers["Cache-Control"] == "no-store"
        assert mine or "198001012005011001" not in reply.text  # nothing of bkpsdm's people leaks into the 404
    forged = dewi.get("/recap/?office=disdik&office=bkpsdm&month=2026-02&format=xlsx")
    assert forged.status == 404  # the last value counts, and bkpsdm is not hers


def test_a_crlf_in_a_cookie_or_a_redirect_does_not_split_the_response(sqlite_site: Site) -> None:
    port = sqlite_site.server.port
    for cookie in (b"sessionid=abc%0D%0ASet-Cookie:%20evil=1", b"csrftoken=x\rSet-Cookie: evil=1",
                   b"sessionid=\"a\\r\\nSet-Cookie: evil=1\""):
        answer = raw(port, b"GET /queue/ HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: " + cookie + b"\r\n\r\n")
        head = answer.split(b"\r\n\r\n", 1)[0]
        assert status_of(answer) in (302, 400), answer[:200]
        assert b"evil" not in head and head.count(b"HTTP/1.1") == 1
    browser = sqlite_site.client()
    token = browser.get("/login/").form_token()
    reply = browser.post("/login/", {"csrfmiddlewaretoken": token, "username": "siti", "password": PASSWORD,
                                     "next": "/queue/\r\nSet-Cookie: evil=1"})
    assert reply.status == 302 and reply.headers["Location"] == "/queue/" and "evil" not in str(reply.headers)
    other = sqlite_site.client()
    token = other.get("/login/").form_token()
    reply = other.post("/login/", {"csrfmiddlewaretoken": token, "username": "siti", "password": PASSWORD,
                                   "next": "https://evil.example/"})
    assert reply.headers["Location"] == "/queue/"  # no open redirect


def test_every_post_needs_the_csrf_token(sqlite_site: Site) -> None:
    browser = sqlite_site.client()
    browser.login("admin")
    case = sqlite_site.cases["lin"]
    from django.contrib.auth.models import User

    siti = User.objects.get(username="siti").pk
    posts = {
        "/logout/": {},
        "/login/": {"username": "siti", "password": PASSWORD},
        f"/case/{case}/decide/": {"decision": "reject", "reason": "x"},
        f"/case/{case}/second/": {"choice": "approve", "proposal": "1"},
        "/admin/auth/user/add/": {"username": "mallory", "password1": "x" * 20, "password2": "x" * 20},
        f"/admin/auth/user/{siti}/password/": {"password1": "y" * 20, "password2": "y" * 20},
    }
    for path, form in posts.items():
        assert browser.post(path, form).status == 403, path
        assert browser.post(path, {**form, "csrfmiddlewaretoken": "f" * 64}).status == 403, path
    assert browser.get("/queue/").status == 200  # still logged in: the logout was refused too
    assert not User.objects.filter(username="mallory").exists()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_parallel_burst_of_wrong_logins_gets_at_most_five_checks(kind: str, tmp_path: Path) -> None:
    from kiosk_central.hr.models import LoginAudit

    with database(kind, tmp_path) as url, Ledger(url) as ledger:
        sites = make_site(url, ledger, tmp_path)
        site_ = next(sites)
        try:
            with web_server(site_.config, "--workers", "8") as server:
                clients = [Client(server.port) for _ in range(20)]
                tokens = [c.get("/login/").form_token() for c in clients]
                barrier = threading.Barrier(20)
                statuses: list[int] = []

                def attempt(client: Client, token: str) -> None:
                    barrier.wait()
                    statuses.append(client.post("/login/", {"csrfmiddlewaretoken": token, "username": "siti",
                                                            "password": "salah-sekali-1234"}).status)

                threads = [threading.Thread(target=attempt, args=pair) for pair in zip(clients, tokens, strict=True)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
            outcomes = list(LoginAudit.objects.filter(user_name="siti").values_list("outcome", flat=True))
            assert sorted(statuses) == [401] * 5 + [429] * 15
            assert outcomes.count("bad_password") == 5 and outcomes.count("locked") == 15
        finally:
            sites.close()


def test_a_password_typed_as_the_user_name_is_never_logged_or_shown(sqlite_site: Site) -> None:
    secret = "sandi.rahasia-siti-2026"
    browser = sqlite_site.client()
    reply = browser.login(secret, "whatever")
    assert reply.status == 401 and secret not in reply.text
    admin = sqlite_site.client()
    admin.login("admin")
    assert secret not in admin.get("/audit/").text and "nama tak dikenal #" in admin.get("/audit/").text
    from kiosk_central.hr.models import LoginAudit, LoginThrottle

    assert not LoginAudit.objects.filter(user_name=secret).exists()
    assert not LoginThrottle.objects.filter(key__contains=secret).exists()
    time.sleep(0.3)
    log = sqlite_site.server.log_text()
    assert secret not in log and "unknown user #" in log
    assert secret.encode() not in Path(sqlite_site.url[len("sqlite:///"):]).read_bytes()


def old_scrypt(password: str) -> str:
    """A hash as the old review page (kiosk_central.web.auth) stored it."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1, maxmem=64 * 1024 * 1024, dklen=32)
    return f"scrypt$16384$8$1${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def test_old_scrypt_reviewers_log_in_and_move_to_argon2_at_or_above_owasp(sqlite_site: Site) -> None:
    from django.contrib.auth.models import User

    with sqlite_site.ledger.transaction():
        sqlite_site.ledger.execute("INSERT INTO reviewers (name, role, password_hash, disabled, created_by, "
                                   "created_at) VALUES ('lama', 'reviewer', ?, 0, 'test', '2026-01-01')",
                                   (old_scrypt("sandi-lama-yang-panjang"),))
    with web_server(sqlite_site.config) as server:  # the start imports the old page's reviewers
        assert User.objects.get(username="lama").password.startswith("kiosk_scrypt$16384$8$1$")
        assert Client(server.port).login("lama", "bukan-sandinya-123").status == 401
        assert User.objects.get(username="lama").password.startswith("kiosk_scrypt$")
        browser = Client(server.port)
        assert browser.login("lama", "sandi-lama-yang-panjang").status == 302
        assert browser.get("/queue/").status == 200
    stored = User.objects.get(username="lama").password
    found = re.fullmatch(r"argon2\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$.+", stored)
    assert found, stored
    memory_kib, time_cost, _ = (int(g) for g in found.groups())
    assert memory_kib >= 19 * 1024 and time_cost >= 2  # OWASP: m >= 19 MiB, t >= 2 (Django: 100 MiB, t=2, p=8)


def test_short_common_and_numeric_passwords_are_refused(sqlite_site: Site, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    import io

    from django.contrib.auth.models import User

    for password, why in (("pendek-1", "terlalu pendek"), ("qwerty123456", "terlalu umum"),
                          ("738492018374", "seluruhnya terdiri dari angka"), ("rinasari2026x", "terlalu mirip")):
        monkeypatch.setattr(sys, "stdin", io.StringIO(password + "\n"))
        assert main(["user", "add", "rinasari2026", "--config", str(sqlite_site.config)]) == 2
        assert why in capsys.readouterr().err, password
    monkeypatch.setattr(sys, "stdin", io.StringIO("pendek\n"))
    assert main(["user", "passwd", "siti", "--config", str(sqlite_site.config)]) == 2
    assert not User.objects.filter(username="rinasari2026").exists()
    assert Client(sqlite_site.server.port).login("siti").status == 302  # siti's password is unchanged


def test_password_changes_and_disabling_are_audited_from_the_cli_and_the_admin(sqlite_site: Site,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from django.contrib.auth.models import User

    from kiosk_central.hr.models import UserAudit

    monkeypatch.setattr(sys, "stdin", io.StringIO("sandi-baru-budi-2026\n"))
    assert main(["user", "passwd", "budi", "--config", str(sqlite_site.config)]) == 0
    assert main(["user", "disable", "budi", "--config", str(sqlite_site.config)]) == 0
    admin = sqlite_site.client()
    admin.login("admin")
    siti = User.objects.get(username="siti").pk
    page = admin.get(f"/admin/auth/user/{siti}/password/")
    assert page.status == 200
    reply = admin.post(f"/admin/auth/user/{siti}/password/", {
        "csrfmiddlewaretoken": page.form_token(), "password1": "sandi-dari-admin-77", "password2":
        "sandi-dari-admin-77", "usable_password": "true"})
    assert reply.status == 302, reply.text[:2000]
    rows = list(UserAudit.objects.order_by("id").values_list("via", "action", "target"))
    assert rows[-3:] == [("cli", "passwd", "budi"), ("cli", "disable", "budi"), ("admin", "change", "siti")]
    assert UserAudit.objects.order_by("id").last().actor == "admin"  # type: ignore[union-attr]
    assert Client(sqlite_site.server.port).login("siti", "sandi-dari-admin-77").status == 302
    assert "/admin/" in (admin.get("/admin/login/").headers["Location"] or "")  # the admin's login is ours


def test_the_sqlite_ledger_and_the_site_key_are_created_0600(tmp_path: Path) -> None:
    folder = tmp_path / "fresh"
    folder.mkdir()
    (folder / "central.toml").write_text('[database]\nurl = "sqlite:///ledger.sqlite"\n')
    old = os.umask(0o022)
    try:
        done = subprocess.run([sys.executable, "-m", "kiosk_central", "user", "add", "siti", "--config",
                               str(folder / "central.toml"), "--office", "bkpsdm"], input=b"sandi-yang-panjang-1\n",
                              capture_output=True, cwd=folder, timeout=120)
    finally:
        os.umask(old)
    assert done.returncode == 0, done.stderr.decode()
    for name in ("ledger.sqlite", "ledger.sqlite-wal", "web-secret.key"):
        path = folder / name
        if path.exists() or name != "ledger.sqlite-wal":
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
