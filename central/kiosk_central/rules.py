"""Rules as data: offices and their working hours, employees, excused absences, and the deduction table.

They come from files (a TOML rules file, the roster CSV, an excused-absences CSV; examples/ has one of each), are
checked with every problem named by file and field, and are stored in the ledger, from which the recaps read them.
The defaults are those of ../shared/docs/domain.md: Perpres 21/2023 hours (37.5 h a week, 07:30 start; Ramadan
32.5 h, 08:00 start), TL1-TL4 and PSW1-PSW4 at 0.5 / 1 / 1.25 / 1.5 %, absence 3 % a day, a monthly cap of 100 %.
"""

from __future__ import annotations

import bisect
import csv
import dataclasses
import hashlib
import json
import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from kiosk_central.store import Ledger, utc_text
from kiosk_contract.errors import ConfigError
from kiosk_contract.nip import NipError, parse_nip
from kiosk_contract.roster import (
    RosterError,
    RosterFile,
    RosterProblem,
    RosterRow,
    problem_lines,
    read_roster_file,
)
from kiosk_contract.schedule import DAYS, Day, RamadanPeriod
from kiosk_contract.settings import TableParser, opt, read_toml

T = TypeVar("T")

EXCUSE_KINDS: tuple[str, ...] = ("duty", "leave", "sick")
EXCUSE_ALIASES = {"dinas": "duty", "surat_tugas": "duty", "cuti": "leave", "sakit": "sick"}

_MON_THU: tuple[Day, ...] = ("mon", "tue", "wed", "thu")


@dataclass(frozen=True)
class Hours:
    """Working hours on some days of the week: lateness is counted from ``start``, early leave up to ``end``."""

    days: tuple[Day, ...] = opt(dataclasses.MISSING, "Days of the week these hours apply to.", min_items=1)
    start: time = opt(dataclasses.MISSING, "Start of work (local time).")
    end: time = opt(dataclasses.MISSING, "End of work (local time), after start.")


@dataclass(frozen=True)
class DayOff:
    """A public holiday or a day of collective leave (cuti bersama): nobody is expected."""

    date: date = opt(dataclasses.MISSING, "The local date.")
    name: str = opt("", "What it is (shown in the recap).")


@dataclass(frozen=True)
class Office:
    """One office: its time zone and schedule. Its working days are the days its ``hours`` name (5 or 6)."""

    code: str = opt(dataclasses.MISSING, "Short code (devices, the roster's unit column and recaps use it).")
    name: str = opt(dataclasses.MISSING, "Full name, printed on the reports.")
    timezone: str = opt("Asia/Makassar", "IANA time zone (WITA Asia/Makassar, WIB Asia/Jakarta, WIT Asia/Jayapura).")
    hours: tuple[Hours, ...] = opt(
        (Hours(_MON_THU, time(7, 30), time(16, 0)), Hours(("fri",), time(7, 30), time(16, 30))),
        "Working hours; a day no entry names is not a working day. Default: Perpres 21/2023, 37.5 h a week.",
    )
    ramadan: tuple[RamadanPeriod, ...] = opt((), "Ramadan date ranges; on these days `ramadan_hours` apply.")
    ramadan_hours: tuple[Hours, ...] = opt(
        (Hours(_MON_THU, time(8, 0), time(15, 0)), Hours(("fri",), time(8, 0), time(15, 30))),
        "Working hours during Ramadan (default 08:00 start, 32.5 h a week).",
    )
    holidays: tuple[DayOff, ...] = opt((), "Public holidays.")
    collective_leave: tuple[DayOff, ...] = opt((), "Collective leave days (cuti bersama).")


@dataclass(frozen=True)
class Band:
    """A lateness or early-leave band: ``from_min`` to ``to_min`` minutes (0 = no upper end) costs ``percent``."""

    name: str = opt(dataclasses.MISSING, "TL1..TL4 or PSW1..PSW4.")
    from_min: int = opt(dataclasses.MISSING, "First minute of the band.", lo=1)
    to_min: int = opt(dataclasses.MISSING, "Last minute of the band (0: and everything above).", lo=0)
    percent: float = opt(dataclasses.MISSING, "TPP deduction in percent.", lo=0, hi=100)


def _bands(prefix: str) -> tuple[Band, ...]:
    return tuple(Band(f"{prefix}{i + 1}", lo, hi, pct) for i, (lo, hi, pct) in
                 enumerate(((1, 30, 0.5), (31, 60, 1.0), (61, 90, 1.25), (91, 0, 1.5))))


@dataclass(frozen=True)
class Deductions:
    """The deduction table (Perbup Kaur 3/2022 and the common ministry pattern by default)."""

    late: tuple[Band, ...] = opt(_bands("TL"), "Lateness bands (TL).")
    early: tuple[Band, ...] = opt(_bands("PSW"), "Early-leave bands (PSW).")
    missing_check_in: str = opt("TL4", "The band of a day with a check-out but no check-in.")
    missing_check_out: str = opt("PSW4", "The band of a day with a check-in but no check-out.")
    absent_percent: float = opt(3.0, "Deduction per working day without attendance or valid reason.", lo=0, hi=100)
    monthly_cap_percent: float = opt(100.0, "Most a month's deductions can add up to.", lo=0, hi=100)


