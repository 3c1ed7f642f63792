"""The ledger's ingest on both backends (SQLite and the real PostgreSQL): events stored once and acknowledged only
after the commit, duplicates and replays dropped, forged, altered, misrouted and malformed messages rejected and
recorded, evidence tied to its signed hash and deleted after its retention, gaps asked for again, times corrected
from the boot's time anchor; the schema from Django's migrations, equal to the one of before Django, whose databases
are adopted with their rows."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from broker import Broker
from broker import available as broker_available
from central_support import (
    ALEX,
    CENTRAL_KEY,
    CENTRAL_KEYS,
    JPEG,
    LIN,
    PREFIX,
    Device,
    acked,
    acked_seqs,
    database,
    ingestor,
    registry_entry,
    wita,
    write_key,
)

from kiosk_central.cli import main
from kiosk_central.ingest import sync_registry
from kiosk_central.rules import read_deductions, read_schedule
from kiosk_central.settings import load_central_config
from kiosk_central.store import Ledger, LedgerError, utc_ms
from kiosk_contract import schema, signing
from kiosk_contract.acks import Conflict, open_ack
from kiosk_contract.errors import ConfigError

DAY = "2026-02-02"  # a Monday


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    with database(request.param, tmp_path) as url, Ledger(url) as opened:
        yield opened


@pytest.fixture
def kiosk(ledger: Ledger, tmp_path: Path) -> tuple[Device, Any, list[float]]:
    """A registered device, the ingestor that knows it, and the ingestor's clock."""
    key, pub = write_key(tmp_path / "keys", "kiosk-1")
    registry = sync_registry(ledger, [registry_entry("kiosk-1", "bkpsdm", pub)])
    now = [wita(DAY, "08:00").timestamp()]
    return Device("kiosk-1", key), ingestor(ledger, registry, now, resend_interval_s=10, resend_max_tries=2), now


def test_events_are_stored_once_and_acked_after_commit(ledger: Ledger, kiosk: Any) -> None:
    device, ing, _ = kiosk
    first = device.punch(ALEX, "masuk", wita(DAY, "07:25"))
    second = device.punch(LIN, "masuk", wita(DAY, "07:40"))
    out = ing.handle_batch([first[:2], second[:2]])
    assert acked(out) == [(1, first[2]["event_id"]), (2, second[2]["event_id"])]  # by seq and id, signed
    assert all(o.device == "kiosk-1" and o.site == "kantor" for o in out)
    assert ledger.rows("SELECT seq, nip, time_source FROM events ORDER BY seq") == [
        (1, ALEX, "device"), (2, LIN, "device")
    ]
    # The same message again (a lost ack, a republish): not stored twice, acknowledged again.
    again = ing.handle_batch([first[:2]])
    assert acked(again) == [(1, first[2]["event_id"])]
    assert ledger.one("SELECT COUNT(*) FROM events") == (2,)
    assert ing.snapshot()["duplicates"] == 1 and ing.snapshot()["stored"] == 2


def test_a_failed_transaction_acknowledges_nothing(ledger: Ledger, kiosk: Any) -> None:
    device, ing, _ = kiosk
    topic, wire, _ = device.punch(ALEX, "masuk", wita(DAY, "07:25"))
    ledger.execute("DROP TABLE device_progress")  # the commit cannot happen
    with pytest.raises(Exception, match="device_progress"):
        ing.handle_batch([(topic, wire)])
    assert ledger.one("SELECT COUNT(*) FROM events") == (0,)


def test_forged_altered_misrouted_and_malformed_messages_are_rejected(ledger: Ledger, kiosk: Any,
                                                                     tmp_path: Path) -> None:
    device, ing, _ = kiosk
    stranger_key, _ = write_key(tmp_path / "other", "stranger")
    forged = Device("kiosk-1", stranger_key).punch(ALEX, "masuk", wita(DAY, "07:00"))  # a key not in the registry
    topic, wire, event = device.punch(ALEX, "masuk", wita(DAY, "07:10"))
    altered = dict(event, time_utc="2026-02-01T22:00:00.000Z", time_local="2026-02-02T06:00:00.000+08:00")
    unknown = Device("kiosk-9", device.key).punch(ALEX, "masuk", wita(DAY, "07:00"))
    out = ing.handle_batch([
        forged[:2],
        (topic, schema.to_bytes(altered)),
        unknown[:2],
        ("presensi/v1/kantor/kiosk-2/event", wire),  # kiosk-1's event on another device's topic
        (topic, b'{"v": 1, "type": "attendance"'),
        ("presensi/v1/kantor/kiosk-1/status", wire),
    ])
    assert out == []
    reasons = [r[0] for r in ledger.rows("SELECT reason FROM rejections ORDER BY id")]
    assert len(reasons) == 6, reasons
    assert "unknown key id" in reasons[0]
    assert "bad signature" in reasons[1]
    assert "unknown device 'kiosk-9'" in reasons[2]
    assert "published on 'kiosk-2'" in reasons[3]
    assert reasons[4].startswith("malformed event")
    assert "not an event or evidence topic" in reasons[5]
    assert ledger.one("SELECT COUNT(*) FROM events") == (0,)
    assert ing.snapshot()["rejected"] == 6
    # The genuine message still goes in afterwards.
    assert acked_seqs(ing.handle_batch([(topic, wire)])) == [1]


def test_revoked_device_and_reused_seq_are_rejected(ledger: Ledger, kiosk: Any, tmp_path: Path) -> None:
    device, ing, _ = kiosk
    ing.handle_batch([device.punch(ALEX, "masuk", wita(DAY, "07:10"))[:2]])
    other = device.punch(LIN, "masuk", wita(DAY, "07:11"))
    reused = device.seal(schema.build_attendance(device.stamp(wita(DAY, "07:12")), kind="masuk", nip=LIN,
                                                 decision=schema.manual_decision("key")), seq=1)
    out = ing.handle_batch([reused[:2], other[:2]])
    assert acked(out) == [(2, other[2]["event_id"])], "never the reused number's other event"
    (ack,) = [open_ack(signing.wire(o.payload), CENTRAL_KEYS, device="kiosk-1") for o in out if o.suffix == "ack"]
    assert ack.conflicts == (Conflict(1, reused[2]["event_id"], ledger.event_at_seq("kiosk-1", 1) or ""),)
    reason = ledger.one("SELECT reason FROM rejections")
    assert reason is not None and reason[0].startswith("seq conflict: seq 1 is already event")
    assert [a[2] for a in ledger.alarms()] == ["seq_conflict"], "an alarm for IT on the ledger's side too"
    pub = tmp_path / "keys" / "kiosk-1.pub"
    ing.registry = sync_registry(ledger, [registry_entry("kiosk-1", "bkpsdm", pub, revoked=True)])
    assert ing.handle_batch([device.punch(ALEX, "pulang", wita(DAY, "16:10"))[:2]]) == []
    assert "revoked" in ledger.rows("SELECT reason FROM rejections ORDER BY id")[-1][0]


