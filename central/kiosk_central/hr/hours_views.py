"""The rules pages for what changes from a day on (issue 14): an office's working hours and Ramadan ranges
(``/aturan/jam/``) and the TPP deduction table (``/aturan/potongan/``), admins only.

A change is a new version valid from a day (:func:`kiosk_central.rules.save_version`, ``source`` web): the recap of
every day before it keeps the rules it had, and no day before the first of this month can be changed here
(:func:`~kiosk_central.hr.rules_forms.earliest_change`). A version that has not started yet can be deleted; one
that has is replaced by adding another. Every change is a LogEntry of its model (who, when, what). The kiosks follow
working hours and Ramadan ranges only after the office's schedule is pushed (the button on the page, or the daily
push timer for versions that start later: deploy/)."""

from __future__ import annotations

import json
import logging
import zoneinfo
from datetime import date
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.admin.models import ADDITION, DELETION
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from kiosk_central import distribute
from kiosk_central.hr import data
from kiosk_central.hr.rules_forms import (
    DAY_LABELS,
    HOURS_KINDS,
    FormProblem,
    check_deductions,
    check_hours,
    check_ramadan,
    earliest_change,
    form_date,
)
from kiosk_central.hr.rules_views import (
    LAGGING,
    SCHEDULE_LABELS,
    SOURCE_LABELS,
    actor,
    audit,
    chosen_office,
    denied,
    history,
    is_admin,
    office_names,
)
from kiosk_central.hr.views import BadRequest, error, page_view
from kiosk_central.ledger.models import DeductionVersion, OfficeHoursVersion, OfficeRamadan
from kiosk_central.rules import (
    VERSIONED,
    RuleVersion,
    deduction_table,
    hours_by_day,
    in_force,
    rule_versions,
    save_version,
)
from kiosk_central.store import Ledger

log = logging.getLogger(__name__)


def _today(book: Ledger, office: str | None = None) -> date:
    """Today in the office's zone (the site's for the regency-wide deduction table)."""
    if office:
        zone = book.office_zones().get(office)
        if zone:
            return timezone.now().astimezone(zoneinfo.ZoneInfo(zone)).date()
    return timezone.localdate()


def _version_day(value: str) -> date:
    """The start day of a stored version, as the page's delete button sends it (the first is 1970-01-01)."""
    try:
        return date.fromisoformat(value.strip()[:10])
    except ValueError:
        raise BadRequest("valid_from: a date like 2027-01-04") from None


def _removable(version: RuleVersion, versions: list[RuleVersion], today: date) -> bool:
    """A version may be deleted while it has not started, when it is not the first."""
    return version.valid_from > today and version is not versions[0]


def _remove_version(book: Ledger, what: str, office: str | None, start: date, today: date) -> bool:
    """Delete the version of ``what`` starting on ``start`` when :func:`_removable`; whether it was."""
    with book.transaction():
        versions = rule_versions(book, what, office)
        chosen = next((v for v in versions if v.valid_from == start), None)
        if chosen is None or not _removable(chosen, versions, today):
            return False
        table = VERSIONED[what][0]
        where, params = ("office = ? AND ", (office,)) if what == "hours" else ("", ())
        book.execute(f"DELETE FROM {table} WHERE {where}valid_from = ?", (*params, start.isoformat()))
    return True


# ---------------------------------------------------------------------------------------------------- hours


def _hours_rows(versions: list[RuleVersion], today: date) -> list[dict[str, Any]]:
    current = in_force(versions, today)
    rows = []
    for v in reversed(versions):
        by_day = hours_by_day(v.data)
        rows.append({"v": v, "current": v is current, "removable": _removable(v, versions, today),
                     "days": [(" - ".join(t.strftime("%H:%M") for t in by_day[(False, d)]) if (False, d) in by_day
                               else "libur",
                               " - ".join(t.strftime("%H:%M") for t in by_day[(True, d)]) if (True, d) in by_day
                               else "") for d in DAY_LABELS],
                     "source": SOURCE_LABELS.get(v.source, v.source)})
    return rows


