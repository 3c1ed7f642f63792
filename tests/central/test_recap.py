"""Rules as data and the recaps, against months computed by hand (both backends).

February 2026 in office bkpsdm (WITA; Mon-Thu 07:30-16:00, Fri 07:30-16:30; Ramadan from the 19th, 08:00-15:00 and
Fri 08:00-15:30; the 16th is collective leave, the 17th a holiday): 20 weekdays, 18 working days. Office disdik works
six days (Mon-Sat 07:30-14:00): 24 working days. The rules here charge 5 % per absent day (domain.md: "others use
2.5, 4 or 5 %"), so that a month of absence reaches the 100 % cap.

Alex's month, day by day (deduction in %):
  02 Mon masuk 07:45, pulang 16:05      15 min late -> TL1                       0.5
  03 Tue masuk 07:20, no pulang          PSW4                                    1.5
  04 Wed masuk 09:10, pulang 15:00       100 late -> TL4 1.5; 60 early -> PSW2 1  2.5
  05 Thu masuk 08:01, pulang 16:00       31 late -> TL2                          1.0
  06 Fri masuk 07:30, pulang 16:29       1 early (Friday ends 16:30) -> PSW1     0.5
  09 Mon pulang 16:10 only               no check-in -> TL4                      1.5
  10 Tue duty letter (excused)                                                    0
  11 Wed masuk 07:30:59, pulang 16:00    on time (to the minute)                 0
  12 Thu an unsynced punch, no anchor    not settled: menunggu verifikasi        0 (not yet)
  13 Fri masuk 09:01, pulang 16:30       91 late -> TL4                          1.5
  16 Mon masuk 07:00 (collective leave)  not a working day                       0
  18 Wed masuk 07:30, pulang 16:00                                                0
  19 Thu masuk 07:50, pulang 15:00       Ramadan: start 08:00, end 15:00         0
  20 Fri masuk 08:45, pulang 15:30       Ramadan: 45 late -> TL2                 1.0
  23-27  nothing                         5 absent days                           25
  total 35.0; 11 present, 1 excused, 5 absent, 1 pending.
Lin: sick on the 24th (excused), nothing else: 16 absent days = 80 %. A manual entry on the 2nd at 07:35 waits for
HR: that day is "menunggu verifikasi", not an absence; once accepted it is a check-in 5 min late (TL1 0.5) without
check-out (PSW4 1.5): 82 %.
Obama (disdik): 24 absent days = 120 %, capped at 100 %.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from central_support import ALEX, CENTRAL_KEY, LIN, OBAMA, RULES, Device, database, wita, write_key

from kiosk_central import recap as recaps
from kiosk_central.cli import load_all, main
from kiosk_central.ingest import Ingestor
from kiosk_central.rules import load_excused, load_rules
from kiosk_central.settings import load_central_config
from kiosk_central.store import Ledger
from kiosk_contract import schema
from kiosk_contract.errors import ConfigError

ALEX_PUNCHES = [
    ("02", "masuk", "07:45"), ("02", "pulang", "16:05"),
    ("03", "masuk", "07:20"),
    ("04", "masuk", "09:10"), ("04", "pulang", "15:00"),
    ("05", "masuk", "08:01"), ("05", "pulang", "16:00"),
    ("06", "masuk", "07:30"), ("06", "pulang", "16:29"),
    ("09", "pulang", "16:10"),
    ("11", "masuk", "07:30:59"), ("11", "pulang", "16:00"),
    ("13", "masuk", "09:01"), ("13", "pulang", "16:30"),
    ("16", "masuk", "07:00"),
    ("18", "masuk", "07:30"), ("18", "pulang", "16:00"),
    ("19", "masuk", "07:50"), ("19", "pulang", "15:00"),
    ("20", "masuk", "08:45"), ("20", "pulang", "15:30"),
]


@pytest.fixture(params=["sqlite", "postgresql"])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Path, Ledger, Any, Device]]:
    """central.toml with the rules, roster and excused files loaded, and February's events ingested."""
    with database(request.param, tmp_path) as url:
        key, _ = write_key(tmp_path / "keys", "kiosk-1")
        (tmp_path / "rules.toml").write_text(RULES.replace("absent_percent = 3.0", "absent_percent = 5.0"))
        (tmp_path / "employees.csv").write_text(
            f"nip,name,unit\n{ALEX},Alex Lacamoire,bkpsdm\n{LIN},Lin & Co,bkpsdm\n{OBAMA},Barack Obama,disdik\n"
        )
        (tmp_path / "excused.csv").write_text(
            f"nip,start,end,kind,reference\n{ALEX},2026-02-10,2026-02-10,dinas,800/12/2026\n"
            f"{LIN},2026-02-24,2026-02-24,sick,Surat dokter\n"
        )
        config = tmp_path / "central.toml"
        config.write_text(
            f'[database]\nurl = "{url}"\n[rules]\nfile = "rules.toml"\nemployees = "employees.csv"\n'
            'excused = "excused.csv"\n[[devices]]\nid = "kiosk-1"\noffice = "bkpsdm"\n'
            'public_keys = ["keys/kiosk-1.pub"]\n'
        )
        assert main(["load", "--config", str(config), "--entered-by", "hr-test"]) == 0
        with Ledger(url) as ledger:
            from kiosk_central.ingest import read_registry

            ingest = Ingestor(ledger, read_registry(ledger), signing_key=CENTRAL_KEY)
            device = Device("kiosk-1", key)
            messages = [device.punch(ALEX, kind, wita(f"2026-02-{day}", hhmm))[:2] for day, kind, hhmm in ALEX_PUNCHES]
            messages.append(device.punch(ALEX, "masuk", wita("2026-02-12", "07:15"), synced=False)[:2])
            review = schema.build_review(device.stamp(wita("2026-02-02", "07:35")), reason="manual_entry", nip=LIN,
                                         kind="masuk", decision=schema.manual_decision())
            messages.append(device.seal(review)[:2])
            ingest.handle_batch(messages)
            assert ingest.snapshot()["stored"] == len(messages)
            yield config, ledger, review, device


