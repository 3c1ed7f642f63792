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
from typing import Any, NoReturn

from kiosk.errors import KioskError
from kiosk_contract.fsutil import free_bytes, fsync_dir, write_atomic
from kiosk_contract.sealing import OVERHEAD, DataCipher, SealError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
SEQ_FILE_FORMAT = 1
MAX_SEQ = 2**63 - 1  # SQLite INTEGER is a signed 64-bit number
STATES = ("pending", "published", "acknowledged")
_ROW_OVERHEAD = 512  # bytes an event costs beyond its strings and blobs (row header, index entries), rounded up
_PRUNE_CHUNK = 500  # rows deleted per transaction, so the frame loop never waits long for the lock
_CORRUPT_CODES = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)

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

_COLUMNS = (
    "seq, event_id, kind, payload, state, created_at, published_at, publish_count, acknowledged_at, "
    "EXISTS (SELECT 1 FROM evidence WHERE evidence.seq = events.seq)"
)


class OutboxError(KioskError):
    """The outbox cannot be opened or used: locked by another process, of a newer schema, or a disk error."""


class OutboxFull(OutboxError):
    """Nothing was stored: the outbox reached ``max_events`` or ``max_bytes``, or the disk is full."""


class _Corrupt(Exception):
    """Internal: the database file is not a healthy SQLite database."""


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
        conn: sqlite3.Connection,
        lock_fd: int,
        *,
        max_events: int,
        max_bytes: int,
        retention_s: float,
        clock: Callable[[], float],
        seq_block: int,
        recovered_from: Path | None,
        cipher: DataCipher | None,
    ) -> None:
        self.path = path
        self.seq_path = _companion(path, ".seq")
        self.recovered_from = recovered_from
        self.unknown_acks = 0  # acknowledgements for seqs this outbox does not hold, since open
        self.mismatched_acks = 0  # acknowledgements naming another event than the one stored under that seq
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.retention_s = retention_s
        self._conn = conn
        self._lock_fd = lock_fd
        self._clock = clock
        self._block = seq_block
        self._cipher = cipher
        self._lock = threading.RLock()
        self._closed = False
        self._page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        self._active = int(
            conn.execute("SELECT COUNT(*) FROM events WHERE state IN ('pending', 'published')").fetchone()[0]
        )
        self._next, self._reserved = self._start_seq()

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
    ) -> Outbox:
        """Open (or create) the outbox at ``path``; a corrupt database is moved aside and a new one created.

        ``recovered_from`` is then the moved-aside file, so the caller can raise an alarm. A database of a newer
        schema, a database locked by another process, or an I/O error is an :class:`OutboxError`.

        With ``cipher`` evidence is sealed at rest (evidence stored in the clear earlier is sealed now); an outbox
        sealed with another key, or opened without a key after it was sealed, is an :class:`OutboxError` and the
        file is left untouched.
        """
        if max_events < 1 or max_bytes < 1 or retention_s <= 0 or seq_block < 1:
            raise ValueError("max_events, max_bytes, retention_s and seq_block must be positive")
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutboxError(f"cannot create the outbox folder {path.parent}: {exc.strerror or exc}") from exc
        lock_fd = _take_lock(path)
        try:
            recovered_from = None
            try:
                conn = _connect(path)
            except _Corrupt as why:
                recovered_from = _move_aside(path, clock())
                log.warning(
                    "outbox %s was corrupt (%s); moved it aside to %s and started a new one", path, why, recovered_from
                )
                try:
                    conn = _connect(path)
                except _Corrupt as again:
                    raise OutboxError(f"cannot create a new outbox at {path}: {again}") from None
            try:
                _bind_data_key(conn, path, cipher)
                return cls(
                    path,
                    conn,
                    lock_fd,
                    max_events=max_events,
                    max_bytes=max_bytes,
                    retention_s=retention_s,
                    clock=clock,
                    seq_block=seq_block,
                    recovered_from=recovered_from,
                    cipher=cipher,
                )
            except BaseException:
                conn.close()
                raise
        except BaseException:
            os.close(lock_fd)
            raise

    def _start_seq(self) -> tuple[int, int]:
        """(next number to issue, end of the block reserved in the side file as far as this outbox knows)."""
        last, db_reserved = self._conn.execute("SELECT last_seq, reserved_end FROM seq_state").fetchone()
        top = self._conn.execute("SELECT MAX(seq) FROM events").fetchone()[0] or 0
        last = max(int(last), int(top))
        side = _read_seq_file(self.seq_path, self._clock())
        if side is not None and db_reserved == side and db_reserved > 0 and last <= side:
            return last + 1, side  # the usual case: this database has been issuing from the side file's block
        # A new or recovered database, a lost side file, or a crash between reserving a block and using it:
        # continue above everything either file knows of. The gap is the price of never repeating a number.
        base = max(last, int(db_reserved), side or 0)
        if side is None and self.recovered_from is not None:
            floor = int(self._clock() * 1000)  # both files lost: milliseconds since 1970 outrun any issued number
            log.error(
                "outbox %s: database recovered and sequence file %s missing; continuing from the clock (%d)",
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
            self._check_open()
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
            try:
                with self._transaction():
                    self._conn.execute(
                        "INSERT INTO events (seq, event_id, kind, payload, created_at) VALUES (?, ?, ?, ?, ?)",
                        (seq, event_id, kind, payload, now),
                    )
                    if evidence is not None:
                        self._conn.execute(
                            "INSERT INTO evidence (seq, created_at, jpeg) VALUES (?, ?, ?)",
                            (seq, now, stored_evidence),
                        )
                    self._conn.execute(
                        "UPDATE seq_state SET last_seq = ?, reserved_end = ? WHERE id = 1", (seq, self._reserved)
                    )
            except sqlite3.Error as exc:
                raise self._translate(exc, f"cannot record event {event_id}") from exc
            self._next = seq + 1
            self._active += 1
            return OutboxEvent(seq, event_id, kind, payload, "pending", now, has_evidence=evidence is not None)

    def mark_published(self, seqs: Iterable[int]) -> int:
        """Record that these events were handed to the broker; returns how many changed (acknowledged ones stay)."""
        wanted = sorted({_as_seq(s) for s in seqs})
        with self._lock:
            self._check_open()
            now = self._clock()
            try:
                with self._transaction():
                    before = self._conn.total_changes
                    self._conn.executemany(
                        "UPDATE events SET state = 'published', published_at = ?, publish_count = publish_count + 1 "
                        "WHERE seq = ? AND state != 'acknowledged'",
                        [(now, s) for s in wanted],
                    )
                    return self._conn.total_changes - before
            except sqlite3.Error as exc:
                raise self._translate(exc, "cannot mark events published") from exc

    def requeue(self, from_seq: int) -> int:
        """Send again every stored event numbered ``from_seq`` or later that is not acknowledged (the server
        found a gap and asked for a resend); returns how many were queued again."""
        start = _as_seq(from_seq)
        with self._lock:
            self._check_open()
            try:
                with self._transaction():
                    before = self._conn.total_changes
                    self._conn.execute(
                        "UPDATE events SET state = 'pending' WHERE seq >= ? AND state = 'published'", (start,)
                    )
                    return self._conn.total_changes - before
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
            self._check_open()
            todo: dict[int, None] = {}
            unknown = mismatched = 0
            for seq, event_id in wanted:
                row = self._conn.execute("SELECT event_id, state FROM events WHERE seq = ?", (seq,)).fetchone()
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
                    self._conn.executemany("DELETE FROM evidence WHERE seq = ?", [(s,) for s in todo])
                    before = self._conn.total_changes
                    self._conn.executemany(
                        "UPDATE events SET state = 'acknowledged', acknowledged_at = ? "
                        "WHERE seq = ? AND state != 'acknowledged'",
                        [(now, s) for s in todo],
                    )
                    changed = self._conn.total_changes - before
            except sqlite3.Error as exc:
                raise self._translate(exc, "cannot record acknowledgements") from exc
            self._active -= changed
            return changed

    def prune(self) -> int:
        """Delete acknowledged events and any evidence created more than ``retention_s`` ago; returns events deleted.

        Unacknowledged events are never deleted, however old; only their evidence goes when retention ends.
        """
        deleted_events = deleted_evidence = 0
        while True:
            with self._lock:
                self._check_open()
                cutoff = self._clock() - self.retention_s
                try:
                    with self._transaction():
                        before = self._conn.total_changes
                        self._conn.execute(
                            "DELETE FROM evidence WHERE seq IN (SELECT seq FROM evidence WHERE created_at < ? LIMIT ?)",
                            (cutoff, _PRUNE_CHUNK),
                        )
                        evidence_now = self._conn.total_changes - before
                        self._conn.execute(
                            "DELETE FROM events WHERE seq IN (SELECT seq FROM events "
                            "WHERE created_at < ? AND state = 'acknowledged' LIMIT ?)",
                            (cutoff, _PRUNE_CHUNK),
                        )
                        events_now = self._conn.total_changes - before - evidence_now
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

    # ------------------------------------------------------------------ reading

    def pending(self, limit: int = 100, republish_after_s: float | None = None) -> list[OutboxEvent]:
        """Events to publish, in seq order: never published ones, and (when ``republish_after_s`` is given)
        published ones still unacknowledged that long after their last publication."""
        if limit < 1:
            return []
        with self._lock:
            self._check_open()
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM events WHERE state = 'pending' ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
            if republish_after_s is not None:
                rows += self._conn.execute(
                    f"SELECT {_COLUMNS} FROM events WHERE state = 'published' AND published_at <= ? "
                    "ORDER BY seq LIMIT ?",
                    (self._clock() - republish_after_s, limit),
                ).fetchall()
                rows.sort(key=lambda r: r[0])
        return [OutboxEvent._from_row(r) for r in rows[:limit]]

    def recent(self, kind: str, since: float, limit: int = 10_000) -> list[OutboxEvent]:
        """The stored events of ``kind`` created at or after ``since`` (the outbox clock), oldest first, in any
        state: what the kiosk recorded lately, for the repeat guard after a restart."""
        with self._lock:
            self._check_open()
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM events WHERE kind = ? AND created_at >= ? ORDER BY seq DESC LIMIT ?",
                (kind, since, limit),
            ).fetchall()
        return [OutboxEvent._from_row(r) for r in reversed(rows)]

    def get(self, key: str | int) -> OutboxEvent | None:
        """The stored event with this ``event_id`` (str) or ``seq`` (int), or None."""
        with self._lock:
            self._check_open()
            return self._get_locked(key)

    def evidence(self, seq: int) -> bytes | None:
        """The evidence image of event ``seq`` (decrypted), or None: none given, already acknowledged, past
        retention, or (logged as an error) a sealed image that fails authentication."""
        with self._lock:
            self._check_open()
            row = self._conn.execute("SELECT jpeg FROM evidence WHERE seq = ?", (_as_seq(seq),)).fetchone()
        if row is None or self._cipher is None:
            return None if row is None else bytes(row[0])
        try:
            return self._cipher.open("evidence", bytes(row[0]), _seq_context(seq))
        except SealError as exc:
            log.error("outbox %s: the evidence photo of event %d is unusable: %s", self.path, seq, exc)
            return None

    def counts(self) -> dict[str, int]:
        """Number of events in each state (every state is present)."""
        with self._lock:
            self._check_open()
            rows = self._conn.execute("SELECT state, COUNT(*) FROM events GROUP BY state").fetchall()
        return {state: 0 for state in STATES} | {state: int(n) for state, n in rows}

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Close the database and release the lock; calling it again does nothing."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._conn.close()
            finally:
                os.close(self._lock_fd)

    def __enter__(self) -> Outbox:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Outbox({str(self.path)!r}, closed={self._closed})"

    # ------------------------------------------------------------------ internals

    def _check_open(self) -> None:
        if self._closed:
            raise OutboxError(f"outbox {self.path} is closed")

    def _get_locked(self, key: str | int) -> OutboxEvent | None:
        column = "event_id" if isinstance(key, str) else "seq"
        row = self._conn.execute(f"SELECT {_COLUMNS} FROM events WHERE {column} = ?", (key,)).fetchone()
        return None if row is None else OutboxEvent._from_row(row)

    def _check_capacity(self, size: int) -> None:
        if self._active >= self.max_events:
            raise OutboxFull(
                f"cannot record: the outbox {self.path} holds {self._active} unacknowledged events, its limit "
                f"(max_events={self.max_events}); nothing was stored. The kiosk must reach the server."
            )
        pages = self._conn.execute("PRAGMA page_count").fetchone()[0]
        free = self._conn.execute("PRAGMA freelist_count").fetchone()[0]
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
            raise OutboxError(f"cannot write the sequence file {self.seq_path}: {exc.strerror or exc}") from exc
        self._reserved = end

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:  # SQLite may already have rolled back (e.g. on SQLITE_FULL)
                self._conn.execute("ROLLBACK")
            raise

    def _translate(self, exc: sqlite3.Error, what: str) -> OutboxError:
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_FULL or "disk is full" in str(exc):
            try:
                free_mb = f"{free_bytes(self.path.parent) / 1e6:.1f} MB free on its disk"
            except OSError:
                free_mb = "free disk space unknown"
            return OutboxFull(f"{what}: the outbox {self.path} or its disk is full ({free_mb}); nothing was stored")
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


