"""The ledger as the HR pages see it: one :class:`~kiosk_central.store.Ledger` per process (opened after a fork, on
the configured URL), reviewers' office scope, and what a case shows."""

from __future__ import annotations

import json
import os
import threading
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User

from kiosk_central.store import Ledger, ReviewCase

_lock = threading.Lock()
_ledger: tuple[int, str, Ledger] | None = None
MAX_ID = 2**63 - 1
REASONS = {
    "unknown_face": "Wajah tidak dikenal",
    "manual_entry": "NIP diketik manual",
    "suspected_spoof": "Dugaan pemalsuan wajah",
}
STATES = {"open": "Menunggu", "accepted": "Diterima", "rejected": "Ditolak"}


def ledger() -> Ledger:
    """This process's ledger connection (a new one after a fork or when the configured URL changed)."""
    global _ledger
    url = settings.KIOSK_CENTRAL.database.url
    with _lock:
        if _ledger is None or _ledger[0] != os.getpid() or _ledger[1] != url:
            if _ledger is not None and _ledger[0] == os.getpid():
                _ledger[2].close()
            _ledger = (os.getpid(), url, Ledger(url))
        return _ledger[2]


def scope(user: User | AnonymousUser) -> set[str] | None:
    """The offices a user reviews; None for an admin (every office)."""
    if user.is_superuser:
        return None
    profile = getattr(user, "reviewer", None)
    return set(profile.office_codes()) if profile is not None else set()


def own_nip(user: User | AnonymousUser) -> str:
    profile = getattr(user, "reviewer", None)
    return profile.nip if profile is not None else ""


def visible(user: User | AnonymousUser, case: ReviewCase) -> bool:
    offices = scope(user)
    return offices is None or (case.office is not None and case.office in offices)


def find_case(user: User | AnonymousUser, case_id: int) -> ReviewCase | None:
    """The case if it exists and the user may see it (an out-of-range id is simply absent)."""
    if not 0 < case_id <= MAX_ID:
        return None
    case = ledger().review_case(case_id)
    return case if case is not None and visible(user, case) else None


def page_of_cases(user: User | AnonymousUser, *, decided: bool, office: str | None, reason: str | None,
                  day: date | None, page: int, size: int) -> tuple[list[ReviewCase], int]:
    """One page of the cases the user may see, merged over their offices in the ledger's order."""
    book = ledger()
    zones = book.office_zones()
    offices = scope(user)
    wanted: list[str | None] = ([office or None] if offices is None
                                else [o for o in sorted(offices) if office in (None, "", o)])
    if not wanted:
        return [], 0
    found: list[ReviewCase] = []
    total = 0
    for one in wanted:
        windows = None
        if day is not None:
            windows = [(code, *day_window(day, zone)) for code, zone in zones.items() if one in (None, code)]
        cases, count = book.review_cases(decided=decided, office=one, reason=reason or None, windows=windows,
                                         limit=page * size, offset=0)
        found += cases
        total += count
    if decided:
        found.sort(key=lambda c: (c.decided_at or "", c.id), reverse=True)
    else:
        found.sort(key=lambda c: (c.time_ms is None, c.time_ms or 0, c.id))
    return found[(page - 1) * size: page * size], total


def day_window(day: date, zone_name: str) -> tuple[int, int]:
    """[start, end) in epoch ms of a local date in a zone."""
    zone = zoneinfo.ZoneInfo(zone_name)
    start = datetime.combine(day, clock_time(0), zone)
    end = datetime.combine(day + timedelta(days=1), clock_time(0), zone)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def times(case: ReviewCase, zone_name: str) -> tuple[str, str]:
    """(local time with its zone, UTC time) of a case's believed instant; '-' while it is unknown."""
    if case.time_ms is None:
        return "-", "-"
    instant = datetime.fromtimestamp(case.time_ms / 1000, UTC)
    try:
        local = instant.astimezone(zoneinfo.ZoneInfo(zone_name))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        local = instant
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()}", f"{instant:%Y-%m-%d %H:%M:%S} UTC"


@dataclass(frozen=True)
class CaseView:
    """What the case page shows."""

    case: ReviewCase
    event: dict[str, Any]
    local_time: str
    utc_time: str
    time_note: str
    typed_nip: str | None
    best_nip: str | None
    people: list[tuple[str, str, str, str]]  # label, nip, name and unit, reference slot
    scores: list[tuple[str, str]]
    event_kind: str | None
    has_photo: bool
    proposed_nip: str

    @property
    def reason_label(self) -> str:
        return REASONS.get(self.case.reason, self.case.reason)

    @property
    def state_label(self) -> str:
        return STATES.get(self.case.state, self.case.state)

    def nips(self) -> set[str]:
        return {n for n in (self.typed_nip, self.best_nip, self.case.resolved_nip) if n}


def case_line(case: ReviewCase, zones: dict[str, str]) -> dict[str, Any]:
    event = json.loads(case.payload)
    local, _ = times(case, zones.get(case.office or "", event.get("tz", "UTC")))
    person = (event.get("person") or {}).get("nip")
    best = (event.get("decision") or {}).get("best_nip")
    return {"case": case, "local": local, "nips": " / ".join(n for n in (person, best) if n) or "-",
            "reason": REASONS.get(case.reason, case.reason), "state": STATES.get(case.state, case.state)}


def case_view(case: ReviewCase) -> CaseView:
    book = ledger()
    event = json.loads(case.payload)
    zone = book.office_zones().get(case.office or "", event.get("tz", "UTC"))
    local, utc = times(case, zone)
    if case.time_source == "device":
        note = "jam perangkat (sudah tersinkron)"
    elif case.time_source == "anchor":
        note = f"diperbaiki dari jangkar waktu (jam perangkat mencatat {event.get('time_utc')})"
    else:
        note = "belum diketahui: menunggu jangkar waktu perangkat (tidak dihitung sampai tiba)"
    decision = event.get("decision") or {}
    typed = (event.get("person") or {}).get("nip")
    best = decision.get("best_nip")
    people: list[tuple[str, str, str, str]] = []
    for label, nip, slot in (("NIP diketik / diklaim", typed, "typed"), ("NIP terdekat (pengenal wajah)", best, "best"),
                             ("NIP yang diputus", case.resolved_nip, "resolved")):
        if nip and all(nip != p[1] for p in people):
            found = book.employee(nip)
            people.append((label, nip, f"{found[0]} ({found[1]})" if found else "tidak ada di daftar pegawai", slot))
    scores = [(label, str(decision[key])) for key, label in (
        ("method", "Metode"), ("distance", "Jarak wajah"), ("margin", "Selisih ke kandidat kedua"),
        ("frames", "Jumlah bingkai"),
    ) if decision.get(key) is not None]
    liveness = decision.get("liveness")
    if isinstance(liveness, dict):
        scores += [(f"Liveness: {key}", str(value)) for key, value in sorted(liveness.items())]
    return CaseView(
        case=case, event=event, local_time=local, utc_time=utc, time_note=note, typed_nip=typed, best_nip=best,
        people=people, scores=scores, event_kind=event.get("kind"),
        has_photo=book.evidence(case.device_id, case.event_id) is not None,
        proposed_nip=case.resolved_nip or typed or best or "",
    )


def slot_nip(view: CaseView, slot: str) -> str | None:
    return {"typed": view.typed_nip, "best": view.best_nip, "resolved": view.case.resolved_nip}.get(slot)
