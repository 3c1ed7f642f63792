"""The checks of the rules pages (``/aturan/``): an excused absence and an office's day off typed into a form, with
the same rules as the files ``kiosk-central load`` reads (:mod:`kiosk_central.rules`: the NIP by
:func:`~kiosk_contract.nip.parse_nip`, the kinds of :data:`~kiosk_central.rules.EXCUSE_KINDS` and their Indonesian
aliases, start not after end, a reference), plus what a web form must add: who may enter it (the person employed,
on every day of it, in an office the user reviews) and the messages in Bahasa Indonesia. No Django here but the
user's office scope, so that the checks are testable alone."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, time, timedelta
from decimal import Decimal

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


# ------------------------------------------------------------------------------------ working hours and deductions

DAY_LABELS = {"mon": "Senin", "tue": "Selasa", "wed": "Rabu", "thu": "Kamis", "fri": "Jumat", "sat": "Sabtu",
              "sun": "Minggu"}
HOURS_KINDS = {"hours": "Jam biasa", "ramadan_hours": "Jam Ramadan"}  # the stored JSON's keys, and their labels
CLOCK = re.compile(r"([01][0-9]|2[0-3])[:.]([0-5][0-9])")
PERCENT = re.compile(r"[0-9]{1,3}([.,][0-9]{1,2})?")


def earliest_change(today: date) -> date:
    """The first day a change made on the web may take effect: the first of this month. Earlier months may already
    have been paid (TPP): changing them is IT's deliberate act through the rules file (``load --effective``)."""
    return today.replace(day=1)


def form_start(value: str, today: date) -> date:
    start = form_date(value, "Berlaku mulai")
    if start < earliest_change(today):
        raise FormProblem(f"Berlaku mulai: paling awal {earliest_change(today)} (awal bulan ini). Bulan yang sudah "
                          "lewat mungkin sudah dibayarkan TPP-nya; perubahan untuk masa itu dilakukan TI lewat berkas "
                          "aturan (kiosk-central load --effective) dengan dasar tertulis.")
    return start


def _collect(problems: list[str], check: Callable[[], date], fallback: date) -> date:
    """``check()``, or ``fallback`` with its problem added to ``problems`` (forms report every mistake at once)."""
    try:
        return check()
    except FormProblem as exc:
        problems.append(str(exc))
        return fallback


def _clock(value: str) -> time | None:
    match = CLOCK.fullmatch(value.strip())
    return None if match is None else time(int(match[1]), int(match[2]))


def check_hours(form: dict[str, str], today: date) -> tuple[date, dict[str, list[dict[str, object]]]]:
    """New working hours from the form (``valid_from``; ``{hours|ramadan_hours}_{day}_{start|end}`` as HH:MM, both
    empty on a day off) as stored in ``office_hours_versions`` (:func:`kiosk_central.rules.hours_data`'s shape), or
    :class:`FormProblem` naming every mistake at once."""
    problems: list[str] = []
    start = _collect(problems, lambda: form_start(form.get("valid_from", ""), today), today)
    found: dict[str, dict[str, tuple[time, time]]] = {}
    for key, label in HOURS_KINDS.items():
        found[key] = {}
        for day, name in DAY_LABELS.items():
            texts = [form.get(f"{key}_{day}_{end}", "").strip() for end in ("start", "end")]
            if not any(texts):
                continue
            times = [_clock(t) for t in texts]
            if not all(texts):
                problems.append(f"{label} {name}: isi jam masuk dan jam pulang, atau kosongkan keduanya (hari libur).")
            elif None in times:
                problems.append(f"{label} {name}: tulis jam sebagai JJ:MM, misalnya 07:30.")
            elif times[0] >= times[1]:  # type: ignore[operator]
                problems.append(f"{label} {name}: jam pulang ({texts[1]}) harus sesudah jam masuk ({texts[0]}).")
            else:
                found[key][day] = (times[0], times[1])  # type: ignore[assignment]
    normal, ramadan = set(found["hours"]), set(found["ramadan_hours"])
    if not normal and not any("Jam biasa" in p for p in problems):
        problems.append("Jam biasa: isi paling sedikit satu hari kerja.")
    if normal != ramadan and not problems:
        differ = ", ".join(DAY_LABELS[d] for d in DAY_LABELS if d in normal ^ ramadan)
        problems.append(f"Jam Ramadan: isi untuk hari kerja yang sama dengan jam biasa (berbeda: {differ}); "
                        "di bulan Ramadan hari kerja tetap, hanya jamnya yang lain.")
    if problems:
        raise FormProblem(" ".join(problems))
    data: dict[str, list[dict[str, object]]] = {}
    for key, by_day in found.items():
        groups: dict[tuple[time, time], list[str]] = {}
        for day in DAY_LABELS:
            if day in by_day:
                groups.setdefault(by_day[day], []).append(day)
        data[key] = [{"days": days, "start": s.isoformat("minutes"), "end": e.isoformat("minutes")}
                     for (s, e), days in groups.items()]
    return start, data


