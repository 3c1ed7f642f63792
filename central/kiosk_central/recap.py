"""Recaps: the daily attendance list of an office (LH-style) and the monthly recap per employee with the TPP
deduction, and their machine-readable CSV. HR's reports (xlsx, the printable page, CSV for Indonesian Excel) are made
from these in :mod:`kiosk_central.reports`, with the labels and codes defined here.

Only ``attendance`` events count as punches, plus review cases HR accepted (part 5 sets their NIP and kind); an
event whose time could not be corrected (stamped before the clock synced, no anchor yet) does not count until it is.
The day's check-in is its first ``masuk`` and its check-out its last ``pulang``, both in the office's time zone and
taken to the minute as the kiosk's screen shows them: 07:45 against a 07:30 start is 15 minutes late (TL1); leaving
at 15:59 against 16:00 is 1 minute early (PSW1). A working day with no punch and no excuse is an absence.

What is not settled yet is never shown as settled: a day with an open review case naming the person, or an
attendance of theirs still waiting for its time anchor, is "menunggu verifikasi" (``pending``, no deduction yet)
where it would otherwise be an absence, and carries that note where it would cost a missing-punch band. Break
punches (``istirahat_*``) make a day present but are never a check-in or check-out; overtime punches (``lembur_*``)
are paired and counted in minutes, apart from the working day (docs/schedule.md).

Who is in an office's recap, and on which days, is the roster's history (``employee_assignments``): each day of a
person is judged by the office they were assigned to that day. A day on which they belonged to another office, or
had not joined yet, or had left, is ``not_employed`` for this office (no working day, no deduction); someone with no
assignment to the office in the period is not in its recap at all. In the same way each day is judged by the
office's working hours and the deduction table in force on that day (their versions, kiosk_central/rules.py), and a
month's deductions are capped by the table in force on its last day: a change of the rules from a day on changes no
recap of the days before.
"""

from __future__ import annotations

import csv
import io
import zoneinfo
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from kiosk_central.rules import (
    DeductionTable,
    Employee,
    Excuse,
    Member,
    Schedule,
    read_deductions,
    read_excused,
    read_members,
    read_schedule,
)
from kiosk_central.store import Ledger
from kiosk_contract.calendar import DAYS
from kiosk_contract.punch import kinds_meaning

STATUS_LABELS = {
    "present": "Hadir",
    "absent": "Tanpa keterangan",
    "excused": "Dengan keterangan",
    "pending": "Menunggu verifikasi",
    "off": "Libur",
    "future": "-",
    "not_employed": "Bukan pegawai unit ini",
}
STATUS_CODES = {"present": "H", "absent": "TK", "excused": "K", "pending": "MV", "off": "L", "future": "",
                "not_employed": "-"}
PENDING_NOTE = "menunggu verifikasi"
"""One day of one person in a day column of the monthly report; a present day with a band shows the band instead."""
DAY_NAMES = DAYS["id"]
EXCUSE_LABELS = {"duty": "Dinas (surat tugas)", "leave": "Cuti", "sick": "Sakit"}
EXCUSE_CODES = {"duty": "DL", "leave": "C", "sick": "S"}
CATEGORY_LABELS = {"late": "Terlambat", "early": "Pulang cepat"}
"""The deduction table's two band categories (TL and PSW)."""


@dataclass(frozen=True)
class DayLine:
    """One employee on one day."""

    nip: str
    name: str
    day: date
    status: str  # present | absent | excused | pending | off | future | not_employed
    check_in: time | None = None
    check_out: time | None = None
    late_min: int = 0
    late_band: str | None = None
    early_min: int = 0
    early_band: str | None = None
    note: str = ""
    deduction: Decimal = Decimal(0)
    excuse: str | None = None  # duty | leave | sick, on an excused day
    pending: int = 0  # open review cases and unanchored punches of the person that day
    overtime_min: int = 0  # paired lembur_masuk -> lembur_pulang minutes
    overtime_open: bool = False  # a lembur punch without its pair


@dataclass
class MonthLine:
    """One employee's month."""

    nip: str
    name: str
    work_days: int = 0
    present: int = 0
    absent: int = 0
    excused: int = 0
    pending: int = 0  # working days still waiting for a review decision or a time anchor
    overtime_min: int = 0
    bands: Counter[str] = field(default_factory=Counter)
    deduction_total: Decimal = Decimal(0)
    deduction: Decimal = Decimal(0)  # capped


@dataclass(frozen=True)
class Recap:
    office: Schedule
    table: DeductionTable  # in force on ``last`` (its band names head the reports)
    first: date
    last: date
    days: list[DayLine]
    months: list[MonthLine]
    as_of: date | None = None  # days after this one were not counted ("future")


