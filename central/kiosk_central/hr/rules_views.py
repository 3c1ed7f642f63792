"""The rules pages of the HR web (``/aturan/``, issue 14): HR changes from the browser what otherwise only files and
``kiosk-central load`` change, and sees the kiosks that lag.

- ``keterangan/``: excused absences (dinas, cuti, sakit) of the people of the user's offices: list, add, delete
  with a confirmation and a reason. Reviewers manage their offices' people, admins everyone. The row records who
  and when (``excused.entered_by``/``entered_at``); each addition and deletion is also a LogEntry of the ledger's
  ``Excused`` model (who, when, what, why). The recap reads the same table, so it counts them at once.
- ``libur/`` (admins): an office's holidays and collective leave (cuti bersama); after a change the page says the
  office's kiosks need a schedule push and offers it (``kirim/``: what ``kiosk-central schedule push --office X``
  does, with the site's broker and signing key).
- ``jam/`` and ``potongan/`` (admins): working hours, Ramadan ranges and the deduction table, changed from a day on
  (kiosk_central/hr/hours_views.py).
- ``kios/`` (admins): every kiosk, the gallery and schedule it reports against what it should run, lagging ones
  highlighted, and its latest self-test (``kiosk selftest --publish``); read-only.

Django's CSRF check covers every POST; another office's data is a 404, malformed input a 400."""

from __future__ import annotations

import json
import logging
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.admin.models import ADDITION, DELETION, LogEntry
from django.contrib.auth.decorators import login_required
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from kiosk_central import distribute
from kiosk_central import recap as recaps
from kiosk_central.hr import data
from kiosk_central.hr.rules_forms import (
    DAY_OFF_LABELS,
    EXCUSE_LABELS,
    FormProblem,
    check_day_off,
    check_excuse,
    excuse_kind,
    form_date,
    form_nip,
    may_manage,
    offices_over,
)
from kiosk_central.hr.views import MAX_REASON_CHARS, MONTH, BadRequest, error, page_view
from kiosk_central.ledger.models import Excused, OfficeDayOff
from kiosk_central.rules import read_assignments
from kiosk_central.settings import signing_key
from kiosk_central.store import Ledger, utc_text
from kiosk_contract.errors import KioskError

log = logging.getLogger(__name__)

MAX_ROWS = 500
GALLERY_LABELS = {"current": "terkini", "behind": "tertinggal", "wrong office": "galeri kantor lain",
                  "unknown": "belum melapor"}
SCHEDULE_LABELS = {"current": "terkini", "differs": "berbeda dari aturan sekarang",
                   "kiosk.toml": "jadwal kiosk.toml (belum pernah menerima kiriman)", "unknown": "belum melapor"}
LAGGING = {"behind", "wrong office", "differs", "kiosk.toml"}


def actor(request: HttpRequest) -> str:
    return f"web {request.user.get_username()}"


def audit(request: HttpRequest, model: type[models.Model], object_id: str, text: str, flag: int,
          message: str) -> None:
    """A LogEntry (the admin's history) of a change to a ledger row: who, when, what."""
    LogEntry.objects.create(user_id=request.user.pk, content_type=ContentType.objects.get_for_model(model),
                            object_id=object_id, object_repr=text[:200], action_flag=flag,
                            change_message=message)


def history(model: type[models.Model], limit: int = 20) -> list[LogEntry]:
    kind = ContentType.objects.get_for_model(model)
    return list(LogEntry.objects.filter(content_type=kind).select_related("user").order_by("-id")[:limit])


def is_admin(request: HttpRequest) -> bool:
    return bool(request.user.is_superuser)


def denied(request: HttpRequest, what: str) -> HttpResponse:
    return error(request, 403, "Ditolak", f"Hanya admin yang {what}.")


@page_view
@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return HttpResponseRedirect("/aturan/keterangan/")


# ---------------------------------------------------------------------------------------------------- excused


def month_filter(request: HttpRequest) -> tuple[str, date, date]:
    """The month of the list (this month when not asked; ``month=`` empty: every month)."""
    month = request.GET.get("month")
    if month is None:
        month = timezone.localdate().strftime("%Y-%m")
    month = month.strip()
    if not month:
        return "", date(2000, 1, 1), date(2100, 12, 31)
    if MONTH.fullmatch(month) is None or not 2000 <= int(month[:4]) <= 2100:
        raise BadRequest(f"month {month[:20]!r}: use YYYY-MM, like 2026-02")
    try:
        first, last = recaps.month_range(month)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    return month, first, last