def month(ledger: Ledger, office: str) -> dict[str, recaps.MonthLine]:
    recap = recaps.build_recap(ledger, office, *recaps.month_range("2026-02"))
    return {m.nip: m for m in recap.months}


def test_the_monthly_recap_matches_the_hand_computed_month(setup: Any) -> None:
    _, ledger, _, _ = setup
    alex = month(ledger, "bkpsdm")[ALEX]
    assert (alex.work_days, alex.present, alex.excused, alex.absent, alex.pending) == (18, 11, 1, 5, 1)
    assert dict(alex.bands) == {"TL1": 1, "TL2": 2, "TL4": 3, "PSW1": 1, "PSW2": 1, "PSW4": 1}
    assert str(alex.deduction) == "35.0"
    lin = month(ledger, "bkpsdm")[LIN]
    assert (lin.work_days, lin.present, lin.excused, lin.absent, lin.pending, str(lin.deduction)) == (
        18, 0, 1, 16, 1, "80.0"
    )
    obama = month(ledger, "disdik")[OBAMA]
    assert (obama.work_days, obama.absent, str(obama.deduction_total), str(obama.deduction)) == (
        24, 24, "120.0", "100.0"
    )


def test_the_daily_lines_give_bands_ramadan_and_days_off(setup: Any) -> None:
    _, ledger, _, _ = setup
    recap = recaps.build_recap(ledger, "bkpsdm", *recaps.month_range("2026-02"))
    alex = {d.day.day: d for d in recap.days if d.nip == ALEX}
    wed = alex[4]
    assert (wed.check_in.isoformat(), wed.late_min, wed.late_band) == ("09:10:00", 100, "TL4")  # type: ignore[union-attr]
    assert (wed.check_out.isoformat(), wed.early_min, wed.early_band, str(wed.deduction)) == (  # type: ignore[union-attr]
        "15:00:00", 60, "PSW2", "2.5"
    )
    assert (alex[19].status, alex[19].late_band, alex[19].early_band, alex[19].note) == ("present", None, None,
                                                                                         "Ramadan")
    assert (alex[20].late_min, alex[20].late_band) == (45, "TL2")
    assert (alex[16].status, alex[16].note, alex[17].note) == ("off", "Cuti bersama Imlek", "Tahun Baru Imlek")
    assert (alex[10].status, alex[10].note) == ("excused", "Dinas (surat tugas) 800/12/2026")
    assert (alex[9].late_band, alex[9].note) == ("TL4", "tidak absen masuk")
    assert (alex[12].status, alex[12].note, alex[12].pending, str(alex[12].deduction)) == (
        "pending", "menunggu verifikasi", 1, "0")  # an unanchored punch is not an absence yet
    assert alex[7].status == "off"  # a Saturday in a 5-day office