def month_range(month: str) -> tuple[date, date]:
    """``2026-02`` -> (2026-02-01, 2026-02-28); ValueError for anything else."""
    try:
        first = datetime.strptime(month, "%Y-%m").date()
    except ValueError:
        raise ValueError(f"month {month!r} must look like 2026-02") from None
    following = (first.replace(day=28) + timedelta(days=4)).replace(day=1)
    return first, following - timedelta(days=1)


def build_recap(ledger: Ledger, office: str, first: date, last: date, today: date | None = None) -> Recap:
    """Every employee of ``office`` on every day from ``first`` to ``last``, and their totals; days after
    ``today`` (the office's date now, by default) are not counted."""
    schedule = read_schedule(ledger, office)
    tables = read_deductions(ledger)
    zone = zoneinfo.ZoneInfo(schedule.timezone)
    today = today or datetime.now(zone).date()
    members = read_members(ledger, office, first, last)
    nips = [m.nip for m in members]
    punches = _punches(ledger, office, zone, first, last, members)
    waiting = _pending(ledger, office, zone, first, last, members)
    losses = _loss_days(ledger, office, zone, first, last)
    excuses = read_excused(ledger, nips, first, last)
    days: list[DayLine] = []
    months: list[MonthLine] = []
    for member in members:
        person = Employee(member.nip, member.name, office)
        month = MonthLine(person.nip, person.name)
        day = first
        while day <= last:
            if member.here_on(day):
                line = day_line(schedule, tables.on(day), person, day, punches.get((person.nip, day), []),
                                excuses.get(person.nip, []), today, waiting.get((person.nip, day), 0))
            else:  # another office's day, or before joining, or after leaving: not a working day here
                line = DayLine(person.nip, person.name, day, "not_employed", note=member.why_not_here(day))
            if day in losses and (line.status == "absent" or (line.status == "present" and None in (
                    line.check_in, line.check_out))):
                line = replace(line, note=", ".join(n for n in (line.note, losses[day]) if n))
            days.append(line)
            _add(month, line)
            day += timedelta(days=1)
        month.deduction = min(month.deduction_total, tables.on(last).monthly_cap_percent)
        months.append(month)
    days.sort(key=lambda d: (d.day, d.name, d.nip))
    return Recap(schedule, tables.on(last), first, last, days, months, today)


CHECK_IN_KINDS = kinds_meaning("check_in")
CHECK_OUT_KINDS = kinds_meaning("check_out")
BREAK_KINDS = kinds_meaning("break")
OVERTIME_KINDS = kinds_meaning("overtime")
OVERTIME_IN, OVERTIME_OUT = "lembur_masuk", "lembur_pulang"


def day_line(schedule: Schedule, table: DeductionTable, person: Employee, day: date,
             punches: list[tuple[str, time]], excuses: list[Excuse], today: date, pending: int = 0) -> DayLine:
    """The recap of one person's day from their punches (kind, local time to the minute) and the number of things
    of theirs that day still waiting for a review decision or a time anchor."""
    overtime_min, overtime_open = _overtime(punches)
    base = DayLine(person.nip, person.name, day, "off", pending=pending, overtime_min=overtime_min,
                   overtime_open=overtime_open)
    hours = schedule.hours_on(day)
    check_in = min((t for k, t in punches if k in CHECK_IN_KINDS), default=None)
    check_out = max((t for k, t in punches if k in CHECK_OUT_KINDS), default=None)
    if hours is None:
        off = schedule.days_off.get(day)
        return replace(base, check_in=check_in, check_out=check_out, note=off[1] if off else "")
    if day > today:
        return replace(base, status="future")
    excuse = next((e for e in excuses if e.start <= day <= e.end), None)
    if excuse is not None:
        note = f"{EXCUSE_LABELS[excuse.kind]} {excuse.reference}"
        return replace(base, status="excused", check_in=check_in, check_out=check_out, note=note,
                       excuse=excuse.kind)
    on_break = any(k in BREAK_KINDS for k, _ in punches)
    if check_in is None and check_out is None and not on_break:
        if pending:  # not an absence until HR has decided, or the anchor has dated the punch
            return replace(base, status="pending", note=PENDING_NOTE)
        return replace(base, status="absent", deduction=table.absent_percent)
    start, end = hours
    notes = ["hanya absen istirahat"] if check_in is None and check_out is None else []
    late_min, early_min = 0, 0
    if check_in is None:
        late_band: str | None = table.missing_check_in
        notes.append("tidak absen masuk")
    else:
        late_min = max(0, _minutes(check_in) - _minutes(start))
        found = table.band("late", late_min)
        late_band = found[0] if found else None
    if check_out is None:
        early_band: str | None = table.missing_check_out
        notes.append("tidak absen pulang")
    else:
        early_min = max(0, _minutes(end) - _minutes(check_out))
        found = table.band("early", early_min)
        early_band = found[0] if found else None
    deduction = sum((table.named(b) for b in (late_band, early_band) if b is not None), Decimal(0))
    if pending and (check_in is None or check_out is None):
        notes.append(PENDING_NOTE)
    if schedule.is_ramadan(day):
        notes.append("Ramadan")
    return replace(base, status="present", check_in=check_in, check_out=check_out, late_min=late_min,
                   late_band=late_band, early_min=early_min, early_band=early_band, note=", ".join(notes),
                   deduction=deduction)