def _companion(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _disk_full(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)


def _take_lock(path: Path) -> int:
    lock_path = _companion(path, ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise OutboxError(f"cannot open the outbox lock file {lock_path}: {exc.strerror or exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise OutboxError(
            f"the outbox {path} is already open in another process (or twice in this one); only one may use it"
        ) from None
    return fd


def _check(path: Path) -> None:
    """Check an existing database through a read-only connection, which never checkpoints or deletes its WAL:
    a corrupt set of files is moved aside exactly as it was found. Raises _Corrupt or OutboxError."""
    if not path.exists():
        return
    try:
        conn = sqlite3.connect(path.absolute().as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise OutboxError(f"cannot open the outbox {path}: {exc}") from exc
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
    except sqlite3.DatabaseError as exc:
        _raise_for(path, exc)
    finally:
        conn.close()


def _raise_for(path: Path, exc: sqlite3.Error) -> NoReturn:
    if getattr(exc, "sqlite_errorcode", 0) & 0xFF in _CORRUPT_CODES:
        raise _Corrupt(str(exc)) from None
    raise OutboxError(f"cannot open the outbox {path}: {exc}") from exc


def _connect(path: Path) -> sqlite3.Connection:
    """Check, open and (when new) create the database; raises _Corrupt when it is not a healthy database."""
    _check(path)
    existed = path.exists()
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    except sqlite3.Error as exc:
        raise OutboxError(f"cannot open the outbox {path}: {exc}") from exc
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
        raise OutboxError(f"the outbox {path} is corrupt and cannot be moved aside: {exc.strerror or exc}") from exc
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
