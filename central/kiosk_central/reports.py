"""HR's reports, made from the recaps (:mod:`kiosk_central.recap`): the monthly TPP recap and the daily list (LH) as
an Excel workbook, as a printable page, and as CSV for Excel in an Indonesian locale.

BKPSDM closes each month from the monthly recap and checks the daily list. Every format is built from one table
model (:func:`month_table`, :func:`day_table`: columns with Indonesian headers, typed values, totals), so that the
workbook, the page and the CSV say the same thing:

- **xlsx** (:func:`workbook`): one sheet per office; a title block (regency, report, office, period, zone as
  WITA/WIB/WIT, print date); two header rows repeated on every printed page; NIPs as text cells (``@``, a ``str``
  value: Excel keeps all 18 digits); counts, minutes and percentages as numbers; a totals row kept out of the
  auto-filter range; values only, no formulas, so HR may re-sort; frozen panes; A4 landscape, fit to one page
  wide; the legend and the signature blocks below.
- **The printable page** (:func:`printable_html`): the same, for the browser's print-to-PDF (``@page`` A4 landscape,
  no scripts, every value HTML-escaped); the monthly page lists the daily list of every working day after the
  signatures.
- **CSV for Indonesian Excel** (:func:`excel_csv`): see its docstring. The default CSV of ``kiosk-central recap``
  stays the machine-readable one of :mod:`kiosk_central.recap`.

Labels come from where the facts are kept: punch kinds from the contract (:data:`kiosk_contract.punch.KINDS`),
statuses, excuse kinds, band categories and day codes from :mod:`kiosk_central.recap`, band names and percentages
from the deduction table in the ledger.

The rules file has no regency, no signatories: the regency, a place and a small CSV of the names and NIPs of the head
of office and of the staff officer (:func:`load_signers`) come from central.toml's ``[reports]``
(:func:`report_info`), which the CLI's ``--regency``, ``--place`` and ``--signers`` override; an office without a
signer keeps blank lines to sign on.
"""

from __future__ import annotations

import html
import io
import re
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from kiosk_central.recap import (
    CATEGORY_LABELS,
    DAY_NAMES,
    EXCUSE_CODES,
    EXCUSE_LABELS,
    STATUS_CODES,
    STATUS_LABELS,
    DayLine,
    Recap,
    build_recap,
    daily_csv,
    monthly_csv,
)
from kiosk_central.rules import read_csv_rows
from kiosk_central.store import Ledger
from kiosk_contract import excelcsv
from kiosk_contract.calendar import MONTHS, ZONES
from kiosk_contract.errors import ConfigError
from kiosk_contract.nip import NipError, parse_nip
from kiosk_contract.punch import KINDS, kinds_meaning

if TYPE_CHECKING:
    from kiosk_central.settings import CentralConfig

Report = Literal["month", "day"]
Value = str | int | Decimal | time | None
ColumnKind = Literal["no", "nip", "text", "code", "int", "pct", "time"]

MONTH_NAMES = MONTHS["id"]
TITLES: dict[Report, str] = {
    "month": "Rekapitulasi kehadiran dan potongan TPP",
    "day": "Laporan harian kehadiran (LH)",
}
HEAD_ROLE = "Kepala"
STAFF_ROLE = "Pengelola Kepegawaian"
BLANK_NAME = "(" + "." * 40 + ")"
BLANK_NIP = "." * 30
ROLES = {"kepala": "head", "head": "head", "pengelola": "staff", "staff": "staff"}
DEDUCTION = "Potongan TPP (%)"
ABSENCE = "Tidak hadir"
OVERTIME = "Lembur (menit)"


def zone_name(tz: str) -> str:
    """``WITA`` for ``Asia/Makassar``, ``WIB`` for Jakarta and Pontianak, ``WIT`` for Jayapura; another zone keeps its
    IANA name."""
    return ZONES.get(tz, tz)


def tanggal(day: date) -> str:
    """``4 Februari 2026``."""
    return f"{day.day} {MONTH_NAMES[day.month - 1]} {day.year}"


def _pct_text(value: Decimal, comma: bool = True) -> str:
    text = f"{value:.2f}"
    return text.replace(".", ",") if comma else text


# ---------------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Person:
    name: str
    nip: str


@dataclass(frozen=True)
class Signers:
    """Who signs an office's report: the head of office (``Mengetahui``) and the staff officer who made it."""

    head: Person | None = None
    staff: Person | None = None


