"""The HR pages: login and logout, the review queue, one case with the evidence and reference photos, decisions
(with the two-person rule), the decided list, recaps, and the audit. Every response is ``Cache-Control: no-store``
with a content security policy that allows this site's images, styles and forms only."""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Callable
from datetime import date, timedelta
from functools import wraps
from typing import Any
from urllib.parse import quote, urlencode

from django.conf import settings
from django.contrib.auth import login as auth_login
from django.contrib.auth import logout as auth_logout
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.db import IntegrityError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from kiosk_central import recap as recaps
from kiosk_central import reports, rules
from kiosk_central.hr import accounts, data
from kiosk_central.hr.models import LoginAudit, Proposal, ReferencePhoto, UserAudit
from kiosk_central.hr.rules_forms import DATE
from kiosk_central.store import DecisionRefused
from kiosk_contract.nip import NipError, parse_nip
from kiosk_contract.punch import KINDS as PUNCH_KINDS
from kiosk_contract.punch import kinds_meaning
from kiosk_contract.roster import RosterError, parse_roster

log = logging.getLogger(__name__)

KINDS = {k: PUNCH_KINDS[k].label_id for k in kinds_meaning("check_in") + kinds_meaning("check_out")}
MAX_REASON_CHARS = 500
MAX_PASSWORD_CHARS = 1024
CSP = ("default-src 'none'; img-src 'self'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; "
       "base-uri 'none'")
PAGE = re.compile(r"[0-9]{1,6}")
MONTH = re.compile(r"[0-9]{4}-[0-9]{2}")


class BadRequest(Exception):
    """A parameter that makes no sense: answered 400 with the message."""


def secured(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store"
    response["Pragma"] = "no-cache"
    # Referrer-Policy stays Django's "same-origin": with "no-referrer" browsers send "Origin: null" on form posts,
    # which Django's CSRF origin check (rightly) refuses.
    response.setdefault("Content-Security-Policy", CSP)
    return response


def page_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Security headers on every answer; :class:`BadRequest` as 400."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            response = view(request, *args, **kwargs)
        except BadRequest as exc:
            response = error(request, 400, "Permintaan tidak valid", str(exc))
        return secured(response)

    return wrapped


def error(request: HttpRequest, status: int, title: str, text: str) -> HttpResponse:
    return render(request, "hr/error.html", {"title": title, "text": text}, status=status)


def remote(request: HttpRequest) -> str:
    return str(request.META.get("REMOTE_ADDR", ""))[:64]


def web_cfg() -> Any:
    return settings.KIOSK_CENTRAL.web


# ---------------------------------------------------------------------------------------------------- login


@page_view
@require_http_methods(["GET", "POST"])
def login_view(request: HttpRequest) -> HttpResponse:
    """The login form; a POST reserves a password check (the throttle) before the password is looked at."""
    target = request.POST.get("next") or request.GET.get("next") or "/queue/"
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure()) or "\n" in target or "\r" in target:
        target = "/queue/"
    if request.method == "GET":
        return render(request, "hr/login.html", {"next": target})
    cfg = web_cfg()
    typed = request.POST.get("username", "").strip().lower()[:150]
    password = request.POST.get("password", "")[:MAX_PASSWORD_CHARS]
    user = User.objects.filter(username=typed).first() if accounts.USER_NAME.fullmatch(typed) else None
    known = user.username if user is not None else ""
    window = timedelta(minutes=cfg.lockout_min)
    who = known or f"unknown user #{accounts.name_hash(typed)}"
    if not accounts.reserve_check(typed, cfg.max_failed_logins, window):
        LoginAudit.objects.create(user_name=known, name_hash=accounts.name_hash(typed), remote=remote(request),
                                  outcome="locked")
        log.warning("HR web: login of %s from %s refused (locked)", who, remote(request))
        until = accounts.locked_until(typed, window)
        return render(request, "hr/login.html", {"next": target, "problem": "Terlalu banyak percobaan masuk yang "
                      f"gagal untuk nama ini: dikunci sampai {until}."}, status=429)
    if user is None:
        accounts.spend_check_time(password)
        outcome = "unknown_user"
    else:
        if user.password.startswith(accounts.LEGACY_PREFIX):
            ok = accounts.check_legacy(password, user.password)
            if ok:  # scrypt of the old page -> Argon2, now that the password is known
                user.set_password(password)
                user.save(update_fields=["password"])
        else:
            ok = user.check_password(password)  # Django re-hashes an older hasher's hash with Argon2
        outcome = ("ok" if user.is_active else "disabled") if ok else "bad_password"
    LoginAudit.objects.create(user_name=known, name_hash=accounts.name_hash(typed), remote=remote(request),
                              outcome=outcome)
    if outcome != "ok" or user is None:
        log.warning("HR web: login of %s from %s refused (%s)", who, remote(request), outcome)
        return render(request, "hr/login.html", {"next": target, "problem": "Nama pengguna atau kata sandi salah."},
                      status=401)
    accounts.clear_checks(typed)
    auth_login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    log.info("HR web: %s logged in from %s", user.username, remote(request))
    return HttpResponseRedirect(target)


