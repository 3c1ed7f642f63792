"""The shared roster reader: what HR exports (CSV with ',' or ';', UTF-8 with or without BOM or Windows-1252, xlsx;
Indonesian headers), every problem at once with its row, column and value, and enrolment's strict form."""

from __future__ import annotations

import codecs
import io
from datetime import date
from pathlib import Path

import pytest

from kiosk_contract.roster import RosterError, header_field, match_unit, parse_roster, read_roster

ALEX = "198001012005011001"
LIN = "198002022006021002"
OFFICES = ["bkpsdm", "disdik"]


def test_csv_with_semicolons_bom_and_indonesian_headers() -> None:
    data = codecs.BOM_UTF8 + ("NIP;Nama Pegawai;Unit Kerja;Jabatan;Kelas Jabatan;TMT;Selesai\r\n"
                              f"19800101 200501 1 001;Alex Lacamoire;BKPSDM ;Analis SDM;7;15-02-2026;\r\n"
                              f"{LIN};Lin;disdik;;;;2026-03-31\r\n").encode()
    found = parse_roster(data, "pegawai.csv", units=OFFICES)
    assert found.ok and "CSV separated by ';'" in found.notes
    alex, lin = found.rows
    assert (alex.row, alex.nip, alex.unit, alex.office, alex.position, alex.grade, alex.start, alex.end) == (
        2, ALEX, "BKPSDM", "bkpsdm", "Analis SDM", 7, date(2026, 2, 15), None)
    assert (lin.office, lin.end, lin.start) == ("disdik", date(2026, 3, 31), None)
    assert found.columns["unit"] == "Unit Kerja"


def test_csv_with_commas_and_windows_1252_is_read_and_reported() -> None:
    data = f"nip,nama,kantor\n{ALEX},José Núñez,disdik\n".encode("cp1252")
    found = parse_roster(data, "r.csv", units=OFFICES)
    assert found.ok and found.rows[0].name == "José Núñez"
    assert any("not UTF-8: read as Windows-1252" in n for n in found.notes)


def test_xlsx_first_or_named_sheet_and_numeric_nips() -> None:
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    book.active.title = "Catatan"
    book.active.append(["daftar ini untuk ..."])
    sheet = book.create_sheet("Pegawai")
    sheet.append(["NIP", "Nama", "Unit", "TMT"])
    sheet.append([ALEX, "Alex", "bkpsdm", date(2026, 2, 15)])
    sheet.append([1.98002022006021e17, "Lin", "disdik", None])  # Excel kept the NIP as a number
    out = io.BytesIO()
    book.save(out)
    found = parse_roster(out.getvalue(), "pegawai.xlsx", sheet="Pegawai", units=OFFICES)
    assert [(r.row, r.nip, r.office, r.start) for r in found.rows] == [(2, ALEX, "bkpsdm", date(2026, 2, 15))]
    assert [(p.row, p.column) for p in found.problems] == [(3, "NIP")]
    assert "format the column as Text" in found.problems[0].message
    first = parse_roster(out.getvalue(), "pegawai.xlsx")
    assert "missing column(s) nip" in first.problems[0].message  # the first sheet has no roster
    missing = parse_roster(out.getvalue(), "pegawai.xlsx", sheet="Nope")
    assert "no sheet 'Nope'; the workbook has 'Catatan', 'Pegawai'" in missing.problems[0].message


def test_every_problem_is_reported_at_once_with_row_column_and_value() -> None:
    data = ("NIP,Nama,Unit kerja,Kelas jabatan,TMT,Selesai\n"
            f"{ALEX},Alex,bkpsd,7,,\n"
            "12.34,Pendek,bkpsdm,,,\n"
            f"{LIN},Lin,bkpsdm,x,2026-02-30,\n"
            f"{ALEX},Alex lagi,bkpsdm,,,\n"
            f"{LIN[:-1]}9,,disdik,,2026-02-10,2026-02-01\n").encode()
    found = parse_roster(data, "r.csv", units=OFFICES)
    assert [(p.row, p.column, p.value) for p in found.problems] == [
        (2, "Unit kerja", "bkpsd"), (3, "NIP", "12.34"), (4, "Kelas jabatan", "x"), (4, "TMT", "2026-02-30"),
        (5, "NIP", ALEX), (6, "Nama", ""), (6, "Selesai", "2026-02-01")]
    messages = [p.message for p in found.problems]
    assert "did you mean bkpsdm?" in messages[0] and "it has 4 digits" in messages[1]
    assert "already on line 2" in messages[4] and "before the TMT" in messages[6]
    assert found.rows == [] and found.listed == {ALEX, LIN, LIN[:-1] + "9"}


def test_headers_and_office_codes_in_one_place() -> None:
    assert [header_field(h) for h in ("NIP", " Unit  Kerja", "kelas_jabatan", "T.M.T", "\ufeffnip", "Alamat")] == [
        "nip", "unit", "grade", None, "nip", None]
    assert match_unit("BKPSDM ", OFFICES) == ("bkpsdm", None)
    assert match_unit("bkpsd", OFFICES) == (None, "bkpsdm")
    assert match_unit("dinkes", OFFICES) == (None, None)


def test_read_roster_keeps_its_api_and_reads_the_new_formats(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text(f"NIP;Nama;Unit\n{ALEX};Alex;Musik\n")
    assert [(e.nip, e.name, e.unit) for e in read_roster(path)] == [(ALEX, "Alex", "Musik")]
    path.write_text("nip,name\n1,A\n")
    with pytest.raises(RosterError, match="missing column"):
        read_roster(path)
    with pytest.raises(RosterError, match="cannot read"):
        read_roster(tmp_path / "nope.csv")


def test_problems_name_the_nip_of_their_row_so_a_repeated_nip_holds_back_both_rows() -> None:
    data = (f"nip;nama;unit\r\n{ALEX};Alex;bkpsdm\r\n{LIN};Lin;\r\n19800101 200501 1 001;Alex lagi;disdik\r\n"
            "123;Pendek;disdik\r\n").encode()
    found = parse_roster(data, "r.csv")
    assert [(p.row, p.nip) for p in found.problems] == [(3, LIN), (4, ALEX), (5, "")]
    assert [r.nip for r in found.rows] == [ALEX]  # the first row of the repeated NIP is fine on its own...
    assert found.nips_with_problems == {ALEX, LIN}  # ... and still not ready while the repeat stands


def test_an_old_xls_workbook_is_named_with_what_to_do() -> None:
    found = parse_roster(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504), "pegawai.xls")
    assert [str(p) for p in found.problems] == [
        "file: an Excel 97-2003 workbook (.xls), which is not read: open it in Excel and save it as .xlsx or as CSV"]