def test_an_event_with_a_photo_is_acknowledged_only_once_the_photo_is_held(ledger: Ledger, kiosk: Any) -> None:
    device, ing, now = kiosk
    topic, wire, event = device.punch(ALEX, "masuk", wita(DAY, "07:20"), evidence=JPEG)
    assert acked(ing.handle_batch([(topic, wire)])) == []  # stored, but its photo has not come
    ev_topic, envelope = device.evidence(event)
    wrong = device.evidence(event, JPEG[:-2] + b"\x00\xff\xd9")
    assert acked(ing.handle_batch([wrong])) == []
    assert "does not match" in ledger.rows("SELECT reason FROM rejections")[-1][0]
    assert acked_seqs(ing.handle_batch([(ev_topic, envelope)])) == [1]
    assert ledger.evidence("kiosk-1", event["event_id"]) == JPEG
    # A photo that comes before its event makes the event complete at once.
    t2, w2, e2 = device.punch(LIN, "masuk", wita(DAY, "07:21"), evidence=JPEG)
    assert acked_seqs(ing.handle_batch([device.evidence(e2), (t2, w2)])) == [2]
    # Retention: the photos go after it, the events stay.
    now[0] += 91 * 86400
    assert ing.purge_now() == 2
    assert ledger.evidence("kiosk-1", event["event_id"]) is None
    assert ledger.one("SELECT COUNT(*) FROM events") == (2,)


def test_review_events_wait_in_the_queue_and_keep_their_photo_past_retention(ledger: Ledger, kiosk: Any) -> None:
    device, ing, now = kiosk
    body = schema.build_review(device.stamp(wita(DAY, "07:35")), reason="manual_entry", nip=LIN, kind="masuk",
                               decision=schema.manual_decision(), evidence=JPEG)
    topic, wire, event = device.seal(body)
    ing.handle_batch([(topic, wire), device.evidence(event)])
    assert ledger.rows("SELECT device_id, event_id, reason, state FROM review_queue") == [
        ("kiosk-1", event["event_id"], "manual_entry", "open")
    ]
    now[0] += 365 * 86400
    assert ing.purge_now() == 0  # HR has not decided yet: the photo stays
    assert ledger.evidence("kiosk-1", event["event_id"]) == JPEG


def test_a_gap_is_asked_for_again_and_acked_by_id_meanwhile(ledger: Ledger, kiosk: Any) -> None:
    device, ing, now = kiosk
    one, two, three = (device.punch(n, "masuk", wita(DAY, t)) for n, t in ((ALEX, "07:01"), (LIN, "07:02"),
                                                                           (ALEX, "07:03")))
    out = ing.handle_batch([one[:2], three[:2]])
    assert acked_seqs(out) == [1, 3]  # each by its id: never anything over the hole
    assert [o for o in out if o.suffix == "cmd"] == []  # not at once: a late message may still come
    now[0] += 11
    cmds = ing.tick()
    assert [(c.suffix, c.payload["cmd"], c.payload["from_seq"]) for c in cmds] == [("cmd", "resend", 2)]
    assert ing.tick() == []  # rate-limited
    assert acked_seqs(ing.handle_batch([two[:2]])) == [2]
    now[0] += 11
    assert ing.tick() == []  # filled: nothing more to ask


def test_a_gap_that_never_fills_is_recorded_and_skipped(ledger: Ledger, kiosk: Any) -> None:
    device, ing, now = kiosk
    ing.handle_batch([device.punch(ALEX, "masuk", wita(DAY, "07:01"))[:2]])
    device.seq += 2  # the device skipped 2 and 3 (a crash between reserving and using its numbers)
    ing.handle_batch([device.punch(LIN, "masuk", wita(DAY, "07:02"))[:2]])
    sent = []
    for _ in range(4):
        now[0] += 11
        sent += ing.tick()
    assert [c.payload["from_seq"] for c in sent] == [2, 2]  # resend_max_tries = 2
    assert ledger.progress("kiosk-1")[:2] == (4, 4)  # type: ignore[index]
    reason = ledger.rows("SELECT reason FROM rejections")[-1][0]
    assert reason.startswith("seq 2..3 never arrived"), reason  # the missing range, not the stored 4
    assert [(a[1], a[2]) for a in ledger.alarms()] == [("kiosk-1", "gap_given_up")]
    assert acked_seqs(ing.handle_batch([device.punch(ALEX, "pulang", wita(DAY, "16:01"))[:2]])) == [5]


def test_a_gap_given_up_is_never_acknowledged_and_its_event_is_stored_when_it_comes(ledger: Ledger,
                                                                                 kiosk: Any) -> None:
    device, ing, now = kiosk
    one, two, three = (device.punch(n, "masuk", wita(DAY, t)) for n, t in ((ALEX, "07:01"), (LIN, "07:02"),
                                                                           (ALEX, "07:03")))
    out = ing.handle_batch([one[:2], three[:2]])  # seq 2 is on a kiosk that went offline
    for _ in range(4):
        now[0] += 11
        out += ing.tick()
    out += ing.handle_batch([device.punch(LIN, "pulang", wita(DAY, "16:00"))[:2]])
    assert 2 not in acked_seqs(out), "the ledger gave up asking, and still acknowledges only what it holds"
    assert "seq 2 never arrived" in ledger.rows("SELECT reason FROM rejections")[-1][0]
    later = ing.handle_batch([two[:2]])  # the kiosk comes back and publishes it again
    assert acked(later) == [(2, two[2]["event_id"])]
    assert ledger.one("SELECT nip FROM events WHERE seq = 2") == (LIN,)


