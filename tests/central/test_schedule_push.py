"""The punch schedule central pushes: made once from the rules (office hours, Ramadan, days off) by
distribute.office_schedule, checked against the example rules file; planned and pushed per kiosk in signed
install_schedule commands sharing the gallery's command versions; and `schedule status` read from the kiosks' stored
status events. On SQLite and the real PostgreSQL."""

from __future__ import annotations

from datetime import date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from central_support import database, write_key

from kiosk_central import distribute
from kiosk_central.rules import load_rules, read_schedule, rule_versions, save_rules, save_version
from kiosk_central.store import Ledger
from kiosk_contract import signing
from kiosk_contract.commands import parse_command, schedule_of_command
from kiosk_contract.schedule import PunchWindow, punch_kind, schedule_to_data, schedule_version_of

EXAMPLE_RULES = Path(__file__).resolve().parents[2] / "examples" / "central-rules.toml"
WITA = ZoneInfo("Asia/Makassar")
NOW = "2026-11-30T07:00:00+08:00"
MON_THU = ("mon", "tue", "wed", "thu")


def ledger_with_rules(url: str) -> Ledger:
    ledger = Ledger(url)
    ledger.migrate()
    save_rules(ledger, load_rules(EXAMPLE_RULES))
    with ledger.transaction():
        for device, office, revoked in (("kiosk-1", "bkpsdm", 0), ("kiosk-2", "bkpsdm", 0), ("kiosk-3", "disdik", 0),
                                        ("kiosk-4", "bkpsdm", 1)):
            ledger.execute("INSERT INTO devices (device_id, office, revoked, updated_at) VALUES (?, ?, ?, ?)",
                           (device, office, revoked, NOW))
        ledger.advance("kiosk-1", "kantor", 1)
        ledger.advance("kiosk-3", "sekolah", 1)
        ledger.advance("kiosk-4", "kantor", 1)
    return ledger


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_example_rules_give_each_office_its_punch_windows(backend: str, tmp_path: Path) -> None:
    with database(backend, tmp_path) as url:
        ledger = ledger_with_rules(url)
        try:
            bkpsdm = distribute.office_schedule(read_schedule(ledger, "bkpsdm"), date(2026, 11, 30))
            disdik = distribute.office_schedule(read_schedule(ledger, "disdik"), date(2026, 11, 30))
        finally:
            ledger.close()
    # Mon-Thu 07:30-16:00: masuk from 05:00 (2.5 h before) to the minute before the middle of the day (11:45).
    assert bkpsdm.windows == (
        PunchWindow(MON_THU, "masuk", time(5, 0), time(11, 44)),
        PunchWindow(MON_THU, "pulang", time(11, 45), time(23, 0)),
        PunchWindow(("fri",), "masuk", time(5, 0), time(11, 59)),  # Fri 07:30-16:30
        PunchWindow(("fri",), "pulang", time(12, 0), time(23, 0)),
    )
    assert [(r.start, r.end) for r in bkpsdm.ramadan] == [(date(2026, 2, 19), date(2026, 3, 20))]
    assert bkpsdm.ramadan_windows == (  # 08:00-15:00 and Fri 08:00-15:30
        PunchWindow(MON_THU, "masuk", time(5, 30), time(11, 29)),
        PunchWindow(MON_THU, "pulang", time(11, 30), time(23, 0)),
        PunchWindow(("fri",), "masuk", time(5, 30), time(11, 44)),
        PunchWindow(("fri",), "pulang", time(11, 45), time(23, 0)),
    )
    assert bkpsdm.holidays == (date(2026, 2, 16), date(2026, 2, 17), date(2026, 3, 18), date(2026, 3, 19),
                               date(2026, 3, 20)), "holidays and collective leave, in date order"
    # A 6-day unit: Saturday has its windows; no Ramadan ranges, so no Ramadan windows.
    assert disdik.windows[0] == PunchWindow(("mon", "tue", "wed", "thu", "sat"), "masuk", time(5, 0), time(10, 59))
    assert disdik.windows[3] == PunchWindow(("fri",), "pulang", time(9, 30), time(23, 0))  # Fri 07:30-11:30
    assert disdik.ramadan == () and disdik.ramadan_windows == () and disdik.holidays == ()

    def kind(schedule, day: str, hhmm: str) -> str | None:  # type: ignore[no-untyped-def]
        return punch_kind(schedule, datetime.fromisoformat(f"{day}T{hhmm}").replace(tzinfo=WITA))

    assert kind(bkpsdm, "2026-01-05", "09:40") == "masuk", "2 h 10 min late is still a check-in (TL4 centrally)"
    assert kind(bkpsdm, "2026-01-05", "13:00") == "pulang", "3 h early is a check-out (PSW4 centrally), recorded"
    assert kind(bkpsdm, "2026-03-05", "11:35") == "pulang", "Ramadan: the middle of 08:00-15:00 is 11:30"
    assert kind(bkpsdm, "2026-03-18", "07:30") is None, "cuti bersama Nyepi: nobody is expected, nothing recorded"
    assert kind(bkpsdm, "2026-01-10", "07:30") is None, "a Saturday has no hours at bkpsdm"
    assert kind(disdik, "2026-01-10", "07:30") == "masuk", "but has at disdik"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_each_kiosk_gets_its_office_schedule_bound_to_it_and_status_reads_what_it_reports(backend: str,
                                                                                        tmp_path: Path) -> None:
    central, central_pub = write_key(tmp_path, "central")
    keys = signing.load_public_keys([central_pub])
    with database(backend, tmp_path) as url:
        ledger = ledger_with_rules(url)
        try:
            plans = {p.office: p for p in distribute.plan_schedules(ledger)}
            assert {o: (p.devices, p.unaddressed) for o, p in plans.items()} == {
                "bkpsdm": ((("kiosk-1", "kantor"),), ("kiosk-2",)),
                "disdik": ((("kiosk-3", "sekolah"),), ()),
            }, "the revoked kiosk-4 gets nothing; kiosk-2 never published (no topic yet)"
            with pytest.raises(ValueError, match=r"no rules for office\(s\) nowhere"):
                distribute.plan_schedules(ledger, ["nowhere"])
            sent: list[tuple[str, bytes]] = []
            ledger.next_command_version("kiosk-1")  # a gallery push went first: one numbering per kiosk
            report = distribute.push_schedules(ledger, list(plans.values()), central,
                                               lambda t, p: sent.append((t, p)), "presensi/v1")
            assert report[0].endswith("to 1 kiosk(s); not yet connected (push again later): kiosk-2")
            assert [t for t, _ in sent] == ["presensi/v1/kantor/kiosk-1/cmd/set/schedule",
                                          "presensi/v1/sekolah/kiosk-3/cmd/set/schedule"]
            command = parse_command(sent[0][1])
            signing.verify(command, keys)
            assert (command["cmd"], command["target"], command["version"], command["timezone"]) == (
                "install_schedule", {"office": "bkpsdm", "device": "kiosk-1"}, 2, "Asia/Makassar")
            assert schedule_of_command(command, timezone="Asia/Makassar") == plans["bkpsdm"].schedule
            version = schedule_version_of(schedule_to_data(plans["bkpsdm"].schedule), "Asia/Makassar")
            assert command["schedule_version"] == plans["bkpsdm"].version == version
            assert distribute.plan_schedules(ledger, ["bkpsdm"])[0].version == version, "same rules, same version"

            def status_event(device: str, seq: int, schedule_version: str | None) -> None:
                ledger.set_running(device, seq, None, None, schedule_version)  # what the ingest does with one

            with ledger.transaction():
                status_event("kiosk-1", 1, None)
                status_event("kiosk-1", 2, version)  # the latest one counts
                status_event("kiosk-1", 1, None)  # an older one resent late changes nothing
                status_event("kiosk-3", 1, "0123456789abcdef")
            pushes = ledger.rows("SELECT office, version, pushed_by, kiosks FROM schedule_pushes ORDER BY id")
            assert pushes == [("bkpsdm", version, "kiosk-central", 1), ("disdik", plans["disdik"].version,
                                                                        "kiosk-central", 1)]
            state = {k.device: (k.running, k.state) for k in distribute.schedule_status(ledger)}
            assert state == {"kiosk-1": (version, "current"), "kiosk-2": (None, "unknown"),
                             "kiosk-3": ("0123456789abcdef", "differs")}
            # the daily timer's push (--lagging) leaves out the kiosk that runs its office's schedule of today
            lagging = {p.office: [d for d, _ in p.devices] for p in distribute.plan_schedules(ledger,
                                                                                           lagging_only=True)}
            assert lagging == {"bkpsdm": [], "disdik": ["kiosk-3"]}
            # hours that start on a later day change the schedule of that day only: the kiosk lags from then on
            hours = rule_versions(ledger, "hours", "bkpsdm")[0].data
            later = {**hours, "hours": [{**e, "start": "08:00"} for e in hours["hours"]]}
            with ledger.transaction():
                save_version(ledger, "hours", "bkpsdm", later, date(2026, 12, 7), "web", "test")
            today, monday = date(2026, 12, 4), date(2026, 12, 7)
            assert distribute.schedule_of_office(ledger, "bkpsdm", today)[2] == version
            assert distribute.schedule_of_office(ledger, "bkpsdm", monday)[2] != version
            assert {k.device: k.state for k in distribute.schedule_status(ledger, monday)}["kiosk-1"] == "differs"
            assert [d for d, _ in distribute.plan_schedules(ledger, ["bkpsdm"], monday, lagging_only=True)[0]
                    .devices] == ["kiosk-1"]
            with ledger.transaction():
                ledger.execute("DELETE FROM office_hours_versions WHERE valid_from = '2026-12-07'")
            with ledger.transaction():
                status_event("kiosk-1", 3, None)  # its stored schedule was damaged: kiosk.toml's runs
            assert {k.device: k.state for k in distribute.schedule_status(ledger)}["kiosk-1"] == "kiosk.toml"
        finally:
            ledger.close()