def check_ramadan(form: dict[str, str]) -> tuple[date, date]:
    """A Ramadan range from the form (``start``, ``end``), at most 31 days, or :class:`FormProblem`."""
    start = form_date(form.get("start", ""), "Mulai")
    end = form_date(form.get("end", ""), "Sampai")
    if end < start:
        raise FormProblem(f"Sampai ({end}) tidak boleh sebelum mulai ({start}).")
    if (end - start).days > 30:
        raise FormProblem("Ramadan paling lama 30 hari; periksa tanggalnya.")
    return start, end


def _percent(value: str, label: str, problems: list[str]) -> Decimal | None:
    text = value.strip()
    if PERCENT.fullmatch(text) is None:
        problems.append(f"{label}: tulis persen sebagai angka, misalnya 0,5 atau 1,25.")
        return None
    amount = Decimal(text.replace(",", "."))
    if amount > 100:
        problems.append(f"{label}: paling banyak 100 %.")
        return None
    return amount


def check_deductions(form: dict[str, str], names: dict[str, list[str]],
                     today: date) -> tuple[date, dict[str, object]]:
    """A new deduction table from the form, as stored in ``deduction_versions``
    (:func:`kiosk_central.rules.deductions_data`'s shape), or :class:`FormProblem` naming every mistake at once.

    ``names`` are the band names per category (``late``: TL1.., ``early``: PSW..) of the table in force: the form
    changes the bands' upper minutes (``{name}_to``; the last band has no upper end, each band starts the minute
    after the previous one ends) and percents (``{name}_percent``), the bands of a day with a check-out but no check-in
    (``missing_check_in``) and the reverse, the percent of an absent day and the monthly cap."""
    problems: list[str] = []
    start = _collect(problems, lambda: form_start(form.get("valid_from", ""), today), today)
    data: dict[str, object] = {}
    for category, label in (("late", "Terlambat"), ("early", "Pulang cepat")):
        bands: list[dict[str, object]] = []
        previous = 0
        for i, name in enumerate(names[category]):
            last = i == len(names[category]) - 1
            upper = 0
            if not last:
                text = form.get(f"{name}_to", "").strip()
                if not text.isdigit() or not previous < int(text) <= 24 * 60:
                    problems.append(f"{label} {name}: menit terakhir harus bilangan bulat lebih dari {previous} "
                                    "(pita berikutnya mulai menit sesudahnya).")
                    upper = previous + 1
                else:
                    upper = int(text)
            pct = _percent(form.get(f"{name}_percent", ""), f"{label} {name}", problems)
            bands.append({"name": name, "from_min": previous + 1, "to_min": upper,
                          "percent": str(pct) if pct is not None else "0"})
            previous = upper
        data[category] = bands
    for key, category, label in (("missing_check_in", "late", "Tidak absen masuk"),
                                 ("missing_check_out", "early", "Tidak absen pulang")):
        value = form.get(key, "").strip()
        if value not in names[category]:
            problems.append(f"{label}: pilih salah satu dari {', '.join(names[category])}.")
        data[key] = value
    for key, label in (("absent_percent", "Tidak masuk tanpa keterangan"), ("monthly_cap_percent", "Batas sebulan")):
        pct = _percent(form.get(key, ""), label, problems)
        data[key] = str(pct) if pct is not None else "0"
    if problems:
        raise FormProblem(" ".join(problems))
    return start, data
