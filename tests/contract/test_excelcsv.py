"""CSV for Excel in an Indonesian locale: BOM, ';', CRLF, NIPs kept as 18 digits, no formula injection."""

from __future__ import annotations

import csv
import io

from kiosk_contract.excelcsv import excel_csv


def test_excel_csv_keeps_nips_accents_and_refuses_formulas() -> None:
    data = excel_csv(("NIP", "nama", "catatan"), [("198001012005011001", "José; Núñez", "=HYPERLINK(\"x\")"),
                                                  ("", "-1", None)], nip_columns={0})
    assert data.startswith(b"\xef\xbb\xbfNIP;nama;catatan\r\n")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig")), delimiter=";"))
    assert rows[1] == ['="198001012005011001"', "José; Núñez", "'=HYPERLINK(\"x\")"]
    assert rows[2] == ["", "'-1", ""]
