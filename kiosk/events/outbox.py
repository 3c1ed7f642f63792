"""The durable outbox: every attendance event stays in a local SQLite database until the server acknowledges it.

An event is committed (WAL, ``synchronous=FULL``) before :meth:`Outbox.append` returns, so the screen may say
"recorded" as soon as it has returned. Each event gets a per-device sequence number that never repeats, not even
after pruning or after a corrupt database was moved aside: numbers are handed out from blocks whose end is first
written durably to a small side file ``<name>.seq`` (see docs/outbox.md). States move
pending -> published -> acknowledged; evidence (a small JPEG) is deleted once acknowledged or when retention ends,
events only once acknowledged and past retention. Opened with a :class:`~kiosk.atrest.DataCipher`, the evidence is
stored encrypted (bound to its event's seq) and the database records the key's id, so a wrong key is refused at open.
Deleted rows are overwritten (``secure_delete``), so a deleted photo does not linger in free pages of the file.

One connection, guarded by a lock, serves every thread of the process; a second process is refused (``<name>.lock``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, NoReturn

from kiosk.errors import KioskError
from kiosk.events.commitrecord import EMPTY_DIGEST, CommitRecord, CommitState, chain
from kiosk_contract.fsutil import free_bytes, fsync_dir, write_atomic
from kiosk_contract.sealing import OVERHEAD, DataCipher, SealError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3
SEQ_FILE_FORMAT = 1
MAX_SEQ = 2**63 - 1  # SQLite INTEGER is a signed 64-bit number
STATES = ("pending", "published", "acknowledged")
_ROW_OVERHEAD = 512  # bytes an event costs beyond its strings and blobs (row header, index entries), rounded up
_PRUNE_CHUNK = 500  # rows deleted per transaction, so the frame loop never waits long for the lock
_CORRUPT_CODES = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
_STORAGE_CODES = (  # the storage refused: read-only, I/O error, permission; corruption found in use (reopen checks)
    sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM, *_CORRUPT_CODES
)

_SCHEMA = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    payload BLOB NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'published', 'acknowledged')),
    created_at REAL NOT NULL,
    published_at REAL,
    publish_count INTEGER NOT NULL DEFAULT 0,
    acknowledged_at REAL
);
CREATE INDEX IF NOT EXISTS events_state_seq ON events (state, seq);
CREATE INDEX IF NOT EXISTS events_created ON events (created_at);
CREATE TABLE IF NOT EXISTS evidence (
    seq INTEGER PRIMARY KEY REFERENCES events (seq),
    created_at REAL NOT NULL,
    jpeg BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS evidence_created ON evidence (created_at);
CREATE TABLE IF NOT EXISTS seq_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq INTEGER NOT NULL,
    reserved_end INTEGER NOT NULL
);
INSERT OR IGNORE INTO seq_state (id, last_seq, reserved_end) VALUES (1, 0, 0);
PRAGMA user_version = 1;
COMMIT;
"""

