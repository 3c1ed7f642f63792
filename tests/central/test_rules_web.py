"""The rules pages of the HR web (``/aturan/``, issue 14) through the real server, on SQLite and PostgreSQL (the
site of test_web.py: Alex and Lin of bkpsdm, Obama of disdik; reviewers siti and budi of bkpsdm, dewi of disdik, and
admin; kiosk-1 of bkpsdm): excused absences added and deleted by a reviewer and counted by the recap at once, an
office's day off added by an admin making the day "off" in the recap, the schedule push button (without a signing
key: a message; with a real broker: the command sent), and the kiosk page listing a lagging kiosk. Permissions,
CSRF, 404 for another office's data and 400 for malformed input on each."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from central_support import ALEX, LIN, OBAMA, database
from test_web import Client, Reply, Site, make_site, web_server

from kiosk_central import distribute
from kiosk_central import recap as recaps
from kiosk_central.cli import main
from kiosk_central.store import Ledger

WEDNESDAY = date(2026, 2, 4)  # nobody of the site punched that day: absent, unless excused or a day off


@pytest.fixture(params=["sqlite", "postgresql"])
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    with database(request.param, tmp_path) as url, Ledger(url) as ledger:
        yield from make_site(url, ledger, tmp_path)


def logged_in(site: Site, name: str) -> Client:
    client = site.client()
    assert client.login(name).status == 302
    return client


def post(client: Client, page: str, target: str, **form: str) -> Reply:
    token = client.get(page).form_token()
    return client.post(target, {"csrfmiddlewaretoken": token, **form})


def day_status(ledger: Ledger, office: str, nip: str, day: date = WEDNESDAY) -> tuple[str, str]:
    built = recaps.build_recap(ledger, office, day, day)
    line = next(d for d in built.days if d.nip == nip)
    return line.status, line.note


def log_messages(ledger: Ledger, model: str) -> list[str]:
    return [str(r[0]) for r in ledger.rows(
        "SELECT l.change_message FROM django_admin_log l JOIN django_content_type t ON t.id = l.content_type_id "
        "WHERE t.app_label = 'ledger' AND t.model = ? ORDER BY l.id", (model,))]


def test_the_rules_pages_need_a_login_a_role_and_the_form_token(site: Site) -> None:
    anonymous = site.client()
    for path in ("/aturan/", "/aturan/keterangan/", "/aturan/libur/", "/aturan/kios/"):
        reply = anonymous.get(path)
        assert reply.status == 302 and reply.headers["Location"].startswith("/login/?next=/aturan/"), path
    for path in ("/aturan/keterangan/tambah/", "/aturan/keterangan/hapus/", "/aturan/libur/", "/aturan/libur/kirim/"):
        assert anonymous.post(path, {"nip": ALEX}).status == 403, path  # CSRF before anything
    siti = logged_in(site, "siti")
    assert siti.get("/aturan/").headers["Location"] == "/aturan/keterangan/"
    assert siti.get("/aturan/libur/").status == 403
    assert siti.get("/aturan/kios/").status == 403
    token = siti.get("/aturan/keterangan/").form_token()
    assert siti.post("/aturan/libur/", {"csrfmiddlewaretoken": token, "office": "bkpsdm", "action": "add",
                                        "date": "2026-02-04", "kind": "holiday", "name": "x"}).status == 403
    assert siti.post("/aturan/libur/kirim/", {"csrfmiddlewaretoken": token, "office": "bkpsdm"}).status == 403
    assert siti.post("/aturan/keterangan/tambah/", {"nip": ALEX}).status == 403  # no token
    assert siti.get("/aturan/keterangan/?office=disdik").status == 404
    for query in ("month=2026-13", "month=20261", "month=9999-01", "nip=123", "office=bkpsdm&month=%00"):
        reply = siti.get(f"/aturan/keterangan/?{query}")
        assert reply.status == 400, (query, reply.status)
    for form in ({"nip": ALEX, "start": "2026-02-30", "kind": "leave"}, {"nip": "12", "start": "2026-02-04"},
                 {"nip": ALEX, "start": "2026-02-04", "kind": "holiday"}):
        assert siti.post("/aturan/keterangan/hapus/", {"csrfmiddlewaretoken": token, **form}).status == 400, form
    admin = logged_in(site, "admin")
    assert admin.get("/aturan/libur/?office=nowhere").status == 404
    assert admin.get("/aturan/libur/").status == 200
    token = admin.get("/aturan/libur/").form_token()
    assert admin.post("/aturan/libur/", {"csrfmiddlewaretoken": token, "office": "bkpsdm",
                                         "action": "explode"}).status == 400
    assert admin.post("/aturan/libur/", {"csrfmiddlewaretoken": token, "office": "bkpsdm", "action": "remove",
                                         "date": "2026-02-31"}).status == 400
    assert admin.post("/aturan/libur/", {"csrfmiddlewaretoken": token, "office": "bkpsdm", "action": "remove",
                                         "date": "2026-02-04"}).status == 404
    assert admin.post("/aturan/libur/kirim/", {"csrfmiddlewaretoken": token, "office": "nowhere"}).status == 404


def test_an_excused_absence_added_on_the_web_is_counted_by_the_recap_then_deleted_with_a_reason(site: Site) -> None:
    ledger = site.ledger
    assert day_status(ledger, "bkpsdm", ALEX) == ("absent", "")
    siti = logged_in(site, "siti")
    page = "/aturan/keterangan/"
    good = {"nip": "19800101 200501 1 001", "start": "2026-02-04", "end": "2026-02-05", "kind": "leave",
            "reference": "800/12/BKPSDM/2026"}
    for change, status, message in (
            ({"nip": "123"}, 400, "it has 3 digits"),
            ({"start": "2026-02-30"}, 400, "tanggal 2026-02-30 tidak ada"),
            ({"start": "4/2/2026"}, 400, "TTTT-BB-HH"),
            ({"end": "2026-02-03"}, 400, "tidak boleh sebelum mulai"),
            ({"end": "2027-03-01"}, 400, "Paling lama 366 hari"),
            ({"kind": "holiday"}, 400, "pilih Dinas, Cuti atau Sakit"),
            ({"reference": "  "}, 400, "wajib diisi"),
            ({"nip": OBAMA}, 404, "Tidak ada pegawai dengan NIP 196108041990031001 di kantor yang Anda kelola"),
            ({"start": "1960-01-01", "end": "1960-01-02"}, 400, "di luar tahun 2000-2100")):
        reply = post(siti, page, "/aturan/keterangan/tambah/", **{**good, **change})
        assert reply.status == status and message in reply.text, (change, reply.status, reply.text[-1500:])
        assert 'value="800/12/BKPSDM/2026"' in reply.text or change.get("reference"), change  # the form is kept
    assert ledger.rows("SELECT * FROM excused") == []
    done = post(siti, page, "/aturan/keterangan/tambah/", **good)
    assert done.status == 302 and done.headers["Location"] == "/aturan/keterangan/?month=2026-02"
    row = ledger.one("SELECT nip, start_date, end_date, kind, reference, entered_by FROM excused")
    assert row == (ALEX, "2026-02-04", "2026-02-05", "leave", "800/12/BKPSDM/2026", "web siti")
    assert day_status(ledger, "bkpsdm", ALEX) == ("excused", "Cuti 800/12/BKPSDM/2026")  # at once
    assert day_status(ledger, "bkpsdm", LIN) == ("absent", "")
    listing = siti.get("/aturan/keterangan/?month=2026-02")
    assert "rekap langsung menghitungnya" in listing.text and "800/12/BKPSDM/2026" in listing.text
    assert "Alex Lacamoire" in listing.text and "Hapus" in listing.text
    assert "Alex Lacamoire" not in siti.get("/aturan/keterangan/?month=2026-03").text
    assert "Alex Lacamoire" in siti.get(f"/aturan/keterangan/?month=&nip={ALEX}").text
    assert "Alex Lacamoire" not in siti.get(f"/aturan/keterangan/?month=&nip={LIN}").text
    again = post(siti, page, "/aturan/keterangan/tambah/", **good)
    assert again.status == 409 and "Sudah ada keterangan Cuti" in again.text
    assert log_messages(ledger, "excused") == ["ditambahkan: Cuti 2026-02-04 s.d. 2026-02-05, 800/12/BKPSDM/2026"]

    dewi = logged_in(site, "dewi")  # disdik: Alex is not hers
    assert "Alex Lacamoire" not in dewi.get("/aturan/keterangan/?month=2026-02").text
    target = {"nip": ALEX, "start": "2026-02-04", "kind": "leave"}
    assert post(dewi, page, "/aturan/keterangan/hapus/", **target).status == 404
    assert post(dewi, page, "/aturan/keterangan/hapus/", **target, confirm="yes", reason="x").status == 404
    assert post(siti, page, "/aturan/keterangan/hapus/", **{**target, "kind": "sick"}).status == 404

    ask = post(siti, page, "/aturan/keterangan/hapus/", **target)
    assert ask.status == 200 and "Hapus keterangan?" in ask.text and "800/12/BKPSDM/2026" in ask.text
    assert ledger.one("SELECT COUNT(*) FROM excused") == (1,)
    no_reason = post(siti, page, "/aturan/keterangan/hapus/", **target, confirm="yes", reason=" ")
    assert no_reason.status == 400 and "Alasan" in no_reason.text
    gone = post(siti, page, "/aturan/keterangan/hapus/", **target, confirm="yes", reason="cuti dibatalkan")
    assert gone.status == 302 and ledger.one("SELECT COUNT(*) FROM excused") == (0,)
    assert day_status(ledger, "bkpsdm", ALEX) == ("absent", "")
    assert log_messages(ledger, "excused")[1].startswith("dihapus: cuti dibatalkan (keterangan Cuti 2026-02-04 "
                                                         "s.d. 2026-02-05, 800/12/BKPSDM/2026, dicatat web siti")
    admin = logged_in(site, "admin")
    assert "cuti dibatalkan" in admin.get("/aturan/keterangan/").text  # the history, for admins
    assert "cuti dibatalkan" not in siti.get("/aturan/keterangan/").text
    # an admin may enter anyone's: Obama (disdik) on a Saturday of his six-day office
    assert post(admin, page, "/aturan/keterangan/tambah/", nip=OBAMA, start="2026-02-07", end="",
                kind="dinas", reference="ST/1").status == 302
    assert day_status(ledger, "disdik", OBAMA, date(2026, 2, 7)) == ("excused", "Dinas (surat tugas) ST/1")


def test_a_day_off_added_on_the_web_makes_the_day_off_and_asks_for_a_schedule_push(site: Site) -> None:
    ledger = site.ledger
    admin = logged_in(site, "admin")
    page = "/aturan/libur/?office=bkpsdm"
    shown = admin.get(page)
    assert shown.status == 200 and "Tahun Baru Imlek" in shown.text and "Cuti bersama Imlek" in shown.text
    assert 'id="push-needed"' in shown.text  # kiosk-1 never reported a schedule
    for change, status, message in (({"date": "2026-02-30"}, 400, "tanggal 2026-02-30 tidak ada"),
                                    ({"date": "besok"}, 400, "TTTT-BB-HH"),
                                    ({"kind": "weekend"}, 400, "libur nasional atau cuti bersama"),
                                    ({"name": ""}, 400, "Nama: wajib diisi"),
                                    ({"date": "2026-02-17"}, 409,
                                     "2026-02-17 sudah Libur nasional (Tahun Baru Imlek)")):
        form = {"office": "bkpsdm", "action": "add", "date": "2026-02-04", "kind": "holiday",
                "name": "Libur daerah", **change}
        reply = post(admin, page, "/aturan/libur/", **form)
        assert reply.status == status and message in reply.text, (change, reply.status, reply.text[-1500:])
    assert day_status(ledger, "bkpsdm", ALEX) == ("absent", "")
    done = post(admin, page, "/aturan/libur/", office="bkpsdm", action="add", date="2026-02-04",
                kind="collective_leave", name="Libur daerah")
    assert done.status == 302 and done.headers["Location"] == "/aturan/libur/?office=bkpsdm"
    assert day_status(ledger, "bkpsdm", ALEX) == ("off", "Libur daerah")
    assert day_status(ledger, "disdik", OBAMA) == ("absent", "")  # another office's day is not
    after = admin.get(page)
    assert "perlu kiriman jadwal" in after.text and 'id="push"' in after.text, after.text
    assert "Cuti bersama 2026-02-04 (Libur daerah) ditambahkan di bkpsdm" in after.text
    assert date(2026, 2, 4) in distribute.schedule_of_office(ledger, "bkpsdm")[0].holidays
    # this site has no signing key: the button says so instead of failing
    push = post(admin, page, "/aturan/libur/kirim/", office="bkpsdm")
    assert push.status == 503 and "kunci penandatangan server belum diatur" in push.text, push.text
    removed = post(admin, page, "/aturan/libur/", office="bkpsdm", action="remove", date="2026-02-04")
    assert removed.status == 302 and day_status(ledger, "bkpsdm", ALEX) == ("absent", "")
    assert log_messages(ledger, "officedayoff") == ["ditambahkan: Cuti bersama 2026-02-04 Libur daerah",
                                                    "dihapus: Cuti bersama 2026-02-04 Libur daerah"]


def test_days_off_added_on_the_web_survive_a_load_of_the_rules_file(site: Site) -> None:
    ledger = site.ledger
    admin = logged_in(site, "admin")
    page = "/aturan/libur/?office=bkpsdm"
    for day, name in (("2026-02-04", "Libur daerah"), ("2026-02-05", "Hari jadi kabupaten")):
        assert post(admin, page, "/aturan/libur/", office="bkpsdm", action="add", date=day, kind="holiday",
                    name=name).status == 302
    sources = "SELECT day, source FROM office_days_off WHERE office = 'bkpsdm' ORDER BY day"
    assert ledger.rows(sources) == [("2026-02-04", "web"), ("2026-02-05", "web"), ("2026-02-16", "rules"),
                                    ("2026-02-17", "rules")]
    # the rules file now names 2026-02-05 itself (and no longer the collective leave of 2026-02-16)
    rules = site.config.parent / "rules.toml"
    rules.write_text(rules.read_text()
                     .replace('holidays = [{ date = 2026-02-17, name = "Tahun Baru Imlek" }]',
                              'holidays = [{ date = 2026-02-17, name = "Tahun Baru Imlek" }, '
                              '{ date = 2026-02-05, name = "HUT Kabupaten" }]')
                     .replace('collective_leave = [{ date = 2026-02-16, name = "Cuti bersama Imlek" }]\n', ""))
    config = site.config.with_name("load.toml")
    config.write_text(f'[database]\nurl = "{site.url}"\n[rules]\nfile = "rules.toml"\n')
    assert main(["load", "--config", str(config)]) == 0
    # the web's day is kept; where the file names a web day, the file's row replaces it (one row, source rules)
    assert ledger.rows(sources) == [("2026-02-04", "web"), ("2026-02-05", "rules"), ("2026-02-17", "rules")]
    assert day_status(ledger, "bkpsdm", ALEX) == ("off", "Libur daerah")
    assert day_status(ledger, "bkpsdm", ALEX, date(2026, 2, 5)) == ("off", "HUT Kabupaten")
    assert day_status(ledger, "bkpsdm", ALEX, date(2026, 2, 16)) != ("off", "Cuti bersama Imlek")
    assert date(2026, 2, 4) in distribute.schedule_of_office(ledger, "bkpsdm")[0].holidays
    assert main(["load", "--config", str(config)]) == 0  # and again: nothing changes
    assert ledger.rows(sources) == [("2026-02-04", "web"), ("2026-02-05", "rules"), ("2026-02-17", "rules")]


def test_the_push_button_sends_the_schedule_through_the_broker(tmp_path: Path) -> None:
    from broker import Broker, available
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if not available():
        pytest.skip("mosquitto is not installed")
    with database("sqlite", tmp_path) as url, Ledger(url) as ledger:
        maker = make_site(url, ledger, tmp_path)
        site = next(maker)
        try:
            key = tmp_path / "central.pem"
            key.write_bytes(Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
            key.chmod(0o600)
            with Broker(tmp_path / "broker") as broker:
                # "port=" without spaces: web_server() replaces the lines "port = ..." with the web's own
                site.config.write_text(site.config.read_text() + f'[broker]\nhost = "127.0.0.1"\nport={broker.port}\n'
                                       f'[signing]\nkey_file = "{key}"\n')
                with web_server(site.config) as server:
                    admin = Client(server.port)
                    assert admin.login("admin").status == 302
                    done = post(admin, "/aturan/libur/?office=bkpsdm", "/aturan/libur/kirim/", office="bkpsdm")
                    assert done.status == 302, done.text
                    page = admin.get("/aturan/libur/?office=bkpsdm").text
                    version = distribute.schedule_of_office(ledger, "bkpsdm")[2]
                    assert f"Jadwal {version} dikirim ke 1 kios kantor bkpsdm" in page, page
                    assert ledger.one("SELECT last_version FROM device_commands WHERE device_id = 'kiosk-1'") == (1,)
        finally:
            maker.close()


def test_the_kiosk_page_lists_a_lagging_kiosk(site: Site) -> None:
    ledger = site.ledger
    current = distribute.schedule_of_office(ledger, "disdik")[2]
    with ledger.transaction():
        ledger.execute("INSERT INTO gallery_versions (office, version, sha256, created_at, published_at) VALUES "
                       "('bkpsdm', '2', 'x', '2026-02-01T00:00:00+00:00', '2026-02-01T00:00:00+00:00'), "
                       "('disdik', '1', 'y', '2026-02-01T00:00:00+00:00', '2026-02-01T00:00:00+00:00')")
        ledger.execute("UPDATE devices SET gallery_version = '1', gallery_office = 'bkpsdm' WHERE device_id = "
                       "'kiosk-1'")
        ledger.execute("INSERT INTO devices (device_id, office, revoked, gallery_version, updated_at, "
                       "gallery_office) VALUES ('kiosk-2', 'disdik', 0, '1', '2026-02-01T00:00:00+00:00', 'disdik')")
        for seq, (device, schedule) in enumerate((("kiosk-1", "s-old"), ("kiosk-2", current)), 1000):
            ledger.execute(
                "INSERT INTO events (device_id, event_id, seq, type, boot_id, mono_ns, device_utc, time_ms, "
                "time_source, evidence_ok, payload, received_at) VALUES (?, ?, ?, 'status', 'b', 1, "
                "'2026-02-04T00:00:00Z', 1770163200000, 'device', 1, ?, '2026-02-04T00:00:01+00:00')",
                (device, f"status-{seq}", seq, json.dumps({"schedule_version": schedule})))
            ledger.set_running(device, seq, "1", {"kiosk-1": "bkpsdm", "kiosk-2": "disdik"}[device], schedule)
        ledger.set_selftest("kiosk-1", 1000, "2026-02-04T00:00:00.000Z", {
            "result": "failed", "failed": ["camera", "broker"], "skipped": ["gpio"], "report_sha256": "b" * 64,
            "kiosk_version": "0.9.0", "cpu_ms_per_frame": "11.5"})
    assert logged_in(site, "siti").get("/aturan/kios/").status == 403
    page = logged_in(site, "admin").get("/aturan/kios/")
    assert page.status == 200 and "1 kios tertinggal" in page.text
    rows = dict(re.findall(r'<tr id="kiosk-([\w-]+)"(.*?)</tr>', page.text, re.S))
    assert 'class="note"' in rows["kiosk-1"] and "tertinggal" in rows["kiosk-1"]
    assert "bkpsdm v1" in rows["kiosk-1"] and "v2" in rows["kiosk-1"] and "berbeda dari aturan sekarang" in rows[
        "kiosk-1"] and "s-old" in rows["kiosk-1"]
    assert 'class="note"' not in rows["kiosk-2"] and rows["kiosk-2"].count("terkini") == 2 and current in rows[
        "kiosk-2"]
    assert "<strong>gagal: camera, broker</strong>; dilewati: gpio; 11.5 ms CPU/bingkai" in rows["kiosk-1"]
    assert "2026-02-04T00:00:00.000Z (jam kios), versi 0.9.0" in rows["kiosk-1"]
    assert '<td class="selftest">-</td>' in rows["kiosk-2"], "never self-tested"


def office_today() -> date:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    return datetime.now(ZoneInfo("Asia/Makassar")).date()


def week_form(valid_from: date, normal: tuple[str, str], ramadan: tuple[str, str],
              days: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri")) -> dict[str, str]:
    form = {"office": "bkpsdm", "action": "add", "valid_from": valid_from.isoformat()}
    for day in days:
        for key, (start, end) in (("hours", normal), ("ramadan_hours", ramadan)):
            form[f"{key}_{day}_start"], form[f"{key}_{day}_end"] = start, end
    return form


def test_working_hours_and_ramadan_change_from_a_day_on_on_the_web(site: Site) -> None:
    from datetime import time, timedelta

    from kiosk_central.rules import read_schedule, rule_versions

    ledger = site.ledger
    page = "/aturan/jam/?office=bkpsdm"
    assert logged_in(site, "siti").get(page).status == 403
    admin = logged_in(site, "admin")
    shown = admin.get(page)
    assert shown.status == 200 and 'id="hours-current"' in shown.text and "07:30 - 16:00" in shown.text
    assert 'value="07:30"' in shown.text, "the form starts from the hours in force"
    today = office_today()
    later = today + timedelta(days=14)
    # every mistake at once; a day before this month is refused
    wrong = week_form(today.replace(day=1) - timedelta(days=1), ("08:00", "16:00"), ("08:00", "15:00"))
    wrong |= {"hours_mon_end": "", "hours_tue_start": "7.3o", "hours_wed_end": "07:00", "ramadan_hours_sat_start":
              "08:00", "ramadan_hours_sat_end": "12:00"}
    reply = post(admin, page, "/aturan/jam/", **wrong)
    assert reply.status == 400, reply.status
    for message in (f"paling awal {today.replace(day=1)}", "Jam biasa Senin: isi jam masuk dan jam pulang",
                    "Jam biasa Selasa: tulis jam sebagai JJ:MM", "Jam biasa Rabu: jam pulang (07:00) harus sesudah"):
        assert message in reply.text, (message, reply.text[-2000:])
    reply = post(admin, page, "/aturan/jam/", **week_form(later, ("08:00", "16:00"), ("08:00", "15:00"),
                                                          ("mon", "tue")) | {"ramadan_hours_tue_start": ""})
    assert reply.status == 400 and "Jam biasa Selasa" not in reply.text and "Jam Ramadan Selasa" in reply.text
    reply = post(admin, page, "/aturan/jam/", **week_form(later, ("08:00", "16:00"), ("09:00", "15:00"))
                 | {"ramadan_hours_fri_start": "", "ramadan_hours_fri_end": ""})
    assert reply.status == 400 and "hari kerja yang sama dengan jam biasa (berbeda: Jumat)" in reply.text
    # new hours from `later`: today keeps the old ones (and so does every recap before `later`)
    done = post(admin, page, "/aturan/jam/", **week_form(later, ("08:00", "16:00"), ("09:00", "15:00")))
    assert done.status == 302 and done.headers["Location"] == "/aturan/jam/?office=bkpsdm", done.text
    schedule = read_schedule(ledger, "bkpsdm")
    monday = later + timedelta(days=-later.weekday() + 7)
    before = today - timedelta(days=today.weekday() + 7)  # a Monday before
    assert schedule.hours_on(monday) == (time(8, 0), time(16, 0))
    assert schedule.hours_on(before) == (time(7, 30), time(16, 0))
    assert schedule.hours_in_force(later).get((False, "sat")) is None
    versions = rule_versions(ledger, "hours", "bkpsdm")
    assert [(v.valid_from, v.source, v.entered_by) for v in versions][1:] == [(later, "web", "web admin")]
    assert f"Jam kerja baru kantor bkpsdm berlaku mulai {later}" in admin.get(page).text
    again = post(admin, page, "/aturan/jam/", **week_form(later, ("08:00", "16:00"), ("09:00", "15:00")))
    assert again.status == 409 and "sama dengan yang berlaku" in again.text
    # a version that started is not deleted (add another instead); one that has not is
    first = versions[0].valid_from.isoformat()
    refused = post(admin, page, "/aturan/jam/", office="bkpsdm", action="remove", valid_from=first)
    assert refused.status == 409 and "tidak dapat dihapus" in refused.text
    removed = post(admin, page, "/aturan/jam/", office="bkpsdm", action="remove", valid_from=later.isoformat())
    assert removed.status == 302 and len(rule_versions(ledger, "hours", "bkpsdm")) == 1
    # Ramadan ranges: added, an overlap refused, removed
    start, end = date(today.year + 1, 2, 8), date(today.year + 1, 3, 9)
    assert post(admin, page, "/aturan/jam/", office="bkpsdm", action="ramadan_add", start=start.isoformat(),
                end=end.isoformat()).status == 302
    assert read_schedule(ledger, "bkpsdm").is_ramadan(start + timedelta(days=3))
    overlap = post(admin, page, "/aturan/jam/", office="bkpsdm", action="ramadan_add",
                   start=(end - timedelta(days=2)).isoformat(), end=end.isoformat())
    assert overlap.status == 409 and "bertumpang tindih" in overlap.text
    assert post(admin, page, "/aturan/jam/", office="bkpsdm", action="ramadan_add", start="2027-03-01",
                end="2027-05-01").status == 400
    assert post(admin, page, "/aturan/jam/", office="bkpsdm", action="ramadan_remove",
                start=start.isoformat()).status == 302
    assert not read_schedule(ledger, "bkpsdm").is_ramadan(start + timedelta(days=3))
    assert log_messages(ledger, "officehoursversion")[1:] == [f"dihapus: jam kerja mulai {later}"]
    assert log_messages(ledger, "officehoursversion")[0].startswith(f"jam kerja baru mulai {later}: ")
    assert log_messages(ledger, "officeramadan") == [f"ditambahkan: Ramadan {start} s.d. {end}",
                                                     f"dihapus: Ramadan {start} s.d. {end}"]


def test_the_deduction_table_changes_from_a_day_on_on_the_web(site: Site) -> None:
    from datetime import timedelta
    from decimal import Decimal

    from kiosk_central.rules import read_deductions

    ledger = site.ledger
    page = "/aturan/potongan/"
    assert logged_in(site, "siti").get(page).status == 403
    admin = logged_in(site, "admin")
    shown = admin.get(page)
    assert shown.status == 200 and 'id="deductions-current"' in shown.text and 'value="0,5"' in shown.text
    today = office_today()
    next_month = (today.replace(day=28) + timedelta(days=4)).replace(day=1)
    form = {"action": "add", "valid_from": next_month.isoformat(), "TL1_to": "30", "TL2_to": "60", "TL3_to": "90",
            "TL1_percent": "0,75", "TL2_percent": "1", "TL3_percent": "1,25", "TL4_percent": "1,5",
            "PSW1_to": "30", "PSW2_to": "60", "PSW3_to": "90", "PSW1_percent": "0,5", "PSW2_percent": "1",
            "PSW3_percent": "1,25", "PSW4_percent": "1,5", "missing_check_in": "TL4", "missing_check_out": "PSW4",
            "absent_percent": "3", "monthly_cap_percent": "100"}
    reply = post(admin, page, page, **form | {"TL1_to": "abc", "PSW2_to": "20", "TL2_percent": "x",
                                              "absent_percent": "101", "missing_check_in": "PSW1"})
    assert reply.status == 400
    for message in ("Terlambat TL1: menit terakhir harus bilangan bulat lebih dari 0",
                    "Pulang cepat PSW2: menit terakhir harus bilangan bulat lebih dari 30",
                    "Terlambat TL2: tulis persen", "Tidak masuk tanpa keterangan: paling banyak 100",
                    "Tidak absen masuk: pilih salah satu dari TL1, TL2, TL3, TL4"):
        assert message in reply.text, (message, reply.text[-2000:])
    done = post(admin, page, page, **form)
    assert done.status == 302, done.text
    tables = read_deductions(ledger)
    assert tables.on(today).band("late", 10) == ("TL1", Decimal("0.5"))
    assert tables.on(next_month).band("late", 10) == ("TL1", Decimal("0.75"))
    assert post(admin, page, page, **form).status == 409
    assert post(admin, page, page, action="remove", valid_from=next_month.isoformat()).status == 302
    assert read_deductions(ledger).on(next_month).band("late", 10) == ("TL1", Decimal("0.5"))
    assert log_messages(ledger, "deductionversion")[1] == f"dihapus: tabel potongan mulai {next_month}"


def test_new_working_hours_in_headless_chromium(tmp_path: Path) -> None:
    """The admin opens an office's hours (prefilled with those in force), gives a day two weeks on and 08:00 starts,
    saves, and sees the new version listed; the recap's hours change from that day only."""
    from datetime import time, timedelta

    from test_web import browser_login, chromium

    from kiosk_central.rules import read_schedule

    with database("sqlite", tmp_path) as url, Ledger(url) as ledger:
        maker = make_site(url, ledger, tmp_path)
        site = next(maker)
        try:
            later = office_today() + timedelta(days=14)
            with chromium(tmp_path) as browser:
                browser_login(browser, site.server.url, "admin")
                browser.go(site.server.url + "/aturan/jam/?office=bkpsdm")
                assert browser.run("return document.getElementById('hours_mon_start').value") == "07:30"
                assert browser.run("return document.getElementById('hours_sat_start').value") == ""
                browser.clear("#valid_from")
                browser.type("#valid_from", later.isoformat())
                for day in ("mon", "tue", "wed", "thu", "fri"):
                    browser.clear(f"#hours_{day}_start")
                    browser.type(f"#hours_{day}_start", "08:00")
                browser.click("#add-hours")
                browser.wait_for("return document.getElementById('done') !== null")
                assert f"berlaku mulai {later}" in browser.text("#done")
                assert later.isoformat() in browser.text("#hours-versions")
            schedule = read_schedule(ledger, "bkpsdm")
            monday = later + timedelta(days=(7 - later.weekday()) % 7)
            assert schedule.hours_on(monday) == (time(8, 0), time(16, 0))
            assert schedule.hours_on(monday - timedelta(days=21)) == (time(7, 30), time(16, 0))
        finally:
            maker.close()
