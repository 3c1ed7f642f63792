"""Rules as data: offices and their working hours, employees, excused absences, and the deduction table.

They come from files (a TOML rules file, the roster CSV, an excused-absences CSV; examples/ has one of each), are
checked with every problem named by file and field, and are stored in the ledger, from which the recaps read them.
The defaults are those of ../shared/docs/domain.md: Perpres 21/2023 hours (37.5 h a week, 07:30 start; Ramadan
32.5 h, 08:00 start), TL1-TL4 and PSW1-PSW4 at 0.5 / 1 / 1.25 / 1.5 %, absence 3 % a day, a monthly cap of 100 %.
"""

from __future__ import annotations

import csv
import dataclasses
import zoneinfo
from dataclasses import dataclass
from datetime import date, time
from decimal import Decimal
from pathlib import Path

from kiosk_central.store import Ledger, utc_text
from kiosk_contract.errors import ConfigError
from kiosk_contract.nip import NipError, parse_nip
from kiosk_contract.roster import RosterError, read_roster
from kiosk_contract.schedule import DAYS, Day, RamadanPeriod
from kiosk_contract.settings import TableParser, opt, read_toml

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
    """The roster CSV of enrolment (``nip,name,unit``), its ``unit`` being the office code."""
    try:
        return [Employee(e.nip, e.name, e.unit) for e in read_roster(path)]
    except RosterError as exc:
        raise ConfigError(str(path), [str(exc)]) from None


def load_excused(path: Path) -> list[Excuse]:
    """Read ``nip,start,end,kind,reference`` rows (kind: duty/dinas, leave/cuti, sick/sakit); every problem is
    reported with its line number."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = {c.strip().lower() for c in reader.fieldnames or []}
            missing = {"nip", "start", "end", "kind", "reference"} - header
            if missing:
                raise ConfigError(str(path), [f"missing column(s) {', '.join(sorted(missing))}; "
                                              "expected nip,start,end,kind,reference"])
            rows = [({k.strip().lower(): (v or "").strip() for k, v in r.items() if k}, reader.line_num)
                    for r in reader]
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read the file: {exc.strerror or exc}"]) from None
    except (csv.Error, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [f"not a UTF-8 CSV file ({exc})"]) from None
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


def save_rules(ledger: Ledger, rules: RulesFile) -> None:
    """Replace the offices' schedules and the deduction table with those of ``rules`` (one transaction)."""
    with ledger.transaction():
        for table in ("office_hours", "office_ramadan", "office_days_off", "deduction_bands", "deduction_settings"):
            ledger.execute(f"DELETE FROM {table}")
        for office in rules.offices:
            ledger.execute(
                "INSERT INTO offices (code, name, timezone) VALUES (?, ?, ?) ON CONFLICT (code) DO UPDATE SET "
                "name = excluded.name, timezone = excluded.timezone",
                (office.code, office.name, office.timezone),
            )
            ledger.executemany(
                "INSERT INTO office_hours (office, ramadan, day, start_time, end_time) VALUES (?, ?, ?, ?, ?)",
                [(office.code, int(ramadan), day, h.start.isoformat("minutes"), h.end.isoformat("minutes"))
                 for ramadan, hours in ((False, office.hours), (True, office.ramadan_hours))
                 for h in hours for day in h.days],
            )
            ledger.executemany(
                "INSERT INTO office_ramadan (office, start_date, end_date) VALUES (?, ?, ?)",
                [(office.code, r.start.isoformat(), r.end.isoformat()) for r in office.ramadan],
            )
            ledger.executemany(
                "INSERT INTO office_days_off (office, day, kind, name) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [(office.code, d.date.isoformat(), kind, d.name)
                 for kind, days in (("holiday", office.holidays), ("collective_leave", office.collective_leave))
                 for d in days],
            )
        d = rules.deductions
        ledger.executemany(
            "INSERT INTO deduction_bands (category, name, from_min, to_min, percent) VALUES (?, ?, ?, ?, ?)",
            [(category, b.name, b.from_min, b.to_min, str(percent(b.percent)))
             for category, bands in (("late", d.late), ("early", d.early)) for b in bands],
        )
        ledger.executemany(
            "INSERT INTO deduction_settings (name, value) VALUES (?, ?)",
            [("missing_check_in", d.missing_check_in), ("missing_check_out", d.missing_check_out),
             ("absent_percent", str(percent(d.absent_percent))),
             ("monthly_cap_percent", str(percent(d.monthly_cap_percent)))],
        )


