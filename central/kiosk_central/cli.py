"""The central server's commands: ``serve`` (the ledger subscriber), ``load`` (rules, roster, excused absences and
the device registry into the database), ``recap`` (daily and monthly recaps, CSV/xlsx/HTML), ``web`` (the HR review
web under gunicorn) and ``user`` (its reviewer accounts, Django users). See docs/central.md.

    kiosk-central serve --config central.toml
    kiosk-central load --config central.toml
    kiosk-central recap --config central.toml --office bkpsdm --month 2026-02 --format xlsx --out feb.xlsx
    kiosk-central user add siti --role reviewer --config central.toml   # password from the terminal
    kiosk-central web --config central.toml
    kiosk-central schedule push --config central.toml [--office bkpsdm]  # each office's punch schedule, signed
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from kiosk_central import distribute, reports
from kiosk_central import recap as recaps
from kiosk_central.ingest import Ingestor, RegisteredDevice, sync_registry
from kiosk_central.rules import (
    RosterPlan,
    apply_roster,
    load_excused,
    load_rules,
    plan_roster_file,
    save_excused,
    save_rules,
)
from kiosk_central.settings import CentralConfig, load_central_config, signing_key
from kiosk_central.store import Ledger
from kiosk_contract.errors import ConfigError, KioskError
from kiosk_contract.fsutil import write_atomic
from kiosk_contract.gallery import Gallery
from kiosk_contract.roster import RosterError, problem_lines
from kiosk_contract.runtime import stop_on_signals

if TYPE_CHECKING:
    from kiosk_central.subscriber import Subscriber

log = logging.getLogger(__name__)

EXIT_OK, EXIT_USAGE = 0, 2
STATUS_EVERY_S = 300.0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except KioskError as exc:
        print(f"kiosk-central: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kiosk-central", description="The central attendance ledger and its recaps.")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="subscribe to every kiosk, store, acknowledge and re-date their events")
    serve.add_argument("--config", type=Path, required=True, help="central.toml")
    serve.set_defaults(func=_cmd_serve)

    load = sub.add_parser("load", help="load the rules, roster, excused absences and devices into the database")
    load.add_argument("--config", type=Path, required=True, help="central.toml (its [rules] and [[devices]])")
    load.add_argument("--entered-by", default=None, help="who entered the excused absences and roster changes "
                                                         "(default: this user)")
    load.add_argument("--roster", type=Path, help="a roster export (CSV with , or ;, or xlsx; Indonesian headers) "
                      "instead of rules.employees: then only the roster is loaded")
    load.add_argument("--sheet", help="the xlsx sheet of the roster (default: the first)")
    load.add_argument("--effective", type=date.fromisoformat, help="the day the changes take effect (the roster's "
                      "moves, joins without TMT and leavers; changed working hours or deduction table), like "
                      "2026-02-15; default: today")
    load.add_argument("--partial", action="store_true", help="the roster lists only some people: nobody missing "
                      "from it has left")
    load.add_argument("--preview", action="store_true", help="show what the roster would change and every "
                      "problem in it; change nothing")
    load.set_defaults(func=_cmd_load)

    rec = sub.add_parser("recap", help="the monthly TPP recap or the daily list (LH) of offices, as CSV, xlsx or a "
                         "printable page")
    rec.add_argument("--config", type=Path, required=True, help="central.toml (for the database)")
    which = rec.add_mutually_exclusive_group(required=True)
    which.add_argument("--office", action="append", help="office code of the rules file (repeatable)")
    which.add_argument("--all-offices", action="store_true", help="every office of the ledger")
    when = rec.add_mutually_exclusive_group(required=True)
    when.add_argument("--month", help="the month, like 2026-02: one row per employee with the TPP deduction")
    when.add_argument("--date", type=date.fromisoformat, help="one day, like 2026-02-03: the daily list (LH)")
    rec.add_argument("--format", choices=["csv", "xlsx", "html"], default="csv",
                     help="csv (default), xlsx (one sheet per office) or html (printable, A4 landscape)")
    rec.add_argument("--csv-locale", choices=["plain", "id"], default="plain",
                     help="plain: machine-readable CSV (default); id: for Excel in an Indonesian locale (BOM, ';', "
                          "decimal comma, NIPs kept as text, Indonesian headers)")
    rec.add_argument("--out", type=Path, help="write to this file (refused if it exists) instead of stdout")
    rec.add_argument("--as-of", type=date.fromisoformat, help="count days up to this date (default: today)")
    rec.add_argument("--regency", help="printed above the title, like 'Pemerintah Kabupaten Tana Tidung' "
                     "(default: [reports] regency of the config)")
    rec.add_argument("--place", help="the place before the date of the signature, like 'Tideng Pale' "
                     "(default: [reports] place)")
    rec.add_argument("--signers", type=Path, help="CSV office,role,name,nip of who signs (role kepala or "
                     "pengelola; office '*' for every office; default: [reports] signers_file); without one the "
                     "signature blocks are blank lines")
    rec.set_defaults(func=_cmd_recap)

    web = sub.add_parser("web", help="the HR web (login, review queue with photos, decisions, recaps) under "
                                     "gunicorn")
    web.add_argument("--config", type=Path, required=True, help="central.toml (its [database] and [web])")
    web.add_argument("--gunicorn-config", type=Path, help="a gunicorn.conf.py (deploy/gunicorn.conf.py)")
    web.add_argument("--workers", type=int, help="gunicorn worker processes (default 2)")
    web.add_argument("--timeout", type=int, help="seconds before a stuck request or a slow client loses its "
                                                 "worker (default 30)")
    web.set_defaults(func=_cmd_web)

    user = sub.add_parser("user", help="reviewer accounts of the HR web (Django users; every change audited)")
    users = user.add_subparsers(dest="user_command", required=True)
    add = users.add_parser("add", help="a new reviewer; the password is read from the terminal or stdin")
    add.add_argument("name", help="user name: a-z, 0-9, '.', '_', '-'")
    add.add_argument("--role", choices=["reviewer", "admin"], default="reviewer",
                     help="admin sees every office, the audit and the admin site (default: reviewer)")
    add.add_argument("--nip", default="", help="the reviewer's own NIP (cases about it are not theirs to decide)")
    add.add_argument("--office", action="append", default=[], help="an office whose cases they review "
                                                                    "(repeatable)")
    add.add_argument("--config", type=Path, required=True, help="central.toml (for the database)")
    add.set_defaults(func=_cmd_user_add)
    passwd = users.add_parser("passwd", help="a new password for a reviewer (ends their sessions)")
    passwd.add_argument("name")
    passwd.add_argument("--config", type=Path, required=True, help="central.toml (for the database)")
    passwd.set_defaults(func=_cmd_user_passwd)
    disable = users.add_parser("disable", help="lock a reviewer out (ends their sessions; the audit stays)")
    disable.add_argument("name")
    disable.add_argument("--config", type=Path, required=True, help="central.toml (for the database)")
    disable.set_defaults(func=_cmd_user_disable)
    scope = users.add_parser("scope", help="set a reviewer's own NIP and offices")
    scope.add_argument("name")
    scope.add_argument("--nip", help="their own NIP ('' to clear)")
    scope.add_argument("--office", action="append", help="an office they review (repeatable; replaces the list)")
    scope.add_argument("--config", type=Path, required=True, help="central.toml (for the database)")
    scope.set_defaults(func=_cmd_user_scope)
    listing = users.add_parser("list", help="the reviewer accounts, their roles, NIPs and offices")
    listing.add_argument("--config", type=Path, required=True, help="central.toml (for the database)")
    listing.set_defaults(func=_cmd_user_list)
    gal = sub.add_parser("gallery", help="distribute each office's gallery to its kiosks, and see what they run")
    gal_sub = gal.add_subparsers(dest="gallery_command", required=True)
    push = gal_sub.add_parser("push", help="sign each office's gallery and publish it to its kiosks (retained)")
    push.add_argument("--config", type=Path, required=True, help="central.toml (database, broker)")
    push.add_argument("--gallery", type=Path, required=True, help="the master gallery from `kiosk enroll`")
    push.add_argument("--office", action="append", help="only this office (repeatable; default: every office)")
    push.set_defaults(func=_cmd_gallery_push)
    gstatus = gal_sub.add_parser("status", help="the gallery office and version each kiosk reports, against the "
                                 "latest pushed to its office")
    gstatus.add_argument("--config", type=Path, required=True, help="central.toml (for the database)")
    gstatus.set_defaults(func=_cmd_gallery_status)
    sched = sub.add_parser("schedule", help="push each office's punch schedule (from its rules) to its kiosks, and "
                           "see which schedule they run")
    sched_sub = sched.add_subparsers(dest="schedule_command", required=True)
    spush = sched_sub.add_parser("push", help="sign each office's schedule and publish it to its kiosks (retained)")
    spush.add_argument("--config", type=Path, required=True, help="central.toml (database, broker, signing key)")
    spush.add_argument("--office", action="append", help="only this office (repeatable; default: every office)")
    spush.add_argument("--lagging", action="store_true", help="only to kiosks that do not report running their "
                       "office's schedule of today (the daily timer: hours that start today, kiosks that missed one)")
    spush.set_defaults(func=_cmd_schedule_push)
    sstatus = sched_sub.add_parser("status", help="the schedule version each kiosk reports, against the one its "
                                   "office's rules give")
    sstatus.add_argument("--config", type=Path, required=True, help="central.toml (for the database)")
    sstatus.set_defaults(func=_cmd_schedule_status)
    alarms = sub.add_parser("alarms", help="what IT must look at: gaps given up, seq conflicts, kiosks' alarms")
    alarms.add_argument("--config", type=Path, required=True, help="central.toml (for the database)")
    alarms.add_argument("--limit", type=int, default=100, help="the latest N (default 100)")
    alarms.set_defaults(func=_cmd_alarms)
    manage = sub.add_parser("manage", help="Django's management commands on this configuration (migrate, "
                                           "createsuperuser, collectstatic, check --deploy, ...)")
    manage.add_argument("--config", type=Path, required=True, help="central.toml")
    manage.add_argument("django_args", nargs=argparse.REMAINDER, help="the command and its arguments")
    manage.set_defaults(func=_cmd_manage)
    return p


@dataclass
class Service:
    """The running ledger: database, ingestor and subscriber, closed in reverse order."""

    ledger: Ledger
    ingestor: Ingestor
    subscriber: Subscriber

    def close(self) -> None:
        self.subscriber.close()
        self.ledger.close()


def load_all(ledger: Ledger, cfg: CentralConfig, entered_by: str | None = None, *, roster: str = "apply",
             effective: date | None = None) -> tuple[dict[str, RegisteredDevice], list[str]]:
    """Everything the configuration names into the ledger: rules, roster, excused absences, devices; returns the
    devices and a line per change of working hours or of the deduction table (which take effect on ``effective``,
    default today). ``roster``: ``apply`` the roster file as the complete roster on ``effective``, or only ``seed`` a
    ledger that has no roster yet (``serve``'s start: the roster's later changes come from ``load`` or the HR page,
    and a restart must not undo them)."""
    changed: list[str] = []
    if cfg.rules.file is not None:
        by = f"load {cfg.rules.file.name} ({entered_by or getpass.getuser()})"
        changed = save_rules(ledger, load_rules(cfg.rules.file), effective, by)
        for line in changed:
            log.info("rules: %s (%s)", line, by)
    path = cfg.rules.employees
    if path is not None and (roster == "apply" or ledger.one("SELECT 1 FROM employee_assignments LIMIT 1") is None):
        plan = plan_roster_file(ledger, path, effective or date.today())
        if plan.problems:
            raise ConfigError(str(path), problem_lines(plan.problems))
        apply_roster(ledger, plan, f"load {path.name} ({entered_by or getpass.getuser()})")
    if cfg.rules.excused is not None:
        save_excused(ledger, load_excused(cfg.rules.excused), entered_by or f"{getpass.getuser()} (file)")
    return sync_registry(ledger, cfg.devices, cfg.registry.file, cfg.registry.revoked_file), changed


def roster_report(plan: RosterPlan, name: str) -> list[str]:
    """The lines ``load --roster`` prints: how the file was read, the changes, every problem."""
    counts = plan.counts()
    lines = [f"roster {name} ({'; '.join(plan.notes) or 'read'}; effective {plan.effective}): "
             + ", ".join(f"{counts.get(k, 0)} {k}" for k in ("new", "rejoined", "moved", "left", "renamed", "updated"))
             + f"; {plan.unchanged} unchanged"]
    for c in plan.changes:
        where = f"{c.before or '-'} -> {c.after or '-'}" if (c.before or c.after) else ""
        when = f" from {c.effective}" if c.effective and c.effective.year > 1970 else ""
        row = f" (line {c.row})" if c.row else ""
        lines.append(f"  {c.kind:<9} {c.nip} {c.name:<30} {where}{when}{row}{'  ' + c.detail if c.detail else ''}")
    if plan.problems:
        lines.append(f"{len(plan.problems)} problem(s); nothing can be applied until they are fixed:")
        lines += [f"  {p}" for p in problem_lines(plan.problems)]
    return lines


def _load_roster(args: argparse.Namespace, cfg: CentralConfig) -> int:
    with Ledger(cfg.database.url) as ledger:
        plan = plan_roster_file(ledger, args.roster, args.effective or date.today(), complete=not args.partial,
                                sheet=args.sheet)
        print("\n".join(roster_report(plan, args.roster.name)))
        if args.preview:
            print("preview only: nothing was changed")
            return EXIT_USAGE if plan.problems else EXIT_OK
        if plan.problems:
            print("kiosk-central: the roster was not loaded; fix the problems above", file=sys.stderr)
            return EXIT_USAGE
        try:
            changes = apply_roster(ledger, plan, f"load {args.roster.name} ({args.entered_by or getpass.getuser()})")
        except RosterError as exc:
            print(f"kiosk-central: {exc}", file=sys.stderr)
            return EXIT_USAGE
    print(f"applied: {len(changes)} change(s)")
    return EXIT_OK


def start_service(cfg: CentralConfig) -> Service:
    """Open the ledger, load the configured files and start subscribing."""
    from kiosk_central.subscriber import Subscriber  # paho: only the serving process needs it

    key = signing_key(cfg)  # a missing key stops the start: kiosks release nothing without signed acks
    ledger = Ledger(cfg.database.url)
    try:
        registry = load_all(ledger, cfg, roster="seed")[0]
        ingestor = Ingestor(
            ledger,
            registry,
            topic_prefix=cfg.broker.topic_prefix,
            evidence_retention_s=cfg.evidence.retention_days * 86400,
            evidence_max_bytes=cfg.evidence.max_bytes,
            resend_interval_s=cfg.ingest.resend_interval_s,
            resend_max_tries=cfg.ingest.resend_max_tries,
            signing_key=key,
        )
        subscriber = Subscriber(cfg.broker, cfg.ingest, ingestor).start()
    except BaseException:
        ledger.close()
        raise
    return Service(ledger, ingestor, subscriber)


def serve(cfg: CentralConfig, stop: threading.Event) -> int:
    """Run until ``stop`` is set, logging the counters now and then."""
    service = start_service(cfg)
    log.info("ledger: serving %d device(s) from %s:%d", len(service.ingestor.registry), cfg.broker.host,
             cfg.broker.port)
    try:
        while not stop.wait(STATUS_EVERY_S):
            log.info("ledger: %s", service.ingestor.snapshot())
    finally:
        service.close()
        log.info("ledger: stopped; %s", service.ingestor.snapshot())
    return EXIT_OK


def _cmd_serve(args: argparse.Namespace) -> int:

    cfg = load_central_config(args.config)
    with stop_on_signals() as stop:
        return serve(cfg, stop)


def _cmd_load(args: argparse.Namespace) -> int:
    cfg = load_central_config(args.config)
    if args.roster is not None:
        return _load_roster(args, cfg)
    if args.preview or args.partial or args.sheet:
        print("kiosk-central: --preview, --partial and --sheet go with --roster FILE", file=sys.stderr)
        return EXIT_USAGE
    with Ledger(cfg.database.url) as ledger:
        registry, changed = load_all(ledger, cfg, args.entered_by, effective=args.effective)
        counts = {table: ledger.one(f"SELECT COUNT(*) FROM {table}")[0]  # type: ignore[index]
                  for table in ("offices", "employees", "excused")}
    print(f"loaded: {counts['offices']} office(s), {counts['employees']} employee(s), "
          f"{counts['excused']} excused absence(s), {len(registry)} device(s)")
    for line in changed:
        print(f"changed: {line}")
    if args.effective is not None and args.effective < date.today() and changed:
        print(f"note: the changes apply from {args.effective}, a day already past: recaps of the days since change",
              file=sys.stderr)
    return EXIT_OK


def _cmd_recap(args: argparse.Namespace) -> int:
    cfg = load_central_config(args.config)
    if args.out is not None and args.out.exists():
        print(f"kiosk-central: {args.out} exists; choose another file or remove it first", file=sys.stderr)
        return EXIT_USAGE
    if args.csv_locale != "plain" and args.format != "csv":
        print("kiosk-central: --csv-locale is for --format csv", file=sys.stderr)
        return EXIT_USAGE
    if args.format == "xlsx" and args.out is None and sys.stdout.isatty():
        print("kiosk-central: an xlsx file is binary; give --out FILE (or redirect stdout)", file=sys.stderr)
        return EXIT_USAGE
    try:
        first, last = recaps.month_range(args.month) if args.month else (args.date, args.date)
    except ValueError as exc:
        print(f"kiosk-central: --month: {exc}", file=sys.stderr)
        return EXIT_USAGE
    report: reports.Report = "month" if args.month else "day"
    info = reports.report_info(cfg, regency=args.regency, place=args.place, signers_file=args.signers)
    with Ledger(cfg.database.url) as ledger:
        built = reports.build_recaps(ledger, None if args.all_offices else args.office, first, last, args.as_of)
    if args.format == "xlsx":
        data = reports.workbook(built, report, info)
    elif args.format == "html":
        data = reports.printable_html(built, report, info).encode("utf-8")
    elif args.csv_locale == "id":
        data = reports.excel_csv(built, report)
    else:
        data = reports.machine_csv(built, report).encode("utf-8")
    if args.out is None:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        write_atomic(args.out, data)
    return EXIT_OK


def _cmd_web(args: argparse.Namespace) -> int:
    from kiosk_central.hr import server

    cfg = load_central_config(args.config)
    options = server.options_for(cfg, args.gunicorn_config, workers=args.workers, timeout=args.timeout)
    return server.run(cfg, args.config, options)


def read_new_password(prompt: str = "Password for the HR web: ") -> str:
    """A new password from the terminal (asked twice, not echoed) or the first line of stdin; never from argv."""
    if sys.stdin.isatty():
        password = getpass.getpass(prompt)
        if getpass.getpass("Again: ") != password:
            raise KioskError("the two passwords differ; nothing was changed")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    return password


def _users(args: argparse.Namespace) -> str:
    """Django on the configured database with the HR tables up to date; the actor for the audit."""
    from kiosk_central.hr.server import prepare

    prepare(load_central_config(args.config))
    return f"{getpass.getuser()} (cli)"


def _cmd_user_add(args: argparse.Namespace) -> int:
    actor = _users(args)
    from django.contrib.auth.models import User

    from kiosk_central.hr import accounts

    problem = accounts.user_name_problem(args.name)
    if problem is not None:
        raise KioskError(problem)

    if User.objects.filter(username=args.name).exists():
        raise KioskError(f"reviewer {args.name!r} exists; use `kiosk-central user passwd {args.name}` to change the "
                         "password")
    accounts.add_user(args.name, read_new_password(), args.role, actor, nip=args.nip, offices=args.office)
    print(f"reviewer {args.name} added ({args.role})")
    return EXIT_OK


def _cmd_user_passwd(args: argparse.Namespace) -> int:
    actor = _users(args)
    from django.contrib.auth.models import User

    from kiosk_central.hr import accounts

    if not User.objects.filter(username=args.name).exists():
        raise KioskError(f"no reviewer {args.name!r}; add one with `kiosk-central user add {args.name}`")
    accounts.set_password(args.name, read_new_password(), actor)
    print(f"password of {args.name} changed; their sessions are closed")
    return EXIT_OK


def _cmd_user_disable(args: argparse.Namespace) -> int:
    actor = _users(args)
    from kiosk_central.hr import accounts

    accounts.disable_user(args.name, actor)
    print(f"reviewer {args.name} disabled; their sessions are closed")
    return EXIT_OK


def _cmd_user_scope(args: argparse.Namespace) -> int:
    actor = _users(args)
    from kiosk_central.hr import accounts

    accounts.set_scope(args.name, actor, nip=args.nip, offices=args.office)
    print(f"reviewer {args.name}: scope changed")
    return EXIT_OK


def _cmd_user_list(args: argparse.Namespace) -> int:
    _users(args)
    from django.contrib.auth.models import User

    from kiosk_central.hr import accounts

    for user in User.objects.order_by("username").select_related("reviewer"):
        profile = getattr(user, "reviewer", None)
        scope = "*" if user.is_superuser else (profile.offices if profile and profile.offices else "-")
        print("\t".join([user.username, accounts.role_of(user), (profile.nip if profile else "") or "-", scope,
                         *([] if user.is_active else ["disabled"])]))
    return EXIT_OK


def _cmd_gallery_push(args: argparse.Namespace) -> int:
    cfg = load_central_config(args.config)
    key = signing_key(cfg)
    master = Gallery.load(args.gallery)
    with Ledger(cfg.database.url) as ledger:
        try:
            plans = distribute.plan(ledger, master, args.office)
        except ValueError as exc:
            print(f"kiosk-central: --office: {exc}", file=sys.stderr)
            return EXIT_USAGE
        return _publish(cfg, "gallery", lambda publish: distribute.push(
            ledger, plans, key, publish, cfg.broker.topic_prefix, timedelta(days=cfg.signing.command_ttl_days)))


def _publish(cfg: CentralConfig, what: str, push: Callable[[Callable[[str, bytes], None]], list[str]]) -> int:
    """Run ``push`` with a retained publisher on the broker and print its report; a broker that does not answer is
    exit status 2 (nothing pushed is lost: push again)."""
    try:
        with distribute.RetainedPublisher(cfg.broker, what) as out:
            report = push(out.publish)
    except ConnectionError as exc:
        print(f"kiosk-central: {exc}; push again when the broker answers", file=sys.stderr)
        return EXIT_USAGE
    for line in report:
        print(line)
    return EXIT_OK


def _cmd_gallery_status(args: argparse.Namespace) -> int:
    cfg = load_central_config(args.config)
    with Ledger(cfg.database.url) as ledger:
        rows = distribute.status(ledger)
    for row in rows:
        runs = f"{row.running_office or '-'} {row.running_version}" if row.running_version is not None else "-"
        print(f"{row.device}\t{row.office}\truns {runs}\tlatest {row.latest or '-'}\t{row.state}")
    return EXIT_OK


def _cmd_schedule_push(args: argparse.Namespace) -> int:
    cfg = load_central_config(args.config)
    key = signing_key(cfg)
    with Ledger(cfg.database.url) as ledger:
        try:
            plans = distribute.plan_schedules(ledger, args.office, lagging_only=args.lagging)
        except ValueError as exc:
            print(f"kiosk-central: {'--office: ' if args.office else ''}{exc}", file=sys.stderr)
            return EXIT_USAGE
        by = f"kiosk-central schedule push ({getpass.getuser()})"
        return _publish(cfg, "schedule", lambda publish: distribute.push_schedules(
            ledger, plans, key, publish, cfg.broker.topic_prefix, timedelta(days=cfg.signing.command_ttl_days), by))


def _cmd_schedule_status(args: argparse.Namespace) -> int:
    cfg = load_central_config(args.config)
    with Ledger(cfg.database.url) as ledger:
        rows = distribute.schedule_status(ledger)
    for row in rows:
        runs = row.running or ("kiosk.toml" if row.reported else "-")
        print(f"{row.device}\t{row.office}\truns {runs}\trules {row.expected or '-'}\t{row.state}")
    return EXIT_OK


def _cmd_alarms(args: argparse.Namespace) -> int:
    cfg = load_central_config(args.config)
    with Ledger(cfg.database.url) as ledger:
        for at, device, kind, detail in ledger.alarms(max(1, args.limit)):
            print(f"{at}\t{device or '-'}\t{kind}\t{detail}")
    return EXIT_OK


def _cmd_manage(args: argparse.Namespace) -> int:
    from django.core.management import execute_from_command_line

    from kiosk_central.site import setup

    setup(load_central_config(args.config))
    execute_from_command_line(["kiosk-central manage", *args.django_args])
    return EXIT_OK
