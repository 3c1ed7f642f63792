"""The ledger's storage: one interface, two backends (PostgreSQL for a regency, SQLite for a single office).

The backend is chosen by the URL: ``postgresql://user@host:5432/db`` (psycopg 3; libpq's ``options=-csearch_path=X``
puts the tables in schema X) or ``sqlite:////absolute/path.sqlite`` (four slashes; ``sqlite:///ledger.sqlite`` is
relative, to the configuration file's folder when it comes from one). The SQL is shared, written with ``?``
placeholders. The schema belongs to Django's migrations of the ``ledger`` app (``kiosk_central/ledger/models.py``
and ``migrations/``), which :meth:`Ledger.migrate` applies at open; the SQL here is hand-tuned for the ingest and
runs on those tables unchanged on both backends. Times are milliseconds since the epoch (UTC) in ``*_ms`` columns;
text times are RFC 3339 UTC.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sqlite3
import threading
import zoneinfo
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kiosk_contract.errors import KioskError
from kiosk_contract.schema import format_utc

log = logging.getLogger(__name__)


class LedgerError(KioskError):
    """The ledger's database cannot be opened or used (bad URL, unreachable server, newer schema)."""


class DecisionRefused(KioskError):
    """A review decision that cannot be made; ``why`` is ``missing`` (no such case), ``decided`` (already decided),
    ``roster`` (the NIP is not in the roster) or ``not_employed`` (the person had no office assignment on the case's
    local day)."""

    def __init__(self, message: str, why: str) -> None:
        super().__init__(message)
        self.why = why


class _Backend:
    """What differs between the two databases: connecting, placeholders, transactions."""

    name = ""

    def sql(self, text: str) -> str:
        return text

    def connect(self) -> Any:
        raise NotImplementedError

    def begin(self, conn: Any) -> None:
        raise NotImplementedError


class _Sqlite(_Backend):
    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path

    def connect(self) -> Any:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):  # personal data: readable by its owner only, from the start
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")  # an acknowledged event must survive a power cut
            conn.execute("PRAGMA foreign_keys=ON")
        except (OSError, sqlite3.Error) as exc:
            raise LedgerError(f"cannot open the SQLite ledger {self.path}: {exc}") from exc
        return conn

    def begin(self, conn: Any) -> None:
        conn.execute("BEGIN IMMEDIATE")


class _Postgres(_Backend):
    name = "postgresql"

    def __init__(self, url: str) -> None:
        self.url = url

    def sql(self, text: str) -> str:
        return text.replace("?", "%s")

    def connect(self) -> Any:
        try:
            import psycopg
        except ImportError as exc:
            raise LedgerError(
                "a postgresql:// ledger needs psycopg 3: pip install 'psycopg[binary]' (the `central` extra)"
            ) from exc
        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise LedgerError(f"cannot connect to the PostgreSQL ledger {_redact(self.url)}: {exc}") from exc

    def begin(self, conn: Any) -> None:
        conn.execute("BEGIN")


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@")


def backend_for(url: str) -> _Backend:
    """The backend a database URL names; LedgerError for anything else."""
    if url.startswith(("postgresql://", "postgres://")):
        return _Postgres(url)
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        if not path:
            raise LedgerError(f"database.url {url!r}: give the file, like sqlite:////var/lib/kiosk-central/ledger.db")
        return _Sqlite(Path(path))
    raise LedgerError(
        f"database.url {_redact(url)!r} is neither postgresql://user@host:port/db nor sqlite:////path/to/ledger.db"
    )


_migrating = threading.Lock()


def migrate_schema(url: str) -> list[str]:
    """Django's ``migrate`` of the ledger app (its ``ledger/management/commands/migrate.py``: one process at a time,
    adoption of a database of before Django, refusal of a newer one) on the database at ``url``, through a
    connection of its own that is closed afterwards; Django is configured first when nothing has configured it
    (:func:`kiosk_central.site.setup_for_database`), and its default connection is left as it was. Returns the ledger
    migrations applied now."""
    from kiosk_central.site import database_settings, setup_for_database

    try:
        setup_for_database(url)
        entry = database_settings(url)
    except KioskError as exc:
        raise LedgerError(str(exc)) from exc
    from django.core.management import call_command
    from django.core.management.base import CommandError
    from django.db import DatabaseError, connections
    from django.db.migrations.recorder import MigrationRecorder

    with _migrating:
        alias = f"ledger_migrate_{threading.get_ident()}"
        connections.settings[alias] = connections.configure_settings({"default": entry})["default"]
        try:
            recorder = MigrationRecorder(connections[alias])
            before = {name for app, name in recorder.applied_migrations() if app == "ledger"}
            call_command("migrate", "ledger", database=alias, interactive=False, verbosity=0, stdout=io.StringIO())
            now = sorted(name for app, name in recorder.applied_migrations() if app == "ledger" and name not in before)
        except CommandError as exc:
            raise LedgerError(f"{exc}") from exc
        except DatabaseError as exc:
            raise LedgerError(f"cannot migrate the ledger database {_redact(url)}: {exc}") from exc
        finally:
            connections[alias].close()
            with contextlib.suppress(AttributeError):
                del connections[alias]
            del connections.settings[alias]
    for name in now:
        log.info("ledger: applied migration %s", name)
    return now


