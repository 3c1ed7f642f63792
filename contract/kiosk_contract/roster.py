"""The roster file HR exports, read the same way by enrolment on the device side and by the central server's
``load`` and its import page, so that a roster one accepts the other accepts too.

What HR systems export differs: CSV with ``,`` or ``;`` (Excel in an Indonesian locale), UTF-8 with or without a
BOM or Windows-1252, or an xlsx workbook; headers in English (``nip,name,unit``) or Indonesian (``NIP``, ``Nama``,
``Unit kerja``, ``Jabatan``, ``Kelas jabatan``, ``TMT``, ``Selesai``). :func:`parse_roster` takes any of them and
returns the rows with **every** problem at once (row, column, value, what to do) instead of stopping at the first:
that list is what a preview shows. The header names are mapped in one place, :data:`HEADERS`.

:func:`read_roster` is enrolment's strict form (``nip,name,unit`` entries, :class:`RosterError` naming every
problem); :func:`match_unit` matches an office code against the known ones with a suggestion for near misses.
"""

from __future__ import annotations

import csv
import difflib
import io
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from kiosk_contract.calendar import MONTHS
from kiosk_contract.errors import KioskError
from kiosk_contract.nip import NipError, parse_nip


class RosterError(KioskError, ValueError):
    """The roster is missing columns, has a bad or repeated NIP, or cannot be read."""


@dataclass(frozen=True)
class RosterEntry:
    nip: str
    name: str
    unit: str


HEADERS: dict[str, tuple[str, ...]] = {
    "nip": ("nip", "nip baru", "no nip", "nomor induk pegawai"),
    "name": ("name", "nama", "nama pegawai", "nama lengkap"),
    "unit": ("unit", "unit kerja", "kantor", "office", "satuan kerja", "satker", "opd", "skpd", "unit organisasi"),
    "position": ("jabatan", "nama jabatan", "position"),
    "grade": ("kelas jabatan", "kelas", "grade", "tpp class", "tpp_class"),
    "start": ("tmt", "tmt jabatan", "tmt unit", "mulai", "tanggal mulai", "start", "valid_from", "from"),
    "end": ("selesai", "tanggal selesai", "sampai", "berhenti", "end", "valid_to", "until"),
}
"""Our field -> the headers (compared in lower case, with runs of spaces, ``_``, ``.`` and ``-`` as one space) that
name it. ``start`` is the TMT (terhitung mulai tanggal) of the row's unit; ``end`` is the person's last day there."""

FIELD_LABELS = {"nip": "NIP", "name": "Nama", "unit": "Unit kerja", "position": "Jabatan", "grade": "Kelas jabatan",
                "start": "TMT", "end": "Selesai"}
REQUIRED = ("nip", "name", "unit")
DELIMITERS = (";", ",", "\t")
MAX_GRADE = 17  # kelas jabatan 1..17
_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # the container of .xls (Excel 97-2003) files
_SPACES = re.compile(r"[\s_.\-]+")
_MONTH_NAMES = {name.lower(): i + 1 for names in MONTHS.values() for i, name in enumerate(names)}
_MONTH_NAMES.update({name.lower()[:3]: i + 1 for names in MONTHS.values() for i, name in enumerate(names)})
_HEADER_OF = {_SPACES.sub(" ", h).strip(): f for f, names in HEADERS.items() for h in names}


@dataclass(frozen=True)
class RosterProblem:
    """Something in the file to fix: its row (the line of a CSV, the row of a sheet; 0 for the file as a whole),
    the column as the file names it, the value found, what is wrong and what to do, and the row's NIP when it has a
    valid one (so that a reader can hold back every row of that person: a repeated NIP names both)."""

    row: int
    column: str
    value: str
    message: str
    nip: str = ""

    def __str__(self) -> str:
        where = f"line {self.row}" if self.row else "file"
        return f"{where}, {self.column}: {self.message}" if self.column else f"{where}: {self.message}"