def test_an_accepted_review_case_counts_and_an_open_one_is_pending(setup: Any) -> None:
    _, ledger, review, _ = setup
    with ledger.transaction():  # what the HR page (part 5) will do
        ledger.execute("UPDATE review_queue SET state = 'accepted', resolved_nip = ?, resolved_kind = 'masuk', "
                       "decided_by = 'hr-1' WHERE event_id = ?", (LIN, review["event_id"]))
    lin = month(ledger, "bkpsdm")[LIN]
    assert (lin.present, lin.absent, lin.pending, dict(lin.bands), str(lin.deduction)) == (
        1, 16, 0, {"TL1": 1, "PSW4": 1}, "82.0")


def test_break_punches_make_a_day_present_and_overtime_is_counted_apart(setup: Any) -> None:
    _, ledger, _, kiosk = setup
    from kiosk_central.ingest import read_registry

    ingest = Ingestor(ledger, read_registry(ledger), signing_key=CENTRAL_KEY)
    punches = [("23", "istirahat_keluar", "12:00"), ("23", "istirahat_masuk", "13:00"),  # no masuk, no pulang
               ("18", "lembur_masuk", "17:00"), ("18", "lembur_pulang", "19:30"),       # 150 min of overtime
               ("20", "lembur_masuk", "16:00")]                                          # never closed
    ingest.handle_batch([kiosk.punch(ALEX, kind, wita(f"2026-02-{d}", hhmm))[:2] for d, kind, hhmm in punches])
    recap = recaps.build_recap(ledger, "bkpsdm", *recaps.month_range("2026-02"))
    alex = {d.day.day: d for d in recap.days if d.nip == ALEX}
    day = alex[23]
    assert (day.status, day.check_in, day.check_out, day.late_band, day.early_band, str(day.deduction)) == (
        "present", None, None, "TL4", "PSW4", "3.0")  # breaks are no check-in or -out
    assert day.note.startswith("hanya absen istirahat, tidak absen masuk, tidak absen pulang")
    assert (alex[18].overtime_min, alex[18].overtime_open, str(alex[18].deduction)) == (150, False, "0")
    assert (alex[20].overtime_min, alex[20].overtime_open, alex[20].late_band) == (0, True, "TL2")
    month_line = {m.nip: m for m in recap.months}[ALEX]
    assert (month_line.present, month_line.absent, month_line.overtime_min, str(month_line.deduction)) == (
        12, 4, 150, "33.0")  # day 23: 5 % absence became 3 % of missing bands


def test_days_after_today_are_not_counted(setup: Any) -> None:
    _, ledger, _, _ = setup
    from datetime import date

    recap = recaps.build_recap(ledger, "bkpsdm", *recaps.month_range("2026-02"), today=date(2026, 2, 3))
    alex = {m.nip: m for m in recap.months}[ALEX]
    assert (alex.work_days, str(alex.deduction)) == (2, "2.0")