# Version 2: the id of the data key that seals the evidence (no row: evidence is stored in the clear).
_TO_VERSION_2 = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS data_key (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    key_id TEXT NOT NULL
);
PRAGMA user_version = 2;
COMMIT;
"""

# Version 3: the running digest of committed event ids, checked against the commit record at every open.
_TO_VERSION_3 = """
BEGIN IMMEDIATE;
ALTER TABLE seq_state ADD COLUMN digest BLOB;
ALTER TABLE seq_state ADD COLUMN prev_digest BLOB;
PRAGMA user_version = 3;
COMMIT;
"""

_COLUMNS = (
    "seq, event_id, kind, payload, state, created_at, published_at, publish_count, acknowledged_at, "
    "EXISTS (SELECT 1 FROM evidence WHERE evidence.seq = events.seq)"
)


class OutboxError(KioskError):
    """The outbox cannot be opened or used: locked by another process, of a newer schema, or a disk error."""


class OutboxFull(OutboxError):
    """Nothing was stored: the outbox reached ``max_events`` or ``max_bytes``, or the disk is full."""


class StorageUnavailable(OutboxError):
    """The storage refused a read or write (read-only file system, I/O error, permission denied): nothing was stored
    by the call that raised it, and the outbox is *down* until :meth:`Outbox.retry` succeeds."""


class _Corrupt(Exception):
    """Internal: the database file is not a healthy SQLite database."""


@dataclass(frozen=True)
class Recovery:
    """A damaged outbox found at open: moved aside to ``moved_to`` (never deleted), ``salvaged`` events copied into
    the new one, and ``lost``: inclusive seq ranges of committed events (per the commit record) that could not be
    read back and may not have reached the server. A range may include numbers that were skipped, never issued."""

    reason: Literal["corrupt", "behind", "replaced"]
    moved_to: Path
    salvaged: int
    lost: tuple[tuple[int, int], ...]
    detail: str


@dataclass(frozen=True)
class OutboxEvent:
    """One stored event. ``state`` is one of :data:`STATES`; times are seconds since the epoch (the outbox clock)."""

    seq: int
    event_id: str
    kind: str
    payload: bytes
    state: str
    created_at: float
    published_at: float | None = None
    publish_count: int = 0
    acknowledged_at: float | None = None
    has_evidence: bool = False

    @classmethod
    def _from_row(cls, row: tuple[Any, ...]) -> OutboxEvent:
        seq, event_id, kind, payload, state, created, published, count, acked, has_ev = row
        return cls(seq, event_id, kind, bytes(payload), state, created, published, count, acked, bool(has_ev))


class Outbox:
    """The device's durable outbox; create it with :meth:`Outbox.open`. Every method is thread-safe."""

    def __init__(
        self,
        path: Path,
        *,
        max_events: int,
        max_bytes: int,
        retention_s: float,
        clock: Callable[[], float],
        seq_block: int,
        cipher: DataCipher | None,
    ) -> None:
        if max_events < 1 or max_bytes < 1 or retention_s <= 0 or seq_block < 1:
            raise ValueError("max_events, max_bytes, retention_s and seq_block must be positive")
        self.path = Path(path)
        self.seq_path = _companion(self.path, ".seq")
        self.commit_path = _companion(self.path, ".commit")
        self.recovery: Recovery | None = None  # the last damaged database found (at open or at a retry)
        self.problem: str | None = None  # why the outbox is down, while it is
        self.unknown_acks = 0  # acknowledgements for seqs this outbox does not hold, since open
        self.mismatched_acks = 0  # acknowledgements naming another event than the one stored under that seq
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.retention_s = retention_s
        self._conn: sqlite3.Connection | None = None
        self._record: CommitRecord | None = None
        self._lock_fd: int | None = None
        self._clock = clock
        self._block = seq_block
        self._cipher = cipher
        self._lock = threading.RLock()
        self._closed = False
        self._recoveries: list[Recovery] = []
        self._counts = {state: 0 for state in STATES}
        self._page_size = 4096
        self._active = 0
        self._digest = EMPTY_DIGEST
        self._acked_below = 1
        self._next = self._reserved = 0

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        max_events: int = 200_000,
        max_bytes: int = 4_000_000_000,
        retention_s: float = 30 * 86400,
        clock: Callable[[], float] = time.time,
        seq_block: int = 1000,
        cipher: DataCipher | None = None,
        wait: bool = False,
    ) -> Outbox:
        """Open (or create) the outbox at ``path``, checked against its commit record.

        A corrupt database, or one that lacks events the commit record says were committed (a damaged or truncated
        WAL, a replaced file), is moved aside, what can be read from it is salvaged into a new one, and
        :attr:`recovery` says what was lost (also returned once by :meth:`take_recoveries`, for the alarm). A
        database of a newer schema or locked by another process is an :class:`OutboxError`; storage that refuses
        is a :class:`StorageUnavailable`, or with ``wait`` an outbox in the *down* state (see :attr:`available`):
        the kiosk comes up, says it cannot record, and :meth:`retry` opens it later.

        With ``cipher`` evidence is sealed at rest (evidence stored in the clear earlier is sealed now); an outbox
        sealed with another key, or opened without a key after it was sealed, is an :class:`OutboxError` and the
        file is left untouched.
        """
        outbox = cls(path, max_events=max_events, max_bytes=max_bytes, retention_s=retention_s, clock=clock,
                     seq_block=seq_block, cipher=cipher)  # fmt: skip
        try:
            outbox._attach()
        except StorageUnavailable as exc:
            if not wait:
                outbox.close()
                raise
            outbox.problem = str(exc)
            log.error("outbox down at start, will retry: %s", exc)
        except BaseException:
            outbox.close()
            raise
        return outbox

    @classmethod
    def open_or_wait(cls, path: Path, **kwargs: Any) -> Outbox:
        """:meth:`open` with ``wait=True``."""
        return cls.open(path, wait=True, **kwargs)

    @property
    def available(self) -> bool:
        """Whether the outbox can store events now (False while the storage refuses; see :meth:`retry`)."""
        return self._conn is not None and self.problem is None

    @property
    def recovered_from(self) -> Path | None:
        """Where the last damaged database was moved, or None."""
        return None if self.recovery is None else self.recovery.moved_to

    def take_recoveries(self) -> list[Recovery]:
        """The damaged databases found since the last call (at open or at a retry), each returned once."""
        with self._lock:
            found, self._recoveries = self._recoveries, []
            return found

    def retry(self) -> bool:
        """When down, try to open the database again (every check of :meth:`open`) and prove that a write works.
        True when the outbox works; a no-op when it already does."""
        with self._lock:
            if self._closed:
                raise OutboxError(f"outbox {self.path} is closed")
            if self._conn is not None:
                return True
            if self._lock_fd is not None:  # opened on the card that failed: a remounted card needs a new one
                os.close(self._lock_fd)
                self._lock_fd = None
            try:
                self._attach()
            except OutboxError as exc:
                self.problem = str(exc)
                return False
            log.warning("outbox %s works again", self.path)
            return True

    def _attach(self) -> None:
        """Take the lock, open and check the database against the commit record, recover it when it is damaged,
        and prove that both can be written. Leaves the outbox down (and the lock held) when it raises."""
        path = self.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _storage_error(exc, f"cannot create the outbox folder {path.parent}") from exc
        if self._lock_fd is None:
            self._lock_fd = _take_lock(path)
        conn: sqlite3.Connection | None = None
        record: CommitRecord | None = None
        try:
            try:
                record = CommitRecord.open(self.commit_path)
            except OSError as exc:
                raise _storage_error(exc, f"cannot open the commit record {self.commit_path}") from exc
            if record.damaged:
                log.error("outbox commit record %s is unreadable; rebuilding it from the database", self.commit_path)
            recovery = None
            mismatch: tuple[Literal["corrupt", "behind", "replaced"], str] | None
            try:
                mismatch = _compare(_check(path), record.state)  # read-only: a damaged set is moved as found
            except _Corrupt as why:
                mismatch = ("corrupt", f"the database is corrupt ({why})")
            if mismatch is None:
                try:
                    conn = _connect(path)
                except _Corrupt as why:
                    mismatch = ("corrupt", f"the database is corrupt ({why})")
                else:
                    _bind_data_key(conn, path, self._cipher)
            if mismatch is not None:
                conn, recovery = self._recover(*mismatch, record.state)
            self._conn, self._record = conn, record
            self._load_state(recovered=recovery is not None, record=record.state)
            self._prove_writable()
        except BaseException:
            self._conn = self._record = None
            if conn is not None:
                conn.close()
            if record is not None:
                record.close()
            raise
        self.problem = None
        if recovery is not None:
            self.recovery = recovery
            self._recoveries.append(recovery)

    def _load_state(self, *, recovered: bool, record: CommitState | None) -> None:
        conn = self._db()
        self._page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        self._active = int(
            conn.execute("SELECT COUNT(*) FROM events WHERE state IN ('pending', 'published')").fetchone()[0]
        )
        self._digest = bytes(conn.execute("SELECT digest FROM seq_state").fetchone()[0] or EMPTY_DIGEST)
        self._acked_below = _acked_below(conn)
        self._next, self._reserved = self._start_seq(recovered=recovered, record=record)
        self._counts = self._count_locked()

    def _prove_writable(self) -> None:
        """Write the database and the commit record once (a read-only card is found now, not at the next punch)."""
        conn = self._db()
        try:
            with self._transaction():
                conn.execute("UPDATE seq_state SET last_seq = last_seq WHERE id = 1")
        except sqlite3.Error as exc:
            raise self._translate(exc, "cannot write") from exc
        self._write_record()

    def _write_record(self) -> None:
        """Bring the commit record to the database's state; OSError when the storage refuses."""
        assert self._record is not None and self._conn is not None
        last = int(self._conn.execute("SELECT last_seq FROM seq_state").fetchone()[0])
        try:
            self._record.write(CommitState(last, self._digest, self._acked_below))
        except OSError as exc:
            raise _storage_error(exc, f"cannot write the commit record {self.commit_path}") from exc

    def _recover(
        self, reason: Literal["corrupt", "behind", "replaced"], why: str, record: CommitState | None
    ) -> tuple[sqlite3.Connection, Recovery]:
        """Move the damaged set aside, start a new database, copy in what can be read from the old one and its
        WAL, and name the committed seqs that could not be."""
        from kiosk.events.salvage import salvage

        moved = _move_aside(self.path, self._clock())
        log.warning("outbox %s: %s; moved it aside to %s", self.path, why, moved)
        probe = None if record is None or record.last_seq < 1 else (max(1, record.acked_below), record.last_seq)
        notes: tuple[str, ...] = ()
        try:
            found = salvage(moved, _companion(moved, "-wal"), probe=probe, workdir=self.path.parent)
            # Absent rows count too: an older page kept for a damaged frame lacks what the newer one held.
            events, unreadable, notes = found.events, (*found.unreadable, *found.absent), found.notes
        except Exception as exc:  # a damaged file must never stop the kiosk: what was not read is named lost
            log.exception("outbox %s: nothing salvaged from %s: %s", self.path, moved, exc)
            events, unreadable = (), ()
            notes = (f"salvage failed: {exc}"[:300],)
        try:
            conn = _connect(self.path)
        except _Corrupt as again:
            raise OutboxError(f"cannot create a new outbox at {self.path}: {again}") from None
        try:
            _bind_data_key(conn, self.path, self._cipher)
            top = max((e.seq for e in events), default=0)
            last = max(top, 0 if record is None else record.last_seq)
            digest = EMPTY_DIGEST if record is None else record.digest
            with contextlib.closing(conn.cursor()) as cur:
                cur.execute("BEGIN IMMEDIATE")
                cur.executemany(
                    "INSERT OR IGNORE INTO events (seq, event_id, kind, payload, state, created_at, published_at, "
                    "publish_count, acknowledged_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(e.seq, e.event_id, e.kind, e.payload, "pending" if e.state == "published" else e.state,
                      e.created_at, e.published_at, e.publish_count, e.acknowledged_at) for e in events],
                )  # fmt: skip
                cur.executemany(
                    "INSERT OR IGNORE INTO evidence (seq, created_at, jpeg) VALUES (?, ?, ?)",
                    [(e.seq, e.created_at, e.evidence) for e in events
                     if e.evidence is not None and e.state != "acknowledged"],
                )  # fmt: skip
                cur.execute("UPDATE seq_state SET last_seq = ?, digest = ?, prev_digest = NULL WHERE id = 1",
                            (last, digest))  # fmt: skip
                cur.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
        lost = _lost_ranges(record, top, unreadable)
        if record is None:
            lost_text = "the commit record was missing, so lost events (if any) cannot be named"
        elif lost:
            lost_text = "not recovered: " + ", ".join(f"seq {a}" if a == b else f"seq {a}..{b}" for a, b in lost)
        else:
            lost_text = "every committed unacknowledged event was recovered"
        detail = f"{why}; moved aside to {moved.name}; {len(events)} event(s) salvaged; {lost_text}"
        if notes:
            detail += " (" + "; ".join(notes[:3]) + ")"
        log.error("outbox %s: %s", self.path, detail)
        return conn, Recovery(reason, moved, len(events), lost, detail[:1000])

    def _start_seq(self, *, recovered: bool, record: CommitState | None) -> tuple[int, int]:
        """(next number to issue, end of the block reserved in the side file as far as this outbox knows)."""
        conn = self._db()
        last, db_reserved = conn.execute("SELECT last_seq, reserved_end FROM seq_state").fetchone()
        top = conn.execute("SELECT MAX(seq) FROM events").fetchone()[0] or 0
        last = max(int(last), int(top))
        side = _read_seq_file(self.seq_path, self._clock())
        committed = 0 if record is None else record.last_seq
        if side is not None and db_reserved == side and db_reserved > 0 and committed <= last <= side:
            return last + 1, side  # the usual case: this database has been issuing from the side file's block
        # A new or recovered database, a lost side file, or a crash between reserving a block and using it:
        # continue above everything any file knows of. The gap is the price of never repeating a number.
        base = max(last, int(db_reserved), side or 0, committed)
        if side is None and recovered and record is None:
            floor = int(self._clock() * 1000)  # all three lost: milliseconds since 1970 outrun any issued number
            log.error(
                "outbox %s: database recovered, sequence file %s and commit record missing; continuing from the "
                "clock (%d)",
                self.path,
                self.seq_path,
                floor,
            )
            base = max(base, floor)
        if base >= MAX_SEQ:
            raise OutboxError(f"outbox {self.path}: the sequence numbers are exhausted (last {base})")
        return base + 1, base

    # ------------------------------------------------------------------ writing

    def append(self, event_id: str, kind: str, payload: bytes, evidence: bytes | None = None) -> OutboxEvent:
        """Store one event durably and return it; the same ``event_id`` again returns the stored event unchanged.

        Raises :class:`OutboxFull` (nothing stored) when the outbox or the disk is full.
        """
        if not isinstance(event_id, str) or not event_id:
            raise ValueError("event_id must be a non-empty string")
        if not isinstance(kind, str) or not kind:
            raise ValueError("kind must be a non-empty string")
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise TypeError("payload must be bytes")
        if evidence is not None and not isinstance(evidence, bytes | bytearray | memoryview):
            raise TypeError("evidence must be bytes or None")
        payload = bytes(payload)
        evidence = None if evidence is None else bytes(evidence)
        with self._lock:
            conn = self._db()
            existing = self._get_locked(event_id)
            if existing is not None:
                if existing.kind != kind or existing.payload != payload:
                    log.warning("outbox: event %s appended again with different content; kept the first", event_id)
                return existing
            sealing = OVERHEAD if self._cipher is not None and evidence is not None else 0
            self._check_capacity(len(event_id) + len(kind) + len(payload) + len(evidence or b"") + sealing)
            seq = self._next
            self._reserve(seq)
            now = self._clock()
            stored_evidence = evidence
            if evidence is not None and self._cipher is not None:
                stored_evidence = self._cipher.seal("evidence", evidence, _seq_context(seq))
            digest = chain(self._digest, seq, event_id)
            conn = self._db()
            try:
                with self._transaction():
                    conn.execute(
                        "INSERT INTO events (seq, event_id, kind, payload, created_at) VALUES (?, ?, ?, ?, ?)",
                        (seq, event_id, kind, payload, now),
                    )
                    if evidence is not None:
                        conn.execute(
                            "INSERT INTO evidence (seq, created_at, jpeg) VALUES (?, ?, ?)",
                            (seq, now, stored_evidence),
                        )
                    conn.execute(
                        "UPDATE seq_state SET last_seq = ?, reserved_end = ?, digest = ?, prev_digest = ? "
                        "WHERE id = 1",
                        (seq, self._reserved, digest, self._digest),
                    )
            except sqlite3.Error as exc:
                raise self._translate(exc, f"cannot record event {event_id}") from exc
            self._next = seq + 1
            if self._active == 0:
                self._acked_below = seq
            self._active += 1
            self._digest = digest
            self._counts["pending"] += 1
            stored = OutboxEvent(seq, event_id, kind, payload, "pending", now, has_evidence=evidence is not None)
            try:  # the event is committed; the record makes its loss detectable should the database lose it
                self._write_record()
            except StorageUnavailable as exc:
                log.error("outbox: event seq %d is stored, but %s", seq, exc)
                self._go_down(str(exc))
            return stored

    def mark_published(self, seqs: Iterable[int]) -> int:
        """Record that these events were handed to the broker; returns how many changed (acknowledged ones stay)."""
        wanted = sorted({_as_seq(s) for s in seqs})
        with self._lock:
            conn = self._db()
            now = self._clock()
            try:
                with self._transaction():
                    before = conn.total_changes
                    conn.executemany(
                        "UPDATE events SET state = 'published', published_at = ?, publish_count = publish_count + 1 "
                        "WHERE seq = ? AND state != 'acknowledged'",
                        [(now, s) for s in wanted],
                    )
                    return conn.total_changes - before
            except sqlite3.Error as exc:
                raise self._translate(exc, "cannot mark events published") from exc

    def requeue(self, from_seq: int) -> int:
        """Send again every stored event numbered ``from_seq`` or later that is not acknowledged (the server
        found a gap and asked for a resend); returns how many were queued again."""
        start = _as_seq(from_seq)
        with self._lock:
            conn = self._db()
            try:
                with self._transaction():
                    before = conn.total_changes
                    conn.execute(
                        "UPDATE events SET state = 'pending' WHERE seq >= ? AND state = 'published'", (start,)
                    )
                    return conn.total_changes - before
            except sqlite3.Error as exc:
                raise self._translate(exc, "cannot queue events again") from exc

    def acknowledge(self, pairs: Iterable[tuple[int, str]]) -> int:
        """Mark events acknowledged, each named by its ``(seq, event_id)``, and delete their evidence.

        An event is released only when both match what is stored: an ack for another event under the same seq (a
        reused number) releases nothing and is counted in ``mismatched_acks``; an ack for a seq this outbox does not
        hold is counted in ``unknown_acks``. Idempotent: returns how many events became acknowledged now.
        """
        wanted = list(pairs)
        for pair in wanted:
            if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[1], str)):
                raise TypeError(f"an acknowledgement is (seq, event_id), not {pair!r}")
            _as_seq(pair[0])
        with self._lock:
            conn = self._db()
            todo: dict[int, None] = {}
            unknown = mismatched = 0
            for seq, event_id in wanted:
                row = conn.execute("SELECT event_id, state FROM events WHERE seq = ?", (seq,)).fetchone()
                if row is None:
                    unknown += 1
                elif row[0] != event_id:
                    mismatched += 1
                    log.error("outbox: an ack names event %s as seq %d, but seq %d here is event %s; nothing released",
                              event_id, seq, seq, row[0])
                elif row[1] != "acknowledged":
                    todo[seq] = None
            if unknown:
                self.unknown_acks += unknown
                log.warning("outbox: %d acknowledgement(s) for events this outbox does not hold ignored", unknown)
            self.mismatched_acks += mismatched
            if not todo:
                return 0
            now = self._clock()
            try:
                with self._transaction():
                    # Evidence first: it frees pages, so an acknowledgement still fits when the disk is full.
                    conn.executemany("DELETE FROM evidence WHERE seq = ?", [(s,) for s in todo])
                    before = conn.total_changes
                    conn.executemany(
                        "UPDATE events SET state = 'acknowledged', acknowledged_at = ? "
                        "WHERE seq = ? AND state != 'acknowledged'",
                        [(now, s) for s in todo],
                    )
                    changed = conn.total_changes - before
            except sqlite3.Error as exc:
                raise self._translate(exc, "cannot record acknowledgements") from exc
            self._active -= changed
            below = _acked_below(conn)
            if below != self._acked_below:  # a later loss then names only what the server may not hold
                self._acked_below = below
                try:
                    self._write_record()
                except StorageUnavailable as exc:
                    self._go_down(str(exc))
            return changed

    def prune(self) -> int:
        """Delete acknowledged events and any evidence created more than ``retention_s`` ago; returns events deleted.

        Unacknowledged events are never deleted, however old; only their evidence goes when retention ends.
        """
        deleted_events = deleted_evidence = 0
        while True:
            with self._lock:
                conn = self._db()
                cutoff = self._clock() - self.retention_s
                try:
                    with self._transaction():
                        before = conn.total_changes
                        conn.execute(
                            "DELETE FROM evidence WHERE seq IN (SELECT seq FROM evidence WHERE created_at < ? LIMIT ?)",
                            (cutoff, _PRUNE_CHUNK),
                        )
                        evidence_now = conn.total_changes - before
                        conn.execute(
                            "DELETE FROM events WHERE seq IN (SELECT seq FROM events "
                            "WHERE created_at < ? AND state = 'acknowledged' LIMIT ?)",
                            (cutoff, _PRUNE_CHUNK),
                        )
                        events_now = conn.total_changes - before - evidence_now
                except sqlite3.Error as exc:
                    raise self._translate(exc, "cannot prune") from exc
            deleted_events += events_now
            deleted_evidence += evidence_now
            if events_now < _PRUNE_CHUNK and evidence_now < _PRUNE_CHUNK:
                break
        if deleted_events or deleted_evidence:
            log.info(
                "outbox: pruned %d acknowledged event(s) and %d evidence image(s)", deleted_events, deleted_evidence
            )
        return deleted_events

    # ------------------------------------------------------------------ reading (nothing while down)

    def pending(self, limit: int = 100, republish_after_s: float | None = None) -> list[OutboxEvent]:
        """Events to publish, in seq order: never published ones, and (when ``republish_after_s`` is given)
        published ones still unacknowledged that long after their last publication."""
        if limit < 1:
            return []
        with self._lock:
            conn = self._reader()
            if conn is None:
                return []
            try:
                rows = conn.execute(
                    f"SELECT {_COLUMNS} FROM events WHERE state = 'pending' ORDER BY seq LIMIT ?", (limit,)
                ).fetchall()
                if republish_after_s is not None:
                    rows += conn.execute(
                        f"SELECT {_COLUMNS} FROM events WHERE state = 'published' AND published_at <= ? "
                        "ORDER BY seq LIMIT ?",
                        (self._clock() - republish_after_s, limit),
                    ).fetchall()
            except sqlite3.Error as exc:
                raise self._translate(exc, "cannot read pending events") from exc
            rows.sort(key=lambda r: r[0])
        return [OutboxEvent._from_row(r) for r in rows[:limit]]

    def recent(self, kind: str, since: float, limit: int = 10_000) -> list[OutboxEvent]:
        """The stored events of ``kind`` created at or after ``since`` (the outbox clock), oldest first, in any
        state: what the kiosk recorded lately, for the repeat guard after a restart."""
        with self._lock:
            conn = self._reader()
            if conn is None:
                return []
            try:
                rows = conn.execute(
                    f"SELECT {_COLUMNS} FROM events WHERE kind = ? AND created_at >= ? ORDER BY seq DESC LIMIT ?",
                    (kind, since, limit),
                ).fetchall()
            except sqlite3.Error as exc:
                raise self._translate(exc, "cannot read recent events") from exc
        return [OutboxEvent._from_row(r) for r in reversed(rows)]

    def get(self, key: str | int) -> OutboxEvent | None:
        """The stored event with this ``event_id`` (str) or ``seq`` (int), or None."""
        with self._lock:
            if self._reader() is None:
                return None
            try:
                return self._get_locked(key)
            except sqlite3.Error as exc:
                raise self._translate(exc, "cannot read an event") from exc

    def evidence(self, seq: int) -> bytes | None:
        """The evidence image of event ``seq`` (decrypted), or None: none given, already acknowledged, past
        retention, or (logged as an error) a sealed image that fails authentication."""
        with self._lock:
            conn = self._reader()
            if conn is None:
                return None
            try:
                row = conn.execute("SELECT jpeg FROM evidence WHERE seq = ?", (_as_seq(seq),)).fetchone()
            except sqlite3.Error as exc:
                raise self._translate(exc, "cannot read an evidence photo") from exc
        if row is None or self._cipher is None:
            return None if row is None else bytes(row[0])
        try:
            return self._cipher.open("evidence", bytes(row[0]), _seq_context(seq))
        except SealError as exc:
            log.error("outbox %s: the evidence photo of event %d is unusable: %s", self.path, seq, exc)
            return None

    def counts(self) -> dict[str, int]:
        """Number of events in each state (every state is present); while down, the last counts known."""
        with self._lock:
            if self._reader() is None:
                return dict(self._counts)
            try:
                self._counts = self._count_locked()
            except sqlite3.Error as exc:
                raise self._translate(exc, "cannot count events") from exc
            return dict(self._counts)

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Close the database and release the lock; calling it again does nothing."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._detach()
            finally:
                if self._lock_fd is not None:
                    os.close(self._lock_fd)
                    self._lock_fd = None

    def __enter__(self) -> Outbox:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "available" if self.available else "down"
        return f"Outbox({str(self.path)!r}, {state})"

    # ------------------------------------------------------------------ internals

    def _db(self) -> sqlite3.Connection:
        """The connection for a write; StorageUnavailable while down."""
        if self._closed:
            raise OutboxError(f"outbox {self.path} is closed")
        if self._conn is None:
            raise StorageUnavailable(
                f"the outbox {self.path} cannot be used: {self.problem or 'not open'}; nothing was stored"
            )
        return self._conn

    def _reader(self) -> sqlite3.Connection | None:
        """The connection for a read; None while down (reads then find nothing)."""
        if self._closed:
            raise OutboxError(f"outbox {self.path} is closed")
        return self._conn

    def _detach(self) -> None:
        conn, record, self._conn, self._record = self._conn, self._record, None, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        if record is not None:
            with contextlib.suppress(OSError):
                record.close()

    def _go_down(self, problem: str) -> None:
        """The storage refused: close the database (the lock stays held) until :meth:`retry` succeeds."""
        if self._conn is not None:
            log.error("outbox %s is down: %s", self.path, problem)
        self.problem = problem
        self._detach()

    def _count_locked(self) -> dict[str, int]:
        rows = self._db().execute("SELECT state, COUNT(*) FROM events GROUP BY state").fetchall()
        return {state: 0 for state in STATES} | {state: int(n) for state, n in rows}

    def _get_locked(self, key: str | int) -> OutboxEvent | None:
        column = "event_id" if isinstance(key, str) else "seq"
        row = self._db().execute(f"SELECT {_COLUMNS} FROM events WHERE {column} = ?", (key,)).fetchone()
        return None if row is None else OutboxEvent._from_row(row)

    def _check_capacity(self, size: int) -> None:
        if self._active >= self.max_events:
            raise OutboxFull(
                f"cannot record: the outbox {self.path} holds {self._active} unacknowledged events, its limit "
                f"(max_events={self.max_events}); nothing was stored. The kiosk must reach the server."
            )
        try:
            pages = self._db().execute("PRAGMA page_count").fetchone()[0]
            free = self._db().execute("PRAGMA freelist_count").fetchone()[0]
        except sqlite3.Error as exc:
            raise self._translate(exc, "cannot measure the outbox") from exc
        used = (pages - free) * self._page_size
        if used + size + _ROW_OVERHEAD > self.max_bytes:
            raise OutboxFull(
                f"cannot record: the outbox {self.path} would grow past its limit of {self.max_bytes} bytes "
                f"({used} in use); nothing was stored. The kiosk must reach the server."
            )

    def _reserve(self, seq: int) -> None:
        """Make sure ``seq`` lies in a block whose end is durably in the side file before it is used."""
        if seq > MAX_SEQ:
            raise OutboxError(f"outbox {self.path}: the sequence numbers are exhausted")
        if seq <= self._reserved:
            return
        end = min(seq + self._block - 1, MAX_SEQ)
        try:
            _write_seq_file(self.seq_path, end)
        except OSError as exc:
            if _disk_full(exc):
                raise OutboxFull(
                    f"cannot record: the disk holding {self.seq_path} is full; nothing was stored"
                ) from exc
            error = _storage_error(exc, f"cannot write the sequence file {self.seq_path}")
            self._go_down(str(error))
            raise error from exc
        self._reserved = end

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        conn = self._db()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):  # a failing disk may refuse the rollback too
                if conn.in_transaction:  # SQLite may already have rolled back (e.g. on SQLITE_FULL)
                    conn.execute("ROLLBACK")
            raise

    def _translate(self, exc: sqlite3.Error, what: str) -> OutboxError:
        """The error to raise for a failed SQLite call: full, storage refusing (the outbox goes down), or other."""
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        if code == sqlite3.SQLITE_FULL or "disk is full" in str(exc):
            try:
                free_mb = f"{free_bytes(self.path.parent) / 1e6:.1f} MB free on its disk"
            except OSError:
                free_mb = "free disk space unknown"
            return OutboxFull(f"{what}: the outbox {self.path} or its disk is full ({free_mb}); nothing was stored")
        if code in _STORAGE_CODES:
            name = getattr(exc, "sqlite_errorname", "")
            error = StorageUnavailable(
                f"{what}: the storage of the outbox {self.path} refused: {exc}{f' ({name})' if name else ''}"
                f"{_read_only_hint(self.path.parent)}"
            )
            self._go_down(str(error))
            return error
        return OutboxError(f"{what}: outbox {self.path}: {exc}")