def test_times_taken_before_the_clock_synced_are_corrected_from_the_anchor(ledger: Ledger, kiosk: Any) -> None:
    device, ing, _ = kiosk
    stale = wita("2026-01-30", "01:02")  # the clock of the last shutdown
    early = device.punch(ALEX, "masuk", stale, synced=False, mono_ns=12_500_000_000)
    ing.handle_batch([early[:2]])
    assert ledger.rows("SELECT time_ms, time_source FROM events") == [(None, "unanchored")]
    anchor_at = wita(DAY, "07:31:14.118")
    anchor = device.seal(schema.build_time_anchor(device.stamp(anchor_at, True, 31_002_000_000)))
    late = device.punch(LIN, "masuk", stale, synced=False, mono_ns=20_000_000_000)  # arrives after the anchor
    ing.handle_batch([anchor[:2], late[:2]])
    rows = dict(ledger.rows("SELECT nip, time_ms FROM events WHERE type = 'attendance'"))
    # true = anchor.time_utc - (anchor.mono_ns - event.mono_ns): 07:31:14.118 - 18.502 s = 07:30:55.616
    assert rows[ALEX] == utc_ms("2026-02-01T23:30:55.616Z")
    assert rows[LIN] == utc_ms("2026-02-01T23:31:03.116Z")  # 11.002 s before the anchor
    assert ledger.rows("SELECT DISTINCT time_source FROM events WHERE type = 'attendance'") == [("anchor",)]
    # Another boot's anchor does not re-date it.
    other_boot = Device("kiosk-1", device.key, boot_id="00000000-1111-4222-8333-444444444444")
    other_boot.seq = device.seq
    lost = other_boot.punch(ALEX, "pulang", stale, synced=False)
    ing.handle_batch([lost[:2]])
    assert ledger.event_counts()["unanchored"] == 1


# The ledger's schema before Django, as store.py's numbered migrations 1..4 made it (copied from store.py when Django's
# migrations took the schema over; {id} and {blob} are the two column types that differ between the backends): the
# "version 4" databases that are adopted.
OLD_SCHEMA: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (1, 'devices, events, evidence, sequence progress, review queue, rules', (
        ("CREATE TABLE devices (device_id TEXT PRIMARY KEY, office TEXT NOT NULL, revoked INTEGER NOT NULL "
         "DEFAULT 0, gallery_version TEXT, updated_at TEXT NOT NULL)"),
        ("CREATE TABLE device_keys (key_id TEXT PRIMARY KEY, device_id TEXT NOT NULL REFERENCES devices "
         "(device_id), public_key_hex TEXT NOT NULL, revoked INTEGER NOT NULL DEFAULT 0)"),
        ("CREATE TABLE events (device_id TEXT NOT NULL, event_id TEXT NOT NULL, seq BIGINT NOT NULL, type "
         "TEXT NOT NULL, kind TEXT, nip TEXT, boot_id TEXT NOT NULL, mono_ns BIGINT NOT NULL, device_utc "
         "TEXT NOT NULL, time_ms BIGINT, time_source TEXT NOT NULL CHECK (time_source IN ('device', "
         "'anchor', 'unanchored')), evidence_sha256 TEXT, evidence_ok INTEGER NOT NULL, payload TEXT NOT "
         "NULL, received_at TEXT NOT NULL, PRIMARY KEY (device_id, event_id), UNIQUE (device_id, seq))"),
        "CREATE INDEX events_nip_time ON events (nip, time_ms)",
        "CREATE INDEX events_boot ON events (device_id, boot_id, type)",
        "CREATE INDEX events_evidence_missing ON events (device_id, evidence_ok, seq)",
        ("CREATE TABLE evidence (device_id TEXT NOT NULL, event_id TEXT NOT NULL, sha256 TEXT NOT NULL, "
         "jpeg {blob} NOT NULL, received_at TEXT NOT NULL, expires_ms BIGINT NOT NULL, PRIMARY KEY "
         "(device_id, event_id, sha256))"),
        "CREATE INDEX evidence_expiry ON evidence (expires_ms)",
        ("CREATE TABLE device_progress (device_id TEXT PRIMARY KEY, site TEXT NOT NULL, contiguous_seq "
         "BIGINT NOT NULL, highest_seq BIGINT NOT NULL, resend_from BIGINT, resend_tries INTEGER NOT NULL "
         "DEFAULT 0, last_resend_ms BIGINT)"),
        ("CREATE TABLE rejections (id {id}, received_at TEXT NOT NULL, topic TEXT NOT NULL, device_id "
         "TEXT, event_id TEXT, reason TEXT NOT NULL)"),
        ("CREATE TABLE review_queue (id {id}, device_id TEXT NOT NULL, event_id TEXT NOT NULL, reason TEXT "
         "NOT NULL, state TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'accepted', 'rejected')), "
         "resolved_nip TEXT, resolved_kind TEXT, decided_by TEXT, decided_at TEXT, decision_reason TEXT, "
         "UNIQUE (device_id, event_id))"),
        ("CREATE TABLE review_audit (id {id}, review_id BIGINT NOT NULL REFERENCES review_queue (id), "
         "actor TEXT NOT NULL, action TEXT NOT NULL, reason TEXT, at TEXT NOT NULL)"),
        "CREATE TABLE offices (code TEXT PRIMARY KEY, name TEXT NOT NULL, timezone TEXT NOT NULL)",
        ("CREATE TABLE office_hours (office TEXT NOT NULL REFERENCES offices (code), ramadan INTEGER NOT "
         "NULL, day TEXT NOT NULL, start_time TEXT NOT NULL, end_time TEXT NOT NULL, PRIMARY KEY (office, "
         "ramadan, day))"),
        ("CREATE TABLE office_ramadan (office TEXT NOT NULL REFERENCES offices (code), start_date TEXT NOT "
         "NULL, end_date TEXT NOT NULL, PRIMARY KEY (office, start_date))"),
        ("CREATE TABLE office_days_off (office TEXT NOT NULL REFERENCES offices (code), day TEXT NOT NULL, "
         "kind TEXT NOT NULL CHECK (kind IN ('holiday', 'collective_leave')), name TEXT NOT NULL, PRIMARY "
         "KEY (office, day))"),
        ("CREATE TABLE employees (nip TEXT PRIMARY KEY, name TEXT NOT NULL, office TEXT NOT NULL, "
         "updated_at TEXT NOT NULL)"),
        ("CREATE TABLE excused (nip TEXT NOT NULL, start_date TEXT NOT NULL, end_date TEXT NOT NULL, kind "
         "TEXT NOT NULL CHECK (kind IN ('duty', 'leave', 'sick')), reference TEXT NOT NULL, entered_by "
         "TEXT NOT NULL, entered_at TEXT NOT NULL, PRIMARY KEY (nip, start_date, kind))"),
        ("CREATE TABLE deduction_bands (category TEXT NOT NULL CHECK (category IN ('late', 'early')), name "
         "TEXT NOT NULL, from_min INTEGER NOT NULL, to_min INTEGER NOT NULL, percent TEXT NOT NULL, "
         "PRIMARY KEY (category, name))"),
        "CREATE TABLE deduction_settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
        ("CREATE TABLE gallery_versions (office TEXT NOT NULL, version TEXT NOT NULL, sha256 TEXT NOT "
         "NULL, created_at TEXT NOT NULL, published_at TEXT, PRIMARY KEY (office, version))"),
    )),
    (2, 'HR review page: reviewer accounts, web sessions, login audit, before/after of each decision', (
        ("CREATE TABLE reviewers (name TEXT PRIMARY KEY, role TEXT NOT NULL CHECK (role IN ('reviewer', "
         "'admin')), password_hash TEXT NOT NULL, disabled INTEGER NOT NULL DEFAULT 0, created_by TEXT NOT "
         "NULL, created_at TEXT NOT NULL)"),
        ("CREATE TABLE web_sessions (token_sha256 TEXT PRIMARY KEY, user_name TEXT NOT NULL REFERENCES "
         "reviewers (name), csrf TEXT NOT NULL, remote TEXT NOT NULL, created_ms BIGINT NOT NULL, "
         "expires_ms BIGINT NOT NULL)"),
        "CREATE INDEX web_sessions_expiry ON web_sessions (expires_ms)",
        ("CREATE TABLE login_audit (id {id}, at TEXT NOT NULL, at_ms BIGINT NOT NULL, user_name TEXT NOT "
         "NULL, remote TEXT NOT NULL, outcome TEXT NOT NULL)"),
        "CREATE INDEX login_audit_user ON login_audit (user_name, at_ms)",
        "ALTER TABLE review_audit ADD COLUMN before_state TEXT",
        "ALTER TABLE review_audit ADD COLUMN after_state TEXT",
    )),
    (3, 'signed commands per device, the gallery office devices report, alarms for IT', (
        "CREATE TABLE device_commands (device_id TEXT PRIMARY KEY, last_version BIGINT NOT NULL)",
        "ALTER TABLE devices ADD COLUMN gallery_office TEXT",
        ("CREATE TABLE ledger_alarms (id {id}, at TEXT NOT NULL, device_id TEXT, kind TEXT NOT NULL, "
         "detail TEXT NOT NULL)"),
        "CREATE INDEX ledger_alarms_device ON ledger_alarms (device_id, id)",
    )),
    (4, 'seqs a device reported lost (the lost_seqs of its outbox_recovered alarm)', (
        ("CREATE TABLE reported_losses (device_id TEXT NOT NULL, first_seq BIGINT NOT NULL, last_seq "
         "BIGINT NOT NULL, event_id TEXT NOT NULL, alarm_seq BIGINT NOT NULL, alarm TEXT NOT NULL, "
         "reported_at TEXT NOT NULL, PRIMARY KEY (device_id, event_id, first_seq))"),
        "CREATE INDEX reported_losses_range ON reported_losses (device_id, first_seq, last_seq)",
    )),
)
OLD_TYPES = {
    "sqlite": {"id": "INTEGER PRIMARY KEY AUTOINCREMENT", "blob": "BLOB"},
    "postgresql": {"id": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "blob": "BYTEA"},
}