def test_rules_changed_from_a_day_on_change_no_recap_of_the_days_before(setup: Any,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """From 9 February bkpsdm starts at 08:00 (Fri too) and an absent day costs 4 %: Alex's 13th (09:01) is 61 min
    late, TL3 1.25 instead of TL4 1.5, and his five absent days cost 20 instead of 25; the 2nd (07:45, TL1) and the
    5th (08:01, TL2) keep the 07:30 start. 35.0 - 0.25 - 5 = 29.75. Ramadan hours are unchanged."""
    from datetime import date, time

    from kiosk_central.rules import read_schedule, rule_versions

    config, ledger, _, _ = setup
    rules = config.parent / "rules.toml"
    rules.write_text(rules.read_text().replace("absent_percent = 5.0", "absent_percent = 4.0").replace(
        'timezone = "Asia/Makassar"\nramadan', 'timezone = "Asia/Makassar"\nhours = [{ days = ["mon", "tue", '
        '"wed", "thu"], start = 08:00:00, end = 16:00:00 }, { days = ["fri"], start = 08:00:00, end = 16:30:00 }]'
        '\nramadan', 1))
    capsys.readouterr()
    assert main(["load", "--config", str(config), "--effective", "2026-02-09"]) == 0
    out = capsys.readouterr()
    assert "changed: office bkpsdm: working hours from 2026-02-09" in out.out
    assert "changed: deduction table from 2026-02-09" in out.out and "changed: office disdik" not in out.out
    assert "a day already past" in out.err
    schedule = read_schedule(ledger, "bkpsdm")
    assert schedule.hours_on(date(2026, 2, 6)) == (time(7, 30), time(16, 30))
    assert schedule.hours_on(date(2026, 2, 13)) == (time(8, 0), time(16, 30))
    days = {d.day.day: d for d in recaps.build_recap(ledger, "bkpsdm", *recaps.month_range("2026-02")).days
            if d.nip == ALEX}
    assert (days[2].late_band, days[5].late_band, days[13].late_band) == ("TL1", "TL2", "TL3")
    assert (str(days[13].deduction), str(days[23].deduction)) == ("1.25", "4.0")
    assert str(month(ledger, "bkpsdm")[ALEX].deduction) == "29.75"
    january = {m.nip: m for m in recaps.build_recap(ledger, "disdik", *recaps.month_range("2026-01")).months}
    assert str(january[OBAMA].deduction_total) == "135.0", "27 working days at 5 %: the table of before 9 February"
    # loading the same file again adds no version (so what HR changed on the web since is kept)
    versions = (len(rule_versions(ledger, "hours", "bkpsdm")), len(rule_versions(ledger, "deductions")))
    assert versions == (2, 2)
    assert main(["load", "--config", str(config), "--effective", "2026-02-20"]) == 0
    assert "changed:" not in capsys.readouterr().out
    assert (len(rule_versions(ledger, "hours", "bkpsdm")), len(rule_versions(ledger, "deductions"))) == versions


def test_days_a_kiosk_reported_lost_events_on_ask_hr_to_check_the_manual_list(setup: Any) -> None:
    """kiosk-2 (bkpsdm) keeps seq 1 (Mon 23 Feb 06:50 WITA) and seq 4 (Wed 25 Feb 12:00) and reported 2-3 lost: Alex's
    absences of the 23rd, 24th and 25th say so (the deduction is not changed: what was lost cannot be known), the
    26th does not, and disdik's recap is not touched."""
    _, ledger, _, _ = setup
    with ledger.transaction():
        ledger.execute("INSERT INTO devices (device_id, office, updated_at) VALUES ('kiosk-2', 'bkpsdm', ?)",
                       ("2026-02-23T00:00:00.000Z",))
        for seq, at in ((1, wita("2026-02-23", "06:50")), (4, wita("2026-02-25", "12:00"))):
            ledger.execute(
                "INSERT INTO events (device_id, event_id, seq, type, boot_id, mono_ns, device_utc, time_ms, "
                "time_source, evidence_ok, payload, received_at) VALUES ('kiosk-2', ?, ?, 'status', 'b', 1, ?, ?, "
                "'device', 1, '{}', ?)", (f"e-{seq}", seq, at.isoformat(), int(at.timestamp() * 1000), at.isoformat()))
        ledger.execute("INSERT INTO reported_losses (device_id, first_seq, last_seq, event_id, alarm_seq, alarm, "
                       "reported_at) VALUES ('kiosk-2', 2, 3, 'e-5', 5, 'outbox_recovered', '2026-02-25T04:00:00Z')")
    recap = recaps.build_recap(ledger, "bkpsdm", *recaps.month_range("2026-02"))
    alex = {d.day.day: d for d in recap.days if d.nip == ALEX}
    for day in (23, 24, 25):
        assert alex[day].status == "absent" and "cek daftar hadir manual (kiosk-2 seq 2-3)" in alex[day].note, day
    assert alex[26].note == "" and str(alex[23].deduction) == "5.0"
    assert str(month(ledger, "bkpsdm")[ALEX].deduction) == "35.0", "the money is not changed by a note"
    disdik = recaps.build_recap(ledger, "disdik", *recaps.month_range("2026-02"))
    assert all("hilang" not in d.note for d in disdik.days)


def test_recap_command_writes_csv_and_html_and_never_overwrites(setup: Any, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    config, _, _, _ = setup
    out = tmp_path / "feb.csv"
    assert main(["recap", "--config", str(config), "--office", "bkpsdm", "--month", "2026-02", "--out", str(out)]) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [(r["nip"], r["deduction_percent"], r["TL4"], r["absent"], r["pending_days"]) for r in rows] == [
        (ALEX, "35.00", "3", "5", "1"), (LIN, "80.00", "0", "16", "1")
    ]
    out.write_text("keep me")
    assert main(["recap", "--config", str(config), "--office", "bkpsdm", "--month", "2026-02", "--out", str(out)]) == 2
    assert out.read_text() == "keep me"
    assert "exists" in capsys.readouterr().err
    assert main(["recap", "--config", str(config), "--office", "bkpsdm", "--date", "2026-02-04"]) == 0
    daily = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["nip"], r["status"], r["late_band"], r["early_band"], r["deduction_percent"]) for r in daily] == [
        (ALEX, "present", "TL4", "PSW2", "2.50"), (LIN, "absent", "", "", "5.00")
    ]
    page = tmp_path / "feb.html"
    assert main(["recap", "--config", str(config), "--office", "bkpsdm", "--month", "2026-02", "--format", "html",
                 "--out", str(page)]) == 0
    text = page.read_text()
    assert "BKPSDM Kabupaten Contoh" in text and "Laporan harian Rabu 04-02-2026" in text
    assert "Lin &amp; Co" in text and "Lin & Co" not in text
    assert "TL4 (100 mnt)" in text and "<script" not in text
    assert main(["recap", "--config", str(config), "--office", "nope", "--month", "2026-02"]) == 2
    assert "office 'nope' is not in the ledger (known: bkpsdm, disdik)" in capsys.readouterr().err