# ---------------------------------------------------------------------- module helpers


def _as_seq(seq: int) -> int:
    if isinstance(seq, bool) or not isinstance(seq, int):
        raise TypeError(f"a seq is an int, not {seq!r}")
    return seq


def _seq_context(seq: int) -> bytes:
    """Associated data that binds a sealed evidence photo to its event."""
    return seq.to_bytes(8, "big")


def _bind_data_key(conn: sqlite3.Connection, path: Path, cipher: DataCipher | None) -> None:
    """Check that ``cipher`` is the key the outbox was sealed with; seal clear evidence at the first open with a key.

    Refusals raise before anything is written, so a wrong key never changes or deletes anything.
    """
    row = conn.execute("SELECT key_id FROM data_key").fetchone()
    stored = None if row is None else str(row[0])
    untouched = "the file was left untouched"
    if cipher is None:
        if stored is not None:
            raise OutboxError(
                f"the outbox {path} keeps its evidence photos encrypted with a data key (key id {stored}), but "
                f"no data key is configured: set device.data_key as before; {untouched}"
            )
        return
    if stored is not None:
        if stored != cipher.key_id:
            raise OutboxError(
                f"the outbox {path} was encrypted with another data key (key id {stored}; the key from "
                f"{cipher.source} has id {cipher.key_id}): restore the key it was made with; {untouched}"
            )
        return
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            rows = conn.execute("SELECT seq, jpeg FROM evidence").fetchall()
            conn.executemany(
                "UPDATE evidence SET jpeg = ? WHERE seq = ?",
                [(cipher.seal("evidence", bytes(jpeg), _seq_context(seq)), seq) for seq, jpeg in rows],
            )
            conn.execute("INSERT INTO data_key (id, key_id) VALUES (1, ?)", (cipher.key_id,))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the clear copies leave the database file now
    except sqlite3.Error as exc:
        raise OutboxError(f"cannot seal the evidence in the outbox {path}: {exc}") from exc
    log.info("outbox %s: evidence is now sealed with data key %s (%d photo(s) sealed)", path, cipher.key_id, len(rows))