@dataclass(frozen=True)
class StoredEvent:
    """What the ledger keeps of one event, for acks, gaps and time correction."""

    device_id: str
    event_id: str
    seq: int
    type: str
    evidence_sha256: str | None
    evidence_ok: bool


class Ledger:
    """The ledger database. One connection, guarded by a lock; :meth:`transaction` groups writes.

    Methods that write must be called inside ``with ledger.transaction():``; reads may be called anywhere.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.backend = backend_for(url)
        self._conn = self.backend.connect()
        self._lock = threading.RLock()
        self._in_tx = False
        try:
            self.migrate()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ plumbing

    def close(self) -> None:
        with self._lock, contextlib.suppress(Exception):
            self._conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic unit of writes: committed on success, rolled back on any exception."""
        with self._lock:
            if self._in_tx:
                yield
                return
            self.backend.begin(self._conn)
            self._in_tx = True
            try:
                yield
            except BaseException:
                self._in_tx = False
                with contextlib.suppress(Exception):
                    self._conn.execute("ROLLBACK")
                raise
            self._in_tx = False
            self._conn.execute("COMMIT")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        with self._lock:
            return self._conn.execute(self.backend.sql(sql), tuple(params))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = [tuple(r) for r in rows]
        if not rows:
            return
        with self._lock:
            if self.backend.name == "sqlite":
                self._conn.executemany(sql, rows)
            else:
                with self._conn.cursor() as cur:
                    cur.executemany(self.backend.sql(sql), rows)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return [tuple(r) for r in self.execute(sql, params).fetchall()]

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        found = self.rows(sql, params)
        return found[0] if found else None

    def migrate(self) -> list[str]:
        """Bring the schema up to date: Django's ``migrate`` of the ledger app on this database (a database made by
        the numbered migrations of before Django is adopted, one newer than this program refused: LedgerError);
        returns the ledger migrations applied now, like ``["0001_initial", "0002_schema_owned_by_django"]``."""
        with self._lock:
            return migrate_schema(self.url)

    # ------------------------------------------------------------------ events

    def insert_event(self, event: dict[str, Any], payload: str, time_ms: int | None, time_source: str,
                     evidence_ok: bool) -> str:
        """Store a verified event once: "new", "duplicate" (same device and event id), or "seq_taken" (the
        device used this seq for another event id; nothing is stored)."""
        evidence = event.get("evidence")
        person = event.get("person")
        cursor = self.execute(
            "INSERT INTO events (device_id, event_id, seq, type, kind, nip, boot_id, mono_ns, device_utc, time_ms, "
            "time_source, evidence_sha256, evidence_ok, payload, received_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (
                event["device"], event["event_id"], event["seq"], event["type"], event.get("kind"),
                person.get("nip") if isinstance(person, dict) else None, event["boot_id"], event["mono_ns"],
                event["time_utc"], time_ms, time_source, evidence["sha256"] if evidence else None,
                int(evidence_ok), payload, utc_text(),
            ),
        )
        if cursor.rowcount == 1:
            return "new"
        same = self.one("SELECT 1 FROM events WHERE device_id = ? AND event_id = ?",
                        (event["device"], event["event_id"]))
        return "duplicate" if same else "seq_taken"

    def stored_event(self, device_id: str, event_id: str) -> StoredEvent | None:
        row = self.one("SELECT seq, type, evidence_sha256, evidence_ok FROM events "
                       "WHERE device_id = ? AND event_id = ?", (device_id, event_id))
        if row is None:
            return None
        return StoredEvent(device_id, event_id, int(row[0]), str(row[1]), row[2], bool(row[3]))

    def event_at_seq(self, device_id: str, seq: int) -> str | None:
        row = self.one("SELECT event_id FROM events WHERE device_id = ? AND seq = ?", (device_id, seq))
        return None if row is None else str(row[0])

    def anchor(self, device_id: str, boot_id: str) -> tuple[str, int] | None:
        """(time_utc, mono_ns) of the first time anchor of this device's boot, if one arrived."""
        row = self.one(
            "SELECT device_utc, mono_ns FROM events WHERE device_id = ? AND boot_id = ? AND type = 'time_anchor' "
            "ORDER BY seq LIMIT 1",
            (device_id, boot_id),
        )
        return None if row is None else (str(row[0]), int(row[1]))

    def unanchored(self, device_id: str, boot_id: str) -> list[tuple[str, int]]:
        """(event_id, mono_ns) of this boot's events still waiting for an anchor."""
        return [(str(r[0]), int(r[1])) for r in self.rows(
            "SELECT event_id, mono_ns FROM events WHERE device_id = ? AND boot_id = ? AND time_source = 'unanchored'",
            (device_id, boot_id),
        )]

    def set_time(self, device_id: str, event_id: str, time_ms: int, source: str) -> None:
        self.execute("UPDATE events SET time_ms = ?, time_source = ? WHERE device_id = ? AND event_id = ?",
                     (time_ms, source, device_id, event_id))

    def event_counts(self) -> dict[str, int]:
        """Stored events by time source (device, anchor, unanchored)."""
        rows = self.rows("SELECT time_source, COUNT(*) FROM events GROUP BY time_source")
        return {str(r[0]): int(r[1]) for r in rows}

    # ------------------------------------------------------------------ evidence

    def put_evidence(self, device_id: str, event_id: str, sha256: str, jpeg: bytes, expires_ms: int) -> bool:
        """Keep a photo (once per device, event and content); True when it was new."""
        cursor = self.execute(
            "INSERT INTO evidence (device_id, event_id, sha256, jpeg, received_at, expires_ms) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (device_id, event_id, sha256, jpeg, utc_text(), expires_ms),
        )
        return bool(cursor.rowcount == 1)

    def has_evidence(self, device_id: str, event_id: str, sha256: str) -> bool:
        return self.one("SELECT 1 FROM evidence WHERE device_id = ? AND event_id = ? AND sha256 = ?",
                        (device_id, event_id, sha256)) is not None

    def evidence(self, device_id: str, event_id: str) -> bytes | None:
        """The photo that matches the event's declared SHA-256, if the ledger still holds it."""
        row = self.one(
            "SELECT v.jpeg FROM evidence v JOIN events e ON e.device_id = v.device_id AND e.event_id = v.event_id "
            "AND e.evidence_sha256 = v.sha256 WHERE v.device_id = ? AND v.event_id = ?",
            (device_id, event_id),
        )
        return None if row is None else bytes(row[0])

    def evidence_arrived(self, device_id: str, event_id: str, sha256: str) -> StoredEvent | None:
        """Mark the event whose declared photo this is as complete; the event when that changed it."""
        cursor = self.execute(
            "UPDATE events SET evidence_ok = 1 WHERE device_id = ? AND event_id = ? AND evidence_sha256 = ? "
            "AND evidence_ok = 0",
            (device_id, event_id, sha256),
        )
        return self.stored_event(device_id, event_id) if cursor.rowcount == 1 else None

    def purge_evidence(self, now_ms: int) -> int:
        """Delete photos past their retention, except those of review cases HR has not decided yet."""
        cursor = self.execute(
            "DELETE FROM evidence WHERE expires_ms < ? AND NOT EXISTS (SELECT 1 FROM review_queue r WHERE "
            "r.device_id = evidence.device_id AND r.event_id = evidence.event_id AND r.state = 'open')",
            (now_ms,),
        )
        return int(cursor.rowcount)

    # ------------------------------------------------------------------ sequence progress

    def progress(self, device_id: str) -> tuple[int, int, int | None, int, int | None] | None:
        """(contiguous_seq, highest_seq, resend_from, resend_tries, last_resend_ms) of a device."""
        row = self.one("SELECT contiguous_seq, highest_seq, resend_from, resend_tries, last_resend_ms "
                       "FROM device_progress WHERE device_id = ?", (device_id,))
        if row is None:
            return None
        return int(row[0]), int(row[1]), _opt_int(row[2]), int(row[3]), _opt_int(row[4])

    def advance(self, device_id: str, site: str, seq: int) -> tuple[int, int]:
        """Note that ``seq`` is stored; moves contiguous_seq over every stored seq; (contiguous, highest)."""
        found = self.progress(device_id)
        contiguous, highest = (0, 0) if found is None else found[:2]
        if seq == contiguous + 1 and highest <= contiguous:
            contiguous = seq  # in order, nothing stored above it: no run to walk (the common case)
        elif seq == contiguous + 1:
            while True:
                following = [int(r[0]) for r in self.rows(
                    "SELECT seq FROM events WHERE device_id = ? AND seq > ? ORDER BY seq LIMIT 500",
                    (device_id, contiguous),
                )]
                run = 0
                for s in following:
                    if s != contiguous + 1:
                        break
                    contiguous, run = s, run + 1
                if run < 500:
                    break
        highest = max(highest, seq)
        if found is None:
            self.execute("INSERT INTO device_progress (device_id, site, contiguous_seq, highest_seq) "
                         "VALUES (?, ?, ?, ?)", (device_id, site, contiguous, highest))
        else:
            self.execute("UPDATE device_progress SET site = ?, contiguous_seq = ?, highest_seq = ? "
                         "WHERE device_id = ?", (site, contiguous, highest, device_id))
        return contiguous, highest

    def skip_gap(self, device_id: str, upto: int | None = None) -> tuple[int, int] | None:
        """Stop asking for the seqs missing after contiguous_seq: move it to the end of the next stored run (or, with
        ``upto`` inside the gap, to ``upto`` only: the rest of the gap stays a gap). Returns the missing range given
        up on, (first, last), or None when nothing is missing. Nothing is acknowledged by this: acks name stored
        events only, and a missing event that arrives later is stored and acknowledged."""
        found = self.progress(device_id)
        if found is None:
            raise LedgerError(f"no progress recorded for device {device_id}")
        gap = self.gap(device_id)
        if gap is None:
            return None
        first, last = gap
        if upto is not None and first <= upto < last:
            self.execute("UPDATE device_progress SET contiguous_seq = ?, resend_from = NULL, resend_tries = 0, "
                         "last_resend_ms = NULL WHERE device_id = ?", (upto, device_id))
            return first, upto
        self.execute("UPDATE device_progress SET contiguous_seq = ?, resend_from = NULL, resend_tries = 0 "
                     "WHERE device_id = ?", (last, device_id))
        site = self.one("SELECT site FROM device_progress WHERE device_id = ?", (device_id,))
        self.advance(device_id, str(site[0]) if site else "", last + 1)
        return first, last

    def gap(self, device_id: str) -> tuple[int, int] | None:
        """The seqs missing right after contiguous_seq, (first, last) up to the next stored one; None without a gap."""
        found = self.progress(device_id)
        if found is None:
            return None
        row = self.one("SELECT MIN(seq) FROM events WHERE device_id = ? AND seq > ?", (device_id, found[0]))
        if row is None or row[0] is None:
            return None
        return found[0] + 1, int(row[0]) - 1

    def devices_with_gaps(self) -> list[tuple[str, str, int, int | None, int, int | None]]:
        """(device, site, first missing seq, resend_from, resend_tries, last_resend_ms) of devices with a gap."""
        return [
            (str(r[0]), str(r[1]), int(r[2]) + 1, _opt_int(r[3]), int(r[4]), _opt_int(r[5]))
            for r in self.rows(
                "SELECT device_id, site, contiguous_seq, resend_from, resend_tries, last_resend_ms "
                "FROM device_progress WHERE highest_seq > contiguous_seq"
            )
        ]

    def note_resend(self, device_id: str, from_seq: int, tries: int, now_ms: int) -> None:
        self.execute("UPDATE device_progress SET resend_from = ?, resend_tries = ?, last_resend_ms = ? "
                     "WHERE device_id = ?", (from_seq, tries, now_ms, device_id))

    # ------------------------------------------------------------------ seqs a device reported lost

    def report_losses(self, device_id: str, event_id: str, alarm: str, alarm_seq: int,
                      ranges: Iterable[tuple[int, int]]) -> None:
        """Record the seq ranges an alarm event reports lost (once per event: a republished alarm changes nothing)."""
        self.executemany(
            "INSERT INTO reported_losses (device_id, first_seq, last_seq, event_id, alarm_seq, alarm, reported_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [(device_id, first, last, event_id, alarm_seq, alarm, utc_text()) for first, last in ranges],
        )

    def reported_losses(self, device_id: str, first: int, last: int) -> list[ReportedLoss]:
        """The reported ranges of a device that overlap first..last, by first seq."""
        return [ReportedLoss(int(r[0]), int(r[1]), str(r[2]), int(r[3]), str(r[4])) for r in self.rows(
            "SELECT first_seq, last_seq, event_id, alarm_seq, alarm FROM reported_losses WHERE device_id = ? AND "
            "first_seq <= ? AND last_seq >= ? ORDER BY first_seq, last_seq DESC, alarm_seq", (device_id, last, first))]

    def held_count(self, device_id: str, first: int, last: int) -> int:
        """How many seqs of first..last the ledger holds an event for."""
        row = self.one("SELECT COUNT(*) FROM events WHERE device_id = ? AND seq BETWEEN ? AND ?",
                       (device_id, first, last))
        return int(row[0]) if row else 0

    def missing_ranges(self, device_id: str, first: int, last: int, limit: int = 10) -> list[tuple[int, int]]:
        """The first ``limit`` runs of seqs of first..last the ledger holds no event for, as (first, last)."""
        bounds = self.one("SELECT MIN(seq), MAX(seq) FROM events WHERE device_id = ? AND seq BETWEEN ? AND ?",
                          (device_id, first, last))
        if bounds is None or bounds[0] is None:
            return [(first, last)]
        low, high = int(bounds[0]), int(bounds[1])
        runs = [(first, low - 1)] if low > first else []
        runs += [(int(r[0]) + 1, int(r[1]) - 1) for r in self.rows(
            "SELECT s, n FROM (SELECT seq AS s, LEAD(seq) OVER (ORDER BY seq) AS n FROM events "
            "WHERE device_id = ? AND seq BETWEEN ? AND ?) AS held WHERE n > s + 1 ORDER BY s LIMIT ?",
            (device_id, low, high, limit))]
        if high < last:
            runs.append((high + 1, last))
        return runs[:limit]

    def lock_devices(self, device_ids: Iterable[str]) -> None:
        """Hold these devices' registry rows until the transaction ends, taken in one order (no deadlock): ledger
        workers on a shared subscription then store one device's messages one transaction at a time (its
        progress, its photo and event). PostgreSQL only; SQLite's ``BEGIN IMMEDIATE`` serialises every writer."""
        ids = sorted(set(device_ids))
        if ids and self.backend.name == "postgresql":
            self.execute("SELECT device_id FROM devices WHERE device_id = ANY(?) ORDER BY device_id FOR UPDATE",
                         (ids,))

    # ------------------------------------------------------------------ review queue, rejections, registry

    def enqueue_review(self, device_id: str, event_id: str, reason: str) -> None:
        self.execute("INSERT INTO review_queue (device_id, event_id, reason) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                     (device_id, event_id, reason))

    def reject(self, topic: str, device_id: str | None, event_id: str | None, reason: str) -> None:
        self.execute("INSERT INTO rejections (received_at, topic, device_id, event_id, reason) VALUES (?, ?, ?, ?, ?)",
                     (utc_text(), topic[:300], device_id, event_id, reason[:1000]))

    def set_running(self, device_id: str, seq: int, gallery_version: str | None, gallery_office: str | None,
                    schedule_version: str | None) -> None:
        """What a device reports it runs, from its status event ``seq``; an older status event (resent after a
        newer one was stored) changes nothing."""
        self.execute("UPDATE devices SET gallery_version = ?, gallery_office = ?, schedule_version = ?, status_seq = ? "
                     "WHERE device_id = ? AND (status_seq IS NULL OR status_seq < ?)",
                     (gallery_version, gallery_office, schedule_version, seq, device_id, seq))

    def set_selftest(self, device_id: str, seq: int, device_utc: str, summary: dict[str, Any]) -> None:
        """The summary of a device's self-test, from its status event ``seq``; an older one changes nothing."""
        self.execute("UPDATE devices SET selftest = ?, selftest_at = ?, selftest_seq = ? "
                     "WHERE device_id = ? AND (selftest_seq IS NULL OR selftest_seq < ?)",
                     (json.dumps(summary, sort_keys=True), device_utc, seq, device_id, seq))

    def next_command_version(self, device_id: str) -> int:
        """One more than the version of the last changing command issued to this device (1 for the first); call it
        inside the transaction that records the command, so that two pushes never share a version."""
        self.lock_devices([device_id])
        row = self.one("SELECT last_version FROM device_commands WHERE device_id = ?", (device_id,))
        version = 1 if row is None else int(row[0]) + 1
        if row is None:
            self.execute("INSERT INTO device_commands (device_id, last_version) VALUES (?, ?)", (device_id, version))
        else:
            self.execute("UPDATE device_commands SET last_version = ? WHERE device_id = ?", (version, device_id))
        return version

    def alarm(self, device_id: str | None, kind: str, detail: str) -> None:
        """An alarm for IT (``kiosk-central alarms``): a gap given up, a seq conflict, a device's alarm event."""
        self.execute("INSERT INTO ledger_alarms (at, device_id, kind, detail) VALUES (?, ?, ?, ?)",
                     (utc_text(), device_id, kind, detail[:2000]))

    def alarms(self, limit: int = 100) -> list[tuple[str, str | None, str, str]]:
        """The latest alarms, newest first: (at, device, kind, detail)."""
        return [(str(r[0]), None if r[1] is None else str(r[1]), str(r[2]), str(r[3])) for r in self.rows(
            "SELECT at, device_id, kind, detail FROM ledger_alarms ORDER BY id DESC LIMIT ?", (limit,))]

    # ------------------------------------------------------------------ HR review: reviewers, sessions, decisions

    def add_reviewer(self, name: str, role: str, password_hash: str, created_by: str) -> bool:
        """A new reviewer account; False (nothing changed) when the name is taken."""
        cursor = self.execute(
            "INSERT INTO reviewers (name, role, password_hash, created_by, created_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            (name, role, password_hash, created_by, utc_text()),
        )
        return bool(cursor.rowcount == 1)

    def set_reviewer_password(self, name: str, password_hash: str) -> bool:
        """Replace a reviewer's password and end their sessions; False when there is no such reviewer."""
        cursor = self.execute("UPDATE reviewers SET password_hash = ? WHERE name = ?", (password_hash, name))
        self.execute("DELETE FROM web_sessions WHERE user_name = ?", (name,))
        return bool(cursor.rowcount == 1)

    def disable_reviewer(self, name: str) -> bool:
        """Lock a reviewer out for good (their audit stays) and end their sessions; False when there is none."""
        cursor = self.execute("UPDATE reviewers SET disabled = 1 WHERE name = ?", (name,))
        self.execute("DELETE FROM web_sessions WHERE user_name = ?", (name,))
        return bool(cursor.rowcount == 1)

    def reviewer(self, name: str) -> Reviewer | None:
        row = self.one("SELECT name, role, password_hash, disabled FROM reviewers WHERE name = ?", (name,))
        return None if row is None else Reviewer(str(row[0]), str(row[1]), str(row[2]), bool(row[3]))

    def reviewers(self) -> list[Reviewer]:
        return [Reviewer(str(r[0]), str(r[1]), str(r[2]), bool(r[3]))
                for r in self.rows("SELECT name, role, password_hash, disabled FROM reviewers ORDER BY name")]

    def note_login(self, user_name: str, remote: str, outcome: str, at_ms: int) -> None:
        """Audit a login attempt or a logout (outcome: ok, bad_password, unknown_user, locked, disabled, logout)."""
        self.execute("INSERT INTO login_audit (at, at_ms, user_name, remote, outcome) VALUES (?, ?, ?, ?, ?)",
                     (format_utc(datetime.fromtimestamp(at_ms / 1000, UTC)), at_ms, user_name[:100], remote[:100],
                      outcome))

    def failed_logins(self, user_name: str, since_ms: int) -> list[int]:
        """Times (ms) of the failed logins of this name since ``since_ms``, oldest first."""
        return [int(r[0]) for r in self.rows(
            "SELECT at_ms FROM login_audit WHERE user_name = ? AND at_ms >= ? "
            "AND outcome IN ('bad_password', 'unknown_user') ORDER BY at_ms",
            (user_name[:100], since_ms),
        )]

    def login_audit(self, limit: int) -> list[tuple[str, str, str, str]]:
        """The latest login attempts: (at, user name, remote address, outcome), newest first."""
        return [(str(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in self.rows(
            "SELECT at, user_name, remote, outcome FROM login_audit ORDER BY id DESC LIMIT ?", (limit,))]

    def open_session(self, token_sha256: str, user_name: str, csrf: str, remote: str, now_ms: int,
                     expires_ms: int) -> None:
        self.execute("DELETE FROM web_sessions WHERE expires_ms <= ?", (now_ms,))
        self.execute("INSERT INTO web_sessions (token_sha256, user_name, csrf, remote, created_ms, expires_ms) "
                     "VALUES (?, ?, ?, ?, ?, ?)", (token_sha256, user_name, csrf, remote[:100], now_ms, expires_ms))

    def session(self, token_sha256: str, now_ms: int) -> tuple[Reviewer, str] | None:
        """(reviewer, CSRF token) of a live session of an enabled reviewer, else None."""
        row = self.one(
            "SELECT r.name, r.role, r.password_hash, r.disabled, s.csrf FROM web_sessions s "
            "JOIN reviewers r ON r.name = s.user_name WHERE s.token_sha256 = ? AND s.expires_ms > ? "
            "AND r.disabled = 0",
            (token_sha256, now_ms),
        )
        return None if row is None else (Reviewer(str(row[0]), str(row[1]), str(row[2]), bool(row[3])), str(row[4]))

    def close_session(self, token_sha256: str) -> None:
        self.execute("DELETE FROM web_sessions WHERE token_sha256 = ?", (token_sha256,))

    def office_zones(self) -> dict[str, str]:
        """Office code -> IANA time zone, from the rules."""
        return {str(r[0]): str(r[1]) for r in self.rows("SELECT code, timezone FROM offices ORDER BY code")}

    def employee(self, nip: str) -> tuple[str, str] | None:
        """(name, office) of a NIP of the roster."""
        row = self.one("SELECT name, office FROM employees WHERE nip = ?", (nip,))
        return None if row is None else (str(row[0]), str(row[1]))

    def office_on(self, nip: str, day: date) -> str | None:
        """The office ``nip`` was assigned to on ``day`` (``employee_assignments``), None when no assignment covers
        the day (before joining, after leaving, or not in the roster)."""
        text = day.isoformat()
        row = self.one("SELECT office FROM employee_assignments WHERE nip = ? AND valid_from <= ? "
                       "AND (valid_to IS NULL OR valid_to >= ?) ORDER BY valid_from DESC LIMIT 1", (nip, text, text))
        return None if row is None else str(row[0])

    def case_day(self, case: ReviewCase) -> date | None:
        """The local date of a case's believed time, in the zone of its kiosk's office (the event's own ``tz`` for a
        kiosk without one); None while the time is unknown (waiting for the boot's time anchor)."""
        if case.time_ms is None:
            return None
        zone = self.office_zones().get(case.office or "")
        if zone is None:
            with contextlib.suppress(ValueError, TypeError):
                zone = json.loads(case.payload).get("tz")
        try:
            tz = zoneinfo.ZoneInfo(zone or "UTC")
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            tz = zoneinfo.ZoneInfo("UTC")
        return datetime.fromtimestamp(case.time_ms / 1000, tz).date()

    _CASE_SQL = (
        "SELECT r.id, r.device_id, r.event_id, r.reason, r.state, r.resolved_nip, r.resolved_kind, r.decided_by, "
        "r.decided_at, r.decision_reason, d.office, e.time_ms, e.time_source, e.device_utc, e.payload "
        "FROM review_queue r JOIN events e ON e.device_id = r.device_id AND e.event_id = r.event_id "
        "LEFT JOIN devices d ON d.device_id = r.device_id"
    )

    def review_cases(self, *, decided: bool, office: str | None = None, reason: str | None = None,
                     windows: Sequence[tuple[str, int, int]] | None = None, limit: int = 25,
                     offset: int = 0) -> tuple[list[ReviewCase], int]:
        """A page of review cases and how many match: open ones oldest first, or decided ones newest decision
        first. ``windows`` keeps the cases of (office, start_ms, end_ms) triples (a local date per office)."""
        where = ["r.state <> 'open'" if decided else "r.state = 'open'"]
        params: list[Any] = []
        if office:
            where.append("d.office = ?")
            params.append(office)
        if reason:
            where.append("r.reason = ?")
            params.append(reason)
        if windows is not None:
            where.append("(" + (" OR ".join(["(d.office = ? AND e.time_ms >= ? AND e.time_ms < ?)"] * len(windows))
                                or "1 = 0") + ")")
            params.extend(value for window in windows for value in window)
        condition = " WHERE " + " AND ".join(where)
        order = " ORDER BY r.decided_at DESC, r.id DESC" if decided else " ORDER BY e.time_ms IS NULL, e.time_ms, r.id"
        rows = self.rows(self._CASE_SQL + condition + order + " LIMIT ? OFFSET ?", (*params, limit, offset))
        total = self.one("SELECT COUNT(*) FROM review_queue r JOIN events e ON e.device_id = r.device_id AND "
                         "e.event_id = r.event_id LEFT JOIN devices d ON d.device_id = r.device_id" + condition, params)
        return [_review_case(r) for r in rows], int(total[0]) if total else 0

    def review_case(self, case_id: int) -> ReviewCase | None:
        row = self.one(self._CASE_SQL + " WHERE r.id = ?", (case_id,))
        return None if row is None else _review_case(row)

    def decide_review(self, case_id: int, actor: str, accept: bool, reason: str, nip: str | None = None,
                      kind: str | None = None) -> ReviewCase:
        """Accept (as a punch of ``nip`` and ``kind``) or reject an open case, with the audit row, in one
        transaction; DecisionRefused when the case is gone, already decided (checked in the same UPDATE, so two
        reviewers at once cannot both decide), the NIP is not in the roster, or the person was not employed (had no
        office assignment) on the case's local day."""
        with self.transaction():
            before = self.review_case(case_id)
            if before is None:
                raise DecisionRefused(f"review case {case_id} does not exist", "missing")
            if accept and (nip is None or self.employee(nip) is None):
                raise DecisionRefused(f"NIP {nip!r} is not in the roster: accept the case for an employee of it",
                                      "roster")
            if accept and nip is not None:
                self.check_employed(before, nip)
            state = "accepted" if accept else "rejected"
            decided_at = utc_text()
            cursor = self.execute(
                "UPDATE review_queue SET state = ?, resolved_nip = ?, resolved_kind = ?, decided_by = ?, "
                "decided_at = ?, decision_reason = ? WHERE id = ? AND state = 'open'",
                (state, nip if accept else None, kind if accept else None, actor, decided_at, reason, case_id),
            )
            if cursor.rowcount != 1:
                now = self.review_case(case_id)
                who = f" by {now.decided_by} at {now.decided_at}" if now is not None else ""
                raise DecisionRefused(f"review case {case_id} was already decided ({before.state}){who}; "
                                      "nothing was changed", "decided")
            after = self.review_case(case_id)
            assert after is not None
            self.execute(
                "INSERT INTO review_audit (review_id, actor, action, reason, at, before_state, after_state) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (case_id, actor, "accept" if accept else "reject", reason, decided_at, before.audit_json(),
                 after.audit_json()),
            )
        return after

    def check_employed(self, case: ReviewCase, nip: str) -> None:
        """DecisionRefused ``not_employed`` unless ``nip`` had an office assignment on the case's local day (any
        assignment at all while the case's time is unknown: the recap judges the day once the anchor dates it)."""
        day = self.case_day(case)
        if day is None:
            if self.one("SELECT 1 FROM employee_assignments WHERE nip = ? LIMIT 1", (nip,)) is None:
                raise DecisionRefused(f"NIP {nip} has no office assignment in the roster: it cannot be accepted as "
                                      "attendance", "not_employed")
            return
        if self.office_on(nip, day) is None:
            raise DecisionRefused(f"NIP {nip} was not employed on {day.isoformat()} (no office assignment covers "
                                  "that day: not joined yet, or already left): it cannot be accepted as attendance "
                                  "that day", "not_employed")

    def review_history(self, case_id: int) -> list[tuple[str, str, str, str, str, str]]:
        """The audit rows of a case: (at, actor, action, reason, before, after), oldest first."""
        rows = self.rows("SELECT at, actor, action, reason, before_state, after_state FROM review_audit "
                         "WHERE review_id = ? ORDER BY id", (case_id,))
        return [(str(r[0]), str(r[1]), str(r[2]), str(r[3] or ""), str(r[4] or ""), str(r[5] or "")) for r in rows]


@dataclass(frozen=True)
class ReportedLoss:
    """A seq range a device reported lost, and the alarm event that reported it."""

    first_seq: int
    last_seq: int
    event_id: str
    alarm_seq: int
    alarm: str


@dataclass(frozen=True)
class Reviewer:
    """An HR reviewer account of the review page."""

    name: str
    role: str  # reviewer | admin
    password_hash: str
    disabled: bool


@dataclass(frozen=True)
class ReviewCase:
    """A review case with what HR needs to decide it: the event's office, believed time and signed payload."""

    id: int
    device_id: str
    event_id: str
    reason: str
    state: str
    resolved_nip: str | None
    resolved_kind: str | None
    decided_by: str | None
    decided_at: str | None
    decision_reason: str | None
    office: str | None
    time_ms: int | None
    time_source: str
    device_utc: str
    payload: str

    def audit_json(self) -> str:
        """What a decision changes, for review_audit's before/after columns."""
        return json.dumps({"state": self.state, "resolved_nip": self.resolved_nip,
                           "resolved_kind": self.resolved_kind, "decided_by": self.decided_by}, sort_keys=True)


def _review_case(row: Sequence[Any]) -> ReviewCase:
    """A row of ``Ledger._CASE_SQL`` as a ReviewCase."""
    text = [None if v is None else str(v) for v in row]
    return ReviewCase(
        id=int(row[0]), device_id=str(row[1]), event_id=str(row[2]), reason=str(row[3]), state=str(row[4]),
        resolved_nip=text[5], resolved_kind=text[6], decided_by=text[7], decided_at=text[8],
        decision_reason=text[9], office=text[10], time_ms=_opt_int(row[11]), time_source=str(row[12]),
        device_utc=str(row[13]), payload=str(row[14]),
    )


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def utc_text() -> str:
    """Now as RFC 3339 UTC with milliseconds, like the events' ``time_utc``."""
    return format_utc(datetime.now(UTC))


def utc_ms(text: str) -> int:
    """Milliseconds since the epoch of an event's ``time_utc`` (``2026-11-30T00:05:07.250Z``)."""
    return int(datetime.fromisoformat(text).timestamp() * 1000 + 0.5)