@page_view
@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        LoginAudit.objects.create(user_name=request.user.get_username(), name_hash="", remote=remote(request),
                                  outcome="logout")
    auth_logout(request)
    return HttpResponseRedirect("/login/")


# ---------------------------------------------------------------------------------------------------- lists


def page_number(request: HttpRequest) -> int:
    value = request.GET.get("page", "1")
    if PAGE.fullmatch(value) is None or int(value) < 1:
        raise BadRequest(f"page {value!r}: a page number 1, 2, ...")
    return int(value)


def parse_day(value: str, name: str) -> date:
    if DATE.fullmatch(value) is None:
        raise BadRequest(f"{name} {value!r}: use YYYY-MM-DD, like 2026-02-03")
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{name} {value!r}: no such date") from None
    if not 2000 <= day.year <= 2100:
        raise BadRequest(f"{name} {value!r}: outside 2000-2100")
    return day


def offices_for(request: HttpRequest) -> list[str]:
    zones = data.ledger().office_zones()
    offices = data.scope(request.user)
    return [o for o in zones if offices is None or o in offices]


@page_view
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return HttpResponseRedirect("/queue/" if request.user.is_authenticated else "/login/")


@page_view
@login_required
@require_GET
def queue(request: HttpRequest) -> HttpResponse:
    size = web_cfg().page_size
    page = page_number(request)
    office = request.GET.get("office", "")[:64]
    reason = request.GET.get("reason", "")[:40]
    day = parse_day(request.GET["date"], "date") if request.GET.get("date") else None
    cases, total = data.page_of_cases(request.user, decided=False, office=office or None, reason=reason or None,
                                      day=day, page=page, size=size)
    zones = data.ledger().office_zones()
    return render(request, "hr/queue.html", {
        "lines": [data.case_line(c, zones) for c in cases], "total": total, "page": page,
        "pages": max(1, -(-total // size)), "offices": offices_for(request), "reasons": data.REASONS,
        "office": office, "reason": reason, "date": day.isoformat() if day else "",
        "pending": set(Proposal.objects.filter(state=Proposal.PENDING).values_list("case_id", flat=True)),
    })


@page_view
@login_required
@require_GET
def decided(request: HttpRequest) -> HttpResponse:
    size = web_cfg().page_size
    page = page_number(request)
    cases, total = data.page_of_cases(request.user, decided=True, office=None, reason=None, day=None, page=page,
                                      size=size)
    zones = data.ledger().office_zones()
    return render(request, "hr/decided.html", {"lines": [data.case_line(c, zones) for c in cases], "total": total,
                                               "page": page, "pages": max(1, -(-total // size))})


# ---------------------------------------------------------------------------------------------------- a case


def show_case(request: HttpRequest, case_id: int, problem: str = "", form: dict[str, str] | None = None,
              status: int = 200) -> HttpResponse:
    case = data.find_case(request.user, case_id)
    if case is None:
        return error(request, 404, "Tidak ditemukan", f"Tidak ada kasus {case_id} yang boleh Anda lihat.")
    view = data.case_view(case)
    pending = Proposal.objects.filter(case_id=case.id, state=Proposal.PENDING).select_related("proposed_by").first()
    mine = bool(accounts_nip(request) and accounts_nip(request) in view.nips())
    values = form or {}
    return render(request, "hr/case.html", {
        "v": view, "case": case, "problem": problem, "kinds": KINDS, "pending": pending,
        "proposals": Proposal.objects.filter(case_id=case.id).select_related("proposed_by", "second_by"),
        "history": data.ledger().review_history(case.id), "about_me": mine,
        "nip_value": values.get("nip", view.proposed_nip),
        "kind_value": values.get("kind", case.resolved_kind or view.event_kind or ""),
        "references": [(label, nip, slot) for label, nip, _, slot in view.people
                       if ReferencePhoto.objects.filter(nip=nip).exists()],
    }, status=status)


def accounts_nip(request: HttpRequest) -> str:
    return data.own_nip(request.user)


@page_view
@login_required
@require_GET
def case_page(request: HttpRequest, case_id: int) -> HttpResponse:
    return show_case(request, case_id)


@page_view
@login_required
@require_GET
def photo(request: HttpRequest, case_id: int) -> HttpResponse:
    case = data.find_case(request.user, case_id)
    jpeg = None if case is None else data.ledger().evidence(case.device_id, case.event_id)
    if jpeg is None:
        return HttpResponse("tidak ada foto bukti untuk kasus ini\n", status=404, content_type="text/plain")
    return HttpResponse(jpeg, content_type="image/jpeg")


@page_view
@login_required
@require_GET
def reference(request: HttpRequest, case_id: int, slot: str) -> HttpResponse:
    """The enrolled reference photo of one of the case's NIPs (by slot: never a NIP in the URL)."""
    case = data.find_case(request.user, case_id)
    nip = None if case is None else data.slot_nip(data.case_view(case), slot)
    found = ReferencePhoto.objects.filter(nip=nip).first() if nip else None
    if found is None:
        return HttpResponse("tidak ada foto referensi\n", status=404, content_type="text/plain")
    return HttpResponse(bytes(found.jpeg), content_type=found.content_type)


@page_view
@login_required
@require_POST
def decide(request: HttpRequest, case_id: int) -> HttpResponse:
    """Accept or reject a case. An acceptance for a person of another office than the kiosk's, or with another punch
    kind than the kiosk recorded, becomes a proposal that a second reviewer must approve."""
    form = {k: request.POST.get(k, "") for k in ("decision", "nip", "kind", "reason")}
    case = data.find_case(request.user, case_id)
    if case is None:
        return error(request, 404, "Tidak ditemukan", f"Tidak ada kasus {case_id} yang boleh Anda lihat.")
    view = data.case_view(case)
    decision, reason, kind = form["decision"], form["reason"].strip(), form["kind"]
    nip = form["nip"].strip()
    problem = ""
    if decision not in ("accept", "reject"):
        problem = "Keputusan harus terima atau tolak."
    elif not reason:
        problem = "Alasan: tulis mengapa kasus diterima atau ditolak (wajib)."
    elif len(reason) > MAX_REASON_CHARS:
        problem = f"Alasan: paling banyak {MAX_REASON_CHARS} karakter."
    elif decision == "accept":
        try:
            nip = parse_nip(nip, "nip")
        except NipError as exc:
            problem = f"NIP: {exc} (NIP pegawai dalam daftar)."
        else:
            if kind not in KINDS:
                problem = "Jenis presensi: pilih masuk atau pulang."
    if problem:
        return show_case(request, case_id, problem, form, 400)
    me = accounts_nip(request)
    if me and (me in view.nips() or (decision == "accept" and nip == me)):
        return show_case(request, case_id, "Kasus ini tentang Anda sendiri: reviewer lain yang memutusnya.", form,
                         403)
    if Proposal.objects.filter(case_id=case.id, state=Proposal.PENDING).exists():
        return show_case(request, case_id, "Kasus ini menunggu persetujuan reviewer kedua.", form, 409)
    book = data.ledger()
    if decision == "accept":
        person = book.employee(nip)
        if person is None:
            return show_case(request, case_id, f"NIP {nip} tidak ada di daftar pegawai.", form, 400)
        day = book.case_day(case)
        try:
            book.check_employed(case, nip)
        except DecisionRefused:
            why_not = (f"bukan pegawai pada {day.isoformat()}: tidak ada penempatan kantor yang mencakup hari itu "
                       "(belum bergabung atau sudah keluar)" if day is not None
                       else "tidak punya penempatan kantor sama sekali di daftar pegawai")
            return show_case(request, case_id, f"{person[0]} (NIP {nip}) {why_not}, jadi kasus ini tidak dapat "
                             "diterima sebagai presensinya.", form, 400)
        office_then = book.office_on(nip, day) if day is not None else person[1]
        why = []
        if case.office is not None and office_then != case.office:
            why.append(f"pegawai kantor {office_then}, kios kantor {case.office}")
        if view.event_kind and kind != view.event_kind:
            why.append(f"jenis presensi diubah dari {view.event_kind} ke {kind}")
        if why:
            try:
                Proposal.objects.create(case_id=case.id, office=case.office or "", nip=nip, kind=kind, reason=reason,
                                        why="; ".join(why), proposed_by=request.user)
            except IntegrityError:
                return show_case(request, case_id, "Kasus ini sudah menunggu persetujuan reviewer kedua.", form, 409)
            log.info("HR web: %s proposed case %d for a second reviewer (%s)", request.user, case.id, "; ".join(why))
            return HttpResponseRedirect(f"/case/{case.id}/")
    try:
        book.decide_review(case.id, request.user.get_username(), decision == "accept", reason,
                           nip if decision == "accept" else None, kind if decision == "accept" else None)
    except DecisionRefused as exc:
        status = {"missing": 404, "decided": 409}.get(exc.why, 400)
        return show_case(request, case_id, str(exc), form, status)
    log.info("HR web: %s %sed case %d", request.user, decision, case.id)
    return HttpResponseRedirect(f"/case/{case.id}/")


@page_view
@login_required
@require_POST
def second(request: HttpRequest, case_id: int) -> HttpResponse:
    """A second reviewer approves or refuses a pending proposal."""
    case = data.find_case(request.user, case_id)
    if case is None:
        return error(request, 404, "Tidak ditemukan", f"Tidak ada kasus {case_id} yang boleh Anda lihat.")
    choice, reason = request.POST.get("choice", ""), request.POST.get("reason", "").strip()[:MAX_REASON_CHARS]
    pending = Proposal.objects.filter(case_id=case.id, state=Proposal.PENDING).select_related("proposed_by").first()
    if pending is None or str(pending.id) != request.POST.get("proposal", ""):
        return show_case(request, case_id, "Usulan ini sudah tidak menunggu persetujuan.", status=409)
    if choice not in ("approve", "refuse"):
        return show_case(request, case_id, "Pilih setujui atau tolak usulan.", status=400)
    if pending.proposed_by_id == request.user.pk:
        return show_case(request, case_id, "Reviewer kedua harus orang lain daripada pengusul.", status=403)
    me = accounts_nip(request)
    if me and (me in data.case_view(case).nips() or me == pending.nip):
        return show_case(request, case_id, "Kasus ini tentang Anda sendiri: reviewer lain yang memutusnya.",
                         status=403)
    now = timezone.now()
    state = Proposal.APPROVED if choice == "approve" else Proposal.REFUSED
    taken = Proposal.objects.filter(id=pending.id, state=Proposal.PENDING).update(
        state=state, second_by=request.user, second_at=now, second_reason=reason)
    if taken != 1:
        return show_case(request, case_id, "Usulan ini baru saja diputus reviewer lain.", status=409)
    if state == Proposal.REFUSED:
        log.info("HR web: %s refused the proposal on case %d", request.user, case.id)
        return HttpResponseRedirect(f"/case/{case.id}/")
    actor = f"{pending.proposed_by.get_username()}+{request.user.get_username()}"
    note = f"{pending.reason} [dua reviewer: diusulkan {pending.proposed_by.get_username()}, disetujui " \
           f"{request.user.get_username()}{': ' + reason if reason else ''}; {pending.why}]"
    try:
        data.ledger().decide_review(case.id, actor, True, note, pending.nip, pending.kind)
    except DecisionRefused as exc:
        Proposal.objects.filter(id=pending.id).update(state=Proposal.SUPERSEDED, second_reason=f"{reason} ({exc})")
        return show_case(request, case_id, str(exc), status=409)
    except Exception:
        Proposal.objects.filter(id=pending.id).update(state=Proposal.PENDING, second_by=None, second_at=None,
                                                      second_reason="")
        raise
    log.info("HR web: %s approved %s's proposal on case %d", request.user, pending.proposed_by, case.id)
    return HttpResponseRedirect(f"/case/{case.id}/")


# ---------------------------------------------------------------------------------------------------- recaps


ALL_OFFICES = "*"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
DOWNLOADS = {  # format -> (label on the page, what it is)
    "xlsx": "Unduh Excel (xlsx)",
    "csv-id": "Unduh CSV untuk Excel Indonesia",
    "html": "Versi cetak",
    "csv": "CSV data (untuk program)",
}
UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def content_disposition(kind: str, name: str) -> str:
    """``attachment``/``inline`` with a filename safe under RFC 6266: an ASCII ``filename`` (anything else as ``_``,
    never a quote, a backslash or a line break) and, when the name has more than that, ``filename*`` in UTF-8."""
    plain = UNSAFE_NAME.sub("_", name).strip("._") or "rekap"
    value = f'{kind}; filename="{plain}"'
    if plain != name:
        value += f"; filename*=UTF-8''{quote(name, safe='')}"
    return value


def report_name(report: reports.Report, office: str, period: str, suffix: str) -> str:
    """``rekap-tpp-bkpsdm-2026-02.xlsx``, ``lh-semua-kantor-2026-02-03.csv``."""
    stem = "rekap-tpp" if report == "month" else "lh"
    return f"{stem}-{'semua-kantor' if office == ALL_OFFICES else office}-{period}{suffix}"


def recap_period(month: str, day_text: str) -> tuple[date, date]:
    if day_text:
        day = parse_day(day_text, "date")
        return day, day
    if MONTH.fullmatch(month) is None:
        raise BadRequest(f"month {month!r}: use YYYY-MM, like 2026-02")
    if not 2000 <= int(month[:4]) <= 2100:
        raise BadRequest(f"month {month!r}: outside 2000-2100")
    try:
        return recaps.month_range(month)
    except ValueError as exc:
        raise BadRequest(f"month {month!r}: {exc}") from None


@page_view
@login_required
@require_GET
def recap(request: HttpRequest) -> HttpResponse:
    """The monthly recap (or one day's list, LH) of an office the user reviews, with downloads: xlsx (one sheet per
    office), CSV for Excel in an Indonesian locale, the printable page and the machine-readable CSV
    (:mod:`kiosk_central.reports`). Admins may also take every office at once (``office=*``)."""
    offices = offices_for(request)
    everyone = bool(request.user.is_superuser)
    office = request.GET.get("office", "")[:64] or (offices[0] if offices else "")
    month, day_text, fmt = request.GET.get("month", ""), request.GET.get("date", ""), request.GET.get("format", "")
    context: dict[str, Any] = {"offices": offices, "office": office, "month": month, "date": day_text,
                               "everyone": everyone, "all_offices": ALL_OFFICES}
    if not office or (not month and not day_text):
        return render(request, "hr/recap.html", context)
    if office == ALL_OFFICES and not everyone:
        return error(request, 404, "Tidak ditemukan", "Semua kantor sekaligus hanya untuk admin.")
    if office != ALL_OFFICES and office not in offices:
        return error(request, 404, "Tidak ditemukan", f"Kantor {office!r} bukan kantor Anda.")
    if fmt and fmt not in DOWNLOADS:
        raise BadRequest(f"format {fmt!r}: {', '.join(DOWNLOADS)}")
    first, last = recap_period(month, day_text)
    report: reports.Report = "day" if day_text else "month"
    period = first.isoformat() if day_text else month
    book = data.ledger()
    if fmt:
        built = reports.build_recaps(book, offices if office == ALL_OFFICES else [office], first, last)
        return recap_download(built, report, fmt, report_name(report, office, period, ""))
    query = urlencode({"office": office, **({"date": day_text} if day_text else {"month": month})})
    context["downloads"] = [(f, label, f"/recap/?{query}&format={f}") for f, label in DOWNLOADS.items()]
    if office == ALL_OFFICES:
        return render(request, "hr/recap.html", context)
    result = recaps.build_recap(book, office, first, last)
    zone = book.office_zones().get(office, "Asia/Makassar")
    start = data.day_window(first, zone)[0]
    end = data.day_window(last, zone)[1]
    _, open_cases = book.review_cases(decided=False, office=office, windows=[(office, start, end)], limit=1)
    row = book.one("SELECT COUNT(*) FROM events e JOIN devices d ON d.device_id = e.device_id "
                   "WHERE e.time_source = 'unanchored' AND d.office = ?", (office,))
    unanchored = int(row[0]) if row else 0
    context.update(recap=result, open_cases=open_cases, unanchored=unanchored,
                   months=[(m, ", ".join(f"{k} {v}" for k, v in sorted(m.bands.items()) if v)) for m in result.months],
                   days=[(d, recaps.STATUS_LABELS.get(d.status, d.status)) for d in result.days if day_text])
    return render(request, "hr/recap.html", context)


def recap_download(built: list[recaps.Recap], report: reports.Report, fmt: str, name: str) -> HttpResponse:
    """One of the report files, with the regency, place and signatories of central.toml's ``[reports]`` (an office
    without a signer keeps blank lines to sign on)."""
    info = reports.report_info(settings.KIOSK_CENTRAL)
    if fmt == "xlsx":
        response = HttpResponse(reports.workbook(built, report, info), content_type=XLSX_TYPE)
        response["Content-Disposition"] = content_disposition("attachment", name + ".xlsx")
    elif fmt == "csv-id":
        response = HttpResponse(reports.excel_csv(built, report), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = content_disposition("attachment", name + ".csv")
    elif fmt == "csv":
        response = HttpResponse(reports.machine_csv(built, report).encode("utf-8"),
                                content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = content_disposition("attachment", name + "-data.csv")
    else:
        response = HttpResponse(reports.printable_html(built, report, info), content_type="text/html; charset=utf-8")
        response["Content-Disposition"] = content_disposition("inline", name + ".html")
        response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    return response


# ---------------------------------------------------------------------------------------------------- roster

ROSTER_SESSION = "roster_upload"


def _roster_plan(upload: dict[str, Any]) -> tuple[Any, Any]:
    """(the checked file, the plan) of an upload kept in the session."""
    book = data.ledger()
    offices = [str(r[0]) for r in book.rows("SELECT code FROM offices ORDER BY code")]
    found = parse_roster(base64.b64decode(upload["data"]), upload["name"], sheet=upload["sheet"] or None,
                         units=offices)
    return found, rules.plan_roster(book, found, date.fromisoformat(upload["effective"]),
                                    complete=not upload["partial"])


@page_view
@login_required
@require_http_methods(["GET", "POST"])
def roster(request: HttpRequest) -> HttpResponse:
    """Import the roster HR exports (admins): upload -> a preview of every change (new, moved, left, renamed) and
    every problem, changing nothing -> confirm, which applies exactly the previewed plan (refused when the roster
    changed in between). Each change is written to the admin's history of the person (LogEntry)."""
    if not request.user.is_superuser:
        return error(request, 403, "Ditolak", "Hanya admin yang mengimpor daftar pegawai.")
    context: dict[str, Any] = {"effective": timezone.localdate().isoformat(), "sheet": "", "partial": False}
    if request.method == "GET":
        return render(request, "hr/roster.html", context)
    action = request.POST.get("action", "")
    if action == "preview":
        upload = request.FILES.get("file")
        effective = request.POST.get("effective", "").strip() or context["effective"]
        context.update(effective=effective, sheet=request.POST.get("sheet", "").strip()[:100],
                       partial=request.POST.get("partial") == "on")
        if upload is None:
            context["problem"] = "Pilih berkas daftar pegawai (CSV atau xlsx)."
            return render(request, "hr/roster.html", context, status=400)
        if upload.size is None or upload.size > web_cfg().max_upload_bytes:
            context["problem"] = f"Berkas terlalu besar (paling besar {web_cfg().max_upload_bytes} bita)."
            return render(request, "hr/roster.html", context, status=400)
        parse_day(effective, "effective")
        request.session[ROSTER_SESSION] = {
            "name": str(upload.name or "")[:200], "data": base64.b64encode(upload.read()).decode("ascii"),
            "sheet": context["sheet"], "effective": effective, "partial": context["partial"]}
    elif action != "apply":
        raise BadRequest("action: preview or apply")
    saved = request.session.get(ROSTER_SESSION)
    if not saved:
        context["problem"] = "Unggah berkasnya lagi: pratinjau sudah tidak ada."
        return render(request, "hr/roster.html", context, status=400)
    found, plan = _roster_plan(saved)
    counts = plan.counts()
    context.update(found=found, plan=plan, upload=saved["name"], effective=saved["effective"],
                   summary=[(label, counts.get(kind, 0)) for kind, label in rules.CHANGE_LABELS.items()],
                   sheet=saved["sheet"], partial=saved["partial"])
    if action == "preview":
        return render(request, "hr/roster.html", context)
    if request.POST.get("fingerprint", "") != plan.fingerprint:
        context["problem"] = "Daftar pegawai berubah sejak pratinjau ini (impor lain atau perubahan di admin): " \
                             "periksa pratinjau baru di bawah, lalu terapkan lagi."
        return render(request, "hr/roster.html", context, status=409)
    try:
        changes = rules.apply_roster(data.ledger(), plan, f"web {request.user.get_username()} ({saved['name']})")
    except RosterError as exc:
        context["problem"] = str(exc)
        return render(request, "hr/roster.html", context, status=409)
    del request.session[ROSTER_SESSION]
    _log_roster_changes(request, changes, saved["name"])
    log.info("HR web: %s applied roster %s: %s", request.user, saved["name"], plan.counts())
    return render(request, "hr/roster.html", {**context, "applied": changes, "plan": None})


def _log_roster_changes(request: HttpRequest, changes: list[Any], name: str) -> None:
    """Each change in the admin's history of the person (who, when, what)."""
    from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
    from django.contrib.contenttypes.models import ContentType

    from kiosk_central.ledger.models import Employee

    kind = ContentType.objects.get_for_model(Employee)
    LogEntry.objects.bulk_create([LogEntry(
        user_id=request.user.pk, content_type=kind, object_id=c.nip, object_repr=f"{c.name} ({c.nip})"[:200],
        action_flag=ADDITION if c.kind == "new" else CHANGE,
        change_message=f"impor {name}: {c.label} {c.before or ''}{' -> ' if c.before or c.after else ''}"
                       f"{c.after or ''}{' mulai ' + c.effective.isoformat() if c.effective else ''} {c.detail}"
                       .strip()) for c in changes])


# ---------------------------------------------------------------------------------------------------- audit


@page_view
@login_required
@require_GET
def audit(request: HttpRequest) -> HttpResponse:
    if not request.user.is_superuser:
        return error(request, 403, "Ditolak", "Hanya admin yang melihat audit login dan akun.")
    return render(request, "hr/audit.html", {"logins": LoginAudit.objects.all()[:500],
                                             "changes": UserAudit.objects.all()[:500]})


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return secured(error(request, 404, "Tidak ditemukan", "Halaman ini tidak ada."))


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return secured(error(request, 400, "Permintaan tidak valid", "Permintaan ini tidak dapat diproses."))


def forbidden(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return secured(error(request, 403, "Ditolak", "Anda tidak boleh melakukan ini."))


def server_error(request: HttpRequest) -> HttpResponse:
    return secured(HttpResponse("Terjadi kesalahan di server; lihat log server.\n", status=500,
                                content_type="text/plain; charset=utf-8"))