def _compare(
    seen: tuple[int, bytes, bytes] | None, record: CommitState | None
) -> tuple[Literal["corrupt", "behind", "replaced"], str] | None:
    """Whether the database holds what the commit record says was committed: None, or (reason, explanation).

    The database may be one commit ahead (a crash between its commit and the record's write); a record further
    behind (restored from an old copy, or its writes failed) is rewritten from the database with a warning."""
    if record is None:
        return None
    last, digest, prev = seen or (0, EMPTY_DIGEST, EMPTY_DIGEST)
    if last < record.last_seq:
        return "behind", (
            f"the database ends at seq {last} but seq {record.last_seq} was committed (a damaged or truncated "
            "write-ahead log or database file)"
        )
    if (last == record.last_seq and digest != record.digest) or (
        last == record.last_seq + 1 and prev != record.digest
    ):
        return "replaced", f"the database at seq {last} holds other events than were committed (a replaced file)"
    if last > record.last_seq + 1:
        log.warning("outbox commit record is at seq %d, the database at %d; rewriting the record", record.last_seq,
                    last)  # fmt: skip
    return None


def _acked_below(conn: sqlite3.Connection) -> int:
    """The lowest seq that is not acknowledged (every seq below it is): the first one a loss could concern."""
    row = conn.execute("SELECT MIN(seq) FROM events WHERE state != 'acknowledged'").fetchone()
    if row[0] is not None:
        return int(row[0])
    return int(conn.execute("SELECT last_seq FROM seq_state").fetchone()[0]) + 1