def excused_rows(book: Ledger, scope: set[str] | None, office: str, first: date, last: date,
                 nip: str) -> list[dict[str, Any]]:
    """The excused absences touching ``first``..``last`` of the people the user may see (of ``office``, of
    ``nip``), newest first; each with the offices the person belonged to then and whether the user may delete it."""
    sql = ("SELECT x.nip, x.start_date, x.end_date, x.kind, x.reference, x.entered_by, x.entered_at, p.name "
           "FROM excused x LEFT JOIN employees p ON p.nip = x.nip WHERE x.start_date <= ? AND x.end_date >= ?")
    params: list[Any] = [last.isoformat(), first.isoformat()]
    if nip:
        sql += " AND x.nip = ?"
        params.append(nip)
    found = book.rows(sql + " ORDER BY x.start_date DESC, x.nip, x.kind", params)
    history_of = read_assignments(book, {str(r[0]) for r in found})
    rows = []
    for nip_, start, end, kind, reference, entered_by, entered_at, name in found:
        first_day, last_day = date.fromisoformat(start), date.fromisoformat(end)
        offices, covered = offices_over(history_of.get(str(nip_), []), first_day, last_day)
        if scope is not None and not offices & scope:
            continue
        if office and office not in offices:
            continue
        rows.append({"nip": nip_, "name": name or "(tidak ada di daftar pegawai)", "start": start, "end": end,
                     "kind": kind, "kind_label": EXCUSE_LABELS.get(kind, kind), "reference": reference,
                     "entered_by": entered_by, "entered_at": entered_at, "offices": ", ".join(sorted(offices)),
                     "manageable": may_manage(scope, offices, covered)})
        if len(rows) >= MAX_ROWS:
            break
    return rows


def show_excused(request: HttpRequest, problem: str = "", form: dict[str, str] | None = None,
                 status: int = 200) -> HttpResponse:
    book = data.ledger()
    scope = data.scope(request.user)
    offices = [o for o in book.office_zones() if scope is None or o in scope]
    office = request.GET.get("office", "").strip()[:64]
    if office and office not in offices:
        return error(request, 404, "Tidak ditemukan", f"Kantor {office!r} bukan kantor Anda.")
    month, first, last = month_filter(request)
    nip = request.GET.get("nip", "").strip()
    if nip:
        try:
            nip = form_nip(nip)
        except FormProblem as exc:
            raise BadRequest(str(exc)) from None
    return render(request, "hr/rules/excused.html", {
        "rows": excused_rows(book, scope, office, first, last, nip), "max_rows": MAX_ROWS, "offices": offices,
        "office": office, "month": month, "nip": nip, "kinds": EXCUSE_LABELS, "form": form or {},
        "problem": problem, "history": history(Excused) if is_admin(request) else [],
    }, status=status)


@page_view
@login_required
@require_GET
def excused(request: HttpRequest) -> HttpResponse:
    return show_excused(request)


@page_view
@login_required
@require_POST
def excused_add(request: HttpRequest) -> HttpResponse:
    form = {k: request.POST.get(k, "")[:300] for k in ("nip", "start", "end", "kind", "reference")}
    book = data.ledger()
    try:
        excuse = check_excuse(book, data.scope(request.user), form)
    except FormProblem as exc:
        return show_excused(request, str(exc), form, exc.status)
    with book.transaction():
        cursor = book.execute(
            "INSERT INTO excused (nip, start_date, end_date, kind, reference, entered_by, entered_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (nip, start_date, kind) DO NOTHING",
            (excuse.nip, excuse.start.isoformat(), excuse.end.isoformat(), excuse.kind, excuse.reference,
             actor(request), utc_text()))
        added = cursor.rowcount == 1
    label = EXCUSE_LABELS[excuse.kind]
    if not added:
        return show_excused(request, f"Sudah ada keterangan {label} untuk NIP {excuse.nip} mulai {excuse.start}: "
                            "hapus dulu yang lama bila perlu diganti.", form, 409)
    person = book.employee(excuse.nip)
    audit(request, Excused, f"{excuse.nip}/{excuse.start}/{excuse.kind}",
          f"{person[0] if person else '-'} ({excuse.nip}) {label} {excuse.start}..{excuse.end}", ADDITION,
          f"ditambahkan: {label} {excuse.start} s.d. {excuse.end}, {excuse.reference}")
    log.info("HR web: %s added an excused absence (%s, %s..%s)", request.user, excuse.kind, excuse.start, excuse.end)
    messages.success(request, f"Keterangan {label} {excuse.start} s.d. {excuse.end} untuk "
                              f"{person[0] if person else excuse.nip} dicatat; rekap langsung menghitungnya.")
    return HttpResponseRedirect("/aturan/keterangan/?" + urlencode({"month": excuse.start.strftime("%Y-%m")}))


