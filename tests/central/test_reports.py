"""HR's reports (kiosk_central.reports) from the February recaps of test_recap.py (both backends): the workbook read
back with openpyxl, the printable page, the CSV for Excel in an Indonesian locale, and the ``recap`` command's
options. The hand-computed month is in test_recap.py's docstring: Alex 18 working days, 11 present, 1 excused, 6
absent, TL1 1, TL2 2, TL4 3, PSW1 1, PSW2 1, PSW4 1, 40 %; Lin 17 absent, 1 excused, 85 %; Obama (disdik) 24
absent, 120 % capped at 100 %."""

# ruff: noqa: F811  (the tests take test_recap's fixture `setup`, imported below, as their argument)
from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import pytest
from central_support import ALEX, LIN, OBAMA
from openpyxl import load_workbook
from openpyxl.utils import get_column_letter
from test_recap import setup  # noqa: F401  (the fixture: rules, roster, excuses and February's events)

from kiosk_central import recap as recaps
from kiosk_central import reports
from kiosk_central.cli import main
from kiosk_central.rules import Employee, save_employees
from kiosk_contract.punch import KINDS

PRINTED = datetime(2026, 3, 3, 1, 15, tzinfo=UTC)  # 09:15 WITA
HEAD = "196505051990031005"
ODD = "199001012015011001"  # an employee whose name tries to be HTML and a formula
FEB = recaps.month_range("2026-02")


def month_recaps(ledger: Any, offices: list[str] | None = None) -> list[recaps.Recap]:
    return reports.build_recaps(ledger, offices, *FEB, today=date(2026, 2, 28))


def header_rows(ws: Any) -> tuple[int, int]:
    """The two header rows: the first has "No" in column A."""
    h1 = next(r for r in range(1, 20) if ws.cell(r, 1).value == "No")
    return h1, h1 + 1


def read_table(ws: Any) -> tuple[list[str], list[str | None], list[list[Any]], list[Any]]:
    """(labels, groups, data rows, totals row) of a report sheet: a column's label is in the second header row, or in
    the first when it has no group (the two are merged then)."""
    h1, h2 = header_rows(ws)
    n = ws.max_column
    labels = [ws.cell(h2, c).value or ws.cell(h1, c).value for c in range(1, n + 1)]
    groups, current = [], None
    for c in range(1, n + 1):
        if ws.cell(h2, c).value is None:
            current = None
        elif ws.cell(h1, c).value is not None:
            current = ws.cell(h1, c).value
        groups.append(current)
    rows, r = [], h2 + 1
    while ws.cell(r, labels.index("Nama") + 1).value != "Jumlah":
        rows.append([ws.cell(r, c).value for c in range(1, n + 1)])
        r += 1
    totals = [ws.cell(r, c).value for c in range(1, n + 1)]
    return labels, groups, rows, totals