def _lost_ranges(
    record: CommitState | None, top: int, unreadable: Iterable[tuple[int, int]]
) -> tuple[tuple[int, int], ...]:
    """The committed seqs a recovery could not read back: unreadable or absent rows and the tail after the last
    salvaged event, from the first unacknowledged seq on (the server holds what it acknowledged). Absent rows may be
    numbers skipped at a restart or acknowledged events pruned: naming them costs a line at central, while leaving a
    lost event out would lose it silently."""
    if record is None:
        return ()
    low = max(1, record.acked_below)
    spans = [(max(a, low), b) for a, b in unreadable if b >= low]
    if record.last_seq >= max(low, top + 1):
        spans.append((max(low, top + 1), record.last_seq))
    merged: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return tuple(merged)


def _storage_error(exc: OSError, what: str) -> StorageUnavailable:
    return StorageUnavailable(f"{what}: {exc.strerror or exc}")


def _read_only_hint(folder: Path) -> str:
    """What SQLite's "disk I/O error" does not say: the folder's own answer to creating a file (an ext4 error
    remounts the card read-only, which ``statvfs`` does not show)."""
    probe = folder / f".outbox-probe-{os.getpid()}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        os.unlink(probe)
    except OSError as exc:
        if exc.errno == errno.EROFS:
            return "; the file system is read-only (the kernel does this to a failing card): replace the card"
        return f"; creating a file in {folder} fails too: {exc.strerror or exc}"
    return ""