@page_view
@login_required
@require_POST
def excused_delete(request: HttpRequest) -> HttpResponse:
    """A POST without ``confirm`` shows what would be deleted and asks for a reason; with it, deletes."""
    try:
        nip = form_nip(request.POST.get("nip", ""))
        start = form_date(request.POST.get("start", ""), "Mulai")
        kind = excuse_kind(request.POST.get("kind", ""))
    except FormProblem as exc:
        raise BadRequest(str(exc)) from None
    book = data.ledger()
    row = book.one("SELECT x.end_date, x.reference, x.entered_by, x.entered_at, p.name FROM excused x "
                   "LEFT JOIN employees p ON p.nip = x.nip WHERE x.nip = ? AND x.start_date = ? AND x.kind = ?",
                   (nip, start.isoformat(), kind))
    scope = data.scope(request.user)
    end = date.fromisoformat(row[0]) if row is not None else start
    offices, covered = offices_over(read_assignments(book, [nip]).get(nip, []), start, end)
    if row is None or (scope is not None and not offices & scope):
        return error(request, 404, "Tidak ditemukan", "Keterangan ini tidak ada di kantor yang boleh Anda lihat.")
    if not may_manage(scope, offices, covered):
        return error(request, 403, "Ditolak", "Keterangan ini juga menyangkut kantor lain (atau hari di luar masa "
                     "kerja pegawai): admin yang menghapusnya.")
    label = EXCUSE_LABELS[kind]
    entry = {"nip": nip, "name": row[4] or "-", "start": start.isoformat(), "end": row[0], "kind": kind,
             "kind_label": label, "reference": row[1], "entered_by": row[2], "entered_at": row[3]}
    reason = " ".join(request.POST.get("reason", "").split())
    if request.POST.get("confirm") != "yes" or not reason or len(reason) > MAX_REASON_CHARS:
        problem = ""
        if request.POST.get("confirm") == "yes":
            problem = ("Alasan: tulis mengapa keterangan ini dihapus (wajib)." if not reason
                       else f"Alasan: paling banyak {MAX_REASON_CHARS} karakter.")
        return render(request, "hr/rules/excused_delete.html", {"e": entry, "problem": problem, "reason": reason},
                      status=400 if problem else 200)
    with book.transaction():
        gone = book.execute("DELETE FROM excused WHERE nip = ? AND start_date = ? AND kind = ?",
                            (nip, start.isoformat(), kind)).rowcount
    if gone != 1:
        return error(request, 404, "Tidak ditemukan", "Keterangan ini baru saja dihapus orang lain.")
    audit(request, Excused, f"{nip}/{start}/{kind}", f"{entry['name']} ({nip}) {label} {start}..{row[0]}", DELETION,
          f"dihapus: {reason} (keterangan {label} {start} s.d. {row[0]}, {row[1]}, dicatat {row[2]} {row[3]})")
    log.info("HR web: %s deleted an excused absence (%s, %s)", request.user, kind, start)
    messages.success(request, f"Keterangan {label} {start} s.d. {row[0]} untuk {entry['name']} dihapus.")
    return HttpResponseRedirect("/aturan/keterangan/?" + urlencode({"month": start.strftime("%Y-%m")}))


# ---------------------------------------------------------------------------------------------------- days off


def office_names(book: Ledger) -> dict[str, str]:
    return {str(c): str(n) for c, n in book.rows("SELECT code, name FROM offices ORDER BY code")}