@dataclass(frozen=True)
class RulesFile:
    """The rules TOML: the deduction table and the offices."""

    deductions: Deductions = opt(Deductions(), "The deduction table.")
    offices: tuple[Office, ...] = opt((), "The offices.", min_items=1)


@dataclass(frozen=True)
class Employee:
    nip: str
    name: str
    office: str


@dataclass(frozen=True)
class Excuse:
    """An absence with a valid reason entered by HR: no deduction on these days."""

    nip: str
    start: date
    end: date
    kind: str  # duty | leave | sick
    reference: str  # the letter's number, the doctor's note, ...


def percent(value: float | str) -> Decimal:
    """A percentage as an exact decimal (0.5 stays 0.5, never 0.50000000000000001)."""
    return Decimal(str(value))


# ---------------------------------------------------------------------------------------------------- loading


def load_rules(path: Path) -> RulesFile:
    """Read and check a rules TOML; ConfigError lists every problem with its path."""
    data = read_toml(path, "start from examples/rules.toml")
    parser = TableParser(path.absolute().parent)
    rules: RulesFile = parser.table(RulesFile, data, "")
    if not parser.problems:
        _check_rules(parser, rules)
    if parser.problems:
        raise ConfigError(str(path), parser.problems)
    return rules


def _check_rules(parser: TableParser, rules: RulesFile) -> None:
    d = rules.deductions
    for category, bands in (("late", d.late), ("early", d.early)):
        previous = 0
        for i, band in enumerate(bands):
            where = f"deductions.{category}[{i}]"
            if band.from_min != previous + 1:
                parser.report(f"{where}.from_min", f"must be {previous + 1} (bands follow each other without gaps)")
            if band.to_min == 0 and i != len(bands) - 1:
                parser.report(f"{where}.to_min", "0 (no upper end) is only for the last band")
            if band.to_min != 0 and band.to_min < band.from_min:
                parser.report(f"{where}.to_min", "must not be before from_min")
            previous = band.to_min
        names = [b.name for b in bands]
        if len(set(names)) != len(names):
            parser.report(f"deductions.{category}", "band names must be unique")
    if d.missing_check_in not in [b.name for b in d.late]:
        parser.report("deductions.missing_check_in", f"{d.missing_check_in!r} is not one of the late bands")
    if d.missing_check_out not in [b.name for b in d.early]:
        parser.report("deductions.missing_check_out", f"{d.missing_check_out!r} is not one of the early bands")
    codes: dict[str, int] = {}
    for i, office in enumerate(rules.offices):
        where = f"offices[{i}]"
        if office.code in codes:
            parser.report(f"{where}.code", f"{office.code!r} is already offices[{codes[office.code]}]")
        codes.setdefault(office.code, i)
        try:
            zoneinfo.ZoneInfo(office.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            parser.report(f"{where}.timezone", f"{office.timezone!r} is not an IANA time zone like Asia/Makassar")
        for key in ("hours", "ramadan_hours"):
            seen: set[str] = set()
            for j, hours in enumerate(getattr(office, key)):
                if hours.start >= hours.end:
                    parser.report(f"{where}.{key}[{j}].end", "must be after start")
                for day in hours.days:
                    if day in seen:
                        parser.report(f"{where}.{key}[{j}].days", f"{day} already has hours in an earlier entry")
                    seen.add(day)
        for j, period in enumerate(office.ramadan):
            if period.end < period.start:
                parser.report(f"{where}.ramadan[{j}].end", "must not be before start")


def load_employees(path: Path) -> list[Employee]:
    """The roster file (``nip,name,unit`` or any export :func:`kiosk_contract.roster.parse_roster` reads), its
    ``unit`` being the office code as written (no history: :func:`plan_roster_file` is the load with dates)."""
    try:
        found = read_roster_file(path)
    except RosterError as exc:
        raise ConfigError(str(path), [str(exc)]) from None
    if found.problems:
        raise ConfigError(str(path), problem_lines(found.problems))
    return [Employee(r.nip, r.name, r.unit) for r in found.rows]


def read_csv_rows(path: Path, columns: tuple[str, ...]) -> list[tuple[dict[str, str], int]]:
    """The rows of a small UTF-8 CSV file (BOM allowed) with at least ``columns``: each as (lower-cased keys to
    stripped values, its line number); a missing column, an unreadable or non-UTF-8 file is a ConfigError."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = {c.strip().lower() for c in reader.fieldnames or []}
            missing = set(columns) - header
            if missing:
                raise ConfigError(str(path), [f"missing column(s) {', '.join(sorted(missing))}; "
                                              f"expected {','.join(columns)}"])
            return [({k.strip().lower(): (v or "").strip() for k, v in r.items() if k}, reader.line_num)
                    for r in reader]
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read the file: {exc.strerror or exc}"]) from None
    except (csv.Error, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [f"not a UTF-8 CSV file ({exc})"]) from None


def load_excused(path: Path) -> list[Excuse]:
    """Read ``nip,start,end,kind,reference`` rows (kind: duty/dinas, leave/cuti, sick/sakit); every problem is
    reported with its line number."""
    rows = read_csv_rows(path, ("nip", "start", "end", "kind", "reference"))
    problems: list[str] = []
    found: list[Excuse] = []
    for row, line in rows:
        nip, kind = row["nip"], EXCUSE_ALIASES.get(row["kind"].lower(), row["kind"].lower())
        try:
            start, end = date.fromisoformat(row["start"]), date.fromisoformat(row["end"])
        except ValueError:
            problems.append(f"line {line}: start and end must be dates like 2026-02-03")
            continue
        try:
            nip = parse_nip(nip, f"line {line}, nip")
        except NipError as exc:
            problems.append(str(exc))
            continue
        if kind not in EXCUSE_KINDS:
            problems.append(f"line {line}: kind {row['kind']!r} must be duty (dinas), leave (cuti) or sick (sakit)")
        elif end < start:
            problems.append(f"line {line}: end {end} is before start {start}")
        elif not row["reference"]:
            problems.append(f"line {line}: the reference (letter number, doctor's note) is missing")
        else:
            found.append(Excuse(nip, start, end, kind, row["reference"]))
    if problems:
        raise ConfigError(str(path), problems)
    return found


# ---------------------------------------------------------------------------------------------------- storing


RULES_EPOCH = date(1970, 1, 1)
"""The start of the first version of an office's hours or of the deduction table: "since before the ledger"."""


def hours_data(hours: tuple[Hours, ...], ramadan_hours: tuple[Hours, ...]) -> dict[str, Any]:
    """Working hours as stored in ``office_hours_versions.hours`` (the rules file's shape, times as HH:MM)."""
    return {key: [{"days": list(h.days), "start": h.start.isoformat("minutes"), "end": h.end.isoformat("minutes")}
                  for h in entries] for key, entries in (("hours", hours), ("ramadan_hours", ramadan_hours))}


def hours_by_day(data: dict[str, Any]) -> dict[tuple[bool, str], tuple[time, time]]:
    """Stored hours -> (ramadan, day) -> (start, end)."""
    return {(key == "ramadan_hours", str(day)): (time.fromisoformat(e["start"]), time.fromisoformat(e["end"]))
            for key in ("hours", "ramadan_hours") for e in data.get(key, []) for day in e["days"]}


def deductions_data(d: Deductions) -> dict[str, Any]:
    """The deduction table as stored in ``deduction_versions.table`` (percents as exact decimal text)."""
    data: dict[str, Any] = {category: [{"name": b.name, "from_min": b.from_min, "to_min": b.to_min,
                                        "percent": str(percent(b.percent))} for b in bands]
                            for category, bands in (("late", d.late), ("early", d.early))}
    return data | {"missing_check_in": d.missing_check_in, "missing_check_out": d.missing_check_out,
                   "absent_percent": str(percent(d.absent_percent)),
                   "monthly_cap_percent": str(percent(d.monthly_cap_percent))}


def deduction_table(data: dict[str, Any]) -> DeductionTable:
    """A stored deduction table, ready for the recap."""
    bands = {category: tuple((str(b["name"]), int(b["from_min"]), int(b["to_min"]), Decimal(b["percent"]))
                             for b in data[category]) for category in ("late", "early")}
    return DeductionTable(bands["late"], bands["early"], str(data["missing_check_in"]),
                          str(data["missing_check_out"]), Decimal(data["absent_percent"]),
                          Decimal(data["monthly_cap_percent"]))


VERSIONED = {"hours": ("office_hours_versions", "hours"), "deductions": ("deduction_versions", "deductions")}
"""The rules that change from a day on: (table, JSON column). Hours are per office, the deduction table for all."""


@dataclass(frozen=True)
class RuleVersion:
    """One stored version of an office's hours (``office`` set) or of the deduction table."""

    office: str | None
    valid_from: date
    data: dict[str, Any]
    source: str
    entered_by: str
    entered_at: str


def rule_versions(ledger: Ledger, what: str, office: str | None = None) -> list[RuleVersion]:
    """Every version of ``what`` (``hours`` of ``office``, or ``deductions``), oldest first."""
    table, column = VERSIONED[what]
    where, params = ("WHERE office = ?", (office,)) if what == "hours" else ("", ())
    return [RuleVersion(office, date.fromisoformat(r[0]), json.loads(r[1]), str(r[2]), str(r[3]), str(r[4]))
            for r in ledger.rows(f"SELECT valid_from, {column}, source, entered_by, entered_at FROM {table} "
                                 f"{where} ORDER BY valid_from", params)]


def starting_by(versions: Sequence[tuple[date, T]], day: date) -> T | None:
    """The value of the last ``(start, value)`` pair (oldest first) that starts on or before ``day``."""
    i = bisect.bisect_right([start for start, _ in versions], day)
    return versions[i - 1][1] if i else None


def in_force(versions: list[RuleVersion], day: date) -> RuleVersion | None:
    """The version valid on ``day``: the last one starting on or before it."""
    return starting_by([(v.valid_from, v) for v in versions], day)


def _same(what: str, a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two stored versions say the same (compared as read, so 1.0 and 1.00 percent are the same)."""
    if what == "hours":
        return hours_by_day(a) == hours_by_day(b)
    return deduction_table(a) == deduction_table(b)


def save_version(ledger: Ledger, what: str, office: str | None, data: dict[str, Any], valid_from: date | None,
                 source: str, entered_by: str) -> date | None:
    """Store ``data`` as the version of ``what`` valid from ``valid_from`` (replacing one that starts that very day),
    in the caller's transaction; returns the day it starts, or None when nothing changed.

    A ledger without any version gets it from :data:`RULES_EPOCH`. A version from the rules file (``source``
    ``rules``) is stored only when the file says something else than the file's previous version did, so that loading
    an unchanged file keeps what HR changed on the web since; ``valid_from`` None then means today."""
    versions = rule_versions(ledger, what, office)
    if source == "rules":
        previous = [v for v in versions if v.source == "rules"]
        if previous and _same(what, previous[-1].data, data):
            return None
    start = RULES_EPOCH if not versions else (valid_from or date.today())
    table, column = VERSIONED[what]
    keys = ("office", "valid_from") if what == "hours" else ("valid_from",)
    values = ((office,) if what == "hours" else ()) + (start.isoformat(),)
    ledger.execute(
        f"INSERT INTO {table} ({', '.join(keys)}, {column}, source, entered_by, entered_at) "
        f"VALUES ({', '.join('?' * len(keys))}, ?, ?, ?, ?) ON CONFLICT ({', '.join(keys)}) DO UPDATE SET "
        f"{column} = excluded.{column}, source = excluded.source, entered_by = excluded.entered_by, "
        "entered_at = excluded.entered_at",
        (*values, json.dumps(data, sort_keys=True), source, entered_by, utc_text()))
    return start


def save_rules(ledger: Ledger, rules: RulesFile, effective: date | None = None,
               entered_by: str = "rules file") -> list[str]:
    """Store ``rules`` (one transaction); returns a line per change of hours or of the deduction table.

    Offices' names and time zones are replaced. Working hours and the deduction table are versions with a start day
    (:func:`save_version`): a file that changed them adds a version from ``effective`` (default today; the first
    ever from 1970-01-01), an unchanged one adds nothing, so every recap of a day before keeps the rules it had.
    Ramadan ranges and days off entered on the HR web (``source = 'web'``) are kept; only the rules file's own are
    replaced. Where the rules file now names a day (or a Ramadan range starting on a day) an office already has from
    the web, the rules file wins: the web row is replaced by the file's, so the file stays the one place it is
    described once it is written there."""
    changed = []
    with ledger.transaction():
        ledger.execute("DELETE FROM office_ramadan WHERE source <> 'web'")
        ledger.execute("DELETE FROM office_days_off WHERE source <> 'web'")
        for office in rules.offices:
            ledger.execute(
                "INSERT INTO offices (code, name, timezone) VALUES (?, ?, ?) ON CONFLICT (code) DO UPDATE SET "
                "name = excluded.name, timezone = excluded.timezone",
                (office.code, office.name, office.timezone),
            )
            start = save_version(ledger, "hours", office.code, hours_data(office.hours, office.ramadan_hours),
                                 effective, "rules", entered_by)
            if start is not None:
                changed.append(f"office {office.code}: working hours from {start}")
            ledger.executemany(
                "INSERT INTO office_ramadan (office, start_date, end_date, source) VALUES (?, ?, ?, 'rules') "
                "ON CONFLICT (office, start_date) DO UPDATE SET end_date = excluded.end_date, "
                "source = excluded.source WHERE office_ramadan.source = 'web'",
                [(office.code, r.start.isoformat(), r.end.isoformat()) for r in office.ramadan],
            )
            ledger.executemany(
                "INSERT INTO office_days_off (office, day, kind, name, source) VALUES (?, ?, ?, ?, 'rules') "
                "ON CONFLICT (office, day) DO UPDATE SET kind = excluded.kind, name = excluded.name, "
                "source = excluded.source WHERE office_days_off.source = 'web'",
                [(office.code, d.date.isoformat(), kind, d.name)
                 for kind, days in (("holiday", office.holidays), ("collective_leave", office.collective_leave))
                 for d in days],
            )
        start = save_version(ledger, "deductions", None, deductions_data(rules.deductions), effective, "rules",
                             entered_by)
        if start is not None:
            changed.append(f"deduction table from {start}")
    return changed


def save_employees(ledger: Ledger, employees: list[Employee], today: date | None = None) -> None:
    """Add or update employees without dates (a partial roster: nobody is taken as having left): a new person is
    employed since before the ledger (1970-01-01), a person in another office moves there from ``today``.
    :func:`plan_roster` and :func:`apply_roster` are the load with dates."""
    offices = {r[0] for r in ledger.rows("SELECT code FROM offices")}
    unknown = sorted({f"{e.nip}: {e.office!r}" for e in employees if e.office not in offices})
    if unknown:
        raise ConfigError("employees", [f"unknown office code (add it to the rules file): {u}" for u in unknown])
    found = RosterFile(rows=[RosterRow(i, e.nip, e.name, e.office, e.office) for i, e in enumerate(employees, 1)],
                       columns={"nip": "nip", "name": "name", "unit": "unit"})
    plan = plan_roster(ledger, found, today or date.today(), complete=False, new_from=ROSTER_EPOCH)
    if plan.problems:
        raise ConfigError("employees", problem_lines(plan.problems))
    apply_roster(ledger, plan, "save_employees", today)


def save_excused(ledger: Ledger, excuses: list[Excuse], entered_by: str) -> None:
    """Add or update excused absences (keyed by NIP, start and kind), recording who entered them."""
    with ledger.transaction():
        ledger.executemany(
            "INSERT INTO excused (nip, start_date, end_date, kind, reference, entered_by, entered_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (nip, start_date, kind) DO UPDATE SET "
            "end_date = excluded.end_date, reference = excluded.reference, entered_by = excluded.entered_by, "
            "entered_at = excluded.entered_at",
            [(e.nip, e.start.isoformat(), e.end.isoformat(), e.kind, e.reference, entered_by, utc_text())
             for e in excuses],
        )


# ---------------------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Schedule:
    """An office's rules as stored, ready for the recap: its hours versions by start day, Ramadan ranges, days off."""

    code: str
    name: str
    timezone: str
    hours_from: tuple[tuple[date, dict[tuple[bool, str], tuple[time, time]]], ...]  # (valid_from, hours), oldest first
    ramadan: tuple[tuple[date, date], ...]
    days_off: dict[date, tuple[str, str]]  # date -> (holiday | collective_leave, name)

    def is_ramadan(self, day: date) -> bool:
        return any(start <= day <= end for start, end in self.ramadan)

    def hours_in_force(self, day: date) -> dict[tuple[bool, str], tuple[time, time]]:
        """The (ramadan, weekday) -> (start, end) valid on ``day`` (empty before the first version)."""
        return starting_by(self.hours_from, day) or {}

    def hours_on(self, day: date) -> tuple[time, time] | None:
        """Start and end of work on ``day``, or None on a day off (weekend, holiday, collective leave)."""
        if day in self.days_off:
            return None
        return self.hours_in_force(day).get((self.is_ramadan(day), DAYS[day.weekday()]))


@dataclass(frozen=True)
class DeductionTable:
    late: tuple[tuple[str, int, int, Decimal], ...]
    early: tuple[tuple[str, int, int, Decimal], ...]
    missing_check_in: str
    missing_check_out: str
    absent_percent: Decimal
    monthly_cap_percent: Decimal

    def band(self, category: str, minutes: int) -> tuple[str, Decimal] | None:
        """The (name, percent) of ``minutes`` late or early, None for 0 minutes."""
        for name, lo, hi, pct in self.late if category == "late" else self.early:
            if minutes >= lo and (hi == 0 or minutes <= hi):
                return name, pct
        return None

    def named(self, name: str) -> Decimal:
        return next(pct for n, _, _, pct in (*self.late, *self.early) if n == name)


@dataclass(frozen=True)
class DeductionTables:
    """The deduction table's versions by start day, oldest first."""

    versions: tuple[tuple[date, DeductionTable], ...]

    def on(self, day: date) -> DeductionTable:
        """The table valid on ``day`` (the first one before it: a day before every version is judged by the
        earliest)."""
        return starting_by(self.versions, day) or self.versions[0][1]


def read_schedule(ledger: Ledger, code: str) -> Schedule:
    row = ledger.one("SELECT name, timezone FROM offices WHERE code = ?", (code,))
    if row is None:
        known = ", ".join(r[0] for r in ledger.rows("SELECT code FROM offices ORDER BY code")) or "none yet"
        raise ConfigError("recap", [f"office {code!r} is not in the ledger (known: {known}); load the rules file"])
    hours = tuple((v.valid_from, hours_by_day(v.data)) for v in rule_versions(ledger, "hours", code))
    ramadan = tuple((date.fromisoformat(r[0]), date.fromisoformat(r[1])) for r in ledger.rows(
        "SELECT start_date, end_date FROM office_ramadan WHERE office = ?", (code,)))
    days_off = {date.fromisoformat(r[0]): (str(r[1]), str(r[2])) for r in ledger.rows(
        "SELECT day, kind, name FROM office_days_off WHERE office = ?", (code,))}
    return Schedule(code, str(row[0]), str(row[1]), hours, ramadan, days_off)


def read_deductions(ledger: Ledger) -> DeductionTables:
    versions = tuple((v.valid_from, deduction_table(v.data)) for v in rule_versions(ledger, "deductions"))
    if not versions:
        raise ConfigError("recap", ["the ledger has no deduction table yet; load the rules file"])
    return DeductionTables(versions)


def read_employees(ledger: Ledger, office: str, day: date | None = None) -> list[Employee]:
    """The people assigned to ``office`` on ``day`` (today by default)."""
    when = day or date.today()
    return [Employee(m.nip, m.name, office) for m in read_members(ledger, office, when, when)]


def read_excused(ledger: Ledger, nips: list[str], first: date, last: date) -> dict[str, list[Excuse]]:
    """Excused absences of these people that touch ``first``..``last``."""
    found: dict[str, list[Excuse]] = {}
    for nip, start, end, kind, ref in ledger.rows(
        "SELECT nip, start_date, end_date, kind, reference FROM excused WHERE start_date <= ? AND end_date >= ?",
        (last.isoformat(), first.isoformat()),
    ):
        if nip in nips:
            found.setdefault(nip, []).append(Excuse(nip, date.fromisoformat(start), date.fromisoformat(end), kind, ref))
    return found


# ---------------------------------------------------------------------------------------------------- roster history

ROSTER_EPOCH = date(1970, 1, 1)
"""The start of an assignment whose real start is unknown: the roster of before history (migration 0003) and the
first roster a ledger receives without TMT dates count as employed "since before the ledger"."""

CHANGE_LABELS = {"new": "baru", "rejoined": "masuk kembali", "moved": "pindah", "left": "keluar",
                 "renamed": "ganti nama", "updated": "jabatan/kelas", "period": "tanggal diubah"}


@dataclass(frozen=True)
class Assignment:
    """A person in an office from ``valid_from`` to ``valid_to`` (both included; None: still there)."""

    nip: str
    office: str
    valid_from: date
    valid_to: date | None
    id: int = 0

    def covers(self, day: date) -> bool:
        return self.valid_from <= day and (self.valid_to is None or day <= self.valid_to)


@dataclass(frozen=True)
class Member:
    """A person of an office's recap: their assignments (every office) that touch the recap's period."""

    nip: str
    name: str
    office: str
    assignments: tuple[Assignment, ...]

    def office_on(self, day: date) -> str | None:
        """The office the person belonged to on ``day``, None when they were not employed."""
        return next((a.office for a in self.assignments if a.covers(day)), None)

    def here_on(self, day: date) -> bool:
        return self.office_on(day) == self.office

    def why_not_here(self, day: date) -> str:
        """Why ``day`` is not the person's in this office: another office, not yet joined, or left."""
        other = self.office_on(day)
        if other is not None:
            return f"di unit {other}"
        if all(day < a.valid_from for a in self.assignments):
            return "belum bergabung"
        return "sudah keluar"


def _day(text: str | None) -> date | None:
    return None if text is None else date.fromisoformat(str(text))


def read_assignments(ledger: Ledger, nips: Iterable[str] | None = None) -> dict[str, list[Assignment]]:
    """Every assignment (of these people), by NIP, oldest first."""
    found: dict[str, list[Assignment]] = {}
    wanted = None if nips is None else set(nips)
    for row_id, nip, office, start, end in ledger.rows(
            "SELECT id, nip, office, valid_from, valid_to FROM employee_assignments ORDER BY nip, valid_from"):
        if wanted is None or nip in wanted:
            found.setdefault(str(nip), []).append(Assignment(str(nip), str(office), date.fromisoformat(start),
                                                             _day(end), int(row_id)))
    return found


def read_members(ledger: Ledger, office: str, first: date, last: date) -> list[Member]:
    """The people assigned to ``office`` on at least one day of ``first``..``last``, by name, with their
    assignments to any office that touch the period (a day of another office's is not this office's)."""
    rows = ledger.rows(
        "SELECT DISTINCT a.nip, p.name FROM employee_assignments a JOIN employees p ON p.nip = a.nip "
        "WHERE a.office = ? AND a.valid_from <= ? AND (a.valid_to IS NULL OR a.valid_to >= ?)",
        (office, last.isoformat(), first.isoformat()),
    )
    names = {str(nip): str(name) for nip, name in rows}
    if not names:
        return []
    history = read_assignments(ledger, names)
    return sorted((Member(nip, name, office, tuple(a for a in history.get(nip, [])
                                                    if a.valid_from <= last and (a.valid_to is None
                                                                                 or a.valid_to >= first)))
                   for nip, name in names.items()), key=lambda m: (m.name, m.nip))


@dataclass(frozen=True)
class RosterChange:
    """One change a roster file makes: ``kind`` is new, rejoined, moved, left, renamed, updated (position or class)
    or period (an assignment's dates); ``effective`` is the first day of the new state (for ``left``: the first day
    not employed); ``row`` the file's row (0: a person missing from a complete roster)."""

    kind: str
    nip: str
    name: str
    before: str | None
    after: str | None
    effective: date | None
    row: int
    detail: str = ""

    @property
    def label(self) -> str:
        return CHANGE_LABELS.get(self.kind, self.kind)


@dataclass
class RosterPlan:
    """What applying a roster file would change, and every problem that stops it (nothing is applied while there
    is one); ``fingerprint`` is the roster's state it was planned on: :func:`apply_roster` refuses a plan whose
    ledger changed since."""

    effective: date
    changes: list[RosterChange] = field(default_factory=list)
    problems: list[RosterProblem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unchanged: int = 0
    fingerprint: str = ""
    ops: list[tuple[object, ...]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for change in self.changes:
            found[change.kind] = found.get(change.kind, 0) + 1
        return found


def roster_fingerprint(ledger: Ledger) -> str:
    digest = hashlib.sha256()
    for row in ledger.rows("SELECT nip, name, office, position, tpp_class FROM employees ORDER BY nip"):
        digest.update(repr(row).encode())
    for row in ledger.rows("SELECT nip, office, valid_from, valid_to FROM employee_assignments ORDER BY nip, "
                           "valid_from"):
        digest.update(repr(row).encode())
    return digest.hexdigest()


def plan_roster(ledger: Ledger, found: RosterFile, effective: date, *, complete: bool = True,
                new_from: date | None = None) -> RosterPlan:
    """The changes ``found`` (a checked roster file, its ``office`` matched to the ledger's offices) makes to the
    ledger's roster, changing nothing.

    A row's TMT (``start``) is when its office starts for that person, else ``effective``; a row's ``end`` is their
    last day there. A person the ledger does not hold is new from that day (from 1970-01-01 while the ledger holds
    nobody yet and the row has no TMT: the first roster has no history); one in another office that day moves;
    one with no assignment that day rejoins. With ``complete`` (the file lists everyone), a person employed on
    ``effective`` or later who is not in the file leaves: their last day is the day before ``effective``.
    ``new_from``: when a new person without TMT starts, instead."""
    plan = RosterPlan(effective, problems=list(found.problems), notes=list(found.notes),
                      fingerprint=roster_fingerprint(ledger))
    people = {str(r[0]): (str(r[1]), r[2], None if r[3] is None else int(r[3])) for r in ledger.rows(
        "SELECT nip, name, position, tpp_class FROM employees")}
    history = read_assignments(ledger)
    first_roster = not history
    offices = {str(r[0]) for r in ledger.rows("SELECT code FROM offices")}
    listed = set(found.listed) | {r.nip for r in found.rows}  # a row with a problem is not someone who left
    for row in found.rows:
        office = row.office or row.unit
        if office not in offices:
            plan.problems.append(RosterProblem(row.row, found.columns.get("unit", "unit"), row.unit,
                                               f"unknown office {row.unit!r}: add it to the rules file first"))
            continue
        person = people.get(row.nip)
        start = row.start or (new_from or (ROSTER_EPOCH if first_roster else effective) if person is None
                              else effective)
        _plan_row(plan, row, office, start, person, history.get(row.nip, []), found.columns)
    if complete:
        for nip, assignments in sorted(history.items()):
            if nip in listed:
                continue
            ending = [a for a in assignments if a.valid_to is None or a.valid_to >= effective]
            if not ending:
                continue
            for a in ending:
                if a.valid_from >= effective:
                    plan.ops.append(("delete_assignment", a.id))
                else:
                    plan.ops.append(("end_assignment", a.id, (effective - timedelta(days=1)).isoformat()))
            plan.changes.append(RosterChange("left", nip, people.get(nip, ("", None, None))[0], ending[0].office,
                                             None, effective, 0, "tidak ada di berkas"))
    plan.unchanged = len(found.rows) - len({c.nip for c in plan.changes if c.row})
    return plan


def _plan_row(plan: RosterPlan, row: RosterRow, office: str, start: date,
              person: tuple[str, str | None, int | None] | None, assignments: list[Assignment],
              columns: dict[str, str]) -> None:
    def change(kind: str, before: str | None, after: str | None, when: date | None, detail: str = "") -> None:
        plan.changes.append(RosterChange(kind, row.nip, row.name, before, after, when, row.row, detail))

    end = None if row.end is None else row.end.isoformat()
    if person is None:
        plan.ops.append(("insert_employee", row.nip, row.name, office, row.position, row.grade))
        plan.ops.append(("insert_assignment", row.nip, office, start.isoformat(), end))
        change("new", None, office, start, f"mulai {start.isoformat()}" if start != ROSTER_EPOCH else "")
        return
    name, position, grade = person
    if name != row.name:
        plan.ops.append(("set_name", row.nip, row.name))
        change("renamed", None, None, None, f"{name} -> {row.name}")
    if ("position" in columns and row.position != position) or ("grade" in columns and row.grade != grade):
        plan.ops.append(("set_position", row.nip, row.position, row.grade))
        change("updated", None, None, None, f"{position or '-'} / {grade or '-'} -> {row.position or '-'} / "
                                            f"{row.grade or '-'}")
    later = [a for a in assignments if a.valid_from > start]
    at = next((a for a in assignments if a.covers(start)), None)
    if later and (at is None or at.office != office):
        plan.problems.append(RosterProblem(row.row, columns.get("start", "TMT"), start.isoformat(),
                                           f"NIP {row.nip} already has an assignment from {later[0].valid_from} "
                                           f"({later[0].office}), after this date: give the TMT of the change, or "
                                           "correct the assignments in the admin (Pegawai)"))
        return
    if at is None:
        plan.ops.append(("insert_assignment", row.nip, office, start.isoformat(), end))
        change("rejoined", assignments[-1].office if assignments else None, office, start)
    elif at.office != office:
        if at.valid_from == start:
            plan.ops.append(("set_assignment_office", at.id, office))
        else:
            plan.ops.append(("end_assignment", at.id, (start - timedelta(days=1)).isoformat()))
            plan.ops.append(("insert_assignment", row.nip, office, start.isoformat(), end))
        change("moved", at.office, office, start)
    elif row.end is not None and at.valid_to != row.end:
        plan.ops.append(("end_assignment", at.id, end))
        change("left", office, None, row.end + timedelta(days=1), f"hari terakhir {end}")


def apply_roster(ledger: Ledger, plan: RosterPlan, entered_by: str, today: date | None = None) -> list[RosterChange]:
    """Make the plan's changes in one transaction; RosterError when it has problems or the roster changed since
    it was planned (preview again). Each person's ``employees.office`` becomes the office of their assignment valid
    ``today`` (else their latest before it, else their first)."""
    if plan.problems:
        raise RosterError(f"the roster has {len(plan.problems)} problem(s); nothing was changed: "
                          + "; ".join(problem_lines(plan.problems[:5])))
    at = utc_text()
    touched: set[str] = set()
    with ledger.transaction():
        if roster_fingerprint(ledger) != plan.fingerprint:
            raise RosterError("the roster changed since this preview (another load or an admin edit): preview the "
                              "file again; nothing was changed")
        ids: dict[int, str] = {int(r[0]): str(r[1]) for r in ledger.rows("SELECT id, nip FROM employee_assignments")}
        for op in plan.ops:
            kind, args = op[0], op[1:]
            if kind == "insert_employee":
                ledger.execute("INSERT INTO employees (nip, name, office, updated_at, position, tpp_class) "
                               "VALUES (?, ?, ?, ?, ?, ?)", (args[0], args[1], args[2], at, args[3], args[4]))
            elif kind == "set_name":
                ledger.execute("UPDATE employees SET name = ?, updated_at = ? WHERE nip = ?", (args[1], at, args[0]))
            elif kind == "set_position":
                ledger.execute("UPDATE employees SET position = ?, tpp_class = ?, updated_at = ? WHERE nip = ?",
                               (args[1], args[2], at, args[0]))
            elif kind == "insert_assignment":
                ledger.execute("INSERT INTO employee_assignments (nip, office, valid_from, valid_to, entered_by, "
                               "entered_at) VALUES (?, ?, ?, ?, ?, ?)", (*args, entered_by, at))
            elif kind == "end_assignment":
                ledger.execute("UPDATE employee_assignments SET valid_to = ?, entered_by = ?, entered_at = ? "
                               "WHERE id = ?", (args[1], entered_by, at, args[0]))
            elif kind == "set_assignment_office":
                ledger.execute("UPDATE employee_assignments SET office = ?, entered_by = ?, entered_at = ? "
                               "WHERE id = ?", (args[1], entered_by, at, args[0]))
            elif kind == "delete_assignment":
                ledger.execute("DELETE FROM employee_assignments WHERE id = ?", (args[0],))
            else:  # pragma: no cover - plan_roster makes only these
                raise AssertionError(kind)
            touched.add(str(args[0]) if kind in ("insert_employee", "set_name", "set_position", "insert_assignment")
                        else ids.get(int(str(args[0])), ""))
        refresh_current_offices(ledger, touched - {""}, today or date.today())
    return plan.changes


def refresh_current_offices(ledger: Ledger, nips: Iterable[str], today: date) -> None:
    """``employees.office`` of these people: the office of their assignment valid ``today``, else of their latest
    one that started before, else of their first (call it inside the transaction that changed them)."""
    history = read_assignments(ledger, nips)
    for nip, assignments in history.items():
        current = (next((a for a in assignments if a.covers(today)), None)
                   or next((a for a in reversed(assignments) if a.valid_from <= today), None) or assignments[0])
        ledger.execute("UPDATE employees SET office = ? WHERE nip = ? AND office <> ?", (current.office, nip,
                                                                                         current.office))


def plan_roster_file(ledger: Ledger, path: Path, effective: date, *, complete: bool = True,
                     sheet: str | None = None) -> RosterPlan:
    """:func:`plan_roster` of a roster file, its units matched against the ledger's offices."""
    offices = [str(r[0]) for r in ledger.rows("SELECT code FROM offices ORDER BY code")]
    try:
        found = read_roster_file(path, sheet=sheet, units=offices)
    except RosterError as exc:
        raise ConfigError(str(path), [str(exc)]) from None
    return plan_roster(ledger, found, effective, complete=complete)