def test_rules_files_with_mistakes_are_reported_with_their_paths(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        "[deductions]\nmissing_check_out = \"PSW9\"\n"
        "[[deductions.late]]\nname = \"TL1\"\nfrom_min = 1\nto_min = 30\npercent = 0.5\n"
        "[[deductions.late]]\nname = \"TL2\"\nfrom_min = 40\nto_min = 0\npercent = 1\n"
        "[[offices]]\ncode = \"a\"\nname = \"A\"\ntimezone = \"Asia/Nowhere\"\n"
        "hours = [{ days = [\"mon\"], start = 07:30:00, end = 16:00:00 },"
        " { days = [\"mon\"], start = 08:00:00, end = 07:00:00 }]\n"
    )
    with pytest.raises(ConfigError) as err:
        load_rules(rules)
    text = str(err.value)
    for expected in ("deductions.late[1].from_min: must be 31", "deductions.missing_check_in: 'TL4'",
                     "deductions.missing_check_out: 'PSW9'", "offices[0].timezone: 'Asia/Nowhere'",
                     "offices[0].hours[1].end: must be after start", "offices[0].hours[1].days: mon already"):
        assert expected in text, text
    excused = tmp_path / "excused.csv"
    excused.write_text(f"nip,start,end,kind,reference\n123,2026-02-01,2026-02-02,duty,x\n"
                       f"{ALEX},2026-02-05,2026-02-01,leave,x\n{ALEX},2026-02-01,2026-02-02,holiday,x\n")
    with pytest.raises(ConfigError) as err:
        load_excused(excused)
    text = str(err.value)
    assert "line 2, nip: '123' is not a NIP: it has 3 digits" in text and "line 3: end 2026-02-01 is before" in text
    assert "line 4: kind 'holiday'" in str(err.value)


def test_the_shipped_examples_load(tmp_path: Path) -> None:
    examples = Path(__file__).resolve().parents[2] / "examples"
    cfg = load_central_config(examples / "central.toml")
    with Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}") as ledger:
        registry = load_all(ledger, cfg)[0]
        assert list(registry) == ["kab-maros-01"]
        assert list(registry["kab-maros-01"].keys) == ["21fe31dfa154a261"]  # the test key of docs/events.md
        recap = recaps.build_recap(ledger, "bkpsdm", *recaps.month_range("2026-02"))
        assert [m.work_days for m in recap.months] == [18, 18]