SOURCE_LABELS = {"rules": "berkas aturan", "web": "halaman ini"}  # office_days_off.source


def show_days_off(request: HttpRequest, office: str, problem: str = "", form: dict[str, str] | None = None,
                  status: int = 200) -> HttpResponse:
    book = data.ledger()
    days = [(d, k, DAY_OFF_LABELS.get(k, k), n, SOURCE_LABELS.get(s, s)) for d, k, n, s in book.rows(
        "SELECT day, kind, name, source FROM office_days_off WHERE office = ? ORDER BY day DESC", (office,))]
    kiosks = [(k, SCHEDULE_LABELS.get(k.state, k.state), k.state in LAGGING or k.state == "unknown")
              for k in distribute.schedule_status(book) if k.office == office]
    return render(request, "hr/rules/days_off.html", {
        "offices": office_names(book), "office": office, "days": days, "kinds": DAY_OFF_LABELS,
        "form": form or {}, "problem": problem, "kiosks": kiosks,
        "stale": [k for k, _, lag in kiosks if lag], "history": history(OfficeDayOff),
    }, status=status)


def chosen_office(request: HttpRequest, value: str) -> str | None:
    names = office_names(data.ledger())
    if not value:
        return next(iter(names), "")
    return value if value in names else None


@page_view
@login_required
@require_http_methods(["GET", "POST"])
def days_off(request: HttpRequest) -> HttpResponse:
    if not is_admin(request):
        return denied(request, "mengubah hari libur dan cuti bersama")
    source = request.POST if request.method == "POST" else request.GET
    office = chosen_office(request, source.get("office", "").strip()[:64])
    if office is None:
        return error(request, 404, "Tidak ditemukan", "Kantor itu tidak ada di aturan.")
    if request.method == "GET" or not office:
        return show_days_off(request, office)
    action = request.POST.get("action", "")
    book = data.ledger()
    if action == "add":
        form = {k: request.POST.get(k, "")[:300] for k in ("date", "kind", "name")}
        try:
            entry = check_day_off(office, form)
        except FormProblem as exc:
            return show_days_off(request, office, str(exc), form, exc.status)
        with book.transaction():
            there = book.one("SELECT kind, name FROM office_days_off WHERE office = ? AND day = ?",
                             (office, entry.day.isoformat()))
            if there is None:
                book.execute("INSERT INTO office_days_off (office, day, kind, name, source) VALUES (?, ?, ?, ?, 'web')",
                             (office, entry.day.isoformat(), entry.kind, entry.name))
        if there is not None:
            return show_days_off(request, office, f"{entry.day} sudah {DAY_OFF_LABELS.get(there[0], there[0])} "
                                 f"({there[1]}) di kantor {office}.", form, 409)
        label = DAY_OFF_LABELS[entry.kind]
        audit(request, OfficeDayOff, f"{office}/{entry.day}", f"{office} {entry.day} {entry.name}", ADDITION,
              f"ditambahkan: {label} {entry.day} {entry.name}")
        done = f"{label} {entry.day} ({entry.name}) ditambahkan di {office}."
    elif action == "remove":
        try:
            day = form_date(request.POST.get("date", ""), "Tanggal")
        except FormProblem as exc:
            raise BadRequest(str(exc)) from None
        with book.transaction():
            there = book.one("SELECT kind, name FROM office_days_off WHERE office = ? AND day = ?",
                             (office, day.isoformat()))
            if there is not None:
                book.execute("DELETE FROM office_days_off WHERE office = ? AND day = ?", (office, day.isoformat()))
        if there is None:
            return error(request, 404, "Tidak ditemukan", f"{day} bukan hari libur kantor {office}.")
        label = DAY_OFF_LABELS.get(there[0], there[0])
        audit(request, OfficeDayOff, f"{office}/{day}", f"{office} {day} {there[1]}", DELETION,
              f"dihapus: {label} {day} {there[1]}")
        done = f"{label} {day} ({there[1]}) dihapus dari {office}."
    else:
        raise BadRequest("action: add or remove")
    log.info("HR web: %s changed the days off of %s: %s", request.user, office, done)
    messages.success(request, f"{done} Rekap langsung mengikutinya; kios kantor {office} baru mengikutinya "
                              "setelah jadwalnya dikirim: tekan Kirim jadwal di bawah.")
    return HttpResponseRedirect("/aturan/libur/?" + urlencode({"office": office}))


