"""Every text the terminal screen shows, in one catalogue: Bahasa Indonesia by default, English selectable.

Day and month names come from here, never from the system locale (a Raspberry Pi image rarely has ``id_ID``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from kiosk_contract.calendar import DAYS, MONTHS, ZONES
from kiosk_contract.punch import KINDS as PUNCH_KINDS

LANGUAGES: Final = ("id", "en")

TEXTS: Final[dict[str, dict[str, str]]] = {
    "id": {
        "look": "Silakan lihat ke kamera",
        "too_small": "Mendekatlah ke kamera",
        "too_dark": "Terlalu gelap",
        "blurry": "Tahan diam sebentar",
        "not_frontal": "Lihat lurus ke kamera",
        "searching": "Mengenali wajah...",
        "recorded": "Presensi tercatat",
        "already": "Sudah tercatat pukul {time}",
        "not_recognised": "Wajah tidak dikenali",
        "not_recognised_hint": "Silakan coba lagi atau hubungi petugas",
        "outside_hours": "Di luar jam presensi",
        "cannot_record": "Presensi tidak dapat disimpan",
        "cannot_record_hint": "Hubungi petugas TI",
        "nip": "NIP {nip}",
        "not_recognised_fallback": "Sentuh layar untuk presensi manual dengan NIP",
        "not_live": "Silakan coba lagi",
        "not_live_hint": "Lihat ke kamera tanpa foto atau layar",
        "challenge_blink": "Silakan berkedip",
        "challenge_turn_left": "Tolehkan kepala ke kiri",
        "challenge_turn_right": "Tolehkan kepala ke kanan",
        "pending_review": "Menunggu verifikasi",
        "pending_review_hint": "Foto Anda dikirim ke petugas untuk diperiksa",
        "limited": "Batas presensi manual tercapai",
        "limited_hint": "Hubungi petugas kepegawaian",
        "entry_title": "Masukkan NIP Anda",
        "entry_hint": "Foto Anda akan diambil untuk verifikasi",
        "nip_length": "NIP harus 18 angka",
        "nip_invalid": "NIP tidak valid, periksa kembali",
        "key_back": "HAPUS",
        "key_ok": "OK",
        "key_cancel": "BATAL",
        "chosen": "{kind} dipilih: silakan lihat ke kamera",
        "online": "Tersambung ke server",
        "offline": "Tidak tersambung ke server",
        "pending": "{count} presensi menunggu dikirim",
        "clock": "Jam belum sinkron",
        "problem_camera": "Kamera tidak berfungsi",
        "problem_camera_detail": "Presensi wajah tidak dapat dilakukan",
        "problem_gallery": "Data wajah belum tersedia",
        "problem_gallery_detail": "Presensi wajah belum dapat dilakukan",
        "problem_storage": "Penyimpanan penuh",
        "problem_storage_detail": "Presensi tidak dapat dicatat",
        "problem_storage_failed": "Penyimpanan rusak",
        "problem_storage_failed_detail": "Presensi tidak dapat dicatat",
        "problem_storage_failed_hint": "Tulis NIP dan jam di daftar hadir manual, hubungi petugas TI",
        "problem_hint": "Hubungi petugas TI",
        "problem_fallback": "Sentuh layar untuk presensi manual dengan NIP",
        "asleep": "Mendekatlah untuk presensi",
    },
    "en": {
        "look": "Please look at the camera",
        "too_small": "Come closer to the camera",
        "too_dark": "Too dark",
        "blurry": "Hold still for a moment",
        "not_frontal": "Look straight at the camera",
        "searching": "Recognising...",
        "recorded": "Attendance recorded",
        "already": "Already recorded at {time}",
        "not_recognised": "Face not recognised",
        "not_recognised_hint": "Please try again or ask the staff",
        "outside_hours": "Outside attendance hours",
        "cannot_record": "Attendance cannot be saved",
        "cannot_record_hint": "Please call IT staff",
        "nip": "NIP {nip}",
        "not_recognised_fallback": "Touch the screen to enter your NIP instead",
        "not_live": "Please try again",
        "not_live_hint": "Look at the camera without a photo or a screen",
        "challenge_blink": "Please blink",
        "challenge_turn_left": "Turn your head to the left",
        "challenge_turn_right": "Turn your head to the right",
        "pending_review": "Waiting for verification",
        "pending_review_hint": "Your photo was sent to the staff for review",
        "limited": "Manual entry limit reached",
        "limited_hint": "Please ask the personnel staff",
        "entry_title": "Enter your NIP",
        "entry_hint": "Your photo will be taken for verification",
        "nip_length": "A NIP has 18 digits",
        "nip_invalid": "This NIP is not valid, please check it",
        "key_back": "DEL",
        "key_ok": "OK",
        "key_cancel": "CANCEL",
        "chosen": "{kind} chosen: please look at the camera",
        "online": "Connected to the server",
        "offline": "Not connected to the server",
        "pending": "{count} records waiting to be sent",
        "clock": "Clock not synchronised",
        "problem_camera": "The camera is not working",
        "problem_camera_detail": "Face attendance is not possible",
        "problem_gallery": "No face data yet",
        "problem_gallery_detail": "Face attendance is not possible yet",
        "problem_storage": "Storage is full",
        "problem_storage_detail": "Attendance cannot be recorded",
        "problem_storage_failed": "Storage has failed",
        "problem_storage_failed_detail": "Attendance cannot be recorded",
        "problem_storage_failed_hint": "Write your NIP and the time on the paper list, call IT staff",
        "problem_hint": "Please call IT staff",
        "problem_fallback": "Touch the screen to enter your NIP instead",
        "asleep": "Come closer to clock in",
    },
}

PROBLEM_ORDER: Final = (
    "challenge_blink",
    "challenge_turn_left",
    "challenge_turn_right",
    "too_dark",
    "too_small",
    "not_frontal",
    "blurry",
)
"""Which guidance line wins when a face has several problems (the first one that applies); a liveness challenge
(the action the person is asked for) comes first."""


def text(language: str, key: str, **fields: object) -> str:
    """The catalogue text ``key`` in ``language`` (falling back to Indonesian, then to the key itself)."""
    table = TEXTS.get(language, TEXTS["id"])
    template = table.get(key) or TEXTS["id"].get(key) or key
    return template.format(**fields) if fields else template


def kind_label(language: str, kind: str | None) -> str:
    """The big punch-kind word from the contract's labels: MASUK / PULANG (IN / OUT), ISTIRAHAT KELUAR, ..."""
    if not kind:
        return ""
    info = PUNCH_KINDS.get(kind.lower())
    return info.label(language).upper() if info is not None else kind.upper()