def test_the_monthly_workbook(setup: Any) -> None:
    _, ledger, _, _ = setup
    info = reports.ReportInfo(printed_at=PRINTED, regency="Pemerintah Kabupaten Contoh")
    wb = load_workbook(io.BytesIO(reports.workbook(month_recaps(ledger), "month", info)))
    assert wb.sheetnames == ["bkpsdm", "disdik"]  # one sheet per office
    ws = wb["bkpsdm"]
    labels, groups, rows, totals = read_table(ws)
    assert labels == ["No", "NIP", "Nama", "Unit kerja", *(str(d) for d in range(1, 29)), "Hari kerja", "Hadir",
                      "TL1", "TL2", "TL3", "TL4", "PSW1", "PSW2", "PSW3", "PSW4", "Tanpa keterangan",
                      "Dengan keterangan", "Menunggu verifikasi", "Lembur (menit)", "Jumlah harian",
                      "Dikenakan (maks. 100 %)"]
    assert [g for i, g in enumerate(groups) if g and groups[i - 1] != g] == [
        "Tanggal", "Terlambat", "Pulang cepat", "Tidak hadir", "Potongan TPP (%)"
    ]
    col = {label: labels.index(label) for label in labels}
    # NIPs are text cells: a str value and the "@" format, all 18 digits
    h1, h2 = header_rows(ws)
    nip_cells = [ws.cell(h2 + 1 + i, col["NIP"] + 1) for i in range(len(rows))]
    assert [c.value for c in nip_cells] == [ALEX, LIN]
    assert all(isinstance(c.value, str) and c.number_format == "@" for c in nip_cells)
    alex, lin = rows
    assert (alex[col["Nama"]], alex[col["Unit kerja"]]) == ("Alex Lacamoire", "BKPSDM Kabupaten Contoh")
    assert [alex[col[k]] for k in ("Hari kerja", "Hadir", "TL1", "TL2", "TL4", "PSW1", "PSW2", "PSW4",
                                   "Tanpa keterangan", "Dengan keterangan", "Menunggu verifikasi")] == [
        18, 11, 1, 2, 3, 1, 1, 1, 5, 1, 1]
    assert (alex[col["Jumlah harian"]], alex[col["Dikenakan (maks. 100 %)"]]) == (35.0, 35.0)
    # day 12: an unanchored punch is "menunggu verifikasi" (MV), not an absence (TK)
    assert [alex[col[str(d)]] for d in (2, 4, 7, 10, 11, 12, 16)] == ["TL1", "TL4 PSW2", "L", "DL", "H", "MV", "L"]
    assert (lin[col["24"]], lin[col["Tanpa keterangan"]], lin[col["Dikenakan (maks. 100 %)"]]) == ("S", 16, 80.0)
    # the totals row is the sum of the rows for every count, and empty for percentages (they do not add up)
    for label in ("Hari kerja", "Hadir", "TL1", "TL2", "TL3", "TL4", "PSW1", "PSW2", "PSW3", "PSW4",
                  "Tanpa keterangan", "Dengan keterangan", "Menunggu verifikasi", "Lembur (menit)"):
        assert totals[col[label]] == sum(r[col[label]] for r in rows), label
    assert (totals[col["Hari kerja"]], totals[col["Tanpa keterangan"]], totals[col["Menunggu verifikasi"]]) == (
        36, 21, 2)
    assert totals[col["Jumlah harian"]] is None and totals[col["NIP"]] is None
    # values only: HR may re-sort; the auto-filter stops above the totals row
    assert not any(isinstance(c.value, str) and c.value.startswith("=") for row in ws.iter_rows() for c in row)
    assert ws.auto_filter.ref == f"A{h2}:{get_column_letter(len(labels))}{h2 + len(rows)}"
    # title block: regency, report, office, period, zone as WITA, print date
    title = [ws.cell(r, 1).value for r in range(1, h1)]
    assert title[:3] == ["PEMERINTAH KABUPATEN CONTOH", "REKAPITULASI KEHADIRAN DAN POTONGAN TPP",
                         "BKPSDM Kabupaten Contoh"]
    assert "Periode: Februari 2026 (1-28 Februari 2026)" in title
    assert "Zona waktu: WITA · Dicetak: 3 Maret 2026 09:15 WITA" in title
    # print setup: A4 landscape, one page wide, header rows repeated, panes frozen below them and right of the names
    setup_ = ws.page_setup
    assert (setup_.orientation, str(setup_.paperSize), setup_.fitToWidth, setup_.fitToHeight) == (
        "landscape", str(ws.PAPERSIZE_A4), 1, 0)
    assert ws.sheet_properties.pageSetUpPr.fitToPage is True
    assert ws.print_title_rows == f"${h1}:${h2}"
    assert ws.freeze_panes == f"E{h2 + 1}"
    # the legend and the blank signature blocks under the table
    below = [c.value for row in ws.iter_rows(min_row=h2 + len(rows) + 2) for c in row if c.value]
    assert "Mengetahui," in below and "Kepala BKPSDM Kabupaten Contoh" in below
    assert "Pengelola Kepegawaian" in below and below.count(reports.BLANK_NAME) == 2
    assert any(str(v).startswith("Kode harian: H Hadir") for v in below)
    disdik = read_table(wb["disdik"])
    obama = disdik[2][0]
    assert (obama[1], obama[disdik[0].index("Tanpa keterangan")], obama[-2], obama[-1]) == (OBAMA, 24, 120.0, 100.0)
    assert "Tanggal" in disdik[1] and "31" not in disdik[0]


def test_the_daily_workbook_from_the_command(setup: Any, tmp_path: Path) -> None:
    config, _, _, _ = setup
    out = tmp_path / "lh.xlsx"
    assert main(["recap", "--config", str(config), "--all-offices", "--date", "2026-02-04", "--format", "xlsx",
                 "--out", str(out), "--as-of", "2026-02-28"]) == 0
    wb = load_workbook(out)
    assert wb.sheetnames == ["bkpsdm", "disdik"]
    labels, groups, rows, totals = read_table(wb["bkpsdm"])
    check_in, check_out = KINDS["masuk"].label_id, KINDS["pulang"].label_id  # the contract's labels
    assert labels == ["No", "NIP", "Nama", "Unit kerja", "Status", "Jam", "Terlambat (mnt)", "Kategori", "Jam",
                      "Pulang cepat (mnt)", "Kategori", "Keterangan", "Potongan TPP (%)"]
    assert groups[5:11] == [check_in] * 3 + [check_out] * 3
    alex, lin = rows
    assert alex[1:] == [ALEX, "Alex Lacamoire", "BKPSDM Kabupaten Contoh", "Hadir", time(9, 10), 100, "TL4",
                        time(15, 0), 60, "PSW2", None, 2.5]
    assert lin[4:7] == ["Tanpa keterangan", None, 0] and lin[-1] == 5.0
    assert totals[6] == 100 and totals[9] == 60 and totals[2] == "Jumlah"
    title = [wb["bkpsdm"].cell(r, 1).value for r in range(1, 5)]
    assert title[0] == "LAPORAN HARIAN KEHADIRAN (LH)" and "Periode: Rabu, 4 Februari 2026" in title
    below = [c.value for row in wb["bkpsdm"].iter_rows() for c in row if c.value]
    assert "Pegawai 2: Hadir 1, Tanpa keterangan 1; Terlambat 1, Pulang cepat 1" in below


