"""The roster with history (issue 14, part 2), on both backends: each recap day is judged by the office the person
belonged to that day; joining and leaving mid-month; someone who left earlier is gone; the import's preview changes
nothing and lists every problem; the migration carries an old ledger's roster over.

February 2026 as in test_recap.py (5 % per absent day). Alex moves from bkpsdm to disdik on Sunday the 15th:

  bkpsdm, 1st-14th, unchanged: 10 working days, 8 present, 1 excused (10th), 1 pending (12th), bands TL1 TL2 TL4 x2
  PSW1 PSW2 PSW4 = 0.5 + 1.5 + 2.5 + 1.0 + 0.5 + 1.5 + 1.5 = 9.0 %.
  disdik (Mon-Sat 07:30-14:00, no Ramadan or holidays), 15th-28th: 12 working days
    16 Mon masuk 07:00, no pulang (no collective leave in disdik)   PSW4  1.5
    17 Tue nothing (no holiday in disdik)                           absent 5
    18 Wed 07:30 - 16:00                                            0
    19 Thu 07:50 - 15:00 (no Ramadan in disdik: start 07:30)        20 late TL1 0.5
    20 Fri 08:45 - 15:30                                            75 late TL3 1.25
    21 Sat, 23-28 Mon-Sat nothing                                   7 absent 35
  = 4 present, 8 absent, 43.25 %.
Kim joins bkpsdm on the 18th (TMT) and never punches: 8 working days (18-20, 23-27), 40 %. Lin leaves after the
13th: 10 working days, the 2nd pending (an open case), 9 absent = 45 %; her sick day on the 24th is after she left.
Obama left on 31 January: he is in no February recap.
"""

from __future__ import annotations

import codecs
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import test_recap
from central_support import ALEX, LIN, OBAMA, database
from test_ingest import fill_old_ledger, make_old_ledger, raw, run

from kiosk_central import recap as recaps
from kiosk_central.cli import main
from kiosk_central.rules import ROSTER_EPOCH, apply_roster, plan_roster, read_assignments
from kiosk_central.store import Ledger
from kiosk_contract.roster import RosterError, parse_roster

setup = test_recap.setup  # the fixture: rules, roster, excuses and February's events, on both backends
KIM = "199203032015032003"
FEB = recaps.month_range("2026-02")


def build(ledger: Ledger, office: str) -> recaps.Recap:
    return recaps.build_recap(ledger, office, *FEB)


def lines_of(recap: recaps.Recap, nip: str) -> dict[int, recaps.DayLine]:
    return {d.day.day: d for d in recap.days if d.nip == nip}


def months_of(recap: recaps.Recap) -> dict[str, recaps.MonthLine]:
    return {m.nip: m for m in recap.months}


