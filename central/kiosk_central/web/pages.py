"""The HTML of the HR review page: plain server-rendered forms, a little inline CSS, no scripts, labels in Bahasa
Indonesia like the recaps. Every value is escaped here; nothing personal goes into a URL but case ids."""

from __future__ import annotations

import html
from dataclasses import dataclass
from urllib.parse import urlencode

from kiosk_central.store import ReviewCase
from kiosk_contract.punch import KINDS as PUNCH_KINDS
from kiosk_contract.punch import kinds_meaning

REASONS = {
    "unknown_face": "Wajah tidak dikenal",
    "manual_entry": "NIP diketik manual",
    "suspected_spoof": "Dugaan pemalsuan wajah",
}
STATES = {"open": "Menunggu", "accepted": "Diterima", "rejected": "Ditolak"}
KINDS = {k: PUNCH_KINDS[k].label_id for k in kinds_meaning("check_in") + kinds_meaning("check_out")}
"""The kinds a reviewer may grant: those that count in the recap (kiosk_contract.punch)."""

_CSS = """
body { font-family: "DejaVu Sans", Arial, sans-serif; font-size: 11pt; margin: 0; color: #222; }
header { background: #1f4e79; color: #fff; padding: .5em 1em; display: flex; gap: 1.5em; align-items: center; }
header a { color: #fff; } header form { margin-left: auto; } main { padding: 1em; max-width: 70em; }
table { border-collapse: collapse; width: 100%; margin: .5em 0 1em; }
th, td { border: 1px solid #bbb; padding: 3px 6px; text-align: left; vertical-align: top; } th { background: #eee; }
dl { display: grid; grid-template-columns: 14em 1fr; gap: .2em 1em; } dt { font-weight: bold; }
.msg { padding: .5em 1em; border: 1px solid #c00; background: #fee; } .ok { border-color: #080; background: #efe; }
img.evidence { max-width: 480px; border: 1px solid #888; }
form.decide { border: 1px solid #bbb; padding: .6em 1em; margin: .6em 0; } label { display: block; margin: .3em 0; }
textarea { width: 100%; max-width: 40em; }
"""


@dataclass(frozen=True)
class Viewer:
    """Who is looking at the page, and the form token of their session."""

    name: str
    role: str
    csrf: str


def e(value: object) -> str:
    """Escape a value for HTML text or an attribute."""
    return html.escape("" if value is None else str(value), quote=True)


def layout(title: str, body: str, viewer: Viewer | None) -> str:
    """A whole page: the navigation of a logged-in reviewer (with the logout form) around ``body``."""
    nav = ""
    if viewer is not None:
        admin = '<a href="/audit">Audit login</a>' if viewer.role == "admin" else ""
        nav = (
            '<header><strong>Verifikasi presensi</strong><a href="/queue">Antrean</a>'
            f'<a href="/decided">Sudah diputus</a>{admin}'
            f'<form method="post" action="/logout">{csrf_field(viewer.csrf)}<span>{e(viewer.name)} ({e(viewer.role)})'
            '</span> <button type="submit">Keluar</button></form></header>'
        )
    return (
        '<!DOCTYPE html>\n<html lang="id"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>{nav}<main><h1>{e(title)}</h1>{body}"
        "</main></body></html>\n"
    )


def csrf_field(token: str) -> str:
    return f'<input type="hidden" name="csrf" value="{e(token)}">'


def message(text: str, ok: bool = False) -> str:
    return f'<p class="msg{" ok" if ok else ""}" role="alert">{e(text)}</p>' if text else ""


def login_page(login_csrf: str, problem: str = "") -> str:
    body = (
        f"{message(problem)}"
        f'<form method="post" action="/login">{csrf_field(login_csrf)}'
        '<label>Nama pengguna <input name="user" id="user" autocomplete="username" required></label>'
        '<label>Kata sandi <input type="password" name="password" id="password" autocomplete="current-password" '
        'required></label><button type="submit" id="login">Masuk</button></form>'
    )
    return layout("Masuk — verifikasi presensi", body, None)


def error_page(title: str, text: str, viewer: Viewer | None) -> str:
    return layout(title, message(text) + '<p><a href="/queue">Kembali ke antrean</a></p>', viewer)


@dataclass(frozen=True)
class CaseLine:
    """One case in a list: the case and its time in its office's zone."""

    case: ReviewCase
    local_time: str
    nip: str


