"""The central server's commands: ``serve`` (the ledger subscriber), ``load`` (rules, roster, excused absences and
the device registry into the database) and ``recap`` (daily and monthly recaps as CSV or HTML). See docs/central.md.

    python -m kiosk.central serve --config central.toml
    python -m kiosk.central load --config central.toml
    python -m kiosk.central recap --config central.toml --office bkpsdm --month 2026-02 --format html --out feb.html
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
import threading
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from kiosk.central import recap as recaps
from kiosk.central.ingest import Ingestor, RegisteredDevice, sync_registry
from kiosk.central.rules import (
    load_employees,
    load_excused,
    load_rules,
    save_employees,
    save_excused,
    save_rules,
)
from kiosk.central.settings import CentralConfig, load_central_config
from kiosk.central.store import Ledger
from kiosk.errors import KioskError
from kiosk.fsutil import write_atomic
from kiosk.logs import setup_logging

if TYPE_CHECKING:
    from kiosk.central.subscriber import Subscriber

log = logging.getLogger(__name__)

EXIT_OK, EXIT_USAGE = 0, 2
STATUS_EVERY_S = 300.0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        return int(args.func(args))
    except KioskError as exc:
        print(f"kiosk central: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kiosk central", description="The central attendance ledger and its recaps.")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="subscribe to every kiosk, store, acknowledge and re-date their events")
    serve.add_argument("--config", type=Path, required=True, help="central.toml")
    serve.set_defaults(func=_cmd_serve)

    load = sub.add_parser("load", help="load the rules, roster, excused absences and devices into the database")
    load.add_argument("--config", type=Path, required=True, help="central.toml (its [rules] and [[devices]])")
    load.add_argument("--entered-by", default=None, help="who entered the excused absences (default: this user)")
    load.set_defaults(func=_cmd_load)

    rec = sub.add_parser("recap", help="the monthly (or daily) recap of an office, as CSV or printable HTML")
    rec.add_argument("--config", type=Path, required=True, help="central.toml (for the database)")
    rec.add_argument("--office", required=True, help="office code of the rules file")
    when = rec.add_mutually_exclusive_group(required=True)
    when.add_argument("--month", help="the month, like 2026-02: one row per employee with the TPP deduction")
    when.add_argument("--date", type=date.fromisoformat, help="one day, like 2026-02-03: the daily list (LH)")
    rec.add_argument("--format", choices=["csv", "html"], default="csv")
    rec.add_argument("--out", type=Path, help="write to this file (refused if it exists) instead of stdout")
    rec.add_argument("--as-of", type=date.fromisoformat, help="count days up to this date (default: today)")
    rec.set_defaults(func=_cmd_recap)
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


def load_all(ledger: Ledger, cfg: CentralConfig, entered_by: str | None = None) -> dict[str, RegisteredDevice]:
    """Everything the configuration names into the ledger: rules, roster, excused absences, devices."""
    if cfg.rules.file is not None:
        save_rules(ledger, load_rules(cfg.rules.file))
    if cfg.rules.employees is not None:
        save_employees(ledger, load_employees(cfg.rules.employees))
    if cfg.rules.excused is not None:
        save_excused(ledger, load_excused(cfg.rules.excused), entered_by or f"{getpass.getuser()} (file)")
    return sync_registry(ledger, cfg.devices, cfg.registry.file, cfg.registry.revoked_file)


def start_service(cfg: CentralConfig) -> Service:
    """Open the ledger, load the configured files and start subscribing."""
    from kiosk.central.subscriber import Subscriber  # paho: only the serving process needs it

    ledger = Ledger(cfg.database.url)
    try:
        registry = load_all(ledger, cfg)
        ingestor = Ingestor(
            ledger,
            registry,
            topic_prefix=cfg.broker.topic_prefix,
            evidence_retention_s=cfg.evidence.retention_days * 86400,
            evidence_max_bytes=cfg.evidence.max_bytes,
            resend_interval_s=cfg.ingest.resend_interval_s,
            resend_max_tries=cfg.ingest.resend_max_tries,
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
    from kiosk.app import stop_on_signals

    cfg = load_central_config(args.config)
    with stop_on_signals() as stop:
        return serve(cfg, stop)


def _cmd_load(args: argparse.Namespace) -> int:
    cfg = load_central_config(args.config)
    with Ledger(cfg.database.url) as ledger:
        registry = load_all(ledger, cfg, args.entered_by)
        counts = {table: ledger.one(f"SELECT COUNT(*) FROM {table}")[0]  # type: ignore[index]
                  for table in ("offices", "employees", "excused")}
    print(f"loaded: {counts['offices']} office(s), {counts['employees']} employee(s), "
          f"{counts['excused']} excused absence(s), {len(registry)} device(s)")
    return EXIT_OK


def _cmd_recap(args: argparse.Namespace) -> int:
    cfg = load_central_config(args.config)
    if args.out is not None and args.out.exists():
        print(f"kiosk central: {args.out} exists; choose another file or remove it first", file=sys.stderr)
        return EXIT_USAGE
    try:
        first, last = recaps.month_range(args.month) if args.month else (args.date, args.date)
    except ValueError as exc:
        print(f"kiosk central: --month: {exc}", file=sys.stderr)
        return EXIT_USAGE
    with Ledger(cfg.database.url) as ledger:
        recap = recaps.build_recap(ledger, args.office, first, last, args.as_of)
    if args.format == "html":
        text = recaps.monthly_html(recap)
    else:
        text = recaps.monthly_csv(recap) if args.month else recaps.daily_csv(recap)
    if args.out is None:
        sys.stdout.write(text)
    else:
        write_atomic(args.out, text.encode("utf-8"))
    return EXIT_OK