def _overtime(punches: list[tuple[str, time]]) -> tuple[int, bool]:
    """Minutes of the day's overtime: each lembur_masuk paired with the next lembur_pulang; and whether a punch was
    left without its pair."""
    minutes, opened, unpaired = 0, None, False
    for kind, at in sorted(((k, t) for k, t in punches if k in OVERTIME_KINDS), key=lambda p: p[1]):
        if kind == OVERTIME_IN:
            unpaired = unpaired or opened is not None
            opened = at
        elif opened is None:
            unpaired = True
        else:
            minutes += max(0, _minutes(at) - _minutes(opened))
            opened = None
    return minutes, unpaired or opened is not None


def _minutes(t: time) -> int:
    return t.hour * 60 + t.minute


def _add(month: MonthLine, line: DayLine) -> None:
    month.overtime_min += line.overtime_min
    if line.status in ("off", "future", "not_employed"):
        return
    month.work_days += 1
    if line.status == "present":
        month.present += 1
    elif line.status == "absent":
        month.absent += 1
    elif line.status == "excused":
        month.excused += 1
    elif line.status == "pending":
        month.pending += 1
    for band in (line.late_band, line.early_band):
        if band is not None:
            month.bands[band] += 1
    month.deduction_total += line.deduction


_ASSIGNED = ("SELECT a.nip FROM employee_assignments a WHERE a.office = ? AND a.valid_from <= ? "
             "AND (a.valid_to IS NULL OR a.valid_to >= ?)")
"""The NIPs assigned to an office on some day of a period (office, last, first); each punch is then kept only when
the person belonged to the office on the punch's local day (:meth:`Member.here_on`)."""


def _punches(ledger: Ledger, office: str, zone: zoneinfo.ZoneInfo, first: date, last: date,
             members: list[Member]) -> dict[tuple[str, date], list[tuple[str, time]]]:
    """(nip, local date) -> [(kind, local time to the minute)] of the office's employees, on their days in it."""
    start = int(datetime.combine(first, time(0), zone).timestamp() * 1000)
    end = int(datetime.combine(last + timedelta(days=1), time(0), zone).timestamp() * 1000)
    period = (office, last.isoformat(), first.isoformat())
    rows = ledger.rows(
        f"SELECT e.nip, e.kind, e.time_ms FROM events e WHERE e.nip IN ({_ASSIGNED}) "
        "AND e.type = 'attendance' AND e.time_ms >= ? AND e.time_ms < ? "
        "UNION ALL "
        "SELECT r.resolved_nip, r.resolved_kind, e.time_ms FROM review_queue r "
        "JOIN events e ON e.device_id = r.device_id AND e.event_id = r.event_id "
        f"WHERE r.resolved_nip IN ({_ASSIGNED}) AND r.state = 'accepted' AND e.time_ms >= ? AND e.time_ms < ?",
        (*period, start, end, *period, start, end),
    )
    here = {m.nip: m for m in members}
    found: dict[tuple[str, date], list[tuple[str, time]]] = {}
    for nip, kind, ms in rows:
        if kind is None:
            continue
        local = datetime.fromtimestamp(int(ms) / 1000, zone)
        member = here.get(str(nip))
        if member is None or not member.here_on(local.date()):
            continue
        found.setdefault((str(nip), local.date()), []).append((str(kind), local.time().replace(second=0,
                                                                                              microsecond=0)))
    return found


def _loss_days(ledger: Ledger, office: str, zone: zoneinfo.ZoneInfo, first: date, last: date) -> dict[date, str]:
    """The local days of ``first``..``last`` on which a kiosk of ``office`` may have lost attendance for good: each
    range of seqs a kiosk reported lost (``reported_losses``) spans from the last event it still has before the
    range to the first one after it. On those days an absence or a missing punch carries a note asking HR to check
    the manual list (the deduction is not changed: what was lost cannot be known)."""
    found: dict[date, list[str]] = {}
    for device, lo, hi in ledger.rows(
            "SELECT l.device_id, l.first_seq, l.last_seq FROM reported_losses l JOIN devices d "
            "ON d.device_id = l.device_id WHERE d.office = ? ORDER BY l.device_id, l.first_seq", (office,)):
        before = ledger.one("SELECT time_ms FROM events WHERE device_id = ? AND seq < ? AND time_ms IS NOT NULL "
                            "ORDER BY seq DESC LIMIT 1", (device, lo))
        after = ledger.one("SELECT time_ms FROM events WHERE device_id = ? AND seq > ? AND time_ms IS NOT NULL "
                           "ORDER BY seq LIMIT 1", (device, hi))
        start = datetime.fromtimestamp(int(before[0]) / 1000, zone).date() if before else first
        end = datetime.fromtimestamp(int(after[0]) / 1000, zone).date() if after else last
        day = max(start, first)
        while day <= min(end, last):
            found.setdefault(day, []).append(f"{device} seq {lo}-{hi}" if lo != hi else f"{device} seq {lo}")
            day += timedelta(days=1)
    return {day: f"{LOSS_NOTE} ({'; '.join(which)})" for day, which in found.items()}