def zone_name(local: datetime, tz: str) -> str:
    """WIB / WITA / WIT for Indonesian zones, else the datetime's own abbreviation."""
    return ZONES.get(tz) or local.tzname() or tz


def clock_text(local: datetime, tz: str) -> str:
    """``07:28 WITA``."""
    return f"{local:%H:%M} {zone_name(local, tz)}"


def date_text(local: datetime, language: str) -> str:
    """``Senin, 30 November 2026`` (``Monday, 30 November 2026`` in English)."""
    days = DAYS.get(language, DAYS["id"])
    months = MONTHS.get(language, MONTHS["id"])
    return f"{days[local.weekday()]}, {local.day} {months[local.month - 1]} {local.year}"


def guidance(language: str, problems: tuple[str, ...]) -> str | None:
    """One guidance line for a served face's quality problems, or None when there is nothing to say."""
    for p in PROBLEM_ORDER:
        if p in problems:
            return text(language, p)
    return None


def nip_digits(digits: str) -> str:
    """A typed NIP grouped as it is printed: ``19850714 201001 2 003`` (birth date, start of service, sex, number)."""
    groups = (digits[:8], digits[8:14], digits[14:15], digits[15:18])
    return " ".join(g for g in groups if g)


def status_lines(language: str, network: str, pending: int, clock_unsynced: bool) -> list[str]:
    """The idle screen's small print, a line each: server connection, events waiting, and a clock warning."""
    parts = []
    if network in ("online", "offline"):
        parts.append(text(language, network))
        if pending:
            parts.append(text(language, "pending", count=pending))
    if clock_unsynced:
        parts.append(text(language, "clock"))
    return parts
