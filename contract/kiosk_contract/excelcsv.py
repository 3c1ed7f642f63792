"""CSV for Excel in an Indonesian locale, opened with a double click: what IT and HR open, fix and send back.

- UTF-8 with a BOM: without it Excel reads the file as Windows-1252 and accented names lose their accents.
- ``;`` between fields: Windows in the ``id-ID`` locale has ``,`` as its decimal separator, so its list separator,
  the one Excel splits CSV files on, is ``;``. CRLF line ends.
- NIPs as ``="198001012005011001"``: a bare NIP is read as a number and keeps only 15 significant digits (the NIP is
  lost); ``="..."`` is a formula whose value is the text, so the cell shows and keeps the 18 digits.
- Text Excel would take for a formula (``=``, ``+``, ``-``, ``@`` first) gets a leading apostrophe (CSV injection).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Collection, Iterable, Sequence

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def excel_text(value: object) -> str:
    """A text cell that Excel shows as written, never runs as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def excel_nip(nip: str) -> str:
    """A NIP cell that Excel keeps as its 18 digits (empty stays empty)."""
    return f'="{nip}"' if nip else ""


def excel_csv(header: Sequence[str], rows: Iterable[Sequence[object]], *, nip_columns: Collection[int] = ()) -> bytes:
    """The table as CSV bytes for Excel (see the module's docstring); ``nip_columns``: indexes of NIP columns."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow([excel_text(h) for h in header])
    for row in rows:
        writer.writerow([excel_nip(str(v or "")) if i in nip_columns else excel_text(v) for i, v in enumerate(row)])
    return out.getvalue().encode("utf-8-sig")