def test_the_printable_page(setup: Any) -> None:
    _, ledger, _, _ = setup
    save_employees(ledger, [Employee(ODD, "<script>alert('x')</script> & Co", "bkpsdm")])
    signers = {"bkpsdm": reports.Signers(head=reports.Person("Dr. Siti Aminah, M.Si.", HEAD))}
    info = reports.ReportInfo(printed_at=PRINTED, regency="Pemerintah Kabupaten Contoh", place="Tideng Pale",
                              signers=signers)
    text = reports.printable_html(month_recaps(ledger), "month", info)
    assert "@page { size: A4 landscape" in text and "<script" not in text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; Co" in text
    assert "<th>Zona waktu</th><td>WITA</td>" in text and "Asia/Makassar" not in text
    assert "<th>Dicetak</th><td>3 Maret 2026 09:15 WITA</td>" in text
    assert '<p class="regency">Pemerintah Kabupaten Contoh</p>' in text
    assert "<h1>Rekapitulasi kehadiran dan potongan TPP</h1>" in text
    assert "<th>Periode</th><td>Februari 2026 (1-28 Februari 2026)</td>" in text
    # signature blocks: the head of bkpsdm named, the staff officer's lines blank; disdik's both blank
    assert text.count('<div class="signatures">') == 2
    assert ("<p>Mengetahui,</p><p>Kepala BKPSDM Kabupaten Contoh</p>" in text
            and f'<p class="name">Dr. Siti Aminah, M.Si.</p><p>NIP. {HEAD}</p>' in text)
    assert "<p>Tideng Pale, 3 Maret 2026</p><p>Pengelola Kepegawaian</p>" in text
    assert text.count(f"NIP. {reports.BLANK_NIP}") == 3
    # the totals row: working days 18 + 18 + 18 (the new employee has had no punch), absences 5 + 16 + 18, and two
    # days waiting (Alex's unanchored punch, Lin's open manual entry)
    bkpsdm = text[: text.index('id="office-disdik"')]
    total = bkpsdm[bkpsdm.index('<tr class="total">'):].split("</tr>")[0]
    assert "<td>Jumlah</td>" in total and "<td class=\"n\">54</td>" in total and "<td class=\"n\">39</td>" in total
    assert 'id="office-disdik"' in text and "Dinas Pendidikan" in text  # the second office, on its own page
    # the daily lists of the working days follow, with their minutes totals
    assert "Laporan harian Rabu 04-02-2026" in text and "TL4 (100 mnt)" in text and "100 mnt</td>" in text


def test_the_daily_printable_page_from_the_command(setup: Any, tmp_path: Path) -> None:
    config, _, _, _ = setup
    signers = tmp_path / "signers.csv"
    signers.write_text(f"office,role,name,nip\n*,pengelola,Budi Santoso,{LIN}\nbkpsdm,kepala,Siti,{HEAD}\n")
    page = tmp_path / "lh.html"
    assert main(["recap", "--config", str(config), "--office", "bkpsdm", "--date", "2026-02-04", "--format", "html",
                 "--out", str(page), "--signers", str(signers), "--regency", "Pemerintah Kabupaten Contoh"]) == 0
    text = page.read_text()
    assert "Laporan harian kehadiran (LH)" in text and "Rabu, 4 Februari 2026" in text and "WITA" in text
    assert f'<p class="name">Budi Santoso</p><p>NIP. {LIN}</p>' in text
    assert f'<p class="name">Siti</p><p>NIP. {HEAD}</p>' in text
    assert "Dicetak</th><td>" in text and "TL4 (100 mnt)" in text
    assert "Pegawai 2: Hadir 1, Tanpa keterangan 1; Terlambat 1, Pulang cepat 1" in text