def test_a_move_mid_month_splits_the_month_between_the_offices(setup: Any, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    config, ledger, _, _ = setup
    before = build(ledger, "bkpsdm")
    moved = tmp_path / "roster-march.csv"
    moved.write_text(f"nip,name,unit\n{ALEX},Alex Lacamoire,disdik\n{LIN},Lin & Co,bkpsdm\n{OBAMA},Barack Obama,"
                     "disdik\n")
    assert main(["load", "--config", str(config), "--roster", str(moved), "--effective", "2026-02-15"]) == 0
    out = capsys.readouterr().out
    assert f"moved     {ALEX} Alex Lacamoire" in out and "bkpsdm -> disdik from 2026-02-15" in out
    assert "0 new, 0 rejoined, 1 moved, 0 left" in out
    assert [(a.office, a.valid_from, a.valid_to) for a in read_assignments(ledger)[ALEX]] == [
        ("bkpsdm", ROSTER_EPOCH, date(2026, 2, 14)), ("disdik", date(2026, 2, 15), None)]
    assert ledger.employee(ALEX) == ("Alex Lacamoire", "disdik")  # the current office, for the gallery

    after = build(ledger, "bkpsdm")
    old, new = lines_of(before, ALEX), lines_of(after, ALEX)
    assert [new[d] for d in range(1, 15)] == [old[d] for d in range(1, 15)]  # the 1st-14th exactly as before
    assert {new[d].status for d in range(15, 29)} == {"not_employed"}
    assert new[16].note == "di unit disdik" and str(new[16].deduction) == "0"
    alex = months_of(after)[ALEX]
    assert (alex.work_days, alex.present, alex.excused, alex.pending, alex.absent, str(alex.deduction)) == (
        10, 8, 1, 1, 0, "9.0")
    assert months_of(after)[LIN] == months_of(before)[LIN]

    disdik = build(ledger, "disdik")
    there = lines_of(disdik, ALEX)
    assert {there[d].status for d in range(1, 15)} == {"not_employed"} and there[2].note == "di unit bkpsdm"
    assert (there[16].status, there[16].early_band, there[17].status) == ("present", "PSW4", "absent")
    assert (there[19].late_min, there[19].late_band, there[20].late_min, there[20].late_band) == (20, "TL1", 75, "TL3")
    alex = months_of(disdik)[ALEX]
    assert (alex.work_days, alex.present, alex.absent, dict(alex.bands), str(alex.deduction)) == (
        12, 4, 8, {"PSW4": 1, "TL1": 1, "TL3": 1}, "43.25")
    assert str(months_of(disdik)[OBAMA].deduction) == "100.0"  # untouched

    # the daily list of a day names only the people of the office that day
    assert [d.nip for d in recaps.build_recap(ledger, "bkpsdm", date(2026, 2, 20), date(2026, 2, 20)).days] == [LIN]
    assert ALEX in [d.nip for d in recaps.build_recap(ledger, "disdik", date(2026, 2, 20), date(2026, 2, 20)).days]
    # loading the same file again changes nothing
    assert main(["load", "--config", str(config), "--roster", str(moved), "--effective", "2026-02-20"]) == 0
    assert "0 moved, 0 left" in capsys.readouterr().out


def test_joining_and_leaving_mid_month_and_someone_who_left_before(setup: Any, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    config, ledger, _, _ = setup
    roster = tmp_path / "pegawai.csv"  # what Excel in an Indonesian locale saves: BOM, ';', Indonesian headers
    roster.write_bytes(codecs.BOM_UTF8 + (
        "NIP;Nama;Unit Kerja;TMT;Selesai\n"
        f"{ALEX[:8]} {ALEX[8:14]} {ALEX[14]} {ALEX[15:]};Alex Lacamoire;BKPSDM ;;\n"
        f"{LIN};Lin & Co;bkpsdm;;13-02-2026\n"
        f"{OBAMA};Barack Obama;disdik;;31/01/2026\n"
        f"{KIM};Kim Jiwon;bkpsdm;18 Februari 2026;\n").encode())
    assert main(["load", "--config", str(config), "--roster", str(roster), "--effective", "2026-02-01"]) == 0
    out = capsys.readouterr().out
    assert "1 new, 0 rejoined, 0 moved, 2 left" in out and "1 unchanged" in out

    recap = build(ledger, "bkpsdm")
    assert [m.nip for m in recap.months] == [ALEX, KIM, LIN]
    kim, lin = lines_of(recap, KIM), lines_of(recap, LIN)
    assert (kim[17].status, kim[17].note, kim[18].status) == ("not_employed", "belum bergabung", "absent")
    assert (lin[13].status, lin[16].status, lin[24].status, lin[24].note) == ("absent", "not_employed",
                                                                             "not_employed", "sudah keluar")
    months = months_of(recap)
    assert (months[KIM].work_days, months[KIM].absent, str(months[KIM].deduction)) == (8, 8, "40.0")
    assert (months[LIN].work_days, months[LIN].absent, months[LIN].pending, months[LIN].excused,
            str(months[LIN].deduction)) == (10, 9, 1, 0, "45.0")
    assert str(months[ALEX].deduction) == "35.0"  # unchanged
    assert build(ledger, "disdik").months == []  # Obama left before February
    # and a later complete roster without Lin changes nothing more for her: she has left already
    again = tmp_path / "pegawai-2.csv"
    again.write_text(f"nip,name,unit\n{ALEX},Alex Lacamoire,bkpsdm\n{KIM},Kim Jiwon,bkpsdm\n")
    assert main(["load", "--config", str(config), "--roster", str(again), "--preview"]) == 0
    assert "0 left" in capsys.readouterr().out


def test_the_preview_lists_every_problem_at_once_and_changes_nothing(setup: Any, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    config, ledger, _, _ = setup
    roster = tmp_path / "bad.csv"
    roster.write_text("NIP,Nama,Kantor,Kelas jabatan,TMT\n"
                      f"{ALEX},Alex Lacamoire,bkpsd,7,\n"
                      "1980 0101 2005,Tanpa NIP lengkap,bkpsdm,,\n"
                      f"{LIN},Lin & Co,bkpsdm,21,kemarin\n"
                      f"{OBAMA},,disdik,,\n")
    state = ledger.rows("SELECT * FROM employee_assignments ORDER BY id")
    assert main(["load", "--config", str(config), "--roster", str(roster), "--preview"]) == 2
    out = capsys.readouterr().out
    assert "5 problem(s); nothing can be applied" in out
    for expected in ("line 2, Kantor 'bkpsd': unknown office 'bkpsd': did you mean bkpsdm?",
                     "line 3, NIP '1980 0101 2005': '1980 0101 2005' is not a NIP: it has 12 digits",
                     "line 4, Kelas jabatan '21': a kelas jabatan is a whole number 1..17",
                     "line 4, TMT 'kemarin': not a date",
                     f"line 5, Nama '': NIP {OBAMA} has no name"):
        assert expected in out, expected
    assert "left" in out and " 0 left" in out  # rows with problems are not taken as people who left
    assert "preview only: nothing was changed" in out
    assert main(["load", "--config", str(config), "--roster", str(roster)]) == 2  # and not applied either
    assert ledger.rows("SELECT * FROM employee_assignments ORDER BY id") == state


def test_a_plan_is_refused_when_the_roster_changed_since_the_preview(setup: Any) -> None:
    _, ledger, _, _ = setup
    offices = ["bkpsdm", "disdik"]
    found = parse_roster(f"nip,name,unit\n{ALEX},Alex,disdik\n".encode(), "a.csv", units=offices)
    plan = plan_roster(ledger, found, date(2026, 2, 15), complete=False)
    other = plan_roster(ledger, parse_roster(f"nip,name,unit\n{LIN},Lin,disdik\n".encode(), "b.csv",
                                             units=offices), date(2026, 2, 10), complete=False)
    apply_roster(ledger, other, "test")
    with pytest.raises(RosterError, match="changed since this preview"):
        apply_roster(ledger, plan, "test")
    assert ledger.employee(ALEX) == ("Alex Lacamoire", "bkpsdm")


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_migration_carries_an_old_ledgers_roster_over(kind: str, tmp_path: Path) -> None:
    with database(kind, tmp_path) as url:
        make_old_ledger(url)
        fill_old_ledger(url)
        with Ledger(url) as ledger:
            assert ledger.rows("SELECT nip, name, office, position, tpp_class FROM employees") == [
                (ALEX, "Alex", "bkpsdm", None, None)]
            assert ledger.rows("SELECT nip, office, valid_from, valid_to FROM employee_assignments") == [
                (ALEX, "bkpsdm", "1970-01-01", None)]
        with raw(url) as conn:
            assert run(conn, "SELECT COUNT(*) FROM events")[0][0] == 2  # the old ledger's review and status events


def upload(browser: Any, path: str, fields: dict[str, str], name: str, content: bytes) -> Any:
    """A multipart form post through the test client's cookies (its own posts are url-encoded only)."""
    import http.client
    import uuid

    from test_web import Reply

    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
                 "Content-Type: application/octet-stream\r\n\r\n".encode() + content + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    conn = http.client.HTTPConnection("127.0.0.1", browser.port, timeout=30)
    conn.request("POST", path, body, {"Content-Type": f"multipart/form-data; boundary={boundary}",
                                      "Cookie": "; ".join(f"{k}={v}" for k, v in browser.cookies.items())})
    response = conn.getresponse()
    reply = Reply(response.status, response.headers, response.read())
    conn.close()
    return reply


def test_the_hr_roster_page_previews_then_applies_and_the_admin_edits(tmp_path: Path) -> None:
    from test_web import make_site

    with database("sqlite", tmp_path) as url, Ledger(url) as ledger:
        site_maker = make_site(url, ledger, tmp_path)
        site = next(site_maker)
        try:
            reviewer = site.client()
            reviewer.login("siti")
            assert reviewer.get("/roster/").status == 403
            browser = site.client()
            browser.login("admin")
            token = browser.get("/roster/").form_token()
            bad = f"NIP;Nama;Unit kerja\n{ALEX};Alex Lacamoire;disdk\n123;X;bkpsdm\n".encode()
            page = upload(browser, "/roster/", {"csrfmiddlewaretoken": token, "action": "preview",
                                                "effective": "2026-02-15", "partial": "on"}, "pegawai.csv", bad)
            assert page.status == 200 and "2 masalah" in page.text and 'id="apply"' not in page.text
            assert "did you mean disdik?" in page.text and "it has 3 digits" in page.text
            good = f"NIP;Nama;Unit kerja\n{ALEX};Alex Lacamoire;DISDIK\n".encode()
            page = upload(browser, "/roster/", {"csrfmiddlewaretoken": token, "action": "preview",
                                                "effective": "2026-02-15", "partial": "on"}, "pegawai.csv", good)
            assert page.status == 200 and "pindah" in page.text and 'id="apply"' in page.text
            assert ledger.employee(ALEX) == ("Alex Lacamoire", "bkpsdm")  # the preview changed nothing
            import re

            fingerprint = re.search(r'name="fingerprint" value="([0-9a-f]+)"', page.text)
            assert fingerprint is not None
            done = browser.post("/roster/", {"csrfmiddlewaretoken": page.form_token(), "action": "apply",
                                             "fingerprint": fingerprint.group(1)})
            assert done.status == 200 and "Diterapkan: 1 perubahan" in done.text, done.text
            assert ledger.employee(ALEX) == ("Alex Lacamoire", "disdik")
            assert [(a.office, str(a.valid_from)) for a in read_assignments(ledger)[ALEX]] == [
                ("bkpsdm", "1970-01-01"), ("disdik", "2026-02-15")]
            history = ledger.rows("SELECT change_message FROM django_admin_log WHERE object_id = ?", (ALEX,))
            assert history == [("impor pegawai.csv: pindah bkpsdm -> disdik mulai 2026-02-15",)]
            listing = browser.get("/admin/ledger/employee/")
            assert listing.status == 200 and "Alex Lacamoire" in listing.text
            change = browser.get(f"/admin/ledger/employee/{ALEX}/change/")
            assert change.status == 200 and "Mulai (TMT)" in change.text, change.text
            assert re.findall(r'valid_from" value="([0-9-]+)"', change.text) == ["1970-01-01", "2026-02-15"]
        finally:
            site_maker.close()