def queue_page(viewer: Viewer, lines: list[CaseLine], total: int, page: int, page_size: int, offices: list[str],
               filters: dict[str, str], problem: str = "") -> str:
    """The open cases, oldest first, with the filter form and the page links."""
    def option(value: str, label: str, chosen: str) -> str:
        return f'<option value="{e(value)}"{" selected" if value == chosen else ""}>{e(label)}</option>'

    office_options = option("", "semua", filters.get("office", "")) + "".join(
        option(o, o, filters.get("office", "")) for o in offices)
    reason_options = option("", "semua", filters.get("reason", "")) + "".join(
        option(k, v, filters.get("reason", "")) for k, v in REASONS.items())
    form = (
        '<form method="get" action="/queue">'
        f'<label>Kantor <select name="office">{office_options}</select></label>'
        f'<label>Alasan <select name="reason">{reason_options}</select></label>'
        f'<label>Tanggal (waktu kantor) <input type="date" name="date" value="{e(filters.get("date", ""))}"></label>'
        '<button type="submit">Saring</button></form>'
    )
    rows = "".join(
        f'<tr><td><a href="/case/{line.case.id}">#{line.case.id}</a></td><td>{e(line.local_time)}</td>'
        f"<td>{e(line.case.office or '-')}</td><td>{e(line.case.device_id)}</td>"
        f"<td>{e(REASONS.get(line.case.reason, line.case.reason))}</td><td>{e(line.nip)}</td></tr>"
        for line in lines
    )
    table = (
        "<table><thead><tr><th>Kasus</th><th>Waktu</th><th>Kantor</th><th>Perangkat</th><th>Alasan</th>"
        f"<th>NIP (diketik / terdekat)</th></tr></thead><tbody>{rows}</tbody></table>"
        if lines else "<p>Tidak ada kasus yang menunggu.</p>"
    )
    summary = f"<p>{total} kasus menunggu verifikasi (terlama di atas).</p>"
    return layout("Antrean verifikasi", message(problem) + form + summary + table
                  + pager("/queue", filters, page, page_size, total), viewer)


def decided_page(viewer: Viewer, lines: list[CaseLine], total: int, page: int, page_size: int) -> str:
    """The decided cases, newest decision first, with the reviewer and the time of each decision."""
    rows = "".join(
        f'<tr><td><a href="/case/{line.case.id}">#{line.case.id}</a></td><td>{e(line.local_time)}</td>'
        f"<td>{e(REASONS.get(line.case.reason, line.case.reason))}</td><td>{e(STATES[line.case.state])}</td>"
        f"<td>{e(line.case.resolved_nip or '')} {e(KINDS.get(line.case.resolved_kind or '', ''))}</td>"
        f"<td>{e(line.case.decided_by)}</td><td>{e(line.case.decided_at)}</td><td>{e(line.case.decision_reason)}</td>"
        "</tr>"
        for line in lines
    )
    table = (
        "<table><thead><tr><th>Kasus</th><th>Waktu kejadian</th><th>Alasan</th><th>Putusan</th><th>Dicatat untuk</th>"
        f"<th>Pemeriksa</th><th>Diputus (UTC)</th><th>Alasan putusan</th></tr></thead><tbody>{rows}</tbody></table>"
        if lines else "<p>Belum ada kasus yang diputus.</p>"
    )
    return layout("Kasus yang sudah diputus", table + pager("/decided", {}, page, page_size, total), viewer)