@dataclass(frozen=True)
class ReportInfo:
    """What a report prints beyond the recap: when it is printed (an aware datetime, shown in each office's zone),
    the regency (``Pemerintah Kabupaten Tana Tidung``), the place before the date of the staff officer's block, and
    the signatories by office code (``*``: every office without its own)."""

    printed_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    regency: str = ""
    place: str = ""
    signers: Mapping[str, Signers] = field(default_factory=dict)

    def signers_for(self, office: str) -> Signers:
        own, every = self.signers.get(office, Signers()), self.signers.get("*", Signers())
        return Signers(own.head or every.head, own.staff or every.staff)

    def printed_in(self, tz: str) -> datetime:
        return self.printed_at.astimezone(zoneinfo.ZoneInfo(tz))


def load_signers(path: Path) -> dict[str, Signers]:
    """The signatories CSV: ``office,role,name,nip``, role ``kepala`` (head of office) or ``pengelola`` (the staff
    officer; ``head`` and ``staff`` are accepted too), office a code of the rules file or ``*`` for every office.
    NIPs are checked like the roster's; every problem is reported with its line."""
    rows = read_csv_rows(path, ("office", "role", "name", "nip"))
    problems: list[str] = []
    found: dict[str, dict[str, Person]] = {}
    for row, line in rows:
        role = ROLES.get(row["role"].lower())
        if role is None:
            problems.append(f"line {line}: role {row['role']!r} must be kepala (head) or pengelola (staff)")
            continue
        if not row["office"] or not row["name"]:
            problems.append(f"line {line}: office and name must not be empty")
            continue
        try:
            nip = parse_nip(row["nip"], f"line {line}, nip")
        except NipError as exc:
            problems.append(str(exc))
            continue
        if role in found.get(row["office"], {}):
            problems.append(f"line {line}: office {row['office']!r} already has a {row['role'].lower()}")
            continue
        found.setdefault(row["office"], {})[role] = Person(row["name"], nip)
    if problems:
        raise ConfigError(str(path), problems)
    return {office: Signers(p.get("head"), p.get("staff")) for office, p in found.items()}


def report_info(cfg: CentralConfig, *, regency: str | None = None, place: str | None = None,
                signers_file: Path | None = None, printed_at: datetime | None = None) -> ReportInfo:
    """What central.toml's ``[reports]`` says to print, each part overridden when given (the CLI's options); the
    signatories CSV is read now (ConfigError naming its lines)."""
    own = cfg.reports
    path = signers_file if signers_file is not None else own.signers_file
    return ReportInfo(printed_at=printed_at or datetime.now(UTC),
                      regency=own.regency if regency is None else regency,
                      place=own.place if place is None else place,
                      signers=load_signers(path) if path is not None else {})


def office_codes(ledger: Ledger) -> list[str]:
    """Every office of the ledger, by code."""
    codes = [str(r[0]) for r in ledger.rows("SELECT code FROM offices ORDER BY code")]
    if not codes:
        raise ConfigError("recap", ["the ledger has no offices yet; load the rules file"])
    return codes


def build_recaps(ledger: Ledger, offices: Sequence[str] | None, first: date, last: date,
                 today: date | None = None) -> list[Recap]:
    """The recap of each office named (every office for None), in the order named, each once."""
    codes = office_codes(ledger) if offices is None else list(dict.fromkeys(offices))
    return [build_recap(ledger, code, first, last, today) for code in codes]


def machine_csv(recaps: Sequence[Recap], report: Report) -> str:
    """The machine-readable CSV of several offices: one header, then each office's rows (its code in a column)."""
    render = monthly_csv if report == "month" else daily_csv
    return "".join(render(r, header=i == 0) for i, r in enumerate(recaps))


# ---------------------------------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class Column:
    """A column: its header (under ``group``, the header above a run of columns, when there is one), the kind of
    its values (how each format writes them), and its width in Excel characters."""

    label: str
    group: str = ""
    kind: ColumnKind = "text"
    width: float = 7.0


@dataclass
class Table:
    """Header, rows of typed values and the totals row (None where a column has no total); ``statuses`` is each
    row's day status in a daily table (for shading)."""

    columns: list[Column]
    rows: list[list[Value]] = field(default_factory=list)
    totals: list[Value] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)

    def header(self) -> list[str]:
        """One line of headers (the CSV's): the group before the label."""
        return [f"{c.group} {c.label}" if c.group else c.label for c in self.columns]


