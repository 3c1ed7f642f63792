"""Names the kiosk's screen and the central server's reports both print: Indonesia's time zones (WIB, WITA, WIT),
and the days and months in Bahasa Indonesia (and English)."""

from __future__ import annotations

from typing import Final

ZONES: Final[dict[str, str]] = {
    "Asia/Jakarta": "WIB",
    "Asia/Pontianak": "WIB",
    "Asia/Makassar": "WITA",
    "Asia/Ujung_Pandang": "WITA",
    "Asia/Jayapura": "WIT",
}
"""Indonesian zone abbreviations by IANA name; other zones show their own name or abbreviation."""

DAYS: Final[dict[str, tuple[str, ...]]] = {
    "id": ("Senin", "Selasa", "Rabu", "Kamis", "Jumat", "Sabtu", "Minggu"),
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
}
"""Monday first, as ``date.weekday()`` counts."""

MONTHS: Final[dict[str, tuple[str, ...]]] = {
    "id": ("Januari", "Februari", "Maret", "April", "Mei", "Juni", "Juli", "Agustus", "September", "Oktober",
           "November", "Desember"),
    "en": ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"),
}  # fmt: skip