def _companion(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _disk_full(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)


def _take_lock(path: Path) -> int:
    lock_path = _companion(path, ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise _storage_error(exc, f"cannot open the outbox lock file {lock_path}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise OutboxError(
            f"the outbox {path} is already open in another process (or twice in this one); only one may use it"
        ) from None
    return fd


def _check(path: Path) -> tuple[int, bytes, bytes] | None:
    """Check an existing database through a read-only connection, which never checkpoints or deletes its WAL:
    a corrupt set of files is moved aside exactly as it was found. Returns what it says was committed last
    (last seq, digest, digest before it), None when there is no database yet. Raises _Corrupt or OutboxError."""
    if not path.exists():
        return None
    if _companion(path, "-journal").exists():
        _roll_back_hot_journal(path)
    try:
        conn = sqlite3.connect(path.absolute().as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error as exc:
        _raise_for(path, exc)
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise OutboxError(
                f"the outbox {path} has schema version {version}, newer than this kiosk's {SCHEMA_VERSION}; "
                "it was written by a newer kiosk release: install that release (the file was left untouched)"
            )
        problems = [r[0] for r in conn.execute("PRAGMA integrity_check(20)").fetchall()]
        if problems != ["ok"]:
            raise _Corrupt("integrity check: " + "; ".join(problems)[:500])
        if version == 0:
            return None
        columns = "last_seq, digest, prev_digest" if version >= 3 else "last_seq, NULL, NULL"
        last, digest, prev = conn.execute(f"SELECT {columns} FROM seq_state").fetchone()
        return int(last), bytes(digest or EMPTY_DIGEST), bytes(prev or EMPTY_DIGEST)
    except sqlite3.DatabaseError as exc:
        _raise_for(path, exc)
    finally:
        conn.close()


def _roll_back_hot_journal(path: Path) -> None:
    """A power cut while SQLite created the database (its rollback journal, used once to switch to WAL, still on
    the card) leaves a hot journal that a read-only connection cannot roll back (SQLITE_READONLY_ROLLBACK, at
    every start). One read-write read rolls it back, as SQLite does for any writer; the check then sees the result."""
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=10.0)
        try:
            conn.execute("PRAGMA schema_version").fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        _raise_for(path, exc)


def _raise_for(path: Path, exc: sqlite3.Error) -> NoReturn:
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    if code in _CORRUPT_CODES:
        raise _Corrupt(str(exc)) from None
    if code in _STORAGE_CODES:
        raise StorageUnavailable(f"cannot open the outbox {path}: the storage refused: {exc}") from exc
    raise OutboxError(f"cannot open the outbox {path}: {exc}") from exc


def _connect(path: Path) -> sqlite3.Connection:
    """Open (and when new, create) the database checked by :func:`_check`; raises _Corrupt when it is not a
    healthy database after all."""
    existed = path.exists()
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    except sqlite3.Error as exc:
        _raise_for(path, exc)
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise OutboxError(f"the outbox {path} cannot use write-ahead logging (journal mode {mode})")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA secure_delete = ON")  # deleted evidence is overwritten, not left in free pages
        if version == 0:
            conn.executescript(_SCHEMA)
            if not existed:
                fsync_dir(path.parent)  # make the new file's name durable too
        if version < 2:
            conn.executescript(_TO_VERSION_2)
        if version < 3:
            conn.executescript(_TO_VERSION_3)
        return conn
    except sqlite3.DatabaseError as exc:
        conn.close()
        _raise_for(path, exc)
    except BaseException:
        conn.close()
        raise


def _aside_name(path: Path, now: float) -> Path:
    """``<name>.corrupt-<UTC time>``, with ``-1``, ``-2``... when that name (or its -wal/-shm) is taken."""
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")
    n = 0
    while True:
        target = _companion(path, f".corrupt-{stamp}" + (f"-{n}" if n else ""))
        if not any(_companion(target, s).exists() for s in ("", "-wal", "-shm")):
            return target
        n += 1


def _move_aside(path: Path, now: float) -> Path:
    """Rename the database and its -wal/-shm companions to ``<name>.corrupt-<UTC time>[-n]``; never deletes."""
    target = _aside_name(path, now)
    try:
        for suffix in ("-wal", "-shm", ""):  # the database last: a crash midway leaves it where it was
            src = _companion(path, suffix)
            if src.exists():
                os.replace(src, _companion(target, suffix))
        fsync_dir(path.parent)
    except OSError as exc:
        raise _storage_error(exc, f"the outbox {path} is damaged and cannot be moved aside") from exc
    return target


def _read_seq_file(path: Path, now: float) -> int | None:
    """The reserved block end in the side file, or None when it is missing or unreadable (then moved aside)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise OutboxError(f"cannot read the sequence file {path}: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text)
        end = data["reserved_end"]
        if data.get("format") != SEQ_FILE_FORMAT or isinstance(end, bool) or not isinstance(end, int) or end < 0:
            raise ValueError(text[:100])
        return end
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        aside = _aside_name(path, now)
        with contextlib.suppress(OSError):
            os.replace(path, aside)
        log.warning("outbox sequence file %s is unreadable (%s); moved it aside to %s", path, exc, aside)
        return None


def _write_seq_file(path: Path, reserved_end: int) -> None:
    """Atomically and durably record the end of the reserved block: temp file, fsync, rename, fsync the folder."""
    write_atomic(path, (json.dumps({"format": SEQ_FILE_FORMAT, "reserved_end": reserved_end}) + "\n").encode())