def pager(path: str, filters: dict[str, str], page: int, page_size: int, total: int) -> str:
    pages = max(1, -(-total // page_size))
    links = []
    if page > 1:
        links.append(f'<a href="{path}?{e(urlencode({**filters, "page": page - 1}))}">« sebelumnya</a>')
    links.append(f"halaman {page} dari {pages}")
    if page < pages:
        links.append(f'<a href="{path}?{e(urlencode({**filters, "page": page + 1}))}" id="next">berikutnya »</a>')
    return f'<p class="pager">{" · ".join(links)}</p>'


def audit_page(viewer: Viewer, attempts: list[tuple[str, str, str, str]]) -> str:
    rows = "".join(f"<tr><td>{e(at)}</td><td>{e(user)}</td><td>{e(remote)}</td><td>{e(outcome)}</td></tr>"
                   for at, user, remote, outcome in attempts)
    return layout("Audit login", "<table><thead><tr><th>Waktu (UTC)</th><th>Pengguna</th><th>Alamat</th>"
                  f"<th>Hasil</th></tr></thead><tbody>{rows}</tbody></table>", viewer)


@dataclass(frozen=True)
class CaseView:
    """Everything the case page shows, worked out from the case, its signed event and the roster."""

    case: ReviewCase
    local_time: str
    utc_time: str
    time_note: str
    people: list[tuple[str, str, str]]  # (what the NIP is, NIP, "name (unit)" or "not in the roster")
    scores: list[tuple[str, str]]
    event_kind: str | None
    has_photo: bool
    proposed_nip: str
    history: list[tuple[str, str, str, str, str, str]]


def case_page(viewer: Viewer, view: CaseView, problem: str = "", form: dict[str, str] | None = None) -> str:
    """One case: where and when, who it may be, the scores, the photo, and the accept and reject forms."""
    c = view.case
    facts = [
        ("Status", STATES[c.state]),
        ("Alasan", REASONS.get(c.reason, c.reason)),
        ("Perangkat", c.device_id),
        ("Kantor", c.office or "-"),
        ("Waktu (kantor)", view.local_time),
        ("Waktu (UTC)", view.utc_time),
        ("Sumber waktu", view.time_note),
        ("Jenis presensi di perangkat", KINDS.get(view.event_kind or "", view.event_kind or "-")),
    ]
    facts += [(label, f"{nip} — {who}") for label, nip, who in view.people]
    facts += view.scores
    if c.state != "open":
        facts += [("Diputus oleh", f"{c.decided_by} pada {c.decided_at} UTC"),
                  ("Alasan putusan", c.decision_reason or "")]
        if c.state == "accepted":
            facts.append(("Dicatat sebagai", f"{c.resolved_nip} {KINDS.get(c.resolved_kind or '', '')}"))
    details = "<dl>" + "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in facts) + "</dl>"
    photo = (f'<p><img class="evidence" id="evidence" src="/case/{c.id}/photo" alt="Foto bukti kasus {c.id}"></p>'
             if view.has_photo else "<p>Foto bukti tidak tersedia (belum tiba atau sudah dihapus).</p>")
    forms = decision_forms(viewer, view, form or {}) if c.state == "open" else ""
    history = ""
    if view.history:
        rows = "".join(f"<tr><td>{e(at)}</td><td>{e(actor)}</td><td>{e(action)}</td><td>{e(reason)}</td>"
                       f"<td>{e(before)}</td><td>{e(after)}</td></tr>" for at, actor, action, reason, before, after
                       in view.history)
        history = ("<h2>Jejak audit</h2><table><thead><tr><th>Waktu (UTC)</th><th>Oleh</th><th>Tindakan</th>"
                   f"<th>Alasan</th><th>Sebelum</th><th>Sesudah</th></tr></thead><tbody>{rows}</tbody></table>")
    return layout(f"Kasus #{c.id}", message(problem) + details + photo + forms + history, viewer)


def decision_forms(viewer: Viewer, view: CaseView, form: dict[str, str]) -> str:
    """Accept (for a NIP of the roster and a punch kind) or reject, each with a required reason."""
    c = view.case
    nip = form.get("nip", view.proposed_nip)
    kind = form.get("kind", view.event_kind or "")
    kinds = "".join(f'<option value="{k}"{" selected" if k == kind else ""}>{v}</option>' for k, v in KINDS.items())
    placeholder = '<option value="">(pilih)</option>' if kind not in KINDS else ""
    accept = (
        f'<form class="decide" method="post" action="/case/{c.id}/decide">{csrf_field(viewer.csrf)}'
        '<input type="hidden" name="decision" value="accept"><h2>Terima sebagai presensi</h2>'
        f'<label>NIP <input name="nip" id="nip" value="{e(nip)}" required pattern="[0-9]{{18}}" '
        'inputmode="numeric"></label>'
        f'<label>Jenis <select name="kind" id="kind" required>{placeholder}{kinds}</select></label>'
        '<label>Alasan (wajib) <textarea name="reason" id="accept-reason" required maxlength="500">'
        f'{e(form.get("reason", "") if form.get("decision") == "accept" else "")}</textarea></label>'
        '<button type="submit" id="accept">Terima</button></form>'
    )
    reject = (
        f'<form class="decide" method="post" action="/case/{c.id}/decide">{csrf_field(viewer.csrf)}'
        '<input type="hidden" name="decision" value="reject"><h2>Tolak</h2>'
        '<label>Alasan (wajib) <textarea name="reason" id="reject-reason" required maxlength="500">'
        f'{e(form.get("reason", "") if form.get("decision") == "reject" else "")}</textarea></label>'
        '<button type="submit" id="reject">Tolak</button></form>'
    )
    return accept + reject