@dataclass(frozen=True)
class RosterRow:
    """One person of the file, checked: a valid NIP, a name, the unit as written (``office``: the known office
    code it matches, when the reader was given the known ones), and the optional fields."""

    row: int
    nip: str
    name: str
    unit: str
    office: str | None = None
    position: str | None = None
    grade: int | None = None
    start: date | None = None
    end: date | None = None


@dataclass
class RosterFile:
    """What :func:`parse_roster` found: the good rows, every problem, and notes (how it was read)."""

    rows: list[RosterRow] = field(default_factory=list)
    problems: list[RosterProblem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    columns: dict[str, str] = field(default_factory=dict)  # our field -> the header in the file
    listed: set[str] = field(default_factory=set)  # every valid NIP of the file, rows with problems too

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def nips_with_problems(self) -> set[str]:
        """The valid NIPs some problem is about: a row of them may be fine (the first of a repeated NIP) and is
        still not ready while the problem stands."""
        return {p.nip for p in self.problems if p.nip}


def header_field(text: str) -> str | None:
    """Our field for a header of the file (``"Unit Kerja"`` -> ``"unit"``), None for a column we do not read."""
    return _HEADER_OF.get(_SPACES.sub(" ", text.replace("\ufeff", "")).strip().lower())


def match_unit(value: str, known: Collection[str]) -> tuple[str | None, str | None]:
    """(the known office code ``value`` names, ignoring case and spaces; or None and the nearest code to suggest)."""
    text = value.strip().lower()
    by_lower = {k.lower(): k for k in known}
    if text in by_lower:
        return by_lower[text], None
    squeezed = re.sub(r"\s+", "", text)
    if squeezed in by_lower:
        return by_lower[squeezed], None
    near = difflib.get_close_matches(squeezed, list(by_lower), n=1, cutoff=0.6)
    return None, (by_lower[near[0]] if near else None)


def parse_roster(data: bytes, filename: str = "", *, sheet: str | None = None, units: Collection[str] | None = None,
                 required: Sequence[str] = REQUIRED) -> RosterFile:
    """Read a roster export (CSV with ``,``/``;``/tab, UTF-8 with or without BOM or Windows-1252; or xlsx, its first
    sheet or ``sheet``) and check every row; never raises for what is in the file: everything is in
    :attr:`RosterFile.problems`. ``units``: the known office codes, matched by :func:`match_unit`."""
    result = RosterFile()
    if data.startswith(_OLE2):
        result.problems.append(RosterProblem(0, "", "", "an Excel 97-2003 workbook (.xls), which is not read: open it "
                                                        "in Excel and save it as .xlsx or as CSV"))
        return result
    if filename.lower().endswith((".xlsx", ".xlsm")) or data[:4] == b"PK\x03\x04":
        table = _xlsx_rows(data, sheet, result)
    else:
        if sheet:
            result.notes.append(f"sheet {sheet!r} ignored: a CSV file has no sheets")
        table = _csv_rows(data, result)
    if table:
        _check_rows(table, result, units, required)
    return result


def read_roster_file(path: Path, *, sheet: str | None = None, units: Collection[str] | None = None,
                     required: Sequence[str] = REQUIRED) -> RosterFile:
    """:func:`parse_roster` of a file; RosterError when it cannot be read at all."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RosterError(f"{path}: cannot read the roster ({exc.strerror or exc})") from None
    return parse_roster(data, path.name, sheet=sheet, units=units, required=required)


def read_roster(path: Path) -> list[RosterEntry]:
    """``nip,name,unit`` entries (any of the formats :func:`parse_roster` reads); every problem is reported with
    its line number, all at once, in one RosterError."""
    found = read_roster_file(path)
    if found.problems:
        raise RosterError(f"{path}: " + "; ".join(str(p) for p in found.problems))
    return [RosterEntry(r.nip, r.name, r.unit) for r in found.rows]


# ---------------------------------------------------------------------------------------------------- reading


def _decode(data: bytes, result: RosterFile) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    for encoding, label in (("cp1252", "Windows-1252 (cp1252)"), ("latin-1", "Latin-1")):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        result.notes.append(f"the file is not UTF-8: read as {label}; check names with accents, or save it as "
                            "'CSV UTF-8'")
        return text
    raise AssertionError("latin-1 decodes every byte")  # pragma: no cover


def _csv_rows(data: bytes, result: RosterFile) -> list[tuple[int, list[str]]]:
    text = _decode(data, result)
    lines = text.splitlines()
    header_line = next((line for line in lines if line.strip()), "")
    delimiter = _sniff(header_line)
    rows: list[tuple[int, list[str]]] = []
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        start = 1
        for record in reader:
            rows.append((start, record))
            start = reader.line_num + 1
    except csv.Error as exc:
        result.problems.append(RosterProblem(0, "", "", f"not a readable CSV file ({exc}); export it again"))
        return []
    result.notes.append(f"CSV separated by {'tab' if delimiter == chr(9) else repr(delimiter)}")
    return rows


def _sniff(header: str) -> str:
    """The delimiter that makes the most known headers of the header line (then the most columns)."""
    def score(delimiter: str) -> tuple[int, int]:
        cells = next(csv.reader([header], delimiter=delimiter), [])
        return sum(1 for c in cells if header_field(c)), len(cells)

    return max(DELIMITERS, key=score)


def _xlsx_rows(data: bytes, sheet: str | None, result: RosterFile) -> list[tuple[int, list[str]]]:
    try:
        import openpyxl
    except ImportError:
        result.problems.append(RosterProblem(0, "", "", "reading xlsx needs openpyxl (pip install openpyxl); or "
                                                        "save the sheet as CSV"))
        return []
    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a damaged file
        result.problems.append(RosterProblem(0, "", "", f"not a readable xlsx workbook ({type(exc).__name__}: "
                                                        f"{exc}); save it again from Excel"))
        return []
    try:
        if sheet is not None and sheet not in book.sheetnames:
            result.problems.append(RosterProblem(0, "", sheet, f"no sheet {sheet!r}; the workbook has "
                                                               f"{', '.join(map(repr, book.sheetnames))}"))
            return []
        ws = book[sheet] if sheet is not None else book.worksheets[0]
        result.notes.append(f"xlsx, sheet {ws.title!r}")
        rows = []
        for number, values in enumerate(ws.iter_rows(values_only=True), 1):
            rows.append((number, [_cell_text(v) for v in values]))
        return rows
    finally:
        book.close()


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 2**53:
            return str(int(value))
        return f"\x00number:{value!r}"  # a NIP Excel keeps as a number lost its last digits: reported as such
    return str(value)


# ---------------------------------------------------------------------------------------------------- checking


def _check_rows(table: list[tuple[int, list[str]]], result: RosterFile, units: Collection[str] | None,
                required: Sequence[str]) -> None:
    rows = [(n, [c.strip() for c in cells]) for n, cells in table if any(c.strip() for c in cells)]
    if not rows:
        result.problems.append(RosterProblem(0, "", "", "the file is empty: export the roster with its header row"))
        return
    header_row, header = rows[0]
    index: dict[str, int] = {}
    for i, text in enumerate(header):
        found = header_field(text)
        if found is None:
            continue
        if found in index:
            result.problems.append(RosterProblem(header_row, text, text, f"a second column for "
                                                 f"{FIELD_LABELS[found]} (already {header[index[found]]!r}): "
                                                 "remove one"))
            continue
        index[found] = i
        result.columns[found] = text
    missing = [f for f in required if f not in index]
    if missing:
        names = "; ".join(f"{f} ({' / '.join(HEADERS[f][:3])})" for f in missing)
        result.problems.append(RosterProblem(header_row, "", ", ".join(header[:12]), f"missing column(s) {names}; "
                                             "expected at least nip,name,unit (NIP, Nama, Unit kerja)"))
        return
    seen: dict[str, int] = {}
    for number, cells in rows[1:]:
        _check_row(number, cells, index, result, seen, units)


def _check_row(number: int, cells: list[str], index: dict[str, int], result: RosterFile, seen: dict[str, int],
               units: Collection[str] | None) -> None:
    def cell(name: str) -> str:
        i = index.get(name)
        return cells[i] if i is not None and i < len(cells) else ""

    nip = ""

    def problem(name: str, value: str, message: str) -> None:
        result.problems.append(RosterProblem(number, result.columns.get(name, FIELD_LABELS[name]), value, message,
                                             nip))

    before = len(result.problems)
    raw_nip = cell("nip")
    if raw_nip.startswith("\x00number:"):
        shown = raw_nip.split(":", 1)[1]
        problem("nip", shown, f"the NIP is a number in Excel ({shown}) and has lost its last digits: format the "
                              "column as Text and type the NIPs again")
    else:
        try:
            nip = parse_nip(raw_nip, "NIP")
        except NipError as exc:
            problem("nip", raw_nip, str(exc).removeprefix("NIP: ") + " (correct it or remove the row)")
    name = cell("name")
    if not name and "name" in index:
        problem("name", "", f"NIP {nip or raw_nip} has no name: fill in the name")
    if nip and nip in seen:
        problem("nip", raw_nip, f"NIP {nip} already on line {seen[nip]}: keep one row per person")
    elif nip:
        seen[nip] = number
        result.listed.add(nip)
    unit, office = cell("unit"), None
    if "unit" in index and not unit:
        problem("unit", "", "no unit: fill in the office code")
    elif unit and units is not None:
        office, near = match_unit(unit, units)
        if office is None:
            hint = f"did you mean {near}?" if near else f"known: {', '.join(sorted(units)) or 'none yet'}"
            problem("unit", unit, f"unknown office {unit!r}: {hint} (office codes of the rules file)")
    grade: int | None = None
    if text := cell("grade"):
        if not text.isdigit() or not 1 <= int(text) <= MAX_GRADE:
            problem("grade", text, f"a kelas jabatan is a whole number 1..{MAX_GRADE}")
        else:
            grade = int(text)
    start = _date_of(cell("start"), "start", problem)
    end = _date_of(cell("end"), "end", problem)
    if start and end and end < start:
        problem("end", end.isoformat(), f"the last day {end} is before the TMT {start}: correct one of them")
    if len(result.problems) == before:
        result.rows.append(RosterRow(number, nip, name, unit, office, cell("position") or None, grade, start, end))


def _date_of(text: str, name: str, problem: Callable[[str, str, str], None]) -> date | None:
    if not text:
        return None
    found = parse_date(text)
    if found is None:
        problem(name, text, "not a date: write it like 2026-02-15, 15-02-2026 or 15 Februari 2026")
    return found


def parse_date(text: str) -> date | None:
    """A date as HR writes it: ``2026-02-15``, ``15-02-2026``, ``15/02/2026``, ``15.02.2026``, ``15 Februari 2026``
    (Indonesian or English month names, or their first three letters); None when it is none of these."""
    text = text.strip()
    for pattern in ("%Y-%m-%d", "%d-%m-%Y", "%d/%m/%Y", "%d.%m.%Y", "%Y/%m/%d"):
        try:
            return datetime.strptime(text, pattern).date()
        except ValueError:
            continue
    parts = text.replace(",", " ").split()
    if len(parts) == 3 and parts[0].isdigit() and parts[2].isdigit() and parts[1].lower() in _MONTH_NAMES:
        try:
            return date(int(parts[2]), _MONTH_NAMES[parts[1].lower()], int(parts[0]))
        except ValueError:
            return None
    return None


def problem_lines(problems: Iterable[RosterProblem]) -> list[str]:
    """The problems as lines for a terminal: ``line 4, NIP '1980 0101': ... (what to do)``."""
    return [f"line {p.row}, {p.column} {p.value!r}: {p.message}" if p.column and p.row else str(p) for p in problems]