def kind_of(url: str) -> str:
    return "sqlite" if url.startswith("sqlite:") else "postgresql"


@contextlib.contextmanager
def raw(url: str) -> Iterator[Any]:
    """A plain autocommit connection to the ledger database, beside the program's (``?`` placeholders work on both:
    :func:`run`)."""
    if kind_of(url) == "sqlite":
        path = Path(url[len("sqlite:///"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        conn: Any = sqlite3.connect(path, isolation_level=None)
    else:
        import psycopg

        conn = psycopg.connect(url, autocommit=True)
    try:
        yield conn
    finally:
        conn.close()


def run(conn: Any, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    cursor = conn.execute(sql if isinstance(conn, sqlite3.Connection) else sql.replace("?", "%s"), params)
    return [tuple(r) for r in cursor.fetchall()] if cursor.description else []


def make_old_ledger(url: str, upto: int = 4) -> None:
    """A ledger database as the program before Django left it at schema version ``upto``."""
    with raw(url) as conn:
        run(conn, "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                  "description TEXT NOT NULL, applied_at TEXT NOT NULL)")
        for version, description, statements in OLD_SCHEMA[:upto]:
            for statement in statements:
                run(conn, statement.format(**OLD_TYPES[kind_of(url)]))
            run(conn, "INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)",
                (version, description, "2026-11-30T00:00:00.000Z"))


OLD_EVENT = ("kiosk-1", "019c0000-0000-7000-8000-000000000001")
LEDGER_MIGRATIONS = ["0001_initial", "0002_schema_owned_by_django", "0003_employee_assignments",
                     "0004_office_days_off_source", "0005_rules_with_dates", "0006_device_selftest"]
# What 0004 and 0005 add to the old schema's office_days_off and office_ramadan, written as plain SQL: where each
# was entered.
SOURCE_COLUMNS = (
    "ALTER TABLE office_days_off ADD COLUMN source TEXT NOT NULL DEFAULT 'rules' "
    "CONSTRAINT office_days_off_source_check CHECK (source IN ('rules', 'web'))",
    "ALTER TABLE office_ramadan ADD COLUMN source TEXT NOT NULL DEFAULT 'rules' "
    "CONSTRAINT office_ramadan_source_check CHECK (source IN ('rules', 'web'))",
    "ALTER TABLE devices ADD COLUMN schedule_version TEXT",  # and what a device reports it runs (0005)
    "ALTER TABLE devices ADD COLUMN status_seq BIGINT",
    "ALTER TABLE devices ADD COLUMN selftest TEXT",  # its latest self-test (0006)
    "ALTER TABLE devices ADD COLUMN selftest_at TEXT",
    "ALTER TABLE devices ADD COLUMN selftest_seq BIGINT",
)
RULES_TABLES_BEFORE = {"office_hours", "deduction_bands", "deduction_settings"}  # dropped by 0005
RULES_TABLES_AFTER = {"office_hours_versions", "deduction_versions"}  # their rows as versions with a start day
PUSHES = "schedule_pushes"  # 0005: every schedule push


def fill_old_ledger(url: str) -> None:
    """Rows in the old ledger's tables: a device and its key, an event with its photo and review case (decided,
    audited), a rejection, an alarm, a reported loss, an office and an employee."""
    at = "2026-11-30T00:05:07.250Z"
    with raw(url) as conn:
        for sql, params in [
            ("INSERT INTO devices (device_id, office, updated_at, gallery_office) VALUES (?, ?, ?, ?)",
             ("kiosk-1", "bkpsdm", at, "bkpsdm")),
            ("INSERT INTO device_keys (key_id, device_id, public_key_hex) VALUES (?, ?, ?)",
             ("k-1", "kiosk-1", "00" * 32)),
            ("INSERT INTO events (device_id, event_id, seq, type, kind, nip, boot_id, mono_ns, device_utc, time_ms, "
             "time_source, evidence_sha256, evidence_ok, payload, received_at) "
             "VALUES (?, ?, 1, 'review', 'masuk', NULL, 'b', 5, ?, 1764461107250, 'device', 'ab', 1, '{}', ?)",
             (*OLD_EVENT, at, at)),
            ("INSERT INTO events (device_id, event_id, seq, type, kind, nip, boot_id, mono_ns, device_utc, time_ms, "
             "time_source, evidence_sha256, evidence_ok, payload, received_at) VALUES (?, ?, 2, 'status', NULL, NULL, "
             "'b', 6, ?, 1764461108250, 'device', NULL, 1, ?, ?)",
             ("kiosk-1", "019c0000-0000-7000-8000-000000000003", at,
              '{"type": "status", "schedule_version": "abcdef0123456789"}', at)),
            ("INSERT INTO evidence (device_id, event_id, sha256, jpeg, received_at, expires_ms) "
             "VALUES (?, ?, 'ab', ?, ?, 1)", (*OLD_EVENT, JPEG, at)),
            ("INSERT INTO review_queue (device_id, event_id, reason) VALUES (?, ?, 'unknown_face')", OLD_EVENT),
            ("UPDATE review_queue SET state = 'accepted', resolved_nip = ?, resolved_kind = 'masuk', "
             "decided_by = 'siti', decided_at = ?, decision_reason = 'kenal' WHERE event_id = ?",
             (ALEX, at, OLD_EVENT[1])),
            ("INSERT INTO review_audit (review_id, actor, action, reason, at, before_state, after_state) "
             "VALUES (1, 'siti', 'accept', 'kenal', ?, '{}', '{}')", (at,)),
            ("INSERT INTO rejections (received_at, topic, device_id, event_id, reason) VALUES (?, 't', NULL, NULL, "
             "'bad signature')", (at,)),
            ("INSERT INTO ledger_alarms (at, device_id, kind, detail) VALUES (?, 'kiosk-1', 'seq_conflict', 'x')",
             (at,)),
            ("INSERT INTO reported_losses (device_id, first_seq, last_seq, event_id, alarm_seq, alarm, reported_at) "
             "VALUES ('kiosk-1', 5, 7, 'e-8', 8, 'outbox_recovered', ?)", (at,)),
            ("INSERT INTO offices (code, name, timezone) VALUES ('bkpsdm', 'BKPSDM', 'Asia/Makassar')", ()),
            *[("INSERT INTO office_hours (office, ramadan, day, start_time, end_time) VALUES ('bkpsdm', ?, ?, ?, ?)",
               (ramadan, day, start, end)) for ramadan, days, start, end in (
                (0, ("mon", "tue", "wed", "thu"), "07:30", "16:00"), (0, ("fri",), "07:30", "16:30"),
                (1, ("mon", "tue", "wed", "thu", "fri"), "08:00", "15:00")) for day in days],
            ("INSERT INTO office_ramadan (office, start_date, end_date) VALUES ('bkpsdm', '2026-02-19', '2026-03-20')",
             ()),
            *[("INSERT INTO deduction_bands (category, name, from_min, to_min, percent) VALUES (?, ?, ?, ?, ?)", row)
              for row in (("late", "TL1", 1, 30, "0.5"), ("late", "TL2", 31, 0, "1.0"),
                          ("early", "PSW1", 1, 45, "0.75"), ("early", "PSW2", 46, 0, "1.5"))],
            *[("INSERT INTO deduction_settings (name, value) VALUES (?, ?)", row)
              for row in (("missing_check_in", "TL2"), ("missing_check_out", "PSW2"), ("absent_percent", "2.5"),
                          ("monthly_cap_percent", "40"))],
            ("INSERT INTO employees (nip, name, office, updated_at) VALUES (?, 'Alex', 'bkpsdm', ?)", (ALEX, at)),
            ("INSERT INTO reviewers (name, role, password_hash, created_by, created_at) "
             "VALUES ('siti', 'reviewer', 'scrypt$x', 'admin', ?)", (at,)),
        ]:
            run(conn, sql, params)


def _checks(sql: str) -> list[str]:
    """The CHECK conditions of an SQLite CREATE TABLE, without quotes and spaces."""
    found = []
    for start in [m.end() for m in re.finditer(r"CHECK\s*\(", sql, re.IGNORECASE)]:
        depth, end = 1, start
        while depth:
            depth += {"(": 1, ")": -1}.get(sql[end], 0)
            end += 1
        found.append(re.sub(r"[\s\"]", "", sql[start:end - 1]))
    return sorted(found)


def schema_of(url: str) -> dict[str, Any]:
    """The ledger's tables as the database describes them: columns in order with type, NOT NULL and default; keys,
    unique and CHECK constraints, foreign keys and indexes. Django's bookkeeping table is left out; so are the two
    things Django spells differently and the SQL does not see: the names of foreign keys (and on PostgreSQL their
    DEFERRABLE INITIALLY DEFERRED; Django's are checked at commit) and identity columns GENERATED BY DEFAULT rather
    than ALWAYS (the SQL never writes an id)."""
    tables: dict[str, Any] = {}
    with raw(url) as conn:
        if kind_of(url) == "sqlite":
            for name, sql in run(conn, "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE "
                                       "'sqlite_%' AND name <> 'django_migrations'"):
                columns = [(c[1], c[2].upper(), bool(c[3] or c[5]), c[4], c[5])
                           for c in run(conn, f"PRAGMA table_xinfo({name})")]
                indexes = sorted((i[1] if i[3] == "c" else i[3], i[2], i[4],
                                  tuple(c[2] for c in run(conn, f"PRAGMA index_info({i[1]})")))
                                 for i in run(conn, f"PRAGMA index_list({name})"))
                keys = sorted((f[2], f[3], f[4]) for f in run(conn, f"PRAGMA foreign_key_list({name})"))
                tables[name] = (columns, indexes, keys, _checks(sql), "AUTOINCREMENT" in sql.upper())
            return tables
        for name, column, position, kind, nullable, default, identity in run(
                conn, "SELECT table_name, column_name, ordinal_position, data_type, is_nullable, column_default, "
                      "is_identity FROM information_schema.columns WHERE table_schema = current_schema() "
                      "AND table_name <> 'django_migrations' ORDER BY table_name, ordinal_position"):
            tables.setdefault(name, {"columns": [], "constraints": [], "indexes": []})
            tables[name]["columns"].append((position, column, kind, nullable, default, identity))
        for name, constraint, kind, definition in run(
                conn, "SELECT c.relname, k.conname, k.contype, pg_get_constraintdef(k.oid) FROM pg_constraint k "
                      "JOIN pg_class c ON c.oid = k.conrelid WHERE c.relnamespace = current_schema()::regnamespace "
                      "AND c.relname <> 'django_migrations'"):
            if kind == "f":
                constraint, definition = "(foreign key)", definition.replace(" DEFERRABLE INITIALLY DEFERRED", "")
            tables[name]["constraints"].append((constraint, kind, definition))
        for name, index, definition in run(conn, "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE "
                                                 "schemaname = current_schema() AND tablename <> 'django_migrations'"):
            tables[name]["indexes"].append((index, re.sub(r" ON \w+\.", " ON ", definition)))
        for table in tables.values():
            table["constraints"].sort()
            table["indexes"].sort()
    return tables


def applied(url: str) -> tuple[list[int], list[str]]:
    """(versions in schema_migrations, the ledger's migrations recorded by Django)."""
    with raw(url) as conn:
        return ([int(r[0]) for r in run(conn, "SELECT version FROM schema_migrations ORDER BY version")],
                [str(r[0]) for r in run(conn, "SELECT name FROM django_migrations WHERE app = 'ledger' ORDER BY id")])


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_django_makes_the_schema_the_numbered_migrations_made(kind: str, tmp_path: Path) -> None:
    with (database(kind, tmp_path / "old") as old_url, database(kind, tmp_path / "new") as new_url,
          database(kind, tmp_path / "source") as source_url):
        make_old_ledger(old_url)
        old = schema_of(old_url)
        with Ledger(new_url):
            pass
        new = schema_of(new_url)
        assert len(old) == 24
        assert set(new) == set(old) - RULES_TABLES_BEFORE | {"employee_assignments", PUSHES} | RULES_TABLES_AFTER
        # 0003 added the roster's history (employees' two columns), 0004 office_days_off.source, 0005 the rules with
        # dates and office_ramadan.source
        changed = {"employees", "office_days_off", "office_ramadan", "devices"}
        for table in set(old) - changed - RULES_TABLES_BEFORE:
            assert new[table] == old[table], table
        make_old_ledger(source_url)
        with raw(source_url) as conn:
            for statement in SOURCE_COLUMNS:
                run(conn, statement)
        for table in changed - {"employees"}:
            assert new[table] == schema_of(source_url)[table], table
        with Ledger(old_url):  # adopted: then migrated like a new one (0003, 0004)
            pass
        assert schema_of(old_url) == new


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_ledger_made_before_django_is_adopted_with_its_rows(kind: str, tmp_path: Path) -> None:
    from django.db import connections

    with database(kind, tmp_path) as url:
        make_old_ledger(url)
        fill_old_ledger(url)
        with Ledger(url) as ledger:  # adopts it: 0001 recorded as applied (its tables kept), 0002 marks version 5
            assert applied(url) == ([1, 2, 3, 4, 5], LEDGER_MIGRATIONS)
            assert ledger.migrate() == []
            stored = ledger.stored_event(*OLD_EVENT)
            assert stored is not None and (stored.seq, stored.type, stored.evidence_ok) == (1, "review", True)
            assert ledger.evidence(*OLD_EVENT) == JPEG
            case = ledger.review_case(1)
            assert case is not None and (case.state, case.resolved_nip, case.office) == ("accepted", ALEX, "bkpsdm")
            assert ledger.review_history(1)[0][:3] == ("2026-11-30T00:05:07.250Z", "siti", "accept")
            assert [(a[1], a[2]) for a in ledger.alarms()] == [("kiosk-1", "seq_conflict")]
            assert [(r.first_seq, r.last_seq) for r in ledger.reported_losses("kiosk-1", 1, 10)] == [(5, 7)]
            assert ledger.employee(ALEX) == ("Alex", "bkpsdm") and ledger.office_zones() == {"bkpsdm": "Asia/Makassar"}
            # what the kiosk reported in its latest status event, from that event
            assert ledger.one("SELECT schedule_version, status_seq FROM devices WHERE device_id = 'kiosk-1'") == (
                "abcdef0123456789", 2)
            # the hours and the deduction table became versions valid since before the ledger, saying the same
            schedule = read_schedule(ledger, "bkpsdm")
            assert [start for start, _ in schedule.hours_from] == [dt.date(1970, 1, 1)]
            assert schedule.hours_on(dt.date(2025, 1, 2)) == (dt.time(7, 30), dt.time(16, 0))  # a Thursday
            assert schedule.hours_on(dt.date(2025, 1, 3)) == (dt.time(7, 30), dt.time(16, 30))  # Friday
            assert schedule.hours_on(dt.date(2026, 3, 6)) == (dt.time(8, 0), dt.time(15, 0))  # Friday in Ramadan
            assert schedule.hours_on(dt.date(2025, 1, 4)) is None  # Saturday
            table = read_deductions(ledger).on(dt.date(2025, 1, 2))
            assert table.band("late", 31) == ("TL2", Decimal("1.0")) and table.band("early", 45) == (
                "PSW1", Decimal("0.75"))
            assert (table.missing_check_in, table.missing_check_out, table.absent_percent,
                    table.monthly_cap_percent) == ("TL2", "PSW2", Decimal("2.5"), Decimal("40"))
            reviewer = ledger.reviewer("siti")
            assert reviewer is not None and reviewer.password_hash == "scrypt$x"
            # it goes on: ids continue after the old rows', and the ingest stores and acknowledges
            with ledger.transaction():
                ledger.reject("t", None, None, "another")
                ledger.enqueue_review("kiosk-1", "019c0000-0000-7000-8000-000000000002", "manual_entry")
            assert ledger.rows("SELECT id FROM rejections ORDER BY id") == [(1,), (2,)]
            assert ledger.rows("SELECT id, state FROM review_queue ORDER BY id") == [(1, "accepted"), (2, "open")]
            key, pub = write_key(tmp_path / "keys", "kiosk-2")
            registry = sync_registry(ledger, [registry_entry("kiosk-2", "bkpsdm", pub)])
            device = Device("kiosk-2", key)
            punch = device.punch(LIN, "masuk", wita(DAY, "07:25"))
            out = ingestor(ledger, registry, [wita(DAY, "08:00").timestamp()]).handle_batch([punch[:2]])
            assert acked(out) == [(1, punch[2]["event_id"])]
        with Ledger(url) as again:  # and opens again as it is
            assert again.migrate() == [] and applied(url)[0] == [1, 2, 3, 4, 5]
    assert not [alias for alias in connections if alias.startswith("ledger_migrate")]  # no connection left behind


def test_an_older_ledger_or_one_without_its_tables_is_refused_unchanged(tmp_path: Path) -> None:
    with database("sqlite", tmp_path / "v3") as url:
        make_old_ledger(url, upto=3)
        with pytest.raises(LedgerError, match=r"version 3 .*adopts version 4 only"):
            Ledger(url)
        with raw(url) as conn:
            assert run(conn, "SELECT name FROM sqlite_master WHERE name = 'django_migrations'") == []
    with database("sqlite", tmp_path / "broken") as url:
        make_old_ledger(url)
        with raw(url) as conn:
            run(conn, "DROP TABLE reported_losses")
            run(conn, "ALTER TABLE devices DROP COLUMN gallery_office")
        with pytest.raises(LedgerError, match=r"devices lacks column\(s\) gallery_office; table reported_losses is "
                                              r"missing\. Nothing was changed"):
            Ledger(url)
        with raw(url) as conn:
            assert run(conn, "SELECT name FROM sqlite_master WHERE name = 'django_migrations'") == []


def test_migrations_are_recorded_and_a_newer_schema_is_refused(ledger: Ledger) -> None:
    url = ledger.url
    assert applied(url) == ([5], LEDGER_MIGRATIONS)
    assert ledger.migrate() == []
    with raw(url) as conn:
        run(conn, "INSERT INTO django_migrations (app, name, applied) VALUES ('ledger', '0099_from_the_future', "
                  "CURRENT_TIMESTAMP)")
    with pytest.raises(LedgerError, match="0099_from_the_future of the ledger, newer than this program's"):
        Ledger(url)
    with raw(url) as conn:
        run(conn, "DELETE FROM django_migrations WHERE name = '0099_from_the_future'")
        run(conn, "INSERT INTO schema_migrations VALUES (99, 'from the future', 'x')")
    with pytest.raises(LedgerError, match="schema version 99, newer than this program's 5"):
        Ledger(url)


def test_an_up_to_date_ledger_opens_read_only(tmp_path: Path) -> None:
    """With nothing to apply, the migrate at open writes nothing: a read-only session (what a streaming replica
    gives) opens the ledger and reads it."""
    with database("postgresql", tmp_path) as url:
        with Ledger(url) as ledger, ledger.transaction():
            ledger.reject("t", None, None, "x")
        with Ledger(url + "%20-cdefault_transaction_read_only%3Don") as standby:
            assert standby.migrate() == [] and standby.rows("SELECT reason FROM rejections") == [("x",)]
            with pytest.raises(Exception, match="read-only transaction"), standby.transaction():
                standby.reject("t", None, None, "y")


def test_manage_migrate_adopts_an_old_ledger_too(tmp_path: Path) -> None:
    """`kiosk-central manage --config c.toml migrate` (every app: the HR web's tables too) on a ledger of before
    Django: the same adoption, then Django's own tables beside the ledger's."""
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    make_old_ledger(url)
    fill_old_ledger(url)
    config = tmp_path / "central.toml"
    config.write_text(f'[database]\nurl = "{url}"\n')
    assert main(["manage", "--config", str(config), "migrate", "--verbosity", "0"]) == 0
    assert applied(url) == ([1, 2, 3, 4, 5], LEDGER_MIGRATIONS)
    with raw(url) as conn:
        assert run(conn, "SELECT COUNT(*) FROM django_migrations WHERE app = 'hr'")[0][0] >= 1
        assert run(conn, "SELECT device_id, office FROM devices") == [("kiosk-1", "bkpsdm")]


def test_bad_database_urls_and_config_are_named(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="neither postgresql"):
        Ledger("mysql://x")
    config = tmp_path / "central.toml"
    config.write_text('[broker]\nport = "1883"\nhots = "x"\n[[devices]]\nid = "a"\noffice = "o"\n')
    with pytest.raises(ConfigError) as err:
        load_central_config(config)
    text = str(err.value)
    assert "broker.port: must be an integer" in text
    assert "broker.hots" in text
    assert "devices[0].public_keys: required key missing" in text


def test_registry_refuses_a_key_shared_by_two_devices(ledger: Ledger, tmp_path: Path) -> None:
    _, pub = write_key(tmp_path, "k")
    with pytest.raises(signing.KeyFileError, match="already kiosk-a's key"):
        sync_registry(ledger, [registry_entry("kiosk-a", "x", pub), registry_entry("kiosk-b", "x", pub)])


def test_status_events_record_the_gallery_version(ledger: Ledger, kiosk: Any) -> None:
    device, ing, _ = kiosk
    body = schema.build_status(device.stamp(wita(DAY, "07:00")), fps=15.0, outbox_depth=0,
                               oldest_pending_age_s=None, gallery_version="12", cpu_temp_c=None, free_disk_bytes=1)
    ing.handle_batch([device.seal(body)[:2]])
    assert ledger.one("SELECT gallery_version FROM devices WHERE device_id = 'kiosk-1'") == ("12",)
    assert json.loads(ledger.one("SELECT payload FROM events")[0])["fps"] == "15.0"  # type: ignore[index]



def test_status_events_record_what_the_kiosk_runs_and_its_self_test_and_a_late_one_changes_nothing(
        ledger: Ledger, kiosk: Any) -> None:
    device, ing, _ = kiosk
    summary = {"result": "failed", "failed": ["camera"], "skipped": ["gpio", "otp_key"], "report_sha256": "a" * 64,
               "kiosk_version": "0.9.0", "cpu_ms_per_frame": "11.5"}

    def status(hhmm: str, schedule: str, selftest: dict[str, Any] | None = None) -> dict[str, Any]:
        return schema.build_status(device.stamp(wita(DAY, hhmm)), fps=15.0, outbox_depth=0, oldest_pending_age_s=None,
                                   gallery_version="12", cpu_temp_c=None, free_disk_bytes=1, gallery_office="bkpsdm",
                                   schedule_version=schedule, selftest=selftest)

    first = device.seal(status("07:00", "0123456789abcdef", summary))
    second = device.seal(status("07:01", "fedcba9876543210"))
    ing.handle_batch([second[:2]])
    ing.handle_batch([first[:2]])  # the older one arrives late (a resend): what the kiosk runs stays the newer's
    row = ledger.one("SELECT schedule_version, status_seq, selftest, selftest_at, selftest_seq FROM devices "
                     "WHERE device_id = 'kiosk-1'")
    assert row is not None and row[:2] == ("fedcba9876543210", second[2]["seq"])
    assert json.loads(row[2]) == summary and row[3] == first[2]["time_utc"] and row[4] == first[2]["seq"]


def test_the_registry_and_revocations_of_provisioning_are_loaded(ledger: Ledger, tmp_path: Path) -> None:
    key, pub = write_key(tmp_path / "keys", "kiosk-2")
    key_id = signing.key_id_of(key)
    entry = {"device_id": "kiosk-2", "site": "kantor", "office": "bkpsdm", "hostname": "kiosk-2", "key_id": key_id,
             "public_key": pub.read_text(), "mqtt_cert_sha256": "0" * 64}
    registry_file = tmp_path / "registry.json"
    registry_file.write_text(json.dumps([entry]))
    now = [wita(DAY, "08:00").timestamp()]
    ing = ingestor(ledger, sync_registry(ledger, [], registry_file), now)
    device = Device("kiosk-2", key)
    assert acked_seqs(ing.handle_batch([device.punch(ALEX, "masuk", wita(DAY, "07:10"))[:2]])) == [1]
    revoked_file = tmp_path / "revoked.json"
    revoked_file.write_text(json.dumps([{"device_id": "kiosk-2", "key_id": key_id, "cert_serial": "1",
                                         "revoked_at": "2026-02-02T01:00:00+00:00"}]))
    ing.registry = sync_registry(ledger, [], registry_file, revoked_file)
    assert ing.handle_batch([device.punch(ALEX, "pulang", wita(DAY, "16:10"))[:2]]) == []
    assert f"signed with key {key_id} of 'kiosk-2', which is revoked" in ledger.rows(
        "SELECT reason FROM rejections")[-1][0]
    registry_file.write_text(json.dumps([dict(entry, key_id="0" * 16), {"device_id": "x"}]))
    with pytest.raises(ConfigError) as err:
        sync_registry(ledger, [], registry_file)
    assert "[0].key_id: 0000000000000000 is not the id of its public_key" in str(err.value)
    assert "[1]: needs the strings device_id, office, key_id and public_key" in str(err.value)


@pytest.mark.skipif(not broker_available(), reason="mosquitto is not installed")
def test_the_subscriber_runs_as_a_management_command(tmp_path: Path) -> None:
    """`kiosk-central manage --config c.toml subscribe` is `kiosk-central serve` (one implementation, for a systemd
    service of its own): it migrates the ledger, stores a kiosk's event, acknowledges it, and stops on SIGTERM."""
    import paho.mqtt.client as mqtt
    from cryptography.hazmat.primitives import serialization
    from paho.mqtt.enums import CallbackAPIVersion

    key, pub = write_key(tmp_path / "keys", "kiosk-1")
    signing.write_private_key(tmp_path / "central.key", CENTRAL_KEY.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with Broker(tmp_path / "broker") as broker:
        config = tmp_path / "central.toml"
        config.write_text('[database]\nurl = "sqlite:///ledger.sqlite"\n'
                          f'[broker]\nhost = "{broker.host}"\nport = {broker.port}\nreconnect_min_s = 0.2\n'
                          '[signing]\nkey_file = "central.key"\n'
                          f'[[devices]]\nid = "kiosk-1"\noffice = "bkpsdm"\npublic_keys = ["{pub}"]\n')
        log = tmp_path / "subscriber.log"
        with log.open("wb") as out:
            process = subprocess.Popen([sys.executable, "-m", "kiosk_central", "manage", "--config", str(config),
                                        "subscribe"], stdout=out, stderr=out, cwd=tmp_path)
        acks: list[bytes] = []
        kiosk = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="kiosk-1")
        kiosk.on_message = lambda _c, _u, message: acks.append(bytes(message.payload))
        try:
            kiosk.connect(broker.host, broker.port)
            kiosk.subscribe(f"{PREFIX}/+/kiosk-1/ack", qos=1)
            kiosk.loop_start()
            topic, wire, event = Device("kiosk-1", key).punch(ALEX, "masuk", wita(DAY, "07:25"))
            deadline = time.monotonic() + 60
            while not acks and time.monotonic() < deadline and process.poll() is None:
                kiosk.publish(topic, wire, qos=1)  # again until the subscriber is there: a duplicate is acked again
                time.sleep(0.5)
            assert acks, log.read_text()
            assert open_ack(acks[0], CENTRAL_KEYS, device="kiosk-1").events == ((1, event["event_id"]),)
        finally:
            kiosk.loop_stop()
            kiosk.disconnect()
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            returncode = process.wait(timeout=30)
    assert returncode == 0, log.read_text()
    assert "ledger: stopped" in log.read_text()
    assert applied(f"sqlite:///{tmp_path / 'ledger.sqlite'}")[1] == LEDGER_MIGRATIONS