LOSS_NOTE = "kios melaporkan data presensi hilang pada hari ini: cek daftar hadir manual"


def _pending(ledger: Ledger, office: str, zone: zoneinfo.ZoneInfo, first: date, last: date,
             members: list[Member]) -> dict[tuple[str, date], int]:
    """(nip, local date) -> how many of the office's employees' things wait on their days in it: open review cases
    naming them (by the time the ledger believes, else the device's clock) and attendance still waiting for its
    time anchor."""
    period = (office, last.isoformat(), first.isoformat())
    rows = ledger.rows(
        "SELECT e.nip, e.time_ms, e.device_utc FROM review_queue r "
        "JOIN events e ON e.device_id = r.device_id AND e.event_id = r.event_id "
        f"WHERE e.nip IN ({_ASSIGNED}) AND r.state = 'open' "
        "UNION ALL "
        f"SELECT e.nip, e.time_ms, e.device_utc FROM events e WHERE e.nip IN ({_ASSIGNED}) "
        "AND e.type = 'attendance' AND e.time_ms IS NULL",
        (*period, *period),
    )
    here = {m.nip: m for m in members}
    found: dict[tuple[str, date], int] = {}
    for nip, ms, device_utc in rows:
        try:
            when = (datetime.fromtimestamp(int(ms) / 1000, zone) if ms is not None
                    else datetime.fromisoformat(str(device_utc).replace("Z", "+00:00")).astimezone(zone))
        except ValueError:
            continue
        member = here.get(str(nip))
        if first <= when.date() <= last and member is not None and member.here_on(when.date()):
            key = (str(nip), when.date())
            found[key] = found.get(key, 0) + 1
    return found


# ---------------------------------------------------------------------------------------------------- CSV


def _pct(value: Decimal) -> str:
    return f"{value:.2f}"


def _hhmm(t: time | None) -> str:
    return "" if t is None else t.strftime("%H:%M")


def _band_names(table: DeductionTable) -> list[str]:
    return [b[0] for b in table.late] + [b[0] for b in table.early]


def monthly_csv(recap: Recap, header: bool = True) -> str:
    """One row per employee: working days, presence, absences, band counts, the deduction (capped).

    Machine-readable on purpose (the default of ``kiosk-central recap``): UTF-8 without BOM, ``,`` separator, ``.``
    decimals, English column keys, bare 18-digit NIPs. ``header=False`` leaves the header out (the next office of
    a file that holds several)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    bands = _band_names(recap.table)
    if header:
        writer.writerow(["office", "month", "nip", "name", "work_days", "present", "absent", "excused", *bands,
                         "deduction_total_percent", "deduction_percent", "pending_days", "overtime_min"])
    for m in recap.months:
        writer.writerow([recap.office.code, recap.first.strftime("%Y-%m"), m.nip, m.name, m.work_days, m.present,
                         m.absent, m.excused, *(m.bands[b] for b in bands), _pct(m.deduction_total),
                         _pct(m.deduction), m.pending, m.overtime_min])
    return out.getvalue()


def daily_csv(recap: Recap, header: bool = True) -> str:
    """One row per employee and day (LH): status, check-in and -out, bands, note, the day's deduction; machine-readable
    like :func:`monthly_csv`."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if header:
        writer.writerow(["office", "date", "nip", "name", "status", "check_in", "check_out", "late_minutes",
                         "late_band", "early_minutes", "early_band", "note", "deduction_percent"])
    for d in recap.days:
        writer.writerow([recap.office.code, d.day.isoformat(), d.nip, d.name, d.status, _hhmm(d.check_in),
                         _hhmm(d.check_out), d.late_min, d.late_band or "", d.early_min, d.early_band or "", d.note,
                         _pct(d.deduction)])
    return out.getvalue()


def monthly_html(recap: Recap) -> str:
    """The printable page of one office (its month, or its daily list when the recap is one day), without a regency
    or signatories: :func:`kiosk_central.reports.printable_html`, which has the options."""
    from kiosk_central import reports  # reports builds on this module

    return reports.printable_html([recap], "day" if recap.first == recap.last else "month", reports.ReportInfo())