def save_employees(ledger: Ledger, employees: list[Employee]) -> None:
    """Add or update employees (a person who moved office keeps their history; nobody is deleted here)."""
    offices = {r[0] for r in ledger.rows("SELECT code FROM offices")}
    unknown = sorted({f"{e.nip}: {e.office!r}" for e in employees if e.office not in offices})
    if unknown:
        raise ConfigError("employees", [f"unknown office code (add it to the rules file): {u}" for u in unknown])
    with ledger.transaction():
        ledger.executemany(
            "INSERT INTO employees (nip, name, office, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT (nip) DO UPDATE "
            "SET name = excluded.name, office = excluded.office, updated_at = excluded.updated_at",
            [(e.nip, e.name, e.office, utc_text()) for e in employees],
        )


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
    """An office's rules as stored, ready for the recap: hours by (ramadan, day), Ramadan ranges, days off."""

    code: str
    name: str
    timezone: str
    hours: dict[tuple[bool, str], tuple[time, time]]
    ramadan: tuple[tuple[date, date], ...]
    days_off: dict[date, tuple[str, str]]  # date -> (holiday | collective_leave, name)

    def is_ramadan(self, day: date) -> bool:
        return any(start <= day <= end for start, end in self.ramadan)

    def hours_on(self, day: date) -> tuple[time, time] | None:
        """Start and end of work on ``day``, or None on a day off (weekend, holiday, collective leave)."""
        if day in self.days_off:
            return None
        return self.hours.get((self.is_ramadan(day), DAYS[day.weekday()]))


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


def read_schedule(ledger: Ledger, code: str) -> Schedule:
    row = ledger.one("SELECT name, timezone FROM offices WHERE code = ?", (code,))
    if row is None:
        known = ", ".join(r[0] for r in ledger.rows("SELECT code FROM offices ORDER BY code")) or "none yet"
        raise ConfigError("recap", [f"office {code!r} is not in the ledger (known: {known}); load the rules file"])
    hours = {(bool(r[0]), str(r[1])): (time.fromisoformat(r[2]), time.fromisoformat(r[3])) for r in ledger.rows(
        "SELECT ramadan, day, start_time, end_time FROM office_hours WHERE office = ?", (code,))}
    ramadan = tuple((date.fromisoformat(r[0]), date.fromisoformat(r[1])) for r in ledger.rows(
        "SELECT start_date, end_date FROM office_ramadan WHERE office = ?", (code,)))
    days_off = {date.fromisoformat(r[0]): (str(r[1]), str(r[2])) for r in ledger.rows(
        "SELECT day, kind, name FROM office_days_off WHERE office = ?", (code,))}
    return Schedule(code, str(row[0]), str(row[1]), hours, ramadan, days_off)


def read_deductions(ledger: Ledger) -> DeductionTable:
    settings = dict(ledger.rows("SELECT name, value FROM deduction_settings"))
    if not settings:
        raise ConfigError("recap", ["the ledger has no deduction table yet; load the rules file"])
    bands: dict[str, list[tuple[str, int, int, Decimal]]] = {"late": [], "early": []}
    for category, name, lo, hi, pct in ledger.rows(
        "SELECT category, name, from_min, to_min, percent FROM deduction_bands ORDER BY from_min"
    ):
        bands[category].append((name, int(lo), int(hi), Decimal(pct)))
    return DeductionTable(
        tuple(bands["late"]), tuple(bands["early"]), settings["missing_check_in"], settings["missing_check_out"],
        Decimal(settings["absent_percent"]), Decimal(settings["monthly_cap_percent"]),
    )


def read_employees(ledger: Ledger, office: str) -> list[Employee]:
    return [Employee(*r) for r in ledger.rows(
        "SELECT nip, name, office FROM employees WHERE office = ? ORDER BY name, nip", (office,))]


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