def _hours_form(version: RuleVersion | None, start: date) -> dict[str, str]:
    """The form prefilled with ``version``'s hours, starting on ``start``."""
    form = {"valid_from": start.isoformat()}
    if version is not None:
        for (ramadan, day), times in hours_by_day(version.data).items():
            key = "ramadan_hours" if ramadan else "hours"
            form[f"{key}_{day}_start"], form[f"{key}_{day}_end"] = (t.strftime("%H:%M") for t in times)
    return form


def show_hours(request: HttpRequest, office: str, problem: str = "", form: dict[str, str] | None = None,
               status: int = 200) -> HttpResponse:
    book = data.ledger()
    today = _today(book, office)
    versions = rule_versions(book, "hours", office) if office else []
    ramadan = [(s, e, SOURCE_LABELS.get(src, src)) for s, e, src in book.rows(
        "SELECT start_date, end_date, source FROM office_ramadan WHERE office = ? ORDER BY start_date DESC",
        (office,))] if office else []
    kiosks = [(k, SCHEDULE_LABELS.get(k.state, k.state), k.state in LAGGING or k.state == "unknown")
              for k in distribute.schedule_status(book) if k.office == office]
    form = form or _hours_form(in_force(versions, today), today)
    inputs = [(label, [(name, form.get(name, "")) for key in HOURS_KINDS for end in ("start", "end")
                       for name in (f"{key}_{day}_{end}",)]) for day, label in DAY_LABELS.items()]
    return render(request, "hr/rules/hours.html", {
        "offices": office_names(book), "office": office, "rows": _hours_rows(versions, today),
        "days": DAY_LABELS, "kinds": HOURS_KINDS, "ramadan": ramadan, "kiosks": kiosks,
        "stale": [k for k, _, lag in kiosks if lag], "earliest": earliest_change(today), "today": today,
        "form": form, "inputs": inputs, "problem": problem,
        "history": history(OfficeHoursVersion) + history(OfficeRamadan),
    }, status=status)


def _push_note(office: str) -> str:
    return (f"Rekap langsung mengikutinya; kios kantor {office} mengikutinya setelah jadwalnya dikirim (tombol Kirim "
            "jadwal; jam kerja yang mulai berlaku nanti dikirim otomatis pada harinya).")


@page_view
@login_required
@require_http_methods(["GET", "POST"])
def hours(request: HttpRequest) -> HttpResponse:
    if not is_admin(request):
        return denied(request, "mengubah jam kerja")
    source = request.POST if request.method == "POST" else request.GET
    office = chosen_office(request, source.get("office", "").strip()[:64])
    if office is None:
        return error(request, 404, "Tidak ditemukan", "Kantor itu tidak ada di aturan.")
    if request.method == "GET" or not office:
        return show_hours(request, office)
    book = data.ledger()
    today = _today(book, office)
    action = request.POST.get("action", "")
    if action == "add":
        form = {k: v[:20] for k, v in request.POST.items() if k != "csrfmiddlewaretoken"}
        try:
            start, hours_data = check_hours(form, today)
        except FormProblem as exc:
            return show_hours(request, office, str(exc), form, exc.status)
        with book.transaction():
            before = in_force(rule_versions(book, "hours", office), start)
            same = before is not None and hours_by_day(before.data) == hours_by_day(hours_data)
            if not same:
                save_version(book, "hours", office, hours_data, start, "web", actor(request))
        if same:
            return show_hours(request, office, f"Jam kerja itu sama dengan yang berlaku pada {start}: tidak ada yang "
                              "diubah.", form, 409)
        audit(request, OfficeHoursVersion, f"{office}/{start}", f"{office} jam kerja mulai {start}", ADDITION,
              f"jam kerja baru mulai {start}: {json.dumps(hours_data, sort_keys=True)}")
        done = f"Jam kerja baru kantor {office} berlaku mulai {start}."
    elif action == "remove":
        start = _version_day(request.POST.get("valid_from", ""))
        if not _remove_version(book, "hours", office, start, today):
            return show_hours(request, office, f"Jam kerja mulai {start} tidak dapat dihapus: hanya yang belum mulai "
                              "berlaku (dan bukan yang pertama). Untuk mengubah yang sudah berlaku, tambahkan jam "
                              "kerja baru.", status=409)
        audit(request, OfficeHoursVersion, f"{office}/{start}", f"{office} jam kerja mulai {start}", DELETION,
              f"dihapus: jam kerja mulai {start}")
        done = f"Jam kerja kantor {office} mulai {start} dihapus."
    elif action in ("ramadan_add", "ramadan_remove"):
        done = _change_ramadan(request, book, office, action)
        if isinstance(done, HttpResponse):
            return done
    else:
        raise BadRequest("action: add, remove, ramadan_add or ramadan_remove")
    log.info("HR web: %s changed the working hours of %s: %s", request.user, office, done)
    messages.success(request, f"{done} {_push_note(office)}")
    return HttpResponseRedirect("/aturan/jam/?" + urlencode({"office": office}))


