"""The checks of the rules pages (``/aturan/``): an excused absence and an office's day off typed into a form, with
the same rules as the files ``kiosk-central load`` reads (:mod:`kiosk_central.rules`: the NIP by
:func:`~kiosk_contract.nip.parse_nip`, the kinds of :data:`~kiosk_central.rules.EXCUSE_KINDS` and their Indonesian
aliases, start not after end, a reference), plus what a web form must add: who may enter it (the person employed,
on every day of it, in an office the user reviews) and the messages in Bahasa Indonesia. No Django here but the
user's office scope, so that the checks are testable alone."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

from kiosk_central.rules import EXCUSE_ALIASES, EXCUSE_KINDS, Assignment, Excuse, read_assignments
from kiosk_central.store import Ledger
from kiosk_contract.nip import NipError, parse_nip

EXCUSE_LABELS = {"duty": "Dinas", "leave": "Cuti", "sick": "Sakit"}
DAY_OFF_KINDS = ("holiday", "collective_leave")  # office_days_off.kind (its CHECK constraint)
DAY_OFF_LABELS = {"holiday": "Libur nasional", "collective_leave": "Cuti bersama"}
MAX_EXCUSE_DAYS = 366
MAX_REFERENCE_CHARS = 200
MAX_NAME_CHARS = 200
DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class FormProblem(Exception):
    """What is wrong with a form, in Indonesian, and the HTTP status of the answer (400 bad input, 404 a person the
    user may not manage, who is answered as if absent, 409 a duplicate)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def form_date(value: str, label: str) -> date:
    """A date typed as YYYY-MM-DD between 2000 and 2100."""
    text = value.strip()
    if DATE.fullmatch(text) is None:
        raise FormProblem(f"{label}: tulis tanggal sebagai TTTT-BB-HH, misalnya 2026-02-03.")
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise FormProblem(f"{label}: tanggal {text} tidak ada.") from None
    if not 2000 <= day.year <= 2100:
        raise FormProblem(f"{label}: di luar tahun 2000-2100.")
    return day


def excuse_kind(value: str) -> str:
    kind = value.strip().lower()
    kind = EXCUSE_ALIASES.get(kind, kind)
    if kind not in EXCUSE_KINDS:
        raise FormProblem("Jenis: pilih Dinas, Cuti atau Sakit.")
    return kind


def form_nip(value: str) -> str:
    try:
        return parse_nip(value, "NIP")
    except NipError as exc:
        raise FormProblem(f"{exc} (NIP 18 digit pegawai dalam daftar).") from None


def offices_over(assignments: list[Assignment], start: date, end: date) -> tuple[set[str], bool]:
    """The offices a person belonged to on some day of ``start``..``end``, and whether every one of those days is
    covered by an assignment (employed the whole time)."""
    touching = [a for a in assignments if a.valid_from <= end and (a.valid_to is None or a.valid_to >= start)]
    covered = True
    day = start
    while day <= end and covered:
        covered = any(a.covers(day) for a in touching)
        day += timedelta(days=1)
    return {a.office for a in touching}, covered


def may_manage(scope: set[str] | None, offices: set[str], covered: bool) -> bool:
    """An admin (scope None) manages anyone's excused absences; a reviewer those of a person employed, on every
    day of it, in offices of theirs."""
    return scope is None or (covered and bool(offices) and offices <= scope)


def check_excuse(book: Ledger, scope: set[str] | None, form: dict[str, str]) -> Excuse:
    """An excused absence from the add form (``nip``, ``start``, ``end``, ``kind``, ``reference``), or
    :class:`FormProblem`."""
    nip = form_nip(form.get("nip", ""))
    start = form_date(form.get("start", ""), "Mulai")
    end = form_date(form.get("end", "") or form.get("start", ""), "Sampai")
    if end < start:
        raise FormProblem(f"Sampai ({end}) tidak boleh sebelum mulai ({start}).")
    if (end - start).days >= MAX_EXCUSE_DAYS:
        raise FormProblem(f"Paling lama {MAX_EXCUSE_DAYS} hari sekali catat; bagi menjadi beberapa keterangan.")
    kind = excuse_kind(form.get("kind", ""))
    reference = " ".join(form.get("reference", "").split())
    if not reference:
        raise FormProblem("Nomor surat / dasar: wajib diisi (nomor surat tugas, surat cuti, surat dokter).")
    if len(reference) > MAX_REFERENCE_CHARS:
        raise FormProblem(f"Nomor surat / dasar: paling banyak {MAX_REFERENCE_CHARS} karakter.")
    offices, covered = offices_over(read_assignments(book, [nip]).get(nip, []), start, end)
    if not covered or not may_manage(scope, offices, covered):
        where = "kantor mana pun" if scope is None else "kantor yang Anda kelola"
        raise FormProblem(f"Tidak ada pegawai dengan NIP {nip} di {where} pada setiap hari {start} s.d. {end} "
                          "(belum bergabung, sudah keluar, atau pegawai kantor lain).", 404)
    return Excuse(nip, start, end, kind, reference)


@dataclass(frozen=True)
class DayOffEntry:
    office: str
    day: date
    kind: str
    name: str


def check_day_off(office: str, form: dict[str, str]) -> DayOffEntry:
    """A holiday or collective-leave day from the form (``date``, ``kind``, ``name``), or :class:`FormProblem`."""
    day = form_date(form.get("date", ""), "Tanggal")
    kind = form.get("kind", "").strip()
    if kind not in DAY_OFF_KINDS:
        raise FormProblem("Jenis: pilih libur nasional atau cuti bersama.")
    name = " ".join(form.get("name", "").split())
    if not name:
        raise FormProblem("Nama: wajib diisi (misalnya Tahun Baru Imlek), ditampilkan di rekap.")
    if len(name) > MAX_NAME_CHARS:
        raise FormProblem(f"Nama: paling banyak {MAX_NAME_CHARS} karakter.")
    return DayOffEntry(office, day, kind, name)