def _sum_columns(table: Table, kinds: Iterable[ColumnKind] = ("int",)) -> list[Value]:
    wanted = set(kinds)
    totals: list[Value] = []
    for i, col in enumerate(table.columns):
        if col.kind in wanted:
            totals.append(sum(v for row in table.rows if isinstance(v := row[i], int)))
        else:
            totals.append(None)
    return totals


def day_code(line: DayLine) -> str:
    """What a day column of the monthly table shows: ``H`` on time, the bands (``TL1``, ``TL4 PSW2``) when late or
    early, ``TK`` absent, ``DL``/``C``/``S`` excused by kind, ``L`` a day off, nothing for days not yet counted."""
    if line.status == "present":
        bands = [b for b in (line.late_band, line.early_band) if b]
        return " ".join(bands) or STATUS_CODES["present"]
    if line.status == "excused":
        return EXCUSE_CODES.get(line.excuse or "", STATUS_CODES["excused"])
    return STATUS_CODES[line.status]


def _dates(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def month_table(recap: Recap, *, days: bool = True, unit: bool = True) -> Table:
    """The monthly TPP recap: one row per employee (No, NIP, Nama, Unit kerja, a code per day, working days,
    present, a count per band, absences without and with a reason, the deduction before and after the monthly cap),
    and the totals of the counts (percentages of different people's TPP do not add up, so they have none)."""
    late = [b[0] for b in recap.table.late]
    early = [b[0] for b in recap.table.early]
    cap = _pct_text(recap.table.monthly_cap_percent).rstrip("0").rstrip(",")
    columns = [Column("No", kind="no", width=4), Column("NIP", kind="nip", width=20), Column("Nama", width=26)]
    if unit:
        columns.append(Column("Unit kerja", width=22))
    dates = _dates(recap.first, recap.last)
    if days:
        columns += [Column(str(d.day), "Tanggal", "code", 4.5) for d in dates]
    columns += [Column("Hari kerja", kind="int", width=6), Column(STATUS_LABELS["present"], kind="int", width=6)]
    columns += [Column(b, CATEGORY_LABELS["late"], "int", 5.5) for b in late]
    columns += [Column(b, CATEGORY_LABELS["early"], "int", 5.5) for b in early]
    columns += [Column(STATUS_LABELS[s], ABSENCE, "int", 10) for s in ("absent", "excused")]
    columns += [Column(STATUS_LABELS["pending"], kind="int", width=11), Column(OVERTIME, kind="int", width=8)]
    columns += [Column("Jumlah harian", DEDUCTION, "pct", 9),
                Column(f"Dikenakan (maks. {cap} %)", DEDUCTION, "pct", 11)]
    table = Table(columns)
    lines = {(d.nip, d.day): d for d in recap.days}
    for no, m in enumerate(recap.months, 1):
        row: list[Value] = [no, m.nip, m.name]
        if unit:
            row.append(recap.office.name)
        if days:
            row += [day_code(lines[(m.nip, d)]) for d in dates]
        row += [m.work_days, m.present, *(m.bands[b] for b in late), *(m.bands[b] for b in early), m.absent,
                m.excused, m.pending, m.overtime_min, m.deduction_total, m.deduction]
        table.rows.append(row)
    table.totals = _sum_columns(table)
    return table


def day_table(recap: Recap, day: date, *, unit: bool = True, compact: bool = False) -> Table:
    """The daily list (LH) of ``day``: one row per employee with the status, the check-in (the contract's label of
    the kind meaning check-in: ``Masuk``) with the minutes late and the band, the check-out (``Pulang``) likewise,
    the note and the day's deduction; the totals add up the minutes. ``compact`` (the printable page) puts minutes
    and band in one cell: ``TL4 (100 mnt)``."""
    check_in = KINDS[kinds_meaning("check_in")[0]].label_id
    check_out = KINDS[kinds_meaning("check_out")[0]].label_id
    late, early = CATEGORY_LABELS["late"], CATEGORY_LABELS["early"]
    columns = [Column("No", kind="no", width=4), Column("NIP", kind="nip", width=20), Column("Nama", width=26)]
    if unit:
        columns.append(Column("Unit kerja", width=22))
    columns.append(Column("Status", width=17))
    for group, minutes in ((check_in, late), (check_out, early)):
        columns.append(Column("Jam", group, "time", 7))
        if compact:
            columns.append(Column(minutes, group, "text", 14))
        else:
            columns += [Column(f"{minutes} (mnt)", group, "int", 10), Column("Kategori", group, "code", 8)]
    columns += [Column("Keterangan", width=30), Column(DEDUCTION, kind="pct", width=10)]
    table = Table(columns)
    late_total = early_total = 0
    for no, d in enumerate((d for d in recap.days if d.day == day), 1):
        row: list[Value] = [no, d.nip, d.name]
        if unit:
            row.append(recap.office.name)
        row.append(STATUS_LABELS[d.status])
        for at, band, off_by in ((d.check_in, d.late_band, d.late_min), (d.check_out, d.early_band, d.early_min)):
            row.append(at)
            if compact:
                row.append(f"{band} ({off_by} mnt)" if band and off_by else (band or ""))
            else:
                row += [off_by, band or ""]
        row += [d.note, d.deduction]
        table.rows.append(row)
        table.statuses.append(d.status)
        late_total += d.late_min
        early_total += d.early_min
    if compact:
        table.totals = [None] * len(columns)
        table.totals[[c.label for c in columns].index(late)] = f"{late_total} mnt"
        table.totals[[c.label for c in columns].index(early)] = f"{early_total} mnt"
    else:
        table.totals = _sum_columns(table)
    return table


def day_summary(recap: Recap, day: date) -> str:
    """``Pegawai 2: Hadir 1, Tanpa keterangan 1, ...; Terlambat 1, Pulang cepat 1`` for the line under a daily list."""
    lines = [d for d in recap.days if d.day == day]
    counts = [f"{label} {sum(1 for d in lines if d.status == status)}" for status, label in STATUS_LABELS.items()
              if status != "future" and any(d.status == status for d in lines)]
    late = sum(1 for d in lines if d.late_band)
    early = sum(1 for d in lines if d.early_band)
    return (f"Pegawai {len(lines)}: {', '.join(counts) or '-'}; {CATEGORY_LABELS['late']} {late}, "
            f"{CATEGORY_LABELS['early']} {early}")


def legend(recap: Recap, codes: bool) -> list[str]:
    """The lines that explain a report's bands (and with ``codes`` its day codes), from the recap's labels and the
    deduction table."""
    t = recap.table
    lines = []
    if codes:
        names = f"{t.late[0][0]}-{t.late[-1][0]}, {t.early[0][0]}-{t.early[-1][0]}"
        meanings = [f"{STATUS_CODES['present']} {STATUS_LABELS['present']}",
                    f"{names} {STATUS_LABELS['present'].lower()} dengan potongan",
                    f"{STATUS_CODES['absent']} {STATUS_LABELS['absent']}",
                    *(f"{EXCUSE_CODES[k]} {EXCUSE_LABELS[k]}" for k in EXCUSE_CODES),
                    f"{STATUS_CODES['off']} {STATUS_LABELS['off']}"]
        lines.append("Kode harian: " + "; ".join(meanings) + ".")
    for category, bands, missing in (("late", t.late, t.missing_check_in), ("early", t.early, t.missing_check_out)):
        parts = [f"{name} {f'{lo}-{hi} mnt' if hi else f'{lo} mnt ke atas'} ({_pct_text(pct)} %)"
                 for name, lo, hi, pct in bands]
        absent_kind = "masuk" if category == "late" else "pulang"
        lines.append(f"{CATEGORY_LABELS[category]}: {'; '.join(parts)}; tidak absen {absent_kind}: {missing}.")
    lines.append(f"{STATUS_LABELS['absent']}: {_pct_text(t.absent_percent)} % per hari kerja; potongan sebulan "
                 f"paling banyak {_pct_text(t.monthly_cap_percent)} %.")
    return lines


def period_text(recap: Recap, report: Report) -> str:
    """``Februari 2026 (1-28 Februari 2026)``, or ``Rabu, 4 Februari 2026``; with ``dihitung s.d. ...`` when days at
    the end were not counted yet."""
    if report == "day":
        text = f"{DAY_NAMES[recap.first.weekday()]}, {tanggal(recap.first)}"
    else:
        text = f"{MONTH_NAMES[recap.first.month - 1]} {recap.first.year} ({recap.first.day}-{tanggal(recap.last)})"
    if recap.as_of is not None and recap.as_of < recap.last:
        text += f"; dihitung s.d. {tanggal(recap.as_of)}" if recap.as_of >= recap.first else "; belum dihitung"
    return text


def printed_text(info: ReportInfo, tz: str) -> str:
    """``4 Maret 2026 09:15 WITA``."""
    at = info.printed_in(tz)
    return f"{tanggal(at.date())} {at:%H:%M} {zone_name(tz)}"


def _signature_blocks(recap: Recap, info: ReportInfo) -> list[list[str]]:
    """[left block, right block], each a list of lines with '' for the space to sign in."""
    signers = info.signers_for(recap.office.code)
    at = info.printed_in(recap.office.timezone).date()
    dated = f"{info.place}, {tanggal(at)}" if info.place else tanggal(at)
    blocks = []
    for first, role, person in (("Mengetahui,", f"{HEAD_ROLE} {recap.office.name}", signers.head),
                                (dated, STAFF_ROLE, signers.staff)):
        name = person.name if person else BLANK_NAME
        nip = f"NIP. {person.nip if person else BLANK_NIP}"
        blocks.append([first, role, "", "", "", name, nip])
    return blocks


# ---------------------------------------------------------------------------------------------------- xlsx


def _sheet_title(code: str, taken: set[str]) -> str:
    title = re.sub(r"[\[\]:*?/\\]", "_", code)[:31] or "kantor"
    base, n = title, 2
    while title.lower() in taken:
        suffix = f" ({n})"
        title, n = base[: 31 - len(suffix)] + suffix, n + 1
    taken.add(title.lower())
    return title


def workbook(recaps: Sequence[Recap], report: Report, info: ReportInfo) -> bytes:
    """The xlsx file: one sheet per office (its code as the sheet's name)."""
    from openpyxl import Workbook

    wb = Workbook()
    wb.remove(wb.active)
    taken: set[str] = set()
    for recap in recaps:
        ws = wb.create_sheet(_sheet_title(recap.office.code, taken))
        if report == "month":
            table = month_table(recap)
            notes = legend(recap, codes=True)
        else:
            table = day_table(recap, recap.first)
            notes = [day_summary(recap, recap.first), *legend(recap, codes=False)]
        _write_sheet(ws, recap, report, table, notes, info)
    wb.properties.title = f"{TITLES[report]} {', '.join(r.office.code for r in recaps)}"
    wb.properties.creator = "kiosk-central"
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def _write_sheet(ws: Any, recap: Recap, report: Report, table: Table, notes: list[str], info: ReportInfo) -> None:
    from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
    from openpyxl.utils import get_column_letter

    n = len(table.columns)
    thin = Side(style="thin", color="555555")
    box = Border(left=thin, right=thin, top=thin, bottom=thin)
    grey, pink, head = (PatternFill("solid", fgColor=c) for c in ("E6E6E6", "FDE2E2", "D9D9D9"))
    center = Alignment(horizontal="center", vertical="center", wrap_text=True)
    o = recap.office
    title_lines = [
        *([(info.regency.upper(), 12)] if info.regency else []),
        (TITLES[report].upper(), 13),
        (o.name, 12),
        (f"Periode: {period_text(recap, report)}", 10),
        (f"Zona waktu: {zone_name(o.timezone)} · Dicetak: {printed_text(info, o.timezone)}", 10),
    ]
    r = 1
    for text, size in title_lines:
        cell = ws.cell(r, 1, text)
        cell.font = Font(bold=size > 10, size=size)
        cell.alignment = Alignment(horizontal="center")
        ws.merge_cells(start_row=r, start_column=1, end_row=r, end_column=n)
        r += 1
    h1, h2 = r + 1, r + 2
    start = 0
    for i, col in enumerate(table.columns, 1):
        ws.column_dimensions[get_column_letter(i)].width = col.width
        for row in (h1, h2):
            ws.cell(row, i).border = box
            ws.cell(row, i).fill = head
            ws.cell(row, i).font = Font(bold=True)
            ws.cell(row, i).alignment = center
        if not col.group:
            ws.cell(h1, i, col.label)
            ws.merge_cells(start_row=h1, start_column=i, end_row=h2, end_column=i)
            continue
        ws.cell(h2, i, col.label)
        if i == 1 or table.columns[i - 2].group != col.group:
            start = i
            ws.cell(h1, i, col.group)
        if i == n or table.columns[i].group != col.group:
            ws.merge_cells(start_row=h1, start_column=start, end_row=h1, end_column=i)
    first = h2 + 1
    for k, values in enumerate(table.rows):
        status = table.statuses[k] if table.statuses else ""
        for i, (col, value) in enumerate(zip(table.columns, values, strict=True), 1):
            cell = ws.cell(first + k, i)
            _xlsx_value(cell, col, value)
            cell.border = box
            if col.kind == "code" and value in (STATUS_CODES["off"], STATUS_CODES["absent"]) and value:
                cell.fill = grey if value == STATUS_CODES["off"] else pink
            elif status in ("off", "absent"):
                cell.fill = grey if status == "off" else pink
    total = first + len(table.rows)
    label_at = [c.label for c in table.columns].index("Nama") + 1
    for i, (col, value) in enumerate(zip(table.columns, table.totals, strict=True), 1):
        cell = ws.cell(total, i)
        if i == label_at:
            cell.value = "Jumlah"
        elif value is not None:
            _xlsx_value(cell, col, value)
        cell.border = box
        cell.font = Font(bold=True)
        cell.fill = head
    if table.rows:
        ws.auto_filter.ref = f"A{h2}:{get_column_letter(n)}{total - 1}"  # the totals row stays put when HR sorts
    scroll = next(i for i, c in enumerate(table.columns, 1) if c.label not in ("No", "NIP", "Nama", "Unit kerja"))
    ws.freeze_panes = ws.cell(first, scroll).coordinate
    r = total + 2
    for text in notes:
        ws.cell(r, 1, text).font = Font(italic=True, size=9)
        r += 1
    r += 1
    left, right = _signature_blocks(recap, info)
    right_at = max(label_at + 2, n - 6)
    for j, (a, b) in enumerate(zip(left, right, strict=True)):
        ws.cell(r + j, label_at, a or None)
        ws.cell(r + j, right_at, b or None)
        if j == len(left) - 2:
            ws.cell(r + j, label_at).font = ws.cell(r + j, right_at).font = Font(bold=True, underline="single")
    setup = ws.page_setup
    setup.orientation = "landscape"
    setup.paperSize = ws.PAPERSIZE_A4
    setup.fitToWidth = 1
    setup.fitToHeight = 0
    ws.sheet_properties.pageSetUpPr.fitToPage = True
    ws.print_title_rows = f"{h1}:{h2}"
    ws.print_options.horizontalCentered = True
    ws.page_margins.left = ws.page_margins.right = 0.4
    ws.page_margins.top = ws.page_margins.bottom = 0.5
    ws.oddFooter.left.text = f"{o.name} · {period_text(recap, report)}"
    ws.oddFooter.right.text = "Halaman &P dari &N"


def _xlsx_value(cell: Any, col: Column, value: Value) -> None:
    from openpyxl.styles import Alignment

    if col.kind == "nip":
        cell.value = str(value)
        cell.number_format = "@"  # text: Excel would keep 15 of the 18 digits of a number
    elif col.kind == "pct":
        cell.value = value
        cell.number_format = "0.00"
        cell.alignment = Alignment(horizontal="right")
    elif col.kind == "time":
        cell.value = value
        cell.number_format = "hh:mm"
        cell.alignment = Alignment(horizontal="center")
    elif col.kind in ("int", "no"):
        cell.value = value
        cell.number_format = "0"
    else:
        cell.value = value if value != "" else None
        cell.alignment = Alignment(horizontal="center" if col.kind == "code" else "left", vertical="top",
                                   wrap_text=True)


# ---------------------------------------------------------------------------------------------------- CSV


def excel_csv(recaps: Sequence[Recap], report: Report) -> bytes:
    """The table of :func:`workbook` (every office's rows under one header) as CSV for Excel in an Indonesian
    locale, opened with a double click (written by :func:`kiosk_contract.excelcsv.excel_csv`, which enrolment's
    reports use too):

    - **UTF-8 with a BOM**: without it Excel reads the file in the ANSI code page (Windows-1252) and ``Lin & Ço``
      loses its accents. (A ``sep=;`` first line would make Excel ignore the BOM, so there is none.)
    - **``;`` between fields and a decimal comma** (``2,50``): Windows in the ``id-ID`` locale has ``,`` as its
      decimal separator, so its list separator, the one Excel splits CSV files on, is ``;``.
    - **NIPs as ``="198001012005011001"``**: a bare NIP is read as a number, shown as ``1,98001E+17`` and stored
      with 15 significant digits (the last three become 0: the NIP is lost, not only shown badly). A leading
      apostrophe does not help in a CSV: Excel only honours it when typed, and shows it as part of the text of a
      file. ``="..."`` is a formula whose value is the text, so the cell shows the 18 digits and keeps them (the
      field is written quoted, its quotes doubled, as CSV wants). The cost: the cell holds a formula, and a program
      other than Excel sees ``="..."`` (the default CSV is for programs).
    - Text that Excel would take for a formula (``=``, ``+``, ``-``, ``@`` first) gets a leading apostrophe, shown
      but harmless (CSV injection).
    - Dates ISO (``2026-02-04``, read as dates in every locale), times ``07:45``, CRLF line ends.
    """
    header: list[str] = []
    rows: list[list[str]] = []
    nips: set[int] = set()
    no = 0
    for recap in recaps:
        table = month_table(recap) if report == "month" else day_table(recap, recap.first)
        first = ["Tanggal"] if report == "day" else []
        header = [*first, *table.header()]
        nips = {len(first) + i for i, col in enumerate(table.columns) if col.kind == "nip"}
        for values in table.rows:
            no += 1
            cells = [_csv_value(no if col.kind == "no" else value) for col, value in zip(table.columns, values,
                                                                                      strict=True)]
            rows.append([recap.first.isoformat(), *cells] if report == "day" else cells)
    return excelcsv.excel_csv(header, rows, nip_columns=nips)


def _csv_value(value: Value) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return _pct_text(value)
    if isinstance(value, time):
        return value.strftime("%H:%M")
    return str(value)


# ---------------------------------------------------------------------------------------------------- HTML


_CSS = """
@page { size: A4 landscape; margin: 10mm 10mm 12mm; }
body { font-family: "DejaVu Sans", Arial, sans-serif; font-size: 8.5pt; margin: 1.5em; color: #000; }
section.office + section.office { break-before: page; }
header.kop { text-align: center; border-bottom: 2px solid #000; padding-bottom: .3em; margin-bottom: .5em; }
header.kop p { margin: 0; } .regency { font-size: 11pt; font-weight: bold; text-transform: uppercase; }
h1 { font-size: 12pt; margin: .1em 0; text-transform: uppercase; } .officename { font-size: 11pt; font-weight: bold; }
h2 { font-size: 10pt; margin: 1em 0 .3em; }
table.meta { border-collapse: collapse; margin: 0 0 .6em; } table.meta th { text-align: left; padding: 0 1em 0 0; }
table.meta td { padding: 0; }
table.data { border-collapse: collapse; width: 100%; margin-bottom: .4em; }
table.data th, table.data td { border: 1px solid #444; padding: 1px 3px; vertical-align: top; }
table.data th { background: #e4e4e4; text-align: center; vertical-align: middle; }
td.n, td.p { text-align: right; white-space: nowrap; } td.c, td.t { text-align: center; white-space: nowrap; }
td.nip { white-space: nowrap; font-variant-numeric: tabular-nums; }
tr.absent td { background: #fde2e2; } tr.off td { color: #666; } td.code-off { background: #e8e8e8; }
td.code-absent { background: #fde2e2; }
tr.total td { font-weight: bold; background: #f0f0f0; }
p.legend { font-size: 7.5pt; margin: .1em 0; color: #222; }
div.signatures { display: flex; justify-content: space-between; margin: .5em 2em 0; break-inside: avoid; }
div.sign { width: 38%; } div.sign p { margin: 0; min-height: 1.2em; } div.sign p.name { font-weight: bold;
text-decoration: underline; }
section.day { break-inside: avoid; } section.days { break-before: page; }
thead { display: table-header-group; } tr { break-inside: avoid; }
@media print { body { margin: 0; } h2 { break-after: avoid; } tr.absent td, td.code-absent, td.code-off,
table.data th, tr.total td { -webkit-print-color-adjust: exact; print-color-adjust: exact; } }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def printable_html(recaps: Sequence[Recap], report: Report, info: ReportInfo) -> str:
    """The printable page: per office (each on a new page) the letterhead (regency, title, office), period, zone
    (WITA), print date, the table with its totals row, the legend and the signature blocks; the monthly page then
    has the daily list of every working day. No scripts; every value is escaped."""
    names = ", ".join(r.office.name for r in recaps)
    first = recaps[0] if recaps else None
    period = period_text(first, report) if first else ""
    parts = ["<!DOCTYPE html>", '<html lang="id"><head><meta charset="utf-8">',
             f"<title>{_e(TITLES[report])} — {_e(names)} — {_e(period)}</title>",
             f"<style>{_CSS}</style></head><body>"]
    for recap in recaps:
        parts.append(_office_html(recap, report, info))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _office_html(recap: Recap, report: Report, info: ReportInfo) -> str:
    o = recap.office
    parts = [f'<section class="office" id="office-{_e(o.code)}">', '<header class="kop">']
    if info.regency:
        parts.append(f'<p class="regency">{_e(info.regency)}</p>')
    parts += [f"<h1>{_e(TITLES[report])}</h1>", f'<p class="officename">{_e(o.name)}</p>', "</header>",
              '<table class="meta">',
              f"<tr><th>Unit kerja</th><td>{_e(o.name)} ({_e(o.code)})</td></tr>",
              f"<tr><th>Periode</th><td>{_e(period_text(recap, report))}</td></tr>",
              f"<tr><th>Zona waktu</th><td>{_e(zone_name(o.timezone))}</td></tr>",
              f"<tr><th>Dicetak</th><td>{_e(printed_text(info, o.timezone))}</td></tr>", "</table>"]
    if report == "month":
        parts.append(_table_html(month_table(recap, days=False, unit=False)))
        parts += [f'<p class="legend">{_e(line)}</p>' for line in legend(recap, codes=False)]
        parts.append(_signatures_html(recap, info))
        by_day: dict[date, list[DayLine]] = {}
        for line in recap.days:
            by_day.setdefault(line.day, []).append(line)
        days = [d for d, lines in sorted(by_day.items()) if any(x.status not in ("off", "future") for x in lines)]
        if days:
            parts.append('<section class="days"><h2>Lampiran: laporan harian</h2>')
            for day in days:
                parts.append(f'<section class="day"><h2>Laporan harian {DAY_NAMES[day.weekday()]} '
                             f'{day.strftime("%d-%m-%Y")}</h2>')
                parts.append(_table_html(day_table(recap, day, unit=False, compact=True)))
                parts.append(f'<p class="legend">{_e(day_summary(recap, day))}</p></section>')
            parts.append("</section>")
    else:
        parts.append(_table_html(day_table(recap, recap.first, unit=False, compact=True)))
        parts.append(f'<p class="legend">{_e(day_summary(recap, recap.first))}</p>')
        parts += [f'<p class="legend">{_e(line)}</p>' for line in legend(recap, codes=False)]
        parts.append(_signatures_html(recap, info))
    parts.append("</section>")
    return "\n".join(parts)


_HTML_CLASS = {"no": "n", "int": "n", "pct": "p", "code": "c", "time": "t", "nip": "nip", "text": ""}


def _table_html(table: Table) -> str:
    cols = table.columns
    top, bottom = [], []
    i = 0
    while i < len(cols):
        col = cols[i]
        if not col.group:
            top.append(f'<th rowspan="2">{_e(col.label)}</th>')
            i += 1
            continue
        j = i
        while j < len(cols) and cols[j].group == col.group:
            bottom.append(f"<th>{_e(cols[j].label)}</th>")
            j += 1
        top.append(f'<th colspan="{j - i}">{_e(col.group)}</th>')
        i = j
    rows = ['<table class="data"><thead>', f"<tr>{''.join(top)}</tr>", f"<tr>{''.join(bottom)}</tr>",
            "</thead><tbody>"]
    for k, values in enumerate(table.rows):
        status = table.statuses[k] if table.statuses else ""
        cells = "".join(_td(col, value) for col, value in zip(cols, values, strict=True))
        rows.append(f'<tr class="{_e(status)}">{cells}</tr>' if status else f"<tr>{cells}</tr>")
    label_at = [c.label for c in cols].index("Nama")
    totals = "".join("<td>Jumlah</td>" if i == label_at else _td(col, value)
                     for i, (col, value) in enumerate(zip(cols, table.totals, strict=True)))
    rows.append(f'<tr class="total">{totals}</tr>')
    rows.append("</tbody></table>")
    return "\n".join(rows)


def _td(col: Column, value: Value) -> str:
    if value is None:
        text = ""
    elif isinstance(value, Decimal):
        text = _pct_text(value)
    elif isinstance(value, time):
        text = value.strftime("%H:%M")
    else:
        text = str(value)
    classes = [_HTML_CLASS[col.kind]] if _HTML_CLASS[col.kind] else []
    if col.kind == "code" and text and text in (STATUS_CODES["off"], STATUS_CODES["absent"]):
        classes.append("code-off" if text == STATUS_CODES["off"] else "code-absent")
    attr = f' class="{" ".join(classes)}"' if classes else ""
    return f"<td{attr}>{_e(text)}</td>"


def _signatures_html(recap: Recap, info: ReportInfo) -> str:
    blocks = []
    for lines in _signature_blocks(recap, info):
        body = []
        for k, line in enumerate(lines):
            css = ' class="name"' if k == len(lines) - 2 else ""
            body.append(f"<p{css}>{_e(line)}</p>")
        blocks.append(f'<div class="sign">{"".join(body)}</div>')
    return f'<div class="signatures">{"".join(blocks)}</div>'