def _change_ramadan(request: HttpRequest, book: Ledger, office: str, action: str) -> str | HttpResponse:
    form = {k: request.POST.get(k, "")[:20] for k in ("start", "end")}
    if action == "ramadan_add":
        try:
            start, end = check_ramadan(form)
        except FormProblem as exc:
            return show_hours(request, office, str(exc), status=exc.status)
        with book.transaction():
            overlap = book.one("SELECT start_date, end_date FROM office_ramadan WHERE office = ? AND start_date <= ? "
                               "AND end_date >= ?", (office, end.isoformat(), start.isoformat()))
            if overlap is None:
                book.execute("INSERT INTO office_ramadan (office, start_date, end_date, source) "
                             "VALUES (?, ?, ?, 'web')", (office, start.isoformat(), end.isoformat()))
        if overlap is not None:
            return show_hours(request, office, f"Ramadan {start} s.d. {end} bertumpang tindih dengan {overlap[0]} s.d. "
                              f"{overlap[1]} yang sudah ada: hapus yang lama dulu.", status=409)
        audit(request, OfficeRamadan, f"{office}/{start}", f"{office} Ramadan {start}..{end}", ADDITION,
              f"ditambahkan: Ramadan {start} s.d. {end}")
        return f"Ramadan {start} s.d. {end} ditambahkan di {office}."
    try:
        start = form_date(form["start"], "Mulai")
    except FormProblem as exc:
        raise BadRequest(str(exc)) from None
    with book.transaction():
        there = book.one("SELECT end_date FROM office_ramadan WHERE office = ? AND start_date = ?",
                         (office, start.isoformat()))
        if there is not None:
            book.execute("DELETE FROM office_ramadan WHERE office = ? AND start_date = ?", (office, start.isoformat()))
    if there is None:
        return error(request, 404, "Tidak ditemukan", f"Tidak ada Ramadan mulai {start} di kantor {office}.")
    audit(request, OfficeRamadan, f"{office}/{start}", f"{office} Ramadan {start}..{there[0]}", DELETION,
          f"dihapus: Ramadan {start} s.d. {there[0]}")
    return f"Ramadan {start} s.d. {there[0]} dihapus dari {office}."


# ---------------------------------------------------------------------------------------------------- deductions


def _band_names(version: RuleVersion) -> dict[str, list[str]]:
    return {c: [str(b["name"]) for b in version.data[c]] for c in ("late", "early")}


def _comma(amount: Decimal) -> str:
    """A percent as HR writes it, with a decimal comma (0,5)."""
    return str(amount).replace(".", ",")


def _deductions_form(version: RuleVersion, start: date) -> dict[str, str]:
    table = deduction_table(version.data)
    form = {"valid_from": start.isoformat(), "missing_check_in": table.missing_check_in,
            "missing_check_out": table.missing_check_out, "absent_percent": _comma(table.absent_percent),
            "monthly_cap_percent": _comma(table.monthly_cap_percent)}
    for name, _, upper, pct in (*table.late, *table.early):
        form[f"{name}_to"] = str(upper) if upper else ""
        form[f"{name}_percent"] = _comma(pct)
    return form