def test_the_csv_for_indonesian_excel(setup: Any) -> None:
    _, ledger, _, _ = setup
    save_employees(ledger, [Employee(ODD, "=HYPERLINK(\"http://x\")", "bkpsdm")])
    data = reports.excel_csv(month_recaps(ledger), "month")
    assert data.startswith(b"\xef\xbb\xbf")
    text = data.decode("utf-8-sig")
    assert "\r\n" in text
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=";"))
    header, body = rows[0], rows[1:]
    assert header[:4] == ["No", "NIP", "Nama", "Unit kerja"] and "Tanggal 1" in header
    assert header[-6:] == ["Tidak hadir Tanpa keterangan", "Tidak hadir Dengan keterangan", "Menunggu verifikasi",
                           "Lembur (menit)", "Potongan TPP (%) Jumlah harian",
                           "Potongan TPP (%) Dikenakan (maks. 100 %)"]
    assert "Terlambat TL1" in header and "Pulang cepat PSW4" in header
    # NIPs as ="..." (Excel shows the 18 digits as text); percentages with a decimal comma; numbering over offices
    assert sorted(r[1] for r in body) == sorted(f'="{n}"' for n in (ODD, ALEX, LIN, OBAMA))  # order: collation
    assert [r[0] for r in body] == ["1", "2", "3", "4"]
    by_nip = {r[1][2:-1]: dict(zip(header, r, strict=True)) for r in body}
    assert by_nip[ALEX]["Potongan TPP (%) Dikenakan (maks. 100 %)"] == "35,00"
    assert by_nip[OBAMA]["Potongan TPP (%) Jumlah harian"] == "120,00"
    assert by_nip[ALEX]["Tanggal 4"] == "TL4 PSW2" and by_nip[OBAMA]["Unit kerja"] == "Dinas Pendidikan"
    assert by_nip[ODD]["Nama"] == "'=HYPERLINK(\"http://x\")"  # not a formula in Excel
    # the raw line: the NIP field quoted with its quotes doubled, ';' between fields
    assert f';"=""{ALEX}""";Alex Lacamoire;BKPSDM Kabupaten Contoh;' in text


def test_the_recap_command_options(setup: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, _, _, _ = setup
    base = ["recap", "--config", str(config), "--date", "2026-02-04", "--as-of", "2026-02-28"]
    # the default CSV stays machine-readable: one header over several offices
    assert main([*base, "--office", "bkpsdm", "--office", "disdik", "--office", "bkpsdm"]) == 0
    out = capsys.readouterr().out
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["office"], r["nip"], r["status"]) for r in rows] == [
        ("bkpsdm", ALEX, "present"), ("bkpsdm", LIN, "absent"), ("disdik", OBAMA, "absent")
    ]
    assert not out.startswith("\ufeff") and out.count("office,date,nip") == 1
    assert main([*base, "--all-offices", "--csv-locale", "id", "--out", str(tmp_path / "lh.csv")]) == 0
    lh = (tmp_path / "lh.csv").read_bytes().decode("utf-8-sig").splitlines()
    assert lh[0].startswith("Tanggal;No;NIP;Nama;Unit kerja;Status;Masuk Jam;Masuk Terlambat (mnt)")
    assert lh[1].startswith(f'2026-02-04;1;"=""{ALEX}""";Alex Lacamoire;BKPSDM Kabupaten Contoh;Hadir;09:10;100;TL4')
    assert lh[1].endswith(";2,50")
    partial = tmp_path / "partial.html"
    assert main(["recap", "--config", str(config), "--office", "bkpsdm", "--month", "2026-02", "--as-of",
                 "2026-02-10", "--format", "html", "--out", str(partial)]) == 0
    assert "Februari 2026 (1-28 Februari 2026); dihitung s.d. 10 Februari 2026" in partial.read_text()
    assert main([*base, "--office", "bkpsdm", "--format", "html", "--csv-locale", "id"]) == 2
    assert "--csv-locale is for --format csv" in capsys.readouterr().err
    bad = tmp_path / "signers.csv"
    bad.write_text("office,role,name,nip\nbkpsdm,bupati,X,1\nbkpsdm,kepala,Siti,12345\n")
    assert main([*base, "--office", "bkpsdm", "--format", "html", "--signers", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "line 2: role 'bupati' must be kepala (head) or pengelola (staff)" in err
    assert "line 3, nip: '12345' is not a NIP" in err
    assert main([*base, "--office", "nope"]) == 2
    assert "office 'nope' is not in the ledger" in capsys.readouterr().err


def test_zone_names_and_dates() -> None:
    assert [reports.zone_name(z) for z in ("Asia/Makassar", "Asia/Jakarta", "Asia/Pontianak", "Asia/Jayapura",
                                           "Europe/Paris")] == ["WITA", "WIB", "WIB", "WIT", "Europe/Paris"]
    assert reports.tanggal(date(2026, 8, 17)) == "17 Agustus 2026"
    info = reports.ReportInfo(printed_at=PRINTED)
    assert reports.printed_text(info, "Asia/Jayapura") == "3 Maret 2026 10:15 WIT"
    assert reports.printed_text(info, "Asia/Jakarta") == "3 Maret 2026 08:15 WIB"