@page_view
@login_required
@require_POST
def push_schedule(request: HttpRequest) -> HttpResponse:
    """What ``kiosk-central schedule push --office X`` does, with the site's broker and signing key."""
    if not is_admin(request):
        return denied(request, "mengirim jadwal ke kios")
    office = chosen_office(request, request.POST.get("office", "").strip()[:64])
    if not office:
        return error(request, 404, "Tidak ditemukan", "Kantor itu tidak ada di aturan.")
    cfg = settings.KIOSK_CENTRAL
    book = data.ledger()
    try:
        key = signing_key(cfg)
    except KioskError as exc:
        return show_days_off(request, office, "Jadwal tidak dikirim: kunci penandatangan server belum diatur atau "
                             f"tidak terbaca (signing.key_file di central.toml): {exc}. Minta admin server "
                             "mengaturnya, atau kirim dengan `kiosk-central schedule push --office "
                             f"{office}`.", status=503)
    try:
        plans = distribute.plan_schedules(book, [office])
    except (KioskError, ValueError) as exc:
        return show_days_off(request, office, f"Jadwal tidak dikirim: aturan kantor {office} tidak menghasilkan "
                             f"jadwal yang sah ({exc}).", status=409)
    broker = cfg.broker
    try:
        with distribute.RetainedPublisher(broker, "schedule") as out:
            report = distribute.push_schedules(book, plans, key, out.publish, broker.topic_prefix,
                                               timedelta(days=cfg.signing.command_ttl_days), actor(request))
    except (ConnectionError, OSError, KioskError) as exc:
        return show_days_off(request, office, f"Jadwal tidak dikirim: broker MQTT {broker.host}:{broker.port} "
                             f"tidak dapat dihubungi ({exc}). Periksa [broker] di central.toml, lalu coba lagi.",
                             status=503)
    log.info("HR web: %s pushed the schedule of %s: %s", request.user, office, "; ".join(report))
    sent = plans[0]
    text = (f"Jadwal {sent.version} dikirim ke {len(sent.devices)} kios kantor {office}; kios menerapkannya saat "
            "menerimanya dan melaporkannya di halaman Kios.")
    if sent.unaddressed:
        text += f" Belum pernah terhubung (kirim lagi nanti): {', '.join(sent.unaddressed)}."
    messages.success(request, text)
    back = "/aturan/jam/" if request.POST.get("back") == "jam" else "/aturan/libur/"
    return HttpResponseRedirect(back + "?" + urlencode({"office": office}))


# ---------------------------------------------------------------------------------------------------- kiosks


@page_view
@login_required
@require_GET
def kiosks(request: HttpRequest) -> HttpResponse:
    if not is_admin(request):
        return denied(request, "melihat status kios")
    book = data.ledger()
    schedules = {k.device: k for k in distribute.schedule_status(book)}
    selftests = {str(d): (json.loads(t), str(at)) for d, t, at in book.rows(
        "SELECT device_id, selftest, selftest_at FROM devices WHERE selftest IS NOT NULL")}
    rows = []
    for g in distribute.status(book):
        s = schedules.get(g.device)
        seen = book.one("SELECT received_at FROM events WHERE device_id = ? AND type = 'status' ORDER BY seq DESC "
                        "LIMIT 1", (g.device,))
        selftest, selftest_at = selftests.get(g.device, (None, ""))
        lag = [] if s is None else [what for what, state in (("galeri", g.state), ("jadwal", s.state))
                                    if state in LAGGING]
        rows.append({"g": g, "s": s, "revoked": s is None, "gallery": GALLERY_LABELS.get(g.state, g.state),
                     "schedule": SCHEDULE_LABELS.get(s.state, s.state) if s else "dicabut",
                     "seen": seen[0] if seen else "", "lag": lag, "selftest": selftest,
                     "selftest_at": selftest_at,
                     "quiet": s is not None and "unknown" in (g.state, s.state)})
    return render(request, "hr/rules/kiosks.html", {
        "rows": rows, "lagging": sum(1 for r in rows if r["lag"])})