def show_deductions(request: HttpRequest, problem: str = "", form: dict[str, str] | None = None,
                    status: int = 200) -> HttpResponse:
    book = data.ledger()
    today = _today(book)
    versions = rule_versions(book, "deductions")
    current = in_force(versions, today) or (versions[0] if versions else None)
    rows = []
    for v in reversed(versions):
        t = deduction_table(v.data)
        rows.append({"v": v, "t": t, "current": v is current, "removable": _removable(v, versions, today),
                     "source": SOURCE_LABELS.get(v.source, v.source), "absent": _comma(t.absent_percent),
                     "cap": _comma(t.monthly_cap_percent),
                     "bands": [[(n, lo, hi, _comma(p)) for n, lo, hi, p in bands] for bands in (t.late, t.early)]})
    names = _band_names(current) if current else {"late": [], "early": []}
    form = form or (_deductions_form(current, today) if current else {})
    bands = [(name, None if i == len(of) - 1 else (f"{name}_to", form.get(f"{name}_to", "")),
              (f"{name}_percent", form.get(f"{name}_percent", "")))
             for of in names.values() for i, name in enumerate(of)]
    return render(request, "hr/rules/deductions.html", {
        "rows": rows, "current": deduction_table(current.data) if current else None,
        "names": names, "bands": bands, "form": form, "problem": problem,
        "earliest": earliest_change(today), "history": history(DeductionVersion),
    }, status=status)


@page_view
@login_required
@require_http_methods(["GET", "POST"])
def deductions(request: HttpRequest) -> HttpResponse:
    if not is_admin(request):
        return denied(request, "mengubah tabel potongan TPP")
    if request.method == "GET":
        return show_deductions(request)
    book = data.ledger()
    today = _today(book)
    versions = rule_versions(book, "deductions")
    if not versions:
        return error(request, 409, "Belum ada tabel potongan", "Muat berkas aturan dulu (kiosk-central load).")
    action = request.POST.get("action", "")
    if action == "add":
        form = {k: v[:20] for k, v in request.POST.items() if k != "csrfmiddlewaretoken"}
        current = in_force(versions, today) or versions[0]
        try:
            start, table = check_deductions(form, _band_names(current), today)
        except FormProblem as exc:
            return show_deductions(request, str(exc), form, exc.status)
        with book.transaction():
            before = in_force(rule_versions(book, "deductions"), start)
            same = before is not None and deduction_table(before.data) == deduction_table(table)
            if not same:
                save_version(book, "deductions", None, table, start, "web", actor(request))
        if same:
            return show_deductions(request, f"Tabel itu sama dengan yang berlaku pada {start}: tidak ada yang diubah.",
                                   form, 409)
        audit(request, DeductionVersion, start.isoformat(), f"tabel potongan mulai {start}", ADDITION,
              f"tabel potongan baru mulai {start}: {json.dumps(table, sort_keys=True)}")
        done = f"Tabel potongan baru berlaku mulai {start}; rekap hari sejak itu langsung mengikutinya."
    elif action == "remove":
        start = _version_day(request.POST.get("valid_from", ""))
        if not _remove_version(book, "deductions", None, start, today):
            return show_deductions(request, f"Tabel mulai {start} tidak dapat dihapus: hanya yang belum mulai "
                                   "berlaku (dan bukan yang pertama).", status=409)
        audit(request, DeductionVersion, start.isoformat(), f"tabel potongan mulai {start}", DELETION,
              f"dihapus: tabel potongan mulai {start}")
        done = f"Tabel potongan mulai {start} dihapus."
    else:
        raise BadRequest("action: add or remove")
    log.info("HR web: %s changed the deduction table: %s", request.user, done)
    messages.success(request, done)
    return HttpResponseRedirect("/aturan/potongan/")
